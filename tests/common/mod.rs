//! Test harness: a real gateway on 127.0.0.1:0 (HTTPS, self-signed), in front of the dev mail
//! stack (`deploy/dev/mailstack.sh start`), and a small EAS client to talk to it.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use eas_gateway::backend::imap::ImapBackend;
use eas_gateway::commands::Gateway;
use eas_gateway::config::Config;
use eas_gateway::http::{self, Server};
use eas_gateway::state::sqlite::SqliteStore;
use eas_gateway::wbxml::{self, Element, Limits};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

pub const IMAP: &str = "127.0.0.1:143";
pub const DOMAIN: &str = "example.test";

/// The dev stack's IMAP address: `EAS_DEV_IMAP` (as `mailstack.sh env` prints it), else [`IMAP`].
pub fn imap_addr() -> String {
    std::env::var("EAS_DEV_IMAP").unwrap_or_else(|_| IMAP.to_string())
}

/// The port of `EAS_DEV_<name>` (`host:port`), else `default`.
fn dev_port(name: &str, default: u16) -> u16 {
    std::env::var(format!("EAS_DEV_{name}"))
        .ok()
        .and_then(|a| a.rsplit_once(':').and_then(|(_, p)| p.parse().ok()))
        .unwrap_or(default)
}

/// The dev stack's SMTP (port 25, no authentication) address: `EAS_DEV_SMTP`, else port 25.
pub fn smtp_addr() -> String {
    format!("127.0.0.1:{}", dev_port("SMTP", 25))
}

/// Delivers a mail with `subject` and `body` through the dev stack's Postfix ([`smtp_addr`],
/// no authentication); returns the moment the end of data was sent.
pub async fn deliver_smtp(to: &str, subject: &str, body: &str) -> std::time::Instant {
    async fn reply(r: &mut BufReader<tokio::net::tcp::OwnedReadHalf>) -> String {
        let mut all = String::new();
        loop {
            let mut line = String::new();
            r.read_line(&mut line).await.expect("SMTP read");
            all.push_str(&line);
            if line.len() < 4 || line.as_bytes()[3] != b'-' {
                return all;
            }
        }
    }
    let s = TcpStream::connect(smtp_addr()).await.expect("SMTP connect");
    let (r, mut w) = s.into_split();
    let mut r = BufReader::new(r);
    let greeting = reply(&mut r).await;
    assert!(greeting.starts_with("220"), "{greeting}");
    for cmd in [
        "EHLO tests.example.org".to_string(),
        "MAIL FROM:<sender@example.org>".to_string(),
        format!("RCPT TO:<{to}>"),
        "DATA".to_string(),
    ] {
        w.write_all(format!("{cmd}\r\n").as_bytes()).await.unwrap();
        let rep = reply(&mut r).await;
        assert!(rep.starts_with('2') || rep.starts_with('3'), "{cmd}: {rep}");
    }
    w.write_all(mail(subject, body).as_bytes()).await.unwrap();
    w.write_all(b".\r\n").await.unwrap();
    let end_of_data = std::time::Instant::now();
    let rep = reply(&mut r).await;
    assert!(rep.starts_with("250"), "{rep}");
    w.write_all(b"QUIT\r\n").await.unwrap();
    end_of_data
}

/// Fails loudly when the dev mail stack is not running.
pub fn require_stack() {
    if std::net::TcpStream::connect_timeout(&imap_addr().parse().unwrap(), Duration::from_secs(2))
        .is_err()
    {
        panic!("the dev mail stack is not running: run `deploy/dev/mailstack.sh start` first");
    }
}

/// Creates a fresh mail user; returns (address, password).
pub fn new_user(prefix: &str) -> (String, String) {
    require_stack();
    let n: u64 = rand::random();
    let address = format!("{prefix}-{n:016x}@{DOMAIN}");
    let password = format!("pw-{n:x}");
    // A per-user file in users.d is seen by Dovecot at once (deploy/dev/README.md).
    let dir = std::env::var("EAS_DEV_DIR").unwrap_or_else(|_| "/var/lib/eas-gateway-dev".into());
    let users_d = PathBuf::from(dir).join("dovecot/users.d");
    let tmp = users_d.join(format!(".{address}.tmp"));
    std::fs::write(&tmp, format!("{address}:{{PLAIN}}{password}::::::\n")).unwrap_or_else(|e| {
        panic!(
            "cannot write {}: {e} (is the dev stack set up?)",
            tmp.display()
        )
    });
    std::fs::rename(&tmp, users_d.join(&address)).expect("rename user file");
    (address, password)
}

/// A running gateway.
pub struct TestGateway {
    pub base: String,
    pub dir: tempfile::TempDir,
    pub shutdown: tokio::sync::watch::Sender<bool>,
    pub config: Arc<Config>,
    /// `http://127.0.0.1:PORT` of the admin listener, when [`GatewayOptions::admin`] is set.
    pub admin: Option<String>,
}

