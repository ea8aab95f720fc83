//! Mail Sync against the real dev Dovecot: exactly once, both ways, with a second IMAP
//! connection as the witness.

mod common;

use std::collections::HashSet;

use common::*;
use eas_gateway::wbxml::tags::{airsync as a, airsyncbase as b, email};
use eas_gateway::wbxml::Element;

fn subject(data: &Element) -> String {
    data.text_of(email::SUBJECT).unwrap_or("").to_string()
}

#[tokio::test]
async fn initial_sync_pages_newest_first_without_duplicates_and_leaves_mail_unread() {
    let (_gw, dev, user, pw) = gateway_with_device("initial").await;
    for i in 0..25 {
        append(
            &user,
            &pw,
            "INBOX",
            &mail(&format!("mail {i:02}"), "hello"),
            None,
        )
        .await;
    }
    let inbox = folder_id(&dev, "Inbox").await;
    let (adds, key) = full_sync(&dev, &inbox, 10).await;
    assert_eq!(adds.len(), 25);
    let ids: HashSet<&str> = adds.iter().map(|(s, _)| s.as_str()).collect();
    assert_eq!(ids.len(), 25, "no duplicates");
    // Newest first.
    assert_eq!(subject(&adds[0].1), "mail 24");
    assert_eq!(subject(&adds[24].1), "mail 00");
    // Nothing changed: the empty response, and the key stays valid.
    let again = sync(&dev, &inbox, &key, 10).await;
    assert!(again.empty, "{again:?}");
    let again = sync(&dev, &inbox, &key, 10).await;
    assert!(again.empty);
    // Reading on the phone never marked anything read.
    let t = imap(&user, &pw, &["SELECT INBOX", "SEARCH SEEN"]).await;
    assert!(t.contains("* SEARCH\r\n"), "{t}");
}

#[tokio::test]
async fn device_changes_land_on_imap_and_are_not_echoed() {
    let (_gw, dev, user, pw) = gateway_with_device("devchg").await;
    append(&user, &pw, "INBOX", &mail("read me", "x"), None).await;
    append(&user, &pw, "INBOX", &mail("flag me", "x"), None).await;
    let inbox = folder_id(&dev, "Inbox").await;
    let (adds, key) = full_sync(&dev, &inbox, 50).await;
    let id_of = |s: &str| {
        adds.iter()
            .find(|(_, d)| subject(d) == s)
            .unwrap()
            .0
            .clone()
    };
    let change = Element::new(a::COMMANDS)
        .child(
            Element::new(a::CHANGE)
                .text_child(a::SERVER_ID, id_of("read me"))
                .child(Element::new(a::APPLICATION_DATA).text_child(email::READ, "1")),
        )
        .child(
            Element::new(a::CHANGE)
                .text_child(a::SERVER_ID, id_of("flag me"))
                .child(
                    Element::new(a::APPLICATION_DATA)
                        .child(Element::new(email::FLAG).text_child(email::STATUS, "2")),
                ),
        );
    let mut req = sync_request(&inbox, &key, 50, None);
    push_commands(&mut req, change);
    let r = sync_result(&dev.post("Sync", &req).await);
    assert_eq!(r.status.as_deref(), Some("1"));
    assert!(r.changes.is_empty(), "own changes echoed: {:?}", r.changes);
    let key2 = r.key.expect("a request with changes gets a new key");
    assert_ne!(key2, key);
    let t = imap(
        &user,
        &pw,
        &["SELECT INBOX", "SEARCH SEEN", "SEARCH FLAGGED"],
    )
    .await;
    assert!(
        t.contains("* SEARCH 1\r\n") && t.contains("* SEARCH 2\r\n"),
        "{t}"
    );
    // And the next Sync has nothing to say.
    assert!(sync(&dev, &inbox, &key2, 50).await.empty);
}

