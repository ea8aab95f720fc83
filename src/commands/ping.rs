//! Ping (MS-ASCMD 2.2.1.13): wait until a watched folder changes or the heartbeat ends.
//!
//! The request's folders are resolved to IMAP mailboxes with a fresh listing (one LIST-STATUS),
//! and each folder the device has synced gets its baseline from the device's committed view;
//! the waiting itself is the push hub's ([`crate::push::Hub::wait_for_changes`]). Folders the
//! device never synced are not watched (they do not make the Ping fail either); a folder id
//! that does not exist answers Status 7, and so does a hierarchy that differs from the one the
//! device got with its last FolderSync (a folder created, renamed, moved or deleted since),
//! at once or as soon as the watcher hears of it while the Ping waits. A mail server that
//! cannot be reached for a few seconds while the Ping waits answers 503 (Retry-After).
//!
//! A Ping without an interval or folders takes them from the device's last accepted Ping. Those
//! parameters are in the state store (written only when they change) with a copy in the hub's
//! memory, so an empty Ping after a gateway restart still waits on the same folders; only a
//! device that never sent a complete Ping gets Status 3. A Ping whose folders are not all
//! known (Status 7) or out of bounds (5, 6) is not remembered.

use std::time::Duration;

use tokio::time::Instant;
use tracing::debug;

use crate::backend::MailBackend;
use crate::eas::ping::{status, PingRequest, PingResponse};
use crate::push::{Baseline, Hierarchy, PingParams, WaitRequest, WaitResult, Watched};
use crate::state::StateStore;

use super::{folders, Body, CommandError, Context, Gateway, Outcome};

fn answer(r: PingResponse) -> Outcome {
    Outcome::Wbxml {
        status: Some(r.status),
        body: r.to_element(),
    }
}

fn status_only(code: u32) -> Outcome {
    answer(PingResponse::status(code))
}

