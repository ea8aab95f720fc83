//! SmartReply / SmartForward without ReplaceMime: the device sends only its new text, the
//! server adds the original (MS-ASCMD 2.2.1.19, 2.2.1.20).
//!
//! The result keeps the device's header fields as sent (From, To, Subject, ... ; the MIME
//! fields are replaced) and gets a new body:
//! - text/plain: the device's text, a short header block of the original ("From:", "Sent:",
//!   "To:", "Cc:", "Subject:"), then the original's text, each line prefixed with `> ` for a
//!   reply and as is for a forward;
//! - text/html (when the device's or the original's message has HTML): the device's HTML (or
//!   its text, escaped), then the same header block and the original's HTML body (or its text,
//!   escaped) in a `<blockquote>`;
//! - both as multipart/alternative when there is HTML;
//! - multipart/mixed with the device's own attachments and, for a forward, the original's
//!   attachments, copied byte for byte (with their MIME headers) from the original.
//!
//! mail-parser decodes the original's text in whatever charset it declares; the new parts are
//! UTF-8. A reply gets `In-Reply-To` and `References` from the original when the device did not
//! set them.

use std::fmt::Write as _;

use lettre::message::{MultiPart, SinglePart};
use mail_parser::{Message, MessageParser, MessagePart, MimeHeaders, PartType};

use super::headers::HeaderBlock;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SmartKind {
    Reply,
    Forward,
}

/// Why the new message could not be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SmartError {
    #[error("the device's message is not an RFC 822 message")]
    InvalidMime,
}

/// Header fields of the device's message that are replaced by the new body's.
const MIME_FIELDS: &[&str] = &[
    "content-type",
    "content-transfer-encoding",
    "mime-version",
    "content-disposition",
    "content-id",
    "content-description",
];

/// Builds the message to send from the device's message and the original.
pub fn compose(
    kind: SmartKind,
    new_raw: &[u8],
    original_raw: &[u8],
) -> Result<Vec<u8>, SmartError> {
    let parser = MessageParser::default();
    let new = parser.parse(new_raw).ok_or(SmartError::InvalidMime)?;
    let block = HeaderBlock::split(new_raw).ok_or(SmartError::InvalidMime)?;
    let original = parser.parse(original_raw);

    // The device's text.
    let new_html = real_html(&new);
    let new_text = new.body_text(0).map(|t| t.into_owned()).unwrap_or_default();

    // The original's text.
    let (orig_text, orig_html, intro) = match &original {
        Some(o) => (
            o.body_text(0).map(|t| t.into_owned()).unwrap_or_default(),
            real_html(o),
            Intro::of(o),
        ),
        None => (
            String::from_utf8_lossy(original_raw).into_owned(),
            None,
            Intro::default(),
        ),
    };

    let mut plain = new_text.trim_end().to_string();
    plain.push_str("\r\n\r\n");
    plain.push_str(&intro.text(kind));
    plain.push_str("\r\n");
    for line in orig_text.lines() {
        if kind == SmartKind::Reply {
            plain.push_str(if line.is_empty() { ">" } else { "> " });
        }
        plain.push_str(line);
        plain.push_str("\r\n");
    }

    let body = if new_html.is_some() || orig_html.is_some() {
        let quoted = match &orig_html {
            Some(h) => body_inner(h).to_string(),
            None => text_to_html(&orig_text),
        };
        let quote = format!(
            "<hr>{}<blockquote style=\"margin:0 0 0 .8ex;border-left:1px solid #ccc;padding-left:1ex\">{}</blockquote>",
            intro.html(kind),
            quoted
        );
        let html = match new_html {
            Some(h) => insert_before_body_end(&h, &quote),
            None => format!(
                "<html><body><div>{}</div>{}</body></html>",
                text_to_html(new_text.trim_end()),
                quote
            ),
        };
        MultiPart::alternative_plain_html(plain, html).formatted()
    } else {
        SinglePart::plain(plain).formatted()
    };

    // Attachments: the device's own, then (forward) the original's.
    let mut attachments: Vec<Vec<u8>> = raw_attachments(&new, new_raw);
    if kind == SmartKind::Forward {
        if let Some(o) = &original {
            attachments.extend(raw_attachments(o, original_raw));
        }
    }

    let mut out = Vec::with_capacity(
        block.body_start + body.len() + attachments.iter().map(Vec::len).sum::<usize>() + 512,
    );
    let mut has_in_reply_to = false;
    let mut has_references = false;
    for f in block.fields(new_raw) {
        has_in_reply_to |= f.is("in-reply-to");
        has_references |= f.is("references");
        if !MIME_FIELDS.iter().any(|m| f.is(m)) {
            out.extend_from_slice(new_raw.get(f.range.clone()).unwrap_or_default());
        }
    }
    if kind == SmartKind::Reply {
        if let Some(o) = &original {
            if let Some(id) = o.message_id().filter(|id| !id.is_empty()) {
                if !has_in_reply_to {
                    out.extend_from_slice(format!("In-Reply-To: <{id}>\r\n").as_bytes());
                }
                if !has_references {
                    let mut refs: Vec<String> = o
                        .references()
                        .as_text_list()
                        .map(|l| l.iter().map(|r| format!("<{r}>")).collect())
                        .or_else(|| o.references().as_text().map(|r| vec![format!("<{r}>")]))
                        .unwrap_or_default();
                    refs.push(format!("<{id}>"));
                    out.extend_from_slice(format!("References: {}\r\n", refs.join(" ")).as_bytes());
                }
            }
        }
    }
    out.extend_from_slice(b"MIME-Version: 1.0\r\n");
    if attachments.is_empty() {
        out.extend_from_slice(&body);
    } else {
        let boundary = format!("=_eas_{:032x}", rand::random::<u128>());
        out.extend_from_slice(
            format!("Content-Type: multipart/mixed; boundary=\"{boundary}\"\r\n\r\n").as_bytes(),
        );
        for part in std::iter::once(body).chain(attachments) {
            out.extend_from_slice(format!("--{boundary}\r\n").as_bytes());
            out.extend_from_slice(&part);
            if !part.ends_with(b"\r\n") {
                out.extend_from_slice(b"\r\n");
            }
        }
        out.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    }
    Ok(out)
}