#[tokio::test]
async fn server_changes_reach_the_device_once() {
    let (_gw, dev, user, pw) = gateway_with_device("srvchg").await;
    for s in ["one", "two", "three"] {
        append(&user, &pw, "INBOX", &mail(s, "x"), None).await;
    }
    let inbox = folder_id(&dev, "Inbox").await;
    let (adds, key) = full_sync(&dev, &inbox, 50).await;
    assert_eq!(adds.len(), 3);
    // Webmail flags "one", deletes "two", moves "three" to Archive, and a new mail arrives.
    imap(
        &user,
        &pw,
        &[
            "SELECT INBOX",
            "UID STORE 1 +FLAGS (\\Flagged \\Seen)",
            "UID STORE 2 +FLAGS (\\Deleted)",
            "UID EXPUNGE 2",
            "UID MOVE 3 Archive",
        ],
    )
    .await;
    append(&user, &pw, "INBOX", &mail("four", "x"), None).await;
    let r = sync(&dev, &inbox, &key, 50).await;
    assert_eq!(r.adds.len(), 1);
    assert_eq!(subject(&r.adds[0].1), "four");
    assert_eq!(r.deletes.len(), 2, "{r:?}");
    assert_eq!(r.changes.len(), 1);
    let (sid, data) = &r.changes[0];
    assert_eq!(sid, &format!("{inbox}:1"));
    assert_eq!(data.text_of(email::READ), Some("1"));
    assert_eq!(
        data.first(email::FLAG)
            .and_then(|f| f.text_of(email::STATUS)),
        Some("2")
    );
    let key2 = r.key.unwrap();
    assert!(sync(&dev, &inbox, &key2, 50).await.empty);
}

#[tokio::test]
async fn more_flag_changes_than_the_window_go_once_each_and_end() {
    let (_gw, dev, user, pw) = gateway_with_device("flagwin").await;
    for s in ["a", "b", "c", "d", "e", "f", "g"] {
        append(&user, &pw, "INBOX", &mail(s, "x"), None).await;
    }
    let inbox = folder_id(&dev, "Inbox").await;
    let (adds, mut key) = full_sync(&dev, &inbox, 50).await;
    assert_eq!(adds.len(), 7);
    // Webmail flags every mail at once: seven Changes, windows of three.
    imap(
        &user,
        &pw,
        &["SELECT INBOX", "UID STORE 1:* +FLAGS (\\Flagged)"],
    )
    .await;
    let mut changed = Vec::new();
    let mut rounds = 0;
    loop {
        let r = sync(&dev, &inbox, &key, 3).await;
        if r.empty {
            break;
        }
        assert!(r.changes.len() <= 3, "{r:?}");
        changed.extend(r.changes.iter().map(|(sid, _)| sid.clone()));
        key = r.key.clone().expect("key");
        rounds += 1;
        assert!(rounds <= 5, "MoreAvailable does not end: {changed:?}");
        if !r.more {
            break;
        }
    }
    let unique: HashSet<&String> = changed.iter().collect();
    assert_eq!(changed.len(), 7, "each Change once: {changed:?}");
    assert_eq!(unique.len(), 7);
    assert!(sync(&dev, &inbox, &key, 3).await.empty);
}

#[tokio::test]
async fn device_delete_moves_the_mail_to_trash() {
    let (_gw, dev, user, pw) = gateway_with_device("del").await;
    append(&user, &pw, "INBOX", &mail("bin me", "x"), None).await;
    let inbox = folder_id(&dev, "Inbox").await;
    let (adds, key) = full_sync(&dev, &inbox, 50).await;
    let mut req = sync_request(&inbox, &key, 50, None);
    push_commands(
        &mut req,
        Element::new(a::COMMANDS)
            .child(Element::new(a::DELETE).text_child(a::SERVER_ID, adds[0].0.clone())),
    );
    let r = sync_result(&dev.post("Sync", &req).await);
    assert_eq!(r.status.as_deref(), Some("1"));
    assert!(r.deletes.is_empty());
    let t = imap(
        &user,
        &pw,
        &["STATUS INBOX (MESSAGES)", "STATUS Trash (MESSAGES)"],
    )
    .await;
    assert!(
        t.contains("INBOX (MESSAGES 0)") && t.contains("Trash (MESSAGES 1)"),
        "{t}"
    );
    assert!(
        sync(&dev, &inbox, r.key.as_deref().unwrap(), 50)
            .await
            .empty
    );
}

