//! FolderCreate, FolderUpdate and FolderDelete against the real dev Dovecot: the mailbox
//! changes on IMAP, the ServerId survives a rename, and the next FolderSync does not report the
//! device's own change back (but does report changes made elsewhere).

mod common;

use common::*;
use eas_gateway::wbxml::tags::folder_hierarchy as f;
use eas_gateway::wbxml::Element;

async fn ready(gw: &TestGateway, prefix: &str) -> (TestDevice, String, String, String) {
    let (user, pw) = new_user(prefix);
    let dev = device_of(gw, &user, &pw, "16.1").await;
    let r = dev.folder_sync("0").await;
    let key = r.text_of(f::SYNC_KEY).expect("key").to_string();
    (dev, user, pw, key)
}

fn id_of(resp: &Element, name: &str) -> String {
    resp.first(f::CHANGES)
        .and_then(|c| {
            c.all(f::ADD)
                .find(|a| a.text_of(f::DISPLAY_NAME) == Some(name))
        })
        .and_then(|a| a.text_of(f::SERVER_ID))
        .unwrap_or_else(|| panic!("no {name}"))
        .to_string()
}

/// (Status, SyncKey, ServerId).
async fn folder_cmd(
    dev: &TestDevice,
    cmd: &str,
    req: Element,
) -> (String, Option<String>, Option<String>) {
    let r = dev.post(cmd, &req).await;
    assert_eq!(r.status, 200, "{cmd} HTTP status");
    let b = r.body.expect("body");
    (
        b.text_of(f::STATUS).unwrap_or("").to_string(),
        b.text_of(f::SYNC_KEY).map(String::from),
        b.text_of(f::SERVER_ID).map(String::from),
    )
}

async fn create(
    dev: &TestDevice,
    key: &str,
    parent: &str,
    name: &str,
) -> (String, Option<String>, Option<String>) {
    let req = Element::new(f::FOLDER_CREATE)
        .text_child(f::SYNC_KEY, key)
        .text_child(f::PARENT_ID, parent)
        .text_child(f::DISPLAY_NAME, name)
        .text_child(f::TYPE, "12");
    folder_cmd(dev, "FolderCreate", req).await
}

async fn update(
    dev: &TestDevice,
    key: &str,
    id: &str,
    parent: &str,
    name: &str,
) -> (String, Option<String>, Option<String>) {
    let req = Element::new(f::FOLDER_UPDATE)
        .text_child(f::SYNC_KEY, key)
        .text_child(f::SERVER_ID, id)
        .text_child(f::PARENT_ID, parent)
        .text_child(f::DISPLAY_NAME, name);
    folder_cmd(dev, "FolderUpdate", req).await
}

async fn delete(dev: &TestDevice, key: &str, id: &str) -> (String, Option<String>, Option<String>) {
    let req = Element::new(f::FOLDER_DELETE)
        .text_child(f::SYNC_KEY, key)
        .text_child(f::SERVER_ID, id);
    folder_cmd(dev, "FolderDelete", req).await
}

fn change_count(resp: &Element) -> usize {
    resp.first(f::CHANGES)
        .map(|c| c.elements().filter(|e| e.tag != f::COUNT).count())
        .unwrap_or(0)
}

async fn mailboxes(user: &str, pw: &str) -> Vec<String> {
    let t = imap(user, pw, &["LIST \"\" \"*\""]).await;
    t.lines()
        .filter(|l| l.starts_with("* LIST"))
        // `* LIST (attrs) "/" name`: the name follows the delimiter.
        .filter_map(|l| {
            l.split_once(") ")
                .and_then(|(_, rest)| rest.split_once(' '))
        })
        .map(|(_, n)| n.trim().trim_matches('"').to_string())
        .collect()
}

