//! Mail leaving the phone: turning what the device sent into what goes to SMTP and to Sent Items.
//!
//! - [`prepare`] takes the final RFC 822 message, checks the sender against the user's
//!   addresses, collects the envelope recipients (To, Cc, Bcc), adds `From` (when missing),
//!   `Date` and `Message-ID` (when missing), and splits the header so that the submitted copy
//!   has no `Bcc` while the Sent Items copy keeps it.
//! - [`smart`] builds the message of a SmartReply / SmartForward without ReplaceMime: the
//!   device's text with the original quoted (plain and HTML), and for a forward the original's
//!   attachments.
//!
//! Large messages: the body is never copied by [`prepare`] (it stays a slice of the request,
//! unless bare LF line ends must be turned into CRLF); the `Bcc` fields are put first in the
//! header block, so the submitted message is a suffix of the Sent copy and both are written
//! from the same header bytes and the same body.

pub mod draft;
pub mod headers;
pub mod smart;

use bytes::Bytes;
use rand::Rng;

pub use headers::{Field, HeaderBlock};

/// Who is sending: the login address and the configured aliases (all lower-case).
#[derive(Debug, Clone)]
pub struct Identity {
    pub address: String,
    pub aliases: Vec<String>,
}

impl Identity {
    /// Whether `addr` is the user's own address or one of the aliases (case-insensitive).
    pub fn owns(&self, addr: &str) -> bool {
        let addr = addr.trim();
        self.address.eq_ignore_ascii_case(addr)
            || self.aliases.iter().any(|a| a.eq_ignore_ascii_case(addr))
    }

    /// The domain of the login address (for new Message-IDs).
    pub fn domain(&self) -> &str {
        self.address
            .rsplit_once('@')
            .map(|(_, d)| d)
            .unwrap_or("localhost")
    }
}

/// Why a message cannot be sent as it is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PrepareError {
    /// No header block at all (not an RFC 822 message).
    #[error("the message has no header")]
    InvalidMime,
    /// To, Cc and Bcc name nobody.
    #[error("the message has no recipient")]
    NoRecipient,
    /// From or Sender is not the user's address or one of the aliases.
    #[error("sending as {0} is not allowed for this user")]
    FromNotAllowed(String),
    /// A recipient address SMTP cannot carry.
    #[error("invalid recipient address {0:?}")]
    BadRecipient(String),
}

/// A message ready to submit and to file in Sent Items.
#[derive(Debug, Clone)]
pub struct Outgoing {
    /// The header block ending with the empty line; the `Bcc` fields come first.
    head: Vec<u8>,
    /// Length of the `Bcc` fields at the start of `head`.
    bcc_len: usize,
    body: Bytes,
    /// Envelope recipients: To, Cc and Bcc, de-duplicated (case-insensitive), in that order.
    pub recipients: Vec<String>,
    /// The message's Message-ID (with angle brackets), added when it had none.
    pub message_id: String,
    pub added_message_id: bool,
}

/// Size of the pieces handed to the SMTP writer.
const CHUNK: usize = 64 * 1024;

impl Outgoing {
    /// Bytes of the submitted message (without Bcc).
    pub fn submitted_len(&self) -> usize {
        self.head.len() - self.bcc_len + self.body.len()
    }

    /// The submitted message (without Bcc) in pieces, without copying the body, and without
    /// its final CRLF: the SMTP writer ends the data with `CRLF . CRLF` itself.
    pub fn wire_chunks(&self) -> impl Iterator<Item = &[u8]> {
        let head = self.head.get(self.bcc_len..).unwrap_or_default();
        let body: &[u8] = &self.body;
        let (head, body) = if let Some(body) = body.strip_suffix(b"\r\n") {
            (head, body)
        } else if body.is_empty() {
            let cut = head.len().saturating_sub(2);
            (head.get(..cut).unwrap_or_default(), body)
        } else {
            (head, body)
        };
        std::iter::once(head).chain(body.chunks(CHUNK))
    }

    /// The submitted message in one buffer (for tests and small messages).
    pub fn submitted(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.submitted_len());
        out.extend_from_slice(self.head.get(self.bcc_len..).unwrap_or_default());
        out.extend_from_slice(&self.body);
        out
    }

    /// The Sent Items copy (the submitted message plus its Bcc fields) as pieces: its header,
    /// then the body shared with the submitted message, so the message is not held twice.
    pub fn sent_copy_parts(&self) -> Vec<Bytes> {
        vec![Bytes::copy_from_slice(&self.head), self.body.clone()]
    }

    /// The Sent Items copy in one buffer.
    #[cfg(test)]
    fn sent_copy(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.head.len() + self.body.len());
        out.extend_from_slice(&self.head);
        out.extend_from_slice(&self.body);
        out
    }

    /// Whether any byte is outside ASCII (then the submission asks for 8BITMIME).
    pub fn is_8bit(&self) -> bool {
        !self.head.is_ascii() || !self.body.is_ascii()
    }
}

