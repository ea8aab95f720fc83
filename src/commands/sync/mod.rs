//! Sync (MS-ASCMD 2.2.1.21): mail both ways, exactly once.
//!
//! A sync key names a committed [`view::View`] of what the device holds. For each collection:
//! resolve the folder, find the view the key names (the current one, or the previous one when
//! the phone lost our last response and repeats its key), apply the device's changes
//! ([`client_changes`]), compute what changed on the server ([`server_changes`]), commit the
//! new view under a new key in one transaction, then answer. A crash between commit and answer
//! is the lost-response case that the previous key covers.
//!
//! In the Drafts folder the device's commands go to `drafts.rs` (16.0+ drafts: Add, replace,
//! Send), whose new UIDs join the device's view, and the server's commands pass through
//! `drafts::server_commands` so that a draft keeps its ServerId across versions.
//!
//! An unchanged folder costs one STATUS: same UIDVALIDITY and HIGHESTMODSEQ, same window, no
//! device changes, nothing pending. When no collection has anything to say, the answer is the
//! empty Sync response (HTTP 200, no body) and no state is written.

mod apply;
mod caches;
pub mod client_changes;
mod collection;
mod commit;
pub mod drafts;
mod key;
mod pages;
pub mod prefetch;
pub mod server_changes;
mod session;
#[cfg(test)]
mod tests;
pub mod view;
mod window;

use bytes::Bytes;
use tracing::debug;

use crate::backend::{MailBackend, MailFolder, MailSession, MessageMeta, SpecialUse};
use crate::eas::sync::effective_window_size;
use crate::eas::sync::{
    self as model, status, ClientResponse, CollectionRequest, CollectionResponse, SyncRequest,
    MAX_WINDOW_SIZE,
};
use crate::mime;
use crate::push::{Baseline, Hierarchy, WaitRequest, WaitResult, Watched};
use crate::state::StateStore;
use crate::wbxml::{self, Element, Limits};

use super::{folders, CommandError, Context, Gateway, Outcome};
pub use crate::commands::mail_item::{body_options, item_data, item_info, mail_flags};
pub use caches::SyncCaches;
use client_changes::parse_server_id;
use collection::sync_collection;
use pages::NextPages;
use session::RequestSession;
use view::View;

/// Bounds of Wait (minutes) in a Sync request (MS-ASCMD 2.2.3.197); HeartbeatInterval uses
/// the configured push bounds.
const WAIT_MINUTES: (u32, u32) = (1, 59);

