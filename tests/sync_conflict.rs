//! The Sync Conflict option (MS-ASCMD 2.2.3.34) against Dovecot: a device's Read/Flag Change of
//! a mail whose flags changed on the server since the device's view.

mod common;

use common::*;
use eas_gateway::wbxml::tags::{airsync as a, email};
use eas_gateway::wbxml::Element;

/// A 14.1 device holding the one mail of INBOX: (device, INBOX id, key, ServerId).
async fn holding_one_mail(gw: &TestGateway, user: &str, pw: &str) -> (TestDevice, String, String) {
    append(user, pw, "INBOX", &mail("conflict", "body"), None).await;
    synced_inbox(gw, user, pw).await
}

/// A 14.1 device after the initial Sync of an INBOX with one mail: (device, INBOX id, key).
async fn synced_inbox(gw: &TestGateway, user: &str, pw: &str) -> (TestDevice, String, String) {
    let dev = device_of(gw, user, pw, "14.1").await;
    let inbox = folder_id(&dev, "Inbox").await;
    let r = sync(&dev, &inbox, "0", 10).await;
    let r = sync(&dev, &inbox, r.key.as_deref().unwrap(), 10).await;
    assert_eq!(r.adds.len(), 1);
    (dev, inbox, r.key.unwrap())
}

fn read_change(inbox: &str, key: &str, server_id: &str, conflict: Option<&str>) -> Element {
    let mut c = Element::new(a::COLLECTION)
        .text_child(a::SYNC_KEY, key)
        .text_child(a::COLLECTION_ID, inbox);
    if let Some(v) = conflict {
        c.push(Element::new(a::OPTIONS).text_child(a::CONFLICT, v));
    }
    c.push(
        Element::new(a::COMMANDS).child(
            Element::new(a::CHANGE)
                .text_child(a::SERVER_ID, server_id)
                .child(Element::new(a::APPLICATION_DATA).text_child(email::READ, "1")),
        ),
    );
    Element::new(a::SYNC).child(Element::new(a::COLLECTIONS).child(c))
}

async fn flags(user: &str, pw: &str) -> String {
    let t = imap(user, pw, &["SELECT INBOX", "UID FETCH 1:* (FLAGS)"]).await;
    t.lines()
        .find(|l| l.contains(" FETCH ("))
        .unwrap_or_default()
        .to_string()
}

fn change_status(r: &SyncResult, server_id: &str) -> Option<String> {
    r.responses.as_ref().and_then(|rs| {
        rs.all(a::CHANGE)
            .find(|c| c.text_of(a::SERVER_ID) == Some(server_id))
            .and_then(|c| c.text_of(a::STATUS).map(str::to_string))
    })
}

#[tokio::test]
async fn server_wins_by_default_and_the_device_gets_the_server_flags() {
    let gw = start_gateway().await;
    let (user, pw) = new_user("conflict");
    let (dev, inbox, key) = holding_one_mail(&gw, &user, &pw).await;
    let sid = format!("{inbox}:1");

    // Without a server change the device's change is applied.
    let r = sync_result(
        &dev.post("Sync", &read_change(&inbox, &key, &sid, None))
            .await,
    );
    assert_eq!(change_status(&r, &sid), None, "{:?}", r.responses);
    assert!(flags(&user, &pw).await.contains("\\Seen"));
    let key = r.key.unwrap();

    // Webmail marks it unread and flags it; the device, not yet told, marks it read.
    imap(
        &user,
        &pw,
        &[
            "SELECT INBOX",
            "UID STORE 1 -FLAGS (\\Seen)",
            "UID STORE 1 +FLAGS (\\Flagged)",
        ],
    )
    .await;
    let r = sync_result(
        &dev.post("Sync", &read_change(&inbox, &key, &sid, None))
            .await,
    );
    assert_eq!(
        change_status(&r, &sid).as_deref(),
        Some("7"),
        "Status 7: the server won"
    );
    let f = flags(&user, &pw).await;
    assert!(
        !f.contains("\\Seen") && f.contains("\\Flagged"),
        "not applied: {f}"
    );
    assert_eq!(r.changes.len(), 1, "the server's state reaches the device");
    let (changed, data) = &r.changes[0];
    assert_eq!(changed, &sid);
    assert_eq!(data.text_of(email::READ), Some("0"));
    assert_eq!(
        data.first(email::FLAG)
            .and_then(|f| f.text_of(email::STATUS)),
        Some("2")
    );

    // Conflict 1 said out loud behaves the same.
    let key = r.key.unwrap();
    imap(
        &user,
        &pw,
        &["SELECT INBOX", "UID STORE 1 -FLAGS (\\Flagged)"],
    )
    .await;
    let r = sync_result(
        &dev.post("Sync", &read_change(&inbox, &key, &sid, Some("1")))
            .await,
    );
    assert_eq!(change_status(&r, &sid).as_deref(), Some("7"));
    assert!(!flags(&user, &pw).await.contains("\\Seen"));
}

