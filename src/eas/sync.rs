//! Sync (MS-ASCMD 2.2.1.21): the typed request and response of the mail sync command.

use bytes::Bytes;

use crate::wbxml::tags::{airsync as a, airsyncbase as b, email2};
use crate::wbxml::Element;

use super::ParseError;

/// Sync status values (MS-ASCMD 2.2.3.177.17).
pub mod status {
    pub const SUCCESS: u32 = 1;
    pub const INVALID_SYNC_KEY: u32 = 3;
    pub const PROTOCOL_ERROR: u32 = 4;
    pub const SERVER_ERROR: u32 = 5;
    pub const CONVERSION_ERROR: u32 = 6;
    pub const CONFLICT: u32 = 7;
    pub const OBJECT_NOT_FOUND: u32 = 8;
    pub const FOLDER_HIERARCHY_CHANGED: u32 = 12;
    pub const INCOMPLETE_REQUEST: u32 = 13;
    pub const INVALID_WAIT: u32 = 14;
    pub const TOO_MANY_COLLECTIONS: u32 = 15;
    pub const RETRY: u32 = 16;
    /// Common status: the BodyPartPreference Type is not supported.
    pub const UNSUPPORTED_BODY_PART_TYPE: u32 = 164;
}

/// Largest WindowSize honoured (MS-ASCMD 2.2.3.199: 512).
pub const MAX_WINDOW_SIZE: u32 = 512;
/// WindowSize when the request names none.
pub const DEFAULT_WINDOW_SIZE: u32 = 100;

/// The WindowSize honoured for the one requested: 0 and values above 512 mean 512
/// (MS-ASCMD 2.2.3.199).
pub fn effective_window_size(requested: u32) -> u32 {
    if requested == 0 || requested > MAX_WINDOW_SIZE {
        MAX_WINDOW_SIZE
    } else {
        requested
    }
}

/// A whole Sync request.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SyncRequest {
    pub collections: Vec<CollectionRequest>,
    /// Minutes (12.1+).
    pub wait: Option<u32>,
    /// Seconds (14.0+).
    pub heartbeat_interval: Option<u32>,
    pub window_size: Option<u32>,
    pub partial: bool,
}

/// One collection of a Sync request.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CollectionRequest {
    pub sync_key: String,
    pub collection_id: String,
    /// Default true (MS-ASCMD 2.2.3.43).
    pub deletes_as_moves: bool,
    /// `None` when absent: true except for key 0.
    pub get_changes: Option<bool>,
    pub window_size: Option<u32>,
    /// The raw Options element, kept as sent so it can be cached.
    pub options: Option<Element>,
    pub commands: Vec<ClientCommand>,
}

/// A change the device made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientCommand {
    Change {
        server_id: String,
        data: Element,
        /// `email2:Send` (16.0+): send the draft after applying the change.
        send: bool,
    },
    Delete {
        server_id: String,
    },
    Fetch {
        server_id: String,
    },
    Add {
        client_id: String,
        data: Option<Element>,
        /// `email2:Send` (16.0+): send the new draft instead of keeping it.
        send: bool,
    },
}

/// The options of a collection, decoded from its Options element.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SyncOptions {
    /// 0 = all mail; 1..=7 limit by age (see [`filter_days`]).
    pub filter_type: u32,
    pub body_preferences: Vec<BodyPref>,
    pub mime_support: u8,
    /// Bytes, from the MIMETruncation code.
    pub mime_truncation: Option<u32>,
    /// 12.x plain truncation (`Truncation` is not in the tables; kept for completeness).
    pub conflict: Option<u32>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BodyPref {
    pub body_type: u8,
    pub truncation_size: Option<u32>,
    pub all_or_none: bool,
    pub preview: Option<u32>,
}

/// Days covered by an email FilterType (MS-ASCMD 2.2.3.70.2); `None` for 0 (everything).
pub fn filter_days(filter_type: u32) -> Option<u32> {
    match filter_type {
        1 => Some(1),
        2 => Some(3),
        3 => Some(7),
        4 => Some(14),
        5 => Some(31),
        6 => Some(92),
        7 => Some(183),
        _ => None,
    }
}

