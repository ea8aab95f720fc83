//! [`Cluster`] for the SQLite store: one node, so leases and events live in the process.
//!
//! Every store handle on the same database file (by canonical path) in the process shares
//! one set of leases and one event channel, as two nodes on one PostgreSQL database do. All
//! in-memory stores of a process share one set too (they have no name to tell them apart;
//! they are meant for tests and throw-away runs). Gateway processes that share one SQLite
//! file do not see each other's leases or events: several nodes need the PostgreSQL store.

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use tokio::sync::broadcast;

use super::cluster::{check_payload, check_ttl, Cluster, LeaseKey, EVENT_BUFFER};
use super::{SqliteStore, StoreError};

/// Past this many leases in one database's set, expired ones are dropped on the next take.
const PRUNE_ABOVE: usize = 1024;

type Key = (String, String, String);

/// The leases and the event channel of one database.
struct Local {
    leases: HashMap<Key, (String, Instant)>,
    events: broadcast::Sender<String>,
}

fn registry() -> &'static Mutex<HashMap<String, Local>> {
    static REGISTRY: OnceLock<Mutex<HashMap<String, Local>>> = OnceLock::new();
    REGISTRY.get_or_init(Default::default)
}

fn key(k: LeaseKey<'_>) -> Key {
    (k.user.into(), k.device_id.into(), k.collection_id.into())
}

impl SqliteStore {
    /// The name of the store's lease set and event channel: the canonical database path.
    fn space(&self) -> String {
        let location = self.location();
        if location == ":memory:" {
            return location.to_owned();
        }
        std::fs::canonicalize(location)
            .map(|p| p.display().to_string())
            .unwrap_or_else(|_| location.to_owned())
    }

    /// Runs `f` on the store's [`Local`] (created on first use).
    fn with_local<T>(&self, f: impl FnOnce(&mut Local) -> T) -> T {
        let space = self.space();
        // Nothing below panics while the lock is held; a poisoned lock still holds
        // consistent maps.
        let mut all = registry().lock().unwrap_or_else(PoisonError::into_inner);
        let local = all.entry(space).or_insert_with(|| Local {
            leases: HashMap::new(),
            events: broadcast::channel(EVENT_BUFFER).0,
        });
        f(local)
    }
}

impl Cluster for SqliteStore {
    async fn acquire_lease(
        &self,
        key: LeaseKey<'_>,
        owner: &str,
        ttl: Duration,
    ) -> Result<bool, StoreError> {
        check_ttl(ttl)?;
        let now = Instant::now();
        let until = now + ttl;
        let key = self::key(key);
        Ok(self.with_local(|local| {
            if local.leases.len() > PRUNE_ABOVE {
                local.leases.retain(|_, (_, t)| *t > now);
            }
            match local.leases.get_mut(&key) {
                Some((holder, t)) if holder != owner && *t > now => false,
                Some((holder, t)) => {
                    owner.clone_into(holder);
                    *t = until;
                    true
                }
                None => {
                    local.leases.insert(key, (owner.to_owned(), until));
                    true
                }
            }
        }))
    }

    async fn renew_lease(
        &self,
        key: LeaseKey<'_>,
        owner: &str,
        ttl: Duration,
    ) -> Result<bool, StoreError> {
        check_ttl(ttl)?;
        let until = Instant::now() + ttl;
        let key = self::key(key);
        Ok(self.with_local(|local| match local.leases.get_mut(&key) {
            Some((holder, t)) if holder == owner => {
                *t = until;
                true
            }
            _ => false,
        }))
    }

    async fn release_lease(&self, key: LeaseKey<'_>, owner: &str) -> Result<(), StoreError> {
        let key = self::key(key);
        self.with_local(|local| {
            if local
                .leases
                .get(&key)
                .is_some_and(|(holder, _)| holder == owner)
            {
                local.leases.remove(&key);
            }
        });
        Ok(())
    }

    async fn publish(&self, payload: &str) -> Result<(), StoreError> {
        check_payload(payload)?;
        // No subscriber is no error: nobody waits for this event.
        let _ = self.with_local(|local| local.events.send(payload.to_owned()));
        Ok(())
    }

    fn subscribe(&self) -> broadcast::Receiver<String> {
        self.with_local(|local| local.events.subscribe())
    }
}
