//! Server -> device: what changed in a mailbox since the device's view.
//!
//! Adds are mails in the window that the device does not hold (newest first: highest UID
//! first); Deletes are mails it holds that were expunged or moved away; SoftDeletes are mails
//! it holds that aged out of its FilterType window (ageing changes no MODSEQ, so the window's
//! start is compared too); Changes are flag changes since the view's HIGHESTMODSEQ (CONDSTORE),
//! or by comparing flag bits where the server has no mod-sequences.

use std::collections::HashMap;

use crate::backend::{BackendError, MailSession, MailboxState, MessageMeta};
use crate::uidset::UidSet;

use super::view::{flag_bits, View};

/// The changes to send, already cut to the window size, and the view the device will hold
/// once it has them.
#[derive(Debug, Default)]
pub struct Changes {
    pub deletes: Vec<u32>,
    pub soft_deletes: Vec<u32>,
    pub changes: Vec<MessageMeta>,
    /// UIDs to add, newest first.
    pub adds: Vec<u32>,
    /// Changes that did not fit.
    pub pending: usize,
    pub new_view: Option<View>,
}

impl Changes {
    pub fn is_empty(&self) -> bool {
        self.deletes.is_empty()
            && self.soft_deletes.is_empty()
            && self.changes.is_empty()
            && self.adds.is_empty()
    }

    pub fn total(&self) -> usize {
        self.deletes.len()
            + self.soft_deletes.len()
            + self.changes.len()
            + self.adds.len()
            + self.pending
    }
}

/// Computes the changes. `state` is the mailbox state from a SELECT made after the device's
/// own changes were applied; `touched` are UIDs the device changed in this request (they are
/// not echoed back). `limit` caps the number of changes sent.
pub async fn compute<M: MailSession>(
    session: &mut M,
    mailbox: &str,
    held: &View,
    state: MailboxState,
    window: Option<i64>,
    touched: &UidSet,
    limit: usize,
) -> Result<Changes, BackendError> {
    let current = session.search_since(mailbox, window).await?;
    let gone = held.uids.difference(&current);
    let (soft, hard) = if gone.is_empty() {
        (UidSet::new(), UidSet::new())
    } else if window.is_some() {
        let still_there = session.existing(mailbox, &gone).await?;
        (
            gone.intersection(&still_there),
            gone.difference(&still_there),
        )
    } else {
        (UidSet::new(), gone)
    };
    let kept = held.uids.intersection(&current);

    // Flag changes.
    let mut flag_updates: HashMap<u32, u8> = HashMap::new();
    let changed: Vec<MessageMeta> = match &held.flags {
        None => {
            if state.highest_modseq > held.highest_modseq && !kept.is_empty() {
                session
                    .fetch_meta(mailbox, &kept, Some(held.highest_modseq))
                    .await?
            } else {
                Vec::new()
            }
        }
        Some(old) => {
            let metas = if kept.is_empty() {
                Vec::new()
            } else {
                session.fetch_meta(mailbox, &kept, None).await?
            };
            metas
                .into_iter()
                .filter(|m| {
                    let bits = flag_bits(m);
                    flag_updates.insert(m.uid, bits);
                    old.get(&m.uid).copied() != Some(bits)
                })
                .collect()
        }
    };
    let changed: Vec<MessageMeta> = changed
        .into_iter()
        .filter(|m| !touched.contains(m.uid))
        .collect();

    // Cut everything to the window: deletions and flag changes first (small), then adds.
    let mut out = Changes::default();
    let mut budget = limit;
    let mut take = |n: usize| {
        let t = n.min(budget);
        budget -= t;
        t
    };
    let hard: Vec<u32> = hard.iter().collect();
    let n = take(hard.len());
    out.deletes = hard[..n].to_vec();
    out.pending += hard.len() - n;
    let soft: Vec<u32> = soft.iter().collect();
    let n = take(soft.len());
    out.soft_deletes = soft[..n].to_vec();
    out.pending += soft.len() - n;
    let n = take(changed.len());
    let all_changes_sent = n == changed.len();
    out.pending += changed.len() - n;
    out.changes = changed.into_iter().take(n).collect();
    let adds_all: Vec<u32> = current.difference(&held.uids).iter().rev().collect();
    let n = take(adds_all.len());
    out.adds = adds_all[..n].to_vec();
    out.pending += adds_all.len() - n;

    // The view the device will hold after this response.
    let mut uids = held.uids.clone();
    for u in out.deletes.iter().chain(out.soft_deletes.iter()) {
        uids.remove(*u);
    }
    uids = uids.union(&UidSet::from_uids(out.adds.iter().copied()));
    let flags = held.flags.as_ref().map(|old| {
        let mut map: HashMap<u32, u8> = old
            .iter()
            .filter(|(u, _)| uids.contains(**u))
            .map(|(u, b)| (*u, *b))
            .collect();
        for m in &out.changes {
            map.insert(m.uid, flag_bits(m));
        }
        for u in touched.iter() {
            if let Some(b) = flag_updates.get(&u) {
                map.insert(u, *b);
            }
        }
        map
    });
    out.new_view = Some(View {
        key: held.key,
        uid_validity: state.uid_validity,
        uids,
        highest_modseq: if all_changes_sent {
            state.highest_modseq
        } else {
            held.highest_modseq
        },
        flags,
        filter_start: window,
        more_available: out.pending > 0,
    });
    Ok(out)
}
