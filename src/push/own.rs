//! A device's own changes that are not in its sync view: the Sent Items copy of a mail it sent,
//! the mails it moved out of a folder with MoveItems.
//!
//! Such a change moves the folder's HIGHESTMODSEQ past the baseline of the device's view, so on
//! its own it would wake the device's next Ping at once, for nothing the device does not know
//! already. Around the change the command reads the folder's state before and after
//! ([`before`], [`only_ours`]); when the change proves to be the only one in between, the hub
//! remembers "from mod-sequence `before` to `after` was this device" ([`Hub::own_change`]),
//! and a wait of that device starting from a baseline of `before` starts from `after`
//! instead. The view itself is left alone, so the next Sync still sends whatever the device
//! does not hold (the Sent copy). Anything else that changed in between leaves no mark: the
//! device is woken as before, never kept from a change it did not make.

use crate::backend::{MailSession, MailboxState};
use crate::uidset::UidSet;

use super::Hub;

/// Most marks kept per device and mailbox (a chain of recent own changes).
const MAX_MARKS: usize = 8;
/// Most (device, mailbox) pairs with marks.
const MAX_KEYS: usize = 65_536;

/// "From `before` to `after`, the folder changed only by this device."
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Mark {
    pub uid_validity: u32,
    pub before: u64,
    pub after: u64,
}

/// The folder's state before an own change; `None` when it cannot be read or the server has
/// no mod-sequences (then nothing is recorded).
pub async fn before<M: MailSession>(session: &mut M, mailbox: &str) -> Option<MailboxState> {
    match session.status(mailbox).await {
        Ok(st) if st.highest_modseq > 0 => Some(st),
        _ => None,
    }
}

/// What an own change did to a folder.
#[derive(Debug, Clone, Copy, Default)]
pub struct Expected {
    /// The UID of the one mail it appended, if any.
    pub appended: Option<u32>,
    /// How many mails it expunged or moved away.
    pub removed: u32,
}

/// The folder's state after an own change, when nothing but that change happened since
/// `before`: no other mail came or went (UIDNEXT and the message count moved by exactly the
/// change) and no mail other than an appended one has a mod-sequence above `before`'s.
pub async fn only_ours<M: MailSession>(
    session: &mut M,
    mailbox: &str,
    before: MailboxState,
    expected: Expected,
) -> Option<MailboxState> {
    let after = session.status(mailbox).await.ok()?;
    let added = u32::from(expected.appended.is_some());
    let counts = after.uid_validity == before.uid_validity
        && after.highest_modseq > before.highest_modseq
        && after.uid_next == before.uid_next.checked_add(added)?
        && expected.appended.is_none_or(|u| u == before.uid_next)
        && Some(after.messages) == (before.messages + added).checked_sub(expected.removed);
    if !counts {
        return None;
    }
    if after.uid_next > 1 {
        let all = UidSet::parse(&format!("1:{}", after.uid_next - 1)).ok()?;
        let changed = session
            .fetch_meta(mailbox, &all, Some(before.highest_modseq))
            .await
            .ok()?;
        if changed.iter().any(|m| Some(m.uid) != expected.appended) {
            return None;
        }
    }
    Some(after)
}

impl Hub {
    /// Records that from `before` to `after` the device alone changed `mailbox` (see the module
    /// documentation).
    pub fn own_change(
        &self,
        user: &str,
        device_id: &str,
        mailbox: &str,
        before: MailboxState,
        after: MailboxState,
    ) {
        if before.highest_modseq == 0 || after.highest_modseq <= before.highest_modseq {
            return;
        }
        let mark = Mark {
            uid_validity: after.uid_validity,
            before: before.highest_modseq,
            after: after.highest_modseq,
        };
        // Devices that never wait again leave their marks behind: a bound keeps that small
        // (a mark lost costs at most one needless wake-up).
        if self.inner.own.len() >= MAX_KEYS {
            self.inner.own.clear();
        }
        let mut marks = self
            .inner
            .own
            .entry(own_key(user, device_id, mailbox))
            .or_default();
        marks.push(mark);
        if marks.len() > MAX_MARKS {
            marks.remove(0);
        }
    }

    /// The mod-sequence a wait of the device on `mailbox` starts from: `modseq` carried past
    /// the device's own recorded changes that follow on from it.
    pub(crate) fn past_own_changes(
        &self,
        user: &str,
        device_id: &str,
        mailbox: &str,
        uid_validity: u32,
        modseq: u64,
    ) -> u64 {
        if modseq == 0 {
            return 0;
        }
        let key = own_key(user, device_id, mailbox);
        let Some(mut marks) = self.inner.own.get_mut(&key) else {
            return modseq;
        };
        // Marks the device's view has gone past are of no more use.
        marks.retain(|m| m.uid_validity == uid_validity && m.after > modseq);
        let mut at = modseq;
        while let Some(m) = marks.iter().find(|m| m.before == at) {
            at = m.after;
        }
        let empty = marks.is_empty();
        drop(marks);
        if empty {
            self.inner.own.remove_if(&key, |_, v| v.is_empty());
        }
        at
    }
}

fn own_key(user: &str, device_id: &str, mailbox: &str) -> String {
    format!(
        "{user}\u{0}{device_id}\u{0}{}",
        crate::backend::imap_idle::mailbox_key(mailbox)
    )
}
