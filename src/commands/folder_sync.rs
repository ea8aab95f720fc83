//! FolderSync (MS-ASCMD 2.2.1.5): the user's IMAP hierarchy as EAS folders.
//!
//! ServerIds come from the state store, keyed by the folder's identity (Dovecot's X-GUID, which
//! survives a rename), so they are stable for the life of a folder and shared by all of the
//! user's devices. Key 0 returns the whole hierarchy with the same ids and leaves the
//! collections' sync keys alone (MS-ASCMD 3.1.5.3). The previous key stays valid, so a lost
//! response is answered again.

use crate::backend::MailBackend;
use crate::eas::folder_sync::{diff, status, Folder, FolderSyncRequest, FolderSyncResponse};
use crate::state::{FolderEntry, StateStore};
use crate::wbxml::Element;

use super::ids::SyncKey;
use super::{folders, CommandError, Context, Gateway, Outcome};

pub async fn handle<B: MailBackend, S: StateStore>(
    gw: &Gateway<B, S>,
    ctx: &Context,
    body: &Element,
) -> Result<Outcome, CommandError> {
    let req = match FolderSyncRequest::from_element(body) {
        Ok(r) => r,
        Err(e) => {
            tracing::debug!(error = %e, "malformed FolderSync request");
            return Ok(reply(FolderSyncResponse::error(status::BAD_REQUEST)));
        }
    };
    let user = ctx.user.address.as_str();
    let device_id = ctx.device_id();
    let state = gw.store.hierarchy(user, device_id).await?;

    // Which snapshot does the device hold?
    let sent_key = SyncKey::parse(&req.sync_key);
    let held: Option<Vec<Folder>> = if sent_key.is_some_and(SyncKey::is_initial) {
        Some(Vec::new())
    } else {
        let key: Option<u32> = sent_key.map(SyncKey::value);
        match (&state, key) {
            (Some(s), Some(k)) if k == s.key => Some(folders::to_folders(&s.folders)),
            (Some(s), Some(k)) if s.previous.as_ref().is_some_and(|(pk, _)| *pk == k) => {
                s.previous.as_ref().map(|(_, f)| folders::to_folders(f))
            }
            _ => None,
        }
    };
    let Some(held) = held else {
        tracing::debug!(sync_key = %req.sync_key, "unknown hierarchy sync key");
        crate::metrics::sync_key_reset("FolderSync", "unknown_key");
        return Ok(reply(FolderSyncResponse::error(status::INVALID_SYNC_KEY)));
    };

    let live = live_folders(gw, ctx).await?;
    let (added, updated, deleted) = diff(&held, &live);
    let current_key = state.as_ref().map(|s| s.key).unwrap_or(0);
    let unchanged_current = sent_key == Some(SyncKey::new(current_key))
        && added.is_empty()
        && updated.is_empty()
        && deleted.is_empty();
    let replayed_previous = state
        .as_ref()
        .and_then(|s| s.previous.as_ref())
        .is_some_and(|(pk, _)| sent_key == Some(SyncKey::new(*pk)));
    let key = if unchanged_current {
        current_key
    } else {
        // A replayed previous key is answered under the current key again, its view rewritten
        // in place, so the previous key stays valid for yet another retry.
        let next = if replayed_previous {
            current_key
        } else {
            current_key.wrapping_add(1).max(1)
        };
        let entries: Vec<FolderEntry> = live.iter().map(folders::entry).collect();
        gw.store
            .commit_hierarchy(user, device_id, next, &entries)
            .await?;
        next
    };
    Ok(reply(FolderSyncResponse {
        status: status::SUCCESS,
        sync_key: Some(key.to_string()),
        added,
        updated,
        deleted,
    }))
}

fn reply(resp: FolderSyncResponse) -> Outcome {
    Outcome::Wbxml {
        status: Some(resp.status),
        body: resp.to_element(),
    }
}

/// Lists the IMAP hierarchy and turns it into EAS folders, parents first.
async fn live_folders<B: MailBackend, S: StateStore>(
    gw: &Gateway<B, S>,
    ctx: &Context,
) -> Result<Vec<Folder>, CommandError> {
    let mut session = gw
        .sessions
        .get(&ctx.user.credentials, ctx.client_ip)
        .await?;
    let listed = folders::list(&gw.store, &gw.folders, &mut *session, &ctx.user.address).await?;
    let by_name = folders::ids_by_name(&listed);
    let out = listed
        .iter()
        .map(|r| folders::folder(r, &by_name))
        .collect();
    Ok(out)
}
