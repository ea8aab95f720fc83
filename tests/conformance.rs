//! Edge cases of the EAS specifications (MS-ASCMD, MS-ASPROV, MS-ASAIRS, MS-ASEMAIL) and of
//! Microsoft's Interop-TestSuites, against the real gateway in front of the dev Dovecot and
//! Postfix: the status each malformed or out-of-range request gets.

mod common;

use bytes::Bytes;
use common::*;
use eas_gateway::wbxml::tags::{
    airsync as a, airsyncbase as b, compose_mail as cm, email, email2, find as f,
    item_operations as io, ping as p, provision as pr, search as s,
};
use eas_gateway::wbxml::Element;

/// A fresh gateway, a provisioned 16.1 device and a synced Inbox holding `n` mails:
/// (gateway, device, user, password, inbox id, ServerIds, sync key).
async fn inbox_with(
    prefix: &str,
    n: usize,
) -> (
    TestGateway,
    TestDevice,
    String,
    String,
    String,
    Vec<String>,
    String,
) {
    let (gw, dev, user, pw) = gateway_with_device(prefix).await;
    let mails: Vec<(String, Option<String>)> = (0..n)
        .map(|i| (mail(&format!("{prefix} mail {i}"), "body"), None))
        .collect();
    seed(&user, &pw, "INBOX", &mails).await;
    let inbox = folder_id(&dev, "Inbox").await;
    let (adds, key) = full_sync(&dev, &inbox, 100).await;
    assert_eq!(adds.len(), n);
    let sids = server_ids(&adds);
    (gw, dev, user, pw, inbox, sids, key)
}

/// The IMAP FLAGS of the INBOX mail with this UID.
async fn flags_of(user: &str, pw: &str, uid: &str) -> String {
    let t = imap(
        user,
        pw,
        &["SELECT INBOX", &format!("UID FETCH {uid} (FLAGS)")],
    )
    .await;
    let line = t
        .lines()
        .find(|l| l.contains(" FETCH ("))
        .expect("FETCH line");
    line.split_once("FLAGS (")
        .and_then(|(_, r)| r.split_once(')'))
        .map(|(f, _)| f.to_string())
        .unwrap_or_default()
}

// --- Sync -------------------------------------------------------------------------------

/// MS-ASCMD 2.2.3.199 WindowSize: 0 and values above 512 mean 512.
#[tokio::test]
async fn sync_window_size_zero_means_the_maximum() {
    let (_gw, dev, user, pw) = gateway_with_device("confwin").await;
    let mails: Vec<(String, Option<String>)> = (0..5)
        .map(|i| (mail(&format!("w{i}"), "x"), None))
        .collect();
    seed(&user, &pw, "INBOX", &mails).await;
    let inbox = folder_id(&dev, "Inbox").await;
    let first = sync(&dev, &inbox, "0", 0).await;
    assert_eq!(first.status.as_deref(), Some("1"), "{first:?}");
    let r = sync(&dev, &inbox, first.key.as_deref().unwrap(), 0).await;
    assert_eq!(r.status.as_deref(), Some("1"), "{r:?}");
    assert_eq!(r.adds.len(), 5, "WindowSize 0 is 512, not 1: {r:?}");
    assert!(!r.more);

    // The top-level WindowSize too.
    let dev2 = device_of(&_gw, &user, &pw, "16.1").await;
    let first = sync(&dev2, &inbox, "0", 10).await;
    let mut req = sync_request(&inbox, first.key.as_deref().unwrap(), 0, None);
    req.push(Element::with_text(a::WINDOW_SIZE, "0"));
    let r = sync_result(&dev2.post("Sync", &req).await);
    assert_eq!(r.adds.len(), 5, "{r:?}");
}

