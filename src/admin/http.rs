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

use super::{Sessions, Token, SESSION_COOKIE, SESSION_LIFETIME};
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
    let auth = Arc::new(Auth {
        token: Token::read(&cfg.token_file)?,
        sessions: Sessions::default(),
        secure_cookie: cfg.tls.is_some(),
    });
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
        let auth = auth.clone();
        let acceptor = acceptor.clone();
        tokio::spawn(async move {
            let _permit = permit;
            match acceptor {
                Some(acceptor) => {
                    match tokio::time::timeout(HEADER_TIMEOUT, acceptor.accept(stream)).await {
                        Ok(Ok(tls)) => connection(tls, peer, server, auth).await,
                        Ok(Err(e)) => {
                            debug!(peer = %peer, error = %e, "admin TLS handshake failed")
                        }
                        Err(_) => debug!(peer = %peer, "admin TLS handshake not complete in time"),
                    }
                }
                None => connection(stream, peer, server, auth).await,
            }
        });
    }
    info!("admin listener stopped accepting connections");
    Ok(())
}

async fn connection<I, B, S>(io: I, peer: SocketAddr, server: Arc<Server<B, S>>, auth: Arc<Auth>)
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    B: MailBackend,
    S: StateStore,
{
    let service = service_fn(move |req| {
        let server = server.clone();
        let auth = auth.clone();
        async move { Ok::<_, std::convert::Infallible>(handle(&server, &auth, req).await) }
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

/// Who may in: holders of the token, and browsers with a session opened with it.
pub struct Auth {
    pub token: Token,
    pub sessions: Sessions,
    /// The session cookie is `Secure` when the admin listener speaks TLS.
    pub secure_cookie: bool,
}

/// One admin request.
pub async fn handle<B: MailBackend, S: StateStore>(
    server: &Server<B, S>,
    auth: &Auth,
    req: Request<Incoming>,
) -> Response<Full<Bytes>> {
    let path = req.uri().path().to_string();
    if path == "/login" {
        return login(auth, req).await;
    }
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
    let cookie = req
        .headers()
        .get(hyper::header::COOKIE)
        .and_then(|v| v.to_str().ok());
    if !auth.token.accepts(header) && !auth.sessions.accepts(cookie) {
        if path == "/" || path == "/devices" {
            let mut r = html(
                StatusCode::UNAUTHORIZED,
                LOGIN_PAGE.replace("{message}", ""),
            );
            r.headers_mut().insert(
                WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"eas-gateway admin\""),
            );
            return r;
        }
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

/// The login form (plain HTML, no script); `{message}` is replaced by a fixed text or nothing.
const LOGIN_PAGE: &str = include_str!("templates/login.html");
/// Login form bodies larger than this are refused.
const MAX_LOGIN_BODY: usize = 4096;

/// `GET /login`: the form; `POST /login`: a session cookie for the right token.
async fn login(auth: &Auth, req: Request<Incoming>) -> Response<Full<Bytes>> {
    use http_body_util::{BodyExt, Limited};
    match *req.method() {
        Method::GET | Method::HEAD => {
            return html(StatusCode::OK, LOGIN_PAGE.replace("{message}", ""));
        }
        Method::POST => {}
        _ => {
            let mut r = text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n");
            r.headers_mut()
                .insert("Allow", HeaderValue::from_static("GET, HEAD, POST"));
            return r;
        }
    }
    let body = match tokio::time::timeout(
        HEADER_TIMEOUT,
        Limited::new(req.into_body(), MAX_LOGIN_BODY).collect(),
    )
    .await
    {
        Ok(Ok(b)) => b.to_bytes(),
        _ => return text(StatusCode::BAD_REQUEST, "bad request\n"),
    };
    let given = form_urlencoded::parse(&body)
        .find(|(k, _)| k == "token")
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default();
    if !auth.token.matches(&given) {
        warn!("admin login with a wrong token");
        return html(
            StatusCode::UNAUTHORIZED,
            LOGIN_PAGE.replace("{message}", "<p class=\"err\">Wrong token.</p>"),
        );
    }
    let id = auth.sessions.open();
    let cookie = format!(
        "{SESSION_COOKIE}={id}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}{}",
        SESSION_LIFETIME.as_secs(),
        if auth.secure_cookie { "; Secure" } else { "" }
    );
    let mut r = text(StatusCode::SEE_OTHER, "logged in\n");
    let h = r.headers_mut();
    h.insert(
        hyper::header::LOCATION,
        HeaderValue::from_static("/devices"),
    );
    if let Ok(v) = HeaderValue::from_str(&cookie) {
        h.insert(hyper::header::SET_COOKIE, v);
    }
    info!("admin browser session opened");
    r
}

fn html(status: StatusCode, page: String) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(page)));
    *r.status_mut() = status;
    let h = r.headers_mut();
    h.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    h.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    // Nothing but the page itself, its inline style and its own form target.
    h.insert(
        "Content-Security-Policy",
        HeaderValue::from_static(
            "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'",
        ),
    );
    h.insert(
        "X-Content-Type-Options",
        HeaderValue::from_static("nosniff"),
    );
    r
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
