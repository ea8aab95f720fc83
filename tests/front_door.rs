//! The front door against the real dev mail stack: OPTIONS, auth, query forms, limits,
//! Provision, Settings. Every test makes its own user.

mod common;

use common::*;
use eas_gateway::eas::query::{encode_base64, RequestLine};
use eas_gateway::eas::ProtocolVersion;
use eas_gateway::state::{sqlite::SqliteStore, PolicyState, StateStore};
use eas_gateway::wbxml::tags::{folder_hierarchy as f, provision as p, settings as s};
use eas_gateway::wbxml::Element;

#[tokio::test]
async fn options_needs_auth_and_lists_only_implemented_commands() {
    let gw = start_gateway().await;
    let (user, pw) = new_user("opt");
    let c = client();
    let r = c
        .request(reqwest::Method::OPTIONS, &gw.base)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert!(r.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .starts_with("Basic realm="));

    let dev = TestDevice::new(&gw, &user, &pw, "14.1");
    // The path is matched case-insensitively.
    let url = gw
        .base
        .replace("Microsoft-Server-ActiveSync", "microsoft-server-activesync");
    let r = c
        .request(reqwest::Method::OPTIONS, &url)
        .header("Authorization", dev.auth())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let h = r.headers();
    assert_eq!(h["ms-asprotocolversions"], "12.0,12.1,14.0,14.1,16.0,16.1");
    let cmds = h["ms-asprotocolcommands"].to_str().unwrap().to_string();
    for c in ["FolderSync", "Settings", "Provision"] {
        assert!(cmds.split(',').any(|x| x == c), "{c} missing from {cmds}");
    }
    for c in ["MeetingResponse", "ResolveRecipients", "ValidateCert"] {
        assert!(!cmds.split(',').any(|x| x == c), "{c} listed in {cmds}");
    }
    assert!(h.contains_key("ms-server-activesync"));
    assert!(h["allow"].to_str().unwrap().contains("POST"));
}

#[tokio::test]
async fn wrong_password_is_401_and_other_user_parameter_is_403() {
    let gw = start_gateway().await;
    let (user, pw) = new_user("auth");
    let mut dev = TestDevice::new(&gw, &user, "not-the-password", "14.1");
    let body = Element::new(f::FOLDER_SYNC).text_child(f::SYNC_KEY, "0");
    let r = dev.post("FolderSync", &body).await;
    assert_eq!(r.status, 401);
    assert!(r.headers.contains_key("www-authenticate"));

    dev.password = pw.clone();
    let url = format!(
        "{}?Cmd=FolderSync&User=someone-else&DeviceId={}&DeviceType=x",
        dev.base, dev.device_id
    );
    let r = dev
        .post_raw(
            &url,
            eas_gateway::wbxml::encode(&body),
            "application/vnd.ms-sync.wbxml",
        )
        .await;
    assert_eq!(r.status, 403);

    // All accepted login spellings name the same user.
    let local = user.split('@').next().unwrap().to_string();
    for login in [
        local.clone(),
        format!("EXAMPLE\\{local}"),
        user.to_uppercase(),
    ] {
        let mut d = TestDevice::new(&gw, &login, &pw, "14.1");
        d.user = login.clone();
        let r = d.post("FolderSync", &body).await;
        assert_eq!(r.status, 200, "login form {login}");
    }
}

#[tokio::test]
async fn unreachable_mail_server_is_503_not_401() {
    // A port where nothing listens: the gateway must not ask the phone for a new password.
    let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = free.local_addr().unwrap().port();
    drop(free);
    let gw = start_gateway_with(GatewayOptions {
        imap_port: Some(port),
        ..Default::default()
    })
    .await;
    let dev = TestDevice::new(&gw, "alice@example.test", "alice-password", "14.1");
    let r = dev
        .post(
            "FolderSync",
            &Element::new(f::FOLDER_SYNC).text_child(f::SYNC_KEY, "0"),
        )
        .await;
    assert_eq!(r.status, 503);
    assert!(r.headers.contains_key("retry-after"));
}

