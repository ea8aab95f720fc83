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

pub mod client_changes;
pub mod drafts;
pub mod prefetch;
pub mod server_changes;
mod session;
pub mod view;

use bytes::Bytes;
use tracing::debug;

use crate::backend::{MailBackend, MailFolder, MailSession, MessageMeta, SpecialUse};
use crate::eas::sync::effective_window_size;
use crate::eas::sync::{
    self as model, filter_days, status, ClientResponse, CollectionRequest, CollectionResponse,
    ServerCommand, SyncOptions, SyncRequest, DEFAULT_WINDOW_SIZE, MAX_WINDOW_SIZE,
};
use crate::eas::ProtocolVersion;
use crate::mime;
use crate::push::{Baseline, Hierarchy, WaitRequest, WaitResult, Watched};
use crate::state::StateStore;
use crate::uidset::UidSet;
use crate::wbxml::{self, Element, Limits};

use super::{folders, CommandError, Context, Gateway, Outcome};
use client_changes::{parse_server_id, server_id};
use session::RequestSession;
use view::{flag_bits, window_start, View};

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
        if w < WAIT_MINUTES.0 || w > WAIT_MINUTES.1 {
            let limit = if w < WAIT_MINUTES.0 {
                WAIT_MINUTES.0
            } else {
                WAIT_MINUTES.1
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
            gw.sync_requests.remove(&super::device_key(user, device_id));
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
    if gw.sync_requests.get(&memo).is_none_or(|b| *b != bytes) {
        gw.store
            .set_cached_sync_request(user, device_id, Some(&bytes))
            .await?;
        gw.sync_requests.insert(memo, bytes);
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
    let mut next_pages = Vec::new();
    let mut budget = request
        .window_size
        .map_or(MAX_WINDOW_SIZE, effective_window_size) as usize;
    let mut out = Vec::new();
    for col in collections {
        let lock = gw
            .collection_locks
            .entry(super::collection_key(user, device_id, &col.collection_id))
            .or_default()
            .clone();
        let _guard = lock.lock().await;
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
    let preparing = !next_pages.is_empty();
    for plan in next_pages {
        gw.sync_prefetch.start(&gw.sessions, ctx, plan, None);
    }
    if preparing {
        // A task spawned by a running task waits in its worker's "next task" slot, which
        // no other worker takes, until the spawning task yields: without this, the next page
        // would start only after this response is encoded and written.
        tokio::task::yield_now().await;
    }
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

/// One collection: `Ok(None)` when it has nothing to report (its key stays valid).
async fn sync_collection<B: MailBackend, S: StateStore>(
    gw: &Gateway<B, S>,
    ctx: &Context,
    session: &mut RequestSession<'_, B>,
    col: &CollectionRequest,
    budget: usize,
    next_pages: &mut Vec<prefetch::Plan>,
) -> Result<Option<CollectionResponse>, CommandError> {
    let user = ctx.user.address.as_str();
    let device_id = ctx.device_id();
    let cid = col.collection_id.as_str();
    let resolved = match gw.folders.find(user, cid) {
        Some(r) => Some(r),
        None => folders::resolve(&gw.store, &gw.folders, session.get().await?, user, cid).await?,
    };
    let Some(resolved) = resolved else {
        debug!(collection_id = cid, "unknown collection");
        return Ok(Some(CollectionResponse::error(
            cid,
            status::FOLDER_HIERARCHY_CHANGED,
        )));
    };
    let state = gw.store.collection_state(user, device_id, cid).await?;
    // Options: from the request, else cached for this collection, else defaults.
    let options_element = match &col.options {
        Some(o) => Some(o.clone()),
        None => state
            .as_ref()
            .and_then(|s| s.options.as_ref())
            .and_then(|b| wbxml::decode(Bytes::from(b.clone()), &Limits::default()).ok()),
    };
    let options = match options_element.as_ref().map(SyncOptions::from_element) {
        Some(Ok(o)) => o,
        Some(Err(e)) => {
            debug!(error = %e, "bad Sync Options");
            return Ok(Some(CollectionResponse::error(cid, status::PROTOCOL_ERROR)));
        }
        None => SyncOptions::default(),
    };
    let options_bytes = col.options.as_ref().map(wbxml::encode);
    let window = window_start(filter_days(options.filter_type), ctx.now);

    // Folders without a mailbox (Outbox, \Noselect parents) sync as empty folders.
    let mailbox: Option<MailFolder> = resolved.mailbox.filter(|m| m.selectable);

    if col.sync_key == "0" {
        gw.sync_listings.forget(user, device_id, cid);
        gw.sync_prefetch.forget(user, device_id, cid);
        gw.store.reset_collection(user, device_id, cid).await?;
        let (uid_validity, flags) = match &mailbox {
            Some(m) => {
                let st = session.get().await?.select(&m.name).await?;
                let flags = (st.highest_modseq == 0).then(Default::default);
                (st.uid_validity, flags)
            }
            None => (0, None),
        };
        let view = View {
            key: 1,
            uid_validity,
            uids: UidSet::new(),
            highest_modseq: 0,
            flags,
            filter_start: window,
            more_available: false,
        };
        gw.store
            .commit_collection(
                user,
                device_id,
                cid,
                &view.encode(),
                options_bytes.as_deref(),
            )
            .await?;
        return Ok(Some(CollectionResponse {
            sync_key: Some("1".into()),
            collection_id: cid.to_string(),
            status: status::SUCCESS,
            more_available: false,
            commands: Vec::new(),
            responses: Vec::new(),
        }));
    }

    let Some(state) = state else {
        crate::metrics::sync_key_reset("Sync", "no_state");
        return Ok(Some(CollectionResponse::error(
            cid,
            status::INVALID_SYNC_KEY,
        )));
    };
    let key: Option<u32> = col.sync_key.parse().ok();
    let (held, replay) = match key {
        Some(k) if k == state.current.key => (&state.current, false),
        Some(k) if state.previous.as_ref().is_some_and(|p| p.key == k) => {
            (state.previous.as_ref().unwrap_or(&state.current), true)
        }
        _ => {
            debug!(collection_id = cid, sync_key = %col.sync_key, "unknown sync key");
            crate::metrics::sync_key_reset("Sync", "unknown_key");
            return Ok(Some(CollectionResponse::error(
                cid,
                status::INVALID_SYNC_KEY,
            )));
        }
    };
    let Some(held) = View::decode(held) else {
        crate::metrics::sync_key_reset("Sync", "unreadable_state");
        return Ok(Some(CollectionResponse::error(
            cid,
            status::INVALID_SYNC_KEY,
        )));
    };
    let current_key = state.current.key;
    let next_key = if replay {
        current_key
    } else {
        current_key.wrapping_add(1).max(1)
    };

    let Some(mailbox) = mailbox else {
        // Nothing can change in a folder without a mailbox.
        if !replay && col.commands.is_empty() {
            return Ok(None);
        }
        return Ok(Some(CollectionResponse {
            sync_key: Some(current_key.to_string()),
            collection_id: cid.to_string(),
            status: status::SUCCESS,
            more_available: false,
            commands: Vec::new(),
            responses: Vec::new(),
        }));
    };
    let has_commands = !col.commands.is_empty();
    let get_changes = col.get_changes.unwrap_or(true);

    // Fast path: one STATUS says nothing changed.
    if !has_commands && !replay && !held.more_available && held.flags.is_none() {
        if !get_changes {
            return Ok(None);
        }
        if held.highest_modseq > 0 && held.filter_start == window {
            let st = session.get().await?.status(&mailbox.name).await?;
            if st.uid_validity == held.uid_validity && st.highest_modseq == held.highest_modseq {
                return Ok(None);
            }
        }
    }

    // The device's own changes first.
    let trash = if mailbox.special_use == Some(SpecialUse::Trash) {
        None
    } else {
        gw.folders
            .cached(user)
            .and_then(|l| folders::special(&l, SpecialUse::Trash).and_then(|r| r.mailbox.clone()))
            .map(|m| m.name)
    };
    let in_drafts = mailbox.special_use == Some(SpecialUse::Drafts);
    let conflict = client_changes::Conflict {
        server_wins: options.conflict != Some(0),
        since_modseq: held.highest_modseq,
        flags: held.flags.as_ref(),
    };
    let applied = if !has_commands {
        client_changes::Applied::default()
    } else if in_drafts {
        drafts::apply(
            gw,
            ctx,
            session.get().await?,
            &mailbox,
            cid,
            &col.commands,
            conflict,
            &options,
        )
        .await?
    } else {
        client_changes::apply(
            session.get().await?,
            &mailbox.name,
            cid,
            &col.commands,
            col.deletes_as_moves,
            trash.as_deref(),
            conflict,
        )
        .await?
    };

    let mut held_now = held.clone();
    for u in applied.removed.iter() {
        held_now.uids.remove(u);
        if let Some(f) = held_now.flags.as_mut() {
            f.remove(&u);
        }
    }
    for u in applied.added.iter() {
        held_now.uids.insert(u);
    }
    let limit = col
        .window_size
        .map_or(DEFAULT_WINDOW_SIZE, effective_window_size) as usize;
    let limit = limit.min(budget.max(1));
    let slot = || server_changes::ListingSlot {
        listings: &gw.sync_listings,
        user,
        device: device_id,
        collection: cid,
    };
    // A device paging through the folder whose next pages are read ahead: when the folder is
    // still as the read-ahead found it, the changes are the listing's next UIDs.
    let paged = if !has_commands && !replay && get_changes && held.more_available {
        match gw.sync_prefetch.current_state(user, device_id, cid).await {
            Some(st) => {
                server_changes::compute_paged(&held_now, st, window, limit, slot()).map(|c| (st, c))
            }
            None => None,
        }
    } else {
        None
    };
    let (mstate, changes) = match paged {
        Some(p) => p,
        None => {
            let session = session.get().await?;
            let mstate = session.select(&mailbox.name).await?;
            if mstate.uid_validity != held.uid_validity {
                debug!(
                    collection_id = cid,
                    "UIDVALIDITY changed: the device must resync"
                );
                crate::metrics::sync_key_reset("Sync", "uidvalidity");
                return Ok(Some(CollectionResponse::error(
                    cid,
                    status::INVALID_SYNC_KEY,
                )));
            }
            // GetChanges 0 sends nothing, but when the device's own changes are all that
            // changed, the view moves past them, so they do not wake its Ping.
            let own_only =
                !get_changes && has_commands && mstate.highest_modseq > held_now.highest_modseq;
            let changes = if get_changes || own_only {
                let found = server_changes::compute(
                    session,
                    &mailbox.name,
                    &held_now,
                    mstate,
                    window,
                    &applied.touched,
                    limit,
                    get_changes.then(slot),
                )
                .await?;
                match found.new_view {
                    _ if get_changes => found,
                    Some(view) if found.is_empty() && found.pending == 0 => {
                        server_changes::Changes {
                            new_view: Some(view),
                            ..Default::default()
                        }
                    }
                    _ => server_changes::Changes {
                        new_view: Some(held_now.clone()),
                        ..Default::default()
                    },
                }
            } else {
                server_changes::Changes {
                    new_view: Some(held_now.clone()),
                    ..Default::default()
                }
            };
            (mstate, changes)
        }
    };
    let body_options = body_options(&options, ctx.version);
    let mut new_view = changes.new_view.clone().unwrap_or(held_now);
    let mut commands = Vec::new();
    for uid in &changes.deletes {
        commands.push(ServerCommand::Delete {
            server_id: server_id(cid, *uid),
        });
    }
    for uid in &changes.soft_deletes {
        commands.push(ServerCommand::SoftDelete {
            server_id: server_id(cid, *uid),
        });
    }
    for meta in &changes.changes {
        commands.push(ServerCommand::Change {
            server_id: server_id(cid, meta.uid),
            data: mime::flag_change(&mail_flags(meta), ctx.version),
        });
    }
    // Drafts have ServerIds of their own; folders without mod-sequences cannot prove a
    // prepared page current.
    let prefetchable = !in_drafts && mstate.highest_modseq > 0;
    let folder = || prefetch::Folder {
        mailbox: mailbox.name.clone(),
        collection_id: cid.to_string(),
        state: mstate,
        opts: body_options.clone(),
    };
    if !changes.adds.is_empty() {
        let prepared = if prefetchable {
            let spec = prefetch::PageSpec {
                mailbox: mailbox.name.clone(),
                collection_id: cid.to_string(),
                uid_validity: mstate.uid_validity,
                uids: changes.adds.clone(),
                opts: body_options.clone(),
            };
            let prepared = gw
                .sync_prefetch
                .take(user, device_id, &spec, mstate.highest_modseq)
                .await;
            // A paged sync with nothing read ahead: this page and the next ones are read by a
            // new read-ahead on this request's session, so the mail server goes on with the
            // next page while this one is converted. (Fetches of the device's own requests
            // need the session after.)
            let start = prepared.is_none()
                && !changes.next_adds.is_empty()
                && applied.fetches.is_empty()
                && limit <= prefetch::MAX_MAILS
                && !gw.sync_prefetch.holds(user, device_id, cid);
            if start {
                let mut pages = vec![changes.adds.clone()];
                pages.extend(changes.next_adds.chunks(limit).map(<[u32]>::to_vec));
                gw.sync_prefetch.start(
                    &gw.sessions,
                    ctx,
                    prefetch::Plan {
                        folder: folder(),
                        pages,
                    },
                    session.hand_over(),
                );
                gw.sync_prefetch
                    .take(user, device_id, &spec, mstate.highest_modseq)
                    .await
            } else {
                prepared
            }
        } else {
            None
        };
        let mut data = match prepared {
            Some(d) => d,
            None => {
                server_changes::add_data(
                    session.get().await?,
                    &mailbox.name,
                    cid,
                    &changes.adds,
                    in_drafts,
                    &body_options,
                )
                .await?
            }
        };
        for uid in &changes.adds {
            let Some((meta, data)) = data.remove(uid) else {
                // Expunged between the search and the fetch: not sent, not in the view.
                new_view.uids.remove(*uid);
                continue;
            };
            if let Some(f) = new_view.flags.as_mut() {
                f.insert(*uid, flag_bits(&meta));
            }
            commands.push(ServerCommand::Add {
                data,
                server_id: server_id(cid, *uid),
            });
        }
    }
    if prefetchable && !changes.next_adds.is_empty() {
        next_pages.push(prefetch::Plan {
            folder: folder(),
            pages: changes
                .next_adds
                .chunks(limit)
                .map(<[u32]>::to_vec)
                .collect(),
        });
    } else {
        // Nothing more to read ahead: the task and its session go.
        gw.sync_prefetch.forget(user, device_id, cid);
    }
    if in_drafts {
        drafts::server_commands(
            &gw.store,
            session.get().await?,
            user,
            cid,
            mstate.uid_validity,
            &mailbox.name,
            &mut commands,
        )
        .await?;
    }
    let mut responses = applied.responses;
    if !applied.fetches.is_empty() {
        let session = session.get().await?;
        responses
            .extend(fetch_items(session, &mailbox, cid, &applied.fetches, &body_options).await?);
    }

    if commands.is_empty() && responses.is_empty() && !has_commands && !replay {
        // Nothing to tell: keep the key, but remember the newer mod-sequence so the next
        // request takes the fast path again.
        if new_view != held {
            new_view.key = held.key;
            gw.store
                .commit_collection(
                    user,
                    device_id,
                    cid,
                    &new_view.encode(),
                    options_bytes.as_deref(),
                )
                .await?;
        }
        return Ok(None);
    }
    new_view.key = next_key;
    gw.store
        .commit_collection(
            user,
            device_id,
            cid,
            &new_view.encode(),
            options_bytes.as_deref(),
        )
        .await?;
    Ok(Some(CollectionResponse {
        sync_key: Some(next_key.to_string()),
        collection_id: cid.to_string(),
        status: status::SUCCESS,
        more_available: new_view.more_available,
        commands,
        responses,
    }))
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

/// The Email ApplicationData of one stored mail, as Sync, ItemOperations, Search and Find send
/// it; `server_id` also prefixes its attachments' FileReferences.
pub fn item_data(
    raw: &[u8],
    meta: &MessageMeta,
    server_id: &str,
    in_drafts: bool,
    opts: &mime::BodyOptions,
) -> crate::wbxml::Element {
    let info = item_info(meta, server_id, in_drafts);
    mime::application_data(raw, &mail_flags(meta), &info, opts)
}

/// What the MIME layer needs to know of a stored mail besides its bytes.
pub fn item_info<'a>(
    meta: &MessageMeta,
    server_id: &'a str,
    in_drafts: bool,
) -> mime::ItemInfo<'a> {
    mime::ItemInfo {
        file_reference_prefix: server_id,
        internal_date: meta.internal_date,
        in_drafts,
    }
}

/// IMAP flags as the MIME layer wants them.
pub fn mail_flags(meta: &MessageMeta) -> mime::MailFlags {
    mime::MailFlags {
        seen: meta.has_flag("\\Seen"),
        flagged: meta.has_flag("\\Flagged"),
        answered: meta.has_flag("\\Answered"),
        forwarded: meta.has_flag("$Forwarded"),
        draft: meta.has_flag("\\Draft"),
        keywords: meta
            .flags
            .iter()
            .filter(|f| !f.starts_with('\\') && !f.starts_with('$'))
            .cloned()
            .collect(),
    }
}

/// Sync Options as the MIME layer wants them.
pub fn body_options(o: &SyncOptions, version: ProtocolVersion) -> mime::BodyOptions {
    if o.body_preferences.is_empty() && o.mime_support == 0 {
        return mime::BodyOptions::default_for(version);
    }
    mime::BodyOptions {
        preferences: o
            .body_preferences
            .iter()
            .map(|p| mime::BodyPreference {
                body_type: p.body_type,
                truncation_size: p.truncation_size,
                all_or_none: p.all_or_none,
                preview: p.preview,
            })
            .collect(),
        mime_support: o.mime_support,
        mime_truncation: o.mime_truncation,
        version,
    }
}
