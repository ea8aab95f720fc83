//! FolderCreate, FolderUpdate and FolderDelete (MS-ASCMD 2.2.1.3, 2.2.1.6, 2.2.1.4): the device
//! creates, renames or moves, and deletes IMAP mailboxes.
//!
//! The request's hierarchy SyncKey must be the device's current one (else Status 9: FolderSync
//! first). On success the hierarchy snapshot the device holds is committed again under a new
//! key with exactly the device's own change applied, so the next FolderSync neither reports
//! that change back nor loses changes made elsewhere since the device's last FolderSync.
//!
//! Names: the new mailbox is the parent's IMAP name, the hierarchy delimiter and the
//! DisplayName in modified UTF-7. Special folders (Inbox, Drafts, Sent, Trash, Junk, Archive and
//! the virtual Outbox) cannot be renamed or deleted. Deleting a folder deletes its subfolders
//! and their mail; nothing goes to Trash.

use crate::backend::{utf7, BackendError, MailBackend, MailFolder, MailSession};
use crate::eas::folder_changes::{status, FolderChangeRequest, FolderChangeResponse, Kind};
use crate::eas::folder_sync::folder_type;
use crate::eas::Command;
use crate::state::{FolderEntry, StateStore};
use crate::wbxml::Element;

use super::ids::SyncKey;
use super::{folders, CommandError, Context, Gateway, Outcome};

/// FolderCreate, FolderUpdate or FolderDelete, by the request line's command.
pub async fn handle<B: MailBackend, S: StateStore>(
    gw: &Gateway<B, S>,
    ctx: &Context,
    body: &Element,
) -> Result<Outcome, CommandError> {
    let kind = match ctx.line.command {
        Some(Command::FolderCreate) => Kind::Create,
        Some(Command::FolderUpdate) => Kind::Update,
        Some(Command::FolderDelete) => Kind::Delete,
        _ => return Err(CommandError::Internal("not a folder command".into())),
    };
    let req = match FolderChangeRequest::from_element(kind, body) {
        Ok(r) => r,
        Err(e) => {
            tracing::debug!(error = %e, "malformed folder request");
            return Ok(reply(FolderChangeResponse::error(
                kind,
                status::BAD_REQUEST,
            )));
        }
    };
    let user = ctx.user.address.as_str();
    let device_id = ctx.device_id();
    // One folder change at a time per device: each commits a snapshot derived from the last.
    let _guard = gw.locks.lock_hierarchy(user, device_id).await;
    let _lease = crate::cluster::Lease::take(
        &gw.store,
        &gw.config.cluster,
        user,
        device_id,
        &["#hierarchy"],
    )
    .await?;

    let state = gw.store.hierarchy(user, device_id).await?;
    let Some(state) = state.filter(|s| SyncKey::parse(&req.sync_key) == Some(SyncKey::new(s.key)))
    else {
        tracing::debug!(sync_key = %req.sync_key, "folder change with a stale hierarchy key");
        return Ok(reply(FolderChangeResponse::error(
            kind,
            status::INVALID_SYNC_KEY,
        )));
    };

    let mut session = gw
        .backend
        .login(&ctx.user.credentials, ctx.client_ip)
        .await?;
    let result = apply(gw, &mut session, user, &req).await;
    session.logout().await;
    let change = match result? {
        Ok(c) => c,
        Err(code) => return Ok(reply(FolderChangeResponse::error(kind, code))),
    };

    // The device's snapshot with its own change applied.
    let mut entries = state.folders.clone();
    let mut created = None;
    match change {
        Change::Upsert(entry) => {
            created = Some(entry.server_id.clone());
            match entries.iter_mut().find(|e| e.server_id == entry.server_id) {
                Some(e) => *e = entry,
                None => entries.push(entry),
            }
        }
        Change::Removed(ids) => {
            let gone = with_descendants(&entries, &ids);
            entries.retain(|e| !gone.contains(&e.server_id));
            for id in &gone {
                gw.store.reset_collection(user, device_id, id).await?;
            }
        }
    }
    let key = state.key.wrapping_add(1).max(1);
    gw.store
        .commit_hierarchy(user, device_id, key, &entries)
        .await?;
    Ok(reply(FolderChangeResponse {
        kind,
        status: status::SUCCESS,
        sync_key: Some(key.to_string()),
        server_id: if kind == Kind::Create { created } else { None },
    }))
}

fn reply(resp: FolderChangeResponse) -> Outcome {
    Outcome::Wbxml {
        status: Some(resp.status),
        body: resp.to_element(),
    }
}

