//! MoveItems (MS-ASCMD 2.2.1.12): move mails between folders, and keep the device's views
//! exact.
//!
//! Moves with the same source and destination are done with one UID MOVE. The new ServerId
//! (DstMsgId) comes from COPYUID; a server that reports none for a single moved mail is asked
//! for its UIDNEXT before and after (both under the collection locks). When no new UID can be
//! known the answer is Status 3 without DstMsgId, and the destination's next Sync adds the
//! mail.
//!
//! Exactly once: the device already moved the mail in its own store, so its view of the source
//! collection loses the old UID and its view of the destination (only when it has one) gains
//! the new UID, both rewritten in place under their current keys. The next Sync of the source
//! sends no Delete and the next Sync of the destination no Add (nor a Change for the moved
//! mail's new mod-sequence, when nothing else changed there). Both collection locks are held,
//! in a fixed order, from the move to the view edits, so a concurrent Sync of either folder
//! never sees the move half-recorded.

use std::collections::{BTreeMap, HashMap};

use crate::backend::{BackendError, MailBackend, MailSession};
use crate::eas::move_items::{self as model, status, MoveResult};
use crate::state::StateStore;
use crate::uidset::UidSet;
use crate::wbxml::Element;

use super::collection_view::{flag_bits, View};
use super::draft_versions;
use super::ids::{parse_server_id, server_id};
use super::{folders, CommandError, Context, Gateway, Outcome};

pub async fn handle<B: MailBackend, S: StateStore>(
    gw: &Gateway<B, S>,
    ctx: &Context,
    body: &Element,
) -> Result<Outcome, CommandError> {
    let moves = model::parse(body)?;
    let user = ctx.user.address.as_str();
    let mut session = gw
        .backend
        .login(&ctx.user.credentials, ctx.client_ip)
        .await?;
    let mut results: Vec<MoveResult> = moves
        .iter()
        .map(|m| MoveResult {
            src_msg_id: m.src_msg_id.clone(),
            status: status::FAILURE,
            dst_msg_id: None,
        })
        .collect();
    let run = async {
        // Check every Move and group the valid ones by (source, destination).
        let mut groups: BTreeMap<(String, String), Vec<(usize, u32)>> = BTreeMap::new();
        let mut mailboxes: HashMap<String, String> = HashMap::new();
        for (i, (m, result)) in moves.iter().zip(results.iter_mut()).enumerate() {
            let src = folders::resolve(&gw.store, &gw.folders, &mut session, user, &m.src_fld_id)
                .await?
                .and_then(|r| r.mailbox)
                .filter(|b| b.selectable);
            let uid = parse_server_id(&m.src_fld_id, &m.src_msg_id);
            let (Some(src), Some(uid)) = (src, uid) else {
                result.status = status::INVALID_SOURCE;
                continue;
            };
            let uid = draft_versions::current_uid(
                &gw.store,
                &mut session,
                user,
                &m.src_fld_id,
                &src,
                uid,
            )
            .await?;
            let dst = folders::resolve(&gw.store, &gw.folders, &mut session, user, &m.dst_fld_id)
                .await?
                .and_then(|r| r.mailbox)
                .filter(|b| b.selectable);
            let Some(dst) = dst else {
                result.status = status::INVALID_DESTINATION;
                continue;
            };
            if src.name == dst.name {
                result.status = status::SAME_SOURCE_AND_DESTINATION;
                continue;
            }
            mailboxes.insert(m.src_fld_id.clone(), src.name);
            mailboxes.insert(m.dst_fld_id.clone(), dst.name);
            groups
                .entry((m.src_fld_id.clone(), m.dst_fld_id.clone()))
                .or_default()
                .push((i, uid));
        }
        for ((src_cid, dst_cid), items) in groups {
            let (Some(src), Some(dst)) = (mailboxes.get(&src_cid), mailboxes.get(&dst_cid)) else {
                continue;
            };
            let group = Group {
                src_cid: &src_cid,
                dst_cid: &dst_cid,
                src: src.as_str(),
                dst: dst.as_str(),
            };
            let outcome = move_group(gw, ctx, &mut session, &group, &items).await?;
            for (i, uid) in items {
                let Some(r) = results.get_mut(i) else {
                    continue;
                };
                match &outcome {
                    GroupOutcome::Refused => r.status = status::FAILURE,
                    GroupOutcome::Moved { missing, new_uids } => {
                        if missing.contains(uid) {
                            r.status = status::INVALID_SOURCE;
                        } else {
                            r.status = status::SUCCESS;
                            r.dst_msg_id = new_uids.get(&uid).map(|n| server_id(&dst_cid, *n));
                        }
                    }
                }
            }
        }
        Ok::<(), CommandError>(())
    }
    .await;
    session.logout().await;
    run?;
    Ok(Outcome::Wbxml {
        body: model::response(&results),
        status: results
            .iter()
            .map(|r| r.status)
            .find(|s| *s != status::SUCCESS)
            .or(Some(status::SUCCESS)),
    })
}

struct Group<'a> {
    src_cid: &'a str,
    dst_cid: &'a str,
    src: &'a str,
    dst: &'a str,
}

enum GroupOutcome {
    /// The mail server refused the move: nothing moved.
    Refused,
    /// `missing` were not in the source; the rest moved, with the new UIDs that are known.
    Moved {
        missing: UidSet,
        new_uids: HashMap<u32, u32>,
    },
}

