//! The IMAP client: [`ImapBackend`] and [`ImapSession`] implement
//! [`MailBackend`](crate::backend::MailBackend) and [`MailSession`](crate::backend::MailSession).
//! Files by job: `transport`, `engine`, `command`, `parse`, `login`, `folders`, `session` (the
//! trait implementation) with `mailbox`, `display`, `parts`, `search`; `idle` for push.
//! Command text (LOGIN holds the password) never reaches a log line or an error.

mod command;
mod display;
mod engine;
mod folders;
pub mod idle;
mod login;
mod mailbox;
#[cfg(test)]
mod mock;
pub mod parse;
mod parts;
mod search;
mod session;
mod transport;

pub use command::{classify, Command, Completed, Phase};
pub use display::FetchedMail;
pub use engine::ImapConn;
pub use folders::build_folders;
pub use login::{probe_imap, ImapBackend, ImapProbe};
pub use search::{MailQuery, MailSearch};
pub use session::ImapSession;
pub(crate) use transport::tcp_connect;
pub use transport::NetStream;