/// The admin bearer token of test gateways started with [`GatewayOptions::admin`].
pub const ADMIN_TOKEN: &str = "test-admin-token-0123456789";

/// Extra TOML lines per section, for tests that need other settings.
#[derive(Default)]
pub struct GatewayOptions {
    pub imap_port: Option<u16>,
    pub auth: &'static str,
    pub policy: &'static str,
    /// Reuse another gateway's state file (a restart).
    pub state_url: Option<String>,
    /// Lines of the `[push]` section.
    pub push: &'static str,
    /// Submission port (587 when unset).
    pub smtp_port: Option<u16>,
    /// `[server] max_body_bytes` (1 MiB when unset).
    pub max_body_bytes: Option<usize>,
    /// IMAP timeout (5 s when unset); when set, also the SMTP timeout.
    pub timeout_secs: Option<u64>,
    /// Extra lines of the `[server]` section.
    pub server: &'static str,
    /// Also run the admin listener (plain HTTP on 127.0.0.1:0, token [`ADMIN_TOKEN`]).
    pub admin: bool,
}

pub async fn start_gateway() -> TestGateway {
    start_gateway_with(GatewayOptions::default()).await
}

pub async fn start_gateway_with(opts: GatewayOptions) -> TestGateway {
    start_gateway_server(opts, |_| {}).await.0
}

/// The same, with `configure` applied to the parsed config; also returns the server.
/// The gateway server a test runs in-process.
pub type TestServer = Arc<Server<ImapBackend, SqliteStore>>;

pub async fn start_gateway_server(
    opts: GatewayOptions,
    configure: impl FnOnce(&mut Config),
) -> (TestGateway, TestServer) {
    let dir = tempfile::tempdir().unwrap();
    let cert =
        rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()]).unwrap();
    std::fs::write(dir.path().join("cert.pem"), cert.cert.pem()).unwrap();
    std::fs::write(dir.path().join("key.pem"), cert.key_pair.serialize_pem()).unwrap();
    let toml = format!(
        r#"
[server]
listen = "127.0.0.1:0"
tls_cert = "cert.pem"
tls_key = "key.pem"
max_body_bytes = {max_body_bytes}
{server}
[imap]
host = "127.0.0.1"
port = {imap_port}
security = "none"
timeout_secs = {imap_timeout}
[smtp]
host = "127.0.0.1"
port = {smtp_port}
security = "none"
{smtp_timeout}
[state]
url = "{db}"
[identity]
domain = "{DOMAIN}"
[auth]
{auth}
[policy]
{policy}
[push]
{push}
{admin}
"#,
        imap_port = opts.imap_port.unwrap_or_else(|| dev_port("IMAP", 143)),
        max_body_bytes = opts.max_body_bytes.unwrap_or(1 << 20),
        imap_timeout = opts.timeout_secs.unwrap_or(5),
        smtp_port = opts
            .smtp_port
            .unwrap_or_else(|| dev_port("SUBMISSION", 587)),
        smtp_timeout = opts
            .timeout_secs
            .map(|t| format!("timeout_secs = {t}"))
            .unwrap_or_default(),
        db = opts
            .state_url
            .clone()
            .unwrap_or_else(|| format!("sqlite://{}", dir.path().join("state.db").display())),
        auth = opts.auth,
        policy = opts.policy,
        push = opts.push,
        server = opts.server,
        admin = if opts.admin {
            std::fs::write(dir.path().join("admin.token"), format!("{ADMIN_TOKEN}\n")).unwrap();
            "[admin]\nlisten = \"127.0.0.1:0\"\ntoken_file = \"admin.token\"\n"
        } else {
            ""
        },
    );
    let mut config = Config::from_toml(&toml, dir.path()).expect("test config");
    configure(&mut config);
    let config = Arc::new(config);
    let store = SqliteStore::open_url(&config.state_url).expect("state store");
    let backend = ImapBackend::new(config.imap.clone());
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = Arc::new(Server::new(Gateway::new(backend, store, config.clone())));
    let (tx, rx) = tokio::sync::watch::channel(false);
    let admin = if opts.admin {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let (s, rx) = (server.clone(), rx.clone());
        tokio::spawn(async move {
            eas_gateway::admin::serve(listener, s, rx)
                .await
                .expect("admin serve");
        });
        Some(format!("http://127.0.0.1:{port}"))
    } else {
        None
    };
    let s = server.clone();
    tokio::spawn(async move {
        http::serve(listener, s, rx).await.expect("serve");
    });
    let gw = TestGateway {
        base: format!("https://127.0.0.1:{port}/Microsoft-Server-ActiveSync"),
        dir,
        shutdown: tx,
        config,
        admin,
    };
    (gw, server)
}