async fn move_group<B: MailBackend, S: StateStore>(
    gw: &Gateway<B, S>,
    ctx: &Context,
    session: &mut B::Session,
    g: &Group<'_>,
    items: &[(usize, u32)],
) -> Result<GroupOutcome, CommandError> {
    let user = ctx.user.address.as_str();
    let device_id = ctx.device_id();
    // The same locks as Sync.
    let _guards = gw
        .locks
        .lock_pair(user, device_id, g.src_cid, g.dst_cid)
        .await;
    let _lease = crate::cluster::Lease::take(
        &gw.store,
        &gw.config.cluster,
        user,
        device_id,
        &[g.src_cid, g.dst_cid],
    )
    .await?;

    let wanted = UidSet::from_uids(items.iter().map(|(_, u)| *u));
    let present = session.existing(g.src, &wanted).await?;
    let missing = wanted.difference(&present);
    let uids: Vec<u32> = present.iter().collect();
    if uids.is_empty() {
        return Ok(GroupOutcome::Moved {
            missing,
            new_uids: HashMap::new(),
        });
    }
    let before = session.status(g.dst).await?;
    let src_before = crate::push::own::before(session, g.src).await;
    let pairs = match session.move_messages(g.src, &uids, g.dst).await {
        Ok(p) => p,
        Err(
            BackendError::Rejected(text)
            | BackendError::NotFound(text)
            | BackendError::Protocol(text),
        ) => {
            tracing::debug!(reason = %text, "the mail server refused a move");
            return Ok(GroupOutcome::Refused);
        }
        Err(e) => return Err(e.into()),
    };
    let mut new_uids: HashMap<u32, u32> = pairs
        .into_iter()
        .filter(|(old, _)| present.contains(*old))
        .collect();
    let after = session.status(g.dst).await?;
    // The source lost the mails by the device's own doing: that must not wake its Ping there.
    if let Some(src_before) = src_before {
        let expected = crate::push::own::Expected {
            appended: None,
            removed: uids.len() as u32,
        };
        if let Some(src_after) =
            crate::push::own::only_ours(session, g.src, src_before, expected).await
        {
            crate::cluster::own_change(gw, user, device_id, g.src, src_before, src_after);
        }
    }
    if let [uid] = uids.as_slice() {
        if new_uids.is_empty()
            && after.uid_validity == before.uid_validity
            && after.uid_next == before.uid_next.wrapping_add(1)
        {
            // No COPYUID: one mail moved and the destination grew by exactly one UID.
            new_uids.insert(*uid, before.uid_next);
        }
    }

    // The device's views: the source loses the moved mails ...
    if let Some(state) = gw
        .store
        .collection_state(user, device_id, g.src_cid)
        .await?
    {
        if let Some(mut view) = View::decode(&state.current) {
            let mut changed = false;
            for u in &uids {
                changed |= view.uids.contains(*u);
                view.uids.remove(*u);
                if let Some(f) = view.flags.as_mut() {
                    f.remove(u);
                }
            }
            if changed {
                gw.store
                    .commit_collection(user, device_id, g.src_cid, &view.encode(), None)
                    .await?;
            }
        }
    }
    // ... and the destination, when the device has synced it, gains them.
    if !new_uids.is_empty() {
        if let Some(state) = gw
            .store
            .collection_state(user, device_id, g.dst_cid)
            .await?
        {
            if let Some(view) = View::decode(&state.current) {
                let added = UidSet::from_uids(new_uids.values().copied());
                if let Some(view) = destination_view(session, g.dst, view, &added, after).await? {
                    gw.store
                        .commit_collection(user, device_id, g.dst_cid, &view.encode(), None)
                        .await?;
                }
            }
        }
    }
    Ok(GroupOutcome::Moved { missing, new_uids })
}

/// The destination view with the moved mails added (those inside its FilterType window), and
/// its mod-sequence moved past them when nothing else changed; `None` when it stays as it is.
async fn destination_view<M: MailSession>(
    session: &mut M,
    mailbox: &str,
    mut view: View,
    added: &UidSet,
    state: crate::backend::MailboxState,
) -> Result<Option<View>, CommandError> {
    if view.uid_validity != state.uid_validity || view.key == 0 {
        // The device must resync this folder anyway.
        return Ok(None);
    }
    let metas = session.fetch_meta(mailbox, added, None).await?;
    let mut changed = false;
    for m in &metas {
        if view
            .filter_start
            .is_some_and(|start| m.internal_date < start)
        {
            continue;
        }
        view.uids.insert(m.uid);
        if let Some(f) = view.flags.as_mut() {
            f.insert(m.uid, flag_bits(m));
        }
        changed = true;
    }
    if !changed {
        return Ok(None);
    }
    // The moved mails carry mod-sequences above the view's: without this the next Sync would
    // report them as flag Changes. Only safe when no mail the device holds changed meanwhile.
    if view.flags.is_none() && view.highest_modseq > 0 && state.highest_modseq > view.highest_modseq
    {
        let since = session
            .fetch_meta(mailbox, &view.uids, Some(view.highest_modseq))
            .await?;
        if since.iter().all(|m| added.contains(m.uid)) {
            view.highest_modseq = state.highest_modseq;
        }
    }
    Ok(Some(view))
}
