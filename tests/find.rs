//! Find (16.1) against the real dev Dovecot: a word among 5,000 mails, the Find properties,
//! ServerIds usable with ItemOperations, folder scope, Range rules and GAL.

mod common;

use std::time::Instant;

use common::*;
use eas_gateway::wbxml::tags::{airsync as a, email, find as f, item_operations as io};
use eas_gateway::wbxml::Element;

fn find_request(word: &str, cid: Option<&str>, range: &str, deep: bool) -> Element {
    let mut query = Element::new(f::QUERY)
        .text_child(f::FREE_TEXT, word)
        .text_child(a::CLASS, "Email");
    if let Some(c) = cid {
        query.push(Element::with_text(a::COLLECTION_ID, c));
    }
    let mut options = Element::new(f::OPTIONS).text_child(f::RANGE, range);
    if deep {
        options.push(Element::new(f::DEEP_TRAVERSAL));
    }
    Element::new(f::FIND)
        .text_child(f::SEARCH_ID, "4a1f6c3e-2b7d-4e59-9c1a-6f0e8d2b3a71")
        .child(
            Element::new(f::EXECUTE_SEARCH).child(
                Element::new(f::MAIL_BOX_SEARCH_CRITERION)
                    .child(query)
                    .child(options),
            ),
        )
}

#[derive(Debug)]
struct Answer {
    status: Option<String>,
    response_status: Option<String>,
    store: Option<String>,
    /// (ServerId, CollectionId, Properties)
    results: Vec<(String, String, Element)>,
    range: Option<String>,
    total: Option<usize>,
}

