//! Push measurement against the dev mail stack (`deploy/dev/mailstack.sh start`), not a test:
//!
//! 1. latency from the end of SMTP DATA (Postfix, port 25) to the answer of a waiting Ping,
//!    over `PUSH_BENCH_DELIVERIES` deliveries (default 20), next to a raw IMAP IDLE client on
//!    the same INBOX measured in the same run;
//! 2. the gateway process's RSS and CPU before and while it holds `PUSH_BENCH_PINGS` idle
//!    Pings (default 2000) of devices spread over `PUSH_BENCH_USERS` users (default 20), and
//!    its IMAP connections meanwhile.
//!
//! The gateway runs as its own process (the `eas-gateway` binary, plain HTTP) so its memory is
//! measured alone. Run: `cargo bench --bench push` (as root, for the users.d files).

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;
use eas_gateway::wbxml::tags::{airsync as a, folder_hierarchy as f, ping as p, provision as pv};
use eas_gateway::wbxml::{self, Element, Limits};
use futures::StreamExt;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

const DOMAIN: &str = "example.test";

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn new_user(prefix: &str) -> (String, String) {
    let n: u64 = rand::random();
    let address = format!("{prefix}-{n:016x}@{DOMAIN}");
    let password = format!("pw-{n:x}");
    let dir = std::env::var("EAS_DEV_DIR").unwrap_or_else(|_| "/var/lib/eas-gateway-dev".into());
    let users_d = PathBuf::from(dir).join("dovecot/users.d");
    let tmp = users_d.join(format!(".{address}.tmp"));
    std::fs::write(&tmp, format!("{address}:{{PLAIN}}{password}::::::\n")).expect("users.d");
    std::fs::rename(&tmp, users_d.join(&address)).expect("users.d rename");
    (address, password)
}

struct Gateway {
    child: Child,
    base: String,
    _dir: tempfile::TempDir,
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_gateway() -> Gateway {
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let toml = format!(
        r#"
[server]
listen = "127.0.0.1:{port}"
[imap]
host = "127.0.0.1"
port = 143
security = "none"
[smtp]
host = "127.0.0.1"
port = 587
security = "none"
[state]
url = "sqlite://{db}"
[identity]
domain = "{DOMAIN}"
"#,
        db = dir.path().join("state.db").display()
    );
    let cfg = dir.path().join("gw.toml");
    std::fs::write(&cfg, toml).unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_eas-gateway"))
        .arg("serve")
        .arg("--config")
        .arg(&cfg)
        .env("EAS_LOG", "warn")
        .stdout(Stdio::null())
        .spawn()
        .expect("start eas-gateway");
    for _ in 0..100 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Gateway {
        child,
        base: format!("http://127.0.0.1:{port}/Microsoft-Server-ActiveSync"),
        _dir: dir,
    }
}

#[derive(Clone)]
struct Device {
    http: reqwest::Client,
    base: String,
    user: String,
    password: String,
    id: String,
    policy_key: Option<u32>,
}

impl Device {
    fn new(gw: &Gateway, http: &reqwest::Client, user: &str, password: &str) -> Device {
        Device {
            http: http.clone(),
            base: gw.base.clone(),
            user: user.into(),
            password: password.into(),
            id: format!("BENCH{:016X}", rand::random::<u64>()),
            policy_key: None,
        }
    }

    fn auth(&self) -> String {
        let raw = format!("{}:{}", self.user, self.password);
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(raw)
        )
    }

    fn url(&self, cmd: &str) -> String {
        format!(
            "{}?Cmd={cmd}&User={}&DeviceId={}&DeviceType=Bench",
            self.base, self.user, self.id
        )
    }

    async fn post(&self, cmd: &str, body: &Element) -> Option<Element> {
        let mut req = self
            .http
            .post(self.url(cmd))
            .header("Authorization", self.auth())
            .header("MS-ASProtocolVersion", "16.1")
            .header("Content-Type", "application/vnd.ms-sync.wbxml")
            .body(wbxml::encode(body));
        if let Some(k) = self.policy_key {
            req = req.header("X-MS-PolicyKey", k.to_string());
        }
        let resp = req.send().await.expect("request");
        assert_eq!(resp.status().as_u16(), 200, "{cmd}");
        let raw = resp.bytes().await.expect("body");
        if raw.is_empty() {
            return None;
        }
        Some(wbxml::decode(raw, &Limits::default()).expect("WBXML"))
    }

