//! Logging in: ID with the device's address (RFC 2971), LOGIN (RFC 9051 6.2.3) classified by
//! response code (RFC 5530), the capabilities after login; the [`MailBackend`] that hands out
//! sessions, and the capability probe. LOGIN is never sent on a PREAUTH or LOGINDISABLED
//! connection, and its text never reaches a log line or an error.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;

use super::command::{classify, has_cap, Command, Phase};
use super::engine::ImapConn;
use super::parse::Status;
use super::transport::{fetch_capabilities, open, NetStream, Opened};
use super::ImapSession;
use crate::backend::{BackendError, Credentials, ImapSettings, MailBackend};

/// The RFC 2971 ID command sent before LOGIN.
fn id_command(client_ip: Option<IpAddr>) -> Command {
    let mut cmd = Command::new("ID")
        .raw(" (")
        .astring("name")
        .astring("eas-gateway")
        .astring("version")
        .astring(env!("CARGO_PKG_VERSION"));
    if let Some(ip) = client_ip {
        cmd = cmd.astring("x-originating-ip").astring(&ip.to_string());
    }
    cmd.raw(")")
}

/// ID (when a client address is known and the server has ID), LOGIN, and the
/// post-login capabilities.
async fn authenticate(
    opened: Opened,
    creds: &Credentials,
    client_ip: Option<IpAddr>,
) -> Result<(ImapConn<NetStream>, Vec<String>), BackendError> {
    let Opened {
        mut conn,
        caps,
        preauth,
    } = opened;
    if preauth {
        // A pre-authenticated connection belongs to someone we cannot name.
        conn.logout().await;
        return Err(BackendError::Protocol(
            "IMAP server sent PREAUTH; refusing a session of unknown identity".to_string(),
        ));
    }
    if has_cap(&caps, "LOGINDISABLED") {
        conn.logout().await;
        return Err(BackendError::Unavailable(
            "IMAP server refuses LOGIN on this connection (LOGINDISABLED): set security to starttls or tls"
                .to_string(),
        ));
    }
    if client_ip.is_some() && has_cap(&caps, "ID") {
        // The answer does not matter; only a broken connection does.
        conn.run(&id_command(client_ip)).await?;
    }
    let login = Command::new("LOGIN")
        .astring(&creds.login)
        .astring(creds.password.expose());
    let done = conn.run(&login).await?;
    if done.done.status != Status::Ok {
        let err = classify(&done.done, Phase::Login, "LOGIN");
        conn.logout().await;
        return Err(err);
    }
    let post = match done.capabilities() {
        Some(c) => c,
        None => fetch_capabilities(&mut conn).await?,
    };
    conn.set_capabilities(&post);
    Ok((conn, post))
}

/// The IMAP [`MailBackend`].
#[derive(Debug, Clone)]
pub struct ImapBackend {
    settings: Arc<ImapSettings>,
}

impl ImapBackend {
    pub fn new(settings: ImapSettings) -> Self {
        ImapBackend {
            settings: Arc::new(settings),
        }
    }

    pub fn settings(&self) -> &ImapSettings {
        &self.settings
    }
}

impl MailBackend for ImapBackend {
    type Session = ImapSession;

    async fn login(
        &self,
        creds: &Credentials,
        client_ip: Option<IpAddr>,
    ) -> Result<ImapSession, BackendError> {
        let queued = Instant::now();
        let slot = self.settings.logins.enter().await?;
        let started = Instant::now();
        let opened = open(&self.settings).await?;
        let (conn, caps) = authenticate(opened, creds, client_ip).await?;
        drop(slot);
        tracing::debug!(
            user = %creds.login,
            queued_ms = started.duration_since(queued).as_millis() as u64,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "IMAP login"
        );
        Ok(ImapSession::new(conn, caps))
    }
}

/// What an IMAP server offers before and (with credentials) after login.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImapProbe {
    /// Capabilities before login (after STARTTLS when configured), upper-cased.
    pub pre_login: Vec<String>,
    /// Capabilities after login, when credentials were given.
    pub post_login: Option<Vec<String>>,
}

