//! FolderCreate, FolderUpdate and FolderDelete (MS-ASCMD 2.2.1.3, 2.2.1.6, 2.2.1.4): the
//! device changes the folder hierarchy. Each request carries the hierarchy SyncKey of the last
//! FolderSync; each successful answer carries a new one.

use crate::wbxml::tags::folder_hierarchy as f;
use crate::wbxml::{Element, Tag};

use super::ParseError;

/// Status values shared by the three commands (MS-ASCMD 2.2.3.177.3, .4, .6). Not every value
/// is defined for every command: FolderCreate has no 4, FolderDelete has no 2 and 5.
pub mod status {
    pub const SUCCESS: u32 = 1;
    /// FolderCreate / FolderUpdate: a folder with that name already exists. FolderUpdate also
    /// answers 2 for a special folder (Inbox, Drafts, ...), which cannot be updated.
    pub const ALREADY_EXISTS: u32 = 2;
    /// FolderCreate: the parent is a special system folder. FolderDelete: the folder is a
    /// special folder and cannot be deleted.
    pub const SPECIAL_FOLDER: u32 = 3;
    /// FolderUpdate / FolderDelete: the folder does not exist.
    pub const NOT_FOUND: u32 = 4;
    /// FolderCreate / FolderUpdate: the parent folder does not exist.
    pub const PARENT_NOT_FOUND: u32 = 5;
    pub const SERVER_ERROR: u32 = 6;
    /// The hierarchy SyncKey is not the current one: FolderSync first.
    pub const INVALID_SYNC_KEY: u32 = 9;
    pub const BAD_REQUEST: u32 = 10;
    pub const UNKNOWN_ERROR: u32 = 11;
}

/// Which of the three commands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Create,
    Update,
    Delete,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Create => "FolderCreate",
            Kind::Update => "FolderUpdate",
            Kind::Delete => "FolderDelete",
        }
    }

    fn root(self) -> Tag {
        match self {
            Kind::Create => f::FOLDER_CREATE,
            Kind::Update => f::FOLDER_UPDATE,
            Kind::Delete => f::FOLDER_DELETE,
        }
    }
}

/// One decoded request. Fields a command does not use are empty.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FolderChangeRequest {
    pub kind: Kind,
    pub sync_key: String,
    /// Update, Delete: the folder.
    pub server_id: String,
    /// Create, Update: the (new) parent; `"0"` is the root.
    pub parent_id: String,
    /// Create, Update: the (new) name.
    pub display_name: String,
    /// Create: the folder type (MS-ASCMD 2.2.3.186.2).
    pub folder_type: u8,
}

impl FolderChangeRequest {
    pub fn from_element(kind: Kind, root: &Element) -> Result<FolderChangeRequest, ParseError> {
        let name = kind.name();
        if root.tag != kind.root() {
            return Err(ParseError::new(name, format!("root element is not {name}")));
        }
        let text = |tag: Tag, what: &str| -> Result<String, ParseError> {
            root.first(tag)
                .map(|e| e.text().unwrap_or("").trim().to_string())
                .ok_or_else(|| ParseError::new(name, format!("{what} missing")))
        };
        let sync_key = text(f::SYNC_KEY, "SyncKey")?;
        let mut req = FolderChangeRequest {
            kind,
            sync_key,
            server_id: String::new(),
            parent_id: String::new(),
            display_name: String::new(),
            folder_type: 0,
        };
        if matches!(kind, Kind::Update | Kind::Delete) {
            req.server_id = text(f::SERVER_ID, "ServerId")?;
            if req.server_id.is_empty() {
                return Err(ParseError::new(name, "empty ServerId"));
            }
        }
        if matches!(kind, Kind::Create | Kind::Update) {
            req.parent_id = text(f::PARENT_ID, "ParentId")?;
            // Names are taken as sent, apart from surrounding white space.
            req.display_name = text(f::DISPLAY_NAME, "DisplayName")?;
            if req.parent_id.is_empty() {
                return Err(ParseError::new(name, "empty ParentId"));
            }
            if req.display_name.is_empty() {
                return Err(ParseError::new(name, "empty DisplayName"));
            }
        }
        if kind == Kind::Create {
            req.folder_type = text(f::TYPE, "Type")?
                .parse()
                .map_err(|_| ParseError::new(name, "Type is not a number"))?;
        }
        Ok(req)
    }
}

