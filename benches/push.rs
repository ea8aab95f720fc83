//! Push measurement against the dev mail stack (`deploy/dev/mailstack.sh start`), not a test:
//!
//! 1. latency from the end of SMTP DATA (Postfix, port 25) to the answer of a waiting Ping,
//!    over `PUSH_BENCH_DELIVERIES` deliveries (default 20), split into steps: end of DATA ->
//!    Dovecot's LMTP "saved mail" log line -> the gateway's watcher hearing of it (its
//!    "push watcher event" debug line) -> the Ping answer. References from the same run: a raw
//!    IMAP client idling on a selected INBOX, and one with `NOTIFY SET (personal ...)` and
//!    nothing selected. Each delivery comes `PUSH_BENCH_QUIET_MS` (default 1000) after the
//!    device's previous Sync plus 300 ms. The log steps need microsecond timestamps in the Dovecot log (the dev
//!    stack's `log_timestamp`; apply with `deploy/dev/mailstack.sh reload`) and a clock in UTC.
//! 2. the gateway process's RSS and CPU while it holds idle Pings: `PUSH_BENCH_PINGS` (a comma
//!    list of levels, default `2000`) devices spread over `PUSH_BENCH_USERS` users (default
//!    20), for each transport of `PUSH_BENCH_TRANSPORTS` (`plain`, `tls`; default `plain`);
//!    with the gateway's IMAP connections, memory per waiting device, and Dovecot's own
//!    memory (RSS summed over its processes) and process count. Each transport runs once per
//!    push source of `PUSH_BENCH_SOURCES` (`imap`, `events`; default both): the users' Dovecot
//!    events (`deploy/dovecot/eas-push.lua`, enabled by the dev stack for users with an
//!    `eas_push_url` userdb field) go to the gateway's events listener; idle pooled sessions
//!    close after `PUSH_BENCH_SESSION_IDLE_SECS` (5). After the levels, `PUSH_BENCH_WAKES`
//!    (50) users get a mail each, one after the other, timed from the end of SMTP DATA to the
//!    answer of one of their waiting Pings (p50/p99).
//!
//! The gateway runs as its own process (the `eas-gateway` binary, or `EAS_BENCH_GATEWAY`; the
//! dev stack from `EAS_DEV_IMAP` and `EAS_DEV_DIR` as in benches/sync.rs) so its memory is
//! measured alone; each transport gets a fresh gateway process on the same state file. Run as
//! root (for the users.d files, `ss -p` and raising the open-files limit):
//! `cargo bench --bench push`; the figures in benches/README.md come from
//! `PUSH_BENCH_DELIVERIES=100 PUSH_BENCH_PINGS=0 cargo bench --bench push` and
//! `PUSH_BENCH_DELIVERIES=0 PUSH_BENCH_USERS=1000 PUSH_BENCH_PINGS=1000,10000
//! PUSH_BENCH_TRANSPORTS=plain,tls cargo bench --bench push`.

#[path = "common/mod.rs"]
mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use eas_gateway::wbxml::tags::{airsync as a, ping as p};
use eas_gateway::wbxml::{self, Element};
use futures::StreamExt;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

use common::{dev_dir, new_user_with, GatewayOptions, GatewayProcess, Phone, UserCleanup};

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn env_list(name: &str, default: &str) -> Vec<String> {
    std::env::var(name)
        .unwrap_or_else(|_| default.into())
        .split(',')
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect()
}

/// Wall-clock seconds (comparable with the timestamps in the logs).
fn now_epoch() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// Raises this process's open-files limit (inherited by the gateway it starts).
fn raise_nofile(n: u64) {
    let pid = std::process::id().to_string();
    let limit = format!("--nofile={n}:{n}");
    match Command::new("prlimit")
        .args(["--pid", &pid, &limit])
        .status()
    {
        Ok(s) if s.success() => {}
        _ => {
            let now = std::fs::read_to_string("/proc/self/limits")
                .ok()
                .and_then(|l| {
                    l.lines()
                        .find(|x| x.starts_with("Max open files"))
                        .map(|x| {
                            x.split_whitespace()
                                .skip(3)
                                .take(2)
                                .collect::<Vec<_>>()
                                .join("/")
                        })
                })
                .unwrap_or_default();
            eprintln!("could not raise the open-files limit to {n}; it stays {now} (soft/hard)");
        }
    }
}

