//! PostgreSQL implementation of [`StateStore`], for several gateway nodes on one database.
//!
//! Connections come from a `deadpool-postgres` pool (statements are prepared once per
//! connection and cached). They run over TLS (rustls) as the URL's `sslmode` and
//! `sslrootcert` ask; without `sslmode`, the server's certificate is verified in full unless
//! the database is on a loopback address or a Unix socket (see `postgres/tls.rs`).
//!
//! Every change is one transaction that first takes a transaction-scoped advisory lock on
//! the user (`pg_advisory_xact_lock`): the writes of one user are serialised across all
//! nodes, as SQLite's single writer serialises them, while different users' writes run in
//! parallel. Under that lock, READ COMMITTED statements see every earlier change of the
//! user. Multi-statement reads run in one REPEATABLE READ, read-only transaction so they see
//! one snapshot. A call whose future is dropped mid-transaction leaves nothing applied: the
//! pool rolls back (or discards) the connection.
//!
//! Leases ([`Cluster`]) are rows of `sync_leases` with an expiry by the database's clock.
//! Events are `NOTIFY` on one channel; each store keeps one extra connection that `LISTEN`s
//! and feeds a [`broadcast`] channel, and reconnects (with backoff) when it is lost.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use tokio::sync::broadcast;
use tokio::task::JoinHandle;
use tokio_postgres::error::SqlState;

use super::cluster::EVENT_BUFFER;
use super::postgres_migrations as migrations;
use super::{
    CollectionState, CollectionView, Device, DeviceActivity, DraftVersion, FolderEntry,
    HierarchyState, PingParams, PolicyState, RequestEntry, SendClaim, SendPhase, StateStore,
    StoreError, WipeState,
};

mod devices;
mod events;
mod sql;
mod sync;
mod tls;

use sql::*;

/// How long a call waits for a pooled connection (or a new one) before failing with
/// [`StoreError::Busy`].
const POOL_WAIT: Duration = Duration::from_secs(10);

/// Pooled connections per store (per node).
const POOL_SIZE: usize = 16;

impl From<tokio_postgres::Error> for StoreError {
    fn from(e: tokio_postgres::Error) -> Self {
        if let Some(db) = e.as_db_error() {
            let code = db.code();
            if [
                SqlState::T_R_SERIALIZATION_FAILURE,
                SqlState::T_R_DEADLOCK_DETECTED,
                SqlState::LOCK_NOT_AVAILABLE,
                SqlState::QUERY_CANCELED,
                SqlState::TOO_MANY_CONNECTIONS,
                SqlState::CANNOT_CONNECT_NOW,
            ]
            .contains(code)
            {
                return StoreError::Busy;
            }
            if [SqlState::DATA_CORRUPTED, SqlState::INDEX_CORRUPTED].contains(code) {
                return StoreError::Corrupt(db.message().to_owned());
            }
            return StoreError::Database(format!("{} ({})", db.message(), code.code()));
        }
        // Connection-level errors (refused, closed, I/O, TLS), with their causes ("error
        // performing TLS handshake: invalid peer certificate: UnknownIssuer"): their text
        // names no credentials.
        let mut text = e.to_string();
        let mut cause = std::error::Error::source(&e);
        while let Some(c) = cause {
            let more = c.to_string();
            if !text.ends_with(&more) {
                text.push_str(": ");
                text.push_str(&more);
            }
            cause = c.source();
        }
        StoreError::Database(text)
    }
}

impl From<deadpool_postgres::PoolError> for StoreError {
    fn from(e: deadpool_postgres::PoolError) -> Self {
        match e {
            deadpool_postgres::PoolError::Backend(e) => e.into(),
            deadpool_postgres::PoolError::Timeout(_) => StoreError::Busy,
            other => StoreError::Database(other.to_string()),
        }
    }
}

/// PostgreSQL-backed [`StateStore`]. Cloning is cheap and shares the pool and the listener.
#[derive(Clone)]
pub struct PgStore {
    inner: Arc<Inner>,
}

struct Inner {
    pool: Pool,
    events: broadcast::Sender<String>,
    listener: JoinHandle<()>,
    location: String,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.listener.abort();
    }
}

impl fmt::Debug for PgStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PgStore")
            .field("location", &self.inner.location)
            .finish_non_exhaustive()
    }
}

