//! Push edge cases against the real gateway and the real dev Dovecot: a device's own changes
//! never wake its own Ping while the same change made elsewhere does, a changed folder
//! hierarchy answers Ping Status 7 (hanging Sync Status 12), folders created after the user's
//! watcher started push like the others, and a lost mail server ends waiting requests early
//! with 503 rather than "nothing changed".

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::*;
use eas_gateway::push::PushConfig;
use eas_gateway::wbxml::tags::{
    airsync as a, compose_mail as cm, email, folder_hierarchy as f, move_items as m, ping as p,
};
use eas_gateway::wbxml::Element;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// How long a device's own change must leave its Ping waiting.
const QUIET: Duration = Duration::from_secs(5);
/// The push latency the tests allow for a change made elsewhere.
const PUSH: Duration = Duration::from_secs(2);

fn push_config() -> PushConfig {
    PushConfig {
        min_heartbeat_secs: 2,
        max_heartbeat_secs: 120,
        watcher_grace: Duration::from_secs(30),
        hierarchy_poll: Duration::from_secs(1),
        ..PushConfig::default()
    }
}

async fn start() -> (TestGateway, TestServer) {
    start_with(GatewayOptions::default(), push_config()).await
}

async fn start_with(opts: GatewayOptions, push: PushConfig) -> (TestGateway, TestServer) {
    require_stack();
    start_gateway_server(opts, |c| c.push = push).await
}

fn ping_request(heartbeat: u32, folders: &[&str]) -> Element {
    let mut fs = Element::new(p::FOLDERS);
    for id in folders {
        fs.push(
            Element::new(p::FOLDER)
                .text_child(p::ID, *id)
                .text_child(p::CLASS, "Email"),
        );
    }
    Element::new(p::PING)
        .text_child(p::HEARTBEAT_INTERVAL, heartbeat.to_string())
        .child(fs)
}

#[derive(Debug)]
struct Answer {
    http: u16,
    retry_after: Option<String>,
    status: String,
    folders: Vec<String>,
    at: Instant,
}

async fn ping(dev: &TestDevice, body: Element) -> Answer {
    let reply = dev.post("Ping", &body).await;
    let at = Instant::now();
    let status = reply
        .body
        .as_ref()
        .and_then(|b| b.text_of(p::STATUS))
        .unwrap_or("")
        .to_string();
    let folders = reply
        .body
        .as_ref()
        .and_then(|b| b.first(p::FOLDERS))
        .map(|fs| {
            fs.all(p::FOLDER)
                .filter_map(|x| x.text().map(String::from))
                .collect()
        })
        .unwrap_or_default();
    Answer {
        http: reply.status,
        retry_after: reply
            .headers
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .map(String::from),
        status,
        folders,
        at,
    }
}

