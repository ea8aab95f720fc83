//! Search (MS-ASCMD 2.2.1.16): the typed request and response of a mailbox search, the
//! search LongIds, and the EAS date and range forms it uses.
//!
//! A Mailbox query is one `And` holding `airsync:Class`, `airsync:CollectionId`, `FreeText`,
//! and `GreaterThan` / `LessThan` on `email:DateReceived`, each at most once. A query of
//! another shape (a second `And`, `Or`, `EqualTo`, one of those elements outside the `And`,
//! a ConversationId search) is "too complex" (Store Status 8); a value that cannot be read (a
//! bad date or range, an empty `FreeText`) is an invalid request (Store Status 2).

use crate::wbxml::tags::{airsync as a, email, search as s};
use crate::wbxml::Element;

/// Search status values (MS-ASCMD 2.2.3.177.13). The `Search` element carries only 1 or 3;
/// the `Store` element carries the others.
pub mod status {
    pub const SUCCESS: u32 = 1;
    /// One or more of the search parameters is invalid.
    pub const INVALID_REQUEST: u32 = 2;
    /// A server error (misconfiguration, temporary problem); also: no such store here.
    pub const SERVER_ERROR: u32 = 3;
    pub const BAD_LINK: u32 = 4;
    pub const ACCESS_DENIED: u32 = 5;
    pub const NOT_FOUND: u32 = 6;
    pub const CONNECTION_FAILED: u32 = 7;
    /// The query is too complex.
    pub const TOO_COMPLEX: u32 = 8;
    /// The search took too long.
    pub const TIMED_OUT: u32 = 10;
    /// The folder hierarchy is out of date (an unknown CollectionId).
    pub const FOLDER_SYNC_REQUIRED: u32 = 11;
    pub const END_OF_RANGE: u32 = 12;
    pub const ACCESS_BLOCKED: u32 = 13;
    pub const CREDENTIALS_REQUIRED: u32 = 14;
}

/// The Range when the request names none.
pub const DEFAULT_RANGE: (u32, u32) = (0, 99);
/// Most results answered in one response.
pub const MAX_RESULTS: u32 = 100;
/// Most words of a FreeText honoured (more is "too complex").
pub const MAX_WORDS: usize = 10;
/// Longest FreeText accepted, in bytes.
pub const MAX_FREE_TEXT: usize = 1024;

/// A Search request that could not be understood: the Store Status to answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejected {
    pub status: u32,
    pub reason: &'static str,
}

fn invalid(reason: &'static str) -> Rejected {
    Rejected {
        status: status::INVALID_REQUEST,
        reason,
    }
}

fn too_complex(reason: &'static str) -> Rejected {
    Rejected {
        status: status::TOO_COMPLEX,
        reason,
    }
}

/// The store a request names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SearchRequest {
    Mailbox(MailboxSearch),
    /// The Global Address List: there is no directory behind this gateway.
    Gal,
    /// DocumentLibrary or anything else: not offered.
    Other(String),
}

/// A mailbox search.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MailboxSearch {
    /// `Email` unless the request says otherwise.
    pub class: Option<String>,
    pub collection_id: Option<String>,
    /// The FreeText split into words (all must match).
    pub words: Vec<String>,
    /// DateReceived strictly after (GreaterThan), unix seconds.
    pub after: Option<i64>,
    /// DateReceived strictly before (LessThan), unix seconds.
    pub before: Option<i64>,
    /// Zero-based, inclusive.
    pub range: (u32, u32),
    pub deep_traversal: bool,
    /// Accepted; results are never cached, so every request is a fresh search.
    pub rebuild_results: bool,
    /// The Options element as sent (BodyPreference, MIMESupport), for the body options.
    pub options: Option<Element>,
}

impl MailboxSearch {
    /// Whether the search can match mail at all (Class Email, or no Class).
    pub fn wants_email(&self) -> bool {
        self.class
            .as_deref()
            .is_none_or(|c| c.eq_ignore_ascii_case("Email"))
    }
}