pub async fn handle<B: MailBackend, S: StateStore>(
    gw: &Gateway<B, S>,
    ctx: &Context,
    body: Option<Element>,
) -> Result<Outcome, CommandError> {
    let user = ctx.user.address.as_str();
    let device_id = ctx.device_id();
    let request = match &body {
        Some(b) => match SyncRequest::from_element(b) {
            Ok(r) => r,
            Err(e) => {
                debug!(error = %e, "malformed Sync request");
                return Ok(top_status(status::PROTOCOL_ERROR, None));
            }
        },
        None => SyncRequest::default(),
    };
    if request.wait.is_some() && request.heartbeat_interval.is_some() {
        return Ok(top_status(status::PROTOCOL_ERROR, None));
    }
    if let Some((code, why)) = model::refusal(&request) {
        debug!(why, "Sync request refused");
        return Ok(top_status(code, None));
    }
    if let Some(w) = request.wait {
        // `push.max_heartbeat_secs` caps Wait too (in whole minutes).
        let max_wait = WAIT_MINUTES
            .1
            .min(gw.config.push.max_heartbeat_secs / 60)
            .max(WAIT_MINUTES.0);
        if w < WAIT_MINUTES.0 || w > max_wait {
            let limit = if w < WAIT_MINUTES.0 {
                WAIT_MINUTES.0
            } else {
                max_wait
            };
            return Ok(top_status(status::INVALID_WAIT, Some(limit)));
        }
    }
    if let Some(h) = request.heartbeat_interval {
        let (lo, hi) = (
            gw.config.push.min_heartbeat_secs,
            gw.config.push.max_heartbeat_secs,
        );
        if h < lo || h > hi {
            let limit = if h < lo { lo } else { hi };
            return Ok(top_status(status::INVALID_WAIT, Some(limit)));
        }
    }

    // An empty or Partial request reuses the device's cached last request (MS-ASCMD 2.2.3.128).
    let request = if request.collections.is_empty() || request.partial {
        let stored = gw.store.cached_sync_request(user, device_id).await?;
        if stored.is_none() {
            gw.sync.requests.remove(&super::device_key(user, device_id));
        }
        let cached = match stored {
            Some(bytes) => wbxml::decode(Bytes::from(bytes), &Limits::default())
                .ok()
                .and_then(|e| SyncRequest::from_element(&e).ok()),
            None => None,
        };
        match cached {
            Some(cached) => merge_with_cache(gw, user, device_id, request, cached).await?,
            None => request,
        }
    } else {
        request
    };
    // Nothing to sync, not even from the cache: the device must send the whole request
    // (MS-ASCMD 2.2.3.177.17 Status 13).
    if request.collections.is_empty() {
        return Ok(top_status(status::INCOMPLETE_REQUEST, None));
    }
    // Phones repeat the same request over and over: the store is written only when it differs
    // from the one this process stored last.
    let bytes = cache_bytes(&request);
    let memo = super::device_key(user, device_id);
    if gw.sync.requests.get(&memo).is_none_or(|b| *b != bytes) {
        gw.store
            .set_cached_sync_request(user, device_id, Some(&bytes))
            .await?;
        gw.sync.requests.insert(memo, bytes);
    }

    // Read before the folders are resolved: a folder change the watcher hears of after that
    // ends a hanging Sync.
    let mut epoch = gw.push.hierarchy_epoch(user);
    let out = run_collections(gw, ctx, &request, &request.collections).await?;
    if !out.is_empty() {
        return Ok(reply(out));
    }
    // Hanging Sync: nothing to say yet, so wait for a change (no session, no lock held).
    let wait = request
        .heartbeat_interval
        .map(u64::from)
        .or(request.wait.map(|m| u64::from(m) * 60));
    let Some(wait) = wait else {
        return Ok(Outcome::Empty);
    };
    let mut folders = Vec::new();
    for col in &request.collections {
        let Some(mailbox) = gw
            .folders
            .cached(user)
            .and_then(|l| l.iter().find(|r| r.server_id == col.collection_id).cloned())
            .and_then(|r| r.mailbox)
        else {
            continue;
        };
        let baseline = gw
            .store
            .collection_state(user, device_id, &col.collection_id)
            .await?
            .and_then(|st| View::decode(&st.current))
            .map(|v| Baseline {
                uid_validity: v.uid_validity,
                highest_modseq: v.highest_modseq,
                more_available: v.more_available,
            });
        folders.push(Watched {
            collection_id: col.collection_id.clone(),
            mailbox: mailbox.name,
            baseline,
        });
    }
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(wait);
    let result = loop {
        let result = gw
            .push
            .wait_for_changes(WaitRequest {
                user: user.to_string(),
                device_id: device_id.to_string(),
                credentials: ctx.user.credentials.clone(),
                folders: folders.clone(),
                deadline,
                hierarchy: Hierarchy::Since(epoch),
            })
            .await;
        if result != WaitResult::HierarchyChanged {
            break result;
        }
        // A folder was created, renamed or deleted: only the waited folders that are gone or
        // were moved (another mailbox name) end the wait (Status 12).
        epoch = gw.push.hierarchy_epoch(user);
        let mut list = None;
        // A pooled connection cut while the watcher reconnected: once more, on a new one.
        for attempt in 0..2 {
            let mut session = gw
                .sessions
                .get(&ctx.user.credentials, ctx.client_ip)
                .await?;
            match folders::list(&gw.store, &gw.folders, &mut *session, user).await {
                Ok(l) => {
                    list = Some(l);
                    break;
                }
                Err(CommandError::Unavailable(_)) if attempt == 0 => {}
                Err(e) => return Err(e),
            }
        }
        let Some(list) = list else {
            return Err(CommandError::Unavailable(
                "folder listing failed".to_string(),
            ));
        };
        let moved: Vec<String> = folders
            .iter()
            .filter(|w| {
                !list.iter().any(|r| {
                    r.server_id == w.collection_id
                        && r.mailbox.as_ref().is_some_and(|m| m.name == w.mailbox)
                })
            })
            .map(|w| w.collection_id.clone())
            .collect();
        if !moved.is_empty() {
            break WaitResult::FolderGone(moved);
        }
    };
    crate::metrics::push_ended("sync", &result);
    match result {
        WaitResult::Changed(ids) => {
            let changed: Vec<CollectionRequest> = request
                .collections
                .iter()
                .filter(|c| ids.contains(&c.collection_id))
                .cloned()
                .collect();
            let out = run_collections(gw, ctx, &request, &changed).await?;
            if out.is_empty() {
                return Ok(Outcome::Empty);
            }
            Ok(reply(out))
        }
        WaitResult::FolderGone(ids) => {
            folders::forget(&gw.folders, user);
            let out: Vec<CollectionResponse> = ids
                .iter()
                .map(|id| CollectionResponse::error(id, status::FOLDER_HIERARCHY_CHANGED))
                .collect();
            Ok(reply(out))
        }
        WaitResult::Unavailable => Err(CommandError::Unavailable(
            "the mail server cannot be reached".to_string(),
        )),
        WaitResult::Timeout
        | WaitResult::Superseded
        | WaitResult::Shutdown
        | WaitResult::HierarchyChanged => Ok(Outcome::Empty),
    }
}

