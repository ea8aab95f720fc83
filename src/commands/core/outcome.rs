//! What a command answers, for the HTTP layer to write.

use crate::wbxml::Element;

/// What a command produced, for the HTTP layer to write.
#[derive(Debug)]
pub enum Outcome {
    /// A WBXML body; `status` is the EAS status for the request log.
    Wbxml { body: Element, status: Option<u32> },
    /// HTTP 200 with no body (the empty Sync/Ping response, 12.x SendMail success).
    Empty,
    /// HTTP 200 with raw bytes (GetAttachment).
    Raw {
        content_type: String,
        body: bytes::Bytes,
    },
    /// HTTP 200 with a body written while it is sent (attachments read from IMAP in chunks):
    /// the command's task writes into the other end of `body`; `length` when known up front.
    /// A task that fails midway closes its end early and the client sees a cut response.
    Stream {
        media: Media,
        length: Option<u64>,
        body: tokio::io::DuplexStream,
        status: Option<u32>,
    },
    /// No protocol answer, only its kind (the HTTP layer picks the status), with a reason
    /// for the log.
    Refused {
        refusal: Refusal,
        reason: &'static str,
    },
}

/// Why a request gets no protocol answer (12.x has no status elements for most of these).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The device must provision first (12.x; MS-ASPROV 3.1.5.1).
    NeedsProvisioning,
    /// The access rules or an administrator keep the device out (12.x).
    DeviceRefused,
    /// What the request names does not exist (GetAttachment).
    NotFound,
    /// The message is over the size limit (12.x sending).
    TooLarge,
    /// The message was not sent, or its outcome is unknown (12.x sending).
    SendFailed,
}

/// What a streamed body is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Media {
    /// A WBXML document (possibly written while it is sent).
    Wbxml,
    /// Anything else, by its media type (an attachment's, a multipart response's).
    Other(String),
}

impl Outcome {
    /// A response that `write` produces on its own task while it is sent, through a pipe, so
    /// a large attachment never sits in memory whole. `write` gets the mail session and
    /// gives it back; it is logged out when the body is done. A write that fails is logged
    /// (`what` names the response): the client sees the body end early.
    pub fn streamed<M, F, Fut>(
        session: M,
        media: Media,
        length: Option<u64>,
        status: Option<u32>,
        what: &'static str,
        write: F,
    ) -> Outcome
    where
        M: crate::backend::MailSession + 'static,
        F: FnOnce(M, tokio::io::DuplexStream) -> Fut,
        Fut: std::future::Future<Output = (M, std::io::Result<()>)> + Send + 'static,
    {
        /// Bytes buffered between the IMAP reader and the HTTP response.
        const PIPE: usize = 256 * 1024;
        let (reader, writer) = tokio::io::duplex(PIPE);
        let task = write(session, writer);
        tokio::spawn(async move {
            let (session, result) = task.await;
            if let Err(e) = result {
                tracing::warn!(error = %e, "{what} ended early");
            }
            session.logout().await;
        });
        Outcome::Stream {
            media,
            length,
            body: reader,
            status,
        }
    }
}