#[tokio::test]
async fn a_lost_response_is_answered_again_from_the_previous_key() {
    let (_gw, dev, user, pw) = gateway_with_device("lost").await;
    for i in 0..6 {
        append(&user, &pw, "INBOX", &mail(&format!("m{i}"), "x"), None).await;
    }
    let inbox = folder_id(&dev, "Inbox").await;
    let first = sync(&dev, &inbox, "0", 4).await;
    let k1 = first.key.unwrap();
    let page1 = sync(&dev, &inbox, &k1, 4).await;
    assert_eq!(page1.adds.len(), 4);
    assert!(page1.more);
    // The phone never got page1 and repeats k1, twice.
    for _ in 0..2 {
        let again = sync(&dev, &inbox, &k1, 4).await;
        let a1: Vec<&String> = page1.adds.iter().map(|(s, _)| s).collect();
        let a2: Vec<&String> = again.adds.iter().map(|(s, _)| s).collect();
        assert_eq!(a1, a2, "the same page again");
        assert_eq!(again.key, page1.key);
    }
    let page2 = sync(&dev, &inbox, page1.key.as_deref().unwrap(), 4).await;
    assert_eq!(page2.adds.len(), 2);
    assert!(!page2.more);
    let all: HashSet<String> = page1
        .adds
        .iter()
        .chain(page2.adds.iter())
        .map(|(s, _)| s.clone())
        .collect();
    assert_eq!(all.len(), 6);
    // A key older than the previous one is invalid.
    let stale = sync(&dev, &inbox, &k1, 4).await;
    assert_eq!(stale.status.as_deref(), Some("3"));
}

#[tokio::test]
async fn bad_keys_and_unknown_folders_get_their_statuses() {
    let (_gw, dev, _user, _pw) = gateway_with_device("badkey").await;
    let inbox = folder_id(&dev, "Inbox").await;
    let r = sync(&dev, &inbox, "12345", 10).await;
    assert_eq!(r.status.as_deref(), Some("3"));
    assert_eq!(r.key.as_deref(), Some("0"));
    let r = sync(&dev, "999999", "0", 10).await;
    assert_eq!(r.status.as_deref(), Some("12"));
    // An empty Sync with nothing cached before: Status 13.
    let (_gw2, dev2, _u2, _p2) = gateway_with_device("empty").await;
    let url = format!("{}?{}", dev2.base, dev2.query("Sync"));
    let r = dev2
        .post_raw(&url, Vec::new(), "application/vnd.ms-sync.wbxml")
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body.unwrap().text_of(a::STATUS), Some("13"));
}

#[tokio::test]
async fn an_empty_request_reuses_the_cached_one() {
    let (_gw, dev, user, pw) = gateway_with_device("cached").await;
    let inbox = folder_id(&dev, "Inbox").await;
    let (_, _key) = full_sync(&dev, &inbox, 50).await;
    append(&user, &pw, "INBOX", &mail("later", "x"), None).await;
    let url = format!("{}?{}", dev.base, dev.query("Sync"));
    let r = sync_result(
        &dev.post_raw(&url, Vec::new(), "application/vnd.ms-sync.wbxml")
            .await,
    );
    assert_eq!(r.adds.len(), 1, "{r:?}");
    assert_eq!(subject(&r.adds[0].1), "later");
}

