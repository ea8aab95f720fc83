//! Why a command could not produce a protocol answer.

use crate::backend::BackendError;
use crate::state::StoreError;

/// Why a command could not produce a protocol answer.
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    /// The request body is not what the command expects (HTTP 400).
    #[error("{0}")]
    BadRequest(String),
    /// The mail server is unreachable or busy (HTTP 503 + Retry-After).
    #[error("mail server unavailable: {0}")]
    Unavailable(String),
    /// The state store is busy (locked by another writer past its busy timeout) or cannot be
    /// reached; nothing was applied and the request may be retried (HTTP 503 + Retry-After).
    #[error("state store unavailable: {0}")]
    StoreUnavailable(String),
    /// The mail server refused the stored credentials mid-request (HTTP 401).
    #[error("mail server refused the login")]
    AuthFailed,
    /// Anything else (HTTP 500).
    #[error("{0}")]
    Internal(String),
}

impl From<BackendError> for CommandError {
    fn from(e: BackendError) -> Self {
        match e {
            BackendError::AuthFailed => CommandError::AuthFailed,
            BackendError::Unavailable(r) => CommandError::Unavailable(r),
            other => CommandError::Internal(other.to_string()),
        }
    }
}

impl From<StoreError> for CommandError {
    fn from(e: StoreError) -> Self {
        if e.is_retryable() {
            CommandError::StoreUnavailable(e.to_string())
        } else {
            CommandError::Internal(format!("state store: {e}"))
        }
    }
}

impl From<crate::eas::ParseError> for CommandError {
    fn from(e: crate::eas::ParseError) -> Self {
        CommandError::BadRequest(e.to_string())
    }
}
