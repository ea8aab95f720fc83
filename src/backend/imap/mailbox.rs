//! Helpers of the session's per-mailbox operations: SELECT and STATUS replies, UID SEARCH
//! (ESEARCH, RFC 4731), FETCH replies, conditional STORE (RFC 7162), COPYUID (RFC 4315), UID
//! sets cut to command size, and IMAP dates.

use bytes::Bytes;
use jiff::civil::{date, Date};
use jiff::fmt::strtime;
use jiff::Span;

use super::parse::{parse_status, Item, Response, StatusResp};
use super::{Command, Completed, ImapSession};
use crate::backend::mailbox::{MailboxState, MessageMeta};
use crate::backend::{BackendError, FlagStore, MailSession};
use crate::uidset::UidSet;

/// Most UIDs named in one command (keeps command lines short).
const UID_CHUNK: usize = 500;

impl ImapSession {
    /// SELECTs `mailbox` unless it is selected already.
    pub(super) async fn ensure_selected(&mut self, mailbox: &str) -> Result<(), BackendError> {
        if self.selected() != Some(mailbox) {
            self.select(mailbox).await?;
        }
        Ok(())
    }

    /// The UIDs matching `criteria` (after a space) in the selected mailbox.
    pub(super) async fn uid_search(&mut self, criteria: &str) -> Result<UidSet, BackendError> {
        let c = self.run_ok(&self.search_command(criteria)).await?;
        search_uids(&c, self.has_capability("ESEARCH"))
    }

    fn search_command(&self, criteria: &str) -> Command {
        if self.has_capability("ESEARCH") {
            Command::new("UID SEARCH").raw(&format!(" RETURN (ALL){criteria}"))
        } else {
            Command::new("UID SEARCH").raw(criteria)
        }
    }

    /// Runs FETCH commands that ask for the metadata and one body section of each mail; mails
    /// answered without the section are left out.
    pub(super) async fn fetch_with_section(
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
    pub(super) fn meta_items(&self) -> &'static str {
        if self.has_capability("CONDSTORE") {
            "UID FLAGS INTERNALDATE RFC822.SIZE MODSEQ"
        } else {
            "UID FLAGS INTERNALDATE RFC822.SIZE"
        }
    }

    /// FETCH commands sent in one pipeline; every one must succeed.
    pub(super) async fn fetch_pipeline(
        &mut self,
        cmds: Vec<Command>,
    ) -> Result<Vec<Completed>, BackendError> {
        let done = self.pipeline(&cmds).await?;
        for c in &done {
            c.ok("UID FETCH")?;
        }
        Ok(done)
    }

    /// The existence check and the STOREs in one round trip: a STORE of a missing UID is a
    /// no-op, and a non-silent STORE cannot tell (Dovecot sends no FETCH for flags that did not
    /// change). With `unchanged_since` only the first STORE is conditional; when both adding
    /// and removing, the second follows once the first succeeded (each STORE raises the
    /// MODSEQ, so the second is unconditional).
    pub(super) async fn store_flag_changes(
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
            Some(c) => !search_uids(c, self.has_capability("ESEARCH"))?.is_empty(),
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
}

/// The mailbox state from the responses to SELECT.
pub(super) fn select_state(c: &Completed) -> MailboxState {
    let mut st = MailboxState::default();
    for r in &c.untagged {
        match r {
            Response::Status(s) => {
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
            Response::Data {
                number: Some(n),
                name,
                ..
            } if name == "EXISTS" => st.messages = *n,
            _ => {}
        }
    }
    st
}

/// The mailbox state from the reply to one STATUS.
pub(super) fn status_state(c: &Completed) -> Result<MailboxState, BackendError> {
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

/// The UIDs of a completed UID SEARCH: `* ESEARCH ... ALL <set>` when sent with
/// `RETURN (ALL)` (`esearch`), else `* SEARCH <uid>...`.
pub(super) fn search_uids(c: &Completed, esearch: bool) -> Result<UidSet, BackendError> {
    let mut set = UidSet::new();
    if esearch {
        for items in c.data("ESEARCH") {
            let mut it = items.iter();
            while let Some(item) = it.next() {
                if item
                    .as_atom()
                    .is_some_and(|a| a.eq_ignore_ascii_case("ALL"))
                {
                    if let Some(v) = it.next().and_then(Item::as_atom) {
                        let all = UidSet::parse(v)
                            .map_err(|e| BackendError::Protocol(format!("ESEARCH: {e}")))?;
                        set = set.union(&all);
                    }
                }
            }
        }
    } else {
        for items in c.data("SEARCH") {
            set = set.union(&UidSet::from_uids(
                items
                    .iter()
                    .filter_map(Item::as_u64)
                    .filter_map(|u| u32::try_from(u).ok()),
            ));
        }
    }
    Ok(set)
}

/// `(old, new)` UID pairs from a `[COPYUID validity old-set new-set]` code.
pub(super) fn copyuid(s: &StatusResp) -> Vec<(u32, u32)> {
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
pub(super) fn flag_list(flags: &[String]) -> String {
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
pub(super) fn chunks(uids: &UidSet) -> Vec<String> {
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
pub(super) fn fetch_attr<'a>(items: &'a [Item], name: &str) -> Option<&'a Item> {
    let list = items.first()?.as_list()?;
    list.chunks(2).find_map(|kv| match kv {
        [k, v] if is_attr(k, name) => Some(v),
        _ => None,
    })
}

/// The string value of an attribute (see [`fetch_attr`]), moved out of the response: a
/// literal of megabytes is not copied.
pub(super) fn take_fetch_str(items: &mut [Item], name: &str) -> Option<Vec<u8>> {
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
pub(super) fn fetch_uid(items: &[Item]) -> Option<u32> {
    fetch_attr(items, "UID")?
        .as_u64()
        .and_then(|u| u32::try_from(u).ok())
}

/// Most mails per whole-message `UID FETCH`.
pub(super) const WHOLE_CHUNK: usize = 50;

/// Reads one `* n FETCH (...)` item list: metadata and the body literal if present. The body
/// is moved out of the response, not copied.
pub(super) fn parse_fetch(items: &mut [Item]) -> Option<(MessageMeta, Option<Bytes>)> {
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

/// `d-Mon-yyyy` of the UTC day of a unix time, for SEARCH SINCE and BEFORE (RFC 9051 `date`).
pub(super) fn imap_date(t: i64) -> String {
    let days = t.div_euclid(86_400);
    let day = Span::new()
        .try_days(days)
        .ok()
        .and_then(|span| date(1970, 1, 1).checked_add(span).ok())
        .unwrap_or(if days < 0 { Date::MIN } else { Date::MAX });
    day.strftime("%-d-%b-%Y").to_string()
}

/// Unix seconds of an INTERNALDATE (`"26-Nov-2026 23:10:51 +0100"`, RFC 9051 `date-time`).
pub(super) fn parse_internal_date(s: &str) -> Option<i64> {
    let parsed = strtime::parse("%d-%b-%Y %H:%M:%S %z", s.trim()).ok()?;
    Some(parsed.to_timestamp().ok()?.as_second())
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
            let midnight = parse_internal_date(&format!("{} 00:00:00 +0000", imap_date(t)));
            assert_eq!(midnight, Some(t - t.rem_euclid(86_400)));
        }
        // Day padded with a space, month in any case, zone west of UTC.
        assert_eq!(
            parse_internal_date(" 1-jan-1970 00:00:00 -0130"),
            Some(5400)
        );
        assert_eq!(imap_date(-1), "31-Dec-1969");
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
        let s = StatusResp {
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
