//! An in-memory mail server behind [`MailSession`], for testing the Sync phases without IMAP:
//! mailboxes with UIDVALIDITY and UIDNEXT, mails with UIDs, flags, INTERNALDATE and MODSEQ
//! (CONDSTORE, which can be switched off), expunge and move. Every session of a
//! [`FakeServer`] sees the same mailboxes, as sessions of one IMAP server do.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;

use crate::backend::{
    BackendError, Credentials, FetchedMail, FlagStore, MailBackend, MailFolder, MailQuery,
    MailSearch, MailSession, MailboxState, MessageMeta, MimePart, SpecialUse,
};
use crate::uidset::UidSet;

/// One stored mail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mail {
    pub flags: Vec<String>,
    pub internal_date: i64,
    pub raw: Bytes,
    pub modseq: u64,
}

/// One mailbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mailbox {
    pub special_use: Option<SpecialUse>,
    pub uid_validity: u32,
    pub uid_next: u32,
    pub highest_modseq: u64,
    /// Stable identity (survives renames), like Dovecot's X-GUID.
    pub guid: u32,
    pub mails: BTreeMap<u32, Mail>,
}

impl Mailbox {
    /// Gives the next mod-sequence (every change raises HIGHESTMODSEQ).
    fn bump(&mut self) -> u64 {
        self.highest_modseq += 1;
        self.highest_modseq
    }
}

/// The whole server: its mailboxes and whether it has CONDSTORE.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mailboxes {
    pub boxes: BTreeMap<String, Mailbox>,
    pub condstore: bool,
    /// Mails expunged by another client just before the next FETCH of their mailbox.
    pub vanish_on_fetch: Vec<(String, u32)>,
    next_guid: u32,
    next_uid_validity: u32,
}

/// An in-memory IMAP server; also its own [`MailBackend`] (any credentials log in).
#[derive(Debug, Clone)]
pub struct FakeServer(Arc<Mutex<Mailboxes>>);

impl Default for FakeServer {
    fn default() -> Self {
        let server = FakeServer(Arc::new(Mutex::new(Mailboxes {
            boxes: BTreeMap::new(),
            condstore: true,
            vanish_on_fetch: Vec::new(),
            next_guid: 1,
            next_uid_validity: 1000,
        })));
        server.create("INBOX", Some(SpecialUse::Inbox));
        server.create("Trash", Some(SpecialUse::Trash));
        server.create("Drafts", Some(SpecialUse::Drafts));
        server
    }
}

fn not_found(mailbox: &str) -> BackendError {
    BackendError::NotFound(format!("no mailbox {mailbox}"))
}

fn header_of(raw: &[u8]) -> &[u8] {
    match raw.windows(4).position(|w| w == b"\r\n\r\n") {
        Some(i) => &raw[..i + 4],
        None => raw,
    }
}

fn body_of(raw: &[u8]) -> &[u8] {
    &raw[header_of(raw).len()..]
}

impl FakeServer {
    pub fn lock(&self) -> MutexGuard<'_, Mailboxes> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A snapshot of every mailbox, to compare before and after.
    pub fn snapshot(&self) -> Mailboxes {
        self.lock().clone()
    }

    pub fn set_condstore(&self, on: bool) {
        self.lock().condstore = on;
    }

    /// Creates a mailbox (no-op when it exists).
    pub fn create(&self, name: &str, special_use: Option<SpecialUse>) {
        let mut s = self.lock();
        if s.boxes.contains_key(name) {
            return;
        }
        let (guid, uid_validity) = (s.next_guid, s.next_uid_validity);
        s.next_guid += 1;
        s.next_uid_validity += 1;
        s.boxes.insert(
            name.to_string(),
            Mailbox {
                special_use,
                uid_validity,
                uid_next: 1,
                highest_modseq: 1,
                guid,
                mails: BTreeMap::new(),
            },
        );
    }

