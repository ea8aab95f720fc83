//! One HTTP request, from the request line to the response: route, authenticate, check the
//! query and body, decode WBXML, run the command, encode the answer, log one line.
//!
//! An EAS POST is a chain of named steps ([`Server::post`], MS-ASHTTP 2.2.1): a new check
//! goes in as its own step, in the order the statuses must win. HTTP statuses for command
//! answers and errors are chosen in `response.rs` only.

use std::net::{IpAddr, SocketAddr};
use std::time::Instant;

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::header::{HeaderMap, HeaderValue, CONTENT_LENGTH, CONTENT_TYPE};
use hyper::{Method, Request, Response};
use tracing::{debug, field, info, warn, Instrument};

use super::auth::{AuthOutcome, Authenticator};
use super::response::{self, Body};
use crate::backend::MailBackend;
use crate::commands::{self, Context, ErrorClass, Gateway, Outcome, User};
use crate::eas::{version, Command, ProtocolVersion, RequestLine};
use crate::state::StateStore;
use crate::wbxml::{self, Limits};

/// The path every EAS request uses (matched case-insensitively).
pub const EAS_PATH: &str = "/microsoft-server-activesync";

/// What `MS-Server-ActiveSync` announces.
const SERVER_VERSION: &str = "16.1";
/// Response trees with more nodes than this are freed off the request's path.
const LARGE_TREE: usize = 2_000;

/// The front door's shared state: the gateway plus the authenticator.
pub struct Server<B: MailBackend, S> {
    pub gateway: Gateway<B, S>,
    pub auth: Authenticator,
    pub limits: Limits,
    /// What a SIGHUP may change (`super::reload`).
    pub live: super::reload::Live,
    pub(super) probes: super::doctor::Probes,
}

impl<B: MailBackend, S: StateStore> Server<B, S> {
    pub fn new(gateway: Gateway<B, S>) -> Server<B, S> {
        let auth = Authenticator::new(
            gateway.config.auth.clone(),
            gateway.config.identity.domain.clone(),
        );
        let limits = Limits {
            max_body_bytes: gateway.config.server.max_body_bytes,
            ..Limits::default()
        };
        Server {
            live: super::reload::Live::new(&gateway.config),
            probes: super::doctor::Probes::default(),
            gateway,
            auth,
            limits,
        }
    }

    /// Handles one request; never fails (errors become HTTP statuses).
    pub async fn handle(&self, peer: SocketAddr, req: Request<Incoming>) -> Response<Body> {
        let started = Instant::now();
        let peer_trusted = self.live.settings().trusted_proxies.contains(&peer.ip());
        let client_ip = self.client_ip(peer.ip(), peer_trusted, req.headers());
        let span = tracing::info_span!(
            "request",
            method = %req.method(),
            client_ip = %client_ip,
            cmd = field::Empty,
            user = field::Empty,
            device_id = field::Empty,
            device_type = field::Empty,
            protocol_version = field::Empty,
        );
        let mut log = RequestLog {
            received: Some(started),
            ..RequestLog::default()
        };
        let metric_cmd = crate::metrics::command_label(
            req.method().as_str(),
            req.uri().path(),
            req.uri().query(),
        );
        let mut resp = self
            .route(req, client_ip, peer_trusted, &mut log)
            .instrument(span.clone())
            .await;
        resp.headers_mut().insert(
            "MS-Server-ActiveSync",
            HeaderValue::from_static(SERVER_VERSION),
        );
        let status = resp.status().as_u16();
        let _enter = span.enter();
        let elapsed_ms = started.elapsed().as_millis() as u64;
        let bytes_out = response_len(&resp);
        match log.eas_status {
            Some(eas) => info!(
                http_status = status,
                eas_status = eas,
                elapsed_ms,
                bytes_in = log.bytes_in,
                bytes_out,
                reason = log.reason,
                "request done"
            ),
            None => info!(
                http_status = status,
                elapsed_ms,
                bytes_in = log.bytes_in,
                bytes_out,
                reason = log.reason,
                "request done"
            ),
        }
        self.gateway.record_request(
            &log.report,
            commands::devices::Finished {
                http_status: status,
                eas_status: log.eas_status,
                duration_ms: elapsed_ms,
                bytes_in: log.bytes_in,
                bytes_out,
                reason: log.reason,
            },
        );
        crate::metrics::request_done(
            metric_cmd,
            status,
            log.eas_status,
            log.reason,
            started.elapsed(),
        );
        resp
    }

