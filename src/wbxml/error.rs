//! Error types of the WBXML codec.

use thiserror::Error;

/// A decoding error with the byte offset (from the start of the input) at
/// which it was detected.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("at byte {offset}: {kind}")]
pub struct DecodeError {
    /// Byte offset into the input.
    pub offset: usize,
    /// What went wrong.
    pub kind: DecodeErrorKind,
}

impl DecodeError {
    pub(crate) fn new(offset: usize, kind: DecodeErrorKind) -> DecodeError {
        DecodeError { offset, kind }
    }
}

/// The kinds of decoding errors.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum DecodeErrorKind {
    /// The input ended in the middle of a header, token or value.
    #[error("input truncated")]
    Truncated,
    /// The version byte is not 0x01..=0x03 (WBXML 1.1-1.3).
    #[error("unsupported WBXML version 0x{0:02X}")]
    BadVersion(u8),
    /// The public identifier is neither 0x01 (unknown, as ActiveSync uses)
    /// nor a string-table reference to the ActiveSync public identifier.
    #[error("unsupported public identifier {0}")]
    UnsupportedPublicId(String),
    /// The charset is not UTF-8 (MIBenum 106).
    #[error("unsupported charset {0} (only UTF-8, 106, is supported)")]
    UnsupportedCharset(u32),
    /// A multi-byte integer is longer than 5 bytes or exceeds 32 bits.
    #[error("multi-byte integer longer than 5 bytes or above 2^32-1")]
    MultiByteIntTooLong,
    /// SWITCH_PAGE to a code page that does not exist.
    #[error("unknown code page {0}")]
    UnknownPage(u8),
    /// A tag token that is not defined on the current code page.
    #[error("unknown token 0x{token:02X} on code page {page}")]
    UnknownTag {
        /// Current code page.
        page: u8,
        /// Token as found in the input (may include the content bit).
        token: u8,
    },
    /// A tag with the attribute bit (0x80) set: ActiveSync has no attributes.
    #[error("attributes are not supported (tag byte 0x{0:02X})")]
    AttributesNotSupported(u8),
    /// A LITERAL tag (0x04, 0x44, 0x84, 0xC4).
    #[error("literal tags are not supported (token 0x{0:02X})")]
    LiteralNotSupported(u8),
    /// EXT_I_*, EXT_T_* or EXT_* tokens.
    #[error("extension tokens are not supported (token 0x{0:02X})")]
    ExtensionNotSupported(u8),
    /// A processing instruction (PI, 0x43).
    #[error("processing instructions are not supported")]
    ProcessingInstructionNotSupported,
    /// A string is not valid UTF-8.
    #[error("string is not valid UTF-8")]
    InvalidUtf8,
    /// An ENTITY value that is not a Unicode scalar value.
    #[error("invalid character entity {0}")]
    InvalidEntity(u32),
    /// STR_T (or a public-id reference) points outside the string table or
    /// to a string without terminator.
    #[error("string table offset {0} out of range")]
    StringTableOffset(u32),
    /// The string table length exceeds the input.
    #[error("string table length {0} exceeds the input")]
    StringTableLength(u32),
    /// Element nesting deeper than [`Limits::max_depth`](super::Limits).
    #[error("nesting deeper than {0} elements")]
    DepthLimit(usize),
    /// More elements than [`Limits::max_elements`](super::Limits).
    #[error("more than {0} elements")]
    ElementLimit(usize),
    /// A string longer than [`Limits::max_string_bytes`](super::Limits).
    #[error("string longer than {0} bytes")]
    StringLimit(usize),
    /// The input (or the text produced from string-table references) is
    /// larger than [`Limits::max_body_bytes`](super::Limits).
    #[error("body larger than {0} bytes")]
    BodyLimit(usize),
    /// Bytes after the END of the root element.
    #[error("trailing data after the root element")]
    TrailingData,
    /// END with no open element.
    #[error("END without an open element")]
    UnexpectedEnd,
    /// Text, opaque data or a second root outside the root element.
    #[error("content outside the root element")]
    ContentOutsideRoot,
    /// The body has no root element.
    #[error("no root element")]
    NoRootElement,
}

/// Errors of the incremental [`Writer`](super::Writer).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum WriteError {
    /// The tag token is outside 0x05..=0x3F and cannot be written.
    #[error("tag {0:?} cannot be encoded (token must be 0x05..=0x3F)")]
    InvalidTag(super::Tag),
    /// `end`, text or opaque data with no open element.
    #[error("no open element")]
    NoOpenElement,
    /// A second root element.
    #[error("the document already has a root element")]
    SecondRoot,
    /// Another call while a chunked string is open (call `end_text` first).
    #[error("a chunked string is open")]
    TextOpen,
    /// `text_chunk`/`end_text` without `start_text`.
    #[error("no chunked string is open")]
    NoTextOpen,
    /// Another call while a chunked opaque value is incomplete.
    #[error("a chunked opaque value is open ({remaining} of {declared} bytes missing)")]
    OpaqueOpen {
        /// Declared length.
        declared: u64,
        /// Bytes still expected.
        remaining: u64,
    },
    /// `opaque_chunk` without `begin_opaque`.
    #[error("no chunked opaque value is open")]
    NoOpaqueOpen,
    /// The chunks add up to more than the declared length.
    #[error("opaque chunks exceed the declared length of {declared} bytes")]
    OpaqueOverflow {
        /// Declared length.
        declared: u64,
    },
    /// An opaque value longer than 2^32-1 bytes.
    #[error("opaque value of {0} bytes is longer than WBXML allows")]
    OpaqueTooLong(u64),
    /// `finish` while elements are still open.
    #[error("{0} element(s) still open")]
    Unfinished(usize),
    /// `finish` before any element was written.
    #[error("no root element written")]
    NoRoot,
}
