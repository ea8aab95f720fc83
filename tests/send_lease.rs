//! A gateway that dies in the middle of an SMTP submission (the real binary, SIGKILL), and the
//! phone's retry of the same ClientId against a new gateway process on the same state file:
//!
//! - killed after the whole message was written (the server had it, no reply yet): while the
//!   dead process's claim lease runs the retry is answered 503 "still being sent"; after it,
//!   Status 120 MailSubmissionFailed, and nothing is sent again (the real Postfix never gets
//!   the mail, no Sent copy); the store says "unknown" and the log says so;
//! - killed before DATA (the server stalled at MAIL FROM): after the lease the retry sends the
//!   mail once through the real Postfix, and it arrives exactly once.
//!
//! The dead gateway's submission server is a fault injector in this file: it speaks SMTP up
//! to a chosen point and then holds the connection without answering.

mod common;

use std::time::{Duration, Instant};

use bytes::Bytes;
use common::*;
use eas_gateway::wbxml;
use eas_gateway::wbxml::tags::compose_mail as cm;
use eas_gateway::wbxml::Element;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

/// The dead gateway's SMTP timeout and claim lease: the lease is above the timeout (the
/// configuration insists), and the timeout far above the moment of the kill.
const DEAD_SMTP: &str = "timeout_secs = 10\nclaim_lease_secs = 20";

/// Where the stalling server stops answering.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum StallAt {
    /// After `MAIL FROM` (nothing of the message was sent).
    MailFrom,
    /// After the message's final dot (the server has the whole message).
    AfterData,
    /// After the final dot, the server closes the connection without answering.
    CloseAfterData,
}

/// An SMTP submission server that answers greeting, EHLO, AUTH, MAIL, RCPT and DATA like
/// Postfix, and stops answering at `at` (reading on, holding the connection). The receiver
/// fires when it got there.
async fn stalling_smtp(at: StallAt) -> (u16, tokio::sync::oneshot::Receiver<()>) {
    smtp_fault(at, None).await
}

/// The same; with `answer_when`, the server answers the final dot with 250 once that fires.
async fn smtp_fault(
    at: StallAt,
    answer_when: Option<tokio::sync::oneshot::Receiver<()>>,
) -> (u16, tokio::sync::oneshot::Receiver<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let (tx, rx) = tokio::sync::oneshot::channel();
    let mut answer_when = answer_when;
    tokio::spawn(async move {
        let mut tx = Some(tx);
        // One connection is all the dead gateway makes.
        let Ok((s, _)) = listener.accept().await else {
            return;
        };
        let (r, mut w) = s.into_split();
        let mut r = BufReader::new(r);
        let _ = w.write_all(b"220 stall.example.test ESMTP\r\n").await;
        let mut line = String::new();
        let mut in_data = false;
        let mut stalled = false;
        loop {
            line.clear();
            match r.read_line(&mut line).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
            if stalled {
                continue;
            }
            if in_data {
                if line == ".\r\n" {
                    in_data = false;
                    if at == StallAt::CloseAfterData {
                        if let Some(tx) = tx.take() {
                            let _ = tx.send(());
                        }
                        return;
                    }
                    if at == StallAt::AfterData {
                        stalled = true;
                        if let Some(tx) = tx.take() {
                            let _ = tx.send(());
                        }
                        if let Some(when) = answer_when.take() {
                            let _ = when.await;
                            stalled = false;
                            if w.write_all(b"250 2.0.0 Ok: queued as SLOW\r\n")
                                .await
                                .is_err()
                            {
                                return;
                            }
                        }
                    }
                }
                continue;
            }
            let upper = line.to_ascii_uppercase();
            let reply: &[u8] = if upper.starts_with("EHLO") {
                b"250-stall.example.test\r\n250-AUTH PLAIN LOGIN\r\n250-8BITMIME\r\n250 SIZE 100000000\r\n"
            } else if upper.starts_with("AUTH") {
                b"235 2.7.0 Authentication successful\r\n"
            } else if upper.starts_with("MAIL") {
                if at == StallAt::MailFrom {
                    stalled = true;
                    if let Some(tx) = tx.take() {
                        let _ = tx.send(());
                    }
                    continue;
                }
                b"250 2.1.0 Ok\r\n"
            } else if upper.starts_with("RCPT") {
                b"250 2.1.5 Ok\r\n"
            } else if upper.starts_with("DATA") {
                in_data = true;
                b"354 End data with <CR><LF>.<CR><LF>\r\n"
            } else if upper.starts_with("QUIT") {
                let _ = w.write_all(b"221 2.0.0 Bye\r\n").await;
                return;
            } else {
                b"250 2.0.0 Ok\r\n"
            };
            if w.write_all(reply).await.is_err() {
                return;
            }
        }
    });
    (port, rx)
}

