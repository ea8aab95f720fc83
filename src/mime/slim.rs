//! Preparing a message for the parser: leaving out the part bodies its item will not show,
//! and decoding its text parts in place.
//!
//! `mail-parser` decodes the body of every part it parses, one byte at a time. An Email item
//! shows the header fields, one body and the names and sizes of the attachments, not their
//! bytes; with an HTML body and no preview it does not show the plain-text alternative either.
//! Decoding those bodies costs more than building the rest of the item. [`slim`] copies the
//! message with these changes:
//! - a non-text leaf (image, PDF, ...) at any depth loses its body. Its decoded size is counted
//!   without decoding, by the rules of `mail-parser`'s decoder, so the item lists the size the
//!   whole message gives;
//! - a `text/plain` child of a `multipart/alternative` that also has a `text/html` or
//!   `multipart/related` child loses its body when the item's body is HTML without a preview;
//! - a text part in base64 (in its plain form) is decoded in place by the `base64` crate, one
//!   in quoted-printable by the parser's own rules (copying runs of ordinary characters at
//!   once), and its `Content-Transfer-Encoding` then says `binary`: the parser converts the
//!   same bytes to the same text, without decoding them itself. A part decoded from
//!   quoted-printable must not turn out to be an attachment (an attachment's bytes are read
//!   from the original by other rules), else the whole message is parsed;
//! - a text part so decoded whose charset `mail-parser` reads as UTF-8 (`utf-8`, none, or one
//!   it has no decoder for) is moved out of the copy instead: its body is left empty and the
//!   decoded bytes are returned beside the copy ([`Slimmed::supplied`]). The caller puts the
//!   text into the parsed part, converted as the parser would (`String::from_utf8_lossy`),
//!   which saves the parser's slower UTF-8 check of the largest bytes of the message.
//!
//! Every other byte is copied as it is, so the copy parses into the same parts, in the same
//! order, with the same header fields and the same shown text. The caller parses the copy,
//! checks that it has that shape (see `email::application_data_partial`), and otherwise parses
//! the whole message. `mime::slim::tests` builds items both ways and compares them, over the
//! test messages and random MIME trees.
//!
//! The split is cautious: when in doubt it gives `None` and the whole message is parsed. Doubts
//! are: an occurrence of a boundary that is not a delimiter line of its own (`mail-parser`
//! finds boundaries anywhere in a line), a multipart without a boundary, without a close
//! delimiter or with an empty part, an attached message (`mail-parser` parses into it), a
//! digest, S/MIME, a part whose header block does not end in an empty line, more than
//! [`MAX_PARTS`] parts or [`MAX_DEPTH`] levels, and a body `mail-parser` would fail to decode
//! (it then keeps such a part as text, with other consequences).

use std::sync::OnceLock;

use mail_parser::decoders::charsets::map::charset_decoder;
use mail_parser::{ContentType, GetHeader, Header, HeaderName, HeaderValue, MessageParser};
use memchr::memmem;

use super::{BodyOptions, BODY_TYPE_HTML, BODY_TYPE_MIME, BODY_TYPE_PLAIN};

/// Deepest multipart nesting split; deeper messages are parsed whole.
const MAX_DEPTH: usize = 16;
/// Most parts split; messages with more are parsed whole.
const MAX_PARTS: usize = 200;

/// What was changed in a message prepared for the parser (the prepared bytes are in the
/// buffer given to [`slim`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Slimmed {
    /// Number of parts (a depth-first, pre-order walk, the root included).
    pub parts: usize,
    /// (part index, decoded size) of each non-text part whose body was left out.
    pub omitted: Vec<(usize, u64)>,
    /// Index of each plain-text alternative whose body was left out.
    pub texts: Vec<usize>,
    /// Index of each text part decoded in place from quoted-printable (by the parser's rules,
    /// which differ from those an attachment's bytes are read with).
    pub decoded: Vec<usize>,
    /// (part index, range of the side buffer) of each decoded text part whose body was moved
    /// out of the copy: the part parses with an empty body, to be given these bytes as UTF-8.
    pub supplied: Vec<(usize, std::ops::Range<usize>)>,
}

