//! The command engine of one IMAP connection: tags, literals (synchronising, LITERAL+ and
//! LITERAL-, RFC 7888), pipelining, and whole responses (line plus literals) read under a
//! per-command timeout. A connection that broke, timed out, said BYE or was dropped in the
//! middle of a command is never used again.

use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::io::{
    AsyncBufRead, AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader,
};

use super::command::{classify, has_cap, Command, Completed, Phase, Segment};
use super::parse::{self, Response, Status, StatusResp};
use crate::backend::{server_text, BackendError};

/// Longest response line accepted, literals excluded.
const MAX_LINE: usize = 256 * 1024;
/// Largest single response accepted, literals included.
const MAX_RESPONSE: usize = 128 * 1024 * 1024;
/// LITERAL- allows non-synchronising literals up to this size (RFC 7888).
const LITERAL_MINUS_MAX: usize = 4096;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LiteralMode {
    Sync,
    Plus,
    Minus,
}

/// One IMAP connection: response reader, tag counter, per-command timeout.
#[derive(Debug)]
pub struct ImapConn<S> {
    io: BufReader<S>,
    pub(super) next_tag: u32,
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

    /// The buffered stream, for reading responses outside a command (IDLE).
    pub(super) fn io_mut(&mut self) -> &mut BufReader<S> {
        &mut self.io
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
        match read_raw(&mut self.io, out, MAX_LINE, MAX_RESPONSE).await {
            Ok(()) => Ok(()),
            Err(fault) => Err(self.lost(fault.to_string())),
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
                    if let Some(o) = out.get_mut(slot) {
                        *o = Some(Completed { untagged, done });
                    }
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

/// Why a response could not be read; the text is the error message.
#[derive(Debug)]
pub(super) enum ReadFault {
    Io(std::io::Error),
    Closed,
    LineTooLong,
    LiteralTooLarge(usize),
}

impl std::fmt::Display for ReadFault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ReadFault::Io(e) => write!(f, "IMAP connection lost: {e}"),
            ReadFault::Closed => f.write_str("IMAP server closed the connection"),
            ReadFault::LineTooLong => f.write_str("IMAP response line too long"),
            ReadFault::LiteralTooLarge(len) => {
                write!(f, "IMAP literal of {len} bytes is too large")
            }
        }
    }
}

/// Appends one complete response (line plus literals) from `io` to `out`: lines of at most
/// `max_line` bytes, at most `max_response` bytes in `out`.
pub(super) async fn read_raw<R: AsyncBufRead + Unpin>(
    io: &mut R,
    out: &mut Vec<u8>,
    max_line: usize,
    max_response: usize,
) -> Result<(), ReadFault> {
    loop {
        let line_start = out.len();
        loop {
            let buf = io.fill_buf().await.map_err(ReadFault::Io)?;
            if buf.is_empty() {
                return Err(ReadFault::Closed);
            }
            let (chunk, done) = match memchr::memchr(b'\n', buf) {
                Some(i) => (i + 1, true),
                None => (buf.len(), false),
            };
            out.extend_from_slice(buf.get(..chunk).unwrap_or_default());
            io.consume(chunk);
            if out.len() - line_start > max_line {
                return Err(ReadFault::LineTooLong);
            }
            if done {
                break;
            }
        }
        let line = out.get(line_start..).unwrap_or_default();
        let Some(len) = parse::trailing_literal_len(line) else {
            return Ok(());
        };
        if out.len().saturating_add(len) > max_response {
            return Err(ReadFault::LiteralTooLarge(len));
        }
        let start = out.len();
        out.resize(start + len, 0);
        let dest = out.get_mut(start..).unwrap_or_default();
        io.read_exact(dest).await.map_err(ReadFault::Io)?;
    }
}

#[cfg(test)]
mod tests {
    use super::super::mock::{creds, mock, settings, Handler, GREETING};
    use super::*;
    use crate::backend::imap::ImapBackend;
    use crate::backend::MailBackend;
    use crate::backend::MailSession;

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
}
