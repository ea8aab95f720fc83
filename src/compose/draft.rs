//! A draft as the device writes it in the Drafts folder (16.0+ Sync Add / Change): the RFC 822
//! message that is kept on the IMAP server.
//!
//! Two shapes:
//! - a whole message (`airsyncbase:Body` Type 4): kept as sent (line ends made CRLF), with a
//!   Message-ID added when it has none (the one of the version it replaces, else a new one);
//! - fields: To, Cc, Bcc, Subject, Importance, a plain (Type 1) or HTML (Type 2) body and
//!   attachments added (with the device's ClientId) or deleted (by FileReference). A Change
//!   starts from the version it replaces: what the device does not send stays as it was (the
//!   addresses, the subject, the body, the attachments not deleted), and the Message-ID stays
//!   the same so other clients recognise the draft.

use std::str::FromStr;
use std::time::{Duration, UNIX_EPOCH};

use bytes::Bytes;
use lettre::address::Envelope;
use lettre::message::header::{self, ContentType, HeaderName, HeaderValue};
use lettre::message::{Attachment, Mailbox, Mailboxes, MultiPart, SinglePart};
use lettre::Message;
use mail_parser::{HeaderValue as ParsedValue, MessageParser, MimeHeaders};

use crate::eas::sync::DraftData;

use super::headers::{self, HeaderBlock};

/// The message to store, and where the device's new attachments ended up.
#[derive(Debug, Clone)]
pub struct Built {
    pub raw: Vec<u8>,
    /// With angle brackets.
    pub message_id: String,
    /// (ClientId, attachment index as used in FileReferences) of each added attachment.
    pub added: Vec<(String, usize)>,
}

/// Why a draft cannot be stored.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DraftError {
    #[error("invalid address list {0:?}")]
    InvalidAddress(String),
    #[error("the message has no header")]
    InvalidMime,
    #[error("cannot build the message: {0}")]
    Build(String),
}

