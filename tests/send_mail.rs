//! SendMail through the gateway to the dev stack's Postfix (submission on 587) and back out of
//! Dovecot: 14.1 WBXML and 12.1 raw MIME, Sent Items, Bcc, ClientId retries, refusals, SMTP
//! outage, a 20 MB attachment, and pyactivesync as an outside opinion.

mod common;

use std::time::{Duration, Instant};

use base64::Engine;
use bytes::Bytes;
use common::*;
use eas_gateway::wbxml::tags::compose_mail as cm;
use eas_gateway::wbxml::Element;

/// A gateway like `start_gateway`, with this file's SMTP port, body limit and timeouts.
async fn gateway(smtp_port: u16, max_body_bytes: usize) -> TestGateway {
    gateway_on(smtp_port, max_body_bytes, None).await
}

/// The same, keeping its state in another gateway's state file (a restart).
async fn gateway_on(
    smtp_port: u16,
    max_body_bytes: usize,
    state_url: Option<String>,
) -> TestGateway {
    start_gateway_with(GatewayOptions {
        smtp_port: Some(smtp_port),
        max_body_bytes: Some(max_body_bytes),
        timeout_secs: Some(10),
        state_url,
        ..Default::default()
    })
    .await
}

fn send_mail(client_id: &str, save: bool, mime: &[u8]) -> Element {
    let mut root = Element::new(cm::SEND_MAIL).text_child(cm::CLIENT_ID, client_id);
    if save {
        root.push(Element::new(cm::SAVE_IN_SENT_ITEMS));
    }
    root.opaque_child(cm::MIME, Bytes::copy_from_slice(mime))
}

/// A message with one attachment.
fn message(from: &str, to: &str, extra: &str, subject: &str, attachment: &[u8]) -> Vec<u8> {
    let b64 = base64::engine::general_purpose::STANDARD.encode(attachment);
    let mut wrapped = String::with_capacity(b64.len() + b64.len() / 38);
    for line in b64.as_bytes().chunks(76) {
        wrapped.push_str(std::str::from_utf8(line).unwrap());
        wrapped.push_str("\r\n");
    }
    format!(
        "From: {from}\r\nTo: {to}\r\n{extra}Subject: {subject}\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"XYZ\"\r\n\r\n--XYZ\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nHello from the phone.\r\n--XYZ\r\nContent-Type: application/octet-stream; name=\"data.bin\"\r\nContent-Disposition: attachment; filename=\"data.bin\"\r\nContent-Transfer-Encoding: base64\r\n\r\n{wrapped}--XYZ--\r\n"
    )
    .into_bytes()
}

/// The same in the device user's Sent folder.
async fn sent_of(
    d: &TestDevice,
    subject: &str,
    min: usize,
    wait: Duration,
) -> Vec<(String, Vec<u8>)> {
    mails_with_subject(&d.user, &d.password, "Sent", subject, min, wait).await
}

fn header_names(raw: &[u8]) -> Vec<String> {
    let text = String::from_utf8_lossy(raw);
    let head = text.split("\r\n\r\n").next().unwrap_or("");
    head.lines()
        .filter(|l| !l.starts_with([' ', '\t']))
        .filter_map(|l| l.split_once(':').map(|(n, _)| n.to_ascii_lowercase()))
        .collect()
}

fn attachment_of(raw: &[u8]) -> Vec<u8> {
    parsed(raw)
        .attachment(0)
        .expect("an attachment")
        .contents()
        .to_vec()
}