/// Where a configuration points, without the password: `user@host:port/db`.
fn describe(config: &tokio_postgres::Config) -> String {
    let host = match config.get_hosts().first() {
        Some(tokio_postgres::config::Host::Tcp(h)) => h.clone(),
        #[cfg(unix)]
        Some(tokio_postgres::config::Host::Unix(p)) => p.display().to_string(),
        None => "localhost".into(),
    };
    let port = config.get_ports().first().copied().unwrap_or(5432);
    format!(
        "{}@{host}:{port}/{}",
        config.get_user().unwrap_or(""),
        config.get_dbname().unwrap_or("")
    )
}

impl PgStore {
    /// Connects to the database named by a `postgres://` or `postgresql://` URL (libpq
    /// form: `postgres://user[:password]@host[:port]/dbname[?options]`), applies pending
    /// migrations and starts listening for events. The URL is not echoed in errors.
    pub async fn open_url(url: &str) -> Result<PgStore, StoreError> {
        if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
            return Err(StoreError::Config(
                "a PostgreSQL URL starts with postgres:// or postgresql://".into(),
            ));
        }
        let (url, tls_params) = tls::split_url(url)?;
        let mut config: tokio_postgres::Config = url
            .parse()
            .map_err(|_| StoreError::Config("the PostgreSQL URL cannot be parsed".into()))?;
        let (tls, tls_mode) = tls::connector(&mut config, &tls_params)?;
        if config.get_application_name().is_none() {
            config.application_name("eas-gateway");
        }
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(POOL_WAIT);
        }
        let location = describe(&config);
        let manager = Manager::from_config(
            config.clone(),
            tls.clone(),
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(POOL_SIZE)
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(POOL_WAIT))
            .create_timeout(Some(POOL_WAIT))
            .recycle_timeout(Some(POOL_WAIT))
            .build()
            .map_err(|e| StoreError::Config(format!("PostgreSQL pool: {e}")))?;
        let version = {
            let mut client = pool.get().await?;
            migrations::run(&mut client).await?
        };
        let (events, _) = broadcast::channel(EVENT_BUFFER);
        // The first LISTEN is in place before the store is handed out, so that an event
        // published after `open_url` returns reaches this store's subscribers.
        let first = events::listen(&config, &tls, events.clone()).await?;
        let listener = tokio::spawn(events::keep_listening(config, tls, events.clone(), first));
        tracing::info!(
            location = %location,
            sslmode = tls_mode.as_str(),
            schema_version = version,
            "opened state database"
        );
        Ok(PgStore {
            inner: Arc::new(Inner {
                pool,
                events,
                listener,
                location,
            }),
        })
    }

    /// Where the database is (`user@host:port/db`, no password), for logs.
    pub fn location(&self) -> &str {
        &self.inner.location
    }

    async fn conn(&self) -> Result<Conn, StoreError> {
        let timed = crate::metrics::StoreCall::start();
        Ok(Conn::new(self.inner.pool.get().await?, timed))
    }
}

// ---- StateStore ----------------------------------------------------------------

impl StateStore for PgStore {
    #[allow(clippy::too_many_arguments)]
    async fn touch_device(
        &self,
        user: &str,
        device_id: &str,
        device_type: &str,
        user_agent: Option<&str>,
        protocol_version: Option<&str>,
        command: &str,
        now: i64,
    ) -> Result<Device, StoreError> {
        let mut c = self.conn().await?;
        devices::touch_device(
            &mut c,
            user,
            device_id,
            device_type,
            user_agent,
            protocol_version,
            command,
            now,
        )
        .await
    }

    async fn device(&self, user: &str, device_id: &str) -> Result<Option<Device>, StoreError> {
        let mut c = self.conn().await?;
        let tx = read_tx(&mut c).await?;
        let device = devices::load_device(&tx, user, device_id).await?;
        tx.commit().await?;
        Ok(device)
    }

    async fn devices(&self, user: Option<&str>) -> Result<Vec<Device>, StoreError> {
        let mut c = self.conn().await?;
        devices::devices(&mut c, user).await
    }

