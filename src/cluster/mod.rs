//! Several gateway nodes on one state store, behind a load balancer that sends each request
//! of a phone to any node.
//!
//! What a node keeps in its own memory and what the nodes share:
//!
//! * **Node identity** ([`ClusterConfig::node_id`], `[cluster] node_id`): names this process
//!   in lease owners and in the events it publishes. The default (host name, process id and a
//!   random part) differs for every start, so a restarted node never mistakes a lease or an
//!   event of its previous life for its own.
//! * **Sync leases** ([`lease`]): the in-process lock of a (user, device, collection) keeps
//!   two requests of one node apart; the store's lease of the same key keeps two nodes apart.
//!   It is taken after the in-process lock, renewed while the collection is synced, and given
//!   back at the end, never while a hanging Sync waits. A node that dies holds it for at most
//!   `lease_ttl_secs`.
//! * **Events** ([`events`]): short text hints over [`crate::state::Cluster::publish`]. A
//!   device's new request on one node ends its waiting Ping or hanging Sync on every other
//!   node (`supersede`), and a device's own change that is not in its sync view (its Sent
//!   Items copy, mails it moved away) is remembered on every node (`own`), so it does not
//!   wake the device's next Ping wherever that Ping waits. A folder created, renamed or
//!   deleted through one node drops the user's cached folder listing on every node
//!   (`folders`).
//!
//! Events are hints only. A node that misses one (its listening connection was being
//! re-established) answers a superseded Ping late, at its heartbeat, or wakes a Ping once for
//! the device's own change: nothing is lost or sent twice, since what a device holds is only
//! ever decided by its committed sync state in the store. Mail changes need no event at all:
//! every node watches the mailboxes of the users waiting on it with its own IMAP watcher
//! ([`crate::push`]), which hears of a new mail whichever node or program put it there.

pub mod config;
pub mod events;
pub mod lease;

pub use config::{ClusterConfig, RawCluster};
pub use events::{device_request, folders_changed, own_change, spawn_bridge};
pub use lease::{leased, Lease};
