//! How many IMAP connections one user costs while several devices Ping and Sync at once, as
//! Dovecot counts them (`doveadm who`): never more than the session pool's limit plus the
//! user's one push watcher, and below Dovecot's `mail_max_userip_connections`.

mod common;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use eas_gateway::backend::pool::PoolConfig;
use eas_gateway::wbxml::tags::{airsync as a, email, folder_hierarchy as f, ping as p};
use eas_gateway::wbxml::Element;

const FOLDERS: usize = 20;
const DEVICES: usize = 3;
const ROUNDS: usize = 6;

fn dovecot_conf() -> PathBuf {
    let dir = std::env::var("EAS_DEV_DIR").unwrap_or_else(|_| "/var/lib/eas-gateway-dev".into());
    PathBuf::from(dir).join("dovecot/dovecot.conf")
}

/// The user's IMAP connections as Dovecot's anvil counts them (one line per connection).
async fn imap_connections(user: &str) -> usize {
    let out = tokio::process::Command::new("doveadm")
        .arg("-c")
        .arg(dovecot_conf())
        .args(["who", "-1", user])
        .output()
        .await
        .expect("run doveadm who");
    assert!(
        out.status.success(),
        "doveadm who failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| {
            let mut cols = l.split_whitespace();
            cols.next() == Some(user) && cols.next() == Some("imap")
        })
        .count()
}

/// Dovecot's per-user-and-address connection limit for IMAP.
fn max_userip_connections() -> usize {
    let out = std::process::Command::new("doveconf")
        .arg("-c")
        .arg(dovecot_conf())
        .args(["-f", "protocol=imap", "-h", "mail_max_userip_connections"])
        .output()
        .expect("run doveconf");
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .expect("numeric mail_max_userip_connections")
}

fn ping_body(folders: &[String]) -> Element {
    let mut fs = Element::new(p::FOLDERS);
    for id in folders {
        fs.push(
            Element::new(p::FOLDER)
                .text_child(p::ID, id.clone())
                .text_child(p::CLASS, "Email"),
        );
    }
    Element::new(p::PING)
        .text_child(p::HEARTBEAT_INTERVAL, "3")
        .child(fs)
}

/// One device's view: sync key and the one item of each folder.
struct Phone {
    dev: TestDevice,
    keys: HashMap<String, String>,
    items: HashMap<String, String>,
}

/// A device's loop: mark an item read or unread (waking the other devices' Pings), Ping all
/// folders, sync what the Ping names. Returns the Ping statuses seen.
async fn run_phone(mut phone: Phone, folders: Vec<String>, n: usize) -> Vec<String> {
    let mut statuses = Vec::new();
    for round in 0..ROUNDS {
        let cid = &folders[(n * 7 + round * 3) % folders.len()];
        let change = Element::new(a::COMMANDS).child(
            Element::new(a::CHANGE)
                .text_child(a::SERVER_ID, phone.items[cid].clone())
                .child(
                    Element::new(a::APPLICATION_DATA)
                        .text_child(email::READ, if round % 2 == 0 { "1" } else { "0" }),
                ),
        );
        let mut req = sync_request(cid, &phone.keys[cid], 100, None);
        push_commands(&mut req, change);
        let r = sync_result(&phone.dev.post("Sync", &req).await);
        assert!(
            r.empty || r.status.as_deref() == Some("1"),
            "Sync of {cid}: {r:?}"
        );
        let mut key = r.key.expect("SyncKey after a change");
        if r.more {
            key = sync_pages(&phone.dev, cid, key, 100).await.1;
        }
        phone.keys.insert(cid.clone(), key);

        let reply = phone.dev.post("Ping", &ping_body(&folders)).await;
        assert_eq!(reply.status, 200, "Ping HTTP status");
        let body = reply.body.expect("Ping body");
        let status = body.text_of(p::STATUS).unwrap_or("").to_string();
        assert!(status == "1" || status == "2", "Ping status {status}");
        let changed: Vec<String> = body
            .first(p::FOLDERS)
            .map(|fs| {
                fs.all(p::FOLDER)
                    .filter_map(|x| x.text().map(String::from))
                    .collect()
            })
            .unwrap_or_default();
        statuses.push(status);
        for cid in changed {
            let (_, key) = sync_pages(&phone.dev, &cid, phone.keys[&cid].clone(), 100).await;
            phone.keys.insert(cid, key);
        }
    }
    statuses
}

