//! The Sync phases against an in-memory mail server ([`fake_mail`]) and the real SQLite store
//! (in memory): a phone that syncs one folder page by page while the server changes under it.

mod fake_mail;

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;

use crate::backend::{Credentials, MailBackend, Secret};
use crate::commands::{folders, Context, Gateway, User};
use crate::config::Config;
use crate::eas::query::RequestLine;
use crate::eas::sync::{
    status, ClientCommand, ClientResponse, CollectionRequest, CollectionResponse, ServerCommand,
    SyncRequest,
};
use crate::eas::ProtocolVersion;
use crate::state::{Device, SqliteStore, StateStore};
use crate::wbxml::tags::{airsync, email};
use crate::wbxml::Element;

use fake_mail::FakeServer;

use super::collection::{Collection, Step};
use super::key::Held;
use super::pages::{NextPages, ReadAhead};
use super::session::RequestSession;
use std::ops::ControlFlow;

const USER: &str = "u@example.test";
const DEVICE: &str = "dev1";
const DAY: i64 = 86_400;
/// The phone's clock: noon, some day in 2026.
const NOW: i64 = 20_450 * DAY + DAY / 2;

const CONFIG: &str = r#"
[server]
listen = "127.0.0.1:0"
[imap]
host = "127.0.0.1"
port = 143
security = "none"
[smtp]
host = "127.0.0.1"
port = 587
security = "none"
[state]
url = "sqlite::memory:"
[identity]
domain = "example.test"
"#;

/// One phone of one user, and the mail server behind the gateway.
struct Phone {
    gw: Gateway<FakeServer, SqliteStore>,
    ctx: Context,
    server: FakeServer,
    inbox: String,
    /// The key the phone holds for the Inbox.
    key: String,
    /// The Inbox items the phone holds, by ServerId.
    holds: BTreeSet<String>,
}

fn context(device: Device) -> Context {
    Context {
        user: User {
            address: USER.into(),
            credentials: Credentials {
                login: USER.into(),
                password: Secret::new("pw"),
            },
        },
        device,
        line: RequestLine {
            command_name: "Sync".into(),
            device_id: DEVICE.into(),
            device_type: "Phone".into(),
            ..Default::default()
        },
        version: ProtocolVersion::V14_1,
        client_ip: None,
        now: NOW,
        received: std::time::Instant::now(),
        report: Default::default(),
    }
}

impl Phone {
    /// A phone that has run FolderSync (the folders have their ServerIds).
    async fn new(server: &FakeServer) -> Phone {
        let config = Config::from_toml(CONFIG, Path::new(".")).expect("config");
        let store = SqliteStore::open_in_memory().expect("store");
        let gw = Gateway::new(server.clone(), store, Arc::new(config));
        let device = gw
            .store
            .touch_device(USER, DEVICE, "Phone", None, Some("14.1"), "Sync", NOW)
            .await
            .expect("device");
        let ctx = context(device);
        let mut session = server
            .login(&ctx.user.credentials, None)
            .await
            .expect("login");
        let list = folders::list(&gw.store, &gw.folders, &mut session, USER)
            .await
            .expect("folders");
        let inbox = list
            .iter()
            .find(|r| r.mailbox.as_ref().is_some_and(|m| m.name == "INBOX"))
            .expect("inbox")
            .server_id
            .clone();
        Phone {
            gw,
            ctx,
            server: server.clone(),
            inbox,
            key: "0".into(),
            holds: BTreeSet::new(),
        }
    }

    fn sid(&self, uid: u32) -> String {
        format!("{}:{uid}", self.inbox)
    }

    /// A request for the Inbox with the phone's key.
    fn request(&self) -> CollectionRequest {
        CollectionRequest {
            sync_key: self.key.clone(),
            collection_id: self.inbox.clone(),
            deletes_as_moves: true,
            ..Default::default()
        }
    }

    /// Sends one collection; the answer as the gateway would encode it (`None`: the empty
    /// Sync response).
    async fn send(&self, col: CollectionRequest) -> Option<CollectionResponse> {
        let request = SyncRequest {
            collections: vec![col.clone()],
            ..Default::default()
        };
        let mut out = super::run_collections(&self.gw, &self.ctx, &request, &[col])
            .await
            .expect("sync");
        assert!(out.len() <= 1);
        out.pop()
    }