/// MS-ASCMD 2.2.3.84 GetChanges and Interop MSASCMD_S19_TC26: GetChanges 1 or empty with
/// SyncKey 0 is answered with the top-level Status 4; GetChanges 0 is fine.
#[tokio::test]
async fn sync_key_zero_with_get_changes_is_a_protocol_error() {
    let (_gw, dev, _user, _pw) = gateway_with_device("confgc").await;
    let inbox = folder_id(&dev, "Inbox").await;
    for gc in [
        Element::with_text(a::GET_CHANGES, "1"),
        Element::new(a::GET_CHANGES),
    ] {
        let mut req = sync_request(&inbox, "0", 10, None);
        req.first_mut(a::COLLECTIONS)
            .and_then(|c| c.first_mut(a::COLLECTION))
            .unwrap()
            .push(gc.clone());
        let reply = dev.post("Sync", &req).await;
        assert_eq!(reply.status, 200);
        let body = reply.body.expect("a Sync body");
        assert_eq!(body.text_of(a::STATUS), Some("4"), "{gc:?}: {body:?}");
        assert!(body.first(a::COLLECTIONS).is_none(), "{body:?}");
    }
    let mut req = sync_request(&inbox, "0", 10, None);
    req.first_mut(a::COLLECTIONS)
        .and_then(|c| c.first_mut(a::COLLECTION))
        .unwrap()
        .push(Element::with_text(a::GET_CHANGES, "0"));
    let r = sync_result(&dev.post("Sync", &req).await);
    assert_eq!(r.status.as_deref(), Some("1"), "{r:?}");
    assert_eq!(r.key.as_deref(), Some("1"));
}

/// MS-ASCMD 2.2.3.177.17 Status 13: an empty Sync (no body, or `<Sync/>`) with no cached
/// request; the cached one still answers.
#[tokio::test]
async fn empty_sync_without_a_cached_request_is_status_13() {
    let (_gw, dev, _user, _pw) = gateway_with_device("confempty").await;
    let url = format!("{}?{}", dev.base, dev.query("Sync"));
    let shapes: Vec<(&str, Option<Element>)> = vec![
        ("no body", None),
        ("<Sync/>", Some(Element::new(a::SYNC))),
        (
            "<Sync><Collections/></Sync>",
            Some(Element::new(a::SYNC).child(Element::new(a::COLLECTIONS))),
        ),
    ];
    for (what, body) in &shapes {
        let reply = match body {
            Some(b) => dev.post("Sync", b).await,
            None => {
                dev.post_raw(&url, Vec::new(), "application/vnd.ms-sync.wbxml")
                    .await
            }
        };
        assert_eq!(reply.status, 200, "{what}");
        let body = reply.body.unwrap_or_else(|| panic!("{what}: an empty 200"));
        assert_eq!(body.text_of(a::STATUS), Some("13"), "{what}: {body:?}");
    }
    // With a cached request, the empty Sync is that request again (nothing new: empty 200).
    let inbox = folder_id(&dev, "Inbox").await;
    let (_, _key) = full_sync(&dev, &inbox, 10).await;
    for (what, body) in &shapes {
        let reply = match body {
            Some(b) => dev.post("Sync", b).await,
            None => {
                dev.post_raw(&url, Vec::new(), "application/vnd.ms-sync.wbxml")
                    .await
            }
        };
        assert_eq!(reply.status, 200, "{what}");
        assert!(reply.body.is_none(), "{what} with a cached request");
    }
    // A cached request none of whose collections has a sync state is nothing to resume.
    let dev2 = device_of(&_gw, &_user, &_pw, "16.1").await;
    let r = sync(&dev2, "no-such-folder", "0", 10).await;
    assert_eq!(r.status.as_deref(), Some("12"), "{r:?}");
    let reply = dev2.post("Sync", &Element::new(a::SYNC)).await;
    assert_eq!(reply.status, 200);
    let body = reply.body.expect("not an empty 200");
    assert_eq!(body.text_of(a::STATUS), Some("13"), "{body:?}");
}

/// Interop MSASCMD_S21_TC05: a BodyPartPreference with a Type other than 2 (HTML, the only
/// one defined) is the top-level Status 164; Type 2 is fine.
#[tokio::test]
async fn sync_body_part_preference_of_an_unsupported_type_is_164() {
    let (_gw, dev, _user, _pw) = gateway_with_device("confbpp").await;
    let inbox = folder_id(&dev, "Inbox").await;
    let first = sync(&dev, &inbox, "0", 10).await;
    let key = first.key.expect("key");
    let opts = |t: &str| {
        Element::new(a::OPTIONS).child(Element::new(b::BODY_PART_PREFERENCE).text_child(b::TYPE, t))
    };
    let reply = dev
        .post("Sync", &sync_request(&inbox, &key, 10, Some(opts("3"))))
        .await;
    let body = reply.body.expect("a Sync body");
    assert_eq!(body.text_of(a::STATUS), Some("164"), "{body:?}");
    let reply = dev
        .post("Sync", &sync_request(&inbox, &key, 10, Some(opts("2"))))
        .await;
    assert_eq!(reply.status, 200);
    if let Some(body) = reply.body {
        assert_eq!(body.text_of(a::STATUS), None, "{body:?}");
    }
}

