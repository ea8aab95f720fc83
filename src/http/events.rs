//! The mail events listener (`push.events_listen`): the mail server posts what changed in a
//! user's mailboxes, and waiting Pings and hanging Syncs of that user compare again
//! ([`crate::push::Hub::mail_event`]).
//!
//! `POST /eas-gateway/mail-events` with `Authorization: Bearer <push.events_secret>` and a JSON
//! body `{"user": "...", "mailbox": "...", "event": "MessageNew"}` (RFC 5423 event names, as
//! Dovecot's push_notification plugin uses them; `deploy/dovecot/eas-push.lua` sends them).
//! Answers: 204 (taken, also when nobody waits), 400 (not such a body), 401 (wrong or missing
//! secret: nothing happens), 404, 405, 408 (the body stalled), 413 (body over
//! [`MAX_BODY`] bytes). Plain HTTP: meant for loopback or a private network between the mail
//! server and the gateway, apart from the phones' listener and its limits. The secret is
//! compared in constant time and never logged.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};
use tracing::{debug, info, warn};

use crate::backend::Secret;
use crate::push::{EventKind, Hub};

/// The path events are posted to.
pub const PATH: &str = "/eas-gateway/mail-events";
/// Largest accepted body, bytes (a user name, a mailbox name and an event name).
pub const MAX_BODY: usize = 4096;
/// Most connections at once (every Dovecot process that posts may keep one open).
const MAX_CONNECTIONS: usize = 4096;
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
const BODY_TIMEOUT: Duration = Duration::from_secs(10);
/// A connection is closed after this long, busy or not (the poster opens another).
const CONNECTION_LIFETIME: Duration = Duration::from_secs(300);

#[derive(serde::Deserialize)]
struct Event {
    user: String,
    #[serde(default)]
    mailbox: Option<String>,
    event: String,
}

/// The secret, kept as a digest so the comparison time does not depend on its length either.
struct Key([u8; 32]);

impl Key {
    fn new(secret: &Secret) -> Key {
        Key(Sha256::digest(secret.expose().as_bytes()).into())
    }

    fn accepts(&self, req: &Request<Incoming>) -> bool {
        let Some(given) = req
            .headers()
            .get(hyper::header::AUTHORIZATION)
            .and_then(|v| v.as_bytes().strip_prefix(b"Bearer "))
        else {
            return false;
        };
        let digest: [u8; 32] = Sha256::digest(given).into();
        bool::from(self.0.ct_eq(&digest))
    }
}

/// Serves the events listener until `shutdown` turns true.
pub async fn serve(
    listener: TcpListener,
    hub: Hub,
    secret: Secret,
    mut shutdown: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let key = Arc::new(Key::new(&secret));
    drop(secret);
    let limit = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    info!(listen = %listener.local_addr()?, "mail events listener listening");
    loop {
        let (stream, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    warn!(error = %e, "mail events accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = shutdown.changed() => break,
        };
        let Ok(permit) = limit.clone().try_acquire_owned() else {
            debug!(peer = %peer, "mail events listener busy: connection closed");
            continue;
        };
        let _ = stream.set_nodelay(true);
        let hub = hub.clone();
        let key = key.clone();
        tokio::spawn(async move {
            let _permit = permit;
            connection(stream, peer, hub, key).await;
        });
    }
    Ok(())
}

async fn connection(stream: tokio::net::TcpStream, peer: SocketAddr, hub: Hub, key: Arc<Key>) {
    let service = service_fn(move |req| {
        let hub = hub.clone();
        let key = key.clone();
        async move { Ok::<_, std::convert::Infallible>(handle(&hub, &key, req).await) }
    });
    let conn = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT)
        .keep_alive(true)
        .serve_connection(TokioIo::new(stream), service);
    if let Ok(Err(e)) = tokio::time::timeout(CONNECTION_LIFETIME, conn).await {
        debug!(peer = %peer, error = %e, "mail events connection ended with an error");
    }
}

fn answer(status: StatusCode) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::new()));
    *r.status_mut() = status;
    if status == StatusCode::UNAUTHORIZED {
        r.headers_mut().insert(
            hyper::header::WWW_AUTHENTICATE,
            hyper::header::HeaderValue::from_static("Bearer"),
        );
    }
    r
}

async fn handle(hub: &Hub, key: &Key, req: Request<Incoming>) -> Response<Full<Bytes>> {
    if req.uri().path() != PATH {
        return answer(StatusCode::NOT_FOUND);
    }
    if req.method() != Method::POST {
        let mut r = answer(StatusCode::METHOD_NOT_ALLOWED);
        r.headers_mut().insert(
            hyper::header::ALLOW,
            hyper::header::HeaderValue::from_static("POST"),
        );
        return r;
    }
    if !key.accepts(&req) {
        crate::metrics::get().push_events_refused.inc();
        debug!("mail event refused: wrong or missing secret");
        return answer(StatusCode::UNAUTHORIZED);
    }
    let declared = req
        .headers()
        .get(hyper::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > MAX_BODY as u64) {
        return answer(StatusCode::PAYLOAD_TOO_LARGE);
    }
    let body = match tokio::time::timeout(
        BODY_TIMEOUT,
        Limited::new(req.into_body(), MAX_BODY).collect(),
    )
    .await
    {
        Ok(Ok(b)) => b.to_bytes(),
        Ok(Err(e)) => {
            if e.downcast_ref::<http_body_util::LengthLimitError>()
                .is_some()
            {
                return answer(StatusCode::PAYLOAD_TOO_LARGE);
            }
            return answer(StatusCode::BAD_REQUEST);
        }
        Err(_) => return answer(StatusCode::REQUEST_TIMEOUT),
    };
    let Ok(event) = serde_json::from_slice::<Event>(&body) else {
        return answer(StatusCode::BAD_REQUEST);
    };
    if event.user.is_empty() || event.user.len() > 256 {
        return answer(StatusCode::BAD_REQUEST);
    }
    crate::metrics::get().push_events.inc();
    if let Some(kind) = EventKind::from_name(&event.event) {
        let heard = hub.mail_event(&event.user, event.mailbox.as_deref(), kind);
        debug!(user = %event.user, event = %event.event, waiting = heard, "mail event");
    }
    answer(StatusCode::NO_CONTENT)
}
