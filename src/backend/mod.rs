//! The mail server behind the gateway: IMAP for mailboxes, SMTP for sending.
//!
//! [`MailBackend`] logs a user in and hands out a [`MailSession`]; the IMAP
//! implementation is [`imap::ImapBackend`]. [`probe_imap`] and [`probe_smtp`]
//! report what a server offers (used by admin/diagnostic tooling).
//!
//! Errors are classified for the HTTP layer: [`BackendError::AuthFailed`] is a
//! 401, [`BackendError::Unavailable`] a 503 (retry later), the rest are
//! per-request failures. No error or log line built here contains a password.
//!
//! The IMAP client is a small protocol layer of its own ([`imap`], parser in
//! [`imap::parse`]): it needs response codes (RFC 5530), `STATUS (X-GUID)` and
//! LIST-STATUS, which the generic client crates do not parse, and it must never
//! log the LOGIN command.

use std::fmt;
use std::future::Future;
use std::net::IpAddr;
use std::time::Duration;

use crate::uidset::UidSet;

pub mod imap;
pub mod login_gate;
pub mod mailbox;
pub mod pool;
pub mod smtp;
pub mod submit;
pub mod tls;
pub mod utf7;

// The paths of the IMAP client's modules before it became `imap/`.
pub use imap::{idle as imap_idle, parse as imap_parse};
pub use imap::{
    probe_imap, FetchedMail, ImapBackend, ImapProbe, ImapSession, MailQuery, MailSearch,
};
pub use mailbox::{MailboxState, MessageMeta};
pub use smtp::probe_smtp;

/// A password or other secret: never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Self {
        Secret(s.into())
    }

    /// The secret itself, for the one place that sends it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl From<String> for Secret {
    fn from(s: String) -> Self {
        Secret(s)
    }
}

impl From<&str> for Secret {
    fn from(s: &str) -> Self {
        Secret(s.to_string())
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// What a user logs in with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credentials {
    /// Full address, already normalised by the caller.
    pub login: String,
    pub password: Secret,
}

/// Transport security towards the mail server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Security {
    /// Plain TCP (only sensible on loopback or a trusted network).
    None,
    /// Plain TCP upgraded with STARTTLS before anything else is sent; the
    /// connection fails if the server does not offer it.
    StartTls,
    /// TLS from the first byte (IMAPS 993, SMTPS 465).
    Tls,
}

/// Where and how to reach the IMAP server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImapSettings {
    pub host: String,
    pub port: u16,
    pub security: Security,
    /// Limit for connecting (TCP + TLS + greeting) and, separately, for each command.
    pub timeout: Duration,
    /// `imap.max_parallel_logins` and `imap.login_queue_secs`: logins in flight at once, shared
    /// by every clone of these settings.
    pub logins: login_gate::LoginGate,
}

/// Where and how to reach the SMTP (submission) server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SmtpSettings {
    pub host: String,
    pub port: u16,
    pub security: Security,
    /// Limit for connecting and for each command.
    pub timeout: Duration,
}

/// Why a backend operation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BackendError {
    /// The server refused the credentials (`[AUTHENTICATIONFAILED]`, a plain NO to LOGIN, ...).
    #[error("authentication failed")]
    AuthFailed,
    /// The server cannot be used right now (connection refused or timed out, BYE,
    /// `[UNAVAILABLE]`, `[LIMIT]`, `[SERVERBUG]`, `[INUSE]`, TLS failure): retry later.
    #[error("mail server unavailable: {0}")]
    Unavailable(String),
    /// The mailbox or message does not exist (`[NONEXISTENT]`).
    #[error("not found: {0}")]
    NotFound(String),
    /// The server refused the operation (NO without a more specific code).
    #[error("rejected by the mail server: {0}")]
    Rejected(String),
    /// The server said something we cannot understand, or BAD to our command.
    #[error("mail server protocol error: {0}")]
    Protocol(String),
}

/// Well-known roles of mailboxes (RFC 6154 special-use, and INBOX).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SpecialUse {
    Inbox,
    Drafts,
    Sent,
    Trash,
    Junk,
    Archive,
    /// A virtual "all mail" mailbox (`\All`): callers normally leave it out.
    All,
    /// A virtual "flagged" mailbox (`\Flagged`): callers normally leave it out.
    Flagged,
}

/// One mailbox of the user's personal namespace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MailFolder {
    /// Raw IMAP name as on the wire (modified UTF-7); use it in commands.
    pub name: String,
    /// Leaf name decoded to UTF-8 (the raw leaf when it is not valid modified UTF-7).
    pub display_name: String,
    /// Raw name of the parent, from the delimiter; `None` at the top level.
    pub parent: Option<String>,
    pub delimiter: Option<char>,
    /// From the SPECIAL-USE attributes; INBOX by name; common names
    /// (Sent Items, Deleted Messages, Spam, ...) when the server marks no
    /// mailbox with that role.
    pub special_use: Option<SpecialUse>,
    /// False for `\Noselect` / `\NonExistent` (hierarchy placeholders).
    pub selectable: bool,
    /// Stable identity: `guid:<X-GUID>` (Dovecot; survives renames),
    /// `mailboxid:<MAILBOXID>` (RFC 8474; survives renames),
    /// else `uv:<UIDVALIDITY>:<raw name>`; `name:<raw name>` for
    /// non-selectable mailboxes or when STATUS fails.
    pub identity: String,
}

