//! FolderSync (MS-ASCMD 2.2.1.5): the folder hierarchy and its changes since a key.

use crate::wbxml::tags::folder_hierarchy as f;
use crate::wbxml::Element;

use super::ParseError;

/// Folder types (MS-ASCMD 2.2.3.186.3).
pub mod folder_type {
    pub const USER_GENERIC: u8 = 1;
    pub const INBOX: u8 = 2;
    pub const DRAFTS: u8 = 3;
    pub const DELETED_ITEMS: u8 = 4;
    pub const SENT_ITEMS: u8 = 5;
    pub const OUTBOX: u8 = 6;
    pub const USER_MAIL: u8 = 12;
}

/// FolderSync status values (MS-ASCMD 2.2.3.177.5).
pub mod status {
    pub const SUCCESS: u32 = 1;
    pub const SERVER_ERROR: u32 = 6;
    pub const INVALID_SYNC_KEY: u32 = 9;
    pub const BAD_REQUEST: u32 = 10;
    pub const UNKNOWN_ERROR: u32 = 11;
}

/// A FolderSync request: the client's hierarchy key ("0" = start over).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FolderSyncRequest {
    pub sync_key: String,
}

impl FolderSyncRequest {
    pub fn from_element(root: &Element) -> Result<FolderSyncRequest, ParseError> {
        if root.tag != f::FOLDER_SYNC {
            return Err(ParseError::new(
                "FolderSync",
                "root element is not FolderSync",
            ));
        }
        let key = root
            .text_of(f::SYNC_KEY)
            .ok_or_else(|| ParseError::new("FolderSync", "SyncKey missing"))?;
        Ok(FolderSyncRequest {
            sync_key: key.trim().to_string(),
        })
    }
}

/// One folder as the device sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Folder {
    pub server_id: String,
    pub parent_id: String,
    pub display_name: String,
    pub folder_type: u8,
}

/// A FolderSync response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FolderSyncResponse {
    pub status: u32,
    pub sync_key: Option<String>,
    pub added: Vec<Folder>,
    pub updated: Vec<Folder>,
    pub deleted: Vec<String>,
}

impl FolderSyncResponse {
    pub fn error(status: u32) -> FolderSyncResponse {
        FolderSyncResponse {
            status,
            sync_key: None,
            added: Vec::new(),
            updated: Vec::new(),
            deleted: Vec::new(),
        }
    }

    pub fn to_element(&self) -> Element {
        let mut root = Element::new(f::FOLDER_SYNC).text_child(f::STATUS, self.status.to_string());
        let Some(key) = &self.sync_key else {
            return root;
        };
        root.push(Element::with_text(f::SYNC_KEY, key.clone()));
        let count = self.added.len() + self.updated.len() + self.deleted.len();
        let mut changes = Element::new(f::CHANGES).text_child(f::COUNT, count.to_string());
        for d in &self.deleted {
            changes.push(Element::new(f::DELETE).text_child(f::SERVER_ID, d.clone()));
        }
        for (tag, list) in [(f::UPDATE, &self.updated), (f::ADD, &self.added)] {
            for folder in list {
                changes.push(
                    Element::new(tag)
                        .text_child(f::SERVER_ID, folder.server_id.clone())
                        .text_child(f::PARENT_ID, folder.parent_id.clone())
                        .text_child(f::DISPLAY_NAME, folder.display_name.clone())
                        .text_child(f::TYPE, folder.folder_type.to_string()),
                );
            }
        }
        root.push(changes);
        root
    }
}

/// The changes that turn `old` into `new`: (added, updated, deleted ids). Parents are added
/// before their children because `new` lists them in hierarchy order.
pub fn diff(old: &[Folder], new: &[Folder]) -> (Vec<Folder>, Vec<Folder>, Vec<String>) {
    let mut added = Vec::new();
    let mut updated = Vec::new();
    for n in new {
        match old.iter().find(|o| o.server_id == n.server_id) {
            None => added.push(n.clone()),
            Some(o) if o != n => updated.push(n.clone()),
            Some(_) => {}
        }
    }
    let deleted = old
        .iter()
        .filter(|o| !new.iter().any(|n| n.server_id == o.server_id))
        .map(|o| o.server_id.clone())
        .collect();
    (added, updated, deleted)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn folder(id: &str, name: &str) -> Folder {
        Folder {
            server_id: id.into(),
            parent_id: "0".into(),
            display_name: name.into(),
            folder_type: folder_type::USER_MAIL,
        }
    }

    #[test]
    fn diff_finds_add_update_delete() {
        let old = vec![folder("1", "A"), folder("2", "B")];
        let new = vec![folder("1", "A2"), folder("3", "C")];
        let (a, u, d) = diff(&old, &new);
        assert_eq!(a, vec![folder("3", "C")]);
        assert_eq!(u, vec![folder("1", "A2")]);
        assert_eq!(d, vec!["2".to_string()]);
    }

    #[test]
    fn error_response_has_only_status() {
        let e = FolderSyncResponse::error(status::INVALID_SYNC_KEY).to_element();
        assert_eq!(e.text_of(f::STATUS), Some("9"));
        assert!(e.first(f::SYNC_KEY).is_none());
    }
}
