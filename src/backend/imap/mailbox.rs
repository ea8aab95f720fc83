//! Per-mailbox IMAP operations of an [`ImapSession`]: SELECT/STATUS, ESEARCH, FETCH, STORE,
//! MOVE, EXPUNGE, APPEND and folder changes.
//!
//! Bodies are always fetched with `BODY.PEEK[]`: reading a mail on the phone never marks it
//! read on the server; only a device's Read change touches `\Seen`.

use bytes::Bytes;

use super::parse::{parse_status, Item};
use super::{Command, Completed, ImapSession};
use crate::backend::mailbox::{MailboxState, MessageMeta};
use crate::backend::{BackendError, FlagStore};
use crate::uidset::UidSet;

/// Most UIDs named in one command (keeps command lines short).
const UID_CHUNK: usize = 500;

impl ImapSession {
    /// The current state of `mailbox`, selected afterwards. Re-SELECTing a large mailbox is
    /// expensive (tens of ms at 20,000 mails), so an already selected one is brought up to date
    /// with NOOP and read with STATUS instead.
    pub async fn select_mailbox(&mut self, mailbox: &str) -> Result<MailboxState, BackendError> {
        if self.selected() == Some(mailbox) {
            return self.mailbox_status(mailbox).await;
        }
        let condstore = self.has_capability("CONDSTORE");
        let mut cmd = Command::new("SELECT").astring(mailbox);
        if condstore {
            cmd = cmd.raw(" (CONDSTORE)");
        }
        let c = self.run_ok(&cmd).await?;
        let mut st = MailboxState::default();
        for r in &c.untagged {
            match r {
                super::parse::Response::Status(s) => {
                    if let Some(code) = &s.code {
                        let arg = code
                            .args
                            .as_deref()
                            .and_then(|a| a.trim().parse::<u64>().ok());
                        match code.name.as_str() {
                            "UIDVALIDITY" => st.uid_validity = arg.unwrap_or(0) as u32,
                            "UIDNEXT" => st.uid_next = arg.unwrap_or(0) as u32,
                            "HIGHESTMODSEQ" => st.highest_modseq = arg.unwrap_or(0),
                            _ => {}
                        }
                    }
                }
                super::parse::Response::Data {
                    number: Some(n),
                    name,
                    ..
                } if name == "EXISTS" => st.messages = *n,
                _ => {}
            }
        }
        self.set_selected(Some(mailbox.to_string()));
        Ok(st)
    }

    pub(crate) async fn ensure_selected(&mut self, mailbox: &str) -> Result<(), BackendError> {
        if self.selected() != Some(mailbox) {
            self.select_mailbox(mailbox).await?;
        }
        Ok(())
    }

    /// STATUS without selecting: the cheap "did anything change" check.
    pub async fn mailbox_status(&mut self, mailbox: &str) -> Result<MailboxState, BackendError> {
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
        let entry = c
            .data("STATUS")
            .filter_map(parse_status)
            .next()
            .ok_or_else(|| BackendError::Protocol("STATUS: no data".to_string()))?;
        let num = |k: &str| entry.values.get(k).and_then(|v| v.parse::<u64>().ok());
        Ok(MailboxState {
            uid_validity: num("UIDVALIDITY").unwrap_or(0) as u32,
            uid_next: num("UIDNEXT").unwrap_or(0) as u32,
            messages: num("MESSAGES").unwrap_or(0) as u32,
            highest_modseq: num("HIGHESTMODSEQ").unwrap_or(0),
        })
    }