    /// Delivers a mail with INTERNALDATE `date`; its UID.
    pub fn deliver(&self, mailbox: &str, subject: &str, date: i64) -> u32 {
        let raw = format!(
            "From: a@example.test\r\nTo: b@example.test\r\nSubject: {subject}\r\n\
             Message-ID: <{subject}@example.test>\r\nContent-Type: text/plain\r\n\r\n\
             Body of {subject}\r\n"
        );
        self.append_raw(mailbox, &[], Bytes::from(raw), date)
            .expect("mailbox exists")
    }

    fn append_raw(
        &self,
        mailbox: &str,
        flags: &[String],
        raw: Bytes,
        date: i64,
    ) -> Result<u32, BackendError> {
        let mut s = self.lock();
        let b = s.boxes.get_mut(mailbox).ok_or_else(|| not_found(mailbox))?;
        let uid = b.uid_next;
        b.uid_next += 1;
        let modseq = b.bump();
        b.mails.insert(
            uid,
            Mail {
                flags: flags.to_vec(),
                internal_date: date,
                raw,
                modseq,
            },
        );
        Ok(uid)
    }

    /// Another client changes a mail's flags; `false` when it does not exist.
    pub fn set_flags(&self, mailbox: &str, uid: u32, add: &[&str], remove: &[&str]) -> bool {
        let add: Vec<String> = add.iter().map(|f| f.to_string()).collect();
        let remove: Vec<String> = remove.iter().map(|f| f.to_string()).collect();
        self.lock()
            .store(mailbox, uid, &add, &remove)
            .unwrap_or(false)
    }

    /// Another client expunges a mail.
    pub fn expunge_one(&self, mailbox: &str, uid: u32) {
        self.lock()
            .expunge(mailbox, &[uid])
            .expect("mailbox exists");
    }

    /// Another client expunges the mail between the next search and FETCH of its mailbox.
    pub fn vanish_on_fetch(&self, mailbox: &str, uid: u32) {
        self.lock().vanish_on_fetch.push((mailbox.to_string(), uid));
    }

    /// The mailbox is recreated under the same name: every UID is void.
    pub fn reset_uid_validity(&self, mailbox: &str) {
        let mut s = self.lock();
        let uv = s.next_uid_validity;
        s.next_uid_validity += 1;
        if let Some(b) = s.boxes.get_mut(mailbox) {
            b.uid_validity = uv;
        }
    }

    /// The UIDs of a mailbox.
    pub fn uids(&self, mailbox: &str) -> Vec<u32> {
        self.lock().boxes[mailbox].mails.keys().copied().collect()
    }

    /// The flags of one mail (`None` when it is gone).
    pub fn flags(&self, mailbox: &str, uid: u32) -> Option<Vec<String>> {
        Some(self.lock().boxes[mailbox].mails.get(&uid)?.flags.clone())
    }
}

impl Mailboxes {
    fn mailbox(&self, name: &str) -> Result<&Mailbox, BackendError> {
        self.boxes.get(name).ok_or_else(|| not_found(name))
    }

    fn mailbox_mut(&mut self, name: &str) -> Result<&mut Mailbox, BackendError> {
        self.boxes.get_mut(name).ok_or_else(|| not_found(name))
    }

    fn state(&self, name: &str) -> Result<MailboxState, BackendError> {
        let b = self.mailbox(name)?;
        Ok(MailboxState {
            uid_validity: b.uid_validity,
            uid_next: b.uid_next,
            messages: b.mails.len() as u32,
            highest_modseq: if self.condstore { b.highest_modseq } else { 0 },
        })
    }

    fn meta(&self, uid: u32, m: &Mail) -> MessageMeta {
        MessageMeta {
            uid,
            flags: m.flags.clone(),
            internal_date: m.internal_date,
            size: m.raw.len() as u32,
            modseq: if self.condstore { m.modseq } else { 0 },
        }
    }

