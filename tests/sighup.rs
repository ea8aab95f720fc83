//! SIGHUP to the real binary: the certificate files are read again (new connections get the
//! new certificate; one that does not load leaves the current one in place), reloadable
//! settings apply (`server.doctor`), others are named as needing a restart, and a Ping waiting
//! across the reload still answers on its old connection when a mail arrives.

mod common;

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::*;
use eas_gateway::wbxml::tags::ping as p;
use eas_gateway::wbxml::Element;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

/// A new self-signed certificate in `dir` (written to temporary files, then renamed over the
/// configured ones, as certificate renewal tools do); returns its DER.
fn new_cert(dir: &Path) -> Vec<u8> {
    let c =
        rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()]).unwrap();
    std::fs::write(dir.join("cert.pem.new"), c.cert.pem()).unwrap();
    std::fs::write(dir.join("key.pem.new"), c.key_pair.serialize_pem()).unwrap();
    std::fs::rename(dir.join("key.pem.new"), dir.join("key.pem")).unwrap();
    std::fs::rename(dir.join("cert.pem.new"), dir.join("cert.pem")).unwrap();
    c.cert.der().to_vec()
}

fn write_config(dir: &Path, port: u16, admin: u16, extra_server: &str, imap_timeout: u32) {
    std::fs::write(
        dir.join("gw.toml"),
        format!(
            "[server]\nlisten = \"127.0.0.1:{port}\"\ntls_cert = \"cert.pem\"\ntls_key = \"key.pem\"\n\
             {extra_server}\n\
             [imap]\nhost = \"127.0.0.1\"\nport = 143\ntimeout_secs = {imap_timeout}\n\
             [smtp]\nhost = \"127.0.0.1\"\nport = 587\n\
             [state]\nurl = \"sqlite://{}\"\n[identity]\ndomain = \"{DOMAIN}\"\n\
             [push]\nmin_heartbeat_secs = 2\nwatcher_grace_secs = 2\n\
             [admin]\nlisten = \"127.0.0.1:{admin}\"\ntoken_file = \"admin.token\"\n",
            dir.join("state.db").display()
        ),
    )
    .unwrap();
}

/// The certificate a new connection to `port` is given (DER).
async fn served_cert(port: u16) -> Vec<u8> {
    let client = reqwest::Client::builder()
        .danger_accept_invalid_certs(true)
        .tls_info(true)
        .build()
        .unwrap();
    let r = client
        .get(format!(
            "https://127.0.0.1:{port}/Microsoft-Server-ActiveSync"
        ))
        .send()
        .await
        .expect("a new connection");
    r.extensions()
        .get::<reqwest::tls::TlsInfo>()
        .and_then(|t| t.peer_certificate())
        .expect("the peer certificate")
        .to_vec()
}