/// Connect (and log in when `creds` is given) and report the capabilities.
pub async fn probe_imap(
    settings: &ImapSettings,
    creds: Option<&Credentials>,
) -> Result<ImapProbe, BackendError> {
    let opened = open(settings).await?;
    let pre_login = opened.caps.clone();
    let post_login = match creds {
        Some(creds) => {
            let (conn, post) = authenticate(opened, creds, None).await?;
            conn.logout().await;
            Some(post)
        }
        None => {
            opened.conn.logout().await;
            None
        }
    };
    Ok(ImapProbe {
        pre_login,
        post_login,
    })
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::super::mock::{creds, login_reply, mock, settings, GREETING};
    use super::*;
    use crate::backend::{MailSession, Security};

    type Check = fn(&BackendError) -> bool;

    #[tokio::test]
    async fn login_sends_id_first_and_reads_post_login_capabilities() {
        let (port, transcript) = mock(
            GREETING,
            Box::new(|tag, cmd| {
                if cmd.starts_with("ID") {
                    format!("* ID NIL\r\n{tag} OK\r\n")
                } else if cmd.starts_with("LOGIN") {
                    format!(
                        "{tag} OK [CAPABILITY IMAP4rev1 CONDSTORE SPECIAL-USE Move] Logged in\r\n"
                    )
                } else {
                    format!("* BYE bye\r\n{tag} OK done\r\n")
                }
            }),
        )
        .await;
        let backend = ImapBackend::new(settings(port));
        let ip: IpAddr = "192.0.2.7".parse().unwrap();
        let session = backend.login(&creds("pw"), Some(ip)).await.unwrap();
        assert!(session.has_capability("condstore"));
        assert!(session.capabilities().contains(&"MOVE".to_string()));
        session.logout().await;
        let t = transcript.lock().unwrap().clone();
        assert_eq!(
            t[0],
            format!(
                "e1 ID (\"name\" \"eas-gateway\" \"version\" \"{}\" \"x-originating-ip\" \"192.0.2.7\")",
                env!("CARGO_PKG_VERSION")
            )
        );
        assert_eq!(t[1], "e2 LOGIN \"alice@example.test\" \"pw\"");
        assert_eq!(t[2], "e3 LOGOUT");
    }

    #[tokio::test]
    async fn login_without_client_ip_sends_no_id_and_fetches_capability() {
        let (port, transcript) = mock(
            "* OK ready\r\n",
            Box::new(|tag, cmd| {
                if cmd.starts_with("CAPABILITY") {
                    format!("* CAPABILITY IMAP4rev1 ID\r\n{tag} OK\r\n")
                } else if cmd.starts_with("LOGIN") {
                    format!("{tag} OK Logged in\r\n")
                } else {
                    format!("{tag} OK\r\n")
                }
            }),
        )
        .await;
        let session = ImapBackend::new(settings(port))
            .login(&creds("pw"), None)
            .await
            .unwrap();
        // No capability list after LOGIN: asked again.
        assert_eq!(session.capabilities(), ["IMAP4REV1", "ID"]);
        session.logout().await;
        let t = transcript.lock().unwrap().clone();
        let names: Vec<&str> = t.iter().map(|c| c.split(' ').nth(1).unwrap()).collect();
        assert_eq!(names, ["CAPABILITY", "LOGIN", "CAPABILITY", "LOGOUT"]);
    }

    #[tokio::test]
    async fn login_failures_are_classified() {
        let cases: &[(&str, Check)] = &[
            ("NO [AUTHENTICATIONFAILED] Authentication failed.", |e| {
                *e == BackendError::AuthFailed
            }),
            ("NO Login failed", |e| *e == BackendError::AuthFailed),
            ("NO [AUTHORIZATIONFAILED] no", |e| {
                *e == BackendError::AuthFailed
            }),
            (
                "NO [UNAVAILABLE] Temporary failure",
                |e| matches!(e, BackendError::Unavailable(m) if m.contains("UNAVAILABLE") && m.contains("Temporary failure")),
            ),
            ("NO [LIMIT] too many", |e| {
                matches!(e, BackendError::Unavailable(_))
            }),
            ("NO [SERVERBUG] oops", |e| {
                matches!(e, BackendError::Unavailable(_))
            }),
            ("NO [INUSE] busy", |e| {
                matches!(e, BackendError::Unavailable(_))
            }),
            (
                "NO [PRIVACYREQUIRED] tls please",
                |e| matches!(e, BackendError::Unavailable(m) if m.contains("starttls")),
            ),
            ("BAD [CLIENTBUG] syntax", |e| {
                matches!(e, BackendError::Protocol(_))
            }),
        ];
        for (reply, check) in cases {
            let (port, _) = mock(GREETING, login_reply(reply)).await;
            let err = ImapBackend::new(settings(port))
                .login(&creds("s3cret-pw"), Some("::1".parse().unwrap()))
                .await
                .unwrap_err();
            assert!(check(&err), "{reply}: {err:?}");
            assert!(!err.to_string().contains("s3cret-pw"));
            assert!(!format!("{err:?}").contains("s3cret-pw"));
        }
    }

    #[tokio::test]
    async fn bye_and_broken_connections_are_unavailable() {
        // BYE greeting
        let (port, _) = mock("* BYE [UNAVAILABLE] maintenance\r\n", login_reply("OK")).await;
        let e = ImapBackend::new(settings(port))
            .login(&creds("pw"), None)
            .await
            .unwrap_err();
        assert!(
            matches!(e, BackendError::Unavailable(ref m) if m.contains("maintenance")),
            "{e:?}"
        );

        // BYE instead of a LOGIN completion, then hang-up
        let (port, _) = mock(
            GREETING,
            Box::new(|tag, cmd| {
                if cmd.starts_with("LOGIN") {
                    "* BYE Too many connections\r\n".to_string()
                } else {
                    format!("{tag} OK\r\n")
                }
            }),
        )
        .await;
        let e = ImapBackend::new(settings(port))
            .login(&creds("pw"), None)
            .await
            .unwrap_err();
        assert!(
            matches!(e, BackendError::Unavailable(ref m) if m.contains("Too many")),
            "{e:?}"
        );

        // hang-up after LOGIN
        let (port, _) = mock(GREETING, Box::new(|_, _| String::new())).await;
        let e = ImapBackend::new(settings(port))
            .login(&creds("pw"), None)
            .await
            .unwrap_err();
        assert!(matches!(e, BackendError::Unavailable(_)), "{e:?}");

        // silent server: timeout
        let (port, _) = mock(GREETING, Box::new(|_, _| "SILENT".to_string())).await;
        let mut s = settings(port);
        s.timeout = Duration::from_millis(300);
        let started = Instant::now();
        let e = ImapBackend::new(s)
            .login(&creds("pw"), None)
            .await
            .unwrap_err();
        assert!(
            matches!(e, BackendError::Unavailable(ref m) if m.contains("did not answer")),
            "{e:?}"
        );
        assert!(started.elapsed() < Duration::from_secs(3));

        // garbage greeting
        let (port, _) = mock("HTTP/1.1 400 Bad Request\r\n", login_reply("OK")).await;
        let e = ImapBackend::new(settings(port))
            .login(&creds("pw"), None)
            .await
            .unwrap_err();
        assert!(matches!(e, BackendError::Unavailable(_)), "{e:?}");

        // refused
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let e = ImapBackend::new(settings(port))
            .login(&creds("pw"), None)
            .await
            .unwrap_err();
        assert!(matches!(e, BackendError::Unavailable(_)), "{e:?}");
    }

    #[tokio::test]
    async fn passwords_are_quoted_or_sent_as_literals() {
        // Quotes and backslashes are escaped.
        let (port, t) = mock(GREETING, login_reply("OK [CAPABILITY IMAP4rev1] ok")).await;
        let s = ImapBackend::new(settings(port))
            .login(&creds("p\"a\\ss"), None)
            .await
            .unwrap();
        s.logout().await;
        assert_eq!(
            t.lock().unwrap()[0],
            "e1 LOGIN \"alice@example.test\" \"p\\\"a\\\\ss\""
        );

        // 8-bit password: synchronising literal when the server lacks LITERAL+.
        let (port, t) = mock(
            "* OK [CAPABILITY IMAP4rev1] ready\r\n",
            login_reply("OK [CAPABILITY IMAP4rev1] ok"),
        )
        .await;
        let s = ImapBackend::new(settings(port))
            .login(&creds("pässwörd"), None)
            .await
            .unwrap();
        s.logout().await;
        assert_eq!(
            t.lock().unwrap()[0],
            "e1 LOGIN \"alice@example.test\" {10}\r\npässwörd"
        );

        // ... and non-synchronising with LITERAL+.
        let (port, t) = mock(GREETING, login_reply("OK [CAPABILITY IMAP4rev1] ok")).await;
        let s = ImapBackend::new(settings(port))
            .login(&creds("pässwörd"), None)
            .await
            .unwrap();
        s.logout().await;
        assert_eq!(
            t.lock().unwrap()[0],
            "e1 LOGIN \"alice@example.test\" {10+}\r\npässwörd"
        );
    }

    #[tokio::test]
    async fn login_disabled_is_not_attempted() {
        let (port, t) = mock(
            "* OK [CAPABILITY IMAP4rev1 STARTTLS LOGINDISABLED] ready\r\n",
            login_reply("OK"),
        )
        .await;
        let e = ImapBackend::new(settings(port))
            .login(&creds("pw"), None)
            .await
            .unwrap_err();
        assert!(matches!(e, BackendError::Unavailable(ref m) if m.contains("LOGINDISABLED")));
        assert!(t.lock().unwrap().iter().all(|c| !c.contains("LOGIN \"")));
    }

    #[tokio::test]
    async fn starttls_required_but_not_offered() {
        let (port, _) = mock(GREETING, login_reply("OK")).await;
        let mut s = settings(port);
        s.security = Security::StartTls;
        let e = ImapBackend::new(s)
            .login(&creds("pw"), None)
            .await
            .unwrap_err();
        assert!(
            matches!(e, BackendError::Unavailable(ref m) if m.contains("STARTTLS")),
            "{e:?}"
        );
    }

    #[tokio::test]
    async fn starttls_with_injected_data_is_refused() {
        let (port, _) = mock(
            "* OK [CAPABILITY IMAP4rev1 STARTTLS] ready\r\n",
            Box::new(|tag, _| format!("{tag} OK Begin TLS\r\n* OK injected\r\n")),
        )
        .await;
        let mut s = settings(port);
        s.security = Security::StartTls;
        let e = ImapBackend::new(s)
            .login(&creds("pw"), None)
            .await
            .unwrap_err();
        // Either the injection is detected or the handshake fails on the plain text.
        assert!(
            matches!(e, BackendError::Protocol(_) | BackendError::Unavailable(_)),
            "{e:?}"
        );
    }
}