    /// Adds and removes flags; a change raises the mail's MODSEQ. `Ok(false)`: no such mail.
    fn store(
        &mut self,
        mailbox: &str,
        uid: u32,
        add: &[String],
        remove: &[String],
    ) -> Result<bool, BackendError> {
        let b = self.mailbox_mut(mailbox)?;
        let Some(mut flags) = b.mails.get(&uid).map(|m| m.flags.clone()) else {
            return Ok(false);
        };
        let before = flags.clone();
        flags.retain(|f| !remove.iter().any(|r| r.eq_ignore_ascii_case(f)));
        for a in add {
            if !flags.iter().any(|f| f.eq_ignore_ascii_case(a)) {
                flags.push(a.clone());
            }
        }
        if flags != before {
            let modseq = b.bump();
            let m = b.mails.get_mut(&uid).expect("present");
            m.flags = flags;
            m.modseq = modseq;
        }
        Ok(true)
    }

    fn expunge(&mut self, mailbox: &str, uids: &[u32]) -> Result<Vec<Mail>, BackendError> {
        let b = self.mailbox_mut(mailbox)?;
        let gone: Vec<Mail> = uids.iter().filter_map(|u| b.mails.remove(u)).collect();
        if !gone.is_empty() {
            b.bump();
        }
        Ok(gone)
    }

    fn mail(&self, mailbox: &str, uid: u32) -> Result<Option<&Mail>, BackendError> {
        Ok(self.mailbox(mailbox)?.mails.get(&uid))
    }
}

/// A logged-in session of a [`FakeServer`].
pub struct FakeSession {
    server: FakeServer,
    capabilities: Vec<String>,
}

impl MailBackend for FakeServer {
    type Session = FakeSession;

    async fn login(
        &self,
        _creds: &Credentials,
        _client_ip: Option<IpAddr>,
    ) -> Result<FakeSession, BackendError> {
        let mut capabilities = vec!["IMAP4REV1".to_string(), "MOVE".into(), "UIDPLUS".into()];
        if self.lock().condstore {
            capabilities.push("CONDSTORE".into());
        }
        Ok(FakeSession {
            server: self.clone(),
            capabilities,
        })
    }
}

impl FakeSession {
    fn with<T>(
        &self,
        f: impl FnOnce(&mut Mailboxes) -> Result<T, BackendError>,
    ) -> Result<T, BackendError> {
        f(&mut self.server.lock())
    }
}

impl MailSession for FakeSession {
    fn capabilities(&self) -> &[String] {
        &self.capabilities
    }

    async fn list_folders(&mut self) -> Result<Vec<MailFolder>, BackendError> {
        self.with(|s| {
            let mut out: Vec<MailFolder> = s
                .boxes
                .iter()
                .map(|(name, b)| {
                    let (parent, leaf) = match name.rsplit_once('/') {
                        Some((p, l)) => (Some(p.to_string()), l.to_string()),
                        None => (None, name.clone()),
                    };
                    MailFolder {
                        name: name.clone(),
                        display_name: leaf,
                        parent,
                        delimiter: Some('/'),
                        special_use: b.special_use,
                        selectable: true,
                        identity: format!("guid:{}", b.guid),
                    }
                })
                .collect();
            // INBOX first, then by name.
            out.sort_by_key(|f| (f.name != "INBOX", f.name.clone()));
            Ok(out)
        })
    }

    async fn logout(self) {}

    fn is_usable(&self) -> bool {
        true
    }

    async fn noop(&mut self) -> Result<(), BackendError> {
        Ok(())
    }

    async fn select(&mut self, mailbox: &str) -> Result<MailboxState, BackendError> {
        self.with(|s| s.state(mailbox))
    }

    async fn status(&mut self, mailbox: &str) -> Result<MailboxState, BackendError> {
        self.with(|s| s.state(mailbox))
    }

    async fn search_since(
        &mut self,
        mailbox: &str,
        since: Option<i64>,
    ) -> Result<UidSet, BackendError> {
        self.with(|s| {
            let b = s.mailbox(mailbox)?;
            Ok(UidSet::from_uids(
                b.mails
                    .iter()
                    .filter(|(_, m)| since.is_none_or(|t| m.internal_date >= t))
                    .map(|(u, _)| *u),
            ))
        })
    }

