//! [`Store`]: the state store a configuration names, SQLite or PostgreSQL.

use std::time::Duration;

use tokio::sync::broadcast;

use super::cluster::{Cluster, LeaseKey};
use super::{
    CollectionState, CollectionView, Device, DeviceActivity, DraftVersion, FolderEntry,
    HierarchyState, PgStore, PingParams, PolicyState, RequestEntry, SendClaim, SendPhase,
    SqliteStore, StateStore, StoreError, WipeState,
};

/// The store named by `[state] url`: SQLite for one node, PostgreSQL for several.
#[derive(Clone, Debug)]
pub enum Store {
    Sqlite(SqliteStore),
    Postgres(PgStore),
}

impl Store {
    /// Opens the store a URL names: `postgres://…` or `postgresql://…` (see
    /// [`PgStore::open_url`]), or the SQLite forms of [`SqliteStore::open_url`]. The URL is
    /// not echoed in errors.
    pub async fn open_url(url: &str) -> Result<Store, StoreError> {
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            return Ok(Store::Postgres(PgStore::open_url(url).await?));
        }
        let url = url.to_owned();
        // Opening a SQLite file (and migrating it) blocks.
        tokio::task::spawn_blocking(move || SqliteStore::open_url(&url))
            .await
            .map_err(|_| StoreError::Internal("opening the state store failed".into()))?
            .map(Store::Sqlite)
    }

    /// Where the database is, for logs (no password).
    pub fn location(&self) -> &str {
        match self {
            Store::Sqlite(s) => s.location(),
            Store::Postgres(s) => s.location(),
        }
    }
}

/// Forwards each listed method to the store inside.
macro_rules! delegate {
    ($( fn $name:ident(&self $(, $arg:ident: $ty:ty)* ) -> $ret:ty; )*) => {
        $(
            async fn $name(&self $(, $arg: $ty)*) -> $ret {
                match self {
                    Store::Sqlite(s) => s.$name($($arg),*).await,
                    Store::Postgres(s) => s.$name($($arg),*).await,
                }
            }
        )*
    };
}

impl Cluster for Store {
    delegate! {
        fn acquire_lease(&self, key: LeaseKey<'_>, owner: &str, ttl: Duration) -> Result<bool, StoreError>;
        fn renew_lease(&self, key: LeaseKey<'_>, owner: &str, ttl: Duration) -> Result<bool, StoreError>;
        fn release_lease(&self, key: LeaseKey<'_>, owner: &str) -> Result<(), StoreError>;
        fn publish(&self, payload: &str) -> Result<(), StoreError>;
    }

    fn subscribe(&self) -> broadcast::Receiver<String> {
        match self {
            Store::Sqlite(s) => s.subscribe(),
            Store::Postgres(s) => s.subscribe(),
        }
    }
}

#[allow(clippy::too_many_arguments)]
impl StateStore for Store {
    delegate! {
        fn touch_device(&self, user: &str, device_id: &str, device_type: &str, user_agent: Option<&str>, protocol_version: Option<&str>, command: &str, now: i64) -> Result<Device, StoreError>;
        fn device(&self, user: &str, device_id: &str) -> Result<Option<Device>, StoreError>;
        fn devices(&self, user: Option<&str>) -> Result<Vec<Device>, StoreError>;
        fn set_policy(&self, user: &str, device_id: &str, state: PolicyState, key: u32, policy_hash: Option<&str>) -> Result<(), StoreError>;
        fn set_device_info(&self, user: &str, device_id: &str, info: &[(String, String)]) -> Result<(), StoreError>;
        fn set_wipe(&self, user: &str, device_id: &str, wipe: WipeState) -> Result<(), StoreError>;
        fn delete_device(&self, user: &str, device_id: &str) -> Result<bool, StoreError>;
        fn record_request(&self, entry: &RequestEntry, keep: u32) -> Result<(), StoreError>;
        fn request_log(&self, user: &str, device_id: &str, after_id: i64, limit: u32) -> Result<Vec<RequestEntry>, StoreError>;
        fn device_activity(&self, user: &str, device_id: &str) -> Result<Option<DeviceActivity>, StoreError>;
        fn set_access(&self, user: &str, device_id: &str, access: &str) -> Result<(), StoreError>;
        fn set_trace(&self, user: &str, device_id: &str, trace: &str) -> Result<(), StoreError>;
        fn folder_server_ids(&self, user: &str, identities: &[String]) -> Result<Vec<String>, StoreError>;
        fn rebind_folder_identity(&self, user: &str, old_identity: &str, new_identity: &str) -> Result<Option<String>, StoreError>;
        fn retire_folder_ids(&self, user: &str, identities: &[String]) -> Result<usize, StoreError>;
        fn hierarchy(&self, user: &str, device_id: &str) -> Result<Option<HierarchyState>, StoreError>;
        fn commit_hierarchy(&self, user: &str, device_id: &str, new_key: u32, folders: &[FolderEntry]) -> Result<(), StoreError>;
        fn reset_sync_state(&self, user: &str, device_id: &str) -> Result<(), StoreError>;
        fn collection_state(&self, user: &str, device_id: &str, collection_id: &str) -> Result<Option<CollectionState>, StoreError>;
        fn commit_collection(&self, user: &str, device_id: &str, collection_id: &str, view: &CollectionView, options: Option<&[u8]>) -> Result<(), StoreError>;
        fn reset_collection(&self, user: &str, device_id: &str, collection_id: &str) -> Result<bool, StoreError>;
        fn set_cached_sync_request(&self, user: &str, device_id: &str, request: Option<&[u8]>) -> Result<(), StoreError>;
        fn cached_sync_request(&self, user: &str, device_id: &str) -> Result<Option<Vec<u8>>, StoreError>;
        fn set_ping_params(&self, user: &str, device_id: &str, params: &PingParams) -> Result<(), StoreError>;
        fn ping_params(&self, user: &str, device_id: &str) -> Result<Option<PingParams>, StoreError>;
        fn claim_send(&self, user: &str, key: &str, owner: &str, now: i64, lease_until: i64, expires: i64) -> Result<SendClaim, StoreError>;
        fn renew_send(&self, user: &str, key: &str, owner: &str, lease_until: i64) -> Result<bool, StoreError>;
        fn set_send_phase(&self, user: &str, key: &str, owner: &str, phase: SendPhase) -> Result<bool, StoreError>;
        fn release_send(&self, user: &str, key: &str, owner: &str) -> Result<(), StoreError>;
        fn record_draft_version(&self, user: &str, collection_id: &str, uid_validity: u32, version: &DraftVersion, client_key: Option<&str>) -> Result<DraftVersion, StoreError>;
        fn draft_versions(&self, user: &str, collection_id: &str, uid_validity: u32, uids: &[u32]) -> Result<Vec<DraftVersion>, StoreError>;
        fn draft_item_versions(&self, user: &str, collection_id: &str, uid_validity: u32, item: u32) -> Result<Vec<DraftVersion>, StoreError>;
        fn draft_versions_by_message_id(&self, user: &str, collection_id: &str, uid_validity: u32, message_id: &str) -> Result<Vec<DraftVersion>, StoreError>;
        fn draft_by_client_key(&self, user: &str, collection_id: &str, uid_validity: u32, client_key: &str) -> Result<Option<DraftVersion>, StoreError>;
        fn forget_draft(&self, user: &str, collection_id: &str, uid_validity: u32, item: u32) -> Result<(), StoreError>;
        fn check_writable(&self) -> Result<(), StoreError>;
    }
}
