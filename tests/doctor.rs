//! `eas-gateway doctor` (the real binary) through a real nginx with the deploy config (nothing
//! wrong) and with bad ones (a short read timeout with response buffering; gzip): it reports
//! the cut, the buffering and the compression. The doctor endpoint itself: a login unless
//! `server.doctor` is on, one probe per address. And `push.max_heartbeat_secs` caps what phones
//! are told (Ping Status 5, Sync Status 14 with Limit, for HeartbeatInterval and Wait).

mod common;
mod proxies;

use std::path::Path;
use std::time::Duration;

use common::*;
use eas_gateway::wbxml::tags::{airsync as a, ping as p};
use eas_gateway::wbxml::Element;
use proxies::*;

/// A plain-HTTP gateway for a proxy on 127.0.0.1, doctor endpoint open, heartbeats up to 120 s.
async fn gateway() -> (TestGateway, u16) {
    let (gw, _server) = start_gateway_server(GatewayOptions::default(), |c| {
        c.server.tls = None;
        c.server.trusted_proxies = vec!["127.0.0.1".parse().unwrap()];
        c.server.doctor = true;
        c.push.max_heartbeat_secs = 120;
    })
    .await;
    let port: u16 = gw.host().rsplit(':').next().unwrap().parse().unwrap();
    (gw, port)
}

/// Runs the doctor binary; returns (success, stdout).
async fn doctor(args: &[&str], ca: &Path) -> (bool, String) {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_eas-gateway"))
        .arg("doctor")
        .args(args)
        .arg("--ca-file")
        .arg(ca)
        .output()
        .await
        .expect("run eas-gateway doctor");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    println!("{stdout}{}", String::from_utf8_lossy(&out.stderr));
    (out.status.success(), stdout)
}

async fn nginx_with(upstream: u16, tweaks: &[(&str, &str)]) -> (tempfile::TempDir, Certs, Proxy) {
    let dir = tempfile::tempdir().unwrap();
    let c = certs(dir.path());
    let ports = Ports::free(upstream);
    let conf = nginx_config(dir.path(), &c, ports, tweaks);
    let proxy = start_nginx(dir.path(), &conf, ports).await;
    (dir, c, proxy)
}

#[tokio::test]
async fn doctor_finds_nothing_wrong_behind_the_deploy_nginx() {
    let (_gw, upstream) = gateway().await;
    let (_dir, c, proxy) = nginx_with(upstream, &[]).await;
    let (ok, out) = doctor(
        &["--url", &proxy.url(), "--hold", "8", "--stream", "4"],
        &c.cert,
    )
    .await;
    assert!(ok, "{out}\n{}", proxy.log());
    for want in [
        "the gateway sees 127.0.0.1 (X-Forwarded-For: believed)",
        "streaming (4 s): ok",
        "compression: none",
        "hold 8 s: ok",
        "largest heartbeat that survives: at least 8 s",
        "no problem found",
    ] {
        assert!(out.contains(want), "`{want}` missing:\n{out}");
    }
}

#[tokio::test]
async fn doctor_reports_a_short_read_timeout_and_response_buffering() {
    let (_gw, upstream) = gateway().await;
    let (_dir, c, proxy) = nginx_with(
        upstream,
        &[
            ("proxy_read_timeout 3600s;", "proxy_read_timeout 3s;"),
            ("proxy_buffering off;", "proxy_buffering on;"),
        ],
    )
    .await;
    let (ok, out) = doctor(
        &["--url", &proxy.url(), "--hold", "8", "--stream", "4"],
        &c.cert,
    )
    .await;
    assert!(!ok, "{out}");
    for want in [
        "streaming (4 s): BUFFERED",
        "compression: none",
        "hold 8 s: CUT after 3.",
        "(the proxy answered HTTP 504)",
        "largest heartbeat that survives: below 3 s",
        "proxy_read_timeout 180s",
    ] {
        assert!(out.contains(want), "`{want}` missing:\n{out}");
    }
}

#[tokio::test]
async fn doctor_reports_compression() {
    let (_gw, upstream) = gateway().await;
    let (_dir, c, proxy) = nginx_with(upstream, &[("gzip off;", "gzip on; gzip_types *;")]).await;
    let (ok, out) = doctor(
        &["--url", &proxy.url(), "--hold", "2", "--stream", "4"],
        &c.cert,
    )
    .await;
    assert!(!ok, "{out}");
    assert!(
        out.contains("compression: COMPRESSED: the proxy added Content-Encoding: gzip"),
        "{out}"
    );
    assert!(out.contains("hold 2 s: ok"), "{out}");
}

