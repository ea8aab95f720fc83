//! IMAP implementation of [`MailBackend`]: connection, TLS/STARTTLS, LOGIN with
//! RFC 5530 error classification, capabilities and the folder hierarchy.
//!
//! The protocol layer ([`ImapConn`]) reads whole responses (lines plus literals),
//! parses them with [`parse`], and runs tagged commands under a
//! timeout. Commands are logged by name only; command text (which for LOGIN
//! holds the password) never reaches a log line or an error.

use std::collections::HashMap;
use std::io;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

use super::{
    server_text, tls, utf7, BackendError, Credentials, ImapSettings, MailBackend, MailFolder,
    MailSession, MailboxState, MessageMeta, Security, SpecialUse,
};
use crate::uidset::UidSet;
use bytes::Bytes;
use parse::{
    parse_list, parse_namespace, parse_status, Item, ListEntry, Namespaces, Response, Status,
    StatusEntry, StatusResp,
};

mod display;
pub mod idle;
mod mailbox;
pub mod parse;
mod parts;
mod search;

pub use display::FetchedMail;
pub use search::{MailQuery, MailSearch};

/// Longest response line accepted, literals excluded.
const MAX_LINE: usize = 256 * 1024;
/// Largest single response accepted, literals included.
const MAX_RESPONSE: usize = 128 * 1024 * 1024;
/// LITERAL- allows non-synchronising literals up to this size (RFC 7888).
const LITERAL_MINUS_MAX: usize = 4096;

// ---------------------------------------------------------------------------
// Transport

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

// ---------------------------------------------------------------------------
// Commands

#[derive(Debug, Clone)]
enum Segment {
    Text(Vec<u8>),
    /// A literal sent as the concatenation of its pieces (a message is not copied to be sent).
    Literal(Vec<Bytes>),
}

/// A command to send (without tag and CRLF). Built from raw text and
/// astrings; astrings are quoted or sent as literals as needed.
#[derive(Debug, Clone)]
pub struct Command {
    /// Command name for logs and errors; the arguments are never shown.
    name: &'static str,
    segments: Vec<Segment>,
}

impl Command {
    pub fn new(name: &'static str) -> Self {
        Command {
            name,
            segments: vec![Segment::Text(name.as_bytes().to_vec())],
        }
    }

    fn push_text(&mut self, text: &[u8]) {
        if let Some(Segment::Text(t)) = self.segments.last_mut() {
            t.extend_from_slice(text);
        } else {
            self.segments.push(Segment::Text(text.to_vec()));
        }
    }

    /// Append raw protocol text (a space is not added).
    pub fn raw(mut self, text: &str) -> Self {
        self.push_text(text.as_bytes());
        self
    }

    /// Append an astring (after a space, unless it opens a list): a quoted
    /// string when possible, else a literal.
    pub fn astring(mut self, value: &str) -> Self {
        let opens_list =
            matches!(self.segments.last(), Some(Segment::Text(t)) if t.ends_with(b"("));
        if !opens_list {
            self.push_text(b" ");
        }
        let quotable = value
            .bytes()
            .all(|b| (0x01..=0x7f).contains(&b) && b != b'\r' && b != b'\n');
        if quotable {
            let mut q = Vec::with_capacity(value.len() + 2);
            q.push(b'"');
            for b in value.bytes() {
                if b == b'"' || b == b'\\' {
                    q.push(b'\\');
                }
                q.push(b);
            }
            q.push(b'"');
            self.push_text(&q);
        } else {
            self.segments
                .push(Segment::Literal(vec![Bytes::copy_from_slice(
                    value.as_bytes(),
                )]));
        }
        self
    }

    /// Append a literal made of these pieces in order (after a space).
    pub fn literal_parts(mut self, parts: Vec<Bytes>) -> Self {
        self.push_text(b" ");
        self.segments.push(Segment::Literal(parts));
        self
    }

    fn has_literal(&self) -> bool {
        self.segments
            .iter()
            .any(|s| matches!(s, Segment::Literal(_)))
    }
}

/// The outcome of one tagged command: untagged responses received meanwhile and
/// the tagged completion.
#[derive(Debug, Clone)]
pub struct Completed {
    pub untagged: Vec<Response>,
    pub done: StatusResp,
}

impl Completed {
    /// Untagged data responses with this (upper-case) name.
    pub fn data<'a>(&'a self, wanted: &'a str) -> impl Iterator<Item = &'a [Item]> + 'a {
        self.untagged.iter().filter_map(move |r| match r {
            Response::Data { name, items, .. } if name == wanted => Some(items.as_slice()),
            _ => None,
        })
    }

    /// Like [`Completed::data`], for taking values (e.g. literals) out of the responses.
    pub fn data_mut<'a>(
        &'a mut self,
        wanted: &'a str,
    ) -> impl Iterator<Item = &'a mut [Item]> + 'a {
        self.untagged.iter_mut().filter_map(move |r| match r {
            Response::Data { name, items, .. } if name == wanted => Some(items.as_mut_slice()),
            _ => None,
        })
    }

    /// OK, or the completion classified as a failure of command `what`.
    pub fn ok(&self, what: &str) -> Result<(), BackendError> {
        if self.done.status == Status::Ok {
            Ok(())
        } else {
            Err(classify(&self.done, Phase::Command, what))
        }
    }

    /// Capabilities announced in the completion code or in an untagged CAPABILITY.
    pub fn capabilities(&self) -> Option<Vec<String>> {
        self.done.capabilities().or_else(|| {
            self.data("CAPABILITY").last().map(|items| {
                items
                    .iter()
                    .filter_map(Item::as_atom)
                    .map(str::to_ascii_uppercase)
                    .collect()
            })
        })
    }
}

/// What a failed command was doing, for classification.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Login,
    Command,
}

/// Map a NO/BAD/BYE completion to a [`BackendError`] (RFC 5530 response codes).
pub fn classify(resp: &StatusResp, phase: Phase, what: &str) -> BackendError {
    let text = server_text(&resp.text);
    let code = resp.code.as_ref().map(|c| c.name.as_str()).unwrap_or("");
    let detail = if code.is_empty() {
        format!("{what}: {text}")
    } else {
        format!("{what}: [{code}] {text}")
    };
    match resp.status {
        Status::Bye => BackendError::Unavailable(detail),
        Status::Bad => BackendError::Protocol(detail),
        Status::Ok | Status::PreAuth => {
            BackendError::Protocol(format!("{what}: unexpected status"))
        }
        Status::No => match code {
            "UNAVAILABLE" | "LIMIT" | "SERVERBUG" | "INUSE" => BackendError::Unavailable(detail),
            // Plaintext login refused: a server/gateway configuration problem,
            // not the user's password.
            "PRIVACYREQUIRED" => BackendError::Unavailable(format!(
                "{detail} (the server wants TLS: set security to starttls or tls)"
            )),
            _ if phase == Phase::Login => BackendError::AuthFailed,
            "NONEXISTENT" => BackendError::NotFound(detail),
            _ => BackendError::Rejected(detail),
        },
    }
}

