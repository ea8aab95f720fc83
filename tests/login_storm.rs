//! Many phones at once (a gateway restart, a network coming back): their logins queue for the
//! mail server a few at a time instead of all at once, the queue time does not count against
//! the IMAP timeout, and a login that gets no turn in time is a clear 503 with Retry-After. The
//! gateway talks to the real Dovecot through a relay that slows every new connection down and
//! records how many were logging in at the same time.

mod common;

use std::sync::atomic::Ordering;
use std::time::Duration;

use base64::Engine;
use common::*;
use eas_gateway::backend::login_gate::LoginGate;

fn basic(user: &str, password: &str) -> String {
    let raw = format!("{user}:{password}");
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(raw)
    )
}

/// An authenticated OPTIONS (the cheapest request that needs a login): status, Retry-After.
async fn options(gw: &TestGateway, user: &str, password: &str) -> (u16, Option<String>) {
    let r = client()
        .request(reqwest::Method::OPTIONS, &gw.base)
        .header("Authorization", basic(user, password))
        .send()
        .await
        .expect("OPTIONS");
    let retry = r
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().to_string());
    (r.status().as_u16(), retry)
}

async fn gateway(relay: &LoginRelay, gate: LoginGate) -> TestGateway {
    let (gw, _server) = start_gateway_server(
        GatewayOptions {
            imap_port: Some(relay.port),
            ..Default::default()
        },
        move |cfg| cfg.imap.logins = gate,
    )
    .await;
    gw
}

/// Twenty users' first requests at once against a mail server that takes 600 ms to greet, with
/// two logins allowed at a time: the mail server never sees more than two logins at once, and
/// every request succeeds, although the last ones wait about 6 s for their turn, longer than
/// the gateway's IMAP timeout (5 s).
#[tokio::test]
async fn a_stampede_of_logins_reaches_the_mail_server_a_few_at_a_time() {
    let relay = LoginRelay::start().await;
    relay.greeting_delay_ms.store(600, Ordering::SeqCst);
    let gw = gateway(&relay, LoginGate::new(2, Duration::from_secs(60))).await;
    let users: Vec<(String, String)> = (0..20).map(|_| new_user("stampede")).collect();

    let answers = futures::future::join_all(users.iter().map(|(u, p)| options(&gw, u, p))).await;

    let statuses: Vec<u16> = answers.iter().map(|(s, _)| *s).collect();
    assert!(
        statuses.iter().all(|s| *s == 200),
        "every queued login succeeds: {statuses:?}"
    );
    assert_eq!(relay.logins(), 20, "one login per user");
    let most = relay.max_logging_in.load(Ordering::SeqCst);
    assert!(
        (1..=2).contains(&most),
        "at most two connections logging in at once, saw {most}"
    );
}

/// One login at a time, a queue of one second, a mail server that takes three seconds to greet:
/// of two users' requests at once, one logs in and the other is told to come back (503 with
/// Retry-After), not left hanging.
#[tokio::test]
async fn a_login_that_gets_no_turn_in_time_is_told_to_retry() {
    let relay = LoginRelay::start().await;
    relay.greeting_delay_ms.store(3000, Ordering::SeqCst);
    let gw = gateway(&relay, LoginGate::new(1, Duration::from_secs(1))).await;
    let (a, a_pw) = new_user("queued");
    let (b, b_pw) = new_user("queued");

    let (first, second) = tokio::join!(options(&gw, &a, &a_pw), options(&gw, &b, &b_pw));

    let mut statuses = [first.0, second.0];
    statuses.sort();
    assert_eq!(statuses, [200, 503], "{first:?} {second:?}");
    let refused = if first.0 == 503 { first } else { second };
    let secs: u64 = refused
        .1
        .expect("503 has Retry-After")
        .parse()
        .expect("seconds");
    assert!(secs >= 1);
    assert_eq!(
        relay.logins(),
        1,
        "the refused request never reached the mail server"
    );
}