#[tokio::test]
async fn the_doctor_endpoint_wants_a_login_unless_opened_and_runs_one_probe_per_address() {
    let gw = start_gateway().await;
    let (user, pw) = new_user("doctor");
    let url = format!("{}/doctor", gw.base);
    let r = client().get(&url).send().await.unwrap();
    assert_eq!(r.status(), 401, "closed by default");
    let r = client()
        .get(&url)
        .basic_auth(&user, Some("wrong"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let r = client()
        .get(&url)
        .basic_auth(&user, Some(&pw))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let text = r.text().await.unwrap();
    assert!(text.contains("client: 127.0.0.1\n"), "{text}");
    assert!(text.contains("forwarded: none\n"), "{text}");
    // Holds are capped at the longest heartbeat (3540 s) plus a minute.
    assert!(text.contains("max_hold_secs: 3600\n"), "{text}");

    // One probe per address: a second hold while the first runs is refused.
    let first = {
        let (url, user, pw) = (url.clone(), user.clone(), pw.clone());
        tokio::spawn(async move {
            client()
                .get(format!("{url}?hold=3"))
                .basic_auth(&user, Some(&pw))
                .send()
                .await
                .unwrap()
                .text()
                .await
                .unwrap()
        })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    let r = client()
        .get(format!("{url}?hold=3"))
        .basic_auth(&user, Some(&pw))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 429);
    assert_eq!(first.await.unwrap(), "held 3\n");
    // A probe whose client went away frees its address.
    let r = client()
        .get(format!("{url}?hold=600"))
        .basic_auth(&user, Some(&pw))
        .timeout(Duration::from_secs(1))
        .send()
        .await;
    assert!(r.is_err(), "still holding");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let r = client()
        .get(format!("{url}?hold=1"))
        .basic_auth(&user, Some(&pw))
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        200,
        "the abandoned hold still holds the address"
    );

    // The doctor binary with a login, straight at the gateway.
    let pw_file = gw.dir.path().join("pw");
    std::fs::write(&pw_file, format!("{pw}\n")).unwrap();
    let host = gw.host();
    let (ok, out) = doctor(
        &[
            "--url",
            &format!("https://{host}"),
            "--user",
            &user,
            "--password-file",
            &pw_file.display().to_string(),
            "--hold",
            "2",
            "--stream",
            "2",
        ],
        &gw.dir.path().join("cert.pem"),
    )
    .await;
    assert!(ok, "{out}");
    assert!(out.contains("hold 2 s: ok"), "{out}");
}

/// MS-ASCMD: a HeartbeatInterval above the server's maximum is Ping Status 5 with the maximum
/// in HeartbeatInterval, and Sync Status 14 with the maximum in Limit; a Wait (minutes) above
/// it likewise. `push.max_heartbeat_secs` is that maximum.
#[tokio::test]
async fn max_heartbeat_caps_ping_and_sync() {
    let (gw, _server) = start_gateway_server(GatewayOptions::default(), |c| {
        c.push.max_heartbeat_secs = 120;
    })
    .await;
    let (dev, _user, _pw) = provisioned(&gw, "maxhb", "16.1").await;
    let inbox = folder_id(&dev, "Inbox").await;
    let key = sync(&dev, &inbox, "0", 10).await.key.expect("key");

    let ping = Element::new(p::PING)
        .text_child(p::HEARTBEAT_INTERVAL, "300")
        .child(
            Element::new(p::FOLDERS).child(
                Element::new(p::FOLDER)
                    .text_child(p::ID, inbox.as_str())
                    .text_child(p::CLASS, "Email"),
            ),
        );
    let body = dev.post("Ping", &ping).await.body.expect("Ping body");
    assert_eq!(body.text_of(p::STATUS), Some("5"), "{body:?}");
    assert_eq!(body.text_of(p::HEARTBEAT_INTERVAL), Some("120"));

    for (tag, value, limit) in [(a::HEARTBEAT_INTERVAL, "300", "120"), (a::WAIT, "5", "2")] {
        let mut req = sync_request(&inbox, &key, 10, None);
        req.push(Element::with_text(tag, value));
        let body = dev.post("Sync", &req).await.body.expect("a Sync body");
        assert_eq!(body.text_of(a::STATUS), Some("14"), "{value}: {body:?}");
        assert_eq!(body.text_of(a::LIMIT), Some(limit), "{value}");
    }
}