#[tokio::test]
async fn filter_type_limits_by_date_and_narrowing_soft_deletes() {
    let (_gw, dev, user, pw) = gateway_with_device("filter").await;
    append(
        &user,
        &pw,
        "INBOX",
        &mail("old", "x"),
        Some("01-Jan-2020 10:00:00 +0000"),
    )
    .await;
    append(&user, &pw, "INBOX", &mail("new", "x"), None).await;
    let inbox = folder_id(&dev, "Inbox").await;
    let opts = |f: &str| Element::new(a::OPTIONS).text_child(a::FILTER_TYPE, f);
    let k = sync_result(
        &dev.post("Sync", &sync_request(&inbox, "0", 50, Some(opts("3"))))
            .await,
    )
    .key
    .unwrap();
    let r = sync_result(
        &dev.post("Sync", &sync_request(&inbox, &k, 50, Some(opts("3"))))
            .await,
    );
    assert_eq!(r.adds.len(), 1);
    assert_eq!(subject(&r.adds[0].1), "new");
    // Widening to everything sends the older mail.
    let r = sync_result(
        &dev.post(
            "Sync",
            &sync_request(&inbox, r.key.as_deref().unwrap(), 50, Some(opts("0"))),
        )
        .await,
    );
    assert_eq!(r.adds.len(), 1);
    assert_eq!(subject(&r.adds[0].1), "old");
    // Narrowing again: a SoftDelete, not a Delete; the mail stays on the server.
    let r = sync_result(
        &dev.post(
            "Sync",
            &sync_request(&inbox, r.key.as_deref().unwrap(), 50, Some(opts("3"))),
        )
        .await,
    );
    assert_eq!(r.soft_deletes.len(), 1, "{r:?}");
    assert!(r.deletes.is_empty());
    let t = imap(&user, &pw, &["STATUS INBOX (MESSAGES)"]).await;
    assert!(t.contains("MESSAGES 2"), "{t}");
}

#[tokio::test]
async fn bodies_follow_the_body_preference() {
    let (_gw, dev, user, pw) = gateway_with_device("body").await;
    let long = "Grüße aus Köln. ".repeat(400);
    append(&user, &pw, "INBOX", &mail("long", &long), None).await;
    let inbox = folder_id(&dev, "Inbox").await;
    let opts = Element::new(a::OPTIONS).child(
        Element::new(b::BODY_PREFERENCE)
            .text_child(b::TYPE, "1")
            .text_child(b::TRUNCATION_SIZE, "100"),
    );
    let k = sync_result(
        &dev.post("Sync", &sync_request(&inbox, "0", 50, Some(opts.clone())))
            .await,
    )
    .key
    .unwrap();
    let r = sync_result(
        &dev.post("Sync", &sync_request(&inbox, &k, 50, Some(opts)))
            .await,
    );
    let body = r.adds[0].1.first(b::BODY).expect("Body");
    assert_eq!(body.text_of(b::TYPE), Some("1"));
    assert_eq!(body.text_of(b::TRUNCATED), Some("1"));
    let data = body.text_of(b::DATA).unwrap();
    assert!(
        data.len() <= 100 && data.starts_with("Grüße aus Köln."),
        "{data:?}"
    );
    let est: usize = body
        .text_of(b::ESTIMATED_DATA_SIZE)
        .unwrap()
        .parse()
        .unwrap();
    assert!(est >= long.trim_end().len(), "{est}");
    // Without options the cached ones apply: the next key works and nothing is resent.
    let again = sync(&dev, &inbox, r.key.as_deref().unwrap(), 50).await;
    assert!(again.empty);
    let _ = user;
}

