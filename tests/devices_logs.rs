//! The gateway binary's own log: a failed login is one fixed line fail2ban can match (time,
//! client IP, user; never the password), and `serve --log-format json` writes one JSON object
//! per line.

mod common;

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use base64::Engine;
use common::*;
use tokio::io::{AsyncBufReadExt, BufReader, Lines};
use tokio::net::TcpStream;
use tokio::process::{Child, ChildStdout};

/// The binary serving plain HTTP on `port` with `args` after `serve --config FILE`; its log
/// (stdout) is returned line by line. Killed when dropped.
async fn start(dir: &Path, port: u16, args: &[&str]) -> (Child, Lines<BufReader<ChildStdout>>) {
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
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_eas-gateway"))
        .args(["serve", "--config"])
        .arg(&config)
        .args(args)
        .env("EAS_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start the gateway binary");
    let lines = BufReader::new(child.stdout.take().unwrap()).lines();
    for _ in 0..100 {
        if TcpStream::connect(("127.0.0.1", port)).await.is_ok() {
            return (child, lines);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the gateway did not start listening");
}

async fn options(port: u16, user: &str, password: &str) -> u16 {
    let auth = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    reqwest::Client::new()
        .request(
            reqwest::Method::OPTIONS,
            format!("http://127.0.0.1:{port}/Microsoft-Server-ActiveSync"),
        )
        .header("Authorization", format!("Basic {auth}"))
        .send()
        .await
        .expect("OPTIONS")
        .status()
        .as_u16()
}

/// Reads log lines until one contains `needle`; returns every line read.
async fn read_until(lines: &mut Lines<BufReader<ChildStdout>>, needle: &str) -> Vec<String> {
    let mut seen = Vec::new();
    let found = tokio::time::timeout(Duration::from_secs(30), async {
        while let Ok(Some(line)) = lines.next_line().await {
            let hit = line.contains(needle);
            seen.push(line);
            if hit {
                return true;
            }
        }
        false
    })
    .await;
    assert!(
        matches!(found, Ok(true)),
        "no log line with {needle:?} in:\n{}",
        seen.join("\n")
    );
    seen
}

#[tokio::test]
async fn a_failed_login_is_one_fail2ban_line_without_the_password() {
    require_stack();
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let (mut child, mut lines) = start(dir.path(), port, &[]).await;
    let (user, pw) = new_user("f2b");
    let wrong = format!("wrong-{:08x}", rand::random::<u32>());

    assert_eq!(options(port, &user, &pw).await, 200);
    assert_eq!(options(port, &user, &wrong).await, 401);
    let mut seen = read_until(&mut lines, "auth failed:").await;
    let line = seen.last().unwrap().clone();
    let expected = format!("auth failed: client_ip=127.0.0.1 user={user}");
    assert!(line.ends_with(&expected), "{line}");
    // The time comes first (what fail2ban's date detection reads).
    assert!(
        line.starts_with("20") && line.as_bytes().get(4) == Some(&b'-'),
        "{line}"
    );
    // Exactly one such line: the successful login has none.
    seen.extend(read_until(&mut lines, "request done").await);
    assert_eq!(
        seen.iter().filter(|l| l.contains("auth failed:")).count(),
        1,
        "{seen:#?}"
    );
    // A user name with a line break stays on one line.
    assert_eq!(options(port, "mallory\nauth", &wrong).await, 401);
    let more = read_until(&mut lines, "auth failed:").await;
    assert!(
        more.last()
            .unwrap()
            .ends_with("auth failed: client_ip=127.0.0.1 user=mallory?auth@example.test"),
        "{more:#?}"
    );
    seen.extend(more);

    child.start_kill().unwrap();
    let _ = child.wait().await;
    while let Ok(Some(l)) = lines.next_line().await {
        seen.push(l);
    }
    let all = seen.join("\n");
    for secret in [pw.as_str(), wrong.as_str()] {
        assert!(!all.contains(secret), "a password in the log:\n{all}");
    }
}

#[tokio::test]
async fn log_format_json_writes_one_object_per_line() {
    require_stack();
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let (_child, mut lines) = start(dir.path(), port, &["--log-format", "json"]).await;
    let (user, pw) = new_user("jsonlog");
    assert_eq!(options(port, &user, "not-it").await, 401);
    let seen = read_until(&mut lines, "request done").await;
    for line in &seen {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        assert!(v["timestamp"].is_string(), "{line}");
    }
    let failed: serde_json::Value = seen
        .iter()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .find(|v| {
            v["fields"]["message"]
                .as_str()
                .is_some_and(|m| m.starts_with("auth failed:"))
        })
        .expect("an auth failed line");
    assert_eq!(
        failed["fields"]["message"],
        format!("auth failed: client_ip=127.0.0.1 user={user}")
    );
    let done: serde_json::Value = serde_json::from_str(seen.last().unwrap()).unwrap();
    assert_eq!(done["fields"]["http_status"], 401);
    assert_eq!(done["span"]["client_ip"], "127.0.0.1");
    assert!(!seen.join("\n").contains(&pw));
}