fn has_cap(caps: &[String], cap: &str) -> bool {
    caps.iter().any(|c| c.eq_ignore_ascii_case(cap))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LiteralMode {
    Sync,
    Plus,
    Minus,
}

// ---------------------------------------------------------------------------
// Connection

/// One IMAP connection: response reader, tag counter, per-command timeout.
#[derive(Debug)]
pub struct ImapConn<S> {
    io: BufReader<S>,
    next_tag: u32,
    timeout: Duration,
    literal_mode: LiteralMode,
    /// Set after an I/O error, timeout or BYE: nothing more can be sent.
    broken: Option<String>,
    /// LOGOUT was sent: BYE is expected.
    logging_out: bool,
    /// A command is on the wire. Still set after a future was dropped mid-command, which
    /// leaves unread responses behind: such a connection must not be reused.
    in_flight: bool,
    /// The response being read; emptied when a command completes, so that idle
    /// connections hold no buffer.
    read_buf: Vec<u8>,
    /// Counted in the open IMAP connections while it lives.
    _open: crate::metrics::ImapOpen,
}

impl<S: AsyncRead + AsyncWrite + Unpin + Send> ImapConn<S> {
    pub fn new(stream: S, timeout: Duration) -> Self {
        ImapConn {
            io: BufReader::new(stream),
            next_tag: 1,
            timeout,
            literal_mode: LiteralMode::Sync,
            broken: None,
            logging_out: false,
            in_flight: false,
            read_buf: Vec::new(),
            _open: crate::metrics::ImapOpen::new(),
        }
    }

    /// Use LITERAL+ / LITERAL- if the server advertises them.
    pub fn set_capabilities(&mut self, caps: &[String]) {
        self.literal_mode = if has_cap(caps, "LITERAL+") {
            LiteralMode::Plus
        } else if has_cap(caps, "LITERAL-") {
            LiteralMode::Minus
        } else {
            LiteralMode::Sync
        };
    }

    /// False after an I/O error, timeout or BYE.
    pub fn is_usable(&self) -> bool {
        self.broken.is_none() && !self.logging_out && !self.in_flight
    }

    fn lost(&mut self, reason: String) -> BackendError {
        self.broken = Some(reason.clone());
        BackendError::Unavailable(reason)
    }

    /// Appends one complete response (line plus literals) to `out`.
    async fn read_raw(&mut self, out: &mut Vec<u8>) -> Result<(), BackendError> {
        loop {
            let line_start = out.len();
            loop {
                let buf = match self.io.fill_buf().await {
                    Ok(b) => b,
                    Err(e) => return Err(self.lost(format!("IMAP connection lost: {e}"))),
                };
                if buf.is_empty() {
                    return Err(self.lost("IMAP server closed the connection".to_string()));
                }
                let (chunk, done) = match memchr::memchr(b'\n', buf) {
                    Some(i) => (i + 1, true),
                    None => (buf.len(), false),
                };
                out.extend_from_slice(buf.get(..chunk).unwrap_or_default());
                self.io.consume(chunk);
                if out.len() - line_start > MAX_LINE {
                    return Err(self.lost("IMAP response line too long".to_string()));
                }
                if done {
                    break;
                }
            }
            let line = out.get(line_start..).unwrap_or_default();
            let Some(len) = parse::trailing_literal_len(line) else {
                return Ok(());
            };
            if out.len().saturating_add(len) > MAX_RESPONSE {
                return Err(self.lost(format!("IMAP literal of {len} bytes is too large")));
            }
            let start = out.len();
            out.resize(start + len, 0);
            let dest = out.get_mut(start..).unwrap_or_default();
            if let Err(e) = self.io.read_exact(dest).await {
                return Err(self.lost(format!("IMAP connection lost: {e}")));
            }
        }
    }

    /// Read and parse one response. Untagged lines that do not parse are
    /// skipped (logged without content); anything else malformed is an error.
    /// The bytes are read into a buffer the connection keeps until the command completes
    /// (see [`ImapConn::read_until_tagged`]), so the responses of a long FETCH share one.
    async fn read_response(&mut self) -> Result<Response, BackendError> {
        loop {
            let mut raw = std::mem::take(&mut self.read_buf);
            raw.clear();
            let read = self.read_raw(&mut raw).await;
            let parsed = read.map(|()| parse::parse_response(&raw));
            let untagged = raw.starts_with(b"* ");
            let len = raw.len();
            self.read_buf = raw;
            match parsed? {
                Ok(r) => return Ok(r),
                Err(e) if untagged => {
                    tracing::warn!(error = %e, len, "skipping unparseable untagged IMAP response");
                }
                Err(e) => {
                    return Err(self.lost(format!("unparseable IMAP response: {e}")));
                }
            }
        }
    }

    /// Read the server greeting.
    pub async fn greeting(&mut self) -> Result<StatusResp, BackendError> {
        let timeout = self.timeout;
        let r = match tokio::time::timeout(timeout, self.read_response()).await {
            Ok(r) => r?,
            Err(_) => return Err(self.lost(format!("no IMAP greeting within {timeout:?}"))),
        };
        match r {
            Response::Status(s) if matches!(s.status, Status::Ok | Status::PreAuth) => Ok(s),
            Response::Status(s) if s.status == Status::Bye => {
                let e = classify(&s, Phase::Login, "greeting");
                self.broken = Some(e.to_string());
                Err(e)
            }
            _ => Err(self.lost("IMAP server sent no valid greeting".to_string())),
        }
    }

    fn tag(&mut self) -> String {
        let t = format!("e{}", self.next_tag);
        self.next_tag = self.next_tag.wrapping_add(1);
        t
    }

    async fn write_all(&mut self, data: &[u8]) -> Result<(), BackendError> {
        if let Err(e) = self.io.get_mut().write_all(data).await {
            return Err(self.lost(format!("IMAP connection lost: {e}")));
        }
        Ok(())
    }

    async fn flush(&mut self) -> Result<(), BackendError> {
        if let Err(e) = self.io.get_mut().flush().await {
            return Err(self.lost(format!("IMAP connection lost: {e}")));
        }
        Ok(())
    }

    /// Read until the completion of `tag`, collecting untagged responses.
    /// Stops early at a continuation request if `stop_at_continue`.
    async fn read_until_tagged(
        &mut self,
        tag: &str,
        untagged: &mut Vec<Response>,
        stop_at_continue: bool,
    ) -> Result<Option<StatusResp>, BackendError> {
        Ok(self
            .read_until_completion(&[tag], untagged, stop_at_continue)
            .await?
            .map(|(_, resp)| resp))
    }

    /// Reads until the completion of one of `tags` (its index and the completion), collecting
    /// untagged responses; `None` at a continuation request when `stop_at_continue`.
    async fn read_until_completion(
        &mut self,
        tags: &[&str],
        untagged: &mut Vec<Response>,
        stop_at_continue: bool,
    ) -> Result<Option<(usize, StatusResp)>, BackendError> {
        loop {
            match self.read_response().await? {
                Response::Tagged { tag: t, resp } if tags.contains(&t.as_str()) => {
                    self.read_buf = Vec::new();
                    let i = tags.iter().position(|x| *x == t).unwrap_or(0);
                    return Ok(Some((i, resp)));
                }
                Response::Tagged { .. } => {
                    tracing::debug!("ignoring IMAP completion with an unknown tag");
                }
                Response::Continue(_) if stop_at_continue => return Ok(None),
                Response::Continue(_) => {
                    return Err(self.lost("unexpected IMAP continuation request".to_string()))
                }
                Response::Status(s) if s.status == Status::Bye => {
                    // The server is closing. Only LOGOUT still gets its completion.
                    let reason = format!("IMAP server said BYE: {}", server_text(&s.text));
                    self.broken = Some(reason.clone());
                    if !self.logging_out {
                        return Err(BackendError::Unavailable(reason));
                    }
                    untagged.push(Response::Status(s));
                }
                Response::Status(s) => {
                    if s.has_code("ALERT") {
                        tracing::warn!(alert = %server_text(&s.text), "IMAP server alert");
                    }
                    untagged.push(Response::Status(s));
                }
                other => untagged.push(other),
            }
        }
    }

    async fn run_inner(&mut self, cmd: &Command) -> Result<Completed, BackendError> {
        let tag = self.tag();
        let mut untagged = Vec::new();
        self.write_all(tag.as_bytes()).await?;
        self.write_all(b" ").await?;
        for seg in &cmd.segments {
            match seg {
                Segment::Text(t) => self.write_all(t).await?,
                Segment::Literal(parts) => {
                    let len: usize = parts.iter().map(Bytes::len).sum();
                    let non_sync = match self.literal_mode {
                        LiteralMode::Plus => true,
                        LiteralMode::Minus => len <= LITERAL_MINUS_MAX,
                        LiteralMode::Sync => false,
                    };
                    if non_sync {
                        self.write_all(format!("{{{len}+}}\r\n").as_bytes()).await?;
                    } else {
                        self.write_all(format!("{{{len}}}\r\n").as_bytes()).await?;
                        self.flush().await?;
                        if let Some(done) =
                            self.read_until_tagged(&tag, &mut untagged, true).await?
                        {
                            return Ok(Completed { untagged, done });
                        }
                    }
                    for part in parts {
                        self.write_all(part).await?;
                    }
                }
            }
        }
        self.write_all(b"\r\n").await?;
        self.flush().await?;
        let done = self
            .read_until_tagged(&tag, &mut untagged, false)
            .await?
            .ok_or_else(|| BackendError::Protocol("missing IMAP completion".to_string()))?;
        Ok(Completed { untagged, done })
    }

    /// Run one command; any completion status is returned as is.
    pub async fn run(&mut self, cmd: &Command) -> Result<Completed, BackendError> {
        if let Some(reason) = &self.broken {
            return Err(BackendError::Unavailable(reason.clone()));
        }
        tracing::trace!(command = cmd.name, "IMAP command");
        let started = Instant::now();
        let timeout = self.timeout;
        self.in_flight = true;
        let r = match tokio::time::timeout(timeout, self.run_inner(cmd)).await {
            Ok(r) => {
                self.in_flight = false;
                r
            }
            Err(_) => Err(self.lost(format!(
                "IMAP server did not answer {} within {timeout:?}",
                cmd.name
            ))),
        };
        crate::metrics::imap_command(cmd.name, started.elapsed());
        tracing::trace!(
            command = cmd.name,
            elapsed_ms = started.elapsed().as_millis() as u64,
            ok = r.is_ok(),
            "IMAP command done"
        );
        r
    }

    /// Run one command and require OK; NO/BAD are classified as `Phase::Command`.
    pub async fn run_ok(&mut self, cmd: &Command) -> Result<Completed, BackendError> {
        let c = self.run(cmd).await?;
        c.ok(cmd.name)?;
        Ok(c)
    }

    /// Send several commands at once and collect their completions, in the commands' order.
    /// Commands with literals are run one by one.
    ///
    /// A server may complete pipelined commands in any order (Dovecot answers a STATUS sent
    /// after a NOOP before the NOOP): each completion is matched by its tag, and the untagged
    /// responses go with the completion that arrives after them. Data of one command can so
    /// come with another's completion; callers look for it in all completions.
    pub async fn pipeline(&mut self, cmds: &[Command]) -> Result<Vec<Completed>, BackendError> {
        if let Some(reason) = &self.broken {
            return Err(BackendError::Unavailable(reason.clone()));
        }
        if cmds.iter().any(Command::has_literal) {
            let mut out = Vec::with_capacity(cmds.len());
            for c in cmds {
                out.push(self.run(c).await?);
            }
            return Ok(out);
        }
        let first = cmds.first().map_or("", |c| c.name);
        tracing::trace!(command = first, count = cmds.len(), "IMAP pipeline");
        let started = Instant::now();
        let timeout = self.timeout;
        self.in_flight = true;
        let fut = async {
            let mut tags = Vec::with_capacity(cmds.len());
            let mut wire = Vec::new();
            for c in cmds {
                let tag = self.tag();
                wire.extend_from_slice(tag.as_bytes());
                wire.push(b' ');
                for seg in &c.segments {
                    if let Segment::Text(t) = seg {
                        wire.extend_from_slice(t);
                    }
                }
                wire.extend_from_slice(b"\r\n");
                tags.push(tag);
            }
            self.write_all(&wire).await?;
            self.flush().await?;
            let mut out: Vec<Option<Completed>> = vec![None; cmds.len()];
            let mut waiting: Vec<&str> = tags.iter().map(String::as_str).collect();
            while !waiting.is_empty() {
                let mut untagged = Vec::new();
                let (i, done) = self
                    .read_until_completion(&waiting, &mut untagged, false)
                    .await?
                    .ok_or_else(|| BackendError::Protocol("missing IMAP completion".to_string()))?;
                let tag = waiting.remove(i);
                if let Some(slot) = tags.iter().position(|t| t == tag) {
                    if let Some(c) = cmds.get(slot) {
                        crate::metrics::imap_command(c.name, started.elapsed());
                    }
                    out[slot] = Some(Completed { untagged, done });
                }
            }
            Ok(out.into_iter().flatten().collect())
        };
        // The whole pipeline gets one timeout per command.
        let limit = timeout.saturating_mul(u32::try_from(cmds.len().max(1)).unwrap_or(u32::MAX));
        let r = match tokio::time::timeout(limit, fut).await {
            Ok(r) => {
                self.in_flight = false;
                r
            }
            Err(_) => Err(self.lost(format!("IMAP server did not answer within {limit:?}"))),
        };
        tracing::trace!(
            command = first,
            count = cmds.len(),
            elapsed_us = started.elapsed().as_micros() as u64,
            ok = r.is_ok(),
            "IMAP pipeline done"
        );
        r
    }

    /// The underlying stream, once no response bytes are left unread (after
    /// STARTTLS: bytes sent before the handshake would be an injection).
    pub fn into_stream(self) -> Result<S, BackendError> {
        if !self.io.buffer().is_empty() {
            return Err(BackendError::Protocol(
                "IMAP server sent data after the STARTTLS response".to_string(),
            ));
        }
        Ok(self.io.into_inner())
    }

    /// Send LOGOUT and close, ignoring errors; bounded by the timeout (at most 5 s).
    pub async fn logout(mut self) {
        if self.broken.is_none() {
            self.timeout = self.timeout.min(Duration::from_secs(5));
            self.logging_out = true;
            let _ = self.run(&Command::new("LOGOUT")).await;
        }
        let _ = tokio::time::timeout(Duration::from_secs(1), self.io.get_mut().shutdown()).await;
    }
}

// ---------------------------------------------------------------------------
// Connecting and logging in

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

async fn tls_within(
    host: &str,
    tcp: TcpStream,
    timeout: Duration,
) -> Result<TlsStream<TcpStream>, BackendError> {
    match tokio::time::timeout(timeout, tls::connect(host, tcp)).await {
        Ok(r) => r,
        Err(_) => Err(BackendError::Unavailable(format!(
            "TLS handshake with {host} timed out after {timeout:?}"
        ))),
    }
}

/// An open, not yet authenticated connection.
struct Opened {
    conn: ImapConn<NetStream>,
    /// Capabilities valid for the unauthenticated state (after STARTTLS, if any).
    caps: Vec<String>,
    preauth: bool,
}

async fn fetch_capabilities(conn: &mut ImapConn<NetStream>) -> Result<Vec<String>, BackendError> {
    let c = conn.run_ok(&Command::new("CAPABILITY")).await?;
    c.capabilities()
        .ok_or_else(|| BackendError::Protocol("CAPABILITY: no capability list".to_string()))
}

/// TCP, TLS or STARTTLS, greeting, pre-login capabilities.
async fn open(settings: &ImapSettings) -> Result<Opened, BackendError> {
    let timeout = settings.timeout;
    let tcp = tcp_connect(&settings.host, settings.port, timeout).await?;
    let stream = match settings.security {
        Security::Tls => NetStream::Tls(Box::new(tls_within(&settings.host, tcp, timeout).await?)),
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
        let tls = tls_within(&settings.host, tcp, timeout).await?;
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

// ---------------------------------------------------------------------------
// Backend and session

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
        let started = Instant::now();
        let opened = open(&self.settings).await?;
        let (conn, caps) = authenticate(opened, creds, client_ip).await?;
        tracing::debug!(
            user = %creds.login,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "IMAP login"
        );
        Ok(ImapSession {
            conn,
            caps,
            namespaces: None,
            xguid: None,
            selected: None,
        })
    }
}

/// An authenticated IMAP connection.
#[derive(Debug)]
pub struct ImapSession {
    conn: ImapConn<NetStream>,
    caps: Vec<String>,
    namespaces: Option<Namespaces>,
    /// Whether `STATUS (X-GUID)` works; `None` until tried.
    xguid: Option<bool>,
    /// The mailbox currently selected, if any.
    selected: Option<String>,
}

impl ImapSession {
    pub(crate) fn selected(&self) -> Option<&str> {
        self.selected.as_deref()
    }

    pub(crate) fn set_selected(&mut self, mailbox: Option<String>) {
        self.selected = mailbox;
    }

    /// Run a command; any completion status is returned as is.
    pub async fn run(&mut self, cmd: &Command) -> Result<Completed, BackendError> {
        self.conn.run(cmd).await
    }

    /// The connection's buffered stream, for IDLE (`imap_idle.rs`), which reads untagged
    /// responses as they arrive instead of per command. Callers leave it at a response boundary.
    pub(crate) fn raw_io(&mut self) -> &mut BufReader<NetStream> {
        &mut self.conn.io
    }

    /// True when the server advertised this capability after login.
    pub fn has_capability(&self, cap: &str) -> bool {
        has_cap(&self.caps, cap)
    }

    /// Run a command and require OK (for callers building on this session).
    pub async fn run_ok(&mut self, cmd: &Command) -> Result<Completed, BackendError> {
        self.conn.run_ok(cmd).await
    }

    /// Send several commands at once; completions in the commands' order (NO/BAD included),
    /// untagged data with whichever completion followed it (see [`ImapConn::pipeline`]).
    pub async fn pipeline(&mut self, cmds: &[Command]) -> Result<Vec<Completed>, BackendError> {
        self.conn.pipeline(cmds).await
    }

    /// The namespaces (RFC 2342), fetched once; empty classes without NAMESPACE.
    pub async fn namespaces(&mut self) -> Result<&Namespaces, BackendError> {
        if self.namespaces.is_none() {
            let ns = if self.has_capability("NAMESPACE") {
                let c = self.conn.run_ok(&Command::new("NAMESPACE")).await?;
                let parsed = c.data("NAMESPACE").next().and_then(parse_namespace);
                parsed.ok_or_else(|| {
                    BackendError::Protocol("NAMESPACE: malformed reply".to_string())
                })?
            } else {
                Namespaces::default()
            };
            self.namespaces = Some(ns);
        }
        Ok(self.namespaces.get_or_insert_with(Namespaces::default))
    }

    fn status_items(&self) -> Vec<&'static str> {
        let mut items = vec!["UIDVALIDITY"];
        if self.xguid != Some(false) {
            items.push("X-GUID");
        }
        if self.has_capability("OBJECTID") {
            items.push("MAILBOXID");
        }
        items
    }

    /// LIST "" "*" with STATUS data for each selectable mailbox, in the fewest
    /// round trips the server allows.
    async fn list_with_status(
        &mut self,
    ) -> Result<(Vec<ListEntry>, HashMap<String, StatusEntry>), BackendError> {
        let special = self.has_capability("SPECIAL-USE");
        if self.has_capability("LIST-STATUS") {
            // One round trip: LIST ... RETURN (SPECIAL-USE STATUS (...)).
            // A BAD most likely means X-GUID is unknown: retry without it once.
            for _ in 0..2 {
                let items = self.status_items();
                let ret = if special {
                    format!(" RETURN (SPECIAL-USE STATUS ({}))", items.join(" "))
                } else {
                    format!(" RETURN (STATUS ({}))", items.join(" "))
                };
                let cmd = Command::new("LIST").raw(" \"\" \"*\"").raw(&ret);
                let c = self.conn.run(&cmd).await?;
                match c.done.status {
                    Status::Ok => {
                        if items.contains(&"X-GUID") {
                            self.xguid = Some(true);
                        }
                        return Ok(collect_list(&c));
                    }
                    Status::Bad if items.contains(&"X-GUID") => self.xguid = Some(false),
                    Status::Bad => break,
                    _ => return Err(classify(&c.done, Phase::Command, "LIST")),
                }
            }
        }
        let mut cmd = Command::new("LIST").raw(" \"\" \"*\"");
        if special {
            cmd = cmd.raw(" RETURN (SPECIAL-USE)");
        }
        let listed = self.conn.run_ok(&cmd).await?;
        let (entries, _) = collect_list(&listed);
        let mut statuses = HashMap::new();
        let selectable: Vec<&ListEntry> = entries.iter().filter(|e| is_selectable(e)).collect();
        for _ in 0..2 {
            let items = self.status_items();
            let cmds: Vec<Command> = selectable
                .iter()
                .map(|e| {
                    Command::new("STATUS")
                        .astring(&e.name)
                        .raw(&format!(" ({})", items.join(" ")))
                })
                .collect();
            let results = self.conn.pipeline(&cmds).await?;
            let all_bad =
                !results.is_empty() && results.iter().all(|r| r.done.status == Status::Bad);
            if all_bad && items.contains(&"X-GUID") {
                self.xguid = Some(false);
                continue;
            }
            if items.contains(&"X-GUID") && results.iter().any(|r| r.done.status == Status::Ok) {
                self.xguid = Some(true);
            }
            for r in &results {
                for s in r.data("STATUS").filter_map(parse_status) {
                    statuses.insert(status_key(&s.mailbox), s);
                }
            }
            break;
        }
        Ok((entries, statuses))
    }
}