/// Decodes a Search request.
pub fn parse(root: &Element) -> Result<SearchRequest, Rejected> {
    if root.tag != s::SEARCH {
        return Err(invalid("root element is not Search"));
    }
    let mut stores = root.all(s::STORE);
    let store = stores.next().ok_or(invalid("no Store"))?;
    if stores.next().is_some() {
        return Err(invalid("more than one Store"));
    }
    let name = store
        .text_of(s::NAME)
        .map(str::trim)
        .ok_or(invalid("Store without Name"))?;
    if name.eq_ignore_ascii_case("GAL") {
        return Ok(SearchRequest::Gal);
    }
    if !name.eq_ignore_ascii_case("Mailbox") {
        return Ok(SearchRequest::Other(name.chars().take(64).collect()));
    }
    let query = store
        .first(s::QUERY)
        .ok_or(invalid("Store without Query"))?;
    let mut req = parse_query(query)?;
    req.range = DEFAULT_RANGE;
    if let Some(o) = store.first(s::OPTIONS) {
        if let Some(why) = super::sync::malformed_body_preferences(o) {
            return Err(invalid(why));
        }
        if let Some(r) = o.first(s::RANGE) {
            req.range = parse_range(r.text().unwrap_or("")).ok_or(invalid("bad Range"))?;
        }
        req.deep_traversal = o.first(s::DEEP_TRAVERSAL).is_some();
        req.rebuild_results = o.first(s::REBUILD_RESULTS).is_some();
        req.options = Some(o.clone());
    }
    Ok(SearchRequest::Mailbox(req))
}

fn parse_query(query: &Element) -> Result<MailboxSearch, Rejected> {
    let mut children = query.elements();
    let and = children.next().ok_or(invalid("empty Query"))?;
    if children.next().is_some() {
        return Err(too_complex("Query with more than one element"));
    }
    if and.tag != s::AND {
        return Err(too_complex("Query is not one And"));
    }
    let mut req = MailboxSearch::default();
    for c in and.elements() {
        let once = |present: bool| {
            if present {
                Err(too_complex("an element repeated in And"))
            } else {
                Ok(())
            }
        };
        match c.tag {
            t if t == a::CLASS => {
                once(req.class.is_some())?;
                req.class = Some(c.text().unwrap_or("").trim().to_string());
            }
            t if t == a::COLLECTION_ID => {
                once(req.collection_id.is_some())?;
                let id = c.text().unwrap_or("").trim();
                if id.is_empty() {
                    return Err(invalid("empty CollectionId"));
                }
                req.collection_id = Some(id.to_string());
            }
            t if t == s::FREE_TEXT => {
                once(!req.words.is_empty())?;
                let text = c.text_concat().unwrap_or_default();
                if text.len() > MAX_FREE_TEXT {
                    return Err(invalid("FreeText too long"));
                }
                req.words = words(&text);
                if req.words.is_empty() {
                    return Err(invalid("empty FreeText"));
                }
                if req.words.len() > MAX_WORDS {
                    return Err(too_complex("too many words"));
                }
            }
            t if t == s::GREATER_THAN => {
                once(req.after.is_some())?;
                req.after = Some(date_comparison(c)?);
            }
            t if t == s::LESS_THAN => {
                once(req.before.is_some())?;
                req.before = Some(date_comparison(c)?);
            }
            _ => return Err(too_complex("unsupported element in And")),
        }
    }
    if req.words.is_empty() && req.after.is_none() && req.before.is_none() {
        return Err(invalid("no FreeText and no date"));
    }
    Ok(req)
}

/// `<GreaterThan><email:DateReceived/><Value>date</Value></GreaterThan>`.
fn date_comparison(e: &Element) -> Result<i64, Rejected> {
    if e.first(email::DATE_RECEIVED).is_none() {
        return Err(too_complex(
            "comparison on something else than DateReceived",
        ));
    }
    let value = e
        .text_of(s::VALUE)
        .ok_or(invalid("comparison without Value"))?;
    parse_date(value).ok_or(invalid("bad date"))
}

