//! What the process benches (sync, attachment, push) share: the dev stack's settings, fresh
//! users in users.d, the gateway binary started as its own process on a generated config, and
//! a minimal EAS phone (Provision, FolderSync; the benches add their own commands).
//!
//! Included by each bench with `#[path = "common/mod.rs"] mod common;`; not a bench target
//! of its own. Environment: `EAS_DEV_IMAP` (127.0.0.1:143), `EAS_DEV_DIR`
//! (/var/lib/eas-gateway-dev), `EAS_BENCH_GATEWAY` (gateway binary; default the one cargo
//! built for the bench), `EAS_BENCH_KEEP=1` (keep a gateway's temporary directory).

// Each bench uses only part of this module.
#![allow(dead_code)]

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, ensure, Context as _, Result};
use base64::Engine as _;
use bytes::Bytes;
use eas_gateway::wbxml::tags::{folder_hierarchy as f, provision as p};
use eas_gateway::wbxml::{self, Element, Limits};

/// The mail domain of the dev stack.
pub const DOMAIN: &str = "example.test";

/// The dev stack's IMAP server as host:port.
pub fn imap_addr() -> String {
    std::env::var("EAS_DEV_IMAP").unwrap_or_else(|_| "127.0.0.1:143".into())
}

/// The dev stack's state directory.
pub fn dev_dir() -> PathBuf {
    PathBuf::from(
        std::env::var("EAS_DEV_DIR").unwrap_or_else(|_| "/var/lib/eas-gateway-dev".into()),
    )
}

/// True when the variable is set to something other than empty or `0`.
pub fn env_flag(name: &str) -> bool {
    std::env::var(name).is_ok_and(|v| !v.is_empty() && v != "0")
}

/// The gateway binary to measure.
pub fn gateway_binary() -> PathBuf {
    std::env::var_os("EAS_BENCH_GATEWAY")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_eas-gateway")))
}

/// A fresh mail user through a per-user file in users.d (visible to Dovecot at once).
pub fn new_user(prefix: &str) -> Result<(String, String)> {
    new_user_with(prefix, "")
}

/// [`new_user`] with userdb extra fields (e.g. `userdb_eas_push_url=...`, where the dev
/// stack's Dovecot posts the user's mail events).
pub fn new_user_with(prefix: &str, extra_fields: &str) -> Result<(String, String)> {
    let n: u64 = rand::random();
    let address = format!("{prefix}-{n:016x}@{DOMAIN}");
    let password = format!("pw-{n:x}");
    let users_d = dev_dir().join("dovecot/users.d");
    let tmp = users_d.join(format!(".{address}.tmp"));
    std::fs::write(
        &tmp,
        format!("{address}:{{PLAIN}}{password}::::::{extra_fields}\n"),
    )
    .with_context(|| format!("writing {} (is the dev stack set up?)", tmp.display()))?;
    std::fs::rename(&tmp, users_d.join(&address))?;
    Ok((address, password))
}

/// Removes a bench user (its users.d file and its mail) when dropped, unless `EAS_BENCH_KEEP`
/// is set: every run makes fresh users, and a 20,000-mail mailbox takes about 150 MB.
pub struct UserCleanup(String);

impl UserCleanup {
    pub fn new(address: &str) -> UserCleanup {
        UserCleanup(address.to_string())
    }
}

impl Drop for UserCleanup {
    fn drop(&mut self) {
        if env_flag("EAS_BENCH_KEEP") {
            return;
        }
        let Some((local, domain)) = self.0.split_once('@') else {
            return;
        };
        let _ = std::fs::remove_file(dev_dir().join("dovecot/users.d").join(&self.0));
        let _ = std::fs::remove_dir_all(dev_dir().join("mail").join(domain).join(local));
    }
}

/// How to start a gateway process.
pub struct GatewayOptions<'a> {
    /// Directory for the config, log and state file; `None` makes a temporary one (removed
    /// with the process unless `EAS_BENCH_KEEP` is set).
    pub dir: Option<&'a Path>,
    /// Names the files (`<name>.toml`, `<name>.log`) and the temporary directory.
    pub name: &'a str,
    /// HTTPS with a fresh self-signed certificate for 127.0.0.1.
    pub tls: bool,
    /// The gateway's `EAS_LOG`.
    pub log_filter: String,
    /// `imap.timeout_secs`; `None` keeps the gateway's default.
    pub imap_timeout_secs: Option<u64>,
    /// The binary; `None` runs [`gateway_binary`].
    pub binary: Option<PathBuf>,
    /// More configuration, appended as is (whole sections, e.g. `[push]`).
    pub extra: String,
    /// `imap.session_idle_secs`; `None` keeps the gateway's default.
    pub session_idle_secs: Option<u64>,
}

