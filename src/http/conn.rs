//! What one connection may cost: the per-address connection cap, and the clock that closes a
//! connection which is slow to send its request headers or idles between requests.
//!
//! hyper's own `header_read_timeout` is armed again as soon as a keep-alive connection goes idle,
//! so it cannot tell "slow headers" from "idle between requests"; the [`Clock`] here does: the
//! header deadline runs from a request's first byte, the idle deadline from the end of the last
//! response, and neither runs while a request is being handled (a Ping may wait an hour).

use std::collections::HashMap;
use std::io;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use hyper::body::{Frame, SizeHint};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::Notify;
use tokio::time::Instant;
use tracing::{info, warn};

// ---------------------------------------------------------------------------
// Connections per client address

/// Open connections per client address, capped.
pub struct PerIp {
    max: usize,
    open: Mutex<HashMap<IpAddr, Entry>>,
}

#[derive(Default)]
struct Entry {
    open: usize,
    /// Set when the address first went over the cap (logged then), cleared once it is back to
    /// half the cap, so a flood is logged once and not once per attempt.
    over: bool,
    refused: u64,
}

/// One counted connection; uncounted when dropped.
pub struct IpSlot {
    limits: Arc<PerIp>,
    ip: IpAddr,
}

impl PerIp {
    pub fn new(max: usize) -> Arc<PerIp> {
        Arc::new(PerIp {
            max,
            open: Mutex::new(HashMap::new()),
        })
    }

    /// Counts a connection from `ip`, or `None` when the address is at its cap.
    pub fn enter(self: &Arc<Self>, ip: IpAddr) -> Option<IpSlot> {
        let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        let e = open.entry(ip).or_default();
        if e.open >= self.max {
            e.refused += 1;
            if !e.over {
                e.over = true;
                warn!(
                    client_ip = %ip,
                    max_connections_per_ip = self.max,
                    "connections from one address at the cap; refusing more from it"
                );
            }
            return None;
        }
        e.open += 1;
        Some(IpSlot {
            limits: self.clone(),
            ip,
        })
    }

    /// Connections now open from `ip`.
    pub fn open(&self, ip: IpAddr) -> usize {
        let open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        open.get(&ip).map_or(0, |e| e.open)
    }
}

impl Drop for IpSlot {
    fn drop(&mut self) {
        let mut open = self
            .limits
            .open
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let Some(e) = open.get_mut(&self.ip) else {
            return;
        };
        e.open = e.open.saturating_sub(1);
        if e.over && e.open <= self.limits.max / 2 {
            info!(
                client_ip = %self.ip,
                refused = e.refused,
                "connections from one address back under the cap"
            );
            e.over = false;
            e.refused = 0;
        }
        if e.open == 0 && !e.over {
            open.remove(&self.ip);
        }
    }
}

// ---------------------------------------------------------------------------
// Header and idle deadlines

/// The state of one connection, as far as its deadlines go.
pub struct Clock {
    state: Mutex<ClockState>,
    changed: Notify,
}

struct ClockState {
    started: Instant,
    /// Requests whose headers are in and whose response is not yet sent.
    busy: usize,
    /// Requests whose headers were complete so far.
    served: u64,
    /// The end of the last response.
    idle_since: Instant,
    /// The first byte of a request whose headers are not complete yet.
    head_started: Option<Instant>,
}

/// Why a connection was closed by its clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expired {
    Headers,
    Idle,
}

impl Expired {
    pub fn as_str(self) -> &'static str {
        match self {
            Expired::Headers => "request headers not complete in time",
            Expired::Idle => "idle keep-alive connection",
        }
    }
}

