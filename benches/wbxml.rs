//! WBXML codec throughput, compared with libwbxml's command-line tools.
//!
//! Run with `cargo bench --bench wbxml`. Documents:
//! - `sync-1MB`: a Sync response with many email Adds (headers and bodies);
//! - `itemops-10MB`: an ItemOperations fetch response carrying 10 MB of
//!   opaque attachment data.
//!
//! Criterion measures this crate's decode and encode. Afterwards the same
//! files go through `wbxml2xml -l ACTIVESYNC` and `xml2wbxml -a -n`
//! (libwbxml, Debian package libwbxml2-utils) a few times each. Those
//! figures include process start-up and XML text I/O; a run over a tiny
//! file shows the start-up share.

use std::hint::black_box;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{Criterion, Throughput};
use eas_gateway::wbxml::tags::{airsync, airsyncbase, compose_mail, email, item_operations};
use eas_gateway::wbxml::{decode, encode, xml, Element, Limits};

fn sync_response(target: usize) -> Element {
    let body_text: String =
        "Lorem ipsum dolor sit amet, consectetur adipiscing elit. Grüße! \r\n".repeat(20);
    let mut commands = Element::new(airsync::COMMANDS);
    let mut i = 0;
    let mut size = 0;
    while size < target {
        let add = Element::new(airsync::ADD)
            .text_child(airsync::SERVER_ID, format!("5:{i}"))
            .child(
                Element::new(airsync::APPLICATION_DATA)
                    .text_child(email::TO, "\"Bob Smith\" <bob@example.org>")
                    .text_child(
                        email::FROM,
                        format!("\"Sender {i}\" <sender{i}@example.org>"),
                    )
                    .text_child(
                        email::SUBJECT,
                        format!("Message number {i} about the quarterly report"),
                    )
                    .text_child(email::DATE_RECEIVED, "2024-05-06T07:08:09.000Z")
                    .text_child(email::DISPLAY_TO, "Bob Smith")
                    .text_child(email::THREAD_TOPIC, format!("Message number {i}"))
                    .text_child(email::IMPORTANCE, "1")
                    .text_child(email::READ, "0")
                    .child(
                        Element::new(airsyncbase::BODY)
                            .text_child(airsyncbase::TYPE, "1")
                            .text_child(
                                airsyncbase::ESTIMATED_DATA_SIZE,
                                body_text.len().to_string(),
                            )
                            .text_child(airsyncbase::TRUNCATED, "0")
                            .text_child(airsyncbase::DATA, body_text.clone()),
                    )
                    .text_child(email::MESSAGE_CLASS, "IPM.Note")
                    .text_child(email::INTERNET_CPID, "65001")
                    .text_child(airsyncbase::NATIVE_BODY_TYPE, "1"),
            );
        size += body_text.len() + 260;
        commands.push(add);
        i += 1;
    }
    Element::new(airsync::SYNC).child(
        Element::new(airsync::COLLECTIONS).child(
            Element::new(airsync::COLLECTION)
                .text_child(airsync::SYNC_KEY, "42")
                .text_child(airsync::COLLECTION_ID, "5")
                .text_child(airsync::STATUS, "1")
                .child(commands),
        ),
    )
}

fn attachment(len: usize) -> Bytes {
    Bytes::from(
        (0..len)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect::<Vec<u8>>(),
    )
}

fn itemops_response(len: usize) -> Element {
    let mut response = Element::new(item_operations::RESPONSE);
    let parts = 4;
    for p in 0..parts {
        response.push(
            Element::new(item_operations::FETCH)
                .text_child(item_operations::STATUS, "1")
                .text_child(airsyncbase::FILE_REFERENCE, format!("5%3a14%3a{p}"))
                .child(
                    Element::new(item_operations::PROPERTIES)
                        .text_child(airsyncbase::CONTENT_TYPE, "application/octet-stream")
                        .opaque_child(item_operations::DATA, attachment(len / parts)),
                ),
        );
    }
    Element::new(item_operations::ITEM_OPERATIONS)
        .text_child(item_operations::STATUS, "1")
        .child(response)
}

/// Same payload size in a tag libwbxml encodes from base64 (ComposeMail Mime).
fn sendmail(len: usize) -> Element {
    Element::new(compose_mail::SEND_MAIL)
        .text_child(compose_mail::CLIENT_ID, "c1")
        .child(Element::new(compose_mail::SAVE_IN_SENT_ITEMS))
        .opaque_child(compose_mail::MIME, attachment(len))
}

fn best_of<F: FnMut()>(runs: usize, mut f: F) -> Duration {
    (0..runs)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed()
        })
        .min()
        .unwrap_or_default()
}

fn mbps(bytes: usize, d: Duration) -> f64 {
    bytes as f64 / 1e6 / d.as_secs_f64().max(1e-9)
}

