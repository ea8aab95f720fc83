//! Pull reader: WBXML bytes -> [`Event`]s.

use bytes::Bytes;

use super::codepage::{self, Tag};
use super::error::{DecodeError, DecodeErrorKind as K};

/// Decoding limits. Every limit is checked while reading; exceeding one is a
/// [`DecodeError`] with the offset where it happened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Maximum input size in bytes (default 64 MiB). The input size plus
    /// all text produced from string-table references (STR_T) must also stay
    /// within this limit, so a small table cannot expand into a huge tree.
    pub max_body_bytes: usize,
    /// Maximum element nesting depth; the root has depth 1 (default 64).
    pub max_depth: usize,
    /// Maximum number of elements in the document (default 250 000).
    pub max_elements: usize,
    /// Maximum length of a single string (STR_I or STR_T) in bytes
    /// (default 32 MiB). Opaque data is bounded by `max_body_bytes` only: it
    /// is never copied.
    pub max_string_bytes: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_body_bytes: 64 * 1024 * 1024,
            max_depth: 64,
            max_elements: 250_000,
            max_string_bytes: 32 * 1024 * 1024,
        }
    }
}

/// A decoding event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// An element starts. `has_content` is false for an empty tag (no content
    /// bit); the reader then yields the matching [`Event::End`] right away, so
    /// every `Start` has an `End`.
    Start {
        /// The element's tag.
        tag: Tag,
        /// Whether the tag had the content bit (0x40).
        has_content: bool,
    },
    /// A piece of text (STR_I, STR_T or one ENTITY). Several may follow each
    /// other; the tree decoder concatenates them.
    Text(String),
    /// Opaque data: a zero-copy slice of the input.
    Opaque(Bytes),
    /// An element ends.
    End(Tag),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    BeforeRoot,
    InRoot,
    Done,
}

/// Public identifiers accepted when given as a string-table reference.
const ACTIVESYNC_PUBLIC_IDS: [&str; 2] = [
    "-//MICROSOFT//DTD ActiveSync//EN",
    "-//AIRSYNC//DTD AirSync//EN",
];

/// Pull reader over a complete WBXML body.
///
/// Header rules: version 0x01..=0x03; public identifier 0x01 ("unknown", as
/// ActiveSync uses) or 0x00 plus a string-table index naming the ActiveSync
/// DTD (`-//MICROSOFT//DTD ActiveSync//EN` or `-//AIRSYNC//DTD AirSync//EN`,
/// as libwbxml writes without `-a`); charset 106 (UTF-8) only.
///
/// After an error the reader keeps returning that error.
#[derive(Debug)]
pub struct Reader {
    input: Bytes,
    pos: usize,
    limits: Limits,
    page: u8,
    stack: Vec<Tag>,
    pending_end: Option<Tag>,
    elements: usize,
    table: (usize, usize),
    table_text: usize,
    state: State,
    error: Option<DecodeError>,
}

fn err<T>(offset: usize, kind: K) -> Result<T, DecodeError> {
    Err(DecodeError::new(offset, kind))
}

impl Reader {
    /// Parses the header and prepares to read the body.
    pub fn new(input: Bytes, limits: Limits) -> Result<Reader, DecodeError> {
        if input.len() > limits.max_body_bytes {
            return err(limits.max_body_bytes, K::BodyLimit(limits.max_body_bytes));
        }
        let mut r = Reader {
            input,
            pos: 0,
            limits,
            page: 0,
            stack: Vec::new(),
            pending_end: None,
            elements: 0,
            table: (0, 0),
            table_text: 0,
            state: State::BeforeRoot,
            error: None,
        };
        let version = r.byte()?;
        if !(0x01..=0x03).contains(&version) {
            return err(0, K::BadVersion(version));
        }
        let pid_at = r.pos;
        let public_id = r.mb_u_int32()?;
        let pid_index = match public_id {
            0 => Some(r.mb_u_int32()?),
            1 => None,
            other => return err(pid_at, K::UnsupportedPublicId(format!("0x{other:X}"))),
        };
        let cs_at = r.pos;
        let charset = r.mb_u_int32()?;
        if charset != 106 {
            return err(cs_at, K::UnsupportedCharset(charset));
        }
        let len_at = r.pos;
        let table_len = r.mb_u_int32()?;
        let start = r.pos;
        let len = table_len as usize;
        if len > r.input.len() - start {
            return err(len_at, K::StringTableLength(table_len));
        }
        r.table = (start, len);
        r.pos = start + len;
        if let Some(index) = pid_index {
            let s = r.table_str(index, pid_at)?;
            if !ACTIVESYNC_PUBLIC_IDS.contains(&s.as_str()) {
                return err(pid_at, K::UnsupportedPublicId(s));
            }
        }
        Ok(r)
    }

