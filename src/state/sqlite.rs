//! SQLite implementation of [`StateStore`], the embedded default.
//!
//! One connection per store, behind a `std::sync::Mutex`; every call runs on
//! tokio's blocking pool (`spawn_blocking`) so async worker threads never
//! wait on disk or on the lock, and no lock is held across an `.await`.
//! Writes use `BEGIN IMMEDIATE`, so a transaction takes the write lock up
//! front and waits (up to the busy timeout) for other writers instead of
//! failing half-way; this also holds when several gateway processes on the
//! same host share one database file (WAL mode; not suitable for network
//! file systems).
//!
//! A call whose future is dropped still runs to completion on the blocking
//! pool; since each call is one transaction, it is applied entirely or not
//! at all.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use rusqlite::{
    params, Connection, ErrorCode, OpenFlags, OptionalExtension, Row, Transaction,
    TransactionBehavior,
};

use super::migrations;
use super::sqlite_registry as registry;
use super::{
    CollectionState, CollectionView, Device, DeviceActivity, DraftVersion, FolderEntry,
    HierarchyState, PingParams, PolicyState, RequestEntry, SendClaim, SendPhase, StateStore,
    StoreError, WipeState,
};

/// How long a statement waits for another writer before failing with
/// [`StoreError::Busy`].
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// Slot numbers of the two kept snapshots.
const CURRENT: i64 = 0;
const PREVIOUS: i64 = 1;

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        match &e {
            rusqlite::Error::SqliteFailure(f, _) => match f.code {
                ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked => StoreError::Busy,
                ErrorCode::DatabaseCorrupt | ErrorCode::NotADatabase => {
                    StoreError::Corrupt(e.to_string())
                }
                _ => StoreError::Database(e.to_string()),
            },
            rusqlite::Error::FromSqlConversionFailure(..)
            | rusqlite::Error::IntegralValueOutOfRange(..)
            | rusqlite::Error::InvalidColumnType(..) => StoreError::Corrupt(e.to_string()),
            _ => StoreError::Database(e.to_string()),
        }
    }
}

/// SQLite-backed [`StateStore`]. Cloning is cheap and shares the connection.
#[derive(Clone)]
pub struct SqliteStore {
    inner: Arc<Inner>,
}

struct Inner {
    conn: Mutex<Connection>,
    location: String,
}

impl fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SqliteStore")
            .field("location", &self.inner.location)
            .finish_non_exhaustive()
    }
}

impl SqliteStore {
    /// Opens (creating if needed, including missing parent directories) the
    /// database file at `path`, configures it and applies pending
    /// migrations. Blocking; call at startup or via `spawn_blocking`.
    pub fn open(path: &Path) -> Result<SqliteStore, StoreError> {
        if path.as_os_str().is_empty() {
            return Err(StoreError::Config("empty state database path".into()));
        }
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(|e| {
                StoreError::Config(format!("cannot create directory {}: {e}", parent.display()))
            })?;
        }
        // No SQLITE_OPEN_URI: the path is always a plain file name.
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn = Connection::open_with_flags(path, flags)?;
        Self::init(conn, path.display().to_string(), true)
    }

    /// Opens a private in-memory database (lost when the last clone is
    /// dropped). Meant for tests and throw-away runs.
    pub fn open_in_memory() -> Result<SqliteStore, StoreError> {
        let conn = Connection::open_in_memory()?;
        Self::init(conn, ":memory:".into(), false)
    }

    /// Opens a store from a URL: `sqlite:///abs/path.db`,
    /// `sqlite://relative/path.db` or `sqlite::memory:`. The URL is not
    /// echoed in errors.
    pub fn open_url(url: &str) -> Result<SqliteStore, StoreError> {
        match parse_url(url)? {
            None => Self::open_in_memory(),
            Some(path) => Self::open(&path),
        }
    }

    /// Where the database lives (file path or `:memory:`), for logs.
    pub fn location(&self) -> &str {
        &self.inner.location
    }

    fn init(mut conn: Connection, location: String, file: bool) -> Result<SqliteStore, StoreError> {
        conn.busy_timeout(BUSY_TIMEOUT)?;
        if file {
            let mode: String =
                conn.pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get(0))?;
            if !mode.eq_ignore_ascii_case("wal") {
                tracing::warn!(
                    location = %location,
                    journal_mode = %mode,
                    "state database could not be switched to WAL mode"
                );
            }
            // synchronous stays at the default (FULL): a committed sync key
            // must survive a power loss, or devices would be forced into a
            // full resync.
        }
        conn.pragma_update(None, "foreign_keys", true)?;
        let fk: bool = conn.pragma_query_value(None, "foreign_keys", |r| r.get(0))?;
        if !fk {
            return Err(StoreError::Config(
                "SQLite build does not support foreign keys".into(),
            ));
        }
        let version = migrations::run(&mut conn)?;
        tracing::info!(location = %location, schema_version = version, "opened state database");
        Ok(SqliteStore {
            inner: Arc::new(Inner {
                conn: Mutex::new(conn),
                location,
            }),
        })
    }

    /// Runs `f` with the connection on the blocking pool.
    async fn call<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let inner = Arc::clone(&self.inner);
        let _timed = crate::metrics::StoreCall::start();
        tokio::task::spawn_blocking(move || {
            // A poisoned lock only means an earlier closure panicked; any
            // transaction it had open was rolled back when it unwound, so
            // the connection is in a clean state and can be reused.
            let mut conn = inner.conn.lock().unwrap_or_else(PoisonError::into_inner);
            f(&mut conn)
        })
        .await
        .map_err(|e| {
            if e.is_panic() {
                StoreError::Internal("state store task panicked".into())
            } else {
                StoreError::Internal("state store task was cancelled".into())
            }
        })?
    }
}

/// `None` means in-memory.
fn parse_url(url: &str) -> Result<Option<PathBuf>, StoreError> {
    if url == "sqlite::memory:" || url == "sqlite://:memory:" {
        return Ok(None);
    }
    match url.strip_prefix("sqlite://") {
        Some("") => Err(StoreError::Config("sqlite URL has no path".into())),
        Some(path) => Ok(Some(PathBuf::from(path))),
        None => {
            // Only the scheme is reported; the rest of a URL (e.g. a
            // PostgreSQL one) may contain credentials.
            let scheme = url.split_once(':').map_or("", |(s, _)| s);
            Err(StoreError::Config(format!(
                "unsupported state store URL scheme {scheme:?} (expected sqlite://PATH or sqlite::memory:)"
            )))
        }
    }
}

// ---- helpers ----------------------------------------------------------------

pub(super) fn write_tx(conn: &mut Connection) -> Result<Transaction<'_>, StoreError> {
    Ok(conn.transaction_with_behavior(TransactionBehavior::Immediate)?)
}