/// Writes to `out` the message without the bodies an item with `opts` does not show, and with
/// its text parts decoded in place or, decoded, to `side`; `None` (and the buffers undefined)
/// when nothing would change, or when the message is not plain enough to split with certainty.
pub(crate) fn slim(
    raw: &[u8],
    opts: &BodyOptions,
    out: &mut Vec<u8>,
    side: &mut Vec<u8>,
) -> Option<Slimmed> {
    if opts.may_send_mime() || !header_mentions_encoding_or_multipart(raw) {
        return None;
    }
    let (headers, body) = part_headers(raw, 0, raw.len())?;
    out.clear();
    out.reserve(raw.len());
    side.clear();
    let mut w = Walk {
        raw,
        drop_plain: html_without_preview(opts),
        index: 0,
        out,
        side,
        copied: 0,
        omitted: Vec::new(),
        texts: Vec::new(),
        decoded: Vec::new(),
        supplied: Vec::new(),
        boundaries: Vec::new(),
    };
    let root = Child {
        headers,
        start: 0,
        body,
        end: raw.len(),
    };
    match root.kind()? {
        Kind::Multipart {
            boundary,
            alternative,
        } => {
            let signed = content_type(&root.headers).and_then(|c| c.subtype()) == Some("signed");
            if signed {
                return None;
            }
            w.multipart(body, raw.len(), boundary.as_bytes(), alternative, 1)?;
        }
        Kind::Plain | Kind::Html | Kind::OtherText => w.decode_text(&root),
        Kind::Leaf => {}
    }
    if w.copied == 0 {
        return None;
    }
    w.out.extend_from_slice(raw.get(w.copied..)?);
    Some(Slimmed {
        parts: w.index + 1,
        omitted: w.omitted,
        texts: w.texts,
        decoded: w.decoded,
        supplied: w.supplied,
    })
}

/// True when the body an item gets is HTML without a preview, for any message that is not
/// S/MIME (those are never split): the plain-text alternative is then not shown.
fn html_without_preview(opts: &BodyOptions) -> bool {
    let first = opts.preferences.iter().find(|p| match p.body_type {
        BODY_TYPE_PLAIN | BODY_TYPE_HTML => true,
        BODY_TYPE_MIME => opts.mime_support != 1,
        _ => false,
    });
    first.is_some_and(|p| p.body_type == BODY_TYPE_HTML && p.preview.unwrap_or(0) == 0)
}

/// A quick look at the top-level header block: a message without "multipart", "base64" or
/// "quoted-printable" in it has nothing to change.
fn header_mentions_encoding_or_multipart(raw: &[u8]) -> bool {
    let end = memmem::find(raw, b"\n\r\n")
        .or_else(|| memmem::find(raw, b"\n\n"))
        .unwrap_or(raw.len());
    raw.get(..end).unwrap_or(raw).windows(6).any(|w| {
        w.eq_ignore_ascii_case(b"base64")
            || w.eq_ignore_ascii_case(b"multip")
            || w.eq_ignore_ascii_case(b"quoted")
    })
}

/// The header fields of the part at `raw[start..end]` (as `mail-parser` reads them) and where
/// its body starts. `None` when the header block does not end in an empty line.
fn part_headers(raw: &[u8], start: usize, end: usize) -> Option<(Vec<Header<'_>>, usize)> {
    let part = raw.get(start..end)?;
    // The first empty line ends the header block.
    let mut line = 0;
    let body = loop {
        let rest = part.get(line..)?;
        let nl = memchr::memchr(b'\n', rest)?;
        let content = rest.get(..nl)?;
        if content.is_empty() || content == b"\r" {
            break line + nl + 1;
        }
        if content.iter().all(u8::is_ascii_whitespace) {
            // A line of blanks: `mail-parser` reads it as a continuation, or (first in the
            // part) as the end of an empty header block.
            return None;
        }
        line += nl + 1;
    };
    if line == 0 {
        return Some((Vec::new(), start + body));
    }
    let headers = parser()
        .parse_headers(part.get(..body)?)
        .and_then(|m| m.parts.into_iter().next())
        .map(|p| p.headers)
        .unwrap_or_default();
    Some((headers, start + body))
}

