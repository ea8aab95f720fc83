//! Ping against the real dev Dovecot and Postfix: push on NOTIFY/IDLE, the baseline rules,
//! the statuses, and ending waiting requests.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use eas_gateway::backend::imap::ImapBackend;
use eas_gateway::http::Server;
use eas_gateway::push::PushConfig;
use eas_gateway::state::sqlite::SqliteStore;
use eas_gateway::wbxml::tags::{airsync as a, email, ping as p};
use eas_gateway::wbxml::Element;

type TestServer = Arc<Server<ImapBackend, SqliteStore>>;

/// Low bounds so heartbeats end in seconds.
fn push_config() -> PushConfig {
    PushConfig {
        min_heartbeat_secs: 2,
        max_heartbeat_secs: 60,
        max_folders: 3,
        watcher_grace: Duration::from_secs(2),
        ..PushConfig::default()
    }
}

async fn start(push: PushConfig) -> (TestGateway, TestServer) {
    start_on(push, None).await
}

/// A gateway on the state file `state` (a restart of the gateway that used it), else on a
/// fresh one.
async fn start_on(push: PushConfig, state: Option<&std::path::Path>) -> (TestGateway, TestServer) {
    require_stack();
    let opts = GatewayOptions {
        max_body_bytes: Some(64 << 20),
        state_url: state.map(|p| format!("sqlite://{}", p.display())),
        ..Default::default()
    };
    start_gateway_server(opts, |c| c.push = push).await
}

fn ping_request(heartbeat: Option<u32>, folders: &[&str]) -> Element {
    let mut e = Element::new(p::PING);
    if let Some(h) = heartbeat {
        e.push(Element::with_text(p::HEARTBEAT_INTERVAL, h.to_string()));
    }
    if !folders.is_empty() {
        let mut fs = Element::new(p::FOLDERS);
        for f in folders {
            fs.push(
                Element::new(p::FOLDER)
                    .text_child(p::ID, *f)
                    .text_child(p::CLASS, "Email"),
            );
        }
        e.push(fs);
    }
    e
}

#[derive(Debug)]
struct PingAnswer {
    status: String,
    folders: Vec<String>,
    heartbeat: Option<String>,
    max_folders: Option<String>,
    at: Instant,
}

async fn ping(dev: &TestDevice, body: Option<Element>) -> PingAnswer {
    let reply = match body {
        Some(b) => dev.post("Ping", &b).await,
        None => {
            let url = format!("{}?{}", dev.base, dev.query("Ping"));
            dev.post_raw(&url, Vec::new(), "application/vnd.ms-sync.wbxml")
                .await
        }
    };
    let at = Instant::now();
    assert_eq!(reply.status, 200, "Ping HTTP status");
    let body = reply.body.expect("Ping body");
    PingAnswer {
        status: body.text_of(p::STATUS).unwrap_or("").to_string(),
        folders: body
            .first(p::FOLDERS)
            .map(|f| {
                f.all(p::FOLDER)
                    .filter_map(|x| x.text().map(String::from))
                    .collect()
            })
            .unwrap_or_default(),
        heartbeat: body.text_of(p::HEARTBEAT_INTERVAL).map(String::from),
        max_folders: body.text_of(p::MAX_FOLDERS).map(String::from),
        at,
    }
}

/// Starts a Ping in the background and returns once the hub holds it and its first look at
/// the mailboxes is over.
async fn ping_in_background(
    server: &TestServer,
    dev: &TestDevice,
    body: Element,
) -> tokio::task::JoinHandle<PingAnswer> {
    ping_in_background_with(server, dev, Some(body)).await
}

