//! SendMail, SmartReply and SmartForward requests (MS-ASCMD 2.2.1.17, 2.2.1.19, 2.2.1.20).
//!
//! Two shapes carry the same request:
//! - 12.x: the raw RFC 822 message is the HTTP body (`message/rfc822`); SaveInSent, CollectionId,
//!   ItemId and LongId come from the query ([`ComposeRequest::from_query`]).
//! - 14.0+: a ComposeMail WBXML document ([`ComposeRequest::parse`]) with ClientId,
//!   SaveInSentItems, Source (FolderId + ItemId, or LongId, optionally InstanceId), ReplaceMime,
//!   AccountId and the message in Mime (opaque data or a string).
//!
//! Success has no body in either shape; a 14.0+ failure is `<Command><Status>n</Status></Command>`
//! with one of the common statuses of MS-ASCMD 2.2.2 ([`response`]).

use bytes::Bytes;

use crate::wbxml::tags::compose_mail as cm;
use crate::wbxml::{Element, Tag};

use super::{Command, ParseError, RequestLine};

/// Which of the three commands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ComposeKind {
    SendMail,
    SmartReply,
    SmartForward,
}

impl ComposeKind {
    pub fn from_command(c: Command) -> Option<ComposeKind> {
        match c {
            Command::SendMail => Some(ComposeKind::SendMail),
            Command::SmartReply => Some(ComposeKind::SmartReply),
            Command::SmartForward => Some(ComposeKind::SmartForward),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            ComposeKind::SendMail => "SendMail",
            ComposeKind::SmartReply => "SmartReply",
            ComposeKind::SmartForward => "SmartForward",
        }
    }

    /// The root element of the request and of a failure response.
    pub fn root(self) -> Tag {
        match self {
            ComposeKind::SendMail => cm::SEND_MAIL,
            ComposeKind::SmartReply => cm::SMART_REPLY,
            ComposeKind::SmartForward => cm::SMART_FORWARD,
        }
    }
}

/// Where the original of a SmartReply / SmartForward is.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Source {
    pub folder_id: Option<String>,
    pub item_id: Option<String>,
    pub long_id: Option<String>,
    pub instance_id: Option<String>,
}

impl Source {
    fn is_empty(&self) -> bool {
        self.folder_id.is_none() && self.item_id.is_none() && self.long_id.is_none()
    }
}

/// One SendMail / SmartReply / SmartForward request, whichever shape it came in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ComposeRequest {
    pub kind: ComposeKind,
    /// 14.0+ only: the device's id for this message, for de-duplicating retries.
    pub client_id: Option<String>,
    pub save_in_sent: bool,
    /// SmartReply / SmartForward: the device sent the whole message; do not add the original.
    pub replace_mime: bool,
    pub source: Option<Source>,
    pub account_id: Option<String>,
    /// The RFC 822 message as the device sent it (a zero-copy slice of the request body when
    /// it came as opaque data or as the 12.x body).
    pub mime: Bytes,
    /// True for the 14.0+ WBXML shape (answers carry a Status); false for 12.x.
    pub wbxml: bool,
}

/// Longest ClientId / id value kept (longer ones are refused as malformed).
const MAX_ID: usize = 256;

impl ComposeRequest {
    /// The 12.x shape: the message is the body, everything else is in the query.
    pub fn from_query(kind: ComposeKind, line: &RequestLine, mime: Bytes) -> ComposeRequest {
        let source = Source {
            folder_id: line.collection_id.clone().filter(|s| !s.is_empty()),
            item_id: line.item_id.clone().filter(|s| !s.is_empty()),
            long_id: line.long_id.clone().filter(|s| !s.is_empty()),
            instance_id: line.occurrence.clone().filter(|s| !s.is_empty()),
        };
        ComposeRequest {
            kind,
            client_id: None,
            save_in_sent: line.save_in_sent,
            // 12.x has no ReplaceMime: the server always adds the original.
            replace_mime: false,
            source: (!source.is_empty()).then_some(source),
            account_id: None,
            mime,
            wbxml: false,
        }
    }

