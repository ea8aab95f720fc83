//! Two gateway processes (the real binary) on one PostgreSQL database behind a real nginx
//! that sends requests to them round-robin, in front of the real Dovecot/Postfix:
//!
//! - a device whose requests alternate between the nodes syncs 1,000 mails, each exactly once
//!   (also while mails keep arriving between its pages);
//! - a Ping held on one node is woken by a new mail, and ended (Status 1, as a newer request
//!   ends it on one node) by the same device's next request on the other node, while that
//!   node's own new Ping keeps waiting;
//! - a device's own Sent Items copy stored by one node does not wake its Ping on the other;
//! - a folder the device creates, renames or deletes through one node is seen at once through
//!   the other, whose cached folder listing was dropped by the change's event;
//! - a node SIGKILLed in the middle of a large initial Sync page loses and duplicates
//!   nothing: the device's retry through nginx reaches the other node, which answers once the
//!   dead node's lease has expired, and the mails the device got are the mailbox, once each.
//!
//! Needs the dev mail stack, `deploy/dev/postgres.sh start` with EAS_TEST_PG_URL set to its
//! URL, and nginx (`/usr/sbin/nginx`, or EAS_TEST_NGINX).

#[path = "common/cluster.rs"]
mod cluster_support;
mod common;

use std::collections::HashSet;
use std::time::{Duration, Instant};

use cluster_support::*;
use common::*;
use eas_gateway::wbxml::tags::ping as p;
use eas_gateway::wbxml::{self, Element, Limits};

fn insecure() -> reqwest::Client {
    reqwest::Client::builder()
        .danger_accept_invalid_certs(true)
        .build()
        .unwrap()
}

/// A fresh user with a provisioned device talking to `base`, and the ServerId of its Inbox.
async fn device(base: String, prefix: &str) -> (TestDevice, String, String, String) {
    let (user, pw) = new_user(prefix);
    let id = format!("CLUSTER{:08X}", rand::random::<u32>());
    let mut dev = device_at(insecure(), base, &user, &pw, &id);
    dev.provision().await;
    let inbox = folder_id(&dev, "Inbox").await;
    (dev, user, pw, inbox)
}

fn numbered(
    label: &str,
    from: usize,
    to: usize,
    body_bytes: usize,
) -> Vec<(String, Option<String>)> {
    let filler = "lorem ipsum dolor sit amet ".repeat(body_bytes / 27 + 1);
    (from..to)
        .map(|i| {
            (
                mail(&format!("{label} {i:04}"), &filler[..body_bytes]),
                None,
            )
        })
        .collect()
}

/// The UIDs of every mail in the user's INBOX.
async fn inbox_uids(user: &str, pw: &str) -> HashSet<u32> {
    let t = imap(user, pw, &["SELECT INBOX", "UID SEARCH ALL"]).await;
    uids_in(&t).into_iter().collect()
}

/// The UID in a mail ServerId (`COLLECTION:UID`).
fn uid_of(sid: &str) -> u32 {
    sid.rsplit(':')
        .next()
        .unwrap()
        .parse()
        .expect("ServerId COLLECTION:UID")
}

/// A request that may fail at the HTTP level: (HTTP status, Retry-After, decoded body).
async fn try_post(
    dev: &TestDevice,
    cmd: &str,
    body: &Element,
) -> Result<(u16, Option<String>, Option<Element>), String> {
    let url = format!("{}?{}", dev.base, dev.query(cmd));
    let mut req = dev
        .client
        .post(&url)
        .header("Authorization", dev.auth())
        .header("MS-ASProtocolVersion", dev.version)
        .header("Content-Type", "application/vnd.ms-sync.wbxml")
        .body(wbxml::encode(body));
    if let Some(k) = dev.policy_key {
        req = req.header("X-MS-PolicyKey", k.to_string());
    }
    let resp = req.send().await.map_err(|e| e.to_string())?;
    let status = resp.status().as_u16();
    let retry = resp
        .headers()
        .get("Retry-After")
        .and_then(|v| v.to_str().ok())
        .map(String::from);
    let raw = resp.bytes().await.map_err(|e| e.to_string())?;
    let body = if status == 200 && !raw.is_empty() {
        Some(wbxml::decode(raw, &Limits::default()).map_err(|e| e.to_string())?)
    } else {
        None
    };
    Ok((status, retry, body))
}

