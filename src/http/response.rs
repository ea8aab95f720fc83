//! Building HTTP responses, and the one mapping from what a command answered or failed with
//! to HTTP statuses ([`refused`], [`from_error`]; MS-ASHTTP 3.2.5.1). A new [`Refusal`] or
//! [`ErrorClass`] gets its status here and nowhere else.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use hyper::body::{Frame, SizeHint};
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::{Response, StatusCode};
use tokio::io::{AsyncRead, DuplexStream, ReadBuf};

use crate::commands::{CommandError, ErrorClass, Media, Refusal};
use crate::eas::status::HTTP_NEEDS_PROVISIONING;

/// Bytes read from a streamed body per frame.
const FRAME: usize = 64 * 1024;

/// A response body: bytes in memory, or the read end of a pipe a command's task writes into
/// while the response is sent (so a 50 MB attachment never sits in memory whole).
#[derive(Debug)]
pub enum Body {
    Full(Option<Bytes>),
    Stream {
        pipe: DuplexStream,
        /// Bytes still expected when the length was announced.
        remaining: Option<u64>,
        /// The read buffer, kept while the pipe has nothing to read.
        buf: Vec<u8>,
    },
}

impl Body {
    fn full(b: Bytes) -> Body {
        Body::Full((!b.is_empty()).then_some(b))
    }
}

impl hyper::body::Body for Body {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        match self.get_mut() {
            Body::Full(b) => Poll::Ready(b.take().map(|b| Ok(Frame::data(b)))),
            Body::Stream {
                pipe,
                remaining,
                buf,
            } => {
                if *remaining == Some(0) {
                    return Poll::Ready(None);
                }
                if buf.len() < FRAME {
                    buf.resize(FRAME, 0);
                }
                let mut rb = ReadBuf::new(buf);
                match Pin::new(pipe).poll_read(cx, &mut rb) {
                    Poll::Pending => Poll::Pending,
                    Poll::Ready(Err(e)) => Poll::Ready(Some(Err(e))),
                    Poll::Ready(Ok(())) => {
                        let n = rb.filled().len();
                        if n == 0 {
                            return match remaining {
                                // The writer stopped before the announced length.
                                Some(left) => Poll::Ready(Some(Err(io::Error::new(
                                    io::ErrorKind::UnexpectedEof,
                                    format!("response body cut {left} bytes short"),
                                )))),
                                None => Poll::Ready(None),
                            };
                        }
                        if let Some(left) = remaining {
                            *left = left.saturating_sub(n as u64);
                        }
                        // A full read hands the buffer over; a short one is copied, so a frame
                        // does not hold 64 KiB for a few bytes.
                        let data = if n >= FRAME / 2 {
                            let mut full = std::mem::take(buf);
                            full.truncate(n);
                            Bytes::from(full)
                        } else {
                            Bytes::copy_from_slice(buf.get(..n).unwrap_or_default())
                        };
                        Poll::Ready(Some(Ok(Frame::data(data))))
                    }
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            Body::Full(b) => b.is_none(),
            Body::Stream { remaining, .. } => *remaining == Some(0),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            Body::Full(b) => SizeHint::with_exact(b.as_ref().map_or(0, |b| b.len() as u64)),
            Body::Stream {
                remaining: Some(n), ..
            } => SizeHint::with_exact(*n),
            Body::Stream { .. } => SizeHint::default(),
        }
    }
}

/// The WBXML media type.
pub const WBXML: &str = "application/vnd.ms-sync.wbxml";

/// Seconds a phone is told to wait when the mail server is unreachable.
pub const RETRY_AFTER_SECS: u64 = 30;
/// Seconds a phone is told to wait when the state store is busy (a short-lived lock).
pub const STORE_RETRY_AFTER_SECS: u64 = 10;

pub fn empty(status: u16) -> Response<Body> {
    let mut r = Response::new(Body::Full(None));
    *r.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    r
}

pub fn wbxml(bytes: Bytes) -> Response<Body> {
    let mut r = Response::new(Body::full(bytes));
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(WBXML));
    r
}

/// Raw bytes with their media type (an invalid media type becomes application/octet-stream).
pub fn raw(content_type: &str, bytes: Bytes) -> Response<Body> {
    let mut r = Response::new(Body::full(bytes));
    let v = HeaderValue::from_str(content_type)
        .unwrap_or(HeaderValue::from_static("application/octet-stream"));
    r.headers_mut().insert(CONTENT_TYPE, v);
    r
}

/// A body written while it is sent, with its media type and, when known, its length.
pub fn stream(content_type: &str, length: Option<u64>, pipe: DuplexStream) -> Response<Body> {
    let mut r = Response::new(Body::Stream {
        buf: Vec::new(),
        pipe,
        remaining: length,
    });
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
    match e.class() {
        ErrorClass::BadRequest => empty(400),
        ErrorClass::MailServerBusy => retry_after(503, RETRY_AFTER_SECS),
        ErrorClass::StoreBusy => retry_after(503, STORE_RETRY_AFTER_SECS),
        ErrorClass::LoginRefused => unauthorized(),
        ErrorClass::Internal => empty(500),
    }
}

/// The HTTP answer for a request a command answered without a protocol body.
pub fn refused(refusal: Refusal) -> Response<Body> {
    empty(match refusal {
        Refusal::NeedsProvisioning => HTTP_NEEDS_PROVISIONING,
        Refusal::DeviceRefused => 403,
        Refusal::NotFound => 404,
        Refusal::TooLarge => 413,
        Refusal::SendFailed => 500,
    })
}

/// The media type of a command's body.
pub fn media_type(media: &Media) -> &str {
    match media {
        Media::Wbxml => WBXML,
        Media::Other(t) => t,
    }
}
