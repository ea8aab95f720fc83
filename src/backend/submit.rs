//! Mail submission over SMTP (lettre's connection, driven step by step).
//!
//! One connection per message: connect (TLS from the first byte, STARTTLS or plain, per
//! [`SmtpSettings::security`]), AUTH with the user's own credentials when the server offers
//! AUTH, `MAIL FROM` the user's address (with `SIZE`, and `BODY=8BITMIME` / `SMTPUTF8` when
//! needed), one `RCPT TO` per recipient, [`Submission::before_data`] (the caller records that
//! the message may now reach the server, or stops the transaction), `DATA`, the message
//! written piece by piece (never copied into one buffer), QUIT.
//!
//! All or nothing: a refused recipient aborts the transaction before DATA, so the message goes
//! to everybody or to nobody. The outcome is classified for the caller:
//! - [`SubmitError::Unavailable`]: nothing was sent and trying later may work (connection
//!   refused or lost before the end of the message, timeouts, TLS failure, a 421 or other 4xx
//!   reply);
//! - [`SubmitError::Refused`]: the server refused (5xx), with the stage and reply for the log;
//! - [`SubmitError::Uncertain`]: the connection broke after the whole message was written but
//!   before the server answered; the message may have been accepted;
//! - [`SubmitError::AuthFailed`]: the server refused the credentials.
//!
//! Trust anchors for TLS are the same as for IMAP (`backend::tls`): the system bundle when
//! there is one, else the compiled-in Mozilla roots.

use std::sync::OnceLock;
use std::time::Duration;

use lettre::transport::smtp::authentication::{Credentials as SmtpCredentials, Mechanism};
use lettre::transport::smtp::client::{
    AsyncSmtpConnection, Certificate, CertificateStore, TlsParameters,
};
use lettre::transport::smtp::commands::{Data, Mail, Rcpt};
use lettre::transport::smtp::extension::{ClientId, Extension, MailBodyParameter, MailParameter};
use lettre::Address;

use super::{server_text, tls, Credentials, Security, SmtpSettings};

/// The SMTP step at which the server refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    Mail,
    Rcpt,
    Data,
    /// After the message (the final reply to DATA).
    Message,
}

/// Why a message was not (or maybe not) submitted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SubmitError {
    #[error("SMTP server unavailable: {0}")]
    Unavailable(String),
    #[error("SMTP server refused the login")]
    AuthFailed,
    #[error("SMTP server refused at {stage:?}: {code} {text}")]
    Refused {
        stage: Stage,
        code: u16,
        /// The server's reply text (trimmed, bounded), for the log and for classification.
        text: String,
        /// The refused recipient (at [`Stage::Rcpt`]).
        recipient: Option<String>,
    },
    #[error("SMTP connection lost after the message was written: {0}")]
    Uncertain(String),
    /// An address SMTP cannot carry, or a local setup problem.
    #[error("cannot submit: {0}")]
    Invalid(String),
}

/// What the server said on acceptance (the queue id, usually), for the log.
#[derive(Debug, Clone)]
pub struct Accepted {
    pub reply: String,
}

/// The envelope and the message.
pub struct Submission<'a, I, G> {
    pub from: &'a str,
    pub recipients: &'a [String],
    /// Size of the message in bytes (announced with SIZE, and used to scale the timeout).
    pub size: usize,
    /// Whether the message has bytes outside ASCII.
    pub eight_bit: bool,
    /// The message in pieces, without its final CRLF (the data is ended with `CRLF . CRLF`).
    pub message: I,
    /// Called once, when every recipient was accepted, right before `DATA`: the last moment at
    /// which the server cannot have the message. An error (its text is logged) ends the
    /// transaction without `DATA`, as [`SubmitError::Unavailable`].
    pub before_data: G,
}