    /// UIDs of mails whose INTERNALDATE is on or after `since` (all mails for `None`).
    pub async fn search_since(
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

    /// The UIDs of `uids` that still exist in the mailbox.
    pub async fn existing_uids(
        &mut self,
        mailbox: &str,
        uids: &UidSet,
    ) -> Result<UidSet, BackendError> {
        self.ensure_selected(mailbox).await?;
        let mut out = UidSet::new();
        for chunk in chunks(uids) {
            out = out.union(&self.uid_search(&format!(" UID {chunk}")).await?);
        }
        Ok(out)
    }

    async fn uid_search(&mut self, criteria: &str) -> Result<UidSet, BackendError> {
        let c = self.run_ok(&self.search_command(criteria)).await?;
        self.search_result(&c)
    }

    fn search_command(&self, criteria: &str) -> Command {
        if self.has_capability("ESEARCH") {
            Command::new("UID SEARCH").raw(&format!(" RETURN (ALL){criteria}"))
        } else {
            Command::new("UID SEARCH").raw(criteria)
        }
    }

    /// The UIDs of a completed `search_command`.
    fn search_result(&self, c: &Completed) -> Result<UidSet, BackendError> {
        let mut set = UidSet::new();
        if self.has_capability("ESEARCH") {
            for items in c.data("ESEARCH") {
                let mut it = items.iter();
                while let Some(item) = it.next() {
                    if item
                        .as_atom()
                        .is_some_and(|a| a.eq_ignore_ascii_case("ALL"))
                    {
                        if let Some(v) = it.next().and_then(Item::as_atom) {
                            set = set
                                .union(&UidSet::parse(v).map_err(|e| {
                                    BackendError::Protocol(format!("ESEARCH: {e}"))
                                })?);
                        }
                    }
                }
            }
        } else {
            for items in c.data("SEARCH") {
                set = set.union(&UidSet::from_uids(
                    items.iter().filter_map(|i| i.as_u64()).map(|u| u as u32),
                ));
            }
        }
        Ok(set)
    }

    /// Flags, INTERNALDATE, size and MODSEQ of `uids`; with `changed_since`, only mails whose
    /// MODSEQ is higher (CONDSTORE).
    pub async fn fetch_meta_uids(
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

    /// Whole messages (`BODY.PEEK[]`) with their metadata; missing UIDs are left out.
    pub async fn fetch_full(
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

    /// The threading header fields (Message-ID, References, In-Reply-To, Subject, Date) of
    /// `uids` with their metadata, read without setting `\Seen`.
    pub async fn fetch_thread_headers(
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

    /// Runs FETCH commands that ask for the metadata and one body section of each mail; mails
    /// answered without the section are left out.
    async fn fetch_with_section(
        &mut self,
        cmds: Vec<Command>,
    ) -> Result<Vec<(MessageMeta, Bytes)>, BackendError> {
        let mut done = self.fetch_pipeline(cmds).await?;
        Ok(done
            .iter_mut()
            .flat_map(|c| c.data_mut("FETCH"))
            .filter_map(|items| match parse_fetch(items) {
                Some((meta, Some(section))) => Some((meta, section)),
                _ => None,
            })
            .collect())
    }

    /// The metadata items every mail read asks for.
    pub(crate) fn meta_items(&self) -> &'static str {
        if self.has_capability("CONDSTORE") {
            "UID FLAGS INTERNALDATE RFC822.SIZE MODSEQ"
        } else {
            "UID FLAGS INTERNALDATE RFC822.SIZE"
        }
    }

    /// FETCH commands sent in one pipeline; every one must succeed.
    async fn fetch_pipeline(&mut self, cmds: Vec<Command>) -> Result<Vec<Completed>, BackendError> {
        let done = self.pipeline(&cmds).await?;
        for c in &done {
            c.ok("UID FETCH")?;
        }
        Ok(done)
    }

    /// Adds and removes flags on one mail. `false` when the mail does not exist.
    pub async fn store_uid_flags(
        &mut self,
        mailbox: &str,
        uid: u32,
        add: &[String],
        remove: &[String],
    ) -> Result<bool, BackendError> {
        let r = self.store_flags(mailbox, uid, add, remove, None).await?;
        Ok(r != FlagStore::Missing)
    }

    /// Like [`ImapSession::store_uid_flags`], but only while the mail's MODSEQ is at most
    /// `modseq` (`UNCHANGEDSINCE`, RFC 7162 3.1.3).
    pub async fn store_uid_flags_unchanged_since(
        &mut self,
        mailbox: &str,
        uid: u32,
        add: &[String],
        remove: &[String],
        modseq: u64,
    ) -> Result<FlagStore, BackendError> {
        self.store_flags(mailbox, uid, add, remove, Some(modseq))
            .await
    }

    /// The existence check and the STOREs in one round trip: a STORE of a missing UID is a
    /// no-op, and a non-silent STORE cannot tell (Dovecot sends no FETCH for flags that did not
    /// change). With `unchanged_since` only the first STORE is conditional; when both adding
    /// and removing, the second follows once the first succeeded (each STORE raises the
    /// MODSEQ, so the second is unconditional).
    async fn store_flags(
        &mut self,
        mailbox: &str,
        uid: u32,
        add: &[String],
        remove: &[String],
        unchanged_since: Option<u64>,
    ) -> Result<FlagStore, BackendError> {
        self.ensure_selected(mailbox).await?;
        let store = |sign: char, flags: &[String], cond: Option<u64>| {
            let cond = cond
                .map(|m| format!(" (UNCHANGEDSINCE {m})"))
                .unwrap_or_default();
            Command::new("UID STORE").raw(&format!(
                " {uid}{cond} {sign}FLAGS.SILENT ({})",
                flag_list(flags)
            ))
        };
        let mut first = vec![self.search_command(&format!(" UID {uid}"))];
        let mut later = None;
        match unchanged_since {
            None => {
                if !add.is_empty() {
                    first.push(store('+', add, None));
                }
                if !remove.is_empty() {
                    first.push(store('-', remove, None));
                }
            }
            Some(m) => match (add.is_empty(), remove.is_empty()) {
                (false, _) => {
                    first.push(store('+', add, Some(m)));
                    later = (!remove.is_empty()).then(|| store('-', remove, None));
                }
                (true, false) => first.push(store('-', remove, Some(m))),
                (true, true) => return Ok(FlagStore::Stored),
            },
        }
        let done = self.pipeline(&first).await?;
        for c in &done {
            c.ok("UID STORE")?;
        }
        let exists = match done.first() {
            Some(c) => !self.search_result(c)?.is_empty(),
            None => false,
        };
        if !exists {
            return Ok(FlagStore::Missing);
        }
        if unchanged_since.is_some() && done.get(1).is_some_and(|c| c.done.has_code("MODIFIED")) {
            return Ok(FlagStore::Modified);
        }
        if let Some(cmd) = later {
            self.run_ok(&cmd).await?;
        }
        Ok(FlagStore::Stored)
    }

    /// Moves mails to `target` (UID MOVE, else COPY + \Deleted + UID EXPUNGE). Returns the
    /// (old, new) UID pairs the server reported (COPYUID), possibly empty.
    pub async fn move_uids(
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
            let c = self
                .run_ok(
                    &Command::new("UID MOVE")
                        .raw(&format!(" {set}"))
                        .astring(target),
                )
                .await?;
            for r in &c.untagged {
                if let super::parse::Response::Status(s) = r {
                    pairs.extend(copyuid(s));
                }
            }
            pairs.extend(copyuid(&c.done));
        } else {
            let c = self
                .run_ok(
                    &Command::new("UID COPY")
                        .raw(&format!(" {set}"))
                        .astring(target),
                )
                .await?;
            pairs.extend(copyuid(&c.done));
            self.expunge_uids(mailbox, uids).await?;
        }
        Ok(pairs)
    }

    /// Marks mails \Deleted and expunges exactly them (UID EXPUNGE with UIDPLUS).
    pub async fn expunge_uids(&mut self, mailbox: &str, uids: &[u32]) -> Result<(), BackendError> {
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

    /// Appends a message given as pieces in order; returns its UID when the server reports it
    /// (APPENDUID).
    pub async fn append_message(
        &mut self,
        mailbox: &str,
        flags: &[String],
        parts: Vec<bytes::Bytes>,
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

    pub async fn create_mailbox(&mut self, name: &str) -> Result<(), BackendError> {
        self.run_ok(&Command::new("CREATE").astring(name)).await?;
        let _ = self.run(&Command::new("SUBSCRIBE").astring(name)).await;
        Ok(())
    }

    pub async fn delete_mailbox(&mut self, name: &str) -> Result<(), BackendError> {
        if self.selected() == Some(name) {
            let _ = self.run(&Command::new("UNSELECT")).await;
            self.set_selected(None);
        }
        self.run_ok(&Command::new("DELETE").astring(name)).await?;
        Ok(())
    }

    pub async fn rename_mailbox(&mut self, from: &str, to: &str) -> Result<(), BackendError> {
        if self.selected() == Some(from) {
            let _ = self.run(&Command::new("UNSELECT")).await;
            self.set_selected(None);
        }
        self.run_ok(&Command::new("RENAME").astring(from).astring(to))
            .await?;
        let _ = self.run(&Command::new("SUBSCRIBE").astring(to)).await;
        Ok(())
    }
}

/// `(old, new)` UID pairs from a `[COPYUID validity old-set new-set]` code.
fn copyuid(s: &super::parse::StatusResp) -> Vec<(u32, u32)> {
    let Some(code) = s.code.as_ref().filter(|c| c.name == "COPYUID") else {
        return Vec::new();
    };
    let parts: Vec<&str> = code
        .args
        .as_deref()
        .unwrap_or("")
        .split_whitespace()
        .collect();
    let (Some(old), Some(new)) = (parts.get(1), parts.get(2)) else {
        return Vec::new();
    };
    // The sets are in the order of the source UIDs; expand both.
    let expand = |s: &str| -> Vec<u32> {
        let mut v = Vec::new();
        for part in s.split(',') {
            match part.split_once(':') {
                Some((a, b)) => {
                    if let (Ok(a), Ok(b)) = (a.parse::<u32>(), b.parse::<u32>()) {
                        if a <= b {
                            v.extend(a..=b.min(a.saturating_add(100_000)));
                        } else {
                            v.extend((b..=a).rev());
                        }
                    }
                }
                None => v.extend(part.parse::<u32>().ok()),
            }
        }
        v
    };
    expand(old).into_iter().zip(expand(new)).collect()
}

/// Flags safe to put on a command line: `\Seen` style or atoms; anything else is dropped.
fn flag_list(flags: &[String]) -> String {
    flags
        .iter()
        .filter(|f| {
            let body = f.strip_prefix('\\').unwrap_or(f);
            !body.is_empty()
                && body.bytes().all(|b| {
                    b.is_ascii_graphic()
                        && !matches!(b, b'(' | b')' | b'{' | b'%' | b'*' | b'"' | b'\\' | b']')
                })
        })
        .cloned()
        .collect::<Vec<_>>()
        .join(" ")
}

/// Splits a set into command-sized pieces.
fn chunks(uids: &UidSet) -> Vec<String> {
    let ranges = uids.ranges();
    ranges
        .chunks(UID_CHUNK)
        .map(|c| {
            c.iter()
                .map(|(lo, hi)| {
                    if lo == hi {
                        lo.to_string()
                    } else {
                        format!("{lo}:{hi}")
                    }
                })
                .collect::<Vec<_>>()
                .join(",")
        })
        .collect()
}

/// The value of one attribute of a `* n FETCH (...)` response, by name (case-insensitive);
/// a partial section answered with its origin (`BODY[1]<0>`) is found by its name without it.
pub(crate) fn fetch_attr<'a>(items: &'a [Item], name: &str) -> Option<&'a Item> {
    let list = items.first()?.as_list()?;
    list.chunks(2).find_map(|kv| match kv {
        [k, v] if is_attr(k, name) => Some(v),
        _ => None,
    })
}

/// The string value of an attribute (see [`fetch_attr`]), moved out of the response: a
/// literal of megabytes is not copied.
pub(crate) fn take_fetch_str(items: &mut [Item], name: &str) -> Option<Vec<u8>> {
    let list = items.first_mut()?.as_list_mut()?;
    list.chunks_mut(2).find_map(|kv| match kv {
        [k, Item::Str(v)] if is_attr(k, name) => Some(std::mem::take(v)),
        _ => None,
    })
}

fn is_attr(key: &Item, name: &str) -> bool {
    key.as_atom().is_some_and(|k| {
        let k = k.split_once('<').map_or(k, |(base, _)| base);
        k.eq_ignore_ascii_case(name)
    })
}

/// The UID of one FETCH response.
pub(crate) fn fetch_uid(items: &[Item]) -> Option<u32> {
    fetch_attr(items, "UID")?
        .as_u64()
        .and_then(|u| u32::try_from(u).ok())
}

/// Most mails per whole-message `UID FETCH`.
pub(crate) const WHOLE_CHUNK: usize = 50;

/// Reads one `* n FETCH (...)` item list: metadata and the body literal if present. The body
/// is moved out of the response, not copied.
pub(crate) fn parse_fetch(items: &mut [Item]) -> Option<(MessageMeta, Option<Bytes>)> {
    let list = items.first_mut()?.as_list_mut()?;
    let mut meta = MessageMeta::default();
    let mut body = None;
    for kv in list.chunks_mut(2) {
        let [key, value] = kv else {
            return None;
        };
        let key = key.as_atom()?.to_ascii_uppercase();
        match key.as_str() {
            "UID" => meta.uid = value.as_u64()? as u32,
            "FLAGS" => {
                meta.flags = value
                    .as_list()?
                    .iter()
                    .filter_map(|f| f.as_atom().map(str::to_string))
                    .collect()
            }
            "INTERNALDATE" => {
                meta.internal_date = parse_internal_date(&value.as_astring()?).unwrap_or(0)
            }
            "RFC822.SIZE" => meta.size = value.as_u64().unwrap_or(0) as u32,
            "MODSEQ" => {
                meta.modseq = value
                    .as_list()
                    .and_then(|l| l.first())
                    .and_then(Item::as_u64)
                    .unwrap_or(0)
            }
            k if k.starts_with("BODY[") => {
                if let Item::Str(b) = value {
                    body = Some(Bytes::from(std::mem::take(b)));
                }
            }
            _ => {}
        }
    }
    (meta.uid != 0).then_some((meta, body))
}

const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

/// `d-Mon-yyyy` of a unix time (UTC), for SEARCH SINCE.
pub fn imap_date(t: i64) -> String {
    let (y, m, d) = civil_from_days(t.div_euclid(86_400));
    format!("{d}-{}-{y}", MONTHS[(m - 1) as usize])
}

/// Parses INTERNALDATE `"26-Nov-2026 23:10:51 +0100"` to unix seconds.
pub fn parse_internal_date(s: &str) -> Option<i64> {
    let s = s.trim();
    let (date, rest) = s.split_once(' ')?;
    let (time, zone) = rest.trim().split_once(' ')?;
    let mut dp = date.trim().split('-');
    let day: i64 = dp.next()?.trim().parse().ok()?;
    let mon = dp.next()?;
    let month = MONTHS.iter().position(|m| m.eq_ignore_ascii_case(mon))? as i64 + 1;
    let year: i64 = dp.next()?.parse().ok()?;
    let mut tp = time.split(':');
    let (h, mi, se): (i64, i64, i64) = (
        tp.next()?.parse().ok()?,
        tp.next()?.parse().ok()?,
        tp.next()?.parse().ok()?,
    );
    let sign = if zone.starts_with('-') { -1 } else { 1 };
    let zone = zone.trim_start_matches(['+', '-']);
    if zone.len() != 4 {
        return None;
    }
    let zh: i64 = zone.get(..2)?.parse().ok()?;
    let zm: i64 = zone.get(2..)?.parse().ok()?;
    let days = days_from_civil(year, month, day);
    Some(days * 86_400 + h * 3600 + mi * 60 + se - sign * (zh * 3600 + zm * 60))
}

// Howard Hinnant's civil-date algorithms (proleptic Gregorian, days since 1970-01-01).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates() {
        assert_eq!(parse_internal_date("01-Jan-1970 00:00:00 +0000"), Some(0));
        assert_eq!(
            parse_internal_date("26-Nov-2026 23:10:51 +0100"),
            Some(1_795_734_651 - 3600)
        );
        assert_eq!(imap_date(1_795_734_651), "26-Nov-2026");
        assert_eq!(parse_internal_date("garbage"), None);
        for t in [0i64, 951_782_400, 1_795_734_651, 4_102_444_800] {
            let (y, m, d) = civil_from_days(t.div_euclid(86_400));
            assert_eq!(days_from_civil(y, m, d) * 86_400, t - t.rem_euclid(86_400));
        }
    }

    #[test]
    fn flags_are_sanitised() {
        let f = vec![
            "\\Seen".to_string(),
            "$Forwarded".into(),
            "bad)(".into(),
            "".into(),
        ];
        assert_eq!(flag_list(&f), "\\Seen $Forwarded");
    }

    #[test]
    fn copyuid_pairs() {
        let s = super::super::parse::StatusResp {
            status: super::super::parse::Status::Ok,
            code: Some(super::super::parse::Code {
                name: "COPYUID".into(),
                args: Some("38505 3,5:6 101:103".into()),
            }),
            text: String::new(),
        };
        assert_eq!(copyuid(&s), vec![(3, 101), (5, 102), (6, 103)]);
    }
}
