//! An authenticated IMAP connection and its [`MailSession`] implementation.

use bytes::Bytes;
use tokio::io::BufReader;

use super::command::{has_cap, Command, Completed};
use super::engine::ImapConn;
use super::folders::build_folders;
use super::parse::Namespaces;
use super::transport::NetStream;
use super::{FetchedMail, MailQuery, MailSearch};
use crate::backend::{
    BackendError, FlagStore, MailFolder, MailSession, MailboxState, MessageMeta, MimePart,
};
use crate::uidset::UidSet;

/// An authenticated IMAP connection.
#[derive(Debug)]
pub struct ImapSession {
    pub(super) conn: ImapConn<NetStream>,
    pub(super) caps: Vec<String>,
    pub(super) namespaces: Option<Namespaces>,
    /// Whether `STATUS (X-GUID)` works; `None` until tried.
    pub(super) xguid: Option<bool>,
    /// The mailbox currently selected, if any.
    selected: Option<String>,
}

impl ImapSession {
    pub(super) fn new(conn: ImapConn<NetStream>, caps: Vec<String>) -> Self {
        ImapSession {
            conn,
            caps,
            namespaces: None,
            xguid: None,
            selected: None,
        }
    }

    pub(crate) fn selected(&self) -> Option<&str> {
        self.selected.as_deref()
    }

    pub(crate) fn set_selected(&mut self, mailbox: Option<String>) {
        self.selected = mailbox;
    }

    /// Run a command; any completion status is returned as is.
    pub async fn run(&mut self, cmd: &Command) -> Result<Completed, BackendError> {
        self.conn.run(cmd).await
    }

    /// The connection's buffered stream, for IDLE (`imap_idle.rs`), which reads untagged
    /// responses as they arrive instead of per command. Callers leave it at a response boundary.
    pub(crate) fn raw_io(&mut self) -> &mut BufReader<NetStream> {
        self.conn.io_mut()
    }

    /// True when the server advertised this capability after login.
    pub fn has_capability(&self, cap: &str) -> bool {
        has_cap(&self.caps, cap)
    }

    /// Run a command and require OK (for callers building on this session).
    pub async fn run_ok(&mut self, cmd: &Command) -> Result<Completed, BackendError> {
        self.conn.run_ok(cmd).await
    }

    /// Send several commands at once; completions in the commands' order (NO/BAD included),
    /// untagged data with whichever completion followed it (see [`ImapConn::pipeline`]).
    pub async fn pipeline(&mut self, cmds: &[Command]) -> Result<Vec<Completed>, BackendError> {
        self.conn.pipeline(cmds).await
    }
}

impl MailSession for ImapSession {
    fn capabilities(&self) -> &[String] {
        &self.caps
    }

    async fn list_folders(&mut self) -> Result<Vec<MailFolder>, BackendError> {
        let namespaces = self.namespaces().await?.clone();
        let (entries, statuses) = self.list_with_status().await?;
        Ok(build_folders(&entries, &statuses, &namespaces))
    }

    async fn logout(self) {
        self.conn.logout().await;
    }

    fn is_usable(&self) -> bool {
        self.conn.is_usable()
    }

    async fn noop(&mut self) -> Result<(), BackendError> {
        self.conn.run_ok(&Command::new("NOOP")).await.map(|_| ())
    }

    async fn select(&mut self, mailbox: &str) -> Result<MailboxState, BackendError> {
        self.select_mailbox(mailbox).await
    }

    async fn status(&mut self, mailbox: &str) -> Result<MailboxState, BackendError> {
        self.mailbox_status(mailbox).await
    }

    async fn search_since(
        &mut self,
        mailbox: &str,
        since: Option<i64>,
    ) -> Result<UidSet, BackendError> {
        ImapSession::search_since(self, mailbox, since).await
    }

    async fn existing(&mut self, mailbox: &str, uids: &UidSet) -> Result<UidSet, BackendError> {
        self.existing_uids(mailbox, uids).await
    }

    async fn fetch_meta(
        &mut self,
        mailbox: &str,
        uids: &UidSet,
        changed_since: Option<u64>,
    ) -> Result<Vec<MessageMeta>, BackendError> {
        self.fetch_meta_uids(mailbox, uids, changed_since).await
    }

    async fn fetch_messages(
        &mut self,
        mailbox: &str,
        uids: &[u32],
    ) -> Result<Vec<(MessageMeta, Bytes)>, BackendError> {
        self.fetch_full(mailbox, uids).await
    }

    async fn fetch_for_display(
        &mut self,
        mailbox: &str,
        uids: &[u32],
    ) -> Result<Vec<FetchedMail>, BackendError> {
        self.fetch_display(mailbox, uids).await
    }

    async fn store_flags(
        &mut self,
        mailbox: &str,
        uid: u32,
        add: &[String],
        remove: &[String],
    ) -> Result<bool, BackendError> {
        self.store_uid_flags(mailbox, uid, add, remove).await
    }

    async fn store_flags_unchanged_since(
        &mut self,
        mailbox: &str,
        uid: u32,
        add: &[String],
        remove: &[String],
        modseq: u64,
    ) -> Result<FlagStore, BackendError> {
        self.store_uid_flags_unchanged_since(mailbox, uid, add, remove, modseq)
            .await
    }

    async fn move_messages(
        &mut self,
        mailbox: &str,
        uids: &[u32],
        target: &str,
    ) -> Result<Vec<(u32, u32)>, BackendError> {
        self.move_uids(mailbox, uids, target).await
    }

    async fn expunge(&mut self, mailbox: &str, uids: &[u32]) -> Result<(), BackendError> {
        self.expunge_uids(mailbox, uids).await
    }

    async fn append_parts(
        &mut self,
        mailbox: &str,
        flags: &[String],
        parts: Vec<Bytes>,
    ) -> Result<Option<u32>, BackendError> {
        self.append_message(mailbox, flags, parts).await
    }

    async fn create_folder(&mut self, name: &str) -> Result<(), BackendError> {
        self.create_mailbox(name).await
    }

    async fn delete_folder(&mut self, name: &str) -> Result<(), BackendError> {
        self.delete_mailbox(name).await
    }

    async fn rename_folder(&mut self, from: &str, to: &str) -> Result<(), BackendError> {
        self.rename_mailbox(from, to).await
    }

    async fn mime_tree(
        &mut self,
        mailbox: &str,
        uid: u32,
    ) -> Result<Option<MimePart>, BackendError> {
        ImapSession::mime_tree(self, mailbox, uid).await
    }

    async fn binary_size(
        &mut self,
        mailbox: &str,
        uid: u32,
        section: &str,
    ) -> Result<Option<u64>, BackendError> {
        ImapSession::binary_size(self, mailbox, uid, section).await
    }

    async fn fetch_part_range(
        &mut self,
        mailbox: &str,
        uid: u32,
        section: &str,
        binary: bool,
        offset: u64,
        len: u64,
    ) -> Result<Option<Bytes>, BackendError> {
        ImapSession::fetch_part_range(self, mailbox, uid, section, binary, offset, len).await
    }

    async fn fetch_thread_headers(
        &mut self,
        mailbox: &str,
        uids: &UidSet,
    ) -> Result<Vec<(MessageMeta, Bytes)>, BackendError> {
        ImapSession::fetch_thread_headers(self, mailbox, uids).await
    }

    // Search and Find (imap_search.rs).

    async fn search_mail(
        &mut self,
        mailbox: &str,
        query: &MailQuery,
    ) -> Result<MailSearch, BackendError> {
        self.search_mailbox(mailbox, query).await
    }
}