/// Read transaction: gives multi-statement reads one consistent snapshot.
pub(super) fn read_tx(conn: &mut Connection) -> Result<Transaction<'_>, StoreError> {
    Ok(conn.transaction_with_behavior(TransactionBehavior::Deferred)?)
}

fn device_exists(conn: &Connection, user: &str, device_id: &str) -> Result<bool, StoreError> {
    let found = conn
        .prepare_cached("SELECT 1 FROM devices WHERE user_name = ?1 AND device_id = ?2")?
        .query_row(params![user, device_id], |_| Ok(()))
        .optional()?;
    Ok(found.is_some())
}

pub(super) fn require_device(
    conn: &Connection,
    user: &str,
    device_id: &str,
) -> Result<(), StoreError> {
    if device_exists(conn, user, device_id)? {
        Ok(())
    } else {
        Err(StoreError::DeviceNotFound)
    }
}

fn check_key(key: u32) -> Result<(), StoreError> {
    if key == 0 {
        Err(StoreError::InvalidInput(
            "sync key 0 cannot be committed".into(),
        ))
    } else {
        Ok(())
    }
}

const DEVICE_COLUMNS: &str = "user_name, device_id, device_type, user_agent, protocol_version, \
     policy_state, policy_key, policy_hash, first_seen, last_seen, wipe_state, last_command, \
     access_state, trace";

fn read_device_row(row: &Row<'_>) -> rusqlite::Result<(Device, String, String)> {
    Ok((
        Device {
            user: row.get(0)?,
            device_id: row.get(1)?,
            device_type: row.get(2)?,
            user_agent: row.get(3)?,
            protocol_version: row.get(4)?,
            policy: PolicyState::None,
            policy_key: row.get(6)?,
            policy_hash: row.get(7)?,
            device_info: Vec::new(),
            first_seen: row.get(8)?,
            last_seen: row.get(9)?,
            wipe: WipeState::None,
            last_command: row.get(11)?,
            access: row.get(12)?,
            trace: row.get(13)?,
        },
        row.get(5)?,
        row.get(10)?,
    ))
}

fn finish_device(
    conn: &Connection,
    (mut device, policy, wipe): (Device, String, String),
) -> Result<Device, StoreError> {
    device.policy = PolicyState::parse(&policy)
        .ok_or_else(|| StoreError::Corrupt(format!("unknown policy state {policy:?}")))?;
    device.wipe = WipeState::parse(&wipe)
        .ok_or_else(|| StoreError::Corrupt(format!("unknown wipe state {wipe:?}")))?;
    device.device_info = conn
        .prepare_cached(
            "SELECT name, value FROM device_info
             WHERE user_name = ?1 AND device_id = ?2 ORDER BY position",
        )?
        .query_map(params![device.user, device.device_id], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })?
        .collect::<rusqlite::Result<_>>()?;
    Ok(device)
}

fn load_device(
    conn: &Connection,
    user: &str,
    device_id: &str,
) -> Result<Option<Device>, StoreError> {
    let raw = conn
        .prepare_cached(&format!(
            "SELECT {DEVICE_COLUMNS} FROM devices WHERE user_name = ?1 AND device_id = ?2"
        ))?
        .query_row(params![user, device_id], read_device_row)
        .optional()?;
    raw.map(|raw| finish_device(conn, raw)).transpose()
}

fn load_folders(
    conn: &Connection,
    user: &str,
    device_id: &str,
    slot: i64,
) -> Result<Vec<FolderEntry>, StoreError> {
    let folders = conn
        .prepare_cached(
            "SELECT server_id, parent_id, display_name, folder_type FROM hierarchy_folders
             WHERE user_name = ?1 AND device_id = ?2 AND slot = ?3 ORDER BY position",
        )?
        .query_map(params![user, device_id, slot], |r| {
            Ok(FolderEntry {
                server_id: r.get(0)?,
                parent_id: r.get(1)?,
                display_name: r.get(2)?,
                folder_type: r.get(3)?,
            })
        })?
        .collect::<rusqlite::Result<_>>()?;
    Ok(folders)
}

fn read_view(r: &Row<'_>) -> rusqlite::Result<(i64, CollectionView, i64)> {
    Ok((
        r.get(0)?,
        CollectionView {
            key: r.get(1)?,
            uid_validity: r.get(2)?,
            uids: r.get(3)?,
            highest_modseq: 0,
            flags: r.get(5)?,
            filter_start: r.get(6)?,
            more_available: r.get(7)?,
        },
        r.get(4)?,
    ))
}

// ---- operations (run inside `SqliteStore::call`) ------------------------------

#[allow(clippy::too_many_arguments)]
fn op_touch_device(
    conn: &mut Connection,
    user: &str,
    device_id: &str,
    device_type: &str,
    user_agent: Option<&str>,
    protocol_version: Option<&str>,
    command: &str,
    now: i64,
) -> Result<Device, StoreError> {
    let tx = write_tx(conn)?;
    tx.prepare_cached(
        "INSERT INTO devices (user_name, device_id, device_type, user_agent, protocol_version,
                              first_seen, last_seen, last_command, requests_started)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6, ?7, 1)
         ON CONFLICT (user_name, device_id) DO UPDATE SET
             device_type = excluded.device_type,
             user_agent = COALESCE(excluded.user_agent, devices.user_agent),
             protocol_version = COALESCE(excluded.protocol_version, devices.protocol_version),
             last_seen = MAX(devices.last_seen, excluded.last_seen),
             last_command = excluded.last_command,
             requests_started = devices.requests_started + 1",
    )?
    .execute(params![
        user,
        device_id,
        device_type,
        user_agent,
        protocol_version,
        now,
        command
    ])?;
    let device = load_device(&tx, user, device_id)?
        .ok_or_else(|| StoreError::Internal("device row missing right after upsert".into()))?;
    tx.commit()?;
    Ok(device)
}

fn op_devices(conn: &mut Connection, user: Option<&str>) -> Result<Vec<Device>, StoreError> {
    let tx = read_tx(conn)?;
    let raws = {
        let mut stmt = tx.prepare_cached(&format!(
            "SELECT {DEVICE_COLUMNS} FROM devices
             WHERE ?1 IS NULL OR user_name = ?1 ORDER BY user_name, device_id"
        ))?;
        let rows = stmt.query_map(params![user], read_device_row)?;
        rows.collect::<rusqlite::Result<Vec<_>>>()?
    };
    let devices = raws
        .into_iter()
        .map(|raw| finish_device(&tx, raw))
        .collect::<Result<Vec<_>, _>>()?;
    tx.finish()?;
    Ok(devices)
}

fn update_device(
    conn: &mut Connection,
    sql: &str,
    params: &[&dyn rusqlite::ToSql],
) -> Result<(), StoreError> {
    let tx = write_tx(conn)?;
    let n = tx.prepare_cached(sql)?.execute(params)?;
    if n == 0 {
        return Err(StoreError::DeviceNotFound);
    }
    tx.commit()?;
    Ok(())
}