/// Builds the draft from what the device sent and, for a Change, the version it replaces.
/// `from` is the user's address; `domain` names new Message-IDs; `now` is unix seconds.
pub fn build(
    data: &DraftData,
    existing: Option<&[u8]>,
    from: &str,
    domain: &str,
    now: i64,
) -> Result<Built, DraftError> {
    let old = existing.and_then(|raw| MessageParser::default().parse(raw));
    let old_id = old
        .as_ref()
        .and_then(|m| m.message_id())
        .map(|id| format!("<{}>", id.trim()));
    if let Some((4, mime)) = &data.body {
        return whole_message(mime.clone(), old_id, domain);
    }
    let message_id = old_id.unwrap_or_else(|| super::new_message_id(domain));

    let from: Mailbox = from
        .parse()
        .map_err(|_| DraftError::InvalidAddress(from.to_string()))?;
    let mut b = Message::builder()
        .from(from.clone())
        .message_id(Some(message_id.clone()))
        .date(UNIX_EPOCH + Duration::from_secs(u64::try_from(now).unwrap_or(0)))
        .envelope(
            Envelope::new(Some(from.email.clone()), vec![from.email.clone()])
                .map_err(|e| DraftError::Build(e.to_string()))?,
        )
        .keep_bcc();
    let old_list = |name: &str| -> Option<Mailboxes> {
        let m = old.as_ref()?;
        let list = match m.header(name)? {
            ParsedValue::Address(a) => a,
            _ => return None,
        };
        let mut out = Mailboxes::new();
        for a in list.iter() {
            let addr = a.address()?.parse().ok()?;
            out.push(Mailbox::new(a.name().map(str::to_string), addr));
        }
        Some(out)
    };
    for (name, given) in [("To", &data.to), ("Cc", &data.cc), ("Bcc", &data.bcc)] {
        let list = match given {
            Some(text) => parse_list(text)?,
            None => old_list(name),
        };
        let Some(list) = list.filter(|l| l.iter().next().is_some()) else {
            continue;
        };
        b = match name {
            "To" => b.header(header::To::from(list)),
            "Cc" => b.header(header::Cc::from(list)),
            _ => b.header(header::Bcc::from(list)),
        };
    }
    let subject = match &data.subject {
        Some(s) => Some(s.clone()),
        None => old.as_ref().and_then(|m| m.subject()).map(str::to_string),
    };
    if let Some(s) = subject {
        b = b.subject(s);
    }
    let importance = match data.importance {
        Some(0) => Some("low"),
        Some(2) => Some("high"),
        Some(_) => None,
        None => old
            .as_ref()
            .and_then(|m| m.header_raw("Importance"))
            .map(str::trim)
            .and_then(|v| match v.to_ascii_lowercase().as_str() {
                "low" => Some("low"),
                "high" => Some("high"),
                _ => None,
            }),
    };

    // The body: the device's, else the old version's (HTML when it had HTML).
    let body_part = match &data.body {
        Some((2, html)) => SinglePart::html(String::from_utf8_lossy(html).into_owned()),
        Some((_, text)) => SinglePart::plain(String::from_utf8_lossy(text).into_owned()),
        None => match &old {
            Some(m) if m.html_body.iter().any(|i| is_html(m, *i)) => {
                SinglePart::html(m.body_html(0).map(|c| c.into_owned()).unwrap_or_default())
            }
            Some(m) => {
                SinglePart::plain(m.body_text(0).map(|c| c.into_owned()).unwrap_or_default())
            }
            None => SinglePart::plain(String::new()),
        },
    };

    // Attachments: the old ones not deleted, then the new ones.
    let deleted: Vec<usize> = data
        .delete_attachments
        .iter()
        .filter_map(|r| r.rsplit_once(':').and_then(|(_, i)| i.parse().ok()))
        .collect();
    let mut parts: Vec<SinglePart> = Vec::new();
    if let Some(raw) = existing {
        for i in 0.. {
            let Some(a) = crate::mime::attachment(raw, i) else {
                break;
            };
            if deleted.contains(&i) {
                continue;
            }
            let ct = ContentType::parse(&a.content_type).unwrap_or_else(|_| octet_stream());
            parts.push(Attachment::new(a.file_name).body(a.data, ct));
        }
    }
    let mut added = Vec::new();
    for a in &data.add_attachments {
        let ct = a
            .content_type
            .as_deref()
            .and_then(|c| ContentType::parse(c).ok())
            .unwrap_or_else(octet_stream);
        let name = if a.display_name.is_empty() {
            format!("attachment-{}", parts.len() + 1)
        } else {
            a.display_name.clone()
        };
        let att = match (&a.content_id, a.is_inline) {
            (Some(cid), true) => Attachment::new_inline_with_name(cid.clone(), name),
            _ => Attachment::new(name),
        };
        added.push((a.client_id.clone(), parts.len()));
        parts.push(att.body(a.content.to_vec(), ct));
    }

    let mut message = if parts.is_empty() {
        b.singlepart(body_part)
    } else {
        let mut mp = MultiPart::mixed().singlepart(body_part);
        for p in parts {
            mp = mp.singlepart(p);
        }
        b.multipart(mp)
    }
    .map_err(|e| DraftError::Build(e.to_string()))?;
    if let Some(i) = importance {
        message.headers_mut().insert_raw(HeaderValue::new(
            HeaderName::new_from_ascii_str("Importance"),
            i.to_string(),
        ));
    }
    Ok(Built {
        raw: message.formatted(),
        message_id,
        added,
    })
}

fn is_html(m: &mail_parser::Message<'_>, part: u32) -> bool {
    m.part(part)
        .and_then(|p| p.content_type())
        .is_some_and(|ct| ct.c_subtype.as_deref() == Some("html"))
}

/// An address list as devices write it (`a@x, "B" <b@y>`; some use `;`).
fn parse_list(text: &str) -> Result<Option<Mailboxes>, DraftError> {
    let text = text.replace(';', ",");
    if text.trim().is_empty() {
        return Ok(None);
    }
    Mailboxes::from_str(text.trim())
        .map(Some)
        .map_err(|_| DraftError::InvalidAddress(text.trim().to_string()))
}

/// `application/octet-stream`, the type of an attachment whose own type does not parse.
#[allow(clippy::expect_used)] // a fixed, valid media type: parsing it cannot fail
fn octet_stream() -> ContentType {
    ContentType::parse("application/octet-stream").expect("a valid media type")
}