/// The first HTML body, when the message really has one (mail-parser also offers text parts
/// converted to HTML).
fn real_html(m: &Message<'_>) -> Option<String> {
    m.html_part(0)
        .filter(|p| p.is_text_html())
        .and_then(|p| p.text_contents())
        .map(str::to_string)
}

/// The attachments of a message as complete MIME parts (header fields and encoded body, as
/// they are in the message). A message that is itself one attachment (its root part) is
/// re-encoded, since its header block also holds the message's own fields.
fn raw_attachments(m: &Message<'_>, raw: &[u8]) -> Vec<Vec<u8>> {
    let root: *const MessagePart<'_> = m.root_part();
    let mut out = Vec::new();
    for part in m.attachments() {
        if std::ptr::eq(part, root) {
            out.push(reencode(part));
            continue;
        }
        let start = part.raw_header_offset() as usize;
        let end = (part.raw_end_offset() as usize).min(raw.len());
        if start >= end {
            continue;
        }
        out.push(raw.get(start..end).unwrap_or_default().to_vec());
    }
    out
}

fn reencode(part: &MessagePart<'_>) -> Vec<u8> {
    let name = part
        .attachment_name()
        .unwrap_or("attachment")
        .replace(['"', '\r', '\n'], "");
    let ctype = part
        .content_type()
        .map(|c| match c.subtype() {
            Some(s) => format!("{}/{}", c.ctype(), s),
            None => c.ctype().to_string(),
        })
        .and_then(|t: String| lettre::message::header::ContentType::parse(t.as_str()).ok())
        .unwrap_or_else(|| {
            lettre::message::header::ContentType::parse("application/octet-stream")
                .unwrap_or(lettre::message::header::ContentType::TEXT_PLAIN)
        });
    let contents = match &part.body {
        PartType::Text(t) | PartType::Html(t) => t.as_bytes().to_vec(),
        PartType::Binary(b) | PartType::InlineBinary(b) => b.to_vec(),
        PartType::Message(m) => m.raw_message().to_vec(),
        PartType::Multipart(_) => Vec::new(),
    };
    lettre::message::Attachment::new(name)
        .body(contents, ctype)
        .formatted()
}

