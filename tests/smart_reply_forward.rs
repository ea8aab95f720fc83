//! SmartReply and SmartForward through the gateway: the original is read from the user's
//! INBOX (and stays unread), quoted or attached, the mail goes through Postfix to the
//! recipient, and the original gets \Answered / $Forwarded. 14.1 WBXML and 12.1 raw MIME.

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::*;
use eas_gateway::wbxml::tags::{compose_mail as cm, folder_hierarchy as fh};
use eas_gateway::wbxml::Element;

/// A provisioned device after FolderSync; returns it and the INBOX's collection id.
async fn ready(gw: &TestGateway, version: &'static str) -> (TestDevice, String) {
    let d = provisioned(gw, "smart", version).await.0;
    let fs = d.folder_sync("0").await;
    let inbox = fs
        .first(fh::CHANGES)
        .expect("Changes")
        .all(fh::ADD)
        .find(|a| a.text_of(fh::TYPE) == Some("2"))
        .and_then(|a| a.text_of(fh::SERVER_ID))
        .expect("INBOX in FolderSync")
        .to_string();
    (d, inbox)
}

/// APPENDs a mail (unread) to the user's INBOX; its UID.
async fn deliver_original(user: &str, pw: &str, raw: &str) -> u32 {
    let cmd = format!("APPEND INBOX {{{}+}}\r\n{raw}", raw.len());
    let t = imap(user, pw, &[&cmd]).await;
    t.split("APPENDUID ")
        .nth(1)
        .and_then(|r| r.split_whitespace().nth(1))
        .and_then(|u| u.trim_end_matches(']').parse().ok())
        .expect("APPENDUID")
}

/// The FETCH FLAGS line of the device user's INBOX mail `uid`.
async fn flags_of(d: &TestDevice, uid: u32) -> String {
    let t = imap(
        &d.user,
        &d.password,
        &["SELECT INBOX", &format!("UID FETCH {uid} FLAGS")],
    )
    .await;
    t.lines()
        .find(|l| l.contains(" FETCH ("))
        .unwrap_or("")
        .to_string()
}

/// The one mail with `subject` in the user's INBOX, waiting up to 20 s for the delivery.
async fn received(user: &str, pw: &str, subject: &str) -> Vec<u8> {
    let got = mails_with_subject(user, pw, "INBOX", subject, 1, Duration::from_secs(20)).await;
    assert_eq!(got.len(), 1);
    got.into_iter().next().unwrap().1
}

/// Asserts the device user's Sent folder holds one mail with `subject`.
async fn one_sent_copy(d: &TestDevice, subject: &str) {
    let sent = mails_with_subject(
        &d.user,
        &d.password,
        "Sent",
        subject,
        1,
        Duration::from_secs(5),
    )
    .await;
    assert_eq!(sent.len(), 1);
}

fn smart(
    root: eas_gateway::wbxml::Tag,
    client_id: &str,
    folder: &str,
    item: &str,
    replace: bool,
    mime: &str,
) -> Element {
    let mut e = Element::new(root)
        .text_child(cm::CLIENT_ID, client_id)
        .child(Element::new(cm::SAVE_IN_SENT_ITEMS))
        .child(
            Element::new(cm::SOURCE)
                .text_child(cm::FOLDER_ID, folder)
                .text_child(cm::ITEM_ID, item),
        );
    if replace {
        e.push(Element::new(cm::REPLACE_MIME));
    }
    e.opaque_child(cm::MIME, Bytes::copy_from_slice(mime.as_bytes()))
}

const ALTERNATIVE_LATIN1: &str = "Content-Type: multipart/alternative; boundary=\"alt\"\r\n\r\n--alt\r\nContent-Type: text/plain; charset=iso-8859-1\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\nViele Gr=FC=DFe aus M=FCnchen\r\n--alt\r\nContent-Type: text/html; charset=iso-8859-1\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n<html><body><p>Viele <b>Gr=FC=DFe</b></p></body></html>\r\n--alt--\r\n";