    /// Byte offset of the next token.
    pub fn offset(&self) -> usize {
        self.pos
    }

    /// Current nesting depth (open elements with content).
    pub fn depth(&self) -> usize {
        self.stack.len()
    }

    /// The next event, or `None` after the root element has ended.
    pub fn next_event(&mut self) -> Result<Option<Event>, DecodeError> {
        if let Some(e) = &self.error {
            return Err(e.clone());
        }
        let r = self.step();
        if let Err(e) = &r {
            self.error = Some(e.clone());
        }
        r
    }

    fn byte(&mut self) -> Result<u8, DecodeError> {
        match self.input.get(self.pos) {
            Some(&b) => {
                self.pos += 1;
                Ok(b)
            }
            None => err(self.pos, K::Truncated),
        }
    }

    fn mb_u_int32(&mut self) -> Result<u32, DecodeError> {
        let start = self.pos;
        let mut v: u64 = 0;
        for _ in 0..5 {
            let b = self.byte()?;
            v = (v << 7) | u64::from(b & 0x7F);
            if b & 0x80 == 0 {
                return u32::try_from(v).or_else(|_| err(start, K::MultiByteIntTooLong));
            }
        }
        err(start, K::MultiByteIntTooLong)
    }

    fn table_str(&self, index: u32, at: usize) -> Result<String, DecodeError> {
        let (start, len) = self.table;
        let i = index as usize;
        let table = self.input.get(start..start + len).unwrap_or_default();
        let rest = match table.get(i..) {
            Some(rest) if i < len => rest,
            _ => return err(at, K::StringTableOffset(index)),
        };
        let Some(n) = memchr::memchr(0, rest) else {
            return err(at, K::StringTableOffset(index));
        };
        if n > self.limits.max_string_bytes {
            return err(at, K::StringLimit(self.limits.max_string_bytes));
        }
        match utf8(rest.get(..n).unwrap_or_default()) {
            Ok(s) => Ok(s.to_owned()),
            Err(_) => err(at, K::InvalidUtf8),
        }
    }

    fn close_root_check(&mut self) -> Result<(), DecodeError> {
        if self.stack.is_empty() {
            self.state = State::Done;
            if self.pos != self.input.len() {
                return err(self.pos, K::TrailingData);
            }
        }
        Ok(())
    }

