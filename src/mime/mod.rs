//! RFC 5322 messages (raw bytes from IMAP) -> EAS Email data (MS-ASEMAIL, MS-ASAIRS).
//!
//! Pure functions, no I/O. Parsing is done by `mail-parser`, which decodes
//! transfer encodings, RFC 2047 words, RFC 2231 parameters and converts every
//! text part to UTF-8; everything here builds [`Element`] trees from it, or writes an
//! item's WBXML directly through the same code ([`crate::wbxml::ElementSink`]).
//! [`application_data`] first prepares the message for the parser (`slim.rs`:
//! bodies the item does not show left out, text parts decoded in place), which
//! gives the same item at a fraction of the parser's cost.
//!
//! | function | result |
//! |---|---|
//! | [`application_data`] | `airsync:ApplicationData` of a Sync Add / Fetch or ItemOperations Fetch |
//! | [`application_data_encoded`] | the same, encoded to WBXML at once (no tree), for items only sent |
//! | [`flag_change`] | `airsync:ApplicationData` of a Sync Change when only IMAP flags changed |
//! | [`body_element`] | `airsyncbase:Body` alone (ItemOperations Fetch, Search) |
//! | [`attachment`] | one attachment's bytes, by the index used in its FileReference |
//! | [`summary`] | header fields needed by SmartReply / SmartForward / Search |
//!
//! Every function accepts arbitrary bytes: a message that cannot be parsed
//! gives a best-effort result (empty headers, the raw bytes as plain text)
//! and never a panic.
//!
//! # Versions
//!
//! No element is emitted for a protocol version whose code page table does not
//! list it (see [`Tag::versions`](crate::wbxml::Tag::versions)): Categories,
//! the Email2 page and `airsyncbase:Preview` need 14.0, `email2:IsDraft` and
//! `email2:Bcc` need 16.0. Besides the explicit checks, [`application_data`],
//! [`flag_change`] and [`body_element`] prune any element whose tag the
//! version does not have.
//!
//! # Attachment order
//!
//! Attachments are numbered from 0 in the order their MIME parts appear in the
//! message, which is a depth-first, pre-order walk of the MIME tree of the
//! top-level message. An attached message (`message/rfc822`) is one
//! attachment; the walk does not descend into it. [`application_data`] (the
//! `FileReference` `<prefix>:<index>`) and [`attachment`] use the same walk.
//! Which parts count is described in `src/mime/attachments.rs`.

mod attachments;
mod body;
mod email;
mod headers;
mod slim;
mod transfer;

use crate::eas::ProtocolVersion;
use crate::wbxml::{Element, TreeBuilder};

pub use email::{
    application_data, application_data_encoded, application_data_partial, categories,
    conversation_id_of, flag_change, summary, CONTENT_CLASS_MESSAGE, FLAG_TYPE_FOLLOW_UP,
    INTERNET_CPID_UTF8,
};
pub use transfer::{TransferDecoder, TransferEncoding};

/// Plain text size sent when the client sent no `BodyPreference` at all
/// (EAS 12.0+ clients normally do): the body goes out as plain text, cut at
/// this many bytes of UTF-8, with `Truncated` set when cut. 32 KiB shows a
/// whole ordinary message and keeps a first sync of a large folder small.
pub const DEFAULT_PLAIN_TRUNCATION: u32 = 32 * 1024;

/// Longest `airsyncbase:Preview` in characters (MS-ASAIRS 2.2.2.35: 0..=255).
pub const MAX_PREVIEW_CHARS: u32 = 255;

/// `airsyncbase:Type` of a body: plain text.
pub const BODY_TYPE_PLAIN: u8 = 1;
/// `airsyncbase:Type` of a body: HTML.
pub const BODY_TYPE_HTML: u8 = 2;
/// `airsyncbase:Type` of a body: RTF (never sent by this gateway).
pub const BODY_TYPE_RTF: u8 = 3;
/// `airsyncbase:Type` of a body: the whole MIME message.
pub const BODY_TYPE_MIME: u8 = 4;

/// One `airsyncbase:BodyPreference` of the request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BodyPreference {
    /// 1 plain, 2 HTML, 3 RTF, 4 MIME.
    pub body_type: u8,
    /// `TruncationSize`: bytes of the UTF-8 body (or MIME text) to send.
    pub truncation_size: Option<u32>,
    /// `AllOrNone`: send the whole body or no data at all.
    pub all_or_none: bool,
    /// `Preview`: characters of plain-text preview wanted (14.0+).
    pub preview: Option<u32>,
}