#[tokio::test]
async fn smart_reply_14_1_quotes_plain_and_html_and_sets_answered() {
    let gw = start_gateway().await;
    let (alice, inbox) = ready(&gw, "14.1").await;
    let (bob, bob_pw) = new_user("bob");
    let subject = unique("Lunch");
    let original = format!(
        "From: Bob <{bob}>\r\nTo: {}\r\nSubject: {subject}\r\nMessage-ID: <orig-{subject_id}@example.test>\r\nDate: Mon, 1 Jan 2024 10:00:00 +0100\r\nMIME-Version: 1.0\r\n{ALTERNATIVE_LATIN1}",
        alice.user,
        subject_id = rand::random::<u32>()
    );
    let uid = deliver_original(&alice.user, &alice.password, &original).await;
    let reply = format!(
        "From: {}\r\nTo: {bob}\r\nSubject: Re: {subject}\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nSounds good.\r\n",
        alice.user
    );
    let req = smart(
        cm::SMART_REPLY,
        "r-1",
        &inbox,
        &format!("{inbox}:{uid}"),
        false,
        &reply,
    );
    let r = alice.post("SmartReply", &req).await;
    assert_eq!(r.status, 200);
    assert!(r.raw.is_empty(), "status {:?}", compose_status(&r));

    let got = received(&bob, &bob_pw, &format!("Re: {subject}")).await;
    let m = parsed(&got);
    let text = m.body_text(0).unwrap();
    assert!(text.starts_with("Sounds good."), "{text}");
    assert!(text.contains("> Viele Grüße aus München"), "{text}");
    let html = m.body_html(0).unwrap();
    assert!(
        html.contains("<b>Grüße</b>") && html.contains("<blockquote"),
        "{html}"
    );
    assert!(m
        .in_reply_to()
        .as_text()
        .is_some_and(|id| id.starts_with("orig-")));

    let flags = flags_of(&alice, uid).await;
    assert!(flags.contains("\\Answered"), "{flags}");
    assert!(
        !flags.contains("\\Seen"),
        "the original stays unread: {flags}"
    );
    one_sent_copy(&alice, &format!("Re: {subject}")).await;
}

#[tokio::test]
async fn smart_forward_14_1_carries_the_attachment_and_sets_forwarded() {
    let gw = start_gateway().await;
    let (alice, inbox) = ready(&gw, "14.1").await;
    let (carol, carol_pw) = new_user("carol");
    let subject = unique("Report");
    let original = format!(
        "From: boss@example.test\r\nTo: {}\r\nSubject: {subject}\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"mx\"\r\n\r\n--mx\r\nContent-Type: text/html; charset=utf-8\r\n\r\n<p>numbers attached</p>\r\n--mx\r\nContent-Type: application/pdf; name=\"q3.pdf\"\r\nContent-Disposition: attachment; filename=\"q3.pdf\"\r\nContent-Transfer-Encoding: base64\r\n\r\nJVBERi0xLjQKJcOkw7zDtsOfCg==\r\n--mx--\r\n",
        alice.user
    );
    let uid = deliver_original(&alice.user, &alice.password, &original).await;
    let fwd = format!(
        "From: {}\r\nTo: {carol}\r\nSubject: Fwd: {subject}\r\n\r\nFYI\r\n",
        alice.user
    );
    let req = smart(
        cm::SMART_FORWARD,
        "f-1",
        &inbox,
        &format!("{inbox}:{uid}"),
        false,
        &fwd,
    );
    let r = alice.post("SmartForward", &req).await;
    assert!(r.raw.is_empty(), "status {:?}", compose_status(&r));
    let got = received(&carol, &carol_pw, &format!("Fwd: {subject}")).await;
    let m = parsed(&got);
    assert_eq!(m.attachment_count(), 1);
    let a = m.attachment(0).unwrap();
    use mail_parser::MimeHeaders;
    assert_eq!(a.attachment_name(), Some("q3.pdf"));
    assert_eq!(
        a.contents(),
        b"%PDF-1.4\n%\xc3\xa4\xc3\xbc\xc3\xb6\xc3\x9f\n"
    );
    assert!(m.body_text(0).unwrap().contains("numbers attached"));
    let flags = flags_of(&alice, uid).await;
    assert!(flags.contains("$Forwarded"), "{flags}");
    assert!(!flags.contains("\\Seen"), "{flags}");
}