/// Submits one message; see the module documentation.
pub async fn submit<'a, I, G, F>(
    settings: &SmtpSettings,
    creds: &Credentials,
    sub: Submission<'a, I, G>,
) -> Result<Accepted, SubmitError>
where
    I: Iterator<Item = &'a [u8]>,
    G: FnOnce() -> F,
    F: std::future::Future<Output = Result<(), String>>,
{
    let from: Address = sub
        .from
        .parse()
        .map_err(|_| SubmitError::Invalid(format!("sender {:?}", sub.from)))?;
    let mut to = Vec::with_capacity(sub.recipients.len());
    for r in sub.recipients {
        to.push(
            r.parse::<Address>()
                .map_err(|_| SubmitError::Invalid(format!("recipient {r:?}")))?,
        );
    }
    let timeout = settings.timeout;
    let mut conn = within(timeout, connect(settings))
        .await
        .inspect_err(|_| crate::metrics::smtp_submission(false))?;

    let result = transaction(&mut conn, settings, creds, &from, &to, sub).await;
    crate::metrics::smtp_submission(result.is_ok());
    match &result {
        Ok(_) => {
            let _ = tokio::time::timeout(Duration::from_secs(5), conn.quit()).await;
        }
        Err(_) => {
            let _ = tokio::time::timeout(Duration::from_secs(5), conn.abort()).await;
        }
    }
    result
}

async fn transaction<'a, I, G, F>(
    conn: &mut AsyncSmtpConnection,
    settings: &SmtpSettings,
    creds: &Credentials,
    from: &Address,
    to: &[Address],
    sub: Submission<'a, I, G>,
) -> Result<Accepted, SubmitError>
where
    I: Iterator<Item = &'a [u8]>,
    G: FnOnce() -> F,
    F: std::future::Future<Output = Result<(), String>>,
{
    let timeout = settings.timeout;
    let info = conn.server_info();
    if info
        .get_auth_mechanism(&[Mechanism::Plain, Mechanism::Login])
        .is_some()
    {
        let c = SmtpCredentials::new(creds.login.clone(), creds.password.expose().to_string());
        match tokio::time::timeout(
            timeout,
            conn.auth(&[Mechanism::Plain, Mechanism::Login], &c),
        )
        .await
        {
            Err(_) => return Err(SubmitError::Unavailable("AUTH timed out".into())),
            Ok(Ok(_)) => {}
            Ok(Err(e)) => {
                return Err(match e.status().map(u16::from) {
                    Some(535 | 534 | 530 | 538) => SubmitError::AuthFailed,
                    Some(c) if (400..500).contains(&c) => {
                        SubmitError::Unavailable(format!("AUTH: {}", text_of(&e)))
                    }
                    _ => SubmitError::Unavailable(format!("AUTH: {}", text_of(&e))),
                })
            }
        }
    }

    let info = conn.server_info();
    let mut params = vec![MailParameter::Size(sub.size)];
    if sub.eight_bit && info.supports_feature(Extension::EightBitMime) {
        params.push(MailParameter::Body(MailBodyParameter::EightBitMime));
    }
    let non_ascii = !sub.from.is_ascii() || sub.recipients.iter().any(|a| !a.is_ascii());
    if non_ascii {
        if !info.supports_feature(Extension::SmtpUtfEight) {
            return Err(SubmitError::Invalid(
                "non-ASCII address but the server has no SMTPUTF8".into(),
            ));
        }
        params.push(MailParameter::SmtpUtfEight);
    }
    step(
        timeout,
        conn.command(Mail::new(Some(from.clone()), params)),
        Stage::Mail,
        None,
    )
    .await?;
    for r in to {
        step(
            timeout,
            conn.command(Rcpt::new(r.clone(), vec![])),
            Stage::Rcpt,
            Some(r.to_string()),
        )
        .await?;
    }
    if let Err(why) = (sub.before_data)().await {
        return Err(SubmitError::Unavailable(format!("not sent: {why}")));
    }
    step(timeout, conn.command(Data), Stage::Data, None).await?;

    // The message: allow for a slow link (100 kB/s) on top of the command timeout.
    let budget = timeout + Duration::from_secs((sub.size / 100_000) as u64);
    match tokio::time::timeout(budget, conn.message_iter(sub.message)).await {
        Err(_) => Err(SubmitError::Uncertain(format!(
            "no answer to the message within {budget:?}"
        ))),
        Ok(Ok(reply)) => Ok(Accepted {
            reply: server_text(&reply.message().collect::<Vec<_>>().join(" ")),
        }),
        Ok(Err(e)) => match e.status().map(u16::from) {
            Some(code) if code >= 500 => Err(SubmitError::Refused {
                stage: Stage::Message,
                code,
                text: text_of(&e),
                recipient: None,
            }),
            Some(code) => Err(SubmitError::Unavailable(format!(
                "message: {code} {}",
                text_of(&e)
            ))),
            None => Err(SubmitError::Uncertain(text_of(&e))),
        },
    }
}