/// Free text as words: split on white space, quotes and control characters dropped.
pub fn words(text: &str) -> Vec<String> {
    text.split(|c: char| c.is_whitespace() || c == '"' || c.is_control())
        .filter(|w| !w.is_empty())
        .map(str::to_string)
        .collect()
}

/// An EAS date (`2020-01-01T10:00:00.000Z`; the fraction and the `Z` are optional, a
/// numeric offset is honoured) to unix seconds.
pub fn parse_date(s: &str) -> Option<i64> {
    let s = s.trim();
    let (date, time) = s.split_once(['T', ' ']).unwrap_or((s, "00:00:00Z"));
    let mut dp = date.split('-');
    let y: i64 = dp.next()?.parse().ok()?;
    let m: i64 = dp.next()?.parse().ok()?;
    let d: i64 = dp.next()?.parse().ok()?;
    if dp.next().is_some() || !(1..=9999).contains(&y) || !(1..=12).contains(&m) {
        return None;
    }
    if !(1..=31).contains(&d) {
        return None;
    }
    // The zone: Z, +hh:mm, -hh:mm, +hhmm, or none (UTC).
    let (clock, offset) = if let Some(c) = time.strip_suffix(['Z', 'z']) {
        (c, 0)
    } else if let Some(i) = time.rfind(['+', '-']) {
        let (c, z) = time.split_at(i);
        let sign = if z.starts_with('-') { -1 } else { 1 };
        let digits: String = z.get(1..)?.chars().filter(|c| *c != ':').collect();
        if digits.len() != 4 {
            return None;
        }
        let hh: i64 = digits.get(..2)?.parse().ok()?;
        let mm: i64 = digits.get(2..)?.parse().ok()?;
        (c, sign * (hh * 3600 + mm * 60))
    } else {
        (time, 0)
    };
    let clock = clock.split('.').next()?;
    let mut tp = clock.split(':');
    let h: i64 = tp.next()?.parse().ok()?;
    let mi: i64 = tp.next().unwrap_or("0").parse().ok()?;
    let se: i64 = tp.next().unwrap_or("0").parse().ok()?;
    if h > 23 || mi > 59 || se > 60 {
        return None;
    }
    // A day past the month's end (the 31st of February) runs on into the next month.
    Some(month_start(y, m)? + (d - 1) * 86_400 + h * 3600 + mi * 60 + se - offset)
}

/// Unix seconds at midnight UTC on the first of month `m` of year `y` (proleptic Gregorian).
fn month_start(y: i64, m: i64) -> Option<i64> {
    let date = jiff::civil::Date::new(i16::try_from(y).ok()?, i8::try_from(m).ok()?, 1).ok()?;
    let midnight = date.to_datetime(jiff::civil::Time::midnight());
    let at = jiff::tz::Offset::UTC.to_timestamp(midnight).ok()?;
    Some(at.as_second())
}

/// A `m-n` range (zero-based, inclusive, m <= n).
pub fn parse_range(s: &str) -> Option<(u32, u32)> {
    let (m, n) = s.trim().split_once('-')?;
    let (m, n): (u32, u32) = (m.trim().parse().ok()?, n.trim().parse().ok()?);
    (m <= n).then_some((m, n))
}

/// The part of `total` results a requested range covers, at most [`MAX_RESULTS`]:
/// `(first, last)` inclusive, `None` when the range starts at or beyond `total`.
pub fn clamp_range(requested: (u32, u32), total: usize) -> Option<(usize, usize)> {
    let first = requested.0 as usize;
    if first >= total {
        return None;
    }
    let last = (requested.1 as usize)
        .min(first + MAX_RESULTS as usize - 1)
        .min(total - 1);
    Some((first, last))
}