#[tokio::test]
async fn smart_reply_12_1_raw_mime_with_query_parameters() {
    let gw = start_gateway().await;
    let (alice, inbox) = ready(&gw, "12.1").await;
    let (bob, bob_pw) = new_user("bob");
    let subject = unique("Plain");
    let original = format!(
        "From: {bob}\r\nTo: {}\r\nSubject: {subject}\r\n\r\nfirst line\r\nsecond line\r\n",
        alice.user
    );
    let uid = deliver_original(&alice.user, &alice.password, &original).await;
    let reply = format!(
        "From: {}\r\nTo: {bob}\r\nSubject: Re: {subject}\r\n\r\nok\r\n",
        alice.user
    );
    let url = format!(
        "{}?{}&CollectionId={inbox}&ItemId={inbox}:{uid}&SaveInSent=T",
        alice.base,
        alice.query("SmartReply")
    );
    let r = alice
        .post_raw(&url, reply.into_bytes(), "message/rfc822")
        .await;
    assert_eq!(r.status, 200);
    assert!(r.raw.is_empty());
    let got = received(&bob, &bob_pw, &format!("Re: {subject}")).await;
    let text = parsed(&got).body_text(0).unwrap().into_owned();
    assert!(text.contains("> first line\r\n> second line"), "{text}");
    assert!(flags_of(&alice, uid).await.contains("\\Answered"));
    one_sent_copy(&alice, &format!("Re: {subject}")).await;

    // An original that does not exist: HTTP 500, nothing sent.
    let url = format!(
        "{}?{}&CollectionId={inbox}&ItemId={inbox}:999999",
        alice.base,
        alice.query("SmartForward")
    );
    let fwd = format!(
        "From: {}\r\nTo: {bob}\r\nSubject: ghost {subject}\r\n\r\nx\r\n",
        alice.user
    );
    let r = alice
        .post_raw(&url, fwd.into_bytes(), "message/rfc822")
        .await;
    assert_eq!(r.status, 500);
}

#[tokio::test]
async fn replace_mime_missing_original_and_long_id() {
    let gw = start_gateway().await;
    let (alice, inbox) = ready(&gw, "14.1").await;
    let (bob, bob_pw) = new_user("bob");
    let subject = unique("Whole");
    let original = format!(
        "From: {bob}\r\nTo: {}\r\nSubject: {subject}\r\n\r\noriginal text\r\n",
        alice.user
    );
    let uid = deliver_original(&alice.user, &alice.password, &original).await;

    // ReplaceMime: the device's message goes out as it is, and the original is still flagged.
    let whole = format!(
        "From: {}\r\nTo: {bob}\r\nSubject: Re: {subject}\r\n\r\nmy own full text\r\n",
        alice.user
    );
    let req = smart(
        cm::SMART_REPLY,
        "w-1",
        &inbox,
        &format!("{inbox}:{uid}"),
        true,
        &whole,
    );
    let r = alice.post("SmartReply", &req).await;
    assert!(r.raw.is_empty(), "status {:?}", compose_status(&r));
    let got = received(&bob, &bob_pw, &format!("Re: {subject}")).await;
    let text = String::from_utf8_lossy(&got).into_owned();
    assert!(
        text.contains("my own full text") && !text.contains("original text"),
        "{text}"
    );
    assert!(flags_of(&alice, uid).await.contains("\\Answered"));

    // An original that vanished: 150.
    let req = smart(
        cm::SMART_FORWARD,
        "w-2",
        &inbox,
        &format!("{inbox}:999999"),
        false,
        &whole,
    );
    let r = alice.post("SmartForward", &req).await;
    assert_eq!(compose_status(&r).as_deref(), Some("150"));

    // A LongId that names no Search result: 150.
    let req = Element::new(cm::SMART_FORWARD)
        .text_child(cm::CLIENT_ID, "w-3")
        .child(Element::new(cm::SOURCE).text_child(cm::LONG_ID, "RgAAAAD"))
        .opaque_child(cm::MIME, Bytes::copy_from_slice(whole.as_bytes()));
    let r = alice.post("SmartForward", &req).await;
    assert_eq!(compose_status(&r).as_deref(), Some("150"));
}