#[tokio::test]
async fn sendmail_14_1_delivers_with_attachment_bcc_and_one_sent_copy() {
    let gw = gateway(587, 4 << 20).await;
    let alice = provisioned(&gw, "alice", "14.1").await.0;
    let (bob, bob_pw) = new_user("bob");
    let (carol, carol_pw) = new_user("carol");
    let subject = unique("SendMail 14.1");
    let bytes: Vec<u8> = (0..150_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let mime = message(
        &format!("Alice <{}>", alice.user.to_uppercase()),
        &bob,
        &format!("Bcc: {carol}\r\n"),
        &subject,
        &bytes,
    );
    let r = alice.post("SendMail", &send_mail("c-1", true, &mime)).await;
    assert_eq!(r.status, 200);
    assert!(r.raw.is_empty(), "success has no body: {:?}", r.body);

    let at_bob =
        mails_with_subject(&bob, &bob_pw, "INBOX", &subject, 1, Duration::from_secs(20)).await;
    assert_eq!(at_bob.len(), 1, "delivered once to bob");
    assert_eq!(
        attachment_of(&at_bob[0].1),
        bytes,
        "attachment bytes intact"
    );
    let names = header_names(&at_bob[0].1);
    assert!(
        !names.contains(&"bcc".to_string()),
        "no Bcc at bob: {names:?}"
    );
    assert!(names.contains(&"message-id".to_string()) && names.contains(&"date".to_string()));

    let at_carol = mails_with_subject(
        &carol,
        &carol_pw,
        "INBOX",
        &subject,
        1,
        Duration::from_secs(20),
    )
    .await;
    assert_eq!(at_carol.len(), 1, "the Bcc recipient gets it");
    assert!(!header_names(&at_carol[0].1).contains(&"bcc".to_string()));

    let sent = sent_of(&alice, &subject, 1, Duration::from_secs(5)).await;
    assert_eq!(sent.len(), 1, "exactly one Sent copy");
    assert!(
        sent[0].0.contains("\\Seen"),
        "Sent copy is read: {}",
        sent[0].0
    );
    assert!(
        header_names(&sent[0].1).contains(&"bcc".to_string()),
        "Bcc kept in Sent"
    );
    assert_eq!(attachment_of(&sent[0].1), bytes);
}

#[tokio::test]
async fn same_client_id_twice_answers_118_and_sends_once() {
    let gw = gateway(587, 1 << 20).await;
    let alice = provisioned(&gw, "alice", "14.1").await.0;
    let (bob, bob_pw) = new_user("bob");
    let subject = unique("retry");
    let mime = message(&alice.user, &bob, "", &subject, b"x");
    let first = alice
        .post("SendMail", &send_mail("same-id", false, &mime))
        .await;
    assert_eq!(first.status, 200);
    assert!(first.raw.is_empty());
    let second = alice
        .post("SendMail", &send_mail("same-id", false, &mime))
        .await;
    assert_eq!(second.status, 200);
    assert_eq!(compose_status(&second).as_deref(), Some("118"));
    // Another ClientId is another message.
    let third = alice
        .post("SendMail", &send_mail("other-id", false, &mime))
        .await;
    assert!(third.raw.is_empty());
    let got =
        mails_with_subject(&bob, &bob_pw, "INBOX", &subject, 2, Duration::from_secs(20)).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let again = mails_with_subject(&bob, &bob_pw, "INBOX", &subject, 3, Duration::ZERO).await;
    assert_eq!((got.len(), again.len()), (2, 2), "one mail per ClientId");
    let sent = sent_of(&alice, &subject, 0, Duration::ZERO).await;
    assert!(sent.is_empty(), "no Sent copy without SaveInSentItems");
}

#[tokio::test]
async fn same_client_id_after_a_restart_answers_118_and_sends_once() {
    let first_gw = gateway(587, 1 << 20).await;
    let alice = provisioned(&first_gw, "alice", "14.1").await.0;
    let (bob, bob_pw) = new_user("bob");
    let subject = unique("restart retry");
    let mime = message(&alice.user, &bob, "", &subject, b"x");
    let first = alice
        .post("SendMail", &send_mail("kept-id", false, &mime))
        .await;
    assert_eq!(first.status, 200);
    assert!(first.raw.is_empty(), "{:?}", compose_status(&first));

    // The record is in the state file, not in this process.
    let db = rusqlite::Connection::open(first_gw.dir.path().join("state.db")).unwrap();
    let sent: i64 = db
        .query_row(
            "SELECT count(*) FROM send_records WHERE user_name = ?1 AND sent = 1",
            [&alice.user.to_lowercase()],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(sent, 1, "one sent record for alice in the state file");
    drop(db);

    // The gateway restarts on the same state file; the phone, which lost the answer, retries.
    first_gw.shutdown.send(true).unwrap();
    let second_gw = gateway_on(587, 1 << 20, Some(first_gw.config.state_url.clone())).await;
    let mut again = TestDevice::new(&second_gw, &alice.user, &alice.password, "14.1");
    again.device_id = alice.device_id.clone();
    again.policy_key = alice.policy_key;
    let second = again
        .post("SendMail", &send_mail("kept-id", false, &mime))
        .await;
    assert_eq!(second.status, 200);
    assert_eq!(compose_status(&second).as_deref(), Some("118"));

    let got =
        mails_with_subject(&bob, &bob_pw, "INBOX", &subject, 1, Duration::from_secs(20)).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let again = mails_with_subject(&bob, &bob_pw, "INBOX", &subject, 2, Duration::ZERO).await;
    assert_eq!((got.len(), again.len()), (1, 1), "bob has the mail once");
}

#[tokio::test]
async fn sendmail_12_1_raw_mime_with_save_in_sent() {
    let gw = gateway(587, 1 << 20).await;
    let alice = provisioned(&gw, "alice", "12.1").await.0;
    let (bob, bob_pw) = new_user("bob");
    let subject = unique("SendMail 12.1");
    // Bare LF line ends, no Message-ID, no Date: the gateway fixes all three.
    let mime = format!(
        "From: {}\nTo: {bob}\nSubject: {subject}\n\nplain body\n",
        alice.user
    );
    let url = format!("{}?{}&SaveInSent=T", alice.base, alice.query("SendMail"));
    let r = alice
        .post_raw(&url, mime.clone().into_bytes(), "message/rfc822")
        .await;
    assert_eq!(r.status, 200);
    assert!(r.raw.is_empty());
    let at_bob =
        mails_with_subject(&bob, &bob_pw, "INBOX", &subject, 1, Duration::from_secs(20)).await;
    assert_eq!(at_bob.len(), 1);
    assert!(String::from_utf8_lossy(&at_bob[0].1).contains("plain body\r\n"));
    let sent = sent_of(&alice, &subject, 1, Duration::from_secs(5)).await;
    assert_eq!(sent.len(), 1);
    assert!(sent[0].0.contains("\\Seen"));

    // The phone retries the same message (no ClientId in 12.x): success, not sent again.
    let r = alice
        .post_raw(&url, mime.into_bytes(), "message/rfc822")
        .await;
    assert_eq!(r.status, 200);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let at_bob = mails_with_subject(&bob, &bob_pw, "INBOX", &subject, 2, Duration::ZERO).await;
    assert_eq!(at_bob.len(), 1, "a 12.x retry is not sent twice");
}

#[tokio::test]
async fn refusals_before_smtp() {
    let gw = gateway(587, 1 << 20).await;
    let alice = provisioned(&gw, "alice", "14.1").await.0;
    let (bob, bob_pw) = new_user("bob");
    let subject = unique("forged");
    let forged = message("someone-else@example.test", &bob, "", &subject, b"x");
    let r = alice
        .post("SendMail", &send_mail("f-1", true, &forged))
        .await;
    assert_eq!(
        compose_status(&r).as_deref(),
        Some("130"),
        "From of another user"
    );
    let nobody = format!("From: {}\r\nSubject: {subject}\r\n\r\nx\r\n", alice.user);
    let r = alice
        .post("SendMail", &send_mail("f-2", false, nobody.as_bytes()))
        .await;
    assert_eq!(compose_status(&r).as_deref(), Some("119"), "no recipient");

    let old = provisioned(&gw, "alice12", "12.1").await.0;
    let url = format!("{}?{}", old.base, old.query("SendMail"));
    let r = old.post_raw(&url, forged.clone(), "message/rfc822").await;
    assert_eq!(r.status, 500, "12.x: From of another user");

    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(
        mails_with_subject(&bob, &bob_pw, "INBOX", &subject, 0, Duration::ZERO)
            .await
            .is_empty()
    );
    assert!(sent_of(&alice, &subject, 0, Duration::ZERO)
        .await
        .is_empty());
}

#[tokio::test]
async fn smtp_down_answers_503_and_a_retry_then_sends() {
    let unused = free_port();
    let down = gateway(unused, 1 << 20).await;
    let alice = provisioned(&down, "alice", "14.1").await.0;
    let (bob, bob_pw) = new_user("bob");
    let subject = unique("outage");
    let mime = message(&alice.user, &bob, "", &subject, b"x");
    let r = alice.post("SendMail", &send_mail("o-1", true, &mime)).await;
    assert_eq!(r.status, 503, "14.1 with SMTP down");
    assert!(r.headers.get("retry-after").is_some());
    let old = provisioned(&down, "alice12", "12.1").await.0;
    let url = format!("{}?{}", old.base, old.query("SendMail"));
    let mime12 = message(&old.user, &bob, "", &subject, b"x");
    let r = old.post_raw(&url, mime12, "message/rfc822").await;
    assert_eq!(r.status, 503, "12.1 with SMTP down");
    assert!(sent_of(&alice, &subject, 0, Duration::ZERO)
        .await
        .is_empty());

    // The same ClientId once SMTP is back (the gateway restarted on the same state file): it
    // was not sent, so the retry sends it.
    down.shutdown.send(true).unwrap();
    let up = gateway_on(587, 1 << 20, Some(down.config.state_url.clone())).await;
    let mut again = TestDevice::new(&up, &alice.user, &alice.password, "14.1");
    again.device_id = alice.device_id.clone();
    again.provision().await;
    let r = again
        .post("SendMail", &send_mail("o-1", false, &mime))
        .await;
    assert_eq!(r.status, 200);
    assert!(r.raw.is_empty(), "{:?}", compose_status(&r));
    assert_eq!(
        mails_with_subject(&bob, &bob_pw, "INBOX", &subject, 1, Duration::from_secs(20))
            .await
            .len(),
        1
    );
}

/// Peak resident memory of this test process, in MiB (Linux).
fn peak_rss_mib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<u64>().ok())
        })
        .map_or(0, |kb| kb / 1024)
}

