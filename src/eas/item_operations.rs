//! ItemOperations (MS-ASCMD 2.2.1.10): Fetch (a mail, or an attachment by FileReference),
//! EmptyFolderContents and Move (of a conversation), in one request, answered in order.

use crate::wbxml::tags::{
    airsync as a, airsyncbase as b, document_library, item_operations as io, search as s,
};
use crate::wbxml::Element;

use super::ParseError;

/// ItemOperations status values (MS-ASCMD 2.2.3.177.8).
pub mod status {
    pub const SUCCESS: u32 = 1;
    pub const PROTOCOL_ERROR: u32 = 2;
    pub const SERVER_ERROR: u32 = 3;
    /// The object was not found or access was denied.
    pub const OBJECT_NOT_FOUND: u32 = 6;
    /// The byte range is invalid or too large.
    pub const INVALID_RANGE: u32 = 8;
    /// The store is unknown or unsupported.
    pub const UNKNOWN_STORE: u32 = 9;
    pub const FILE_EMPTY: u32 = 10;
    pub const TOO_LARGE: u32 = 11;
    pub const IO_FAILURE: u32 = 12;
    pub const CONVERSION_FAILED: u32 = 14;
    /// The attachment or attachment id is invalid.
    pub const INVALID_ATTACHMENT: u32 = 15;
    pub const ACCESS_DENIED: u32 = 16;
    pub const PARTIAL_SUCCESS: u32 = 17;
    /// Move without MoveAlways (MS-ASCMD 2.2.3.118).
    pub const MOVE_ALWAYS_MISSING: u32 = 155;
    /// Common status (14.0+): the server does not support the action (Move: the destination
    /// is not a mail folder).
    pub const ACTION_NOT_SUPPORTED: u32 = 156;
}

/// Most operations honoured in one request.
pub const MAX_OPERATIONS: usize = 100;

/// A Fetch operation.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FetchRequest {
    /// `Mailbox`, or a document library (not supported).
    pub store: String,
    pub collection_id: Option<String>,
    pub server_id: Option<String>,
    pub file_reference: Option<String>,
    pub long_id: Option<String>,
    /// A document library link (not supported).
    pub link_id: bool,
    /// The Options element as sent (BodyPreference, MIMESupport, Range ...).
    pub options: Option<Element>,
    /// The Range option, as sent.
    pub range: Option<String>,
}

/// One operation of the request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Operation {
    Fetch(FetchRequest),
    EmptyFolderContents {
        collection_id: String,
        delete_sub_folders: bool,
    },
    Move {
        /// The ConversationId element as sent (opaque), echoed in the answer.
        conversation_id: Option<Element>,
        dst_fld_id: Option<String>,
        /// `Options/MoveAlways` as sent (an empty element: the whole conversation, now and
        /// later).
        move_always: Option<Element>,
    },
}

fn trimmed(e: &Element, tag: crate::wbxml::Tag) -> Option<String> {
    e.text_of(tag)
        .map(|t| t.trim().to_string())
        .filter(|t| !t.is_empty())
}

/// Decodes an ItemOperations request into its operations, in order.
pub fn parse(root: &Element) -> Result<Vec<Operation>, ParseError> {
    let err = |why: &str| ParseError::new("ItemOperations", why);
    if root.tag != io::ITEM_OPERATIONS {
        return Err(err("root element is not ItemOperations"));
    }
    let mut out = Vec::new();
    for op in root.elements() {
        match op.tag {
            t if t == io::FETCH => {
                let options = op.first(io::OPTIONS).cloned();
                if let Some(why) = options
                    .as_ref()
                    .and_then(super::sync::malformed_body_preferences)
                {
                    return Err(err(why));
                }
                out.push(Operation::Fetch(FetchRequest {
                    store: trimmed(op, io::STORE).ok_or_else(|| err("Fetch without Store"))?,
                    collection_id: trimmed(op, a::COLLECTION_ID),
                    server_id: trimmed(op, a::SERVER_ID),
                    // An empty FileReference is kept: it is an invalid reference (Status
                    // 15), not a Fetch of a mail.
                    file_reference: op
                        .first(b::FILE_REFERENCE)
                        .map(|r| r.text().unwrap_or("").trim().to_string()),
                    long_id: trimmed(op, s::LONG_ID),
                    link_id: op.first(document_library::LINK_ID).is_some(),
                    range: options.as_ref().and_then(|o| trimmed(o, io::RANGE)),
                    options,
                }));
            }
            t if t == io::EMPTY_FOLDER_CONTENTS => {
                out.push(Operation::EmptyFolderContents {
                    collection_id: trimmed(op, a::COLLECTION_ID)
                        .ok_or_else(|| err("EmptyFolderContents without CollectionId"))?,
                    delete_sub_folders: op
                        .first(io::OPTIONS)
                        .is_some_and(|o| o.first(io::DELETE_SUB_FOLDERS).is_some()),
                });
            }
            t if t == io::MOVE => out.push(Operation::Move {
                conversation_id: op.first(io::CONVERSATION_ID).cloned(),
                dst_fld_id: trimmed(op, io::DST_FLD_ID),
                move_always: op
                    .first(io::OPTIONS)
                    .and_then(|o| o.first(io::MOVE_ALWAYS))
                    .cloned(),
            }),
            _ => return Err(err("unknown operation")),
        }
    }
    if out.is_empty() {
        return Err(err("no operation"));
    }
    if out.len() > MAX_OPERATIONS {
        return Err(err("too many operations"));
    }
    Ok(out)
}

