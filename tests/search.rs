//! Search (Mailbox store) against the real dev Dovecot: free text among thousands of mails,
//! exact date ranges, DeepTraversal, Range paging, LongIds with ItemOperations, statuses, and
//! pyactivesync as an outside opinion.

mod common;

use std::collections::HashSet;
use std::time::Instant;

use common::*;
use eas_gateway::wbxml::tags::{
    airsync as a, airsyncbase as b, email, item_operations as io, search as s,
};
use eas_gateway::wbxml::Element;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

fn free_text(word: &str) -> Element {
    Element::with_text(s::FREE_TEXT, word)
}

fn date(tag: eas_gateway::wbxml::Tag, value: &str) -> Element {
    Element::new(tag)
        .child(Element::new(email::DATE_RECEIVED))
        .text_child(s::VALUE, value)
}

/// A Mailbox search: `And` of Class Email, the CollectionId when given, and `conditions`.
fn search_request(cid: Option<&str>, conditions: Vec<Element>, options: Element) -> Element {
    let mut and = Element::new(s::AND).text_child(a::CLASS, "Email");
    if let Some(c) = cid {
        and.push(Element::with_text(a::COLLECTION_ID, c));
    }
    for c in conditions {
        and.push(c);
    }
    Element::new(s::SEARCH).child(
        Element::new(s::STORE)
            .text_child(s::NAME, "Mailbox")
            .child(Element::new(s::QUERY).child(and))
            .child(options),
    )
}

fn options(range: &str, deep: bool) -> Element {
    let mut o = Element::new(s::OPTIONS).text_child(s::RANGE, range);
    if deep {
        o.push(Element::new(s::DEEP_TRAVERSAL));
    }
    o.push(Element::new(s::REBUILD_RESULTS));
    o.push(Element::new(b::BODY_PREFERENCE).text_child(b::TYPE, "1"));
    o
}

#[derive(Debug)]
struct Answer {
    status: Option<String>,
    store_status: Option<String>,
    /// (LongId, CollectionId, Subject)
    results: Vec<(String, String, String)>,
    range: Option<String>,
    total: Option<usize>,
}

