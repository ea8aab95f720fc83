//! Parsing and header helpers shared by the other `mime` files: the parsed
//! message, header lookups, address formatting, dates, importance, S/MIME
//! detection, conversation ids and the version gate.

use mail_parser::{
    Address, Header, HeaderName, HeaderValue, Message, MessageParser, MessagePart, MimeHeaders,
    PartType,
};
use sha2::{Digest, Sha256};

use crate::eas::ProtocolVersion;
use crate::wbxml::{ElementSink, Filter, Tag};

/// A message as parsed by `mail-parser`, or only its raw bytes when nothing
/// could be parsed.
pub(crate) struct Parsed<'x> {
    pub raw: &'x [u8],
    pub msg: Option<Message<'x>>,
}

/// Parses `raw`. Never fails: a message without any header gives `msg: None`.
///
/// `mail-parser` 0.11 has `debug_assert!(false, ..)`s on some malformed MIME
/// structures (they are compiled out of release builds, where it recovers);
/// in builds with debug assertions such a message would panic. The parse
/// is therefore run under `catch_unwind`, and a message it panics on is
/// treated as unparsable (its raw bytes become the plain-text body).
pub(crate) fn parse(raw: &[u8]) -> Parsed<'_> {
    let msg = std::panic::catch_unwind(|| MessageParser::new().parse(raw))
        .ok()
        .flatten()
        .filter(|m| !m.parts.is_empty());
    Parsed { raw, msg }
}

impl<'x> Parsed<'x> {
    /// Header fields of the top-level message (empty when unparsed).
    pub fn headers(&self) -> &[Header<'x>] {
        self.msg
            .as_ref()
            .and_then(|m| m.parts.first())
            .map(|p| p.headers.as_slice())
            .unwrap_or(&[])
    }