fn op_set_device_info(
    conn: &mut Connection,
    user: &str,
    device_id: &str,
    info: &[(String, String)],
) -> Result<(), StoreError> {
    let tx = write_tx(conn)?;
    require_device(&tx, user, device_id)?;
    tx.prepare_cached("DELETE FROM device_info WHERE user_name = ?1 AND device_id = ?2")?
        .execute(params![user, device_id])?;
    {
        let mut ins = tx.prepare_cached(
            "INSERT INTO device_info (user_name, device_id, position, name, value)
             VALUES (?1, ?2, ?3, ?4, ?5)",
        )?;
        for (pos, (name, value)) in info.iter().enumerate() {
            ins.execute(params![user, device_id, pos as i64, name, value])?;
        }
    }
    tx.commit()?;
    Ok(())
}

fn lookup_folder_id(
    conn: &Connection,
    user: &str,
    identity: &str,
) -> Result<Option<String>, StoreError> {
    Ok(conn
        .prepare_cached("SELECT server_id FROM folder_ids WHERE user_name = ?1 AND identity = ?2")?
        .query_row(params![user, identity], |r| r.get(0))
        .optional()?)
}

fn op_folder_server_ids(
    conn: &mut Connection,
    user: &str,
    identities: &[String],
) -> Result<Vec<String>, StoreError> {
    if identities.iter().any(|i| i.is_empty()) {
        return Err(StoreError::InvalidInput("empty folder identity".into()));
    }
    // Fast path: every folder already has an id, no write lock needed.
    {
        let tx = read_tx(conn)?;
        let mut known = Vec::with_capacity(identities.len());
        for identity in identities {
            match lookup_folder_id(&tx, user, identity)? {
                Some(id) => known.push(id),
                None => break,
            }
        }
        tx.finish()?;
        if known.len() == identities.len() {
            return Ok(known);
        }
    }
    // Slow path: under the write lock, look up again (another writer may
    // have assigned ids meanwhile) and assign the missing ones.
    let tx = write_tx(conn)?;
    let mut ids = Vec::with_capacity(identities.len());
    for identity in identities {
        if let Some(id) = lookup_folder_id(&tx, user, identity)? {
            ids.push(id);
            continue;
        }
        let n: i64 = tx
            .prepare_cached(
                "INSERT INTO folder_id_counters (user_name, next_id) VALUES (?1, 2)
                 ON CONFLICT (user_name) DO UPDATE SET next_id = next_id + 1
                 RETURNING next_id - 1",
            )?
            .query_row(params![user], |r| r.get(0))?;
        let id = n.to_string();
        tx.prepare_cached(
            "INSERT INTO folder_ids (user_name, identity, server_id) VALUES (?1, ?2, ?3)",
        )?
        .execute(params![user, identity, id])?;
        ids.push(id);
    }
    tx.commit()?;
    Ok(ids)
}

fn op_rebind_folder_identity(
    conn: &mut Connection,
    user: &str,
    old_identity: &str,
    new_identity: &str,
) -> Result<Option<String>, StoreError> {
    if new_identity.is_empty() {
        return Err(StoreError::InvalidInput("empty folder identity".into()));
    }
    let tx = write_tx(conn)?;
    let Some(id) = lookup_folder_id(&tx, user, old_identity)? else {
        return Ok(None);
    };
    if old_identity == new_identity {
        return Ok(Some(id));
    }
    if lookup_folder_id(&tx, user, new_identity)?.is_some() {
        return Err(StoreError::Conflict(
            "the new folder identity already has a ServerId".into(),
        ));
    }
    tx.prepare_cached(
        "UPDATE folder_ids SET identity = ?3 WHERE user_name = ?1 AND identity = ?2",
    )?
    .execute(params![user, old_identity, new_identity])?;
    tx.commit()?;
    Ok(Some(id))
}

fn op_retire_folder_ids(
    conn: &mut Connection,
    user: &str,
    identities: &[String],
) -> Result<usize, StoreError> {
    let tx = write_tx(conn)?;
    let mut removed = 0;
    {
        let mut del =
            tx.prepare_cached("DELETE FROM folder_ids WHERE user_name = ?1 AND identity = ?2")?;
        for identity in identities {
            removed += del.execute(params![user, identity])?;
        }
    }
    tx.commit()?;
    Ok(removed)
}

