//! The admin pages in a real browser: headless Chromium driven over WebDriver (chromedriver,
//! spoken to with plain HTTP + JSON), in front of a real gateway and the dev mail stack.
//!
//! Needs `chromium` and `chromedriver` on the PATH (Debian's `chromium chromium-driver`).
//! With `EAS_SCREENSHOTS=1` the test also saves the three pages into `docs/`.

mod common;

use std::time::{Duration, Instant};

use base64::Engine as _;
use common::*;
use eas_gateway::wbxml::Element;
use serde_json::{json, Value};

/// A chromedriver of this test and one browser session on it; both end on drop.
struct Browser {
    http: reqwest::Client,
    session: String,
    _driver: tokio::process::Child,
    _profile: tempfile::TempDir,
}

impl Browser {
    async fn start() -> Browser {
        let port = free_port();
        let driver = tokio::process::Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("chromedriver (apt-get install chromium chromium-driver)");
        let http = reqwest::Client::new();
        let base = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(r) = http.get(format!("{base}/status")).send().await {
                let v: Value = serde_json::from_slice(&r.bytes().await.unwrap()).unwrap();
                if v["value"]["ready"] == true {
                    break;
                }
            }
            assert!(Instant::now() < deadline, "chromedriver did not start");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let profile = tempfile::tempdir().unwrap();
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:loggingPrefs": {"browser": "ALL"},
            "goog:chromeOptions": {
                "binary": which("chromium"),
                "args": [
                    "--headless=new", "--no-sandbox", "--disable-gpu",
                    "--disable-background-networking", "--disable-component-update",
                    "--disable-sync", "--no-first-run",
                    format!("--user-data-dir={}", profile.path().display()),
                ],
            },
        }}});
        let mut b = Browser {
            http,
            session: format!("{base}/session"),
            _driver: driver,
            _profile: profile,
        };
        let v = b.call("POST", "", Some(caps)).await;
        let id = v["sessionId"].as_str().expect("a session").to_string();
        b.session = format!("{base}/session/{id}");
        b
    }

    /// One WebDriver command; returns its `value`.
    async fn call(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let url = format!("{}{path}", self.session);
        let req = match method {
            "GET" => self.http.get(&url),
            "DELETE" => self.http.delete(&url),
            _ => self
                .http
                .post(&url)
                .header("Content-Type", "application/json")
                .body(serde_json::to_vec(&body.unwrap_or(json!({}))).unwrap()),
        };
        let resp = req.send().await.expect("webdriver request");
        let status = resp.status();
        let v: Value = serde_json::from_slice(&resp.bytes().await.unwrap()).unwrap();
        assert!(status.is_success(), "{method} {path}: {v}");
        v["value"].clone()
    }

    async fn goto(&self, url: &str) {
        self.call("POST", "/url", Some(json!({"url": url}))).await;
    }

    async fn find(&self, css: &str) -> String {
        let v = self
            .call(
                "POST",
                "/element",
                Some(json!({"using": "css selector", "value": css})),
            )
            .await;
        v.as_object()
            .and_then(|o| o.values().next())
            .and_then(|v| v.as_str())
            .unwrap_or_else(|| panic!("no element {css}"))
            .to_string()
    }

    async fn click(&self, css: &str) {
        let id = self.find(css).await;
        self.call("POST", &format!("/element/{id}/click"), None)
            .await;
    }

    async fn source(&self) -> String {
        self.call("GET", "/source", None)
            .await
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    async fn url(&self) -> String {
        self.call("GET", "/url", None)
            .await
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    async fn script(&self, js: &str) -> Value {
        self.call(
            "POST",
            "/execute/sync",
            Some(json!({"script": js, "args": []})),
        )
        .await
    }

    /// Console messages at level SEVERE (script errors, CSP violations, failed loads).
    async fn console_errors(&self) -> Vec<String> {
        let v = self
            .call("POST", "/se/log", Some(json!({"type": "browser"})))
            .await;
        v.as_array()
            .map(|a| {
                a.iter()
                    .filter(|e| e["level"] == "SEVERE")
                    .map(|e| e["message"].as_str().unwrap_or_default().to_string())
                    // The browser asks for a favicon the admin listener does not have.
                    .filter(|m| !m.contains("favicon.ico"))
                    .collect()
            })
            .unwrap_or_default()
    }

    async fn screenshot(&self, name: &str, width: u32, height: u32) {
        if std::env::var("EAS_SCREENSHOTS").as_deref() != Ok("1") {
            return;
        }
        self.call(
            "POST",
            "/window/rect",
            Some(json!({"width": width, "height": height})),
        )
        .await;
        let png = self.call("GET", "/screenshot", None).await;
        let png = base64::engine::general_purpose::STANDARD
            .decode(png.as_str().unwrap())
            .unwrap();
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("docs")
            .join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, png).unwrap();
    }

    /// Waits until the page source contains `text`.
    async fn wait_for(&self, text: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let s = self.source().await;
            if s.contains(text) {
                return s;
            }
            assert!(Instant::now() < deadline, "{text:?} not on the page: {s}");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

fn which(name: &str) -> String {
    std::env::var_os("PATH")
        .and_then(|p| {
            std::env::split_paths(&p)
                .map(|d| d.join(name))
                .find(|f| f.is_file())
        })
        .map(|p| p.display().to_string())
        .unwrap_or_else(|| panic!("{name} is not installed"))
}

fn folder_sync_request() -> Element {
    use eas_gateway::wbxml::tags::folder_hierarchy as f;
    Element::new(f::FOLDER_SYNC).text_child(f::SYNC_KEY, "0")
}

#[tokio::test]
async fn an_admin_logs_in_sees_the_device_sync_and_wipes_it() {
    use eas_gateway::wbxml::tags::folder_hierarchy as f;
    use eas_gateway::wbxml::tags::provision as pv;
    require_stack();
    let (gw, _server) = start_gateway_server(
        GatewayOptions {
            admin: true,
            ..Default::default()
        },
        |_| {},
    )
    .await;
    let base = gw.admin.clone().unwrap();
    let (dev, user, _pw) = provisioned(&gw, "dashbrowser", "16.1").await;
    let inbox = folder_id(&dev, "Inbox").await;
    assert_eq!(
        sync(&dev, &inbox, "0", 10).await.status.as_deref(),
        Some("1")
    );

    let b = Browser::start().await;
    // Log in through the form.
    b.goto(&format!("{base}/devices")).await;
    let id = b.find("#token").await;
    b.call(
        "POST",
        &format!("/element/{id}/value"),
        Some(json!({"text": ADMIN_TOKEN})),
    )
    .await;
    b.click("button[type=submit]").await;
    let list = b.wait_for(&dev.device_id).await;
    // The log so far (read and emptied): the 401 that brought up the login form, only.
    let before = b.console_errors().await;
    assert!(before.iter().all(|m| m.contains("401")), "{before:?}");
    assert!(list.contains(&user), "{list}");
    b.screenshot("dashboard-devices.png", 1100, 500).await;

    b.goto(&format!("{base}/")).await;
    b.wait_for("Requests per minute").await;
    b.screenshot("dashboard-overview.png", 1000, 800).await;

    // The device's page, through its link, shows the Sync in its log.
    b.goto(&format!("{base}/devices")).await;
    b.click(&format!("a[href$=\"/{}\"]", dev.device_id)).await;
    b.wait_for("<td>Sync</td>").await;
    assert!(b.url().await.ends_with(&dev.device_id));
    b.screenshot("dashboard-device.png", 412, 1400).await;
    assert_eq!(b.script("return window.adminErrors;").await, json!([]));
    assert_eq!(b.console_errors().await, Vec::<String>::new());

    // Wipe, confirmed in the dialog.
    b.click("#wipe").await;
    let alert = b.call("GET", "/alert/text", None).await;
    assert!(
        alert
            .as_str()
            .unwrap_or_default()
            .contains("Wipe the whole device"),
        "{alert}"
    );
    b.call("POST", "/alert/accept", None).await;
    let page = b.wait_for("requested").await;
    assert!(page.contains(&dev.device_id));
    assert_eq!(b.console_errors().await, Vec::<String>::new());

    let r = dev.post("FolderSync", &folder_sync_request()).await;
    assert_eq!(r.body.as_ref().unwrap().text_of(f::STATUS), Some("140"));
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
    // The open page's log refreshes by itself and shows the refused FolderSync.
    b.wait_for("<td>FolderSync</td><td>200</td><td>140</td>")
        .await;
    assert_eq!(b.script("return window.adminErrors;").await, json!([]));
    assert_eq!(b.console_errors().await, Vec::<String>::new());

    // Without the token or a session the admin paths are refused.
    let plain = reqwest::Client::new();
    let device_path = b.url().await.replacen(&base, "", 1);
    for path in ["/", "/devices", device_path.as_str(), "/metrics"] {
        let r = plain.get(format!("{base}{path}")).send().await.unwrap();
        assert_eq!(r.status().as_u16(), 401, "{path}");
    }
    let r = plain
        .post(format!("{base}{device_path}/wipe"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 401);
    b.call("DELETE", "", None).await;
}