#[tokio::test]
async fn repeated_failures_are_throttled_without_blocking_a_cached_login() {
    let gw = start_gateway_with(GatewayOptions {
        auth: "max_failures_per_user = 3\nmax_failures_per_ip = 100",
        ..Default::default()
    })
    .await;
    let (user, pw) = new_user("throttle");
    let good = TestDevice::new(&gw, &user, &pw, "14.1");
    let body = Element::new(f::FOLDER_SYNC).text_child(f::SYNC_KEY, "0");
    assert_eq!(good.post("FolderSync", &body).await.status, 200);
    let bad = TestDevice::new(&gw, &user, "wrong", "14.1");
    for _ in 0..3 {
        assert_eq!(bad.post("FolderSync", &body).await.status, 401);
    }
    let r = bad.post("FolderSync", &body).await;
    assert_eq!(r.status, 429);
    assert!(r.headers.contains_key("retry-after"));
    // The phone that knows the password and logged in before keeps working.
    assert_eq!(good.post("FolderSync", &body).await.status, 200);
}

#[tokio::test]
async fn bad_requests_get_clear_http_statuses() {
    let gw = start_gateway().await;
    let (user, pw) = new_user("bad");
    let dev = TestDevice::new(&gw, &user, &pw, "14.1");
    let body =
        eas_gateway::wbxml::encode(&Element::new(f::FOLDER_SYNC).text_child(f::SYNC_KEY, "0"));
    let q = |cmd: &str| format!("{}?{}", dev.base, dev.query(cmd));
    // Unknown and unimplemented commands.
    assert_eq!(
        dev.post_raw(
            &q("Frobnicate"),
            body.clone(),
            "application/vnd.ms-sync.wbxml"
        )
        .await
        .status,
        501
    );
    assert_eq!(
        dev.post_raw(
            &q("MeetingResponse"),
            body.clone(),
            "application/vnd.ms-sync.wbxml"
        )
        .await
        .status,
        501
    );
    // Wrong media type, malformed WBXML, oversized body, bad DeviceId.
    assert_eq!(
        dev.post_raw(&q("FolderSync"), body.clone(), "text/plain")
            .await
            .status,
        400
    );
    assert_eq!(
        dev.post_raw(
            &q("FolderSync"),
            vec![3, 1, 0x6a, 0, 0x45, 0x7f],
            "application/vnd.ms-sync.wbxml"
        )
        .await
        .status,
        400
    );
    assert_eq!(
        dev.post_raw(
            &q("FolderSync"),
            vec![0u8; 2 * 1024 * 1024],
            "application/vnd.ms-sync.wbxml"
        )
        .await
        .status,
        413
    );
    let url = format!(
        "{}?Cmd=FolderSync&DeviceId={}&DeviceType=x",
        dev.base,
        "x".repeat(80)
    );
    assert_eq!(
        dev.post_raw(&url, body.clone(), "application/vnd.ms-sync.wbxml")
            .await
            .status,
        400
    );
    // Parameters on the media type are ignored.
    assert_eq!(
        dev.post_raw(
            &q("FolderSync"),
            body,
            "application/vnd.ms-sync.wbxml; charset=utf-8"
        )
        .await
        .status,
        200
    );
}

#[tokio::test]
async fn v12_1_device_gets_449_until_provisioned() {
    let gw = start_gateway().await;
    let (user, pw) = new_user("p121");
    let mut dev = TestDevice::new(&gw, &user, &pw, "12.1");
    let fs = Element::new(f::FOLDER_SYNC).text_child(f::SYNC_KEY, "0");
    assert_eq!(dev.post("FolderSync", &fs).await.status, 449);
    dev.provision().await;
    assert_eq!(dev.post("FolderSync", &fs).await.status, 200);
    // A stale key after provisioning is 449 again.
    dev.policy_key = Some(dev.policy_key.unwrap().wrapping_add(1));
    assert_eq!(dev.post("FolderSync", &fs).await.status, 449);
}

#[tokio::test]
async fn v14_and_v16_devices_get_status_142_then_144() {
    let gw = start_gateway().await;
    let (user, pw) = new_user("p16");
    for version in ["14.1", "16.1"] {
        let mut dev = TestDevice::new(&gw, &user, &pw, version);
        let r = dev.folder_sync("0").await;
        assert_eq!(r.tag, f::FOLDER_SYNC);
        assert_eq!(r.text_of(f::STATUS), Some("142"), "{version}");
        dev.provision().await;
        let r = dev.folder_sync("0").await;
        assert_eq!(r.text_of(f::STATUS), Some("1"), "{version}");
        dev.policy_key = Some(dev.policy_key.unwrap() ^ 0x5555);
        let r = dev.folder_sync("0").await;
        assert_eq!(r.text_of(f::STATUS), Some("144"), "{version}");
    }
}

