//! The admin listener of a real gateway in front of the dev mail stack: health checks,
//! the bearer token, and `/metrics` parsed with a Prometheus text-format parser after a
//! scripted session.

mod common;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use common::*;
use eas_gateway::wbxml::tags::ping as p;
use eas_gateway::wbxml::Element;
use prometheus_parse::{Scrape, Value};
use tokio::net::TcpStream;

/// The metrics are the process's: tests that make EAS requests take turns.
static EAS_TRAFFIC: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

async fn admin_gateway(opts: GatewayOptions) -> (TestGateway, TestServer) {
    require_stack();
    start_gateway_server(
        GatewayOptions {
            admin: true,
            ..opts
        },
        |c| {
            c.push.min_heartbeat_secs = 2;
        },
    )
    .await
}

async fn get(url: &str, token: Option<&str>) -> (u16, String) {
    let mut req = client().get(url);
    if let Some(t) = token {
        req = req.header("Authorization", format!("Bearer {t}"));
    }
    let resp = req.send().await.expect("admin request");
    let status = resp.status().as_u16();
    (status, resp.text().await.expect("admin body"))
}

async fn scrape(gw: &TestGateway) -> (Scrape, String) {
    let base = gw.admin.as_ref().expect("admin listener");
    let (status, text) = get(&format!("{base}/metrics"), Some(ADMIN_TOKEN)).await;
    assert_eq!(status, 200, "{text}");
    let parsed = Scrape::parse(text.lines().map(|l| Ok(l.to_string()))).expect("parse metrics");
    (parsed, text)
}

/// The sum of the samples named `name` whose labels include `labels` (counters, gauges and
/// the `_count`/`_sum` lines of histograms).
fn value(s: &Scrape, name: &str, labels: &[(&str, &str)]) -> f64 {
    s.samples
        .iter()
        .filter(|x| x.metric == name)
        .filter(|x| labels.iter().all(|(k, v)| x.labels.get(k) == Some(*v)))
        .map(|x| match &x.value {
            Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => *v,
            other => panic!("{name} is not a plain sample: {other:?}"),
        })
        .sum()
}

/// The `+Inf` bucket of a histogram with these labels.
fn histogram_count(s: &Scrape, name: &str, labels: &[(&str, &str)]) -> f64 {
    s.samples
        .iter()
        .filter(|x| x.metric == name)
        .filter(|x| labels.iter().all(|(k, v)| x.labels.get(k) == Some(*v)))
        .map(|x| match &x.value {
            Value::Histogram(buckets) => buckets
                .iter()
                .find(|b| b.less_than.is_infinite())
                .map_or(0.0, |b| b.count),
            other => panic!("{name} is not a histogram: {other:?}"),
        })
        .sum()
}

#[tokio::test]
async fn health_checks_answer_without_a_token_and_everything_else_needs_it() {
    let (gw, _server) = admin_gateway(GatewayOptions::default()).await;
    let base = gw.admin.clone().unwrap();
    assert_eq!(
        get(&format!("{base}/healthz"), None).await,
        (200, "ok\n".into())
    );
    let (status, body) = get(&format!("{base}/readyz"), None).await;
    assert_eq!((status, body.as_str()), (200, "ready\n"));
    for path in ["/metrics", "/", "/devices", "/nothing-here"] {
        let url = format!("{base}{path}");
        assert_eq!(get(&url, None).await.0, 401, "{path} without a token");
        assert_eq!(
            get(&url, Some("test-admin-token-0123456788")).await.0,
            401,
            "{path} with a wrong token"
        );
        let resp = client()
            .get(&url)
            .header("Authorization", format!("Basic {ADMIN_TOKEN}"))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status().as_u16(), 401, "{path} with another scheme");
    }
    let (status, text) = get(&format!("{base}/metrics"), Some(ADMIN_TOKEN)).await;
    assert_eq!(status, 200);
    assert!(text.contains("# TYPE eas_push_waiting gauge"), "{text}");
}