/// Starts a Ping and returns once the hub holds it and its first look is over.
async fn ping_waiting(server: &TestServer, dev: &TestDevice, body: Element) -> JoinHandle<Answer> {
    let before = server.gateway.push.stats().waiters;
    let d = dev.clone();
    let task = tokio::spawn(async move { ping(&d, body).await });
    let t = Instant::now();
    while server.gateway.push.stats().waiters <= before && t.elapsed() < Duration::from_secs(10) {
        if task.is_finished() {
            return task;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    task
}

/// The Ping is still waiting after [`QUIET`]: the device's own change did not wake it.
async fn assert_still_waiting(task: &mut JoinHandle<Answer>, what: &str) {
    let t = Instant::now();
    while t.elapsed() < QUIET {
        if task.is_finished() {
            let a = task.await.unwrap();
            panic!("{what}: the Ping ended after {:?}: {a:?}", t.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The Ping answers 2 for `folder` within [`PUSH`] of `since`.
async fn assert_woken(task: JoinHandle<Answer>, since: Instant, folder: &str, what: &str) {
    let a = task.await.unwrap();
    assert_eq!(
        (a.http, a.status.as_str(), a.folders.clone()),
        (200, "2", vec![folder.to_string()]),
        "{what}: {a:?}"
    );
    let latency = a.at.duration_since(since);
    println!("{what}: woken after {} ms", latency.as_millis());
    assert!(latency < PUSH, "{what}: {latency:?}");
}

/// A Sync with these commands; returns the result (its key is the device's new key).
async fn sync_commands(dev: &TestDevice, cid: &str, key: &str, cmds: Vec<Element>) -> SyncResult {
    let mut req = sync_request(cid, key, 100, None);
    let mut c = Element::new(a::COMMANDS);
    for cmd in cmds {
        c.push(cmd);
    }
    push_commands(&mut req, c);
    let r = sync_result(&dev.post("Sync", &req).await);
    assert_eq!(r.status.as_deref(), Some("1"), "{r:?}");
    r
}

fn read_change(sid: &str) -> Element {
    Element::new(a::CHANGE)
        .text_child(a::SERVER_ID, sid)
        .child(Element::new(a::APPLICATION_DATA).text_child(email::READ, "1"))
}

/// A 14.1 device of a fresh user with INBOX synced, then a new mail delivered and synced the
/// way a phone gets it: (gateway, server, device, user, password, inbox id, key, new mail's
/// ServerId).
async fn device_with_new_mail(
    prefix: &str,
) -> (
    TestGateway,
    TestServer,
    TestDevice,
    String,
    String,
    String,
    String,
    String,
) {
    let (gw, server) = start().await;
    let (user, pw) = new_user(prefix);
    append(&user, &pw, "INBOX", &mail("old", "x"), None).await;
    let dev = device_of(&gw, &user, &pw, "14.1").await;
    let inbox = folder_id(&dev, "Inbox").await;
    let (_, key) = full_sync(&dev, &inbox, 100).await;
    // The phone waits; a new mail wakes it; it syncs the mail.
    let task = ping_waiting(&server, &dev, ping_request(60, &[&inbox])).await;
    let t = Instant::now();
    append(&user, &pw, "INBOX", &mail("new", "x"), None).await;
    assert_woken(task, t, &inbox, "new mail").await;
    let r = sync(&dev, &inbox, &key, 100).await;
    assert_eq!(r.adds.len(), 1, "{r:?}");
    let sid = r.adds[0].0.clone();
    let key = r.key.unwrap();
    (gw, server, dev, user, pw, inbox, key, sid)
}

fn uid_of(sid: &str) -> &str {
    sid.rsplit_once(':').unwrap().1
}

#[tokio::test]
async fn own_read_and_flag_do_not_wake_own_ping_but_imap_does() {
    let (_gw, server, dev, user, pw, inbox, key, sid) = device_with_new_mail("ownread").await;
    let r = sync_commands(&dev, &inbox, &key, vec![read_change(&sid)]).await;
    let key = r.key.unwrap();
    let mut task = ping_waiting(&server, &dev, ping_request(60, &[&inbox])).await;
    assert_still_waiting(&mut task, "Read").await;
    // The same kind of change over IMAP wakes it.
    let t = Instant::now();
    let uid = uid_of(&sid);
    imap(
        &user,
        &pw,
        &[
            "SELECT INBOX",
            &format!("UID STORE {uid} +FLAGS (\\Flagged)"),
        ],
    )
    .await;
    assert_woken(task, t, &inbox, "flag over IMAP").await;
    let r = sync(&dev, &inbox, &key, 100).await;
    assert_eq!(r.changes.len(), 1, "{r:?}");
    let key = r.key.unwrap();

    // The phone clears the flag set over IMAP.
    let r = sync_commands(
        &dev,
        &inbox,
        &key,
        vec![Element::new(a::CHANGE)
            .text_child(a::SERVER_ID, &sid)
            .child(Element::new(a::APPLICATION_DATA).child(Element::new(email::FLAG)))],
    )
    .await;
    let key = r.key.unwrap();
    let mut task = ping_waiting(&server, &dev, ping_request(60, &[&inbox])).await;
    assert_still_waiting(&mut task, "Flag").await;
    let t = Instant::now();
    imap(
        &user,
        &pw,
        &["SELECT INBOX", &format!("UID STORE {uid} -FLAGS (\\Seen)")],
    )
    .await;
    assert_woken(task, t, &inbox, "unread over IMAP").await;
    let r = sync(&dev, &inbox, &key, 100).await;
    assert_eq!(r.changes.len(), 1, "{r:?}");
}

/// A Sync carrying only the device's changes, with `GetChanges` 0 (as pyactivesync and some
/// Android clients send them).
async fn sync_commands_no_changes(
    dev: &TestDevice,
    cid: &str,
    key: &str,
    cmds: Vec<Element>,
) -> SyncResult {
    let mut req = sync_request(cid, key, 100, None);
    let mut c = Element::new(a::COMMANDS);
    for cmd in cmds {
        c.push(cmd);
    }
    req.first_mut(a::COLLECTIONS)
        .and_then(|col| col.first_mut(a::COLLECTION))
        .expect("one collection")
        .push(Element::with_text(a::GET_CHANGES, "0"));
    push_commands(&mut req, c);
    let r = sync_result(&dev.post("Sync", &req).await);
    assert_eq!(r.status.as_deref(), Some("1"), "{r:?}");
    assert!(
        r.adds.is_empty() && r.changes.is_empty(),
        "GetChanges 0 sends nothing: {r:?}"
    );
    r
}

#[tokio::test]
async fn own_read_with_get_changes_0_does_not_wake_own_ping() {
    let (_gw, server, dev, user, pw, inbox, key, sid) = device_with_new_mail("ownread0").await;
    let r = sync_commands_no_changes(&dev, &inbox, &key, vec![read_change(&sid)]).await;
    let key = r.key.unwrap();
    let mut task = ping_waiting(&server, &dev, ping_request(60, &[&inbox])).await;
    assert_still_waiting(&mut task, "Read with GetChanges 0").await;
    let t = Instant::now();
    imap(
        &user,
        &pw,
        &[
            "SELECT INBOX",
            &format!("UID STORE {} +FLAGS (\\Flagged)", uid_of(&sid)),
        ],
    )
    .await;
    assert_woken(task, t, &inbox, "flag over IMAP").await;
    let r = sync(&dev, &inbox, &key, 100).await;
    assert_eq!(r.changes.len(), 1, "{r:?}");
}

#[tokio::test]
async fn another_clients_change_before_an_own_change_with_get_changes_0_is_not_skipped() {
    let (_gw, _server, dev, user, pw, inbox, key, sid) = device_with_new_mail("ownread0b").await;
    // Webmail flags the mail, then the phone marks it read without asking for changes.
    imap(
        &user,
        &pw,
        &[
            "SELECT INBOX",
            &format!("UID STORE {} +FLAGS (\\Flagged)", uid_of(&sid)),
        ],
    )
    .await;
    let r = sync_commands_no_changes(&dev, &inbox, &key, vec![read_change(&sid)]).await;
    let key = r.key.unwrap();
    // The flag set elsewhere still reaches the phone.
    let r = sync(&dev, &inbox, &key, 100).await;
    assert_eq!(r.changes.len(), 1, "the webmail flag is delivered: {r:?}");
}

#[tokio::test]
async fn own_delete_does_not_wake_own_ping_but_an_imap_expunge_does() {
    let (_gw, server, dev, user, pw, inbox, key, sid) = device_with_new_mail("owndel").await;
    let del = Element::new(a::DELETE).text_child(a::SERVER_ID, &sid);
    let r = sync_commands(&dev, &inbox, &key, vec![del]).await;
    let key = r.key.unwrap();
    let mut task = ping_waiting(&server, &dev, ping_request(60, &[&inbox])).await;
    assert_still_waiting(&mut task, "Delete").await;
    let t = Instant::now();
    imap(
        &user,
        &pw,
        &["SELECT INBOX", "STORE 1 +FLAGS (\\Deleted)", "EXPUNGE"],
    )
    .await;
    assert_woken(task, t, &inbox, "expunge over IMAP").await;
    let r = sync(&dev, &inbox, &key, 100).await;
    assert_eq!(r.deletes.len(), 1, "{r:?}");
}

#[tokio::test]
async fn own_move_does_not_wake_own_ping_on_either_folder_but_an_imap_move_does() {
    let (_gw, server, dev, user, pw, inbox, key, sid) = device_with_new_mail("ownmove").await;
    let archive = folder_id(&dev, "Archive").await;
    let (_, akey) = full_sync(&dev, &archive, 100).await;
    let req = Element::new(m::MOVE_ITEMS).child(
        Element::new(m::MOVE)
            .text_child(m::SRC_MSG_ID, &sid)
            .text_child(m::SRC_FLD_ID, &inbox)
            .text_child(m::DST_FLD_ID, &archive),
    );
    let r = dev.post("MoveItems", &req).await;
    let status = r
        .body
        .as_ref()
        .and_then(|b| b.first(m::RESPONSE))
        .and_then(|e| e.text_of(m::STATUS));
    assert_eq!(status, Some("3"), "MoveItems");
    let mut task = ping_waiting(&server, &dev, ping_request(60, &[&inbox, &archive])).await;
    assert_still_waiting(&mut task, "MoveItems").await;
    let t = Instant::now();
    imap(&user, &pw, &["SELECT INBOX", "MOVE 1 Archive"]).await;
    let a = task.await.unwrap();
    assert_eq!((a.http, a.status.as_str()), (200, "2"), "{a:?}");
    assert!(a.folders.contains(&inbox), "{a:?}");
    assert!(
        a.at.duration_since(t) < PUSH,
        "{:?}",
        a.at.duration_since(t)
    );
    // Nothing of the phone's own move comes back.
    let r = sync(&dev, &inbox, &key, 100).await;
    assert_eq!((r.deletes.len(), r.adds.len()), (1, 0), "{r:?}");
    let r = sync(&dev, &archive, &akey, 100).await;
    assert_eq!(r.adds.len(), 1, "only the IMAP move: {r:?}");
}

#[tokio::test]
async fn own_sent_copy_does_not_wake_a_ping_on_sent_items_but_another_clients_does() {
    let (gw, server) = start().await;
    let (user, pw) = new_user("ownsent");
    let dev = device_of(&gw, &user, &pw, "14.1").await;
    let sent = folder_id(&dev, "Sent").await;
    let (_, key) = full_sync(&dev, &sent, 100).await;
    let subject = unique("sent by the phone");
    let mime = format!(
        "From: {user}\r\nTo: {user}\r\nSubject: {subject}\r\nMIME-Version: 1.0\r\n\
         Content-Type: text/plain\r\n\r\nhello\r\n"
    );
    let body = Element::new(cm::SEND_MAIL)
        .text_child(cm::CLIENT_ID, unique("c").replace(' ', ""))
        .child(Element::new(cm::SAVE_IN_SENT_ITEMS))
        .opaque_child(cm::MIME, Bytes::from(mime.into_bytes()));
    let r = dev.post("SendMail", &body).await;
    assert_eq!(r.status, 200);
    assert!(compose_status(&r).is_none(), "SendMail: {:?}", r.body);
    let copies = uids_with_subject(&user, &pw, "Sent", &subject, 1, Duration::from_secs(5)).await;
    assert_eq!(copies.len(), 1);
    let mut task = ping_waiting(&server, &dev, ping_request(60, &[&sent])).await;
    assert_still_waiting(&mut task, "SendMail's Sent copy").await;
    let t = Instant::now();
    append(&user, &pw, "Sent", &mail("sent elsewhere", "x"), None).await;
    assert_woken(task, t, &sent, "a Sent copy by another client").await;
    // The phone's copy still reaches the phone with the next Sync.
    let r = sync(&dev, &sent, &key, 100).await;
    assert_eq!(r.adds.len(), 2, "{r:?}");
}

#[tokio::test]
async fn own_draft_edit_does_not_wake_own_ping_but_webmail_does() {
    let (gw, server) = start().await;
    let (user, pw) = new_user("owndraft");
    let dev = device_of(&gw, &user, &pw, "16.1").await;
    let drafts = folder_id(&dev, "Drafts").await;
    let (_, key) = full_sync(&dev, &drafts, 100).await;
    let data = Element::new(a::APPLICATION_DATA)
        .text_child(email::SUBJECT, "a draft")
        .text_child(email::TO, "someone@example.org");
    let add = Element::new(a::ADD)
        .text_child(a::CLIENT_ID, "d1")
        .child(data);
    let r = sync_commands(&dev, &drafts, &key, vec![add]).await;
    let key = r.key.unwrap();
    let sid = r
        .responses
        .as_ref()
        .and_then(|rs| rs.first(a::ADD))
        .and_then(|e| e.text_of(a::SERVER_ID))
        .expect("draft ServerId")
        .to_string();
    let change = Element::new(a::CHANGE)
        .text_child(a::SERVER_ID, &sid)
        .child(Element::new(a::APPLICATION_DATA).text_child(email::SUBJECT, "a better draft"));
    let r = sync_commands(&dev, &drafts, &key, vec![change]).await;
    let _key = r.key.unwrap();
    let mut task = ping_waiting(&server, &dev, ping_request(60, &[&drafts])).await;
    assert_still_waiting(&mut task, "draft edit").await;
    let t = Instant::now();
    append(&user, &pw, "Drafts", &mail("webmail draft", "x"), None).await;
    assert_woken(task, t, &drafts, "a draft from webmail").await;
}

/// Ping Status 7 with no folders.
fn assert_hierarchy_changed(a: &Answer, what: &str) {
    assert_eq!((a.http, a.status.as_str()), (200, "7"), "{what}: {a:?}");
}

#[tokio::test]
async fn a_hierarchy_changed_before_the_ping_answers_7_at_once() {
    let (gw, _server) = start().await;
    let (user, pw) = new_user("hierbefore");
    imap(&user, &pw, &["CREATE Old"]).await;
    let dev = device_of(&gw, &user, &pw, "14.1").await;
    let inbox = folder_id(&dev, "Inbox").await;
    full_sync(&dev, &inbox, 100).await;
    for (i, change) in [
        "CREATE Fresh",
        "RENAME Old Older",
        "CREATE Older/Child",
        "DELETE Fresh",
    ]
    .into_iter()
    .enumerate()
    {
        // The device's FolderSync is current ...
        let fs = dev.folder_sync("0").await;
        assert_eq!(fs.text_of(f::STATUS), Some("1"));
        // ... then the hierarchy changes elsewhere.
        imap(&user, &pw, &[change]).await;
        let t = Instant::now();
        let a = ping(&dev, ping_request(30, &[&inbox])).await;
        assert_hierarchy_changed(&a, change);
        assert!(t.elapsed() < PUSH, "{change} ({i}): {:?}", t.elapsed());
    }
    // After a FolderSync the Ping waits again.
    dev.folder_sync("0").await;
    let a = ping(&dev, ping_request(2, &[&inbox])).await;
    assert_eq!(a.status, "1", "{a:?}");
}

#[tokio::test]
async fn a_hierarchy_changed_while_the_ping_waits_answers_7() {
    let (gw, server) = start().await;
    let (user, pw) = new_user("hierduring");
    imap(&user, &pw, &["CREATE Old", "CREATE Gone"]).await;
    let dev = device_of(&gw, &user, &pw, "14.1").await;
    let inbox = folder_id(&dev, "Inbox").await;
    full_sync(&dev, &inbox, 100).await;
    for change in [
        "CREATE Fresh",
        "RENAME Old Older",
        "RENAME Older Fresh/Older",
        "DELETE Gone",
    ] {
        dev.folder_sync("0").await;
        let task = ping_waiting(&server, &dev, ping_request(60, &[&inbox])).await;
        assert!(
            !task.is_finished(),
            "{change}: the Ping ended before the change"
        );
        let t = Instant::now();
        imap(&user, &pw, &[change]).await;
        let a = task.await.unwrap();
        assert_hierarchy_changed(&a, change);
        let latency = a.at.duration_since(t);
        println!("{change}: Status 7 after {} ms", latency.as_millis());
        assert!(latency < PUSH, "{change}: {latency:?}");
    }
}

fn hanging_sync(cid: &str, key: &str, heartbeat: u32) -> Element {
    let mut req = sync_request(cid, key, 100, None);
    req.push(Element::with_text(
        a::HEARTBEAT_INTERVAL,
        heartbeat.to_string(),
    ));
    req
}

#[tokio::test]
async fn a_hanging_sync_whose_folder_is_deleted_or_moved_answers_12() {
    let (gw, server) = start().await;
    let (user, pw) = new_user("hangdel");
    imap(&user, &pw, &["CREATE Projects", "CREATE Other"]).await;
    let dev = device_of(&gw, &user, &pw, "14.1").await;
    for (name, change) in [
        ("Projects", "DELETE Projects"),
        ("Other", "RENAME Other Projects2/Other"),
    ] {
        let cid = folder_id(&dev, name).await;
        let (_, key) = full_sync(&dev, &cid, 100).await;
        let before = server.gateway.push.stats().waiters;
        let d = dev.clone();
        let (c, k) = (cid.clone(), key.clone());
        let task = tokio::spawn(async move { d.post("Sync", &hanging_sync(&c, &k, 60)).await });
        while server.gateway.push.stats().waiters <= before {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        let t = Instant::now();
        imap(&user, &pw, &[change]).await;
        let r = sync_result(&task.await.unwrap());
        assert_eq!(r.status.as_deref(), Some("12"), "{change}: {r:?}");
        assert!(t.elapsed() < PUSH, "{change}: {:?}", t.elapsed());
    }
}

#[tokio::test]
async fn a_folder_created_after_the_watcher_started_pushes_at_once() {
    let (gw, server) = start().await;
    let (user, pw) = new_user("newfolder");
    let dev = device_of(&gw, &user, &pw, "14.1").await;
    let inbox = folder_id(&dev, "Inbox").await;
    full_sync(&dev, &inbox, 100).await;
    // The user's watcher runs (this Ping), then a folder is made (a new Sieve target).
    let task = ping_waiting(&server, &dev, ping_request(60, &[&inbox])).await;
    assert_eq!(server.gateway.push.stats().watchers, 1);
    imap(&user, &pw, &["CREATE Lists"]).await;
    let a = task.await.unwrap();
    assert_hierarchy_changed(&a, "CREATE Lists");
    let lists = folder_id(&dev, "Lists").await;
    let (_, _key) = full_sync(&dev, &lists, 100).await;
    assert_eq!(server.gateway.push.stats().watchers, 1, "the same watcher");
    let task = ping_waiting(&server, &dev, ping_request(60, &[&inbox, &lists])).await;
    let t = Instant::now();
    append(&user, &pw, "Lists", &mail("filed", "x"), None).await;
    assert_woken(task, t, &lists, "mail filed into the new folder").await;
}

/// A TCP relay to Dovecot that can be severed (every relayed connection closed, new ones
/// closed at once) and mended.
struct Relay {
    port: u16,
    severed: Arc<AtomicBool>,
    live: Arc<Mutex<Vec<JoinHandle<()>>>>,
}

impl Relay {
    async fn start() -> Relay {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let severed = Arc::new(AtomicBool::new(false));
        let live: Arc<Mutex<Vec<JoinHandle<()>>>> = Default::default();
        let (s, l) = (severed.clone(), live.clone());
        tokio::spawn(async move {
            loop {
                let Ok((mut client, _)) = listener.accept().await else {
                    return;
                };
                if s.load(Ordering::SeqCst) {
                    drop(client);
                    continue;
                }
                let h = tokio::spawn(async move {
                    let Ok(mut server) = TcpStream::connect(IMAP).await else {
                        return;
                    };
                    let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                });
                l.lock().unwrap().push(h);
            }
        });
        Relay {
            port,
            severed,
            live,
        }
    }

    fn sever(&self) {
        self.severed.store(true, Ordering::SeqCst);
        for h in self.live.lock().unwrap().drain(..) {
            h.abort();
        }
    }

    fn mend(&self) {
        self.severed.store(false, Ordering::SeqCst);
    }
}

#[tokio::test]
async fn a_ping_during_a_mail_server_outage_answers_503_early() {
    let relay = Relay::start().await;
    let (gw, server) = start_with(
        GatewayOptions {
            imap_port: Some(relay.port),
            ..Default::default()
        },
        push_config(),
    )
    .await;
    let (user, pw) = new_user("outage");
    let dev = device_of(&gw, &user, &pw, "14.1").await;
    let inbox = folder_id(&dev, "Inbox").await;
    let (_, key) = full_sync(&dev, &inbox, 100).await;

    let task = ping_waiting(&server, &dev, ping_request(60, &[&inbox])).await;
    let t = Instant::now();
    relay.sever();
    let a = task.await.unwrap();
    println!("Ping during the outage: {a:?} after {:?}", t.elapsed());
    assert_eq!(a.http, 503, "{a:?}");
    assert!(a.retry_after.is_some(), "{a:?}");
    assert!(t.elapsed() < Duration::from_secs(20), "{:?}", t.elapsed());

    // A hanging Sync the same.
    relay.mend();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let d = dev.clone();
    let (c, k) = (inbox.clone(), key.clone());
    let before = server.gateway.push.stats().waiters;
    let task = tokio::spawn(async move { d.post("Sync", &hanging_sync(&c, &k, 60)).await });
    let w = Instant::now();
    while server.gateway.push.stats().waiters <= before && w.elapsed() < Duration::from_secs(10) {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let t = Instant::now();
    relay.sever();
    let r = task.await.unwrap();
    assert_eq!(r.status, 503, "hanging Sync during the outage");
    assert!(r.headers.contains_key("retry-after"));
    assert!(t.elapsed() < Duration::from_secs(20), "{:?}", t.elapsed());
}

#[tokio::test]
async fn a_short_break_within_the_grace_keeps_the_ping_waiting() {
    let relay = Relay::start().await;
    let (gw, server) = start_with(
        GatewayOptions {
            imap_port: Some(relay.port),
            ..Default::default()
        },
        push_config(),
    )
    .await;
    let (user, pw) = new_user("blip");
    let dev = device_of(&gw, &user, &pw, "14.1").await;
    let inbox = folder_id(&dev, "Inbox").await;
    full_sync(&dev, &inbox, 100).await;
    let mut task = ping_waiting(&server, &dev, ping_request(60, &[&inbox])).await;
    relay.sever();
    tokio::time::sleep(Duration::from_millis(200)).await;
    relay.mend();
    assert_still_waiting(&mut task, "a short break").await;
    let t = Instant::now();
    append(&user, &pw, "INBOX", &mail("after the break", "x"), None).await;
    assert_woken(task, t, &inbox, "mail after the break").await;
}

#[tokio::test]
async fn a_folder_the_phone_just_created_pushes_at_once() {
    let (gw, server) = start().await;
    let (user, pw) = new_user("phonefolder");
    let dev = device_of(&gw, &user, &pw, "14.1").await;
    let inbox = folder_id(&dev, "Inbox").await;
    full_sync(&dev, &inbox, 100).await;
    let key = dev
        .folder_sync("0")
        .await
        .text_of(f::SYNC_KEY)
        .unwrap()
        .to_string();
    // The user's watcher runs (this Ping); the phone's next request, a FolderCreate, ends it.
    let task = ping_waiting(&server, &dev, ping_request(60, &[&inbox])).await;
    let create = Element::new(f::FOLDER_CREATE)
        .text_child(f::SYNC_KEY, &key)
        .text_child(f::PARENT_ID, "0")
        .text_child(f::DISPLAY_NAME, "Receipts")
        .text_child(f::TYPE, "12");
    let r = dev.post("FolderCreate", &create).await;
    let body = r.body.expect("FolderCreate body");
    assert_eq!(body.text_of(f::STATUS), Some("1"), "{body:?}");
    let receipts = body.text_of(f::SERVER_ID).unwrap().to_string();
    assert_eq!(task.await.unwrap().status, "1");
    full_sync(&dev, &receipts, 100).await;
    assert_eq!(server.gateway.push.stats().watchers, 1, "the same watcher");
    let task = ping_waiting(&server, &dev, ping_request(60, &[&inbox, &receipts])).await;
    let t = Instant::now();
    append(&user, &pw, "Receipts", &mail("receipt", "x"), None).await;
    assert_woken(task, t, &receipts, "mail filed into the phone's new folder").await;
}

#[tokio::test]
async fn own_smart_reply_and_forward_copies_do_not_wake_a_ping_on_sent_items() {
    let (gw, server) = start().await;
    let (user, pw) = new_user("ownsmart");
    let subject = unique("lunch");
    append(&user, &pw, "INBOX", &mail(&subject, "shall we?"), None).await;
    let dev = device_of(&gw, &user, &pw, "14.1").await;
    let inbox = folder_id(&dev, "Inbox").await;
    let sent = folder_id(&dev, "Sent").await;
    let (adds, _) = full_sync(&dev, &inbox, 100).await;
    let (_, key) = full_sync(&dev, &sent, 100).await;
    let item = adds[0].0.clone();
    for (n, (cmd, tag)) in [
        ("SmartReply", cm::SMART_REPLY),
        ("SmartForward", cm::SMART_FORWARD),
    ]
    .into_iter()
    .enumerate()
    {
        let mime = format!(
            "From: {user}\r\nTo: {user}\r\nSubject: {cmd}: {subject}\r\n\
             Content-Type: text/plain\r\n\r\nyes\r\n"
        );
        let req = Element::new(tag)
            .text_child(
                cm::CLIENT_ID,
                format!("smart-{n}-{}", rand::random::<u32>()),
            )
            .child(Element::new(cm::SAVE_IN_SENT_ITEMS))
            .child(
                Element::new(cm::SOURCE)
                    .text_child(cm::FOLDER_ID, &inbox)
                    .text_child(cm::ITEM_ID, &item),
            )
            .opaque_child(cm::MIME, Bytes::from(mime.into_bytes()));
        let r = dev.post(cmd, &req).await;
        assert_eq!(r.status, 200, "{cmd}");
        assert!(r.raw.is_empty(), "{cmd}: status {:?}", compose_status(&r));
    }
    let copies = uids_with_subject(&user, &pw, "Sent", &subject, 2, Duration::from_secs(5)).await;
    assert_eq!(copies.len(), 2);
    let mut task = ping_waiting(&server, &dev, ping_request(60, &[&sent])).await;
    assert_still_waiting(&mut task, "SmartReply/SmartForward Sent copies").await;
    let t = Instant::now();
    append(&user, &pw, "Sent", &mail("sent elsewhere", "x"), None).await;
    assert_woken(task, t, &sent, "a Sent copy by another client").await;
    let r = sync(&dev, &sent, &key, 100).await;
    assert_eq!(r.adds.len(), 3, "{r:?}");
}