    /// The 14.0+ shape: a ComposeMail document.
    pub fn parse(kind: ComposeKind, root: &Element) -> Result<ComposeRequest, ParseError> {
        let err = |reason: String| ParseError::new(kind.name(), reason);
        if root.tag != kind.root() {
            return Err(err(format!(
                "root element is {}, not {}",
                root.tag.name().unwrap_or("?"),
                kind.name()
            )));
        }
        let mut req = ComposeRequest {
            kind,
            client_id: None,
            save_in_sent: false,
            replace_mime: false,
            source: None,
            account_id: None,
            mime: Bytes::new(),
            wbxml: true,
        };
        let mut mime = None;
        for e in root.elements() {
            match e.tag {
                t if t == cm::CLIENT_ID => req.client_id = Some(short_text(e, "ClientId", kind)?),
                t if t == cm::ACCOUNT_ID => {
                    req.account_id = Some(short_text(e, "AccountId", kind)?)
                }
                // An empty SaveInSentItems element means "save" (MS-ASCMD 2.2.3.155).
                t if t == cm::SAVE_IN_SENT_ITEMS => req.save_in_sent = true,
                t if t == cm::REPLACE_MIME => req.replace_mime = true,
                t if t == cm::MIME => mime = Some(e.content_bytes()),
                t if t == cm::SOURCE => {
                    let mut s = Source::default();
                    for c in e.elements() {
                        let v = Some(short_text(c, "Source", kind)?);
                        match c.tag {
                            t if t == cm::FOLDER_ID => s.folder_id = v,
                            t if t == cm::ITEM_ID => s.item_id = v,
                            t if t == cm::LONG_ID => s.long_id = v,
                            t if t == cm::INSTANCE_ID => s.instance_id = v,
                            _ => {}
                        }
                    }
                    req.source = Some(s);
                }
                // Forwardees (16.0, forwarding a meeting) and unknown elements are ignored.
                _ => {}
            }
        }
        req.mime = mime.ok_or_else(|| err("no Mime element".into()))?;
        if kind == ComposeKind::SendMail {
            // A SendMail Source means nothing.
            req.source = None;
        } else if req.source.as_ref().is_none_or(Source::is_empty) {
            return Err(err("no Source".into()));
        }
        Ok(req)
    }
}

impl ComposeRequest {
    /// The status of a 14.0+ document [`ComposeRequest::parse`] refused: 103 when a required
    /// element (Mime; Source of SmartReply / SmartForward) is missing (Interop
    /// MSASCMD_S21_TC08), else 101.
    pub fn refusal_status(kind: ComposeKind, root: &Element) -> u32 {
        let missing_source = kind != ComposeKind::SendMail
            && root
                .first(cm::SOURCE)
                .is_none_or(|s| s.elements().next().is_none());
        if root.tag == kind.root() && (root.first(cm::MIME).is_none() || missing_source) {
            status::INVALID_XML
        } else {
            status::INVALID_CONTENT
        }
    }

    /// The status refusing a well-formed request, if any: an AccountId (14.1+), since the
    /// gateway offers no accounts besides the user's own (Settings lists none), is not valid
    /// (MS-ASCMD 2.2.3.3, Interop MSASCMD_S15_TC02).
    pub fn unacceptable(&self) -> Option<u32> {
        self.account_id
            .as_deref()
            .filter(|a| !a.trim().is_empty())
            .map(|_| status::ACCOUNT_ID_INVALID)
    }
}

fn short_text(e: &Element, what: &str, kind: ComposeKind) -> Result<String, ParseError> {
    let t = match e.text_concat() {
        Some(t) => t.into_owned(),
        None => match e.opaque() {
            Some(b) => String::from_utf8_lossy(b).into_owned(),
            None => String::new(),
        },
    };
    if t.len() > MAX_ID {
        return Err(ParseError::new(kind.name(), format!("{what} is too long")));
    }
    Ok(t)
}

/// The common statuses (MS-ASCMD 2.2.2) these commands answer.
pub mod status {
    pub const INVALID_CONTENT: u32 = 101;
    /// The XML does not follow the protocol (a required element is missing).
    pub const INVALID_XML: u32 = 103;
    pub const INVALID_MIME: u32 = 107;
    pub const SERVER_ERROR: u32 = 110;
    pub const SERVER_ERROR_RETRY_LATER: u32 = 111;
    pub const MAILBOX_QUOTA_EXCEEDED: u32 = 113;
    pub const SEND_QUOTA_EXCEEDED: u32 = 115;
    pub const MESSAGE_PREVIOUSLY_SENT: u32 = 118;
    pub const MESSAGE_HAS_NO_RECIPIENT: u32 = 119;
    pub const MAIL_SUBMISSION_FAILED: u32 = 120;
    pub const ATTACHMENT_IS_TOO_LARGE: u32 = 122;
    pub const ACCESS_DENIED: u32 = 130;
    pub const ITEM_NOT_FOUND: u32 = 150;
    /// The AccountId is not one of the user's accounts (MS-ASCMD 2.2.3.3).
    pub const ACCOUNT_ID_INVALID: u32 = 166;
}