/// [`ping_in_background`] with an optional body (`None`: an empty Ping).
async fn ping_in_background_with(
    server: &TestServer,
    dev: &TestDevice,
    body: Option<Element>,
) -> tokio::task::JoinHandle<PingAnswer> {
    let before = server.gateway.push.stats().waiters;
    let dev = dev.clone();
    let task = tokio::spawn(async move { ping(&dev, body).await });
    let started = Instant::now();
    while server.gateway.push.stats().waiters <= before
        && started.elapsed() < Duration::from_secs(10)
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The initial refresh (login, NOTIFY, STATUS) is a few milliseconds on loopback.
    tokio::time::sleep(Duration::from_millis(500)).await;
    task
}

/// Delivers a mail through Postfix ([`deliver_smtp`]).
async fn deliver(to: &str, subject: &str) -> Instant {
    deliver_smtp(to, subject, "pushed").await
}

#[tokio::test]
async fn delivered_mail_wakes_a_waiting_ping() {
    let (gw, server) = start(push_config()).await;
    let (user, pw) = new_user("push");
    let dev = device_of(&gw, &user, &pw, "16.1").await;
    let inbox = folder_id(&dev, "Inbox").await;
    let (_, key) = full_sync(&dev, &inbox, 100).await;
    let task = ping_in_background(&server, &dev, ping_request(Some(30), &[&inbox])).await;
    let sent = deliver(&user, "push me").await;
    let answer = task.await.unwrap();
    assert_eq!(answer.status, "2", "{answer:?}");
    assert_eq!(answer.folders, vec![inbox.clone()]);
    println!(
        "push latency (SMTP end of data -> Ping answer): {} ms",
        answer.at.duration_since(sent).as_millis()
    );
    // The Sync the device makes next brings the mail.
    let r = sync(&dev, &inbox, &key, 100).await;
    assert_eq!(r.adds.len(), 1, "{r:?}");
}

#[tokio::test]
async fn heartbeat_expires_with_status_1_and_bounds_answer_5() {
    let (gw, _server) = start(push_config()).await;
    let (user, pw) = new_user("hb");
    let dev = device_of(&gw, &user, &pw, "16.1").await;
    let inbox = folder_id(&dev, "Inbox").await;
    full_sync(&dev, &inbox, 100).await;
    let t = Instant::now();
    let a = ping(&dev, Some(ping_request(Some(2), &[&inbox]))).await;
    assert_eq!(a.status, "1", "{a:?}");
    assert!(t.elapsed() >= Duration::from_secs(2), "{:?}", t.elapsed());
    assert!(t.elapsed() < Duration::from_secs(10), "{:?}", t.elapsed());

    let a = ping(&dev, Some(ping_request(Some(1), &[&inbox]))).await;
    assert_eq!(
        (a.status.as_str(), a.heartbeat.as_deref()),
        ("5", Some("2"))
    );
    let a = ping(&dev, Some(ping_request(Some(61), &[&inbox]))).await;
    assert_eq!(
        (a.status.as_str(), a.heartbeat.as_deref()),
        ("5", Some("60"))
    );
}

#[tokio::test]
async fn too_many_unknown_and_missing_folders() {
    let (gw, _server) = start(push_config()).await;
    let (user, pw) = new_user("pingerr");
    let dev = device_of(&gw, &user, &pw, "16.1").await;
    // Nothing cached yet: an empty Ping lacks its parameters.
    let a = ping(&dev, None).await;
    assert_eq!(a.status, "3", "{a:?}");
    let inbox = folder_id(&dev, "Inbox").await;
    let a = ping(&dev, Some(ping_request(Some(5), &[&inbox, "a", "b", "c"]))).await;
    assert_eq!(
        (a.status.as_str(), a.max_folders.as_deref()),
        ("6", Some("3"))
    );
    let a = ping(
        &dev,
        Some(ping_request(Some(5), &[&inbox, "no-such-folder"])),
    )
    .await;
    assert_eq!(a.status, "7", "{a:?}");
    // A syntax error.
    let bad = Element::new(p::PING).text_child(p::HEARTBEAT_INTERVAL, "soon");
    assert_eq!(ping(&dev, Some(bad)).await.status, "4");
}