/// Bytes of a MIMETruncation code (MS-ASCMD 2.2.3.108).
fn mime_truncation_bytes(code: u32) -> Option<u32> {
    match code {
        0 => Some(0),
        1 => Some(4096),
        2 => Some(5120),
        3 => Some(7168),
        4 => Some(10240),
        5 => Some(20480),
        6 => Some(51200),
        7 => Some(102400),
        _ => None,
    }
}

fn number(e: &Element, what: &'static str) -> Result<u32, ParseError> {
    e.text()
        .unwrap_or("")
        .trim()
        .parse()
        .map_err(|_| ParseError::new("Sync", format!("{what} is not a number")))
}

/// A number whose range the command checks itself (Wait, HeartbeatInterval): a negative or
/// oversized one is out of range (Status 14 with the Limit), not a syntax error.
fn bounded_number(e: &Element, what: &'static str) -> Result<u32, ParseError> {
    e.text()
        .unwrap_or("")
        .trim()
        .parse::<i128>()
        .map(|n| n.clamp(0, i128::from(u32::MAX)) as u32)
        .map_err(|_| ParseError::new("Sync", format!("{what} is not a number")))
}

fn flag(e: &Element) -> bool {
    // An empty element means "set" (MS-ASCMD: DeletesAsMoves, GetChanges).
    !matches!(e.text().map(str::trim), Some("0"))
}

impl SyncRequest {
    pub fn from_element(root: &Element) -> Result<SyncRequest, ParseError> {
        if root.tag != a::SYNC {
            return Err(ParseError::new("Sync", "root element is not Sync"));
        }
        let mut req = SyncRequest::default();
        if let Some(w) = root.first(a::WAIT) {
            req.wait = Some(bounded_number(w, "Wait")?);
        }
        if let Some(h) = root.first(a::HEARTBEAT_INTERVAL) {
            req.heartbeat_interval = Some(bounded_number(h, "HeartbeatInterval")?);
        }
        if let Some(w) = root.first(a::WINDOW_SIZE) {
            req.window_size = Some(number(w, "WindowSize")?);
        }
        req.partial = root.first(a::PARTIAL).is_some();
        if let Some(cols) = root.first(a::COLLECTIONS) {
            for c in cols.all(a::COLLECTION) {
                req.collections.push(CollectionRequest::from_element(c)?);
            }
        }
        Ok(req)
    }
}

/// Why a Sync request as the device sent it is refused as a whole, if it is: the top-level
/// Status and the reason. A Collection without SyncKey (required, MS-ASCMD 2.2.3.181.4) or
/// with GetChanges 1 or empty and SyncKey 0 (MS-ASCMD 2.2.3.84) is a protocol error (4); a
/// BodyPartPreference whose Type is not 2, the only one defined (MS-ASAIRS 2.2.2.22.3), is
/// Status 164 (Interop MSASCMD_S21_TC05).
pub fn refusal(req: &SyncRequest) -> Option<(u32, &'static str)> {
    req.collections.iter().find_map(|c| {
        if c.sync_key.is_empty() {
            Some((status::PROTOCOL_ERROR, "Collection without SyncKey"))
        } else if c.sync_key == "0" && c.get_changes == Some(true) {
            Some((status::PROTOCOL_ERROR, "GetChanges with SyncKey 0"))
        } else if let Some(why) = c.options.as_ref().and_then(malformed_body_preferences) {
            Some((status::PROTOCOL_ERROR, why))
        } else if c.options.as_ref().is_some_and(|o| {
            o.all(b::BODY_PART_PREFERENCE)
                .any(|p| p.text_of(b::TYPE).map(str::trim) != Some("2"))
        }) {
            Some((
                status::UNSUPPORTED_BODY_PART_TYPE,
                "BodyPartPreference Type other than 2",
            ))
        } else {
            None
        }
    })
}