    /// The first header field named `name`.
    pub fn header(&self, name: HeaderName<'_>) -> Option<&HeaderValue<'x>> {
        header_in(self.headers(), &name)
    }

    /// Decoded subject, "" when none.
    pub fn subject(&self) -> String {
        self.header(HeaderName::Subject)
            .map(value_text)
            .map(|s| clean_line(&s))
            .unwrap_or_default()
    }

    /// The header's raw value (unfolded, trimmed, lossy UTF-8), found by name
    /// case-insensitively; for fields `mail-parser` keeps unparsed.
    pub fn raw_header(&self, name: &str) -> Option<String> {
        let h = self
            .headers()
            .iter()
            .find(|h| h.name.as_str().eq_ignore_ascii_case(name))?;
        let start = usize::try_from(h.offset_start).ok()?;
        let end = usize::try_from(h.offset_end).ok()?;
        let bytes = self.raw.get(start..end)?;
        Some(clean_line(&String::from_utf8_lossy(bytes)))
    }

    /// Addresses of an address field (groups flattened).
    pub fn addresses(&self, name: HeaderName<'_>) -> Vec<Mailbox> {
        match self.header(name) {
            Some(HeaderValue::Address(a)) => mailboxes(a),
            _ => Vec::new(),
        }
    }

    /// The `Date:` header in Unix seconds, when present and valid.
    pub fn date(&self) -> Option<i64> {
        match self.header(HeaderName::Date) {
            Some(HeaderValue::DateTime(d)) if d.is_valid() => Some(d.to_timestamp()),
            _ => None,
        }
    }

    /// Message-ID without angle brackets.
    pub fn message_id(&self) -> Option<String> {
        self.header(HeaderName::MessageId)
            .and_then(|v| ids(v).into_iter().next())
    }

    /// References entries without angle brackets, in header order.
    pub fn references(&self) -> Vec<String> {
        self.header(HeaderName::References)
            .map(ids)
            .unwrap_or_default()
    }

    /// In-Reply-To entries without angle brackets.
    pub fn in_reply_to(&self) -> Vec<String> {
        self.header(HeaderName::InReplyTo)
            .map(ids)
            .unwrap_or_default()
    }

    /// `Importance` value: 0 low, 1 normal, 2 high, from `Importance:`,
    /// else `X-Priority:` (1-2 high, 3 normal, 4-5 low), else `Priority:`
    /// (`urgent` / `non-urgent`), else `X-MSMail-Priority:`; 1 by default.
    pub fn importance(&self) -> u8 {
        if let Some(v) = self.raw_header("Importance") {
            match v.to_ascii_lowercase().as_str() {
                "high" => return 2,
                "low" => return 0,
                "normal" => return 1,
                _ => {}
            }
        }
        if let Some(v) = self.raw_header("X-Priority") {
            match v.trim_start().chars().next() {
                Some('1') | Some('2') => return 2,
                Some('3') => return 1,
                Some('4') | Some('5') => return 0,
                _ => {}
            }
        }
        if let Some(v) = self.raw_header("Priority") {
            match v.to_ascii_lowercase().as_str() {
                "urgent" => return 2,
                "non-urgent" => return 0,
                "normal" => return 1,
                _ => {}
            }
        }
        if let Some(v) = self.raw_header("X-MSMail-Priority") {
            match v.to_ascii_lowercase().as_str() {
                "high" => return 2,
                "low" => return 0,
                _ => {}
            }
        }
        1
    }

    /// The kind of S/MIME message, from the top-level Content-Type.
    pub fn smime(&self) -> Smime {
        let Some(root) = self.msg.as_ref().and_then(|m| m.parts.first()) else {
            return Smime::None;
        };
        let Some(ct) = root.content_type() else {
            return Smime::None;
        };
        let ctype = ct.ctype().to_ascii_lowercase();
        let sub = ct.subtype().unwrap_or("").to_ascii_lowercase();
        match (ctype.as_str(), sub.as_str()) {
            ("multipart", "signed") => {
                let protocol = ct.attribute("protocol").unwrap_or("").to_ascii_lowercase();
                if protocol.contains("pkcs7-signature") {
                    Smime::MultipartSigned
                } else {
                    Smime::None
                }
            }
            ("application", "pkcs7-mime") | ("application", "x-pkcs7-mime") => Smime::Opaque,
            _ => Smime::None,
        }
    }

    /// True when the message has a real `text/html` body part.
    pub fn has_html(&self) -> bool {
        self.msg.as_ref().is_some_and(|m| {
            html_body_ids(m)
                .iter()
                .any(|&id| matches!(part(m, id).map(|p| &p.body), Some(PartType::Html(_))))
        })
    }
}

/// Ids of the plain-text body parts (`mail-parser`'s list). A message whose
/// only part is text that `mail-parser` did not take as a body (e.g. because
/// of a broken transfer encoding) has that part as its body.
pub(crate) fn text_body_ids(m: &Message<'_>) -> Vec<u32> {
    if m.text_body.is_empty() && m.html_body.is_empty() && root_is_text(m) {
        return vec![0];
    }
    m.text_body.clone()
}

/// Ids of the HTML body parts, with the same fallback as [`text_body_ids`].
pub(crate) fn html_body_ids(m: &Message<'_>) -> Vec<u32> {
    if m.text_body.is_empty() && m.html_body.is_empty() && root_is_text(m) {
        return vec![0];
    }
    m.html_body.clone()
}

fn root_is_text(m: &Message<'_>) -> bool {
    m.parts.first().is_some_and(|r| {
        matches!(r.body, PartType::Text(_) | PartType::Html(_))
            && !r.content_disposition().is_some_and(|d| d.is_attachment())
    })
}

/// The part with id `id`.
pub(crate) fn part<'a, 'x>(m: &'a Message<'x>, id: u32) -> Option<&'a MessagePart<'x>> {
    m.parts.get(usize::try_from(id).ok()?)
}

/// First header field named `name` in `headers`.
pub(crate) fn header_in<'a, 'x>(
    headers: &'a [Header<'x>],
    name: &HeaderName<'_>,
) -> Option<&'a HeaderValue<'x>> {
    headers.iter().find(|h| &h.name == name).map(|h| &h.value)
}

/// Kind of S/MIME message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Smime {
    /// Not S/MIME.
    None,
    /// `multipart/signed; protocol="application/pkcs7-signature"`.
    MultipartSigned,
    /// `application/pkcs7-mime` (encrypted or opaque-signed).
    Opaque,
}

impl Smime {
    pub fn is_smime(self) -> bool {
        self != Smime::None
    }

    /// `email:MessageClass`.
    pub fn message_class(self) -> &'static str {
        match self {
            Smime::None => "IPM.Note",
            Smime::MultipartSigned => "IPM.Note.SMIME.MultipartSigned",
            Smime::Opaque => "IPM.Note.SMIME",
        }
    }
}

/// A mailbox of an address field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Mailbox {
    pub name: Option<String>,
    pub address: Option<String>,
}

impl Mailbox {
    /// `"Name" <addr>`, or `addr` alone when there is no name, or the name
    /// alone when there is no address.
    pub fn formatted(&self) -> String {
        match (&self.name, &self.address) {
            (Some(n), Some(a)) => format!("\"{}\" <{}>", quote(n), a),
            (None, Some(a)) => a.clone(),
            (Some(n), None) => format!("\"{}\"", quote(n)),
            (None, None) => String::new(),
        }
    }

    /// What a list shows: the display name, else the address.
    pub fn display(&self) -> &str {
        self.name
            .as_deref()
            .or(self.address.as_deref())
            .unwrap_or("")
    }
}

