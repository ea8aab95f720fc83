//! Sync Fetch of several items in one request: each answered in order, a gone one with Status 8,
//! and nothing marked read.

mod common;

use common::*;
use eas_gateway::wbxml::tags::{airsync as a, email};
use eas_gateway::wbxml::Element;

#[tokio::test]
async fn several_fetches_in_one_sync_are_answered_in_order() {
    let gw = start_gateway().await;
    let (user, pw) = new_user("syncfetch");
    for s in ["fetch one", "fetch two", "fetch three"] {
        append(&user, &pw, "INBOX", &mail(s, "body"), None).await;
    }
    let dev = device_of(&gw, &user, &pw, "14.1").await;
    let inbox = folder_id(&dev, "Inbox").await;
    let key = sync(&dev, &inbox, "0", 10).await.key.unwrap();
    let r = sync(&dev, &inbox, &key, 10).await;
    let by_subject = |s: &str| {
        r.adds
            .iter()
            .find(|(_, d)| d.text_of(email::SUBJECT) == Some(s))
            .map(|(sid, _)| sid.clone())
            .unwrap()
    };
    let wanted = [
        by_subject("fetch three"),
        format!("{inbox}:999999"),
        by_subject("fetch one"),
    ];
    let mut cmds = Element::new(a::COMMANDS);
    for sid in &wanted {
        cmds.push(Element::new(a::FETCH).text_child(a::SERVER_ID, sid.clone()));
    }
    let mut req = sync_request(&inbox, r.key.as_deref().unwrap(), 10, None);
    push_commands(&mut req, cmds);
    let got = sync_result(&dev.post("Sync", &req).await);
    let fetches: Vec<&Element> = got
        .responses
        .as_ref()
        .expect("Responses")
        .all(a::FETCH)
        .collect();
    assert_eq!(fetches.len(), 3);
    let seen: Vec<(Option<&str>, Option<&str>, Option<&str>)> = fetches
        .iter()
        .map(|f| {
            (
                f.text_of(a::SERVER_ID),
                f.text_of(a::STATUS),
                f.first(a::APPLICATION_DATA)
                    .and_then(|d| d.text_of(email::SUBJECT)),
            )
        })
        .collect();
    assert_eq!(
        seen,
        vec![
            (Some(wanted[0].as_str()), Some("1"), Some("fetch three")),
            (Some(wanted[1].as_str()), Some("8"), None),
            (Some(wanted[2].as_str()), Some("1"), Some("fetch one")),
        ]
    );
    let t = imap(&user, &pw, &["SELECT INBOX", "SEARCH SEEN"]).await;
    assert!(t.contains("* SEARCH\r\n"), "nothing was marked read");
}
