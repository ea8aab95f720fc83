//! Attachments (MS-ASAIRS 2.2.2.7 / 2.2.2.8): which MIME parts count, their
//! names, sizes and bytes.
//!
//! The parts of the top-level message are visited in the order they appear
//! (a depth-first pre-order walk of the MIME tree); attachment `i` is the
//! `i`-th part (from 0) that counts. A part counts when it is
//! - an attached message (`message/rfc822`): `Method` 5, one attachment, its
//!   inner parts are not visited;
//! - any non-text leaf part (images, PDFs, signatures, ...), including inline
//!   images referenced by `Content-ID` (those get `IsInline` 1);
//! - a text part with `Content-Disposition: attachment`, or one that is not a
//!   body part (e.g. `text/calendar`, a second text part the body does not
//!   show), or a non-root text part with a file name.
//!
//! Text alternatives inside `multipart/alternative` never count.
//! `IsInline` is 1 for a part with a `Content-ID` and no
//! `Content-Disposition: attachment`.
//! `DisplayName` is the decoded file name (RFC 2231 / RFC 2047) without any
//! path; an attached message without one is named after its subject
//! (`<subject>.eml`); anything else is `attachment-N` (N = index + 1) with an
//! extension for well-known types. `EstimatedDataSize` is the decoded size,
//! which is what [`attachment`] returns.

use mail_parser::{Encoding, HeaderName, HeaderValue, MessagePart, MimeHeaders, PartType};

use super::headers::{clean_line, header_in, html_body_ids, text_body_ids, Parsed};
use super::transfer::TransferEncoding;
use super::Attachment;

/// `airsyncbase:Method` of an ordinary attachment.
pub(crate) const METHOD_NORMAL: u8 = 1;
/// `airsyncbase:Method` of an attached message.
pub(crate) const METHOD_EMBEDDED_MESSAGE: u8 = 5;

/// One attachment as listed in `airsyncbase:Attachments`.
pub(crate) struct Att<'a, 'x> {
    pub part: &'a MessagePart<'x>,
    /// Index of the part in the message's part list.
    pub part_index: usize,
    pub method: u8,
    pub display_name: String,
    pub content_type: String,
    pub content_id: Option<String>,
    pub content_location: Option<String>,
    pub is_inline: bool,
}

/// Every attachment of the message, in FileReference order.
pub(crate) fn list<'a, 'x>(p: &'a Parsed<'x>) -> Vec<Att<'a, 'x>> {
    let Some(m) = p.msg.as_ref() else {
        return Vec::new();
    };
    // Parent of each part, to recognise alternatives.
    let mut parent: Vec<Option<usize>> = vec![None; m.parts.len()];
    for (i, pt) in m.parts.iter().enumerate() {
        if let PartType::Multipart(children) = &pt.body {
            for &c in children {
                let Ok(c) = usize::try_from(c) else { continue };
                if let Some(slot) = parent.get_mut(c) {
                    if slot.is_none() && c > i {
                        *slot = Some(i);
                    }
                }
            }
        }
    }
    let text_ids = text_body_ids(m);
    let html_ids = html_body_ids(m);
    let in_body = |i: usize| {
        let id = u32::try_from(i).unwrap_or(u32::MAX);
        text_ids.contains(&id) || html_ids.contains(&id)
    };
    let mut out = Vec::new();
    for (i, pt) in m.parts.iter().enumerate() {
        let disposition_attachment = pt.content_disposition().is_some_and(|d| d.is_attachment());
        let has_name = pt.attachment_name().is_some_and(|n| !n.trim().is_empty());
        let method = match &pt.body {
            PartType::Multipart(_) => continue,
            PartType::Message(_) => METHOD_EMBEDDED_MESSAGE,
            PartType::Binary(_) | PartType::InlineBinary(_) => METHOD_NORMAL,
            PartType::Text(_) | PartType::Html(_) => {
                let in_alternative = parent
                    .get(i)
                    .copied()
                    .flatten()
                    .and_then(|q| m.parts.get(q))
                    .and_then(|q| q.content_type())
                    .is_some_and(|ct| {
                        ct.subtype()
                            .is_some_and(|s| s.eq_ignore_ascii_case("alternative"))
                    });
                let counts = disposition_attachment
                    || (!in_alternative && (!in_body(i) || (has_name && i != 0)));
                if !counts {
                    continue;
                }
                METHOD_NORMAL
            }
        };
        let index = out.len();
        let content_type = content_type_of(pt);
        let content_id = pt
            .content_id()
            .map(|s| clean_line(s).trim_matches(['<', '>']).to_string())
            .filter(|s| !s.is_empty());
        let content_location = pt
            .content_location()
            .map(clean_line)
            .filter(|s| !s.is_empty());
        let is_inline = content_id.is_some() && !disposition_attachment;
        let display_name = display_name(pt, index, &content_type);
        out.push(Att {
            part: pt,
            part_index: i,
            method,
            display_name,
            content_type,
            content_id,
            content_location,
            is_inline,
        });
    }
    out
}

/// One attachment by index.
pub(crate) fn attachment(raw: &[u8], index: usize) -> Option<Attachment> {
    let p = super::headers::parse(raw);
    let list = list(&p);
    let a = list.get(index)?;
    Some(Attachment {
        content_type: a.content_type.clone(),
        file_name: a.display_name.clone(),
        data: bytes(&p, a.part),
    })
}

