//! The EAS protocol model: request lines, protocol versions, commands, statuses and the typed
//! requests and responses of each command. No I/O, no async: everything here is a function of
//! its input, so it is tested on its own.

pub mod autodiscover;
pub mod command;
pub mod compose_mail;
pub mod find;
pub mod folder_changes;
pub mod folder_sync;
pub mod get_item_estimate;
pub mod item_operations;
pub mod move_items;
pub mod ping;
pub mod provision;
pub mod query;
pub mod search;
pub mod settings;
pub mod status;
pub mod sync;
pub mod version;

pub use command::Command;
pub use query::{QueryError, RequestLine};
pub use version::ProtocolVersion;

/// A request body that does not have the shape the command requires.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed {command} request: {reason}")]
pub struct ParseError {
    pub command: &'static str,
    pub reason: String,
}

impl ParseError {
    pub fn new(command: &'static str, reason: impl Into<String>) -> ParseError {
        ParseError {
            command,
            reason: reason.into(),
        }
    }
}