fn op_hierarchy(
    conn: &mut Connection,
    user: &str,
    device_id: &str,
) -> Result<Option<HierarchyState>, StoreError> {
    let tx = read_tx(conn)?;
    let keys: Vec<(i64, u32)> = tx
        .prepare_cached(
            "SELECT slot, sync_key FROM hierarchy_snapshots
             WHERE user_name = ?1 AND device_id = ?2 ORDER BY slot",
        )?
        .query_map(params![user, device_id], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<rusqlite::Result<_>>()?;
    let state = match keys.as_slice() {
        [] => None,
        [(CURRENT, key), rest @ ..] => {
            let previous = match rest {
                [] => None,
                [(PREVIOUS, pkey)] => Some((*pkey, load_folders(&tx, user, device_id, PREVIOUS)?)),
                _ => {
                    return Err(StoreError::Corrupt(
                        "unexpected hierarchy snapshot slots".into(),
                    ))
                }
            };
            Some(HierarchyState {
                key: *key,
                folders: load_folders(&tx, user, device_id, CURRENT)?,
                previous,
            })
        }
        _ => {
            return Err(StoreError::Corrupt(
                "hierarchy has a previous snapshot but no current one".into(),
            ))
        }
    };
    tx.finish()?;
    Ok(state)
}

fn op_commit_hierarchy(
    conn: &mut Connection,
    user: &str,
    device_id: &str,
    new_key: u32,
    folders: &[FolderEntry],
) -> Result<(), StoreError> {
    check_key(new_key)?;
    let tx = write_tx(conn)?;
    require_device(&tx, user, device_id)?;
    let current: Option<u32> = tx
        .prepare_cached(
            "SELECT sync_key FROM hierarchy_snapshots
             WHERE user_name = ?1 AND device_id = ?2 AND slot = ?3",
        )?
        .query_row(params![user, device_id, CURRENT], |r| r.get(0))
        .optional()?;
    if current == Some(new_key) {
        // Retried commit of the same key: replace in place, keep previous.
        tx.prepare_cached(
            "DELETE FROM hierarchy_folders WHERE user_name = ?1 AND device_id = ?2 AND slot = ?3",
        )?
        .execute(params![user, device_id, CURRENT])?;
    } else {
        // Folder rows follow their snapshot through ON DELETE / ON UPDATE
        // CASCADE.
        tx.prepare_cached(
            "DELETE FROM hierarchy_snapshots WHERE user_name = ?1 AND device_id = ?2 AND slot = ?3",
        )?
        .execute(params![user, device_id, PREVIOUS])?;
        tx.prepare_cached(
            "UPDATE hierarchy_snapshots SET slot = ?4
             WHERE user_name = ?1 AND device_id = ?2 AND slot = ?3",
        )?
        .execute(params![user, device_id, CURRENT, PREVIOUS])?;
        tx.prepare_cached(
            "INSERT INTO hierarchy_snapshots (user_name, device_id, slot, sync_key)
             VALUES (?1, ?2, ?3, ?4)",
        )?
        .execute(params![user, device_id, CURRENT, new_key])?;
    }
    {
        let mut ins = tx.prepare_cached(
            "INSERT INTO hierarchy_folders
                 (user_name, device_id, slot, position, server_id, parent_id, display_name,
                  folder_type)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        )?;
        for (pos, f) in folders.iter().enumerate() {
            ins.execute(params![
                user,
                device_id,
                CURRENT,
                pos as i64,
                f.server_id,
                f.parent_id,
                f.display_name,
                f.folder_type
            ])?;
        }
    }
    tx.commit()?;
    Ok(())
}

fn op_reset_sync_state(
    conn: &mut Connection,
    user: &str,
    device_id: &str,
) -> Result<(), StoreError> {
    let tx = write_tx(conn)?;
    for table in ["hierarchy_snapshots", "collections", "sync_request_cache"] {
        tx.prepare_cached(&format!(
            "DELETE FROM {table} WHERE user_name = ?1 AND device_id = ?2"
        ))?
        .execute(params![user, device_id])?;
    }
    tx.commit()?;
    Ok(())
}

fn op_collection_state(
    conn: &mut Connection,
    user: &str,
    device_id: &str,
    collection_id: &str,
) -> Result<Option<CollectionState>, StoreError> {
    let tx = read_tx(conn)?;
    let options: Option<Option<Vec<u8>>> = tx
        .prepare_cached(
            "SELECT options FROM collections
             WHERE user_name = ?1 AND device_id = ?2 AND collection_id = ?3",
        )?
        .query_row(params![user, device_id, collection_id], |r| r.get(0))
        .optional()?;
    let Some(options) = options else {
        return Ok(None);
    };
    let raw: Vec<(i64, CollectionView, i64)> = tx
        .prepare_cached(
            "SELECT slot, sync_key, uid_validity, uids, highest_modseq, flags, filter_start,
                    more_available
             FROM collection_views
             WHERE user_name = ?1 AND device_id = ?2 AND collection_id = ?3 ORDER BY slot",
        )?
        .query_map(params![user, device_id, collection_id], read_view)?
        .collect::<rusqlite::Result<_>>()?;
    tx.finish()?;
    let mut views = Vec::with_capacity(raw.len());
    for (slot, mut view, modseq) in raw {
        view.highest_modseq = u64::try_from(modseq)
            .map_err(|_| StoreError::Corrupt(format!("negative HIGHESTMODSEQ {modseq}")))?;
        views.push((slot, view));
    }
    let mut views = views.into_iter();
    match (views.next(), views.next(), views.next()) {
        (None, _, _) => Ok(None),
        (Some((CURRENT, current)), None, None) => Ok(Some(CollectionState {
            current,
            previous: None,
            options,
        })),
        (Some((CURRENT, current)), Some((PREVIOUS, previous)), None) => Ok(Some(CollectionState {
            current,
            previous: Some(previous),
            options,
        })),
        _ => Err(StoreError::Corrupt(
            "unexpected collection view slots".into(),
        )),
    }
}

fn op_commit_collection(
    conn: &mut Connection,
    user: &str,
    device_id: &str,
    collection_id: &str,
    view: &CollectionView,
    options: Option<&[u8]>,
) -> Result<(), StoreError> {
    check_key(view.key)?;
    let modseq = i64::try_from(view.highest_modseq).map_err(|_| {
        StoreError::InvalidInput(format!(
            "HIGHESTMODSEQ {} exceeds 63 bits",
            view.highest_modseq
        ))
    })?;
    let tx = write_tx(conn)?;
    require_device(&tx, user, device_id)?;
    tx.prepare_cached(
        "INSERT INTO collections (user_name, device_id, collection_id, options)
         VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (user_name, device_id, collection_id) DO UPDATE SET
             options = COALESCE(excluded.options, collections.options)",
    )?
    .execute(params![user, device_id, collection_id, options])?;
    let current: Option<u32> = tx
        .prepare_cached(
            "SELECT sync_key FROM collection_views
             WHERE user_name = ?1 AND device_id = ?2 AND collection_id = ?3 AND slot = ?4",
        )?
        .query_row(params![user, device_id, collection_id, CURRENT], |r| {
            r.get(0)
        })
        .optional()?;
    if current == Some(view.key) {
        // Retried commit of the same key: replace in place, keep previous.
        tx.prepare_cached(
            "DELETE FROM collection_views
             WHERE user_name = ?1 AND device_id = ?2 AND collection_id = ?3 AND slot = ?4",
        )?
        .execute(params![user, device_id, collection_id, CURRENT])?;
    } else {
        tx.prepare_cached(
            "DELETE FROM collection_views
             WHERE user_name = ?1 AND device_id = ?2 AND collection_id = ?3 AND slot = ?4",
        )?
        .execute(params![user, device_id, collection_id, PREVIOUS])?;
        tx.prepare_cached(
            "UPDATE collection_views SET slot = ?5
             WHERE user_name = ?1 AND device_id = ?2 AND collection_id = ?3 AND slot = ?4",
        )?
        .execute(params![user, device_id, collection_id, CURRENT, PREVIOUS])?;
    }
    tx.prepare_cached(
        "INSERT INTO collection_views
             (user_name, device_id, collection_id, slot, sync_key, uid_validity, uids,
              highest_modseq, flags, filter_start, more_available)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
    )?
    .execute(params![
        user,
        device_id,
        collection_id,
        CURRENT,
        view.key,
        view.uid_validity,
        view.uids,
        modseq,
        view.flags,
        view.filter_start,
        view.more_available
    ])?;
    tx.commit()?;
    Ok(())
}

fn op_reset_collection(
    conn: &mut Connection,
    user: &str,
    device_id: &str,
    collection_id: &str,
) -> Result<bool, StoreError> {
    let tx = write_tx(conn)?;
    let n = tx
        .prepare_cached(
            "DELETE FROM collections
             WHERE user_name = ?1 AND device_id = ?2 AND collection_id = ?3",
        )?
        .execute(params![user, device_id, collection_id])?;
    tx.commit()?;
    Ok(n > 0)
}

fn op_set_cached_sync_request(
    conn: &mut Connection,
    user: &str,
    device_id: &str,
    request: Option<&[u8]>,
) -> Result<(), StoreError> {
    let tx = write_tx(conn)?;
    match request {
        Some(request) => {
            require_device(&tx, user, device_id)?;
            tx.prepare_cached(
                "INSERT INTO sync_request_cache (user_name, device_id, request) VALUES (?1, ?2, ?3)
                 ON CONFLICT (user_name, device_id) DO UPDATE SET request = excluded.request",
            )?
            .execute(params![user, device_id, request])?;
        }
        None => {
            tx.prepare_cached(
                "DELETE FROM sync_request_cache WHERE user_name = ?1 AND device_id = ?2",
            )?
            .execute(params![user, device_id])?;
        }
    }
    tx.commit()?;
    Ok(())
}

fn check_ping_text(v: &str) -> Result<(), StoreError> {
    if v.contains(['\t', '\n', '\r']) {
        return Err(StoreError::InvalidInput(
            "Ping folder contains a tab or line break".into(),
        ));
    }
    Ok(())
}

fn op_set_ping_params(
    conn: &mut Connection,
    user: &str,
    device_id: &str,
    params: &PingParams,
) -> Result<(), StoreError> {
    let mut folders = String::new();
    for (id, class) in &params.folders {
        check_ping_text(id)?;
        check_ping_text(class)?;
        folders.push_str(id);
        folders.push('\t');
        folders.push_str(class);
        folders.push('\n');
    }
    let tx = write_tx(conn)?;
    require_device(&tx, user, device_id)?;
    tx.prepare_cached(
        "INSERT INTO ping_params (user_name, device_id, heartbeat_secs, folders)
         VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (user_name, device_id)
         DO UPDATE SET heartbeat_secs = excluded.heartbeat_secs, folders = excluded.folders",
    )?
    .execute(params![user, device_id, params.heartbeat_secs, folders])?;
    tx.commit()?;
    Ok(())
}

fn op_ping_params(
    conn: &mut Connection,
    user: &str,
    device_id: &str,
) -> Result<Option<PingParams>, StoreError> {
    let row: Option<(u32, String)> = conn
        .prepare_cached(
            "SELECT heartbeat_secs, folders FROM ping_params
             WHERE user_name = ?1 AND device_id = ?2",
        )?
        .query_row(params![user, device_id], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?;
    let Some((heartbeat_secs, text)) = row else {
        return Ok(None);
    };
    let mut folders = Vec::new();
    for line in text.lines() {
        let (id, class) = line
            .split_once('\t')
            .ok_or_else(|| StoreError::Corrupt("Ping folder line without a tab".into()))?;
        folders.push((id.to_owned(), class.to_owned()));
    }
    Ok(Some(PingParams {
        heartbeat_secs,
        folders,
    }))
}

fn op_claim_send(
    conn: &mut Connection,
    user: &str,
    key: &str,
    owner: &str,
    now: i64,
    lease_until: i64,
    expires: i64,
) -> Result<SendClaim, StoreError> {
    let tx = write_tx(conn)?;
    tx.prepare_cached("DELETE FROM send_records WHERE user_name = ?1 AND expires <= ?2")?
        .execute(params![user, now])?;
    let live: Option<(bool, String, i64)> = tx
        .prepare_cached(
            "SELECT sent, phase, lease_until FROM send_records
             WHERE user_name = ?1 AND record_key = ?2",
        )?
        .query_row(params![user, key], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
        })
        .optional()?;
    let claim = match live {
        None => {
            tx.prepare_cached(
                "INSERT INTO send_records
                     (user_name, record_key, expires, sent, owner, lease_until, phase)
                 VALUES (?1, ?2, ?3, 0, ?4, ?5, 'claimed')",
            )?
            .execute(params![user, key, expires, owner, lease_until])?;
            SendClaim::New
        }
        Some((true, _, _)) => SendClaim::Done,
        Some((false, phase, lease)) => {
            let phase = SendPhase::parse(&phase)
                .ok_or_else(|| StoreError::Corrupt(format!("send record phase {phase:?}")))?;
            match phase {
                SendPhase::Sent => SendClaim::Done,
                SendPhase::Unknown => SendClaim::Unknown,
                SendPhase::Claimed | SendPhase::Data if lease > now => SendClaim::InFlight,
                SendPhase::Claimed => {
                    // The owner died (or stopped renewing) before DATA: nothing was sent.
                    tx.prepare_cached(
                        "UPDATE send_records
                         SET owner = ?3, lease_until = ?4, expires = max(expires, ?5)
                         WHERE user_name = ?1 AND record_key = ?2",
                    )?
                    .execute(params![
                        user,
                        key,
                        owner,
                        lease_until,
                        expires
                    ])?;
                    SendClaim::New
                }
                SendPhase::Data => {
                    tx.prepare_cached(
                        "UPDATE send_records SET phase = 'unknown'
                         WHERE user_name = ?1 AND record_key = ?2",
                    )?
                    .execute(params![user, key])?;
                    SendClaim::Unknown
                }
            }
        }
    };
    tx.commit()?;
    Ok(claim)
}

fn op_set_send_phase(
    conn: &mut Connection,
    user: &str,
    key: &str,
    owner: &str,
    phase: SendPhase,
) -> Result<bool, StoreError> {
    let sql = match phase {
        SendPhase::Data => {
            "UPDATE send_records SET phase = 'data'
             WHERE user_name = ?1 AND record_key = ?2 AND owner = ?3
               AND phase = 'claimed' AND sent = 0"
        }
        SendPhase::Unknown => {
            "UPDATE send_records SET phase = 'unknown'
             WHERE user_name = ?1 AND record_key = ?2 AND owner = ?3 AND sent = 0"
        }
        SendPhase::Sent => {
            "UPDATE send_records SET phase = 'sent', sent = 1
             WHERE user_name = ?1 AND record_key = ?2 AND owner = ?3"
        }
        SendPhase::Claimed => {
            return Err(StoreError::InvalidInput(
                "a send claim cannot move back to claimed".into(),
            ))
        }
    };
    let n = conn
        .prepare_cached(sql)?
        .execute(params![user, key, owner])?;
    Ok(n == 1)
}

fn draft_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<DraftVersion> {
    Ok(DraftVersion {
        uid: r.get(0)?,
        item: r.get(1)?,
        message_id: r.get(2)?,
    })
}

fn op_record_draft_version(
    conn: &mut Connection,
    user: &str,
    collection_id: &str,
    uid_validity: u32,
    version: &DraftVersion,
    client_key: Option<&str>,
) -> Result<DraftVersion, StoreError> {
    if version.uid == 0 || version.item == 0 {
        return Err(StoreError::InvalidInput(
            "draft UID and item must not be 0".into(),
        ));
    }
    let tx = write_tx(conn)?;
    tx.prepare_cached(
        "INSERT INTO draft_versions
             (user_name, collection_id, uid_validity, uid, item, message_id, client_key)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
         ON CONFLICT (user_name, collection_id, uid_validity, uid) DO NOTHING",
    )?
    .execute(params![
        user,
        collection_id,
        uid_validity,
        version.uid,
        version.item,
        version.message_id,
        client_key
    ])?;
    let stored = op_draft_query(
        &tx,
        user,
        collection_id,
        uid_validity,
        "uid = ?4",
        &version.uid,
    )?
    .pop()
    .ok_or(rusqlite::Error::QueryReturnedNoRows)?;
    tx.commit()?;
    Ok(stored)
}

/// The recorded versions in `user`'s Drafts collection `collection_id` under `uid_validity`
/// that `filter` (SQL on the parameter `?4`, which is `arg`) picks, in UID order.
fn op_draft_query(
    conn: &Connection,
    user: &str,
    collection_id: &str,
    uid_validity: u32,
    filter: &str,
    arg: &dyn rusqlite::ToSql,
) -> Result<Vec<DraftVersion>, StoreError> {
    let sql = format!(
        "SELECT uid, item, message_id FROM draft_versions
         WHERE user_name = ?1 AND collection_id = ?2 AND uid_validity = ?3 AND {filter}
         ORDER BY uid"
    );
    let mut stmt = conn.prepare_cached(&sql)?;
    let rows = stmt.query_map(params![user, collection_id, uid_validity, arg], draft_row)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

impl SqliteStore {
    /// [`op_draft_query`] on the store's connection.
    async fn draft_query(
        &self,
        user: &str,
        collection_id: &str,
        uid_validity: u32,
        filter: &'static str,
        arg: impl rusqlite::ToSql + Send + 'static,
    ) -> Result<Vec<DraftVersion>, StoreError> {
        let (user, collection_id) = (user.to_owned(), collection_id.to_owned());
        self.call(move |c| op_draft_query(c, &user, &collection_id, uid_validity, filter, &arg))
            .await
    }
}

// ---- trait impl ---------------------------------------------------------------

impl StateStore for SqliteStore {
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
        let (user, device_id, device_type, command) = (
            user.to_owned(),
            device_id.to_owned(),
            device_type.to_owned(),
            command.to_owned(),
        );
        let user_agent = user_agent.map(str::to_owned);
        let protocol_version = protocol_version.map(str::to_owned);
        self.call(move |c| {
            op_touch_device(
                c,
                &user,
                &device_id,
                &device_type,
                user_agent.as_deref(),
                protocol_version.as_deref(),
                &command,
                now,
            )
        })
        .await
    }

    async fn device(&self, user: &str, device_id: &str) -> Result<Option<Device>, StoreError> {
        let (user, device_id) = (user.to_owned(), device_id.to_owned());
        self.call(move |c| load_device(c, &user, &device_id)).await
    }

    async fn check_writable(&self) -> Result<(), StoreError> {
        // BEGIN IMMEDIATE takes the write lock: it fails on a read-only database and when
        // another writer holds the lock past the busy timeout.
        self.call(|c| {
            write_tx(c)?.commit()?;
            Ok(())
        })
        .await
    }

    async fn devices(&self, user: Option<&str>) -> Result<Vec<Device>, StoreError> {
        let user = user.map(str::to_owned);
        self.call(move |c| op_devices(c, user.as_deref())).await
    }

    async fn set_policy(
        &self,
        user: &str,
        device_id: &str,
        state: PolicyState,
        key: u32,
        policy_hash: Option<&str>,
    ) -> Result<(), StoreError> {
        let (user, device_id) = (user.to_owned(), device_id.to_owned());
        let policy_hash = policy_hash.map(str::to_owned);
        self.call(move |c| {
            update_device(
                c,
                "UPDATE devices SET policy_state = ?3, policy_key = ?4, policy_hash = ?5
                 WHERE user_name = ?1 AND device_id = ?2",
                params![user, device_id, state.as_str(), key, policy_hash],
            )
        })
        .await
    }

    async fn set_device_info(
        &self,
        user: &str,
        device_id: &str,
        info: &[(String, String)],
    ) -> Result<(), StoreError> {
        let (user, device_id) = (user.to_owned(), device_id.to_owned());
        let info = info.to_vec();
        self.call(move |c| op_set_device_info(c, &user, &device_id, &info))
            .await
    }

    async fn set_wipe(
        &self,
        user: &str,
        device_id: &str,
        wipe: WipeState,
    ) -> Result<(), StoreError> {
        let (user, device_id) = (user.to_owned(), device_id.to_owned());
        self.call(move |c| {
            update_device(
                c,
                "UPDATE devices SET wipe_state = ?3,
                     wipe_acknowledged_at = CASE WHEN ?3 = 'acknowledged'
                         THEN COALESCE(wipe_acknowledged_at, CAST(strftime('%s', 'now') AS INTEGER))
                         ELSE NULL END
                 WHERE user_name = ?1 AND device_id = ?2",
                params![user, device_id, wipe.as_str()],
            )
        })
        .await
    }

    async fn delete_device(&self, user: &str, device_id: &str) -> Result<bool, StoreError> {
        let (user, device_id) = (user.to_owned(), device_id.to_owned());
        self.call(move |c| {
            let tx = write_tx(c)?;
            let n = tx
                .prepare_cached("DELETE FROM devices WHERE user_name = ?1 AND device_id = ?2")?
                .execute(params![user, device_id])?;
            tx.commit()?;
            Ok(n > 0)
        })
        .await
    }

    async fn record_request(&self, entry: &RequestEntry, keep: u32) -> Result<(), StoreError> {
        let entry = entry.clone();
        self.call(move |c| registry::op_record_request(c, &entry, keep))
            .await
    }

    async fn request_log(
        &self,
        user: &str,
        device_id: &str,
        after_id: i64,
        limit: u32,
    ) -> Result<Vec<RequestEntry>, StoreError> {
        let (user, device_id) = (user.to_owned(), device_id.to_owned());
        self.call(move |c| registry::op_request_log(c, &user, &device_id, after_id, limit))
            .await
    }

    async fn device_activity(
        &self,
        user: &str,
        device_id: &str,
    ) -> Result<Option<DeviceActivity>, StoreError> {
        let (user, device_id) = (user.to_owned(), device_id.to_owned());
        self.call(move |c| registry::op_device_activity(c, &user, &device_id))
            .await
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
        let (user, device_id, access) = (user.to_owned(), device_id.to_owned(), access.to_owned());
        self.call(move |c| {
            update_device(
                c,
                "UPDATE devices SET access_state = ?3 WHERE user_name = ?1 AND device_id = ?2",
                params![user, device_id, access],
            )
        })
        .await
    }

    async fn set_trace(&self, user: &str, device_id: &str, trace: &str) -> Result<(), StoreError> {
        if !matches!(trace, "" | "on" | "bodies") {
            return Err(StoreError::InvalidInput(format!("trace mode {trace:?}")));
        }
        let (user, device_id, trace) = (user.to_owned(), device_id.to_owned(), trace.to_owned());
        self.call(move |c| {
            update_device(
                c,
                "UPDATE devices SET trace = ?3 WHERE user_name = ?1 AND device_id = ?2",
                params![user, device_id, trace],
            )
        })
        .await
    }

    async fn folder_server_ids(
        &self,
        user: &str,
        identities: &[String],
    ) -> Result<Vec<String>, StoreError> {
        let user = user.to_owned();
        let identities = identities.to_vec();
        self.call(move |c| op_folder_server_ids(c, &user, &identities))
            .await
    }

    async fn rebind_folder_identity(
        &self,
        user: &str,
        old_identity: &str,
        new_identity: &str,
    ) -> Result<Option<String>, StoreError> {
        let (user, old, new) = (
            user.to_owned(),
            old_identity.to_owned(),
            new_identity.to_owned(),
        );
        self.call(move |c| op_rebind_folder_identity(c, &user, &old, &new))
            .await
    }

    async fn retire_folder_ids(
        &self,
        user: &str,
        identities: &[String],
    ) -> Result<usize, StoreError> {
        let user = user.to_owned();
        let identities = identities.to_vec();
        self.call(move |c| op_retire_folder_ids(c, &user, &identities))
            .await
    }

    async fn hierarchy(
        &self,
        user: &str,
        device_id: &str,
    ) -> Result<Option<HierarchyState>, StoreError> {
        let (user, device_id) = (user.to_owned(), device_id.to_owned());
        self.call(move |c| op_hierarchy(c, &user, &device_id)).await
    }

    async fn commit_hierarchy(
        &self,
        user: &str,
        device_id: &str,
        new_key: u32,
        folders: &[FolderEntry],
    ) -> Result<(), StoreError> {
        let (user, device_id) = (user.to_owned(), device_id.to_owned());
        let folders = folders.to_vec();
        self.call(move |c| op_commit_hierarchy(c, &user, &device_id, new_key, &folders))
            .await
    }

    async fn reset_sync_state(&self, user: &str, device_id: &str) -> Result<(), StoreError> {
        let (user, device_id) = (user.to_owned(), device_id.to_owned());
        self.call(move |c| op_reset_sync_state(c, &user, &device_id))
            .await
    }

    async fn collection_state(
        &self,
        user: &str,
        device_id: &str,
        collection_id: &str,
    ) -> Result<Option<CollectionState>, StoreError> {
        let (user, device_id, collection_id) = (
            user.to_owned(),
            device_id.to_owned(),
            collection_id.to_owned(),
        );
        self.call(move |c| op_collection_state(c, &user, &device_id, &collection_id))
            .await
    }

    async fn commit_collection(
        &self,
        user: &str,
        device_id: &str,
        collection_id: &str,
        view: &CollectionView,
        options: Option<&[u8]>,
    ) -> Result<(), StoreError> {
        let (user, device_id, collection_id) = (
            user.to_owned(),
            device_id.to_owned(),
            collection_id.to_owned(),
        );
        let view = view.clone();
        let options = options.map(<[u8]>::to_vec);
        self.call(move |c| {
            op_commit_collection(
                c,
                &user,
                &device_id,
                &collection_id,
                &view,
                options.as_deref(),
            )
        })
        .await
    }

    async fn reset_collection(
        &self,
        user: &str,
        device_id: &str,
        collection_id: &str,
    ) -> Result<bool, StoreError> {
        let (user, device_id, collection_id) = (
            user.to_owned(),
            device_id.to_owned(),
            collection_id.to_owned(),
        );
        self.call(move |c| op_reset_collection(c, &user, &device_id, &collection_id))
            .await
    }

    async fn set_cached_sync_request(
        &self,
        user: &str,
        device_id: &str,
        request: Option<&[u8]>,
    ) -> Result<(), StoreError> {
        let (user, device_id) = (user.to_owned(), device_id.to_owned());
        let request = request.map(<[u8]>::to_vec);
        self.call(move |c| op_set_cached_sync_request(c, &user, &device_id, request.as_deref()))
            .await
    }

    async fn cached_sync_request(
        &self,
        user: &str,
        device_id: &str,
    ) -> Result<Option<Vec<u8>>, StoreError> {
        let (user, device_id) = (user.to_owned(), device_id.to_owned());
        self.call(move |c| {
            Ok(c.prepare_cached(
                "SELECT request FROM sync_request_cache WHERE user_name = ?1 AND device_id = ?2",
            )?
            .query_row(params![user, device_id], |r| r.get(0))
            .optional()?)
        })
        .await
    }

    async fn set_ping_params(
        &self,
        user: &str,
        device_id: &str,
        params: &PingParams,
    ) -> Result<(), StoreError> {
        let (user, device_id, params) = (user.to_owned(), device_id.to_owned(), params.clone());
        self.call(move |c| op_set_ping_params(c, &user, &device_id, &params))
            .await
    }

    async fn ping_params(
        &self,
        user: &str,
        device_id: &str,
    ) -> Result<Option<PingParams>, StoreError> {
        let (user, device_id) = (user.to_owned(), device_id.to_owned());
        self.call(move |c| op_ping_params(c, &user, &device_id))
            .await
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
        let (user, key, owner) = (user.to_owned(), key.to_owned(), owner.to_owned());
        self.call(move |c| op_claim_send(c, &user, &key, &owner, now, lease_until, expires))
            .await
    }

    async fn renew_send(
        &self,
        user: &str,
        key: &str,
        owner: &str,
        lease_until: i64,
    ) -> Result<bool, StoreError> {
        let (user, key, owner) = (user.to_owned(), key.to_owned(), owner.to_owned());
        self.call(move |c| {
            let n = c
                .prepare_cached(
                    "UPDATE send_records SET lease_until = max(lease_until, ?4)
                     WHERE user_name = ?1 AND record_key = ?2 AND owner = ?3
                       AND phase IN ('claimed', 'data') AND sent = 0",
                )?
                .execute(params![user, key, owner, lease_until])?;
            Ok(n == 1)
        })
        .await
    }

    async fn set_send_phase(
        &self,
        user: &str,
        key: &str,
        owner: &str,
        phase: SendPhase,
    ) -> Result<bool, StoreError> {
        let (user, key, owner) = (user.to_owned(), key.to_owned(), owner.to_owned());
        self.call(move |c| op_set_send_phase(c, &user, &key, &owner, phase))
            .await
    }

    async fn release_send(&self, user: &str, key: &str, owner: &str) -> Result<(), StoreError> {
        let (user, key, owner) = (user.to_owned(), key.to_owned(), owner.to_owned());
        self.call(move |c| {
            c.prepare_cached(
                "DELETE FROM send_records
                 WHERE user_name = ?1 AND record_key = ?2 AND owner = ?3 AND sent = 0",
            )?
            .execute(params![user, key, owner])?;
            Ok(())
        })
        .await
    }

    async fn record_draft_version(
        &self,
        user: &str,
        collection_id: &str,
        uid_validity: u32,
        version: &DraftVersion,
        client_key: Option<&str>,
    ) -> Result<DraftVersion, StoreError> {
        let (user, collection_id, version) =
            (user.to_owned(), collection_id.to_owned(), version.clone());
        let client_key = client_key.map(str::to_owned);
        self.call(move |c| {
            op_record_draft_version(
                c,
                &user,
                &collection_id,
                uid_validity,
                &version,
                client_key.as_deref(),
            )
        })
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
        // One query for all: the UIDs go in as a JSON array.
        let list: Vec<String> = uids.iter().map(u32::to_string).collect();
        let json = format!("[{}]", list.join(","));
        self.draft_query(
            user,
            collection_id,
            uid_validity,
            "uid IN (SELECT value FROM json_each(?4))",
            json,
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
        self.draft_query(user, collection_id, uid_validity, "item = ?4", item)
            .await
    }

    async fn draft_versions_by_message_id(
        &self,
        user: &str,
        collection_id: &str,
        uid_validity: u32,
        message_id: &str,
    ) -> Result<Vec<DraftVersion>, StoreError> {
        self.draft_query(
            user,
            collection_id,
            uid_validity,
            "message_id = ?4",
            message_id.to_owned(),
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
        Ok(self
            .draft_query(
                user,
                collection_id,
                uid_validity,
                "client_key = ?4",
                client_key.to_owned(),
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
        let (user, collection_id) = (user.to_owned(), collection_id.to_owned());
        self.call(move |c| {
            c.prepare_cached(
                "DELETE FROM draft_versions
                 WHERE user_name = ?1 AND collection_id = ?2 AND uid_validity = ?3 AND item = ?4",
            )?
            .execute(params![user, collection_id, uid_validity, item])?;
            Ok(())
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_forms() {
        assert_eq!(parse_url("sqlite::memory:"), Ok(None));
        assert_eq!(parse_url("sqlite://:memory:"), Ok(None));
        assert_eq!(
            parse_url("sqlite:///var/lib/eas/state.db"),
            Ok(Some(PathBuf::from("/var/lib/eas/state.db")))
        );
        assert_eq!(
            parse_url("sqlite://data/state.db"),
            Ok(Some(PathBuf::from("data/state.db")))
        );
        assert!(matches!(parse_url("sqlite://"), Err(StoreError::Config(_))));
        let err = parse_url("postgres://user:hunter2@host/db").unwrap_err();
        assert!(!err.to_string().contains("hunter2"), "{err}");
        assert!(err.to_string().contains("\"postgres\""), "{err}");
        assert!(parse_url("/plain/path.db").is_err());
    }

    #[test]
    fn error_mapping() {
        let failure = |code| rusqlite::Error::SqliteFailure(rusqlite::ffi::Error::new(code), None);
        assert_eq!(
            StoreError::from(failure(rusqlite::ffi::SQLITE_BUSY)),
            StoreError::Busy
        );
        assert_eq!(
            StoreError::from(failure(rusqlite::ffi::SQLITE_LOCKED)),
            StoreError::Busy
        );
        assert!(StoreError::Busy.is_retryable());
        assert!(matches!(
            StoreError::from(failure(rusqlite::ffi::SQLITE_CORRUPT)),
            StoreError::Corrupt(_)
        ));
        assert!(matches!(
            StoreError::from(failure(rusqlite::ffi::SQLITE_NOTADB)),
            StoreError::Corrupt(_)
        ));
        assert!(matches!(
            StoreError::from(failure(rusqlite::ffi::SQLITE_CONSTRAINT)),
            StoreError::Database(_)
        ));
    }

    #[tokio::test]
    async fn panic_in_call_is_reported_and_rolled_back() {
        let store = SqliteStore::open_in_memory().unwrap();
        store
            .touch_device("u", "d", "t", None, None, "Sync", 1)
            .await
            .unwrap();
        let err = store
            .call(|c| -> Result<(), StoreError> {
                let tx = write_tx(c)?;
                tx.execute("DELETE FROM devices", [])?;
                panic!("simulated crash mid-transaction");
            })
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::Internal(_)));
        // The connection (its mutex was poisoned) still works and the
        // half-done transaction was rolled back.
        assert!(store.device("u", "d").await.unwrap().is_some());
    }

    #[tokio::test]
    async fn delete_device_leaves_no_rows_behind() {
        let store = SqliteStore::open_in_memory().unwrap();
        for dev in ["d", "keep"] {
            store
                .touch_device("u", dev, "t", None, None, "Sync", 1)
                .await
                .unwrap();
            store
                .set_device_info("u", dev, &[("Model".into(), "m".into())])
                .await
                .unwrap();
            for key in 1..=3 {
                let f = FolderEntry {
                    server_id: "1".into(),
                    parent_id: "0".into(),
                    display_name: "Inbox".into(),
                    folder_type: 2,
                };
                store.commit_hierarchy("u", dev, key, &[f]).await.unwrap();
                let view = CollectionView {
                    key,
                    uid_validity: 1,
                    uids: "1:3".into(),
                    highest_modseq: 5,
                    flags: None,
                    filter_start: None,
                    more_available: false,
                };
                store
                    .commit_collection("u", dev, "1", &view, Some(b"o"))
                    .await
                    .unwrap();
            }
            store
                .set_cached_sync_request("u", dev, Some(b"r"))
                .await
                .unwrap();
            let ping = PingParams {
                heartbeat_secs: 60,
                folders: vec![("1".into(), "Email".into())],
            };
            store.set_ping_params("u", dev, &ping).await.unwrap();
        }
        assert!(store.delete_device("u", "d").await.unwrap());
        let counts = store
            .call(|c| {
                let mut out = Vec::new();
                for table in [
                    "devices",
                    "device_info",
                    "hierarchy_snapshots",
                    "hierarchy_folders",
                    "collections",
                    "collection_views",
                    "sync_request_cache",
                    "ping_params",
                ] {
                    let n: i64 = c.query_row(
                        &format!("SELECT count(*) FROM {table} WHERE device_id = 'd'"),
                        [],
                        |r| r.get(0),
                    )?;
                    let kept: i64 = c.query_row(
                        &format!("SELECT count(*) FROM {table} WHERE device_id = 'keep'"),
                        [],
                        |r| r.get(0),
                    )?;
                    out.push((table, n, kept));
                }
                Ok(out)
            })
            .await
            .unwrap();
        for (table, n, kept) in counts {
            assert_eq!(n, 0, "{table}");
            assert!(kept > 0, "{table}");
        }
        // Only two snapshots are ever kept.
        let snaps: i64 = store
            .call(|c| {
                Ok(c.query_row(
                    "SELECT (SELECT count(*) FROM hierarchy_snapshots)
                          + (SELECT count(*) FROM collection_views)",
                    [],
                    |r| r.get(0),
                )?)
            })
            .await
            .unwrap();
        assert_eq!(snaps, 4);
    }
}