#[tokio::test]
async fn readyz_is_503_when_the_mail_server_does_not_answer() {
    let (gw, _server) = admin_gateway(GatewayOptions {
        imap_port: Some(free_port()),
        ..Default::default()
    })
    .await;
    let base = gw.admin.clone().unwrap();
    let (status, body) = get(&format!("{base}/readyz"), None).await;
    assert_eq!(status, 503);
    // One line with the reason, no address or error text.
    assert_eq!(body, "mail server unavailable\n");
    // The process still serves.
    assert_eq!(get(&format!("{base}/healthz"), None).await.0, 200);
}

#[tokio::test]
async fn the_phone_facing_port_serves_no_admin_path() {
    let _turn = EAS_TRAFFIC.lock().await;
    let (gw, _server) = admin_gateway(GatewayOptions::default()).await;
    let phone = gw.base.trim_end_matches("/Microsoft-Server-ActiveSync");
    for path in ["/healthz", "/readyz", "/metrics", "/devices"] {
        let resp = client()
            .get(format!("{phone}{path}"))
            .header("Authorization", format!("Bearer {ADMIN_TOKEN}"))
            .send()
            .await
            .unwrap();
        assert_eq!(
            resp.status().as_u16(),
            404,
            "{path} on the phone-facing port"
        );
    }
}

#[test]
fn the_admin_listener_may_not_share_the_phone_facing_address() {
    let dir = tempfile::tempdir().unwrap();
    let base = "[server]\nlisten = \"0.0.0.0:8443\"\n[imap]\nhost = \"127.0.0.1\"\nport = 143\n\
                [smtp]\nhost = \"127.0.0.1\"\nport = 587\n[state]\nurl = \"sqlite::memory:\"\n\
                [identity]\ndomain = \"example.test\"\n";
    let with =
        |admin: &str| eas_gateway::config::Config::from_toml(&format!("{base}{admin}"), dir.path());
    assert!(with("").unwrap().admin.is_none(), "off by default");
    let err = with("[admin]\nlisten = \"127.0.0.1:8443\"\ntoken_file = \"t\"\n").unwrap_err();
    assert!(err.to_string().contains("admin.listen"), "{err}");
    let err = with("[admin]\nlisten = \"127.0.0.1:9090\"\n").unwrap_err();
    assert!(err.to_string().contains("admin.token_file"), "{err}");
    let ok = with("[admin]\nlisten = \"127.0.0.1:9090\"\ntoken_file = \"t\"\n").unwrap();
    assert_eq!(ok.admin.unwrap().token_file, dir.path().join("t"));
}

/// Delivers a mail through Postfix ([`deliver_smtp`]).
async fn deliver(to: &str, subject: &str) {
    deliver_smtp(to, subject, "pushed").await;
}

