//! Types of the per-mailbox operations of a [`super::MailSession`]: state, message metadata.

/// What STATUS or SELECT tells about a mailbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct MailboxState {
    pub uid_validity: u32,
    pub uid_next: u32,
    pub messages: u32,
    /// 0 when the server has no CONDSTORE (or the mailbox has no mod-sequences).
    pub highest_modseq: u64,
}

/// One message's metadata, as UID FETCH returns it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MessageMeta {
    pub uid: u32,
    /// Every flag and keyword as sent by the server (`\Seen`, `$Forwarded`, ...).
    pub flags: Vec<String>,
    /// INTERNALDATE, unix seconds.
    pub internal_date: i64,
    /// RFC822.SIZE.
    pub size: u32,
    /// 0 without CONDSTORE.
    pub modseq: u64,
}

impl MessageMeta {
    pub fn has_flag(&self, flag: &str) -> bool {
        self.flags.iter().any(|f| f.eq_ignore_ascii_case(flag))
    }
}
