//! Many phones at once (a gateway restart, a network coming back): their logins queue for the
//! mail server a few at a time instead of all at once, the queue time does not count against
//! the IMAP timeout, and a login that gets no turn in time is a clear 503 with Retry-After. The
//! gateway talks to the real Dovecot through a relay that slows every new connection down and
//! records how many were logging in at the same time.

mod common;

use std::sync::atomic::Ordering;
use std::time::Duration;

use common::*;
use eas_gateway::backend::login_gate::LoginGate;

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

/// A Ping whose login waited for its turn still answers when the phone expects it: the
/// heartbeat counts from the request's arrival, not from the end of the queue. Two users ping
/// at once with a 20 s heartbeat through a mail server that takes 4 s to greet, one login at a
/// time (the second user's login, and the IMAP watchers' logins, queue behind the first): both
/// answer "no changes" about 20 s after they were sent, not 20 s after their logins.
#[tokio::test]
async fn a_ping_that_queued_for_its_login_keeps_its_heartbeat() {
    use eas_gateway::wbxml::tags::ping as p;
    use eas_gateway::wbxml::Element;
    let relay = LoginRelay::start().await;
    let (gw, _server) = start_gateway_server(
        GatewayOptions {
            imap_port: Some(relay.port),
            timeout_secs: Some(20),
            ..Default::default()
        },
        |cfg| {
            cfg.imap.logins = LoginGate::new(1, Duration::from_secs(60));
            // Every request logs in (no remembered login), as after a restart.
            cfg.auth.cache_ttl = Duration::ZERO;
            cfg.push.min_heartbeat_secs = 2;
        },
    )
    .await;
    let mut devices = Vec::new();
    for _ in 0..2 {
        let (user, pw) = new_user("queuedping");
        let dev = device_of(&gw, &user, &pw, "16.1").await;
        let inbox = folder_id(&dev, "Inbox").await;
        full_sync(&dev, &inbox, 100).await;
        devices.push((dev, inbox));
    }
    relay.greeting_delay_ms.store(4000, Ordering::SeqCst);

    const HEARTBEAT: u64 = 20;
    let pings = devices.iter().map(|(dev, inbox)| async move {
        let body = Element::new(p::PING)
            .text_child(p::HEARTBEAT_INTERVAL, HEARTBEAT.to_string())
            .child(
                Element::new(p::FOLDERS).child(
                    Element::new(p::FOLDER)
                        .text_child(p::ID, inbox.as_str())
                        .text_child(p::CLASS, "Email"),
                ),
            );
        let sent = std::time::Instant::now();
        let r = dev.post("Ping", &body).await;
        (
            r.status,
            r.body.and_then(|b| b.text_of(p::STATUS).map(String::from)),
            sent.elapsed(),
        )
    });
    let answers = futures::future::join_all(pings).await;

    for (status, ping_status, took) in &answers {
        assert_eq!(*status, 200, "{answers:?}");
        assert_eq!(ping_status.as_deref(), Some("1"), "{answers:?}");
        assert!(
            *took >= Duration::from_secs(HEARTBEAT - 1),
            "answered before its heartbeat: {answers:?}"
        );
        assert!(
            *took < Duration::from_secs(HEARTBEAT + 4),
            "answered well after the heartbeat the phone counts: {answers:?}"
        );
    }
}