/// The decoded bytes of an attachment part: the original file, not the
/// charset-converted text `mail-parser` keeps for text parts.
pub(crate) fn bytes(p: &Parsed<'_>, pt: &MessagePart<'_>) -> Vec<u8> {
    let raw_slice = || {
        let start = usize::try_from(pt.offset_body).ok()?;
        let end = usize::try_from(pt.offset_end).ok()?;
        p.raw.get(start..end)
    };
    match &pt.body {
        PartType::Binary(b) | PartType::InlineBinary(b) => b.to_vec(),
        PartType::Message(nested) => {
            if pt.encoding == Encoding::None {
                if let Some(s) = raw_slice() {
                    return s.to_vec();
                }
            }
            nested.raw_message.to_vec()
        }
        PartType::Text(t) | PartType::Html(t) => {
            let decoded = raw_slice().and_then(|s| {
                if pt.is_encoding_problem {
                    return Some(s.to_vec());
                }
                match pt.encoding {
                    Encoding::None => Some(s.to_vec()),
                    Encoding::Base64 => decode_base64(s),
                    Encoding::QuotedPrintable => Some(decode_quoted_printable(s)),
                }
            });
            decoded.unwrap_or_else(|| t.as_bytes().to_vec())
        }
        PartType::Multipart(_) => Vec::new(),
    }
}

/// Decoded size of an attachment part (`EstimatedDataSize`).
pub(crate) fn size(p: &Parsed<'_>, pt: &MessagePart<'_>) -> usize {
    match &pt.body {
        PartType::Binary(b) | PartType::InlineBinary(b) => b.len(),
        _ => bytes(p, pt).len(),
    }
}

fn content_type_of(pt: &MessagePart<'_>) -> String {
    if let Some(ct) = pt.content_type() {
        let t = clean_line(ct.ctype()).to_ascii_lowercase();
        if let Some(sub) = ct.subtype() {
            let sub = clean_line(sub).to_ascii_lowercase();
            if !t.is_empty() && !sub.is_empty() {
                return format!("{t}/{sub}");
            }
        }
    }
    match pt.body {
        PartType::Message(_) => "message/rfc822".to_string(),
        PartType::Text(_) => "text/plain".to_string(),
        PartType::Html(_) => "text/html".to_string(),
        _ => "application/octet-stream".to_string(),
    }
}

fn display_name(pt: &MessagePart<'_>, index: usize, content_type: &str) -> String {
    if let Some(n) = pt.attachment_name().map(sanitize_name) {
        if !n.is_empty() {
            return n;
        }
    }
    if let PartType::Message(nested) = &pt.body {
        let subject = nested
            .parts
            .first()
            .and_then(|r| header_in(&r.headers, &HeaderName::Subject))
            .and_then(|v| match v {
                HeaderValue::Text(t) => Some(sanitize_name(t)),
                _ => None,
            })
            .unwrap_or_default();
        if !subject.is_empty() {
            return format!("{subject}.eml");
        }
    }
    match content_type {
        "application/pkcs7-signature" | "application/x-pkcs7-signature" => {
            return "smime.p7s".to_string()
        }
        "application/pkcs7-mime" | "application/x-pkcs7-mime" => return "smime.p7m".to_string(),
        _ => {}
    }
    let ext = match content_type {
        "message/rfc822" => ".eml",
        "image/png" => ".png",
        "image/jpeg" | "image/jpg" => ".jpg",
        "image/gif" => ".gif",
        "application/pdf" => ".pdf",
        "text/plain" => ".txt",
        "text/html" => ".html",
        "text/calendar" => ".ics",
        _ => "",
    };
    format!("attachment-{}{ext}", index + 1)
}

/// A file name without directories or control characters.
fn sanitize_name(name: &str) -> String {
    let base = name.rsplit(['/', '\\']).next().unwrap_or(name);
    clean_line(base)
}

/// Base64 as found in mail: anything outside the alphabet is skipped, the
/// first `=` ends the data, missing padding and trailing bits are accepted.
fn decode_base64(input: &[u8]) -> Option<Vec<u8>> {
    Some(super::transfer::decode(TransferEncoding::Base64, input))
}

/// Quoted-printable (RFC 2045 6.7): `=XX` bytes, `=` soft line breaks;
/// a malformed `=` is kept as it is.
fn decode_quoted_printable(input: &[u8]) -> Vec<u8> {
    super::transfer::decode(TransferEncoding::QuotedPrintable, input)
}

/// Count of attachments (for [`Summary::has_attachments`](super::Summary)).
pub(crate) fn count(p: &Parsed<'_>) -> usize {
    list(p).len()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_lenient() {
        assert_eq!(
            decode_base64(b"aGVs\r\nbG8=\r\n").as_deref(),
            Some(&b"hello"[..])
        );
        assert_eq!(decode_base64(b"aGVsbG8").as_deref(), Some(&b"hello"[..]));
        assert_eq!(decode_base64(b"").as_deref(), Some(&b""[..]));
    }

    #[test]
    fn quoted_printable() {
        assert_eq!(
            decode_quoted_printable(b"a=3Db=\r\nc=\nd=ZZ="),
            b"a=bcd=ZZ="
        );
        assert_eq!(decode_quoted_printable(b"M=FCller"), b"M\xFCller");
    }

    #[test]
    fn names() {
        assert_eq!(sanitize_name("C:\\x\\report.pdf"), "report.pdf");
        assert_eq!(sanitize_name("../../etc/passwd"), "passwd");
        assert_eq!(sanitize_name(" a\tb.txt "), "a b.txt");
    }
}
