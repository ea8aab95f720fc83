//! `GET /Microsoft-Server-ActiveSync/doctor`: what `eas-gateway doctor` measures the path from
//! the phones through the reverse proxy with.
//!
//! - without a query: the client address the gateway sees (and whether it believed an
//!   `X-Forwarded-For`), the heartbeat bounds and the probe caps, at once;
//! - `?hold=N`: nothing for N seconds, then a short answer, as a Ping that waits N seconds (a
//!   proxy whose read timeout is shorter cuts it);
//! - `?stream=N`: the headers at once, then a line every second for N seconds, as a streamed
//!   answer (a buffering proxy delivers it only at the end; a compressing one adds
//!   `Content-Encoding`); with `&sized=1` it declares its length first, as a streamed
//!   attachment does (some proxies, Caddy without `flush_interval -1`, pass a stream of
//!   unknown length at once but hold one of known length).
//!
//! It answers without credentials only when `server.doctor` is on; otherwise the caller logs in
//! as for EAS (same throttle). Either way it does no work beyond a timer: no mail server, no
//! state store. A client address runs one probe at a time (429 otherwise), at most
//! [`MAX_AT_ONCE`] run at once (503), a hold lasts at most `push.max_heartbeat_secs` + 60 s and a
//! stream [`MAX_STREAM_SECS`]: with the endpoint open to all, a caller gains one long-lived,
//! nearly free connection per address, less than one logged-in phone holds.

use std::collections::HashSet;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use hyper::body::Incoming;
use hyper::header::HeaderValue;
use hyper::{Method, Request, Response};
use tokio::io::AsyncWriteExt;

use super::handler::{RequestLog, Server};
use super::response::{self, Body};
use crate::backend::MailBackend;
use crate::state::StateStore;

/// The path (lower case; matched case-insensitively).
pub const PATH: &str = "/microsoft-server-activesync/doctor";
/// Probes running at once, from all addresses.
pub const MAX_AT_ONCE: usize = 8;
/// The longest stream probe.
pub const MAX_STREAM_SECS: u64 = 60;
/// A hold may outlast the longest heartbeat by this much (a proxy timeout must, too).
pub const HOLD_MARGIN_SECS: u64 = 60;
/// The stream probe's first write: long enough that a proxy compressing only bodies above some
/// minimum length compresses it.
const FIRST_WRITE: usize = 1024;

/// The client addresses with a probe running.
#[derive(Debug, Default)]
pub struct Probes {
    running: Arc<Mutex<HashSet<IpAddr>>>,
}

/// A running probe; dropping it frees its address.
struct Slot {
    running: Arc<Mutex<HashSet<IpAddr>>>,
    ip: IpAddr,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.running
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&self.ip);
    }
}

impl Probes {
    /// A slot for `ip`, or the status to refuse with.
    fn enter(&self, ip: IpAddr) -> Result<Slot, u16> {
        let mut running = self.running.lock().unwrap_or_else(|e| e.into_inner());
        if running.contains(&ip) {
            return Err(429);
        }
        if running.len() >= MAX_AT_ONCE {
            return Err(503);
        }
        running.insert(ip);
        Ok(Slot {
            running: self.running.clone(),
            ip,
        })
    }
}

enum Probe {
    Info,
    Hold(u64),
    /// Seconds, and whether the length is declared.
    Stream(u64, bool),
}

fn probe_of(query: Option<&str>) -> Option<Probe> {
    let mut probe = Probe::Info;
    let mut sized = false;
    for (k, v) in form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
        let secs: u64 = v.parse().ok()?;
        probe = match k.as_ref() {
            "hold" => Probe::Hold(secs),
            "stream" => Probe::Stream(secs, false),
            "sized" => {
                sized = secs != 0;
                continue;
            }
            _ => return None,
        };
    }
    if let Probe::Stream(secs, _) = probe {
        probe = Probe::Stream(secs, sized);
    }
    Some(probe)
}