#[tokio::test]
async fn twenty_mb_attachment_goes_through() {
    let gw = gateway(587, 64 << 20).await;
    let alice = provisioned(&gw, "alice", "14.1").await.0;
    let (bob, bob_pw) = new_user("bob");
    let subject = unique("big");
    let bytes: Vec<u8> = (0..20u32 << 20)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect();
    let mime = message(&alice.user, &bob, "", &subject, &bytes);
    let body = eas_gateway::wbxml::encode(&send_mail("big-1", true, &mime));
    drop(mime);
    let before = peak_rss_mib();
    let started = Instant::now();
    let url = format!("{}?{}", alice.base, alice.query("SendMail"));
    let r = alice
        .post_raw(&url, body, "application/vnd.ms-sync.wbxml")
        .await;
    let elapsed = started.elapsed();
    assert_eq!(r.status, 200);
    assert!(r.raw.is_empty(), "{:?}", compose_status(&r));
    eprintln!(
        "20 MB attachment: SendMail answered in {:.2} s; peak RSS of the test process {} MiB (before the request {} MiB)",
        elapsed.as_secs_f64(),
        peak_rss_mib(),
        before
    );
    let got =
        mails_with_subject(&bob, &bob_pw, "INBOX", &subject, 1, Duration::from_secs(60)).await;
    assert_eq!(got.len(), 1);
    assert!(attachment_of(&got[0].1) == bytes, "20 MB attachment intact");
    let sent = sent_of(&alice, &subject, 1, Duration::from_secs(5)).await;
    assert_eq!(sent.len(), 1);
}

