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

/// Implements [`StateStore`] for [`PgStore`] from entries of the form
///
/// ```text
/// fn name(arg: Type, ...) -> T => [check { ... } =>] |c| { body }
/// ```
///
/// Each becomes `async fn name(&self, arg: Type, ...) -> Result<T, StoreError>` that runs the
/// optional `check` block first (argument checks that need no database; it may `return`),
/// then takes a pooled connection as `c` ([`PgStore::conn`], a [`Conn`]) and evaluates
/// `body`, a `Result<T, StoreError>`. Transactions are the body's business (the helpers in
/// [`sql`], [`devices`] and [`sync`] open the ones they need).
macro_rules! pg_ops {
    ($(
        $(#[$meta:meta])*
        fn $name:ident($($arg:ident: $ty:ty),* $(,)?) -> $ret:ty =>
            $(check $check:block =>)?
            |$c:ident| $body:block
    )*) => {
        impl StateStore for PgStore {
            $(
                $(#[$meta])*
                async fn $name(&self, $($arg: $ty),*) -> Result<$ret, StoreError> {
                    $($check)?
                    #[allow(unused_mut)]
                    let mut $c = self.conn().await?;
                    $body
                }
            )*
        }
    };
}

pg_ops! {
    // ---- devices ----------------------------------------------------------------

    #[allow(clippy::too_many_arguments)]
    fn touch_device(
        user: &str,
        device_id: &str,
        device_type: &str,
        user_agent: Option<&str>,
        protocol_version: Option<&str>,
        command: &str,
        now: i64,
    ) -> Device => |c| {
        devices::touch_device(
            &mut c, user, device_id, device_type, user_agent, protocol_version, command, now,
        )
        .await
    }

    fn device(user: &str, device_id: &str) -> Option<Device> => |c| {
        let tx = read_tx(&mut c).await?;
        let device = devices::load_device(&tx, user, device_id).await?;
        tx.commit().await?;
        Ok(device)
    }

    fn devices(user: Option<&str>) -> Vec<Device> => |c| {
        devices::devices(&mut c, user).await
    }

    fn set_policy(
        user: &str,
        device_id: &str,
        state: PolicyState,
        key: u32,
        policy_hash: Option<&str>,
    ) -> () => |c| {
        devices::update_device(
            &mut c,
            user,
            "UPDATE devices SET policy_state = $3, policy_key = $4, policy_hash = $5
             WHERE user_name = $1 AND device_id = $2",
            &[&user, &device_id, &state.as_str(), &i64::from(key), &policy_hash],
        )
        .await
    }

    fn set_device_info(user: &str, device_id: &str, info: &[(String, String)]) -> () => |c| {
        devices::set_device_info(&mut c, user, device_id, info).await
    }

    fn set_wipe(user: &str, device_id: &str, wipe: WipeState) -> () => |c| {
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

    fn delete_device(user: &str, device_id: &str) -> bool => |c| {
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

    fn record_request(entry: &RequestEntry, keep: u32) -> () => |c| {
        devices::record_request(&mut c, entry, keep).await
    }

    fn request_log(user: &str, device_id: &str, after_id: i64, limit: u32) -> Vec<RequestEntry>
        => |c| { devices::request_log(&c, user, device_id, after_id, limit).await }

    fn device_activity(user: &str, device_id: &str) -> Option<DeviceActivity> => |c| {
        devices::device_activity(&mut c, user, device_id).await
    }

    fn set_access(user: &str, device_id: &str, access: &str) -> ()
        => check {
            if !matches!(access, "" | "allowed" | "blocked" | "quarantined") {
                return Err(StoreError::InvalidInput(format!("access state {access:?}")));
            }
        }
        => |c| {
            devices::update_device(
                &mut c,
                user,
                "UPDATE devices SET access_state = $3 WHERE user_name = $1 AND device_id = $2",
                &[&user, &device_id, &access],
            )
            .await
        }

    fn set_trace(user: &str, device_id: &str, trace: &str) -> ()
        => check {
            if !matches!(trace, "" | "on" | "bodies") {
                return Err(StoreError::InvalidInput(format!("trace mode {trace:?}")));
            }
        }
        => |c| {
            devices::update_device(
                &mut c,
                user,
                "UPDATE devices SET trace = $3 WHERE user_name = $1 AND device_id = $2",
                &[&user, &device_id, &trace],
            )
            .await
        }

    // BEGIN + txid_current(): assigning a transaction id fails on a read-only server (a
    // standby, or one set to default_transaction_read_only) and when no connection can be had.
    fn check_writable() -> () => |c| {
        let tx = c.obj.transaction().await?;
        tx.batch_execute("SELECT txid_current()").await?;
        tx.commit().await?;
        Ok(())
    }

    // ---- folders and hierarchy --------------------------------------------------

    fn folder_server_ids(user: &str, identities: &[String]) -> Vec<String> => |c| {
        sync::folder_server_ids(&mut c, user, identities).await
    }

    fn rebind_folder_identity(user: &str, old_identity: &str, new_identity: &str)
        -> Option<String> => |c| {
        sync::rebind_folder_identity(&mut c, user, old_identity, new_identity).await
    }

    fn retire_folder_ids(user: &str, identities: &[String]) -> usize => |c| {
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

    fn hierarchy(user: &str, device_id: &str) -> Option<HierarchyState> => |c| {
        sync::hierarchy(&mut c, user, device_id).await
    }

    fn commit_hierarchy(user: &str, device_id: &str, new_key: u32, folders: &[FolderEntry])
        -> () => |c| {
        sync::commit_hierarchy(&mut c, user, device_id, new_key, folders).await
    }

    fn reset_sync_state(user: &str, device_id: &str) -> () => |c| {
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

    // ---- collections ------------------------------------------------------------

    fn collection_state(user: &str, device_id: &str, collection_id: &str)
        -> Option<CollectionState> => |c| {
        sync::collection_state(&mut c, user, device_id, collection_id).await
    }

    fn commit_collection(
        user: &str,
        device_id: &str,
        collection_id: &str,
        view: &CollectionView,
        options: Option<&[u8]>,
    ) -> () => |c| {
        sync::commit_collection(&mut c, user, device_id, collection_id, view, options).await
    }

    fn reset_collection(user: &str, device_id: &str, collection_id: &str) -> bool => |c| {
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

    // ---- cached requests --------------------------------------------------------

    fn set_cached_sync_request(user: &str, device_id: &str, request: Option<&[u8]>) -> ()
        => |c| { sync::set_cached_sync_request(&mut c, user, device_id, request).await }

    fn cached_sync_request(user: &str, device_id: &str) -> Option<Vec<u8>> => |c| {
        query_opt(
            &c,
            "SELECT request FROM sync_request_cache WHERE user_name = $1 AND device_id = $2",
            &[&user, &device_id],
        )
        .await?
        .map(|r| col(&r, 0))
        .transpose()
    }

    fn set_ping_params(user: &str, device_id: &str, params: &PingParams) -> () => |c| {
        sync::set_ping_params(&mut c, user, device_id, params).await
    }

    fn ping_params(user: &str, device_id: &str) -> Option<PingParams> => |c| {
        sync::ping_params(&c, user, device_id).await
    }

    // ---- send records -----------------------------------------------------------

    fn claim_send(
        user: &str,
        key: &str,
        owner: &str,
        now: i64,
        lease_until: i64,
        expires: i64,
    ) -> SendClaim => |c| {
        sync::claim_send(&mut c, user, key, owner, now, lease_until, expires).await
    }

    fn renew_send(user: &str, key: &str, owner: &str, lease_until: i64) -> bool => |c| {
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

    fn set_send_phase(user: &str, key: &str, owner: &str, phase: SendPhase) -> bool => |c| {
        sync::set_send_phase(&mut c, user, key, owner, phase).await
    }

    fn release_send(user: &str, key: &str, owner: &str) -> () => |c| {
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

    // ---- draft versions ---------------------------------------------------------

    fn record_draft_version(
        user: &str,
        collection_id: &str,
        uid_validity: u32,
        version: &DraftVersion,
        client_key: Option<&str>,
    ) -> DraftVersion => |c| {
        sync::record_draft_version(&mut c, user, collection_id, uid_validity, version, client_key)
            .await
    }

    fn draft_versions(user: &str, collection_id: &str, uid_validity: u32, uids: &[u32])
        -> Vec<DraftVersion>
        => check {
            if uids.is_empty() {
                return Ok(Vec::new());
            }
        }
        => |c| {
            let uids: Vec<i64> = uids.iter().map(|&u| i64::from(u)).collect();
            sync::draft_query(&c, user, collection_id, uid_validity, "uid = ANY($4)", &uids).await
        }

    fn draft_item_versions(user: &str, collection_id: &str, uid_validity: u32, item: u32)
        -> Vec<DraftVersion> => |c| {
        let item = i64::from(item);
        sync::draft_query(&c, user, collection_id, uid_validity, "item = $4", &item).await
    }

    fn draft_versions_by_message_id(
        user: &str,
        collection_id: &str,
        uid_validity: u32,
        message_id: &str,
    ) -> Vec<DraftVersion> => |c| {
        sync::draft_query(&c, user, collection_id, uid_validity, "message_id = $4", &message_id)
            .await
    }

    fn draft_by_client_key(user: &str, collection_id: &str, uid_validity: u32, client_key: &str)
        -> Option<DraftVersion> => |c| {
        let found = sync::draft_query(
            &c, user, collection_id, uid_validity, "client_key = $4", &client_key,
        )
        .await?;
        Ok(found.into_iter().next())
    }

    fn forget_draft(user: &str, collection_id: &str, uid_validity: u32, item: u32) -> () => |c| {
        let tx = write_tx(&mut c, user).await?;
        execute(
            &tx,
            "DELETE FROM draft_versions
             WHERE user_name = $1 AND collection_id = $2 AND uid_validity = $3 AND item = $4",
            &[&user, &collection_id, &i64::from(uid_validity), &i64::from(item)],
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }
}
