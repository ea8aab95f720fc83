//! ItemOperations against the real dev Dovecot: Fetch of a mail and of an attachment (whole and
//! by byte range) returns what was appended and leaves the mail unread; EmptyFolderContents
//! empties folders; Move moves a conversation's mails; unsupported operations and unknown items
//! get their statuses.

mod common;

use base64::Engine;
use common::*;
use eas_gateway::wbxml::tags::{
    airsync as a, airsyncbase as b, item_operations as io, search as s,
};
use eas_gateway::wbxml::Element;

const BODY_TEXT: &str = "Hello from the body, with a unique marker 7f3a.";

fn attachment_bytes() -> Vec<u8> {
    (0..1000u32).map(|i| (i * 7 % 256) as u8).collect()
}

fn mail_with_attachment() -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(attachment_bytes());
    let wrapped: Vec<&str> = b64
        .as_bytes()
        .chunks(76)
        .map(|c| std::str::from_utf8(c).unwrap())
        .collect();
    format!(
        "From: Sender <sender@example.org>\r\nTo: someone@example.test\r\nSubject: With attachment\r\n\
         Message-ID: <att-{:016x}@example.org>\r\nDate: Thu, 26 Nov 2026 10:00:00 +0000\r\n\
         MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"XYZ\"\r\n\r\n\
         --XYZ\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n{BODY_TEXT}\r\n\
         --XYZ\r\nContent-Type: application/octet-stream; name=\"data.bin\"\r\n\
         Content-Disposition: attachment; filename=\"data.bin\"\r\n\
         Content-Transfer-Encoding: base64\r\n\r\n{}\r\n--XYZ--\r\n",
        rand::random::<u64>(),
        wrapped.join("\r\n")
    )
}

async fn item_operations(dev: &TestDevice, ops: Vec<Element>) -> Element {
    let mut root = Element::new(io::ITEM_OPERATIONS);
    for op in ops {
        root.push(op);
    }
    let r = dev.post("ItemOperations", &root).await;
    assert_eq!(r.status, 200, "ItemOperations HTTP status");
    r.body.expect("ItemOperations body")
}

async fn unread(user: &str, pw: &str, mailbox: &str, uid: u32) -> bool {
    let t = imap(
        user,
        pw,
        &[
            &format!("SELECT \"{mailbox}\""),
            &format!("UID FETCH {uid} (FLAGS)"),
        ],
    )
    .await;
    let line = t
        .lines()
        .find(|l| l.contains("FETCH ("))
        .unwrap_or_else(|| panic!("{t}"));
    !line.contains("\\Seen")
}

#[tokio::test]
async fn fetch_mail_and_attachment_without_marking_read() {
    let gw = start_gateway().await;
    let (dev, user, pw) = provisioned(&gw, "iofetch", "16.1").await;
    append(&user, &pw, "INBOX", &mail_with_attachment(), None).await;
    let uid = uids_in(&imap(&user, &pw, &["SELECT INBOX", "UID SEARCH ALL"]).await)[0];
    let inbox = folder_id(&dev, "Inbox").await;
    let sid = format!("{inbox}:{uid}");

    let resp = item_operations(&dev, vec![fetch_mail(&inbox, &sid)]).await;
    let r = io_results(&resp);
    assert_eq!(r.len(), 1);
    let fetch = r[0];
    assert_eq!(fetch.tag, io::FETCH);
    assert_eq!(fetch.text_of(io::STATUS), Some("1"));
    assert_eq!(fetch.text_of(a::SERVER_ID), Some(sid.as_str()));
    assert_eq!(fetch.text_of(a::COLLECTION_ID), Some(inbox.as_str()));
    assert_eq!(fetch.text_of(a::CLASS), Some("Email"));
    let props = fetch.first(io::PROPERTIES).expect("Properties");
    let body = props
        .first(b::BODY)
        .and_then(|bd| bd.text_of(b::DATA))
        .expect("Body Data");
    assert!(body.contains(BODY_TEXT), "{body}");
    assert!(
        unread(&user, &pw, "INBOX", uid).await,
        "fetching the mail marked it read"
    );

    // The attachment, by the FileReference the mail's properties name.
    let reference = props
        .first(b::ATTACHMENTS)
        .and_then(|at| at.first(b::ATTACHMENT))
        .and_then(|at| at.text_of(b::FILE_REFERENCE))
        .expect("an attachment with a FileReference")
        .to_string();
    let want = attachment_bytes();
    let resp = item_operations(&dev, vec![fetch_file(&reference, None)]).await;
    let fetch = io_results(&resp)[0];
    assert_eq!(fetch.text_of(io::STATUS), Some("1"));
    assert_eq!(fetch.text_of(b::FILE_REFERENCE), Some(reference.as_str()));
    let props = fetch.first(io::PROPERTIES).expect("Properties");
    assert_eq!(
        props.text_of(b::CONTENT_TYPE),
        Some("application/octet-stream")
    );
    assert_eq!(io_data(fetch), want);

    // Byte ranges, and a URL-encoded reference.
    let encoded = reference.replace(':', "%3a");
    let resp = item_operations(
        &dev,
        vec![
            fetch_file(&reference, Some("0-99")),
            fetch_file(&encoded, Some("900-2000")),
            fetch_file(&reference, Some("1000-1001")),
            fetch_file(&reference, Some("9-3")),
        ],
    )
    .await;
    let r = io_results(&resp);
    assert_eq!(io_data(r[0]), want[..100].to_vec());
    let p = r[0].first(io::PROPERTIES).unwrap();
    assert_eq!(p.text_of(io::RANGE), Some("0-99"));
    assert_eq!(p.text_of(io::TOTAL), Some("1000"));
    assert_eq!(io_data(r[1]), want[900..].to_vec());
    assert_eq!(
        r[1].first(io::PROPERTIES).unwrap().text_of(io::RANGE),
        Some("900-999")
    );
    assert_eq!(r[2].text_of(io::STATUS), Some("8"));
    assert_eq!(r[3].text_of(io::STATUS), Some("8"));
    assert!(
        unread(&user, &pw, "INBOX", uid).await,
        "fetching the attachment marked it read"
    );
}