impl GatewayOptions<'_> {
    /// Plain HTTP in a temporary directory, IMAP timeout 120 s, `EAS_LOG` from `EAS_BENCH_LOG`
    /// (default `info`).
    pub fn temporary(name: &str) -> GatewayOptions<'_> {
        GatewayOptions {
            dir: None,
            name,
            tls: false,
            log_filter: std::env::var("EAS_BENCH_LOG").unwrap_or_else(|_| "info".into()),
            imap_timeout_secs: Some(120),
            binary: None,
            extra: String::new(),
            session_idle_secs: None,
        }
    }
}

/// The gateway binary running as its own process; killed when dropped.
pub struct GatewayProcess {
    child: Child,
    pub pid: u32,
    /// The EAS endpoint, `http(s)://127.0.0.1:<port>/Microsoft-Server-ActiveSync`.
    pub base: String,
    /// `127.0.0.1:<port>`.
    pub addr: String,
    /// The self-signed certificate (DER), when the gateway speaks TLS.
    pub cert_der: Option<Vec<u8>>,
    /// The gateway's stdout and stderr.
    pub log: PathBuf,
    temp: Option<tempfile::TempDir>,
}

impl GatewayProcess {
    /// Writes the config, starts the binary and waits (up to 15 s) until it listens.
    pub fn start(opts: &GatewayOptions) -> Result<GatewayProcess> {
        let temp = match opts.dir {
            Some(_) => None,
            None => Some(
                tempfile::Builder::new()
                    .prefix(&format!("eas-bench-{}-", opts.name))
                    .tempdir()?,
            ),
        };
        let dir = match (&temp, opts.dir) {
            (Some(t), _) => t.path().to_path_buf(),
            (None, Some(d)) => d.to_path_buf(),
            (None, None) => unreachable!("a directory is given or made"),
        };
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let (imap_host, imap_port) = imap_addr()
            .rsplit_once(':')
            .map(|(h, p)| (h.to_string(), p.to_string()))
            .ok_or_else(|| anyhow!("EAS_DEV_IMAP must be host:port"))?;
        let mut cert_der = None;
        let mut tls_lines = String::new();
        if opts.tls {
            let cert = rcgen::generate_simple_self_signed(vec!["127.0.0.1".into()])?;
            std::fs::write(dir.join("cert.pem"), cert.cert.pem())?;
            std::fs::write(dir.join("key.pem"), cert.key_pair.serialize_pem())?;
            cert_der = Some(cert.cert.der().to_vec());
            tls_lines = "tls_cert = \"cert.pem\"\ntls_key = \"key.pem\"\n".into();
        }
        let mut timeout_line = opts
            .imap_timeout_secs
            .map(|s| format!("timeout_secs = {s}\n"))
            .unwrap_or_default();
        if let Some(s) = opts.session_idle_secs {
            timeout_line.push_str(&format!("session_idle_secs = {s}\n"));
        }
        // `imap.login_queue_secs` (the gateway's default when unset).
        if let Ok(s) = std::env::var("EAS_BENCH_LOGIN_QUEUE_SECS") {
            timeout_line.push_str(&format!("login_queue_secs = {s}\n"));
        }
        let config = format!(
            r#"[server]
listen = "127.0.0.1:{port}"
# Every bench phone connects from 127.0.0.1.
max_connections_per_ip = 100000
{tls_lines}[imap]
host = "{imap_host}"
port = {imap_port}
security = "none"
{timeout_line}[smtp]
host = "127.0.0.1"
port = 587
security = "none"
[state]
url = "sqlite://{db}"
[identity]
domain = "{DOMAIN}"
{extra}
"#,
            db = dir.join("state.db").display(),
            extra = opts.extra,
        );
        let config_path = dir.join(format!("{}.toml", opts.name));
        std::fs::write(&config_path, config)?;
        let log_path = dir.join(format!("{}.log", opts.name));
        let log = File::create(&log_path)?;
        let binary = opts.binary.clone().unwrap_or_else(gateway_binary);
        let child = Command::new(&binary)
            .arg("serve")
            .arg("--config")
            .arg(&config_path)
            .env("EAS_LOG", &opts.log_filter)
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {}", binary.display()))?;
        let scheme = if opts.tls { "https" } else { "http" };
        let mut gw = GatewayProcess {
            pid: child.id(),
            child,
            base: format!("{scheme}://127.0.0.1:{port}/Microsoft-Server-ActiveSync"),
            addr: format!("127.0.0.1:{port}"),
            cert_der,
            log: log_path,
            temp,
        };
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return Ok(gw);
            }
            if let Some(status) = gw.child.try_wait()? {
                bail!("the gateway exited ({status}) at start:\n{}", gw.log_tail());
            }
            if Instant::now() > deadline {
                bail!("the gateway did not listen within 15 s:\n{}", gw.log_tail());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The last 20 lines of the gateway's log.
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }

    /// VmHWM: the most resident memory the process ever had.
    pub fn peak_rss_kib(&self) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid)).ok()?;
        status
            .lines()
            .find(|l| l.starts_with("VmHWM:"))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
    }
}

