//! Incremental, buffer-based WBXML writer (sans-io).

use bytes::{BufMut, Bytes, BytesMut};

use super::codepage::Tag;
use super::error::WriteError;

/// The header the writer emits: WBXML 1.3, public id 0x01 (unknown),
/// charset UTF-8 (106 = 0x6A), empty string table.
pub const HEADER: [u8; 4] = [0x03, 0x01, 0x6A, 0x00];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Normal,
    Text,
    Opaque { declared: u64, remaining: u64 },
}

/// Incremental WBXML writer.
///
/// The writer appends to an internal buffer; the caller drains it with
/// [`Writer::take`] whenever convenient (e.g. after each item, or before a
/// large opaque chunk) and sends the bytes to any sink. Code pages are
/// switched only when needed; empty elements (no children) are written
/// without the content bit.
///
/// Text containing NUL characters is written as several inline strings with
/// `ENTITY 0` between them, which the reader turns back into the same text.
///
/// ```
/// use eas_gateway::wbxml::{tags::{airsync, airsyncbase}, Writer};
/// let mut w = Writer::new();
/// w.start(airsync::SYNC)?;
/// w.text_element(airsync::SYNC_KEY, "1")?;
/// w.start(airsyncbase::DATA)?;
/// w.begin_opaque(6)?;
/// w.opaque_chunk(b"abc")?;
/// let head = w.take(); // send it somewhere
/// w.opaque_chunk(b"def")?;
/// w.end()?; // Data
/// w.end()?; // Sync
/// let rest = w.finish()?;
/// assert_eq!(&head[..4], &[0x03, 0x01, 0x6A, 0x00]);
/// # let _ = rest;
/// # Ok::<(), eas_gateway::wbxml::WriteError>(())
/// ```
#[derive(Debug)]
pub struct Writer {
    buf: BytesMut,
    page: u8,
    stack: Vec<Tag>,
    root_started: bool,
    mode: Mode,
}

impl Default for Writer {
    fn default() -> Self {
        Writer::new()
    }
}

// A u64 has at most ten 7-bit groups, so `i` stays within `tmp`.
#[allow(clippy::indexing_slicing)]
pub(crate) fn put_mb_u_int(buf: &mut BytesMut, mut v: u64) {
    let mut tmp = [0u8; 10];
    let mut i = tmp.len();
    loop {
        i -= 1;
        tmp[i] = (v & 0x7F) as u8 | if i == tmp.len() - 1 { 0 } else { 0x80 };
        v >>= 7;
        if v == 0 {
            break;
        }
    }
    buf.put_slice(&tmp[i..]);
}

impl Writer {
    /// A writer with the header already in its buffer.
    pub fn new() -> Writer {
        Writer::with_capacity(256)
    }

    /// Like [`Writer::new`] with an initial buffer capacity.
    pub fn with_capacity(capacity: usize) -> Writer {
        let mut buf = BytesMut::with_capacity(capacity.max(HEADER.len()));
        buf.put_slice(&HEADER);
        Writer {
            buf,
            page: 0,
            stack: Vec::new(),
            root_started: false,
            mode: Mode::Normal,
        }
    }

    /// A writer for element content encoded on its own (see [`super::Fragment`]): no header,
    /// code page `page` current, room for `capacity` bytes.
    pub(crate) fn fragment(page: u8, capacity: usize) -> Writer {
        Writer::fragment_in(page, BytesMut::with_capacity(capacity))
    }

    /// [`Writer::fragment`] writing into `buf` (cleared first), whose room is kept.
    pub(crate) fn fragment_in(page: u8, mut buf: BytesMut) -> Writer {
        buf.clear();
        Writer {
            buf,
            page,
            stack: Vec::new(),
            root_started: true,
            mode: Mode::Normal,
        }
    }

    /// The buffer, with what was written into it.
    pub(crate) fn into_buf(self) -> BytesMut {
        self.buf
    }

    /// The current code page.
    pub(crate) fn page(&self) -> u8 {
        self.page
    }

    /// Copies a fragment in, switching to its start page first.
    pub(crate) fn put_fragment(&mut self, f: &super::Fragment) {
        if f.bytes().is_empty() {
            return;
        }
        if f.start_page() != self.page {
            self.buf.put_slice(&[0x00, f.start_page()]);
        }
        self.buf.put_slice(f.bytes());
        self.page = f.end_page();
    }

    /// Removes and returns everything written so far.
    pub fn take(&mut self) -> Bytes {
        self.buf.split().freeze()
    }

    /// Bytes currently buffered (not yet taken).
    pub fn buffered(&self) -> &[u8] {
        &self.buf
    }