/// STATUS replies are matched to LIST entries by raw name; INBOX is case-insensitive.
fn status_key(name: &str) -> String {
    if name.eq_ignore_ascii_case("INBOX") {
        "INBOX".to_string()
    } else {
        name.to_string()
    }
}

fn collect_list(c: &Completed) -> (Vec<ListEntry>, HashMap<String, StatusEntry>) {
    let entries = c.data("LIST").filter_map(parse_list).collect();
    let statuses = c
        .data("STATUS")
        .filter_map(parse_status)
        .map(|s| (status_key(&s.mailbox), s))
        .collect();
    (entries, statuses)
}

fn is_selectable(e: &ListEntry) -> bool {
    !(e.has_attribute("\\Noselect") || e.has_attribute("\\NonExistent"))
}

fn special_use_from_attributes(e: &ListEntry) -> Option<SpecialUse> {
    e.attributes.iter().find_map(|a| {
        let a = a.to_ascii_lowercase();
        Some(match a.as_str() {
            "\\drafts" => SpecialUse::Drafts,
            "\\sent" => SpecialUse::Sent,
            "\\trash" => SpecialUse::Trash,
            "\\junk" => SpecialUse::Junk,
            "\\archive" => SpecialUse::Archive,
            "\\all" => SpecialUse::All,
            "\\flagged" => SpecialUse::Flagged,
            _ => return None,
        })
    })
}