#[tokio::test]
async fn unknown_items_and_unsupported_operations() {
    let gw = start_gateway().await;
    let (dev, user, pw) = provisioned(&gw, "ioerr", "16.1").await;
    append(&user, &pw, "INBOX", &mail("plain", "no attachments"), None).await;
    let uid = uids_in(&imap(&user, &pw, &["SELECT INBOX", "UID SEARCH ALL"]).await)[0];
    let inbox = folder_id(&dev, "Inbox").await;
    let resp = item_operations(
        &dev,
        vec![
            fetch_mail(&inbox, &format!("{inbox}:999999")),
            fetch_mail("987654", "987654:1"),
            Element::new(io::FETCH)
                .text_child(io::STORE, "Mailbox")
                .text_child(s::LONG_ID, "RgAAAA"),
            fetch_file(&format!("{inbox}:{uid}:5"), None),
            fetch_file("garbage", None),
            Element::new(io::FETCH)
                .text_child(io::STORE, "DocumentLibrary")
                .text_child(a::SERVER_ID, "x"),
            Element::new(io::MOVE)
                .child(Element::with_text(io::CONVERSATION_ID, "abc"))
                .text_child(io::DST_FLD_ID, &inbox),
        ],
    )
    .await;
    let r = io_results(&resp);
    let statuses: Vec<&str> = r
        .iter()
        .map(|e| e.text_of(io::STATUS).unwrap_or(""))
        .collect();
    // The Move has no MoveAlways: 155 (MS-ASCMD 2.2.3.118).
    assert_eq!(statuses, vec!["6", "6", "6", "15", "15", "9", "155"]);
    assert_eq!(r[2].text_of(s::LONG_ID), Some("RgAAAA"));
    assert_eq!(r[6].tag, io::MOVE);

    // A malformed request: top-level Status 2.
    let bad = dev
        .post(
            "ItemOperations",
            &Element::new(io::ITEM_OPERATIONS).child(Element::new(io::FETCH)),
        )
        .await;
    assert_eq!(bad.status, 200);
    assert_eq!(bad.body.expect("body").text_of(io::STATUS), Some("2"));
}