    async fn set_policy(
        &self,
        user: &str,
        device_id: &str,
        state: PolicyState,
        key: u32,
        policy_hash: Option<&str>,
    ) -> Result<(), StoreError> {
        let mut c = self.conn().await?;
        devices::update_device(
            &mut c,
            user,
            "UPDATE devices SET policy_state = $3, policy_key = $4, policy_hash = $5
             WHERE user_name = $1 AND device_id = $2",
            &[
                &user,
                &device_id,
                &state.as_str(),
                &i64::from(key),
                &policy_hash,
            ],
        )
        .await
    }

    async fn set_device_info(
        &self,
        user: &str,
        device_id: &str,
        info: &[(String, String)],
    ) -> Result<(), StoreError> {
        let mut c = self.conn().await?;
        devices::set_device_info(&mut c, user, device_id, info).await
    }

    async fn set_wipe(
        &self,
        user: &str,
        device_id: &str,
        wipe: WipeState,
    ) -> Result<(), StoreError> {
        let mut c = self.conn().await?;
        devices::update_device(
            &mut c,
            user,
            "UPDATE devices SET wipe_state = $3,
                 wipe_acknowledged_at = CASE WHEN $3 = 'acknowledged'
                     THEN COALESCE(wipe_acknowledged_at, EXTRACT(EPOCH FROM now())::BIGINT)
                     ELSE NULL END
             WHERE user_name = $1 AND device_id = $2",
            &[&user, &device_id, &wipe.as_str()],
        )
        .await
    }

    async fn delete_device(&self, user: &str, device_id: &str) -> Result<bool, StoreError> {
        let mut c = self.conn().await?;
        let tx = write_tx(&mut c, user).await?;
        let n = execute(
            &tx,
            "DELETE FROM devices WHERE user_name = $1 AND device_id = $2",
            &[&user, &device_id],
        )
        .await?;
        tx.commit().await?;
        Ok(n > 0)
    }

    async fn record_request(&self, entry: &RequestEntry, keep: u32) -> Result<(), StoreError> {
        let mut c = self.conn().await?;
        devices::record_request(&mut c, entry, keep).await
    }

    async fn request_log(
        &self,
        user: &str,
        device_id: &str,
        after_id: i64,
        limit: u32,
    ) -> Result<Vec<RequestEntry>, StoreError> {
        let c = self.conn().await?;
        devices::request_log(&c, user, device_id, after_id, limit).await
    }

    async fn device_activity(
        &self,
        user: &str,
        device_id: &str,
    ) -> Result<Option<DeviceActivity>, StoreError> {
        let mut c = self.conn().await?;
        devices::device_activity(&mut c, user, device_id).await
    }

    async fn set_access(
        &self,
        user: &str,
        device_id: &str,
        access: &str,
    ) -> Result<(), StoreError> {
        if !matches!(access, "" | "allowed" | "blocked" | "quarantined") {
            return Err(StoreError::InvalidInput(format!("access state {access:?}")));
        }
        let mut c = self.conn().await?;
        devices::update_device(
            &mut c,
            user,
            "UPDATE devices SET access_state = $3 WHERE user_name = $1 AND device_id = $2",
            &[&user, &device_id, &access],
        )
        .await
    }

    async fn set_trace(&self, user: &str, device_id: &str, trace: &str) -> Result<(), StoreError> {
        if !matches!(trace, "" | "on" | "bodies") {
            return Err(StoreError::InvalidInput(format!("trace mode {trace:?}")));
        }
        let mut c = self.conn().await?;
        devices::update_device(
            &mut c,
            user,
            "UPDATE devices SET trace = $3 WHERE user_name = $1 AND device_id = $2",
            &[&user, &device_id, &trace],
        )
        .await
    }

    async fn folder_server_ids(
        &self,
        user: &str,
        identities: &[String],
    ) -> Result<Vec<String>, StoreError> {
        let mut c = self.conn().await?;
        sync::folder_server_ids(&mut c, user, identities).await
    }

    async fn rebind_folder_identity(
        &self,
        user: &str,
        old_identity: &str,
        new_identity: &str,
    ) -> Result<Option<String>, StoreError> {
        let mut c = self.conn().await?;
        sync::rebind_folder_identity(&mut c, user, old_identity, new_identity).await
    }

