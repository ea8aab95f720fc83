//! Logins at the door: a password guesser is stopped by the gateway after a few tries, before
//! the mail server is asked again, without slowing the other users of its address; credentials
//! of unreasonable length never reach the mail server. The gateway talks to the real Dovecot
//! through a relay that counts the IMAP LOGIN commands it sees.

mod common;

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use common::*;

/// An authenticated OPTIONS request (the cheapest request that needs a login), as sent by a
/// reverse proxy on behalf of `client_ip`: (HTTP status, Retry-After).
async fn options_as(
    gw: &TestGateway,
    client_ip: &str,
    authorization: &str,
) -> (u16, Option<String>) {
    let r = client()
        .request(reqwest::Method::OPTIONS, &gw.base)
        .header("Authorization", authorization)
        .header("X-Forwarded-For", client_ip)
        .send()
        .await
        .expect("OPTIONS");
    let retry = r
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().to_string());
    (r.status().as_u16(), retry)
}

/// The gateway, with its default `[auth]` limits, behind a proxy (127.0.0.1, trusted) that
/// forwards the client's address.
async fn gateway(relay: &LoginRelay, timeout_secs: Option<u64>) -> TestGateway {
    start_gateway_with(GatewayOptions {
        imap_port: Some(relay.port),
        server: "trusted_proxies = [\"127.0.0.1\"]",
        timeout_secs,
        ..Default::default()
    })
    .await
}

/// 50 wrong passwords for alice from one address, one after another: after a few the guesser
/// gets 429 with Retry-After and the mail server is not asked again; nothing answers 503; bob,
/// from the same address, logs in at once, and alice herself from elsewhere too.
#[tokio::test]
async fn a_password_guesser_is_stopped_without_slowing_its_neighbours() {
    let relay = LoginRelay::start().await;
    let gw = gateway(&relay, None).await;
    let (alice, alice_pw) = new_user("guessed");
    let (bob, bob_pw) = new_user("neighbour");
    const GUESSER: &str = "203.0.113.7";

    let mut statuses = Vec::new();
    for i in 0..50 {
        let (status, retry) = options_as(&gw, GUESSER, &basic(&alice, &format!("guess-{i}"))).await;
        assert_ne!(status, 503, "guess {i}: a guesser must not cause 503");
        if status == 429 {
            let secs: u64 = retry.expect("429 has Retry-After").parse().unwrap();
            assert!(secs >= 1);
        }
        statuses.push(status);
    }
    let first_429 = statuses
        .iter()
        .position(|s| *s == 429)
        .expect("the guesser was throttled");
    assert!(
        first_429 <= 3,
        "throttled only after {first_429} failures: {statuses:?}"
    );
    assert!(statuses[..first_429].iter().all(|s| *s == 401));
    assert!(
        statuses[first_429..].iter().all(|s| *s == 429),
        "{statuses:?}"
    );
    let asked = relay.logins();
    assert!(
        asked <= 3,
        "the mail server was asked {asked} times for 50 guesses"
    );

    // The neighbour behind the same address logs in at once.
    let started = Instant::now();
    let (status, _) = options_as(&gw, GUESSER, &basic(&bob, &bob_pw)).await;
    assert_eq!(status, 200, "bob from the guesser's address");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "bob waited {:?}",
        started.elapsed()
    );
    // And alice is not locked out from her own address.
    let (status, _) = options_as(&gw, "203.0.113.8", &basic(&alice, &alice_pw)).await;
    assert_eq!(status, 200, "alice from another address");
    assert_eq!(relay.logins(), asked + 2);
}

/// A login that does not finish in time from an address that has just failed is held up by the
/// mail server's penalty for that address (Dovecot delays every login from it): 429 with
/// Retry-After, not 503. From a clean address the same stall is an outage: 503.
#[tokio::test]
async fn a_login_stalled_after_failures_of_its_address_is_429_not_503() {
    let relay = LoginRelay::start().await;
    let gw = gateway(&relay, Some(2)).await;
    let (bob, bob_pw) = new_user("stalled");
    let (status, _) = options_as(&gw, "203.0.113.20", &basic(&bob, "wrong")).await;
    assert_eq!(status, 401);
    relay.stall.store(true, Ordering::SeqCst);
    let (status, retry) = options_as(&gw, "203.0.113.20", &basic(&bob, &bob_pw)).await;
    assert_eq!(status, 429, "delayed by its own address's failures");
    assert!(retry.is_some());
    let (status, retry) = options_as(&gw, "203.0.113.21", &basic(&bob, &bob_pw)).await;
    assert_eq!(
        status, 503,
        "no failures from this address: the mail server is unavailable"
    );
    assert!(retry.is_some());
}

/// A 16 KB password or user name is refused at the door with 401 and never sent to the mail
/// server; it counts as a failed login.
#[tokio::test]
async fn an_oversized_credential_is_refused_at_the_door_and_counted() {
    let relay = LoginRelay::start().await;
    let gw = gateway(&relay, None).await;
    let (alice, alice_pw) = new_user("oversized");
    const CLIENT: &str = "203.0.113.30";
    let long = "x".repeat(16 * 1024);

    let (status, _) = options_as(&gw, CLIENT, &basic(&long, "pw")).await;
    assert_eq!(status, 401, "16 KB user name");
    for _ in 0..2 {
        let (status, _) = options_as(&gw, CLIENT, &basic(&alice, &long)).await;
        assert_eq!(status, 401, "16 KB password");
    }
    assert_eq!(relay.logins(), 0, "the mail server never saw them");
    // The two refused passwords count: one more failure of alice from this address (the third
    // allowed per address and user) and she is throttled from here.
    let (status, _) = options_as(&gw, CLIENT, &basic(&alice, "wrong")).await;
    assert_eq!(status, 401);
    let (status, _) = options_as(&gw, CLIENT, &basic(&alice, &alice_pw)).await;
    assert_eq!(status, 429, "throttled after the oversized tries");
    assert_eq!(relay.logins(), 1);
    // A normal login of hers from another address is fine.
    let (status, _) = options_as(&gw, "203.0.113.31", &basic(&alice, &alice_pw)).await;
    assert_eq!(status, 200);
}