/// The stream probe's length: the first write, a line per second, and `end`.
fn stream_length(secs: u64) -> u64 {
    let lines: u64 = (1..=secs).map(|n| n.to_string().len() as u64 + 1).sum();
    FIRST_WRITE as u64 + lines + 4
}

fn text(status: u16, body: String) -> Response<Body> {
    let mut r = response::raw("text/plain; charset=utf-8", Bytes::from(body));
    *r.status_mut() = hyper::StatusCode::from_u16(status).unwrap_or(hyper::StatusCode::OK);
    r.headers_mut()
        .insert("Cache-Control", HeaderValue::from_static("no-store"));
    r
}

impl<B: MailBackend, S: StateStore> Server<B, S> {
    pub(super) async fn doctor(
        &self,
        req: Request<Incoming>,
        client_ip: IpAddr,
        peer_trusted: bool,
        log: &mut RequestLog,
    ) -> Response<Body> {
        tracing::Span::current().record("cmd", "doctor");
        if req.method() != Method::GET {
            log.reason = "method not allowed";
            let mut r = response::empty(405);
            r.headers_mut()
                .insert("Allow", HeaderValue::from_static("GET"));
            return r;
        }
        if !self.live.settings().doctor {
            if let Err(r) = self.authenticate(req.headers(), client_ip, log).await {
                return r;
            }
        }
        let Some(probe) = probe_of(req.uri().query()) else {
            log.reason = "bad doctor query";
            return response::empty(400);
        };
        let max_heartbeat = u64::from(self.gateway.config.push.max_heartbeat_secs);
        let max_hold = max_heartbeat + HOLD_MARGIN_SECS;
        let forwarded = if req.headers().contains_key("x-forwarded-for")
            || req.headers().contains_key("x-real-ip")
        {
            if peer_trusted {
                "believed"
            } else {
                "ignored: the connection does not come from server.trusted_proxies"
            }
        } else {
            "none"
        };
        let refused = |status: u16, log: &mut RequestLog| {
            log.reason = if status == 429 {
                "a doctor probe of this address is running"
            } else {
                "too many doctor probes"
            };
            response::retry_after(status, 10)
        };
        match probe {
            Probe::Info => text(
                200,
                format!(
                    "eas-gateway doctor\nclient: {client_ip}\nforwarded: {forwarded}\n\
                     max_heartbeat_secs: {max_heartbeat}\nmax_hold_secs: {max_hold}\n\
                     max_stream_secs: {MAX_STREAM_SECS}\n"
                ),
            ),
            Probe::Hold(secs) => {
                let slot = match self.probes.enter(client_ip) {
                    Ok(s) => s,
                    Err(status) => return refused(status, log),
                };
                let secs = secs.min(max_hold);
                tokio::time::sleep(Duration::from_secs(secs)).await;
                drop(slot);
                text(200, format!("held {secs}\n"))
            }
            Probe::Stream(secs, sized) => {
                let slot = match self.probes.enter(client_ip) {
                    Ok(s) => s,
                    Err(status) => return refused(status, log),
                };
                let secs = secs.clamp(1, MAX_STREAM_SECS);
                let (mut tx, rx) = tokio::io::duplex(4096);
                tokio::spawn(async move {
                    let _slot = slot;
                    let mut first = format!("stream {secs}\n0\n");
                    while first.len() < FIRST_WRITE - 1 {
                        first.push(' ');
                    }
                    first.push('\n');
                    if tx.write_all(first.as_bytes()).await.is_err() {
                        return;
                    }
                    for n in 1..=secs {
                        tokio::time::sleep(Duration::from_secs(1)).await;
                        if tx.write_all(format!("{n}\n").as_bytes()).await.is_err() {
                            return;
                        }
                    }
                    let _ = tx.write_all(b"end\n").await;
                });
                // The media type of EAS answers, so that a proxy treats it as it treats them.
                let length = sized.then(|| stream_length(secs));
                let mut r = response::stream(response::WBXML, length, rx);
                r.headers_mut()
                    .insert("Cache-Control", HeaderValue::from_static("no-store"));
                r
            }
        }
    }
}
