//! Push from Dovecot's events (`push.source = "events"`): the real Dovecot with the
//! push_notification Lua driver (`deploy/dovecot/eas-push.lua`, set up by
//! `deploy/dev/mailstack.sh`) posts each user's changes to the gateway's events listener; a
//! waiting Ping holds no IMAP connection. And with `source = "imap"`, an idle pooled session is
//! closed after `imap.session_idle_secs`, leaving the watcher's connection only.
//!
//! Every test user gets the URL of its own gateway's events listener as a userdb field
//! (`userdb_eas_push_url=...` in its users.d file); the secret is the dev stack's
//! (`EAS_DEV_PUSH_SECRET`).

mod common;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use eas_gateway::backend::imap::ImapBackend;
use eas_gateway::backend::Secret;
use eas_gateway::http::Server;
use eas_gateway::push::{PushConfig, PushSource};
use eas_gateway::state::sqlite::SqliteStore;
use eas_gateway::wbxml::tags::{airsync as a, email, ping as p};
use eas_gateway::wbxml::Element;
use tokio::net::TcpListener;

type Srv = Arc<Server<ImapBackend, SqliteStore>>;

fn secret() -> String {
    std::env::var("EAS_DEV_PUSH_SECRET").unwrap_or_else(|_| "eas-dev-push-events-secret".into())
}

fn dev_dir() -> PathBuf {
    PathBuf::from(
        std::env::var("EAS_DEV_DIR").unwrap_or_else(|_| "/var/lib/eas-gateway-dev".into()),
    )
}

/// A gateway pushing from events (or from IMAP), with its events listener; pooled sessions
/// idle for more than a second are closed. Returns the events URL.
async fn start(source: PushSource) -> (TestGateway, Srv, String) {
    require_stack();
    let push = PushConfig {
        source,
        events_listen: Some("127.0.0.1:0".parse().unwrap()),
        events_secret: Some(Secret::new(secret())),
        min_heartbeat_secs: 2,
        max_heartbeat_secs: 60,
        watcher_grace: Duration::from_secs(2),
        ..PushConfig::default()
    };
    let (gw, server) = start_gateway_server(GatewayOptions::default(), |c| {
        c.push = push;
        c.imap_session_idle = Duration::from_secs(1);
    })
    .await;
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let hub = server.gateway.push.clone();
    let rx = gw.shutdown.subscribe();
    tokio::spawn(async move {
        eas_gateway::http::events::serve(listener, hub, Secret::new(secret()), rx)
            .await
            .expect("events listener");
    });
    let url = format!("http://127.0.0.1:{port}/eas-gateway/mail-events");
    (gw, server, url)
}

/// A fresh mail user whose changes Dovecot posts to `url` (`None`: to nobody).
fn user_posting_to(prefix: &str, url: Option<&str>) -> (String, String) {
    let (address, password) = new_user(prefix);
    set_push_url(&address, &password, url);
    (address, password)
}

fn set_push_url(address: &str, password: &str, url: Option<&str>) {
    let users_d = dev_dir().join("dovecot/users.d");
    let extra = url
        .map(|u| format!("userdb_eas_push_url={u}"))
        .unwrap_or_default();
    let tmp = users_d.join(format!(".{address}.tmp"));
    std::fs::write(
        &tmp,
        format!("{address}:{{PLAIN}}{password}::::::{extra}\n"),
    )
    .unwrap();
    std::fs::rename(&tmp, users_d.join(address)).unwrap();
}

/// IMAP connections the user has open at Dovecot (`doveadm who`).
fn imap_connections(user: &str) -> usize {
    let out = std::process::Command::new("doveadm")
        .arg("-c")
        .arg(dev_dir().join("dovecot/dovecot.conf"))
        .args(["who", "-1", user])
        .output()
        .expect("doveadm who");
    assert!(out.status.success(), "doveadm who: {out:?}");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.split_whitespace().next() == Some(user))
        .count()
}