/// Why the BodyPreference elements of an Options element break MS-ASAIRS 3.2.5.1 (data type,
/// number of instances), if they do: one numeric Type, at most one numeric TruncationSize and
/// Preview, at most one boolean AllOrNone (Interop MSASAIRS_S04_TC01/TC02). Sync answers that
/// with Status 4, ItemOperations with Status 2.
pub fn malformed_body_preferences(options: &Element) -> Option<&'static str> {
    let numeric = |e: &Element| e.text().unwrap_or("").trim().parse::<u32>().is_ok();
    for bp in options.all(b::BODY_PREFERENCE) {
        let mut types = bp.all(b::TYPE);
        if !types.next().is_some_and(numeric) || types.next().is_some() {
            return Some("BodyPreference needs one numeric Type");
        }
        for tag in [b::TRUNCATION_SIZE, b::PREVIEW] {
            let mut all = bp.all(tag);
            if all.next().is_some_and(|e| !numeric(e)) || all.next().is_some() {
                return Some("BodyPreference with a bad TruncationSize or Preview");
            }
        }
        let mut all_or_none = bp.all(b::ALL_OR_NONE);
        let bad = all_or_none
            .next()
            .is_some_and(|e| !matches!(e.text().map(str::trim), None | Some("" | "0" | "1")));
        if bad || all_or_none.next().is_some() {
            return Some("BodyPreference with a bad AllOrNone");
        }
    }
    None
}

impl CollectionRequest {
    fn from_element(c: &Element) -> Result<CollectionRequest, ParseError> {
        let collection_id = c
            .text_of(a::COLLECTION_ID)
            .ok_or_else(|| ParseError::new("Sync", "Collection without CollectionId"))?
            .trim()
            .to_string();
        let sync_key = c
            .text_of(a::SYNC_KEY)
            .map(|k| k.trim().to_string())
            .unwrap_or_default();
        let mut col = CollectionRequest {
            sync_key,
            collection_id,
            deletes_as_moves: c.first(a::DELETES_AS_MOVES).map(flag).unwrap_or(true),
            get_changes: c.first(a::GET_CHANGES).map(flag),
            window_size: match c.first(a::WINDOW_SIZE) {
                Some(w) => Some(number(w, "WindowSize")?),
                None => None,
            },
            options: c.first(a::OPTIONS).cloned(),
            commands: Vec::new(),
        };
        if let Some(cmds) = c.first(a::COMMANDS) {
            for e in cmds.elements() {
                let server_id = || -> Result<String, ParseError> {
                    Ok(e.text_of(a::SERVER_ID)
                        .ok_or_else(|| ParseError::new("Sync", "command without ServerId"))?
                        .trim()
                        .to_string())
                };
                let cmd = match e.tag {
                    t if t == a::CHANGE => ClientCommand::Change {
                        server_id: server_id()?,
                        data: e
                            .first(a::APPLICATION_DATA)
                            .cloned()
                            .unwrap_or_else(|| Element::new(a::APPLICATION_DATA)),
                        send: e.first(email2::SEND).is_some(),
                    },
                    t if t == a::DELETE => ClientCommand::Delete {
                        server_id: server_id()?,
                    },
                    t if t == a::FETCH => ClientCommand::Fetch {
                        server_id: server_id()?,
                    },
                    t if t == a::ADD => ClientCommand::Add {
                        client_id: e.text_of(a::CLIENT_ID).unwrap_or("").trim().to_string(),
                        data: e.first(a::APPLICATION_DATA).cloned(),
                        send: e.first(email2::SEND).is_some(),
                    },
                    _ => return Err(ParseError::new("Sync", "unknown element in Commands")),
                };
                col.commands.push(cmd);
            }
        }
        Ok(col)
    }
}

impl SyncOptions {
    /// Decodes an Options element (the one for Email when several are given).
    pub fn from_element(options: &Element) -> Result<SyncOptions, ParseError> {
        let mut o = SyncOptions::default();
        if let Some(f) = options.first(a::FILTER_TYPE) {
            o.filter_type = number(f, "FilterType")?;
            if o.filter_type > 8 {
                return Err(ParseError::new("Sync", "FilterType out of range"));
            }
        }
        for bp in options.all(b::BODY_PREFERENCE) {
            let body_type = bp
                .text_of(b::TYPE)
                .and_then(|t| t.trim().parse::<u8>().ok())
                .ok_or_else(|| ParseError::new("Sync", "BodyPreference without a valid Type"))?;
            o.body_preferences.push(BodyPref {
                body_type,
                truncation_size: bp
                    .text_of(b::TRUNCATION_SIZE)
                    .and_then(|t| t.trim().parse().ok()),
                all_or_none: bp.first(b::ALL_OR_NONE).map(flag).unwrap_or(false),
                preview: bp.text_of(b::PREVIEW).and_then(|t| t.trim().parse().ok()),
            });
        }
        if let Some(m) = options.first(a::MIME_SUPPORT) {
            o.mime_support = number(m, "MIMESupport")?.min(2) as u8;
        }
        if let Some(m) = options.first(a::MIME_TRUNCATION) {
            o.mime_truncation = mime_truncation_bytes(number(m, "MIMETruncation")?);
        }
        if let Some(c) = options.first(a::CONFLICT) {
            o.conflict = Some(number(c, "Conflict")?);
        }
        Ok(o)
    }
}

