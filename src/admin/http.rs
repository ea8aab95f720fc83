//! The admin listener's HTTP side: accept (TLS when configured), route, check the token.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{HeaderValue, AUTHORIZATION, CACHE_CONTROL, CONTENT_TYPE, WWW_AUTHENTICATE};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};
use tracing::{debug, info, warn};

use super::Token;
use crate::backend::MailBackend;
use crate::http::Server;
use crate::state::StateStore;

/// Connections the admin listener serves at once (Prometheus, probes and an admin or two).
const MAX_CONNECTIONS: usize = 32;
/// A connection must finish its TLS handshake and send its request headers within this.
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// A whole admin connection (keep-alive included) is closed after this.
const CONNECTION_LIFETIME: Duration = Duration::from_secs(300);

const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Serves the admin paths on `listener` until `shutdown` turns true. The token is read from
/// `[admin] token_file` before the first connection is accepted.
pub async fn serve<B: MailBackend, S: StateStore>(
    listener: TcpListener,
    server: Arc<Server<B, S>>,
    mut shutdown: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let Some(cfg) = server.gateway.config.admin.clone() else {
        anyhow::bail!("the admin listener is not configured ([admin] listen)");
    };
    let token = Arc::new(Token::read(&cfg.token_file)?);
    let acceptor = match &cfg.tls {
        Some((cert, key)) => Some(crate::http::tls::acceptor(cert, key)?),
        None => None,
    };
    let limit = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    info!(
        listen = %listener.local_addr()?,
        tls = acceptor.is_some(),
        "admin listener listening"
    );
    loop {
        let (stream, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    warn!(error = %e, "admin accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = shutdown.changed() => break,
        };
        let Ok(permit) = limit.clone().try_acquire_owned() else {
            debug!(peer = %peer, "admin listener busy: connection closed");
            continue;
        };
        let server = server.clone();
        let token = token.clone();
        let acceptor = acceptor.clone();
        tokio::spawn(async move {
            let _permit = permit;
            match acceptor {
                Some(acceptor) => {
                    match tokio::time::timeout(HEADER_TIMEOUT, acceptor.accept(stream)).await {
                        Ok(Ok(tls)) => connection(tls, peer, server, token).await,
                        Ok(Err(e)) => {
                            debug!(peer = %peer, error = %e, "admin TLS handshake failed")
                        }
                        Err(_) => debug!(peer = %peer, "admin TLS handshake not complete in time"),
                    }
                }
                None => connection(stream, peer, server, token).await,
            }
        });
    }
    info!("admin listener stopped accepting connections");
    Ok(())
}

async fn connection<I, B, S>(io: I, peer: SocketAddr, server: Arc<Server<B, S>>, token: Arc<Token>)
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    B: MailBackend,
    S: StateStore,
{
    let service = service_fn(move |req| {
        let server = server.clone();
        let token = token.clone();
        async move { Ok::<_, std::convert::Infallible>(handle(&server, &token, req).await) }
    });
    let conn = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT)
        .keep_alive(true)
        .serve_connection(TokioIo::new(io), service);
    match tokio::time::timeout(CONNECTION_LIFETIME, conn).await {
        Ok(Err(e)) => debug!(peer = %peer, error = %e, "admin connection ended with an error"),
        Ok(Ok(())) => {}
        Err(_) => debug!(peer = %peer, "admin connection closed after its lifetime"),
    }
}

/// One admin request.
pub async fn handle<B: MailBackend, S: StateStore>(
    server: &Server<B, S>,
    token: &Token,
    req: Request<Incoming>,
) -> Response<Full<Bytes>> {
    let path = req.uri().path().to_string();
    if req.method() != Method::GET && req.method() != Method::HEAD {
        let mut r = text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n");
        r.headers_mut()
            .insert("Allow", HeaderValue::from_static("GET, HEAD"));
        return r;
    }
    match path.as_str() {
        "/healthz" => return text(StatusCode::OK, "ok\n"),
        "/readyz" => {
            return match super::readiness(&server.gateway).await {
                Ok(()) => text(StatusCode::OK, "ready\n"),
                Err(reason) => text(StatusCode::SERVICE_UNAVAILABLE, &format!("{reason}\n")),
            }
        }
        _ => {}
    }
    let header = req
        .headers()
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    if !token.accepts(header) {
        let mut r = text(StatusCode::UNAUTHORIZED, "unauthorized\n");
        r.headers_mut().insert(
            WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer realm=\"eas-gateway admin\""),
        );
        return r;
    }
    match path.as_str() {
        "/metrics" => {
            let body = super::metrics_text(&server.gateway).await;
            let mut r = Response::new(Full::new(Bytes::from(body)));
            r.headers_mut()
                .insert(CONTENT_TYPE, HeaderValue::from_static(OPENMETRICS));
            r
        }
        "/" | "/devices" => match super::pages::devices_page(&server.gateway.store).await {
            Ok(html) => {
                let mut r = Response::new(Full::new(Bytes::from(html)));
                let h = r.headers_mut();
                h.insert(
                    CONTENT_TYPE,
                    HeaderValue::from_static("text/html; charset=utf-8"),
                );
                h.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
                // Nothing but the page itself and its inline style.
                h.insert(
                    "Content-Security-Policy",
                    HeaderValue::from_static(
                        "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'",
                    ),
                );
                h.insert(
                    "X-Content-Type-Options",
                    HeaderValue::from_static("nosniff"),
                );
                r
            }
            Err(e) => {
                warn!(error = %e, "admin devices page failed");
                text(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "the device list is not available\n",
                )
            }
        },
        _ => text(StatusCode::NOT_FOUND, "not found\n"),
    }
}

fn text(status: StatusCode, body: &str) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body.to_string())));
    *r.status_mut() = status;
    let h = r.headers_mut();
    h.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    h.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}