async fn step<F>(
    timeout: Duration,
    f: F,
    stage: Stage,
    recipient: Option<String>,
) -> Result<(), SubmitError>
where
    F: std::future::Future<
        Output = Result<
            lettre::transport::smtp::response::Response,
            lettre::transport::smtp::Error,
        >,
    >,
{
    match tokio::time::timeout(timeout, f).await {
        Err(_) => Err(SubmitError::Unavailable(format!("{stage:?} timed out"))),
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => match e.status().map(u16::from) {
            Some(code) if code >= 500 => Err(SubmitError::Refused {
                stage,
                code,
                text: text_of(&e),
                recipient,
            }),
            Some(code) => Err(SubmitError::Unavailable(format!(
                "{stage:?}: {code} {}",
                text_of(&e)
            ))),
            None => Err(SubmitError::Unavailable(format!(
                "{stage:?}: {}",
                text_of(&e)
            ))),
        },
    }
}

fn text_of(e: &lettre::transport::smtp::Error) -> String {
    server_text(&e.to_string())
}

async fn within<T>(
    timeout: Duration,
    f: impl std::future::Future<Output = Result<T, SubmitError>>,
) -> Result<T, SubmitError> {
    match tokio::time::timeout(timeout, f).await {
        Ok(r) => r,
        Err(_) => Err(SubmitError::Unavailable(format!(
            "SMTP connection not ready within {timeout:?}"
        ))),
    }
}

async fn connect(settings: &SmtpSettings) -> Result<AsyncSmtpConnection, SubmitError> {
    let hello = ClientId::default();
    let unavailable = |e: lettre::transport::smtp::Error| {
        SubmitError::Unavailable(format!(
            "{}:{}: {}",
            settings.host,
            settings.port,
            text_of(&e)
        ))
    };
    let implicit = match settings.security {
        Security::Tls => Some(tls_parameters(&settings.host)?),
        Security::None | Security::StartTls => None,
    };
    let mut conn = AsyncSmtpConnection::connect_tokio1(
        (settings.host.as_str(), settings.port),
        Some(settings.timeout),
        &hello,
        implicit,
        None,
    )
    .await
    .map_err(unavailable)?;
    if settings.security == Security::StartTls {
        if !conn.can_starttls() {
            return Err(SubmitError::Unavailable(
                "SMTP server does not offer STARTTLS".into(),
            ));
        }
        conn.starttls(tls_parameters(&settings.host)?, &hello)
            .await
            .map_err(unavailable)?;
    }
    Ok(conn)
}

/// The system CA bundle ([`tls::system_bundle`]) as lettre certificates (`None` when there
/// is none).
fn system_roots() -> &'static Option<Vec<Certificate>> {
    static ROOTS: OnceLock<Option<Vec<Certificate>>> = OnceLock::new();
    ROOTS.get_or_init(|| {
        let (_, certs) = tls::system_bundle()?;
        let certs: Vec<Certificate> = certs
            .iter()
            .filter_map(|der| Certificate::from_der(der.to_vec()).ok())
            .collect();
        (!certs.is_empty()).then_some(certs)
    })
}