/// Waits (up to 15 s) until the user holds `n` IMAP connections; returns the last count.
async fn settle_connections(user: &str, n: usize) -> usize {
    let until = Instant::now() + Duration::from_secs(15);
    loop {
        let c = imap_connections(user);
        if c == n || Instant::now() > until {
            return c;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn ping_request(heartbeat: u32, folders: &[&str]) -> Element {
    let mut fs = Element::new(p::FOLDERS);
    for f in folders {
        fs.push(
            Element::new(p::FOLDER)
                .text_child(p::ID, *f)
                .text_child(p::CLASS, "Email"),
        );
    }
    Element::new(p::PING)
        .text_child(p::HEARTBEAT_INTERVAL, heartbeat.to_string())
        .child(fs)
}

#[derive(Debug)]
struct Answer {
    status: String,
    folders: Vec<String>,
    at: Instant,
}

async fn ping(dev: &TestDevice, body: Element) -> Answer {
    let reply = dev.post("Ping", &body).await;
    let at = Instant::now();
    assert_eq!(reply.status, 200, "Ping HTTP status");
    let body = reply.body.expect("Ping body");
    Answer {
        status: body.text_of(p::STATUS).unwrap_or("").to_string(),
        folders: body
            .first(p::FOLDERS)
            .map(|f| {
                f.all(p::FOLDER)
                    .filter_map(|x| x.text().map(String::from))
                    .collect()
            })
            .unwrap_or_default(),
        at,
    }
}

/// Starts a Ping and returns once the hub holds it and its first look is over.
async fn ping_in_background(
    server: &Srv,
    dev: &TestDevice,
    body: Element,
) -> tokio::task::JoinHandle<Answer> {
    let before = server.gateway.push.stats().waiters;
    let dev = dev.clone();
    let task = tokio::spawn(async move { ping(&dev, body).await });
    let started = Instant::now();
    while server.gateway.push.stats().waiters <= before
        && started.elapsed() < Duration::from_secs(10)
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    task
}

/// Delivers a mail through Postfix ([`deliver_smtp`]).
async fn deliver(to: &str, subject: &str) -> Instant {
    deliver_smtp(to, subject, "pushed").await
}

/// Posts an event body to the events listener; returns the HTTP status.
async fn post_event(url: &str, auth: Option<&str>, body: &str) -> u16 {
    let mut req = reqwest::Client::new()
        .post(url)
        .header("Content-Type", "application/json")
        .body(body.to_string());
    if let Some(a) = auth {
        req = req.header("Authorization", a);
    }
    req.send().await.expect("post event").status().as_u16()
}

#[tokio::test]
async fn a_delivery_wakes_a_ping_that_holds_no_imap_connection() {
    let (gw, server, url) = start(PushSource::Events).await;
    let (user, pw) = user_posting_to("evdeliver", Some(&url));
    let dev = device_of(&gw, &user, &pw, "16.1").await;
    let inbox = folder_id(&dev, "Inbox").await;
    let (_, key) = full_sync(&dev, &inbox, 100).await;
    let task = ping_in_background(&server, &dev, ping_request(40, &[&inbox])).await;
    // The pooled session the requests used is closed after a second; nothing else is open.
    assert_eq!(settle_connections(&user, 0).await, 0, "IMAP connections");
    assert!(!task.is_finished());
    let sent = deliver(&user, "pushed by an event").await;
    let answer = task.await.unwrap();
    assert_eq!(
        (answer.status.as_str(), answer.folders.clone()),
        ("2", vec![inbox.clone()])
    );
    println!(
        "push latency from events (SMTP end of data -> Ping answer): {} ms",
        answer.at.duration_since(sent).as_millis()
    );
    let r = sync(&dev, &inbox, &key, 100).await;
    assert_eq!(r.adds.len(), 1, "{r:?}");
}

#[tokio::test]
async fn a_flag_set_by_another_imap_client_wakes_a_ping() {
    let (gw, server, url) = start(PushSource::Events).await;
    let (user, pw) = user_posting_to("evflag", Some(&url));
    append(&user, &pw, "INBOX", &mail("flag me", "x"), None).await;
    let dev = device_of(&gw, &user, &pw, "16.1").await;
    let inbox = folder_id(&dev, "Inbox").await;
    full_sync(&dev, &inbox, 100).await;
    let task = ping_in_background(&server, &dev, ping_request(40, &[&inbox])).await;
    assert_eq!(settle_connections(&user, 0).await, 0, "IMAP connections");
    imap(&user, &pw, &["SELECT INBOX", "STORE 1 +FLAGS (\\Flagged)"]).await;
    let a = task.await.unwrap();
    assert_eq!((a.status.as_str(), a.folders.clone()), ("2", vec![inbox]));
}

#[tokio::test]
async fn events_need_the_secret_and_a_small_body() {
    let (gw, server, url) = start(PushSource::Events).await;
    let (user, pw) = user_posting_to("evsecret", Some(&url));
    let dev = device_of(&gw, &user, &pw, "16.1").await;
    let inbox = folder_id(&dev, "Inbox").await;
    full_sync(&dev, &inbox, 100).await;
    let task = ping_in_background(&server, &dev, ping_request(40, &[&inbox])).await;
    // A new events watcher makes the Ping compare the folder hierarchy once more and wait
    // again (its initial look): let that pass before the silent change.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    // A change Dovecot does not report (the user's URL is gone): only a posted event tells.
    set_push_url(&user, &pw, None);
    append(&user, &pw, "INBOX", &mail("silent", "x"), None).await;
    let event = format!(r#"{{"user":"{user}","mailbox":"INBOX","event":"MessageAppend"}}"#);
    let good = format!("Bearer {}", secret());
    assert_eq!(post_event(&url, None, &event).await, 401);
    assert_eq!(
        post_event(&url, Some("Bearer not-the-secret-at-all"), &event).await,
        401
    );
    assert_eq!(
        post_event(&url, Some(&format!("{good}x")), &event).await,
        401
    );
    let padded = format!(
        r#"{{"user":"{user}","mailbox":"INBOX","event":"MessageAppend","pad":"{}"}}"#,
        "x".repeat(8192)
    );
    assert_eq!(post_event(&url, Some(&good), &padded).await, 413);
    assert_eq!(post_event(&url, Some(&good), "{not json").await, 400);
    // None of these woke the Ping.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(!task.is_finished(), "a refused event woke the Ping");
    let posted = Instant::now();
    assert_eq!(post_event(&url, Some(&good), &event).await, 204);
    let a = task.await.unwrap();
    assert_eq!((a.status.as_str(), a.folders.clone()), ("2", vec![inbox]));
    assert!(a.at.duration_since(posted) < Duration::from_secs(5));
}

#[tokio::test]
async fn an_own_change_wakes_only_the_other_device() {
    let (gw, server, url) = start(PushSource::Events).await;
    let (user, pw) = user_posting_to("evown", Some(&url));
    append(&user, &pw, "INBOX", &mail("read me", "x"), None).await;
    let a_dev = device_of(&gw, &user, &pw, "16.1").await;
    let b_dev = device_of(&gw, &user, &pw, "16.1").await;
    let inbox = folder_id(&a_dev, "Inbox").await;
    assert_eq!(folder_id(&b_dev, "Inbox").await, inbox);
    let (adds, key_a) = full_sync(&a_dev, &inbox, 100).await;
    full_sync(&b_dev, &inbox, 100).await;
    assert_eq!(adds.len(), 1);

    let b_wait = ping_in_background(&server, &b_dev, ping_request(30, &[&inbox])).await;
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
    // A's Ping hears the event of its own change (posted again by hand) and still waits.
    let a_wait = ping_in_background(&server, &a_dev, ping_request(4, &[&inbox])).await;
    let event = format!(r#"{{"user":"{user}","mailbox":"INBOX","event":"FlagsSet"}}"#);
    assert_eq!(
        post_event(&url, Some(&format!("Bearer {}", secret())), &event).await,
        204
    );
    let a = a_wait.await.unwrap();
    assert_eq!(a.status, "1", "own change woke the device: {a:?}");
}

#[tokio::test]
async fn a_folder_created_elsewhere_ends_a_ping_with_7() {
    let (gw, server, url) = start(PushSource::Events).await;
    let (user, pw) = user_posting_to("evfolder", Some(&url));
    let dev = device_of(&gw, &user, &pw, "16.1").await;
    let inbox = folder_id(&dev, "Inbox").await;
    full_sync(&dev, &inbox, 100).await;
    let task = ping_in_background(&server, &dev, ping_request(40, &[&inbox])).await;
    imap(&user, &pw, &["CREATE \"Projects 2027\""]).await;
    let a = task.await.unwrap();
    assert_eq!(a.status, "7", "{a:?}");
}

#[tokio::test]
async fn with_imap_push_a_waiting_user_keeps_one_connection() {
    let (gw, server, _url) = start(PushSource::Imap).await;
    let (user, pw) = user_posting_to("evimap", None);
    let dev = device_of(&gw, &user, &pw, "16.1").await;
    let inbox = folder_id(&dev, "Inbox").await;
    full_sync(&dev, &inbox, 100).await;
    let task = ping_in_background(&server, &dev, ping_request(30, &[&inbox])).await;
    // The watcher's connection stays; the pooled session goes after imap.session_idle_secs.
    assert_eq!(settle_connections(&user, 1).await, 1, "IMAP connections");
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(imap_connections(&user), 1, "IMAP connections");
    deliver(&user, "pushed over IMAP").await;
    let a = task.await.unwrap();
    assert_eq!((a.status.as_str(), a.folders.clone()), ("2", vec![inbox]));
}
