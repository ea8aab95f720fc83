//! SMTP capability probe: a minimal EHLO exchange (lettre keeps the EHLO
//! keywords it knows and drops the rest, so the probe talks SMTP itself).

use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};

use super::imap::{tcp_connect, NetStream};
use super::{server_text, tls, BackendError, Security, SmtpSettings};

/// Longest reply line accepted (RFC 5321 allows 512 octets; servers exceed it a little).
const MAX_LINE: usize = 4096;
/// Most lines in one multi-line reply.
const MAX_LINES: usize = 200;

/// One SMTP reply: code and the text of each line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub code: u16,
    pub lines: Vec<String>,
}

/// Parse one reply line: `(code, is_last, text)`.
pub fn parse_reply_line(line: &str) -> Option<(u16, bool, &str)> {
    let line = line.trim_end_matches(['\r', '\n']);
    let code = line.get(..3)?;
    if !code.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let code: u16 = code.parse().ok()?;
    match line.as_bytes().get(3) {
        None => Some((code, true, "")),
        Some(b' ') => Some((code, true, line.get(4..).unwrap_or(""))),
        Some(b'-') => Some((code, false, line.get(4..).unwrap_or(""))),
        Some(_) => None,
    }
}

struct SmtpConn {
    io: BufReader<NetStream>,
    timeout: Duration,
}

impl SmtpConn {
    async fn read_reply(&mut self) -> Result<Reply, BackendError> {
        let timeout = self.timeout;
        match tokio::time::timeout(timeout, self.read_reply_inner()).await {
            Ok(r) => r,
            Err(_) => Err(BackendError::Unavailable(format!(
                "SMTP server did not answer within {timeout:?}"
            ))),
        }
    }

    async fn read_reply_inner(&mut self) -> Result<Reply, BackendError> {
        let mut lines = Vec::new();
        let mut code = None;
        loop {
            let mut raw = Vec::new();
            let n = (&mut self.io)
                .take(MAX_LINE as u64)
                .read_until(b'\n', &mut raw)
                .await
                .map_err(|e| BackendError::Unavailable(format!("SMTP connection lost: {e}")))?;
            if n == 0 {
                return Err(BackendError::Unavailable(
                    "SMTP server closed the connection".to_string(),
                ));
            }
            if !raw.ends_with(b"\n") {
                return Err(BackendError::Protocol(
                    "SMTP reply line too long".to_string(),
                ));
            }
            let line = String::from_utf8_lossy(&raw);
            let (c, last, text) = parse_reply_line(&line)
                .ok_or_else(|| BackendError::Protocol("malformed SMTP reply".to_string()))?;
            if *code.get_or_insert(c) != c {
                return Err(BackendError::Protocol(
                    "SMTP reply with mixed codes".to_string(),
                ));
            }
            lines.push(text.to_string());
            if last {
                return Ok(Reply { code: c, lines });
            }
            if lines.len() >= MAX_LINES {
                return Err(BackendError::Protocol("SMTP reply too long".to_string()));
            }
        }
    }

    async fn send(&mut self, line: &str) -> Result<Reply, BackendError> {
        let w = self.io.get_mut();
        let r = async {
            w.write_all(line.as_bytes()).await?;
            w.write_all(b"\r\n").await?;
            w.flush().await
        }
        .await;
        r.map_err(|e| BackendError::Unavailable(format!("SMTP connection lost: {e}")))?;
        self.read_reply().await
    }

    async fn ehlo(&mut self, name: &str) -> Result<Vec<String>, BackendError> {
        let r = self.send(&format!("EHLO {name}")).await?;
        if r.code != 250 {
            return Err(unexpected("EHLO", &r));
        }
        // The first line is the server's greeting, the rest are extensions.
        Ok(r.lines
            .into_iter()
            .skip(1)
            .map(|l| l.trim().to_string())
            .filter(|l| !l.is_empty())
            .collect())
    }
}

fn unexpected(what: &str, r: &Reply) -> BackendError {
    let text = server_text(&r.lines.join(" "));
    if (400..500).contains(&r.code) || r.code == 554 && what == "greeting" {
        BackendError::Unavailable(format!("SMTP {what}: {} {text}", r.code))
    } else {
        BackendError::Protocol(format!("SMTP {what}: {} {text}", r.code))
    }
}