/// What a conditional flag store did ([`MailSession::store_flags_unchanged_since`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlagStore {
    Stored,
    /// The mail does not exist.
    Missing,
    /// The mail changed after the given MODSEQ; nothing was stored.
    Modified,
}

/// One MIME part of a stored mail, as IMAP BODYSTRUCTURE describes it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MimePart {
    /// IMAP section (`1`, `2.1`); empty for the top level of a multipart mail. A mail that is
    /// not multipart is one part, section `1`.
    pub section: String,
    /// The part's MIME header as stored (the message header for the top level).
    pub header: bytes::Bytes,
    /// `type/subtype`, lower case.
    pub content_type: String,
    /// Content-Transfer-Encoding, lower case (empty for multiparts).
    pub encoding: String,
    /// Size as stored (encoded), in bytes.
    pub size: u64,
    /// The boundary of a multipart (empty otherwise).
    pub boundary: String,
    /// The parts of a multipart, in order.
    pub children: Vec<MimePart>,
}

/// A mail server that users log in to.
pub trait MailBackend: Clone + Send + Sync + 'static {
    type Session: MailSession;

    /// Connect and authenticate. `client_ip` is passed on to the server (IMAP ID
    /// `x-originating-ip`) so its logs and rate limits see the device's address.
    fn login(
        &self,
        creds: &Credentials,
        client_ip: Option<IpAddr>,
    ) -> impl Future<Output = Result<Self::Session, BackendError>> + Send;
}