/// The answer to one operation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OperationResponse {
    Fetch(FetchResponse),
    EmptyFolderContents {
        status: u32,
        collection_id: String,
    },
    Move {
        status: u32,
        conversation_id: Option<Element>,
    },
}

/// The answer to a Fetch: the request's identifiers echoed, and the item's properties.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FetchResponse {
    pub status: u32,
    pub long_id: Option<String>,
    pub collection_id: Option<String>,
    pub server_id: Option<String>,
    /// `Email` for mail items.
    pub class: Option<&'static str>,
    pub file_reference: Option<String>,
    pub properties: Option<Element>,
}

impl FetchResponse {
    /// A failed Fetch that echoes the request's identifiers.
    pub fn failed(req: &FetchRequest, status: u32) -> FetchResponse {
        FetchResponse {
            status,
            long_id: req.long_id.clone(),
            collection_id: req.collection_id.clone(),
            server_id: req.server_id.clone(),
            class: None,
            file_reference: req.file_reference.clone(),
            properties: None,
        }
    }

    pub fn to_element(&self) -> Element {
        // Status first, then the identifiers, as Exchange answers (MS-ASCMD 4.8).
        let mut f = Element::new(io::FETCH).text_child(io::STATUS, self.status.to_string());
        if let Some(v) = &self.long_id {
            f.push(Element::with_text(s::LONG_ID, v.clone()));
        }
        if let Some(v) = &self.collection_id {
            f.push(Element::with_text(a::COLLECTION_ID, v.clone()));
        }
        if let Some(v) = &self.server_id {
            f.push(Element::with_text(a::SERVER_ID, v.clone()));
        }
        if let Some(v) = self.class {
            f.push(Element::with_text(a::CLASS, v));
        }
        if let Some(v) = &self.file_reference {
            f.push(Element::with_text(b::FILE_REFERENCE, v.clone()));
        }
        if let Some(p) = &self.properties {
            f.push(p.clone());
        }
        f
    }
}

/// A mail's properties: the children of its ApplicationData inside `Properties`.
pub fn mail_properties(application_data: Element) -> Element {
    let mut p = Element::new(io::PROPERTIES);
    p.children = application_data.children;
    p
}

/// An attachment's properties: ContentType, Range and Total (when the data is not empty),
/// and the bytes as base64 text in `Data` (the gateway streams `Data`; this builds the
/// whole element for the model's tests).
#[cfg(test)]
fn attachment_properties(
    content_type: &str,
    range: Option<(u64, u64)>,
    total: u64,
    data: &[u8],
) -> Element {
    use base64::Engine;
    let mut p = attachment_properties_head(content_type, range, total);
    p.push(Element::with_text(
        io::DATA,
        base64::engine::general_purpose::STANDARD.encode(data),
    ));
    p
}

/// An attachment's properties without its data (ContentType, Range, Total): the data follows
/// as `Data` (streamed) or `Part` (multipart).
pub fn attachment_properties_head(
    content_type: &str,
    range: Option<(u64, u64)>,
    total: u64,
) -> Element {
    let mut p = Element::new(io::PROPERTIES).text_child(b::CONTENT_TYPE, content_type);
    if let Some((first, last)) = range {
        p.push(Element::with_text(io::RANGE, format!("{first}-{last}")));
    }
    p.push(Element::with_text(io::TOTAL, total.to_string()));
    p
}

/// The element of one operation's answer.
pub fn operation_element(r: &OperationResponse) -> Element {
    match r {
        OperationResponse::Fetch(f) => f.to_element(),
        OperationResponse::EmptyFolderContents {
            status,
            collection_id,
        } => Element::new(io::EMPTY_FOLDER_CONTENTS)
            .text_child(io::STATUS, status.to_string())
            .text_child(a::COLLECTION_ID, collection_id.clone()),
        OperationResponse::Move {
            status,
            conversation_id,
        } => {
            let mut m = Element::new(io::MOVE).text_child(io::STATUS, status.to_string());
            if let Some(c) = conversation_id {
                m.push(c.clone());
            }
            m
        }
    }
}

