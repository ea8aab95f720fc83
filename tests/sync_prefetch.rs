//! The next page of a paged Sync is prepared in the background while the phone handles the
//! current one. Changes made on the IMAP server after it was prepared must still reach the
//! phone exactly as without it: current flags, no expunged mail, nothing twice, nothing lost.

mod common;

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use common::*;
use eas_gateway::wbxml::tags::email;
use eas_gateway::wbxml::Element;

/// Gives the background preparation of the next page time to finish, so that the IMAP
/// changes that follow land after it read the mails.
async fn settle() {
    tokio::time::sleep(Duration::from_millis(600)).await;
}

/// A gateway and a 16.1 phone whose user has `n` mails ("mail 01".. in UID order) in INBOX:
/// (gateway, its server, phone, user, password, Inbox CollectionId).
async fn phone_with_mails(
    prefix: &str,
    n: usize,
) -> (TestGateway, TestServer, TestDevice, String, String, String) {
    let (gw, server) = start_gateway_server(GatewayOptions::default(), |_| {}).await;
    let (dev, user, pw) = provisioned(&gw, prefix, "16.1").await;
    let mails: Vec<(String, Option<String>)> = (1..=n)
        .map(|i| (mail(&format!("mail {i:02}"), "x"), None))
        .collect();
    seed(&user, &pw, "INBOX", &mails).await;
    let inbox = folder_id(&dev, "Inbox").await;
    (gw, server, dev, user, pw, inbox)
}

#[tokio::test]
async fn imap_changes_after_the_next_page_was_prepared_still_reach_the_phone() {
    let (_gw, server, dev, user, pw, inbox) = phone_with_mails("prefetch", 30).await;
    let first = sync(&dev, &inbox, "0", 10).await;
    let mut key = first.key.unwrap();

    // Page 1: UIDs 30..21; the gateway prepares 20..11 meanwhile.
    let p1 = sync(&dev, &inbox, &key, 10).await;
    assert_eq!(p1.adds.len(), 10);
    assert!(p1.more);
    key = p1.key.unwrap();
    assert_eq!(
        server.gateway.sync.prefetch.len(),
        1,
        "the next page is being prepared"
    );
    settle().await;

    // Webmail reads and flags mail 15, on the prepared page.
    imap(
        &user,
        &pw,
        &["SELECT INBOX", "UID STORE 15 +FLAGS (\\Seen \\Flagged)"],
    )
    .await;
    let p2 = sync(&dev, &inbox, &key, 10).await;
    assert_eq!(p2.adds.len(), 10);
    key = p2.key.unwrap();
    settle().await;
    // Then it deletes mail 5, on the page prepared next.
    imap(
        &user,
        &pw,
        &[
            "SELECT INBOX",
            "UID STORE 5 +FLAGS (\\Deleted)",
            "UID EXPUNGE 5",
        ],
    )
    .await;

    let (rest, key) = sync_pages(&dev, &inbox, key, 10).await;
    let mut adds: Vec<(String, Element)> = p1.adds;
    adds.extend(p2.adds);
    adds.extend(rest);
    let by_id: HashMap<&str, &Element> = adds.iter().map(|(s, d)| (s.as_str(), d)).collect();
    assert_eq!(by_id.len(), adds.len(), "no mail twice");
    assert_eq!(adds.len(), 29, "every mail but the expunged one");
    assert!(
        !by_id.contains_key(format!("{inbox}:5").as_str()),
        "the expunged mail is not sent"
    );
    let m15 = by_id[format!("{inbox}:15").as_str()];
    assert_eq!(m15.text_of(email::READ), Some("1"), "read on the server");
    assert_eq!(
        m15.first(email::FLAG)
            .and_then(|f| f.text_of(email::STATUS)),
        Some("2"),
        "flagged on the server"
    );
    let m16 = by_id[format!("{inbox}:16").as_str()];
    assert_eq!(m16.text_of(email::READ), Some("0"));
    // Nothing is left to send, and nothing the phone read was marked read.
    assert!(sync(&dev, &inbox, &key, 10).await.empty);
    assert_eq!(
        server.gateway.sync.prefetch.len(),
        0,
        "nothing is read ahead (or holds a session) once the sync is done"
    );
    let t = imap(&user, &pw, &["SELECT INBOX", "UID SEARCH SEEN"]).await;
    assert_eq!(uids_in(&t), vec![15], "{t}");
}

#[tokio::test]
async fn a_new_mail_or_a_repeated_key_after_the_prepared_page_is_handled_exactly_once() {
    let (_gw, _server, dev, user, pw, inbox) = phone_with_mails("prefetch2", 20).await;
    let mut key = sync(&dev, &inbox, "0", 8).await.key.unwrap();
    let p1 = sync(&dev, &inbox, &key, 8).await;
    let key1 = key.clone();
    key = p1.key.clone().unwrap();
    settle().await;
    // The phone never got page 1 and asks again with the same key: the same page again.
    let again = sync(&dev, &inbox, &key1, 8).await;
    let ids = |r: &SyncResult| r.adds.iter().map(|(s, _)| s.clone()).collect::<Vec<_>>();
    assert_eq!(
        ids(&again),
        ids(&p1),
        "a repeated key answers the same page"
    );
    assert_eq!(again.key.as_deref(), Some(key.as_str()));
    settle().await;
    // A mail arrives after the next page was prepared.
    append(&user, &pw, "INBOX", &mail("late", "x"), None).await;
    let mut all: Vec<String> = ids(&p1);
    loop {
        let r = sync(&dev, &inbox, &key, 8).await;
        if r.empty {
            break;
        }
        all.extend(ids(&r));
        key = r.key.unwrap();
        if !r.more {
            break;
        }
        settle().await;
    }
    let set: HashSet<&String> = all.iter().collect();
    assert_eq!(set.len(), all.len(), "no mail twice");
    assert_eq!(all.len(), 21, "the 20 mails and the late one");
    assert!(set.contains(&format!("{inbox}:21")));
}