#[tokio::test]
async fn a_thousand_mails_sync_exactly_once_across_a_gateway_restart() {
    let gw = start_gateway().await;
    let (user, pw) = new_user("thousand");
    // Seed 1,000 mails in one IMAP session.
    let mails: Vec<(String, Option<String>)> = (0..1000)
        .map(|i| (mail(&format!("bulk {i:04}"), "body"), None))
        .collect();
    seed(&user, &pw, "INBOX", &mails).await;

    let mut dev = device_of(&gw, &user, &pw, "14.1").await;
    let inbox = folder_id(&dev, "Inbox").await;
    let mut key = sync(&dev, &inbox, "0", 100).await.key.unwrap();
    let mut seen: Vec<String> = Vec::new();
    let mut subjects = HashSet::new();
    // Three pages, then the gateway "dies" and a new one starts on the same state file.
    for _ in 0..3 {
        let r = sync(&dev, &inbox, &key, 100).await;
        seen.extend(r.adds.iter().map(|(s, _)| s.clone()));
        subjects.extend(r.adds.iter().map(|(_, d)| subject(d)));
        key = r.key.unwrap();
    }
    let url = gw.config.state_url.clone();
    let _ = gw.shutdown.send(true);
    let gw2 = start_gateway_with(GatewayOptions {
        state_url: Some(url),
        ..Default::default()
    })
    .await;
    dev.base = gw2.base.clone();
    // The response to the next page is lost once: the phone repeats its key.
    let lost = sync(&dev, &inbox, &key, 100).await;
    assert_eq!(lost.adds.len(), 100);
    let (rest, _) = sync_pages(&dev, &inbox, key, 100).await;
    seen.extend(server_ids(&rest));
    subjects.extend(rest.iter().map(|(_, d)| subject(d)));
    let distinct: HashSet<&String> = seen.iter().collect();
    assert_eq!(seen.len(), 1000, "every mail once");
    assert_eq!(distinct.len(), 1000);
    let expected: HashSet<String> = (0..1000).map(|i| format!("bulk {i:04}")).collect();
    assert_eq!(subjects, expected);
    let t = imap(&user, &pw, &["SELECT INBOX", "SEARCH SEEN"]).await;
    assert!(t.contains("* SEARCH\r\n"), "nothing was marked read");
}

#[tokio::test]
async fn changes_between_pages_appear_once() {
    let (_gw, dev, user, pw) = gateway_with_device("between").await;
    for i in 0..30 {
        append(&user, &pw, "INBOX", &mail(&format!("p{i:02}"), "x"), None).await;
    }
    let inbox = folder_id(&dev, "Inbox").await;
    let k = sync(&dev, &inbox, "0", 10).await.key.unwrap();
    let p1 = sync(&dev, &inbox, &k, 10).await;
    // Newest ten (UIDs 21..30) are on the device. On the server: flag one of them, expunge
    // another, expunge one not yet sent, deliver a new one.
    imap(
        &user,
        &pw,
        &[
            "SELECT INBOX",
            "UID STORE 30 +FLAGS (\\Flagged)",
            "UID STORE 29,5 +FLAGS (\\Deleted)",
            "UID EXPUNGE 29,5",
        ],
    )
    .await;
    append(&user, &pw, "INBOX", &mail("fresh", "x"), None).await;
    let mut key = p1.key.unwrap();
    let mut adds: Vec<String> = p1.adds.iter().map(|(s, _)| s.clone()).collect();
    let mut deletes = Vec::new();
    let mut changes = Vec::new();
    loop {
        let r = sync(&dev, &inbox, &key, 10).await;
        if r.empty {
            break;
        }
        adds.extend(r.adds.iter().map(|(s, _)| s.clone()));
        deletes.extend(r.deletes.clone());
        changes.extend(r.changes.iter().map(|(s, _)| s.clone()));
        key = r.key.unwrap();
        if !r.more {
            break;
        }
    }
    let held: HashSet<String> = adds
        .iter()
        .filter(|s| !deletes.contains(s))
        .cloned()
        .collect();
    // The device ends with exactly the server's 29 mails.
    assert_eq!(held.len(), 29, "adds {adds:?} deletes {deletes:?}");
    assert_eq!(deletes, vec![format!("{inbox}:29")]);
    assert_eq!(changes, vec![format!("{inbox}:30")]);
    assert!(!adds.contains(&format!("{inbox}:5")));
}