struct Cluster {
    _dir: tempfile::TempDir,
    db: PgDb,
    nodes: Vec<Node>,
    nginx: Nginx,
}

async fn cluster(opts: NodeOptions) -> Cluster {
    require_stack();
    let dir = tempfile::tempdir().unwrap();
    let db = PgDb::fresh().await;
    // One node first, so the schema is created once before the second starts (both starting
    // at once is fine too: migrations take an advisory lock).
    let a = Node::start(dir.path(), "node-a", &db.url, opts).await;
    let b = Node::start(dir.path(), "node-b", &db.url, opts).await;
    let nginx = Nginx::start(dir.path(), &[a.port, b.port]).await;
    Cluster {
        _dir: dir,
        db,
        nodes: vec![a, b],
        nginx,
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        // With EAS_TEST_KEEP set, the configurations and logs stay.
        if std::env::var_os("EAS_TEST_KEEP").is_some() {
            let dir = std::mem::replace(&mut self._dir, tempfile::tempdir().unwrap());
            eprintln!("cluster files kept in {}", dir.keep().display());
        }
    }
}

impl Cluster {
    /// How many EAS requests each node served according to nginx, by URI fragment.
    fn served_by_node(&self, cmd: &str) -> Vec<usize> {
        let served = self.nginx.served();
        self.nodes
            .iter()
            .map(|n| {
                let addr = format!("127.0.0.1:{}", n.port);
                served
                    .iter()
                    .filter(|(up, _, uri)| up == &addr && uri.contains(&format!("Cmd={cmd}")))
                    .count()
            })
            .collect()
    }