    async fn existing(&mut self, mailbox: &str, uids: &UidSet) -> Result<UidSet, BackendError> {
        self.with(|s| {
            let b = s.mailbox(mailbox)?;
            Ok(UidSet::from_uids(
                uids.iter().filter(|u| b.mails.contains_key(u)),
            ))
        })
    }

    async fn fetch_meta(
        &mut self,
        mailbox: &str,
        uids: &UidSet,
        changed_since: Option<u64>,
    ) -> Result<Vec<MessageMeta>, BackendError> {
        self.with(|s| {
            let b = s.mailbox(mailbox)?;
            Ok(uids
                .iter()
                .filter_map(|u| b.mails.get(&u).map(|m| (u, m)))
                .filter(|(_, m)| changed_since.is_none_or(|c| m.modseq > c))
                .map(|(u, m)| s.meta(u, m))
                .collect())
        })
    }

    async fn fetch_messages(
        &mut self,
        mailbox: &str,
        uids: &[u32],
    ) -> Result<Vec<(MessageMeta, Bytes)>, BackendError> {
        self.with(|s| {
            let vanish: Vec<u32> = s
                .vanish_on_fetch
                .iter()
                .filter(|(m, _)| m == mailbox)
                .map(|(_, u)| *u)
                .collect();
            s.vanish_on_fetch.retain(|(m, _)| m != mailbox);
            s.expunge(mailbox, &vanish)?;
            let b = s.mailbox(mailbox)?;
            Ok(uids
                .iter()
                .filter_map(|u| b.mails.get(u).map(|m| (s.meta(*u, m), m.raw.clone())))
                .collect())
        })
    }

    async fn fetch_for_display(
        &mut self,
        mailbox: &str,
        uids: &[u32],
    ) -> Result<Vec<FetchedMail>, BackendError> {
        Ok(FetchedMail::all_whole(
            self.fetch_messages(mailbox, uids).await?,
        ))
    }

    async fn store_flags(
        &mut self,
        mailbox: &str,
        uid: u32,
        add: &[String],
        remove: &[String],
    ) -> Result<bool, BackendError> {
        self.with(|s| s.store(mailbox, uid, add, remove))
    }

    async fn store_flags_unchanged_since(
        &mut self,
        mailbox: &str,
        uid: u32,
        add: &[String],
        remove: &[String],
        modseq: u64,
    ) -> Result<FlagStore, BackendError> {
        self.with(|s| {
            let Some(m) = s.mail(mailbox, uid)? else {
                return Ok(FlagStore::Missing);
            };
            if m.modseq > modseq {
                return Ok(FlagStore::Modified);
            }
            s.store(mailbox, uid, add, remove)?;
            Ok(FlagStore::Stored)
        })
    }

    async fn move_messages(
        &mut self,
        mailbox: &str,
        uids: &[u32],
        target: &str,
    ) -> Result<Vec<(u32, u32)>, BackendError> {
        self.with(|s| {
            s.mailbox(target)?;
            let present: Vec<u32> = {
                let b = s.mailbox(mailbox)?;
                uids.iter()
                    .copied()
                    .filter(|u| b.mails.contains_key(u))
                    .collect()
            };
            let moved = s.expunge(mailbox, &present)?;
            let t = s.mailbox_mut(target)?;
            let mut pairs = Vec::new();
            for (old, mut m) in present.into_iter().zip(moved) {
                let new = t.uid_next;
                t.uid_next += 1;
                m.modseq = t.bump();
                t.mails.insert(new, m);
                pairs.push((old, new));
            }
            Ok(pairs)
        })
    }

    async fn expunge(&mut self, mailbox: &str, uids: &[u32]) -> Result<(), BackendError> {
        self.with(|s| s.expunge(mailbox, uids).map(drop))
    }