fn mailboxes(a: &Address<'_>) -> Vec<Mailbox> {
    a.iter()
        .map(|m| Mailbox {
            name: m.name.as_deref().map(clean_line).filter(|n| !n.is_empty()),
            address: m
                .address
                .as_deref()
                .map(|s| clean_line(s).trim_matches(['<', '>']).to_string())
                .filter(|s| !s.is_empty()),
        })
        .filter(|m| m.name.is_some() || m.address.is_some())
        .collect()
}

/// Escapes `"` and `\` inside a quoted display name.
fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// Address list as Exchange formats it: `"Name" <addr>` joined with ", ".
pub(crate) fn format_list(list: &[Mailbox]) -> String {
    list.iter()
        .map(Mailbox::formatted)
        .filter(|s| !s.is_empty())
        .collect::<Vec<_>>()
        .join(", ")
}

/// `email:DisplayTo`: display names (or addresses) joined with "; ".
pub(crate) fn display_list(list: &[Mailbox]) -> String {
    list.iter()
        .map(Mailbox::display)
        .filter(|s| !s.is_empty())
        .collect::<Vec<_>>()
        .join("; ")
}

/// Text of a header value (text lists joined with a space).
fn value_text(v: &HeaderValue<'_>) -> String {
    match v {
        HeaderValue::Text(t) => t.to_string(),
        HeaderValue::TextList(l) => l.join(" "),
        _ => String::new(),
    }
}

/// Message ids of an id field, without angle brackets.
fn ids(v: &HeaderValue<'_>) -> Vec<String> {
    let list: Vec<String> = match v {
        HeaderValue::Text(t) => vec![t.to_string()],
        HeaderValue::TextList(l) => l.iter().map(|s| s.to_string()).collect(),
        _ => Vec::new(),
    };
    list.into_iter()
        .map(|s| s.trim().trim_matches(['<', '>']).to_string())
        .filter(|s| !s.is_empty())
        .collect()
}

/// One line of text: control characters (folding left-overs, NUL, CR, LF,
/// tabs) become spaces, runs of spaces collapse, both ends are trimmed.
pub(crate) fn clean_line(s: &str) -> String {
    if is_clean_ascii(s.as_bytes()) {
        return s.to_owned();
    }
    clean_line_chars(s)
}

/// [`clean_line`] character by character.
fn clean_line_chars(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut space = false;
    for c in s.chars() {
        if c.is_control() || c.is_whitespace() {
            space = true;
        } else {
            if space && !out.is_empty() {
                out.push(' ');
            }
            space = false;
            out.push(c);
        }
    }
    out
}

/// True when [`clean_line`] leaves `s` as it is and that is seen from its bytes alone: printable
/// ASCII, spaces single and between other characters.
fn is_clean_ascii(s: &[u8]) -> bool {
    let mut prev_space = true;
    for &b in s {
        match b {
            b' ' if prev_space => return false,
            b' ' => prev_space = true,
            0x21..=0x7E => prev_space = false,
            _ => return false,
        }
    }
    !prev_space || s.is_empty()
}

/// Latest instant formatted: 9999-12-31T23:59:59Z.
const MAX_DATE: i64 = 253_402_300_799;

/// `YYYY-MM-DDTHH:MM:SS.000Z` in UTC (MS-ASDTYPE 2.3 dateTime), for Unix
/// seconds; values outside 1970..=9999 are clamped to that range.
pub(crate) fn format_date(unix: i64) -> String {
    let t = unix.clamp(0, MAX_DATE);
    // Civil arithmetic: a `jiff::Timestamp` ends a day short of MAX_DATE. In range by the
    // clamp, so the addition cannot fail.
    jiff::civil::DateTime::constant(1970, 1, 1, 0, 0, 0, 0)
        .checked_add(jiff::SignedDuration::from_secs(t))
        .map(|at| at.strftime("%Y-%m-%dT%H:%M:%S.000Z").to_string())
        .unwrap_or_default()
}

/// `email2:ConversationId`: the first 16 bytes of SHA-256 of the thread's
/// root Message-ID (the first References entry, else the first In-Reply-To
/// entry, else the message's own Message-ID). A message without any of them
/// is its own thread: the hash is taken over its thread topic and date so
/// that it stays stable across syncs.
pub(crate) fn conversation_id(p: &Parsed<'_>, thread_topic: &str, date: i64) -> [u8; 16] {
    let root = p
        .references()
        .into_iter()
        .next()
        .or_else(|| p.in_reply_to().into_iter().next())
        .or_else(|| p.message_id());
    let mut h = Sha256::new();
    match root {
        Some(id) => {
            h.update(b"id:");
            h.update(id.as_bytes());
        }
        None => {
            h.update(b"topic:");
            h.update(thread_topic.as_bytes());
            h.update(date.to_be_bytes());
        }
    }
    let digest = h.finalize();
    let mut out = [0u8; 16];
    for (o, d) in out.iter_mut().zip(digest) {
        *o = d;
    }
    out
}