    fn logs(&self) -> String {
        self.nodes
            .iter()
            .map(|n| {
                format!(
                    "--- {}\n{}",
                    n.name,
                    std::fs::read_to_string(&n.log).unwrap_or_default()
                )
            })
            .collect()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn alternating_nodes_sync_a_thousand_mails_exactly_once() {
    let c = cluster(NodeOptions::default()).await;
    let (dev, user, pw, inbox) = device(c.nginx.base(), "cluster-thousand").await;
    seed(&user, &pw, "INBOX", &numbered("first", 0, 600, 200)).await;

    let first = sync(&dev, &inbox, "0", 50).await;
    assert_eq!(first.status.as_deref(), Some("1"), "{first:?}");
    let mut key = first.key.expect("key");
    let mut seen: Vec<String> = Vec::new();
    let mut pages = 0;
    let mut more_seeded = false;
    loop {
        let r = sync(&dev, &inbox, &key, 50).await;
        if r.empty {
            if more_seeded {
                break;
            }
        } else {
            assert_eq!(r.status.as_deref(), Some("1"), "page {pages}: {r:?}");
            assert!(r.deletes.is_empty() && r.soft_deletes.is_empty(), "{r:?}");
            seen.extend(r.adds.iter().map(|(sid, _)| sid.clone()));
            key = r.key.expect("key");
            pages += 1;
        }
        // Mail keeps arriving while the device pages through the folder.
        if pages == 5 && !more_seeded {
            seed(&user, &pw, "INBOX", &numbered("second", 600, 1000, 200)).await;
            more_seeded = true;
        }
        assert!(pages < 100, "no end of pages");
    }
    let unique: HashSet<&String> = seen.iter().collect();
    assert_eq!(unique.len(), seen.len(), "a mail was sent twice");
    assert_eq!(seen.len(), 1000);
    let uids: HashSet<u32> = seen.iter().map(|s| uid_of(s)).collect();
    assert_eq!(
        uids,
        inbox_uids(&user, &pw).await,
        "the device holds the mailbox"
    );
    // Both nodes served the device's Syncs.
    let per_node = c.served_by_node("Sync");
    assert!(
        per_node.iter().all(|n| *n >= 5),
        "Syncs per node: {per_node:?}"
    );
    // Nothing left held.
    assert!(c.db.live_lease_owners().await.is_empty());
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

/// Ping status and the folders it names.
async fn ping(dev: &TestDevice, heartbeat: u32, folders: &[&str]) -> (String, Vec<String>) {
    let reply = dev.post("Ping", &ping_request(heartbeat, folders)).await;
    assert_eq!(reply.status, 200, "Ping HTTP status");
    let body = reply.body.expect("Ping body");
    let ids = body
        .first(p::FOLDERS)
        .map(|f| {
            f.all(p::FOLDER)
                .filter_map(|e| e.text().map(String::from))
                .collect()
        })
        .unwrap_or_default();
    (body.text_of(p::STATUS).unwrap_or("").to_string(), ids)
}

/// Waits until `node`'s log mentions a Ping waiting (the request was taken in), at most 10 s.
async fn until_waiting(
    dev: &TestDevice,
    heartbeat: u32,
    inbox: &str,
) -> tokio::task::JoinHandle<((String, Vec<String>), Duration)> {
    let dev = dev.clone();
    let inbox = inbox.to_string();
    let task = tokio::spawn(async move {
        let at = Instant::now();
        let r = ping(&dev, heartbeat, &[&inbox]).await;
        (r, at.elapsed())
    });
    // The Ping registers its wait after a LIST-STATUS and a store read or two.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(!task.is_finished(), "the Ping answered at once");
    task
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_ping_on_one_node_is_woken_by_mail_and_ended_by_a_request_on_the_other() {
    let c = cluster(NodeOptions::default()).await;
    let (dev, user, pw, inbox) = device(c.nginx.base(), "cluster-ping").await;
    append(&user, &pw, "INBOX", &mail("before", "x"), None).await;
    let (_, key) = full_sync(&dev, &inbox, 100).await;
    let on_a = same_device_at(&dev, c.nodes[0].base());
    let on_b = same_device_at(&dev, c.nodes[1].base());

    // Woken by a new mail (Status 2, the Inbox), long before the heartbeat.
    let held = until_waiting(&on_a, 600, &inbox).await;
    append(&user, &pw, "INBOX", &mail("wakes the ping", "x"), None).await;
    let ((status, folders), took) = tokio::time::timeout(Duration::from_secs(60), held)
        .await
        .expect("the Ping on node A was not woken by the mail")
        .unwrap();
    assert_eq!(status, "2", "{}", c.logs());
    assert_eq!(folders, vec![inbox.clone()]);
    assert!(took < Duration::from_secs(60));
    let r = sync(&on_b, &inbox, &key, 100).await;
    assert_eq!(r.adds.len(), 1, "{r:?}");
    let key = r.key.expect("key");

    // Ended by the device's new request on node B: the old Ping answers Status 1 (as when a
    // newer request of the device arrives on the same node), and B's own new Ping is not
    // ended by the event B published for it.
    let held = until_waiting(&on_a, 600, &inbox).await;
    let newer = until_waiting(&on_b, 600, &inbox).await;
    let ((status, _), took) = tokio::time::timeout(Duration::from_secs(60), held)
        .await
        .expect("the Ping on node A went on after the device's request on node B")
        .unwrap();
    assert_eq!(status, "1");
    assert!(took < Duration::from_secs(60));
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(!newer.is_finished(), "node B ended its own new Ping");
    // A mail wakes the newer one.
    append(
        &user,
        &pw,
        "INBOX",
        &mail("wakes the newer ping", "x"),
        None,
    )
    .await;
    let ((status, _), _) = tokio::time::timeout(Duration::from_secs(60), newer)
        .await
        .expect("the Ping on node B was not woken")
        .unwrap();
    assert_eq!(status, "2");
    let r = sync(&on_a, &inbox, &key, 100).await;
    assert_eq!(r.adds.len(), 1, "{r:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_node_killed_mid_sync_loses_and_duplicates_nothing() {
    // A short lease so that the dead node's runs out within the test.
    let opts = NodeOptions {
        lease_ttl_secs: 6,
        lease_wait_secs: 2,
        ..Default::default()
    };
    let mut c = cluster(opts).await;
    let (dev, user, pw, inbox) = device(c.nginx.base(), "cluster-kill").await;
    seed(&user, &pw, "INBOX", &numbered("big", 0, 400, 30_000)).await;
    let first = sync(&dev, &inbox, "0", 512).await;
    let key0 = first.key.expect("key");

    // The large first page, through nginx; kill whichever node holds the Inbox's lease.
    let page = {
        let dev = dev.clone();
        let (inbox, key0) = (inbox.clone(), key0.clone());
        tokio::spawn(async move {
            try_post(&dev, "Sync", &sync_request(&inbox, &key0, 512, None)).await
        })
    };
    let holder = {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let owners = c.db.live_lease_owners().await;
            if let Some(o) = owners.first() {
                break o.clone();
            }
            assert!(Instant::now() < deadline, "no node took the lease");
            assert!(
                !page.is_finished(),
                "the page was answered before a lease was seen"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    };
    let victim = c
        .nodes
        .iter()
        .position(|n| holder.starts_with(&format!("{}/", n.name)))
        .expect("lease owner names a node");
    c.nodes[victim].kill().await;
    let cut = page.await.unwrap();
    assert!(
        !matches!(cut, Ok((200, _, Some(_)))),
        "the killed node answered the page in full: {cut:?}"
    );

    // The device retries its key through nginx: the other node answers once the dead node's
    // lease ran out (503 with Retry-After until then), and the device goes on from there.
    let started = Instant::now();
    let mut key = key0;
    let mut seen: Vec<String> = Vec::new();
    let mut busy = 0;
    loop {
        let (status, retry, body) = try_post(&dev, "Sync", &sync_request(&inbox, &key, 512, None))
            .await
            .expect("the surviving node answers");
        if status == 503 {
            assert!(retry.is_some(), "503 without Retry-After");
            busy += 1;
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "still busy after {busy} tries"
            );
            tokio::time::sleep(Duration::from_secs(1)).await;
            continue;
        }
        assert_eq!(status, 200, "{}", c.logs());
        let r = sync_result(&Reply {
            status,
            headers: Default::default(),
            raw: body.as_ref().map(wbxml::encode).unwrap_or_default(),
            body,
        });
        if r.empty {
            break;
        }
        assert_eq!(r.status.as_deref(), Some("1"), "{r:?}");
        seen.extend(r.adds.iter().map(|(s, _)| s.clone()));
        key = r.key.expect("key");
        if !r.more {
            break;
        }
    }
    let unique: HashSet<&String> = seen.iter().collect();
    assert_eq!(unique.len(), seen.len(), "a mail was sent twice");
    let uids: HashSet<u32> = seen.iter().map(|s| uid_of(s)).collect();
    assert_eq!(uids.len(), 400);
    assert_eq!(
        uids,
        inbox_uids(&user, &pw).await,
        "the device holds the mailbox"
    );
    // The other node serves on.
    let r = sync(&dev, &inbox, &key, 512).await;
    assert!(r.empty, "{r:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_sent_copy_made_on_one_node_does_not_wake_the_devices_ping_on_the_other() {
    use bytes::Bytes;
    use eas_gateway::wbxml::tags::compose_mail as cm;
    let c = cluster(NodeOptions::default()).await;
    let (dev, user, pw, _) = device(c.nginx.base(), "cluster-own").await;
    let sent = folder_id(&dev, "Sent").await;
    let (_, key) = full_sync(&dev, &sent, 100).await;
    let on_a = same_device_at(&dev, c.nodes[0].base());
    let on_b = same_device_at(&dev, c.nodes[1].base());

    // SendMail on node A stores the Sent copy there.
    let subject = unique("sent by the phone");
    let mime = format!(
        "From: {user}\r\nTo: {user}\r\nSubject: {subject}\r\nMIME-Version: 1.0\r\n\
         Content-Type: text/plain\r\n\r\nhello\r\n"
    );
    let body = Element::new(cm::SEND_MAIL)
        .text_child(cm::CLIENT_ID, unique("c").replace(' ', ""))
        .child(Element::new(cm::SAVE_IN_SENT_ITEMS))
        .opaque_child(cm::MIME, Bytes::from(mime.into_bytes()));
    let r = on_a.post("SendMail", &body).await;
    assert_eq!(r.status, 200);
    assert!(compose_status(&r).is_none(), "SendMail: {:?}", r.body);
    let copies = uids_with_subject(&user, &pw, "Sent", &subject, 1, Duration::from_secs(5)).await;
    assert_eq!(copies.len(), 1);

    // The device's Ping on node B is not woken by its own copy (node A told node B)...
    let held = until_waiting(&on_b, 600, &sent).await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert!(
        !held.is_finished(),
        "the device's own Sent copy woke its Ping on the other node"
    );
    // ...but by a copy from another client.
    append(&user, &pw, "Sent", &mail("sent elsewhere", "x"), None).await;
    let ((status, folders), _) = tokio::time::timeout(Duration::from_secs(60), held)
        .await
        .expect("the Ping was not woken by another client's Sent copy")
        .unwrap();
    assert_eq!((status.as_str(), folders), ("2", vec![sent.clone()]));
    // The phone's copy still reaches the phone.
    let r = sync(&on_a, &sent, &key, 100).await;
    assert_eq!(r.adds.len(), 2, "{r:?}");
}

/// Measures no-change Syncs per second through nginx, with one node and with two, each with
/// `EAS_BENCH_DEVICES` (16) devices asking at once for `EAS_BENCH_SECS` (10) seconds. Uses
/// `EAS_GATEWAY_BIN` (e.g. target/release/eas-gateway) when set. Prints the figures:
///
/// `cargo test --test cluster no_change_sync_rate -- --ignored --nocapture`
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore]
async fn no_change_sync_rate() {
    require_stack();
    let devices: usize = std::env::var("EAS_BENCH_DEVICES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(16);
    let secs: u64 = std::env::var("EAS_BENCH_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10);
    let binary: Option<&'static str> = std::env::var("EAS_GATEWAY_BIN")
        .ok()
        .map(|b| &*Box::leak(b.into_boxed_str()));
    let opts = NodeOptions {
        binary,
        log_filter: "warn",
        ..Default::default()
    };
    let dir = tempfile::tempdir().unwrap();
    let db = PgDb::fresh().await;
    let a = Node::start(dir.path(), "node-a", &db.url, opts).await;
    let b = Node::start(dir.path(), "node-b", &db.url, opts).await;
    for (label, upstreams) in [
        ("one node", vec![a.port]),
        ("two nodes", vec![a.port, b.port]),
    ] {
        let sub = dir.path().join(label.replace(' ', "-"));
        std::fs::create_dir_all(&sub).unwrap();
        let nginx = Nginx::start(&sub, &upstreams).await;
        // Devices with a synced Inbox of one mail: every later Sync has nothing to say.
        let mut ready = Vec::new();
        for i in 0..devices {
            let (dev, user, pw, inbox) = device(nginx.base(), &format!("bench{i}")).await;
            append(&user, &pw, "INBOX", &mail("one", "x"), None).await;
            let (_, key) = full_sync(&dev, &inbox, 100).await;
            ready.push((dev, inbox, key));
        }
        let until = Instant::now() + Duration::from_secs(secs);
        let mut tasks = Vec::new();
        for (dev, inbox, key) in ready {
            tasks.push(tokio::spawn(async move {
                let req = sync_request(&inbox, &key, 100, None);
                let mut n = 0u64;
                let mut lat = Vec::new();
                while Instant::now() < until {
                    let t = Instant::now();
                    let r = dev.post("Sync", &req).await;
                    assert_eq!(r.status, 200);
                    assert!(
                        r.body.is_none(),
                        "a no-change Sync answers the empty response"
                    );
                    lat.push(t.elapsed());
                    n += 1;
                }
                (n, lat)
            }));
        }
        let mut total = 0;
        let mut lat = Vec::new();
        for t in tasks {
            let (n, l) = t.await.unwrap();
            total += n;
            lat.extend(l);
        }
        lat.sort();
        let pct = |q: f64| lat[((lat.len() as f64 * q) as usize).min(lat.len() - 1)];
        println!(
            "{label}: {devices} devices, {secs} s: {total} no-change Syncs, {:.0}/s, latency p50 {:?} p99 {:?}",
            total as f64 / secs as f64,
            pct(0.5),
            pct(0.99)
        );
        drop(nginx);
    }
}

/// A folder command's (Status, SyncKey, ServerId).
async fn folder_cmd(dev: &TestDevice, cmd: &str, req: Element) -> (String, String, Option<String>) {
    use eas_gateway::wbxml::tags::folder_hierarchy as f;
    let r = dev.post(cmd, &req).await;
    assert_eq!(r.status, 200, "{cmd} HTTP status");
    let b = r.body.expect("body");
    assert_eq!(b.text_of(f::STATUS), Some("1"), "{cmd}: {b:?}");
    (
        b.text_of(f::STATUS).unwrap_or("").to_string(),
        b.text_of(f::SYNC_KEY).expect("SyncKey").to_string(),
        b.text_of(f::SERVER_ID).map(String::from),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn folder_changes_through_one_node_are_seen_at_once_through_the_other() {
    use eas_gateway::wbxml::tags::folder_hierarchy as f;
    let c = cluster(NodeOptions::default()).await;
    let (dev, user, pw, inbox) = device(c.nginx.base(), "cluster-folders").await;
    let on_a = same_device_at(&dev, c.nodes[0].base());
    let on_b = same_device_at(&dev, c.nodes[1].base());
    let key = on_a
        .folder_sync("0")
        .await
        .text_of(f::SYNC_KEY)
        .expect("key")
        .to_string();
    // Node B has the user's folders cached.
    full_sync(&on_b, &inbox, 100).await;

    // Created through A: a Sync through B finds it and its mail.
    let (_, key, id) = folder_cmd(
        &on_a,
        "FolderCreate",
        Element::new(f::FOLDER_CREATE)
            .text_child(f::SYNC_KEY, &key)
            .text_child(f::PARENT_ID, "0")
            .text_child(f::DISPLAY_NAME, "ProjectsX")
            .text_child(f::TYPE, "12"),
    )
    .await;
    let id = id.expect("ServerId of the new folder");
    append(&user, &pw, "ProjectsX", &mail("in projects", "x"), None).await;
    let (adds, sync_key) = full_sync(&on_b, &id, 100).await;
    assert_eq!(adds.len(), 1, "{}", c.logs());

    // Renamed through A: B syncs the collection from its new mailbox, not the old name it
    // had cached.
    let (_, key, _) = folder_cmd(
        &on_a,
        "FolderUpdate",
        Element::new(f::FOLDER_UPDATE)
            .text_child(f::SYNC_KEY, &key)
            .text_child(f::SERVER_ID, &id)
            .text_child(f::PARENT_ID, "0")
            .text_child(f::DISPLAY_NAME, "DoneX"),
    )
    .await;
    append(&user, &pw, "DoneX", &mail("after the rename", "x"), None).await;
    let r = sync(&on_b, &id, &sync_key, 100).await;
    assert_eq!(r.status.as_deref(), Some("1"), "{r:?}\n{}", c.logs());
    assert_eq!(r.adds.len(), 1, "{r:?}");
    let sync_key = r.key.expect("key");

    // Deleted through A: B answers that the collection is gone (Status 12: FolderSync).
    folder_cmd(
        &on_a,
        "FolderDelete",
        Element::new(f::FOLDER_DELETE)
            .text_child(f::SYNC_KEY, &key)
            .text_child(f::SERVER_ID, &id),
    )
    .await;
    let r = sync(&on_b, &id, &sync_key, 100).await;
    assert_eq!(r.status.as_deref(), Some("12"), "{r:?}\n{}", c.logs());
    let names: Vec<String> = on_b
        .folder_sync("0")
        .await
        .first(f::CHANGES)
        .map(|ch| {
            ch.all(f::ADD)
                .filter_map(|a| a.text_of(f::DISPLAY_NAME).map(String::from))
                .collect()
        })
        .unwrap_or_default();
    assert!(names.iter().any(|n| n == "Inbox"), "{names:?}");
    assert!(
        !names.iter().any(|n| n == "ProjectsX" || n == "DoneX"),
        "{names:?}"
    );
}