    async fn append_parts(
        &mut self,
        mailbox: &str,
        flags: &[String],
        parts: Vec<Bytes>,
    ) -> Result<Option<u32>, BackendError> {
        let raw: Vec<u8> = parts.concat();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64);
        self.server
            .append_raw(mailbox, flags, Bytes::from(raw), now)
            .map(Some)
    }

    async fn create_folder(&mut self, name: &str) -> Result<(), BackendError> {
        if self.server.lock().boxes.contains_key(name) {
            return Err(BackendError::Rejected(format!("{name} exists")));
        }
        self.server.create(name, None);
        Ok(())
    }

    async fn delete_folder(&mut self, name: &str) -> Result<(), BackendError> {
        self.with(|s| {
            s.boxes
                .remove(name)
                .map(drop)
                .ok_or_else(|| not_found(name))
        })
    }

    async fn rename_folder(&mut self, from: &str, to: &str) -> Result<(), BackendError> {
        self.with(|s| {
            if s.boxes.contains_key(to) {
                return Err(BackendError::Rejected(format!("{to} exists")));
            }
            let b = s.boxes.remove(from).ok_or_else(|| not_found(from))?;
            s.boxes.insert(to.to_string(), b);
            Ok(())
        })
    }

    /// Every fake mail is one text part.
    async fn mime_tree(
        &mut self,
        mailbox: &str,
        uid: u32,
    ) -> Result<Option<MimePart>, BackendError> {
        self.with(|s| {
            Ok(s.mail(mailbox, uid)?.map(|m| MimePart {
                section: "1".into(),
                header: Bytes::copy_from_slice(header_of(&m.raw)),
                content_type: "text/plain".into(),
                encoding: "7bit".into(),
                size: body_of(&m.raw).len() as u64,
                boundary: String::new(),
                children: Vec::new(),
            }))
        })
    }

    async fn binary_size(
        &mut self,
        mailbox: &str,
        uid: u32,
        _section: &str,
    ) -> Result<Option<u64>, BackendError> {
        self.with(|s| Ok(s.mail(mailbox, uid)?.map(|m| body_of(&m.raw).len() as u64)))
    }

    async fn fetch_part_range(
        &mut self,
        mailbox: &str,
        uid: u32,
        _section: &str,
        _binary: bool,
        offset: u64,
        len: u64,
    ) -> Result<Option<Bytes>, BackendError> {
        self.with(|s| {
            Ok(s.mail(mailbox, uid)?.map(|m| {
                let body = body_of(&m.raw);
                let start = (offset as usize).min(body.len());
                let end = start.saturating_add(len as usize).min(body.len());
                Bytes::copy_from_slice(&body[start..end])
            }))
        })
    }

    async fn fetch_thread_headers(
        &mut self,
        mailbox: &str,
        uids: &UidSet,
    ) -> Result<Vec<(MessageMeta, Bytes)>, BackendError> {
        self.with(|s| {
            let vanish: Vec<u32> = s
                .vanish_on_fetch
                .iter()
                .filter(|(m, _)| m == mailbox)
                .map(|(_, u)| *u)
                .collect();
            s.vanish_on_fetch.retain(|(m, _)| m != mailbox);
            s.expunge(mailbox, &vanish)?;
            let b = s.mailbox(mailbox)?;
            Ok(uids
                .iter()
                .filter_map(|u| {
                    let m = b.mails.get(&u)?;
                    Some((s.meta(u, m), Bytes::copy_from_slice(header_of(&m.raw))))
                })
                .collect())
        })
    }

    async fn search_mail(
        &mut self,
        mailbox: &str,
        query: &MailQuery,
    ) -> Result<MailSearch, BackendError> {
        self.with(|s| {
            let b = s.mailbox(mailbox)?;
            let mut hits: Vec<(u32, i64)> = b
                .mails
                .iter()
                .filter(|(_, m)| {
                    let text = String::from_utf8_lossy(&m.raw).to_lowercase();
                    query.words.iter().all(|w| text.contains(&w.to_lowercase()))
                        && query.after.is_none_or(|a| m.internal_date > a)
                        && query.before.is_none_or(|t| m.internal_date < t)
                })
                .map(|(u, m)| (*u, m.internal_date))
                .collect();
            hits.sort_by(|a, b| b.1.cmp(&a.1).then(b.0.cmp(&a.0)));
            Ok(MailSearch {
                uid_validity: b.uid_validity,
                hits,
            })
        })
    }
}