#[tokio::test]
async fn metrics_count_a_scripted_session_exactly() {
    let _turn = EAS_TRAFFIC.lock().await;
    let (gw, server) = admin_gateway(GatewayOptions::default()).await;
    let (user, pw) = new_user("metrics");
    let seeded: Vec<(String, Option<String>)> = (0..4)
        .map(|i| (mail(&format!("seeded {i}"), "body"), None))
        .collect();
    seed(&user, &pw, "INBOX", &seeded).await;
    let (before, _) = scrape(&gw).await;

    // 2 Provisions, 1 FolderSync.
    let dev = device_of(&gw, &user, &pw, "16.1").await;
    let inbox = folder_id(&dev, "Inbox").await;
    // Exactly 3 Syncs: key 0, the 4 seeded mails, nothing new.
    let first = sync(&dev, &inbox, "0", 100).await;
    let second = sync(&dev, &inbox, first.key.as_deref().unwrap(), 100).await;
    assert_eq!(second.adds.len(), 4, "{second:?}");
    let third = sync(&dev, &inbox, second.key.as_deref().unwrap(), 100).await;
    assert!(third.adds.is_empty(), "{third:?}");
    // 1 Ping, woken by a delivery.
    let waiting = server.gateway.push.stats().waiters;
    let pinger = dev.clone();
    let ping_body = Element::new(p::PING)
        .text_child(p::HEARTBEAT_INTERVAL, "60")
        .child(
            Element::new(p::FOLDERS).child(
                Element::new(p::FOLDER)
                    .text_child(p::ID, inbox.as_str())
                    .text_child(p::CLASS, "Email"),
            ),
        );
    let task = tokio::spawn(async move { pinger.post("Ping", &ping_body).await });
    let started = Instant::now();
    while server.gateway.push.stats().waiters <= waiting
        && started.elapsed() < Duration::from_secs(10)
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (during, _) = scrape(&gw).await;
    assert!(value(&during, "eas_push_waiting", &[]) >= 1.0);
    // Its first look at the mailbox is a few milliseconds on loopback.
    tokio::time::sleep(Duration::from_millis(500)).await;
    deliver(&user, "wake up").await;
    let answer = task.await.unwrap();
    assert_eq!(answer.status, 200);
    let status = answer
        .body
        .as_ref()
        .and_then(|b| b.text_of(p::STATUS))
        .map(String::from);
    assert_eq!(status.as_deref(), Some("2"), "the Ping reports changes");
    // 1 authentication failure.
    let mut wrong = dev.clone();
    wrong.password = "not-the-password".into();
    let r = wrong
        .post(
            "FolderSync",
            &Element::new(eas_gateway::wbxml::tags::folder_hierarchy::FOLDER_SYNC),
        )
        .await;
    assert_eq!(r.status, 401);

    let (after, text) = scrape(&gw).await;
    let delta = |name: &str, labels: &[(&str, &str)]| {
        value(&after, name, labels) - value(&before, name, labels)
    };
    let hist_delta = |name: &str, labels: &[(&str, &str)]| {
        histogram_count(&after, name, labels) - histogram_count(&before, name, labels)
    };
    let sync_ok = [("command", "Sync"), ("http_status", "200")];
    assert_eq!(
        delta("eas_requests_total", &[("command", "Sync")]),
        3.0,
        "{text}"
    );
    assert_eq!(delta("eas_requests_total", &sync_ok), 3.0);
    assert_eq!(
        delta(
            "eas_requests_total",
            &[("command", "Ping"), ("eas_status", "2")]
        ),
        1.0
    );
    assert_eq!(
        delta("eas_requests_total", &[("command", "Provision")]),
        2.0
    );
    // Two FolderSyncs of the device, one refused.
    assert_eq!(
        delta(
            "eas_requests_total",
            &[("command", "FolderSync"), ("http_status", "200")]
        ),
        1.0
    );
    assert_eq!(
        delta(
            "eas_requests_total",
            &[("command", "FolderSync"), ("http_status", "401")]
        ),
        1.0
    );
    assert_eq!(delta("eas_requests_total", &[]), 8.0, "{text}");
    assert_eq!(
        delta("eas_request_duration_seconds_count", &[("command", "Sync")]),
        3.0
    );
    assert_eq!(
        hist_delta("eas_request_duration_seconds", &[("command", "Sync")]),
        3.0
    );
    assert_eq!(
        hist_delta("eas_request_duration_seconds", &[("command", "Ping")]),
        1.0
    );
    assert_eq!(
        delta(
            "eas_push_waits_ended_total",
            &[("kind", "ping"), ("outcome", "changed")]
        ),
        1.0
    );
    assert_eq!(delta("eas_push_waits_ended_total", &[]), 1.0);
    assert_eq!(hist_delta("eas_push_wake_duration_seconds", &[]), 1.0);
    // The Syncs fetched mail: IMAP round trips were timed, and connections are open.
    assert!(
        hist_delta(
            "eas_imap_command_duration_seconds",
            &[("command", "UID FETCH")]
        ) >= 1.0,
        "UID FETCH round trips: {text}"
    );
    assert!(value(&after, "eas_imap_connections", &[]) >= 1.0);
    println!(
        "push wake-up (watcher event -> Ping woken): {:.1} ms; 3 Syncs: {:.1} ms in all",
        delta("eas_push_wake_duration_seconds_sum", &[]) * 1000.0,
        delta("eas_request_duration_seconds_sum", &[("command", "Sync")]) * 1000.0
    );
    assert_eq!(
        delta(
            "eas_sync_items_total",
            &[("direction", "to_device"), ("op", "add")]
        ),
        4.0
    );
    assert_eq!(
        delta("eas_sync_items_total", &[("direction", "from_device")]),
        0.0
    );
    assert_eq!(delta("eas_auth_failures_total", &[]), 1.0);
    assert_eq!(delta("eas_auth_throttled_total", &[]), 0.0);
    assert_eq!(delta("eas_sync_key_resets_total", &[]), 0.0);
    assert_eq!(value(&after, "eas_push_waiting", &[]), 0.0);
    // The 7 authenticated requests each touch the store at least once.
    assert!(hist_delta("eas_store_call_duration_seconds", &[]) >= 7.0);

    // No label value names the user, the device or an address.
    let mut labels: HashMap<String, String> = HashMap::new();
    for s in &after.samples {
        for (k, v) in s.labels.iter() {
            labels.insert(format!("{}:{k}", s.metric), v.clone());
        }
    }
    let local = user.split('@').next().unwrap();
    for (k, v) in &labels {
        for secret in [user.as_str(), local, dev.device_id.as_str(), "127.0.0.1"] {
            assert!(!v.contains(secret), "label {k}={v} carries {secret}");
        }
    }
    assert!(!text.contains(&user) && !text.contains(&dev.device_id));

    // A Sync with a key the gateway never issued: Status 3, counted as a reset by cause.
    let bogus = sync(&dev, &inbox, "999", 100).await;
    assert_eq!(bogus.status.as_deref(), Some("3"), "{bogus:?}");
    let (reset, _) = scrape(&gw).await;
    let resets = |s: &Scrape| {
        value(
            s,
            "eas_sync_key_resets_total",
            &[("command", "Sync"), ("cause", "unknown_key")],
        )
    };
    assert_eq!(resets(&reset) - resets(&after), 1.0);
    assert_eq!(
        value(&reset, "eas_sync_key_resets_total", &[])
            - value(&after, "eas_sync_key_resets_total", &[]),
        1.0
    );

    // The devices page (with the token) lists the device that just synced.
    let base = gw.admin.clone().unwrap();
    let resp = client()
        .get(format!("{base}/devices"))
        .header("Authorization", format!("Bearer {ADMIN_TOKEN}"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let csp = resp.headers()["content-security-policy"].to_str().unwrap();
    assert!(csp.starts_with("default-src 'none'"), "{csp}");
    let html = resp.text().await.unwrap();
    assert!(html.contains(&user), "{html}");
    assert!(html.contains(&dev.device_id), "{html}");
    assert!(html.contains("<td>16.1</td>"), "{html}");
    assert!(!html.contains("<script"), "no script on the page");
}

/// Writes a config for the binary: phone-facing on `port`, admin on `admin_port`.
fn binary_config(dir: &std::path::Path, port: u16, admin_port: u16) -> std::path::PathBuf {
    let config = dir.join("gw.toml");
    std::fs::write(
        &config,
        format!(
            "[server]\nlisten = \"127.0.0.1:{port}\"\n[imap]\nhost = \"127.0.0.1\"\nport = 143\n\
             [smtp]\nhost = \"127.0.0.1\"\nport = 587\n[state]\nurl = \"sqlite://{}\"\n\
             [identity]\ndomain = \"{DOMAIN}\"\n\
             [admin]\nlisten = \"127.0.0.1:{admin_port}\"\ntoken_file = \"admin.token\"\n",
            dir.join("state.db").display()
        ),
    )
    .unwrap();
    config
}

#[tokio::test]
async fn the_binary_serves_the_admin_listener_until_sigterm() {
    require_stack();
    let dir = tempfile::tempdir().unwrap();
    let (port, admin_port) = (free_port(), free_port());
    let config = binary_config(dir.path(), port, admin_port);

    // Without its token file the gateway does not start.
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_eas-gateway"))
        .args(["serve", "--config"])
        .arg(&config)
        .output()
        .await
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("admin token file"), "{stderr}");

    std::fs::write(dir.path().join("admin.token"), ADMIN_TOKEN).unwrap();
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_eas-gateway"))
        .args(["serve", "--config"])
        .arg(&config)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let admin = format!("http://127.0.0.1:{admin_port}");
    let mut up = false;
    for _ in 0..100 {
        if TcpStream::connect(("127.0.0.1", admin_port)).await.is_ok() {
            up = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(up, "the admin listener did not start");
    assert_eq!(get(&format!("{admin}/healthz"), None).await.0, 200);
    assert_eq!(get(&format!("{admin}/readyz"), None).await.0, 200);
    assert_eq!(get(&format!("{admin}/metrics"), None).await.0, 401);
    assert_eq!(
        get(&format!("{admin}/metrics"), Some(ADMIN_TOKEN)).await.0,
        200
    );

    let pid = child.id().expect("pid").to_string();
    let killed = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    assert!(killed.success());
    let exit = tokio::time::timeout(Duration::from_secs(30), child.wait())
        .await
        .expect("the process exits")
        .unwrap();
    assert!(exit.success(), "{exit:?}");
    assert!(
        TcpStream::connect(("127.0.0.1", admin_port)).await.is_err(),
        "the admin listener is closed"
    );
}

#[tokio::test]
async fn a_browser_logs_in_with_the_token_and_gets_a_session_cookie() {
    let (gw, _server) = admin_gateway(GatewayOptions::default()).await;
    let base = gw.admin.clone().unwrap();
    let no_redirects = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    // The devices page without credentials: 401, with the login form.
    let resp = no_redirects
        .get(format!("{base}/devices"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 401);
    assert!(resp.text().await.unwrap().contains("action=\"/login\""));
    let (status, form) = get(&format!("{base}/login"), None).await;
    assert_eq!(status, 200);
    assert!(form.contains("name=\"token\""), "{form}");

    let post = |token: &'static str| {
        no_redirects
            .post(format!("{base}/login"))
            .header("Content-Type", "application/x-www-form-urlencoded")
            .body(format!("token={token}"))
            .send()
    };
    let wrong = post("test-admin-token-0123456788").await.unwrap();
    assert_eq!(wrong.status().as_u16(), 401);
    assert!(wrong.headers().get("set-cookie").is_none());

    let right = post(ADMIN_TOKEN).await.unwrap();
    assert_eq!(right.status().as_u16(), 303);
    assert_eq!(right.headers()["location"], "/devices");
    let cookie = right.headers()["set-cookie"].to_str().unwrap().to_string();
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
        "{cookie}"
    );
    assert!(
        !cookie.contains(ADMIN_TOKEN),
        "the token itself is not the cookie"
    );
    let session = cookie.split(';').next().unwrap().to_string();

    let page = no_redirects
        .get(format!("{base}/devices"))
        .header("Cookie", &session)
        .send()
        .await
        .unwrap();
    assert_eq!(page.status().as_u16(), 200);
    assert!(page
        .text()
        .await
        .unwrap()
        .contains("<table id=\"devices\">"));
    // A made-up session is not one.
    let forged = no_redirects
        .get(format!("{base}/devices"))
        .header("Cookie", format!("eas_admin_session={}", "0".repeat(64)))
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status().as_u16(), 401);
}

/// Logs in through the form; returns the `Cookie` header value of the session.
async fn login_session(http: &reqwest::Client, base: &str) -> String {
    let resp = http
        .post(format!("{base}/login"))
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body(format!("token={ADMIN_TOKEN}"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 303);
    let cookie = resp.headers()["set-cookie"].to_str().unwrap().to_string();
    cookie.split(';').next().unwrap().to_string()
}

async fn page(http: &reqwest::Client, url: &str, cookie: &str) -> (u16, String, String) {
    let resp = http.get(url).header("Cookie", cookie).send().await.unwrap();
    let status = resp.status().as_u16();
    let csp = resp
        .headers()
        .get("content-security-policy")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    (status, resp.text().await.unwrap(), csp)
}

fn folder_sync_status(dev_reply: &Element) -> Option<String> {
    use eas_gateway::wbxml::tags::folder_hierarchy as f;
    dev_reply.text_of(f::STATUS).map(String::from)
}

async fn folder_sync_any(dev: &TestDevice) -> Reply {
    use eas_gateway::wbxml::tags::folder_hierarchy as f;
    dev.post(
        "FolderSync",
        &Element::new(f::FOLDER_SYNC).text_child(f::SYNC_KEY, "0"),
    )
    .await
}

#[tokio::test]
async fn the_device_page_shows_its_log_and_wipes_it_with_the_session_s_form_token() {
    use eas_gateway::wbxml::tags::provision as pv;
    let _turn = EAS_TRAFFIC.lock().await;
    let (gw, _server) = admin_gateway(GatewayOptions::default()).await;
    let base = gw.admin.clone().unwrap();
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let (dev, user, _pw) = provisioned(&gw, "dashdev", "16.1").await;
    let inbox = folder_id(&dev, "Inbox").await;
    let synced = sync(&dev, &inbox, "0", 10).await;
    assert_eq!(synced.status.as_deref(), Some("1"));

    let cookie = login_session(&http, &base).await;
    let path = format!("/devices/{}/{}", user.replace('@', "%40"), dev.device_id);
    // The devices table links to the page.
    let (status, list, _) = page(&http, &format!("{base}/devices"), &cookie).await;
    assert_eq!(status, 200);
    // (minijinja writes `/` in attributes as `&#x2f;`, which browsers read as `/`.)
    let list = list.replace("&#x2f;", "/");
    assert!(list.contains(&format!("href=\"{path}\"")), "{list}");
    // Filtered by user: this device, or none.
    let local = user.split('@').next().unwrap_or_default();
    let url = format!("{base}/devices?user={local}&seen=hour&sort=type");
    let (status, list, _) = page(&http, &url, &cookie).await;
    assert_eq!(status, 200);
    assert!(list.contains(&dev.device_id), "{list}");
    let (_, list, _) = page(
        &http,
        &format!("{base}/devices?user=nobody-at-all"),
        &cookie,
    )
    .await;
    assert!(!list.contains(&dev.device_id), "{list}");

    // The request log is written after the response: wait for the Sync to show.
    let deadline = Instant::now() + Duration::from_secs(10);
    let (device_page, csp) = loop {
        let (status, body, csp) = page(&http, &format!("{base}{path}"), &cookie).await;
        assert_eq!(status, 200, "{body}");
        if body.contains("<td>Sync</td>") {
            break (body, csp);
        }
        assert!(Instant::now() < deadline, "no Sync in the log: {body}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(device_page.contains(&dev.device_id));
    assert!(
        device_page.contains("Folders (FolderSync key"),
        "{device_page}"
    );
    assert!(device_page.contains("<script src=\"/admin.js\">"));
    assert!(csp.contains("script-src 'self'") && !csp.contains("unsafe-inline'; script"));
    let (status, rows, _) = page(&http, &format!("{base}{path}/log"), &cookie).await;
    assert_eq!(status, 200);
    assert!(rows.contains("<td>Sync</td>"), "{rows}");
    let (status, js, _) = page(&http, &format!("{base}/admin.js"), &cookie).await;
    assert_eq!(status, 200);
    assert!(js.contains("confirm("));
    let csrf = device_page
        .split("name=\"csrf\" value=\"")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .expect("the action forms carry a token")
        .to_string();
    assert_eq!(csrf.len(), 64);

    let post = |cookie: Option<&str>, body: String| {
        let mut req = http
            .post(format!("{base}{path}/wipe"))
            .header("Content-Type", "application/x-www-form-urlencoded")
            .body(body);
        if let Some(c) = cookie {
            req = req.header("Cookie", c);
        }
        req.send()
    };
    // Without the form's token, with another one, or without a session: refused.
    assert_eq!(
        post(Some(&cookie), String::new())
            .await
            .unwrap()
            .status()
            .as_u16(),
        403
    );
    assert_eq!(
        post(Some(&cookie), format!("csrf={}", "0".repeat(64)))
            .await
            .unwrap()
            .status()
            .as_u16(),
        403
    );
    assert_eq!(
        post(None, format!("csrf={csrf}"))
            .await
            .unwrap()
            .status()
            .as_u16(),
        401
    );
    let other = login_session(&http, &base).await;
    assert_eq!(
        post(Some(&other), format!("csrf={csrf}"))
            .await
            .unwrap()
            .status()
            .as_u16(),
        403,
        "the token is the session's own"
    );
    let r = folder_sync_any(&dev).await;
    assert_eq!(
        folder_sync_status(r.body.as_ref().unwrap()).as_deref(),
        Some("1")
    );

    // With it: the device's next request is sent to Provision, which carries RemoteWipe.
    let done = post(Some(&cookie), format!("csrf={csrf}")).await.unwrap();
    assert_eq!(done.status().as_u16(), 303);
    assert_eq!(done.headers()["location"], path.as_str());
    let r = folder_sync_any(&dev).await;
    assert_eq!(
        folder_sync_status(r.body.as_ref().unwrap()).as_deref(),
        Some("140")
    );
    let r = dev
        .post(
            "Provision",
            &Element::new(pv::PROVISION).child(Element::new(pv::POLICIES).child(
                Element::new(pv::POLICY).text_child(pv::POLICY_TYPE, "MS-EAS-Provisioning-WBXML"),
            )),
        )
        .await;
    let body = r.body.expect("Provision body");
    assert!(body.first(pv::REMOTE_WIPE).is_some(), "{body:?}");
    let (_, after, _) = page(&http, &format!("{base}{path}"), &cookie).await;
    assert!(after.contains("requested"), "{after}");

    // An unknown device and unknown action.
    let (status, _, _) = page(&http, &format!("{base}/devices/nobody%40x/NODEV"), &cookie).await;
    assert_eq!(status, 404);
    let resp = http
        .post(format!("{base}{path}/explode"))
        .header("Cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 405);
}

#[tokio::test]
async fn the_overview_counts_requests_errors_and_devices_seen_today() {
    let _turn = EAS_TRAFFIC.lock().await;
    let (gw, _server) = admin_gateway(GatewayOptions::default()).await;
    let base = gw.admin.clone().unwrap();
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let (status, login, _) = page(&http, &format!("{base}/"), "").await;
    assert_eq!(status, 401);
    assert!(login.contains("action=\"/login\""));

    let (dev, _user, _pw) = provisioned(&gw, "dashover", "16.1").await;
    dev.folder_sync("0").await;
    // A Sync of a folder the device does not have: an error the log keeps.
    let bad = sync(&dev, "no-such-folder", "0", 10).await;
    assert_ne!(bad.status.as_deref(), Some("1"));

    let cookie = login_session(&http, &base).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    let overview = loop {
        let (status, body, _) = page(&http, &format!("{base}/"), &cookie).await;
        assert_eq!(status, 200, "{body}");
        // Provision twice, FolderSync, Sync.
        if body.contains("<b>4</b>requests in the last hour") {
            break body;
        }
        assert!(Instant::now() < deadline, "requests not counted: {body}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(
        overview.contains("<b>1</b>devices seen today (of 1)"),
        "{overview}"
    );
    assert!(overview.contains("<b>0</b>Pings waiting now"), "{overview}");
    assert!(overview.contains("<svg id=\"chart\""));
    assert_eq!(overview.matches("<rect ").count(), 60);
    assert!(overview.contains("<td>Sync</td><td>1</td>"), "{overview}");
}
