//! The gateway a command runs against: backend, sessions, store, config, policy, caches.

use std::sync::Arc;

use sha2::{Digest, Sha256};

use crate::backend::pool::{PoolConfig, SessionPool};
use crate::backend::MailBackend;
use crate::commands::folders;
use crate::commands::sync::SyncCaches;
use crate::config::Config;
use crate::eas::provision::PolicyDocument;
use crate::state::StateStore;

use super::CollectionLocks;

/// Everything a command needs that outlives a request: the backend, the store, the config.
pub struct Gateway<B: MailBackend, S> {
    pub backend: B,
    /// Logged-in mail sessions, per user, reused across requests.
    pub sessions: SessionPool<B>,
    pub store: S,
    pub config: Arc<Config>,
    /// The policy sent by Provision, and a short hash of it: a device that acknowledged another
    /// hash must provision again.
    pub policy: PolicyDocument,
    pub policy_hash: String,
    /// The last folder listing per user.
    pub folders: folders::FolderCache,
    /// One lock per (user, device, collection): a phone retrying while its first request still
    /// runs must not read a half-written view.
    pub locks: CollectionLocks,
    /// What Sync keeps between requests.
    pub sync: SyncCaches,
    /// Waiting Pings and hanging Syncs, and the per-user IMAP watchers behind them.
    pub push: crate::push::Hub,
}

impl<B: MailBackend, S: StateStore> Gateway<B, S> {
    pub fn new(backend: B, store: S, config: Arc<Config>) -> Gateway<B, S> {
        let p = &config.policy;
        let policy = PolicyDocument {
            password_enabled: p.require_password,
            alphanumeric_password: p.alphanumeric_password,
            min_password_length: p.min_password_length,
            allow_simple_password: p.allow_simple_password,
            max_inactivity_lock_secs: p.max_inactivity_lock_secs,
            max_password_failures: p.max_password_failures,
            require_device_encryption: p.require_device_encryption,
            allow_camera: p.allow_camera,
            allow_storage_card: p.allow_storage_card,
        };
        let digest = Sha256::digest(format!("{policy:?}").as_bytes());
        let policy_hash = hex::encode(digest.get(..8).unwrap_or_default());
        let sessions = SessionPool::new(
            backend.clone(),
            PoolConfig {
                idle_ttl: config.imap_session_idle,
                ..PoolConfig::default()
            },
        );
        // With push events, waits read mailbox states on pooled sessions.
        let push = crate::push::Hub::with_events(
            config.push.clone(),
            config.imap.clone(),
            Arc::new(sessions.clone()),
        );
        Gateway {
            push,
            sessions,
            backend,
            store,
            config,
            policy,
            policy_hash,
            folders: folders::FolderCache::default(),
            locks: CollectionLocks::default(),
            sync: SyncCaches::default(),
        }
    }

    /// Drops the collection locks nobody holds or waits for (each lock is created again on the
    /// next request that needs it), and Sync's read-aheads nobody came back for.
    pub fn sweep_locks(&self) {
        self.locks.sweep();
        self.sync.sweep();
    }
}

/// The key of a per-device map entry.
pub fn device_key(user: &str, device_id: &str) -> String {
    format!("{user}\u{0}{device_id}")
}

/// The key of a per-(device, collection) map entry or lock: Sync and MoveItems lock the same
/// collection through it.
pub fn collection_key(user: &str, device_id: &str, collection: &str) -> String {
    format!("{user}\u{0}{device_id}\u{0}{collection}")
}