/// A parser of Content-Type and Content-Transfer-Encoding (as `mail-parser`'s default parser
/// reads them); other fields are kept raw.
fn parser() -> &'static MessageParser {
    static PARSER: OnceLock<MessageParser> = OnceLock::new();
    PARSER.get_or_init(|| {
        MessageParser::new()
            .header_content_type(HeaderName::ContentType)
            .header_text(HeaderName::ContentTransferEncoding)
    })
}

fn content_type<'a, 'x>(headers: &'a Vec<Header<'x>>) -> Option<&'a ContentType<'x>> {
    headers
        .header_value(&HeaderName::ContentType)
        .and_then(|c| c.as_content_type())
}

/// The transfer encoding `mail-parser` decodes a part with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Encoding {
    Base64,
    QuotedPrintable,
    None,
}

fn encoding(headers: &Vec<Header<'_>>) -> Encoding {
    match headers.header_value(&HeaderName::ContentTransferEncoding) {
        Some(HeaderValue::Text(e)) if e.eq_ignore_ascii_case("base64") => Encoding::Base64,
        Some(HeaderValue::Text(e)) if e.eq_ignore_ascii_case("quoted-printable") => {
            Encoding::QuotedPrintable
        }
        _ => Encoding::None,
    }
}

/// What a part is, as far as leaving out its body goes (`mail-parser`'s classification).
enum Kind<'h> {
    Multipart {
        boundary: &'h str,
        alternative: bool,
    },
    Plain,
    Html,
    /// Any other text part: always kept.
    OtherText,
    /// Images, PDFs, ...: the body can be left out.
    Leaf,
}

/// One part: its header fields, where it starts, where its body starts and ends.
struct Child<'x> {
    headers: Vec<Header<'x>>,
    start: usize,
    body: usize,
    end: usize,
}

impl Child<'_> {
    /// `None` for parts that are never split (attached messages, digests, a multipart
    /// without a boundary).
    fn kind(&self) -> Option<Kind<'_>> {
        let Some(ct) = content_type(&self.headers) else {
            return Some(Kind::Plain);
        };
        Some(match ct.ctype() {
            "multipart" => {
                if ct.subtype() == Some("digest") {
                    return None;
                }
                Kind::Multipart {
                    boundary: ct.attribute("boundary")?,
                    alternative: ct.subtype() == Some("alternative"),
                }
            }
            "text" => match ct.subtype() {
                Some("plain") => Kind::Plain,
                Some("html") => Kind::Html,
                _ => Kind::OtherText,
            },
            "message" if matches!(ct.subtype(), Some("rfc822") | Some("global")) => return None,
            _ => Kind::Leaf,
        })
    }

    fn is_html_or_related(&self) -> bool {
        match content_type(&self.headers) {
            Some(ct) => match ct.ctype() {
                "text" => ct.subtype() == Some("html"),
                "multipart" => ct.subtype() == Some("related"),
                _ => false,
            },
            None => false,
        }
    }
}

struct Walk<'a> {
    raw: &'a [u8],
    drop_plain: bool,
    /// Index of the last part visited.
    index: usize,
    /// The prepared message so far: `raw[..copied]` with its changes.
    out: &'a mut Vec<u8>,
    /// Decoded texts moved out of the copy.
    side: &'a mut Vec<u8>,
    copied: usize,
    omitted: Vec<(usize, u64)>,
    texts: Vec<usize>,
    decoded: Vec<usize>,
    supplied: Vec<(usize, std::ops::Range<usize>)>,
    /// `--boundary` of every enclosing multipart.
    boundaries: Vec<Vec<u8>>,
}

impl<'a> Walk<'a> {
    /// Leaves out `raw[start..end]`, which starts at or after what is already copied.
    fn cut(&mut self, start: usize, end: usize) -> Option<()> {
        self.out
            .extend_from_slice(self.raw.get(self.copied..start)?);
        self.copied = end;
        Some(())
    }

