//! A scripted IMAP server for the unit tests of this module.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

use super::parse;
use crate::backend::{Credentials, ImapSettings, Secret, Security};

pub(super) type Handler = Box<dyn Fn(&str, &str) -> String + Send + Sync>;

/// A scripted IMAP server for one connection. `handler(tag, command)` returns
/// the full reply (untagged lines and the tagged completion). Literals are
/// accepted in both forms and inlined into `command`. Returns the port and
/// the transcript of received commands.
pub(super) async fn mock(
    greeting: &'static str,
    handler: Handler,
) -> (u16, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let transcript = Arc::new(Mutex::new(Vec::new()));
    let t = Arc::clone(&transcript);
    tokio::spawn(async move {
        let Ok((s, _)) = listener.accept().await else {
            return;
        };
        let mut s = BufReader::new(s);
        // Replies held back ("DEFER:<reply>") until after the next command's reply.
        let mut deferred = String::new();
        if s.get_mut().write_all(greeting.as_bytes()).await.is_err() {
            return;
        }
        loop {
            let mut cmd = Vec::new();
            loop {
                let mut line = Vec::new();
                if s.read_until(b'\n', &mut line).await.unwrap_or(0) == 0 {
                    return;
                }
                cmd.extend_from_slice(&line);
                match parse::trailing_literal_len(&line) {
                    Some(n) => {
                        if !line.ends_with(b"+}\r\n") {
                            let _ = s.get_mut().write_all(b"+ go ahead\r\n").await;
                        }
                        let mut lit = vec![0; n];
                        if s.read_exact(&mut lit).await.is_err() {
                            return;
                        }
                        cmd.extend_from_slice(&lit);
                    }
                    None => break,
                }
            }
            let cmd = String::from_utf8_lossy(&cmd).trim_end().to_string();
            t.lock().unwrap().push(cmd.clone());
            let (tag, rest) = cmd.split_once(' ').unwrap_or((&cmd, ""));
            let reply = handler(tag, rest);
            if reply.is_empty() {
                return; // hang up
            }
            if reply == "SILENT" {
                tokio::time::sleep(Duration::from_secs(60)).await;
                return;
            }
            if let Some(later) = reply.strip_prefix("DEFER:") {
                deferred.push_str(later);
                continue;
            }
            let reply = reply + &std::mem::take(&mut deferred);
            if s.get_mut().write_all(reply.as_bytes()).await.is_err() {
                return;
            }
        }
    });
    (port, transcript)
}

pub(super) fn settings(port: u16) -> ImapSettings {
    ImapSettings {
        host: "127.0.0.1".into(),
        port,
        security: Security::None,
        timeout: Duration::from_secs(5),
        logins: Default::default(),
    }
}

pub(super) fn creds(pw: &str) -> Credentials {
    Credentials {
        login: "alice@example.test".into(),
        password: Secret::new(pw),
    }
}

pub(super) const GREETING: &str = "* OK [CAPABILITY IMAP4rev1 ID LITERAL+ AUTH=PLAIN] ready\r\n";

pub(super) fn login_reply(no: &'static str) -> Handler {
    Box::new(move |tag, cmd| {
        if cmd.starts_with("ID") {
            format!("* ID (\"name\" \"mock\")\r\n{tag} OK ID done\r\n")
        } else if cmd.starts_with("LOGIN") {
            format!("{tag} {no}\r\n")
        } else if cmd.starts_with("LOGOUT") {
            format!("* BYE bye\r\n{tag} OK done\r\n")
        } else {
            format!("{tag} BAD unknown\r\n")
        }
    })
}