#[tokio::test]
async fn empty_ping_reuses_the_last_parameters() {
    let (gw, server) = start(push_config()).await;
    let (user, pw) = new_user("empty");
    let dev = device_of(&gw, &user, &pw, "16.1").await;
    let inbox = folder_id(&dev, "Inbox").await;
    full_sync(&dev, &inbox, 100).await;
    let t = Instant::now();
    assert_eq!(
        ping(&dev, Some(ping_request(Some(2), &[&inbox])))
            .await
            .status,
        "1"
    );
    // Empty body: same interval ...
    let t2 = Instant::now();
    let a = ping(&dev, None).await;
    assert_eq!(a.status, "1");
    let took = t2.elapsed();
    assert!(
        took >= Duration::from_secs(2) && took < Duration::from_secs(10),
        "{took:?} after {:?}",
        t.elapsed()
    );
    // ... and same folders: a Ping element with only an interval still watches the Inbox.
    let task = ping_in_background(
        &server,
        &dev,
        Element::new(p::PING).text_child(p::HEARTBEAT_INTERVAL, "30"),
    )
    .await;
    deliver(&user, "reused").await;
    let a = task.await.unwrap();
    assert_eq!((a.status.as_str(), a.folders.clone()), ("2", vec![inbox]));
}

#[tokio::test]
async fn empty_ping_after_a_restart_reuses_the_stored_parameters() {
    let (gw, server) = start(push_config()).await;
    let (user, pw) = new_user("restart");
    let mut dev = device_of(&gw, &user, &pw, "16.1").await;
    let inbox = folder_id(&dev, "Inbox").await;
    let archive = folder_id(&dev, "Archive").await;
    full_sync(&dev, &inbox, 100).await;
    full_sync(&dev, &archive, 100).await;
    // A complete Ping, answered by a change.
    let task = ping_in_background(&server, &dev, ping_request(Some(30), &[&inbox, &archive])).await;
    append(&user, &pw, "Archive", &mail("before restart", "x"), None).await;
    let a = task.await.unwrap();
    assert_eq!(
        (a.status.as_str(), a.folders.clone()),
        ("2", vec![archive.clone()])
    );
    full_sync(&dev, &archive, 100).await;

    // The gateway stops; a new one runs on the same state file.
    server.gateway.push.shutdown();
    gw.shutdown.send_replace(true);
    let db = gw.dir.path().join("state.db");
    let (gw2, server2) = start_on(push_config(), Some(&db)).await;
    assert_ne!(gw2.base, gw.base);
    dev.base = gw2.base.clone();

    // An empty Ping waits on the stored folders: a delivery to the Inbox wakes it ...
    let task = ping_in_background_with(&server2, &dev, None).await;
    deliver(&user, "after restart").await;
    let a = task.await.unwrap();
    assert_eq!(
        (a.status.as_str(), a.folders.clone()),
        ("2", vec![inbox.clone()])
    );
    full_sync(&dev, &inbox, 100).await;
    // ... and so does a new mail in the second folder.
    let task = ping_in_background_with(&server2, &dev, None).await;
    append(&user, &pw, "Archive", &mail("after restart", "x"), None).await;
    let a = task.await.unwrap();
    assert_eq!((a.status.as_str(), a.folders.clone()), ("2", vec![archive]));
}

#[tokio::test]
async fn mail_between_sync_and_ping_answers_at_once() {
    let (gw, _server) = start(push_config()).await;
    let (user, pw) = new_user("between");
    let dev = device_of(&gw, &user, &pw, "16.1").await;
    let inbox = folder_id(&dev, "Inbox").await;
    full_sync(&dev, &inbox, 100).await;
    append(&user, &pw, "INBOX", &mail("in between", "x"), None).await;
    let t = Instant::now();
    let a = ping(&dev, Some(ping_request(Some(30), &[&inbox]))).await;
    assert_eq!((a.status.as_str(), a.folders.clone()), ("2", vec![inbox]));
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
}