    /// Splits the body `raw[start..end]` of a multipart and walks its children.
    fn multipart(
        &mut self,
        start: usize,
        end: usize,
        boundary: &[u8],
        alternative: bool,
        depth: usize,
    ) -> Option<()> {
        if depth > MAX_DEPTH || boundary.is_empty() {
            return None;
        }
        let raw = self.raw;
        let region = raw.get(start..end)?;
        let mut delim = Vec::with_capacity(boundary.len() + 2);
        delim.extend_from_slice(b"--");
        delim.extend_from_slice(boundary);
        let found: Vec<usize> = memmem::find_iter(region, &delim).collect();
        self.boundaries.push(delim);
        let delim_len = boundary.len() + 2;
        // (line start, next line start) of every delimiter line; the last one closes.
        let mut lines: Vec<(usize, usize)> = Vec::new();
        let mut closed = false;
        for pos in found {
            let at = start + pos;
            if closed || (at > start && raw.get(at - 1) != Some(&b'\n')) {
                return None;
            }
            let mut i = at + delim_len;
            if raw.get(i..end)?.starts_with(b"--") {
                closed = true;
                i += 2;
            }
            loop {
                if i >= end {
                    break;
                }
                match raw.get(i)? {
                    b'\n' => {
                        i += 1;
                        break;
                    }
                    b' ' | b'\t' | b'\r' => i += 1,
                    _ => return None,
                }
            }
            lines.push((at, i));
        }
        if !closed || lines.len() < 2 {
            return None;
        }
        let mut children = Vec::with_capacity(lines.len() - 1);
        for pair in lines.windows(2) {
            let &[(_, child_start), (next, _)] = pair else {
                return None;
            };
            // The line break before a delimiter belongs to the delimiter.
            let mut child_end = next.checked_sub(1)?;
            if child_end > child_start && raw.get(child_end - 1) == Some(&b'\r') {
                child_end -= 1;
            }
            if next <= child_start {
                return None;
            }
            // The header block may end with the line break before the delimiter.
            let (headers, body) = part_headers(raw, child_start, next)?;
            children.push(Child {
                headers,
                start: child_start,
                body: body.min(child_end),
                end: child_end,
            });
        }
        let has_html = alternative && children.iter().any(Child::is_html_or_related);
        for c in &children {
            self.index += 1;
            if self.index >= MAX_PARTS {
                return None;
            }
            match c.kind()? {
                Kind::Multipart {
                    boundary,
                    alternative,
                } => self.multipart(c.body, c.end, boundary.as_bytes(), alternative, depth + 1)?,
                Kind::Leaf if c.body < c.end => {
                    let body = raw.get(c.body..c.end)?;
                    let size = match encoding(&c.headers) {
                        Encoding::Base64 => base64_size(body),
                        Encoding::QuotedPrintable => None,
                        Encoding::None => Some(body.len() as u64),
                    };
                    if let Some(size) = size {
                        self.cut(c.body, c.end)?;
                        self.omitted.push((self.index, size));
                    }
                }
                Kind::Plain if has_html && self.drop_plain && c.body < c.end => {
                    let body = raw.get(c.body..c.end)?;
                    let decodes = match encoding(&c.headers) {
                        Encoding::Base64 => base64_size(body).is_some(),
                        Encoding::QuotedPrintable => quoted_printable_decodes(body),
                        Encoding::None => true,
                    };
                    if decodes {
                        self.cut(c.body, c.end)?;
                        self.texts.push(self.index);
                    } else {
                        self.decode_text(c);
                    }
                }
                Kind::Plain | Kind::Html | Kind::OtherText => self.decode_text(c),
                _ => {}
            }
        }
        self.boundaries.pop();
        Some(())
    }

    /// Decodes a text part in base64 or quoted-printable in place, its
    /// Content-Transfer-Encoding becoming one `mail-parser` reads unencoded. The parsed text is
    /// the same (the same bytes go through the same charset conversion), at a fraction of the
    /// parser's cost. Only done when the base64 is in its plain form or the quoted-printable
    /// decodes by the parser's rules, and the decoded bytes hold no enclosing boundary.
    fn decode_text(&mut self, c: &Child<'_>) {
        let mark = self.out.len();
        if self.try_decode_text(c).is_none() {
            self.out.truncate(mark);
        }
    }