    /// The peer's address, or when the peer is a trusted proxy the address it forwarded: the
    /// last `X-Forwarded-For` entry (of the last such header line: a proxy may add its own line
    /// after the client's), else `X-Real-IP`.
    fn client_ip(&self, peer: IpAddr, peer_trusted: bool, headers: &HeaderMap) -> IpAddr {
        if !peer_trusted {
            return peer;
        }
        let forwarded = headers
            .get_all("x-forwarded-for")
            .iter()
            .next_back()
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(',').next_back())
            .or_else(|| headers.get("x-real-ip").and_then(|v| v.to_str().ok()));
        forwarded
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(peer)
    }

    async fn route(
        &self,
        req: Request<Incoming>,
        client_ip: IpAddr,
        peer_trusted: bool,
        log: &mut RequestLog,
    ) -> Response<Body> {
        let path = req.uri().path().trim_end_matches('/').to_ascii_lowercase();
        // Each route's future is boxed, so a request holds only the state of its own route
        // (a Ping waits for up to an hour inside `post`).
        if let Some(endpoint) = super::autodiscover::Endpoint::of(&path) {
            return Box::pin(self.autodiscover(endpoint, req, client_ip, log)).await;
        }
        if path == super::doctor::PATH {
            return Box::pin(self.doctor(req, client_ip, peer_trusted, log)).await;
        }
        if path != EAS_PATH {
            log.reason = "unknown path";
            return response::empty(404);
        }
        match *req.method() {
            Method::OPTIONS => Box::pin(self.options(&req, client_ip, log)).await,
            Method::POST => Box::pin(self.post(req, client_ip, log)).await,
            _ => {
                log.reason = "method not allowed";
                let mut r = response::empty(405);
                r.headers_mut()
                    .insert("Allow", HeaderValue::from_static("OPTIONS,POST"));
                r
            }
        }
    }

    pub(super) async fn authenticate(
        &self,
        headers: &HeaderMap,
        client_ip: IpAddr,
        log: &mut RequestLog,
    ) -> Result<User, Response<Body>> {
        let header = headers
            .get(hyper::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok());
        match self
            .auth
            .check(&self.gateway.sessions, header, client_ip)
            .await
        {
            AuthOutcome::Ok(credentials) => {
                tracing::Span::current().record("user", credentials.login.as_str());
                Ok(User {
                    address: credentials.login.clone(),
                    credentials,
                })
            }
            AuthOutcome::Denied => {
                log.reason = "authentication failed";
                if header.is_some() {
                    super::auth::log_failure(client_ip, self.auth.login_of(header).as_deref());
                }
                Err(response::unauthorized())
            }
            AuthOutcome::Throttled(wait) => {
                log.reason = "too many failed logins";
                super::auth::log_failure(client_ip, self.auth.login_of(header).as_deref());
                Err(response::retry_after(429, wait.as_secs()))
            }
            AuthOutcome::Unavailable(reason) => {
                warn!(reason = %reason, "mail server unavailable for login");
                log.reason = "mail server unavailable";
                Err(response::retry_after(503, response::RETRY_AFTER_SECS))
            }
        }
    }

    async fn options(
        &self,
        req: &Request<Incoming>,
        client_ip: IpAddr,
        log: &mut RequestLog,
    ) -> Response<Body> {
        tracing::Span::current().record("cmd", "OPTIONS");
        if let Err(r) = self.authenticate(req.headers(), client_ip, log).await {
            return r;
        }
        let mut r = response::empty(200);
        let h = r.headers_mut();
        h.insert("Allow", HeaderValue::from_static("OPTIONS,POST"));
        h.insert("Public", HeaderValue::from_static("OPTIONS,POST"));
        if let Ok(v) = HeaderValue::from_str(&version::versions_header()) {
            h.insert("MS-ASProtocolVersions", v);
        }
        let commands = commands::IMPLEMENTED
            .iter()
            .map(|c| c.name())
            .collect::<Vec<_>>()
            .join(",");
        if let Ok(v) = HeaderValue::from_str(&commands) {
            h.insert("MS-ASProtocolCommands", v);
        }
        h.insert("Cache-Control", HeaderValue::from_static("private"));
        r
    }

    /// 413 when the declared Content-Length is over `max`.
    pub(super) fn over_limit(
        &self,
        req: &Request<Incoming>,
        max: usize,
        log: &mut RequestLog,
    ) -> Option<Response<Body>> {
        let declared = req
            .headers()
            .get(CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|n| n > max as u64) {
            log.reason = "body over the size limit";
            return Some(response::empty(413));
        }
        None
    }

    /// The whole request body, at most `max` bytes (else 413). A body that stops arriving for
    /// as long as headers may take is given up (408): a client trickling its body must not
    /// hold a connection and a handler for ever.
    pub(super) async fn read_body(
        &self,
        body: Incoming,
        max: usize,
        log: &mut RequestLog,
    ) -> Result<Bytes, Response<Body>> {
        let stall = self.gateway.config.server.header_timeout;
        let mut incoming = body;
        let mut chunks: Vec<Bytes> = Vec::new();
        let mut total = 0usize;
        loop {
            match tokio::time::timeout(stall, incoming.frame()).await {
                Err(_) => {
                    log.reason = "request body stalled";
                    return Err(response::empty(408));
                }
                Ok(None) => break,
                Ok(Some(Ok(frame))) => {
                    if let Ok(data) = frame.into_data() {
                        total = total.saturating_add(data.len());
                        if total > max {
                            log.reason = "body over the size limit";
                            discard(incoming, stall);
                            return Err(response::empty(413));
                        }
                        chunks.push(data);
                    }
                }
                Ok(Some(Err(_))) => {
                    log.reason = "body could not be read";
                    return Err(response::empty(400));
                }
            }
        }
        let body = match chunks.len() {
            0 => Bytes::new(),
            1 => chunks.pop().unwrap_or_default(),
            _ => chunks.concat().into(),
        };
        log.bytes_in = body.len() as u64;
        Ok(body)
    }

    /// An EAS command: each step answers the request itself when the request stops there.
    async fn post(
        &self,
        req: Request<Incoming>,
        client_ip: IpAddr,
        log: &mut RequestLog,
    ) -> Response<Body> {
        match self.post_steps(req, client_ip, log).await {
            Ok(r) | Err(r) => r,
        }
    }

    async fn post_steps(
        &self,
        req: Request<Incoming>,
        client_ip: IpAddr,
        log: &mut RequestLog,
    ) -> Result<Response<Body>, Response<Body>> {
        let Some(line) = request_line(&req, log) else {
            return Err(response::empty(400));
        };
        // The steps are boxed: inline, the largest of them (a login on the mail server, the
        // state store) would stay part of the state the command's whole run holds.
        if let Some(r) = Box::pin(self.refuse_before_login(req.headers(), &line, log)).await {
            return Err(r);
        }
        let user = Box::pin(self.login(req.headers(), &line, client_ip, log)).await?;
        let Some(command) = commands::implemented(line.command) else {
            log.reason = if line.command.is_some() {
                "command not implemented"
            } else {
                "unknown command"
            };
            return Err(response::empty(501));
        };
        let Some((line, version)) = negotiate(req.headers(), line, log) else {
            return Err(response::empty(400));
        };
        let admitted = Admitted {
            user,
            line,
            version,
            command: command.command(),
        };
        let incoming = Box::pin(self.request_body(req, admitted.command, log)).await?;
        let now = unix_now();
        let device = Box::pin(self.record_device(&admitted, &incoming, now, log)).await?;
        let trace = super::trace::Trace::begin(
            &self.gateway.config.devices,
            &device,
            admitted.command,
            version,
            incoming.content_type.as_deref(),
            &incoming.raw,
        );
        // Only the decoded body goes on: the bytes (and the read buffer they share) are not
        // kept while the command runs, which for a Ping is its whole heartbeat.
        let RequestBody {
            content_type,
            user_agent,
            raw,
            body,
        } = incoming;
        drop((content_type, user_agent, raw));
        let ctx = Context {
            user: admitted.user,
            device,
            line: admitted.line,
            version,
            client_ip: Some(client_ip),
            now,
            received: log.received.unwrap_or_else(Instant::now),
            report: log.report.clone(),
        };
        let result = Box::pin(commands::dispatch(&self.gateway, &ctx, command, body)).await;
        let (resp, wbxml_out) = answer(result, trace.is_some(), log);
        if let Some(trace) = trace {
            trace.finish(&resp, wbxml_out.as_ref());
        }
        Ok(resp)
    }

    /// The authenticated user, who must be the one the User parameter names (else 403).
    async fn login(
        &self,
        headers: &HeaderMap,
        line: &RequestLine,
        client_ip: IpAddr,
        log: &mut RequestLog,
    ) -> Result<User, Response<Body>> {
        let user = self.authenticate(headers, client_ip, log).await?;
        if let Some(named) = &line.user {
            if self.auth.normalise(named) != user.address {
                log.reason = "User parameter names another user";
                return Err(response::empty(403));
            }
        }
        Ok(user)
    }

    /// The body: size first (413), then media type, then WBXML (400).
    async fn request_body(
        &self,
        req: Request<Incoming>,
        command: Command,
        log: &mut RequestLog,
    ) -> Result<RequestBody, Response<Body>> {
        if let Some(r) = self.over_limit(&req, self.limits.max_body_bytes, log) {
            discard(req.into_body(), self.gateway.config.server.header_timeout);
            return Err(r);
        }
        let content_type = req
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(|v| {
                v.split(';')
                    .next()
                    .unwrap_or("")
                    .trim()
                    .to_ascii_lowercase()
            });
        let user_agent = req
            .headers()
            .get(hyper::header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .map(|s| s.chars().take(200).collect::<String>());
        let raw = self
            .read_body(req.into_body(), self.limits.max_body_bytes, log)
            .await?;
        log.bytes_in = raw.len() as u64;
        let is_mime_command = matches!(
            command,
            Command::SendMail | Command::SmartReply | Command::SmartForward
        );
        let body = match content_type.as_deref() {
            _ if raw.is_empty() => commands::Body::Empty,
            Some("application/vnd.ms-sync.wbxml") | Some("application/vnd.ms-sync") => {
                match wbxml::decode(raw.clone(), &self.limits) {
                    Ok(e) => commands::Body::Wbxml(e),
                    Err(e) => {
                        debug!(error = %e, "malformed WBXML");
                        log.reason = "malformed WBXML";
                        return Err(response::empty(400));
                    }
                }
            }
            Some("message/rfc822") if is_mime_command => commands::Body::Mime(raw.clone()),
            _ => {
                log.reason = "unsupported Content-Type";
                return Err(response::empty(400));
            }
        };
        Ok(RequestBody {
            content_type,
            user_agent,
            raw,
            body,
        })
    }

    /// Records the request as the device's (creating the device on first sight).
    async fn record_device(
        &self,
        admitted: &Admitted,
        incoming: &RequestBody,
        now: i64,
        log: &mut RequestLog,
    ) -> Result<crate::state::Device, Response<Body>> {
        let Admitted {
            user,
            line,
            version,
            command,
        } = admitted;
        self.gateway
            .store
            .touch_device(
                &user.address,
                &line.device_id,
                &line.device_type,
                incoming.user_agent.as_deref(),
                Some(version.as_str()),
                command.name(),
                now,
            )
            .await
            .map_err(|e| {
                let e = commands::CommandError::from(e);
                warn!(error = %e.chain(), "state store failed");
                log.reason = "state store failed";
                response::from_error(&e)
            })
    }
}