/// An authenticated connection to the mail server.
pub trait MailSession: Send + 'static {
    /// Post-login capabilities, upper-cased (e.g. `CONDSTORE`, `AUTH=PLAIN`).
    fn capabilities(&self) -> &[String];

    /// The personal mailboxes: INBOX first, then by raw name (so every
    /// parent comes before its children).
    fn list_folders(
        &mut self,
    ) -> impl Future<Output = Result<Vec<MailFolder>, BackendError>> + Send;

    /// Log out politely; errors are ignored (the connection is closed either way).
    fn logout(self) -> impl Future<Output = ()> + Send;

    /// False once the connection broke (I/O error, timeout, BYE): it must not be reused.
    fn is_usable(&self) -> bool;

    /// A round trip that proves the connection still works.
    fn noop(&mut self) -> impl Future<Output = Result<(), BackendError>> + Send;

    /// SELECTs a mailbox (CONDSTORE on when available) and returns its state.
    fn select(
        &mut self,
        mailbox: &str,
    ) -> impl Future<Output = Result<MailboxState, BackendError>> + Send;

    /// STATUS of a mailbox without selecting it.
    fn status(
        &mut self,
        mailbox: &str,
    ) -> impl Future<Output = Result<MailboxState, BackendError>> + Send;

    /// UIDs with INTERNALDATE on or after `since` (unix seconds), or all.
    fn search_since(
        &mut self,
        mailbox: &str,
        since: Option<i64>,
    ) -> impl Future<Output = Result<UidSet, BackendError>> + Send;

    /// The subset of `uids` that still exists.
    fn existing(
        &mut self,
        mailbox: &str,
        uids: &UidSet,
    ) -> impl Future<Output = Result<UidSet, BackendError>> + Send;

    /// Metadata of `uids`; with `changed_since`, only those with a higher MODSEQ.
    fn fetch_meta(
        &mut self,
        mailbox: &str,
        uids: &UidSet,
        changed_since: Option<u64>,
    ) -> impl Future<Output = Result<Vec<MessageMeta>, BackendError>> + Send;

    /// Whole messages, read without setting `\Seen`; missing UIDs are left out.
    fn fetch_messages(
        &mut self,
        mailbox: &str,
        uids: &[u32],
    ) -> impl Future<Output = Result<Vec<(MessageMeta, bytes::Bytes)>, BackendError>> + Send;

    /// Mails to show on a device, read without setting `\Seen`; missing UIDs are left out.
    /// A mail with attachments may come without their bodies ([`FetchedMail::omitted`]);
    /// callers that need the whole message use [`MailSession::fetch_messages`].
    fn fetch_for_display(
        &mut self,
        mailbox: &str,
        uids: &[u32],
    ) -> impl Future<Output = Result<Vec<FetchedMail>, BackendError>> + Send;

    /// Adds and removes flags on one mail; `false` when it does not exist.
    fn store_flags(
        &mut self,
        mailbox: &str,
        uid: u32,
        add: &[String],
        remove: &[String],
    ) -> impl Future<Output = Result<bool, BackendError>> + Send;

    /// Adds and removes flags on one mail only if its MODSEQ is still at most `modseq`
    /// (RFC 7162 `UNCHANGEDSINCE`; needs CONDSTORE, enabled by [`MailSession::select`]).
    fn store_flags_unchanged_since(
        &mut self,
        mailbox: &str,
        uid: u32,
        add: &[String],
        remove: &[String],
        modseq: u64,
    ) -> impl Future<Output = Result<FlagStore, BackendError>> + Send;

    /// Moves mails; returns (old, new) UID pairs when the server reports them.
    fn move_messages(
        &mut self,
        mailbox: &str,
        uids: &[u32],
        target: &str,
    ) -> impl Future<Output = Result<Vec<(u32, u32)>, BackendError>> + Send;

    /// Deletes exactly these mails.
    fn expunge(
        &mut self,
        mailbox: &str,
        uids: &[u32],
    ) -> impl Future<Output = Result<(), BackendError>> + Send;

    /// Appends a message; its new UID when the server reports it.
    fn append(
        &mut self,
        mailbox: &str,
        flags: &[String],
        raw: Vec<u8>,
    ) -> impl Future<Output = Result<Option<u32>, BackendError>> + Send {
        self.append_parts(mailbox, flags, vec![bytes::Bytes::from(raw)])
    }

    /// Appends a message given as pieces in order (e.g. a new header and a body shared with
    /// another copy), without joining them in memory first.
    fn append_parts(
        &mut self,
        mailbox: &str,
        flags: &[String],
        parts: Vec<bytes::Bytes>,
    ) -> impl Future<Output = Result<Option<u32>, BackendError>> + Send;

    fn create_folder(
        &mut self,
        name: &str,
    ) -> impl Future<Output = Result<(), BackendError>> + Send;
    fn delete_folder(
        &mut self,
        name: &str,
    ) -> impl Future<Output = Result<(), BackendError>> + Send;
    fn rename_folder(
        &mut self,
        from: &str,
        to: &str,
    ) -> impl Future<Output = Result<(), BackendError>> + Send;

    // Single MIME parts (imap/parts.rs): attachments are read part by part, never whole.

    /// The MIME tree of one mail with every part's header; `None` when the mail is gone.
    fn mime_tree(
        &mut self,
        mailbox: &str,
        uid: u32,
    ) -> impl Future<Output = Result<Option<MimePart>, BackendError>> + Send;

    /// The decoded size of a part (IMAP BINARY); `None` when the mail is gone.
    fn binary_size(
        &mut self,
        mailbox: &str,
        uid: u32,
        section: &str,
    ) -> impl Future<Output = Result<Option<u64>, BackendError>> + Send;

    /// Up to `len` bytes of a part from `offset`, decoded by the server when `binary`, else as
    /// stored; read without setting `\Seen`. `None` when the mail is gone.
    fn fetch_part_range(
        &mut self,
        mailbox: &str,
        uid: u32,
        section: &str,
        binary: bool,
        offset: u64,
        len: u64,
    ) -> impl Future<Output = Result<Option<bytes::Bytes>, BackendError>> + Send;

    /// The threading header fields (Message-ID, References, In-Reply-To, Subject, Date) of
    /// `uids` with their metadata; missing UIDs are left out.
    fn fetch_thread_headers(
        &mut self,
        mailbox: &str,
        uids: &UidSet,
    ) -> impl Future<Output = Result<Vec<(MessageMeta, bytes::Bytes)>, BackendError>> + Send;

    // Search and Find (imap/search.rs).

    /// The mails of `mailbox` matching `query`, newest INTERNALDATE first, with the
    /// mailbox's UIDVALIDITY.
    fn search_mail(
        &mut self,
        mailbox: &str,
        query: &MailQuery,
    ) -> impl Future<Output = Result<MailSearch, BackendError>> + Send;
}

/// Trim a server-provided text for use in an error: printable, bounded.
pub(crate) fn server_text(s: &str) -> String {
    const MAX: usize = 200;
    let mut out: String = s
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(MAX)
        .collect();
    if s.chars().count() > MAX {
        out.push('…');
    }
    out.trim().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_never_prints() {
        let c = Credentials {
            login: "alice@example.test".into(),
            password: Secret::new("hunter2"),
        };
        assert_eq!(format!("{}", c.password), "***");
        assert!(!format!("{c:?}").contains("hunter2"));
        assert_eq!(c.password.expose(), "hunter2");
    }

    #[test]
    fn server_text_is_bounded_and_printable() {
        assert_eq!(server_text("a\r\nb"), "a  b");
        let long = "x".repeat(500);
        assert_eq!(server_text(&long).chars().count(), 201);
    }

    #[test]
    fn security_from_config_words() {
        #[derive(serde::Deserialize)]
        struct S {
            s: Security,
        }
        let v: S = toml::from_str("s = \"starttls\"").unwrap();
        assert_eq!(v.s, Security::StartTls);
        let v: S = toml::from_str("s = \"tls\"").unwrap();
        assert_eq!(v.s, Security::Tls);
        let v: S = toml::from_str("s = \"none\"").unwrap();
        assert_eq!(v.s, Security::None);
    }
}