    /// Sends `col` and takes its answer in as a phone does: its key, and its items. Checks
    /// what the protocol forbids: an Add of an item held, a Change or Delete of one not held.
    async fn sync(&mut self, col: CollectionRequest) -> Option<CollectionResponse> {
        for c in &col.commands {
            if let ClientCommand::Delete { server_id } = c {
                self.holds.remove(server_id);
            }
        }
        let r = self.send(col).await;
        if let Some(r) = &r {
            self.take_in(r);
        }
        r
    }

    fn take_in(&mut self, r: &CollectionResponse) {
        assert_eq!(r.status, status::SUCCESS, "{r:?}");
        self.key = r.sync_key.clone().expect("a key");
        for c in &r.commands {
            match c {
                ServerCommand::Add { server_id, .. } => {
                    assert!(
                        self.holds.insert(server_id.clone()),
                        "{server_id} sent twice"
                    )
                }
                ServerCommand::Change { server_id, .. } => {
                    assert!(
                        self.holds.contains(server_id),
                        "Change of {server_id} never sent"
                    )
                }
                ServerCommand::Delete { server_id } | ServerCommand::SoftDelete { server_id } => {
                    assert!(
                        self.holds.remove(server_id),
                        "Delete of {server_id} never sent"
                    )
                }
            }
        }
    }

    /// Syncs until MoreAvailable is gone; the answers.
    async fn sync_all(&mut self, window: u32) -> Vec<CollectionResponse> {
        let mut out = Vec::new();
        loop {
            let col = CollectionRequest {
                window_size: Some(window),
                ..self.request()
            };
            let Some(r) = self.sync(col).await else {
                return out;
            };
            let more = r.more_available;
            out.push(r);
            if !more {
                return out;
            }
            assert!(out.len() < 1000, "no end");
        }
    }

    /// Key 0.
    async fn start(&mut self) {
        let r = self.sync(self.request()).await.expect("key 1");
        assert_eq!(r.sync_key.as_deref(), Some("1"));
        assert!(r.commands.is_empty());
    }

    /// The first phases alone: the collection opened, its key resolved.
    async fn resolve_key(&self, col: &CollectionRequest, budget: usize) -> (usize, Step<Held>) {
        let mut session =
            RequestSession::new(&self.gw, &self.ctx, vec![col.collection_id.as_str()]);
        let mut later = NextPages::default();
        let opened = Collection::open(&self.gw, &self.ctx, &mut session, col, budget)
            .await
            .expect("open");
        let ControlFlow::Continue((c, mailbox, state)) = opened else {
            panic!("the Inbox opens");
        };
        let reads = ReadAhead::new(&self.gw, &self.ctx, c.cid, &mut later);
        let held = c
            .resolve_key(&mut session, state, mailbox.as_ref(), &reads)
            .await
            .expect("key");
        (c.limit(), held)
    }

    /// The ServerIds of the mails in the server's Inbox.
    fn inbox_on_server(&self) -> BTreeSet<String> {
        self.server
            .uids("INBOX")
            .into_iter()
            .map(|u| self.sid(u))
            .collect()
    }
}

fn ids(r: &CollectionResponse, kind: &str) -> Vec<String> {
    r.commands
        .iter()
        .filter_map(|c| match (c, kind) {
            (ServerCommand::Add { server_id, .. }, "add")
            | (ServerCommand::Change { server_id, .. }, "change")
            | (ServerCommand::Delete { server_id }, "delete")
            | (ServerCommand::SoftDelete { server_id }, "soft") => Some(server_id.clone()),
            _ => None,
        })
        .collect()
}

fn with_options(col: CollectionRequest, options: Element) -> CollectionRequest {
    CollectionRequest {
        options: Some(options),
        ..col
    }
}

fn read(server_id: &str, read: bool) -> ClientCommand {
    ClientCommand::Change {
        server_id: server_id.into(),
        data: Element::new(airsync::APPLICATION_DATA)
            .text_child(email::READ, if read { "1" } else { "0" }),
        send: false,
    }
}

fn flag(server_id: &str, flagged: bool) -> ClientCommand {
    let flag = if flagged {
        Element::new(email::FLAG).text_child(email::STATUS, "2")
    } else {
        Element::new(email::FLAG)
    };
    ClientCommand::Change {
        server_id: server_id.into(),
        data: Element::new(airsync::APPLICATION_DATA).child(flag),
        send: false,
    }
}

