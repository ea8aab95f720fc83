//! GetItemEstimate against the real dev Dovecot: the estimate is what the next Sync sends, and
//! asking changes no state.

mod common;

use common::*;
use eas_gateway::wbxml::tags::{airsync as a, get_item_estimate as g};
use eas_gateway::wbxml::Element;

/// (Status, CollectionId, Estimate) per Response.
async fn estimate(
    dev: &TestDevice,
    cols: &[(&str, &str, Option<u32>)],
) -> Vec<(String, String, Option<u64>)> {
    let mut list = Element::new(g::COLLECTIONS);
    for (cid, key, filter) in cols {
        let mut c = Element::new(g::COLLECTION)
            .text_child(a::SYNC_KEY, *key)
            .text_child(g::COLLECTION_ID, *cid);
        if let Some(f) = filter {
            c.push(
                Element::new(a::OPTIONS)
                    .text_child(a::CLASS, "Email")
                    .text_child(a::FILTER_TYPE, f.to_string()),
            );
        }
        list.push(c);
    }
    let r = dev
        .post(
            "GetItemEstimate",
            &Element::new(g::GET_ITEM_ESTIMATE).child(list),
        )
        .await;
    assert_eq!(r.status, 200, "GetItemEstimate HTTP status");
    let body = r.body.expect("GetItemEstimate body");
    body.all(g::RESPONSE)
        .map(|resp| {
            let col = resp.first(g::COLLECTION);
            (
                resp.text_of(g::STATUS).unwrap_or("").to_string(),
                col.and_then(|c| c.text_of(g::COLLECTION_ID))
                    .unwrap_or("")
                    .to_string(),
                col.and_then(|c| c.text_of(g::ESTIMATE))
                    .map(|e| e.parse().expect("number")),
            )
        })
        .collect()
}

#[tokio::test]
async fn estimate_equals_what_the_next_sync_sends() {
    let gw = start_gateway().await;
    let (dev, user, pw) = provisioned(&gw, "gie", "16.1").await;
    for i in 0..3 {
        append(&user, &pw, "INBOX", &mail(&format!("m{i}"), "body"), None).await;
    }
    let inbox = folder_id(&dev, "Inbox").await;

    // Key 0: not primed.
    assert_eq!(estimate(&dev, &[(&inbox, "0", None)]).await[0].0, "3");
    let r = sync_result(
        &dev.post("Sync", &sync_request(&inbox, "0", 100, None))
            .await,
    );
    let key1 = r.key.expect("key 1");

    let e = estimate(&dev, &[(&inbox, &key1, None)]).await;
    assert_eq!(e, vec![("1".to_string(), inbox.clone(), Some(3))]);
    // Asking again changes nothing (no state written).
    assert_eq!(estimate(&dev, &[(&inbox, &key1, None)]).await, e);

    // The Sync sends as many as estimated, over two windows.
    let r = sync_result(
        &dev.post("Sync", &sync_request(&inbox, &key1, 2, None))
            .await,
    );
    assert_eq!(r.adds.len(), 2);
    assert!(r.more);
    let key2 = r.key.expect("key 2");
    assert_eq!(estimate(&dev, &[(&inbox, &key2, None)]).await[0].2, Some(1));
    let r = sync_result(
        &dev.post("Sync", &sync_request(&inbox, &key2, 100, None))
            .await,
    );
    assert_eq!(r.adds.len(), 1);
    let key3 = r.key.expect("key 3");
    assert_eq!(estimate(&dev, &[(&inbox, &key3, None)]).await[0].2, Some(0));

    // A flag change and a new mail elsewhere: two changes.
    imap(&user, &pw, &["SELECT INBOX", "UID STORE 1 +FLAGS (\\Seen)"]).await;
    append(&user, &pw, "INBOX", &mail("m3", "body"), None).await;
    assert_eq!(estimate(&dev, &[(&inbox, &key3, None)]).await[0].2, Some(2));
    let r = sync_result(
        &dev.post("Sync", &sync_request(&inbox, &key3, 100, None))
            .await,
    );
    assert_eq!(r.adds.len() + r.changes.len(), 2, "{r:?}");
}

#[tokio::test]
async fn filter_type_limits_the_estimate() {
    let gw = start_gateway().await;
    let (dev, user, pw) = provisioned(&gw, "giefilter", "14.1").await;
    append(
        &user,
        &pw,
        "INBOX",
        &mail("old", "old"),
        Some("01-Jan-2001 10:00:00 +0000"),
    )
    .await;
    append(&user, &pw, "INBOX", &mail("new", "new"), None).await;
    let inbox = folder_id(&dev, "Inbox").await;
    let r = sync_result(
        &dev.post("Sync", &sync_request(&inbox, "0", 100, None))
            .await,
    );
    let key = r.key.expect("key");
    // Everything, and one week.
    assert_eq!(
        estimate(&dev, &[(&inbox, &key, Some(0))]).await[0].2,
        Some(2)
    );
    assert_eq!(
        estimate(&dev, &[(&inbox, &key, Some(3))]).await[0].2,
        Some(1)
    );
}

#[tokio::test]
async fn unknown_collections_and_keys() {
    let gw = start_gateway().await;
    let (dev, user, pw) = provisioned(&gw, "gieerr", "16.1").await;
    imap(&user, &pw, &["CREATE Projects"]).await;
    let inbox = folder_id(&dev, "Inbox").await;
    let projects = folder_id(&dev, "Projects").await;
    let r = sync_result(
        &dev.post("Sync", &sync_request(&inbox, "0", 100, None))
            .await,
    );
    let key = r.key.expect("key");
    let e = estimate(
        &dev,
        &[
            (&inbox, &key, None),
            ("987654", "1", None),
            (&inbox, "424242", None),
            (&projects, "3", None),
        ],
    )
    .await;
    let statuses: Vec<&str> = e.iter().map(|x| x.0.as_str()).collect();
    assert_eq!(statuses, vec!["1", "2", "4", "4"]);
    assert_eq!(e[1].1, "987654");
}