/// How the client wants bodies: its `BodyPreference`s and `MIMESupport`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BodyOptions {
    /// The request's `BodyPreference`s in request order; empty when none was sent.
    pub preferences: Vec<BodyPreference>,
    /// `MIMESupport`: 0 never MIME, 1 MIME for S/MIME messages only, 2 MIME always.
    pub mime_support: u8,
    /// `MIMETruncation` already decoded to bytes (`None`: no limit).
    pub mime_truncation: Option<u32>,
    /// The protocol version of the request.
    pub version: ProtocolVersion,
}

impl BodyOptions {
    /// No `BodyPreference`, no MIME: plain text cut at [`DEFAULT_PLAIN_TRUNCATION`].
    pub fn default_for(version: ProtocolVersion) -> Self {
        BodyOptions {
            preferences: Vec::new(),
            mime_support: 0,
            mime_truncation: None,
            version,
        }
    }

    /// True when some message may be sent as MIME (Type 4) whatever its form, so it must
    /// be read whole. (With `MIMESupport` 1 only S/MIME messages are sent as MIME.)
    pub fn may_send_mime(&self) -> bool {
        self.mime_support == 2
            || (self.mime_support == 0
                && self
                    .preferences
                    .iter()
                    .any(|p| p.body_type == BODY_TYPE_MIME))
    }

    /// Options with one `BodyPreference` (a convenience for callers and tests).
    pub fn with_preference(
        version: ProtocolVersion,
        body_type: u8,
        truncation_size: Option<u32>,
    ) -> Self {
        BodyOptions {
            preferences: vec![BodyPreference {
                body_type,
                truncation_size,
                all_or_none: false,
                preview: None,
            }],
            mime_support: 0,
            mime_truncation: None,
            version,
        }
    }
}

/// The parts a message was read without (for [`application_data_partial`]):
/// their bodies are empty in the bytes given, and their decoded sizes are here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OmittedParts<'a> {
    /// Number of parts of the message (a depth-first, pre-order walk of the
    /// top-level MIME tree, root included, attached messages counted as one).
    pub parts: usize,
    /// (index in that walk, decoded size in bytes) of each part left out.
    pub sizes: &'a [(usize, u64)],
}

/// IMAP flags and keywords of a message.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MailFlags {
    /// `\Seen`.
    pub seen: bool,
    /// `\Flagged`.
    pub flagged: bool,
    /// `\Answered`.
    pub answered: bool,
    /// `$Forwarded`.
    pub forwarded: bool,
    /// `\Draft`.
    pub draft: bool,
    /// IMAP keywords without the system flags; `$Forwarded` is not listed here.
    pub keywords: Vec<String>,
}

/// Where a message lives, as far as its EAS data needs to know.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ItemInfo<'a> {
    /// Prefix of attachment file references, e.g. `"5:123"`; attachment `i`
    /// gets `FileReference` `"5:123:i"`.
    pub file_reference_prefix: &'a str,
    /// IMAP INTERNALDATE in Unix seconds: the `DateReceived`.
    pub internal_date: i64,
    /// The message is in the drafts folder (`email2:IsDraft`, 16.0+).
    pub in_drafts: bool,
}

/// One attachment, decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attachment {
    /// `type/subtype`, lower case (`application/octet-stream` when the part has none).
    pub content_type: String,
    /// The name shown to the user (the `DisplayName`).
    pub file_name: String,
    /// The decoded bytes (the original file).
    pub data: Vec<u8>,
}

/// Parsed header fields needed outside this module.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Summary {
    /// Decoded subject ("" when none).
    pub subject: String,
    /// From as `"Name" <addr>`, several joined with ", ".
    pub from: String,
    /// To, formatted like `from`.
    pub to: String,
    /// Cc, formatted like `from`.
    pub cc: String,
    /// Message-ID without angle brackets.
    pub message_id: Option<String>,
    /// References entries without angle brackets, oldest first.
    pub references: Vec<String>,
    /// The `Date:` header in Unix seconds, when present and valid.
    pub date: Option<i64>,
    /// The message has at least one attachment (as counted for `Attachments`).
    pub has_attachments: bool,
}

/// One attachment by the index used in its `FileReference` (see the module
/// docs for the order). `None` when the message has no such attachment.
pub fn attachment(raw: &[u8], index: usize) -> Option<Attachment> {
    attachments::attachment(raw, index)
}

/// The `airsyncbase:Body` element for `opts` (ItemOperations Fetch, Search),
/// with the same rules as the body inside [`application_data`].
pub fn body_element(raw: &[u8], opts: &BodyOptions) -> Element {
    let parsed = headers::parse(raw);
    let mut tree = TreeBuilder::new(crate::wbxml::tags::airsyncbase::BODY);
    let mut out = headers::for_version(&mut tree, opts.version);
    body::write_body(&mut out, &parsed, opts);
    tree.finish()
}

#[cfg(test)]
mod tests;