impl Drop for GatewayProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if env_flag("EAS_BENCH_KEEP") {
            if let Some(dir) = self.temp.take() {
                println!("kept gateway directory {}", dir.keep().display());
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// A minimal EAS phone

/// One device of one user speaking WBXML to the gateway.
#[derive(Clone)]
pub struct Phone {
    pub http: reqwest::Client,
    pub base: String,
    pub user: String,
    /// The `Authorization` header's value.
    pub auth: String,
    pub device_id: String,
    pub device_type: &'static str,
    pub version: &'static str,
    pub policy_key: Option<u32>,
}

impl Phone {
    /// A phone speaking EAS 16.1 as DeviceType `Bench`, not yet provisioned.
    pub fn new(
        http: reqwest::Client,
        base: &str,
        user: &str,
        pw: &str,
        device_id: String,
    ) -> Phone {
        let auth = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pw}"));
        Phone {
            http,
            base: base.to_string(),
            user: user.to_string(),
            auth: format!("Basic {auth}"),
            device_id,
            device_type: "Bench",
            version: "16.1",
            policy_key: None,
        }
    }

    /// The request line's query for `cmd`, followed by `extra` (`&Name=value...`).
    pub fn query(&self, cmd: &str, extra: &str) -> String {
        format!(
            "?Cmd={cmd}&User={}&DeviceId={}&DeviceType={}{extra}",
            self.user, self.device_id, self.device_type
        )
    }

    /// A POST of `cmd` with the phone's headers and no body yet.
    pub fn request(&self, cmd: &str, extra: &str) -> reqwest::RequestBuilder {
        let mut req = self
            .http
            .post(format!("{}{}", self.base, self.query(cmd, extra)))
            .header("Authorization", &self.auth)
            .header("MS-ASProtocolVersion", self.version)
            .header("User-Agent", "eas-gateway-bench/1");
        if let Some(k) = self.policy_key {
            req = req.header("X-MS-PolicyKey", k.to_string());
        }
        req
    }

    /// Posts a WBXML body; returns the HTTP status and the raw answer.
    pub async fn post_bytes(
        &self,
        cmd: &str,
        body: impl Into<reqwest::Body>,
    ) -> Result<(u16, Bytes)> {
        let resp = self
            .request(cmd, "")
            .header("Content-Type", "application/vnd.ms-sync.wbxml")
            .body(body)
            .send()
            .await
            .with_context(|| format!("{cmd} request"))?;
        let status = resp.status().as_u16();
        let body = resp.bytes().await?;
        Ok((status, body))
    }

    /// Posts `body`; an HTTP status other than 200 is an error, an empty answer is `None`.
    pub async fn post(&self, cmd: &str, body: &Element) -> Result<Option<Element>> {
        let (status, raw) = self.post_bytes(cmd, wbxml::encode(body)).await?;
        ensure!(status == 200, "{cmd}: HTTP {status}");
        if raw.is_empty() {
            return Ok(None);
        }
        Ok(Some(wbxml::decode(raw, &Limits::default())?))
    }

    /// The two-step Provision: the temporary key, then the acknowledged final one.
    pub async fn provision(&mut self) -> Result<()> {
        let policy = |key: Option<u32>| {
            let mut pol =
                Element::new(p::POLICY).text_child(p::POLICY_TYPE, "MS-EAS-Provisioning-WBXML");
            if let Some(k) = key {
                pol = pol
                    .text_child(p::POLICY_KEY, k.to_string())
                    .text_child(p::STATUS, "1");
            }
            Element::new(p::PROVISION).child(Element::new(p::POLICIES).child(pol))
        };
        let temp = policy_key(self.post("Provision", &policy(None)).await?)?;
        self.policy_key = Some(temp);
        self.policy_key = Some(policy_key(
            self.post("Provision", &policy(Some(temp))).await?,
        )?);
        Ok(())
    }

    /// The Inbox's ServerId from a FolderSync with key 0.
    pub async fn inbox_id(&self) -> Result<String> {
        let r = self
            .post(
                "FolderSync",
                &Element::new(f::FOLDER_SYNC).text_child(f::SYNC_KEY, "0"),
            )
            .await?
            .ok_or_else(|| anyhow!("empty FolderSync answer"))?;
        r.first(f::CHANGES)
            .and_then(|c| {
                c.all(f::ADD)
                    .find(|a| a.text_of(f::TYPE) == Some("2"))
                    .and_then(|a| a.text_of(f::SERVER_ID).map(String::from))
            })
            .ok_or_else(|| anyhow!("no Inbox (folder type 2) in FolderSync"))
    }
}

fn policy_key(resp: Option<Element>) -> Result<u32> {
    resp.as_ref()
        .and_then(|r| r.first(p::POLICIES))
        .and_then(|ps| ps.first(p::POLICY))
        .and_then(|pol| pol.text_of(p::POLICY_KEY))
        .ok_or_else(|| anyhow!("no PolicyKey in the Provision answer"))?
        .parse()
        .context("PolicyKey")
}