    fn step(&mut self) -> Result<Option<Event>, DecodeError> {
        if let Some(tag) = self.pending_end.take() {
            self.close_root_check()?;
            return Ok(Some(Event::End(tag)));
        }
        loop {
            if self.state == State::Done {
                return Ok(None);
            }
            let at = self.pos;
            let b = match self.input.get(at) {
                Some(&b) => b,
                None if self.state == State::BeforeRoot => return err(at, K::NoRootElement),
                None => return err(at, K::Truncated),
            };
            self.pos += 1;
            let in_element = !self.stack.is_empty();
            match b {
                0x00 => {
                    let p = self.byte()?;
                    if codepage::page(p).is_none() {
                        return err(at, K::UnknownPage(p));
                    }
                    self.page = p;
                }
                0x01 => {
                    let Some(tag) = self.stack.pop() else {
                        return err(at, K::UnexpectedEnd);
                    };
                    self.close_root_check()?;
                    return Ok(Some(Event::End(tag)));
                }
                0x02 => {
                    if !in_element {
                        return err(at, K::ContentOutsideRoot);
                    }
                    let v = self.mb_u_int32()?;
                    let Some(c) = char::from_u32(v) else {
                        return err(at, K::InvalidEntity(v));
                    };
                    return Ok(Some(Event::Text(c.to_string())));
                }
                0x03 => {
                    if !in_element {
                        return err(at, K::ContentOutsideRoot);
                    }
                    let start = self.pos;
                    let rest = self.input.get(start..).unwrap_or_default();
                    let max = self.limits.max_string_bytes;
                    let window = rest.get(..max.saturating_add(1)).unwrap_or(rest);
                    let n = match memchr::memchr(0, window) {
                        Some(n) => n,
                        None if window.len() < rest.len() => return err(at, K::StringLimit(max)),
                        None => return err(at, K::Truncated),
                    };
                    if n > max {
                        return err(at, K::StringLimit(max));
                    }
                    let s = match utf8(window.get(..n).unwrap_or_default()) {
                        Ok(s) => s.to_owned(),
                        Err(e) => return err(start + e.valid_up_to(), K::InvalidUtf8),
                    };
                    self.pos = start + n + 1;
                    return Ok(Some(Event::Text(s)));
                }
                0x83 => {
                    if !in_element {
                        return err(at, K::ContentOutsideRoot);
                    }
                    let index = self.mb_u_int32()?;
                    let s = self.table_str(index, at)?;
                    self.table_text = self.table_text.saturating_add(s.len());
                    if self.table_text.saturating_add(self.input.len()) > self.limits.max_body_bytes
                    {
                        return err(at, K::BodyLimit(self.limits.max_body_bytes));
                    }
                    return Ok(Some(Event::Text(s)));
                }
                0xC3 => {
                    if !in_element {
                        return err(at, K::ContentOutsideRoot);
                    }
                    let len = self.mb_u_int32()? as usize;
                    let start = self.pos;
                    if len > self.input.len() - start {
                        return err(at, K::Truncated);
                    }
                    self.pos = start + len;
                    return Ok(Some(Event::Opaque(self.input.slice(start..start + len))));
                }
                0x04 | 0x44 | 0x84 | 0xC4 => return err(at, K::LiteralNotSupported(b)),
                0x40..=0x42 | 0x80..=0x82 | 0xC0..=0xC2 => {
                    return err(at, K::ExtensionNotSupported(b))
                }
                0x43 => return err(at, K::ProcessingInstructionNotSupported),
                _ if b & 0x80 != 0 => return err(at, K::AttributesNotSupported(b)),
                _ => {
                    let tag = Tag::new(self.page, b & 0x3F);
                    if tag.name().is_none() {
                        return err(
                            at,
                            K::UnknownTag {
                                page: self.page,
                                token: b,
                            },
                        );
                    }
                    if self.stack.len() >= self.limits.max_depth {
                        return err(at, K::DepthLimit(self.limits.max_depth));
                    }
                    if self.elements >= self.limits.max_elements {
                        return err(at, K::ElementLimit(self.limits.max_elements));
                    }
                    self.elements += 1;
                    self.state = State::InRoot;
                    let has_content = b & 0x40 != 0;
                    if has_content {
                        self.stack.push(tag);
                    } else {
                        self.pending_end = Some(tag);
                    }
                    return Ok(Some(Event::Start { tag, has_content }));
                }
            }
        }
    }
}

/// `std::str::from_utf8`, with valid input (nearly all of it) checked the SIMD way.
fn utf8(bytes: &[u8]) -> Result<&str, std::str::Utf8Error> {
    match simdutf8::basic::from_utf8(bytes) {
        Ok(s) => Ok(s),
        Err(_) => std::str::from_utf8(bytes),
    }
}