    /// [`Self::decode_text`]; `None` (with bytes appended to `out` past its length on entry,
    /// to be cut off, and nothing else changed) when the part is left as it is.
    fn try_decode_text(&mut self, c: &Child<'_>) -> Option<()> {
        let enc = encoding(&c.headers);
        if c.body >= c.end || enc == Encoding::None {
            return None;
        }
        let field = c
            .headers
            .iter()
            .rev()
            .find(|h| h.name == HeaderName::ContentTransferEncoding)?;
        let (from, to) = (
            c.start + field.offset_start as usize,
            c.start + field.offset_end as usize,
        );
        let word: &[u8] = match enc {
            Encoding::Base64 => b"base64",
            _ => b"quoted-printable",
        };
        let at = self.raw.get(from..to).and_then(|v| {
            v.windows(word.len())
                .position(|w| w.eq_ignore_ascii_case(word))
        })?;
        // Written in place; undone when the text cannot stand in for the encoded one.
        let raw = self.raw;
        let word_at = from + at;
        self.out.extend_from_slice(raw.get(self.copied..word_at)?);
        self.out.extend_from_slice(b"binary");
        self.out
            .extend_from_slice(raw.get(word_at + word.len()..c.body)?);
        let text_at = self.out.len();
        let decoded = match enc {
            Encoding::Base64 => decode_plain_base64(raw.get(c.body..c.end)?, self.out),
            _ => {
                // The parser decodes up to the delimiter of the innermost multipart.
                let boundary = self
                    .boundaries
                    .last()
                    .map_or(b"".as_slice(), |d| d.get(2..).unwrap_or_default());
                decode_quoted_printable(raw.get(c.body..)?, c.end - c.body, boundary, self.out)
            }
        };
        let text = self.out.get(text_at..)?;
        if !decoded
            || text.is_empty()
            || self
                .boundaries
                .iter()
                .any(|b| memmem::find(text, b).is_some())
        {
            return None;
        }
        self.copied = c.end;
        if enc == Encoding::QuotedPrintable {
            self.decoded.push(self.index);
        }
        let read_as_utf8 = content_type(&c.headers)
            .and_then(|ct| ct.attribute("charset"))
            .and_then(|cs| charset_decoder(cs.as_bytes()))
            .is_none();
        if read_as_utf8 {
            let from = self.side.len();
            // `out` only grew past `text_at`.
            self.side
                .extend_from_slice(self.out.get(text_at..).unwrap_or_default());
            self.out.truncate(text_at);
            self.supplied.push((self.index, from..self.side.len()));
        }
        Some(())
    }
}

/// The lines of a body without their line breaks.
fn lines(body: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut rest = Some(body);
    std::iter::from_fn(move || {
        let r = rest?;
        let line = match memchr::memchr(b'\n', r) {
            Some(i) => {
                let (line, tail) = r.split_at_checked(i).unwrap_or((r, &[]));
                rest = tail.get(1..);
                line
            }
            None => {
                rest = None;
                r
            }
        };
        Some(line.strip_suffix(b"\r").unwrap_or(line))
    })
}

/// Appends to `out` the bytes of a base64 body in its plain form (lines of whole groups of
/// four characters, `=` only as the padding of the last group), which `mail-parser` decodes to
/// the same bytes; false (and some bytes appended) for any other form.
fn decode_plain_base64(body: &[u8], out: &mut Vec<u8>) -> bool {
    thread_local! {
        static JOINED: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
    }
    JOINED.with(|cell| {
        let mut fresh = Vec::new();
        let mut kept = cell.try_borrow_mut();
        let joined = match kept.as_deref_mut() {
            Ok(j) => j,
            Err(_) => &mut fresh,
        };
        // The lines joined are decoded at once (a line holds whole groups, so the bytes are
        // those of decoding each line), by a SIMD decoder as strict as the `base64` crate's
        // standard engine: padding required, unused bits zero.
        let ok = join_plain_base64(body, joined)
            && base64_simd::STANDARD.decode_append(&*joined, out).is_ok();
        if joined.capacity() > 1 << 20 {
            *joined = Vec::new();
        }
        ok
    })
}