pub async fn handle<B: MailBackend, S: StateStore>(
    gw: &Gateway<B, S>,
    ctx: &Context,
    body: Body,
) -> Result<Outcome, CommandError> {
    let user = ctx.user.address.as_str();
    let device_id = ctx.device_id();
    let hub = &gw.push;
    let cfg = hub.config();
    let request = match &body {
        Body::Empty => PingRequest::default(),
        Body::Wbxml(e) => match PingRequest::from_element(e) {
            Ok(r) => r,
            Err(e) => {
                debug!(error = %e, "malformed Ping request");
                return Ok(status_only(status::SYNTAX_ERROR));
            }
        },
        Body::Mime(_) => return Ok(status_only(status::SYNTAX_ERROR)),
    };
    // The document is not needed once parsed; a Ping keeps only what it waits with.
    drop(body);

    // Missing parts come from the device's last Ping: memory, else the store (a restart).
    // The steps before and after the wait are boxed: inline, their futures (state store,
    // IMAP) would be part of the state a waiting Ping holds for its whole heartbeat.
    let last = match hub.ping_params(user, device_id) {
        Some(p) => Some(p),
        None => match Box::pin(gw.store.ping_params(user, device_id)).await {
            Ok(p) => {
                if let Some(p) = &p {
                    hub.set_ping_params(user, device_id, p.clone());
                }
                p
            }
            Err(e) => {
                tracing::warn!(error = %e, "state store failed reading Ping parameters");
                return Ok(status_only(status::SERVER_ERROR));
            }
        },
    };
    let heartbeat = request
        .heartbeat_interval
        .or_else(|| last.as_ref().map(|l| l.heartbeat_secs));
    let requested = request
        .folders
        .map(|fs| fs.into_iter().map(|f| (f.id, f.class)).collect::<Vec<_>>());
    let watch = requested.or_else(|| last.as_ref().map(|l| l.folders.clone()));
    let (Some(heartbeat), Some(watch)) = (heartbeat, watch) else {
        return Ok(status_only(status::MISSING_PARAMETERS));
    };
    let (lo, hi) = (cfg.min_heartbeat_secs, cfg.max_heartbeat_secs);
    if heartbeat < lo || heartbeat > hi {
        let mut r = PingResponse::status(status::HEARTBEAT_OUT_OF_RANGE);
        r.heartbeat_interval = Some(if heartbeat < lo { lo } else { hi });
        return Ok(answer(r));
    }
    if watch.len() > cfg.max_folders as usize {
        let mut r = PingResponse::status(status::TOO_MANY_FOLDERS);
        r.max_folders = Some(cfg.max_folders);
        return Ok(answer(r));
    }
    // Folder ids -> mailboxes, from a fresh listing (one LIST-STATUS), which also tells
    // whether the hierarchy changed since the device's last FolderSync. The epoch is read
    // first, so a change the watcher hears of after the listing still ends the wait.
    let mut epoch = hub.hierarchy_epoch(user);
    let list = Box::pin(fresh_list(gw, ctx)).await?;
    let mut folders_to_watch = Vec::with_capacity(watch.len());
    for (id, _class) in &watch {
        let Some(resolved) = list.iter().find(|r| &r.server_id == id) else {
            debug!(collection_id = %id, "Ping on an unknown folder");
            return Ok(status_only(status::FOLDER_SYNC_REQUIRED));
        };
        // The Outbox and \Noselect folders never change.
        let Some(mailbox) = resolved.mailbox.as_ref().filter(|m| m.selectable) else {
            continue;
        };
        let state = match Box::pin(gw.store.collection_state(user, device_id, id)).await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "state store failed during Ping");
                return Ok(status_only(status::SERVER_ERROR));
            }
        };
        folders_to_watch.push(Watched {
            collection_id: id.clone(),
            mailbox: mailbox.name.clone(),
            baseline: state.map(|s| Baseline {
                uid_validity: s.current.uid_validity,
                highest_modseq: s.current.highest_modseq,
                more_available: s.current.more_available,
            }),
        });
    }

    if Box::pin(folders::changed_since_last_sync(
        &gw.store, user, device_id, &list,
    ))
    .await?
    {
        debug!("folder hierarchy changed since the last FolderSync");
        return Ok(status_only(status::FOLDER_SYNC_REQUIRED));
    }

    let params = PingParams {
        heartbeat_secs: heartbeat,
        folders: watch,
    };
    if last.as_ref() != Some(&params) {
        if let Err(e) = Box::pin(gw.store.set_ping_params(user, device_id, &params)).await {
            // The Ping still works; only a later empty Ping after a restart would lack them.
            tracing::warn!(error = %e, "cannot store Ping parameters");
        }
        hub.set_ping_params(user, device_id, params);
    }

    // The phone counts the heartbeat from when it sent the request; so does the deadline,
    // whatever the login and the steps above took.
    let deadline = Instant::from_std(ctx.received) + Duration::from_secs(u64::from(heartbeat));
    let result = loop {
        let result = hub
            .wait_for_changes(WaitRequest {
                user: user.to_string(),
                device_id: device_id.to_string(),
                credentials: ctx.user.credentials.clone(),
                folders: folders_to_watch.clone(),
                deadline,
                hierarchy: Hierarchy::Since(epoch),
            })
            .await;
        if result != WaitResult::HierarchyChanged {
            break result;
        }
        // The watcher heard of a folder change (or reconnected): is it one for the device?
        epoch = hub.hierarchy_epoch(user);
        let list = match Box::pin(fresh_list(gw, ctx)).await {
            // A pooled connection cut while the watcher reconnected: once more, on a new one.
            Err(CommandError::Unavailable(_)) => Box::pin(fresh_list(gw, ctx)).await?,
            other => other?,
        };
        if Box::pin(folders::changed_since_last_sync(
            &gw.store, user, device_id, &list,
        ))
        .await?
        {
            break result;
        }
    };
    debug!(result = ?result, "Ping ended");
    crate::metrics::push_ended("ping", &result);
    Ok(match result {
        WaitResult::Changed(ids) => answer(PingResponse::changes(ids)),
        WaitResult::FolderGone(_) | WaitResult::HierarchyChanged => {
            folders::forget(&gw.folders, user);
            status_only(status::FOLDER_SYNC_REQUIRED)
        }
        WaitResult::Unavailable => {
            return Err(CommandError::Unavailable(
                "the mail server cannot be reached".to_string(),
            ))
        }
        WaitResult::Timeout | WaitResult::Superseded | WaitResult::Shutdown => {
            status_only(status::EXPIRED)
        }
    })
}

/// The user's folders as they are now, on a pooled session: Ping adds no IMAP connection beyond
/// the user's pool.
async fn fresh_list<B: MailBackend, S: StateStore>(
    gw: &Gateway<B, S>,
    ctx: &Context,
) -> Result<std::sync::Arc<Vec<folders::Resolved>>, CommandError> {
    let mut session = gw
        .sessions
        .get(&ctx.user.credentials, ctx.client_ip)
        .await?;
    folders::list(&gw.store, &gw.folders, &mut *session, &ctx.user.address).await
}