/// The Email fields of a draft a device adds or changes in the Drafts folder (16.0+,
/// MS-ASEMAIL 3.1.5.3.x drafts; MS-ASAIRS 2.2.2.2 / 2.2.2.21 attachment Add / Delete). Absent
/// fields are `None` (a Change keeps them as they are).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DraftData {
    pub to: Option<String>,
    pub cc: Option<String>,
    pub bcc: Option<String>,
    pub subject: Option<String>,
    /// `email:Importance`: 0 low, 1 normal, 2 high.
    pub importance: Option<u8>,
    /// `airsyncbase:Body`: (Type, Data). Type 4 is a whole RFC 822 message.
    pub body: Option<(u8, Bytes)>,
    pub read: Option<bool>,
    pub flagged: Option<bool>,
    pub add_attachments: Vec<NewAttachment>,
    /// FileReferences of attachments to remove.
    pub delete_attachments: Vec<String>,
}

/// An attachment a device adds to a draft.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NewAttachment {
    pub client_id: String,
    pub display_name: String,
    pub content_type: Option<String>,
    pub content_id: Option<String>,
    pub is_inline: bool,
    pub content: Bytes,
}

impl DraftData {
    pub fn from_application_data(data: &Element) -> DraftData {
        use crate::wbxml::tags::email;
        let text = |t| data.text_of(t).map(|s: &str| s.to_string());
        let mut d = DraftData {
            to: text(email::TO),
            cc: text(email::CC),
            bcc: text(email2::BCC),
            subject: text(email::SUBJECT),
            importance: data
                .text_of(email::IMPORTANCE)
                .and_then(|s| s.trim().parse().ok()),
            ..Default::default()
        };
        if let Some(body) = data.first(b::BODY) {
            let body_type = body
                .text_of(b::TYPE)
                .and_then(|t| t.trim().parse().ok())
                .unwrap_or(1);
            let content = body
                .first(b::DATA)
                .map(Element::content_bytes)
                .unwrap_or_default();
            d.body = Some((body_type, content));
        }
        d.read = data.text_of(email::READ).map(|r| r.trim() == "1");
        d.flagged = data
            .first(email::FLAG)
            .map(|f| f.text_of(email::STATUS).map(str::trim) == Some("2"));
        if let Some(atts) = data.first(b::ATTACHMENTS) {
            for e in atts.elements() {
                if e.tag == b::ADD {
                    d.add_attachments.push(NewAttachment {
                        client_id: e.text_of(b::CLIENT_ID).unwrap_or("").trim().to_string(),
                        display_name: e.text_of(b::DISPLAY_NAME).unwrap_or("").to_string(),
                        content_type: e.text_of(b::CONTENT_TYPE).map(str::to_string),
                        content_id: e.text_of(b::CONTENT_ID).map(str::to_string),
                        is_inline: e.text_of(b::IS_INLINE).map(str::trim) == Some("1"),
                        content: e
                            .first(b::CONTENT)
                            .map(Element::content_bytes)
                            .unwrap_or_default(),
                    });
                } else if e.tag == b::DELETE {
                    if let Some(r) = e.text_of(b::FILE_REFERENCE) {
                        d.delete_attachments.push(r.trim().to_string());
                    }
                }
            }
        }
        d
    }

    /// Whether the draft's content changes (not only Read / Flag).
    pub fn has_content(&self) -> bool {
        self.to.is_some()
            || self.cc.is_some()
            || self.bcc.is_some()
            || self.subject.is_some()
            || self.importance.is_some()
            || self.body.is_some()
            || !self.add_attachments.is_empty()
            || !self.delete_attachments.is_empty()
    }
}

/// A server-side change for the device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServerCommand {
    Add { server_id: String, data: Element },
    Change { server_id: String, data: Element },
    Delete { server_id: String },
    SoftDelete { server_id: String },
}