/// Seconds between 1601-01-01 (FILETIME epoch) and 1970-01-01.
const FILETIME_UNIX_OFFSET: i64 = 11_644_473_600;

/// `email2:ConversationIndex`: the 5-byte Conversation Index Header of
/// MS-ASCON 2.2.2.4 / MS-OXOMSG 2.2.1.3 only: the 40 most significant bits of
/// the FILETIME (100 ns since 1601, UTC) of the message's `Date:` (else its
/// INTERNALDATE), big-endian. No response levels are added.
pub(crate) fn conversation_index(sent_unix: i64) -> [u8; 5] {
    let secs = sent_unix.clamp(0, MAX_DATE) + FILETIME_UNIX_OFFSET;
    let filetime = u64::try_from(secs).unwrap_or(0).saturating_mul(10_000_000);
    let b = filetime.to_be_bytes();
    [b[0], b[1], b[2], b[3], b[4]]
}

/// True if `tag` exists in `version` according to the code page tables
/// (`All`, or a comma list of versions). Unknown tags are not supported.
pub(crate) fn tag_in_version(tag: Tag, version: ProtocolVersion) -> bool {
    match tag.versions() {
        Some("All") => true,
        Some(list) => list
            .as_bytes()
            .split(|&b| b == b',')
            .any(|v| v.trim_ascii() == version.as_str().as_bytes()),
        None => false,
    }
}

/// `out` with every element whose tag `version` does not have left out, with its content.
pub(crate) fn for_version<S: ElementSink>(
    out: &mut S,
    version: ProtocolVersion,
) -> Filter<'_, S, impl Fn(Tag) -> bool> {
    Filter::new(out, move |t| tag_in_version(t, version))
}

#[cfg(test)]
mod tests {
    /// The byte-level shortcut of `clean_line` gives what the character walk gives.
    #[test]
    fn clean_line_shortcut_agrees() {
        use proptest::prelude::*;
        proptest!(|(s in "[a-c \t\r\n\u{0}\u{7f}\u{a0}\u{85}\u{2003}é-]{0,12}")| {
            prop_assert_eq!(super::clean_line(&s), super::clean_line_chars(&s));
        });
        for s in ["", "a", "a b", " a", "a ", "a  b", "a\tb", "x\u{a0}y"] {
            assert_eq!(super::clean_line(s), super::clean_line_chars(s), "{s:?}");
        }
    }

    use super::*;

    #[test]
    fn dates() {
        assert_eq!(format_date(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(format_date(1_795_687_200), "2026-11-26T10:00:00.000Z");
        assert_eq!(format_date(951_782_400), "2000-02-29T00:00:00.000Z");
        assert_eq!(format_date(-5), "1970-01-01T00:00:00.000Z");
        assert_eq!(format_date(i64::MAX), "9999-12-31T23:59:59.000Z");
        assert_eq!(format_date(i64::MIN), "1970-01-01T00:00:00.000Z");
    }

    #[test]
    fn conversation_index_is_filetime_prefix() {
        // 2000-01-01T00:00:00Z = FILETIME 0x01BF53EB256D4000.
        assert_eq!(
            conversation_index(946_684_800),
            [0x01, 0xBF, 0x53, 0xEB, 0x25]
        );
    }

    #[test]
    fn lines_and_quotes() {
        assert_eq!(clean_line("  a\r\n\t b\0c "), "a b c");
        let m = Mailbox {
            name: Some("Doe, \"J\"".into()),
            address: Some("j@x.org".into()),
        };
        assert_eq!(m.formatted(), "\"Doe, \\\"J\\\"\" <j@x.org>");
    }

    #[test]
    fn version_gate() {
        use crate::wbxml::tags::{airsyncbase, email, email2};
        assert!(tag_in_version(email::SUBJECT, ProtocolVersion::V12_0));
        assert!(!tag_in_version(email::CATEGORIES, ProtocolVersion::V12_1));
        assert!(tag_in_version(email::CATEGORIES, ProtocolVersion::V14_0));
        assert!(!tag_in_version(
            email2::CONVERSATION_ID,
            ProtocolVersion::V12_1
        ));
        assert!(!tag_in_version(email2::IS_DRAFT, ProtocolVersion::V14_1));
        assert!(tag_in_version(email2::IS_DRAFT, ProtocolVersion::V16_1));
        assert!(!tag_in_version(
            airsyncbase::PREVIEW,
            ProtocolVersion::V12_1
        ));
    }
}