/// A search LongId: `S<collectionId>:<uidvalidity>:<uid>`.
///
/// LongIds are resolved only inside the requesting user's own folders (their collection id
/// is looked up in that user's folder map, the mail fetched over that user's IMAP login), so
/// a LongId can never name another user's mail. It stays valid while the mail exists in that
/// folder: moving the mail, deleting it, or a UIDVALIDITY change of the mailbox ends it.
pub fn long_id(collection_id: &str, uid_validity: u32, uid: u32) -> String {
    format!("S{collection_id}:{uid_validity}:{uid}")
}

/// The parts of a LongId made by [`long_id`] (percent-encoded colons are accepted).
pub fn parse_long_id(s: &str) -> Option<(String, u32, u32)> {
    let s = s.trim().replace("%3a", ":").replace("%3A", ":");
    let rest = s.strip_prefix('S')?;
    let mut parts = rest.rsplitn(3, ':');
    let uid: u32 = parts.next()?.parse().ok().filter(|u| *u != 0)?;
    let validity: u32 = parts.next()?.parse().ok()?;
    let cid = parts.next()?;
    if cid.is_empty() {
        return None;
    }
    Some((cid.to_string(), validity, uid))
}

/// One result: a mail's LongId, its collection and its properties (the children of its
/// ApplicationData).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SearchResult {
    pub long_id: String,
    pub collection_id: String,
    pub application_data: Element,
}

/// A Search response with a Store: results, the Range actually answered and the Total.
pub fn response(
    store_status: u32,
    results: &[SearchResult],
    range: Option<(usize, usize)>,
    total: Option<usize>,
) -> Element {
    let mut store = Element::new(s::STORE).text_child(s::STATUS, store_status.to_string());
    for r in results {
        let mut props = Element::new(s::PROPERTIES);
        props.children = r.application_data.children.clone();
        store.push(
            Element::new(s::RESULT)
                .text_child(a::CLASS, "Email")
                .text_child(s::LONG_ID, r.long_id.clone())
                .text_child(a::COLLECTION_ID, r.collection_id.clone())
                .child(props),
        );
    }
    if store_status == status::SUCCESS && results.is_empty() {
        // No match: one empty Result (MS-ASCMD 2.2.3.155.3).
        store.push(Element::new(s::RESULT));
    }
    if let Some((first, last)) = range.filter(|_| !results.is_empty()) {
        store.push(Element::with_text(s::RANGE, format!("{first}-{last}")));
    }
    if let Some(t) = total {
        store.push(Element::with_text(s::TOTAL, t.to_string()));
    }
    Element::new(s::SEARCH)
        .text_child(s::STATUS, status::SUCCESS.to_string())
        .child(Element::new(s::RESPONSE).child(store))
}

/// A response whose Store carries only a status (a rejected or failed search).
pub fn store_status_response(store_status: u32) -> Element {
    response(store_status, &[], None, None)
}