/// The secret the dev stack's Dovecot sends with push events (`mailstack.sh env`).
fn events_secret() -> String {
    std::env::var("EAS_DEV_PUSH_SECRET").unwrap_or_else(|_| "eas-dev-push-events-secret".into())
}

/// Starts the gateway binary on the state file in `dir`, logging to `dir/<name>.log`, with
/// these `[push]` lines and `imap.session_idle_secs`.
fn start_gateway(
    dir: &Path,
    name: &str,
    tls: bool,
    push: &str,
    session_idle_secs: Option<u64>,
) -> GatewayProcess {
    GatewayProcess::start(&GatewayOptions {
        dir: Some(dir),
        name,
        tls,
        log_filter: std::env::var("PUSH_BENCH_LOG").unwrap_or_else(|_| {
            "warn,eas_gateway::push::watcher=debug,eas_gateway::commands::ping=debug".into()
        }),
        imap_timeout_secs: None,
        binary: None,
        extra: format!("[push]\n{push}\n"),
        session_idle_secs,
    })
    .expect("start eas-gateway")
}

/// The `[push]` lines of a gateway pushing from `source` ("imap" or "events"); both have the
/// events listener on `events_port` (the users' Dovecot posts there; "imap" ignores them).
fn push_lines(source: &str, events_port: u16) -> String {
    format!(
        "source = \"{source}\"\nevents_listen = \"127.0.0.1:{events_port}\"\n\
         events_secret = \"{}\"",
        events_secret()
    )
}

/// A device of `user` on the gateway, sharing the bench's HTTP client.
fn new_device(gw: &GatewayProcess, http: &reqwest::Client, user: &str, password: &str) -> Phone {
    Phone::new(
        http.clone(),
        &gw.base,
        user,
        password,
        format!("BENCH{:016X}", rand::random::<u64>()),
    )
}

/// Syncs until nothing is left; returns the key.
async fn sync(d: &Phone, cid: &str, key: &str) -> String {
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
        let Some(r) = d.post("Sync", &req).await.expect("Sync") else {
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

async fn deliver(to: &str, subject: &str) -> f64 {
    let smtp = std::env::var("EAS_DEV_SMTP").unwrap_or_else(|_| "127.0.0.1:25".into());
    let s = TcpStream::connect(smtp).await.expect("SMTP");
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
    let end = now_epoch();
    let rep = reply(&mut r).await;
    assert!(rep.starts_with("250"), "{rep}");
    let _ = w.write_all(b"QUIT\r\n").await;
    end
}

/// A raw IMAP client that logs in, runs `setup` and idles; sends the wall-clock arrival time of
/// each response that reports a new INBOX message (`* n EXISTS` or `* STATUS INBOX`).
async fn raw_watcher(
    user: String,
    pw: String,
    setup: &'static [&'static str],
    tx: tokio::sync::mpsc::UnboundedSender<f64>,
) {
    let s = TcpStream::connect(common::imap_addr()).await.expect("IMAP");
    let (r, mut w) = s.into_split();
    let mut r = BufReader::new(r);
    let mut line = String::new();
    r.read_line(&mut line).await.unwrap();
    let mut cmds = format!("a LOGIN \"{user}\" \"{pw}\"\r\n");
    for (i, c) in setup.iter().enumerate() {
        cmds.push_str(&format!("s{i} {c}\r\n"));
    }
    cmds.push_str("i IDLE\r\n");
    w.write_all(cmds.as_bytes()).await.unwrap();
    let mut idling = false;
    loop {
        line.clear();
        if r.read_line(&mut line).await.unwrap_or(0) == 0 {
            return;
        }
        if line.starts_with("+ ") {
            idling = true;
            continue;
        }
        let new_mail = (line.starts_with("* ") && line.contains(" EXISTS"))
            || line.to_ascii_uppercase().starts_with("* STATUS INBOX ");
        if idling && new_mail {
            let _ = tx.send(now_epoch());
        }
    }
}

const IDLE_SETUP: &[&str] = &["SELECT INBOX"];
const NOTIFY_PERSONAL_SETUP: &[&str] = &[
    "ENABLE CONDSTORE",
    "NOTIFY SET (personal (MessageNew MessageExpunge FlagChange MailboxName))",
];

/// The next time a raw watcher reported, if within 10 s.
async fn next_within(rx: &mut tokio::sync::mpsc::UnboundedReceiver<f64>) -> Option<f64> {
    tokio::time::timeout(Duration::from_secs(10), rx.recv())
        .await
        .ok()
        .flatten()
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
        "{name:<44} n={:<4} median {:>7.1} ms  p99 {:>7.1} ms  max {:>7.1} ms",
        v.len(),
        percentile(&v, 0.5),
        percentile(&v, 0.99),
        v.last().copied().unwrap_or(f64::NAN)
    );
}