async fn search(dev: &TestDevice, req: &Element) -> Answer {
    let r = dev.post("Search", req).await;
    assert_eq!(r.status, 200, "Search HTTP status");
    let body = r.body.expect("Search body");
    assert_eq!(body.tag, s::SEARCH);
    let store = body.first(s::RESPONSE).and_then(|r| r.first(s::STORE));
    let results = store
        .map(|st| {
            st.all(s::RESULT)
                .filter(|r| r.first(s::LONG_ID).is_some())
                .map(|r| {
                    assert_eq!(r.text_of(a::CLASS), Some("Email"));
                    let props = r.first(s::PROPERTIES).expect("Properties");
                    (
                        r.text_of(s::LONG_ID).unwrap().to_string(),
                        r.text_of(a::COLLECTION_ID)
                            .expect("CollectionId")
                            .to_string(),
                        props.text_of(email::SUBJECT).unwrap_or("").to_string(),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    Answer {
        status: body.text_of(s::STATUS).map(String::from),
        store_status: store.and_then(|st| st.text_of(s::STATUS)).map(String::from),
        results,
        range: store.and_then(|st| st.text_of(s::RANGE)).map(String::from),
        total: store
            .and_then(|st| st.text_of(s::TOTAL))
            .map(|t| t.parse().expect("numeric Total")),
    }
}

fn filler(n: usize) -> Vec<(String, Option<String>)> {
    (0..n)
        .map(|i| {
            (
                mail(&format!("filler number {i}"), "nothing interesting here"),
                None,
            )
        })
        .collect()
}

#[tokio::test]
async fn a_word_in_one_subject_among_5000_mails_is_found() {
    let (_gw, dev, user, pw) = gateway_with_device("search5k").await;
    let mut mails = filler(4999);
    mails.insert(
        2500,
        (
            mail("Quarterly zanzibarquokka figures", "see the numbers"),
            None,
        ),
    );
    let t = Instant::now();
    seed(&user, &pw, "INBOX", &mails).await;
    eprintln!("seeded 5000 mails in {:?}", t.elapsed());
    let inbox = folder_id(&dev, "Inbox").await;
    let t = Instant::now();
    let ans = search(
        &dev,
        &search_request(
            Some(&inbox),
            vec![free_text("zanzibarquokka")],
            options("0-9", false),
        ),
    )
    .await;
    eprintln!("Search over 5000 mails answered in {:?}", t.elapsed());
    assert_eq!(ans.status.as_deref(), Some("1"));
    assert_eq!(ans.store_status.as_deref(), Some("1"));
    assert_eq!(ans.total, Some(1), "{ans:?}");
    assert_eq!(ans.range.as_deref(), Some("0-0"));
    assert_eq!(ans.results.len(), 1);
    assert_eq!(ans.results[0].1, inbox);
    assert_eq!(ans.results[0].2, "Quarterly zanzibarquokka figures");
    // Case does not matter; no match is one empty Result and Total 0.
    let ans = search(
        &dev,
        &search_request(
            None,
            vec![free_text("ZANZIBARQUOKKA")],
            options("0-9", false),
        ),
    )
    .await;
    assert_eq!(ans.total, Some(1));
    let ans = search(
        &dev,
        &search_request(
            None,
            vec![free_text("nosuchwordanywhere")],
            options("0-9", false),
        ),
    )
    .await;
    assert_eq!(ans.store_status.as_deref(), Some("1"));
    assert_eq!(ans.total, Some(0));
    assert!(ans.results.is_empty());
}

#[tokio::test]
async fn a_date_only_search_returns_exactly_the_mails_in_the_range() {
    let (_gw, dev, user, pw) = gateway_with_device("searchdate").await;
    let mut mails = Vec::new();
    for day in 1..=10 {
        mails.push((
            mail(&format!("day {day:02}"), "x"),
            Some(format!("{day:02}-Jan-2020 10:00:00 +0000")),
        ));
    }
    // One second after the lower bound (in), exactly at the upper bound (out), and the
    // same instant written in another zone (in).
    mails.push((
        mail("edge in", "x"),
        Some("03-Jan-2020 10:00:01 +0000".into()),
    ));
    mails.push((
        mail("edge out", "x"),
        Some("07-Jan-2020 10:00:00 +0000".into()),
    ));
    mails.push((
        mail("zone in", "x"),
        Some("05-Jan-2020 23:30:00 -0200".into()),
    ));
    seed(&user, &pw, "INBOX", &mails).await;
    let inbox = folder_id(&dev, "Inbox").await;
    let ans = search(
        &dev,
        &search_request(
            Some(&inbox),
            vec![
                date(s::GREATER_THAN, "2020-01-03T10:00:00.000Z"),
                date(s::LESS_THAN, "2020-01-07T10:00:00.000Z"),
            ],
            options("0-99", false),
        ),
    )
    .await;
    assert_eq!(ans.store_status.as_deref(), Some("1"), "{ans:?}");
    let subjects: Vec<&str> = ans.results.iter().map(|r| r.2.as_str()).collect();
    // Newest first: 06 Jan 10:00, zone in (06 Jan 01:30 UTC), 05, 04, edge in.
    assert_eq!(
        subjects,
        vec!["day 06", "zone in", "day 05", "day 04", "edge in"]
    );
    assert_eq!(ans.total, Some(5));
    // Only a lower bound.
    let ans = search(
        &dev,
        &search_request(
            None,
            vec![date(s::GREATER_THAN, "2020-01-09T00:00:00.000Z")],
            options("0-99", false),
        ),
    )
    .await;
    let subjects: Vec<&str> = ans.results.iter().map(|r| r.2.as_str()).collect();
    assert_eq!(subjects, vec!["day 10", "day 09"]);
}

#[tokio::test]
async fn deep_traversal_searches_every_folder() {
    let (_gw, dev, user, pw) = gateway_with_device("searchdeep").await;
    imap(
        &user,
        &pw,
        &[
            "CREATE Projects",
            "CREATE Projects/Alpha",
            "CREATE Archive2",
        ],
    )
    .await;
    for (folder, day) in [
        ("INBOX", "01"),
        ("Projects", "02"),
        ("Projects/Alpha", "03"),
        ("Archive2", "04"),
        ("Trash", "05"),
    ] {
        append(
            &user,
            &pw,
            folder,
            &mail(&format!("wombat in {folder}"), "x"),
            Some(&format!("{day}-Feb-2021 08:00:00 +0000")),
        )
        .await;
        append(&user, &pw, folder, &mail("unrelated", "x"), None).await;
    }
    let projects = folder_id(&dev, "Projects").await;
    let alpha = folder_id(&dev, "Alpha").await;
    let word = || vec![free_text("wombat")];

    let ans = search(
        &dev,
        &search_request(Some(&projects), word(), options("0-9", false)),
    )
    .await;
    let subjects: Vec<&str> = ans.results.iter().map(|r| r.2.as_str()).collect();
    assert_eq!(subjects, vec!["wombat in Projects"]);

    let ans = search(
        &dev,
        &search_request(Some(&projects), word(), options("0-9", true)),
    )
    .await;
    let got: Vec<(&str, &str)> = ans
        .results
        .iter()
        .map(|r| (r.2.as_str(), r.1.as_str()))
        .collect();
    assert_eq!(
        got,
        vec![
            ("wombat in Projects/Alpha", alpha.as_str()),
            ("wombat in Projects", projects.as_str())
        ]
    );

    let ans = search(&dev, &search_request(None, word(), options("0-9", true))).await;
    let subjects: Vec<&str> = ans.results.iter().map(|r| r.2.as_str()).collect();
    assert_eq!(
        subjects,
        vec![
            "wombat in Trash",
            "wombat in Archive2",
            "wombat in Projects/Alpha",
            "wombat in Projects",
            "wombat in INBOX"
        ]
    );
    assert_eq!(ans.total, Some(5));
}

#[tokio::test]
async fn range_pages_are_disjoint_and_cover_the_whole_result() {
    let (_gw, dev, user, pw) = gateway_with_device("searchpage").await;
    let mut mails = Vec::new();
    for i in 0..25 {
        mails.push((
            mail(&format!("pangolin {i:02}"), "x"),
            Some(format!("{:02}-Mar-2022 09:00:00 +0000", i + 1)),
        ));
    }
    mails.extend(filler(30));
    seed(&user, &pw, "INBOX", &mails).await;
    let mut seen = Vec::new();
    let mut ids = HashSet::new();
    for (range, want_range, n) in [
        ("0-9", "0-9", 10),
        ("10-19", "10-19", 10),
        ("20-29", "20-24", 5),
    ] {
        let ans = search(
            &dev,
            &search_request(None, vec![free_text("pangolin")], options(range, false)),
        )
        .await;
        assert_eq!(ans.total, Some(25));
        assert_eq!(ans.range.as_deref(), Some(want_range));
        assert_eq!(ans.results.len(), n);
        for r in &ans.results {
            assert!(ids.insert(r.0.clone()), "LongId {} on two pages", r.0);
            seen.push(r.2.clone());
        }
    }
    let want: Vec<String> = (0..25).rev().map(|i| format!("pangolin {i:02}")).collect();
    assert_eq!(
        seen, want,
        "pages are newest first and cover every match once"
    );
    // A range beyond the matches: no results, the Total still told.
    let ans = search(
        &dev,
        &search_request(None, vec![free_text("pangolin")], options("30-39", false)),
    )
    .await;
    assert_eq!(ans.store_status.as_deref(), Some("1"));
    assert!(ans.results.is_empty());
    assert_eq!(ans.total, Some(25));
}

fn fetch_long_id(long_id: &str) -> Element {
    Element::new(io::ITEM_OPERATIONS).child(
        Element::new(io::FETCH)
            .text_child(io::STORE, "Mailbox")
            .text_child(s::LONG_ID, long_id)
            .child(
                Element::new(io::OPTIONS)
                    .child(Element::new(b::BODY_PREFERENCE).text_child(b::TYPE, "1")),
            ),
    )
}

async fn fetch_status_and_subject(dev: &TestDevice, long_id: &str) -> (String, Option<String>) {
    let r = dev.post("ItemOperations", &fetch_long_id(long_id)).await;
    assert_eq!(r.status, 200);
    let body = r.body.expect("ItemOperations body");
    let f = body
        .first(io::RESPONSE)
        .and_then(|r| r.first(io::FETCH))
        .expect("Fetch");
    assert_eq!(f.text_of(s::LONG_ID), Some(long_id));
    (
        f.text_of(io::STATUS).unwrap_or("").to_string(),
        f.first(io::PROPERTIES)
            .and_then(|p| p.text_of(email::SUBJECT))
            .map(String::from),
    )
}

#[tokio::test]
async fn a_long_id_fetches_the_right_mail_and_only_for_its_owner() {
    let gw = start_gateway().await;
    let (user, pw) = new_user("searchlong");
    let dev = device_of(&gw, &user, &pw, "16.1").await;
    imap(&user, &pw, &["CREATE Receipts"]).await;
    append(&user, &pw, "INBOX", &mail("okapi one", "first body"), None).await;
    append(
        &user,
        &pw,
        "Receipts",
        &mail("okapi two", "second body"),
        None,
    )
    .await;
    append(
        &user,
        &pw,
        "INBOX",
        &mail("okapi three", "third body"),
        None,
    )
    .await;
    let ans = search(
        &dev,
        &search_request(None, vec![free_text("okapi")], options("0-9", false)),
    )
    .await;
    assert_eq!(ans.results.len(), 3);
    for (long_id, _, subject) in &ans.results {
        let (st, got) = fetch_status_and_subject(&dev, long_id).await;
        assert_eq!(st, "1");
        assert_eq!(got.as_deref(), Some(subject.as_str()));
    }
    let (long_id, _, subject) = ans
        .results
        .iter()
        .find(|r| r.2 == "okapi two")
        .unwrap()
        .clone();
    let r = dev.post("ItemOperations", &fetch_long_id(&long_id)).await;
    let body = r.body.unwrap();
    let props = body
        .first(io::RESPONSE)
        .and_then(|r| r.first(io::FETCH))
        .and_then(|f| f.first(io::PROPERTIES))
        .unwrap();
    assert_eq!(props.text_of(email::SUBJECT), Some(subject.as_str()));
    let text = props
        .first(b::BODY)
        .and_then(|b| b.text_of(b::DATA))
        .unwrap();
    assert!(text.contains("second body"), "{text}");

    // Garbage and made-up LongIds are "not found".
    for bad in ["garbage", "S999:1:1", "S:1:1"] {
        let (st, _) = fetch_status_and_subject(&dev, bad).await;
        assert_eq!(st, "6", "{bad}");
    }
    // Another user presenting this LongId never reaches the first user's mail: it is looked
    // up in the presenting user's own folders only. (Folder ids are per user and Dovecot's
    // UIDVALIDITY is a creation timestamp, so it may even name a mail of the second user.)
    let (other, other_pw) = new_user("searchlong2");
    imap(&other, &other_pw, &["CREATE Receipts"]).await;
    append(&other, &other_pw, "Receipts", &mail("private", "x"), None).await;
    let dev2 = device_of(&gw, &other, &other_pw, "16.1").await;
    folder_id(&dev2, "Receipts").await;
    let (st, got) = fetch_status_and_subject(&dev2, &long_id).await;
    match st.as_str() {
        "6" => assert_eq!(got, None),
        "1" => assert_eq!(got.as_deref(), Some("private"), "only the user's own mail"),
        other => panic!("unexpected status {other}"),
    }
    assert_ne!(got.as_deref(), Some(subject.as_str()));
    // Once the mail is gone, its LongId is too.
    imap(
        &user,
        &pw,
        &["SELECT Receipts", "STORE 1 +FLAGS (\\Deleted)", "EXPUNGE"],
    )
    .await;
    let (st, _) = fetch_status_and_subject(&dev, &long_id).await;
    assert_eq!(st, "6");
}

#[tokio::test]
async fn malformed_and_unsupported_queries_get_their_status() {
    let (_gw, dev, _user, _pw) = gateway_with_device("searchbad").await;
    let store = |q: Element| {
        Element::new(s::SEARCH).child(
            Element::new(s::STORE)
                .text_child(s::NAME, "Mailbox")
                .child(Element::new(s::QUERY).child(q)),
        )
    };
    let cases: Vec<(&str, Element, &str)> = vec![
        ("Or", store(Element::new(s::OR).child(free_text("x"))), "8"),
        ("FreeText outside And", store(free_text("x")), "8"),
        (
            "comparison on another field",
            store(
                Element::new(s::AND).child(
                    Element::new(s::GREATER_THAN)
                        .child(Element::new(email::SUBJECT))
                        .text_child(s::VALUE, "x"),
                ),
            ),
            "8",
        ),
        (
            "bad date",
            search_request(
                None,
                vec![date(s::GREATER_THAN, "last week")],
                options("0-9", false),
            ),
            "2",
        ),
        (
            "bad range",
            search_request(None, vec![free_text("x")], options("9-1", false)),
            "2",
        ),
        (
            "no condition",
            search_request(None, vec![], options("0-9", false)),
            "2",
        ),
        ("no Store", Element::new(s::SEARCH), "2"),
        (
            "unknown folder",
            search_request(
                Some("no-such-folder"),
                vec![free_text("x")],
                options("0-9", false),
            ),
            "11",
        ),
        (
            "GAL: no directory",
            Element::new(s::SEARCH).child(
                Element::new(s::STORE)
                    .text_child(s::NAME, "GAL")
                    .text_child(s::QUERY, "anna")
                    .child(Element::new(s::OPTIONS).text_child(s::RANGE, "0-9")),
            ),
            "3",
        ),
    ];
    for (what, req, want) in cases {
        let ans = search(&dev, &req).await;
        // A store the server does not have fails the whole request too.
        let top = if what.starts_with("GAL") { "3" } else { "1" };
        assert_eq!(ans.status.as_deref(), Some(top), "{what}");
        assert_eq!(ans.store_status.as_deref(), Some(want), "{what}: {ans:?}");
        assert!(ans.results.is_empty(), "{what}");
    }
}

#[tokio::test]
async fn pyactivesync_search_mailbox_and_find_mailbox() {
    let gw = start_gateway().await;
    let (user, pw) = new_user("pysearch");
    append(
        &user,
        &pw,
        "INBOX",
        &mail("old capybara", "x"),
        Some("01-Jan-2019 10:00:00 +0000"),
    )
    .await;
    append(
        &user,
        &pw,
        "INBOX",
        &mail("new capybara", "x"),
        Some("01-Jan-2024 10:00:00 +0000"),
    )
    .await;
    append(&user, &pw, "INBOX", &mail("something else", "x"), None).await;
    let host = gw.host();
    let script = pyactivesync_script("search_find.py");
    let stdout = pyactivesync(&[&script, &host, &user, &pw, "PYEAS0005"], "search_find").await;
    for check in [
        "ok search_mailbox date",
        "ok search_mailbox free_text",
        "ok find_mailbox",
        "ok search_gal",
    ] {
        assert!(stdout.contains(check), "{check} missing: {stdout}");
    }
}

/// A measurement, not a check: a free-text Search over 20,000 mails next
/// to the raw IMAP SEARCH it issues. Prints times, asserts only the result. Slow to seed, so
/// run on demand: `cargo test --test search -- --ignored --nocapture`.
#[tokio::test]
#[ignore]
async fn measure_free_text_search_over_20000_mails() {
    let (_gw, dev, user, pw) = gateway_with_device("search20k").await;
    let mut mails = filler(19_999);
    mails.insert(7_000, (mail("The aardwolf memo", "rare animal"), None));
    let t = Instant::now();
    seed(&user, &pw, "INBOX", &mails).await;
    eprintln!("seeded 20000 mails in {:?}", t.elapsed());
    let inbox = folder_id(&dev, "Inbox").await;
    let req = search_request(
        Some(&inbox),
        vec![free_text("aardwolf")],
        options("0-9", false),
    );
    for round in 0..3 {
        let t = Instant::now();
        let ans = search(&dev, &req).await;
        let gateway = t.elapsed();
        assert_eq!(ans.total, Some(1));
        let t = Instant::now();
        let transcript = imap(
            &user,
            &pw,
            &["SELECT INBOX", "UID SEARCH RETURN (ALL) TEXT \"aardwolf\""],
        )
        .await;
        let raw = t.elapsed();
        assert!(transcript.contains("ESEARCH"), "{transcript}");
        eprintln!(
            "round {round}: gateway Search {gateway:?}; raw IMAP (LOGIN+SELECT+UID SEARCH \
             RETURN (ALL) TEXT \"aardwolf\"+LOGOUT) {raw:?}"
        );
    }
    // The raw SEARCH alone, on an already selected mailbox.
    let stream = TcpStream::connect(IMAP).await.unwrap();
    let (r, mut w) = stream.into_split();
    let mut r = BufReader::new(r);
    let mut line = String::new();
    r.read_line(&mut line).await.unwrap();
    for (tag, cmd) in [
        ("l", format!("LOGIN \"{user}\" \"{pw}\"")),
        ("s", "SELECT INBOX".into()),
        ("q", "UID SEARCH RETURN (ALL) TEXT \"aardwolf\"".into()),
        ("d", "UID SEARCH RETURN (ALL) SINCE 1-Jan-2000".into()),
    ] {
        let t = Instant::now();
        w.write_all(format!("{tag} {cmd}\r\n").as_bytes())
            .await
            .unwrap();
        loop {
            line.clear();
            r.read_line(&mut line).await.unwrap();
            if line.starts_with(&format!("{tag} ")) {
                break;
            }
        }
        if tag == "q" || tag == "d" {
            eprintln!("raw `{cmd}` on the selected INBOX: {:?}", t.elapsed());
        }
    }
}