#[tokio::test]
async fn empty_folder_contents_moves_to_trash_and_empties_trash() {
    let gw = start_gateway().await;
    let (dev, user, pw) = provisioned(&gw, "ioempty", "16.1").await;
    imap(&user, &pw, &["CREATE Old", "CREATE Old/Sub"]).await;
    append(&user, &pw, "Old", &mail("a", "a"), None).await;
    append(&user, &pw, "Old", &mail("b", "b"), None).await;
    let old = folder_id(&dev, "Old").await;
    let trash = folder_id(&dev, "Trash").await;

    let resp = item_operations(
        &dev,
        vec![Element::new(io::EMPTY_FOLDER_CONTENTS).text_child(a::COLLECTION_ID, &old)],
    )
    .await;
    let r = io_results(&resp);
    assert_eq!(r[0].tag, io::EMPTY_FOLDER_CONTENTS);
    assert_eq!(r[0].text_of(io::STATUS), Some("1"));
    assert_eq!(r[0].text_of(a::COLLECTION_ID), Some(old.as_str()));
    let t = imap(
        &user,
        &pw,
        &[
            "STATUS Old (MESSAGES)",
            "STATUS Trash (MESSAGES)",
            "LIST \"\" Old/Sub",
        ],
    )
    .await;
    assert!(
        t.contains("\"Old\" (MESSAGES 0)") || t.contains("Old (MESSAGES 0)"),
        "{t}"
    );
    assert!(t.contains("Trash (MESSAGES 2)"), "{t}");
    assert!(
        t.contains("Old/Sub"),
        "subfolders stay without DeleteSubFolders: {t}"
    );

    // Trash itself is expunged; DeleteSubFolders removes subfolders.
    let resp = item_operations(
        &dev,
        vec![
            Element::new(io::EMPTY_FOLDER_CONTENTS).text_child(a::COLLECTION_ID, &trash),
            Element::new(io::EMPTY_FOLDER_CONTENTS)
                .text_child(a::COLLECTION_ID, &old)
                .child(Element::new(io::OPTIONS).child(Element::new(io::DELETE_SUB_FOLDERS))),
            Element::new(io::EMPTY_FOLDER_CONTENTS).text_child(a::COLLECTION_ID, "987654"),
        ],
    )
    .await;
    let statuses: Vec<&str> = io_results(&resp)
        .iter()
        .map(|e| e.text_of(io::STATUS).unwrap_or(""))
        .collect();
    assert_eq!(statuses, vec!["1", "1", "6"]);
    let t = imap(
        &user,
        &pw,
        &["STATUS Trash (MESSAGES)", "LIST \"\" \"Old*\""],
    )
    .await;
    assert!(t.contains("Trash (MESSAGES 0)"), "{t}");
    assert!(!t.contains("Old/Sub"), "{t}");
    assert!(t.contains("Old"), "the folder itself stays: {t}");
}

fn thread_mail(subject: &str, id: &str, parent: Option<&str>) -> String {
    let refs = parent
        .map(|p| format!("In-Reply-To: <{p}>\r\nReferences: <{p}>\r\n"))
        .unwrap_or_default();
    format!(
        "From: Sender <sender@example.org>\r\nTo: someone@example.test\r\nSubject: {subject}\r\n\
         Message-ID: <{id}>\r\n{refs}Date: Thu, 26 Nov 2026 10:00:00 +0000\r\n\
         MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nText of {id}\r\n"
    )
}

fn subjects_in(transcript: &str) -> Vec<String> {
    let mut out: Vec<String> = transcript
        .lines()
        .filter_map(|l| l.strip_prefix("Subject: "))
        .map(|s| s.trim().to_string())
        .collect();
    out.sort();
    out
}

async fn subjects(user: &str, pw: &str, mailbox: &str) -> Vec<String> {
    let t = imap(
        user,
        pw,
        &[
            &format!("SELECT \"{mailbox}\""),
            "UID FETCH 1:* (BODY.PEEK[HEADER.FIELDS (SUBJECT)])",
        ],
    )
    .await;
    subjects_in(&t)
}

fn move_op(conversation: &[u8], dst: &str, always: bool) -> Element {
    let mut m = Element::new(io::MOVE)
        .child(Element::with_opaque(
            io::CONVERSATION_ID,
            conversation.to_vec().into(),
        ))
        .text_child(io::DST_FLD_ID, dst);
    if always {
        m.push(Element::new(io::OPTIONS).child(Element::new(io::MOVE_ALWAYS)));
    }
    m
}

