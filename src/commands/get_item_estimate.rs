//! GetItemEstimate (MS-ASCMD 2.2.1.9): for each collection, the number of changes (Adds,
//! Deletes, SoftDeletes, flag Changes) the next Sync with that key would send in total, computed
//! exactly as Sync computes them but without a window limit and without writing any state.
//!
//! The key may be the current or the previous one (as Sync accepts); key 0 is Status 3 (not
//! primed), an unknown key Status 4. The FilterType comes from the request, else from the Sync
//! Options cached for the collection.

use bytes::Bytes;

use crate::backend::{MailBackend, MailSession};
use crate::eas::get_item_estimate::{self as model, status, Estimate, EstimateRequest};
use crate::eas::sync::{filter_days, SyncOptions};
use crate::state::StateStore;
use crate::uidset::UidSet;
use crate::wbxml::{self, Element, Limits};

use super::sync::server_changes;
use super::sync::view::{window_start, View};
use super::{folders, CommandError, Context, Gateway, Outcome};

pub async fn handle<B: MailBackend, S: StateStore>(
    gw: &Gateway<B, S>,
    ctx: &Context,
    body: &Element,
) -> Result<Outcome, CommandError> {
    let cols = model::parse(body)?;
    let mut session = gw
        .backend
        .login(&ctx.user.credentials, ctx.client_ip)
        .await?;
    let mut out = Vec::with_capacity(cols.len());
    let mut result = Ok(());
    for col in &cols {
        match estimate(gw, ctx, &mut session, col).await {
            Ok(e) => out.push(e),
            Err(e) => {
                result = Err(e);
                break;
            }
        }
    }
    session.logout().await;
    result?;
    Ok(Outcome::Wbxml {
        body: model::response(&out),
        status: out.iter().map(|e| e.status).max(),
    })
}

async fn estimate<B: MailBackend, S: StateStore>(
    gw: &Gateway<B, S>,
    ctx: &Context,
    session: &mut B::Session,
    col: &EstimateRequest,
) -> Result<Estimate, CommandError> {
    let user = ctx.user.address.as_str();
    let device_id = ctx.device_id();
    let cid = col.collection_id.as_str();
    let answer = |status: u32, estimate: Option<u64>| Estimate {
        collection_id: cid.to_string(),
        status,
        estimate,
    };
    let Some(resolved) = folders::resolve(&gw.store, &gw.folders, session, user, cid).await? else {
        return Ok(answer(status::INVALID_COLLECTION, None));
    };
    if col.sync_key == "0" {
        return Ok(answer(status::NOT_PRIMED, None));
    }
    let Some(state) = gw.store.collection_state(user, device_id, cid).await? else {
        return Ok(answer(status::INVALID_SYNC_KEY, None));
    };
    let key: Option<u32> = col.sync_key.parse().ok();
    let held = match key {
        Some(k) if k == state.current.key => &state.current,
        Some(k) => match state.previous.as_ref().filter(|p| p.key == k) {
            Some(p) => p,
            None => return Ok(answer(status::INVALID_SYNC_KEY, None)),
        },
        None => return Ok(answer(status::INVALID_SYNC_KEY, None)),
    };
    let Some(held) = View::decode(held) else {
        return Ok(answer(status::INVALID_SYNC_KEY, None));
    };

    // The filter: from the request, else the collection's cached Sync Options.
    let filter_type = match (&col.options, col.filter_type) {
        (Some(o), _) => SyncOptions::from_element(o).map(|o| o.filter_type).ok(),
        (None, Some(f)) => Some(f),
        (None, None) => state
            .options
            .as_ref()
            .and_then(|b| wbxml::decode(Bytes::from(b.clone()), &Limits::default()).ok())
            .and_then(|e| SyncOptions::from_element(&e).ok())
            .map(|o| o.filter_type),
    }
    .unwrap_or(0);
    let window = window_start(filter_days(filter_type), ctx.now);

    let Some(mailbox) = resolved.mailbox.filter(|m| m.selectable) else {
        return Ok(answer(status::SUCCESS, Some(0)));
    };
    // Nothing changed since the view: one STATUS.
    if held.flags.is_none()
        && !held.more_available
        && held.highest_modseq > 0
        && held.filter_start == window
    {
        let st = session.status(&mailbox.name).await?;
        if st.uid_validity == held.uid_validity && st.highest_modseq == held.highest_modseq {
            return Ok(answer(status::SUCCESS, Some(0)));
        }
    }
    let mstate = session.select(&mailbox.name).await?;
    if mstate.uid_validity != held.uid_validity {
        // The next Sync will ask the device to start over.
        return Ok(answer(status::INVALID_SYNC_KEY, None));
    }
    let since = server_changes::Since {
        held: &held,
        state: mstate,
        window,
        touched: &UidSet::new(),
        limit: usize::MAX,
    };
    let changes = server_changes::compute(session, &mailbox.name, since, None).await?;
    Ok(answer(status::SUCCESS, Some(changes.total() as u64)))
}