    async fn provision(&mut self) {
        let policy = |key: Option<u32>| {
            let mut pol =
                Element::new(pv::POLICY).text_child(pv::POLICY_TYPE, "MS-EAS-Provisioning-WBXML");
            if let Some(k) = key {
                pol = pol
                    .text_child(pv::POLICY_KEY, k.to_string())
                    .text_child(pv::STATUS, "1");
            }
            Element::new(pv::PROVISION).child(Element::new(pv::POLICIES).child(pol))
        };
        let key_of = |e: &Element| -> u32 {
            e.first(pv::POLICIES)
                .and_then(|x| x.first(pv::POLICY))
                .and_then(|x| x.text_of(pv::POLICY_KEY))
                .and_then(|k| k.parse().ok())
                .expect("PolicyKey")
        };
        let r = self.post("Provision", &policy(None)).await.expect("body");
        let temp = key_of(&r);
        self.policy_key = Some(temp);
        let r = self
            .post("Provision", &policy(Some(temp)))
            .await
            .expect("body");
        self.policy_key = Some(key_of(&r));
    }

    async fn inbox_id(&self) -> String {
        let r = self
            .post(
                "FolderSync",
                &Element::new(f::FOLDER_SYNC).text_child(f::SYNC_KEY, "0"),
            )
            .await
            .expect("FolderSync body");
        r.first(f::CHANGES)
            .and_then(|c| {
                c.all(f::ADD)
                    .find(|x| x.text_of(f::TYPE) == Some("2"))
                    .and_then(|x| x.text_of(f::SERVER_ID).map(String::from))
            })
            .expect("Inbox")
    }

    /// Syncs until nothing is left; returns the key.
    async fn sync(&self, cid: &str, key: &str) -> String {
        let mut key = key.to_string();
        loop {
            let req = Element::new(a::SYNC).child(
                Element::new(a::COLLECTIONS).child(
                    Element::new(a::COLLECTION)
                        .text_child(a::SYNC_KEY, key.clone())
                        .text_child(a::COLLECTION_ID, cid)
                        .text_child(a::WINDOW_SIZE, "100"),
                ),
            );
            let Some(r) = self.post("Sync", &req).await else {
                return key;
            };
            let col = r
                .first(a::COLLECTIONS)
                .and_then(|c| c.first(a::COLLECTION))
                .expect("collection");
            let new_key = col.text_of(a::SYNC_KEY).expect("key").to_string();
            let more = col.first(a::MORE_AVAILABLE).is_some();
            let was_initial = key == "0";
            key = new_key;
            if !was_initial && !more {
                return key;
            }
        }
    }
}

fn ping_body(cid: &str, heartbeat: u32) -> Element {
    Element::new(p::PING)
        .text_child(p::HEARTBEAT_INTERVAL, heartbeat.to_string())
        .child(
            Element::new(p::FOLDERS).child(
                Element::new(p::FOLDER)
                    .text_child(p::ID, cid)
                    .text_child(p::CLASS, "Email"),
            ),
        )
}

async fn deliver(to: &str, subject: &str) -> Instant {
    let s = TcpStream::connect("127.0.0.1:25").await.expect("SMTP");
    let (r, mut w) = s.into_split();
    let mut r = BufReader::new(r);
    async fn reply(r: &mut BufReader<tokio::net::tcp::OwnedReadHalf>) -> String {
        let mut all = String::new();
        loop {
            let mut line = String::new();
            if r.read_line(&mut line).await.unwrap_or(0) == 0 {
                return all;
            }
            all.push_str(&line);
            if line.len() < 4 || line.as_bytes().get(3) != Some(&b'-') {
                return all;
            }
        }
    }
    reply(&mut r).await;
    for cmd in [
        "EHLO bench.example.org".to_string(),
        "MAIL FROM:<bench@example.org>".into(),
        format!("RCPT TO:<{to}>"),
        "DATA".into(),
    ] {
        w.write_all(format!("{cmd}\r\n").as_bytes()).await.unwrap();
        reply(&mut r).await;
    }
    let msg = format!(
        "From: <bench@example.org>\r\nTo: <{to}>\r\nSubject: {subject}\r\nMessage-ID: <{:x}@example.org>\r\n\r\nbench\r\n.\r\n",
        rand::random::<u64>()
    );
    w.write_all(msg.as_bytes()).await.unwrap();
    let end = Instant::now();
    let rep = reply(&mut r).await;
    assert!(rep.starts_with("250"), "{rep}");
    let _ = w.write_all(b"QUIT\r\n").await;
    end
}

