//! FolderSync against the real dev Dovecot: types, parents, renames, key 0, replayed keys.

mod common;

use std::collections::HashMap;

use common::*;
use eas_gateway::wbxml::tags::folder_hierarchy as f;
use eas_gateway::wbxml::Element;

#[derive(Debug, Clone, PartialEq)]
struct F {
    id: String,
    parent: String,
    name: String,
    kind: String,
}

fn changes(resp: &Element, tag: eas_gateway::wbxml::Tag) -> Vec<F> {
    resp.first(f::CHANGES)
        .map(|c| {
            c.all(tag)
                .map(|e| F {
                    id: e.text_of(f::SERVER_ID).unwrap_or("").into(),
                    parent: e.text_of(f::PARENT_ID).unwrap_or("").into(),
                    name: e.text_of(f::DISPLAY_NAME).unwrap_or("").into(),
                    kind: e.text_of(f::TYPE).unwrap_or("").into(),
                })
                .collect()
        })
        .unwrap_or_default()
}

fn deletes(resp: &Element) -> Vec<String> {
    resp.first(f::CHANGES)
        .map(|c| {
            c.all(f::DELETE)
                .filter_map(|e| e.text_of(f::SERVER_ID))
                .map(String::from)
                .collect()
        })
        .unwrap_or_default()
}

async fn ready_device(gw: &TestGateway, prefix: &str) -> (TestDevice, String, String) {
    let (user, pw) = new_user(prefix);
    let dev = device_of(gw, &user, &pw, "16.1").await;
    (dev, user, pw)
}

#[tokio::test]
async fn folder_types_and_parents_follow_the_imap_hierarchy() {
    let gw = start_gateway().await;
    let (dev, user, pw) = ready_device(&gw, "types").await;
    imap(
        &user,
        &pw,
        &[
            "CREATE Projects",
            "CREATE Projects/2026",
            "CREATE \"Entw&APw-rfe alt\"",
        ],
    )
    .await;
    let r = dev.folder_sync("0").await;
    assert_eq!(r.text_of(f::STATUS), Some("1"));
    let adds = changes(&r, f::ADD);
    let by_name: HashMap<&str, &F> = adds.iter().map(|x| (x.name.as_str(), x)).collect();
    let kind = |n: &str| {
        by_name
            .get(n)
            .map(|x| x.kind.as_str())
            .unwrap_or_else(|| panic!("{n} missing in {adds:?}"))
    };
    assert_eq!(kind("Inbox"), "2");
    assert_eq!(kind("Drafts"), "3");
    assert_eq!(kind("Trash"), "4");
    assert_eq!(kind("Sent"), "5");
    assert_eq!(kind("Outbox"), "6");
    assert_eq!(kind("Junk"), "12");
    assert_eq!(kind("Archive"), "12");
    assert_eq!(kind("Projects"), "12");
    assert_eq!(kind("Entwürfe alt"), "12");
    assert_eq!(by_name["2026"].parent, by_name["Projects"].id);
    assert_eq!(by_name["Projects"].parent, "0");
    // Ids are unique, short and never the IMAP name.
    let mut ids: Vec<&str> = adds.iter().map(|x| x.id.as_str()).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), adds.len());
    assert!(adds
        .iter()
        .all(|x| x.id.len() <= 16 && !x.id.contains("Projects")));
    // Count matches.
    assert_eq!(
        r.first(f::CHANGES).unwrap().text_of(f::COUNT),
        Some(adds.len().to_string().as_str())
    );
}