/// Writes to `joined` the lines of a base64 body without their line breaks; false when the
/// body is not in its plain form.
fn join_plain_base64(body: &[u8], joined: &mut Vec<u8>) -> bool {
    joined.clear();
    let mut ended = false;
    for line in lines(body) {
        if line.is_empty() {
            continue;
        }
        if ended || line.len() % 4 != 0 {
            return false;
        }
        ended = line.ends_with(b"=");
        joined.extend_from_slice(line);
    }
    true
}

/// A base64 character (branch-free, so that a line is checked many bytes at a time).
fn is_base64(b: u8) -> bool {
    let lower = b | 0x20;
    (lower.wrapping_sub(b'a') < 26) | (b.wrapping_sub(b'0') < 10) | (b == b'+') | (b == b'/')
}

/// The size `mail-parser` decodes a base64 body to, or `None` when it would reject it. Lines
/// of whole groups with `=` padding only at their end are counted line by line; any other
/// form character by character.
fn base64_size(body: &[u8]) -> Option<u64> {
    let mut total = 0u64;
    for line in lines(body) {
        let pad = line
            .iter()
            .rev()
            .take(2)
            .take_while(|&&b| b == b'=')
            .count();
        let data = line.get(..line.len() - pad).unwrap_or_default();
        if line.len() % 4 != 0 || !data.iter().fold(true, |ok, &b| ok & is_base64(b)) {
            return base64_size_by_character(body);
        }
        total += (line.len() / 4 * 3 - pad) as u64;
    }
    Some(total)
}

/// [`base64_size`] of any form: each `=` ends a group (1 or 2 characters give one byte, 3 give
/// two); at the end of the body an unfinished group gives nothing. Blanks and line breaks are
/// skipped; anything else (a `-` included) is not counted on.
fn base64_size_by_character(body: &[u8]) -> Option<u64> {
    let mut total = 0u64;
    let mut group = 0u64;
    for &b in body {
        match b {
            b'=' => {
                let pad = match group % 4 {
                    1 | 2 => 1,
                    3 => 2,
                    _ => 0,
                };
                total += group / 4 * 3 + pad;
                group = 0;
            }
            b' ' | b'\t' | b'\r' | b'\n' => {}
            b if is_base64(b) => group += 1,
            _ => return None,
        }
    }
    Some(total + group / 4 * 3)
}

/// What `mail-parser` decodes a quoted-printable body to: `data` runs from the start of the
/// body to the end of the message, and decoding stops at `--boundary` (at the end when
/// `boundary` is empty). The parser's own rules, quirks included, so that the decoded text can
/// stand in for the encoded one: `\r` is dropped and every line break becomes CRLF once a CR
/// has been seen (LF before); blanks before a line break go; `=` before a line break (blanks
/// between) joins the lines; an `=` and a non-hex character stay as they are; the line break
/// before the delimiter goes, and with it as many bytes as that line break and a `-` take.
/// Appended to `out`; false where the parser gives up (an `=` after `=` or after `=` and one
/// hex digit, no delimiter) or where its arithmetic would overflow. `data[..plain]` holds no
/// delimiter, so runs of ordinary characters there are copied at once.
fn decode_quoted_printable(data: &[u8], plain: usize, boundary: &[u8], out: &mut Vec<u8>) -> bool {
    let base = out.len();
    match decode_quoted_printable_into(data, plain, boundary, out, base) {
        Some(()) => true,
        None => false,
    }
}

