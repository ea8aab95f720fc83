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
//! `EAS_BENCH_LOG`, `EAS_BENCH_KEEP`). Nothing is asserted about the figures.

#[path = "common/mod.rs"]
mod common;

use std::time::{Duration, Instant};

use anyhow::{anyhow, ensure, Context as _, Result};
use base64::Engine as _;
use eas_gateway::wbxml::tags::{airsyncbase as b, item_operations as io};
use eas_gateway::wbxml::{self, Element};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

use common::{
    gateway_binary, imap_addr, new_user, GatewayOptions, GatewayProcess, Phone, UserCleanup,
};

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
    let _cleanup = UserCleanup::new(&user);
    let uid = append_big_mail(&user, &pw, size).await?;
    println!("mail with a {size}-byte attachment appended (UID {uid})");
    println!(
        "{:<34} {:>12} {:>12} {:>8} {:>14} {:>14}",
        "case", "attachment", "response", "secs", "VmHWM base KiB", "VmHWM peak KiB"
    );
    for case in [Case::Inline, Case::Multipart, Case::GetAttachment] {
        let gw = GatewayProcess::start(&GatewayOptions::temporary("attachment"))?;
        let version = if case == Case::GetAttachment {
            "12.1"
        } else {
            "16.1"
        };
        let mut phone = Phone::new(
            reqwest::Client::new(),
            &gw.base,
            &user,
            &pw,
            "BENCHATT1".into(),
        );
        phone.version = version;
        phone.provision().await?;
        let inbox = phone.inbox_id().await?;
        let base = gw.peak_rss_kib();
        let reference = format!("{inbox}:{uid}:0");
        let started = Instant::now();
        let bytes = fetch(&phone, case, &reference).await?;
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
// Mail

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
// The fetch

/// Fetches the attachment and returns the response's size, read in chunks.
async fn fetch(phone: &Phone, case: Case, reference: &str) -> Result<u64> {
    let req = match case {
        Case::GetAttachment => {
            let encoded = reference.replace(':', "%3a");
            phone.request("GetAttachment", &format!("&AttachmentName={encoded}"))
        }
        Case::Inline | Case::Multipart => {
            let body = Element::new(io::ITEM_OPERATIONS).child(
                Element::new(io::FETCH)
                    .text_child(io::STORE, "Mailbox")
                    .text_child(b::FILE_REFERENCE, reference),
            );
            let mut req = phone
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