/// Checks and completes the final message; see the module documentation.
/// `now` is unix seconds (for a missing Date).
pub fn prepare(raw: Bytes, who: &Identity, now: i64) -> Result<Outgoing, PrepareError> {
    let raw = headers::crlf(raw);
    let block = HeaderBlock::split(&raw).ok_or(PrepareError::InvalidMime)?;
    let parsed = mail_parser::MessageParser::default()
        .parse_headers(
            raw.get(..block.body_start)
                .ok_or(PrepareError::InvalidMime)?,
        )
        .ok_or(PrepareError::InvalidMime)?;

    // The sender.
    let mut has_from = false;
    for addr in parsed.from().into_iter().flat_map(|a| a.iter()) {
        has_from = true;
        let a = addr.address().unwrap_or("");
        if !who.owns(a) {
            return Err(PrepareError::FromNotAllowed(a.to_string()));
        }
    }
    for addr in parsed.sender().into_iter().flat_map(|a| a.iter()) {
        let a = addr.address().unwrap_or("");
        if !who.owns(a) {
            return Err(PrepareError::FromNotAllowed(a.to_string()));
        }
    }

    // The envelope.
    let mut recipients: Vec<String> = Vec::new();
    let lists = parsed
        .all_to()
        .chain(parsed.all_cc())
        .chain(parsed.all_bcc());
    for addr in lists.flat_map(|a| a.iter()) {
        let Some(a) = addr.address().map(str::trim).filter(|a| !a.is_empty()) else {
            continue;
        };
        if a.parse::<lettre::Address>().is_err() {
            return Err(PrepareError::BadRecipient(a.to_string()));
        }
        if !recipients.iter().any(|r| r.eq_ignore_ascii_case(a)) {
            recipients.push(a.to_string());
        }
    }
    if recipients.is_empty() {
        return Err(PrepareError::NoRecipient);
    }

    let existing_id = parsed
        .message_id()
        .map(str::trim)
        .filter(|id| !id.is_empty())
        .map(|id| format!("<{id}>"));
    let has_date = parsed.date().is_some();

    // The header block: Bcc first, then the rest as sent, then what was missing.
    let fields = block.fields(&raw);
    let mut head = Vec::with_capacity(block.body_start + 256);
    for f in fields.iter().filter(|f| f.is("bcc")) {
        head.extend_from_slice(raw.get(f.range.clone()).unwrap_or_default());
    }
    let bcc_len = head.len();
    for f in fields.iter().filter(|f| !f.is("bcc")) {
        head.extend_from_slice(raw.get(f.range.clone()).unwrap_or_default());
    }
    if !has_from {
        head.extend_from_slice(format!("From: <{}>\r\n", who.address).as_bytes());
    }
    if !has_date {
        head.extend_from_slice(format!("Date: {}\r\n", rfc822_date(now)).as_bytes());
    }
    let (message_id, added_message_id) = match existing_id {
        Some(id) => (id, false),
        None => {
            let id = new_message_id(who.domain());
            head.extend_from_slice(format!("Message-ID: {id}\r\n").as_bytes());
            (id, true)
        }
    };
    head.extend_from_slice(b"\r\n");
    let body = raw.slice(block.body_start + block.separator_len..);
    Ok(Outgoing {
        head,
        bcc_len,
        body,
        recipients,
        message_id,
        added_message_id,
    })
}

/// A new Message-ID: 128 random bits at the user's domain.
pub fn new_message_id(domain: &str) -> String {
    let n: u128 = rand::thread_rng().gen();
    format!("<{n:032x}@{domain}>")
}