fn decode_quoted_printable_into(
    data: &[u8],
    plain: usize,
    boundary: &[u8],
    buf: &mut Vec<u8>,
    base: usize,
) -> Option<()> {
    #[derive(PartialEq)]
    enum State {
        None,
        Eq,
        Hex1,
    }
    fn hex(b: u8) -> Option<u8> {
        (b as char).to_digit(16).map(|d| d as u8)
    }
    let mut state = State::None;
    let mut hex1 = 0u8;
    let (mut last, mut before_last) = (0u8, 0u8);
    let mut ws = 0usize;
    let mut crlf: &[u8] = b"\n";
    let mut i = 0;
    while let Some(&ch) = data.get(i) {
        if state == State::None && i < plain {
            let ordinary = data.get(i..plain).unwrap_or_default();
            let end = memchr::memchr3(b'=', b'\n', b'\r', ordinary).map_or(plain, |k| i + k);
            if let Some(run) = data.get(i..end).filter(|run| !run.is_empty()) {
                buf.extend_from_slice(run);
                let blanks = run
                    .iter()
                    .rev()
                    .take_while(|b| b.is_ascii_whitespace())
                    .count();
                ws = if blanks == run.len() {
                    ws + blanks
                } else {
                    blanks
                };
                before_last = match run {
                    [.., b, _] => *b,
                    _ => last,
                };
                last = run.last().copied().unwrap_or(last);
                i = end;
                continue;
            }
        }
        i += 1;
        match ch {
            b'=' => {
                if state != State::None {
                    return None;
                }
                state = State::Eq;
            }
            b'\n' => {
                if state == State::Eq {
                    state = State::None;
                } else {
                    buf.truncate(base.max(buf.len().checked_sub(ws)?));
                    buf.extend_from_slice(crlf);
                }
                ws = 0;
            }
            b'\r' => crlf = b"\r\n",
            b'-' if !boundary.is_empty()
                && last == b'-'
                && data.get(i..).is_some_and(|rest| rest.starts_with(boundary)) =>
            {
                let cut = if before_last == b'\n' {
                    crlf.len() + 1
                } else {
                    1
                };
                if buf.len() - base < cut {
                    return None;
                }
                buf.truncate(buf.len() - cut);
                return Some(());
            }
            _ => match state {
                State::None => {
                    if ch.is_ascii_whitespace() {
                        ws += 1;
                    } else {
                        ws = 0;
                    }
                    buf.push(ch);
                }
                State::Eq => {
                    if let Some(h) = hex(ch) {
                        hex1 = h;
                        state = State::Hex1;
                    } else if !ch.is_ascii_whitespace() {
                        state = State::None;
                        buf.extend_from_slice(&[b'=', ch]);
                        ws = 0;
                    }
                }
                State::Hex1 => {
                    state = State::None;
                    match hex(ch) {
                        Some(h) => buf.push((hex1 << 4) | h),
                        None => buf.extend_from_slice(&[b'=', last, ch]),
                    }
                    ws = 0;
                }
            },
        }
        before_last = last;
        last = ch;
    }
    boundary.is_empty().then_some(())
}

/// Whether `mail-parser` decodes this quoted-printable body without giving up (without
/// decoding it): it gives up on a `=` that follows a `=` or a `=` and one hex digit (blanks and
/// line breaks in between do not change that). Its cut before the delimiter cannot go below
/// zero either: each character that is not a hex digit, `=` or a blank leaves at least one
/// byte, and the body needs three.
fn quoted_printable_decodes(body: &[u8]) -> bool {
    let lasting = body
        .iter()
        .filter(|&&b| !b.is_ascii_hexdigit() && b != b'=' && !b.is_ascii_whitespace())
        .take(3)
        .count();
    lasting == 3 && quoted_printable_accepts(body)
}

/// The giving-up part of [`quoted_printable_decodes`].
fn quoted_printable_accepts(body: &[u8]) -> bool {
    let mut i = 0;
    while let Some(off) = memchr::memchr(b'=', body.get(i..).unwrap_or_default()) {
        let mut j = i + off + 1;
        // After "=": blanks keep it pending, a line break ends it (soft break).
        loop {
            match body.get(j) {
                None => return true,
                Some(b'=') => return false,
                Some(b'\n') => {
                    j += 1;
                    break;
                }
                Some(c) if c.is_ascii_hexdigit() => {
                    j += 1;
                    // After "=X": line breaks keep it pending, anything but "=" ends it.
                    loop {
                        match body.get(j) {
                            None => return true,
                            Some(b'=') => return false,
                            Some(b'\n') | Some(b'\r') => j += 1,
                            Some(_) => {
                                j += 1;
                                break;
                            }
                        }
                    }
                    break;
                }
                Some(c) if c.is_ascii_whitespace() => j += 1,
                Some(_) => {
                    j += 1;
                    break;
                }
            }
        }
        i = j;
    }
    true
}

#[cfg(test)]
mod tests;
