//! The HTTP(S) front door: the only code that sees hyper types.
//!
//! `serve` accepts connections (TLS via rustls when configured), serves HTTP/1.1 with keep-alive
//! and hands every request to [`handler::handle`].

pub mod auth;
pub mod autodiscover;
pub mod handler;
pub mod response;
pub mod tls;

use std::net::SocketAddr;
use std::sync::Arc;

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};
use tracing::{debug, info, warn};

use crate::backend::MailBackend;
use crate::state::StateStore;

pub use handler::Server;

/// Runs the front door on `listener` until `shutdown` turns true.
pub async fn serve<B: MailBackend, S: StateStore>(
    listener: TcpListener,
    server: Arc<Server<B, S>>,
    mut shutdown: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let cfg = &server.gateway.config.server;
    let acceptor = match &cfg.tls {
        Some((cert, key)) => Some(tls::acceptor(cert, key)?),
        None => None,
    };
    let limit = Arc::new(Semaphore::new(cfg.max_connections));
    {
        // Idle mail sessions are closed after their TTL; unused locks and expired login records
        // are dropped.
        let server = server.clone();
        let mut stop = shutdown.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(std::time::Duration::from_secs(20));
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
        let permit = tokio::select! {
            p = limit.clone().acquire_owned() => p?,
            _ = shutdown.changed() => break,
        };
        let (stream, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    warn!(error = %e, "accept failed");
                    continue;
                }
            },
            _ = shutdown.changed() => break,
        };
        let _ = stream.set_nodelay(true);
        let server = server.clone();
        let acceptor = acceptor.clone();
        tokio::spawn(async move {
            let _permit = permit;
            match acceptor {
                Some(acceptor) => match acceptor.accept(stream).await {
                    Ok(tls) => serve_connection(TokioIo::new(tls), peer, server).await,
                    Err(e) => debug!(peer = %peer, error = %e, "TLS handshake failed"),
                },
                None => serve_connection(TokioIo::new(stream), peer, server).await,
            }
        });
    }
    info!("front door stopped accepting connections");
    Ok(())
}

async fn serve_connection<I, B, S>(io: I, peer: SocketAddr, server: Arc<Server<B, S>>)
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
    B: MailBackend,
    S: StateStore,
{
    let service = service_fn(move |req| {
        let server = server.clone();
        async move { Ok::<_, std::convert::Infallible>(server.handle(peer, req).await) }
    });
    if let Err(e) = http1::Builder::new()
        .keep_alive(true)
        .serve_connection(io, service)
        .await
    {
        debug!(peer = %peer, error = %e, "connection ended with an error");
    }
}