/// The original's header block shown above the quote.
#[derive(Debug, Default)]
struct Intro {
    from: String,
    sent: String,
    to: String,
    cc: String,
    subject: String,
}

impl Intro {
    fn of(m: &Message<'_>) -> Intro {
        let list = |a: Option<&mail_parser::Address<'_>>| -> String {
            a.map(|a| {
                a.iter()
                    .map(|x| match (x.name(), x.address()) {
                        (Some(n), Some(e)) => format!("{n} <{e}>"),
                        (None, Some(e)) => e.to_string(),
                        (Some(n), None) => n.to_string(),
                        (None, None) => String::new(),
                    })
                    .filter(|s| !s.is_empty())
                    .collect::<Vec<_>>()
                    .join(", ")
            })
            .unwrap_or_default()
        };
        Intro {
            from: list(m.from()),
            sent: m.date().map(|d| d.to_rfc822()).unwrap_or_default(),
            to: list(m.to()),
            cc: list(m.cc()),
            subject: m.subject().unwrap_or("").to_string(),
        }
    }

    fn lines(&self) -> Vec<(&'static str, &str)> {
        [
            ("From", self.from.as_str()),
            ("Sent", self.sent.as_str()),
            ("To", self.to.as_str()),
            ("Cc", self.cc.as_str()),
            ("Subject", self.subject.as_str()),
        ]
        .into_iter()
        .filter(|(_, v)| !v.is_empty())
        .collect()
    }

    fn title(kind: SmartKind) -> &'static str {
        match kind {
            SmartKind::Reply => "-----Original Message-----",
            SmartKind::Forward => "-------- Forwarded Message --------",
        }
    }

    fn text(&self, kind: SmartKind) -> String {
        let mut s = format!("{}\r\n", Intro::title(kind));
        for (k, v) in self.lines() {
            let _ = write!(s, "{k}: {v}\r\n");
        }
        s
    }

    fn html(&self, kind: SmartKind) -> String {
        let mut s = format!("<div>{}<br>", escape(Intro::title(kind)));
        for (k, v) in self.lines() {
            let _ = write!(s, "<b>{k}:</b> {}<br>", escape(v));
        }
        s.push_str("</div>");
        s
    }
}

fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            c => out.push(c),
        }
    }
    out
}

fn text_to_html(s: &str) -> String {
    s.lines().map(escape).collect::<Vec<_>>().join("<br>\r\n")
}

/// Finds `needle` (ASCII, lower-case) in `hay` ignoring ASCII case; byte offset.
fn find_ci(hay: &str, needle: &str, from_end: bool) -> Option<usize> {
    let h = hay.as_bytes();
    let n = needle.as_bytes();
    if n.len() > h.len() {
        return None;
    }
    let matches = |i: &usize| {
        h.get(*i..*i + n.len())
            .is_some_and(|w| w.eq_ignore_ascii_case(n))
    };
    let range = 0..=h.len() - n.len();
    if from_end {
        range.rev().find(matches)
    } else {
        range.clone().find(matches)
    }
}

/// What is inside `<body ...>` ... `</body>`, or the whole text.
fn body_inner(html: &str) -> &str {
    let start = find_ci(html, "<body", false)
        .and_then(|i| html[i..].find('>').map(|j| i + j + 1))
        .unwrap_or(0);
    let end = find_ci(html, "</body", true)
        .filter(|e| *e >= start)
        .unwrap_or(html.len());
    html.get(start..end).unwrap_or(html)
}

