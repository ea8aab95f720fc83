//! Drafts (EAS 16.1) through the gateway to Dovecot and Postfix: Sync Add / Change / Delete in
//! the Drafts folder in both shapes (a whole MIME message, fields with attachments), stable
//! ServerIds, a webmail-style edit over a second IMAP connection, Send, repeated ClientIds, and
//! pyactivesync's create_email_draft as an outside opinion.

mod common;

use std::time::{Duration, Instant};

use bytes::Bytes;
use common::*;
use eas_gateway::wbxml::tags::{
    airsync as a, airsyncbase as b, email, email2, item_operations as io,
};
use eas_gateway::wbxml::Element;

/// A provisioned 16.1 device with its Drafts folder synced to a first key.
struct Phone {
    dev: TestDevice,
    drafts: String,
    key: String,
}

async fn phone(gw: &TestGateway, user: &str, pw: &str) -> Phone {
    let dev = device_of(gw, user, pw, "16.1").await;
    let drafts = folder_id(&dev, "Drafts").await;
    let mut p = Phone {
        dev,
        drafts,
        key: "0".into(),
    };
    let r = p.sync(vec![]).await;
    assert_eq!(r.key.as_deref(), Some("1"));
    p
}

impl Phone {
    /// One Sync of the Drafts folder with these commands; keeps the new key.
    async fn sync(&mut self, commands: Vec<Element>) -> SyncResult {
        let key = self.key.clone();
        let r = self.sync_with_key(&key, commands).await;
        if let Some(k) = &r.key {
            self.key = k.clone();
        }
        r
    }

    async fn sync_with_key(&self, key: &str, commands: Vec<Element>) -> SyncResult {
        let mut req = sync_request(&self.drafts, key, 50, None);
        if !commands.is_empty() {
            let mut cmds = Element::new(a::COMMANDS);
            for cmd in commands {
                cmds.push(cmd);
            }
            push_commands(&mut req, cmds);
        }
        sync_result(&self.dev.post("Sync", &req).await)
    }
}

fn mime_body(raw: &str) -> Element {
    Element::new(b::BODY)
        .text_child(b::TYPE, "4")
        .text_child(b::DATA, raw)
}

/// A plain-text Body of a draft.
fn plain_body(text: &str) -> Element {
    Element::new(b::BODY)
        .text_child(b::TYPE, "1")
        .text_child(b::DATA, text)
}

fn add(client_id: &str, data: Element, send: bool) -> Element {
    let mut e = Element::new(a::ADD).text_child(a::CLIENT_ID, client_id);
    if send {
        e.push(Element::new(email2::SEND));
    }
    e.child(data)
}

fn change(server_id: &str, data: Element, send: bool) -> Element {
    let mut e = Element::new(a::CHANGE).text_child(a::SERVER_ID, server_id);
    if send {
        e.push(Element::new(email2::SEND));
    }
    e.child(data)
}

fn app_data() -> Element {
    Element::new(a::APPLICATION_DATA)
}

/// The per-item response of an Add: (ServerId, Status, ApplicationData).
/// Attachments adding one file (16.0 drafts).
fn new_file(client_id: &str, name: &str, bytes: &[u8]) -> Element {
    Element::new(b::ATTACHMENTS).child(
        Element::new(b::ADD)
            .text_child(b::CLIENT_ID, client_id)
            .text_child(b::METHOD, "1")
            .text_child(b::DISPLAY_NAME, name)
            .opaque_child(b::CONTENT, Bytes::from(bytes.to_vec())),
    )
}

fn add_response(r: &SyncResult, client_id: &str) -> (Option<String>, String, Option<Element>) {
    let rs = r.responses.as_ref().expect("Responses");
    let e = rs
        .all(a::ADD)
        .find(|e| e.text_of(a::CLIENT_ID) == Some(client_id))
        .expect("Add response for the ClientId");
    (
        e.text_of(a::SERVER_ID).map(str::to_string),
        e.text_of(a::STATUS).unwrap_or("").to_string(),
        e.first(a::APPLICATION_DATA).cloned(),
    )
}