/// What the change did to the hierarchy the device sees.
enum Change {
    /// A folder was created or renamed/moved: its entry as FolderSync would report it.
    Upsert(FolderEntry),
    /// Folders were deleted (with their subfolders).
    Removed(Vec<String>),
}

/// Applies the change on IMAP. `Ok(Err(status))` is a refusal for the device.
async fn apply<B: MailBackend, S: StateStore>(
    gw: &Gateway<B, S>,
    session: &mut B::Session,
    user: &str,
    req: &FolderChangeRequest,
) -> Result<Result<Change, u32>, CommandError> {
    let list = folders::list(&gw.store, &gw.folders, session, user).await?;
    match req.kind {
        Kind::Create => create(gw, session, user, req, &list).await,
        Kind::Update => update(gw, session, user, req, &list).await,
        Kind::Delete => delete(gw, session, user, req, &list).await,
    }
}

async fn create<B: MailBackend, S: StateStore>(
    gw: &Gateway<B, S>,
    session: &mut B::Session,
    user: &str,
    req: &FolderChangeRequest,
    list: &[folders::Resolved],
) -> Result<Result<Change, u32>, CommandError> {
    // Only mail folders exist on IMAP.
    if !matches!(
        req.folder_type,
        folder_type::USER_GENERIC | folder_type::USER_MAIL
    ) {
        return Ok(Err(status::BAD_REQUEST));
    }
    let parent = match parent_mailbox(list, &req.parent_id) {
        Ok(p) => p,
        Err(ParentError::NotFound) => return Ok(Err(status::PARENT_NOT_FOUND)),
        Err(ParentError::NoMailbox) => return Ok(Err(status::SPECIAL_FOLDER)),
    };
    let Some(name) = imap_name(list, parent, &req.display_name) else {
        return Ok(Err(status::BAD_REQUEST));
    };
    if taken(list, &name, None) {
        return Ok(Err(status::ALREADY_EXISTS));
    }
    match session.create_folder(&name).await {
        Ok(()) => {}
        Err(e) => return refusal(e, status::ALREADY_EXISTS, status::PARENT_NOT_FOUND),
    }
    crate::cluster::folders_changed(gw, user).await;
    let list = folders::list(&gw.store, &gw.folders, session, user).await?;
    Ok(match entry_by_name(&list, &name) {
        Some(entry) => Ok(Change::Upsert(entry)),
        None => Err(status::SERVER_ERROR),
    })
}

async fn update<B: MailBackend, S: StateStore>(
    gw: &Gateway<B, S>,
    session: &mut B::Session,
    user: &str,
    req: &FolderChangeRequest,
    list: &[folders::Resolved],
) -> Result<Result<Change, u32>, CommandError> {
    let Some(target) = list.iter().find(|r| r.server_id == req.server_id) else {
        return Ok(Err(status::NOT_FOUND));
    };
    // Special folders cannot be updated: FolderUpdate answers 2 for them.
    let Some(folder) = target.mailbox.as_ref().filter(|m| m.special_use.is_none()) else {
        return Ok(Err(status::ALREADY_EXISTS));
    };
    let parent = match parent_mailbox(list, &req.parent_id) {
        Ok(p) => p,
        Err(_) => return Ok(Err(status::PARENT_NOT_FOUND)),
    };
    // Not into itself or one of its own subfolders.
    if let Some(p) = parent {
        if p.name == folder.name || is_below(&p.name, folder) {
            return Ok(Err(status::BAD_REQUEST));
        }
    }
    let Some(name) = imap_name(list, parent, &req.display_name) else {
        return Ok(Err(status::BAD_REQUEST));
    };
    if name != folder.name {
        if taken(list, &name, Some(&folder.name)) {
            return Ok(Err(status::ALREADY_EXISTS));
        }
        // Identities of the folder and its subfolders before the rename, by IMAP name.
        let before: Vec<(String, String)> = list
            .iter()
            .filter_map(|r| r.mailbox.as_ref())
            .filter(|m| m.name == folder.name || is_below(&m.name, folder))
            .map(|m| (m.name.clone(), m.identity.clone()))
            .collect();
        if let Err(e) = session.rename_folder(&folder.name, &name).await {
            return refusal(e, status::ALREADY_EXISTS, status::NOT_FOUND);
        }
        crate::cluster::folders_changed(gw, user).await;
        // Servers without a rename-proof mailbox id give renamed folders a new identity: move
        // the ServerIds over before listing hands out new ones.
        let after = session.list_folders().await?;
        for (old_name, old_identity) in &before {
            let new_name = format!("{name}{}", &old_name[folder.name.len()..]);
            if let Some(m) = after.iter().find(|m| m.name == new_name) {
                if m.identity != *old_identity {
                    let rebound = gw
                        .store
                        .rebind_folder_identity(user, old_identity, &m.identity)
                        .await;
                    if let Err(e) = rebound {
                        tracing::warn!(error = %e, "cannot keep the ServerId of a renamed folder");
                    }
                }
            }
        }
    }
    let list = folders::list(&gw.store, &gw.folders, session, user).await?;
    Ok(match entry_by_name(&list, &name) {
        Some(entry) => Ok(Change::Upsert(entry)),
        None => Err(status::SERVER_ERROR),
    })
}