/// MS-ASCMD 2.2.3.90 Limit (Interop MSASCMD_S19_TC30/TC32): a Wait or HeartbeatInterval
/// below its range, a negative one too, is Status 14 with the minimum in Limit.
#[tokio::test]
async fn sync_negative_wait_and_heartbeat_are_status_14_with_the_limit() {
    let (gw, dev, _user, _pw) = gateway_with_device("confwait").await;
    let inbox = folder_id(&dev, "Inbox").await;
    let key = sync(&dev, &inbox, "0", 10).await.key.expect("key");
    let min_hb = gw.config.push.min_heartbeat_secs.to_string();
    for (tag, value, limit) in [
        (a::WAIT, "-1", "1"),
        (a::WAIT, "0", "1"),
        (a::HEARTBEAT_INTERVAL, "-5", min_hb.as_str()),
    ] {
        let mut req = sync_request(&inbox, &key, 10, None);
        req.push(Element::with_text(tag, value));
        let body = dev.post("Sync", &req).await.body.expect("a Sync body");
        assert_eq!(body.text_of(a::STATUS), Some("14"), "{value}: {body:?}");
        assert_eq!(body.text_of(a::LIMIT), Some(limit), "{value}");
    }
}

/// MS-ASAIRS 3.2.5.1 and Interop MSASAIRS_S04_TC01/TC02: a BodyPreference with a non-boolean
/// or repeated AllOrNone is the top-level Sync Status 4; a non-numeric Type in an
/// ItemOperations Fetch is the top-level ItemOperations Status 2.
#[tokio::test]
async fn malformed_body_preferences_are_protocol_errors() {
    let (_gw, dev, _user, _pw, inbox, sids, key) = inbox_with("confbp", 1).await;
    let bp = || Element::new(b::BODY_PREFERENCE).text_child(b::TYPE, "1");
    for (what, pref) in [
        ("AllOrNone a", bp().text_child(b::ALL_OR_NONE, "a")),
        (
            "two AllOrNone",
            bp().text_child(b::ALL_OR_NONE, "1")
                .text_child(b::ALL_OR_NONE, "1"),
        ),
    ] {
        let opts = Element::new(a::OPTIONS).child(pref);
        let body = dev
            .post("Sync", &sync_request(&inbox, &key, 10, Some(opts)))
            .await
            .body
            .expect("a Sync body");
        assert_eq!(body.text_of(a::STATUS), Some("4"), "{what}: {body:?}");
    }
    let req = Element::new(io::ITEM_OPERATIONS).child(
        Element::new(io::FETCH)
            .text_child(io::STORE, "Mailbox")
            .text_child(a::COLLECTION_ID, inbox.as_str())
            .text_child(a::SERVER_ID, sids[0].as_str())
            .child(
                Element::new(io::OPTIONS)
                    .child(Element::new(b::BODY_PREFERENCE).text_child(b::TYPE, "a")),
            ),
    );
    let body = dev.post("ItemOperations", &req).await.body.expect("body");
    assert_eq!(body.text_of(io::STATUS), Some("2"), "{body:?}");

    // Search: the Store's Status 2 (MSASAIRS_S04_TC02).
    let req = Element::new(s::SEARCH).child(
        Element::new(s::STORE)
            .text_child(s::NAME, "Mailbox")
            .child(
                Element::new(s::QUERY).child(
                    Element::new(s::AND)
                        .text_child(a::CLASS, "Email")
                        .text_child(s::FREE_TEXT, "confbp"),
                ),
            )
            .child(
                Element::new(s::OPTIONS)
                    .text_child(s::RANGE, "0-9")
                    .child(bp().text_child(b::ALL_OR_NONE, "a")),
            ),
    );
    let body = dev.post("Search", &req).await.body.expect("body");
    let store_status = body
        .first(s::RESPONSE)
        .and_then(|r| r.first(s::STORE))
        .and_then(|st| st.text_of(s::STATUS));
    assert_eq!(store_status, Some("2"), "{body:?}");
}