fn send_mail(client_id: &str, mime: &[u8]) -> Element {
    Element::new(cm::SEND_MAIL)
        .text_child(cm::CLIENT_ID, client_id)
        .child(Element::new(cm::SAVE_IN_SENT_ITEMS))
        .opaque_child(cm::MIME, Bytes::copy_from_slice(mime))
}

/// A SendMail that may never be answered (the gateway dies under it).
async fn post_unanswered(dev: &TestDevice, body: &Element) -> reqwest::Result<reqwest::Response> {
    let url = format!("{}?{}", dev.base, dev.query("SendMail"));
    dev.client
        .post(&url)
        .header("Authorization", dev.auth())
        .header("MS-ASProtocolVersion", dev.version)
        .header("X-MS-PolicyKey", dev.policy_key.unwrap().to_string())
        .header("Content-Type", "application/vnd.ms-sync.wbxml")
        .body(wbxml::encode(body))
        .send()
        .await
}

/// The phase of the user's send claims in the state file.
fn phases(dir: &std::path::Path, user: &str) -> Vec<String> {
    let db = rusqlite::Connection::open(dir.join("state.db")).unwrap();
    let mut st = db
        .prepare("SELECT phase FROM send_records WHERE user_name = ?1")
        .unwrap();
    let rows = st
        .query_map([user.to_lowercase()], |r| r.get::<_, String>(0))
        .unwrap();
    rows.map(Result::unwrap).collect()
}

/// Starts the dead gateway, sends the message with `client_id` through it, and SIGKILLs it
/// once the stalling server reached `at`. Returns the device (its base still the dead one).
async fn send_and_kill(
    dir: &std::path::Path,
    at: StallAt,
    user: &str,
    pw: &str,
    client_id: &str,
    mime: &[u8],
) -> TestDevice {
    let (smtp_port, reached) = stalling_smtp(at).await;
    let port = free_port();
    let mut child = start_binary_with(dir, port, smtp_port, DEAD_SMTP).await;
    let mut dev = TestDevice::plain_http(port, user, pw, "14.1");
    dev.provision().await;
    let first = {
        let dev = dev.clone();
        let body = send_mail(client_id, mime);
        tokio::spawn(async move { post_unanswered(&dev, &body).await })
    };
    tokio::time::timeout(Duration::from_secs(30), reached)
        .await
        .expect("the submission reaches the stalling server")
        .unwrap();
    child.start_kill().expect("SIGKILL");
    child.wait().await.unwrap();
    let first = first.await.unwrap();
    assert!(
        first.is_err(),
        "the first SendMail is never answered: {first:?}"
    );
    dev
}

/// A new gateway process on the same state file, submitting to the real Postfix; the device
/// now talks to it.
async fn restart(dir: &std::path::Path, dev: &mut TestDevice) -> tokio::process::Child {
    let port = free_port();
    let child = start_binary_with(dir, port, 587, DEAD_SMTP).await;
    dev.base = format!("http://127.0.0.1:{port}/Microsoft-Server-ActiveSync");
    child
}

