//! The user's folders as the commands see them: IMAP mailboxes with their EAS ServerIds.
//!
//! Listing the hierarchy costs a LIST and a STATUS per folder, so the last listing per user is
//! kept in memory; a collection id that is not in it (a folder made since, or another gateway
//! node assigned it) triggers one fresh listing before the answer is "no such folder".
//!
//! Folder resolution for every command (CollectionId -> mailbox) goes here; the ServerIds
//! themselves are assigned by the state store (MS-ASCMD 2.2.1.5 FolderSync).

use std::collections::HashMap;
use std::sync::Arc;

use dashmap::DashMap;

use crate::backend::{MailFolder, MailSession, SpecialUse};
use crate::eas::folder_sync::{diff, folder_type, Folder};
use crate::state::{FolderEntry, StateStore};

use super::CommandError;

/// The identity of the virtual Outbox folder (there is no IMAP mailbox behind it).
pub const OUTBOX_IDENTITY: &str = "virtual:outbox";

/// One folder with its ServerId; `mailbox` is `None` for the virtual Outbox.
#[derive(Debug, Clone)]
pub struct Resolved {
    pub server_id: String,
    pub mailbox: Option<MailFolder>,
}

/// Per-user listing cache.
#[derive(Default)]
pub struct FolderCache {
    users: DashMap<String, Arc<Vec<Resolved>>>,
}

impl FolderCache {
    pub fn cached(&self, user: &str) -> Option<Arc<Vec<Resolved>>> {
        self.users.get(user).map(|v| v.clone())
    }

    /// The folder with `server_id` in the cached listing, if the user has one.
    pub fn find(&self, user: &str, server_id: &str) -> Option<Resolved> {
        let list = self.users.get(user)?;
        list.iter().find(|r| r.server_id == server_id).cloned()
    }

    fn put(&self, user: &str, list: Arc<Vec<Resolved>>) {
        self.users.insert(user.to_string(), list);
    }
}

/// Lists the user's folders (without virtual \All / \Flagged views), assigns ServerIds, and
/// refreshes the cache. Parents come before children.
pub async fn list<M: MailSession, S: StateStore>(
    store: &S,
    cache: &FolderCache,
    session: &mut M,
    user: &str,
) -> Result<Arc<Vec<Resolved>>, CommandError> {
    let mut folders: Vec<MailFolder> = session
        .list_folders()
        .await?
        .into_iter()
        // Virtual "all mail" and "flagged" views would show every mail twice.
        .filter(|f| !matches!(f.special_use, Some(SpecialUse::All | SpecialUse::Flagged)))
        .collect();
    folders.sort_by(|a, b| depth(a).cmp(&depth(b)).then_with(|| a.name.cmp(&b.name)));
    let mut identities: Vec<String> = folders.iter().map(|f| f.identity.clone()).collect();
    identities.push(OUTBOX_IDENTITY.to_string());
    let ids = store.folder_server_ids(user, &identities).await?;
    let mut out: Vec<Resolved> = folders
        .into_iter()
        .zip(ids.iter())
        .map(|(f, id)| Resolved {
            server_id: id.clone(),
            mailbox: Some(f),
        })
        .collect();
    if let Some(outbox) = ids.last() {
        out.push(Resolved {
            server_id: outbox.clone(),
            mailbox: None,
        });
    }
    let out = Arc::new(out);
    cache.put(user, out.clone());
    Ok(out)
}

/// Finds a collection by ServerId, listing again once when it is not in the cache.
/// `Ok(None)` means the folder does not exist (Status 12 / FolderSync needed).
pub async fn resolve<M: MailSession, S: StateStore>(
    store: &S,
    cache: &FolderCache,
    session: &mut M,
    user: &str,
    server_id: &str,
) -> Result<Option<Resolved>, CommandError> {
    if let Some(r) = cache.find(user, server_id) {
        return Ok(Some(r));
    }
    let list = list(store, cache, session, user).await?;
    Ok(list.iter().find(|r| r.server_id == server_id).cloned())
}