fn run_tool(tool: &str, args: &[&str], out: &Path, input: &Path) -> bool {
    Command::new(tool)
        .args(args)
        .arg("-o")
        .arg(out)
        .arg(input)
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

struct Row {
    what: String,
    bytes: usize,
    time: Option<Duration>,
}

fn main() {
    let sync = sync_response(1_000_000);
    let sync_bytes = Bytes::from(encode(&sync));
    let itemops = itemops_response(10_000_000);
    let itemops_bytes = Bytes::from(encode(&itemops));
    let limits = Limits::default();

    let mut c = Criterion::default()
        .configure_from_args()
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    for (name, tree, bytes) in [
        ("sync-1MB", &sync, &sync_bytes),
        ("itemops-10MB", &itemops, &itemops_bytes),
    ] {
        let mut g = c.benchmark_group(name);
        g.throughput(Throughput::Bytes(bytes.len() as u64));
        g.bench_function("decode", |b| {
            b.iter(|| decode(black_box(bytes.clone()), &limits))
        });
        g.bench_function("encode", |b| b.iter(|| encode(black_box(tree))));
        g.finish();
    }
    c.final_summary();

    // Comparison table (best of a few runs each).
    let mut rows = Vec::new();
    for (name, tree, bytes) in [
        ("sync-1MB", &sync, &sync_bytes),
        ("itemops-10MB", &itemops, &itemops_bytes),
    ] {
        let d = best_of(5, || {
            black_box(decode(bytes.clone(), &limits).ok());
        });
        rows.push(Row {
            what: format!("eas_gateway decode {name}"),
            bytes: bytes.len(),
            time: Some(d),
        });
        let e = best_of(5, || {
            black_box(encode(tree));
        });
        rows.push(Row {
            what: format!("eas_gateway encode {name}"),
            bytes: bytes.len(),
            time: Some(e),
        });
    }

    let have_tools = Command::new("wbxml2xml").arg("-h").output().is_ok()
        && Command::new("xml2wbxml").arg("-h").output().is_ok();
    if have_tools {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = |n: &str| dir.path().join(n);
        let tiny = encode(&Element::new(airsync::SYNC).text_child(airsync::SYNC_KEY, "0"));
        let sendmail = sendmail(10_000_000);
        let files: [(&str, Vec<u8>, Element); 3] = [
            (
                "tiny",
                tiny.clone(),
                Element::new(airsync::SYNC).text_child(airsync::SYNC_KEY, "0"),
            ),
            ("sync-1MB", sync_bytes.to_vec(), sync.clone()),
            ("sendmail-10MB", encode(&sendmail), sendmail),
        ];
        for (name, bytes, tree) in &files {
            let wb = p(&format!("{name}.wbxml"));
            std::fs::write(&wb, bytes).expect("write");
            let out = p("out.xml");
            let ok = run_tool("wbxml2xml", &["-l", "ACTIVESYNC"], &out, &wb);
            let d = ok.then(|| {
                best_of(3, || {
                    run_tool("wbxml2xml", &["-l", "ACTIVESYNC"], &out, &wb);
                })
            });
            rows.push(Row {
                what: format!("wbxml2xml -l ACTIVESYNC {name}"),
                bytes: bytes.len(),
                time: d,
            });
            let x = p(&format!("{name}.xml"));
            let lib_xml = xml::to_xml_libwbxml(tree).unwrap_or_default();
            std::fs::write(&x, lib_xml).expect("write");
            let out = p("out.wbxml");
            let ok = run_tool("xml2wbxml", &["-a", "-n"], &out, &x);
            let d = ok.then(|| {
                best_of(3, || {
                    run_tool("xml2wbxml", &["-a", "-n"], &out, &x);
                })
            });
            rows.push(Row {
                what: format!("xml2wbxml -a -n {name}"),
                bytes: bytes.len(),
                time: d,
            });
        }
        // libwbxml cannot write ItemOperations Data as opaque; decoding works
        let wb = p("itemops.wbxml");
        std::fs::write(&wb, &itemops_bytes).expect("write");
        let out = p("out.xml");
        let ok = run_tool("wbxml2xml", &["-l", "ACTIVESYNC"], &out, &wb);
        let d = ok.then(|| {
            best_of(3, || {
                run_tool("wbxml2xml", &["-l", "ACTIVESYNC"], &out, &wb);
            })
        });
        rows.push(Row {
            what: "wbxml2xml -l ACTIVESYNC itemops-10MB".into(),
            bytes: itemops_bytes.len(),
            time: d,
        });
    } else {
        println!(
            "libwbxml tools not found (Debian package libwbxml2-utils): skipping the comparison"
        );
    }

    println!();
    println!(
        "{:<44} {:>12} {:>12} {:>10}",
        "run", "WBXML bytes", "time", "MB/s"
    );
    println!("{}", "-".repeat(81));
    for r in rows {
        match r.time {
            Some(t) => println!(
                "{:<44} {:>12} {:>10.3}ms {:>10.1}",
                r.what,
                r.bytes,
                t.as_secs_f64() * 1e3,
                mbps(r.bytes, t)
            ),
            None => println!(
                "{:<44} {:>12} {:>12} {:>10}",
                r.what, r.bytes, "failed", "-"
            ),
        }
    }
    println!(
        "libwbxml rows: whole process runs (start-up, file and XML text I/O included), best of 3;"
    );
    println!("the 'tiny' rows are the start-up cost. sendmail-10MB carries the same 10 MB opaque payload in");
    println!("ComposeMail Mime, which xml2wbxml encodes from base64 (it cannot emit ItemOperations Data as opaque).");
}