/// A raw IMAP client idling on INBOX; sends the arrival time of each `EXISTS`.
async fn idle_client(user: String, pw: String, tx: tokio::sync::mpsc::UnboundedSender<Instant>) {
    let s = TcpStream::connect("127.0.0.1:143").await.expect("IMAP");
    let (r, mut w) = s.into_split();
    let mut r = BufReader::new(r);
    let mut line = String::new();
    r.read_line(&mut line).await.unwrap();
    w.write_all(format!("a LOGIN \"{user}\" \"{pw}\"\r\nb SELECT INBOX\r\nc IDLE\r\n").as_bytes())
        .await
        .unwrap();
    loop {
        line.clear();
        if r.read_line(&mut line).await.unwrap_or(0) == 0 {
            return;
        }
        if line.contains(" EXISTS") && line.starts_with("* ") && !line.starts_with("* 0 ") {
            let _ = tx.send(Instant::now());
        }
    }
}

fn percentile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * q).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn summary(name: &str, mut v: Vec<f64>) {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal));
    println!(
        "{name:<34} n={:<3} median {:>7.1} ms  p95 {:>7.1} ms  max {:>7.1} ms",
        v.len(),
        percentile(&v, 0.5),
        percentile(&v, 0.95),
        v.last().copied().unwrap_or(f64::NAN)
    );
}

fn rss_kb(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

fn cpu_secs(pid: u32) -> f64 {
    let Ok(s) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0.0;
    };
    let after = s.rsplit_once(')').map(|x| x.1).unwrap_or("");
    let f: Vec<&str> = after.split_whitespace().collect();
    let t = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (t(11) + t(12)) / 100.0
}

/// Established TCP connections from the gateway process to port 143.
fn imap_connections(pid: u32) -> usize {
    let out = Command::new("ss")
        .args(["-tnpH", "state", "established", "( dport = :143 )"])
        .output();
    match out {
        Ok(o) => String::from_utf8_lossy(&o.stdout)
            .lines()
            .filter(|l| l.contains(&format!("pid={pid},")))
            .count(),
        Err(_) => 0,
    }
}

