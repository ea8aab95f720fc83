//! Which supersede from another node may end a waiting request here.
//!
//! Every request of a device publishes `supersede NODE USER DEVICE TOKEN`
//! ([`crate::cluster::events`]), and a node that hears another node's supersede ends the
//! device's waiting Ping or hanging Sync. Events are hints and may arrive late: a supersede
//! published on node B for the device's request there can reach node A after the device's
//! *next* request (a new Ping, on A) began waiting, and must not end that newer wait.
//!
//! PostgreSQL delivers notifications to a listener in the order their transactions
//! committed, on one stream for all nodes, the publishing node's own included. So the order
//! of a device's requests across nodes is the order of their supersede events on that
//! stream, and a node can tell "older" from "newer" by its own request's event: a remote
//! supersede heard *before* the own event of the device's latest request here was committed
//! before it (it belongs to an older request and ends nothing here); one heard *after* it was
//! committed after it (a newer request elsewhere: the wait here ends).
//!
//! The hub therefore keeps, per device, the token of its latest request on this node while
//! that request's own event has not come back ([`Hub::local_request`]). While it is pending,
//! remote supersedes are ignored; once [`Hub::own_supersede_heard`] sees it, the entry goes
//! and the device's wait is remotely supersedable again ([`Hub::remote_supersede`]).
//!
//! Fallbacks, so that a lost event never leaves a wait deaf to newer requests elsewhere for
//! longer than a moment: a request whose event could not be published counts as heard at
//! once (the caller reports it), the whole table is dropped when this node missed events
//! ([`Hub::remote_order_lost`]: it fell behind the stream), and an own event that has not come
//! back within [`OWN_EVENT_GRACE`] (the listening connection is being re-established) counts
//! as heard. In these cases a late supersede can end a newer wait, as before: the device sees
//! its Ping answered early and pings again; nothing is lost.
//!
//! Two requests of one device are normally seconds apart (a device waits for one answer
//! before it sends the next, or gives up a Ping after its heartbeat), so the few milliseconds
//! a request's publication takes do not reorder them.
//!
//! [`Hub::local_request`]: super::Hub::local_request
//! [`Hub::own_supersede_heard`]: super::Hub::own_supersede_heard
//! [`Hub::remote_supersede`]: super::Hub::remote_supersede
//! [`Hub::remote_order_lost`]: super::Hub::remote_order_lost

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use dashmap::DashMap;
use tokio::time::Instant;

/// How long a request's own supersede event may take to come back before supersedes from
/// other nodes end its wait anyway (NOTIFY takes milliseconds; this covers a listening
/// connection being re-established).
pub const OWN_EVENT_GRACE: Duration = Duration::from_secs(10);

/// Pending entries beyond which expired ones are swept (a node whose events never come back,
/// such as one running without a bridge, keeps no more than this).
const SWEEP_ABOVE: usize = 4096;

/// The devices whose latest request here has not heard its own event yet.
pub(super) struct Order {
    /// "user\0device" -> (token, when the request began).
    pending: DashMap<String, (u64, Instant)>,
    next: AtomicU64,
}

impl Default for Order {
    fn default() -> Self {
        Order {
            pending: DashMap::new(),
            // A node restarted under the same node id does not take its old tokens for new.
            next: AtomicU64::new(rand::random::<u64>() >> 2),
        }
    }
}

impl Order {
    /// A new request of the device: its token, pending until heard.
    pub(super) fn begin(&self, key: String) -> u64 {
        let token = self.next.fetch_add(1, Ordering::Relaxed);
        let now = Instant::now();
        self.pending.insert(key, (token, now));
        if self.pending.len() > SWEEP_ABOVE {
            self.pending
                .retain(|_, (_, since)| now.duration_since(*since) < OWN_EVENT_GRACE);
        }
        token
    }

    /// The event of the request with `token` came back (or will never come): later remote
    /// supersedes count. A token of an older request changes nothing.
    pub(super) fn heard(&self, key: &str, token: u64) {
        self.pending.remove_if(key, |_, (t, _)| *t == token);
    }

    /// Whether a remote supersede heard now is older than the device's latest request here.
    pub(super) fn blocks(&self, key: &str) -> bool {
        self.blocks_at(key, Instant::now())
    }

    /// [`Order::blocks`] at `now`.
    pub(super) fn blocks_at(&self, key: &str, now: Instant) -> bool {
        let expired = |since: &Instant| now.saturating_duration_since(*since) >= OWN_EVENT_GRACE;
        let gone = match self.pending.get(key) {
            None => return false,
            Some(entry) => expired(&entry.1),
        };
        if gone {
            self.pending.remove_if(key, |_, (_, since)| expired(since));
        }
        !gone
    }

    /// Events were missed: the order is unknown, every remote supersede counts.
    pub(super) fn clear(&self) {
        self.pending.clear();
    }
}
