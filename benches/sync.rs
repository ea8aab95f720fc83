//! End-to-end Sync benchmark: the release gateway as its own process in front of the dev mail
//! stack, with a direct IMAP client measured in the same run as the reference.
//!
//! Run with `deploy/dev/mailstack.sh start && cargo bench --bench sync` (see benches/README.md).
//!
//! 1. Initial sync of N seeded mails (HTML mails of a few KB, every fifth with a small PDF
//!    attachment) by phones of the user, one after the other, each timed: Sync key 0,
//!    then WindowSize 100 with BodyPreference Type 2 (HTML) TruncationSize 51,200 until
//!    MoreAvailable is gone. The first phone finds Dovecot's cache cold for the gateway's
//!    items, the next ones warm (as it is for the reference's); the goal compares the median
//!    of the warm runs with the median of as many reference runs. Reference: one IMAP connection
//!    fetching `FLAGS ENVELOPE BODYSTRUCTURE BODY.PEEK[TEXT]<0.51200>` in UID pages of 100.
//!    N is 1,000 and 20,000 (`EAS_BENCH_SIZES=1000` or `EAS_BENCH_SIZES=500,2000` picks others;
//!    an empty list runs only the no-change case).
//! 2. No-change Sync (the empty HTTP 200 answer) by 4 phones of one user, each on its own
//!    keep-alive connection, for `EAS_BENCH_SECS` (5) seconds. Reference: 4 IMAP connections
//!    of that user sending `STATUS INBOX (UIDVALIDITY HIGHESTMODSEQ)` back to back.
//!
//! Every case gets a fresh user (a users.d file, like tests/common) and a fresh gateway process
//! (plain HTTP on a free loopback port, SQLite in a temporary directory), so the gateway's peak
//! RSS (VmHWM) belongs to that case alone. CPU seconds are read from /proc for the gateway,
//! for the Dovecot `imap` processes serving the case's user and for this client: gateway, mail
//! server and client share the machine's cores. Mails are seeded over IMAP with pipelined
//! `APPEND {n+}` (LITERAL+), 250 mails per command (MULTIAPPEND).
//!
//! Nothing is asserted about timings; goals are printed beside the figures.
//!
//! Environment: `EAS_DEV_IMAP` (127.0.0.1:143), `EAS_DEV_DIR` (/var/lib/eas-gateway-dev),
//! `EAS_BENCH_GATEWAY` (gateway binary; default the one cargo built for this bench, i.e.
//! target/release/eas-gateway), `EAS_BENCH_LOG` (the gateway's `EAS_LOG`, default `info`),
//! `EAS_BENCH_KEEP=1` (keep each gateway's directory with its log and state),
//! `EAS_BENCH_REPEATS` (15 up to 2,000 mails, else 5: timed runs of a warm phone and of the
//! reference per case, in alternating order; the table compares their medians and the run
//! lines list them all).
//!
//! Comparing two builds: `EAS_BENCH_VERSUS=<other eas-gateway>` adds, to each initial-sync
//! case, `EAS_BENCH_ROUNDS` (4) rounds in which a new device syncs through this gateway, one
//! through the other and the reference fetches, in alternating order, so that the machine's
//! drifting speed affects both builds alike; it prints each round and the medians.

#[path = "common/mod.rs"]
mod common;

use std::collections::HashSet;
use std::fmt::Write as _;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, ensure, Context as _, Result};
use base64::Engine as _;
use bytes::Bytes;
use eas_gateway::wbxml::tags::{airsync as a, airsyncbase as b};
use eas_gateway::wbxml::{self, Element, Limits};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader, BufWriter};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;

use common::{
    gateway_binary, imap_addr, new_user, GatewayOptions, GatewayProcess, Phone, UserCleanup, DOMAIN,
};

const WINDOW: u32 = 100;
const TRUNCATION: u32 = 51_200;
const CLIENTS: usize = 4;
/// The goals, printed beside the figures.
const GOAL_INITIAL_RATIO: f64 = 1.5;
const GOAL_NO_CHANGE_RPS: f64 = 3000.0;