fn insert_before_body_end(html: &str, insert: &str) -> String {
    match find_ci(html, "</body", true) {
        Some(i) => format!("{}{}{}", &html[..i], insert, &html[i..]),
        None => format!("{html}{insert}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(raw: &[u8]) -> Message<'_> {
        MessageParser::default().parse(raw).unwrap()
    }

    const NEW_PLAIN: &[u8] =
        b"From: bob@example.test\r\nTo: alice@example.test\r\nSubject: Re: Hello\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nThanks!\r\n";

    #[test]
    fn reply_to_plain_latin1_original_quotes_it() {
        let original = b"From: Alice <alice@example.test>\r\nTo: bob@example.test\r\nSubject: Hello\r\nMessage-ID: <orig@x>\r\nDate: Mon, 1 Jan 2024 10:00:00 +0000\r\nContent-Type: text/plain; charset=iso-8859-1\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\nGr=FC=DFe\r\nzweite Zeile\r\n";
        let out = compose(SmartKind::Reply, NEW_PLAIN, original).unwrap();
        let m = parse(&out);
        let text = m.body_text(0).unwrap();
        assert!(text.starts_with("Thanks!"), "{text}");
        assert!(text.contains("> Grüße"), "{text}");
        assert!(text.contains("> zweite Zeile"));
        assert!(text.contains("From: Alice <alice@example.test>"));
        assert_eq!(m.in_reply_to().as_text(), Some("orig@x"));
        assert_eq!(m.subject(), Some("Re: Hello"));
        assert_eq!(m.html_body_count(), 1);
        assert!(
            !m.html_part(0).unwrap().is_text_html(),
            "no HTML part expected"
        );
    }

    #[test]
    fn reply_to_alternative_original_quotes_both_parts() {
        let original = b"From: alice@example.test\r\nTo: bob@example.test\r\nSubject: Hello\r\nContent-Type: multipart/alternative; boundary=b1\r\n\r\n--b1\r\nContent-Type: text/plain\r\n\r\nplain words\r\n--b1\r\nContent-Type: text/html\r\n\r\n<html><head><title>t</title></head><body><p>html <b>words</b></p></body></html>\r\n--b1--\r\n";
        let out = compose(SmartKind::Reply, NEW_PLAIN, original).unwrap();
        let m = parse(&out);
        assert!(m.body_text(0).unwrap().contains("> plain words"));
        let html = m.body_html(0).unwrap();
        assert!(html.contains("<blockquote"), "{html}");
        assert!(html.contains("<p>html <b>words</b></p>"), "{html}");
        assert!(!html.contains("<title>"), "{html}");
        assert!(html.contains("Thanks!"));
    }

    #[test]
    fn forward_carries_original_attachments_byte_for_byte() {
        let original = b"From: alice@example.test\r\nTo: bob@example.test\r\nSubject: Files\r\nContent-Type: multipart/mixed; boundary=\"mx\"\r\n\r\n--mx\r\nContent-Type: text/html; charset=utf-8\r\n\r\n<p>see attached</p>\r\n--mx\r\nContent-Type: application/octet-stream; name=\"a.bin\"\r\nContent-Disposition: attachment; filename=\"a.bin\"\r\nContent-Transfer-Encoding: base64\r\n\r\nAAECAwQF/w==\r\n--mx--\r\n";
        let new = b"From: bob@example.test\r\nTo: carol@example.test\r\nSubject: Fwd: Files\r\n\r\nFYI\r\n";
        let out = compose(SmartKind::Forward, new, original).unwrap();
        let m = parse(&out);
        assert_eq!(m.attachment_count(), 1);
        let a = m.attachment(0).unwrap();
        assert_eq!(a.attachment_name(), Some("a.bin"));
        assert_eq!(a.contents(), &[0, 1, 2, 3, 4, 5, 255]);
        let text = m.body_text(0).unwrap();
        assert!(
            text.contains("Forwarded Message") && text.contains("see attached"),
            "{text}"
        );
        assert!(!text.contains("> see attached"));
        assert!(m.body_html(0).unwrap().contains("<p>see attached</p>"));
        // No reply headers on a forward.
        assert!(m.in_reply_to().is_empty());
    }

    #[test]
    fn device_html_gets_the_quote_inside_its_body() {
        let new = b"From: bob@example.test\r\nTo: alice@example.test\r\nSubject: Re\r\nContent-Type: text/html\r\n\r\n<html><body><p>mine</p></body></html>\r\n";
        let original = b"From: alice@example.test\r\nSubject: x\r\n\r\na < b\r\n";
        let out = compose(SmartKind::Reply, new, original).unwrap();
        let m = parse(&out);
        let html = m.body_html(0).unwrap();
        let mine = html.find("<p>mine</p>").unwrap();
        let quote = html.find("a &lt; b").unwrap();
        let end = html.find("</body>").unwrap();
        assert!(mine < quote && quote < end, "{html}");
    }

    #[test]
    fn garbage_from_the_device_is_refused() {
        assert_eq!(
            compose(SmartKind::Reply, b"\r\n\r\n", b"x").unwrap_err(),
            SmartError::InvalidMime
        );
    }
}