fn delete(server_id: &str) -> ClientCommand {
    ClientCommand::Delete {
        server_id: server_id.into(),
    }
}

fn seed(server: &FakeServer, n: u32) -> Vec<u32> {
    (0..n)
        .map(|i| server.deliver("INBOX", &format!("m{i}"), NOW - DAY / 2 + i64::from(i)))
        .collect()
}

#[tokio::test]
async fn every_mail_is_delivered_once_over_windowed_syncs() {
    let server = FakeServer::default();
    let uids = seed(&server, 23);
    let mut phone = Phone::new(&server).await;
    phone.start().await;
    let first = CollectionRequest {
        window_size: Some(5),
        ..phone.request()
    };
    let first = phone.sync(first).await.expect("page 1");
    assert!(first.more_available);
    let reads = &phone.gw.sync.prefetch;
    assert!(
        reads.holds(USER, DEVICE, &phone.inbox),
        "the next pages are read ahead"
    );
    let mut pages = vec![first];
    pages.extend(phone.sync_all(5).await);
    assert_eq!(pages.len(), 5, "23 mails in pages of 5");
    let reads = &phone.gw.sync.prefetch;
    assert!(
        !reads.holds(USER, DEVICE, &phone.inbox),
        "nothing left to read ahead"
    );
    let mut sent = Vec::new();
    for p in &pages {
        assert!(p.commands.len() <= 5);
        sent.extend(ids(p, "add"));
    }
    assert_eq!(sent.len(), 23, "each mail once");
    assert_eq!(phone.holds, phone.inbox_on_server());
    // Newest first.
    let newest: Vec<String> = uids.iter().rev().take(5).map(|u| phone.sid(*u)).collect();
    assert_eq!(ids(&pages[0], "add"), newest);
    // Nothing left: the empty response, and the key stays valid.
    let key = phone.key.clone();
    assert!(phone.sync(phone.request()).await.is_none());
    assert_eq!(phone.key, key);
}

#[tokio::test]
async fn pages_stay_exact_while_the_server_changes_between_them() {
    let server = FakeServer::default();
    let uids = seed(&server, 20);
    let mut phone = Phone::new(&server).await;
    phone.start().await;
    let mut round = 0u32;
    loop {
        let col = CollectionRequest {
            window_size: Some(4),
            ..phone.request()
        };
        let r = phone.sync(col).await;
        let more = r.as_ref().is_some_and(|r| r.more_available);
        // Between pages: new mail, an expunge of one mail not sent yet and of one sent, a flag
        // change on one sent.
        match round {
            0 => {
                server.deliver("INBOX", "late", NOW);
                server.expunge_one("INBOX", uids[2]);
                server.set_flags("INBOX", uids[19], &["\\Seen"], &[]);
            }
            1 => {
                server.expunge_one("INBOX", uids[18]);
                server.deliver("INBOX", "later", NOW);
            }
            _ => {}
        }
        round += 1;
        if !more && round > 2 {
            break;
        }
        assert!(round < 50, "no end");
    }
    assert_eq!(phone.holds, phone.inbox_on_server());
}

#[tokio::test]
async fn window_size_caps_every_kind_of_change_and_more_available_says_the_rest() {
    let server = FakeServer::default();
    let uids = seed(&server, 7);
    let mut phone = Phone::new(&server).await;
    phone.start().await;
    let pages = phone.sync_all(3).await;
    let sizes: Vec<(usize, bool)> = pages
        .iter()
        .map(|p| (p.commands.len(), p.more_available))
        .collect();
    assert_eq!(sizes, [(3, true), (3, true), (1, false)]);

    // Two flag changes, a delete and a new mail: Delete first, then Changes, then the Add,
    // three to a window.
    for u in &uids[..2] {
        server.set_flags("INBOX", *u, &["\\Flagged"], &[]);
    }
    server.expunge_one("INBOX", uids[6]);
    let new = server.deliver("INBOX", "new", NOW);
    let pages = phone.sync_all(3).await;
    assert_eq!(pages.len(), 2);
    assert_eq!(ids(&pages[0], "delete"), [phone.sid(uids[6])]);
    assert_eq!(
        ids(&pages[0], "change"),
        [phone.sid(uids[0]), phone.sid(uids[1])]
    );
    assert!(pages[0].more_available);
    assert_eq!(ids(&pages[1], "add"), [phone.sid(new)]);
    assert!(!pages[1].more_available);
    assert_eq!(phone.holds, phone.inbox_on_server());
}