/// A Collection without SyncKey is malformed: Status 4 (MS-ASCMD 2.2.3.181.4: required).
#[tokio::test]
async fn sync_collection_without_sync_key_is_a_protocol_error() {
    let (_gw, dev, _user, _pw) = gateway_with_device("confnokey").await;
    let inbox = folder_id(&dev, "Inbox").await;
    let req = Element::new(a::SYNC).child(
        Element::new(a::COLLECTIONS)
            .child(Element::new(a::COLLECTION).text_child(a::COLLECTION_ID, inbox.as_str())),
    );
    let reply = dev.post("Sync", &req).await;
    assert_eq!(reply.status, 200);
    let body = reply.body.expect("a Sync body");
    let status = body.text_of(a::STATUS).or_else(|| {
        body.first(a::COLLECTIONS)
            .and_then(|c| c.first(a::COLLECTION))
            .and_then(|c| c.text_of(a::STATUS))
    });
    assert_eq!(status, Some("4"), "{body:?}");
}

/// A Change of the device, answered in Responses: the Status of the Change for `sid`.
async fn change(dev: &TestDevice, inbox: &str, key: &str, sid: &str, data: Element) -> SyncResult {
    let mut req = sync_request(inbox, key, 10, None);
    push_commands(
        &mut req,
        Element::new(a::COMMANDS).child(
            Element::new(a::CHANGE)
                .text_child(a::SERVER_ID, sid)
                .child(data),
        ),
    );
    sync_result(&dev.post("Sync", &req).await)
}

fn change_status(r: &SyncResult, sid: &str) -> Option<String> {
    r.responses.as_ref().and_then(|rs| {
        rs.all(a::CHANGE)
            .find(|c| c.text_of(a::SERVER_ID) == Some(sid))
            .and_then(|c| c.text_of(a::STATUS))
            .map(String::from)
    })
}

/// MS-ASEMAIL 2.2.2.47 Read is a boolean, 2.2.2.74 Flag Status is 0, 1 or 2 (else Status 6),
/// 2.2.2.21 ConversationId cannot be changed (Status 6): the mail's IMAP flags stay as they
/// were.
#[tokio::test]
async fn sync_change_with_invalid_values_is_status_6_and_changes_nothing() {
    let (_gw, dev, user, pw, inbox, sids, mut key) = inbox_with("confchg", 1).await;
    let sid = &sids[0];
    let uid = sid.rsplit_once(':').unwrap().1.to_string();
    let before = flags_of(&user, &pw, &uid).await;
    assert!(
        !before.contains("\\Seen") && !before.contains("\\Flagged"),
        "{before}"
    );
    let app = || Element::new(a::APPLICATION_DATA);
    let cases: Vec<(&str, Element)> = vec![
        ("Read 2", app().text_child(email::READ, "2")),
        ("Read yes", app().text_child(email::READ, "yes")),
        ("Read empty", app().child(Element::new(email::READ))),
        (
            "Read 1 with Flag Status 5",
            app()
                .text_child(email::READ, "1")
                .child(Element::new(email::FLAG).text_child(email::STATUS, "5")),
        ),
        (
            "Flag Status x",
            app().child(Element::new(email::FLAG).text_child(email::STATUS, "x")),
        ),
        (
            "Read 1 with ConversationId",
            app().text_child(email::READ, "1").opaque_child(
                email2::CONVERSATION_ID,
                Bytes::from_static(b"0123456789abcdef"),
            ),
        ),
        (
            "Flag 2 with ConversationIndex",
            app()
                .child(Element::new(email::FLAG).text_child(email::STATUS, "2"))
                .opaque_child(
                    email2::CONVERSATION_INDEX,
                    Bytes::from_static(b"\x01\x02\x03\x04\x05"),
                ),
        ),
    ];
    for (what, data) in cases {
        let r = change(&dev, &inbox, &key, sid, data).await;
        assert_eq!(r.status.as_deref(), Some("1"), "{what}: {r:?}");
        assert_eq!(
            change_status(&r, sid).as_deref(),
            Some("6"),
            "{what}: {r:?}"
        );
        key = r.key.expect("a new key");
        let now = flags_of(&user, &pw, &uid).await;
        assert_eq!(now, before, "{what}: the mail's flags changed");
    }
    // A valid change still goes through. Subject and From, which cannot change on a received
    // mail, cost bandwidth only (MS-ASCMD 2.2.3.24, Interop MSASCMD_S19_TC27 R875): not an
    // error, and not applied.
    let r = change(
        &dev,
        &inbox,
        &key,
        sid,
        app()
            .text_child(email::READ, "1")
            .text_child(email::SUBJECT, "changed by the phone")
            .text_child(email::FROM, "someone@else.example"),
    )
    .await;
    assert_eq!(change_status(&r, sid), None, "{r:?}");
    assert!(flags_of(&user, &pw, &uid).await.contains("\\Seen"));
    let t = imap(
        &user,
        &pw,
        &[
            "SELECT INBOX",
            &format!("UID FETCH {uid} (BODY.PEEK[HEADER.FIELDS (SUBJECT)])"),
        ],
    )
    .await;
    assert!(
        t.contains("confchg mail 0") && !t.contains("changed by"),
        "{t}"
    );
}