/// Common names for roles, in order of preference (compared case-insensitively
/// with the decoded leaf of a top-level mailbox).
const NAME_HEURISTICS: &[(SpecialUse, &[&str])] = &[
    (SpecialUse::Drafts, &["Drafts", "Draft"]),
    (
        SpecialUse::Sent,
        &["Sent", "Sent Items", "Sent Messages", "Sent Mail"],
    ),
    (
        SpecialUse::Trash,
        &["Trash", "Deleted Items", "Deleted Messages"],
    ),
    (
        SpecialUse::Junk,
        &["Junk", "Spam", "Junk E-mail", "Junk Email"],
    ),
    (SpecialUse::Archive, &["Archive", "Archives"]),
];

/// Build folders from LIST/STATUS data. Mailboxes under other users' or
/// shared namespace prefixes are left out.
pub fn build_folders(
    entries: &[ListEntry],
    statuses: &HashMap<String, StatusEntry>,
    namespaces: &Namespaces,
) -> Vec<MailFolder> {
    let foreign: Vec<&str> = namespaces
        .other_users
        .iter()
        .chain(&namespaces.shared)
        .map(|n| n.prefix.as_str())
        .filter(|p| !p.is_empty())
        .collect();
    let in_foreign = |name: &str| {
        foreign.iter().any(|p| {
            name.starts_with(p)
                || p.strip_suffix(|c: char| !c.is_alphanumeric())
                    .is_some_and(|stem| name == stem)
        })
    };
    // Personal prefixes like "INBOX." put top-level folders under INBOX.
    let personal_parents: Vec<String> = namespaces
        .personal
        .iter()
        .filter_map(|n| {
            let d = n.delimiter?;
            n.prefix.strip_suffix(d).map(str::to_string)
        })
        .filter(|p| !p.is_empty())
        .collect();

    let mut folders: Vec<MailFolder> = entries
        .iter()
        .filter(|e| !in_foreign(&e.name))
        .map(|e| {
            let is_inbox = e.name.eq_ignore_ascii_case("INBOX");
            let (parent, leaf) = match e.delimiter.and_then(|d| e.name.rsplit_once(d)) {
                Some((p, l)) if !p.is_empty() => (Some(p.to_string()), l),
                Some((_, l)) => (None, l),
                None => (None, e.name.as_str()),
            };
            let selectable = is_selectable(e);
            let identity = if !selectable {
                format!("name:{}", e.name)
            } else {
                match statuses.get(&status_key(&e.name)) {
                    Some(s) => identity_from_status(&e.name, s),
                    None => format!("name:{}", e.name),
                }
            };
            MailFolder {
                name: e.name.clone(),
                display_name: utf7::decode_lossy(leaf),
                parent,
                delimiter: e.delimiter,
                special_use: if is_inbox {
                    Some(SpecialUse::Inbox)
                } else {
                    special_use_from_attributes(e)
                },
                selectable,
                identity,
            }
        })
        .collect();

    // Deterministic order (servers' LIST order varies): INBOX first, then by
    // raw name, which puts every parent before its children.
    folders.sort_by(|a, b| {
        let a_inbox = a.special_use == Some(SpecialUse::Inbox);
        let b_inbox = b.special_use == Some(SpecialUse::Inbox);
        b_inbox.cmp(&a_inbox).then_with(|| a.name.cmp(&b.name))
    });

    for (role, names) in NAME_HEURISTICS {
        if folders.iter().any(|f| f.special_use == Some(*role)) {
            continue;
        }
        let pick = names.iter().find_map(|n| {
            folders.iter().position(|f| {
                let top = match &f.parent {
                    None => true,
                    Some(p) => personal_parents.iter().any(|pp| pp == p),
                };
                top && f.selectable
                    && f.special_use.is_none()
                    && f.display_name.eq_ignore_ascii_case(n)
            })
        });
        if let Some(i) = pick {
            if let Some(f) = folders.get_mut(i) {
                f.special_use = Some(*role);
            }
        }
    }
    folders
}