/// Multipart responses (MS-ASCMD 2.2.1.10.1.1): the WBXML is part 0, fetched data the parts
/// after it, named by `Part` elements in place of `Data`.
pub mod multipart {
    /// The Content-Type of a multipart response.
    pub const CONTENT_TYPE: &str = "application/vnd.ms-sync.multipart";

    /// The MultiPartResponse head for parts of these lengths: PartsCount, then each part's
    /// Offset (from the start of the structure) and Length, as 32-bit little-endian integers.
    /// `None` when a part or the whole does not fit in those integers.
    pub fn head(lengths: &[u64]) -> Option<Vec<u8>> {
        let count = u32::try_from(lengths.len()).ok()?;
        let mut out = Vec::with_capacity(4 + 8 * lengths.len());
        out.extend_from_slice(&count.to_le_bytes());
        let mut offset = 4 + 8 * lengths.len() as u64;
        for &len in lengths {
            out.extend_from_slice(&i32::try_from(offset).ok()?.to_le_bytes());
            out.extend_from_slice(&i32::try_from(len).ok()?.to_le_bytes());
            offset += len;
        }
        i32::try_from(offset).ok()?;
        Some(out)
    }

    /// Splits a MultiPartResponse into its parts (what a client does).
    pub fn split(body: &[u8]) -> Option<Vec<&[u8]>> {
        let int = |at: usize| -> Option<usize> {
            let b: [u8; 4] = body.get(at..at + 4)?.try_into().ok()?;
            usize::try_from(i32::from_le_bytes(b)).ok()
        };
        let count = int(0)?;
        let mut parts = Vec::with_capacity(count.min(1024));
        for i in 0..count {
            let offset = int(4 + 8 * i)?;
            let len = int(8 + 8 * i)?;
            parts.push(body.get(offset..offset.checked_add(len)?)?);
        }
        Some(parts)
    }
}

/// A whole ItemOperations response.
pub fn response(results: &[OperationResponse]) -> Element {
    let mut resp = Element::new(io::RESPONSE);
    for r in results {
        resp.push(operation_element(r));
    }
    Element::new(io::ITEM_OPERATIONS)
        .text_child(io::STATUS, status::SUCCESS.to_string())
        .child(resp)
}

/// A response with only a top-level status (a malformed request).
pub fn status_response(status: u32) -> Element {
    Element::new(io::ITEM_OPERATIONS).text_child(io::STATUS, status.to_string())
}

/// A `m-n` byte range (zero-based, inclusive, m <= n).
pub fn parse_range(s: &str) -> Option<(u64, u64)> {
    let (m, n) = s.trim().split_once('-')?;
    let (m, n): (u64, u64) = (m.trim().parse().ok()?, n.trim().parse().ok()?);
    (m <= n).then_some((m, n))
}

/// The part of `total` bytes a requested range covers: (first, last) inclusive, cut to the
/// data. `None` when the range starts beyond the data.
pub fn clamp_range(requested: (u64, u64), total: u64) -> Option<(u64, u64)> {
    let (m, n) = requested;
    if total == 0 || m >= total {
        return None;
    }
    Some((m, n.min(total - 1)))
}

/// A FileReference `<collectionId>:<uid>:<index>`, percent-decoded first (devices send it
/// URL-encoded, as `5%3a14%3a0`).
pub fn parse_file_reference(s: &str) -> Option<(String, u32, usize)> {
    let decoded = percent_decode(s.trim())?;
    let mut parts = decoded.rsplitn(3, ':');
    let index = parts.next()?.parse().ok()?;
    let uid: u32 = parts.next()?.parse().ok().filter(|u| *u != 0)?;
    let cid = parts.next()?.to_string();
    if cid.is_empty() {
        return None;
    }
    Some((cid, uid, index))
}

fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        match b {
            b'%' => {
                let hex = s.get(i + 1..i + 3)?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_fetches_empty_and_move() {
        let req = Element::new(io::ITEM_OPERATIONS)
            .child(
                Element::new(io::FETCH)
                    .text_child(io::STORE, "Mailbox")
                    .text_child(a::COLLECTION_ID, "5")
                    .text_child(a::SERVER_ID, "5:15")
                    .child(
                        Element::new(io::OPTIONS)
                            .text_child(a::MIME_SUPPORT, "2")
                            .child(Element::new(b::BODY_PREFERENCE).text_child(b::TYPE, "4")),
                    ),
            )
            .child(
                Element::new(io::FETCH)
                    .text_child(io::STORE, "Mailbox")
                    .text_child(b::FILE_REFERENCE, "5%3a14%3a0")
                    .child(Element::new(io::OPTIONS).text_child(io::RANGE, "0-9")),
            )
            .child(
                Element::new(io::EMPTY_FOLDER_CONTENTS)
                    .text_child(a::COLLECTION_ID, "7")
                    .child(Element::new(io::OPTIONS).child(Element::new(io::DELETE_SUB_FOLDERS))),
            )
            .child(Element::new(io::MOVE).text_child(io::DST_FLD_ID, "8"));
        let ops = parse(&req).unwrap();
        assert_eq!(ops.len(), 4);
        let Operation::Fetch(f) = &ops[0] else {
            panic!()
        };
        assert_eq!(f.server_id.as_deref(), Some("5:15"));
        assert!(f.options.is_some());
        let Operation::Fetch(f) = &ops[1] else {
            panic!()
        };
        assert_eq!(f.range.as_deref(), Some("0-9"));
        assert_eq!(
            ops[2],
            Operation::EmptyFolderContents {
                collection_id: "7".into(),
                delete_sub_folders: true
            }
        );
        assert!(matches!(&ops[3], Operation::Move { dst_fld_id: Some(d), .. } if d == "8"));
    }

    #[test]
    fn rejects_malformed() {
        assert!(parse(&Element::new(io::ITEM_OPERATIONS)).is_err());
        let no_store = Element::new(io::ITEM_OPERATIONS)
            .child(Element::new(io::FETCH).text_child(a::SERVER_ID, "5:1"));
        assert!(parse(&no_store).is_err());
        let unknown = Element::new(io::ITEM_OPERATIONS).child(Element::new(io::DATA));
        assert!(parse(&unknown).is_err());
    }

    #[test]
    fn file_references_and_ranges() {
        assert_eq!(
            parse_file_reference("5%3a14%3a0"),
            Some(("5".into(), 14, 0))
        );
        assert_eq!(parse_file_reference("5:14:2"), Some(("5".into(), 14, 2)));
        assert_eq!(parse_file_reference("5:0:2"), None);
        assert_eq!(parse_file_reference("14:2"), None);
        assert_eq!(parse_file_reference("5:x:2"), None);
        assert_eq!(parse_file_reference("5%3"), None);
        assert_eq!(parse_range("0-999"), Some((0, 999)));
        assert_eq!(parse_range("10-9"), None);
        assert_eq!(parse_range("a-9"), None);
        assert_eq!(clamp_range((0, 999), 314), Some((0, 313)));
        assert_eq!(clamp_range((100, 199), 314), Some((100, 199)));
        assert_eq!(clamp_range((314, 400), 314), None);
        assert_eq!(clamp_range((0, 0), 0), None);
    }

    #[test]
    fn multipart_head_layout() {
        let head = multipart::head(&[10, 3]).unwrap();
        // count 2; part 0 at 20 (4 + 2 * 8), 10 bytes; part 1 at 30, 3 bytes.
        assert_eq!(
            head,
            [2, 0, 0, 0, 20, 0, 0, 0, 10, 0, 0, 0, 30, 0, 0, 0, 3, 0, 0, 0]
        );
        let mut body = head.clone();
        body.extend_from_slice(b"0123456789abc");
        let parts = multipart::split(&body).unwrap();
        assert_eq!(parts, vec![&b"0123456789"[..], &b"abc"[..]]);
        assert!(multipart::head(&[u64::from(u32::MAX)]).is_none());
    }

    #[test]
    fn response_shapes() {
        let e = response(&[
            OperationResponse::Fetch(FetchResponse {
                status: status::SUCCESS,
                file_reference: Some("5%3a14%3a0".into()),
                properties: Some(attachment_properties("text/plain", Some((0, 2)), 3, b"abc")),
                ..Default::default()
            }),
            OperationResponse::EmptyFolderContents {
                status: status::SUCCESS,
                collection_id: "7".into(),
            },
        ]);
        assert_eq!(e.text_of(io::STATUS), Some("1"));
        let r = e.first(io::RESPONSE).unwrap();
        let f = r.first(io::FETCH).unwrap();
        let tags: Vec<_> = f.elements().map(|c| c.tag).collect();
        assert_eq!(tags, vec![io::STATUS, b::FILE_REFERENCE, io::PROPERTIES]);
        let p = f.first(io::PROPERTIES).unwrap();
        assert_eq!(p.text_of(io::DATA), Some("YWJj"));
        assert_eq!(p.text_of(io::RANGE), Some("0-2"));
        assert_eq!(p.text_of(io::TOTAL), Some("3"));
        let ef = r.first(io::EMPTY_FOLDER_CONTENTS).unwrap();
        assert_eq!(ef.text_of(a::COLLECTION_ID), Some("7"));
    }
}
