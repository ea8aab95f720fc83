//! The HTTP(S) front door: the only code that sees hyper types.
//!
//! `serve` accepts connections (TLS via rustls when configured), serves HTTP/1.1 with keep-alive
//! and hands every request to [`handler::handle`]; [`conn`] bounds what a connection may cost.

pub mod auth;
pub mod autodiscover;
pub mod conn;
mod doctor;
mod door;
pub mod events;
pub mod handler;
pub mod reload;
pub mod response;
pub mod tls;
pub mod trace;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::{watch, OwnedSemaphorePermit, Semaphore};
use tracing::{debug, info, warn};

use crate::backend::MailBackend;
use crate::state::StateStore;

pub use handler::Server;

/// Why the front door could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("TLS setup failed")]
    Tls(#[from] tls::TlsError),
    #[error("listening socket failed")]
    Listener(#[from] std::io::Error),
}

/// Runs the front door on `listener` until `shutdown` turns true.
///
/// Every connection is accepted at once and checked against the per-address cap (over it: closed
/// at once). It has `handshake_timeout` to finish its TLS handshake; only then does it take one of
/// the `max_connections` slots (waiting for one, when all are taken, as long as it could have
/// taken to send its first request). A request's headers are due `header_timeout` after its
/// first byte (after the connection was accepted, for the first request), and a keep-alive
/// connection idle for `idle_timeout` is closed. So silent or trickling connections cannot hold
/// the slots that phones need.
pub async fn serve<B: MailBackend, S: StateStore>(
    listener: TcpListener,
    server: Arc<Server<B, S>>,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(), ServeError> {
    let cfg = &server.gateway.config.server;
    let acceptor = match &cfg.tls {
        Some((cert, key)) => {
            // Kept by the server, so that a reload (SIGHUP) can replace the certificate.
            let certs = Arc::new(tls::CertStore::load(cert, key)?);
            server.live.set_certs(certs.clone());
            Some(tls::acceptor_with(certs)?)
        }
        None => None,
    };
    let limit = Arc::new(Semaphore::new(cfg.max_connections));
    let per_ip = conn::PerIp::new(cfg.max_connections_per_ip);
    let saturated = Arc::new(AtomicBool::new(false));
    {
        // Idle mail sessions are closed after their TTL; unused locks and expired login records
        // are dropped.
        let server = server.clone();
        let mut stop = shutdown.clone();
        tokio::spawn(async move {
            let every = (server.gateway.config.imap_session_idle / 2).clamp(
                std::time::Duration::from_secs(1),
                std::time::Duration::from_secs(20),
            );
            let mut tick = tokio::time::interval(every);
            loop {
                tokio::select! {
                    _ = tick.tick() => {
                        server.gateway.sessions.sweep();
                        server.gateway.sweep_locks();
                        server.auth.sweep(std::time::Instant::now());
                    }
                    _ = stop.changed() => break,
                }
            }
        });
    }
    info!(
        listen = %listener.local_addr()?,
        tls = acceptor.is_some(),
        "eas-gateway listening"
    );
    loop {
        let (stream, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    // Out of file descriptors, mostly: give the open connections a moment to end
                    // instead of spinning on accept.
                    warn!(error = %e, "accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = shutdown.changed() => break,
        };
        // A reverse proxy carries many clients on its connections: not capped per address.
        let ip_slot = if server.live.settings().trusted_proxies.contains(&peer.ip()) {
            None
        } else {
            match per_ip.enter(peer.ip()) {
                Some(slot) => Some(slot),
                None => continue,
            }
        };
        let _ = stream.set_nodelay(true);
        let accepted = tokio::time::Instant::now();
        let server = server.clone();
        let acceptor = acceptor.clone();
        let limit = limit.clone();
        let saturated = saturated.clone();
        tokio::spawn(async move {
            let _ip_slot = ip_slot;
            let cfg = &server.gateway.config.server;
            let handshake_by = accepted + cfg.handshake_timeout;
            // A client that completed its handshake may wait for a slot as long as it could have
            // taken to send its first request.
            let slot_by = handshake_by + cfg.header_timeout;
            match acceptor {
                Some(acceptor) => {
                    // The handshake and then the stream are boxed, and the handshake's result is
                    // gone (a `let`, not a `match` arm) before the next await: the task's state
                    // is sized for its largest step and kept for the connection's whole life.
                    let handshake = Box::pin(acceptor.accept(stream));
                    let tls = match tokio::time::timeout_at(handshake_by, handshake).await {
                        Ok(Ok(tls)) => Box::new(tls),
                        Ok(Err(e)) => {
                            debug!(peer = %peer, error = %e, "TLS handshake failed");
                            return;
                        }
                        Err(_) => {
                            debug!(peer = %peer, "TLS handshake not complete in time");
                            return;
                        }
                    };
                    let Some(permit) =
                        slot(&limit, cfg.max_connections, &saturated, slot_by, peer).await
                    else {
                        return;
                    };
                    serve_connection(tls, peer, server, accepted, permit).await
                }
                None => {
                    let Some(permit) =
                        slot(&limit, cfg.max_connections, &saturated, slot_by, peer).await
                    else {
                        return;
                    };
                    serve_connection(stream, peer, server, accepted, permit).await
                }
            }
        });
    }
    info!("front door stopped accepting connections");
    Ok(())
}

/// One of the `max_connections` slots, waiting for one until `by` when all are taken (the first
/// wait of a busy spell is logged).
async fn slot(
    limit: &Arc<Semaphore>,
    max: usize,
    saturated: &AtomicBool,
    by: tokio::time::Instant,
    peer: SocketAddr,
) -> Option<OwnedSemaphorePermit> {
    match limit.clone().try_acquire_owned() {
        Ok(p) => {
            // Logged as over once a tenth of the slots is free, not at every freed slot.
            if saturated.load(Ordering::Relaxed)
                && limit.available_permits() >= max / 10
                && saturated.swap(false, Ordering::Relaxed)
            {
                info!("connection slots free again");
            }
            Some(p)
        }
        Err(_) => {
            if !saturated.swap(true, Ordering::Relaxed) {
                warn!("all connection slots taken (server.max_connections); new connections wait");
            }
            match tokio::time::timeout_at(by, limit.clone().acquire_owned()).await {
                Ok(Ok(p)) => Some(p),
                _ => {
                    debug!(peer = %peer, "no free connection slot in time");
                    None
                }
            }
        }
    }
}

/// The connection's task: the hyper connection (which owns the stream) and its clock.
fn serve_connection<I, B, S>(
    io: I,
    peer: SocketAddr,
    server: Arc<Server<B, S>>,
    accepted: tokio::time::Instant,
    permit: OwnedSemaphorePermit,
) -> impl std::future::Future<Output = ()> + Send
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    B: MailBackend,
    S: StateStore,
{
    let header = server.gateway.config.server.header_timeout;
    let idle = server.gateway.config.server.idle_timeout;
    let clock = conn::Clock::new(accepted);
    let io = TokioIo::new(conn::Watched::new(io, clock.clone()));
    let requests = clock.clone();
    let service = service_fn(move |req| {
        // hyper calls this once a request's headers are complete.
        let busy = requests.request_started();
        let server = server.clone();
        async move {
            let resp = server.handle(peer, req).await;
            Ok::<_, std::convert::Infallible>(resp.map(|body| conn::Tracked::new(body, busy)))
        }
    });
    // Boxed and built before the task's first await, so the stream and hyper's connection
    // state exist once (an `async fn` keeps its arguments in its state, and a value moved
    // into `select!` is held twice).
    let connection = Box::pin(
        http1::Builder::new()
            .keep_alive(true)
            .serve_connection(io, service),
    );
    async move {
        let _permit = permit;
        tokio::select! {
            r = connection => {
                if let Err(e) = r {
                    debug!(peer = %peer, error = %e, "connection ended with an error");
                }
            }
            why = clock.expired(header, idle) => {
                debug!(peer = %peer, reason = why.as_str(), "connection closed");
            }
        }
    }
}