/// A request past login and the request-line checks: who, for which command and version.
struct Admitted {
    user: User,
    line: RequestLine,
    version: ProtocolVersion,
    command: Command,
}

/// A request body as read: its media type, the client's User-Agent, the bytes, and what they
/// decode to.
struct RequestBody {
    content_type: Option<String>,
    user_agent: Option<String>,
    raw: Bytes,
    body: commands::Body,
}

/// The request line (the query string), recorded on the request's span; `None` (400) when
/// malformed.
fn request_line(req: &Request<Incoming>, log: &mut RequestLog) -> Option<RequestLine> {
    let line = match RequestLine::parse(req.uri().query().unwrap_or("")) {
        Ok(l) => l,
        Err(e) => {
            debug!(error = %e, "bad request line");
            log.reason = "bad request line";
            return None;
        }
    };
    let span = tracing::Span::current();
    span.record("cmd", line.command_name.as_str());
    span.record("device_id", line.device_id.as_str());
    span.record("device_type", line.device_type.as_str());
    Some(line)
}

/// The protocol version (from the query or MS-ASProtocolVersion; `None` (400) without one),
/// and what the headers add to the request line: the multipart wish and the policy key.
fn negotiate(
    headers: &HeaderMap,
    mut line: RequestLine,
    log: &mut RequestLog,
) -> Option<(RequestLine, ProtocolVersion)> {
    let version = match line.version.or_else(|| {
        headers
            .get("MS-ASProtocolVersion")
            .and_then(|v| v.to_str().ok())
            .and_then(ProtocolVersion::parse)
    }) {
        Some(v) => v,
        None => {
            log.reason = "missing or unsupported MS-ASProtocolVersion";
            return None;
        }
    };
    tracing::Span::current().record("protocol_version", version.as_str());
    // MS-ASHTTP 2.2.1.1.2.5: "T" asks for a multipart ItemOperations response (the base64
    // form carries the same wish as its AcceptMultiPart option bit).
    if headers
        .get("MS-ASAcceptMultiPart")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("T"))
    {
        line.accept_multipart = true;
    }
    if !line.base64_form {
        line.policy_key = headers
            .get("X-MS-PolicyKey")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse().ok());
    }
    Some((line, version))
}