/// Connect and report the EHLO extensions (e.g. `SIZE 10240000`,
/// `AUTH PLAIN LOGIN`, `8BITMIME`), as the server spells them; after STARTTLS
/// when configured (the pre-TLS list is not trustworthy).
pub async fn probe_smtp(settings: &SmtpSettings) -> Result<Vec<String>, BackendError> {
    let timeout = settings.timeout;
    let tcp = tcp_connect(&settings.host, settings.port, timeout).await?;
    // An address literal of our own end is always a valid EHLO name.
    let ehlo_name = match tcp.local_addr() {
        Ok(a) if a.is_ipv6() => format!("[IPv6:{}]", a.ip()),
        Ok(a) => format!("[{}]", a.ip()),
        Err(_) => "localhost".to_string(),
    };
    let stream = match settings.security {
        Security::Tls => NetStream::Tls(Box::new(
            tls::connect_within(&settings.host, tcp, timeout).await?,
        )),
        Security::None | Security::StartTls => NetStream::Plain(tcp),
    };
    let mut conn = SmtpConn {
        io: BufReader::new(stream),
        timeout,
    };
    let greeting = conn.read_reply().await?;
    if greeting.code != 220 {
        return Err(unexpected("greeting", &greeting));
    }
    let mut extensions = conn.ehlo(&ehlo_name).await?;
    if settings.security == Security::StartTls {
        if !extensions
            .iter()
            .any(|e| e.eq_ignore_ascii_case("STARTTLS"))
        {
            return Err(BackendError::Unavailable(
                "SMTP server does not offer STARTTLS".to_string(),
            ));
        }
        let r = conn.send("STARTTLS").await?;
        if r.code != 220 {
            return Err(unexpected("STARTTLS", &r));
        }
        if !conn.io.buffer().is_empty() {
            return Err(BackendError::Protocol(
                "SMTP server sent data after the STARTTLS reply".to_string(),
            ));
        }
        let NetStream::Plain(tcp) = conn.io.into_inner() else {
            return Err(BackendError::Protocol(
                "STARTTLS on a TLS connection".to_string(),
            ));
        };
        let tls = tls::connect_within(&settings.host, tcp, timeout).await?;
        conn = SmtpConn {
            io: BufReader::new(NetStream::Tls(Box::new(tls))),
            timeout,
        };
        extensions = conn.ehlo(&ehlo_name).await?;
    }
    conn.timeout = timeout.min(Duration::from_secs(5));
    let _ = conn.send("QUIT").await;
    let _ = tokio::time::timeout(Duration::from_secs(1), conn.io.get_mut().shutdown()).await;
    Ok(extensions)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::TcpListener;

    #[test]
    fn reply_lines() {
        assert_eq!(
            parse_reply_line("250-SIZE 1000\r\n"),
            Some((250, false, "SIZE 1000"))
        );
        assert_eq!(parse_reply_line("250 HELP\r\n"), Some((250, true, "HELP")));
        assert_eq!(parse_reply_line("250\r\n"), Some((250, true, "")));
        assert_eq!(parse_reply_line("25\r\n"), None);
        assert_eq!(parse_reply_line("2x0 a\r\n"), None);
        assert_eq!(parse_reply_line("250_a\r\n"), None);
        assert_eq!(parse_reply_line("ü50 a"), None);
    }

    /// A scripted SMTP server: sends the greeting, then answers each command.
    async fn fake_server(greeting: &'static str, ehlo: &'static str) -> u16 {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            s.write_all(greeting.as_bytes()).await.unwrap();
            let mut buf = [0u8; 512];
            loop {
                let n = match s.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => n,
                };
                let cmd = String::from_utf8_lossy(&buf[..n]).to_string();
                if cmd.starts_with("EHLO [127.0.0.1]") {
                    s.write_all(ehlo.as_bytes()).await.unwrap();
                } else if cmd.starts_with("QUIT") {
                    let _ = s.write_all(b"221 bye\r\n").await;
                    return;
                } else {
                    s.write_all(b"500 what\r\n").await.unwrap();
                }
            }
        });
        port
    }

    fn settings(port: u16, security: Security) -> SmtpSettings {
        SmtpSettings {
            host: "127.0.0.1".into(),
            port,
            security,
            timeout: Duration::from_secs(5),
        }
    }

    #[tokio::test]
    async fn collects_ehlo_extensions() {
        let port = fake_server(
            "220 mx ESMTP\r\n",
            "250-mx.example.test hello\r\n250-PIPELINING\r\n250-SIZE 10240000\r\n250-AUTH PLAIN LOGIN\r\n250 8BITMIME\r\n",
        )
        .await;
        let ext = probe_smtp(&settings(port, Security::None)).await.unwrap();
        assert_eq!(
            ext,
            vec![
                "PIPELINING",
                "SIZE 10240000",
                "AUTH PLAIN LOGIN",
                "8BITMIME"
            ]
        );
    }

    #[tokio::test]
    async fn busy_greeting_is_unavailable_and_missing_starttls_is_refused() {
        let port = fake_server("421 too busy\r\n", "").await;
        let e = probe_smtp(&settings(port, Security::None))
            .await
            .unwrap_err();
        assert!(matches!(e, BackendError::Unavailable(_)), "{e:?}");

        let port = fake_server("220 mx\r\n", "250-mx\r\n250 SIZE 1\r\n").await;
        let e = probe_smtp(&settings(port, Security::StartTls))
            .await
            .unwrap_err();
        assert!(
            matches!(e, BackendError::Unavailable(ref m) if m.contains("STARTTLS")),
            "{e:?}"
        );
    }

    #[tokio::test]
    async fn refused_connection_is_unavailable() {
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let e = probe_smtp(&settings(port, Security::None))
            .await
            .unwrap_err();
        assert!(matches!(e, BackendError::Unavailable(_)), "{e:?}");
    }
}
