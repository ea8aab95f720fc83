//! Peak memory of the release gateway while it sends a large attachment.
//!
//! Run with `deploy/dev/mailstack.sh start && cargo bench --bench attachment` (see
//! benches/README.md). One mail with a base64 attachment of `EAS_BENCH_ATTACHMENT_MB` (50) MB
//! is appended over IMAP; then, each case on a fresh gateway process (plain HTTP on a free
//! loopback port, SQLite in a temporary directory, so its VmHWM is the case's alone):
//!
//! 1. ItemOperations Fetch of the attachment by FileReference, inline (base64 `Data`);
//! 2. the same with `MS-ASAcceptMultiPart: T` (a gateway without multipart answers inline);
//! 3. GetAttachment (EAS 12.1).
//!
//! The phone reads the response in chunks and counts the bytes. Printed per case: the
//! attachment size, the response size, the seconds from request to last byte, and the
//! gateway's VmHWM after provisioning (the baseline) and after the response.
//!
//! `EAS_BENCH_GATEWAY` picks another gateway binary (e.g. an older build, for a before/after
//! comparison); other knobs as in benches/sync.rs (`EAS_DEV_IMAP`, `EAS_DEV_DIR`,
//! `EAS_BENCH_LOG`). Nothing is asserted about the figures.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, ensure, Context as _, Result};
use base64::Engine as _;
use eas_gateway::wbxml::tags::{
    airsyncbase as b, folder_hierarchy as f, item_operations as io, provision as p,
};
use eas_gateway::wbxml::{self, Element, Limits};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

const DOMAIN: &str = "example.test";