/// The answer to one client command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientResponse {
    Change {
        server_id: String,
        status: u32,
        /// 16.0+: the attachments a draft Change added (ClientId -> FileReference).
        data: Option<Element>,
    },
    Delete {
        server_id: String,
        status: u32,
    },
    Fetch {
        server_id: String,
        status: u32,
        data: Option<Element>,
    },
    Add {
        client_id: String,
        server_id: Option<String>,
        status: u32,
        /// 16.0+: the attachments a draft Add brought (ClientId -> FileReference).
        data: Option<Element>,
    },
}

/// One collection of a Sync response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CollectionResponse {
    pub sync_key: Option<String>,
    pub collection_id: String,
    pub status: u32,
    pub more_available: bool,
    pub commands: Vec<ServerCommand>,
    pub responses: Vec<ClientResponse>,
}

impl CollectionResponse {
    pub fn error(collection_id: &str, status: u32) -> CollectionResponse {
        CollectionResponse {
            sync_key: None,
            collection_id: collection_id.to_string(),
            status,
            more_available: false,
            commands: Vec::new(),
            responses: Vec::new(),
        }
    }

    /// Children in schema order: SyncKey, CollectionId, Status, MoreAvailable, Commands,
    /// Responses (MS-ASCMD 2.2.3.29.2).
    pub fn into_element(self) -> Element {
        let mut c = Element::new(a::COLLECTION);
        // An invalid key is answered with key 0 (MS-ASCMD 3.2.5.1.1.1).
        let key = match (self.sync_key, self.status) {
            (Some(k), _) => Some(k),
            (None, status::INVALID_SYNC_KEY) => Some("0".to_string()),
            (None, _) => None,
        };
        if let Some(k) = key {
            c.push(Element::with_text(a::SYNC_KEY, k));
        }
        c.push(Element::with_text(a::COLLECTION_ID, self.collection_id));
        c.push(Element::with_text(a::STATUS, self.status.to_string()));
        if self.more_available {
            c.push(Element::new(a::MORE_AVAILABLE));
        }
        if !self.commands.is_empty() {
            let mut cmds = Element::new(a::COMMANDS);
            for cmd in self.commands {
                cmds.push(match cmd {
                    ServerCommand::Add { server_id, data } => Element::new(a::ADD)
                        .text_child(a::SERVER_ID, server_id)
                        .child(data),
                    ServerCommand::Change { server_id, data } => Element::new(a::CHANGE)
                        .text_child(a::SERVER_ID, server_id)
                        .child(data),
                    ServerCommand::Delete { server_id } => {
                        Element::new(a::DELETE).text_child(a::SERVER_ID, server_id)
                    }
                    ServerCommand::SoftDelete { server_id } => {
                        Element::new(a::SOFT_DELETE).text_child(a::SERVER_ID, server_id)
                    }
                });
            }
            c.push(cmds);
        }
        if !self.responses.is_empty() {
            let mut rs = Element::new(a::RESPONSES);
            for r in self.responses {
                rs.push(match r {
                    ClientResponse::Change {
                        server_id,
                        status,
                        data,
                    } => {
                        let mut e = Element::new(a::CHANGE)
                            .text_child(a::SERVER_ID, server_id)
                            .text_child(a::STATUS, status.to_string());
                        if let Some(d) = data {
                            e.push(d);
                        }
                        e
                    }
                    ClientResponse::Delete { server_id, status } => Element::new(a::DELETE)
                        .text_child(a::SERVER_ID, server_id)
                        .text_child(a::STATUS, status.to_string()),
                    ClientResponse::Fetch {
                        server_id,
                        status,
                        data,
                    } => {
                        let mut f = Element::new(a::FETCH)
                            .text_child(a::SERVER_ID, server_id)
                            .text_child(a::STATUS, status.to_string());
                        if let Some(d) = data {
                            f.push(d);
                        }
                        f
                    }
                    ClientResponse::Add {
                        client_id,
                        server_id,
                        status,
                        data,
                    } => {
                        let mut e = Element::new(a::ADD).text_child(a::CLIENT_ID, client_id);
                        if let Some(s) = server_id {
                            e.push(Element::with_text(a::SERVER_ID, s));
                        }
                        let mut e = e.text_child(a::STATUS, status.to_string());
                        if let Some(d) = data {
                            e.push(d);
                        }
                        e
                    }
                });
            }
            c.push(rs);
        }
        c
    }
}