#[tokio::test]
async fn too_large_for_the_mail_limit_is_status_122() {
    // The limit is checked on the MIME, before anything is sent; the HTTP limit must be larger.
    let limit = eas_gateway::commands::send_mail::MAX_MESSAGE_BYTES;
    let gw = gateway(587, limit + (2 << 20)).await;
    let alice = provisioned(&gw, "alice", "14.1").await.0;
    let mut mime = format!(
        "From: {}\r\nTo: x@example.test\r\nSubject: huge\r\n\r\n",
        alice.user
    )
    .into_bytes();
    mime.resize(limit + 1, b'a');
    let r = alice
        .post("SendMail", &send_mail("huge-1", false, &mime))
        .await;
    assert_eq!(compose_status(&r).as_deref(), Some("122"));
    let old = provisioned(&gw, "alice12", "12.1").await.0;
    let url = format!("{}?{}", old.base, old.query("SendMail"));
    let r = old.post_raw(&url, mime, "message/rfc822").await;
    assert_eq!(r.status, 413);
}

#[tokio::test]
async fn pyactivesync_send_mail_is_delivered() {
    let gw = gateway(587, 1 << 20).await;
    let (alice, alice_pw) = new_user("pyalice");
    let (bob, bob_pw) = new_user("pybob");
    let subject = unique("pyactivesync");
    let host = gw.host();
    let script = r#"
import os, sys, warnings
for var in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"):
    os.environ.pop(var, None)
warnings.filterwarnings("ignore")
from email.message import EmailMessage
import pyactivesync
server, user, password, to, subject = sys.argv[1:6]
m = EmailMessage()
m["From"] = user
m["To"] = to
m["Subject"] = subject
m.set_content("sent by pyactivesync")
m.add_attachment(b"\x00\x01py", maintype="application", subtype="octet-stream", filename="py.bin")
with pyactivesync.Client(server, user, password, device_id="PYSEND0001", verify_ssl=False) as c:
    c.send_mail(m, save_in_sent_items=True)
print("ok")
"#;
    pyactivesync(
        &["-c", script, &host, &alice, &alice_pw, &bob, &subject],
        "send_mail",
    )
    .await;
    let got =
        mails_with_subject(&bob, &bob_pw, "INBOX", &subject, 1, Duration::from_secs(20)).await;
    assert_eq!(got.len(), 1);
    assert_eq!(attachment_of(&got[0].1), b"\x00\x01py");
    let sent = mails_with_subject(
        &alice,
        &alice_pw,
        "Sent",
        &subject,
        1,
        Duration::from_secs(5),
    )
    .await;
    assert_eq!(sent.len(), 1);
}
