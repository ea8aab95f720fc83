//! How the gateway names folders, mails and states to the device, parsed and formatted here
//! only (MS-ASCMD 2.2.3.31 CollectionId, 2.2.3.166 ServerId, 2.2.3.177 SyncKey).
//!
//! - A mail's ServerId is `<CollectionId>:<uid>`, the uid non-zero; a draft's `<uid>` is the
//!   UID of its first version (see [`crate::commands::draft_versions`]).
//! - A sync key is a decimal `u32`; `0` asks for a new state. Keys are compared as numbers
//!   after a strict parse (no sign, no leading zero), never as strings.

use std::fmt;

/// A folder's id in the device's hierarchy (the FolderSync ServerId of the folder).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CollectionId(String);

impl CollectionId {
    pub fn new(id: impl Into<String>) -> CollectionId {
        CollectionId(id.into())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for CollectionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A mail as the device names it: its collection and its (non-zero) UID there.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ServerId {
    pub collection: CollectionId,
    pub uid: u32,
}

impl ServerId {
    /// The ServerId text of mail `uid` in `collection`.
    pub fn format(collection: &str, uid: u32) -> String {
        format!("{collection}:{uid}")
    }

    /// Any ServerId: the collection is everything before the last `:`.
    pub fn parse(text: &str) -> Option<ServerId> {
        let (c, uid) = text.rsplit_once(':')?;
        let uid = uid.parse().ok().filter(|u| *u != 0)?;
        Some(ServerId {
            collection: CollectionId::new(c),
            uid,
        })
    }

    /// The UID `text` names in `collection`; `None` when it is no ServerId of that collection.
    pub fn uid_in(collection: &str, text: &str) -> Option<u32> {
        let (c, uid) = text.rsplit_once(':')?;
        if c != collection {
            return None;
        }
        uid.parse().ok().filter(|u| *u != 0)
    }
}

impl fmt::Display for ServerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.collection, self.uid)
    }
}

/// The ServerId text of mail `uid` in `collection_id` ([`ServerId::format`]).
pub fn server_id(collection_id: &str, uid: u32) -> String {
    ServerId::format(collection_id, uid)
}

/// The UID a ServerId names in `collection_id` ([`ServerId::uid_in`]).
pub fn parse_server_id(collection_id: &str, server_id: &str) -> Option<u32> {
    ServerId::uid_in(collection_id, server_id)
}

/// A sync key (of a collection or of the folder hierarchy).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SyncKey(u32);

impl SyncKey {
    /// Key 0: the device has no state and asks for one.
    pub const INITIAL: SyncKey = SyncKey(0);

    pub fn new(n: u32) -> SyncKey {
        SyncKey(n)
    }

    /// A key as the device sent it; `None` when it is no key the gateway could have given.
    pub fn parse(text: &str) -> Option<SyncKey> {
        let canonical = !text.is_empty()
            && text.bytes().all(|b| b.is_ascii_digit())
            && (text == "0" || !text.starts_with('0'));
        if !canonical {
            return None;
        }
        text.parse().ok().map(SyncKey)
    }

    pub fn is_initial(self) -> bool {
        self == SyncKey::INITIAL
    }

    pub fn value(self) -> u32 {
        self.0
    }
}

impl fmt::Display for SyncKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_ids_round_trip() {
        let text = ServerId::format("7", 42);
        assert_eq!(text, "7:42");
        assert_eq!(ServerId::uid_in("7", &text), Some(42));
        assert_eq!(ServerId::uid_in("8", &text), None);
        assert_eq!(ServerId::uid_in("7", "7:0"), None);
        let parsed = ServerId::parse("a:b:9").unwrap();
        assert_eq!(parsed.collection.as_str(), "a:b");
        assert_eq!(parsed.uid, 9);
        assert_eq!(parsed.to_string(), "a:b:9");
        assert_eq!(ServerId::parse("nocolon"), None);
    }

    #[test]
    fn sync_keys_parse_strictly() {
        assert_eq!(SyncKey::parse("0"), Some(SyncKey::INITIAL));
        assert_eq!(SyncKey::parse("12"), Some(SyncKey::new(12)));
        assert_eq!(SyncKey::parse("012"), None);
        assert_eq!(SyncKey::parse("+1"), None);
        assert_eq!(SyncKey::parse(""), None);
        assert_eq!(SyncKey::parse("x"), None);
        assert_eq!(SyncKey::new(5).to_string(), "5");
    }
}