fn nothing(r: &SyncResult) -> bool {
    r.adds.is_empty() && r.changes.is_empty() && r.deletes.is_empty() && r.soft_deletes.is_empty()
}

/// One message of a mailbox: UID, FLAGS text, raw bytes.
#[derive(Debug)]
struct Stored {
    uid: u32,
    flags: String,
    raw: Vec<u8>,
}

/// Every message of `mailbox`, read over a second IMAP connection.
async fn mailbox(user: &str, pw: &str, name: &str) -> Vec<Stored> {
    let t = imap(
        user,
        pw,
        &[
            &format!("SELECT \"{name}\""),
            "UID FETCH 1:* (UID FLAGS BODY.PEEK[])",
        ],
    )
    .await;
    let mut out = Vec::new();
    let mut rest = t.as_str();
    while let Some(start) = rest.find(" FETCH (") {
        let item = &rest[start..];
        let uid = item
            .split_once("UID ")
            .and_then(|(_, r)| r.split(|c: char| !c.is_ascii_digit()).next())
            .and_then(|u| u.parse().ok())
            .expect("UID");
        let flags = item
            .split_once("FLAGS (")
            .and_then(|(_, r)| r.split_once(')'))
            .map(|(f, _)| f.to_string())
            .unwrap_or_default();
        let open = item.find("BODY[] {").expect("literal") + "BODY[] {".len();
        let close = open + item[open..].find('}').unwrap();
        let n: usize = item[open..close].parse().unwrap();
        let raw = item.as_bytes()[close + 3..close + 3 + n].to_vec();
        out.push(Stored { uid, flags, raw });
        rest = &item[close + 3 + n..];
    }
    out
}

fn subject_of(raw: &[u8]) -> String {
    parsed(raw).subject().unwrap_or("").to_string()
}

fn attachment_of(raw: &[u8]) -> Option<Vec<u8>> {
    parsed(raw).attachment(0).map(|a| a.contents().to_vec())
}

/// A draft as a phone writes it whole, with one attachment.
fn draft_mime(from: &str, to: &str, subject: &str, message_id: &str, attachment: &[u8]) -> String {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD.encode(attachment);
    format!(
        "From: {from}\r\nTo: {to}\r\nSubject: {subject}\r\nMessage-ID: {message_id}\r\n\
         MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"B1\"\r\n\r\n\
         --B1\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nDraft text.\r\n\
         --B1\r\nContent-Type: application/octet-stream; name=\"d.bin\"\r\n\
         Content-Disposition: attachment; filename=\"d.bin\"\r\nContent-Transfer-Encoding: base64\r\n\r\n\
         {b64}\r\n--B1--\r\n"
    )
}

