//! The wire trace of one device, turned on and off with `eas-gateway devices trace` while the
//! gateway serves: decoded XML of each request and response, credentials never written, mail
//! bodies only with `--bodies`, a size cap.

mod common;

use std::path::{Path, PathBuf};

use base64::Engine;
use bytes::Bytes;
use common::*;
use eas_gateway::wbxml::tags::{compose_mail as cm, settings as st};
use eas_gateway::wbxml::Element;

fn cli_config(gw: &TestGateway, trace_dir: &Path) -> PathBuf {
    let path = gw.dir.path().join("cli.toml");
    std::fs::write(
        &path,
        format!(
            "[server]\nlisten = \"127.0.0.1:0\"\n[imap]\nhost = \"127.0.0.1\"\nport = 143\n\
             [smtp]\nhost = \"127.0.0.1\"\nport = 587\n[state]\nurl = \"{}\"\n\
             [identity]\ndomain = \"{DOMAIN}\"\n[devices]\ntrace_dir = \"{}\"\n",
            gw.config.state_url,
            trace_dir.display()
        ),
    )
    .unwrap();
    path
}

async fn cli_ok(gw: &TestGateway, trace_dir: &Path, args: &[&str]) -> String {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_eas-gateway"))
        .arg("devices")
        .args(args)
        .arg("--config")
        .arg(cli_config(gw, trace_dir))
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

/// The trace file's text once it holds `n` requests (entries are written after the answer).
async fn trace_with(path: &Path, n: usize) -> String {
    for _ in 0..200 {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        if text.matches(" request ").count() >= n {
            return text;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    panic!(
        "{} never held {n} requests: {:?}",
        path.display(),
        std::fs::read_to_string(path)
    );
}

fn device_password(pw: &str) -> Element {
    Element::new(st::SETTINGS).child(
        Element::new(st::DEVICE_PASSWORD).child(Element::new(st::SET).text_child(st::PASSWORD, pw)),
    )
}

#[tokio::test]
async fn a_trace_holds_decoded_xml_and_no_password_or_body() {
    require_stack();
    let trace_dir = tempfile::tempdir().unwrap();
    let dir = trace_dir.path().join("trace");
    let d = dir.clone();
    let (gw, _) = start_gateway_server(GatewayOptions::default(), move |c| {
        c.devices.trace_dir = d;
    })
    .await;
    let (user, pw) = new_user("trace");
    let marker = format!("BODYMARKER{:08x}", rand::random::<u32>());
    append(&user, &pw, "INBOX", &mail("traced", &marker), None).await;
    let dev = device_of(&gw, &user, &pw, "16.1").await;
    let inbox = folder_id(&dev, "Inbox").await;

    let said = cli_ok(&gw, &dir, &["trace", &user, &dev.device_id, "on"]).await;
    let file = dir.join(format!("{user}_{}.trace", dev.device_id));
    assert!(said.contains(&file.display().to_string()), "{said}");
    let shown = cli_ok(&gw, &dir, &["show", &user, &dev.device_id]).await;
    assert!(shown.contains("on, bodies redacted"), "{shown}");

    // Traced: a Sync with the mail, a Fetch of its body, a DevicePassword, a SendMail.
    let (adds, _) = full_sync(&dev, &inbox, 10).await;
    assert_eq!(adds.len(), 1);
    let r = dev
        .post(
            "ItemOperations",
            &Element::new(eas_gateway::wbxml::tags::item_operations::ITEM_OPERATIONS)
                .child(fetch_mail(&inbox, &adds[0].0)),
        )
        .await;
    assert!(
        String::from_utf8_lossy(&r.raw).contains(&marker),
        "the phone gets the body"
    );
    dev.post("Settings", &device_password("DEVPW-s3cret")).await;
    let mime_marker = format!("MIMEMARKER{:08x}", rand::random::<u32>());
    let sent = dev
        .post(
            "SendMail",
            &Element::new(cm::SEND_MAIL)
                .text_child(cm::CLIENT_ID, unique("trace"))
                .child(Element::new(cm::SAVE_IN_SENT_ITEMS))
                .opaque_child(
                    cm::MIME,
                    Bytes::from(mail("sent while traced", &mime_marker)),
                ),
        )
        .await;
    assert_eq!(sent.status, 200);

    let text = trace_with(&file, 5).await;
    for needed in [
        "request Sync",
        "request ItemOperations",
        "request Settings",
        "request SendMail",
        "response 200",
        "<Sync",
        "<SyncKey>",
        "<ItemOperations",
        "[redacted",
    ] {
        assert!(text.contains(needed), "{needed} missing:\n{text}");
    }
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pw}"));
    for secret in [
        pw.as_str(),
        basic.as_str(),
        "DEVPW-s3cret",
        "Authorization",
        &marker,
        &mime_marker,
    ] {
        assert!(!text.contains(secret), "{secret} in the trace:\n{text}");
    }

    // Off: nothing more is written.
    cli_ok(&gw, &dir, &["trace", &user, &dev.device_id, "off"]).await;
    let len = std::fs::metadata(&file).unwrap().len();
    dev.folder_sync("0").await;
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert_eq!(std::fs::metadata(&file).unwrap().len(), len);

    // With bodies: the body is there, the credentials still are not.
    cli_ok(
        &gw,
        &dir,
        &["trace", &user, &dev.device_id, "on", "--bodies"],
    )
    .await;
    dev.post(
        "ItemOperations",
        &Element::new(eas_gateway::wbxml::tags::item_operations::ITEM_OPERATIONS)
            .child(fetch_mail(&inbox, &adds[0].0)),
    )
    .await;
    dev.post("Settings", &device_password("DEVPW-s3cret")).await;
    let text = trace_with(&file, 7).await;
    assert!(text.contains(&marker), "no body with --bodies:\n{text}");
    for secret in [pw.as_str(), basic.as_str(), "DEVPW-s3cret"] {
        assert!(!text.contains(secret), "{secret} in the trace:\n{text}");
    }
}

#[tokio::test]
async fn a_trace_over_its_cap_is_rotated_once() {
    require_stack();
    let trace_dir = tempfile::tempdir().unwrap();
    let dir = trace_dir.path().to_path_buf();
    let d = dir.clone();
    let (gw, _) = start_gateway_server(GatewayOptions::default(), move |c| {
        c.devices.trace_dir = d;
        c.devices.trace_max_bytes = 4096;
    })
    .await;
    let (user, pw) = new_user("tracecap");
    let dev = device_of(&gw, &user, &pw, "16.1").await;
    cli_ok(&gw, &dir, &["trace", &user, &dev.device_id, "on"]).await;
    let file = dir.join(format!("{user}_{}.trace", dev.device_id));
    for _ in 0..12 {
        dev.folder_sync("0").await;
    }
    // Each entry is written on its own after its answer: wait for the last one.
    let mut rotated = file.clone().into_os_string();
    rotated.push(".1");
    let rotated = PathBuf::from(rotated);
    for _ in 0..200 {
        if rotated.exists() && std::fs::metadata(&file).is_ok() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert!(rotated.exists(), "no {}", rotated.display());
    for f in [&file, &rotated] {
        let len = std::fs::metadata(f).unwrap().len();
        assert!(len <= 4096, "{} has {len} bytes", f.display());
    }
    let total: usize = [&file, &rotated]
        .iter()
        .map(|f| {
            std::fs::read_to_string(f)
                .unwrap()
                .matches("request FolderSync")
                .count()
        })
        .sum();
    assert!((1..12).contains(&total), "{total} entries kept");
}

#[tokio::test]
async fn a_12_1_sendmail_is_traced_without_its_mime_body() {
    require_stack();
    let trace_dir = tempfile::tempdir().unwrap();
    let dir = trace_dir.path().to_path_buf();
    let d = dir.clone();
    let (gw, _) = start_gateway_server(GatewayOptions::default(), move |c| {
        c.devices.trace_dir = d;
    })
    .await;
    let (user, pw) = new_user("trace12");
    let dev = device_of(&gw, &user, &pw, "12.1").await;
    cli_ok(&gw, &dir, &["trace", &user, &dev.device_id, "on"]).await;
    let file = dir.join(format!("{user}_{}.trace", dev.device_id));
    let marker = format!("MIMEMARKER{:08x}", rand::random::<u32>());
    let url = format!("{}?{}&SaveInSent=T", dev.base, dev.query("SendMail"));
    let r = dev
        .post_raw(
            &url,
            mail("sent by 12.1", &marker)
                .replace("someone@example.test", &user)
                .replace("Sender <sender@example.org>", &user)
                .into_bytes(),
            "message/rfc822",
        )
        .await;
    assert_eq!(r.status, 200);
    let text = trace_with(&file, 1).await;
    assert!(text.contains("request SendMail"), "{text}");
    assert!(text.contains("[MIME message redacted:"), "{text}");
    assert!(!text.contains(&marker), "{text}");
    assert!(!text.contains(&pw), "{text}");
}