fn main() {
    // `cargo test --all-targets` runs bench targets without `--bench`: nothing to do then.
    if !std::env::args().any(|a| a == "--bench") {
        println!("sync bench: skipped (run `cargo bench --bench sync`)");
        return;
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    if let Err(e) = rt.block_on(run()) {
        eprintln!("sync bench failed: {e:#}");
        std::process::exit(1);
    }
}

// ---------------------------------------------------------------------------------------------
// Settings

fn sizes() -> Result<Vec<usize>> {
    if let Ok(list) = std::env::var("EAS_BENCH_SIZES") {
        return list
            .split(',')
            .filter(|s| !s.trim().is_empty())
            .map(|s| s.trim().replace('_', "").parse::<usize>())
            .collect::<Result<Vec<_>, _>>()
            .context("EAS_BENCH_SIZES: comma-separated mail counts");
    }
    Ok(vec![1_000, 20_000])
}

/// Timed runs of the second device and of the reference per initial-sync case.
/// Timed runs per initial-sync case: 15 for up to 2,000 mails (a run lasts a few hundredths
/// of a second, so five samples of each side leave the median at the mercy of the VM's
/// drift), 5 for larger folders.
fn repeats(n: usize) -> usize {
    std::env::var("EAS_BENCH_REPEATS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(if n <= 2000 { 15 } else { 5 })
        .max(1)
}

fn no_change_secs() -> f64 {
    std::env::var("EAS_BENCH_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(5.0)
}

// ---------------------------------------------------------------------------------------------
// The run

async fn run() -> Result<()> {
    let imap = imap_addr();
    TcpStream::connect(&imap).await.with_context(|| {
        format!("no IMAP server at {imap}: run `deploy/dev/mailstack.sh start` first")
    })?;
    println!("sync bench: gateway {}", gateway_binary().display());
    println!("machine: {}", machine());
    let mut rows = Vec::new();
    for n in sizes()? {
        rows.extend(initial_sync_case(n).await?);
    }
    let (gw, reference) = no_change_case(no_change_secs()).await?;
    rows.push(gw);
    rows.push(reference);
    print_table(&rows);
    Ok(())
}

/// One line of the result table.
struct Row {
    what: String,
    count: u64,
    secs: f64,
    unit: &'static str,
    peak_rss_kib: Option<u64>,
    cpu: Cpu,
    /// gateway/IMAP: time ratio for the initial sync, rate ratio for no-change Sync.
    ratio: Option<String>,
    goal: Option<String>,
    note: String,
}

fn print_table(rows: &[Row]) {
    println!();
    println!(
        "{:<34} {:>7} {:>8} {:>15} {:>9} {:>20} {:>9}  goal",
        "what", "count", "seconds", "rate", "peak RSS", "CPU s gw/imap/bench", "gw/IMAP"
    );
    println!("{}", "-".repeat(128));
    for r in rows {
        let rate = format!("{:.0} {}", r.count as f64 / r.secs, r.unit);
        let rss = r
            .peak_rss_kib
            .map(|k| format!("{:.1} MiB", k as f64 / 1024.0))
            .unwrap_or_else(|| "-".into());
        let cpu = format!("{:.2}/{:.2}/{:.2}", r.cpu.gateway, r.cpu.imap, r.cpu.bench);
        println!(
            "{:<34} {:>7} {:>8.2} {:>15} {:>9} {:>20} {:>9}  {}",
            r.what,
            r.count,
            r.secs,
            rate,
            rss,
            cpu,
            r.ratio.as_deref().unwrap_or(""),
            r.goal.as_deref().unwrap_or(""),
        );
    }
    println!();
    for r in rows.iter().filter(|r| !r.note.is_empty()) {
        println!("{}: {}", r.what.trim(), r.note);
    }
}

fn machine() -> String {
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, m)| m.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    format!("{cores} cores ({model}); gateway, Dovecot and this client share them")
}

// ---------------------------------------------------------------------------------------------
// Case 1: initial sync

async fn initial_sync_case(n: usize) -> Result<Vec<Row>> {
    let (user, pw) = new_user(&format!("bench-sync{n}"))?;
    let _cleanup = UserCleanup::new(&user);
    println!("\n== initial sync of {n} mails ({user})");
    let seeded = seed(&user, &pw, n).await?;
    println!(
        "seeded {n} mails ({:.1} MB) with pipelined MULTIAPPEND in {:.2} s",
        seeded.bytes as f64 / 1e6,
        seeded.secs
    );
    // One untimed pass over the mails: Dovecot's index cache now holds the reference's items.
    imap_fetch_all(&user, &pw, n, None).await?;

    let gw = start_gateway(&format!("sync{n}"))?;
    let rss_idle = gw.peak_rss_kib();
    // The first device: Dovecot still has to add the gateway's items to its cache.
    let cold = device_sync(&gw, &user, &pw, n, 0).await?;
    let rss_cold = gw.peak_rss_kib();
    // A second device of the same user (a new phone, or an account added again): Dovecot's
    // cache is now as warm for the gateway's items as it is for the reference's. It and the
    // reference run `EAS_BENCH_REPEATS` times, alternating which goes first; the medians are
    // compared (a run of 1,000 mails lasts a few hundredths of a second, so one sample of each
    // says little).
    let mut warm_runs = Vec::new();
    let mut fetches = Vec::new();
    for round in 0..repeats(n) {
        let device = 1 + round;
        if round % 2 == 0 {
            warm_runs.push(device_sync(&gw, &user, &pw, n, device).await?);
            fetches.push(imap_fetch_all(&user, &pw, n, Some(gw.pid)).await?);
        } else {
            fetches.push(imap_fetch_all(&user, &pw, n, Some(gw.pid)).await?);
            warm_runs.push(device_sync(&gw, &user, &pw, n, device).await?);
        }
    }
    let rss = gw.peak_rss_kib();
    if warm_runs.len() > 1 {
        let list = |secs: Vec<f64>| {
            secs.iter()
                .map(|s| format!("{s:.3}"))
                .collect::<Vec<_>>()
                .join(" ")
        };
        println!(
            "rounds (s): gateway {}; IMAP {}",
            list(warm_runs.iter().map(|r| r.sync.secs).collect()),
            list(fetches.iter().map(|f| f.secs).collect())
        );
    }
    let warm = median_by(warm_runs, |r| r.sync.secs);
    let fetch = median_by(fetches, |f| f.secs);
    for (label, run, peak) in [
        ("first device", &cold, rss_cold),
        ("second device (median)", &warm, rss),
    ] {
        println!(
            "gateway, {label}: {} Sync requests, {:.2} s, {:.1} MB WBXML, peak RSS {} (before sync {})",
            run.sync.requests,
            run.sync.secs,
            run.sync.bytes as f64 / 1e6,
            kib(peak),
            kib(rss_idle)
        );
    }

    if let Some(other) = std::env::var_os("EAS_BENCH_VERSUS") {
        versus(&gw, std::path::Path::new(&other), &user, &pw, n).await?;
    }

    println!(
        "IMAP (median):    {} UID FETCH commands, {:.2} s, {:.1} MB",
        fetch.commands,
        fetch.secs,
        fetch.bytes as f64 / 1e6
    );
    drop(gw);

    let row = |what: String, run: &DeviceRun, peak: Option<u64>, goal: bool| {
        let ratio = run.sync.secs / fetch.secs;
        Row {
            what,
            count: run.sync.adds as u64,
            secs: run.sync.secs,
            unit: "mails/s",
            peak_rss_kib: peak,
            cpu: run.cpu,
            ratio: Some(format!("{ratio:.2}x")),
            goal: goal.then(|| {
                format!(
                    "<= {GOAL_INITIAL_RATIO}x IMAP: {}",
                    if ratio <= GOAL_INITIAL_RATIO {
                        "met"
                    } else {
                        "NOT met"
                    }
                )
            }),
            note: format!(
                "{} requests (key 0 + {} pages), {:.1} MB WBXML received",
                run.sync.requests,
                run.sync.requests - 1,
                run.sync.bytes as f64 / 1e6
            ),
        }
    };
    let ref_row = Row {
        what: format!("initial sync {n}: IMAP FETCH"),
        count: fetch.messages,
        secs: fetch.secs,
        unit: "mails/s",
        peak_rss_kib: None,
        cpu: fetch.cpu,
        ratio: None,
        goal: None,
        note: format!(
            "{} x UID FETCH (FLAGS ENVELOPE BODYSTRUCTURE BODY.PEEK[TEXT]<0.{TRUNCATION}>), \
             {:.1} MB received",
            fetch.commands,
            fetch.bytes as f64 / 1e6
        ),
    };
    Ok(vec![
        row(
            format!("initial sync {n}: gateway, cold"),
            &cold,
            rss_cold,
            false,
        ),
        row(format!("initial sync {n}: gateway"), &warm, rss, true),
        ref_row,
    ])
}

struct DeviceRun {
    sync: SyncRun,
    cpu: Cpu,
}

/// The run with the median `key` (the upper one of an even count).
fn median_by<T>(mut runs: Vec<T>, key: impl Fn(&T) -> f64) -> T {
    runs.sort_by(|a, b| key(a).total_cmp(&key(b)));
    let mid = runs.len() / 2;
    runs.swap_remove(mid)
}

/// Rounds of "this gateway, the other one, the reference" (the two gateways' order swapped
/// every round); prints each round's seconds and gateway CPU, and the medians.
async fn versus(
    gw: &GatewayProcess,
    other: &std::path::Path,
    user: &str,
    pw: &str,
    n: usize,
) -> Result<()> {
    let rounds: usize = std::env::var("EAS_BENCH_ROUNDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(4);
    let mut opts = GatewayOptions::temporary("versus");
    opts.binary = Some(other.to_path_buf());
    let gw_b = GatewayProcess::start(&opts)?;
    println!("versus {} (pid {})", other.display(), gw_b.pid);
    // Dovecot's cache is warm for both (the other build's first device is not timed).
    device_sync(&gw_b, user, pw, n, 100).await?;
    let (mut this, mut that, mut reference) = (Vec::new(), Vec::new(), Vec::new());
    // Summed over the rounds: wall seconds, gateway CPU, Dovecot CPU (per build).
    let (mut sum_a, mut sum_b) = ([0.0f64; 3], [0.0f64; 3]);
    for round in 0..rounds {
        let mut a = None;
        let mut b = None;
        for first in [round % 2 == 0, round % 2 != 0] {
            let index = 200 + round * 2 + usize::from(first);
            if first {
                a = Some(device_sync(gw, user, pw, n, index).await?);
            } else {
                b = Some(device_sync(&gw_b, user, pw, n, index).await?);
            }
        }
        let (Some(a), Some(b)) = (a, b) else {
            bail!("round {round} incomplete");
        };
        let r = imap_fetch_all(user, pw, n, Some(gw.pid)).await?;
        println!(
            "round {round}: this {:.2} s (gw CPU {:.2}), other {:.2} s (gw CPU {:.2}), IMAP {:.2} s; \
             this/IMAP {:.2}x, other/IMAP {:.2}x",
            a.sync.secs,
            a.cpu.gateway,
            b.sync.secs,
            b.cpu.gateway,
            r.secs,
            a.sync.secs / r.secs,
            b.sync.secs / r.secs
        );
        for (sum, run) in [(&mut sum_a, &a), (&mut sum_b, &b)] {
            sum[0] += run.sync.secs;
            sum[1] += run.cpu.gateway;
            sum[2] += run.cpu.imap;
        }
        this.push(a.sync.secs / r.secs);
        that.push(b.sync.secs / r.secs);
        reference.push(r.secs);
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    if rounds > 0 {
        println!(
            "versus, medians over {rounds} rounds: this/IMAP {:.2}x, other/IMAP {:.2}x (IMAP {:.2} s)",
            median(&mut this),
            median(&mut that),
            median(&mut reference)
        );
        let per = |sum: [f64; 3]| {
            let ms = |x: f64| x * 1000.0 / rounds as f64;
            format!(
                "{:.1} ms (gw CPU {:.1} ms, Dovecot CPU {:.1} ms)",
                ms(sum[0]),
                ms(sum[1]),
                ms(sum[2])
            )
        };
        println!(
            "versus, means over {rounds} rounds: this {}, other {}",
            per(sum_a),
            per(sum_b)
        );
    }
    Ok(())
}

/// A new device (`index`) of `user`: Provision, FolderSync, then the timed initial sync of
/// its Inbox, with the CPU the gateway, Dovecot and the bench spent meanwhile.
async fn device_sync(
    gw: &GatewayProcess,
    user: &str,
    pw: &str,
    n: usize,
    index: usize,
) -> Result<DeviceRun> {
    let mut phone = new_phone(gw, user, pw, index);
    phone.provision().await?;
    let inbox = phone.inbox_id().await?;
    let cpu0 = CpuSample::take(Some(gw.pid), user);
    let sync = initial_sync(&phone, &inbox, n).await?;
    let cpu = CpuSample::take(Some(gw.pid), user).since(&cpu0);
    Ok(DeviceRun { sync, cpu })
}

fn kib(k: Option<u64>) -> String {
    k.map(|k| format!("{:.1} MiB", k as f64 / 1024.0))
        .unwrap_or_else(|| "?".into())
}

struct SyncRun {
    requests: usize,
    adds: usize,
    bytes: usize,
    secs: f64,
    /// The key after the last page.
    key: String,
}

struct FetchRun {
    commands: usize,
    messages: u64,
    bytes: usize,
    secs: f64,
    cpu: Cpu,
}

/// `UID FETCH` of every mail in UID pages of `WINDOW` on one fresh connection. `gateway`: a
/// gateway still running, whose CPU time over the fetch is counted too (it should have none:
/// an idle gateway must not slow the reference down).
async fn imap_fetch_all(user: &str, pw: &str, n: usize, gateway: Option<u32>) -> Result<FetchRun> {
    let mut imap = Imap::login(user, pw).await?;
    imap.run("EXAMINE INBOX").await?;
    let cpu0 = CpuSample::take(gateway, user);
    let started = Instant::now();
    let mut run = FetchRun {
        commands: 0,
        messages: 0,
        bytes: 0,
        secs: 0.0,
        cpu: Cpu::default(),
    };
    let mut first = 1;
    while first <= n {
        let last = (first + WINDOW as usize - 1).min(n);
        let r = imap
            .run(&format!(
                "UID FETCH {first}:{last} (FLAGS ENVELOPE BODYSTRUCTURE BODY.PEEK[TEXT]<0.{TRUNCATION}>)"
            ))
            .await?;
        run.commands += 1;
        run.messages += r.fetches;
        run.bytes += r.bytes;
        first = last + 1;
    }
    run.secs = started.elapsed().as_secs_f64();
    // Before LOGOUT: Dovecot's imap process ends with the connection.
    run.cpu = CpuSample::take(gateway, user).since(&cpu0);
    imap.logout().await;
    ensure!(
        run.messages == n as u64,
        "IMAP fetched {} mails, expected {n}",
        run.messages
    );
    Ok(run)
}

// ---------------------------------------------------------------------------------------------
// Case 2: no-change Sync

async fn no_change_case(secs: f64) -> Result<(Row, Row)> {
    let (user, pw) = new_user("bench-nochange")?;
    let _cleanup = UserCleanup::new(&user);
    println!("\n== no-change Sync, {CLIENTS} phones of {user}, {secs} s");
    seed(&user, &pw, 20).await?;
    let gw = start_gateway("nochange")?;
    let mut phones = Vec::new();
    for i in 0..CLIENTS {
        let mut phone = new_phone(&gw, &user, &pw, i);
        phone.provision().await?;
        let inbox = phone.inbox_id().await?;
        let run = initial_sync(&phone, &inbox, 20).await?;
        let key = run_key(&phone, &inbox, &run.key).await?;
        ensure!(run.adds == 20);
        phones.push((phone, inbox, key));
    }
    let duration = Duration::from_secs_f64(secs);
    let barrier = Arc::new(tokio::sync::Barrier::new(CLIENTS + 1));
    let mut tasks = Vec::new();
    for (phone, inbox, key) in phones {
        let barrier = barrier.clone();
        tasks.push(tokio::spawn(async move {
            let body = Bytes::from(sync_body(&inbox, &key));
            barrier.wait().await;
            let deadline = Instant::now() + duration;
            let mut n = 0u64;
            while Instant::now() < deadline {
                let (status, resp) = phone.post_bytes("Sync", body.clone()).await?;
                ensure!(
                    status == 200 && resp.is_empty(),
                    "no-change Sync answered HTTP {status} with {} bytes",
                    resp.len()
                );
                n += 1;
            }
            Ok::<u64, anyhow::Error>(n)
        }));
    }
    let cpu0 = CpuSample::take(Some(gw.pid), &user);
    barrier.wait().await;
    let started = Instant::now();
    let mut total = 0;
    for t in tasks {
        total += t.await??;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let cpu_gw = CpuSample::take(Some(gw.pid), &user).since(&cpu0);
    let rss = gw.peak_rss_kib();
    let gw_rps = total as f64 / elapsed;
    println!(
        "gateway: {total} empty Sync answers in {elapsed:.2} s, {:.0} req/s, {:.1} us gateway CPU per request",
        gw_rps,
        cpu_gw.gateway * 1e6 / total as f64
    );
    drop(gw);

    let mut conns = Vec::new();
    for _ in 0..CLIENTS {
        conns.push(Imap::login(&user, &pw).await?);
    }
    let barrier = Arc::new(tokio::sync::Barrier::new(CLIENTS + 1));
    let mut tasks = Vec::new();
    for mut imap in conns {
        let barrier = barrier.clone();
        tasks.push(tokio::spawn(async move {
            barrier.wait().await;
            let deadline = Instant::now() + duration;
            let mut n = 0u64;
            while Instant::now() < deadline {
                imap.run("STATUS INBOX (UIDVALIDITY HIGHESTMODSEQ)").await?;
                n += 1;
            }
            Ok::<_, anyhow::Error>((n, imap))
        }));
    }
    let cpu0 = CpuSample::take(None, &user);
    barrier.wait().await;
    let started = Instant::now();
    let mut ref_total = 0;
    let mut conns = Vec::new();
    for t in tasks {
        let (n, imap) = t.await??;
        ref_total += n;
        conns.push(imap);
    }
    let ref_elapsed = started.elapsed().as_secs_f64();
    // Before LOGOUT: Dovecot's imap processes end with their connections.
    let cpu_ref = CpuSample::take(None, &user).since(&cpu0);
    for imap in conns {
        imap.logout().await;
    }
    let ref_rps = ref_total as f64 / ref_elapsed;
    println!("IMAP:    {ref_total} STATUS in {ref_elapsed:.2} s, {ref_rps:.0} req/s");

    let gw_row = Row {
        what: format!("no-change Sync x{CLIENTS}: gateway"),
        count: total,
        secs: elapsed,
        unit: "req/s",
        peak_rss_kib: rss,
        cpu: cpu_gw,
        ratio: Some(format!("{:.2}x", gw_rps / ref_rps)),
        goal: Some(format!(
            ">= {GOAL_NO_CHANGE_RPS:.0} req/s: {}",
            if gw_rps >= GOAL_NO_CHANGE_RPS {
                "met"
            } else {
                "NOT met"
            }
        )),
        note: format!(
            "{CLIENTS} keep-alive HTTP/1.1 connections, one request in flight each; \
             {:.0} us gateway CPU per request",
            cpu_gw.gateway * 1e6 / total as f64
        ),
    };
    let ref_row = Row {
        what: format!("no-change Sync x{CLIENTS}: IMAP STATUS"),
        count: ref_total,
        secs: ref_elapsed,
        unit: "req/s",
        peak_rss_kib: None,
        cpu: cpu_ref,
        ratio: None,
        goal: None,
        note: format!(
            "{CLIENTS} connections, STATUS INBOX (UIDVALIDITY HIGHESTMODSEQ) back to back"
        ),
    };
    Ok((gw_row, ref_row))
}

/// The key after a complete initial sync, checked to give the empty answer.
async fn run_key(phone: &Phone, inbox: &str, key: &str) -> Result<String> {
    let (status, body) = phone
        .post_bytes("Sync", Bytes::from(sync_body(inbox, key)))
        .await?;
    ensure!(
        status == 200 && body.is_empty(),
        "Sync after the initial sync is not the empty answer (HTTP {status}, {} bytes)",
        body.len()
    );
    Ok(key.to_string())
}

/// A gateway process in a temporary directory, announced with its pid and log.
fn start_gateway(label: &str) -> Result<GatewayProcess> {
    let gw = GatewayProcess::start(&GatewayOptions::temporary(label))?;
    println!(
        "gateway pid {} on port {}, log {}",
        gw.pid,
        gw.addr.rsplit(':').next().unwrap_or_default(),
        gw.log.display()
    );
    Ok(gw)
}

// ---------------------------------------------------------------------------------------------
// CPU time from /proc

#[derive(Default, Clone, Copy)]
struct Cpu {
    gateway: f64,
    imap: f64,
    bench: f64,
}

struct CpuSample {
    gateway: Option<u64>,
    /// (pid, ticks) of Dovecot's `imap` processes serving the user.
    imap: Vec<(u32, u64)>,
    bench: u64,
}

impl CpuSample {
    /// Samples the gateway (when given) and the imap processes serving `user`: Dovecot's
    /// process title (`verbose_proctitle`) names the user, so other users' sessions on the same
    /// mail server are left out.
    fn take(gateway: Option<u32>, user: &str) -> CpuSample {
        let mut imap = Vec::new();
        let needle = format!("[{user} ");
        if let Ok(dir) = std::fs::read_dir("/proc") {
            for e in dir.flatten() {
                let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
                    continue;
                };
                let Some(("imap", ticks)) = proc_ticks(&format!("/proc/{pid}/stat"))
                    .as_ref()
                    .map(|(c, t)| (c.as_str(), *t))
                else {
                    continue;
                };
                let title = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
                if String::from_utf8_lossy(&title).contains(&needle) {
                    imap.push((pid, ticks));
                }
            }
        }
        CpuSample {
            gateway: gateway.and_then(|pid| proc_ticks(&format!("/proc/{pid}/stat")).map(|t| t.1)),
            imap,
            bench: proc_ticks("/proc/self/stat").map(|t| t.1).unwrap_or(0),
        }
    }

    /// CPU seconds spent between `before` and this sample.
    fn since(&self, before: &CpuSample) -> Cpu {
        let hz = clock_ticks() as f64;
        let imap: u64 = self
            .imap
            .iter()
            .map(|(pid, t)| {
                let old = before
                    .imap
                    .iter()
                    .find(|(p, _)| p == pid)
                    .map(|(_, t)| *t)
                    .unwrap_or(0);
                t.saturating_sub(old)
            })
            .sum();
        Cpu {
            gateway: match (self.gateway, before.gateway) {
                (Some(a), Some(b)) => a.saturating_sub(b) as f64 / hz,
                _ => 0.0,
            },
            imap: imap as f64 / hz,
            bench: self.bench.saturating_sub(before.bench) as f64 / hz,
        }
    }
}

/// (comm, utime + stime in clock ticks) of a /proc/<pid>/stat file.
fn proc_ticks(path: &str) -> Option<(String, u64)> {
    let text = std::fs::read_to_string(path).ok()?;
    let open = text.find('(')?;
    let close = text.rfind(')')?;
    let comm = text[open + 1..close].to_string();
    // After ") ": state(3) ppid(4) ... utime(14) stime(15).
    let fields: Vec<&str> = text[close + 2..].split_whitespace().collect();
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some((comm, utime + stime))
}

fn clock_ticks() -> u64 {
    static HZ: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *HZ.get_or_init(|| {
        Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(100)
    })
}

// ---------------------------------------------------------------------------------------------
// Users and mails

struct Seeded {
    bytes: usize,
    secs: f64,
}

/// Mails per APPEND command when seeding.
const SEED_BATCH: usize = 250;

/// APPENDs `n` mails to INBOX on one connection, `SEED_BATCH` mails per command (MULTIAPPEND):
/// every command is written at once (LITERAL+ needs no continuation), a second task reads the
/// completions.
async fn seed(user: &str, pw: &str, n: usize) -> Result<Seeded> {
    let imap = Imap::login(user, pw).await?;
    let caps = imap.capabilities.clone();
    for cap in ["LITERAL+", "MULTIAPPEND"] {
        ensure!(
            caps.iter().any(|c| c == cap),
            "the IMAP server lacks {cap} ({caps:?})"
        );
    }
    let Imap { mut r, w, .. } = imap;
    let started = Instant::now();
    let commands = n.div_ceil(SEED_BATCH);
    let writer = tokio::spawn(async move {
        let mut w = BufWriter::with_capacity(256 * 1024, w);
        let mut bytes = 0;
        for c in 0..commands {
            w.write_all(format!("s{c} APPEND INBOX").as_bytes()).await?;
            for i in c * SEED_BATCH..((c + 1) * SEED_BATCH).min(n) {
                let mail = seed_mail(i);
                bytes += mail.len();
                let flags = match (i % 3, i % 17) {
                    (_, 0) => "(\\Seen \\Flagged)",
                    (0, _) => "(\\Seen)",
                    _ => "()",
                };
                w.write_all(format!(" {flags} {{{}+}}\r\n", mail.len()).as_bytes())
                    .await?;
                w.write_all(&mail).await?;
            }
            w.write_all(b"\r\n").await?;
        }
        w.flush().await?;
        Ok::<_, anyhow::Error>((w.into_inner(), bytes))
    });
    let mut done = 0;
    let mut buf = Vec::new();
    while done < commands {
        buf.clear();
        read_response(&mut r, &mut buf).await?;
        if buf.starts_with(b"s") {
            ensure!(
                buf.split(|c| *c == b' ').nth(1) == Some(b"OK"),
                "APPEND failed: {}",
                String::from_utf8_lossy(&buf)
            );
            done += 1;
        }
    }
    let (w, bytes) = writer.await??;
    let secs = started.elapsed().as_secs_f64();
    let mut imap = Imap {
        r,
        w,
        next_tag: 0,
        capabilities: caps,
    };
    let status = imap.run("STATUS INBOX (MESSAGES)").await?;
    let want = format!("(MESSAGES {n})");
    ensure!(
        status.text.contains(&want),
        "INBOX after seeding: {}",
        status.text
    );
    imap.logout().await;
    Ok(Seeded { bytes, secs })
}

const WORDS: &[&str] = &[
    "quarterly",
    "report",
    "meeting",
    "budget",
    "review",
    "schedule",
    "project",
    "customer",
    "delivery",
    "invoice",
    "team",
    "update",
    "agenda",
    "deadline",
    "proposal",
    "contract",
    "Grüße",
    "naïve",
    "café",
    "Zürich",
    "résumé",
    "über",
];

/// Deterministic pseudo-random text of about `len` bytes.
fn words(seed: usize, len: usize) -> String {
    let mut x = (seed as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut s = String::with_capacity(len + 16);
    while s.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        if !s.is_empty() {
            s.push(' ');
        }
        s.push_str(WORDS[(x % WORDS.len() as u64) as usize]);
    }
    s
}

fn html_body(i: usize) -> String {
    let mut h = String::with_capacity(4096);
    h.push_str(
        "<!DOCTYPE html><html><head><meta charset=\"utf-8\"><style>p{font-family:Arial;}\
                td{padding:4px;border:1px solid #ccc}</style></head><body>\n",
    );
    let _ = writeln!(h, "<p>Hello team,</p>");
    for k in 0..5 {
        let _ = writeln!(h, "<p>{}</p>", words(i * 7 + k, 380));
    }
    h.push_str("<table>\n");
    for k in 0..6 {
        let _ = writeln!(
            h,
            "<tr><td>Item {k}</td><td>{}</td><td style=\"text-align:right\">{}.{:02} EUR</td></tr>",
            words(i * 11 + k, 30),
            (i * 37 + k * 101) % 9000,
            (i + k) % 100
        );
    }
    h.push_str("</table>\n<p>Best regards,<br><b>Sender</b></p>\n</body></html>\n");
    h
}

fn plain_body(i: usize) -> String {
    let mut t = String::from("Hello team,\n\n");
    for k in 0..5 {
        t.push_str(&words(i * 7 + k, 380));
        t.push_str("\n\n");
    }
    t.push_str("Best regards,\nSender\n");
    t
}

/// Base64 in lines of 76 characters.
fn base64_lines(data: &[u8]) -> String {
    let enc = base64::engine::general_purpose::STANDARD.encode(data);
    let mut out = String::with_capacity(enc.len() + enc.len() / 76 * 2 + 2);
    for chunk in enc.as_bytes().chunks(76) {
        out.push_str(std::str::from_utf8(chunk).unwrap());
        out.push_str("\r\n");
    }
    out
}

/// Quoted-printable (lines of at most 76 characters, soft breaks).
fn quoted_printable(text: &str) -> String {
    let mut out = String::with_capacity(text.len() * 11 / 10);
    let mut col = 0;
    for line in text.split('\n') {
        for &c in line.as_bytes() {
            let enc = if (c == b' ' || c.is_ascii_graphic()) && c != b'=' {
                (c as char).to_string()
            } else {
                format!("={c:02X}")
            };
            if col + enc.len() > 75 {
                out.push_str("=\r\n");
                col = 0;
            }
            out.push_str(&enc);
            col += enc.len();
        }
        out.push_str("\r\n");
        col = 0;
    }
    out
}

fn attachment(i: usize) -> Vec<u8> {
    let mut x = (i as u64 + 1).wrapping_mul(0x2545_F491_4F6C_DD1D);
    let mut data = b"%PDF-1.4\n".to_vec();
    while data.len() < 4500 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        data.extend_from_slice(&x.to_le_bytes());
    }
    data
}

/// Mail number `i`: HTML (quoted-printable or base64), every other one multipart/alternative
/// with a plain part, every fifth multipart/mixed with a PDF attachment of 4.5 KB.
fn seed_mail(i: usize) -> Vec<u8> {
    let mut m = String::with_capacity(12 * 1024);
    let _ = write!(
        m,
        "From: \"Sender {s}\" <sender{s}@example.org>\r\n\
         To: \"Bench User\" <bench@{DOMAIN}>\r\n\
         Cc: colleague{c}@example.org\r\n\
         Subject: Bench mail {i}: {subject}\r\n\
         Date: {date}\r\n\
         Message-ID: <bench-{i}-{r:08x}@example.org>\r\n\
         MIME-Version: 1.0\r\n",
        s = i % 50,
        c = i % 7,
        subject = words(i, 40),
        date = format_args!(
            "{}, {:02} Mar 2026 {:02}:{:02}:{:02} +0000",
            ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"][i % 7],
            1 + i % 28,
            i % 24,
            i % 60,
            (i * 7) % 60
        ),
        r = rand::random::<u32>()
    );
    let html_qp = || {
        format!(
            "Content-Type: text/html; charset=utf-8\r\n\
             Content-Transfer-Encoding: quoted-printable\r\n\r\n{}",
            quoted_printable(&html_body(i))
        )
    };
    let html_b64 = || {
        format!(
            "Content-Type: text/html; charset=utf-8\r\n\
             Content-Transfer-Encoding: base64\r\n\r\n{}",
            base64_lines(html_body(i).as_bytes())
        )
    };
    let alternative = |boundary: &str| {
        format!(
            "Content-Type: multipart/alternative; boundary=\"{boundary}\"\r\n\r\n\
             --{boundary}\r\n\
             Content-Type: text/plain; charset=utf-8\r\n\
             Content-Transfer-Encoding: quoted-printable\r\n\r\n{plain}\r\n\
             --{boundary}\r\n{html}\r\n\
             --{boundary}--\r\n",
            plain = quoted_printable(&plain_body(i)),
            html = html_b64()
        )
    };
    if i.is_multiple_of(5) {
        let outer = format!("mixed-{i}");
        let _ = write!(
            m,
            "Content-Type: multipart/mixed; boundary=\"{outer}\"\r\n\r\n\
             This is a multi-part message in MIME format.\r\n\
             --{outer}\r\n{alt}\r\n\
             --{outer}\r\n\
             Content-Type: application/pdf; name=\"report-{i}.pdf\"\r\n\
             Content-Disposition: attachment; filename=\"report-{i}.pdf\"\r\n\
             Content-Transfer-Encoding: base64\r\n\r\n{pdf}\r\n\
             --{outer}--\r\n",
            alt = alternative(&format!("alt-{i}")),
            pdf = base64_lines(&attachment(i))
        );
    } else if i % 2 == 1 {
        m.push_str(&alternative(&format!("alt-{i}")));
    } else if i.is_multiple_of(4) {
        m.push_str(&html_qp());
    } else {
        m.push_str(&html_b64());
    }
    m.into_bytes()
}

// ---------------------------------------------------------------------------------------------
// A minimal IMAP client

struct Imap {
    r: BufReader<OwnedReadHalf>,
    w: OwnedWriteHalf,
    next_tag: u32,
    capabilities: Vec<String>,
}

/// What one command got back.
struct ImapReply {
    /// Untagged FETCH responses.
    fetches: u64,
    /// Bytes of all responses, literals included.
    bytes: usize,
    /// The untagged responses as text (not kept for FETCH).
    text: String,
}

impl Imap {
    async fn login(user: &str, pw: &str) -> Result<Imap> {
        let stream = TcpStream::connect(imap_addr()).await?;
        stream.set_nodelay(true)?;
        let (r, w) = stream.into_split();
        let mut imap = Imap {
            r: BufReader::with_capacity(64 * 1024, r),
            w,
            next_tag: 0,
            capabilities: Vec::new(),
        };
        let mut greeting = Vec::new();
        read_response(&mut imap.r, &mut greeting).await?;
        let reply = imap.run(&format!("LOGIN \"{user}\" \"{pw}\"")).await?;
        let caps = if reply.text.contains("CAPABILITY") {
            reply.text
        } else {
            imap.run("CAPABILITY").await?.text
        };
        imap.capabilities = caps
            .split(|c: char| c.is_whitespace() || c == '[' || c == ']')
            .map(str::to_string)
            .collect();
        Ok(imap)
    }

    async fn run(&mut self, cmd: &str) -> Result<ImapReply> {
        self.next_tag += 1;
        let tag = format!("b{}", self.next_tag);
        self.w
            .write_all(format!("{tag} {cmd}\r\n").as_bytes())
            .await?;
        let mut reply = ImapReply {
            fetches: 0,
            bytes: 0,
            text: String::new(),
        };
        let mut buf = Vec::with_capacity(64 * 1024);
        loop {
            buf.clear();
            read_response(&mut self.r, &mut buf).await?;
            reply.bytes += buf.len();
            if buf.starts_with(tag.as_bytes()) && buf.get(tag.len()) == Some(&b' ') {
                let rest = &buf[tag.len() + 1..];
                ensure!(
                    rest.starts_with(b"OK"),
                    "IMAP `{}` failed: {}",
                    cmd.split(' ').next().unwrap_or(""),
                    String::from_utf8_lossy(rest).trim_end()
                );
                reply.text.push_str(&String::from_utf8_lossy(rest));
                return Ok(reply);
            }
            let head = &buf[..buf.len().min(40)];
            if head.starts_with(b"* ") && head.windows(7).any(|w| w == b" FETCH ") {
                reply.fetches += 1;
            } else {
                reply.text.push_str(&String::from_utf8_lossy(&buf));
            }
        }
    }

    async fn logout(mut self) {
        let _ = self.run("LOGOUT").await;
    }
}

/// Reads one IMAP response into `buf`: a line, and for each `{n}` at a line end the n bytes of
/// the literal and the rest of the line.
async fn read_response(r: &mut BufReader<OwnedReadHalf>, buf: &mut Vec<u8>) -> Result<()> {
    loop {
        let start = buf.len();
        if r.read_until(b'\n', buf).await? == 0 {
            bail!("the IMAP server closed the connection");
        }
        let line = &buf[start..];
        let Some(n) = literal_len(line) else {
            return Ok(());
        };
        let at = buf.len();
        buf.resize(at + n, 0);
        r.read_exact(&mut buf[at..]).await?;
    }
}

fn literal_len(line: &[u8]) -> Option<usize> {
    let line = line.strip_suffix(b"\r\n")?.strip_suffix(b"}")?;
    let open = line.iter().rposition(|c| *c == b'{')?;
    let digits = &line[open + 1..];
    let digits = digits.strip_suffix(b"+").unwrap_or(digits);
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(digits).ok()?.parse().ok()
}

// ---------------------------------------------------------------------------------------------
// The phone's Sync

/// Phone `n` of a case, on its own connection pool (one keep-alive connection).
fn new_phone(gw: &GatewayProcess, user: &str, pw: &str, n: usize) -> Phone {
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(1)
        .build()
        .expect("HTTP client");
    let mut phone = Phone::new(
        http,
        &gw.base,
        user,
        pw,
        format!("BENCH{n:02}{:08X}", rand::random::<u32>()),
    );
    phone.device_type = "BenchPhone";
    phone
}

fn options() -> Element {
    Element::new(a::OPTIONS).child(
        Element::new(b::BODY_PREFERENCE)
            .text_child(b::TYPE, "2")
            .text_child(b::TRUNCATION_SIZE, TRUNCATION.to_string()),
    )
}

/// A one-collection Sync request with the bench's WindowSize and Options.
fn sync_body(collection: &str, key: &str) -> Vec<u8> {
    let col = Element::new(a::COLLECTION)
        .text_child(a::SYNC_KEY, key)
        .text_child(a::COLLECTION_ID, collection)
        .text_child(a::WINDOW_SIZE, WINDOW.to_string())
        .child(options());
    wbxml::encode(&Element::new(a::SYNC).child(Element::new(a::COLLECTIONS).child(col)))
}

/// Sync key 0, then pages until MoreAvailable is gone; checks that `expected` distinct mails
/// arrived.
async fn initial_sync(phone: &Phone, cid: &str, expected: usize) -> Result<SyncRun> {
    let started = Instant::now();
    let mut key = "0".to_string();
    let mut seen = HashSet::with_capacity(expected);
    let mut run = SyncRun {
        requests: 0,
        adds: 0,
        bytes: 0,
        secs: 0.0,
        key: String::new(),
    };
    loop {
        let (status, raw) = phone
            .post_bytes("Sync", Bytes::from(sync_body(cid, &key)))
            .await?;
        run.requests += 1;
        run.bytes += raw.len();
        ensure!(status == 200, "Sync: HTTP {status}");
        if raw.is_empty() {
            break;
        }
        let page = read_page(raw)?;
        ensure!(
            page.status.as_deref() == Some("1"),
            "Sync status {:?}",
            page.status
        );
        key = page
            .key
            .ok_or_else(|| anyhow!("Sync answer without SyncKey"))?;
        let adds = page.adds.len();
        for (sid, has_body) in page.adds {
            ensure!(has_body, "Add {sid} without a Body");
            ensure!(seen.insert(sid.clone()), "mail {sid} sent twice");
        }
        ensure!(
            adds <= WINDOW as usize,
            "{adds} Adds in a window of {WINDOW}"
        );
        run.adds += adds;
        // Key 0 answers no items; every other answer says whether there is more.
        if run.requests > 1 && !page.more_available {
            break;
        }
    }
    run.secs = started.elapsed().as_secs_f64();
    ensure!(
        run.adds == expected,
        "initial sync delivered {} mails, expected {expected}",
        run.adds
    );
    run.key = key;
    Ok(run)
}

/// What the phone takes from one Sync answer.
#[derive(Default)]
struct Page {
    status: Option<String>,
    key: Option<String>,
    more_available: bool,
    /// ServerId of each Add, and whether it had an ApplicationData/Body.
    adds: Vec<(String, bool)>,
}

/// Reads a one-collection Sync answer with the streaming reader, as a phone would: no tree
/// of the page is built, every byte is still decoded and checked (tokens, UTF-8).
fn read_page(raw: Bytes) -> Result<Page> {
    let mut reader = wbxml::Reader::new(raw, Limits::default())?;
    let mut path: Vec<wbxml::Tag> = Vec::new();
    let mut page = Page::default();
    while let Some(ev) = reader.next_event()? {
        match ev {
            wbxml::Event::Start { tag, .. } => {
                path.push(tag);
                match path.as_slice() {
                    [_, _, c, m] if *c == a::COLLECTION && *m == a::MORE_AVAILABLE => {
                        page.more_available = true;
                    }
                    [_, _, c, cmds, add]
                        if *c == a::COLLECTION && *cmds == a::COMMANDS && *add == a::ADD =>
                    {
                        page.adds.push((String::new(), false));
                    }
                    [_, _, _, _, add, data, body]
                        if *add == a::ADD && *data == a::APPLICATION_DATA && *body == b::BODY =>
                    {
                        if let Some(last) = page.adds.last_mut() {
                            last.1 = true;
                        }
                    }
                    _ => {}
                }
            }
            wbxml::Event::End(_) => {
                path.pop();
            }
            wbxml::Event::Text(t) => match path.as_slice() {
                [s, cs, c, leaf]
                    if *s == a::SYNC && *cs == a::COLLECTIONS && *c == a::COLLECTION =>
                {
                    if *leaf == a::STATUS {
                        page.status = Some(t);
                    } else if *leaf == a::SYNC_KEY {
                        page.key = Some(t);
                    }
                }
                [_, _, _, _, add, sid] if *add == a::ADD && *sid == a::SERVER_ID => {
                    if let Some(last) = page.adds.last_mut() {
                        last.0.push_str(&t);
                    }
                }
                _ => {}
            },
            wbxml::Event::Opaque(_) => {}
        }
    }
    Ok(page)
}