/// Retries until the answer is no longer 503 (the lease of the dead process ran out).
async fn retry_after_lease(dev: &TestDevice, body: &Element) -> Reply {
    // The lease is 20 s from the dead process's last renewal: a generous guard.
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let r = dev.post("SendMail", body).await;
        if r.status != 503 {
            return r;
        }
        assert!(
            Instant::now() < deadline,
            "still 503 \"being sent\" two minutes after the gateway died"
        );
    }
}

#[tokio::test]
async fn killed_after_data_answers_503_then_120_and_never_sends_a_copy() {
    let (user, pw) = new_user("lease-unknown");
    let (bob, bob_pw) = new_user("bob");
    let dir = tempfile::tempdir().unwrap();
    let subject = unique("killed after data");
    let mime = format!("From: {user}\r\nTo: {bob}\r\nSubject: {subject}\r\n\r\nhello\r\n");
    let mut dev = send_and_kill(
        dir.path(),
        StallAt::AfterData,
        &user,
        &pw,
        "lease-1",
        mime.as_bytes(),
    )
    .await;
    assert_eq!(phases(dir.path(), &user), ["data"], "DATA was recorded");

    let mut gw = restart(dir.path(), &mut dev).await;
    let body = send_mail("lease-1", mime.as_bytes());
    let during = dev.post("SendMail", &body).await;
    assert_eq!(during.status, 503, "while the lease runs: still being sent");
    assert!(during.headers.get("retry-after").is_some());

    let after = retry_after_lease(&dev, &body).await;
    assert_eq!(after.status, 200);
    assert_eq!(
        compose_status(&after).as_deref(),
        Some("120"),
        "MailSubmissionFailed once the outcome is unknown"
    );
    let again = dev.post("SendMail", &body).await;
    assert_eq!(
        compose_status(&again).as_deref(),
        Some("120"),
        "and stays so"
    );
    assert_eq!(phases(dir.path(), &user), ["unknown"]);

    // The real Postfix never got it: nothing at bob, no Sent copy.
    let at_bob =
        uids_with_subject(&bob, &bob_pw, "INBOX", &subject, 1, Duration::from_secs(5)).await;
    assert!(at_bob.is_empty(), "no copy delivered: {at_bob:?}");
    let sent = uids_with_subject(&user, &pw, "Sent", &subject, 1, Duration::ZERO).await;
    assert!(sent.is_empty(), "no Sent copy: {sent:?}");

    gw.start_kill().unwrap();
    gw.wait().await.unwrap();
    let log = std::fs::read_to_string(dir.path().join("gw.log")).unwrap();
    let line = log
        .lines()
        .find(|l| l.contains("WARN") && l.contains("outcome unknown"))
        .unwrap_or_else(|| panic!("a warning about the unknown outcome:\n{log}"));
    assert!(
        line.contains(&user) && line.contains(&dev.device_id) && line.contains("lease-1"),
        "{line}"
    );
    assert!(
        !line.contains("hello") && !line.contains(&subject),
        "{line}"
    );
}

#[tokio::test]
async fn killed_before_data_sends_once_on_retry() {
    let (user, pw) = new_user("lease-resend");
    let (bob, bob_pw) = new_user("bob");
    let dir = tempfile::tempdir().unwrap();
    let subject = unique("killed before data");
    let mime = format!("From: {user}\r\nTo: {bob}\r\nSubject: {subject}\r\n\r\nhello\r\n");
    let mut dev = send_and_kill(
        dir.path(),
        StallAt::MailFrom,
        &user,
        &pw,
        "lease-2",
        mime.as_bytes(),
    )
    .await;
    assert_eq!(phases(dir.path(), &user), ["claimed"]);

    let _gw = restart(dir.path(), &mut dev).await;
    let body = send_mail("lease-2", mime.as_bytes());
    let during = dev.post("SendMail", &body).await;
    assert_eq!(during.status, 503, "while the lease runs: still being sent");
    assert!(during.headers.get("retry-after").is_some());

    let after = retry_after_lease(&dev, &body).await;
    assert_eq!(after.status, 200);
    assert!(
        after.raw.is_empty(),
        "sent: {:?}",
        compose_status(&after).as_deref()
    );
    let once = dev.post("SendMail", &body).await;
    assert_eq!(compose_status(&once).as_deref(), Some("118"), "not again");
    assert_eq!(phases(dir.path(), &user), ["sent"]);

    let at_bob =
        uids_with_subject(&bob, &bob_pw, "INBOX", &subject, 1, Duration::from_secs(20)).await;
    assert_eq!(at_bob.len(), 1, "delivered");
    tokio::time::sleep(Duration::from_secs(2)).await;
    let at_bob = uids_with_subject(&bob, &bob_pw, "INBOX", &subject, 2, Duration::ZERO).await;
    assert_eq!(at_bob.len(), 1, "exactly once");
    let sent = uids_with_subject(&user, &pw, "Sent", &subject, 1, Duration::from_secs(5)).await;
    assert_eq!(sent.len(), 1, "one Sent copy");
}