/// RFC 5322 date of unix seconds, in UTC.
pub fn rfc822_date(unix: i64) -> String {
    mail_parser::DateTime::from_timestamp(unix).to_rfc822()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alice() -> Identity {
        Identity {
            address: "alice@example.test".into(),
            aliases: vec!["a.smith@example.test".into()],
        }
    }

    #[test]
    fn bcc_is_first_in_the_sent_copy_and_absent_when_submitted() {
        let raw = "From: Alice <ALICE@example.test>\r\nTo: bob@example.test, Carol <carol@example.test>\r\nBcc: dave@example.test,\r\n  erin@example.test\r\nSubject: hi\r\nDate: Mon, 1 Jan 2024 10:00:00 +0000\r\nMessage-ID: <m1@x>\r\n\r\nbody\r\n";
        let out = prepare(Bytes::from(raw), &alice(), 0).unwrap();
        assert_eq!(
            out.recipients,
            vec![
                "bob@example.test",
                "carol@example.test",
                "dave@example.test",
                "erin@example.test"
            ]
        );
        assert_eq!(out.message_id, "<m1@x>");
        assert!(!out.added_message_id);
        let sub = String::from_utf8(out.submitted()).unwrap();
        assert!(!sub.to_ascii_lowercase().contains("bcc"), "{sub}");
        assert!(sub.ends_with("\r\n\r\nbody\r\n"));
        assert_eq!(sub.len(), out.submitted_len());
        let sent = String::from_utf8(out.sent_copy()).unwrap();
        assert!(sent.starts_with("Bcc: dave@example.test,\r\n  erin@example.test\r\nFrom:"));
        assert!(sent.ends_with(&sub));
    }

    #[test]
    fn adds_from_date_and_message_id_and_fixes_line_ends() {
        let raw = "To: bob@example.test\nSubject: x\n\nline1\nline2\n";
        let out = prepare(Bytes::from(raw), &alice(), 1_700_000_000).unwrap();
        let sub = String::from_utf8(out.submitted()).unwrap();
        assert!(sub.contains("From: <alice@example.test>\r\n"), "{sub}");
        assert!(
            sub.contains("Date: Tue, 14 Nov 2023 22:13:20 +0000\r\n"),
            "{sub}"
        );
        assert!(sub.contains(&format!("Message-ID: {}\r\n", out.message_id)));
        assert!(out.added_message_id && out.message_id.ends_with("@example.test>"));
        assert!(sub.ends_with("\r\n\r\nline1\r\nline2\r\n"), "{sub:?}");
    }

    #[test]
    fn sender_checks() {
        let alias = "From: a.smith@EXAMPLE.test\r\nTo: b@example.test\r\n\r\nx";
        assert!(prepare(Bytes::from(alias), &alice(), 0).is_ok());
        let other = "From: mallory@example.test\r\nTo: b@example.test\r\n\r\nx";
        assert_eq!(
            prepare(Bytes::from(other), &alice(), 0).unwrap_err(),
            PrepareError::FromNotAllowed("mallory@example.test".into())
        );
        let sender =
            "From: alice@example.test\r\nSender: m@example.test\r\nTo: b@example.test\r\n\r\nx";
        assert!(matches!(
            prepare(Bytes::from(sender), &alice(), 0),
            Err(PrepareError::FromNotAllowed(_))
        ));
        let nobody =
            "From: alice@example.test\r\nTo: undisclosed-recipients:;\r\nSubject: x\r\n\r\nx";
        assert_eq!(
            prepare(Bytes::from(nobody), &alice(), 0).unwrap_err(),
            PrepareError::NoRecipient
        );
        assert_eq!(
            prepare(Bytes::from_static(b"\r\njust a body"), &alice(), 0).unwrap_err(),
            PrepareError::InvalidMime
        );
        let bad = "From: alice@example.test\r\nTo: \"x\" <not an address>\r\n\r\nx";
        assert!(matches!(
            prepare(Bytes::from(bad), &alice(), 0),
            Err(PrepareError::BadRecipient(_) | PrepareError::NoRecipient)
        ));
    }

    #[test]
    fn body_is_not_copied() {
        let raw = Bytes::from(format!(
            "From: alice@example.test\r\nTo: b@example.test\r\n\r\n{}",
            "x".repeat(200_000)
        ));
        let out = prepare(raw.clone(), &alice(), 0).unwrap();
        let tail = out.wire_chunks().last().unwrap();
        // The last piece points into the request buffer itself.
        let base = raw.as_ptr() as usize;
        let p = tail.as_ptr() as usize;
        assert!(p >= base && p < base + raw.len());
        assert_eq!(out.wire_chunks().count(), 1 + 200_000usize.div_ceil(CHUNK));
        let wire: Vec<u8> = out.wire_chunks().flatten().copied().collect();
        assert_eq!(wire.len(), out.submitted_len());
        // The Sent copy shares the body too.
        let parts = out.sent_copy_parts();
        assert_eq!(parts.concat(), out.sent_copy());
        let p = parts[1].as_ptr() as usize;
        assert!(p >= base && p < base + raw.len());

        let crlf =
            Bytes::from_static(b"From: alice@example.test\r\nTo: b@example.test\r\n\r\nx\r\n");
        let out = prepare(crlf, &alice(), 0).unwrap();
        let wire: Vec<u8> = out.wire_chunks().flatten().copied().collect();
        assert_eq!(wire.len() + 2, out.submitted_len());
        assert!(wire.ends_with(b"\r\n\r\nx"));
    }
}