// --- Provision --------------------------------------------------------------------------

/// MS-ASPROV 2.2.2.54.2 and Interop MSASPROV_S03_TC03: a syntax error in the request is
/// Provision Status 2, not HTTP 400.
#[tokio::test]
async fn malformed_provision_is_status_2() {
    let gw = start_gateway().await;
    let (user, pw) = new_user("confprov");
    let dev = TestDevice::new(&gw, &user, &pw, "14.1");
    let cases: Vec<(&str, Element)> = vec![
        (
            "Policy without PolicyType",
            Element::new(pr::PROVISION)
                .child(Element::new(pr::POLICIES).child(Element::new(pr::POLICY))),
        ),
        (
            "Policy outside Policies",
            Element::new(pr::PROVISION).child(
                Element::new(pr::POLICY).text_child(pr::POLICY_TYPE, "MS-EAS-Provisioning-WBXML"),
            ),
        ),
        ("empty Provision", Element::new(pr::PROVISION)),
    ];
    for (what, req) in cases {
        let r = dev.post("Provision", &req).await;
        assert_eq!(r.status, 200, "{what}");
        let body = r.body.unwrap_or_else(|| panic!("{what}: no body"));
        assert_eq!(body.tag, pr::PROVISION, "{what}");
        assert_eq!(body.text_of(pr::STATUS), Some("2"), "{what}: {body:?}");
    }
}

// --- ItemOperations ---------------------------------------------------------------------

/// MS-ASAIRS 2.2.2.24 FileReference / MS-ASCMD ItemOperations Status 15: an empty
/// FileReference is an invalid attachment reference.
#[tokio::test]
async fn item_operations_fetch_with_an_empty_file_reference_is_status_15() {
    let (_gw, dev, _user, _pw) = gateway_with_device("confio").await;
    let req = Element::new(io::ITEM_OPERATIONS).child(
        Element::new(io::FETCH)
            .text_child(io::STORE, "Mailbox")
            .child(Element::new(b::FILE_REFERENCE)),
    );
    let r = dev.post("ItemOperations", &req).await;
    assert_eq!(r.status, 200);
    let body = r.body.expect("body");
    assert_eq!(body.text_of(io::STATUS), Some("1"), "{body:?}");
    let fetch = body
        .first(io::RESPONSE)
        .and_then(|r| r.first(io::FETCH))
        .expect("a Fetch result");
    assert_eq!(fetch.text_of(io::STATUS), Some("15"), "{fetch:?}");
}

// --- Ping -------------------------------------------------------------------------------

fn ping_body(heartbeat: &str, folder: &str) -> Element {
    Element::new(p::PING)
        .text_child(p::HEARTBEAT_INTERVAL, heartbeat)
        .child(
            Element::new(p::FOLDERS).child(
                Element::new(p::FOLDER)
                    .text_child(p::ID, folder)
                    .text_child(p::CLASS, "Email"),
            ),
        )
}

/// MS-ASCMD 2.2.3.177.10 Ping Status 5: a HeartbeatInterval below the minimum (a negative one
/// too) is answered with the minimum.
#[tokio::test]
async fn ping_with_a_negative_heartbeat_is_status_5_with_the_minimum() {
    let (gw, dev, _user, _pw) = gateway_with_device("confping").await;
    let inbox = folder_id(&dev, "Inbox").await;
    let min = gw.config.push.min_heartbeat_secs.to_string();
    for hb in ["-5", "-2147483649", "0"] {
        let r = dev.post("Ping", &ping_body(hb, &inbox)).await;
        assert_eq!(r.status, 200);
        let body = r.body.expect("Ping body");
        assert_eq!(body.text_of(p::STATUS), Some("5"), "{hb}: {body:?}");
        assert_eq!(
            body.text_of(p::HEARTBEAT_INTERVAL),
            Some(min.as_str()),
            "{hb}"
        );
    }
}