    async fn retire_folder_ids(
        &self,
        user: &str,
        identities: &[String],
    ) -> Result<usize, StoreError> {
        let mut c = self.conn().await?;
        let tx = write_tx(&mut c, user).await?;
        let n = execute(
            &tx,
            "DELETE FROM folder_ids WHERE user_name = $1 AND identity = ANY($2)",
            &[&user, &identities],
        )
        .await?;
        tx.commit().await?;
        Ok(n as usize)
    }

    async fn hierarchy(
        &self,
        user: &str,
        device_id: &str,
    ) -> Result<Option<HierarchyState>, StoreError> {
        let mut c = self.conn().await?;
        sync::hierarchy(&mut c, user, device_id).await
    }

    async fn commit_hierarchy(
        &self,
        user: &str,
        device_id: &str,
        new_key: u32,
        folders: &[FolderEntry],
    ) -> Result<(), StoreError> {
        let mut c = self.conn().await?;
        sync::commit_hierarchy(&mut c, user, device_id, new_key, folders).await
    }

    async fn reset_sync_state(&self, user: &str, device_id: &str) -> Result<(), StoreError> {
        let mut c = self.conn().await?;
        let tx = write_tx(&mut c, user).await?;
        for table in ["hierarchy_snapshots", "collections", "sync_request_cache"] {
            execute(
                &tx,
                &format!("DELETE FROM {table} WHERE user_name = $1 AND device_id = $2"),
                &[&user, &device_id],
            )
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn collection_state(
        &self,
        user: &str,
        device_id: &str,
        collection_id: &str,
    ) -> Result<Option<CollectionState>, StoreError> {
        let mut c = self.conn().await?;
        sync::collection_state(&mut c, user, device_id, collection_id).await
    }

    async fn commit_collection(
        &self,
        user: &str,
        device_id: &str,
        collection_id: &str,
        view: &CollectionView,
        options: Option<&[u8]>,
    ) -> Result<(), StoreError> {
        let mut c = self.conn().await?;
        sync::commit_collection(&mut c, user, device_id, collection_id, view, options).await
    }

    async fn reset_collection(
        &self,
        user: &str,
        device_id: &str,
        collection_id: &str,
    ) -> Result<bool, StoreError> {
        let mut c = self.conn().await?;
        let tx = write_tx(&mut c, user).await?;
        let n = execute(
            &tx,
            "DELETE FROM collections
             WHERE user_name = $1 AND device_id = $2 AND collection_id = $3",
            &[&user, &device_id, &collection_id],
        )
        .await?;
        tx.commit().await?;
        Ok(n > 0)
    }

    async fn set_cached_sync_request(
        &self,
        user: &str,
        device_id: &str,
        request: Option<&[u8]>,
    ) -> Result<(), StoreError> {
        let mut c = self.conn().await?;
        sync::set_cached_sync_request(&mut c, user, device_id, request).await
    }

    async fn cached_sync_request(
        &self,
        user: &str,
        device_id: &str,
    ) -> Result<Option<Vec<u8>>, StoreError> {
        let c = self.conn().await?;
        query_opt(
            &c,
            "SELECT request FROM sync_request_cache WHERE user_name = $1 AND device_id = $2",
            &[&user, &device_id],
        )
        .await?
        .map(|r| col(&r, 0))
        .transpose()
    }

    async fn set_ping_params(
        &self,
        user: &str,
        device_id: &str,
        params: &PingParams,
    ) -> Result<(), StoreError> {
        let mut c = self.conn().await?;
        sync::set_ping_params(&mut c, user, device_id, params).await
    }

    async fn ping_params(
        &self,
        user: &str,
        device_id: &str,
    ) -> Result<Option<PingParams>, StoreError> {
        let c = self.conn().await?;
        sync::ping_params(&c, user, device_id).await
    }

    async fn claim_send(
        &self,
        user: &str,
        key: &str,
        owner: &str,
        now: i64,
        lease_until: i64,
        expires: i64,
    ) -> Result<SendClaim, StoreError> {
        let mut c = self.conn().await?;
        sync::claim_send(&mut c, user, key, owner, now, lease_until, expires).await
    }

    async fn renew_send(
        &self,
        user: &str,
        key: &str,
        owner: &str,
        lease_until: i64,
    ) -> Result<bool, StoreError> {
        let mut c = self.conn().await?;
        let tx = write_tx(&mut c, user).await?;
        let n = execute(
            &tx,
            "UPDATE send_records SET lease_until = GREATEST(lease_until, $4)
             WHERE user_name = $1 AND record_key = $2 AND owner = $3
               AND phase IN ('claimed', 'data') AND NOT sent",
            &[&user, &key, &owner, &lease_until],
        )
        .await?;
        tx.commit().await?;
        Ok(n == 1)
    }

    async fn set_send_phase(
        &self,
        user: &str,
        key: &str,
        owner: &str,
        phase: SendPhase,
    ) -> Result<bool, StoreError> {
        let mut c = self.conn().await?;
        sync::set_send_phase(&mut c, user, key, owner, phase).await
    }

    async fn release_send(&self, user: &str, key: &str, owner: &str) -> Result<(), StoreError> {
        let mut c = self.conn().await?;
        let tx = write_tx(&mut c, user).await?;
        execute(
            &tx,
            "DELETE FROM send_records
             WHERE user_name = $1 AND record_key = $2 AND owner = $3 AND NOT sent",
            &[&user, &key, &owner],
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn record_draft_version(
        &self,
        user: &str,
        collection_id: &str,
        uid_validity: u32,
        version: &DraftVersion,
        client_key: Option<&str>,
    ) -> Result<DraftVersion, StoreError> {
        let mut c = self.conn().await?;
        sync::record_draft_version(
            &mut c,
            user,
            collection_id,
            uid_validity,
            version,
            client_key,
        )
        .await
    }

    async fn draft_versions(
        &self,
        user: &str,
        collection_id: &str,
        uid_validity: u32,
        uids: &[u32],
    ) -> Result<Vec<DraftVersion>, StoreError> {
        if uids.is_empty() {
            return Ok(Vec::new());
        }
        let uids: Vec<i64> = uids.iter().map(|&u| i64::from(u)).collect();
        let c = self.conn().await?;
        sync::draft_query(
            &c,
            user,
            collection_id,
            uid_validity,
            "uid = ANY($4)",
            &uids,
        )
        .await
    }

    async fn draft_item_versions(
        &self,
        user: &str,
        collection_id: &str,
        uid_validity: u32,
        item: u32,
    ) -> Result<Vec<DraftVersion>, StoreError> {
        let c = self.conn().await?;
        let item = i64::from(item);
        sync::draft_query(&c, user, collection_id, uid_validity, "item = $4", &item).await
    }

    async fn draft_versions_by_message_id(
        &self,
        user: &str,
        collection_id: &str,
        uid_validity: u32,
        message_id: &str,
    ) -> Result<Vec<DraftVersion>, StoreError> {
        let c = self.conn().await?;
        sync::draft_query(
            &c,
            user,
            collection_id,
            uid_validity,
            "message_id = $4",
            &message_id,
        )
        .await
    }

    async fn draft_by_client_key(
        &self,
        user: &str,
        collection_id: &str,
        uid_validity: u32,
        client_key: &str,
    ) -> Result<Option<DraftVersion>, StoreError> {
        let c = self.conn().await?;
        Ok(sync::draft_query(
            &c,
            user,
            collection_id,
            uid_validity,
            "client_key = $4",
            &client_key,
        )
        .await?
        .into_iter()
        .next())
    }

    async fn forget_draft(
        &self,
        user: &str,
        collection_id: &str,
        uid_validity: u32,
        item: u32,
    ) -> Result<(), StoreError> {
        let mut c = self.conn().await?;
        let tx = write_tx(&mut c, user).await?;
        execute(
            &tx,
            "DELETE FROM draft_versions
             WHERE user_name = $1 AND collection_id = $2 AND uid_validity = $3 AND item = $4",
            &[
                &user,
                &collection_id,
                &i64::from(uid_validity),
                &i64::from(item),
            ],
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn check_writable(&self) -> Result<(), StoreError> {
        // Assigning a transaction id fails on a read-only server (a standby, or one set to
        // default_transaction_read_only) and when no connection can be had.
        let mut c = self.conn().await?;
        let tx = c.obj.transaction().await?;
        tx.batch_execute("SELECT txid_current()").await?;
        tx.commit().await?;
        Ok(())
    }
}
