//! An authenticated IMAP connection and its [`MailSession`] implementation: every operation
//! of the trait is written here once, with helpers by job in `folders`, `mailbox`, `display`,
//! `parts` and `search`.
//!
//! Invariants: mail is only ever read with `.PEEK` (reading on a phone never sets `\Seen`);
//! `selected` names the mailbox the server has selected, and every per-mailbox operation
//! selects its mailbox first.

use bytes::Bytes;
use tokio::io::BufReader;

use super::command::{has_cap, Command, Completed};
use super::engine::ImapConn;
use super::folders::build_folders;
use super::mailbox::{
    chunks, copyuid, fetch_uid, flag_list, imap_date, parse_fetch, search_uids, select_state,
    status_state, take_fetch_str, WHOLE_CHUNK,
};
use super::parse::{Item, Namespaces, Response};
use super::parts::{fetch_value, fill_headers, header_command};
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

    /// The connection's buffered stream, for IDLE (`idle.rs`), which reads untagged
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

    /// UNSELECT when `mailbox` is selected (before it is deleted or renamed).
    async fn unselect_if(&mut self, mailbox: &str) {
        if self.selected() == Some(mailbox) {
            let _ = self.run(&Command::new("UNSELECT")).await;
            self.set_selected(None);
        }
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
        self.run_ok(&Command::new("NOOP")).await.map(|_| ())
    }

    /// Re-SELECTing a large mailbox is expensive (tens of ms at 20,000 mails), so an already
    /// selected one is brought up to date with NOOP and read with STATUS instead.
    async fn select(&mut self, mailbox: &str) -> Result<MailboxState, BackendError> {
        if self.selected() == Some(mailbox) {
            return self.status(mailbox).await;
        }
        let mut cmd = Command::new("SELECT").astring(mailbox);
        if self.has_capability("CONDSTORE") {
            cmd = cmd.raw(" (CONDSTORE)");
        }
        let c = self.run_ok(&cmd).await?;
        self.set_selected(Some(mailbox.to_string()));
        Ok(select_state(&c))
    }

    /// The cheap "did anything change" check.
    async fn status(&mut self, mailbox: &str) -> Result<MailboxState, BackendError> {
        let items = if self.has_capability("CONDSTORE") {
            " (UIDVALIDITY UIDNEXT MESSAGES HIGHESTMODSEQ)"
        } else {
            " (UIDVALIDITY UIDNEXT MESSAGES)"
        };
        // STATUS of the selected mailbox answers from this session's view of it, which only
        // catches up on the next command: a NOOP brings it up to date first. Not pipelined:
        // Dovecot answers a STATUS sent along with a NOOP before the NOOP has caught up.
        if self.selected() == Some(mailbox) {
            self.run_ok(&Command::new("NOOP")).await?;
        }
        let c = self
            .run_ok(&Command::new("STATUS").astring(mailbox).raw(items))
            .await?;
        status_state(&c)
    }

    async fn search_since(
        &mut self,
        mailbox: &str,
        since: Option<i64>,
    ) -> Result<UidSet, BackendError> {
        self.ensure_selected(mailbox).await?;
        let criteria = match since {
            Some(t) => format!(" SINCE {}", imap_date(t)),
            None => " ALL".to_string(),
        };
        self.uid_search(&criteria).await
    }

    async fn existing(&mut self, mailbox: &str, uids: &UidSet) -> Result<UidSet, BackendError> {
        self.ensure_selected(mailbox).await?;
        let mut out = UidSet::new();
        for chunk in chunks(uids) {
            out = out.union(&self.uid_search(&format!(" UID {chunk}")).await?);
        }
        Ok(out)
    }

    /// Flags, INTERNALDATE, size and MODSEQ; `changed_since` needs CONDSTORE (without it,
    /// all of `uids`).
    async fn fetch_meta(
        &mut self,
        mailbox: &str,
        uids: &UidSet,
        changed_since: Option<u64>,
    ) -> Result<Vec<MessageMeta>, BackendError> {
        self.ensure_selected(mailbox).await?;
        let condstore = self.has_capability("CONDSTORE");
        let items = self.meta_items();
        let cmds = chunks(uids).into_iter().map(|chunk| {
            let mut args = format!(" {chunk} ({items})");
            if let (Some(m), true) = (changed_since, condstore) {
                args.push_str(&format!(" (CHANGEDSINCE {m})"));
            }
            Command::new("UID FETCH").raw(&args)
        });
        let mut done = self.fetch_pipeline(cmds.collect()).await?;
        Ok(done
            .iter_mut()
            .flat_map(|c| c.data_mut("FETCH"))
            .filter_map(|items| parse_fetch(items).map(|(meta, _)| meta))
            .collect())
    }

    /// `BODY.PEEK[]` with the metadata.
    async fn fetch_messages(
        &mut self,
        mailbox: &str,
        uids: &[u32],
    ) -> Result<Vec<(MessageMeta, Bytes)>, BackendError> {
        self.ensure_selected(mailbox).await?;
        let items = self.meta_items();
        let cmds = uids.chunks(WHOLE_CHUNK).map(|chunk| {
            let set = UidSet::from_uids(chunk.iter().copied());
            Command::new("UID FETCH").raw(&format!(" {set} ({items} BODY.PEEK[])"))
        });
        self.fetch_with_section(cmds.collect()).await
    }

    /// In no particular order. Mails with attachments are read without the attachments'
    /// bodies (see `display.rs`); without the server's BINARY extension every mail is read
    /// whole.
    async fn fetch_for_display(
        &mut self,
        mailbox: &str,
        uids: &[u32],
    ) -> Result<Vec<FetchedMail>, BackendError> {
        if uids.is_empty() {
            return Ok(Vec::new());
        }
        if !self.has_capability("BINARY") {
            return Ok(FetchedMail::all_whole(
                self.fetch_messages(mailbox, uids).await?,
            ));
        }
        self.ensure_selected(mailbox).await?;
        // 1. Metadata and the first bytes of every mail: all of most mails.
        let (mut out, large) = self.fetch_prefixes(uids).await?;
        if large.is_empty() {
            return Ok(out);
        }
        // 2. The structure of the large mails: which parts can be left out.
        let (whole, partial) = self.plan_large(large).await?;
        // 3. Whole mails in size-bounded chunks, the others part by part, in one pipeline.
        let retry = self.fetch_planned(&whole, &partial, &mut out).await?;
        if !retry.is_empty() {
            let mails = self.fetch_messages(mailbox, &retry).await?;
            out.extend(FetchedMail::all_whole(mails));
        }
        Ok(out)
    }

    async fn store_flags(
        &mut self,
        mailbox: &str,
        uid: u32,
        add: &[String],
        remove: &[String],
    ) -> Result<bool, BackendError> {
        let r = self
            .store_flag_changes(mailbox, uid, add, remove, None)
            .await?;
        Ok(r != FlagStore::Missing)
    }

    /// RFC 7162 3.1.3.
    async fn store_flags_unchanged_since(
        &mut self,
        mailbox: &str,
        uid: u32,
        add: &[String],
        remove: &[String],
        modseq: u64,
    ) -> Result<FlagStore, BackendError> {
        self.store_flag_changes(mailbox, uid, add, remove, Some(modseq))
            .await
    }

    /// UID MOVE (RFC 6851), else COPY + \Deleted + UID EXPUNGE; the pairs from COPYUID
    /// (RFC 4315), possibly none.
    async fn move_messages(
        &mut self,
        mailbox: &str,
        uids: &[u32],
        target: &str,
    ) -> Result<Vec<(u32, u32)>, BackendError> {
        self.ensure_selected(mailbox).await?;
        let set = UidSet::from_uids(uids.iter().copied());
        if set.is_empty() {
            return Ok(Vec::new());
        }
        let mut pairs = Vec::new();
        if self.has_capability("MOVE") {
            let cmd = Command::new("UID MOVE")
                .raw(&format!(" {set}"))
                .astring(target);
            let c = self.run_ok(&cmd).await?;
            for r in &c.untagged {
                if let Response::Status(s) = r {
                    pairs.extend(copyuid(s));
                }
            }
            pairs.extend(copyuid(&c.done));
        } else {
            let cmd = Command::new("UID COPY")
                .raw(&format!(" {set}"))
                .astring(target);
            let c = self.run_ok(&cmd).await?;
            pairs.extend(copyuid(&c.done));
            self.expunge(mailbox, uids).await?;
        }
        Ok(pairs)
    }

    /// Marks the mails \Deleted and expunges exactly them (UID EXPUNGE with UIDPLUS).
    async fn expunge(&mut self, mailbox: &str, uids: &[u32]) -> Result<(), BackendError> {
        self.ensure_selected(mailbox).await?;
        let set = UidSet::from_uids(uids.iter().copied());
        if set.is_empty() {
            return Ok(());
        }
        self.run_ok(&Command::new("UID STORE").raw(&format!(" {set} +FLAGS.SILENT (\\Deleted)")))
            .await?;
        if self.has_capability("UIDPLUS") {
            self.run_ok(&Command::new("UID EXPUNGE").raw(&format!(" {set}")))
                .await?;
        } else {
            self.run_ok(&Command::new("EXPUNGE")).await?;
        }
        Ok(())
    }

    /// The new UID from APPENDUID (RFC 4315).
    async fn append_parts(
        &mut self,
        mailbox: &str,
        flags: &[String],
        parts: Vec<Bytes>,
    ) -> Result<Option<u32>, BackendError> {
        let cmd = Command::new("APPEND")
            .astring(mailbox)
            .raw(&format!(" ({})", flag_list(flags)))
            .literal_parts(parts);
        let c = self.run_ok(&cmd).await?;
        Ok(c.done
            .code
            .as_ref()
            .filter(|code| code.name == "APPENDUID")
            .and_then(|code| code.args.as_deref())
            .and_then(|a| a.split_whitespace().nth(1))
            .and_then(|u| u.parse().ok()))
    }

    async fn create_folder(&mut self, name: &str) -> Result<(), BackendError> {
        self.run_ok(&Command::new("CREATE").astring(name)).await?;
        let _ = self.run(&Command::new("SUBSCRIBE").astring(name)).await;
        Ok(())
    }

    async fn delete_folder(&mut self, name: &str) -> Result<(), BackendError> {
        self.unselect_if(name).await;
        self.run_ok(&Command::new("DELETE").astring(name)).await?;
        Ok(())
    }

    async fn rename_folder(&mut self, from: &str, to: &str) -> Result<(), BackendError> {
        self.unselect_if(from).await;
        self.run_ok(&Command::new("RENAME").astring(from).astring(to))
            .await?;
        let _ = self.run(&Command::new("SUBSCRIBE").astring(to)).await;
        Ok(())
    }

    async fn mime_tree(
        &mut self,
        mailbox: &str,
        uid: u32,
    ) -> Result<Option<MimePart>, BackendError> {
        self.ensure_selected(mailbox).await?;
        let Some(parsed) = self.structures(&[uid]).await?.remove(&uid) else {
            return Ok(None);
        };
        let mut root = parsed
            .ok_or_else(|| BackendError::Protocol("unparseable BODYSTRUCTURE".to_string()))?;
        let c = self.run_ok(&header_command(uid, &root)?).await?;
        let Some(items) = c.data("FETCH").find(|items| fetch_uid(items) == Some(uid)) else {
            return Ok(None);
        };
        fill_headers(&mut root, items);
        Ok(Some(root))
    }

    /// `BINARY.SIZE` (RFC 3516).
    async fn binary_size(
        &mut self,
        mailbox: &str,
        uid: u32,
        section: &str,
    ) -> Result<Option<u64>, BackendError> {
        self.ensure_selected(mailbox).await?;
        let c = self
            .run_ok(&Command::new("UID FETCH").raw(&format!(" {uid} (UID BINARY.SIZE[{section}])")))
            .await?;
        let key = format!("BINARY.SIZE[{section}]");
        let size = c
            .data("FETCH")
            .find_map(|items| fetch_value(items, uid, &key).and_then(Item::as_u64));
        Ok(size)
    }

    /// `BINARY.PEEK[section]<offset.length>` or `BODY.PEEK[...]`; fewer bytes (or none) past
    /// the part's end.
    async fn fetch_part_range(
        &mut self,
        mailbox: &str,
        uid: u32,
        section: &str,
        binary: bool,
        offset: u64,
        len: u64,
    ) -> Result<Option<Bytes>, BackendError> {
        self.ensure_selected(mailbox).await?;
        let (item, answer) = if binary {
            ("BINARY.PEEK", "BINARY")
        } else {
            ("BODY.PEEK", "BODY")
        };
        let mut c = self
            .run_ok(
                &Command::new("UID FETCH")
                    .raw(&format!(" {uid} (UID {item}[{section}]<{offset}.{len}>)")),
            )
            .await?;
        let key = format!("{answer}[{section}]");
        let part = c
            .data_mut("FETCH")
            .find(|items| fetch_value(items, uid, &key).is_some())
            .map(|items| Bytes::from(take_fetch_str(items, &key).unwrap_or_default()));
        Ok(part)
    }

    async fn fetch_thread_headers(
        &mut self,
        mailbox: &str,
        uids: &UidSet,
    ) -> Result<Vec<(MessageMeta, Bytes)>, BackendError> {
        self.ensure_selected(mailbox).await?;
        let cmds = chunks(uids).into_iter().map(|chunk| {
            Command::new("UID FETCH").raw(&format!(
                " {chunk} (UID FLAGS INTERNALDATE \
                 BODY.PEEK[HEADER.FIELDS (MESSAGE-ID REFERENCES IN-REPLY-TO SUBJECT DATE)])"
            ))
        });
        self.fetch_with_section(cmds.collect()).await
    }

    async fn search_mail(
        &mut self,
        mailbox: &str,
        query: &MailQuery,
    ) -> Result<MailSearch, BackendError> {
        let state = self.select(mailbox).await?;
        let mut out = MailSearch {
            uid_validity: state.uid_validity,
            hits: Vec::new(),
        };
        if state.messages == 0 {
            return Ok(out);
        }
        let esearch = self.has_capability("ESEARCH");
        let c = self.run_ok(&query.command(esearch)).await?;
        let uids = search_uids(&c, esearch)?;
        if !uids.is_empty() {
            out.hits = self.dated_hits(&uids, query).await?;
        }
        Ok(out)
    }
}