/// Interop MSASCMD_S11_TC02: a `<Ping/>` document with neither HeartbeatInterval nor Folders
/// is malformed (Status 4); a Ping without a body reuses the last parameters (here none: 3).
#[tokio::test]
async fn empty_ping_document_is_status_4() {
    let (_gw, dev, _user, _pw) = gateway_with_device("confping4").await;
    let r = dev.post("Ping", &Element::new(p::PING)).await;
    assert_eq!(r.status, 200);
    let st = r.body.expect("body").text_of(p::STATUS).map(String::from);
    assert_eq!(st.as_deref(), Some("4"));
    let url = format!("{}?{}", dev.base, dev.query("Ping"));
    let r = dev
        .post_raw(&url, Vec::new(), "application/vnd.ms-sync.wbxml")
        .await;
    let st = r.body.expect("body").text_of(p::STATUS).map(String::from);
    assert_eq!(st.as_deref(), Some("3"));
}

/// A provisioned device that leaves out the X-MS-PolicyKey header (stock Android and Samsung
/// mail do on Ping) is served; a device that never provisioned, or sends a wrong key, is not.
#[tokio::test]
async fn ping_without_a_policy_key_header_from_a_provisioned_device() {
    let gw = start_gateway().await;
    let (user, pw) = new_user("confpk");
    for version in ["12.1", "14.1"] {
        let mut dev = device_of(&gw, &user, &pw, version).await;
        let inbox = folder_id(&dev, "Inbox").await;
        let key = dev.policy_key;
        dev.policy_key = None;
        // With a body (a heartbeat below the minimum answers at once) and without one (no
        // earlier Ping: Status 3), both without the header.
        let r = dev.post("Ping", &ping_body("1", &inbox)).await;
        assert_eq!(r.status, 200, "{version}: Ping with a body");
        let st = r
            .body
            .expect("Ping body")
            .text_of(p::STATUS)
            .map(String::from);
        assert_eq!(st.as_deref(), Some("5"), "{version}");
        let url = format!("{}?{}", dev.base, dev.query("Ping"));
        let r = dev
            .post_raw(&url, Vec::new(), "application/vnd.ms-sync.wbxml")
            .await;
        assert_eq!(r.status, 200, "{version}: Ping without a body");
        let st = r
            .body
            .expect("Ping body")
            .text_of(p::STATUS)
            .map(String::from);
        assert!(
            matches!(st.as_deref(), Some("3" | "5")),
            "{version}: {st:?}"
        );

        // A wrong key still gets the provisioning answer.
        dev.policy_key = Some(key.unwrap().wrapping_add(1));
        let r = dev.post("Ping", &ping_body("1", &inbox)).await;
        if version == "12.1" {
            assert_eq!(r.status, 449, "{version}: wrong key");
        } else {
            assert_eq!(r.status, 200);
            let st = r.body.expect("body").text_of(p::STATUS).map(String::from);
            assert_eq!(st.as_deref(), Some("144"), "{version}: wrong key");
        }
        // Other commands still need the header.
        dev.policy_key = None;
        let r = dev
            .post(
                "SendMail",
                &Element::new(cm::SEND_MAIL)
                    .text_child(cm::CLIENT_ID, "x1")
                    .opaque_child(cm::MIME, Bytes::from_static(b"To: a@b\r\n\r\nx")),
            )
            .await;
        if version == "12.1" {
            assert_eq!(r.status, 449, "{version}: SendMail without the header");
        } else {
            assert_eq!(compose_status(&r).as_deref(), Some("142"), "{version}");
        }
    }
    // A device that never provisioned gets the provisioning answer without the header.
    let dev = TestDevice::new(&gw, &user, &pw, "12.1");
    let r = dev.post("Ping", &ping_body("1", "1")).await;
    assert_eq!(r.status, 449, "unprovisioned 12.1 Ping");
    let dev = TestDevice::new(&gw, &user, &pw, "14.1");
    let r = dev.post("Ping", &ping_body("1", "1")).await;
    assert_eq!(r.status, 200);
    let st = r.body.expect("body").text_of(p::STATUS).map(String::from);
    assert_eq!(st.as_deref(), Some("142"), "unprovisioned 14.1 Ping");
}