fn reply(out: Vec<CollectionResponse>) -> Outcome {
    Outcome::Wbxml {
        status: out.iter().map(|c| c.status).max(),
        body: model::response(out),
    }
}

/// Syncs `collections` with one pooled session, each under its (device, collection) lock.
async fn run_collections<B: MailBackend, S: StateStore>(
    gw: &Gateway<B, S>,
    ctx: &Context,
    request: &SyncRequest,
    collections: &[CollectionRequest],
) -> Result<Vec<CollectionResponse>, CommandError> {
    let user = ctx.user.address.as_str();
    let device_id = ctx.device_id();
    let ids = collections.iter().map(|c| c.collection_id.as_str());
    let mut session = RequestSession::new(gw, ctx, ids.collect());
    let mut next_pages = NextPages::default();
    let mut budget = request
        .window_size
        .map_or(MAX_WINDOW_SIZE, effective_window_size) as usize;
    let mut out = Vec::new();
    for col in collections {
        let _guard = gw.locks.lock(user, device_id, &col.collection_id).await;
        // Boxed: the future is large, and is moved into the lease wrapper.
        let work = Box::pin(sync_collection(
            gw,
            ctx,
            &mut session,
            col,
            budget,
            &mut next_pages,
        ));
        if let Some(r) = crate::cluster::leased(gw, ctx, &col.collection_id, work).await? {
            budget = budget.saturating_sub(r.commands.len()).max(1);
            out.push(r);
        }
    }
    // The session goes back to the pool first, so the next pages are read on it.
    session.release();
    next_pages.start(gw, ctx).await;
    ctx.report.sync(collections, &out);
    crate::metrics::synced(collections, &out);
    Ok(out)
}

fn top_status(code: u32, limit: Option<u32>) -> Outcome {
    Outcome::Wbxml {
        body: model::status_response(code, limit),
        status: Some(code),
    }
}