#[tokio::test]
async fn provision_sends_policy_checks_ack_and_stores_device_information() {
    let gw = start_gateway_with(GatewayOptions {
        policy: "require_password = true\nmin_password_length = 6",
        ..Default::default()
    })
    .await;
    let (user, pw) = new_user("prov");
    let dev = TestDevice::new(&gw, &user, &pw, "14.1");
    let req = Element::new(p::PROVISION)
        .child(
            Element::new(s::DEVICE_INFORMATION).child(
                Element::new(s::SET)
                    .text_child(s::MODEL, "Pixel 9")
                    .text_child(s::OS, "Android 16"),
            ),
        )
        .child(Element::new(p::POLICIES).child(
            Element::new(p::POLICY).text_child(p::POLICY_TYPE, "MS-EAS-Provisioning-WBXML"),
        ));
    let r = dev.post("Provision", &req).await;
    let body = r.body.unwrap();
    assert_eq!(body.text_of(p::STATUS), Some("1"));
    assert_eq!(
        body.first(s::DEVICE_INFORMATION)
            .and_then(|d| d.text_of(s::STATUS)),
        Some("1")
    );
    let policy = body.first(p::POLICIES).unwrap().first(p::POLICY).unwrap();
    assert_eq!(policy.text_of(p::STATUS), Some("1"));
    let doc = policy
        .first(p::DATA)
        .unwrap()
        .first(p::EAS_PROVISION_DOC)
        .unwrap();
    assert_eq!(doc.text_of(p::DEVICE_PASSWORD_ENABLED), Some("1"));
    assert_eq!(doc.text_of(p::MIN_DEVICE_PASSWORD_LENGTH), Some("6"));
    let temp = policy_key_of(&body);

    // Acknowledging a key that was never issued: Policy Status 5.
    let ack = |key: u32| {
        Element::new(p::PROVISION).child(
            Element::new(p::POLICIES).child(
                Element::new(p::POLICY)
                    .text_child(p::POLICY_TYPE, "MS-EAS-Provisioning-WBXML")
                    .text_child(p::POLICY_KEY, key.to_string())
                    .text_child(p::STATUS, "1"),
            ),
        )
    };
    let r = dev
        .post("Provision", &ack(temp.wrapping_add(7)))
        .await
        .body
        .unwrap();
    let pol = r.first(p::POLICIES).unwrap().first(p::POLICY).unwrap();
    assert_eq!(pol.text_of(p::STATUS), Some("5"));
    let r = dev.post("Provision", &ack(temp)).await.body.unwrap();
    let final_key = policy_key_of(&r);
    assert_ne!(final_key, temp);

    let store = SqliteStore::open_url(&gw.config.state_url).unwrap();
    let d = store.device(&user, &dev.device_id).await.unwrap().unwrap();
    assert_eq!(d.policy, PolicyState::Provisioned);
    assert_eq!(d.policy_key, final_key);
    assert!(d
        .device_info
        .contains(&("Model".to_string(), "Pixel 9".to_string())));
    assert_eq!(d.device_type, "TestPhone");
}

#[tokio::test]
async fn settings_user_information_has_the_shape_of_the_version() {
    let gw = start_gateway().await;
    let (user, pw) = new_user("settings");
    for version in ["14.0", "16.1"] {
        let dev = device_of(&gw, &user, &pw, version).await;
        let req = Element::new(s::SETTINGS)
            .child(Element::new(s::USER_INFORMATION).child(Element::new(s::GET)))
            .child(
                Element::new(s::OOF).child(Element::new(s::GET).text_child(s::BODY_TYPE, "TEXT")),
            )
            .child(Element::new(s::OOF).child(Element::new(s::SET).text_child(s::OOF_STATE, "1")));
        let r = dev.post("Settings", &req).await.body.unwrap();
        assert_eq!(r.text_of(s::STATUS), Some("1"));
        let get = r.first(s::USER_INFORMATION).unwrap().first(s::GET).unwrap();
        let addr = if version == "14.0" {
            get.first(s::EMAIL_ADDRESSES)
                .unwrap()
                .text_of(s::SMTP_ADDRESS)
        } else {
            get.first(s::ACCOUNTS)
                .and_then(|a| a.first(s::ACCOUNT))
                .and_then(|a| a.first(s::EMAIL_ADDRESSES))
                .and_then(|e| e.text_of(s::PRIMARY_SMTP_ADDRESS))
        };
        assert_eq!(addr, Some(user.as_str()), "{version}");
        let oofs: Vec<_> = r.all(s::OOF).collect();
        assert_eq!(
            oofs[0].first(s::GET).unwrap().text_of(s::OOF_STATE),
            Some("0")
        );
        assert_eq!(oofs[1].text_of(s::STATUS), Some("7"));
    }
}