/// More flag Changes than a window holds: the view keeps the old HIGHESTMODSEQ until all are
/// sent and records the ones sent, so each goes once and MoreAvailable ends.
#[tokio::test]
async fn more_flag_changes_than_a_window_end() {
    let server = FakeServer::default();
    let uids = seed(&server, 4);
    let mut phone = Phone::new(&server).await;
    phone.start().await;
    phone.sync_all(10).await;
    for u in &uids {
        server.set_flags("INBOX", *u, &["\\Flagged"], &[]);
    }
    let pages = phone.sync_all(3).await;
    let sent: Vec<String> = pages.iter().flat_map(|p| ids(p, "change")).collect();
    assert_eq!(sent.len(), 4, "each Change once: {sent:?}");
}

#[tokio::test]
async fn a_retried_request_gets_the_same_answer_and_changes_nothing() {
    let server = FakeServer::default();
    let uids = seed(&server, 7);
    let mut phone = Phone::new(&server).await;
    phone.start().await;
    let first = CollectionRequest {
        window_size: Some(3),
        ..phone.request()
    };
    let answer = phone.sync(first.clone()).await.expect("page 1");
    let state = phone
        .gw
        .store
        .collection_state(USER, DEVICE, &phone.inbox)
        .await
        .unwrap();
    let mails = server.snapshot();

    // The answer was lost: the phone sends the same request with the previous key.
    let again = phone.send(first.clone()).await.expect("page 1 again");
    assert_eq!(again, answer);
    assert_eq!(
        phone
            .gw
            .store
            .collection_state(USER, DEVICE, &phone.inbox)
            .await
            .unwrap(),
        state
    );
    assert_eq!(server.snapshot(), mails);

    // Then it goes on with the new key: nothing twice, nothing lost.
    phone.sync_all(3).await;
    assert_eq!(phone.holds, phone.inbox_on_server());

    // A retried request with commands replays them: the server ends as after the first.
    let first = CollectionRequest {
        commands: vec![read(&phone.sid(uids[0]), true), delete(&phone.sid(uids[1]))],
        ..phone.request()
    };
    let answer = phone.sync(first.clone()).await.expect("answer");
    assert!(answer.commands.is_empty() && answer.responses.is_empty());
    let mails = server.snapshot();
    let again = phone.send(first).await.expect("answer again");
    assert_eq!(server.snapshot(), mails);
    assert_eq!(again.sync_key, answer.sync_key);
    // The Read again: the mail changed since the previous view (by the first attempt), so
    // a conditional STORE reports it modified, as Dovecot does for a STORE that would
    // change nothing, and the server's flags (the ones asked for) win: Status 7 and a Change.
    let a = phone.sid(uids[0]);
    assert_eq!(
        again.responses,
        [ClientResponse::Change {
            server_id: a.clone(),
            status: status::CONFLICT,
            data: None
        }]
    );
    assert_eq!(ids(&again, "change"), [a]);
    assert_eq!(
        again.commands.len(),
        1,
        "nothing else: the Delete is done again"
    );
    assert_eq!(phone.holds, phone.inbox_on_server());

    // A key older than the previous one is refused (Status 3).
    let stale = CollectionRequest {
        sync_key: "1".into(),
        ..phone.request()
    };
    let r = phone.send(stale).await.expect("answer");
    assert_eq!(r.status, status::INVALID_SYNC_KEY);
    assert_eq!(server.snapshot(), mails);
}