#[tokio::test]
async fn own_read_change_wakes_only_the_other_device() {
    let (gw, server) = start(push_config()).await;
    let (user, pw) = new_user("owndev");
    append(&user, &pw, "INBOX", &mail("read me", "x"), None).await;
    let a_dev = device_of(&gw, &user, &pw, "16.1").await;
    let b_dev = device_of(&gw, &user, &pw, "16.1").await;
    let inbox = folder_id(&a_dev, "Inbox").await;
    assert_eq!(folder_id(&b_dev, "Inbox").await, inbox);
    let (adds, key_a) = full_sync(&a_dev, &inbox, 100).await;
    full_sync(&b_dev, &inbox, 100).await;
    assert_eq!(adds.len(), 1);

    // B waits; A marks the mail read.
    let b_wait = ping_in_background(&server, &b_dev, ping_request(Some(30), &[&inbox])).await;
    let change = Element::new(a::COMMANDS).child(
        Element::new(a::CHANGE)
            .text_child(a::SERVER_ID, adds[0].0.clone())
            .child(Element::new(a::APPLICATION_DATA).text_child(email::READ, "1")),
    );
    let mut req = sync_request(&inbox, &key_a, 100, None);
    push_commands(&mut req, change);
    let r = sync_result(&a_dev.post("Sync", &req).await);
    assert_eq!(r.status.as_deref(), Some("1"));

    let b = b_wait.await.unwrap();
    assert_eq!(
        (b.status.as_str(), b.folders.clone()),
        ("2", vec![inbox.clone()])
    );
    // A's own change is in A's view: its Ping runs to the heartbeat.
    let a = ping(&a_dev, Some(ping_request(Some(3), &[&inbox]))).await;
    assert_eq!(a.status, "1", "own change woke the device: {a:?}");
}

#[tokio::test]
async fn a_flag_set_over_imap_wakes_a_ping() {
    let (gw, server) = start(push_config()).await;
    let (user, pw) = new_user("flag");
    append(&user, &pw, "INBOX", &mail("flag me", "x"), None).await;
    let dev = device_of(&gw, &user, &pw, "16.1").await;
    let inbox = folder_id(&dev, "Inbox").await;
    full_sync(&dev, &inbox, 100).await;
    let task = ping_in_background(&server, &dev, ping_request(Some(30), &[&inbox])).await;
    imap(&user, &pw, &["SELECT INBOX", "STORE 1 +FLAGS (\\Flagged)"]).await;
    let a = task.await.unwrap();
    assert_eq!((a.status.as_str(), a.folders.clone()), ("2", vec![inbox]));
}

#[tokio::test]
async fn a_second_request_ends_the_first_ping() {
    let (gw, server) = start(push_config()).await;
    let (user, pw) = new_user("second");
    let dev = device_of(&gw, &user, &pw, "16.1").await;
    let inbox = folder_id(&dev, "Inbox").await;
    full_sync(&dev, &inbox, 100).await;
    let first = ping_in_background(&server, &dev, ping_request(Some(60), &[&inbox])).await;
    let t = Instant::now();
    dev.folder_sync("0").await;
    let a = first.await.unwrap();
    assert_eq!(a.status, "1");
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
    // A second Ping ends the first one too.
    let first = ping_in_background(&server, &dev, ping_request(Some(60), &[&inbox])).await;
    let again = dev.clone();
    let second =
        tokio::spawn(async move { ping(&again, Some(ping_request(Some(3), &[&inbox]))).await });
    let a = first.await.unwrap();
    assert_eq!(a.status, "1");
    assert!(t.elapsed() < Duration::from_secs(10));
    assert_eq!(second.await.unwrap().status, "1");
}