/// A whole Sync response body.
pub fn response(collections: Vec<CollectionResponse>) -> Element {
    let mut cols = Element::new(a::COLLECTIONS);
    for c in collections {
        cols.push(c.into_element());
    }
    Element::new(a::SYNC).child(cols)
}

/// A Sync response that carries only a top-level status (with an optional Limit for 14).
pub fn status_response(status: u32, limit: Option<u32>) -> Element {
    let mut e = Element::new(a::SYNC).text_child(a::STATUS, status.to_string());
    if let Some(l) = limit {
        e.push(Element::with_text(a::LIMIT, l.to_string()));
    }
    e
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_collection_with_options_and_commands() {
        let req = Element::new(a::SYNC).child(
            Element::new(a::COLLECTIONS).child(
                Element::new(a::COLLECTION)
                    .text_child(a::SYNC_KEY, "3")
                    .text_child(a::COLLECTION_ID, "7")
                    .child(Element::with_text(a::DELETES_AS_MOVES, "0"))
                    .child(Element::new(a::GET_CHANGES))
                    .text_child(a::WINDOW_SIZE, "25")
                    .child(
                        Element::new(a::OPTIONS)
                            .text_child(a::FILTER_TYPE, "3")
                            .child(
                                Element::new(b::BODY_PREFERENCE)
                                    .text_child(b::TYPE, "2")
                                    .text_child(b::TRUNCATION_SIZE, "5000"),
                            )
                            .text_child(a::MIME_TRUNCATION, "1"),
                    )
                    .child(
                        Element::new(a::COMMANDS)
                            .child(Element::new(a::DELETE).text_child(a::SERVER_ID, "7:1"))
                            .child(Element::new(a::FETCH).text_child(a::SERVER_ID, "7:2")),
                    ),
            ),
        );
        let r = SyncRequest::from_element(&req).unwrap();
        let c = &r.collections[0];
        assert_eq!(c.sync_key, "3");
        assert!(!c.deletes_as_moves);
        assert_eq!(c.get_changes, Some(true));
        assert_eq!(c.window_size, Some(25));
        assert_eq!(c.commands.len(), 2);
        let o = SyncOptions::from_element(c.options.as_ref().unwrap()).unwrap();
        assert_eq!(o.filter_type, 3);
        assert_eq!(o.body_preferences[0].truncation_size, Some(5000));
        assert_eq!(o.mime_truncation, Some(4096));
    }

    #[test]
    fn body_preferences_are_validated() {
        let opts = |bp: Element| Element::new(a::OPTIONS).child(bp);
        let bp = || Element::new(b::BODY_PREFERENCE);
        assert_eq!(
            malformed_body_preferences(&opts(
                bp().text_child(b::TYPE, "2")
                    .text_child(b::TRUNCATION_SIZE, "5000")
                    .text_child(b::ALL_OR_NONE, "1")
            )),
            None
        );
        assert_eq!(
            malformed_body_preferences(&opts(
                bp().text_child(b::TYPE, "1")
                    .child(Element::new(b::ALL_OR_NONE))
            )),
            None
        );
        for bad in [
            bp(),
            bp().text_child(b::TYPE, "a"),
            bp().text_child(b::TYPE, "1").text_child(b::TYPE, "2"),
            bp().text_child(b::TYPE, "1")
                .text_child(b::ALL_OR_NONE, "a"),
            bp().text_child(b::TYPE, "1")
                .text_child(b::ALL_OR_NONE, "1")
                .text_child(b::ALL_OR_NONE, "1"),
            bp().text_child(b::TYPE, "1")
                .text_child(b::TRUNCATION_SIZE, "x"),
        ] {
            assert!(
                malformed_body_preferences(&opts(bad.clone())).is_some(),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn window_size_zero_and_above_512_mean_512() {
        assert_eq!(effective_window_size(0), 512);
        assert_eq!(effective_window_size(1), 1);
        assert_eq!(effective_window_size(512), 512);
        assert_eq!(effective_window_size(513), 512);
    }

    #[test]
    fn invalid_key_response_carries_key_zero() {
        let e = CollectionResponse::error("5", status::INVALID_SYNC_KEY).into_element();
        assert_eq!(e.text_of(a::SYNC_KEY), Some("0"));
        assert_eq!(e.text_of(a::STATUS), Some("3"));
    }
}