/// The answer to one of the three commands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FolderChangeResponse {
    pub kind: Kind,
    pub status: u32,
    /// The new hierarchy key (success only).
    pub sync_key: Option<String>,
    /// FolderCreate: the new folder's ServerId (success only).
    pub server_id: Option<String>,
}

impl FolderChangeResponse {
    pub fn error(kind: Kind, status: u32) -> FolderChangeResponse {
        FolderChangeResponse {
            kind,
            status,
            sync_key: None,
            server_id: None,
        }
    }

    /// Status, SyncKey, ServerId (MS-ASCMD 2.2.1.3.2, 2.2.1.4.2, 2.2.1.6.2).
    pub fn to_element(&self) -> Element {
        let mut root =
            Element::new(self.kind.root()).text_child(f::STATUS, self.status.to_string());
        if let Some(k) = &self.sync_key {
            root.push(Element::with_text(f::SYNC_KEY, k.clone()));
        }
        if let (Kind::Create, Some(id)) = (self.kind, &self.server_id) {
            root.push(Element::with_text(f::SERVER_ID, id.clone()));
        }
        root
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_create_update_delete() {
        let create = Element::new(f::FOLDER_CREATE)
            .text_child(f::SYNC_KEY, "3")
            .text_child(f::PARENT_ID, "0")
            .text_child(f::DISPLAY_NAME, " Reports ")
            .text_child(f::TYPE, "12");
        let r = FolderChangeRequest::from_element(Kind::Create, &create).unwrap();
        assert_eq!(r.sync_key, "3");
        assert_eq!(r.display_name, "Reports");
        assert_eq!(r.folder_type, 12);

        let update = Element::new(f::FOLDER_UPDATE)
            .text_child(f::SYNC_KEY, "4")
            .text_child(f::SERVER_ID, "9")
            .text_child(f::PARENT_ID, "2")
            .text_child(f::DISPLAY_NAME, "New");
        let r = FolderChangeRequest::from_element(Kind::Update, &update).unwrap();
        assert_eq!((r.server_id.as_str(), r.parent_id.as_str()), ("9", "2"));

        let delete = Element::new(f::FOLDER_DELETE)
            .text_child(f::SYNC_KEY, "5")
            .text_child(f::SERVER_ID, "9");
        let r = FolderChangeRequest::from_element(Kind::Delete, &delete).unwrap();
        assert_eq!(r.server_id, "9");
    }

    #[test]
    fn rejects_missing_fields_and_wrong_roots() {
        let no_name = Element::new(f::FOLDER_CREATE)
            .text_child(f::SYNC_KEY, "3")
            .text_child(f::PARENT_ID, "0")
            .text_child(f::TYPE, "12");
        assert!(FolderChangeRequest::from_element(Kind::Create, &no_name).is_err());
        let empty_name = Element::new(f::FOLDER_CREATE)
            .text_child(f::SYNC_KEY, "3")
            .text_child(f::PARENT_ID, "0")
            .text_child(f::DISPLAY_NAME, "  ")
            .text_child(f::TYPE, "12");
        assert!(FolderChangeRequest::from_element(Kind::Create, &empty_name).is_err());
        let delete = Element::new(f::FOLDER_DELETE).text_child(f::SYNC_KEY, "5");
        assert!(FolderChangeRequest::from_element(Kind::Delete, &delete).is_err());
        assert!(FolderChangeRequest::from_element(Kind::Update, &delete).is_err());
    }

    #[test]
    fn responses_in_schema_order() {
        let ok = FolderChangeResponse {
            kind: Kind::Create,
            status: status::SUCCESS,
            sync_key: Some("4".into()),
            server_id: Some("17".into()),
        }
        .to_element();
        let tags: Vec<Tag> = ok.elements().map(|e| e.tag).collect();
        assert_eq!(tags, vec![f::STATUS, f::SYNC_KEY, f::SERVER_ID]);
        let err = FolderChangeResponse::error(Kind::Delete, status::SPECIAL_FOLDER).to_element();
        assert_eq!(err.tag, f::FOLDER_DELETE);
        assert_eq!(err.text_of(f::STATUS), Some("3"));
        assert!(err.first(f::SYNC_KEY).is_none());
    }
}