#[tokio::test]
async fn created_then_renamed_folder_is_add_then_update_with_same_id() {
    let gw = start_gateway().await;
    let (dev, user, pw) = ready_device(&gw, "rename").await;
    let first = dev.folder_sync("0").await;
    let key1 = first.text_of(f::SYNC_KEY).unwrap().to_string();

    // Nothing changed: same key, no changes.
    let same = dev.folder_sync(&key1).await;
    assert_eq!(same.text_of(f::SYNC_KEY), Some(key1.as_str()));
    assert!(changes(&same, f::ADD).is_empty());

    imap(&user, &pw, &["CREATE Reports"]).await;
    let r = dev.folder_sync(&key1).await;
    let key2 = r.text_of(f::SYNC_KEY).unwrap().to_string();
    assert_ne!(key2, key1);
    let added = changes(&r, f::ADD);
    assert_eq!(added.len(), 1, "{added:?}");
    assert_eq!(added[0].name, "Reports");

    imap(&user, &pw, &["RENAME Reports \"Reports 2026\""]).await;
    let r = dev.folder_sync(&key2).await;
    let updated = changes(&r, f::UPDATE);
    assert_eq!(updated.len(), 1, "{r:?}");
    assert_eq!(updated[0].id, added[0].id);
    assert_eq!(updated[0].name, "Reports 2026");
    assert!(changes(&r, f::ADD).is_empty());
    assert!(deletes(&r).is_empty());
    let key3 = r.text_of(f::SYNC_KEY).unwrap().to_string();

    imap(&user, &pw, &["DELETE \"Reports 2026\""]).await;
    let r = dev.folder_sync(&key3).await;
    assert_eq!(deletes(&r), vec![added[0].id.clone()]);
}

#[tokio::test]
async fn key_zero_returns_the_same_ids_and_a_replayed_key_is_answered_again() {
    let gw = start_gateway().await;
    let (dev, user, pw) = ready_device(&gw, "keys").await;
    let first = dev.folder_sync("0").await;
    let ids1: HashMap<String, String> = changes(&first, f::ADD)
        .into_iter()
        .map(|x| (x.name, x.id))
        .collect();
    let key1 = first.text_of(f::SYNC_KEY).unwrap().to_string();

    // Another device of the same user sees the same ids.
    let other = device_of(&gw, &user, &pw, "14.1").await;
    let ids_other: HashMap<String, String> = changes(&other.folder_sync("0").await, f::ADD)
        .into_iter()
        .map(|x| (x.name, x.id))
        .collect();
    assert_eq!(ids_other, ids1);

    imap(&user, &pw, &["CREATE Later"]).await;
    let r = dev.folder_sync(&key1).await;
    let key2 = r.text_of(f::SYNC_KEY).unwrap().to_string();
    // The phone lost that response and repeats key1: the same change comes again.
    let again = dev.folder_sync(&key1).await;
    assert_eq!(again.text_of(f::STATUS), Some("1"));
    let added: Vec<String> = changes(&again, f::ADD)
        .into_iter()
        .map(|x| x.name)
        .collect();
    assert_eq!(added, vec!["Later".to_string()]);
    assert_eq!(again.text_of(f::SYNC_KEY), Some(key2.as_str()));
    // Lost again: still answered.
    let third = dev.folder_sync(&key1).await;
    assert_eq!(third.text_of(f::STATUS), Some("1"));
    assert_eq!(changes(&third, f::ADD).len(), 1);
    // And the key it got works.
    let next = dev.folder_sync(&key2).await;
    assert_eq!(next.text_of(f::STATUS), Some("1"));
    assert!(changes(&next, f::ADD).is_empty());

    // Key 0 again: the whole hierarchy with the same ids as before.
    let zero = dev.folder_sync("0").await;
    let ids2: HashMap<String, String> = changes(&zero, f::ADD)
        .into_iter()
        .map(|x| (x.name, x.id))
        .collect();
    for (name, id) in &ids1 {
        assert_eq!(ids2.get(name), Some(id), "{name}");
    }
    assert!(ids2.contains_key("Later"));

    // An unknown key answers Status 9.
    let bad = dev.folder_sync("987654").await;
    assert_eq!(bad.text_of(f::STATUS), Some("9"));
    let junk = dev.folder_sync("not-a-key").await;
    assert_eq!(junk.text_of(f::STATUS), Some("9"));
}
