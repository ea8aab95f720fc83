//! The device's committed view of one collection (what a sync key stands for), as the other
//! commands need it: GetItemEstimate counts what the next Sync would send, MoveItems amends
//! the views of the folders it moves between.
//!
//! The view's format and the change computation belong to Sync ([`crate::commands::sync`]);
//! this is the one door to them from outside Sync. Small pure rules of a view (flag bits,
//! FilterType window) live here.

use crate::backend::{MailSession, MailboxState, MessageMeta};
use crate::commands::sync::server_changes;
use crate::commands::CommandError;
use crate::uidset::UidSet;

pub use crate::commands::sync::view::View;

pub const SEEN: u8 = 1;
pub const FLAGGED: u8 = 2;
pub const ANSWERED: u8 = 4;
pub const FORWARDED: u8 = 8;

/// The flag bits a device sees, from IMAP flags.
pub fn flag_bits(meta: &MessageMeta) -> u8 {
    let mut b = 0;
    if meta.has_flag("\\Seen") {
        b |= SEEN;
    }
    if meta.has_flag("\\Flagged") {
        b |= FLAGGED;
    }
    if meta.has_flag("\\Answered") {
        b |= ANSWERED;
    }
    if meta.has_flag("$Forwarded") {
        b |= FORWARDED;
    }
    b
}

/// Start of the FilterType window: `days` before `now`, rounded down to midnight UTC so the
/// window moves once a day rather than on every request.
pub fn window_start(days: Option<u32>, now: i64) -> Option<i64> {
    let days = i64::from(days?);
    let start = now - days * 86_400;
    Some(start - start.rem_euclid(86_400))
}

/// How many changes (Adds, Deletes, SoftDeletes, flag Changes) the next Sync from `held`
/// would send in all, computed as Sync computes them, with no window limit and nothing
/// written. `state` is the folder as just selected (same UIDVALIDITY as `held`).
pub async fn pending_changes<M: MailSession>(
    session: &mut M,
    mailbox: &str,
    held: &View,
    state: MailboxState,
    window: Option<i64>,
) -> Result<usize, CommandError> {
    let since = server_changes::Since {
        held,
        state,
        window,
        touched: &UidSet::new(),
        limit: usize::MAX,
    };
    let changes = server_changes::compute(session, mailbox, since, None).await?;
    Ok(changes.total())
}