/// Reads and drops the rest of a request body refused as too large, for at most `within`,
/// while the 413 goes out: a connection closed with request bytes unread is reset, and a
/// client or proxy still sending the body loses the answer with it (a proxy then tells the
/// phone 502). The connection's header deadline ends it after as long anyway.
fn discard(mut body: Incoming, within: std::time::Duration) {
    tokio::spawn(async move {
        let drain = async { while let Some(Ok(_)) = body.frame().await {} };
        let _ = tokio::time::timeout(within, drain).await;
    });
}

/// The HTTP response for what the command answered, and the WBXML bytes when `keep_wbxml`
/// (for the device's trace).
fn answer(
    result: Result<Outcome, commands::CommandError>,
    keep_wbxml: bool,
    log: &mut RequestLog,
) -> (Response<Body>, Option<Bytes>) {
    let mut wbxml_out = None;
    let resp = match result {
        Ok(Outcome::Wbxml { body, status }) => {
            log.eas_status = status;
            let bytes = wbxml::encode_bytes(&body);
            if keep_wbxml {
                wbxml_out = Some(bytes.clone());
            }
            if body.has_more_nodes_than(LARGE_TREE) {
                // Freeing a tree of thousands of nodes (Search or Find results) takes as
                // long as encoding it; the device need not wait for that. A Sync page's
                // items arrive encoded, a node each, and are freed here.
                tokio::task::spawn_blocking(move || drop(body));
            }
            response::wbxml(bytes)
        }
        Ok(Outcome::Empty) => response::empty(200),
        Ok(Outcome::Raw { content_type, body }) => response::raw(&content_type, body),
        Ok(Outcome::Stream {
            media,
            length,
            body,
            status,
        }) => {
            log.eas_status = status;
            response::stream(response::media_type(&media), length, body)
        }
        Ok(Outcome::Refused { refusal, reason }) => {
            log.reason = reason;
            response::refused(refusal)
        }
        Err(e) => {
            match e.class() {
                ErrorClass::BadRequest => debug!(error = %e.chain(), "bad request"),
                ErrorClass::LoginRefused => info!(error = %e.chain(), "login refused"),
                _ => warn!(error = %e.chain(), "command failed"),
            }
            log.reason = "command failed";
            response::from_error(&e)
        }
    };
    (resp, wbxml_out)
}

#[derive(Default)]
pub(super) struct RequestLog {
    /// When the request arrived (before its login, which may have queued).
    pub(super) received: Option<Instant>,
    pub(super) bytes_in: u64,
    pub(super) eas_status: Option<u32>,
    pub(super) reason: &'static str,
    /// What the command reported, for the device's request log.
    report: std::sync::Arc<commands::devices::RequestReport>,
}

fn response_len(resp: &Response<Body>) -> u64 {
    use hyper::body::Body as _;
    resp.body().size_hint().exact().unwrap_or(0)
}

pub(super) fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}
