//! Refused devices never reach the mail server: a device blocked by the access rules or by an
//! administrator's override, or a quarantined device the gateway knows, is answered with its
//! status before any IMAP LOGIN. The gateway talks to the real Dovecot through a relay that
//! counts the LOGIN commands it sees; the login cache is off, so every allowed request logs in.

mod common;

use std::path::PathBuf;

use common::*;
use eas_gateway::config::{Access, AccessRule, AccessRules};
use eas_gateway::wbxml::tags::{folder_hierarchy as f, provision as pv};
use eas_gateway::wbxml::Element;

fn provision_request() -> Element {
    Element::new(pv::PROVISION).child(
        Element::new(pv::POLICIES).child(
            Element::new(pv::POLICY).text_child(pv::POLICY_TYPE, "MS-EAS-Provisioning-WBXML"),
        ),
    )
}

async fn folder_sync_reply(dev: &TestDevice) -> Reply {
    dev.post(
        "FolderSync",
        &Element::new(f::FOLDER_SYNC).text_child(f::SYNC_KEY, "0"),
    )
    .await
}

fn status_of(r: &Reply, tag: eas_gateway::wbxml::Tag) -> Option<String> {
    r.body
        .as_ref()
        .and_then(|b| b.text_of(tag))
        .map(String::from)
}

const RULES_TOML: &str = "[[access.rule]]\naction = \"block\"\ndevice_type = \"blockedphone\"\n\
     [[access.rule]]\naction = \"quarantine\"\ndevice_type = \"NewPhone\"\n";

/// The gateway behind the relay, login cache off, with a block rule (DeviceType BlockedPhone)
/// and a quarantine rule (DeviceType NewPhone).
async fn gateway(relay: &LoginRelay) -> TestGateway {
    let (gw, _) = start_gateway_server(
        GatewayOptions {
            imap_port: Some(relay.port),
            auth: "cache_secs = 0",
            ..Default::default()
        },
        |c| {
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
                        user_agent: None,
                        device_id: None,
                    },
                ],
            }
        },
    )
    .await;
    gw
}

fn cli_config(gw: &TestGateway) -> PathBuf {
    let path = gw.dir.path().join("cli.toml");
    std::fs::write(
        &path,
        format!(
            "[server]\nlisten = \"127.0.0.1:0\"\n[imap]\nhost = \"127.0.0.1\"\nport = 143\n\
             [smtp]\nhost = \"127.0.0.1\"\nport = 587\n[state]\nurl = \"{}\"\n\
             [identity]\ndomain = \"{DOMAIN}\"\n{RULES_TOML}",
            gw.config.state_url
        ),
    )
    .unwrap();
    path
}

async fn cli_ok(gw: &TestGateway, args: &[&str]) -> String {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_eas-gateway"))
        .arg("devices")
        .args(args)
        .arg("--config")
        .arg(cli_config(gw))
        .output()
        .await
        .expect("run the CLI");
    assert!(
        out.status.success(),
        "devices {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test]
async fn a_device_blocked_by_a_rule_never_logs_in() {
    require_stack();
    let relay = LoginRelay::start().await;
    let gw = gateway(&relay).await;
    let (user, pw) = new_user("doorblock");

    let mut blocked = TestDevice::new(&gw, &user, &pw, "16.1");
    blocked.device_type = "BlockedPhone".into();
    let r = blocked.post("Provision", &provision_request()).await;
    assert_eq!(r.status, 200);
    assert_eq!(status_of(&r, pv::STATUS).as_deref(), Some("129"));
    let r = folder_sync_reply(&blocked).await;
    assert_eq!(status_of(&r, f::STATUS).as_deref(), Some("129"));
    // A wrong password gets the same answer: nothing is asked of the mail server.
    let mut guessing = blocked.clone();
    guessing.password = "not-the-password".into();
    let r = folder_sync_reply(&guessing).await;
    assert_eq!(status_of(&r, f::STATUS).as_deref(), Some("129"));
    // EAS 12.1 has no common statuses: 403.
    let mut old = TestDevice::new(&gw, &user, &pw, "12.1");
    old.device_type = "BlockedPhone".into();
    assert_eq!(folder_sync_reply(&old).await.status, 403);
    assert_eq!(
        relay.logins(),
        0,
        "a blocked device reached the mail server"
    );

    // No credentials at all: still 401, whatever the device.
    let r = client()
        .post(format!("{}?{}", gw.base, blocked.query("FolderSync")))
        .header("MS-ASProtocolVersion", "16.1")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 401);
}

#[tokio::test]
async fn a_device_blocked_by_the_administrator_never_logs_in_again() {
    require_stack();
    let relay = LoginRelay::start().await;
    let gw = gateway(&relay).await;
    let (user, pw) = new_user("doorover");
    let dev = device_of(&gw, &user, &pw, "16.1").await;
    assert_eq!(
        status_of(&folder_sync_reply(&dev).await, f::STATUS).as_deref(),
        Some("1")
    );
    assert!(
        relay.logins() > 0,
        "the relay sees the allowed device's logins"
    );

    cli_ok(&gw, &["block", &user, &dev.device_id]).await;
    let before = relay.logins();
    for _ in 0..3 {
        assert_eq!(
            status_of(&folder_sync_reply(&dev).await, f::STATUS).as_deref(),
            Some("129")
        );
    }
    assert_eq!(
        relay.logins(),
        before,
        "a blocked device reached the mail server"
    );

    cli_ok(&gw, &["reset-access", &user, &dev.device_id]).await;
    assert_eq!(
        status_of(&folder_sync_reply(&dev).await, f::STATUS).as_deref(),
        Some("1")
    );
}

#[tokio::test]
async fn a_quarantined_device_is_listed_and_waits_without_logging_in() {
    require_stack();
    let relay = LoginRelay::start().await;
    let gw = gateway(&relay).await;
    let (user, pw) = new_user("doorquar");
    let mut quarantined = TestDevice::new(&gw, &user, &pw, "16.1");
    quarantined.device_type = "NewPhone".into();

    // Its first request proves the password (one login) and registers it, so that the
    // administrator sees it; after that it waits without reaching the mail server.
    assert_eq!(
        status_of(&folder_sync_reply(&quarantined).await, f::STATUS).as_deref(),
        Some("130")
    );
    let first = relay.logins();
    assert!(first <= 1, "{first} logins for the first request");
    for _ in 0..3 {
        assert_eq!(
            status_of(&folder_sync_reply(&quarantined).await, f::STATUS).as_deref(),
            Some("130")
        );
    }
    assert_eq!(
        relay.logins(),
        first,
        "a quarantined device reached the mail server"
    );

    // A device of the same user that is allowed is not listed as quarantined.
    let normal = device_of(&gw, &user, &pw, "16.1").await;
    let listed = cli_ok(&gw, &["list", "--quarantined"]).await;
    assert!(listed.contains(&quarantined.device_id), "{listed}");
    assert!(!listed.contains(&normal.device_id), "{listed}");
    let json = cli_ok(&gw, &["list", "--quarantined", "--json"]).await;
    let json: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(json.as_array().map(Vec::len), Some(1), "{json}");

    // Released, it provisions and syncs; it is no longer listed.
    cli_ok(&gw, &["allow", &user, &quarantined.device_id]).await;
    quarantined.provision().await;
    assert_eq!(
        status_of(&folder_sync_reply(&quarantined).await, f::STATUS).as_deref(),
        Some("1")
    );
    let listed = cli_ok(&gw, &["list", "--quarantined"]).await;
    assert!(!listed.contains(&quarantined.device_id), "{listed}");
}