async fn delete<B: MailBackend, S: StateStore>(
    gw: &Gateway<B, S>,
    session: &mut B::Session,
    user: &str,
    req: &FolderChangeRequest,
    list: &[folders::Resolved],
) -> Result<Result<Change, u32>, CommandError> {
    let Some(target) = list.iter().find(|r| r.server_id == req.server_id) else {
        return Ok(Err(status::NOT_FOUND));
    };
    let Some(folder) = target.mailbox.as_ref().filter(|m| m.special_use.is_none()) else {
        return Ok(Err(status::SPECIAL_FOLDER));
    };
    // Subfolders first, deepest first.
    let mut doomed: Vec<&folders::Resolved> = list
        .iter()
        .filter(|r| {
            r.mailbox
                .as_ref()
                .is_some_and(|m| is_below(&m.name, folder))
        })
        .collect();
    doomed.sort_by_key(|r| std::cmp::Reverse(r.mailbox.as_ref().map_or(0, |m| m.name.len())));
    doomed.push(target);
    let mut identities = Vec::new();
    let mut ids = Vec::new();
    for r in doomed {
        let Some(m) = &r.mailbox else { continue };
        match session.delete_folder(&m.name).await {
            Ok(()) => {}
            // Already gone (another client): the outcome the device wants.
            Err(BackendError::NotFound(_)) if m.name != folder.name => {}
            Err(e) => {
                crate::cluster::folders_changed(gw, user).await;
                return refusal(e, status::SERVER_ERROR, status::NOT_FOUND);
            }
        }
        identities.push(m.identity.clone());
        ids.push(r.server_id.clone());
    }
    crate::cluster::folders_changed(gw, user).await;
    if let Err(e) = gw.store.retire_folder_ids(user, &identities).await {
        tracing::warn!(error = %e, "cannot retire the ids of deleted folders");
    }
    Ok(Ok(Change::Removed(ids)))
}

/// A backend refusal as a status: `exists` for `[ALREADYEXISTS]`, `missing` for
/// `[NONEXISTENT]`, 6 for other refusals; outages and login failures stay errors.
fn refusal(
    e: BackendError,
    exists: u32,
    missing: u32,
) -> Result<Result<Change, u32>, CommandError> {
    match e {
        BackendError::Rejected(text) if text.contains("ALREADYEXISTS") => Ok(Err(exists)),
        BackendError::NotFound(_) => Ok(Err(missing)),
        BackendError::Rejected(text) | BackendError::Protocol(text) => {
            tracing::debug!(reason = %text, "the mail server refused a folder change");
            Ok(Err(status::SERVER_ERROR))
        }
        other => Err(other.into()),
    }
}

enum ParentError {
    NotFound,
    /// The parent has no mailbox (the virtual Outbox).
    NoMailbox,
}

/// The parent's mailbox; `None` for the root.
fn parent_mailbox<'a>(
    list: &'a [folders::Resolved],
    parent_id: &str,
) -> Result<Option<&'a MailFolder>, ParentError> {
    if parent_id == "0" {
        return Ok(None);
    }
    let r = list
        .iter()
        .find(|r| r.server_id == parent_id)
        .ok_or(ParentError::NotFound)?;
    r.mailbox.as_ref().map(Some).ok_or(ParentError::NoMailbox)
}

/// The IMAP name for `display_name` under `parent`; `None` when the name cannot be a single
/// mailbox level (it contains the delimiter or control characters).
fn imap_name(
    list: &[folders::Resolved],
    parent: Option<&MailFolder>,
    display_name: &str,
) -> Option<String> {
    let delimiter = parent
        .and_then(|p| p.delimiter)
        .or_else(|| {
            list.iter()
                .filter_map(|r| r.mailbox.as_ref())
                .find_map(|m| m.delimiter)
        })
        .unwrap_or('/');
    if display_name.contains(delimiter) || display_name.chars().any(char::is_control) {
        return None;
    }
    let leaf = utf7::encode(display_name);
    Some(match parent {
        Some(p) => format!("{}{delimiter}{leaf}", p.name),
        None => leaf,
    })
}