#[tokio::test]
async fn create_rename_move_delete_round_trip() {
    let gw = start_gateway().await;
    let (dev, user, pw, key) = ready(&gw, "fc").await;

    let (status, key2, id) = create(&dev, &key, "0", "Reports").await;
    assert_eq!(status, "1");
    let key2 = key2.expect("new key");
    let id = id.expect("ServerId");
    assert_ne!(key2, key);
    assert!(mailboxes(&user, &pw).await.contains(&"Reports".to_string()));
    // Not reported back.
    let r = dev.folder_sync(&key2).await;
    assert_eq!(r.text_of(f::STATUS), Some("1"));
    assert_eq!(change_count(&r), 0, "{r:?}");
    assert_eq!(r.text_of(f::SYNC_KEY), Some(key2.as_str()));

    // A subfolder, with a non-ASCII name.
    let (status, key3, sub) = create(&dev, &key2, &id, "Entwürfe").await;
    assert_eq!(status, "1");
    let (key3, sub) = (key3.unwrap(), sub.unwrap());
    let boxes = mailboxes(&user, &pw).await;
    assert!(
        boxes.iter().any(|b| b == "Reports/Entw&APw-rfe"),
        "{boxes:?}"
    );

    // Rename keeps the ServerId; the subfolder follows.
    let (status, key4, _) = update(&dev, &key3, &id, "0", "Reports 2026").await;
    assert_eq!(status, "1");
    let key4 = key4.unwrap();
    let boxes = mailboxes(&user, &pw).await;
    assert!(boxes.iter().any(|b| b == "Reports 2026"), "{boxes:?}");
    assert!(
        boxes.iter().any(|b| b == "Reports 2026/Entw&APw-rfe"),
        "{boxes:?}"
    );
    assert!(!boxes.iter().any(|b| b == "Reports"), "{boxes:?}");
    let r = dev.folder_sync(&key4).await;
    assert_eq!(change_count(&r), 0, "{r:?}");
    // Another device sees the same ids under the new names.
    let other = device_of(&gw, &user, &pw, "14.1").await;
    let all = other.folder_sync("0").await;
    assert_eq!(id_of(&all, "Reports 2026"), id);
    assert_eq!(id_of(&all, "Entwürfe"), sub);

    // Move the subfolder to the root.
    let (status, key5, _) = update(&dev, &key4, &sub, "0", "Entwürfe").await;
    assert_eq!(status, "1");
    let key5 = key5.unwrap();
    assert!(mailboxes(&user, &pw)
        .await
        .contains(&"Entw&APw-rfe".to_string()));
    let r = dev.folder_sync(&key5).await;
    assert_eq!(change_count(&r), 0, "{r:?}");

    // Delete, with a subfolder made on IMAP meanwhile.
    imap(&user, &pw, &["CREATE \"Reports 2026/Inner\""]).await;
    let (status, key6, _) = delete(&dev, &key5, &id).await;
    assert_eq!(status, "1");
    let key6 = key6.unwrap();
    let boxes = mailboxes(&user, &pw).await;
    assert!(
        !boxes.iter().any(|b| b.starts_with("Reports 2026")),
        "{boxes:?}"
    );
    let r = dev.folder_sync(&key6).await;
    assert_eq!(change_count(&r), 0, "{r:?}");
}

#[tokio::test]
async fn changes_made_elsewhere_are_still_reported() {
    let gw = start_gateway().await;
    let (dev, user, pw, key) = ready(&gw, "fcother").await;
    imap(&user, &pw, &["CREATE Elsewhere"]).await;
    let (status, key2, _) = create(&dev, &key, "0", "Mine").await;
    assert_eq!(status, "1");
    let r = dev.folder_sync(&key2.unwrap()).await;
    let adds: Vec<&str> = r
        .first(f::CHANGES)
        .map(|c| {
            c.all(f::ADD)
                .filter_map(|a| a.text_of(f::DISPLAY_NAME))
                .collect()
        })
        .unwrap_or_default();
    assert_eq!(adds, vec!["Elsewhere"]);
}

#[tokio::test]
async fn refusals_have_the_spec_statuses() {
    let gw = start_gateway().await;
    let (dev, user, pw, key) = ready(&gw, "fcerr").await;
    imap(&user, &pw, &["CREATE Taken"]).await;
    let all = dev.folder_sync("0").await;
    let key = all.text_of(f::SYNC_KEY).unwrap_or(&key).to_string();
    let inbox = id_of(&all, "Inbox");
    let trash = id_of(&all, "Trash");
    let outbox = id_of(&all, "Outbox");

    // Stale and unknown keys.
    assert_eq!(create(&dev, "0", "0", "X").await.0, "9");
    assert_eq!(create(&dev, "424242", "0", "X").await.0, "9");
    assert_eq!(delete(&dev, "bogus", &inbox).await.0, "9");
    // Create: exists 2, parent missing 5, parent without a mailbox 3.
    assert_eq!(create(&dev, &key, "0", "Taken").await.0, "2");
    assert_eq!(create(&dev, &key, "0", "inbox").await.0, "2");
    assert_eq!(create(&dev, &key, "987654", "X").await.0, "5");
    assert_eq!(create(&dev, &key, &outbox, "X").await.0, "3");
    // Update: special folder 2, missing 4, missing parent 5.
    assert_eq!(update(&dev, &key, &inbox, "0", "Renamed").await.0, "2");
    assert_eq!(update(&dev, &key, &trash, "0", "Renamed").await.0, "2");
    assert_eq!(update(&dev, &key, "987654", "0", "Renamed").await.0, "4");
    let taken = id_of(&all, "Taken");
    assert_eq!(update(&dev, &key, &taken, "987654", "Renamed").await.0, "5");
    // Delete: special folder 3, missing 4.
    assert_eq!(delete(&dev, &key, &inbox).await.0, "3");
    assert_eq!(delete(&dev, &key, &outbox).await.0, "3");
    assert_eq!(delete(&dev, &key, "987654").await.0, "4");
    // Malformed: 10.
    let r = folder_cmd(
        &dev,
        "FolderCreate",
        Element::new(f::FOLDER_CREATE).text_child(f::SYNC_KEY, &key),
    )
    .await;
    assert_eq!(r.0, "10");
    // Nothing of that touched IMAP or the key.
    let boxes = mailboxes(&user, &pw).await;
    assert!(
        !boxes.iter().any(|b| b == "X" || b == "Renamed"),
        "{boxes:?}"
    );
    let (status, _, _) = create(&dev, &key, "0", "Fine").await;
    assert_eq!(status, "1");
}