/// Mails in `mailbox` whose Subject is `subject`, waiting up to `wait` for `min` of them.
async fn with_subject(
    user: &str,
    pw: &str,
    name: &str,
    subject: &str,
    min: usize,
    wait: Duration,
) -> Vec<Stored> {
    let deadline = Instant::now() + wait;
    loop {
        let got: Vec<Stored> = mailbox(user, pw, name)
            .await
            .into_iter()
            .filter(|m| subject_of(&m.raw) == subject)
            .collect();
        if got.len() >= min || Instant::now() > deadline {
            return got;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[tokio::test]
async fn mime_draft_add_repeat_change_fetch_delete() {
    let gw = start_gateway().await;
    let (user, pw) = new_user("drafts");
    let mut p = phone(&gw, &user, &pw).await;
    let bytes: Vec<u8> = (0..3000u32).map(|i| (i * 13 % 256) as u8).collect();
    let s1 = unique("draft one");
    let mime = draft_mime(&user, "bob@example.test", &s1, "<d1@example.test>", &bytes);

    let before = p.key.clone();
    let r = p
        .sync(vec![add("c1", app_data().child(mime_body(&mime)), false)])
        .await;
    let (sid, st, _) = add_response(&r, "c1");
    assert_eq!(st, "1");
    let sid = sid.expect("ServerId");
    assert!(
        nothing(&r),
        "the device's own Add does not come back: {r:?}"
    );

    let stored = mailbox(&user, &pw, "Drafts").await;
    assert_eq!(stored.len(), 1);
    assert!(stored[0].flags.contains("\\Draft"), "{}", stored[0].flags);
    assert_eq!(subject_of(&stored[0].raw), s1);
    assert_eq!(attachment_of(&stored[0].raw).as_deref(), Some(&bytes[..]));
    assert_eq!(parsed(&stored[0].raw).message_id(), Some("d1@example.test"));
    let first_uid = stored[0].uid;

    // The phone lost the answer and repeats the Add with the same key and ClientId.
    let again = p
        .sync_with_key(
            &before,
            vec![add("c1", app_data().child(mime_body(&mime)), false)],
        )
        .await;
    let (sid2, st2, _) = add_response(&again, "c1");
    assert_eq!((sid2.as_deref(), st2.as_str()), (Some(sid.as_str()), "1"));
    assert!(nothing(&again), "{again:?}");
    p.key = again.key.clone().unwrap();
    assert_eq!(mailbox(&user, &pw, "Drafts").await.len(), 1, "one draft");
    assert!(p.sync(vec![]).await.empty, "nothing new for the device");

    // Change (a new whole message): the ServerId stays, the IMAP message is replaced.
    let s2 = unique("draft two");
    let mime2 = draft_mime(&user, "bob@example.test", &s2, "<d1@example.test>", b"v2");
    let r = p
        .sync(vec![change(
            &sid,
            app_data().child(mime_body(&mime2)),
            false,
        )])
        .await;
    assert!(nothing(&r), "{r:?}");
    let stored = mailbox(&user, &pw, "Drafts").await;
    assert_eq!(stored.len(), 1);
    assert_ne!(stored[0].uid, first_uid, "a new IMAP message");
    assert_eq!(subject_of(&stored[0].raw), s2);
    assert!(stored[0].flags.contains("\\Draft"));
    assert_eq!(attachment_of(&stored[0].raw).as_deref(), Some(&b"v2"[..]));
    assert!(
        p.sync(vec![]).await.empty,
        "the device's own Change does not come back"
    );

    // Fetch by the same ServerId gives the new version.
    let fetch = Element::new(a::FETCH).text_child(a::SERVER_ID, sid.clone());
    let r = p.sync(vec![fetch]).await;
    let f = r
        .responses
        .as_ref()
        .and_then(|rs| rs.first(a::FETCH).cloned())
        .expect("Fetch response");
    assert_eq!(f.text_of(a::STATUS), Some("1"));
    assert_eq!(f.text_of(a::SERVER_ID), Some(sid.as_str()));
    assert_eq!(
        f.first(a::APPLICATION_DATA)
            .and_then(|d| d.text_of(email::SUBJECT)),
        Some(s2.as_str())
    );

    // ItemOperations by the same ServerId gives the new version too.
    let fetch = Element::new(io::ITEM_OPERATIONS).child(
        Element::new(io::FETCH)
            .text_child(io::STORE, "Mailbox")
            .text_child(a::COLLECTION_ID, p.drafts.clone())
            .text_child(a::SERVER_ID, sid.clone()),
    );
    let body = p.dev.post("ItemOperations", &fetch).await.body.unwrap();
    let f = body
        .first(io::RESPONSE)
        .and_then(|r| r.first(io::FETCH))
        .expect("ItemOperations Fetch");
    assert_eq!(f.text_of(io::STATUS), Some("1"));
    assert_eq!(
        f.first(io::PROPERTIES)
            .and_then(|d| d.text_of(email::SUBJECT)),
        Some(s2.as_str())
    );

    // A second device of the user knows the draft by the same ServerId.
    let mut other = phone(&gw, &user, &pw).await;
    let r = other.sync(vec![]).await;
    assert_eq!(r.adds.len(), 1);
    assert_eq!(r.adds[0].0, sid);

    // Delete expunges it.
    let del = Element::new(a::DELETE).text_child(a::SERVER_ID, sid.clone());
    let r = p.sync(vec![del]).await;
    assert!(nothing(&r), "{r:?}");
    assert!(mailbox(&user, &pw, "Drafts").await.is_empty());
    assert!(p.sync(vec![]).await.empty);
    let r = other.sync(vec![]).await;
    assert_eq!(r.deletes, vec![sid], "the other device sees the Delete");
}

#[tokio::test]
async fn field_draft_with_attachments_add_change_delete_attachment() {
    let gw = start_gateway().await;
    let (user, pw) = new_user("fdrafts");
    let mut p = phone(&gw, &user, &pw).await;
    let bytes: Vec<u8> = (0..5000u32).map(|i| (i * 7 % 251) as u8).collect();
    let subject = unique("field draft");
    let data = app_data()
        .text_child(email::TO, "Bob <bob@example.test>, carol@example.test")
        .text_child(email::SUBJECT, subject.clone())
        .text_child(email::IMPORTANCE, "2")
        .child(plain_body("Hello from the draft."))
        .child(new_file("att-1", "numbers.bin", &bytes));
    let r = p.sync(vec![add("f1", data, false)]).await;
    let (sid, st, resp_data) = add_response(&r, "f1");
    assert_eq!(st, "1");
    let sid = sid.unwrap();
    let att = resp_data
        .as_ref()
        .and_then(|d| d.first(b::ATTACHMENTS))
        .and_then(|a| a.first(b::ATTACHMENT))
        .expect("Attachment in the Add response");
    assert_eq!(att.text_of(b::CLIENT_ID), Some("att-1"));
    let file_ref = att
        .text_of(b::FILE_REFERENCE)
        .expect("FileReference")
        .to_string();

    let stored = mailbox(&user, &pw, "Drafts").await;
    assert_eq!(stored.len(), 1);
    assert!(stored[0].flags.contains("\\Draft"));
    let m = parsed(&stored[0].raw);
    assert_eq!(m.subject(), Some(subject.as_str()));
    let to: Vec<&str> = m.to().unwrap().iter().filter_map(|a| a.address()).collect();
    assert_eq!(to, vec!["bob@example.test", "carol@example.test"]);
    assert_eq!(
        m.from().unwrap().first().unwrap().address(),
        Some(user.as_str())
    );
    assert_eq!(
        m.body_text(0).as_deref().map(str::trim),
        Some("Hello from the draft.")
    );
    assert_eq!(m.header_raw("Importance").map(str::trim), Some("high"));
    assert_eq!(attachment_of(&stored[0].raw), Some(bytes.clone()));

    // Change the subject only: the rest stays.
    let subject2 = unique("field draft renamed");
    let r = p
        .sync(vec![change(
            &sid,
            app_data().text_child(email::SUBJECT, subject2.clone()),
            false,
        )])
        .await;
    assert!(nothing(&r), "{r:?}");
    let stored = mailbox(&user, &pw, "Drafts").await;
    assert_eq!(stored.len(), 1);
    let m = parsed(&stored[0].raw);
    assert_eq!(m.subject(), Some(subject2.as_str()));
    assert_eq!(m.to().unwrap().iter().count(), 2);
    assert_eq!(
        m.body_text(0).as_deref().map(str::trim),
        Some("Hello from the draft.")
    );
    assert_eq!(attachment_of(&stored[0].raw), Some(bytes.clone()));

    // Delete the attachment by its FileReference.
    let r = p
        .sync(vec![change(
            &sid,
            app_data()
                .child(Element::new(b::ATTACHMENTS).child(
                    Element::new(b::DELETE).text_child(b::FILE_REFERENCE, file_ref.clone()),
                )),
            false,
        )])
        .await;
    assert!(nothing(&r), "{r:?}");
    let stored = mailbox(&user, &pw, "Drafts").await;
    assert_eq!(stored.len(), 1);
    assert_eq!(attachment_of(&stored[0].raw), None);
    assert_eq!(subject_of(&stored[0].raw), subject2);

    // A Change adding an attachment answers ClientId -> FileReference, and the reference
    // fetches the bytes.
    let more: Vec<u8> = (0..777u32).map(|i| (i % 97) as u8).collect();
    let r = p
        .sync(vec![change(
            &sid,
            app_data().child(new_file("att-2", "more.bin", &more)),
            false,
        )])
        .await;
    assert!(nothing(&r), "{r:?}");
    let resp = r
        .responses
        .as_ref()
        .and_then(|rs| rs.first(a::CHANGE).cloned())
        .expect("a Change response for the added attachment");
    assert_eq!(resp.text_of(a::SERVER_ID), Some(sid.as_str()));
    assert_eq!(resp.text_of(a::STATUS), Some("1"));
    let att = resp
        .first(a::APPLICATION_DATA)
        .and_then(|d| d.first(b::ATTACHMENTS))
        .and_then(|a| a.first(b::ATTACHMENT))
        .expect("Attachment");
    assert_eq!(att.text_of(b::CLIENT_ID), Some("att-2"));
    let reference = att.text_of(b::FILE_REFERENCE).unwrap();
    let fetch = Element::new(io::ITEM_OPERATIONS).child(fetch_file(reference, None));
    let body = p
        .dev
        .post("ItemOperations", &fetch)
        .await
        .body
        .expect("body");
    assert_eq!(io_data(io_results(&body)[0]), more);
    let stored = mailbox(&user, &pw, "Drafts").await;
    assert_eq!(stored.len(), 1);
    assert_eq!(attachment_of(&stored[0].raw), Some(more));
}

#[tokio::test]
async fn webmail_edit_arrives_as_a_change_with_the_same_server_id() {
    let gw = start_gateway().await;
    let (user, pw) = new_user("wdrafts");
    let mut p = phone(&gw, &user, &pw).await;
    let s1 = unique("before webmail");
    let mid = format!("<w{:x}@example.test>", rand::random::<u64>());
    let mime = draft_mime(&user, "bob@example.test", &s1, &mid, b"one");
    let r = p
        .sync(vec![add("w1", app_data().child(mime_body(&mime)), false)])
        .await;
    let sid = add_response(&r, "w1").0.unwrap();
    let old_uid = mailbox(&user, &pw, "Drafts").await[0].uid;

    // Webmail saves a new version (same Message-ID) and expunges the old one.
    let s2 = unique("after webmail");
    let edited = draft_mime(&user, "bob@example.test", &s2, &mid, b"two");
    let append = format!(
        "APPEND \"Drafts\" (\\Draft \\Seen) {{{}+}}\r\n{edited}",
        edited.len()
    );
    let store = format!("UID STORE {old_uid} +FLAGS.SILENT (\\Deleted)");
    imap(
        &user,
        &pw,
        &[&append, "SELECT \"Drafts\"", &store, "EXPUNGE"],
    )
    .await;

    let r = p.sync(vec![]).await;
    assert!(r.adds.is_empty() && r.deletes.is_empty(), "{r:?}");
    assert_eq!(r.changes.len(), 1, "{r:?}");
    assert_eq!(r.changes[0].0, sid, "the same ServerId");
    assert_eq!(r.changes[0].1.text_of(email::SUBJECT), Some(s2.as_str()));
    assert!(p.sync(vec![]).await.empty);

    // The phone edits it again: the webmail version is replaced, the ServerId stays.
    let s3 = unique("phone again");
    let mime3 = draft_mime(&user, "bob@example.test", &s3, &mid, b"three");
    let r = p
        .sync(vec![change(
            &sid,
            app_data().child(mime_body(&mime3)),
            false,
        )])
        .await;
    assert!(nothing(&r), "{r:?}");
    let stored = mailbox(&user, &pw, "Drafts").await;
    assert_eq!(stored.len(), 1);
    assert_eq!(subject_of(&stored[0].raw), s3);

    // A different draft made in webmail (another Message-ID) is an Add.
    let other = draft_mime(
        &user,
        "bob@example.test",
        "webmail only",
        "<x@y.test>",
        b"x",
    );
    append_draft(&user, &pw, &other).await;
    let r = p.sync(vec![]).await;
    assert_eq!(r.adds.len(), 1, "{r:?}");
    assert!(r.changes.is_empty() && r.deletes.is_empty());
    assert_ne!(r.adds[0].0, sid);
}

async fn append_draft(user: &str, pw: &str, raw: &str) {
    let append = format!("APPEND \"Drafts\" (\\Draft) {{{}+}}\r\n{raw}", raw.len());
    imap(user, pw, &[&append]).await;
}

#[tokio::test]
async fn send_from_drafts_delivers_keeps_a_sent_copy_and_no_draft() {
    let gw = start_gateway().await;
    let (user, pw) = new_user("sdrafts");
    let (bob, bob_pw) = new_user("sbob");
    let mut p = phone(&gw, &user, &pw).await;

    // A saved draft, then a Change with Send.
    let s1 = unique("draft then send");
    let mime = draft_mime(&user, &bob, &s1, "<s1@example.test>", b"payload");
    let r = p
        .sync(vec![add("s1", app_data().child(mime_body(&mime)), false)])
        .await;
    let sid = add_response(&r, "s1").0.unwrap();
    let before = p.key.clone();
    let r = p.sync(vec![change(&sid, app_data(), true)]).await;
    assert!(nothing(&r), "{r:?}");
    assert!(r.responses.is_none(), "success needs no response: {r:?}");
    let at_bob = with_subject(&bob, &bob_pw, "INBOX", &s1, 1, Duration::from_secs(20)).await;
    assert_eq!(at_bob.len(), 1);
    assert_eq!(
        attachment_of(&at_bob[0].raw).as_deref(),
        Some(&b"payload"[..])
    );
    let sent = with_subject(&user, &pw, "Sent", &s1, 1, Duration::from_secs(5)).await;
    assert_eq!(sent.len(), 1, "one Sent copy");
    assert!(
        mailbox(&user, &pw, "Drafts").await.is_empty(),
        "no draft left"
    );
    // The same request again (the phone lost the answer): not sent twice.
    let again = p
        .sync_with_key(&before, vec![change(&sid, app_data(), true)])
        .await;
    assert!(nothing(&again), "{again:?}");
    p.key = again.key.unwrap();

    // Add with Send: sent at once, nothing kept in Drafts, Bcc only in the Sent copy.
    let (carol, carol_pw) = new_user("scarol");
    let s2 = unique("add and send");
    let data = app_data()
        .text_child(email::TO, bob.clone())
        .text_child(email2::BCC, carol.clone())
        .text_child(email::SUBJECT, s2.clone())
        .child(plain_body("sent from the drafts folder"));
    let before = p.key.clone();
    let r = p.sync(vec![add("s2", data.clone(), true)]).await;
    assert_eq!(add_response(&r, "s2").1, "1");
    let r = p.sync_with_key(&before, vec![add("s2", data, true)]).await;
    assert_eq!(
        add_response(&r, "s2").1,
        "1",
        "a repeated Send answers success"
    );
    p.key = r.key.unwrap();
    let at_bob = with_subject(&bob, &bob_pw, "INBOX", &s2, 1, Duration::from_secs(20)).await;
    let at_carol = with_subject(&carol, &carol_pw, "INBOX", &s2, 1, Duration::from_secs(20)).await;
    assert_eq!((at_bob.len(), at_carol.len()), (1, 1));
    assert!(parsed(&at_bob[0].raw).bcc().is_none(), "no Bcc at bob");
    let sent = with_subject(&user, &pw, "Sent", &s2, 1, Duration::from_secs(5)).await;
    assert_eq!(sent.len(), 1);
    assert!(parsed(&sent[0].raw).bcc().is_some(), "Bcc kept in Sent");
    assert!(mailbox(&user, &pw, "Drafts").await.is_empty());
    tokio::time::sleep(Duration::from_secs(1)).await;
    let at_bob = with_subject(&bob, &bob_pw, "INBOX", &s2, 2, Duration::ZERO).await;
    assert_eq!(at_bob.len(), 1, "sent once");
    let at_bob = with_subject(&bob, &bob_pw, "INBOX", &s1, 2, Duration::ZERO).await;
    assert_eq!(at_bob.len(), 1, "sent once");
}

#[tokio::test]
async fn before_16_an_add_is_refused_and_adds_outside_drafts_too() {
    let gw = start_gateway().await;
    let (user, pw) = new_user("odrafts");
    let old = device_of(&gw, &user, &pw, "14.1").await;
    let drafts = folder_id(&old, "Drafts").await;
    let r = sync(&old, &drafts, "0", 10).await;
    let key = r.key.unwrap();
    let mime = draft_mime(&user, "bob@example.test", "old", "<o@example.test>", b"o");
    let req = Element::new(a::SYNC).child(
        Element::new(a::COLLECTIONS).child(
            Element::new(a::COLLECTION)
                .text_child(a::SYNC_KEY, key)
                .text_child(a::COLLECTION_ID, drafts)
                .child(Element::new(a::COMMANDS).child(add(
                    "o1",
                    app_data().child(mime_body(&mime)),
                    false,
                ))),
        ),
    );
    let r = sync_result(&old.post("Sync", &req).await);
    assert_eq!(add_response(&r, "o1").1, "6");
    assert!(mailbox(&user, &pw, "Drafts").await.is_empty());

    // 16.1, but in INBOX.
    let mut p = phone(&gw, &user, &pw).await;
    p.drafts = folder_id(&p.dev, "Inbox").await;
    p.key = "0".into();
    p.sync(vec![]).await;
    let r = p
        .sync(vec![add("i1", app_data().child(mime_body(&mime)), false)])
        .await;
    assert_eq!(add_response(&r, "i1").1, "6");
    assert!(mailbox(&user, &pw, "INBOX").await.is_empty());
}

#[tokio::test]
async fn pyactivesync_create_email_draft_is_on_the_server() {
    let gw = start_gateway().await;
    let (user, pw) = new_user("pydrafts");
    let subject = unique("pyactivesync draft");
    let host = gw.host();
    let script = r#"
import os, sys, warnings
for var in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"):
    os.environ.pop(var, None)
warnings.filterwarnings("ignore")
from email.message import EmailMessage
import pyactivesync
server, user, password, subject = sys.argv[1:5]
m = EmailMessage()
m["From"] = user
m["To"] = "bob@example.test"
m["Subject"] = subject
m.set_content("drafted by pyactivesync")
m.add_attachment(b"\x00\x01draft", maintype="application", subtype="octet-stream", filename="d.bin")
with pyactivesync.Client(server, user, password, device_id="PYDRAFT0001", verify_ssl=False) as c:
    drafts = {f.name: f for f in c.list_folders()}["Drafts"].id
    first = c.sync_folder(drafts)
    res = c.create_email_draft(drafts, first.sync_key, m, client_id="py-1")
    assert res.status == "1", res
    assert res.server_id, res
    again = c.sync_folder(drafts, res.sync_key)
    assert not again.added, again.added
    print(res.server_id)
"#;
    pyactivesync(
        &["-c", script, &host, &user, &pw, &subject],
        "create_email_draft",
    )
    .await;
    let stored = mailbox(&user, &pw, "Drafts").await;
    assert_eq!(stored.len(), 1);
    assert!(stored[0].flags.contains("\\Draft"));
    assert_eq!(subject_of(&stored[0].raw), subject);
    assert_eq!(
        attachment_of(&stored[0].raw).as_deref(),
        Some(&b"\x00\x01draft"[..])
    );
}

#[tokio::test]
async fn a_changed_draft_moves_by_its_server_id() {
    use eas_gateway::wbxml::tags::move_items as m;
    let gw = start_gateway().await;
    let (user, pw) = new_user("mvdraft");
    let mut p = phone(&gw, &user, &pw).await;
    let mime = draft_mime(
        &user,
        "bob@example.test",
        &unique("v1"),
        "<mv@example.test>",
        b"1",
    );
    let r = p
        .sync(vec![add("m1", app_data().child(mime_body(&mime)), false)])
        .await;
    let sid = add_response(&r, "m1").0.expect("ServerId");
    let s2 = unique("v2");
    let mime2 = draft_mime(&user, "bob@example.test", &s2, "<mv@example.test>", b"2");
    p.sync(vec![change(
        &sid,
        app_data().child(mime_body(&mime2)),
        false,
    )])
    .await;
    let inbox = folder_id(&p.dev, "Inbox").await;
    let req = Element::new(m::MOVE_ITEMS).child(
        Element::new(m::MOVE)
            .text_child(m::SRC_MSG_ID, sid.clone())
            .text_child(m::SRC_FLD_ID, p.drafts.clone())
            .text_child(m::DST_FLD_ID, inbox),
    );
    let body = p.dev.post("MoveItems", &req).await.body.unwrap();
    let resp = body.first(m::RESPONSE).expect("Response");
    assert_eq!(resp.text_of(m::STATUS), Some("3"), "moved");
    assert!(mailbox(&user, &pw, "Drafts").await.is_empty());
    let moved = mailbox(&user, &pw, "INBOX").await;
    assert_eq!(moved.len(), 1);
    assert_eq!(subject_of(&moved[0].raw), s2, "the newest version moved");
}

#[tokio::test]
async fn an_edited_drafts_attachment_is_fetched_by_the_reference_its_item_shows() {
    let gw = start_gateway().await;
    let (user, pw) = new_user("editedatt");
    let mut p = phone(&gw, &user, &pw).await;
    let bytes: Vec<u8> = (0..3000u32).map(|i| (i * 13 % 251) as u8).collect();
    let data = app_data()
        .text_child(email::TO, "bob@example.test")
        .text_child(email::SUBJECT, unique("draft with a file"))
        .child(plain_body("See the file."))
        .child(new_file("att-1", "file.bin", &bytes));
    let r = p.sync(vec![add("e1", data, false)]).await;
    let sid = add_response(&r, "e1").0.expect("ServerId");
    // Editing the draft replaces its mail: the first version is expunged.
    let r = p
        .sync(vec![change(
            &sid,
            app_data().text_child(email::SUBJECT, unique("draft renamed")),
            false,
        )])
        .await;
    assert!(nothing(&r), "{r:?}");
    assert_eq!(mailbox(&user, &pw, "Drafts").await.len(), 1);

    // The item, fetched by its ServerId, lists the attachment under a FileReference.
    let fetch_item = Element::new(io::ITEM_OPERATIONS).child(fetch_mail(&p.drafts, &sid));
    let body = p
        .dev
        .post("ItemOperations", &fetch_item)
        .await
        .body
        .expect("body");
    let reference = io_results(&body)[0]
        .first(io::PROPERTIES)
        .and_then(|p| p.first(b::ATTACHMENTS))
        .and_then(|a| a.first(b::ATTACHMENT))
        .and_then(|a| a.text_of(b::FILE_REFERENCE))
        .expect("the item's attachment")
        .to_string();

    // That reference reads the file, through ItemOperations and GetAttachment.
    let fetch = Element::new(io::ITEM_OPERATIONS).child(fetch_file(&reference, None));
    let body = p
        .dev
        .post("ItemOperations", &fetch)
        .await
        .body
        .expect("body");
    let result = io_results(&body)[0];
    assert_eq!(result.text_of(io::STATUS), Some("1"), "{result:?}");
    assert_eq!(io_data(result), bytes);

    let old = device_of(&gw, &user, &pw, "12.1").await;
    let resp = old.get_attachment(&reference).await;
    assert_eq!(resp.status().as_u16(), 200);
    assert_eq!(resp.bytes().await.expect("body")[..], bytes[..]);
}