fn identity_from_status(name: &str, s: &StatusEntry) -> String {
    let valid = |v: &String| !v.is_empty() && !v.eq_ignore_ascii_case("NIL");
    if let Some(g) = s.values.get("X-GUID").filter(|v| valid(v)) {
        format!("guid:{g}")
    } else if let Some(m) = s.values.get("MAILBOXID").filter(|v| valid(v)) {
        format!("mailboxid:{m}")
    } else if let Some(uv) = s.values.get("UIDVALIDITY") {
        format!("uv:{uv}:{name}")
    } else {
        format!("name:{name}")
    }
}

impl MailSession for ImapSession {
    fn capabilities(&self) -> &[String] {
        &self.caps
    }

    async fn list_folders(&mut self) -> Result<Vec<MailFolder>, BackendError> {
        let namespaces = self.namespaces().await?.clone();
        let (entries, statuses) = self.list_with_status().await?;
        Ok(build_folders(&entries, &statuses, &namespaces))
    }

    async fn logout(self) {
        self.conn.logout().await;
    }

    fn is_usable(&self) -> bool {
        self.conn.is_usable()
    }

    async fn noop(&mut self) -> Result<(), BackendError> {
        self.conn.run_ok(&Command::new("NOOP")).await.map(|_| ())
    }

