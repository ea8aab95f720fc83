//! Opening an IMAP connection: TCP, then TLS from the first byte or STARTTLS (RFC 9051
//! 6.2.1), the greeting and the capabilities before login. Capabilities sent before a STARTTLS
//! handshake are not trusted, and bytes sent ahead of the handshake are refused.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

use super::command::{has_cap, Command};
use super::engine::ImapConn;
use super::parse::Status;
use crate::backend::{tls, BackendError, ImapSettings, Security};

/// The byte stream under an IMAP connection: plain TCP or TLS.
#[derive(Debug)]
pub enum NetStream {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

impl AsyncRead for NetStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            NetStream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            NetStream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for NetStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            NetStream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            NetStream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            NetStream::Plain(s) => Pin::new(s).poll_flush(cx),
            NetStream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            NetStream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            NetStream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

pub(crate) async fn tcp_connect(
    host: &str,
    port: u16,
    timeout: Duration,
) -> Result<TcpStream, BackendError> {
    match tokio::time::timeout(timeout, TcpStream::connect((host, port))).await {
        Ok(Ok(s)) => {
            let _ = s.set_nodelay(true);
            Ok(s)
        }
        Ok(Err(e)) => Err(BackendError::Unavailable(format!(
            "cannot connect to {host}:{port}: {e}"
        ))),
        Err(_) => Err(BackendError::Unavailable(format!(
            "connecting to {host}:{port} timed out after {timeout:?}"
        ))),
    }
}

/// An open, not yet authenticated connection.
pub(super) struct Opened {
    pub(super) conn: ImapConn<NetStream>,
    /// Capabilities valid for the unauthenticated state (after STARTTLS, if any).
    pub(super) caps: Vec<String>,
    pub(super) preauth: bool,
}

pub(super) async fn fetch_capabilities(
    conn: &mut ImapConn<NetStream>,
) -> Result<Vec<String>, BackendError> {
    let c = conn.run_ok(&Command::new("CAPABILITY")).await?;
    c.capabilities()
        .ok_or_else(|| BackendError::Protocol("CAPABILITY: no capability list".to_string()))
}

/// TCP, TLS or STARTTLS, greeting, pre-login capabilities.
pub(super) async fn open(settings: &ImapSettings) -> Result<Opened, BackendError> {
    let timeout = settings.timeout;
    let tcp = tcp_connect(&settings.host, settings.port, timeout).await?;
    let stream = match settings.security {
        Security::Tls => NetStream::Tls(Box::new(
            tls::connect_within(&settings.host, tcp, timeout).await?,
        )),
        Security::None | Security::StartTls => NetStream::Plain(tcp),
    };
    let mut conn = ImapConn::new(stream, timeout);
    let greeting = conn.greeting().await?;
    let preauth = greeting.status == Status::PreAuth;
    let mut caps = greeting.capabilities();

    if settings.security == Security::StartTls {
        if preauth {
            return Err(BackendError::Protocol(
                "IMAP server sent PREAUTH; STARTTLS is impossible".to_string(),
            ));
        }
        let pre = match caps.take() {
            Some(c) => c,
            None => fetch_capabilities(&mut conn).await?,
        };
        if !has_cap(&pre, "STARTTLS") {
            return Err(BackendError::Unavailable(
                "IMAP server does not offer STARTTLS".to_string(),
            ));
        }
        conn.run_ok(&Command::new("STARTTLS")).await?;
        let next_tag = conn.next_tag;
        let NetStream::Plain(tcp) = conn.into_stream()? else {
            return Err(BackendError::Protocol(
                "STARTTLS on a TLS connection".to_string(),
            ));
        };
        let tls = tls::connect_within(&settings.host, tcp, timeout).await?;
        conn = ImapConn::new(NetStream::Tls(Box::new(tls)), timeout);
        conn.next_tag = next_tag;
        // Capabilities from before the handshake must not be trusted.
    }

    let caps = match caps {
        Some(c) => c,
        None => fetch_capabilities(&mut conn).await?,
    };
    conn.set_capabilities(&caps);
    Ok(Opened {
        conn,
        caps,
        preauth,
    })
}