#[tokio::test]
async fn folders_never_synced_are_ignored() {
    let (gw, server) = start(push_config()).await;
    let (user, pw) = new_user("neversynced");
    let dev = device_of(&gw, &user, &pw, "16.1").await;
    let inbox = folder_id(&dev, "Inbox").await;
    let drafts = folder_id(&dev, "Drafts").await;
    full_sync(&dev, &inbox, 100).await;
    // Only never-synced folders: no 3, no 7, just the heartbeat.
    append(&user, &pw, "Drafts", &mail("draft", "x"), None).await;
    let a = ping(&dev, Some(ping_request(Some(2), &[&drafts]))).await;
    assert_eq!(a.status, "1", "{a:?}");
    // Mixed: a change in the never-synced folder does not wake the Ping.
    let task = ping_in_background(&server, &dev, ping_request(Some(4), &[&inbox, &drafts])).await;
    append(&user, &pw, "Drafts", &mail("draft 2", "x"), None).await;
    let a = task.await.unwrap();
    assert_eq!(a.status, "1", "{a:?}");
}

#[tokio::test]
async fn a_deleted_watched_folder_answers_7() {
    let (gw, server) = start(push_config()).await;
    let (user, pw) = new_user("delfolder");
    imap(&user, &pw, &["CREATE Projects"]).await;
    let dev = device_of(&gw, &user, &pw, "16.1").await;
    let projects = folder_id(&dev, "Projects").await;
    full_sync(&dev, &projects, 100).await;
    let task = ping_in_background(&server, &dev, ping_request(Some(30), &[&projects])).await;
    imap(&user, &pw, &["DELETE Projects"]).await;
    let a = task.await.unwrap();
    assert_eq!(a.status, "7", "{a:?}");
}

#[tokio::test]
async fn shutdown_answers_waiting_pings_at_once() {
    let (gw, server) = start(push_config()).await;
    let (user, pw) = new_user("shutdown");
    let dev = device_of(&gw, &user, &pw, "16.1").await;
    let inbox = folder_id(&dev, "Inbox").await;
    full_sync(&dev, &inbox, 100).await;
    let task = ping_in_background(&server, &dev, ping_request(Some(60), &[&inbox])).await;
    let t = Instant::now();
    server.gateway.push.shutdown();
    let a = task.await.unwrap();
    assert_eq!(a.status, "1");
    assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
}

#[tokio::test]
async fn without_notify_idle_and_polling_still_push() {
    let cfg = PushConfig {
        use_notify: false,
        poll_interval: Duration::from_secs(1),
        ..push_config()
    };
    let (gw, server) = start(cfg).await;
    let (user, pw) = new_user("poll");
    let dev = device_of(&gw, &user, &pw, "16.1").await;
    let inbox = folder_id(&dev, "Inbox").await;
    let archive = folder_id(&dev, "Archive").await;
    full_sync(&dev, &inbox, 100).await;
    full_sync(&dev, &archive, 100).await;
    // INBOX: IDLE reports it.
    let task = ping_in_background(&server, &dev, ping_request(Some(30), &[&inbox, &archive])).await;
    let sent = deliver(&user, "idle").await;
    let a = task.await.unwrap();
    assert_eq!(
        (a.status.as_str(), a.folders.clone()),
        ("2", vec![inbox.clone()])
    );
    println!(
        "without NOTIFY, INBOX: {} ms",
        a.at.duration_since(sent).as_millis()
    );
    full_sync(&dev, &inbox, 100).await;
    // Another folder: the poll finds it.
    let task = ping_in_background(&server, &dev, ping_request(Some(30), &[&inbox, &archive])).await;
    let t = Instant::now();
    append(&user, &pw, "Archive", &mail("archived", "x"), None).await;
    let a = task.await.unwrap();
    assert_eq!((a.status.as_str(), a.folders.clone()), ("2", vec![archive]));
    assert!(t.elapsed() < Duration::from_secs(10), "{:?}", t.elapsed());
}
