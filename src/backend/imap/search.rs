//! Search and Find in one mailbox: `UID SEARCH` by words (`TEXT`, all must match) and by
//! INTERNALDATE (EAS DateReceived). IMAP compares whole days only, so a day more is asked for on
//! each side and the exact bounds are applied to the fetched INTERNALDATEs. Matches come
//! newest first, with the mailbox's UIDVALIDITY.

use super::mailbox::{chunks, imap_date, parse_internal_date};
use super::parse::Item;
use super::{Command, ImapSession};
use crate::backend::BackendError;
use crate::uidset::UidSet;

/// Dates are clamped to 1970..=9999 before they reach a command line.
const MAX_DATE: i64 = 253_402_300_799;

/// What to look for in one mailbox.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MailQuery {
    /// Words that must all occur in the header or body (case-insensitive substring match).
    pub words: Vec<String>,
    /// Only mails whose INTERNALDATE is strictly after this (unix seconds).
    pub after: Option<i64>,
    /// Only mails whose INTERNALDATE is strictly before this (unix seconds).
    pub before: Option<i64>,
}

/// The matches in one mailbox.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MailSearch {
    pub uid_validity: u32,
    /// (UID, INTERNALDATE), newest first.
    pub hits: Vec<(u32, i64)>,
}

/// One piece of a search command line.
enum Arg<'a> {
    Raw(String),
    /// A search string: quoted when plain ASCII, else a literal.
    Text(&'a str),
}

impl MailQuery {
    fn args(&self, esearch: bool) -> Vec<Arg<'_>> {
        let mut out = Vec::new();
        if esearch {
            out.push(Arg::Raw(" RETURN (ALL)".into()));
        }
        if self.words.iter().any(|w| !w.is_ascii()) {
            out.push(Arg::Raw(" CHARSET UTF-8".into()));
        }
        let mut any = false;
        for w in self.words.iter().filter(|w| !w.is_empty()) {
            out.push(Arg::Raw(" TEXT".into()));
            out.push(Arg::Text(w));
            any = true;
        }
        if let Some(a) = self.after {
            let day = a.clamp(0, MAX_DATE).saturating_sub(86_400).max(0);
            out.push(Arg::Raw(format!(" SINCE {}", imap_date(day))));
            any = true;
        }
        if let Some(b) = self.before {
            let day = b.clamp(0, MAX_DATE - 2 * 86_400) + 2 * 86_400;
            out.push(Arg::Raw(format!(" BEFORE {}", imap_date(day))));
            any = true;
        }
        if !any {
            out.push(Arg::Raw(" ALL".into()));
        }
        out
    }

    /// The `UID SEARCH` command for this query (`esearch`: the server has ESEARCH).
    pub fn command(&self, esearch: bool) -> Command {
        let mut cmd = Command::new("UID SEARCH");
        for a in self.args(esearch) {
            cmd = match a {
                Arg::Raw(r) => cmd.raw(&r),
                Arg::Text(t) => cmd.astring(t),
            };
        }
        cmd
    }

    /// The command as text, for logs and measurements (search strings shown quoted; the
    /// words are the user's query, so callers log this only at debug level).
    pub fn describe(&self, esearch: bool) -> String {
        let mut s = String::from("UID SEARCH");
        for a in self.args(esearch) {
            match a {
                Arg::Raw(r) => s.push_str(&r),
                Arg::Text(t) => {
                    s.push_str(" \"");
                    s.push_str(&t.replace('\\', "\\\\").replace('"', "\\\""));
                    s.push('"');
                }
            }
        }
        s
    }

    /// Whether an INTERNALDATE is inside the exact bounds.
    pub fn date_matches(&self, t: i64) -> bool {
        self.after.is_none_or(|a| t > a) && self.before.is_none_or(|b| t < b)
    }
}

impl ImapSession {
    /// (UID, INTERNALDATE) of those of `uids` whose INTERNALDATE is inside the query's exact
    /// bounds, newest first (then by UID).
    pub(super) async fn dated_hits(
        &mut self,
        uids: &UidSet,
        query: &MailQuery,
    ) -> Result<Vec<(u32, i64)>, BackendError> {
        let mut hits = Vec::new();
        for set in chunks(uids) {
            let c = self
                .run_ok(&Command::new("UID FETCH").raw(&format!(" {set} (UID INTERNALDATE)")))
                .await?;
            for items in c.data("FETCH") {
                if let Some((uid, date)) = uid_and_date(items) {
                    if uids.contains(uid) && query.date_matches(date) {
                        hits.push((uid, date));
                    }
                }
            }
        }
        hits.sort_unstable_by(|a, b| b.1.cmp(&a.1).then(b.0.cmp(&a.0)));
        hits.dedup_by_key(|h| h.0);
        Ok(hits)
    }
}

/// UID and INTERNALDATE of one `* n FETCH (UID u INTERNALDATE "...")`.
fn uid_and_date(items: &[Item]) -> Option<(u32, i64)> {
    let list = items.first()?.as_list()?;
    let (mut uid, mut date) = (None, None);
    let mut it = list.iter();
    while let Some(key) = it.next() {
        let key = key.as_atom()?;
        let value = it.next()?;
        if key.eq_ignore_ascii_case("UID") {
            uid = value.as_u64().and_then(|u| u32::try_from(u).ok());
        } else if key.eq_ignore_ascii_case("INTERNALDATE") {
            date = value.as_astring().and_then(|s| parse_internal_date(&s));
        }
    }
    Some((uid.filter(|u| *u != 0)?, date?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands() {
        let q = MailQuery {
            words: vec!["hello".into(), "wo\"rld".into()],
            ..Default::default()
        };
        assert_eq!(
            q.describe(true),
            "UID SEARCH RETURN (ALL) TEXT \"hello\" TEXT \"wo\\\"rld\""
        );
        let q = MailQuery {
            words: vec!["grüße".into()],
            ..Default::default()
        };
        assert_eq!(q.describe(false), "UID SEARCH CHARSET UTF-8 TEXT \"grüße\"");
        let q = MailQuery {
            after: Some(1_577_872_800),  // 2020-01-01 10:00 UTC
            before: Some(1_578_045_600), // 2020-01-03 10:00 UTC
            ..Default::default()
        };
        assert_eq!(
            q.describe(true),
            "UID SEARCH RETURN (ALL) SINCE 31-Dec-2019 BEFORE 5-Jan-2020"
        );
        assert!(q.date_matches(1_577_872_801));
        assert!(!q.date_matches(1_577_872_800));
        assert!(!q.date_matches(1_578_045_600));
        assert_eq!(MailQuery::default().describe(false), "UID SEARCH ALL");
        // Absurd dates stay printable.
        let q = MailQuery {
            after: Some(i64::MIN),
            before: Some(i64::MAX),
            ..Default::default()
        };
        assert!(q
            .describe(true)
            .contains("SINCE 1-Jan-1970 BEFORE 31-Dec-9999"));
    }

    #[test]
    fn fetch_items() {
        let items = vec![Item::List(vec![
            Item::Atom("UID".into()),
            Item::Atom("42".into()),
            Item::Atom("INTERNALDATE".into()),
            Item::Str(b"01-Jan-2020 10:00:00 +0000".to_vec()),
        ])];
        assert_eq!(uid_and_date(&items), Some((42, 1_577_872_800)));
        assert_eq!(uid_and_date(&[]), None);
    }
}