/// Drops the cached listing (after a folder command changed the hierarchy, or a mailbox named
/// in the cache turned out to be gone).
pub fn forget(cache: &FolderCache, user: &str) {
    cache.users.remove(user);
}

/// The folder with a special use (Trash, Sent, Drafts ...), from a listing.
pub fn special(list: &[Resolved], usage: SpecialUse) -> Option<&Resolved> {
    list.iter().find(|r| {
        r.mailbox
            .as_ref()
            .is_some_and(|m| m.special_use == Some(usage))
    })
}

/// A folder as FolderSync reports it (type from SPECIAL-USE, parent from the hierarchy; the
/// virtual Outbox for the entry without a mailbox). `ids` comes from [`ids_by_name`].
pub fn folder(r: &Resolved, ids: &HashMap<&str, &str>) -> Folder {
    let Some(m) = &r.mailbox else {
        return Folder {
            server_id: r.server_id.clone(),
            parent_id: "0".into(),
            display_name: "Outbox".into(),
            folder_type: folder_type::OUTBOX,
        };
    };
    let parent_id = m
        .parent
        .as_deref()
        .and_then(|p| ids.get(p).copied())
        .unwrap_or("0")
        .to_string();
    let (display_name, folder_type) = match m.special_use {
        Some(SpecialUse::Inbox) => ("Inbox".to_string(), folder_type::INBOX),
        Some(SpecialUse::Drafts) => (m.display_name.clone(), folder_type::DRAFTS),
        Some(SpecialUse::Trash) => (m.display_name.clone(), folder_type::DELETED_ITEMS),
        Some(SpecialUse::Sent) => (m.display_name.clone(), folder_type::SENT_ITEMS),
        _ => (m.display_name.clone(), folder_type::USER_MAIL),
    };
    Folder {
        server_id: r.server_id.clone(),
        parent_id,
        display_name,
        folder_type,
    }
}

/// The same folder as the state store keeps it in a hierarchy snapshot.
pub fn entry(f: &Folder) -> FolderEntry {
    FolderEntry {
        server_id: f.server_id.clone(),
        parent_id: f.parent_id.clone(),
        display_name: f.display_name.clone(),
        folder_type: f.folder_type,
    }
}

/// ServerIds by IMAP mailbox name, for parent lookups.
pub fn ids_by_name(list: &[Resolved]) -> HashMap<&str, &str> {
    list.iter()
        .filter_map(|r| {
            r.mailbox
                .as_ref()
                .map(|m| (m.name.as_str(), r.server_id.as_str()))
        })
        .collect()
}

/// Whether the hierarchy in `listed` (a fresh listing) differs from what the device received
/// with its last FolderSync (or folder command). A device that never synced its hierarchy has
/// nothing to differ from.
pub async fn changed_since_last_sync<S: StateStore>(
    store: &S,
    user: &str,
    device_id: &str,
    listed: &[Resolved],
) -> Result<bool, CommandError> {
    let Some(state) = store.hierarchy(user, device_id).await? else {
        return Ok(false);
    };
    let held = to_folders(&state.folders);
    let by_name = ids_by_name(listed);
    let live: Vec<Folder> = listed.iter().map(|r| folder(r, &by_name)).collect();
    let (added, updated, deleted) = diff(&held, &live);
    Ok(!(added.is_empty() && updated.is_empty() && deleted.is_empty()))
}

pub fn to_folders(entries: &[FolderEntry]) -> Vec<Folder> {
    entries
        .iter()
        .map(|e| Folder {
            server_id: e.server_id.clone(),
            parent_id: e.parent_id.clone(),
            display_name: e.display_name.clone(),
            folder_type: e.folder_type,
        })
        .collect()
}

fn depth(f: &MailFolder) -> usize {
    match f.delimiter {
        Some(d) => f.name.matches(d).count(),
        None => 0,
    }
}