async fn find(dev: &TestDevice, req: &Element) -> Answer {
    let r = dev.post("Find", req).await;
    assert_eq!(r.status, 200, "Find HTTP status");
    let body = r.body.expect("Find body");
    assert_eq!(body.tag, f::FIND);
    let resp = body.first(f::RESPONSE);
    Answer {
        status: body.text_of(f::STATUS).map(String::from),
        response_status: resp.and_then(|r| r.text_of(f::STATUS)).map(String::from),
        store: resp.and_then(|r| r.text_of(io::STORE)).map(String::from),
        results: resp
            .map(|r| {
                r.all(f::RESULT)
                    .map(|res| {
                        assert_eq!(res.text_of(a::CLASS), Some("Email"));
                        (
                            res.text_of(a::SERVER_ID).expect("ServerId").to_string(),
                            res.text_of(a::COLLECTION_ID)
                                .expect("CollectionId")
                                .to_string(),
                            res.first(f::PROPERTIES).expect("Properties").clone(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default(),
        range: resp.and_then(|r| r.text_of(f::RANGE)).map(String::from),
        total: resp
            .and_then(|r| r.text_of(f::TOTAL))
            .map(|t| t.parse().expect("numeric Total")),
    }
}

#[tokio::test]
async fn a_word_in_one_subject_among_5000_mails_is_found_with_its_properties() {
    let (_gw, dev, user, pw) = gateway_with_device("find5k").await;
    let mut mails: Vec<String> = (0..4999)
        .map(|i| mail(&format!("filler number {i}"), "nothing interesting here"))
        .collect();
    let target = "From: \"Ann Lee\" <ann@example.org>\r\nTo: \"Bo\" <bo@example.test>\r\n\
                  Cc: \"Cy Doe\" <cy@example.org>, dee@example.org\r\n\
                  Subject: Notes on the narwhalfinder project\r\nImportance: high\r\n\
                  MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n\
                  First line of the notes.\r\nSecond line.\r\n"
        .to_string();
    mails.insert(1234, target);
    let mails: Vec<(String, Option<String>)> = mails.into_iter().map(|m| (m, None)).collect();
    let t = Instant::now();
    seed(&user, &pw, "INBOX", &mails).await;
    eprintln!("seeded 5000 mails in {:?}", t.elapsed());
    let inbox = folder_id(&dev, "Inbox").await;
    let t = Instant::now();
    let ans = find(
        &dev,
        &find_request("narwhalfinder", Some(&inbox), "0-9", false),
    )
    .await;
    eprintln!("Find over 5000 mails answered in {:?}", t.elapsed());
    assert_eq!(ans.status.as_deref(), Some("1"));
    assert_eq!(ans.response_status.as_deref(), Some("1"));
    assert_eq!(ans.store.as_deref(), Some("Mailbox"));
    assert_eq!(ans.total, Some(1), "{ans:?}");
    assert_eq!(ans.range.as_deref(), Some("0-0"));
    let (sid, cid, props) = &ans.results[0];
    assert_eq!(cid, &inbox);
    assert!(sid.starts_with(&format!("{inbox}:")), "{sid}");
    assert_eq!(
        props.text_of(email::SUBJECT),
        Some("Notes on the narwhalfinder project")
    );
    assert_eq!(props.text_of(email::DISPLAY_TO), Some("Bo"));
    assert_eq!(
        props.text_of(f::DISPLAY_CC),
        Some("Cy Doe; dee@example.org")
    );
    assert_eq!(props.text_of(email::IMPORTANCE), Some("2"));
    assert_eq!(props.text_of(email::READ), Some("0"));
    assert_eq!(props.text_of(f::HAS_ATTACHMENTS), Some("0"));
    assert_eq!(
        props.text_of(f::PREVIEW),
        Some("First line of the notes. Second line.")
    );
    assert!(props
        .text_of(email::FROM)
        .is_some_and(|f| f.contains("ann@example.org")));
    assert!(props.text_of(email::DATE_RECEIVED).is_some());

    // The ServerId works with ItemOperations Fetch.
    let req = Element::new(io::ITEM_OPERATIONS).child(
        Element::new(io::FETCH)
            .text_child(io::STORE, "Mailbox")
            .text_child(a::COLLECTION_ID, cid.clone())
            .text_child(a::SERVER_ID, sid.clone()),
    );
    let r = dev.post("ItemOperations", &req).await;
    let body = r.body.expect("ItemOperations body");
    let fetch = body
        .first(io::RESPONSE)
        .and_then(|r| r.first(io::FETCH))
        .unwrap();
    assert_eq!(fetch.text_of(io::STATUS), Some("1"));
    assert_eq!(
        fetch
            .first(io::PROPERTIES)
            .and_then(|p| p.text_of(email::SUBJECT)),
        Some("Notes on the narwhalfinder project")
    );
}

#[tokio::test]
async fn scope_ranges_and_statuses() {
    let (_gw, dev, user, pw) = gateway_with_device("findscope").await;
    imap(&user, &pw, &["CREATE Work", "CREATE Work/Old"]).await;
    for (folder, day) in [("INBOX", "01"), ("Work", "02"), ("Work/Old", "03")] {
        for n in 0..4 {
            append(
                &user,
                &pw,
                folder,
                &mail(&format!("ibex {folder} {n}"), "x"),
                Some(&format!("{day}-Apr-2023 0{n}:00:00 +0000")),
            )
            .await;
        }
    }
    let work = folder_id(&dev, "Work").await;
    let ans = find(&dev, &find_request("ibex", Some(&work), "0-99", false)).await;
    assert_eq!(ans.total, Some(4));
    let ans = find(&dev, &find_request("ibex", Some(&work), "0-99", true)).await;
    assert_eq!(ans.total, Some(8));
    let ans = find(&dev, &find_request("ibex", None, "0-4", false)).await;
    assert_eq!(ans.total, Some(12));
    assert_eq!(ans.range.as_deref(), Some("0-4"));
    let subjects: Vec<&str> = ans
        .results
        .iter()
        .map(|r| r.2.text_of(email::SUBJECT).unwrap())
        .collect();
    assert_eq!(
        subjects,
        vec![
            "ibex Work/Old 3",
            "ibex Work/Old 2",
            "ibex Work/Old 1",
            "ibex Work/Old 0",
            "ibex Work 3"
        ]
    );

    // A Range not starting at 0.
    let ans = find(&dev, &find_request("ibex", None, "5-9", false)).await;
    assert_eq!(ans.status.as_deref(), Some("1"));
    assert_eq!(ans.response_status.as_deref(), Some("4"));
    assert!(ans.results.is_empty());
    // An unknown folder: FolderSync required.
    let ans = find(&dev, &find_request("ibex", Some("nope"), "0-9", false)).await;
    assert_eq!(ans.status.as_deref(), Some("3"));
    // Malformed: no FreeText.
    let ans = find(&dev, &find_request("   ", None, "0-9", false)).await;
    assert_eq!(ans.status.as_deref(), Some("2"));
    // GAL, with Picture options: there is no directory.
    let gal = Element::new(f::FIND)
        .text_child(f::SEARCH_ID, "4a1f6c3e-2b7d-4e59-9c1a-6f0e8d2b3a72")
        .child(
            Element::new(f::EXECUTE_SEARCH).child(
                Element::new(f::GAL_SEARCH_CRITERION)
                    .text_child(f::QUERY, "anna")
                    .child(
                        Element::new(f::OPTIONS)
                            .text_child(f::RANGE, "0-9")
                            .child(Element::new(f::PICTURE).text_child(f::MAX_SIZE, "1024")),
                    ),
            ),
        );
    let ans = find(&dev, &gal).await;
    assert_eq!(ans.status.as_deref(), Some("1"));
    assert_eq!(ans.store.as_deref(), Some("GAL"));
    assert_eq!(ans.response_status.as_deref(), Some("2"));
    assert!(ans.results.is_empty());
}