#[tokio::test]
async fn move_conversation_moves_every_mail_of_the_thread_once() {
    use eas_gateway::wbxml::tags::email2;
    let gw = start_gateway().await;
    let (dev, user, pw) = provisioned(&gw, "iomove", "16.1").await;
    imap(&user, &pw, &["CREATE Projects", "CREATE Keep"]).await;
    let tag = format!("{:08x}", rand::random::<u32>());
    let root = format!("root-{tag}@example.org");
    let b = format!("b-{tag}@example.org");
    append(&user, &pw, "INBOX", &thread_mail("t-a", &root, None), None).await;
    append(
        &user,
        &pw,
        "INBOX",
        &thread_mail("t-b", &b, Some(&root)),
        None,
    )
    .await;
    append(
        &user,
        &pw,
        "INBOX",
        &mail("other", "not in the thread"),
        None,
    )
    .await;
    append(
        &user,
        &pw,
        "Projects",
        &thread_mail("t-c", &format!("c-{tag}@example.org"), Some(&root)),
        None,
    )
    .await;
    append(
        &user,
        &pw,
        "Sent",
        &thread_mail("t-sent", &format!("s-{tag}@example.org"), Some(&root)),
        None,
    )
    .await;
    let inbox = folder_id(&dev, "Inbox").await;
    let keep = folder_id(&dev, "Keep").await;

    // The phone holds the Inbox and the destination; the ConversationId is the one Sync gives.
    let (adds, inbox_key) = full_sync(&dev, &inbox, 100).await;
    assert_eq!(adds.len(), 3);
    let conversation = |subject: &str| {
        adds.iter()
            .find(|(_, d)| d.text_of(eas_gateway::wbxml::tags::email::SUBJECT) == Some(subject))
            .and_then(|(_, d)| d.first(email2::CONVERSATION_ID))
            .and_then(Element::opaque)
            .expect("ConversationId")
            .to_vec()
    };
    let cid = conversation("t-a");
    assert_eq!(conversation("t-b"), cid);
    assert_ne!(conversation("other"), cid);
    let moved_ids: Vec<String> = adds
        .iter()
        .filter(|(_, d)| d.text_of(eas_gateway::wbxml::tags::email::SUBJECT) != Some("other"))
        .map(|(id, _)| id.clone())
        .collect();
    let (none, keep_key) = full_sync(&dev, &keep, 100).await;
    assert!(none.is_empty());

    // Statuses: no MoveAlways, unknown destination, unknown conversation, the virtual Outbox.
    let outbox = folder_id(&dev, "Outbox").await;
    let resp = item_operations(
        &dev,
        vec![
            move_op(&cid, &keep, false),
            move_op(&cid, "424242", true),
            move_op(b"no-such-conversation", &keep, true),
            move_op(&cid, &outbox, true),
        ],
    )
    .await;
    let statuses: Vec<&str> = io_results(&resp)
        .iter()
        .map(|e| e.text_of(io::STATUS).unwrap_or(""))
        .collect();
    assert_eq!(statuses, vec!["155", "6", "6", "156"]);
    assert_eq!(subjects(&user, &pw, "Keep").await, Vec::<String>::new());

    let resp = item_operations(&dev, vec![move_op(&cid, &keep, true)]).await;
    let r = io_results(&resp);
    assert_eq!(r[0].tag, io::MOVE);
    assert_eq!(r[0].text_of(io::STATUS), Some("1"));
    assert_eq!(
        r[0].first(io::CONVERSATION_ID)
            .and_then(Element::opaque)
            .map(|b| b.to_vec()),
        Some(cid.clone()),
        "the ConversationId is echoed"
    );

    // On the server: the thread left the Inbox and Projects, Sent keeps its copy.
    assert_eq!(subjects(&user, &pw, "INBOX").await, vec!["other"]);
    assert_eq!(subjects(&user, &pw, "Projects").await, Vec::<String>::new());
    assert_eq!(
        subjects(&user, &pw, "Keep").await,
        vec!["t-a", "t-b", "t-c"]
    );
    assert_eq!(subjects(&user, &pw, "Sent").await, vec!["t-sent"]);

    // On the phone: one Delete per moved mail in the Inbox, one Add per mail in the
    // destination, and nothing more after that.
    let r = sync(&dev, &inbox, &inbox_key, 100).await;
    let mut deletes = r.deletes.clone();
    deletes.sort();
    let mut want = moved_ids.clone();
    want.sort();
    assert_eq!(deletes, want);
    assert!(r.adds.is_empty() && r.changes.is_empty());
    let again = sync(&dev, &inbox, &r.key.unwrap(), 100).await;
    assert!(again.empty, "{again:?}");
    let r = sync(&dev, &keep, &keep_key, 100).await;
    assert_eq!(r.adds.len(), 3);
    assert!(r.deletes.is_empty());
    for (_, d) in &r.adds {
        assert_eq!(
            d.first(email2::CONVERSATION_ID)
                .and_then(Element::opaque)
                .map(|b| b.to_vec()),
            Some(cid.clone())
        );
    }
    let again = sync(&dev, &keep, &r.key.unwrap(), 100).await;
    assert!(again.empty, "{again:?}");

    // Moving it again: already there, Status 1, nothing moves.
    let resp = item_operations(&dev, vec![move_op(&cid, &keep, true)]).await;
    assert_eq!(io_results(&resp)[0].text_of(io::STATUS), Some("1"));
    assert_eq!(
        subjects(&user, &pw, "Keep").await,
        vec!["t-a", "t-b", "t-c"]
    );
}