/// Whether a mailbox (other than `except`) already has `name` (INBOX in any case); at the root
/// the names the device sees for INBOX and the virtual Outbox are taken too.
fn taken(list: &[folders::Resolved], name: &str, except: Option<&str>) -> bool {
    let inbox = |n: &str| n.eq_ignore_ascii_case("INBOX");
    if inbox(name) || name.eq_ignore_ascii_case("Outbox") {
        return true;
    }
    list.iter()
        .filter_map(|r| r.mailbox.as_ref())
        .filter(|m| Some(m.name.as_str()) != except)
        .any(|m| m.name == name || (inbox(&m.name) && inbox(name)))
}

/// Whether `name` is a subfolder (at any depth) of `folder`.
fn is_below(name: &str, folder: &MailFolder) -> bool {
    let Some(d) = folder.delimiter else {
        return false;
    };
    name.len() > folder.name.len() + 1
        && name.starts_with(folder.name.as_str())
        && name[folder.name.len()..].starts_with(d)
}

/// The folder with IMAP name `name` as FolderSync reports it.
fn entry_by_name(list: &[folders::Resolved], name: &str) -> Option<FolderEntry> {
    let by_name = folders::ids_by_name(list);
    list.iter()
        .find(|r| r.mailbox.as_ref().is_some_and(|m| m.name == name))
        .map(|r| folders::entry(&folders::folder(r, &by_name)))
}

/// `ids` and every entry below them in the snapshot.
fn with_descendants(entries: &[FolderEntry], ids: &[String]) -> Vec<String> {
    let mut out: Vec<String> = ids.to_vec();
    loop {
        let before = out.len();
        for e in entries {
            if out.contains(&e.parent_id) && !out.contains(&e.server_id) {
                out.push(e.server_id.clone());
            }
        }
        if out.len() == before {
            return out;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::SpecialUse;

    fn folder(name: &str, special: Option<SpecialUse>) -> folders::Resolved {
        let parent = name.rsplit_once('/').map(|(p, _)| p.to_string());
        folders::Resolved {
            server_id: format!("id-{name}"),
            mailbox: Some(MailFolder {
                name: name.into(),
                display_name: name.rsplit('/').next().unwrap_or(name).into(),
                parent,
                delimiter: Some('/'),
                special_use: special,
                selectable: true,
                identity: format!("guid:{name}"),
            }),
        }
    }

    #[test]
    fn names_under_parents_in_modified_utf7() {
        let list = vec![
            folder("INBOX", Some(SpecialUse::Inbox)),
            folder("Projects", None),
        ];
        let parent = list[1].mailbox.as_ref();
        assert_eq!(
            imap_name(&list, parent, "2026").as_deref(),
            Some("Projects/2026")
        );
        assert_eq!(
            imap_name(&list, None, "Entwürfe").as_deref(),
            Some("Entw&APw-rfe")
        );
        assert_eq!(imap_name(&list, None, "a/b"), None);
        assert_eq!(imap_name(&list, None, "a\u{7}"), None);
    }

    #[test]
    fn taken_names() {
        let list = vec![
            folder("INBOX", Some(SpecialUse::Inbox)),
            folder("Projects", None),
        ];
        assert!(taken(&list, "Projects", None));
        assert!(!taken(&list, "Projects", Some("Projects")));
        assert!(taken(&list, "inbox", None));
        assert!(taken(&list, "Outbox", None));
        assert!(!taken(&list, "Reports", None));
    }

    #[test]
    fn subfolders_and_descendants() {
        let p = folder("Projects", None);
        let m = p.mailbox.as_ref().unwrap();
        assert!(is_below("Projects/2026", m));
        assert!(is_below("Projects/2026/Q1", m));
        assert!(!is_below("Projects", m));
        assert!(!is_below("Projects2", m));
        let e = |id: &str, parent: &str| FolderEntry {
            server_id: id.into(),
            parent_id: parent.into(),
            display_name: id.into(),
            folder_type: folder_type::USER_MAIL,
        };
        let entries = vec![e("1", "0"), e("2", "1"), e("3", "2"), e("4", "0")];
        let mut gone = with_descendants(&entries, &["1".to_string()]);
        gone.sort();
        assert_eq!(gone, vec!["1", "2", "3"]);
    }

    #[test]
    fn entries_look_like_folder_sync() {
        let list = vec![folder("Projects", None), folder("Projects/2026", None)];
        let e = entry_by_name(&list, "Projects/2026").unwrap();
        assert_eq!(e.parent_id, "id-Projects");
        assert_eq!(e.display_name, "2026");
        assert_eq!(e.folder_type, folder_type::USER_MAIL);
        assert!(entry_by_name(&list, "Nope").is_none());
    }
}