    async fn select(&mut self, mailbox: &str) -> Result<MailboxState, BackendError> {
        self.select_mailbox(mailbox).await
    }

    async fn status(&mut self, mailbox: &str) -> Result<MailboxState, BackendError> {
        self.mailbox_status(mailbox).await
    }

    async fn search_since(
        &mut self,
        mailbox: &str,
        since: Option<i64>,
    ) -> Result<UidSet, BackendError> {
        ImapSession::search_since(self, mailbox, since).await
    }

    async fn existing(&mut self, mailbox: &str, uids: &UidSet) -> Result<UidSet, BackendError> {
        self.existing_uids(mailbox, uids).await
    }

    async fn fetch_meta(
        &mut self,
        mailbox: &str,
        uids: &UidSet,
        changed_since: Option<u64>,
    ) -> Result<Vec<MessageMeta>, BackendError> {
        self.fetch_meta_uids(mailbox, uids, changed_since).await
    }

    async fn fetch_messages(
        &mut self,
        mailbox: &str,
        uids: &[u32],
    ) -> Result<Vec<(MessageMeta, Bytes)>, BackendError> {
        self.fetch_full(mailbox, uids).await
    }

    async fn fetch_for_display(
        &mut self,
        mailbox: &str,
        uids: &[u32],
    ) -> Result<Vec<FetchedMail>, BackendError> {
        self.fetch_display(mailbox, uids).await
    }

    async fn store_flags(
        &mut self,
        mailbox: &str,
        uid: u32,
        add: &[String],
        remove: &[String],
    ) -> Result<bool, BackendError> {
        self.store_uid_flags(mailbox, uid, add, remove).await
    }

    async fn store_flags_unchanged_since(
        &mut self,
        mailbox: &str,
        uid: u32,
        add: &[String],
        remove: &[String],
        modseq: u64,
    ) -> Result<super::FlagStore, BackendError> {
        self.store_uid_flags_unchanged_since(mailbox, uid, add, remove, modseq)
            .await
    }

    async fn move_messages(
        &mut self,
        mailbox: &str,
        uids: &[u32],
        target: &str,
    ) -> Result<Vec<(u32, u32)>, BackendError> {
        self.move_uids(mailbox, uids, target).await
    }

    async fn expunge(&mut self, mailbox: &str, uids: &[u32]) -> Result<(), BackendError> {
        self.expunge_uids(mailbox, uids).await
    }

    async fn append_parts(
        &mut self,
        mailbox: &str,
        flags: &[String],
        parts: Vec<Bytes>,
    ) -> Result<Option<u32>, BackendError> {
        self.append_message(mailbox, flags, parts).await
    }

    async fn create_folder(&mut self, name: &str) -> Result<(), BackendError> {
        self.create_mailbox(name).await
    }

    async fn delete_folder(&mut self, name: &str) -> Result<(), BackendError> {
        self.delete_mailbox(name).await
    }

    async fn rename_folder(&mut self, from: &str, to: &str) -> Result<(), BackendError> {
        self.rename_mailbox(from, to).await
    }

    async fn mime_tree(
        &mut self,
        mailbox: &str,
        uid: u32,
    ) -> Result<Option<super::MimePart>, BackendError> {
        ImapSession::mime_tree(self, mailbox, uid).await
    }

    async fn binary_size(
        &mut self,
        mailbox: &str,
        uid: u32,
        section: &str,
    ) -> Result<Option<u64>, BackendError> {
        ImapSession::binary_size(self, mailbox, uid, section).await
    }

    async fn fetch_part_range(
        &mut self,
        mailbox: &str,
        uid: u32,
        section: &str,
        binary: bool,
        offset: u64,
        len: u64,
    ) -> Result<Option<Bytes>, BackendError> {
        ImapSession::fetch_part_range(self, mailbox, uid, section, binary, offset, len).await
    }

    async fn fetch_thread_headers(
        &mut self,
        mailbox: &str,
        uids: &UidSet,
    ) -> Result<Vec<(MessageMeta, Bytes)>, BackendError> {
        ImapSession::fetch_thread_headers(self, mailbox, uids).await
    }

    // Search and Find (imap_search.rs).

    async fn search_mail(
        &mut self,
        mailbox: &str,
        query: &MailQuery,
    ) -> Result<MailSearch, BackendError> {
        self.search_mailbox(mailbox, query).await
    }
}

