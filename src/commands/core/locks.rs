//! One lock per (user, device, collection): Sync, MoveItems and the folder commands take it
//! before they read and commit a collection's (or the hierarchy's) state. Never held while a
//! request waits for changes.

use std::sync::Arc;

use dashmap::DashMap;
use tokio::sync::{Mutex, OwnedMutexGuard};

use super::gateway::collection_key;

/// The collection key of the folder hierarchy (FolderSync, FolderCreate/Update/Delete).
const HIERARCHY: &str = "\u{0}hierarchy";

#[derive(Default)]
pub struct CollectionLocks {
    map: DashMap<String, Arc<Mutex<()>>>,
}

impl CollectionLocks {
    /// Waits for the lock of one collection of a device.
    pub async fn lock(&self, user: &str, device: &str, collection: &str) -> OwnedMutexGuard<()> {
        self.handle(collection_key(user, device, collection))
            .lock_owned()
            .await
    }

    /// Waits for the locks of two collections, taken in a fixed order (so two requests
    /// locking the same pair never wait for each other). The same collection twice is
    /// locked once.
    pub async fn lock_pair(
        &self,
        user: &str,
        device: &str,
        a: &str,
        b: &str,
    ) -> (OwnedMutexGuard<()>, Option<OwnedMutexGuard<()>>) {
        let mut keys = [
            collection_key(user, device, a),
            collection_key(user, device, b),
        ];
        keys.sort();
        let first = self.handle(keys[0].clone()).lock_owned().await;
        if keys[0] == keys[1] {
            return (first, None);
        }
        let second = self.handle(keys[1].clone()).lock_owned().await;
        (first, Some(second))
    }

    /// Waits for the lock of a device's folder hierarchy.
    pub async fn lock_hierarchy(&self, user: &str, device: &str) -> OwnedMutexGuard<()> {
        self.lock(user, device, HIERARCHY).await
    }

    fn handle(&self, key: String) -> Arc<Mutex<()>> {
        self.map.entry(key).or_default().clone()
    }

    /// Drops the locks nobody holds or waits for (each is created again when needed).
    pub fn sweep(&self) {
        self.map.retain(|_, lock| Arc::strong_count(lock) > 1);
    }
}