fn main() {
    if std::env::args().any(|a| a == "--test" || a == "--list") {
        println!("attachment bench: skipped in test mode (run `cargo bench --bench attachment`)");
        return;
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    if let Err(e) = rt.block_on(run()) {
        eprintln!("attachment bench failed: {e:#}");
        std::process::exit(1);
    }
}

fn imap_addr() -> String {
    std::env::var("EAS_DEV_IMAP").unwrap_or_else(|_| "127.0.0.1:143".into())
}

fn gateway_binary() -> PathBuf {
    std::env::var_os("EAS_BENCH_GATEWAY")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_eas-gateway")))
}

fn attachment_bytes() -> usize {
    let mb: usize = std::env::var("EAS_BENCH_ATTACHMENT_MB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(50);
    mb * 1024 * 1024
}

async fn run() -> Result<()> {
    TcpStream::connect(imap_addr())
        .await
        .context("no IMAP server: run `deploy/dev/mailstack.sh start` first")?;
    println!("attachment bench: gateway {}", gateway_binary().display());
    let size = attachment_bytes();
    let (user, pw) = new_user("benchatt")?;
    let uid = append_big_mail(&user, &pw, size).await?;
    println!("mail with a {size}-byte attachment appended (UID {uid})");
    println!(
        "{:<34} {:>12} {:>12} {:>8} {:>14} {:>14}",
        "case", "attachment", "response", "secs", "VmHWM base KiB", "VmHWM peak KiB"
    );
    for case in [Case::Inline, Case::Multipart, Case::GetAttachment] {
        let gw = GatewayProcess::start()?;
        let version = if case == Case::GetAttachment {
            "12.1"
        } else {
            "16.1"
        };
        let mut phone = Phone::new(&gw.base, &user, &pw, version);
        phone.provision().await?;
        let inbox = phone.inbox_id().await?;
        let base = gw.peak_rss_kib();
        let reference = format!("{inbox}:{uid}:0");
        let started = Instant::now();
        let bytes = phone.fetch(case, &reference).await?;
        let secs = started.elapsed().as_secs_f64();
        // The response is complete when the phone has read it; the gateway's task may still be
        // logging out.
        tokio::time::sleep(Duration::from_millis(200)).await;
        let peak = gw.peak_rss_kib();
        println!(
            "{:<34} {:>12} {:>12} {:>8.2} {:>14} {:>14}",
            case.label(),
            size,
            bytes,
            secs,
            base.map_or("-".into(), |k| k.to_string()),
            peak.map_or("-".into(), |k| k.to_string()),
        );
    }
    Ok(())
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Case {
    Inline,
    Multipart,
    GetAttachment,
}

impl Case {
    fn label(self) -> &'static str {
        match self {
            Case::Inline => "ItemOperations inline",
            Case::Multipart => "ItemOperations MS-ASAcceptMultiPart",
            Case::GetAttachment => "GetAttachment (12.1)",
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The gateway process

struct GatewayProcess {
    child: Child,
    pid: u32,
    base: String,
    _dir: tempfile::TempDir,
}

impl GatewayProcess {
    fn start() -> Result<GatewayProcess> {
        let dir = tempfile::Builder::new()
            .prefix("eas-bench-attachment-")
            .tempdir()?;
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let (imap_host, imap_port) = imap_addr()
            .rsplit_once(':')
            .map(|(h, p)| (h.to_string(), p.to_string()))
            .ok_or_else(|| anyhow!("EAS_DEV_IMAP must be host:port"))?;
        let config = format!(
            r#"[server]
listen = "127.0.0.1:{port}"
[imap]
host = "{imap_host}"
port = {imap_port}
security = "none"
timeout_secs = 120
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
        let config_path = dir.path().join("eas-gateway.toml");
        std::fs::write(&config_path, config)?;
        let log = File::create(dir.path().join("gateway.log"))?;
        let child = Command::new(gateway_binary())
            .arg("serve")
            .arg("--config")
            .arg(&config_path)
            .env(
                "EAS_LOG",
                std::env::var("EAS_BENCH_LOG").unwrap_or_else(|_| "info".into()),
            )
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {}", gateway_binary().display()))?;
        let mut gw = GatewayProcess {
            pid: child.id(),
            child,
            base: format!("http://127.0.0.1:{port}/Microsoft-Server-ActiveSync"),
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return Ok(gw);
            }
            if let Some(status) = gw.child.try_wait()? {
                bail!("the gateway exited ({status}) at start");
            }
            if Instant::now() > deadline {
                bail!("the gateway did not listen within 15 s");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// VmHWM: the most resident memory the process ever had.
    fn peak_rss_kib(&self) -> Option<u64> {
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
    }
}

// ---------------------------------------------------------------------------------------------
// Mail

fn new_user(prefix: &str) -> Result<(String, String)> {
    let n: u64 = rand::random();
    let address = format!("{prefix}-{n:016x}@{DOMAIN}");
    let password = format!("pw-{n:x}");
    let dir = std::env::var("EAS_DEV_DIR").unwrap_or_else(|_| "/var/lib/eas-gateway-dev".into());
    let users_d = Path::new(&dir).join("dovecot/users.d");
    let tmp = users_d.join(format!(".{address}.tmp"));
    std::fs::write(&tmp, format!("{address}:{{PLAIN}}{password}::::::\n"))
        .with_context(|| format!("writing {} (is the dev stack set up?)", tmp.display()))?;
    std::fs::rename(&tmp, users_d.join(&address))?;
    Ok((address, password))
}

/// Appends the mail over IMAP (LITERAL+) and returns its UID.
async fn append_big_mail(user: &str, pw: &str, size: usize) -> Result<u32> {
    let mut x: u64 = 0x2545_F491_4F6C_DD1D;
    let mut data = Vec::with_capacity(size + 8);
    while data.len() < size {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        data.extend_from_slice(&x.to_le_bytes());
    }
    data.truncate(size);
    let b64 = base64::engine::general_purpose::STANDARD.encode(&data);
    let mut mail = String::with_capacity(b64.len() * 103 / 100 + 1024);
    mail.push_str(
        "From: Sender <sender@example.org>\r\nTo: someone@example.test\r\nSubject: Large\r\n\
         MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"b\"\r\n\r\n\
         --b\r\nContent-Type: text/plain\r\n\r\nSee the file.\r\n\
         --b\r\nContent-Type: application/octet-stream; name=\"big.bin\"\r\n\
         Content-Disposition: attachment; filename=\"big.bin\"\r\n\
         Content-Transfer-Encoding: base64\r\n\r\n",
    );
    for line in b64.as_bytes().chunks(76) {
        mail.push_str(std::str::from_utf8(line)?);
        mail.push_str("\r\n");
    }
    mail.push_str("--b--\r\n");

    let stream = TcpStream::connect(imap_addr()).await?;
    let (r, mut w) = stream.into_split();
    let mut r = BufReader::new(r);
    let mut line = String::new();
    r.read_line(&mut line).await?;
    let mut run = async |cmd: &[u8]| -> Result<String> {
        w.write_all(cmd).await?;
        let mut out = String::new();
        loop {
            line.clear();
            ensure!(r.read_line(&mut line).await? > 0, "IMAP closed");
            out.push_str(&line);
            if line.starts_with("t ") {
                ensure!(line.starts_with("t OK"), "IMAP: {line}");
                return Ok(out);
            }
        }
    };
    run(format!("t LOGIN \"{user}\" \"{pw}\"\r\n").as_bytes()).await?;
    let mut append = format!("t APPEND INBOX {{{}+}}\r\n", mail.len()).into_bytes();
    append.extend_from_slice(mail.as_bytes());
    append.extend_from_slice(b"\r\n");
    let done = run(&append).await?;
    let uid = done
        .split("APPENDUID ")
        .nth(1)
        .and_then(|s| s.split_whitespace().nth(1))
        .and_then(|s| s.trim_end_matches(']').parse().ok())
        .ok_or_else(|| anyhow!("no APPENDUID: {done}"))?;
    Ok(uid)
}

// ---------------------------------------------------------------------------------------------
// A minimal EAS phone

struct Phone {
    http: reqwest::Client,
    base: String,
    user: String,
    auth: String,
    version: &'static str,
    policy_key: Option<u32>,
}

impl Phone {
    fn new(base: &str, user: &str, pw: &str, version: &'static str) -> Phone {
        Phone {
            http: reqwest::Client::new(),
            base: base.to_string(),
            user: user.to_string(),
            auth: format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pw}"))
            ),
            version,
            policy_key: None,
        }
    }

    fn request(&self, cmd: &str, extra: &str) -> reqwest::RequestBuilder {
        let url = format!(
            "{}?Cmd={cmd}&User={}&DeviceId=BENCHATT1&DeviceType=Bench{extra}",
            self.base, self.user
        );
        let mut req = self
            .http
            .post(url)
            .header("Authorization", &self.auth)
            .header("MS-ASProtocolVersion", self.version);
        if let Some(k) = self.policy_key {
            req = req.header("X-MS-PolicyKey", k.to_string());
        }
        req
    }

    async fn post(&self, cmd: &str, body: &Element) -> Result<Element> {
        let resp = self
            .request(cmd, "")
            .header("Content-Type", "application/vnd.ms-sync.wbxml")
            .body(wbxml::encode(body))
            .send()
            .await?;
        ensure!(resp.status() == 200, "{cmd}: HTTP {}", resp.status());
        let raw = resp.bytes().await?;
        Ok(wbxml::decode(raw, &Limits::default())?)
    }

    async fn provision(&mut self) -> Result<()> {
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
        let key_of = |r: &Element| -> Result<u32> {
            r.first(p::POLICIES)
                .and_then(|ps| ps.first(p::POLICY))
                .and_then(|pol| pol.text_of(p::POLICY_KEY))
                .ok_or_else(|| anyhow!("no PolicyKey"))?
                .parse()
                .context("PolicyKey")
        };
        let r = self.post("Provision", &policy(None)).await?;
        let temp = key_of(&r)?;
        self.policy_key = Some(temp);
        let r = self.post("Provision", &policy(Some(temp))).await?;
        self.policy_key = Some(key_of(&r)?);
        Ok(())
    }

    async fn inbox_id(&self) -> Result<String> {
        let r = self
            .post(
                "FolderSync",
                &Element::new(f::FOLDER_SYNC).text_child(f::SYNC_KEY, "0"),
            )
            .await?;
        r.first(f::CHANGES)
            .and_then(|c| c.all(f::ADD).find(|a| a.text_of(f::TYPE) == Some("2")))
            .and_then(|a| a.text_of(f::SERVER_ID))
            .map(str::to_string)
            .ok_or_else(|| anyhow!("no Inbox in FolderSync"))
    }

    /// Fetches the attachment and returns the response's size, read in chunks.
    async fn fetch(&self, case: Case, reference: &str) -> Result<u64> {
        let req = match case {
            Case::GetAttachment => {
                let encoded = reference.replace(':', "%3a");
                self.request("GetAttachment", &format!("&AttachmentName={encoded}"))
            }
            Case::Inline | Case::Multipart => {
                let body = Element::new(io::ITEM_OPERATIONS).child(
                    Element::new(io::FETCH)
                        .text_child(io::STORE, "Mailbox")
                        .text_child(b::FILE_REFERENCE, reference),
                );
                let mut req = self
                    .request("ItemOperations", "")
                    .header("Content-Type", "application/vnd.ms-sync.wbxml")
                    .body(wbxml::encode(&body));
                if case == Case::Multipart {
                    req = req.header("MS-ASAcceptMultiPart", "T");
                }
                req
            }
        };
        let mut resp = req.send().await?;
        ensure!(resp.status() == 200, "HTTP {}", resp.status());
        let mut total = 0u64;
        while let Some(chunk) = resp.chunk().await? {
            total += chunk.len() as u64;
        }
        Ok(total)
    }
}
