//! The IMAP client: [`ImapBackend`] and [`ImapSession`] implement
//! [`MailBackend`](crate::backend::MailBackend) and [`MailSession`](crate::backend::MailSession).
//!
//! Files by job: `transport` opens the connection (TCP, TLS, STARTTLS), `engine` runs
//! commands on it (tags, literals, pipelining, reading responses), `command` builds commands
//! and classifies their completions, `parse` reads responses (no I/O), `login` logs in,
//! `folders` lists the hierarchy, `session` is the `MailSession` implementation, with
//! `mailbox` (SELECT, FETCH, STORE, ...), `display`, `parts` and `search` for its larger
//! operations, and `idle` watches mailboxes for the push hub. Command text (LOGIN holds the
//! password) never reaches a log line or an error.

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