fn tls_parameters(host: &str) -> Result<TlsParameters, SubmitError> {
    let mut b = TlsParameters::builder(host.to_string());
    if let Some(roots) = system_roots() {
        b = b.certificate_store(CertificateStore::None);
        for c in roots {
            b = b.add_root_certificate(c.clone());
        }
    }
    b.build_rustls()
        .map_err(|e| SubmitError::Unavailable(format!("TLS setup for {host}: {}", text_of(&e))))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::Secret;
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
    use tokio::net::TcpListener;

    /// A scripted SMTP server: answers each command by its first word; records the data.
    async fn fake(
        answers: &'static [(&'static str, &'static str)],
    ) -> (u16, tokio::task::JoinHandle<String>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let h = tokio::spawn(async move {
            let (s, _) = listener.accept().await.unwrap();
            let (r, mut w) = s.into_split();
            let mut r = BufReader::new(r);
            w.write_all(b"220 fake ESMTP\r\n").await.unwrap();
            let mut log = String::new();
            let mut in_data = false;
            let mut line = String::new();
            loop {
                line.clear();
                if r.read_line(&mut line).await.unwrap_or(0) == 0 {
                    return log;
                }
                log.push_str(&line);
                if in_data {
                    if line == ".\r\n" {
                        in_data = false;
                        let a = answers.iter().find(|(k, _)| *k == ".").map(|(_, v)| *v);
                        w.write_all(a.unwrap_or("250 2.0.0 Ok: queued as X\r\n").as_bytes())
                            .await
                            .unwrap();
                    }
                    continue;
                }
                let word = line
                    .split([' ', '\r', ':'])
                    .next()
                    .unwrap_or("")
                    .to_ascii_uppercase();
                let reply = answers
                    .iter()
                    .find(|(k, _)| line.to_ascii_uppercase().starts_with(k) && !k.is_empty())
                    .map(|(_, v)| v.to_string())
                    .unwrap_or_else(|| match word.as_str() {
                        "EHLO" => "250-fake\r\n250-AUTH PLAIN LOGIN\r\n250-8BITMIME\r\n250 SIZE 1000000\r\n".into(),
                        "AUTH" => "235 2.7.0 ok\r\n".into(),
                        "DATA" => "354 go\r\n".into(),
                        "QUIT" => "221 bye\r\n".into(),
                        _ => "250 ok\r\n".into(),
                    });
                if word == "DATA" && reply.starts_with("354") {
                    in_data = true;
                }
                w.write_all(reply.as_bytes()).await.unwrap();
                if word == "QUIT" {
                    return log;
                }
            }
        });
        (port, h)
    }

    fn settings(port: u16) -> SmtpSettings {
        SmtpSettings {
            host: "127.0.0.1".into(),
            port,
            security: Security::None,
            timeout: Duration::from_secs(5),
        }
    }

    fn creds() -> Credentials {
        Credentials {
            login: "alice@example.test".into(),
            password: Secret::new("pw"),
        }
    }

    type Gate = fn() -> std::future::Ready<Result<(), String>>;

    fn open_gate() -> std::future::Ready<Result<(), String>> {
        std::future::ready(Ok(()))
    }

    fn sub<'a>(
        rcpt: &'a [String],
        msg: &'a [&'a [u8]],
    ) -> Submission<'a, std::iter::Copied<std::slice::Iter<'a, &'a [u8]>>, Gate> {
        sub_with(rcpt, msg, open_gate)
    }

    fn sub_with<'a, G>(
        rcpt: &'a [String],
        msg: &'a [&'a [u8]],
        before_data: G,
    ) -> Submission<'a, std::iter::Copied<std::slice::Iter<'a, &'a [u8]>>, G> {
        Submission {
            from: "alice@example.test",
            recipients: rcpt,
            size: msg.iter().map(|m| m.len()).sum(),
            eight_bit: false,
            message: msg.iter().copied(),
            before_data,
        }
    }

    #[tokio::test]
    async fn before_data_runs_after_the_recipients_and_can_stop_the_data() {
        let rcpt = vec!["bob@example.test".to_string()];
        let msg: [&[u8]; 1] = [b"Subject: x\r\n\r\nhi\r\n"];
        let (port, h) = fake(&[]).await;
        let calls = std::sync::atomic::AtomicUsize::new(0);
        let e = submit(
            &settings(port),
            &creds(),
            sub_with(&rcpt, &msg, || {
                calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                std::future::ready(Err("the claim was taken over".to_string()))
            }),
        )
        .await
        .unwrap_err();
        assert!(
            matches!(&e, SubmitError::Unavailable(m) if m.contains("taken over")),
            "{e:?}"
        );
        assert_eq!(calls.load(std::sync::atomic::Ordering::SeqCst), 1);
        let log = h.await.unwrap();
        assert!(log.contains("RCPT TO:<bob@example.test>"), "{log}");
        assert!(!log.contains("DATA"), "{log}");

        // A refused recipient: not called at all.
        let (port, _h) = fake(&[("RCPT", "550 5.1.1 no such user\r\n")]).await;
        let e = submit(
            &settings(port),
            &creds(),
            sub_with(&rcpt, &msg, || {
                calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                std::future::ready(Ok(()))
            }),
        )
        .await
        .unwrap_err();
        assert!(matches!(e, SubmitError::Refused { .. }), "{e:?}");
        assert_eq!(calls.load(std::sync::atomic::Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn sends_in_pieces_with_dot_stuffing() {
        let (port, h) = fake(&[]).await;
        let rcpt = vec![
            "bob@example.test".to_string(),
            "carol@example.test".to_string(),
        ];
        let msg: [&[u8]; 3] = [b"Subject: x\r\n\r\n", b"a\r\n.hidden", b"\r\n.\r\nend"];
        let ok = submit(&settings(port), &creds(), sub(&rcpt, &msg))
            .await
            .unwrap();
        assert!(ok.reply.contains("queued"), "{ok:?}");
        let log = h.await.unwrap();
        assert!(log.contains("AUTH PLAIN"), "{log}");
        assert!(
            log.contains("MAIL FROM:<alice@example.test> SIZE=32"),
            "{log}"
        );
        assert!(log.contains("RCPT TO:<bob@example.test>\r\nRCPT TO:<carol@example.test>"));
        assert!(
            log.contains("\r\n\r\na\r\n..hidden\r\n..\r\nend\r\n.\r\nQUIT"),
            "{log}"
        );
    }

    #[tokio::test]
    async fn refused_recipient_sends_nothing() {
        let (port, h) = fake(&[("RCPT TO:<BAD", "550 5.1.1 no such user\r\n")]).await;
        let rcpt = vec![
            "good@example.test".to_string(),
            "bad@example.test".to_string(),
        ];
        let msg: [&[u8]; 1] = [b"Subject: x\r\n\r\nhi\r\n"];
        let e = submit(&settings(port), &creds(), sub(&rcpt, &msg))
            .await
            .unwrap_err();
        match e {
            SubmitError::Refused {
                stage,
                code,
                recipient,
                text,
            } => {
                assert_eq!((stage, code), (Stage::Rcpt, 550));
                assert_eq!(recipient.as_deref(), Some("bad@example.test"));
                assert!(text.contains("no such user"), "{text}");
            }
            other => panic!("{other:?}"),
        }
        let log = h.await.unwrap();
        assert!(!log.contains("DATA"), "{log}");
    }

    #[tokio::test]
    async fn classification() {
        let (port, _h) = fake(&[("AUTH", "535 5.7.8 bad credentials\r\n")]).await;
        let rcpt = vec!["b@example.test".to_string()];
        let msg: [&[u8]; 1] = [b"x\r\n"];
        assert_eq!(
            submit(&settings(port), &creds(), sub(&rcpt, &msg))
                .await
                .unwrap_err(),
            SubmitError::AuthFailed
        );

        let (port, _h) = fake(&[(".", "552 5.3.4 Message size exceeds fixed limit\r\n")]).await;
        let e = submit(&settings(port), &creds(), sub(&rcpt, &msg))
            .await
            .unwrap_err();
        assert!(
            matches!(
                e,
                SubmitError::Refused {
                    stage: Stage::Message,
                    code: 552,
                    ..
                }
            ),
            "{e:?}"
        );

        let (port, _h) = fake(&[("MAIL", "451 4.3.0 try later\r\n")]).await;
        let e = submit(&settings(port), &creds(), sub(&rcpt, &msg))
            .await
            .unwrap_err();
        assert!(matches!(e, SubmitError::Unavailable(_)), "{e:?}");

        let closed = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let e = submit(&settings(closed), &creds(), sub(&rcpt, &msg))
            .await
            .unwrap_err();
        assert!(matches!(e, SubmitError::Unavailable(_)), "{e:?}");
    }
}