/// A 14.0+ failure answer: `<SendMail><Status>n</Status></SendMail>` (or SmartReply /
/// SmartForward). Success has no body at all.
pub fn response(kind: ComposeKind, status: u32) -> Element {
    Element::new(kind.root()).text_child(cm::STATUS, status.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wbxml_shape_with_opaque_mime() {
        let root = Element::new(cm::SMART_REPLY)
            .text_child(cm::CLIENT_ID, "c1")
            .child(Element::new(cm::SAVE_IN_SENT_ITEMS))
            .child(
                Element::new(cm::SOURCE)
                    .text_child(cm::FOLDER_ID, "5")
                    .text_child(cm::ITEM_ID, "5:12"),
            )
            .opaque_child(cm::MIME, Bytes::from_static(b"Subject: x\r\n\r\nhi"));
        let r = ComposeRequest::parse(ComposeKind::SmartReply, &root).unwrap();
        assert_eq!(r.client_id.as_deref(), Some("c1"));
        assert!(r.save_in_sent && !r.replace_mime && r.wbxml);
        let s = r.source.unwrap();
        assert_eq!(
            (s.folder_id.as_deref(), s.item_id.as_deref()),
            (Some("5"), Some("5:12"))
        );
        assert_eq!(&r.mime[..], b"Subject: x\r\n\r\nhi");
    }

    #[test]
    fn text_mime_and_missing_parts() {
        let root = Element::new(cm::SEND_MAIL)
            .text_child(cm::CLIENT_ID, "c2")
            .text_child(cm::MIME, "To: a@b\r\n\r\nx");
        let r = ComposeRequest::parse(ComposeKind::SendMail, &root).unwrap();
        assert_eq!(&r.mime[..], b"To: a@b\r\n\r\nx");
        assert!(!r.save_in_sent && r.source.is_none());

        let no_mime = Element::new(cm::SEND_MAIL).text_child(cm::CLIENT_ID, "c");
        assert!(ComposeRequest::parse(ComposeKind::SendMail, &no_mime).is_err());
        let no_source = Element::new(cm::SMART_FORWARD).text_child(cm::MIME, "x");
        assert!(ComposeRequest::parse(ComposeKind::SmartForward, &no_source).is_err());
        let wrong_root = Element::new(cm::SMART_FORWARD).text_child(cm::MIME, "x");
        assert!(ComposeRequest::parse(ComposeKind::SendMail, &wrong_root).is_err());

        let st = ComposeRequest::refusal_status;
        assert_eq!(st(ComposeKind::SendMail, &no_mime), status::INVALID_XML);
        assert_eq!(
            st(ComposeKind::SmartForward, &no_source),
            status::INVALID_XML
        );
        assert_eq!(
            st(ComposeKind::SendMail, &wrong_root),
            status::INVALID_CONTENT
        );
    }

    #[test]
    fn query_shape() {
        let line = RequestLine {
            collection_id: Some("7".into()),
            item_id: Some("7:3".into()),
            save_in_sent: true,
            ..RequestLine::default()
        };
        let r = ComposeRequest::from_query(ComposeKind::SmartForward, &line, Bytes::from("x"));
        assert!(r.save_in_sent && !r.wbxml && r.client_id.is_none());
        assert_eq!(r.source.unwrap().item_id.as_deref(), Some("7:3"));
        let plain = RequestLine::default();
        let r = ComposeRequest::from_query(ComposeKind::SendMail, &plain, Bytes::from("x"));
        assert!(r.source.is_none() && !r.save_in_sent);
    }

    #[test]
    fn failure_response() {
        let e = response(ComposeKind::SmartForward, 150);
        assert_eq!(e.tag, cm::SMART_FORWARD);
        assert_eq!(e.text_of(cm::STATUS), Some("150"));
    }
}