#[tokio::test]
async fn base64_query_form_provisions_and_syncs_folders() {
    let gw = start_gateway().await;
    let (user, pw) = new_user("b64");
    let dev = TestDevice::new(&gw, &user, &pw, "14.1");
    let mut line = RequestLine {
        device_id: dev.device_id.clone(),
        device_type: "iPhone".into(),
        user: Some(user.clone()),
        ..RequestLine::default()
    };
    let send = |line: &RequestLine, code: u8, body: Element| {
        let url = format!(
            "{}?{}",
            dev.base,
            encode_base64(line, ProtocolVersion::V14_1, code)
        );
        let client = dev.client.clone();
        let auth = dev.auth();
        async move {
            // No MS-ASProtocolVersion or X-MS-PolicyKey headers: the query carries both.
            let resp = client
                .post(url)
                .header("Authorization", auth)
                .header("Content-Type", "application/vnd.ms-sync.wbxml")
                .body(eas_gateway::wbxml::encode(&body))
                .send()
                .await
                .unwrap();
            read_reply(resp).await
        }
    };
    let pol = |key: Option<u32>| {
        let mut policy =
            Element::new(p::POLICY).text_child(p::POLICY_TYPE, "MS-EAS-Provisioning-WBXML");
        if let Some(k) = key {
            policy = policy
                .text_child(p::POLICY_KEY, k.to_string())
                .text_child(p::STATUS, "1");
        }
        Element::new(p::PROVISION).child(Element::new(p::POLICIES).child(policy))
    };
    let r = send(&line, 20, pol(None)).await;
    let temp = policy_key_of(r.body.as_ref().unwrap());
    line.policy_key = Some(temp);
    let r = send(&line, 20, pol(Some(temp))).await;
    line.policy_key = Some(policy_key_of(r.body.as_ref().unwrap()));
    let r = send(
        &line,
        9,
        Element::new(f::FOLDER_SYNC).text_child(f::SYNC_KEY, "0"),
    )
    .await;
    assert_eq!(r.status, 200);
    let body = r.body.unwrap();
    assert_eq!(body.text_of(f::STATUS), Some("1"));
    let adds = body.first(f::CHANGES).unwrap().all(f::ADD).count();
    assert!(adds >= 6, "expected the demo folders, got {adds}");
}

/// Prints the time a fresh device needs for Provision + FolderSync next to an IMAP LOGIN +
/// LIST of the same account (a measurement, not a threshold: run with `--nocapture`).
#[tokio::test]
async fn fresh_device_provision_and_folder_sync_next_to_imap_login_and_list() {
    let gw = start_gateway().await;
    let (user, pw) = new_user("timing");
    let mut gateway_ms = Vec::new();
    let mut imap_ms = Vec::new();
    for _ in 0..5 {
        let started = std::time::Instant::now();
        imap(&user, &pw, &["LIST \"\" \"*\" RETURN (SPECIAL-USE)"]).await;
        imap_ms.push(started.elapsed().as_secs_f64() * 1000.0);
        let mut dev = TestDevice::new(&gw, &user, &pw, "16.1");
        let started = std::time::Instant::now();
        dev.provision().await;
        let r = dev.folder_sync("0").await;
        gateway_ms.push(started.elapsed().as_secs_f64() * 1000.0);
        assert_eq!(r.text_of(f::STATUS), Some("1"));
    }
    gateway_ms.sort_by(f64::total_cmp);
    imap_ms.sort_by(f64::total_cmp);
    println!(
        "fresh device Provision+FolderSync: median {:.1} ms; IMAP LOGIN+LIST: median {:.1} ms",
        gateway_ms[2], imap_ms[2]
    );
}