async fn latency(gw: &Gateway, http: &reqwest::Client, deliveries: usize) {
    let (user, pw) = new_user("pushbench");
    let mut dev = Device::new(gw, http, &user, &pw);
    dev.provision().await;
    let inbox = dev.inbox_id().await;
    let mut key = dev.sync(&inbox, "0").await;
    let (tx, mut idle_rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(idle_client(user.clone(), pw.clone(), tx));
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (mut gw_ms, mut idle_ms) = (Vec::new(), Vec::new());
    for i in 0..deliveries {
        let d = dev.clone();
        let body = ping_body(&inbox, 300);
        let ping = tokio::spawn(async move {
            let r = d.post("Ping", &body).await;
            (
                Instant::now(),
                r.and_then(|e| e.text_of(p::STATUS).map(String::from)),
            )
        });
        tokio::time::sleep(Duration::from_millis(300)).await;
        while idle_rx.try_recv().is_ok() {}
        let sent = deliver(&user, &format!("bench {i}")).await;
        let (answered, status) = ping.await.expect("ping task");
        let idle_at = tokio::time::timeout(Duration::from_secs(10), idle_rx.recv())
            .await
            .ok()
            .flatten();
        if status.as_deref() != Some("2") {
            println!("delivery {i}: Ping status {status:?}");
        }
        gw_ms.push(answered.duration_since(sent).as_secs_f64() * 1000.0);
        if let Some(t) = idle_at {
            idle_ms.push(t.saturating_duration_since(sent).as_secs_f64() * 1000.0);
        }
        key = dev.sync(&inbox, &key).await;
    }
    println!("\n== push latency, SMTP end of DATA -> notification ({deliveries} deliveries)");
    summary("gateway Ping answer (NOTIFY)", gw_ms);
    summary("raw IMAP IDLE client (EXISTS)", idle_ms);
}

async fn idle_pings(gw: &Gateway, http: &reqwest::Client, pings: usize, users: usize) {
    let pid = gw.child.id();
    let users: Vec<(String, String)> = (0..users).map(|_| new_user("idlebench")).collect();
    let setup = Instant::now();
    let devices: Vec<(Device, String)> = futures::stream::iter(0..pings)
        .map(|i| {
            let (u, pw) = users[i % users.len()].clone();
            let mut d = Device::new(gw, http, &u, &pw);
            async move {
                d.provision().await;
                let inbox = d.inbox_id().await;
                d.sync(&inbox, "0").await;
                (d, inbox)
            }
        })
        .buffer_unordered(16)
        .collect()
        .await;
    println!(
        "\n== {pings} idle Pings over {} users (setup: {:.1} s)",
        users.len(),
        setup.elapsed().as_secs_f64()
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (rss0, cpu0) = (rss_kb(pid), cpu_secs(pid));
    let imap0 = imap_connections(pid);
    // Raw HTTP/1.1 connections that send a Ping and wait; the client side costs a socket.
    let mut conns = Vec::with_capacity(pings);
    for (d, inbox) in &devices {
        let body = wbxml::encode(&ping_body(inbox, 3000));
        let head = format!(
            "POST {}?Cmd=Ping&User={}&DeviceId={}&DeviceType=Bench HTTP/1.1\r\nHost: bench\r\n\
             Authorization: {}\r\nMS-ASProtocolVersion: 16.1\r\nX-MS-PolicyKey: {}\r\n\
             Content-Type: application/vnd.ms-sync.wbxml\r\nContent-Length: {}\r\n\r\n",
            "/Microsoft-Server-ActiveSync",
            d.user,
            d.id,
            d.auth(),
            d.policy_key.unwrap_or(0),
            body.len()
        );
        let addr = d
            .base
            .trim_start_matches("http://")
            .split('/')
            .next()
            .unwrap_or("")
            .to_string();
        let mut s = TcpStream::connect(addr).await.expect("connect");
        s.write_all(head.as_bytes()).await.unwrap();
        s.write_all(&body).await.unwrap();
        conns.push(s);
    }
    tokio::time::sleep(Duration::from_secs(8)).await;
    let (rss1, cpu1) = (rss_kb(pid), cpu_secs(pid));
    let imap1 = imap_connections(pid);
    // Nothing should have answered yet.
    let mut answered = 0;
    for c in conns.iter_mut() {
        let mut buf = [0u8; 1];
        if let Ok(Ok(n)) = tokio::time::timeout(Duration::from_millis(1), c.peek(&mut buf)).await {
            if n > 0 {
                answered += 1;
            }
        }
    }
    tokio::time::sleep(Duration::from_secs(10)).await;
    let (rss2, cpu2) = (rss_kb(pid), cpu_secs(pid));
    println!(
        "gateway RSS before            {:>8} KiB   (IMAP connections {imap0})",
        rss0
    );
    println!(
        "gateway RSS holding {pings:>6}    {:>8} KiB   (IMAP connections {imap1}, answered early {answered})",
        rss1
    );
    println!(
        "per waiting device            {:>8.1} KiB",
        (rss1.saturating_sub(rss0)) as f64 / pings as f64
    );
    println!(
        "CPU: {:.2} s to register {pings} Pings (+8 s settling); {:.3} s over the next 10 s idle",
        cpu1 - cpu0,
        cpu2 - cpu1
    );
    println!("gateway RSS after 10 s more   {:>8} KiB", rss2);
    drop(conns);
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    if std::net::TcpStream::connect("127.0.0.1:143").is_err() {
        eprintln!("the dev mail stack is not running: deploy/dev/mailstack.sh start");
        return;
    }
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async {
        let gw = start_gateway();
        let http = reqwest::Client::builder()
            .pool_max_idle_per_host(64)
            .build()
            .unwrap();
        latency(&gw, &http, env_usize("PUSH_BENCH_DELIVERIES", 20)).await;
        idle_pings(
            &gw,
            &http,
            env_usize("PUSH_BENCH_PINGS", 2000),
            env_usize("PUSH_BENCH_USERS", 20),
        )
        .await;
    });
}