    /// Number of open elements.
    pub fn depth(&self) -> usize {
        self.stack.len()
    }

    /// True once the root element has been closed and no string or opaque
    /// value is open.
    pub fn is_complete(&self) -> bool {
        self.root_started && self.stack.is_empty() && self.mode == Mode::Normal
    }

    /// Checks that the document is complete and returns the remaining buffer.
    pub fn finish(mut self) -> Result<Bytes, WriteError> {
        self.check_normal()?;
        if !self.root_started {
            return Err(WriteError::NoRoot);
        }
        if !self.stack.is_empty() {
            return Err(WriteError::Unfinished(self.stack.len()));
        }
        Ok(self.take())
    }

    fn check_normal(&self) -> Result<(), WriteError> {
        match self.mode {
            Mode::Normal => Ok(()),
            Mode::Text => Err(WriteError::TextOpen),
            Mode::Opaque {
                declared,
                remaining,
            } => Err(WriteError::OpaqueOpen {
                declared,
                remaining,
            }),
        }
    }

    fn check_content(&self) -> Result<(), WriteError> {
        self.check_normal()?;
        if self.stack.is_empty() {
            return Err(WriteError::NoOpenElement);
        }
        Ok(())
    }

    fn check_tag(&self, tag: Tag) -> Result<(), WriteError> {
        self.check_normal()?;
        if !tag.is_encodable() {
            return Err(WriteError::InvalidTag(tag));
        }
        if self.stack.is_empty() && self.root_started {
            return Err(WriteError::SecondRoot);
        }
        Ok(())
    }

    pub(crate) fn put_tag(&mut self, tag: Tag, content: bool) {
        if tag.page != self.page {
            self.buf.put_slice(&[0x00, tag.page]);
            self.page = tag.page;
        }
        self.buf
            .put_u8((tag.token & 0x3F) | if content { 0x40 } else { 0 });
    }

    pub(crate) fn put_end(&mut self) {
        self.buf.put_u8(0x01);
    }

    /// Writes `s` as inline string(s); NUL characters become `ENTITY 0`.
    pub(crate) fn put_str(&mut self, s: &str) {
        if !s.as_bytes().contains(&0) {
            self.buf.reserve(s.len() + 2);
            self.buf.put_u8(0x03);
            self.buf.put_slice(s.as_bytes());
            self.buf.put_u8(0x00);
            return;
        }
        for (i, part) in s.split('\0').enumerate() {
            if i > 0 {
                self.buf.put_slice(&[0x02, 0x00]);
            }
            if !part.is_empty() {
                self.buf.put_u8(0x03);
                self.buf.put_slice(part.as_bytes());
                self.buf.put_u8(0x00);
            }
        }
    }

    pub(crate) fn put_opaque(&mut self, data: &[u8]) {
        self.buf.reserve(data.len() + 6);
        self.buf.put_u8(0xC3);
        put_mb_u_int(&mut self.buf, data.len() as u64);
        self.buf.put_slice(data);
    }

    /// Opens an element with content (content bit set); close it with
    /// [`Writer::end`]. The element must get content: use
    /// [`Writer::empty`] for an element without any.
    pub fn start(&mut self, tag: Tag) -> Result<(), WriteError> {
        self.check_tag(tag)?;
        self.put_tag(tag, true);
        self.root_started = true;
        self.stack.push(tag);
        Ok(())
    }

    /// Writes an empty element (no content bit, no END).
    pub fn empty(&mut self, tag: Tag) -> Result<(), WriteError> {
        self.check_tag(tag)?;
        self.put_tag(tag, false);
        self.root_started = true;
        Ok(())
    }

    /// Closes the innermost open element.
    pub fn end(&mut self) -> Result<(), WriteError> {
        self.check_normal()?;
        if self.stack.pop().is_none() {
            return Err(WriteError::NoOpenElement);
        }
        self.put_end();
        Ok(())
    }

    /// Writes text into the open element.
    pub fn text(&mut self, s: &str) -> Result<(), WriteError> {
        self.check_content()?;
        self.put_str(s);
        Ok(())
    }

    /// Writes a whole element tree; elements whose tag cannot be encoded are left out, as
    /// [`super::encode`] does.
    pub fn element(&mut self, e: &super::Element) -> Result<(), WriteError> {
        if !e.tag.is_encodable() {
            return Ok(());
        }
        self.check_tag(e.tag)?;
        super::tree::encode_into(e, self);
        self.root_started = true;
        Ok(())
    }

    /// Writes one child node into the open element.
    pub fn node(&mut self, n: &super::Node) -> Result<(), WriteError> {
        match n {
            super::Node::Element(e) => self.element(e),
            super::Node::Text(t) => self.text(t),
            super::Node::Opaque(o) => self.opaque(o),
            super::Node::Encoded(f) => {
                self.check_content()?;
                self.put_fragment(f);
                Ok(())
            }
        }
    }

