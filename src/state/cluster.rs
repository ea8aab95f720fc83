//! What several gateway nodes on one state store need beyond the stored state: a lease so
//! that one node at a time syncs a device's collection, and an event channel so that a node
//! can wake the requests another node holds (a waiting Ping, a hanging Sync).
//!
//! Every [`super::StateStore`] implements [`Cluster`]. The PostgreSQL store keeps leases in a
//! table (expiry by the database's clock) and carries events over `LISTEN`/`NOTIFY`, so they
//! work across nodes. The SQLite store serves one node: its leases and events live in the
//! process (shared by every store handle on the same database file in the process).

use std::future::Future;
use std::time::Duration;

use tokio::sync::broadcast;

use super::StoreError;

/// The largest event payload, in bytes (PostgreSQL's `NOTIFY` takes a little under 8000).
pub const MAX_EVENT_LEN: usize = 4000;

/// How many events a subscriber may fall behind before it misses some
/// ([`broadcast::error::RecvError::Lagged`]).
pub const EVENT_BUFFER: usize = 1024;

/// What a sync lease covers: one collection of one device of one user.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct LeaseKey<'a> {
    pub user: &'a str,
    pub device_id: &'a str,
    pub collection_id: &'a str,
}

/// Primitives for several gateway nodes sharing one store.
///
/// Leases: a node takes the lease of a [`LeaseKey`] before it works on that collection, for
/// `ttl`, renews it while it works (well within `ttl`) and releases it when done. A node
/// that dies leaves the lease held for at most `ttl`; then any node may take it over. The
/// `owner` names the holder (a node and one of its requests) and is compared as an exact
/// string.
///
/// Events: [`Cluster::publish`] sends a short text to every subscriber of every node on the
/// store, the publishing node included; [`Cluster::subscribe`] returns a receiver of those
/// published after the call. Delivery is best effort: an event published while a node's
/// listening connection is being re-established, or more than [`EVENT_BUFFER`] behind a slow
/// subscriber, is not seen there (the subscriber gets
/// [`broadcast::error::RecvError::Lagged`] in the second case). Receivers should therefore
/// treat events as hints ("look again now"), never as the only source of a change. The
/// payloads are the caller's: one line of words such as `wake USER` or
/// `supersede USER DEVICE`, at most [`MAX_EVENT_LEN`] bytes.
pub trait Cluster: Clone + Send + Sync + 'static {
    /// Takes the lease of `key` for `owner` until `ttl` from now: `true` when it was free,
    /// expired, or held by `owner` already (then it is extended); `false` when another owner
    /// holds it.
    fn acquire_lease(
        &self,
        key: LeaseKey<'_>,
        owner: &str,
        ttl: Duration,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// Extends `owner`'s lease of `key` to `ttl` from now: `false` (nothing changed) when
    /// `owner` no longer holds it because another owner took it over or it was released.
    /// A lease that expired but was not taken over is still `owner`'s.
    fn renew_lease(
        &self,
        key: LeaseKey<'_>,
        owner: &str,
        ttl: Duration,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// Gives up `owner`'s lease of `key`; a lease held by another owner is kept.
    fn release_lease(
        &self,
        key: LeaseKey<'_>,
        owner: &str,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Sends `payload` to the subscribers of every node. Fails with
    /// [`StoreError::InvalidInput`] for a payload over [`MAX_EVENT_LEN`] bytes or one with a
    /// NUL byte.
    fn publish(&self, payload: &str) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// A receiver of the events published from now on.
    fn subscribe(&self) -> broadcast::Receiver<String>;
}

/// Checks an event payload (see [`Cluster::publish`]).
pub(crate) fn check_payload(payload: &str) -> Result<(), StoreError> {
    if payload.len() > MAX_EVENT_LEN {
        return Err(StoreError::InvalidInput(format!(
            "event payload of {} bytes (at most {MAX_EVENT_LEN})",
            payload.len()
        )));
    }
    if payload.contains('\0') {
        return Err(StoreError::InvalidInput(
            "event payload with a NUL byte".into(),
        ));
    }
    Ok(())
}

/// Checks a lease's ttl: at most a day (a longer one is a mistake; a dead node would block
/// the collection that long).
pub(crate) fn check_ttl(ttl: Duration) -> Result<i64, StoreError> {
    let ms = ttl.as_millis();
    if ms > 86_400_000 {
        return Err(StoreError::InvalidInput(format!(
            "lease ttl of {} s (at most a day)",
            ttl.as_secs()
        )));
    }
    Ok(ms as i64)
}
