//! Why a command could not produce a protocol answer. Each error keeps its cause (`#[source]`)
//! and has one [`ErrorClass`]; the HTTP status for a class is chosen in `src/http/response.rs`.

use crate::backend::BackendError;
use crate::state::StoreError;

/// Why a command could not produce a protocol answer.
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    /// The request body is not what the command expects.
    #[error("{0}")]
    BadRequest(String),
    /// The request body could not be read as the command's request.
    #[error("malformed request")]
    Malformed(#[from] crate::eas::ParseError),
    /// The mail server (IMAP or SMTP) is unreachable or busy; the request may be retried.
    #[error("mail server unavailable: {0}")]
    Unavailable(String),
    /// The state store is busy (locked by another writer past its busy timeout) or cannot be
    /// reached; nothing was applied and the request may be retried.
    #[error("state store unavailable")]
    StoreUnavailable(#[source] StoreError),
    /// The mail server refused the stored credentials mid-request.
    #[error("mail server refused the login")]
    AuthFailed,
    /// The mail server failed in a way a retry does not mend.
    #[error("mail server failed")]
    Backend(#[source] BackendError),
    /// The state store failed in a way a retry does not mend.
    #[error("state store failed")]
    Store(#[source] StoreError),
    /// Anything else.
    #[error("{0}")]
    Internal(String),
}

/// What kind of failure an error is; the HTTP layer answers each kind its own way.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    /// The request is wrong: sending it again changes nothing.
    BadRequest,
    /// The mail server is unreachable or busy: retry later.
    MailServerBusy,
    /// The state store is busy or unreachable: retry soon.
    StoreBusy,
    /// The mail server refused the login.
    LoginRefused,
    /// A fault of the gateway or of a server behind it.
    Internal,
}

impl CommandError {
    pub fn class(&self) -> ErrorClass {
        match self {
            CommandError::BadRequest(_) | CommandError::Malformed(_) => ErrorClass::BadRequest,
            CommandError::Unavailable(_) => ErrorClass::MailServerBusy,
            CommandError::StoreUnavailable(_) => ErrorClass::StoreBusy,
            CommandError::AuthFailed => ErrorClass::LoginRefused,
            CommandError::Backend(_) | CommandError::Store(_) | CommandError::Internal(_) => {
                ErrorClass::Internal
            }
        }
    }

    /// The error and its causes, outermost first, for the logs.
    pub fn chain(&self) -> String {
        let mut out = self.to_string();
        let mut cause = std::error::Error::source(self);
        while let Some(c) = cause {
            out.push_str(": ");
            out.push_str(&c.to_string());
            cause = c.source();
        }
        out
    }
}

impl From<BackendError> for CommandError {
    fn from(e: BackendError) -> Self {
        match e {
            BackendError::AuthFailed => CommandError::AuthFailed,
            BackendError::Unavailable(r) => CommandError::Unavailable(r),
            other => CommandError::Backend(other),
        }
    }
}

impl From<StoreError> for CommandError {
    fn from(e: StoreError) -> Self {
        if e.is_retryable() {
            CommandError::StoreUnavailable(e)
        } else {
            CommandError::Store(e)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn causes_are_kept_and_classed() {
        let e = CommandError::from(StoreError::Busy);
        assert_eq!(e.class(), ErrorClass::StoreBusy);
        assert_eq!(e.chain(), "state store unavailable: state database is busy");
        let e = CommandError::from(BackendError::Protocol("BAD".into()));
        assert_eq!(e.class(), ErrorClass::Internal);
        assert_eq!(
            e.chain(),
            "mail server failed: mail server protocol error: BAD"
        );
        let e = CommandError::from(BackendError::Unavailable("BYE".into()));
        assert_eq!(e.class(), ErrorClass::MailServerBusy);
    }
}
