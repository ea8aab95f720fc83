//! Ping (MS-ASCMD 2.2.1.13): wait until a watched folder changes or the heartbeat ends.
//!
//! The request's folders are resolved to IMAP mailboxes, and each folder the device has synced
//! gets its baseline from the device's committed view; the waiting itself is the push hub's
//! ([`crate::push::Hub::wait_for_changes`]). Folders the device never synced are not watched
//! (they do not make the Ping fail either); a folder id that does not exist answers Status 7.
//!
//! The device's last interval and folders are kept by the hub in memory, so an empty Ping after
//! a gateway restart answers Status 3 and the device sends its full request again.

use std::time::Duration;

use tokio::time::Instant;
use tracing::debug;

use crate::backend::{MailBackend, MailSession};
use crate::eas::ping::{status, PingRequest, PingResponse};
use crate::push::{Baseline, PingParams, WaitRequest, WaitResult, Watched};
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

    // Missing parts come from the device's last Ping.
    let last = hub.ping_params(user, device_id);
    let heartbeat = request
        .heartbeat_interval
        .or_else(|| last.as_ref().map(|l| l.heartbeat_secs));
    let requested = request
        .folders
        .map(|fs| fs.into_iter().map(|f| (f.id, f.class)).collect::<Vec<_>>());
    let watch = requested.or_else(|| last.map(|l| l.folders));
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
    hub.set_ping_params(
        user,
        device_id,
        PingParams {
            heartbeat_secs: heartbeat,
            folders: watch.clone(),
        },
    );

    // Folder ids -> mailboxes: the cached listing, else one fresh listing.
    let cached = gw.folders.cached(user);
    let all_known = cached.as_ref().is_some_and(|list| {
        watch
            .iter()
            .all(|(id, _)| list.iter().any(|r| &r.server_id == id))
    });
    let list = match cached {
        Some(list) if all_known => list,
        _ => {
            let mut session = gw
                .backend
                .login(&ctx.user.credentials, ctx.client_ip)
                .await?;
            let listed = folders::list(&gw.store, &gw.folders, &mut session, user).await;
            session.logout().await;
            listed?
        }
    };
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
        let state = match gw.store.collection_state(user, device_id, id).await {
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

    let result = hub
        .wait_for_changes(WaitRequest {
            user: user.to_string(),
            device_id: device_id.to_string(),
            credentials: ctx.user.credentials.clone(),
            folders: folders_to_watch,
            deadline: Instant::now() + Duration::from_secs(u64::from(heartbeat)),
        })
        .await;
    debug!(result = ?result, "Ping ended");
    Ok(match result {
        WaitResult::Changed(ids) => answer(PingResponse::changes(ids)),
        WaitResult::FolderGone(_) => {
            folders::forget(&gw.folders, user);
            status_only(status::FOLDER_SYNC_REQUIRED)
        }
        WaitResult::Timeout | WaitResult::Superseded | WaitResult::Shutdown => {
            status_only(status::EXPIRED)
        }
    })
}
