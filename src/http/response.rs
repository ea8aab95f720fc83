//! Building HTTP responses, and the one mapping from errors to HTTP statuses.

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::{Response, StatusCode};

use crate::commands::CommandError;

pub type Body = Full<Bytes>;

/// The WBXML media type.
pub const WBXML: &str = "application/vnd.ms-sync.wbxml";

/// Seconds a phone is told to wait when the mail server is unreachable.
pub const RETRY_AFTER_SECS: u64 = 30;

pub fn empty(status: u16) -> Response<Body> {
    let mut r = Response::new(Full::new(Bytes::new()));
    *r.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    r
}

pub fn wbxml(bytes: Vec<u8>) -> Response<Body> {
    let mut r = Response::new(Full::new(Bytes::from(bytes)));
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(WBXML));
    r
}

/// Raw bytes with their media type (an invalid media type becomes application/octet-stream).
pub fn raw(content_type: &str, bytes: Bytes) -> Response<Body> {
    let mut r = Response::new(Full::new(bytes));
    let v = HeaderValue::from_str(content_type)
        .unwrap_or(HeaderValue::from_static("application/octet-stream"));
    r.headers_mut().insert(CONTENT_TYPE, v);
    r
}

pub fn unauthorized() -> Response<Body> {
    let mut r = empty(401);
    r.headers_mut().insert(
        hyper::header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Basic realm=\"eas-gateway\""),
    );
    r
}

pub fn retry_after(status: u16, secs: u64) -> Response<Body> {
    let mut r = empty(status);
    if let Ok(v) = HeaderValue::from_str(&secs.max(1).to_string()) {
        r.headers_mut().insert(hyper::header::RETRY_AFTER, v);
    }
    r
}

/// The HTTP answer for a command that could not produce a protocol answer.
pub fn from_error(e: &CommandError) -> Response<Body> {
    match e {
        CommandError::BadRequest(_) => empty(400),
        CommandError::Unavailable(_) => retry_after(503, RETRY_AFTER_SECS),
        CommandError::AuthFailed => unauthorized(),
        CommandError::Internal(_) => empty(500),
    }
}