/// The answer for a store this server does not have (GAL without a directory,
/// DocumentLibrary): Status 3 (server error) on the Search element and on the Store, so that
/// clients reading either see the failure.
pub fn unavailable_store_response() -> Element {
    Element::new(s::SEARCH)
        .text_child(s::STATUS, status::SERVER_ERROR.to_string())
        .child(
            Element::new(s::RESPONSE).child(
                Element::new(s::STORE).text_child(s::STATUS, status::SERVER_ERROR.to_string()),
            ),
        )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wbxml::tags::airsyncbase as b;

    fn mailbox_search(and: Element, options: Option<Element>) -> Element {
        let mut store = Element::new(s::STORE)
            .text_child(s::NAME, "Mailbox")
            .child(Element::new(s::QUERY).child(and));
        if let Some(o) = options {
            store.push(o);
        }
        Element::new(s::SEARCH).child(store)
    }

    fn greater_than(v: &str) -> Element {
        Element::new(s::GREATER_THAN)
            .child(Element::new(email::DATE_RECEIVED))
            .text_child(s::VALUE, v)
    }

    #[test]
    fn parses_a_full_mailbox_search() {
        let req = mailbox_search(
            Element::new(s::AND)
                .text_child(a::CLASS, "Email")
                .text_child(a::COLLECTION_ID, "5")
                .text_child(s::FREE_TEXT, "  quarterly  report ")
                .child(greater_than("2020-01-01T00:00:00.000Z"))
                .child(
                    Element::new(s::LESS_THAN)
                        .child(Element::new(email::DATE_RECEIVED))
                        .text_child(s::VALUE, "2020-02-01T00:00:00.000Z"),
                ),
            Some(
                Element::new(s::OPTIONS)
                    .text_child(s::RANGE, "10-19")
                    .child(Element::new(s::DEEP_TRAVERSAL))
                    .child(Element::new(s::REBUILD_RESULTS))
                    .text_child(a::MIME_SUPPORT, "2")
                    .child(Element::new(b::BODY_PREFERENCE).text_child(b::TYPE, "4")),
            ),
        );
        let SearchRequest::Mailbox(m) = parse(&req).unwrap() else {
            panic!("not a mailbox search")
        };
        assert_eq!(m.collection_id.as_deref(), Some("5"));
        assert_eq!(m.words, vec!["quarterly", "report"]);
        assert_eq!(m.after, Some(1_577_836_800));
        assert_eq!(m.before, Some(1_580_515_200));
        assert_eq!(m.range, (10, 19));
        assert!(m.deep_traversal && m.rebuild_results && m.wants_email());
        assert!(m.options.is_some());
    }

    #[test]
    fn rejects_with_the_right_status() {
        let st = |e: Element| parse(&e).unwrap_err().status;
        // Two Ands, Or, an element outside And: too complex.
        let two_ands = Element::new(s::SEARCH).child(
            Element::new(s::STORE).text_child(s::NAME, "Mailbox").child(
                Element::new(s::QUERY)
                    .child(Element::new(s::AND).text_child(s::FREE_TEXT, "x"))
                    .child(Element::new(s::AND).text_child(s::FREE_TEXT, "y")),
            ),
        );
        assert_eq!(st(two_ands), status::TOO_COMPLEX);
        assert_eq!(
            st(mailbox_search(Element::new(s::OR), None)),
            status::TOO_COMPLEX
        );
        assert_eq!(
            st(mailbox_search(
                Element::with_text(s::FREE_TEXT, "outside"),
                None
            )),
            status::TOO_COMPLEX
        );
        assert_eq!(
            st(mailbox_search(
                Element::new(s::AND)
                    .text_child(s::FREE_TEXT, "x")
                    .text_child(s::CONVERSATION_ID, "abc"),
                None
            )),
            status::TOO_COMPLEX
        );
        // Bad values: invalid request.
        assert_eq!(
            st(mailbox_search(
                Element::new(s::AND).child(greater_than("yesterday")),
                None
            )),
            status::INVALID_REQUEST
        );
        assert_eq!(
            st(mailbox_search(
                Element::new(s::AND).text_child(s::FREE_TEXT, "   "),
                None
            )),
            status::INVALID_REQUEST
        );
        assert_eq!(
            st(mailbox_search(
                Element::new(s::AND).text_child(s::FREE_TEXT, "x"),
                Some(Element::new(s::OPTIONS).text_child(s::RANGE, "9-0"))
            )),
            status::INVALID_REQUEST
        );
        assert_eq!(
            st(mailbox_search(
                Element::new(s::AND).text_child(a::CLASS, "Email"),
                None
            )),
            status::INVALID_REQUEST
        );
        assert_eq!(st(Element::new(s::SEARCH)), status::INVALID_REQUEST);
        assert_eq!(st(Element::new(s::STORE)), status::INVALID_REQUEST);
        let gal = Element::new(s::SEARCH).child(
            Element::new(s::STORE)
                .text_child(s::NAME, "GAL")
                .text_child(s::QUERY, "ann"),
        );
        assert_eq!(parse(&gal), Ok(SearchRequest::Gal));
    }

    #[test]
    fn dates_ranges_and_long_ids() {
        assert_eq!(parse_date("1970-01-01T00:00:00.000Z"), Some(0));
        assert_eq!(parse_date("2020-01-01T10:00:00Z"), Some(1_577_872_800));
        assert_eq!(parse_date("2020-01-01T11:00:00+01:00"), Some(1_577_872_800));
        assert_eq!(parse_date("2020-01-01"), Some(1_577_836_800));
        assert_eq!(parse_date("2020-13-01T00:00:00Z"), None);
        assert_eq!(parse_date("2020-01-01T25:00:00Z"), None);
        assert_eq!(parse_date(""), None);
        assert_eq!(parse_date("2020-01-01T00:00:00+1"), None);
        assert_eq!(parse_range("0-9"), Some((0, 9)));
        assert_eq!(parse_range("9-0"), None);
        assert_eq!(clamp_range((0, 9), 5), Some((0, 4)));
        assert_eq!(clamp_range((5, 9), 5), None);
        assert_eq!(clamp_range((0, 999), 5000), Some((0, 99)));
        let id = long_id("12", 1_700_000_000, 42);
        assert_eq!(id, "S12:1700000000:42");
        assert_eq!(parse_long_id(&id), Some(("12".into(), 1_700_000_000, 42)));
        assert_eq!(parse_long_id("S12%3a7%3a42"), Some(("12".into(), 7, 42)));
        assert_eq!(parse_long_id("12:7:42"), None);
        assert_eq!(parse_long_id("S:7:42"), None);
        assert_eq!(parse_long_id("S12:7:0"), None);
        assert_eq!(parse_long_id("S12:x:1"), None);
    }

    #[test]
    fn response_shapes() {
        let data = Element::new(a::APPLICATION_DATA).text_child(email::SUBJECT, "hi");
        let e = response(
            status::SUCCESS,
            &[SearchResult {
                long_id: "S5:1:2".into(),
                collection_id: "5".into(),
                application_data: data,
            }],
            Some((0, 0)),
            Some(7),
        );
        assert_eq!(e.text_of(s::STATUS), Some("1"));
        let store = e.first(s::RESPONSE).unwrap().first(s::STORE).unwrap();
        let tags: Vec<_> = store.elements().map(|c| c.tag).collect();
        assert_eq!(tags, vec![s::STATUS, s::RESULT, s::RANGE, s::TOTAL]);
        let r = store.first(s::RESULT).unwrap();
        let tags: Vec<_> = r.elements().map(|c| c.tag).collect();
        assert_eq!(
            tags,
            vec![a::CLASS, s::LONG_ID, a::COLLECTION_ID, s::PROPERTIES]
        );
        assert_eq!(
            r.first(s::PROPERTIES).unwrap().text_of(email::SUBJECT),
            Some("hi")
        );
        let empty = response(status::SUCCESS, &[], Some((0, 9)), Some(0));
        let store = empty.first(s::RESPONSE).unwrap().first(s::STORE).unwrap();
        let tags: Vec<_> = store.elements().map(|c| c.tag).collect();
        assert_eq!(tags, vec![s::STATUS, s::RESULT, s::TOTAL]);
        let bad = store_status_response(status::TOO_COMPLEX);
        let store = bad.first(s::RESPONSE).unwrap().first(s::STORE).unwrap();
        assert_eq!(store.text_of(s::STATUS), Some("8"));
        assert!(store.first(s::RESULT).is_none());
        let gal = unavailable_store_response();
        assert_eq!(gal.text_of(s::STATUS), Some("3"));
        let store = gal.first(s::RESPONSE).unwrap().first(s::STORE).unwrap();
        assert_eq!(store.text_of(s::STATUS), Some("3"));
    }
}