#[tokio::test]
async fn a_server_change_wins_over_the_phones_unless_conflict_says_otherwise() {
    for condstore in [true, false] {
        let server = FakeServer::default();
        server.set_condstore(condstore);
        let uids = seed(&server, 2);
        let mut phone = Phone::new(&server).await;
        phone.start().await;
        phone.sync_all(10).await;
        let (a, b) = (phone.sid(uids[0]), phone.sid(uids[1]));

        // Both sides change mail a: the server's flag wins, the phone's Read is refused
        // (Status 7) and the server's flags reach the phone as a Change.
        server.set_flags("INBOX", uids[0], &["\\Flagged"], &[]);
        let r = phone
            .sync(CollectionRequest {
                commands: vec![read(&a, true)],
                ..phone.request()
            })
            .await
            .expect("answer");
        assert_eq!(
            r.responses,
            [ClientResponse::Change {
                server_id: a.clone(),
                status: status::CONFLICT,
                data: None
            }],
            "condstore {condstore}"
        );
        assert_eq!(ids(&r, "change"), std::slice::from_ref(&a));
        assert_eq!(server.flags("INBOX", uids[0]).unwrap(), ["\\Flagged"]);

        // Conflict 0: the phone wins, and still gets the mail's flags as they are now.
        server.set_flags("INBOX", uids[1], &["\\Flagged"], &[]);
        let options = Element::new(airsync::OPTIONS).text_child(airsync::CONFLICT, "0");
        let col = CollectionRequest {
            commands: vec![read(&b, true)],
            ..phone.request()
        };
        let r = phone
            .sync(with_options(col, options))
            .await
            .expect("answer");
        assert!(r.responses.is_empty(), "{:?}", r.responses);
        assert_eq!(ids(&r, "change"), std::slice::from_ref(&b));
        let mut flags = server.flags("INBOX", uids[1]).unwrap();
        flags.sort();
        assert_eq!(flags, ["\\Flagged", "\\Seen"]);
    }
}

#[tokio::test]
async fn mails_that_leave_the_filter_window_are_soft_deleted() {
    let server = FakeServer::default();
    let old = server.deliver("INBOX", "old", NOW - 10 * DAY);
    let older = server.deliver("INBOX", "two days", NOW - 2 * DAY);
    let new = server.deliver("INBOX", "new", NOW - DAY / 4);
    let mut phone = Phone::new(&server).await;
    // FilterType 2: three days back.
    let options = Element::new(airsync::OPTIONS).text_child(airsync::FILTER_TYPE, "2");
    let col = with_options(phone.request(), options);
    phone.sync(col).await.expect("key 1");
    phone.sync_all(10).await;
    let expected: BTreeSet<String> = [phone.sid(older), phone.sid(new)].into();
    assert_eq!(phone.holds, expected, "the old mail is outside the window");

    // Two days later the two-day-old mail is out of the window: SoftDelete, not Delete, and
    // the mail stays on the server.
    phone.ctx.now += 2 * DAY;
    let r = phone.sync(phone.request()).await.expect("answer");
    assert_eq!(ids(&r, "soft"), [phone.sid(older)]);
    assert!(ids(&r, "delete").is_empty());
    assert_eq!(server.uids("INBOX"), [old, older, new]);

    // An expunged mail is a Delete.
    server.expunge_one("INBOX", new);
    let r = phone.sync(phone.request()).await.expect("answer");
    assert_eq!(ids(&r, "delete"), [phone.sid(new)]);
    assert!(phone.holds.is_empty());
}

#[tokio::test]
async fn the_phones_delete_read_and_flag_reach_the_server_and_do_not_come_back() {
    let server = FakeServer::default();
    let uids = seed(&server, 4);
    let mut phone = Phone::new(&server).await;
    phone.start().await;
    phone.sync_all(10).await;
    let inbox = phone.inbox.clone();
    let sid = |i: usize| format!("{inbox}:{}", uids[i]);
    let commands = vec![
        read(&sid(0), true),
        flag(&sid(1), true),
        delete(&sid(2)),
        delete(&format!("{}:999", phone.inbox)),
    ];
    let r = phone
        .sync(CollectionRequest {
            commands,
            ..phone.request()
        })
        .await
        .expect("answer");
    // Applied changes have no answer; a Delete of a mail that is gone counts as done.
    assert!(r.commands.is_empty(), "own changes are not echoed: {r:?}");
    assert!(r.responses.is_empty(), "{:?}", r.responses);
    assert_eq!(server.flags("INBOX", uids[0]).unwrap(), ["\\Seen"]);
    assert_eq!(server.flags("INBOX", uids[1]).unwrap(), ["\\Flagged"]);
    assert_eq!(server.flags("INBOX", uids[2]), None, "moved away");
    assert_eq!(server.uids("Trash").len(), 1, "DeletesAsMoves: to Trash");

    // Flag cleared; a Delete without DeletesAsMoves expunges.
    let r = phone
        .sync(CollectionRequest {
            commands: vec![flag(&sid(1), false), delete(&sid(3))],
            deletes_as_moves: false,
            ..phone.request()
        })
        .await
        .expect("answer");
    assert!(r.commands.is_empty(), "{r:?}");
    assert_eq!(
        server.flags("INBOX", uids[1]).unwrap(),
        Vec::<String>::new()
    );
    assert_eq!(server.uids("Trash").len(), 1, "expunged, not moved");

    // Nothing comes back.
    assert!(phone.sync(phone.request()).await.is_none());
    assert_eq!(phone.holds, phone.inbox_on_server());
}