#[tokio::test]
async fn a_hanging_sync_answers_when_mail_arrives_and_empty_when_nothing_does() {
    let gw = start_gateway_with(GatewayOptions {
        push: "min_heartbeat_secs = 1\nmax_heartbeat_secs = 120",
        ..Default::default()
    })
    .await;
    let (user, pw) = new_user("hang");
    let dev = device_of(&gw, &user, &pw, "14.1").await;
    let inbox = folder_id(&dev, "Inbox").await;
    let (_, key) = full_sync(&dev, &inbox, 50).await;
    let hanging = |secs: u32| {
        let mut req = sync_request(&inbox, &key, 50, None);
        req.push(Element::with_text(a::HEARTBEAT_INTERVAL, secs.to_string()));
        req
    };
    // Nothing happens: the empty response at the end of the interval.
    let started = std::time::Instant::now();
    let r = sync_result(&dev.post("Sync", &hanging(2)).await);
    assert!(r.empty);
    assert!(started.elapsed() >= std::time::Duration::from_secs(2));
    // A mail arrives while the request waits: it comes back with that mail.
    let waiting = {
        let req = hanging(60);
        let d = dev.clone();
        tokio::spawn(async move { sync_result(&d.post("Sync", &req).await) })
    };
    tokio::time::sleep(std::time::Duration::from_millis(800)).await;
    let started = std::time::Instant::now();
    append(&user, &pw, "INBOX", &mail("pushed", "x"), None).await;
    let r = waiting.await.unwrap();
    println!(
        "hanging Sync answered {:?} after the APPEND",
        started.elapsed()
    );
    assert_eq!(r.adds.len(), 1, "{r:?}");
    assert_eq!(subject(&r.adds[0].1), "pushed");
    // Out of range: Status 14 with the limit.
    let reply = dev.post("Sync", &hanging(500)).await;
    let body = reply.body.unwrap();
    assert_eq!(body.text_of(a::STATUS), Some("14"));
    assert_eq!(body.text_of(a::LIMIT), Some("120"));
}

#[tokio::test]
async fn get_attachment_returns_the_bytes_of_a_12_x_file_reference() {
    let gw = start_gateway().await;
    let (user, pw) = new_user("getatt");
    let data: Vec<u8> = (0..3000u32).map(|i| (i * 7 % 251) as u8).collect();
    let b64 = {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD.encode(&data)
    };
    let raw = format!(
        "From: a@example.org\r\nTo: {user}\r\nSubject: att\r\nMIME-Version: 1.0\r\n\
         Content-Type: multipart/mixed; boundary=\"b\"\r\n\r\n--b\r\n\
         Content-Type: text/plain\r\n\r\nsee\r\n--b\r\n\
         Content-Type: image/png; name=\"p.png\"\r\nContent-Disposition: attachment; filename=\"p.png\"\r\n\
         Content-Transfer-Encoding: base64\r\n\r\n{b64}\r\n--b--\r\n"
    );
    append(&user, &pw, "INBOX", &raw, None).await;
    let dev = device_of(&gw, &user, &pw, "12.1").await;
    let inbox = folder_id(&dev, "Inbox").await;
    let (adds, _) = full_sync(&dev, &inbox, 10).await;
    let reference = adds[0]
        .1
        .first(b::ATTACHMENTS)
        .and_then(|a| a.first(b::ATTACHMENT))
        .and_then(|a| a.text_of(b::FILE_REFERENCE))
        .expect("FileReference")
        .to_string();
    let resp = dev.get_attachment(&reference).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "image/png");
    assert_eq!(resp.bytes().await.unwrap().to_vec(), data);
    let t = imap(&user, &pw, &["SELECT INBOX", "SEARCH SEEN"]).await;
    assert!(t.contains("* SEARCH\r\n"), "the mail stays unread: {t}");
}