#[tokio::test]
async fn connection_lost_after_data_is_unknown_and_a_retry_answers_120() {
    let (smtp_port, reached) = stalling_smtp(StallAt::CloseAfterData).await;
    let gw = start_gateway_with(GatewayOptions {
        smtp_port: Some(smtp_port),
        timeout_secs: Some(10),
        ..Default::default()
    })
    .await;
    let (dev, user, _) = provisioned(&gw, "lease-lost", "14.1").await;
    let mime = format!("From: {user}\r\nTo: {user}\r\nSubject: lost\r\n\r\nhello\r\n");
    let body = send_mail("lease-3", mime.as_bytes());
    let first = dev.post("SendMail", &body).await;
    reached.await.unwrap();
    assert_eq!(first.status, 200);
    assert_eq!(compose_status(&first).as_deref(), Some("120"));
    let retry = dev.post("SendMail", &body).await;
    assert_eq!(
        compose_status(&retry).as_deref(),
        Some("120"),
        "the outcome stays unknown: failed, not sent again"
    );
    assert_eq!(phases(gw.dir.path(), &user), ["unknown"]);
}

#[tokio::test]
async fn a_live_submission_longer_than_the_lease_keeps_its_claim() {
    // The lease (2 s) is far below the SMTP timeout (30 s): only renewals keep the claim.
    let (answer, answer_when) = tokio::sync::oneshot::channel();
    let (smtp_port, reached) = smtp_fault(StallAt::AfterData, Some(answer_when)).await;
    let (gw, _server) = start_gateway_server(
        GatewayOptions {
            smtp_port: Some(smtp_port),
            timeout_secs: Some(30),
            ..Default::default()
        },
        |c| c.smtp_claim_lease = Duration::from_secs(2),
    )
    .await;
    let (dev, user, _) = provisioned(&gw, "lease-live", "14.1").await;
    let mime = format!("From: {user}\r\nTo: {user}\r\nSubject: slow\r\n\r\nhello\r\n");
    let body = send_mail("lease-4", mime.as_bytes());
    let first = {
        let (dev, body) = (dev.clone(), body.clone());
        tokio::spawn(async move { dev.post("SendMail", &body).await })
    };
    tokio::time::timeout(Duration::from_secs(30), reached)
        .await
        .unwrap()
        .unwrap();
    // Three leases later the submission is still waiting for the server's answer.
    tokio::time::sleep(Duration::from_secs(6)).await;
    let during = dev.post("SendMail", &body).await;
    assert_eq!(during.status, 503, "still being sent, not judged dead");
    assert_eq!(phases(gw.dir.path(), &user), ["data"]);
    answer.send(()).unwrap();
    let first = first.await.unwrap();
    assert_eq!(first.status, 200);
    assert!(first.raw.is_empty(), "{:?}", compose_status(&first));
    let after = dev.post("SendMail", &body).await;
    assert_eq!(compose_status(&after).as_deref(), Some("118"));
    assert_eq!(phases(gw.dir.path(), &user), ["sent"]);
}
