//! MoveItems against the real dev Dovecot: the mail moves on IMAP, the answer names its new
//! ServerId, and the next Syncs of both folders send nothing for it (exactly once).

mod common;

use common::*;
use eas_gateway::wbxml::tags::move_items as m;
use eas_gateway::wbxml::Element;

fn move_request(moves: &[(&str, &str, &str)]) -> Element {
    let mut root = Element::new(m::MOVE_ITEMS);
    for (src, sf, df) in moves {
        root.push(
            Element::new(m::MOVE)
                .text_child(m::SRC_MSG_ID, *src)
                .text_child(m::SRC_FLD_ID, *sf)
                .text_child(m::DST_FLD_ID, *df),
        );
    }
    root
}

/// (SrcMsgId, Status, DstMsgId) of each Response.
async fn move_items(
    dev: &TestDevice,
    moves: &[(&str, &str, &str)],
) -> Vec<(String, String, Option<String>)> {
    let r = dev.post("MoveItems", &move_request(moves)).await;
    assert_eq!(r.status, 200, "MoveItems HTTP status");
    let body = r.body.expect("MoveItems body");
    assert_eq!(body.tag, m::MOVE_ITEMS);
    body.all(m::RESPONSE)
        .map(|e| {
            (
                e.text_of(m::SRC_MSG_ID).unwrap_or("").to_string(),
                e.text_of(m::STATUS).unwrap_or("").to_string(),
                e.text_of(m::DST_MSG_ID).map(String::from),
            )
        })
        .collect()
}

#[tokio::test]
async fn moved_mail_is_on_imap_and_no_sync_repeats_it() {
    let gw = start_gateway().await;
    let (dev, user, pw) = provisioned(&gw, "mv", "16.1").await;
    imap(&user, &pw, &["CREATE Projects"]).await;
    append(&user, &pw, "INBOX", &mail("first", "one"), None).await;
    append(&user, &pw, "INBOX", &mail("second", "two"), None).await;
    let inbox = folder_id(&dev, "Inbox").await;
    let projects = folder_id(&dev, "Projects").await;

    let (inbox_adds, inbox_key) = full_sync(&dev, &inbox, 100).await;
    assert_eq!(inbox_adds.len(), 2);
    let (projects_adds, projects_key) = full_sync(&dev, &projects, 100).await;
    assert!(projects_adds.is_empty());

    let moved = inbox_adds[0].0.clone();
    let res = move_items(&dev, &[(&moved, &inbox, &projects)]).await;
    assert_eq!(res.len(), 1);
    assert_eq!(res[0].0, moved);
    assert_eq!(res[0].1, "3", "{res:?}");
    let dst = res[0].2.clone().expect("DstMsgId");
    let (dst_cid, dst_uid) = dst.rsplit_once(':').expect("cid:uid");
    assert_eq!(dst_cid, projects);

    // On IMAP: gone from INBOX, in Projects under the new UID.
    let old_uid: u32 = moved.rsplit_once(':').unwrap().1.parse().unwrap();
    let t = imap(&user, &pw, &["SELECT INBOX", "UID SEARCH ALL"]).await;
    assert!(!uids_in(&t).contains(&old_uid), "{t}");
    assert_eq!(uids_in(&t).len(), 1);
    let t = imap(&user, &pw, &["SELECT Projects", "UID SEARCH ALL"]).await;
    assert_eq!(uids_in(&t), vec![dst_uid.parse::<u32>().unwrap()], "{t}");

    // The device already did the move: no Delete from INBOX, no Add (or Change) in Projects.
    let r = sync(&dev, &inbox, &inbox_key, 100).await;
    assert!(r.empty, "INBOX Sync after MoveItems: {r:?}");
    let r = sync(&dev, &projects, &projects_key, 100).await;
    assert!(r.empty, "Projects Sync after MoveItems: {r:?}");

    // The views still work: a new mail in Projects is the only Add.
    append(&user, &pw, "Projects", &mail("third", "three"), None).await;
    let r = sync(&dev, &projects, &projects_key, 100).await;
    assert_eq!(r.adds.len(), 1, "{r:?}");
    assert_ne!(r.adds[0].0, dst);
    assert!(r.deletes.is_empty() && r.changes.is_empty(), "{r:?}");
}

#[tokio::test]
async fn moving_into_a_folder_the_device_never_synced_adds_it_there_later() {
    let gw = start_gateway().await;
    let (dev, user, pw) = provisioned(&gw, "mvnew", "16.1").await;
    imap(&user, &pw, &["CREATE Later"]).await;
    append(&user, &pw, "INBOX", &mail("a", "a"), None).await;
    append(&user, &pw, "INBOX", &mail("b", "b"), None).await;
    let inbox = folder_id(&dev, "Inbox").await;
    let later = folder_id(&dev, "Later").await;
    let (adds, inbox_key) = full_sync(&dev, &inbox, 100).await;
    let ids = server_ids(&adds);

    // Two moves in one request, both to the same folder.
    let res = move_items(
        &dev,
        &[(&ids[0], &inbox, &later), (&ids[1], &inbox, &later)],
    )
    .await;
    assert!(res.iter().all(|r| r.1 == "3" && r.2.is_some()), "{res:?}");
    let r = sync(&dev, &inbox, &inbox_key, 100).await;
    assert!(r.empty, "{r:?}");
    // First sync of the destination: both mails arrive, under the ids MoveItems named.
    let (later_adds, _) = full_sync(&dev, &later, 100).await;
    let mut got = server_ids(&later_adds);
    got.sort();
    let mut want: Vec<String> = res.iter().filter_map(|r| r.2.clone()).collect();
    want.sort();
    assert_eq!(got, want);
}

#[tokio::test]
async fn invalid_moves_have_their_own_statuses() {
    let gw = start_gateway().await;
    let (dev, user, pw) = provisioned(&gw, "mverr", "16.1").await;
    imap(&user, &pw, &["CREATE Projects"]).await;
    append(&user, &pw, "INBOX", &mail("x", "x"), None).await;
    let inbox = folder_id(&dev, "Inbox").await;
    let projects = folder_id(&dev, "Projects").await;
    let (adds, _) = full_sync(&dev, &inbox, 100).await;
    let id = adds[0].0.as_str();
    let missing = format!("{inbox}:999999");
    let res = move_items(
        &dev,
        &[
            (&missing, &inbox, &projects),
            (id, &inbox, &inbox),
            (id, &inbox, "987654"),
            (id, "987654", &projects),
        ],
    )
    .await;
    let statuses: Vec<&str> = res.iter().map(|r| r.1.as_str()).collect();
    // Missing item 1, same folder 4, unknown destination 2, unknown source 1.
    assert_eq!(statuses, vec!["1", "4", "2", "1"]);
    assert!(res.iter().all(|r| r.2.is_none()));
    // Nothing moved.
    let t = imap(&user, &pw, &["STATUS INBOX (MESSAGES)"]).await;
    assert!(t.contains("MESSAGES 1"), "{t}");
    // Moving the same mail twice: the second finds nothing to move.
    let first = move_items(&dev, &[(id, &inbox, &projects)]).await;
    assert_eq!(first[0].1, "3");
    let again = move_items(&dev, &[(id, &inbox, &projects)]).await;
    assert_eq!(again[0].1, "1");
}