/// Large mails with attachments are read without the attachments' bodies; what the device
/// gets must be exactly what the whole message gives, for the fixtures (read whole) and for
/// large mails of many shapes (read part by part).
#[tokio::test]
async fn adds_equal_the_whole_message_for_every_fixture() {
    use eas_gateway::backend::{
        Credentials, ImapBackend, ImapSettings, MailBackend, MailSession, Security,
    };
    use eas_gateway::commands::sync::{body_options, mail_flags};
    use eas_gateway::eas::sync::SyncOptions;
    use eas_gateway::eas::ProtocolVersion;
    use eas_gateway::mime::{application_data, ItemInfo};
    use eas_gateway::wbxml::encode;

    let (_gw, dev, user, pw) = gateway_with_device("partial").await;
    let dir = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/mime");
    let mut mails: Vec<Vec<u8>> = Vec::new();
    let mut names: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file())
        .collect();
    names.sort();
    for p in names {
        mails.push(std::fs::read(p).unwrap());
    }
    let b64 = |n: usize| {
        let line = "QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVphYmNkZWZnaGlqa2xtbm9wcXJzdHV2d3h5ejAx\r\n";
        line.repeat(n)
    };
    let head = "From: A <a@example.org>\r\nTo: B <b@example.com>\r\nMIME-Version: 1.0\r\n";
    mails.push(format!(
        "{head}Subject: seven bit and quoted-printable\r\n\
         Content-Type: multipart/mixed; boundary=\"b1\"\r\n\r\npreamble\r\n--b1\r\n\
         Content-Type: text/plain; charset=iso-8859-1\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n\
         Gr=FC=DFe\r\n--b1\r\nContent-Type: application/octet-stream\r\n\r\n{}\r\n--b1\r\n\
         Content-Type: image/gif; name=\"x.gif\"\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n\
         GIF89a=00=01=02\r\n--b1\r\nContent-Type: text/plain; name=\"notes.txt\"\r\n\
         Content-Disposition: attachment; filename=\"notes.txt\"\r\n\r\nsome notes\r\n--b1--\r\nepilogue\r\n",
        "raw bytes here ".repeat(10_000)
    ).into_bytes());
    mails.push(format!(
        "{head}Subject: forwarded with a pdf\r\n\
         Content-Type: multipart/mixed; boundary=\"o\"\r\n\r\n--o\r\n\
         Content-Type: text/html; charset=utf-8\r\n\r\n<p>see below</p>\r\n--o\r\n\
         Content-Type: message/rfc822\r\n\r\nFrom: c@example.org\r\nSubject: inner\r\n\
         Content-Type: multipart/mixed; boundary=\"i\"\r\n\r\n--i\r\nContent-Type: text/plain\r\n\r\ninner text\r\n\
         --i\r\nContent-Type: application/pdf; name=\"in.pdf\"\r\nContent-Transfer-Encoding: base64\r\n\r\n{}--i--\r\n\
         --o\r\nContent-Type: application/pdf; name*=UTF-8''%C3%BC.pdf\r\nContent-Transfer-Encoding: base64\r\n\
         Content-ID: <pdf@x>\r\n\r\n{}--o--\r\n",
        b64(3),
        b64(2500)
    ).into_bytes());
    mails.push(format!(
        "{head}Subject: broken base64\r\nContent-Type: multipart/mixed; boundary=\"z\"\r\n\r\n--z\r\n\
         Content-Type: text/plain\r\n\r\nbody\r\n--z\r\nContent-Type: application/pdf; name=\"bad.pdf\"\r\n\
         Content-Transfer-Encoding: base64\r\n\r\nQUJD*%$#RE\r\n=== not base64 at all ===\r\n--z\r\n\
         Content-Type: image/jpeg\r\nContent-Transfer-Encoding: base64\r\n\r\n{}--z--\r\n",
        b64(2500)
    ).into_bytes());
    mails.push(format!(
        "{head}Subject: =?UTF-8?Q?gro=C3=9F?= with inline image\r\nImportance: high\r\n\
         Content-Type: multipart/mixed; boundary=\"M\"\r\n\r\n--M\r\n\
         Content-Type: multipart/related; boundary=\"R\"\r\n\r\n--R\r\n\
         Content-Type: multipart/alternative; boundary=\"A\"\r\n\r\n--A\r\n\
         Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: base64\r\n\r\n\
         w6TDtsO8IHBsYWluCg==\r\n--A\r\nContent-Type: text/html; charset=utf-8\r\n\
         Content-Transfer-Encoding: quoted-printable\r\n\r\n<p>=C3=A4 <img src=3D\"cid:i@x\"></p>\r\n\
         --A--\r\n\r\n--R\r\nContent-Type: image/png\r\nContent-ID: <i@x>\r\n\
         Content-Transfer-Encoding: base64\r\n\r\n{}--R--\r\n\r\n--M\r\n\
         Content-Type: application/vnd.ms-excel\r\nContent-Transfer-Encoding: base64\r\n\
         Content-Disposition: attachment; filename*0=\"long \"; filename*1=\"name.xls\"\r\n\r\n{}\
         --M\r\nContent-Type: text/calendar; method=REQUEST\r\n\r\nBEGIN:VCALENDAR\r\nEND:VCALENDAR\r\n\
         --M--\r\n",
        b64(1000),
        b64(1500)
    ).into_bytes());
    mails.push(
        format!(
            "{head}Subject: bare newlines\nContent-Type: multipart/mixed; boundary=\"n\"\n\n--n\n\
             Content-Type: text/plain\n\nline\n--n\nContent-Type: image/png; name=\"p.png\"\n\
             Content-Transfer-Encoding: base64\n\n{}--n--\n",
            b64(2500).replace("\r\n", "\n")
        )
        .into_bytes(),
    );

    let backend = ImapBackend::new(ImapSettings {
        host: IMAP.split(':').next().unwrap().to_string(),
        port: IMAP.rsplit(':').next().unwrap().parse().unwrap(),
        security: Security::None,
        timeout: std::time::Duration::from_secs(10),
        logins: Default::default(),
    });
    let creds = Credentials {
        login: user.clone(),
        password: pw.clone().into(),
    };
    let mut imap = backend.login(&creds, None).await.unwrap();
    for m in &mails {
        imap.append("INBOX", &["$label1".to_string()], m.clone())
            .await
            .unwrap();
    }
    // The large mails with attachments are read without the attachments' bodies.
    let all: Vec<u32> = (1..=mails.len() as u32).collect();
    let shown = imap.fetch_for_display("INBOX", &all).await.unwrap();
    assert_eq!(shown.len(), mails.len());
    let partial: Vec<_> = shown.iter().filter(|m| !m.omitted.is_empty()).collect();
    assert!(partial.len() >= 3, "{} read part by part", partial.len());
    for m in &partial {
        let left_out: u64 = m.omitted.iter().map(|(_, n)| n).sum();
        assert!(
            (m.raw.len() as u64) + left_out / 2 < u64::from(m.meta.size),
            "{} of {} bytes read, {left_out} left out",
            m.raw.len(),
            m.meta.size
        );
    }
    let inbox = folder_id(&dev, "Inbox").await;

    for (body_type, truncation, preview) in [("2", "51200", true), ("1", "100", false)] {
        let mut pref = Element::new(b::BODY_PREFERENCE)
            .text_child(b::TYPE, body_type)
            .text_child(b::TRUNCATION_SIZE, truncation);
        if preview {
            pref.push(Element::with_text(b::PREVIEW, "255"));
        }
        let opts = Element::new(a::OPTIONS).child(pref);
        let first = sync_result(
            &dev.post("Sync", &sync_request(&inbox, "0", 5, Some(opts.clone())))
                .await,
        );
        let mut key = first.key.unwrap();
        let mut adds = Vec::new();
        loop {
            let r = sync_result(
                &dev.post("Sync", &sync_request(&inbox, &key, 5, Some(opts.clone())))
                    .await,
            );
            adds.extend(r.adds);
            key = r.key.unwrap();
            if !r.more {
                break;
            }
        }
        assert_eq!(adds.len(), mails.len());
        let body_opts = body_options(
            &SyncOptions::from_element(&opts).unwrap(),
            ProtocolVersion::V16_1,
        );
        for (sid, got) in &adds {
            let uid: u32 = sid.rsplit(':').next().unwrap().parse().unwrap();
            let (meta, raw) = imap
                .fetch_messages("INBOX", &[uid])
                .await
                .unwrap()
                .pop()
                .unwrap();
            let info = ItemInfo {
                file_reference_prefix: sid,
                internal_date: meta.internal_date,
                in_drafts: false,
            };
            let want = application_data(&raw, &mail_flags(&meta), &info, &body_opts);
            assert_eq!(
                encode(got),
                encode(&want),
                "{sid} differs (Type {body_type}):\n{got:#?}\nwhole message gives\n{want:#?}"
            );
        }
    }
    // Reading never marked anything read.
    let t = common::imap(&user, &pw, &["SELECT INBOX", "SEARCH SEEN"]).await;
    assert!(t.contains("* SEARCH\r\n"), "{t}");
}