    /// Writes `<tag>text</tag>`.
    pub fn text_element(&mut self, tag: Tag, text: &str) -> Result<(), WriteError> {
        self.start(tag)?;
        self.put_str(text);
        self.end()
    }

    /// Writes `<tag>opaque data</tag>`.
    pub fn opaque_element(&mut self, tag: Tag, data: &[u8]) -> Result<(), WriteError> {
        self.start(tag)?;
        self.opaque(data)?;
        self.end()
    }

    /// Starts a chunked inline string in the open element.
    pub fn start_text(&mut self) -> Result<(), WriteError> {
        self.check_content()?;
        self.buf.put_u8(0x03);
        self.mode = Mode::Text;
        Ok(())
    }

    /// Appends a chunk to the open string.
    pub fn text_chunk(&mut self, chunk: &str) -> Result<(), WriteError> {
        match self.mode {
            Mode::Text => {}
            Mode::Normal => return Err(WriteError::NoTextOpen),
            Mode::Opaque { .. } => return self.check_normal(),
        }
        for (i, part) in chunk.split('\0').enumerate() {
            if i > 0 {
                // close the string, ENTITY 0, reopen
                self.buf.put_slice(&[0x00, 0x02, 0x00, 0x03]);
            }
            self.buf.put_slice(part.as_bytes());
        }
        Ok(())
    }

    /// Ends the open string.
    pub fn end_text(&mut self) -> Result<(), WriteError> {
        if self.mode != Mode::Text {
            return match self.mode {
                Mode::Normal => Err(WriteError::NoTextOpen),
                _ => self.check_normal(),
            };
        }
        self.buf.put_u8(0x00);
        self.mode = Mode::Normal;
        Ok(())
    }

    /// Writes opaque data into the open element.
    pub fn opaque(&mut self, data: &[u8]) -> Result<(), WriteError> {
        self.check_content()?;
        let len = data.len() as u64;
        if len > u64::from(u32::MAX) {
            return Err(WriteError::OpaqueTooLong(len));
        }
        self.put_opaque(data);
        Ok(())
    }

    /// Starts a chunked opaque value of `total_len` bytes: the OPAQUE token
    /// and the length are written now, the data with
    /// [`Writer::opaque_chunk`] (or [`Writer::opaque_external`]). Any other
    /// call fails until exactly `total_len` bytes have been supplied.
    pub fn begin_opaque(&mut self, total_len: u64) -> Result<(), WriteError> {
        self.check_content()?;
        if total_len > u64::from(u32::MAX) {
            return Err(WriteError::OpaqueTooLong(total_len));
        }
        self.buf.put_u8(0xC3);
        put_mb_u_int(&mut self.buf, total_len);
        if total_len > 0 {
            self.mode = Mode::Opaque {
                declared: total_len,
                remaining: total_len,
            };
        }
        Ok(())
    }

    fn consume_opaque(&mut self, len: u64) -> Result<(), WriteError> {
        match self.mode {
            Mode::Opaque {
                declared,
                remaining,
            } => {
                if len > remaining {
                    return Err(WriteError::OpaqueOverflow { declared });
                }
                let remaining = remaining - len;
                self.mode = if remaining == 0 {
                    Mode::Normal
                } else {
                    Mode::Opaque {
                        declared,
                        remaining,
                    }
                };
                Ok(())
            }
            Mode::Text => Err(WriteError::TextOpen),
            Mode::Normal => Err(WriteError::NoOpaqueOpen),
        }
    }

    /// Appends a chunk of the open opaque value. Fails (writing nothing) if
    /// the chunk would exceed the declared length.
    pub fn opaque_chunk(&mut self, chunk: &[u8]) -> Result<(), WriteError> {
        self.consume_opaque(chunk.len() as u64)?;
        self.buf.put_slice(chunk);
        Ok(())
    }

    /// Accounts for `len` bytes of the open opaque value that the caller
    /// writes to its sink itself, bypassing the buffer (zero-copy streaming).
    /// The caller must drain the buffer with [`Writer::take`] first and then
    /// write exactly `len` bytes.
    pub fn opaque_external(&mut self, len: u64) -> Result<(), WriteError> {
        self.consume_opaque(len)
    }

    /// Checks that the open opaque value (if any) is complete. Optional: the
    /// value completes by itself when the declared length is reached.
    pub fn end_opaque(&mut self) -> Result<(), WriteError> {
        match self.mode {
            Mode::Normal => Ok(()),
            _ => self.check_normal(),
        }
    }
}