/// Collections of a Partial request replace the cached ones with the same id; the others come
/// from the cache with the key the device holds now.
async fn merge_with_cache<B: MailBackend, S: StateStore>(
    gw: &Gateway<B, S>,
    user: &str,
    device_id: &str,
    request: SyncRequest,
    cached: SyncRequest,
) -> Result<SyncRequest, CommandError> {
    let mut merged = request.clone();
    for c in cached.collections {
        if merged
            .collections
            .iter()
            .any(|n| n.collection_id == c.collection_id)
        {
            continue;
        }
        let Some(state) = gw
            .store
            .collection_state(user, device_id, &c.collection_id)
            .await?
        else {
            continue;
        };
        merged.collections.push(CollectionRequest {
            sync_key: state.current.key.to_string(),
            commands: Vec::new(),
            ..c
        });
    }
    if merged.window_size.is_none() {
        merged.window_size = cached.window_size;
    }
    Ok(merged)
}

/// The request as cached: without the device's commands, which must never be replayed, and
/// without sync keys, since a cached collection resumes at the key its state holds
/// ([`merge_with_cache`]). A device paging through a folder then repeats the cached request
/// exactly, and it is not written again for every page.
fn cache_bytes(req: &SyncRequest) -> Vec<u8> {
    use crate::wbxml::tags::airsync as a;
    let mut cols = Element::new(a::COLLECTIONS);
    for c in &req.collections {
        let mut e = Element::new(a::COLLECTION)
            .text_child(a::COLLECTION_ID, c.collection_id.clone())
            .text_child(
                a::DELETES_AS_MOVES,
                if c.deletes_as_moves { "1" } else { "0" },
            );
        if let Some(w) = c.window_size {
            e.push(Element::with_text(a::WINDOW_SIZE, w.to_string()));
        }
        if let Some(o) = &c.options {
            e.push(o.clone());
        }
        cols.push(e);
    }
    let mut root = Element::new(a::SYNC).child(cols);
    if let Some(w) = req.window_size {
        root.push(Element::with_text(a::WINDOW_SIZE, w.to_string()));
    }
    wbxml::encode(&root)
}

/// Answers one Fetch command (see [`fetch_items`]).
async fn fetch_one<M: MailSession>(
    session: &mut M,
    mailbox: &MailFolder,
    cid: &str,
    sid: &str,
    opts: &mime::BodyOptions,
) -> Result<ClientResponse, CommandError> {
    let mut r = fetch_items(session, mailbox, cid, &[sid.to_string()], opts).await?;
    Ok(r.remove(0))
}

/// Answers Fetch commands, in order: each item's ApplicationData, or Status 8 when it is gone.
/// The mails are read in one IMAP command.
async fn fetch_items<M: MailSession>(
    session: &mut M,
    mailbox: &MailFolder,
    cid: &str,
    sids: &[String],
    opts: &mime::BodyOptions,
) -> Result<Vec<ClientResponse>, CommandError> {
    if sids.is_empty() {
        return Ok(Vec::new());
    }
    let uids: Vec<u32> = sids
        .iter()
        .filter_map(|sid| parse_server_id(cid, sid))
        .collect();
    let fetched: std::collections::HashMap<u32, (MessageMeta, bytes::Bytes)> = if uids.is_empty() {
        Default::default()
    } else {
        session
            .fetch_messages(&mailbox.name, &uids)
            .await?
            .into_iter()
            .map(|(meta, raw)| (meta.uid, (meta, raw)))
            .collect()
    };
    let in_drafts = mailbox.special_use == Some(SpecialUse::Drafts);
    Ok(sids
        .iter()
        .map(|sid| {
            let found = parse_server_id(cid, sid).and_then(|uid| fetched.get(&uid));
            match found {
                Some((meta, raw)) => ClientResponse::Fetch {
                    server_id: sid.clone(),
                    status: status::SUCCESS,
                    data: Some(item_data(raw, meta, sid, in_drafts, opts)),
                },
                None => ClientResponse::Fetch {
                    server_id: sid.clone(),
                    status: status::OBJECT_NOT_FOUND,
                    data: None,
                },
            }
        })
        .collect())
}
