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
    let read = req.method() == Method::GET || req.method() == Method::HEAD;
    match path.as_str() {
        "/healthz" if read => return text(StatusCode::OK, "ok\n"),
        "/readyz" if read => {
            return match super::readiness(&server.gateway).await {
                Ok(()) => text(StatusCode::OK, "ready\n"),
                Err(reason) => text(StatusCode::SERVICE_UNAVAILABLE, &format!("{reason}\n")),
            }
        }
        _ => {}
    }
    let device = device_route(&path);
    let action = device.as_ref().and_then(|(_, _, rest)| rest.as_deref());
    let post_allowed = action.is_some_and(|a| ACTIONS.contains(&a));
    let post = post_allowed && req.method() == Method::POST;
    if !read && !post {
        let mut r = text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n");
        let allow = if post_allowed { "POST" } else { "GET, HEAD" };
        r.headers_mut()
            .insert("Allow", HeaderValue::from_static(allow));
        return r;
    }
    let header = req
        .headers()
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    let cookie = req
        .headers()
        .get(hyper::header::COOKIE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let bearer = auth.token.accepts(header);
    if !bearer && !auth.sessions.accepts(cookie.as_deref()) {
        if read && (path == "/" || path == "/devices" || (device.is_some() && action.is_none())) {
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
    let store = &server.gateway.store;
    if let Some((user, device_id, rest)) = device {
        return match rest.as_deref() {
            None if read => {
                let csrf = super::csrf_token(cookie.as_deref());
                match super::pages::device_page(
                    &server.gateway.config,
                    store,
                    &user,
                    &device_id,
                    &csrf,
                )
                .await
                {
                    Ok(Some(page)) => html(StatusCode::OK, page),
                    Ok(None) => text(StatusCode::NOT_FOUND, "no such device\n"),
                    Err(e) => {
                        warn!(error = %e, "admin device page failed");
                        text(
                            StatusCode::INTERNAL_SERVER_ERROR,
                            "the device page is not available\n",
                        )
                    }
                }
            }
            Some("log") if read => {
                match super::pages::log_fragment(store, &user, &device_id).await {
                    Ok(rows) => html(StatusCode::OK, rows),
                    Err(e) => {
                        warn!(error = %e, "admin device log failed");
                        text(
                            StatusCode::INTERNAL_SERVER_ERROR,
                            "the request log is not available\n",
                        )
                    }
                }
            }
            Some(action) if !read && ACTIONS.contains(&action) => {
                let who = if bearer {
                    "admin bearer token".to_string()
                } else {
                    format!("admin {}", super::session_label(cookie.as_deref()))
                };
                let action = action.to_string();
                device_action(
                    server,
                    req,
                    bearer,
                    cookie.as_deref(),
                    &who,
                    &user,
                    &device_id,
                    &action,
                )
                .await
            }
            _ => text(StatusCode::NOT_FOUND, "not found\n"),
        };
    }
    match path.as_str() {
        "/metrics" => {
            let body = super::metrics_text(&server.gateway).await;
            let mut r = Response::new(Full::new(Bytes::from(body)));
            r.headers_mut()
                .insert(CONTENT_TYPE, HeaderValue::from_static(OPENMETRICS));
            r
        }
        "/admin.js" => {
            let mut r = Response::new(Full::new(Bytes::from_static(ADMIN_JS.as_bytes())));
            let h = r.headers_mut();
            h.insert(
                CONTENT_TYPE,
                HeaderValue::from_static("text/javascript; charset=utf-8"),
            );
            h.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
            h.insert(
                "X-Content-Type-Options",
                HeaderValue::from_static("nosniff"),
            );
            r
        }
        "/" => {
            let waiting = server.gateway.push.stats().waiters;
            match super::pages::overview_page(store, waiting).await {
                Ok(page) => html(StatusCode::OK, page),
                Err(e) => {
                    warn!(error = %e, "admin overview page failed");
                    text(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        "the overview is not available\n",
                    )
                }
            }
        }
        "/devices" => match super::pages::devices_page(
            store,
            &super::pages::DeviceFilter::from_query(req.uri().query().unwrap_or("")),
        )
        .await
        {
            Ok(page) => html(StatusCode::OK, page),
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

/// The actions a device's page offers, each a `POST /devices/{user}/{device}/{action}`.
const ACTIONS: &[&str] = &["wipe", "account-wipe", "block", "allow", "resync", "remove"];

/// The script the pages load (confirmations, the request log's refresh).
const ADMIN_JS: &str = include_str!("templates/admin.js");

/// `/devices/{user}/{device}[/{rest}]`, segments percent-decoded.
fn device_route(path: &str) -> Option<(String, String, Option<String>)> {
    let rest = path.strip_prefix("/devices/")?;
    let mut parts = rest.split('/');
    let user = super::pages::decode_segment(parts.next()?)?;
    let device = super::pages::decode_segment(parts.next()?)?;
    let extra = parts.next().map(str::to_string);
    if parts.next().is_some() || user.is_empty() || device.is_empty() {
        return None;
    }
    Some((user, device, extra.filter(|e| !e.is_empty())))
}

/// A device action from its page's form: the session's anti-forgery token must come with it
/// (a bearer token, which a browser never adds by itself, needs none). Runs the same code as
/// the `devices` command line, logged with the admin's identity.
#[allow(clippy::too_many_arguments)]
async fn device_action<B: MailBackend, S: StateStore>(
    server: &Server<B, S>,
    req: Request<Incoming>,
    bearer: bool,
    cookie: Option<&str>,
    who: &str,
    user: &str,
    device_id: &str,
    action: &str,
) -> Response<Full<Bytes>> {
    use crate::cli::devices as cli;
    use crate::config::Access;
    use http_body_util::{BodyExt, Limited};
    let body = match tokio::time::timeout(
        HEADER_TIMEOUT,
        Limited::new(req.into_body(), MAX_LOGIN_BODY).collect(),
    )
    .await
    {
        Ok(Ok(b)) => b.to_bytes(),
        _ => return text(StatusCode::BAD_REQUEST, "bad request\n"),
    };
    if !bearer {
        let given = form_urlencoded::parse(&body)
            .find(|(k, _)| k == "csrf")
            .map(|(_, v)| v.into_owned())
            .unwrap_or_default();
        if !super::csrf_matches(cookie, &given) {
            warn!(
                who,
                action, "admin action refused: the form's anti-forgery token is missing or wrong"
            );
            return text(
                StatusCode::FORBIDDEN,
                "refused: the form is stale or did not come from this admin page; reload it\n",
            );
        }
    }
    let store = &server.gateway.store;
    let result = match action {
        "wipe" => cli::wipe_by(store, user, device_id, false, who).await,
        "account-wipe" => cli::wipe_by(store, user, device_id, true, who).await,
        "block" => cli::set_access_by(store, user, device_id, Some(Access::Block), who).await,
        "allow" => cli::set_access_by(store, user, device_id, Some(Access::Allow), who).await,
        "resync" => cli::resync_by(store, user, device_id, None, who).await,
        "remove" => cli::remove_by(store, user, device_id, who).await,
        _ => return text(StatusCode::NOT_FOUND, "not found\n"),
    };
    match result {
        Ok(_) => {
            let to = if action == "remove" {
                "/devices".to_string()
            } else {
                super::pages::device_path(user, device_id)
            };
            let mut r = text(StatusCode::SEE_OTHER, "done\n");
            if let Ok(v) = HeaderValue::from_str(&to) {
                r.headers_mut().insert(hyper::header::LOCATION, v);
            }
            r
        }
        Err(e) => text(StatusCode::CONFLICT, &format!("{e}\n")),
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
    // Nothing but the page itself, its inline style, the admin listener's own script (no
    // inline script), its fetches and form targets.
    h.insert(
        "Content-Security-Policy",
        HeaderValue::from_static(
            "default-src 'none'; script-src 'self'; connect-src 'self'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'",
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
