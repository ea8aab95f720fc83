//! The device registry from the administrator's side: the `eas-gateway devices` commands run
//! as a separate process on the state file of a gateway that is serving a phone.

mod common;

use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::*;
use eas_gateway::push::PushConfig;
use eas_gateway::wbxml::tags::{compose_mail as cm, folder_hierarchy as f, ping as p};
use eas_gateway::wbxml::Element;
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};

/// A configuration for the CLI that names the gateway's state store (plus the lines of
/// `extra.toml` in the gateway's directory, when a test wrote one).
fn cli_config(gw: &TestGateway) -> PathBuf {
    let path = gw.dir.path().join("cli.toml");
    let extra = std::fs::read_to_string(gw.dir.path().join("extra.toml")).unwrap_or_default();
    std::fs::write(
        &path,
        format!(
            "[server]\nlisten = \"127.0.0.1:0\"\n[imap]\nhost = \"127.0.0.1\"\nport = 143\n\
             [smtp]\nhost = \"127.0.0.1\"\nport = 587\n[state]\nurl = \"{}\"\n\
             [identity]\ndomain = \"{DOMAIN}\"\n{extra}",
            gw.config.state_url
        ),
    )
    .unwrap();
    path
}

/// Runs `eas-gateway devices ARGS --config ...`; returns (success, stdout, stderr).
async fn cli(gw: &TestGateway, args: &[&str]) -> (bool, String, String) {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_eas-gateway"))
        .arg("devices")
        .args(args)
        .arg("--config")
        .arg(cli_config(gw))
        .output()
        .await
        .expect("run the CLI");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

async fn cli_ok(gw: &TestGateway, args: &[&str]) -> String {
    let (ok, out, err) = cli(gw, args).await;
    assert!(ok, "devices {args:?} failed: {err}");
    out
}

/// The device's request log as JSON entries, once it holds at least `n` of them (the gateway
/// records a request on its own task after answering it).
async fn log_entries(gw: &TestGateway, dev: &TestDevice, n: usize) -> Vec<Value> {
    let started = Instant::now();
    loop {
        let out = cli_ok(gw, &["log", &dev.user, &dev.device_id, "--json"]).await;
        let entries: Vec<Value> = out
            .lines()
            .map(|l| serde_json::from_str(l).expect("a JSON line"))
            .collect();
        if entries.len() >= n || started.elapsed() > Duration::from_secs(20) {
            return entries;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn inbox_of(folder_sync: &Element) -> String {
    folder_sync
        .first(f::CHANGES)
        .and_then(|c| {
            c.all(f::ADD)
                .find(|a| a.text_of(f::TYPE) == Some("2"))
                .and_then(|a| a.text_of(f::SERVER_ID).map(String::from))
        })
        .expect("an Inbox")
}

/// `count` mails with subjects `<label> N` in the user's Inbox.
async fn seed_inbox(user: &str, pw: &str, label: &str, count: usize) {
    let mails: Vec<(String, Option<String>)> = (0..count)
        .map(|i| (mail(&format!("{label} {i}"), "body"), None))
        .collect();
    seed(user, pw, "INBOX", &mails).await;
}

#[tokio::test]
async fn removed_device_starts_over_and_gets_every_mail_once() {
    require_stack();
    let (gw, mut dev, user, pw) = gateway_with_device("devrm").await;
    let label = unique("remove");
    seed_inbox(&user, &pw, &label, 3).await;
    let hierarchy = dev.folder_sync("0").await;
    let fkey = hierarchy.text_of(f::SYNC_KEY).unwrap().to_string();
    let inbox = inbox_of(&hierarchy);
    let (adds, key) = full_sync(&dev, &inbox, 10).await;
    assert_eq!(adds.len(), 3);

    let out = cli_ok(&gw, &["remove", &user, &dev.device_id]).await;
    assert!(out.contains("removed"), "{out}");
    let listed = cli_ok(&gw, &["list", "--json"]).await;
    let listed: Vec<Value> = serde_json::from_str(&listed).unwrap();
    assert!(
        listed.iter().all(|d| d["device_id"] != dev.device_id),
        "{listed:?}"
    );

    // Its next request must provision again (MS-ASPROV: 142 DeviceNotProvisioned).
    let r = sync(&dev, &inbox, &key, 10).await;
    assert_eq!(r.status.as_deref(), Some("142"), "{r:?}");
    dev.provision().await;
    // The old hierarchy key is unknown: FolderSync Status 9, then it starts over.
    let again = dev.folder_sync(&fkey).await;
    assert_eq!(again.text_of(f::STATUS), Some("9"));
    let hierarchy = dev.folder_sync("0").await;
    assert_eq!(inbox_of(&hierarchy), inbox, "ServerIds belong to the user");
    let r = sync(&dev, &inbox, &key, 10).await;
    assert_eq!(r.status.as_deref(), Some("3"), "old sync key: {r:?}");
    let (adds, _) = full_sync(&dev, &inbox, 2).await;
    let mut ids = server_ids(&adds);
    ids.sort();
    ids.dedup();
    assert_eq!(adds.len(), 3, "every mail once after the resync");
    assert_eq!(ids.len(), 3);
    // The device is known again, as a new device.
    let show: Value =
        serde_json::from_str(&cli_ok(&gw, &["show", &user, &dev.device_id, "--json"]).await)
            .unwrap();
    assert_eq!(show["policy"], "provisioned");
}

#[tokio::test]
async fn resync_answers_status_3_then_a_clean_sync() {
    require_stack();
    let (gw, dev, user, pw) = gateway_with_device("devresync").await;
    let label = unique("resync");
    seed_inbox(&user, &pw, &label, 4).await;
    let hierarchy = dev.folder_sync("0").await;
    let fkey = hierarchy.text_of(f::SYNC_KEY).unwrap().to_string();
    let inbox = inbox_of(&hierarchy);
    let (adds, key) = full_sync(&dev, &inbox, 10).await;
    assert_eq!(adds.len(), 4);

    // One folder, by name.
    let out = cli_ok(&gw, &["resync", &user, &dev.device_id, "--folder", "inbox"]).await;
    assert!(out.contains("Status 3"), "{out}");
    let r = sync(&dev, &inbox, &key, 10).await;
    assert_eq!(r.status.as_deref(), Some("3"), "{r:?}");
    assert!(r.adds.is_empty());
    let (adds, key) = full_sync(&dev, &inbox, 3).await;
    let mut ids = server_ids(&adds);
    ids.sort();
    ids.dedup();
    assert_eq!((adds.len(), ids.len()), (4, 4), "every mail exactly once");
    // The hierarchy was left alone.
    let same = dev.folder_sync(&fkey).await;
    assert_eq!(same.text_of(f::STATUS), Some("1"));

    // Everything: FolderSync 9, Sync 3.
    cli_ok(&gw, &["resync", &user, &dev.device_id]).await;
    let again = dev.folder_sync(&fkey).await;
    assert_eq!(again.text_of(f::STATUS), Some("9"));
    let r = sync(&dev, &inbox, &key, 10).await;
    assert_eq!(r.status.as_deref(), Some("3"), "{r:?}");
    dev.folder_sync("0").await;
    let (adds, _) = full_sync(&dev, &inbox, 10).await;
    assert_eq!(adds.len(), 4);

    // An unknown folder is refused, naming the ones there are.
    let (ok, _, err) = cli(
        &gw,
        &["resync", &user, &dev.device_id, "--folder", "Nowhere"],
    )
    .await;
    assert!(!ok);
    assert!(err.contains("Inbox"), "{err}");
}

fn send_mail(client_id: &str, mime: &[u8]) -> Element {
    Element::new(cm::SEND_MAIL)
        .text_child(cm::CLIENT_ID, client_id)
        .opaque_child(cm::MIME, Bytes::copy_from_slice(mime))
}

#[tokio::test]
async fn the_log_of_a_session_holds_each_request_with_its_counts() {
    require_stack();
    let (gw, server) = start_gateway_server(GatewayOptions::default(), |c| {
        c.push = PushConfig {
            min_heartbeat_secs: 2,
            ..PushConfig::default()
        }
    })
    .await;
    let (user, pw) = new_user("devlog");
    let label = unique("log");
    seed_inbox(&user, &pw, &label, 2).await;
    let mut dev = TestDevice::new(&gw, &user, &pw, "16.1");
    dev.provision().await;
    let hierarchy = dev.folder_sync("0").await;
    let inbox = inbox_of(&hierarchy);
    let first = sync(&dev, &inbox, "0", 10).await;
    let k1 = first.key.clone().unwrap();
    let second = sync(&dev, &inbox, &k1, 10).await;
    assert_eq!(second.adds.len(), 2);
    let k2 = second.key.clone().unwrap();

    // A Ping woken by a delivery.
    let ping = Element::new(p::PING)
        .text_child(p::HEARTBEAT_INTERVAL, "120")
        .child(
            Element::new(p::FOLDERS).child(
                Element::new(p::FOLDER)
                    .text_child(p::ID, inbox.as_str())
                    .text_child(p::CLASS, "Email"),
            ),
        );
    let pinger = dev.clone();
    let task = tokio::spawn(async move { pinger.post("Ping", &ping).await });
    let started = Instant::now();
    while server.gateway.push.stats().waiters == 0 && started.elapsed() < Duration::from_secs(10) {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    // The registry shows the Ping waiting.
    let shown: Value =
        serde_json::from_str(&cli_ok(&gw, &["show", &user, &dev.device_id, "--json"]).await)
            .unwrap();
    assert_eq!(shown["waiting"], true, "{shown}");
    append(
        &user,
        &pw,
        "INBOX",
        &mail(&format!("{label} late"), "x"),
        None,
    )
    .await;
    let woke = task.await.unwrap();
    assert_eq!(
        woke.body.as_ref().and_then(|b| b.text_of(p::STATUS)),
        Some("2")
    );

    let mime = format!(
        "From: {user}\r\nTo: {user}\r\nSubject: {label} sent\r\nMIME-Version: 1.0\r\n\r\nhi\r\n"
    );
    let r = dev
        .post("SendMail", &send_mail("log-1", mime.as_bytes()))
        .await;
    assert_eq!(r.status, 200);

    let mut entries = log_entries(&gw, &dev, 7).await;
    // Recorded after each answer: order by arrival.
    entries.sort_by_key(|e| e["at_ms"].as_i64());
    let commands: Vec<&str> = entries
        .iter()
        .map(|e| e["command"].as_str().unwrap())
        .collect();
    assert_eq!(
        commands,
        [
            "Provision",
            "Provision",
            "FolderSync",
            "Sync",
            "Sync",
            "Ping",
            "SendMail"
        ]
    );
    for e in &entries {
        assert_eq!(e["http_status"], 200, "{e}");
        assert!(e["error"].is_null(), "{e}");
        assert!(e["bytes_in"].as_u64().unwrap() > 0, "{e}");
    }
    let col = |e: &Value| e["collections"][0].clone();
    let s1 = col(&entries[3]);
    assert_eq!(s1["collection_id"], inbox.as_str());
    assert_eq!(
        (s1["key_in"].as_str(), s1["key_out"].as_str()),
        (Some("0"), Some(k1.as_str()))
    );
    assert_eq!(s1["added_out"], 0);
    let s2 = col(&entries[4]);
    assert_eq!(
        (s2["key_in"].as_str(), s2["key_out"].as_str()),
        (Some(k1.as_str()), Some(k2.as_str()))
    );
    assert_eq!(
        (
            s2["added_out"].as_u64(),
            s2["changed_out"].as_u64(),
            s2["deleted_out"].as_u64()
        ),
        (Some(2), Some(0), Some(0))
    );
    assert_eq!(s2["added_in"], 0);
    assert_eq!(entries[4]["eas_status"], 1);
    let ping = &entries[5];
    assert_eq!(ping["ping_folders"], serde_json::json!([inbox]));
    assert_eq!(ping["ping_outcome"], format!("changed: {inbox}"));
    assert_eq!(ping["eas_status"], 2);
    assert!(entries[6]["bytes_in"].as_u64().unwrap() >= mime.len() as u64);

    // The human form and the registry's view of the same session.
    let text = cli_ok(&gw, &["log", &user, &dev.device_id]).await;
    assert_eq!(text.lines().count(), 7, "{text}");
    assert!(
        text.contains(&format!(
            "[{inbox}] key {k1} -> {k2} status 1: sent +2 ~0 -0"
        )),
        "{text}"
    );
    let show = cli_ok(&gw, &["show", &user, &dev.device_id]).await;
    assert!(show.contains("SendMail"), "{show}");
    assert!(show.contains("Inbox"), "{show}");
    let shown: Value =
        serde_json::from_str(&cli_ok(&gw, &["show", &user, &dev.device_id, "--json"]).await)
            .unwrap();
    let inbox_state = shown["sync_states"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["collection_id"] == inbox.as_str())
        .cloned()
        .expect("the Inbox's sync state");
    assert_eq!(inbox_state["sync_key"].to_string(), k2);
    let sync_count = shown["commands"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["command"] == "Sync")
        .map(|c| c["count"].clone());
    assert_eq!(sync_count, Some(serde_json::json!(2)));
    assert_eq!(shown["waiting"], false, "{shown}");
}

#[tokio::test]
async fn follow_prints_a_request_made_after_it_started() {
    require_stack();
    let (gw, dev, user, _) = gateway_with_device("devfollow").await;
    log_entries(&gw, &dev, 2).await;
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_eas-gateway"))
        .args([
            "devices",
            "log",
            &user,
            &dev.device_id,
            "--follow",
            "--json",
        ])
        .arg("--config")
        .arg(cli_config(&gw))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("start devices log --follow");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    for _ in 0..2 {
        let l = tokio::time::timeout(Duration::from_secs(20), lines.next_line())
            .await
            .expect("the recorded requests")
            .unwrap()
            .unwrap();
        let e: Value = serde_json::from_str(&l).unwrap();
        assert_eq!(e["command"], "Provision");
    }
    dev.folder_sync("0").await;
    let l = tokio::time::timeout(Duration::from_secs(20), lines.next_line())
        .await
        .expect("the new request is printed")
        .unwrap()
        .unwrap();
    let e: Value = serde_json::from_str(&l).unwrap();
    assert_eq!(e["command"], "FolderSync");
    assert_eq!(e["eas_status"], 1);
    child.kill().await.unwrap();
}

#[tokio::test]
async fn list_shows_local_times_and_the_old_form_still_lists() {
    require_stack();
    let (gw, dev, user, _) = gateway_with_device("devlist").await;
    let (other, _) = new_user("devlist-other");
    let table = cli_ok(&gw, &["list", "--user", &user]).await;
    let mut lines = table.lines();
    let header = lines.next().unwrap();
    assert!(
        header.starts_with("USER") && header.contains("LAST SEEN"),
        "{table}"
    );
    let row = lines.next().expect("one device");
    assert!(
        row.contains(&dev.device_id) && row.contains("provisioned"),
        "{row}"
    );
    // `2026-12-07 14:03:11 (just now)`
    let seen = row
        .split_whitespace()
        .find(|w| w.len() == 10 && w.as_bytes()[4] == b'-' && w.as_bytes()[7] == b'-')
        .expect("a local date");
    assert!(
        seen.chars().filter(|c| c.is_ascii_digit()).count() == 8,
        "{row}"
    );
    assert!(row.contains("ago") || row.contains("just now"), "{row}");

    // `eas-gateway devices --config F --user U`, as before.
    let old = cli_ok(&gw, &["--user", &user]).await;
    assert!(old.contains(&dev.device_id), "{old}");
    let none = cli_ok(&gw, &["--user", &other]).await;
    assert_eq!(none.lines().count(), 1, "header only: {none}");
    let all: Vec<Value> = serde_json::from_str(&cli_ok(&gw, &["list", "--json"]).await).unwrap();
    assert_eq!(all.len(), 1);
    assert_eq!(all[0]["user"], user.as_str());
    assert_eq!(all[0]["user_agent"], "eas-gateway-tests/1");
    assert_eq!(all[0]["protocol_version"], "16.1");
    assert_eq!(all[0]["last_command"], "Provision");
    // DeviceInformation is kept, without the IMEI and phone number (keep_phone_identifiers
    // is off by default).
    use eas_gateway::wbxml::tags::settings as st;
    let info = Element::new(st::SETTINGS).child(
        Element::new(st::DEVICE_INFORMATION).child(
            Element::new(st::SET)
                .text_child(st::MODEL, "iPhone15,2")
                .text_child(st::IMEI, "356938035643809")
                .text_child(st::FRIENDLY_NAME, "Alice's iPhone")
                .text_child(st::OS, "iOS 18.1")
                .text_child(st::PHONE_NUMBER, "+15551234567"),
        ),
    );
    assert_eq!(dev.post("Settings", &info).await.status, 200);
    let shown: Value =
        serde_json::from_str(&cli_ok(&gw, &["show", &user, &dev.device_id, "--json"]).await)
            .unwrap();
    assert_eq!(shown["model"], "iPhone15,2");
    assert_eq!(shown["os"], "iOS 18.1");
    assert_eq!(shown["friendly_name"], "Alice's iPhone");
    let names: Vec<&str> = shown["device_information"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["Model", "FriendlyName", "OS"]);
    // Unknown devices are an error, not an empty answer.
    let (ok, _, err) = cli(&gw, &["show", &user, "NOSUCHDEVICE"]).await;
    assert!(!ok && err.contains("no device"), "{err}");
}

fn provision_request() -> Element {
    use eas_gateway::wbxml::tags::provision as pv;
    Element::new(pv::PROVISION).child(
        Element::new(pv::POLICIES).child(
            Element::new(pv::POLICY).text_child(pv::POLICY_TYPE, "MS-EAS-Provisioning-WBXML"),
        ),
    )
}

fn wipe_ack(account_only: bool) -> Element {
    use eas_gateway::wbxml::tags::provision as pv;
    let tag = if account_only {
        pv::ACCOUNT_ONLY_REMOTE_WIPE
    } else {
        pv::REMOTE_WIPE
    };
    Element::new(pv::PROVISION).child(Element::new(tag).text_child(pv::STATUS, "1"))
}

fn folder_sync_status(r: &Reply) -> Option<String> {
    r.body
        .as_ref()
        .and_then(|b| b.text_of(f::STATUS))
        .map(String::from)
}

async fn folder_sync_reply(dev: &TestDevice) -> Reply {
    dev.post(
        "FolderSync",
        &Element::new(f::FOLDER_SYNC).text_child(f::SYNC_KEY, "0"),
    )
    .await
}

#[tokio::test]
async fn wipe_runs_the_provision_dance_and_then_refuses_the_device() {
    use eas_gateway::wbxml::tags::provision as pv;
    require_stack();
    let (gw, dev, user, pw) = gateway_with_device("devwipe").await;
    dev.folder_sync("0").await;

    // Cancelled before the device saw it: nothing happens.
    cli_ok(&gw, &["wipe", &user, &dev.device_id]).await;
    cli_ok(&gw, &["cancel-wipe", &user, &dev.device_id]).await;
    assert_eq!(
        folder_sync_status(&folder_sync_reply(&dev).await).as_deref(),
        Some("1")
    );

    cli_ok(&gw, &["wipe", &user, &dev.device_id]).await;
    // MS-ASPROV 3.2.5.1.2: any command gets 140, the device provisions and gets RemoteWipe.
    assert_eq!(
        folder_sync_status(&folder_sync_reply(&dev).await).as_deref(),
        Some("140")
    );
    let r = dev.post("Provision", &provision_request()).await;
    let body = r.body.expect("Provision body");
    assert_eq!(body.text_of(pv::STATUS), Some("1"));
    assert!(body.first(pv::REMOTE_WIPE).is_some(), "{body:?}");
    assert!(body.first(pv::POLICIES).is_none());
    let r = dev.post("Provision", &wipe_ack(false)).await;
    assert_eq!(r.body.expect("ack answer").text_of(pv::STATUS), Some("1"));
    let shown: Value =
        serde_json::from_str(&cli_ok(&gw, &["show", &user, &dev.device_id, "--json"]).await)
            .unwrap();
    assert_eq!(shown["wipe"], "acknowledged");
    assert!(shown["wipe_acknowledged_at"].as_i64().unwrap() > 0);
    // Afterwards the device is refused (and wiped again if it provisions) ...
    assert_eq!(
        folder_sync_status(&folder_sync_reply(&dev).await).as_deref(),
        Some("140")
    );
    // ... and the wipe cannot be cancelled any more.
    let (ok, _, err) = cli(&gw, &["cancel-wipe", &user, &dev.device_id]).await;
    assert!(!ok && err.contains("acknowledged"), "{err}");

    // A 12.1 device is sent to Provision with HTTP 449.
    let mut old = TestDevice::new(&gw, &user, &pw, "12.1");
    old.provision().await;
    cli_ok(&gw, &["wipe", &user, &old.device_id]).await;
    assert_eq!(folder_sync_reply(&old).await.status, 449);
}

#[tokio::test]
async fn account_wipe_needs_16_1() {
    use eas_gateway::wbxml::tags::provision as pv;
    require_stack();
    let (gw, dev, user, pw) = gateway_with_device("devacctwipe").await;
    let old = device_of(&gw, &user, &pw, "14.1").await;
    let (ok, _, err) = cli(&gw, &["account-wipe", &user, &old.device_id]).await;
    assert!(!ok && err.contains("16.1"), "{err}");
    assert_eq!(
        folder_sync_status(&folder_sync_reply(&old).await).as_deref(),
        Some("1")
    );

    cli_ok(&gw, &["account-wipe", &user, &dev.device_id]).await;
    assert_eq!(
        folder_sync_status(&folder_sync_reply(&dev).await).as_deref(),
        Some("140")
    );
    let body = dev
        .post("Provision", &provision_request())
        .await
        .body
        .unwrap();
    assert!(
        body.first(pv::ACCOUNT_ONLY_REMOTE_WIPE).is_some(),
        "{body:?}"
    );
    assert!(body.first(pv::REMOTE_WIPE).is_none());
    let r = dev.post("Provision", &wipe_ack(true)).await;
    assert_eq!(r.body.unwrap().text_of(pv::STATUS), Some("1"));
    let shown: Value =
        serde_json::from_str(&cli_ok(&gw, &["show", &user, &dev.device_id, "--json"]).await)
            .unwrap();
    assert_eq!(shown["wipe"], "acknowledged");
}

#[tokio::test]
async fn access_rules_and_overrides_block_and_quarantine() {
    use eas_gateway::config::{Access, AccessRule, AccessRules};
    require_stack();
    let (gw, _) = start_gateway_server(GatewayOptions::default(), |c| {
        c.access = AccessRules {
            default: Access::Allow,
            rules: vec![
                AccessRule {
                    action: Access::Block,
                    user: None,
                    device_type: Some("blockedphone".into()),
                    user_agent: None,
                    device_id: None,
                },
                AccessRule {
                    action: Access::Quarantine,
                    user: None,
                    device_type: Some("NewPhone".into()),
                    user_agent: Some("eas-gateway-tests/*".into()),
                    device_id: None,
                },
            ],
        }
    })
    .await;
    // The CLI reads the same rules from its configuration.
    std::fs::write(
        gw.dir.path().join("extra.toml"),
        "[[access.rule]]\naction = \"block\"\ndevice_type = \"blockedphone\"\n\
         [[access.rule]]\naction = \"quarantine\"\ndevice_type = \"NewPhone\"\n\
         user_agent = \"eas-gateway-tests/*\"\n",
    )
    .unwrap();
    let (user, pw) = new_user("devaccess");
    let mut blocked = TestDevice::new(&gw, &user, &pw, "16.1");
    blocked.device_type = "BlockedPhone".into();
    let r = blocked.post("Provision", &provision_request()).await;
    assert_eq!(
        r.body
            .unwrap()
            .text_of(eas_gateway::wbxml::tags::provision::STATUS),
        Some("129")
    );
    let mut quarantined = TestDevice::new(&gw, &user, &pw, "16.1");
    quarantined.device_type = "NewPhone".into();
    assert_eq!(
        folder_sync_status(&folder_sync_reply(&quarantined).await).as_deref(),
        Some("130")
    );
    let listed = cli_ok(&gw, &["list"]).await;
    assert!(listed.contains("quarantined (rules)"), "{listed}");
    // The blocked phone was answered at the door, its password unchecked: not registered.
    assert!(!listed.contains("blocked (rules)"), "{listed}");
    // Now that the password is in the login cache (the quarantined phone's login), it is.
    let r = blocked.post("Provision", &provision_request()).await;
    assert_eq!(
        r.body
            .unwrap()
            .text_of(eas_gateway::wbxml::tags::provision::STATUS),
        Some("129")
    );
    let listed = cli_ok(&gw, &["list"]).await;
    assert!(listed.contains("blocked (rules)"), "{listed}");

    // Released by the administrator, it provisions and syncs.
    cli_ok(&gw, &["allow", &user, &quarantined.device_id]).await;
    quarantined.provision().await;
    assert_eq!(
        folder_sync_status(&folder_sync_reply(&quarantined).await).as_deref(),
        Some("1")
    );
    // Blocked by the administrator, an allowed device gets 129.
    let normal = device_of(&gw, &user, &pw, "16.1").await;
    cli_ok(&gw, &["block", &user, &normal.device_id]).await;
    assert_eq!(
        folder_sync_status(&folder_sync_reply(&normal).await).as_deref(),
        Some("129")
    );
    cli_ok(&gw, &["reset-access", &user, &normal.device_id]).await;
    assert_eq!(
        folder_sync_status(&folder_sync_reply(&normal).await).as_deref(),
        Some("1")
    );
}
