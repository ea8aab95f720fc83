//! pyactivesync (PyPI, EAS 16.1) as an outside opinion: it provisions and lists folders.

mod common;

use common::*;

#[tokio::test]
async fn pyactivesync_provisions_and_lists_folders() {
    let gw = start_gateway().await;
    let (user, pw) = new_user("pyeas");
    imap(&user, &pw, &["CREATE Projects"]).await;
    let host = gw.host();
    let script = pyactivesync_script("provision_and_folders.py");
    let text = pyactivesync(
        &[&script, &host, &user, &pw, "PYEAS0001"],
        "provision_and_folders",
    )
    .await;
    // A tiny look into the JSON without a JSON dependency: the folder names and types.
    for (name, kind) in [
        ("Inbox", 2),
        ("Drafts", 3),
        ("Trash", 4),
        ("Sent", 5),
        ("Outbox", 6),
        ("Projects", 12),
    ] {
        let needle = format!("\"type\": {kind}, \"name\": \"{name}\"");
        assert!(text.contains(&needle), "{needle} not in {text}");
    }
    assert!(!text.contains("\"policy_key\": \"0\""), "{text}");
}

#[tokio::test]
async fn pyactivesync_syncs_changes_fetches_moves_and_manages_folders() {
    let gw = start_gateway().await;
    let (user, pw) = new_user("pymail");
    append(&user, &pw, "INBOX", &mail("plain one", "hello"), None).await;
    let attachment: Vec<u8> = (0..40).flat_map(|_| 0u8..=255).collect();
    let b64 = {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD.encode(&attachment)
    };
    let with_attachment = format!(
        "From: a@example.org\r\nTo: {user}\r\nSubject: with attachment\r\nMIME-Version: 1.0\r\n\
         Content-Type: multipart/mixed; boundary=\"b1\"\r\n\r\n--b1\r\n\
         Content-Type: text/plain; charset=utf-8\r\n\r\nsee attached\r\n--b1\r\n\
         Content-Type: application/octet-stream; name=\"report.bin\"\r\n\
         Content-Disposition: attachment; filename=\"report.bin\"\r\n\
         Content-Transfer-Encoding: base64\r\n\r\n{b64}\r\n--b1--\r\n"
    );
    append(&user, &pw, "INBOX", &with_attachment, None).await;
    let host = gw.host();
    let script = pyactivesync_script("mail_ops.py");
    let stdout = pyactivesync(&[&script, &host, &user, &pw, "PYEAS0002"], "mail_ops").await;
    for check in [
        "get_item_estimate",
        "sync_folder",
        "apply_email_changes",
        "fetch_attachment",
        "move_item",
        "folder create",
    ] {
        assert!(stdout.contains(check), "{check} missing: {stdout}");
    }
    // The device's changes are on the IMAP server: the moved mail is in Archive, read and
    // flagged.
    let t = imap(&user, &pw, &["SELECT Archive", "SEARCH SEEN FLAGGED"]).await;
    assert!(t.contains("* SEARCH 1\r\n"), "{t}");
}