#[tokio::test]
async fn a_mail_expunged_before_its_fetch_is_neither_sent_nor_held() {
    let server = FakeServer::default();
    let uids = seed(&server, 3);
    let mut phone = Phone::new(&server).await;
    phone.start().await;
    server.vanish_on_fetch("INBOX", uids[1]);
    let r = phone.sync(phone.request()).await.expect("answer");
    assert_eq!(ids(&r, "add"), [phone.sid(uids[2]), phone.sid(uids[0])]);
    // No Delete later for the mail the phone never got.
    server.deliver("INBOX", "new", NOW);
    let r = phone.sync(phone.request()).await.expect("answer");
    assert!(ids(&r, "delete").is_empty(), "{r:?}");
    assert_eq!(phone.holds, phone.inbox_on_server());
}

#[tokio::test]
async fn a_new_uidvalidity_or_an_unknown_key_asks_for_a_fresh_start() {
    let server = FakeServer::default();
    seed(&server, 2);
    let mut phone = Phone::new(&server).await;
    let unknown = CollectionRequest {
        sync_key: "5".into(),
        ..phone.request()
    };
    let r = phone.send(unknown).await.expect("answer");
    assert_eq!(r.status, status::INVALID_SYNC_KEY);
    phone.start().await;
    phone.sync_all(10).await;
    server.reset_uid_validity("INBOX");
    server.deliver("INBOX", "after", NOW);
    let r = phone.send(phone.request()).await.expect("answer");
    assert_eq!(r.status, status::INVALID_SYNC_KEY);
}

#[tokio::test]
async fn the_key_names_the_current_view_or_the_previous_one_as_a_replay() {
    let server = FakeServer::default();
    seed(&server, 4);
    let mut phone = Phone::new(&server).await;
    phone.start().await;
    for _ in 0..2 {
        let col = CollectionRequest {
            window_size: Some(2),
            ..phone.request()
        };
        phone.sync(col).await.expect("a page");
    }
    assert_eq!(phone.key, "3");
    let key = |k: &str| CollectionRequest {
        sync_key: k.into(),
        ..phone.request()
    };
    let (_, current) = phone.resolve_key(&key("3"), 100).await;
    let ControlFlow::Continue(current) = current else {
        panic!("the current key names a view");
    };
    assert!(!current.replay);
    assert_eq!((current.current_key, current.next_key), (3, 4));
    assert_eq!(current.view.uids.len(), 4);
    let (_, previous) = phone.resolve_key(&key("2"), 100).await;
    let ControlFlow::Continue(previous) = previous else {
        panic!("the previous key names a view");
    };
    assert!(previous.replay);
    assert_eq!(
        (previous.current_key, previous.next_key),
        (3, 3),
        "answered again under 3"
    );
    assert_eq!(previous.view.uids.len(), 2, "what the phone held at key 2");
    for stale in ["1", "4", "x"] {
        let (_, r) = phone.resolve_key(&key(stale), 100).await;
        let ControlFlow::Break(Some(r)) = r else {
            panic!("key {stale} is refused");
        };
        assert_eq!(r.status, status::INVALID_SYNC_KEY, "key {stale}");
    }
}

#[tokio::test]
async fn the_window_is_the_collections_within_what_the_request_left() {
    let server = FakeServer::default();
    let phone = Phone::new(&server).await;
    let col = |w: Option<u32>| CollectionRequest {
        window_size: w,
        ..phone.request()
    };
    assert_eq!(phone.resolve_key(&col(Some(10)), 512).await.0, 10);
    assert_eq!(phone.resolve_key(&col(Some(10)), 3).await.0, 3);
    assert_eq!(
        phone.resolve_key(&col(Some(10)), 0).await.0,
        1,
        "at least one"
    );
    assert_eq!(
        phone.resolve_key(&col(None), 512).await.0,
        100,
        "the default"
    );
}