// ---------------------------------------------------------------------------
// Probe

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
    use super::*;
    use crate::backend::imap::parse::{Code, Namespace};
    use crate::backend::Secret;
    use std::sync::Mutex;
    use tokio::io::AsyncBufReadExt;
    use tokio::net::TcpListener;

    type Handler = Box<dyn Fn(&str, &str) -> String + Send + Sync>;
    type Check = fn(&BackendError) -> bool;

    /// A scripted IMAP server for one connection. `handler(tag, command)` returns
    /// the full reply (untagged lines and the tagged completion). Literals are
    /// accepted in both forms and inlined into `command`. Returns the port and
    /// the transcript of received commands.
    async fn mock(greeting: &'static str, handler: Handler) -> (u16, Arc<Mutex<Vec<String>>>) {
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

    fn settings(port: u16) -> ImapSettings {
        ImapSettings {
            host: "127.0.0.1".into(),
            port,
            security: Security::None,
            timeout: Duration::from_secs(5),
        }
    }

    fn creds(pw: &str) -> Credentials {
        Credentials {
            login: "alice@example.test".into(),
            password: Secret::new(pw),
        }
    }

    const GREETING: &str = "* OK [CAPABILITY IMAP4rev1 ID LITERAL+ AUTH=PLAIN] ready\r\n";

    fn login_reply(no: &'static str) -> Handler {
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

    #[test]
    fn command_phase_classification() {
        let no = |code: Option<&str>| StatusResp {
            status: Status::No,
            code: code.map(|c| Code {
                name: c.into(),
                args: None,
            }),
            text: "t".into(),
        };
        assert!(matches!(
            classify(&no(Some("NONEXISTENT")), Phase::Command, "SELECT"),
            BackendError::NotFound(_)
        ));
        assert!(matches!(
            classify(&no(Some("ALREADYEXISTS")), Phase::Command, "CREATE"),
            BackendError::Rejected(_)
        ));
        assert!(matches!(
            classify(&no(None), Phase::Command, "CREATE"),
            BackendError::Rejected(_)
        ));
        assert!(matches!(
            classify(&no(Some("SERVERBUG")), Phase::Command, "FETCH"),
            BackendError::Unavailable(_)
        ));
        assert!(matches!(
            classify(&no(Some("NONEXISTENT")), Phase::Login, "LOGIN"),
            BackendError::AuthFailed
        ));
        let bye = StatusResp {
            status: Status::Bye,
            code: None,
            text: "shutting down".into(),
        };
        assert!(matches!(
            classify(&bye, Phase::Command, "NOOP"),
            BackendError::Unavailable(_)
        ));
    }

    fn entry(attrs: &[&str], name: &str) -> ListEntry {
        ListEntry {
            attributes: attrs.iter().map(|s| s.to_string()).collect(),
            delimiter: Some('/'),
            name: name.into(),
        }
    }

    fn status(name: &str, pairs: &[(&str, &str)]) -> (String, StatusEntry) {
        (
            status_key(name),
            StatusEntry {
                mailbox: name.into(),
                values: pairs
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            },
        )
    }

    #[test]
    fn folders_from_list_data() {
        let entries = vec![
            entry(&[], "INBOX"),
            entry(&["\\HasChildren"], "Entw&APw-rfe"),
            entry(&[], "Entw&APw-rfe/&ZeVnLIqe-"),
            entry(&["\\Drafts"], "Drafts"),
            entry(&["\\Noselect", "\\HasChildren"], "Projects"),
            entry(&[], "Projects/2024"),
            entry(&[], "Sent Items"),
            entry(&[], "Spam"),
            entry(&[], "Junk"),
            entry(&["\\All"], "All Mail"),
            entry(&["\\Noselect"], "shared"),
            entry(&[], "shared/team"),
            entry(&[], "Other/Trash"),
        ];
        let statuses: HashMap<_, _> = [
            status("inbox", &[("UIDVALIDITY", "1"), ("X-GUID", "aa")]),
            status("Entw&APw-rfe", &[("UIDVALIDITY", "2")]),
            status("Drafts", &[("UIDVALIDITY", "3"), ("MAILBOXID", "M3")]),
            status("Sent Items", &[("UIDVALIDITY", "4"), ("X-GUID", "NIL")]),
        ]
        .into_iter()
        .collect();
        let ns = Namespaces {
            personal: vec![Namespace {
                prefix: String::new(),
                delimiter: Some('/'),
            }],
            other_users: vec![],
            shared: vec![Namespace {
                prefix: "shared/".into(),
                delimiter: Some('/'),
            }],
        };
        let f = build_folders(&entries, &statuses, &ns);
        let by = |n: &str| {
            f.iter()
                .find(|x| x.name == n)
                .unwrap_or_else(|| panic!("{n}"))
        };
        assert!(f.iter().all(|x| !x.name.starts_with("shared")));
        assert_eq!(f.len(), 11);

        let inbox = by("INBOX");
        assert_eq!(inbox.special_use, Some(SpecialUse::Inbox));
        assert_eq!(inbox.identity, "guid:aa");
        assert_eq!(inbox.parent, None);

        let e = by("Entw&APw-rfe");
        assert_eq!(e.display_name, "Entwürfe");
        assert_eq!(e.identity, "uv:2:Entw&APw-rfe");
        let j = by("Entw&APw-rfe/&ZeVnLIqe-");
        assert_eq!(j.display_name, "日本語");
        assert_eq!(j.parent.as_deref(), Some("Entw&APw-rfe"));
        assert_eq!(j.identity, "name:Entw&APw-rfe/&ZeVnLIqe-");

        assert_eq!(by("Drafts").special_use, Some(SpecialUse::Drafts));
        assert_eq!(by("Drafts").identity, "mailboxid:M3");
        let p = by("Projects");
        assert!(!p.selectable);
        assert_eq!(p.identity, "name:Projects");
        assert_eq!(by("Projects/2024").parent.as_deref(), Some("Projects"));
        // heuristics fill the roles nobody flagged; "Junk" beats "Spam"
        assert_eq!(by("Sent Items").special_use, Some(SpecialUse::Sent));
        assert_eq!(by("Sent Items").identity, "uv:4:Sent Items");
        assert_eq!(by("Junk").special_use, Some(SpecialUse::Junk));
        assert_eq!(by("Spam").special_use, None);
        // only top-level names count
        assert_eq!(by("Other/Trash").special_use, None);
        assert_eq!(by("All Mail").special_use, Some(SpecialUse::All));
    }

    #[test]
    fn flags_win_over_names_and_personal_prefix_counts_as_top() {
        let entries = vec![
            ListEntry {
                attributes: vec![],
                delimiter: Some('.'),
                name: "INBOX".into(),
            },
            ListEntry {
                attributes: vec![],
                delimiter: Some('.'),
                name: "INBOX.Sent".into(),
            },
            ListEntry {
                attributes: vec!["\\Sent".into()],
                delimiter: Some('.'),
                name: "INBOX.Gesendet".into(),
            },
            ListEntry {
                attributes: vec![],
                delimiter: Some('.'),
                name: "INBOX.Trash".into(),
            },
        ];
        let ns = Namespaces {
            personal: vec![Namespace {
                prefix: "INBOX.".into(),
                delimiter: Some('.'),
            }],
            ..Namespaces::default()
        };
        let f = build_folders(&entries, &HashMap::new(), &ns);
        let names: Vec<&str> = f.iter().map(|x| x.name.as_str()).collect();
        assert_eq!(
            names,
            ["INBOX", "INBOX.Gesendet", "INBOX.Sent", "INBOX.Trash"]
        );
        assert_eq!(f[1].special_use, Some(SpecialUse::Sent));
        assert_eq!(f[2].special_use, None);
        assert_eq!(f[3].special_use, Some(SpecialUse::Trash));
        assert_eq!(f[3].parent.as_deref(), Some("INBOX"));
    }

    fn list_server(list_status: bool) -> Handler {
        Box::new(move |tag, cmd| {
            if cmd.starts_with("LOGIN") {
                let caps = if list_status {
                    "IMAP4rev1 NAMESPACE SPECIAL-USE LIST-STATUS"
                } else {
                    "IMAP4rev1 SPECIAL-USE"
                };
                format!("{tag} OK [CAPABILITY {caps}] ok\r\n")
            } else if cmd.starts_with("NAMESPACE") {
                format!("* NAMESPACE ((\"\" \"/\")) NIL ((\"Public/\" \"/\"))\r\n{tag} OK\r\n")
            } else if cmd.starts_with("LIST") && cmd.contains("X-GUID") {
                format!("{tag} BAD Invalid status item X-GUID\r\n")
            } else if cmd.starts_with("LIST") {
                let mut r = String::new();
                r.push_str("* LIST (\\Drafts) \"/\" Drafts\r\n");
                if cmd.contains("STATUS") {
                    r.push_str("* STATUS Drafts (UIDVALIDITY 11)\r\n");
                }
                r.push_str("* LIST () \"/\" {6}\r\nA \"b\"c\r\n");
                if cmd.contains("STATUS") {
                    r.push_str("* STATUS {6}\r\nA \"b\"c (UIDVALIDITY 12)\r\n");
                }
                r.push_str("* LIST (\\Noselect) \"/\" Public/x\r\n");
                r.push_str("* LIST () \"/\" INBOX\r\n");
                if cmd.contains("STATUS") {
                    r.push_str("* STATUS INBOX (UIDVALIDITY 10)\r\n");
                }
                r.push_str(&format!("{tag} OK List completed\r\n"));
                r
            } else if let Some(args) = cmd.strip_prefix("STATUS ") {
                if args.contains("X-GUID") {
                    return format!("{tag} BAD Invalid status item\r\n");
                }
                if args.starts_with("\"Drafts\"") {
                    format!("* STATUS Drafts (UIDVALIDITY 21)\r\n{tag} OK\r\n")
                } else if args.starts_with("\"INBOX\"") {
                    format!("* STATUS INBOX (UIDVALIDITY 20)\r\n{tag} OK\r\n")
                } else {
                    format!("{tag} NO [NONEXISTENT] gone\r\n")
                }
            } else {
                format!("* BYE\r\n{tag} OK\r\n")
            }
        })
    }

    #[tokio::test]
    async fn list_status_falls_back_without_xguid() {
        let (port, t) = mock(GREETING, list_server(true)).await;
        let mut s = ImapBackend::new(settings(port))
            .login(&creds("pw"), None)
            .await
            .unwrap();
        let f = s.list_folders().await.unwrap();
        let ids: Vec<_> = f
            .iter()
            .map(|x| (x.name.as_str(), x.identity.as_str()))
            .collect();
        assert_eq!(
            ids,
            [
                ("INBOX", "uv:10:INBOX"),
                ("A \"b\"c", "uv:12:A \"b\"c"),
                ("Drafts", "uv:11:Drafts"),
            ]
        );
        // the second listing goes straight to the variant that works
        s.list_folders().await.unwrap();
        s.logout().await;
        let lists: Vec<String> = t
            .lock()
            .unwrap()
            .iter()
            .filter(|c| c.contains(" LIST "))
            .cloned()
            .collect();
        assert_eq!(lists.len(), 3);
        assert!(lists[0].ends_with("RETURN (SPECIAL-USE STATUS (UIDVALIDITY X-GUID))"));
        assert!(lists[1].ends_with("RETURN (SPECIAL-USE STATUS (UIDVALIDITY))"));
        assert!(lists[2].ends_with("RETURN (SPECIAL-USE STATUS (UIDVALIDITY))"));
    }

    #[tokio::test]
    async fn pipelined_completions_out_of_order_are_matched_by_tag() {
        // Dovecot completes a STATUS sent after a NOOP before the NOOP.
        let handler: Handler = Box::new(|tag, cmd| {
            if cmd.starts_with("LOGIN") {
                format!("{tag} OK [CAPABILITY IMAP4rev1] ok\r\n")
            } else if cmd.starts_with("NOOP") {
                format!("DEFER:* 3 EXISTS\r\n{tag} OK NOOP completed\r\n")
            } else if cmd.starts_with("STATUS") {
                format!("* STATUS INBOX (MESSAGES 3)\r\n{tag} OK Status completed\r\n")
            } else {
                format!("* BYE bye\r\n{tag} OK done\r\n")
            }
        });
        let (port, _t) = mock(GREETING, handler).await;
        let mut s = ImapBackend::new(settings(port))
            .login(&creds("pw"), None)
            .await
            .unwrap();
        let cmds = [
            Command::new("NOOP"),
            Command::new("STATUS").raw(" INBOX (MESSAGES)"),
        ];
        let done = s.pipeline(&cmds).await.unwrap();
        assert_eq!(done.len(), 2);
        assert_eq!(done[0].done.text.trim(), "NOOP completed");
        assert_eq!(done[1].done.text.trim(), "Status completed");
        assert_eq!(done[1].data("STATUS").count(), 1);
        assert!(done[0]
            .untagged
            .iter()
            .any(|r| matches!(r, Response::Data { name, .. } if name == "EXISTS")));
        s.logout().await;
    }

    #[tokio::test]
    async fn status_per_folder_without_list_status() {
        let (port, t) = mock(GREETING, list_server(false)).await;
        let mut s = ImapBackend::new(settings(port))
            .login(&creds("pw"), None)
            .await
            .unwrap();
        let f = s.list_folders().await.unwrap();
        s.logout().await;
        let ids: Vec<_> = f
            .iter()
            .map(|x| (x.name.as_str(), x.identity.as_str()))
            .collect();
        // no NAMESPACE capability: nothing is filtered
        assert_eq!(
            ids,
            [
                ("INBOX", "uv:20:INBOX"),
                ("A \"b\"c", "name:A \"b\"c"),
                ("Drafts", "uv:21:Drafts"),
                ("Public/x", "name:Public/x"),
            ]
        );
        let t = t.lock().unwrap().clone();
        assert!(t
            .iter()
            .any(|c| c.ends_with("LIST \"\" \"*\" RETURN (SPECIAL-USE)")));
        let statuses = t.iter().filter(|c| c.contains(" STATUS ")).count();
        // three selectable folders, tried with and without X-GUID
        assert_eq!(statuses, 6);
    }
}