/// Days since 1970-01-01 of a proleptic Gregorian date.
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// "2026-11-27 02:12:12.775522" or "2026-11-27T02:12:12.775522Z" (UTC) -> epoch seconds.
fn parse_stamp(date: &str, time: &str) -> Option<f64> {
    let mut d = date.split('-').map(|x| x.parse::<i64>().ok());
    let (y, mo, da) = (d.next()??, d.next()??, d.next()??);
    let time = time.trim_end_matches('Z');
    let mut t = time.split(':');
    let (h, mi) = (
        t.next()?.parse::<i64>().ok()?,
        t.next()?.parse::<i64>().ok()?,
    );
    let sec: f64 = t.next()?.parse().ok()?;
    Some((days_from_civil(y, mo, da) * 86_400 + h * 3600 + mi * 60) as f64 + sec)
}

/// Times of Dovecot's LMTP "saved mail to INBOX" lines for `user`.
fn lmtp_times(user: &str) -> Vec<f64> {
    let log = std::env::var("EAS_DEV_DOVECOT_LOG")
        .map(PathBuf::from)
        .unwrap_or_else(|_| dev_dir().join("log/dovecot.log"));
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let needle = format!("lmtp({user})");
    let mut out: Vec<f64> = text
        .lines()
        .filter(|l| l.contains(&needle) && l.contains("saved mail to INBOX"))
        .filter_map(|l| {
            let mut it = l.split_whitespace();
            parse_stamp(it.next()?, it.next()?)
        })
        .collect();
    out.sort_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal));
    out
}

/// Times of the gateway's "push watcher event" lines for `user`.
fn watcher_times(log: &Path, user: &str) -> Vec<f64> {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let mut out: Vec<f64> = text
        .lines()
        .filter(|l| l.contains("push watcher event") && l.contains(user))
        .filter_map(|l| {
            let stamp = l.split_whitespace().next()?;
            let (date, time) = stamp.split_once('T')?;
            parse_stamp(date, time)
        })
        .collect();
    out.sort_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal));
    out
}

fn first_at_or_after(times: &[f64], t: f64) -> Option<f64> {
    times.iter().copied().find(|&x| x >= t)
}