fn whole_message(mime: Bytes, old_id: Option<String>, domain: &str) -> Result<Built, DraftError> {
    let raw = headers::crlf(mime);
    let block = HeaderBlock::split(&raw).ok_or(DraftError::InvalidMime)?;
    let parsed = MessageParser::default()
        .parse_headers(raw.get(..block.body_start).ok_or(DraftError::InvalidMime)?)
        .ok_or(DraftError::InvalidMime)?;
    if let Some(id) = parsed.message_id().map(str::trim).filter(|i| !i.is_empty()) {
        return Ok(Built {
            message_id: format!("<{id}>"),
            raw: raw.to_vec(),
            added: Vec::new(),
        });
    }
    let id = old_id.unwrap_or_else(|| super::new_message_id(domain));
    let mut out = format!("Message-ID: {id}\r\n").into_bytes();
    out.extend_from_slice(&raw);
    Ok(Built {
        raw: out,
        message_id: id,
        added: Vec::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::eas::sync::NewAttachment;

    fn parse(raw: &[u8]) -> mail_parser::Message<'_> {
        MessageParser::default().parse(raw).unwrap()
    }

    #[test]
    fn fields_make_a_message_and_a_change_keeps_the_rest() {
        let data = DraftData {
            to: Some("Bob <bob@example.test>; carol@example.test".into()),
            bcc: Some("dave@example.test".into()),
            subject: Some("Grüße".into()),
            importance: Some(2),
            body: Some((1, Bytes::from_static("Hallo Welt".as_bytes()))),
            add_attachments: vec![NewAttachment {
                client_id: "a1".into(),
                display_name: "data.bin".into(),
                content: Bytes::from_static(&[0, 1, 2, 255]),
                ..Default::default()
            }],
            ..Default::default()
        };
        let built = build(
            &data,
            None,
            "alice@example.test",
            "example.test",
            1_800_000_000,
        )
        .unwrap();
        assert_eq!(built.added, vec![("a1".to_string(), 0)]);
        let m = parse(&built.raw);
        assert_eq!(m.subject(), Some("Grüße"));
        assert_eq!(m.to().unwrap().iter().count(), 2);
        assert_eq!(
            m.bcc().unwrap().first().unwrap().address(),
            Some("dave@example.test")
        );
        assert_eq!(m.header_raw("Importance").map(str::trim), Some("high"));
        assert_eq!(m.body_text(0).as_deref().map(str::trim), Some("Hallo Welt"));
        assert_eq!(
            m.message_id().map(|i| format!("<{i}>")),
            Some(built.message_id.clone())
        );
        let att = crate::mime::attachment(&built.raw, 0).unwrap();
        assert_eq!(att.data, vec![0, 1, 2, 255]);

        // A Change of the subject only, deleting the attachment.
        let change = DraftData {
            subject: Some("Neu".into()),
            delete_attachments: vec!["4:7:0".into()],
            ..Default::default()
        };
        let again = build(
            &change,
            Some(&built.raw),
            "alice@example.test",
            "example.test",
            1_800_000_100,
        )
        .unwrap();
        let m = parse(&again.raw);
        assert_eq!(again.message_id, built.message_id, "the Message-ID stays");
        assert_eq!(m.subject(), Some("Neu"));
        assert_eq!(m.to().unwrap().iter().count(), 2);
        assert_eq!(m.body_text(0).as_deref().map(str::trim), Some("Hallo Welt"));
        assert!(crate::mime::attachment(&again.raw, 0).is_none());
        assert_eq!(m.header_raw("Importance").map(str::trim), Some("high"));
    }

    #[test]
    fn a_whole_message_is_kept_and_gets_a_message_id() {
        let data = DraftData {
            body: Some((4, Bytes::from_static(b"Subject: x\nTo: a@b.test\n\nbody\n"))),
            ..Default::default()
        };
        let built = build(&data, None, "alice@example.test", "example.test", 0).unwrap();
        assert!(built.raw.starts_with(b"Message-ID: <"));
        assert!(built.raw.ends_with(b"\r\n\r\nbody\r\n"));
        let bad = DraftData {
            to: Some("not an address <<".into()),
            ..Default::default()
        };
        assert!(matches!(
            build(&bad, None, "alice@example.test", "example.test", 0),
            Err(DraftError::InvalidAddress(_))
        ));
    }
}