impl Clock {
    /// The clock of a connection accepted at `started`.
    pub fn new(started: Instant) -> Arc<Clock> {
        Arc::new(Clock {
            state: Mutex::new(ClockState {
                started,
                busy: 0,
                served: 0,
                idle_since: started,
                head_started: None,
            }),
            changed: Notify::new(),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, ClockState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Bytes arrived: the first of a request starts its header deadline.
    fn bytes_in(&self) {
        let mut s = self.lock();
        if s.busy == 0 && s.head_started.is_none() {
            s.head_started = Some(Instant::now());
            drop(s);
            self.changed.notify_one();
        }
    }

    /// A request's headers are complete; its handler runs until the guard (kept by the
    /// response body) is dropped.
    pub fn request_started(self: &Arc<Self>) -> Busy {
        let mut s = self.lock();
        s.busy += 1;
        s.served += 1;
        s.head_started = None;
        drop(s);
        self.changed.notify_one();
        Busy(self.clone())
    }

    /// The deadline that applies now, if any.
    fn deadline(&self, header: Duration, idle: Duration) -> Option<(Instant, Expired)> {
        let s = self.lock();
        if s.busy > 0 {
            None
        } else if s.served == 0 {
            // The first request's headers are due from the connection's acceptance.
            Some((s.started + header, Expired::Headers))
        } else if let Some(first) = s.head_started {
            Some((first + header, Expired::Headers))
        } else {
            Some((s.idle_since + idle, Expired::Idle))
        }
    }

    /// Resolves when the connection has overrun its header or idle deadline.
    pub async fn expired(&self, header: Duration, idle: Duration) -> Expired {
        loop {
            let changed = self.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            match self.deadline(header, idle) {
                None => changed.await,
                Some((at, why)) => {
                    tokio::select! {
                        _ = changed => {}
                        _ = tokio::time::sleep_until(at) => {
                            // A change may have raced the timer.
                            if self.deadline(header, idle).is_some_and(|(d, _)| d <= Instant::now()) {
                                return why;
                            }
                        }
                    }
                }
            }
        }
    }
}

/// A request in progress (see [`Clock::request_started`]).
pub struct Busy(Arc<Clock>);

impl Drop for Busy {
    fn drop(&mut self) {
        let mut s = self.0.lock();
        s.busy = s.busy.saturating_sub(1);
        if s.busy == 0 {
            s.idle_since = Instant::now();
        }
        drop(s);
        self.0.changed.notify_one();
    }
}

/// A stream whose reads tell the [`Clock`] when a request begins.
pub struct Watched<T> {
    inner: T,
    clock: Arc<Clock>,
}

impl<T> Watched<T> {
    pub fn new(inner: T, clock: Arc<Clock>) -> Watched<T> {
        Watched { inner, clock }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Watched<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let r = Pin::new(&mut this.inner).poll_read(cx, buf);
        if matches!(r, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            this.clock.bytes_in();
        }
        r
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Watched<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

/// A response body that keeps its request counted as in progress until it is sent (dropped).
pub struct Tracked<B> {
    body: B,
    _busy: Busy,
}

impl<B> Tracked<B> {
    pub fn new(body: B, busy: Busy) -> Tracked<B> {
        Tracked { body, _busy: busy }
    }
}

impl<B: hyper::body::Body + Unpin> hyper::body::Body for Tracked<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.get_mut().body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_ip_cap_counts_and_releases() {
        let limits = PerIp::new(2);
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let other: IpAddr = "192.0.2.2".parse().unwrap();
        let a = limits.enter(ip).expect("first");
        let b = limits.enter(ip).expect("second");
        assert!(limits.enter(ip).is_none(), "third is over the cap");
        assert!(
            limits.enter(other).is_some(),
            "another address has its own cap"
        );
        drop(a);
        let c = limits.enter(ip).expect("a slot was freed");
        drop((b, c));
        assert_eq!(limits.open(ip), 0);
        assert!(
            limits.open.lock().unwrap().is_empty(),
            "nothing left behind"
        );
    }

    #[test]
    fn the_deadline_follows_the_connection() {
        let header = Duration::from_secs(3);
        let idle = Duration::from_secs(10);
        let t0 = Instant::now();
        let clock = Clock::new(t0);
        // A fresh connection: its first request's headers are due from its acceptance, however
        // it trickles them.
        assert_eq!(
            clock.deadline(header, idle),
            Some((t0 + header, Expired::Headers))
        );
        clock.bytes_in();
        assert_eq!(
            clock.deadline(header, idle),
            Some((t0 + header, Expired::Headers))
        );
        // No deadline while a request is handled, whatever arrives meanwhile (its body).
        let busy = clock.request_started();
        clock.bytes_in();
        assert_eq!(clock.deadline(header, idle), None);
        drop(busy);
        // Idle between requests.
        let (at, why) = clock.deadline(header, idle).unwrap();
        assert_eq!(why, Expired::Idle);
        assert!(at >= t0 + idle);
        // The next request's first byte starts its header deadline.
        clock.bytes_in();
        let (at, why) = clock.deadline(header, idle).unwrap();
        assert_eq!(why, Expired::Headers);
        assert!(at >= t0 + header && at < t0 + idle);
    }
}