#[tokio::test]
async fn three_devices_on_twenty_folders_stay_within_the_pool_and_one_watcher() {
    let gw = start_gateway_with(GatewayOptions {
        push: "min_heartbeat_secs = 2\nwatcher_grace_secs = 2",
        ..Default::default()
    })
    .await;
    let (user, pw) = new_user("conns");
    let names: Vec<String> = (1..=FOLDERS).map(|i| format!("Load{i:02}")).collect();
    let creates: Vec<String> = names.iter().map(|n| format!("CREATE {n}")).collect();
    imap(
        &user,
        &pw,
        &creates.iter().map(String::as_str).collect::<Vec<_>>(),
    )
    .await;
    for n in &names {
        append(&user, &pw, n, &mail(&format!("in {n}"), "x"), None).await;
    }

    // Each device: FolderSync, then a full Sync of every folder.
    let mut phones = Vec::new();
    let mut folder_ids: Vec<String> = Vec::new();
    for _ in 0..DEVICES {
        let dev = device_of(&gw, &user, &pw, "16.1").await;
        let tree = dev.folder_sync("0").await;
        let ids: Vec<String> = names
            .iter()
            .map(|name| {
                tree.first(f::CHANGES)
                    .and_then(|c| {
                        c.all(f::ADD)
                            .find(|x| x.text_of(f::DISPLAY_NAME) == Some(name.as_str()))
                            .and_then(|x| x.text_of(f::SERVER_ID).map(String::from))
                    })
                    .unwrap_or_else(|| panic!("no folder {name}"))
            })
            .collect();
        if folder_ids.is_empty() {
            folder_ids = ids.clone();
        }
        assert_eq!(ids, folder_ids, "the devices see the same folder ids");
        let mut keys = HashMap::new();
        let mut items = HashMap::new();
        for cid in &ids {
            let (got, key) = full_sync(&dev, cid, 100).await;
            assert_eq!(got.len(), 1, "one item in {cid}");
            keys.insert(cid.clone(), key);
            items.insert(cid.clone(), got[0].0.clone());
        }
        phones.push(Phone { dev, keys, items });
    }

    // Sample Dovecot's count while the devices Ping and Sync at once.
    let running = Arc::new(AtomicBool::new(true));
    let samples = Arc::new(Mutex::new(Vec::new()));
    let sampler = {
        let (running, samples, user) = (running.clone(), samples.clone(), user.clone());
        tokio::spawn(async move {
            while running.load(Ordering::SeqCst) {
                let n = imap_connections(&user).await;
                samples.lock().unwrap().push(n);
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        })
    };
    let tasks: Vec<_> = phones
        .into_iter()
        .enumerate()
        .map(|(n, phone)| tokio::spawn(run_phone(phone, folder_ids.clone(), n)))
        .collect();
    let mut statuses = Vec::new();
    for t in tasks {
        statuses.extend(t.await.expect("device task"));
    }
    running.store(false, Ordering::SeqCst);
    sampler.await.unwrap();

    let samples = samples.lock().unwrap().clone();
    let pool = PoolConfig::default().max_per_user;
    let dovecot_limit = max_userip_connections();
    let most = samples.iter().copied().max().unwrap_or(0);
    println!(
        "{} samples of the user's IMAP connections: max {most} (pool {pool} + 1 watcher, \
         Dovecot limit {dovecot_limit}); Ping statuses {statuses:?}",
        samples.len()
    );
    assert!(samples.len() >= 5, "too few samples: {samples:?}");
    // The count works: the watcher is there while Pings wait.
    assert!(most >= 1, "{samples:?}");
    assert!(most <= pool + 1, "{samples:?}");
    assert!(most < dovecot_limit, "{samples:?}");
    // The devices woke one another.
    assert!(statuses.iter().any(|s| s == "2"), "{statuses:?}");
}