/// A port free on 127.0.0.1 when asked (nothing listens on it).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The real binary serving plain HTTP on `port`, with its config and state in `dir`; returns
/// once it accepts connections. Killed when dropped.
pub async fn start_binary(dir: &Path, port: u16) -> tokio::process::Child {
    let config = dir.join("gw.toml");
    std::fs::write(
        &config,
        format!(
            "[server]\nlisten = \"127.0.0.1:{port}\"\n[imap]\nhost = \"127.0.0.1\"\nport = 143\n\
             [smtp]\nhost = \"127.0.0.1\"\nport = 587\n[state]\nurl = \"sqlite://{}\"\n\
             [identity]\ndomain = \"{DOMAIN}\"\n",
            dir.join("state.db").display()
        ),
    )
    .unwrap();
    let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_eas-gateway"))
        .args(["serve", "--config"])
        .arg(&config)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("start the gateway binary");
    for _ in 0..100 {
        if TcpStream::connect(("127.0.0.1", port)).await.is_ok() {
            return child;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the gateway did not start listening");
}

impl TestGateway {
    /// `127.0.0.1:port`, the server argument of the pyactivesync scripts.
    pub fn host(&self) -> String {
        self.base
            .trim_start_matches("https://")
            .split('/')
            .next()
            .unwrap()
            .to_string()
    }
}

/// Runs `python3 <args>` (a pyactivesync script) without the CA bundle variables; asserts it
/// succeeded, showing its output otherwise, and returns its stdout.
pub async fn pyactivesync(args: &[&str], what: &str) -> String {
    let out = tokio::process::Command::new("python3")
        .args(args)
        .env_remove("REQUESTS_CA_BUNDLE")
        .env_remove("CURL_CA_BUNDLE")
        .output()
        .await
        .expect("python3 must be installed");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "pyactivesync {what} failed (is it installed? `pip install pyactivesync`):\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// The path of a script in tests/pyactivesync.
pub fn pyactivesync_script(name: &str) -> String {
    format!("{}/tests/pyactivesync/{name}", env!("CARGO_MANIFEST_DIR"))
}

pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .danger_accept_invalid_certs(true)
        .build()
        .unwrap()
}

/// A phone, as far as the tests need one.
#[derive(Clone)]
pub struct TestDevice {
    pub client: reqwest::Client,
    pub base: String,
    pub user: String,
    pub password: String,
    pub device_id: String,
    pub device_type: String,
    pub version: &'static str,
    pub policy_key: Option<u32>,
}

pub struct Reply {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: Option<Element>,
    pub raw: Vec<u8>,
}

impl TestDevice {
    pub fn new(gw: &TestGateway, user: &str, password: &str, version: &'static str) -> TestDevice {
        TestDevice::at(client(), gw.base.clone(), user, password, version)
    }

    /// A device of `user` talking plain HTTP to the gateway binary on `port` (`start_binary`).
    pub fn plain_http(port: u16, user: &str, password: &str, version: &'static str) -> TestDevice {
        let base = format!("http://127.0.0.1:{port}/Microsoft-Server-ActiveSync");
        TestDevice::at(reqwest::Client::new(), base, user, password, version)
    }

    fn at(
        client: reqwest::Client,
        base: String,
        user: &str,
        password: &str,
        version: &'static str,
    ) -> TestDevice {
        let n: u32 = rand::random();
        TestDevice {
            client,
            base,
            user: user.to_string(),
            password: password.to_string(),
            device_id: format!("TESTDEV{n:08X}"),
            device_type: "TestPhone".into(),
            version,
            policy_key: None,
        }
    }

    pub fn auth(&self) -> String {
        basic(&self.user, &self.password)
    }

    pub fn query(&self, cmd: &str) -> String {
        format!(
            "Cmd={cmd}&User={}&DeviceId={}&DeviceType={}",
            self.user, self.device_id, self.device_type
        )
    }

    /// GetAttachment (a 12.x command, sent as 12.1) of `reference`, as the raw response.
    pub async fn get_attachment(&self, reference: &str) -> reqwest::Response {
        let url = format!(
            "{}?{}&AttachmentName={}",
            self.base,
            self.query("GetAttachment"),
            reference.replace(':', "%3a")
        );
        let mut req = self
            .client
            .post(&url)
            .header("Authorization", self.auth())
            .header("MS-ASProtocolVersion", "12.1");
        if let Some(k) = self.policy_key {
            req = req.header("X-MS-PolicyKey", k.to_string());
        }
        req.send().await.expect("GetAttachment request")
    }

    /// POSTs a WBXML command with the plain query form.
    pub async fn post(&self, cmd: &str, body: &Element) -> Reply {
        let url = format!("{}?{}", self.base, self.query(cmd));
        self.post_raw(&url, wbxml::encode(body), "application/vnd.ms-sync.wbxml")
            .await
    }

    pub async fn post_raw(&self, url: &str, body: Vec<u8>, content_type: &str) -> Reply {
        let mut req = self
            .client
            .post(url)
            .header("Authorization", self.auth())
            .header("MS-ASProtocolVersion", self.version)
            .header("User-Agent", "eas-gateway-tests/1")
            .header("Content-Type", content_type)
            .body(body);
        if let Some(k) = self.policy_key {
            req = req.header("X-MS-PolicyKey", k.to_string());
        }
        let resp = req.send().await.expect("request");
        read_reply(resp).await
    }

    /// Runs the two-step Provision exchange and keeps the final key.
    pub async fn provision(&mut self) {
        use eas_gateway::wbxml::tags::provision as p;
        let req = Element::new(p::PROVISION).child(Element::new(p::POLICIES).child(
            Element::new(p::POLICY).text_child(p::POLICY_TYPE, "MS-EAS-Provisioning-WBXML"),
        ));
        let r = self.post("Provision", &req).await;
        assert_eq!(r.status, 200, "provision step 1");
        let temp = policy_key_of(r.body.as_ref().expect("body"));
        let ack = Element::new(p::PROVISION).child(
            Element::new(p::POLICIES).child(
                Element::new(p::POLICY)
                    .text_child(p::POLICY_TYPE, "MS-EAS-Provisioning-WBXML")
                    .text_child(p::POLICY_KEY, temp.to_string())
                    .text_child(p::STATUS, "1"),
            ),
        );
        self.policy_key = Some(temp);
        let r = self.post("Provision", &ack).await;
        assert_eq!(r.status, 200, "provision step 2");
        self.policy_key = Some(policy_key_of(r.body.as_ref().expect("body")));
    }

    pub async fn folder_sync(&self, key: &str) -> Element {
        use eas_gateway::wbxml::tags::folder_hierarchy as f;
        let r = self
            .post(
                "FolderSync",
                &Element::new(f::FOLDER_SYNC).text_child(f::SYNC_KEY, key),
            )
            .await;
        assert_eq!(r.status, 200, "FolderSync HTTP status");
        r.body.expect("FolderSync body")
    }
}

/// A provisioned device of an existing user.
pub async fn device_of(
    gw: &TestGateway,
    user: &str,
    password: &str,
    version: &'static str,
) -> TestDevice {
    let mut dev = TestDevice::new(gw, user, password, version);
    dev.provision().await;
    dev
}

/// A provisioned device of a fresh user: (device, address, password).
pub async fn provisioned(
    gw: &TestGateway,
    prefix: &str,
    version: &'static str,
) -> (TestDevice, String, String) {
    let (user, pw) = new_user(prefix);
    let dev = device_of(gw, &user, &pw, version).await;
    (dev, user, pw)
}

/// A fresh gateway and a provisioned 16.1 device of a fresh user: (gateway, device, address,
/// password).
pub async fn gateway_with_device(prefix: &str) -> (TestGateway, TestDevice, String, String) {
    let gw = start_gateway().await;
    let (dev, user, pw) = provisioned(&gw, prefix, "16.1").await;
    (gw, dev, user, pw)
}

pub async fn read_reply(resp: reqwest::Response) -> Reply {
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let raw = resp.bytes().await.expect("body").to_vec();
    let body = if raw.is_empty() {
        None
    } else {
        Some(wbxml::decode(raw.clone().into(), &Limits::default()).expect("response is WBXML"))
    };
    Reply {
        status,
        headers,
        body,
        raw,
    }
}

pub fn policy_key_of(resp: &Element) -> u32 {
    use eas_gateway::wbxml::tags::provision as p;
    resp.first(p::POLICIES)
        .and_then(|ps| ps.first(p::POLICY))
        .and_then(|pol| pol.text_of(p::POLICY_KEY))
        .expect("PolicyKey in response")
        .parse()
        .expect("numeric PolicyKey")
}

/// Runs raw IMAP commands as `user` on a second connection; returns the transcript.
pub async fn imap(user: &str, password: &str, commands: &[&str]) -> String {
    let stream = TcpStream::connect(imap_addr()).await.expect("connect IMAP");
    let (r, mut w) = stream.into_split();
    let mut r = BufReader::new(r);
    let mut transcript = String::new();
    let mut line = String::new();
    r.read_line(&mut line).await.unwrap();
    let mut all = vec![format!("LOGIN \"{user}\" \"{password}\"")];
    all.extend(commands.iter().map(|c| c.to_string()));
    all.push("LOGOUT".into());
    for (i, cmd) in all.iter().enumerate() {
        let tag = format!("t{i}");
        w.write_all(format!("{tag} {cmd}\r\n").as_bytes())
            .await
            .unwrap();
        loop {
            line.clear();
            if r.read_line(&mut line).await.unwrap() == 0 {
                return transcript;
            }
            transcript.push_str(&line);
            if line.starts_with(&format!("{tag} ")) {
                assert!(
                    line.starts_with(&format!("{tag} OK")),
                    "IMAP `{cmd}` failed: {line}"
                );
                break;
            }
        }
    }
    transcript
}

/// Appends many mails over one IMAP connection with MULTIAPPEND (one command per 500 mails,
/// LITERAL+, so nothing waits for continuations). `date` like `"01-Jan-2020 10:00:00 +0000"`.
pub async fn seed(user: &str, password: &str, mailbox: &str, mails: &[(String, Option<String>)]) {
    let stream = TcpStream::connect(imap_addr()).await.expect("connect IMAP");
    let (r, mut w) = stream.into_split();
    let mut r = BufReader::new(r);
    let mut line = String::new();
    r.read_line(&mut line).await.unwrap();
    let login = format!("l LOGIN \"{user}\" \"{password}\"\r\n");
    run_tagged(&mut r, &mut w, login.as_bytes(), "l").await;
    for (n, batch) in mails.chunks(500).enumerate() {
        let tag = format!("a{n}");
        let mut cmd = format!("{tag} APPEND \"{mailbox}\"").into_bytes();
        for (raw, date) in batch {
            if let Some(d) = date {
                cmd.extend_from_slice(format!(" \"{d}\"").as_bytes());
            }
            cmd.extend_from_slice(format!(" {{{}+}}\r\n", raw.len()).as_bytes());
            cmd.extend_from_slice(raw.as_bytes());
        }
        cmd.extend_from_slice(b"\r\n");
        run_tagged(&mut r, &mut w, &cmd, &tag).await;
    }
    run_tagged(&mut r, &mut w, b"z LOGOUT\r\n", "z").await;
}

/// Sends one command and reads up to its tagged completion, which must be OK.
async fn run_tagged(
    r: &mut BufReader<tokio::net::tcp::OwnedReadHalf>,
    w: &mut tokio::net::tcp::OwnedWriteHalf,
    cmd: &[u8],
    tag: &str,
) {
    w.write_all(cmd).await.unwrap();
    let mut line = String::new();
    loop {
        line.clear();
        assert!(r.read_line(&mut line).await.unwrap() > 0, "IMAP closed");
        if line.starts_with(&format!("{tag} ")) {
            assert!(line.starts_with(&format!("{tag} OK")), "{line}");
            break;
        }
    }
}

/// The UIDs of the `* SEARCH` line of an IMAP transcript.
pub fn uids_in(transcript: &str) -> Vec<u32> {
    transcript
        .lines()
        .find(|l| l.starts_with("* SEARCH"))
        .map(|l| {
            l.split_whitespace()
                .skip(2)
                .filter_map(|u| u.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// UIDs of the mails in `mailbox` whose Subject contains `subject`, waiting up to `wait` for at
/// least `min` of them (delivery is asynchronous).
pub async fn uids_with_subject(
    user: &str,
    pw: &str,
    mailbox: &str,
    subject: &str,
    min: usize,
    wait: Duration,
) -> Vec<u32> {
    let deadline = std::time::Instant::now() + wait;
    loop {
        let search = format!("UID SEARCH HEADER Subject \"{subject}\"");
        let t = imap(user, pw, &[&format!("SELECT \"{mailbox}\""), &search]).await;
        let uids = uids_in(&t);
        if uids.len() >= min || std::time::Instant::now() > deadline {
            return uids;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// `label` with a random suffix, for subjects no other test uses.
pub fn unique(label: &str) -> String {
    format!("{label} {:016x}", rand::random::<u64>())
}

/// The Status of a ComposeMail response (SendMail, SmartReply, SmartForward).
pub fn compose_status(r: &Reply) -> Option<String> {
    use eas_gateway::wbxml::tags::compose_mail as cm;
    r.body
        .as_ref()
        .and_then(|b| b.text_of(cm::STATUS))
        .map(str::to_string)
}

/// A raw message, parsed.
pub fn parsed(raw: &[u8]) -> mail_parser::Message<'_> {
    mail_parser::MessageParser::default()
        .parse(raw)
        .expect("parsable")
}

/// Mails in `mailbox` whose Subject contains `subject`: (FLAGS text, raw message). Waits up to
/// `wait` for at least `min` of them (delivery is asynchronous).
pub async fn mails_with_subject(
    user: &str,
    pw: &str,
    mailbox: &str,
    subject: &str,
    min: usize,
    wait: Duration,
) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    for uid in uids_with_subject(user, pw, mailbox, subject, min, wait).await {
        let fetch = format!("UID FETCH {uid} (FLAGS BODY.PEEK[])");
        let t = imap(user, pw, &[&format!("SELECT \"{mailbox}\""), &fetch]).await;
        out.push(parse_fetch(&t));
    }
    out
}

/// (FLAGS text, raw message) of the FETCH (FLAGS BODY[]) in an IMAP transcript.
fn parse_fetch(t: &str) -> (String, Vec<u8>) {
    let start = t.find(" FETCH (").expect("FETCH response");
    let flags = t[start..]
        .split_once("FLAGS (")
        .and_then(|(_, r)| r.split_once(')'))
        .map(|(f, _)| f.to_string())
        .unwrap_or_default();
    let open = start + t[start..].find("BODY[] {").expect("literal") + "BODY[] {".len();
    let close = open + t[open..].find('}').unwrap();
    let n: usize = t[open..close].parse().unwrap();
    let body = &t.as_bytes()[close + 3..close + 3 + n];
    (flags, body.to_vec())
}

/// An ItemOperations Fetch of a mail (plain-text body).
pub fn fetch_mail(cid: &str, sid: &str) -> Element {
    use eas_gateway::wbxml::tags::{airsync as a, airsyncbase as b, item_operations as io};
    Element::new(io::FETCH)
        .text_child(io::STORE, "Mailbox")
        .text_child(a::COLLECTION_ID, cid)
        .text_child(a::SERVER_ID, sid)
        .child(
            Element::new(io::OPTIONS)
                .child(Element::new(b::BODY_PREFERENCE).text_child(b::TYPE, "1")),
        )
}

/// An ItemOperations Fetch of an attachment, whole or a byte range like `"0-99"`.
pub fn fetch_file(reference: &str, range: Option<&str>) -> Element {
    use eas_gateway::wbxml::tags::{airsyncbase as b, item_operations as io};
    let mut f = Element::new(io::FETCH)
        .text_child(io::STORE, "Mailbox")
        .text_child(b::FILE_REFERENCE, reference);
    if let Some(r) = range {
        f.push(Element::new(io::OPTIONS).text_child(io::RANGE, r));
    }
    f
}

/// The operation results of an ItemOperations response, whose Status must be 1.
pub fn io_results(resp: &Element) -> Vec<&Element> {
    use eas_gateway::wbxml::tags::item_operations as io;
    assert_eq!(resp.text_of(io::STATUS), Some("1"), "{resp:?}");
    resp.first(io::RESPONSE)
        .expect("Response")
        .elements()
        .collect()
}

/// An `Authorization: Basic` header value.
pub fn basic(user: &str, password: &str) -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
    )
}

/// The decoded inline Data of one ItemOperations Fetch result.
pub fn io_data(fetch: &Element) -> Vec<u8> {
    use eas_gateway::wbxml::tags::item_operations as io;
    let text = fetch
        .first(io::PROPERTIES)
        .and_then(|p| p.text_of(io::DATA))
        .expect("Data");
    base64::engine::general_purpose::STANDARD
        .decode(text)
        .expect("base64 Data")
}

/// A small plain-text mail.
pub fn mail(subject: &str, body: &str) -> String {
    format!(
        "From: Sender <sender@example.org>\r\nTo: someone@example.test\r\nSubject: {subject}\r\n\
         Message-ID: <{:016x}@example.org>\r\nDate: Thu, 26 Nov 2026 10:00:00 +0000\r\n\
         MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n{body}\r\n",
        rand::random::<u64>()
    )
}

/// APPENDs a message over a second IMAP connection (`date` like `"01-Jan-2020 10:00:00 +0000"`).
pub async fn append(user: &str, password: &str, mailbox: &str, raw: &str, date: Option<&str>) {
    let date = date.map(|d| format!(" \"{d}\"")).unwrap_or_default();
    let cmd = format!("APPEND \"{mailbox}\"{date} {{{}+}}\r\n{raw}", raw.len());
    imap(user, password, &[&cmd]).await;
}

/// The ServerId of the folder with this display name, from a key-0 FolderSync.
pub async fn folder_id(dev: &TestDevice, name: &str) -> String {
    use eas_gateway::wbxml::tags::folder_hierarchy as f;
    let r = dev.folder_sync("0").await;
    r.first(f::CHANGES)
        .and_then(|c| {
            c.all(f::ADD)
                .find(|a| a.text_of(f::DISPLAY_NAME) == Some(name))
                .and_then(|a| a.text_of(f::SERVER_ID).map(String::from))
        })
        .unwrap_or_else(|| panic!("no folder {name}"))
}

/// Builds a one-collection Sync request.
pub fn sync_request(collection: &str, key: &str, window: u32, options: Option<Element>) -> Element {
    use eas_gateway::wbxml::tags::airsync as a;
    let mut c = Element::new(a::COLLECTION)
        .text_child(a::SYNC_KEY, key)
        .text_child(a::COLLECTION_ID, collection)
        .text_child(a::WINDOW_SIZE, window.to_string());
    if let Some(o) = options {
        c.push(o);
    }
    Element::new(a::SYNC).child(Element::new(a::COLLECTIONS).child(c))
}

/// Adds `commands` (an AirSync Commands element) to the collection of a one-collection Sync
/// request.
pub fn push_commands(req: &mut Element, commands: Element) {
    use eas_gateway::wbxml::tags::airsync as a;
    req.first_mut(a::COLLECTIONS)
        .and_then(|c| c.first_mut(a::COLLECTION))
        .expect("a Sync request with one collection")
        .push(commands);
}

/// One Sync of one collection, without options or commands.
pub async fn sync(dev: &TestDevice, cid: &str, key: &str, window: u32) -> SyncResult {
    sync_result(
        &dev.post("Sync", &sync_request(cid, key, window, None))
            .await,
    )
}

/// Key 0, then pages until nothing more is available; returns (adds, final key).
pub async fn full_sync(
    dev: &TestDevice,
    cid: &str,
    window: u32,
) -> (Vec<(String, Element)>, String) {
    let first = sync(dev, cid, "0", window).await;
    assert_eq!(first.status.as_deref(), Some("1"), "{first:?}");
    assert!(first.adds.is_empty(), "key 0 answers no items");
    sync_pages(dev, cid, first.key.expect("key after 0"), window).await
}

/// Pages from `key` until nothing more is available; returns (adds, final key).
pub async fn sync_pages(
    dev: &TestDevice,
    cid: &str,
    mut key: String,
    window: u32,
) -> (Vec<(String, Element)>, String) {
    let mut adds = Vec::new();
    loop {
        let r = sync(dev, cid, &key, window).await;
        if r.empty {
            break;
        }
        assert_eq!(r.status.as_deref(), Some("1"), "Sync of {cid}: {r:?}");
        assert!(r.adds.len() <= window as usize);
        adds.extend(r.adds);
        key = r.key.expect("key");
        if !r.more {
            break;
        }
    }
    (adds, key)
}

/// The ServerIds of Sync adds.
pub fn server_ids(adds: &[(String, Element)]) -> Vec<String> {
    adds.iter().map(|(sid, _)| sid.clone()).collect()
}

/// What one collection of a Sync response says.
#[derive(Debug, Default)]
pub struct SyncResult {
    pub status: Option<String>,
    pub key: Option<String>,
    pub more: bool,
    /// (ServerId, ApplicationData) of each Add.
    pub adds: Vec<(String, Element)>,
    pub changes: Vec<(String, Element)>,
    pub deletes: Vec<String>,
    pub soft_deletes: Vec<String>,
    pub responses: Option<Element>,
    /// True for the empty Sync response (HTTP 200, no body).
    pub empty: bool,
}

pub fn sync_result(reply: &Reply) -> SyncResult {
    use eas_gateway::wbxml::tags::airsync as a;
    assert_eq!(reply.status, 200, "Sync HTTP status");
    let Some(body) = &reply.body else {
        return SyncResult {
            empty: true,
            ..Default::default()
        };
    };
    let Some(col) = body
        .first(a::COLLECTIONS)
        .and_then(|c| c.first(a::COLLECTION))
    else {
        return SyncResult {
            status: body.text_of(a::STATUS).map(String::from),
            ..Default::default()
        };
    };
    let mut r = SyncResult {
        status: col.text_of(a::STATUS).map(String::from),
        key: col.text_of(a::SYNC_KEY).map(String::from),
        more: col.first(a::MORE_AVAILABLE).is_some(),
        responses: col.first(a::RESPONSES).cloned(),
        ..Default::default()
    };
    if let Some(cmds) = col.first(a::COMMANDS) {
        for e in cmds.elements() {
            let sid = e.text_of(a::SERVER_ID).unwrap_or("").to_string();
            let data = e.first(a::APPLICATION_DATA).cloned();
            match e.tag {
                t if t == a::ADD => r.adds.push((sid, data.expect("Add with ApplicationData"))),
                t if t == a::CHANGE => r
                    .changes
                    .push((sid, data.expect("Change with ApplicationData"))),
                t if t == a::DELETE => r.deletes.push(sid),
                t if t == a::SOFT_DELETE => r.soft_deletes.push(sid),
                _ => panic!("unexpected command {:?}", e.tag),
            }
        }
    }
    r
}

/// Like [`start_binary`], with the submission server on `smtp_port` and `smtp_extra` added to
/// the `[smtp]` section (e.g. `timeout_secs = 10`). The process's log goes to `dir/gw.log`
/// (a new one each start).
pub async fn start_binary_with(
    dir: &Path,
    port: u16,
    smtp_port: u16,
    smtp_extra: &str,
) -> tokio::process::Child {
    let config = dir.join("gw.toml");
    std::fs::write(
        &config,
        format!(
            "[server]\nlisten = \"127.0.0.1:{port}\"\n[imap]\nhost = \"127.0.0.1\"\nport = 143\n\
             [smtp]\nhost = \"127.0.0.1\"\nport = {smtp_port}\n{smtp_extra}\n\
             [state]\nurl = \"sqlite://{}\"\n[identity]\ndomain = \"{DOMAIN}\"\n",
            dir.join("state.db").display()
        ),
    )
    .unwrap();
    let log = std::fs::File::create(dir.join("gw.log")).expect("log file");
    let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_eas-gateway"))
        .args(["serve", "--config"])
        .arg(&config)
        .stderr(log.try_clone().expect("log file"))
        .stdout(log)
        .kill_on_drop(true)
        .spawn()
        .expect("start the gateway binary");
    for _ in 0..100 {
        if TcpStream::connect(("127.0.0.1", port)).await.is_ok() {
            return child;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the gateway did not start listening");
}

/// A relay in front of Dovecot that counts LOGIN commands; when `stall` is set, new connections
/// are held without an answer (a mail server that delays the login past the gateway's timeout);
/// `greeting_delay_ms` holds every new connection that long before relaying it (a slow server),
/// and `max_logging_in` records the most connections that were at once between their accept
/// and the server's "Logged in".
pub struct LoginRelay {
    pub port: u16,
    pub logins: Arc<std::sync::atomic::AtomicUsize>,
    pub stall: Arc<std::sync::atomic::AtomicBool>,
    pub greeting_delay_ms: Arc<std::sync::atomic::AtomicU64>,
    pub max_logging_in: Arc<std::sync::atomic::AtomicUsize>,
}

impl LoginRelay {
    pub async fn start() -> LoginRelay {
        use std::sync::atomic::Ordering::SeqCst;
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let logins = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let stall = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let delay = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let logging_in = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let max_logging_in = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let (l, st, d, li, ml) = (
            logins.clone(),
            stall.clone(),
            delay.clone(),
            logging_in.clone(),
            max_logging_in.clone(),
        );
        tokio::spawn(async move {
            loop {
                let Ok((client, _)) = listener.accept().await else {
                    return;
                };
                let (logins, stall, delay) = (l.clone(), st.clone(), d.clone());
                let (logging_in, max_logging_in) = (li.clone(), ml.clone());
                tokio::spawn(async move {
                    if stall.load(SeqCst) {
                        tokio::time::sleep(Duration::from_secs(60)).await;
                        return;
                    }
                    let now = logging_in.fetch_add(1, SeqCst) + 1;
                    max_logging_in.fetch_max(now, SeqCst);
                    let in_login = Arc::new(std::sync::atomic::AtomicBool::new(true));
                    let leave = {
                        let (in_login, logging_in) = (in_login.clone(), logging_in.clone());
                        move || {
                            if in_login.swap(false, SeqCst) {
                                logging_in.fetch_sub(1, SeqCst);
                            }
                        }
                    };
                    tokio::time::sleep(Duration::from_millis(delay.load(SeqCst))).await;
                    let Ok(server) = TcpStream::connect(imap_addr()).await else {
                        leave();
                        return;
                    };
                    let (mut cr, mut cw) = client.into_split();
                    let (mut sr, mut sw) = server.into_split();
                    let leave_down = leave.clone();
                    let down = tokio::spawn(async move {
                        let mut buf = vec![0u8; 64 * 1024];
                        loop {
                            let n = match tokio::io::AsyncReadExt::read(&mut sr, &mut buf).await {
                                Ok(0) | Err(_) => break,
                                Ok(n) => n,
                            };
                            let chunk = &buf[..n];
                            if chunk.windows(9).any(|w| w == b"Logged in") {
                                leave_down();
                            }
                            if AsyncWriteExt::write_all(&mut cw, chunk).await.is_err() {
                                break;
                            }
                        }
                    });
                    let mut buf = vec![0u8; 64 * 1024];
                    loop {
                        let n = match tokio::io::AsyncReadExt::read(&mut cr, &mut buf).await {
                            Ok(0) | Err(_) => break,
                            Ok(n) => n,
                        };
                        let chunk = &buf[..n];
                        logins.fetch_add(
                            chunk.windows(7).filter(|w| w == b" LOGIN ").count(),
                            SeqCst,
                        );
                        if AsyncWriteExt::write_all(&mut sw, chunk).await.is_err() {
                            break;
                        }
                    }
                    down.abort();
                    leave();
                });
            }
        });
        LoginRelay {
            port,
            logins,
            stall,
            greeting_delay_ms: delay,
            max_logging_in,
        }
    }

    pub fn logins(&self) -> usize {
        self.logins.load(std::sync::atomic::Ordering::SeqCst)
    }
}

/// A TLS client verifier that accepts any certificate: the test gateways' and proxies' are
/// self-signed.
#[derive(Debug)]
pub struct AnyCert(pub Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for AnyCert {
    fn verify_server_cert(
        &self,
        _: &rustls::pki_types::CertificateDer<'_>,
        _: &[rustls::pki_types::CertificateDer<'_>],
        _: &rustls::pki_types::ServerName<'_>,
        _: &[u8],
        _: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        _: &[u8],
        _: &rustls::pki_types::CertificateDer<'_>,
        _: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        Ok(rustls::client::danger::HandshakeSignatureValid::assertion())
    }
    fn verify_tls13_signature(
        &self,
        _: &[u8],
        _: &rustls::pki_types::CertificateDer<'_>,
        _: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        Ok(rustls::client::danger::HandshakeSignatureValid::assertion())
    }
    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