/// A device provisioned under another policy must provision again, header or not.
#[tokio::test]
async fn ping_without_a_policy_key_after_the_policy_changed_must_provision() {
    let (user, pw) = new_user("confpol");
    let gw = start_gateway().await;
    let dev = device_of(&gw, &user, &pw, "12.1").await;
    let state = format!("sqlite://{}", gw.dir.path().join("state.db").display());
    let gw2 = start_gateway_with(GatewayOptions {
        state_url: Some(state),
        policy: "require_password = true",
        ..Default::default()
    })
    .await;
    let mut dev2 = dev.clone();
    dev2.base = gw2.base.clone();
    dev2.policy_key = None;
    let r = dev2.post("Ping", &ping_body("1", "1")).await;
    assert_eq!(r.status, 449, "policy changed");
}

// --- SendMail ---------------------------------------------------------------------------

/// Interop MSASCMD_S21_TC08: SendMail without Mime is Status 103 (the XML does not follow
/// the protocol); MSASCMD_S15_TC02 / S21_TC01: an AccountId the server does not know is 166.
#[tokio::test]
async fn send_mail_without_mime_is_103_and_an_unknown_account_is_166() {
    let (_gw, dev, user, _pw) = gateway_with_device("confsend").await;
    let r = dev
        .post(
            "SendMail",
            &Element::new(cm::SEND_MAIL).text_child(cm::CLIENT_ID, unique("c")),
        )
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(compose_status(&r).as_deref(), Some("103"));

    let mime = format!(
        "From: {user}\r\nTo: {user}\r\nSubject: {}\r\n\r\nhello\r\n",
        unique("acct")
    );
    let r = dev
        .post(
            "SendMail",
            &Element::new(cm::SEND_MAIL)
                .text_child(cm::CLIENT_ID, unique("c"))
                .text_child(cm::ACCOUNT_ID, "InvalidAccountID")
                .opaque_child(cm::MIME, Bytes::from(mime.into_bytes())),
        )
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(compose_status(&r).as_deref(), Some("166"));
}

// --- Find -------------------------------------------------------------------------------

/// Interop MSASCMD_S23_TC02: a Find with an empty SearchId fails to validate (Status 2);
/// SearchId is required (MS-ASCMD 2.2.3.158). MSASCMD_S23_TC08: an unknown CollectionId is 3.
#[tokio::test]
async fn find_with_an_empty_search_id_is_status_2() {
    let (_gw, dev, _user, _pw) = gateway_with_device("conffind").await;
    for id in [Some(""), None] {
        let mut req = Element::new(f::FIND);
        if let Some(id) = id {
            req.push(Element::with_text(f::SEARCH_ID, id));
        }
        req.push(
            Element::new(f::EXECUTE_SEARCH).child(
                Element::new(f::MAIL_BOX_SEARCH_CRITERION)
                    .child(
                        Element::new(f::QUERY)
                            .text_child(f::FREE_TEXT, "anything")
                            .text_child(a::CLASS, "Email"),
                    )
                    .child(Element::new(f::OPTIONS).text_child(f::RANGE, "0-9")),
            ),
        );
        let r = dev.post("Find", &req).await;
        assert_eq!(r.status, 200);
        let body = r.body.expect("body");
        assert_eq!(body.text_of(f::STATUS), Some("2"), "{id:?}: {body:?}");
    }
    let req = Element::new(f::FIND)
        .text_child(f::SEARCH_ID, "5e8d1b2c-0f4a-4c3e-9b7d-2a6f1c0e8d41")
        .child(
            Element::new(f::EXECUTE_SEARCH).child(
                Element::new(f::MAIL_BOX_SEARCH_CRITERION)
                    .child(
                        Element::new(f::QUERY)
                            .text_child(f::FREE_TEXT, "anything")
                            .text_child(a::CLASS, "Email")
                            .text_child(a::COLLECTION_ID, "-1"),
                    )
                    .child(Element::new(f::OPTIONS).text_child(f::RANGE, "0-9")),
            ),
        );
    let body = dev.post("Find", &req).await.body.expect("body");
    assert_eq!(body.text_of(f::STATUS), Some("3"), "{body:?}");
}