async fn latency(gw: &GatewayProcess, http: &reqwest::Client, deliveries: usize, quiet_ms: u64) {
    let (user, pw) = new_user_with("pushbench", "").expect("users.d");
    let _cleanup = UserCleanup::new(&user);
    let mut dev = new_device(gw, http, &user, &pw);
    dev.provision().await.expect("Provision");
    let inbox = dev.inbox_id().await.expect("Inbox");
    let mut key = sync(&dev, &inbox, "0").await;
    let (idle_tx, mut idle_rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(raw_watcher(user.clone(), pw.clone(), IDLE_SETUP, idle_tx));
    let (notify_tx, mut notify_rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(raw_watcher(
        user.clone(),
        pw.clone(),
        NOTIFY_PERSONAL_SETUP,
        notify_tx,
    ));
    tokio::time::sleep(Duration::from_millis(500)).await;
    // (end of DATA, Ping answer, raw IDLE, raw NOTIFY) per delivery, wall clock.
    let mut rows: Vec<(f64, f64, Option<f64>, Option<f64>)> = Vec::new();
    for i in 0..deliveries {
        let d = dev.clone();
        let body = ping_body(&inbox, 300);
        let ping = tokio::spawn(async move {
            let r = d.post("Ping", &body).await.expect("Ping");
            (
                now_epoch(),
                r.and_then(|e| e.text_of(p::STATUS).map(String::from)),
            )
        });
        tokio::time::sleep(Duration::from_millis(300)).await;
        while idle_rx.try_recv().is_ok() {}
        while notify_rx.try_recv().is_ok() {}
        let sent = deliver(&user, &format!("bench {i}")).await;
        let (answered, status) = ping.await.expect("ping task");
        let idle_at = next_within(&mut idle_rx).await;
        let notify_at = next_within(&mut notify_rx).await;
        if status.as_deref() != Some("2") {
            println!("delivery {i}: Ping status {status:?}");
        }
        rows.push((sent, answered, idle_at, notify_at));
        key = sync(&dev, &inbox, &key).await;
        // Quiet time: Dovecot reports a change 500 ms after the first file event it sees, so
        // a delivery soon after the device's Sync (which touches INBOX's index) would be
        // reported early by the timer that Sync started. Phones get mail long after syncing.
        tokio::time::sleep(Duration::from_millis(quiet_ms)).await;
    }
    // Let the logs reach the disk.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let lmtp = lmtp_times(&user);
    let events = watcher_times(&gw.log, &user);
    let ms = |a: f64, b: f64| (b - a) * 1000.0;
    let (mut total, mut idle, mut notify) = (Vec::new(), Vec::new(), Vec::new());
    let (mut to_lmtp, mut to_watcher, mut to_answer) = (Vec::new(), Vec::new(), Vec::new());
    let (mut lmtp_idle, mut lmtp_notify) = (Vec::new(), Vec::new());
    for &(sent, answered, idle_at, notify_at) in &rows {
        total.push(ms(sent, answered));
        if let Some(t) = idle_at {
            idle.push(ms(sent, t));
        }
        if let Some(t) = notify_at {
            notify.push(ms(sent, t));
        }
        let Some(saved) = first_at_or_after(&lmtp, sent - 0.001) else {
            continue;
        };
        to_lmtp.push(ms(sent, saved));
        if let Some(t) = idle_at {
            lmtp_idle.push(ms(saved, t));
        }
        if let Some(t) = notify_at {
            lmtp_notify.push(ms(saved, t));
        }
        if let Some(heard) = first_at_or_after(&events, saved) {
            to_watcher.push(ms(saved, heard));
            to_answer.push(ms(heard, answered));
        }
    }
    println!(
        "\n== push latency, SMTP end of DATA -> notification ({deliveries} deliveries, \
         {quiet_ms} ms quiet after each Sync)"
    );
    summary("gateway Ping answer (total)", total);
    summary("raw IMAP IDLE client, INBOX selected", idle);
    summary("raw IMAP NOTIFY (personal) client", notify);
    println!("-- steps (Dovecot log and gateway log, wall clock)");
    summary("end of DATA -> LMTP saved", to_lmtp);
    summary("LMTP saved -> gateway watcher event", to_watcher);
    summary("watcher event -> Ping answer at client", to_answer);
    summary("LMTP saved -> raw IDLE client EXISTS", lmtp_idle);
    summary("LMTP saved -> raw NOTIFY client STATUS", lmtp_notify);
    if lmtp.is_empty() {
        println!("(no LMTP lines with microsecond timestamps: deploy/dev/mailstack.sh reload)");
    }
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

fn ppid(pid: u32) -> Option<u32> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    s.rsplit_once(')')?
        .1
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// Proportional set size (shared pages split between their users), KiB.
fn pss_kb(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Pss:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

/// Dovecot's processes (the master and its descendants): (count, summed RSS, summed PSS),
/// KiB.
fn dovecot_memory() -> (usize, u64, u64) {
    let tree = dovecot_pids();
    (
        tree.len(),
        tree.iter().map(|&p| rss_kb(p)).sum(),
        tree.iter().map(|&p| pss_kb(p)).sum(),
    )
}

/// The dev stack's Dovecot master and all its descendants.
fn dovecot_pids() -> Vec<u32> {
    let Some(master) = std::fs::read_to_string(dev_dir().join("dovecot/run/master.pid"))
        .ok()
        .and_then(|s| s.trim().parse::<u32>().ok())
    else {
        return Vec::new();
    };
    let pids: Vec<(u32, u32)> = std::fs::read_dir("/proc")
        .map(|d| {
            d.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
                .filter_map(|pid| Some((pid, ppid(pid)?)))
                .collect()
        })
        .unwrap_or_default();
    let mut tree = vec![master];
    let mut grew = true;
    while grew {
        grew = false;
        for &(pid, parent) in &pids {
            if tree.contains(&parent) && !tree.contains(&pid) {
                tree.push(pid);
                grew = true;
            }
        }
    }
    tree
}

/// Dovecot's PSS per service ("auth", "imap", "imap-login", ...): "name procs×KiB" pairs.
fn dovecot_by_service() -> String {
    let mut by: std::collections::BTreeMap<String, (usize, u64)> = Default::default();
    for pid in dovecot_pids() {
        let title = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        let title = String::from_utf8_lossy(&title);
        let service = title
            .split(['\0', ' '])
            .next()
            .unwrap_or("")
            .rsplit('/')
            .next()
            .unwrap_or("?")
            .to_string();
        let e = by.entry(service).or_default();
        e.0 += 1;
        e.1 += pss_kb(pid);
    }
    by.iter()
        .map(|(name, (n, kb))| format!("{name} {n}x{kb}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Established TCP connections from the gateway process to the IMAP port.
fn imap_connections(pid: u32) -> usize {
    let addr = common::imap_addr();
    let port = addr.rsplit_once(':').map_or("143", |(_, p)| p);
    let filter = format!("( dport = :{port} )");
    let out = Command::new("ss")
        .args(["-tnpH", "state", "established", &filter])
        .output();
    match out {
        Ok(o) => String::from_utf8_lossy(&o.stdout)
            .lines()
            .filter(|l| l.contains(&format!("pid={pid},")))
            .count(),
        Err(_) => 0,
    }
}

/// Provisioned devices with a synced Inbox: device `i` belongs to user `i % users`.
async fn make_devices(
    gw: &GatewayProcess,
    http: &reqwest::Client,
    users: &[(String, String)],
    from: usize,
    to: usize,
) -> Vec<(Phone, String)> {
    futures::stream::iter(from..to)
        .map(|i| {
            let (u, pw) = users[i % users.len()].clone();
            let mut d = new_device(gw, http, &u, &pw);
            async move {
                d.provision().await.expect("Provision");
                let inbox = d.inbox_id().await.expect("Inbox");
                sync(&d, &inbox, "0").await;
                (d, inbox)
            }
        })
        .buffer_unordered(32)
        .collect()
        .await
}

trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}

/// A raw HTTP/1.1 connection that sends a Ping and waits; counts an answer when one comes.
async fn hold_ping(
    addr: String,
    tls: Option<tokio_rustls::TlsConnector>,
    request: Vec<u8>,
    answered: Arc<AtomicUsize>,
    connected: Arc<AtomicUsize>,
    answered_at: Arc<std::sync::atomic::AtomicU64>,
    kinds: AnswerKinds,
) {
    let Ok(tcp) = TcpStream::connect(&addr).await else {
        return;
    };
    let mut s: Box<dyn Stream> = match tls {
        Some(c) => {
            let name = rustls::pki_types::ServerName::IpAddress(
                std::net::IpAddr::from([127, 0, 0, 1]).into(),
            );
            match c.connect(name, tcp).await {
                Ok(t) => Box::new(t),
                Err(_) => return,
            }
        }
        None => Box::new(tcp),
    };
    if s.write_all(&request).await.is_err() || s.flush().await.is_err() {
        return;
    }
    connected.fetch_add(1, Ordering::SeqCst);
    let mut buf = vec![0u8; 2048];
    if let Ok(n) = s.read(&mut buf).await {
        if n > 0 {
            answered_at.store((now_epoch() * 1e6) as u64, Ordering::SeqCst);
            answered.fetch_add(1, Ordering::SeqCst);
            let kind = answer_kind(buf.get(..n).unwrap_or_default());
            *kinds.lock().unwrap().entry(kind).or_default() += 1;
        }
    }
    // Keep the connection until the task is dropped.
    std::future::pending::<()>().await;
}

/// How many answers of each kind ("HTTP 503", "Ping Status 2", ...) the held Pings got.
type AnswerKinds = Arc<std::sync::Mutex<std::collections::BTreeMap<String, usize>>>;

/// The HTTP status of an answer and, for a 200 with the whole body read, its Ping Status.
fn answer_kind(answer: &[u8]) -> String {
    let text = String::from_utf8_lossy(answer);
    let code = text.split_whitespace().nth(1).unwrap_or("?").to_string();
    if code != "200" {
        return format!("HTTP {code}");
    }
    let body = answer
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .and_then(|at| answer.get(at + 4..))
        .unwrap_or_default();
    match wbxml::decode(
        bytes::Bytes::copy_from_slice(body),
        &wbxml::Limits::default(),
    ) {
        Ok(root) => format!("Ping Status {}", root.text_of(p::STATUS).unwrap_or("?")),
        Err(_) => "HTTP 200, body not read".into(),
    }
}

fn ping_request(d: &Phone, inbox: &str, host: &str) -> Vec<u8> {
    let body = wbxml::encode(&ping_body(inbox, 3000));
    let mut out = format!(
        "POST /Microsoft-Server-ActiveSync?Cmd=Ping&User={}&DeviceId={}&DeviceType=Bench HTTP/1.1\r\n\
         Host: {host}\r\nAuthorization: {}\r\nMS-ASProtocolVersion: 16.1\r\nX-MS-PolicyKey: {}\r\n\
         Content-Type: application/vnd.ms-sync.wbxml\r\nContent-Length: {}\r\n\r\n",
        d.user,
        d.device_id,
        d.auth,
        d.policy_key.unwrap_or(0),
        body.len()
    )
    .into_bytes();
    out.extend_from_slice(&body);
    out
}

struct Snapshot {
    rss: u64,
    cpu: f64,
    imap: usize,
    dovecot_procs: usize,
    dovecot_rss: u64,
    dovecot_pss: u64,
}

fn snapshot(pid: u32) -> Snapshot {
    let (dovecot_procs, dovecot_rss, dovecot_pss) = dovecot_memory();
    Snapshot {
        rss: rss_kb(pid),
        cpu: cpu_secs(pid),
        imap: imap_connections(pid),
        dovecot_procs,
        dovecot_rss,
        dovecot_pss,
    }
}

/// Holds idle Pings at each level of `levels` (cumulative) on a gateway of `transport`
/// pushing from `source`; then delivers a mail to `wakes` users one after the other and times
/// each from the end of SMTP DATA to the answer of one of that user's waiting Pings.
async fn idle_pings(
    gw: &GatewayProcess,
    transport: &str,
    source: &str,
    devices: &[(Phone, String)],
    levels: &[usize],
    wakes: (usize, usize),
) {
    let (wake_from, wakes) = wakes;
    let pid = gw.pid;
    let tls = gw.cert_der.as_ref().map(|der| {
        let mut roots = rustls::RootCertStore::empty();
        roots
            .add(rustls::pki_types::CertificateDer::from(der.clone()))
            .expect("bench certificate");
        let config = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
        tokio_rustls::TlsConnector::from(Arc::new(config))
    });
    let users: std::collections::HashSet<&str> =
        devices.iter().map(|(d, _)| d.user.as_str()).collect();
    println!(
        "\n== idle Pings over {transport}, push source {source} (gateway pid {pid}; devices \
         spread over {} users)",
        users.len()
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    let base = snapshot(pid);
    let row = |cols: [String; 10]| {
        println!(
            "{:<8} {:>9} {:>8} {:>8} {:>8} {:>8} {:>6} {:>12} {:>12} {:>6}",
            cols[0],
            cols[1],
            cols[2],
            cols[3],
            cols[4],
            cols[5],
            cols[6],
            cols[7],
            cols[8],
            cols[9]
        )
    };
    row([
        "holding",
        "RSS KiB",
        "KiB/dev",
        "KiB/all",
        "CPU reg",
        "CPU 10s",
        "IMAP",
        "Dovecot RSS",
        "Dovecot PSS",
        "procs",
    ]
    .map(String::from));
    row([
        "0".into(),
        base.rss.to_string(),
        "-".into(),
        "-".into(),
        "-".into(),
        "-".into(),
        base.imap.to_string(),
        base.dovecot_rss.to_string(),
        base.dovecot_pss.to_string(),
        base.dovecot_procs.to_string(),
    ]);
    println!(
        "           Dovecot PSS KiB by service (processes x KiB): {}",
        dovecot_by_service()
    );
    let base_rss = base.rss;
    let answered = Arc::new(AtomicUsize::new(0));
    let kinds: AnswerKinds = Default::default();
    let connected = Arc::new(AtomicUsize::new(0));
    let answered_at: Vec<Arc<std::sync::atomic::AtomicU64>> = devices
        .iter()
        .map(|_| Arc::new(std::sync::atomic::AtomicU64::new(0)))
        .collect();
    let mut tasks = Vec::new();
    let mut held = 0;
    let mut prev = base;
    let mut prev_held = 0usize;
    for &level in levels {
        let level = level.min(devices.len());
        let started = Instant::now();
        let cpu_before = cpu_secs(pid);
        // Connect in batches so the listen backlog never overflows.
        while held < level {
            let upto = (held + 200).min(level);
            for (i, (d, inbox)) in devices[held..upto].iter().enumerate() {
                tasks.push(tokio::spawn(hold_ping(
                    gw.addr.clone(),
                    tls.clone(),
                    ping_request(d, inbox, &gw.addr),
                    answered.clone(),
                    connected.clone(),
                    answered_at[held + i].clone(),
                    kinds.clone(),
                )));
            }
            held = upto;
            while connected.load(Ordering::SeqCst) + 20 < held
                && started.elapsed() < Duration::from_secs(600)
            {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        // The waiters register and the watchers log in (until the gateway's IMAP connections
        // stop changing); idle pooled sessions close.
        let register = started.elapsed();
        tokio::time::sleep(Duration::from_secs(15)).await;
        let mut last = imap_connections(pid);
        while started.elapsed() < Duration::from_secs(300) {
            tokio::time::sleep(Duration::from_secs(5)).await;
            let now = imap_connections(pid);
            if now == last {
                break;
            }
            last = now;
        }
        let at = snapshot(pid);
        let reg_cpu = at.cpu - cpu_before;
        tokio::time::sleep(Duration::from_secs(10)).await;
        let idle_cpu = cpu_secs(pid) - at.cpu;
        let per_dev = (at.rss as f64 - prev.rss as f64) / (level - prev_held).max(1) as f64;
        let per_all = (at.rss as f64 - base_rss as f64) / level.max(1) as f64;
        println!(
            "{:<8} {:>9} {:>8.1} {:>8.1} {:>8.2} {:>8.3} {:>6} {:>12} {:>12} {:>6}",
            level,
            at.rss,
            per_dev,
            per_all,
            reg_cpu,
            idle_cpu,
            at.imap,
            at.dovecot_rss,
            at.dovecot_pss,
            at.dovecot_procs
        );
        println!(
            "           connected {} of {level} in {:.1} s, answered early {}",
            connected.load(Ordering::SeqCst),
            register.as_secs_f64(),
            answered.load(Ordering::SeqCst)
        );
        println!(
            "           Dovecot PSS KiB by service (processes x KiB): {}",
            dovecot_by_service()
        );
        for (kind, n) in kinds.lock().unwrap().iter() {
            println!("           early answers {kind}: {n}");
        }
        prev = at;
        prev_held = level;
    }
    println!(
        "(KiB/dev: gateway RSS growth over the Pings added at that level; KiB/all: over all \
         Pings held; CPU reg: gateway CPU s from the first connection of the level until the \
         gateway's IMAP connections stopped changing (at least 15 s); CPU 10s: the next 10 s idle; IMAP: the gateway's connections; \
         Dovecot: all processes of the dev stack, other users' included)"
    );
    // Push latency while all those Pings wait: one delivery per user, device i of user i.
    let mut lat = Vec::new();
    let mut missed = 0;
    let wake_to = (wake_from + wakes).min(users.len()).min(held);
    for (i, (d, _)) in devices.iter().enumerate().take(wake_to).skip(wake_from) {
        if answered_at[i].load(Ordering::SeqCst) != 0 {
            continue;
        }
        let sent = deliver(&d.user, "idle bench wake").await;
        let until = Instant::now() + Duration::from_secs(10);
        loop {
            let at = answered_at[i].load(Ordering::SeqCst);
            if at != 0 {
                lat.push((at as f64 / 1e6 - sent) * 1000.0);
                break;
            }
            if Instant::now() > until {
                missed += 1;
                break;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    lat.sort_by(|a, b| a.total_cmp(b));
    let pct = |q: f64| {
        lat.get(((lat.len() as f64 * q).ceil() as usize).saturating_sub(1))
            .copied()
            .unwrap_or(f64::NAN)
    };
    println!(
        "push latency with {held} Pings held, source {source}, SMTP end of DATA -> Ping answer: \
         n={} median {:.1} ms p99 {:.1} ms max {:.1} ms (no answer within 10 s: {missed})",
        lat.len(),
        pct(0.5),
        pct(0.99),
        lat.last().copied().unwrap_or(f64::NAN)
    );
    for t in tasks {
        t.abort();
    }
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    if std::net::TcpStream::connect(common::imap_addr()).is_err() {
        eprintln!("the dev mail stack is not running: deploy/dev/mailstack.sh start");
        return;
    }
    let deliveries = env_usize("PUSH_BENCH_DELIVERIES", 20);
    let levels: Vec<usize> = env_list("PUSH_BENCH_PINGS", "2000")
        .iter()
        .filter_map(|l| l.parse().ok())
        .filter(|&l| l > 0)
        .collect();
    let users = env_usize("PUSH_BENCH_USERS", 20).max(1);
    let transports = env_list("PUSH_BENCH_TRANSPORTS", "plain");
    let sources = env_list("PUSH_BENCH_SOURCES", "imap,events");
    let wakes = env_usize("PUSH_BENCH_WAKES", 50);
    let idle_secs = env_usize("PUSH_BENCH_SESSION_IDLE_SECS", 5) as u64;
    let most = levels.iter().copied().max().unwrap_or(0);
    raise_nofile((most as u64 * 3 + 4096).max(20_000));
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let mut dir = dir;
        if std::env::var_os("PUSH_BENCH_KEEP_DIR").is_some() {
            println!("gateway logs and state kept in {}", dir.path().display());
            dir.disable_cleanup(true);
        }
        let http = reqwest::Client::builder()
            .pool_max_idle_per_host(64)
            .build()
            .unwrap();
        let events_port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("a free port");
        let setup_gw = start_gateway(
            dir.path(),
            "setup",
            false,
            &push_lines("imap", events_port),
            None,
        );
        if deliveries > 0 {
            let quiet = env_usize("PUSH_BENCH_QUIET_MS", 1000) as u64;
            latency(&setup_gw, &http, deliveries, quiet).await;
        }
        if most == 0 {
            return;
        }
        let t = Instant::now();
        let user_list: Vec<(String, String)> = (0..users)
            .map(|_| {
                new_user_with(
                    "idlebench",
                    &format!(
                        "userdb_eas_push_url=http://127.0.0.1:{events_port}/eas-gateway/mail-events"
                    ),
                )
                .expect("users.d")
            })
            .collect();
        let _cleanup: Vec<UserCleanup> =
            user_list.iter().map(|(u, _)| UserCleanup::new(u)).collect();
        let devices = make_devices(&setup_gw, &http, &user_list, 0, most).await;
        println!(
            "\nsetup: {most} devices over {users} users provisioned and synced in {:.1} s",
            t.elapsed().as_secs_f64()
        );
        drop(setup_gw);
        // Let Dovecot close the setup gateway's sessions.
        tokio::time::sleep(Duration::from_secs(3)).await;
        let mut runs = 0;
        for transport in &transports {
            for source in &sources {
                let gw = start_gateway(
                    dir.path(),
                    &format!("{transport}-{source}"),
                    transport == "tls",
                    &push_lines(source, events_port),
                    Some(idle_secs),
                );
                // Each run wakes other users: a mail delivered in a run before would answer
                // those users' Pings at once.
                let from = (runs * wakes) % users.max(1);
                runs += 1;
                idle_pings(&gw, transport, source, &devices, &levels, (from, wakes)).await;
                drop(gw);
                // Let Dovecot close the gateway's sessions.
                tokio::time::sleep(Duration::from_secs(5)).await;
            }
        }
    });
}