#[tokio::test]
async fn client_wins_applies_the_change() {
    let gw = start_gateway().await;
    let (user, pw) = new_user("clientwins");
    let (dev, inbox, key) = holding_one_mail(&gw, &user, &pw).await;
    let sid = format!("{inbox}:1");
    imap(
        &user,
        &pw,
        &["SELECT INBOX", "UID STORE 1 +FLAGS (\\Flagged)"],
    )
    .await;
    let r = sync_result(
        &dev.post("Sync", &read_change(&inbox, &key, &sid, Some("0")))
            .await,
    );
    assert_eq!(change_status(&r, &sid), None, "{:?}", r.responses);
    let f = flags(&user, &pw).await;
    assert!(f.contains("\\Seen") && f.contains("\\Flagged"), "{f}");
    // The server's part (the flag) still reaches the device, with the device's Read.
    assert_eq!(r.changes.len(), 1, "{r:?}");
    let data = &r.changes[0].1;
    assert_eq!(data.text_of(email::READ), Some("1"));
    assert_eq!(
        data.first(email::FLAG)
            .and_then(|f| f.text_of(email::STATUS)),
        Some("2")
    );
}

#[tokio::test]
async fn read_and_unflag_in_one_change_both_apply_without_a_conflict() {
    let gw = start_gateway().await;
    let (user, pw) = new_user("bothways");
    append(&user, &pw, "INBOX", &mail("both", "body"), None).await;
    imap(
        &user,
        &pw,
        &["SELECT INBOX", "UID STORE 1 +FLAGS (\\Flagged)"],
    )
    .await;
    let (dev, inbox, key) = synced_inbox(&gw, &user, &pw).await;
    let sid = format!("{inbox}:1");
    let req = Element::new(a::SYNC).child(
        Element::new(a::COLLECTIONS).child(
            Element::new(a::COLLECTION)
                .text_child(a::SYNC_KEY, key)
                .text_child(a::COLLECTION_ID, inbox.clone())
                .child(
                    Element::new(a::COMMANDS).child(
                        Element::new(a::CHANGE)
                            .text_child(a::SERVER_ID, sid.clone())
                            .child(
                                Element::new(a::APPLICATION_DATA)
                                    .text_child(email::READ, "1")
                                    .child(
                                        Element::new(email::FLAG).text_child(email::STATUS, "0"),
                                    ),
                            ),
                    ),
                ),
        ),
    );
    let r = sync_result(&dev.post("Sync", &req).await);
    assert_eq!(change_status(&r, &sid), None, "{:?}", r.responses);
    assert!(
        r.changes.is_empty(),
        "the device's own change is not echoed"
    );
    let f = flags(&user, &pw).await;
    assert!(f.contains("\\Seen") && !f.contains("\\Flagged"), "{f}");
}