/// `eas_push_waiting` from the admin listener.
async fn waiting(admin: u16) -> u64 {
    let text = reqwest::Client::new()
        .get(format!("http://127.0.0.1:{admin}/metrics"))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix("eas_push_waiting "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

/// Waits until the log holds `n` lines containing `what`; returns the log.
async fn log_lines(dir: &Path, what: &str, n: usize) -> String {
    let started = Instant::now();
    loop {
        let log = std::fs::read_to_string(dir.join("gw.log")).unwrap_or_default();
        if log.matches(what).count() >= n {
            return log;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "no `{what}` in the log:\n{log}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn deliver(to: &str, subject: &str) {
    let s = TcpStream::connect("127.0.0.1:25")
        .await
        .expect("SMTP connect");
    let (r, mut w) = s.into_split();
    let mut r = BufReader::new(r);
    let mut line = String::new();
    for cmd in [
        None,
        Some("EHLO tests.example.org".to_string()),
        Some("MAIL FROM:<sender@example.org>".to_string()),
        Some(format!("RCPT TO:<{to}>")),
        Some("DATA".to_string()),
        Some(format!("{}.", mail(subject, "after the reload"))),
    ] {
        if let Some(c) = cmd {
            w.write_all(format!("{c}\r\n").as_bytes()).await.unwrap();
        }
        loop {
            line.clear();
            r.read_line(&mut line).await.expect("SMTP read");
            if line.len() < 4 || line.as_bytes()[3] != b'-' {
                break;
            }
        }
        assert!(line.starts_with('2') || line.starts_with('3'), "{line}");
    }
    w.write_all(b"QUIT\r\n").await.unwrap();
}

#[tokio::test]
async fn sighup_swaps_the_certificate_and_a_waiting_ping_still_answers() {
    require_stack();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let first = new_cert(d);
    std::fs::write(d.join("admin.token"), ADMIN_TOKEN).unwrap();
    let (port, admin) = (free_port(), free_port());
    write_config(d, port, admin, "", 5);
    let log = std::fs::File::create(d.join("gw.log")).unwrap();
    let gw = tokio::process::Command::new(env!("CARGO_BIN_EXE_eas-gateway"))
        .args(["serve", "--config"])
        .arg(d.join("gw.toml"))
        .env("EAS_LOG", "info")
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("start the gateway binary");
    let pid = rustix::process::Pid::from_raw(gw.id().expect("running") as i32).unwrap();
    for _ in 0..100 {
        if TcpStream::connect(("127.0.0.1", port)).await.is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(served_cert(port).await, first);
    let doctor = format!("https://127.0.0.1:{port}/Microsoft-Server-ActiveSync/doctor");
    assert_eq!(client().get(&doctor).send().await.unwrap().status(), 401);

    // A phone waits in a Ping.
    let (user, pw) = new_user("sighup");
    let mut dev = TestDevice::plain_http(port, &user, &pw, "16.1");
    dev.base = format!("https://127.0.0.1:{port}/Microsoft-Server-ActiveSync");
    dev.client = client();
    dev.provision().await;
    let inbox = folder_id(&dev, "Inbox").await;
    let (_, key) = full_sync(&dev, &inbox, 50).await;
    let ping = Element::new(p::PING)
        .text_child(p::HEARTBEAT_INTERVAL, "300")
        .child(
            Element::new(p::FOLDERS).child(
                Element::new(p::FOLDER)
                    .text_child(p::ID, inbox.as_str())
                    .text_child(p::CLASS, "Email"),
            ),
        );
    let waiting_ping = {
        let dev = dev.clone();
        tokio::spawn(async move { dev.post("Ping", &ping).await })
    };
    let started = Instant::now();
    while waiting(admin).await < 1 {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "the Ping never waited"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // New certificate and configuration, then SIGHUP.
    let second = new_cert(d);
    assert_ne!(first, second);
    write_config(d, port, admin, "doctor = true", 7);
    rustix::process::kill_process(pid, rustix::process::Signal::HUP).unwrap();
    let text = log_lines(d, "reload (SIGHUP): configuration applied", 1).await;
    assert!(
        text.contains("read only at start") && text.contains("imap"),
        "the imap change is named as needing a restart:\n{text}"
    );
    assert_eq!(
        served_cert(port).await,
        second,
        "new connections, new certificate"
    );
    assert_eq!(
        client().get(&doctor).send().await.unwrap().status(),
        200,
        "server.doctor reloaded"
    );

    // A certificate file that does not load changes nothing.
    std::fs::write(d.join("cert.pem"), "not a certificate").unwrap();
    rustix::process::kill_process(pid, rustix::process::Signal::HUP).unwrap();
    log_lines(d, "reload (SIGHUP): not applied", 1).await;
    assert_eq!(
        served_cert(port).await,
        second,
        "the last good certificate stays"
    );

    // The Ping that waited across both reloads answers on its connection.
    assert!(!waiting_ping.is_finished(), "the Ping ended at the reload");
    assert_eq!(waiting(admin).await, 1);
    let subject = unique("after reload");
    deliver(&user, &subject).await;
    let reply = tokio::time::timeout(Duration::from_secs(60), waiting_ping)
        .await
        .expect("the Ping answers when the mail arrives")
        .unwrap();
    assert_eq!(reply.status, 200);
    let body = reply.body.expect("Ping body");
    assert_eq!(body.text_of(p::STATUS), Some("2"), "{body:?}");
    let r = sync(&dev, &inbox, &key, 50).await;
    assert_eq!(r.adds.len(), 1, "{r:?}");
}
