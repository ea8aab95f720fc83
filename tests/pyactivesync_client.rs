//! pyactivesync (PyPI, EAS 16.1) as an outside opinion: it provisions and lists folders.

mod common;

use common::*;

#[tokio::test]
async fn pyactivesync_provisions_and_lists_folders() {
    let gw = start_gateway().await;
    let (user, pw) = new_user("pyeas");
    imap(&user, &pw, &["CREATE Projects"]).await;
    let host = gw
        .base
        .trim_start_matches("https://")
        .split('/')
        .next()
        .unwrap()
        .to_string();
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/pyactivesync/provision_and_folders.py"
    );
    let out = tokio::process::Command::new("python3")
        .args([script, &host, &user, &pw, "PYEAS0001"])
        .output()
        .await
        .expect("python3 must be installed");
    assert!(
        out.status.success(),
        "pyactivesync failed (is it installed? `pip install pyactivesync`): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
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
