//! SQLite implementation of [`StateStore`], the embedded default.
//!
//! A store keeps one writer connection and, for a database file, a few reader
//! connections on the same file, each behind a `std::sync::Mutex`. The file is
//! in WAL mode, so reads run on a reader and never wait behind a write (nor a
//! write behind reads); writes are serialised on the writer, as SQLite allows
//! only one at a time anyway. An in-memory database has no readers: its reads
//! share the writer. Every call runs on tokio's blocking pool
//! (`spawn_blocking`) so async worker threads never wait on disk or on a lock,
//! and no lock is held across an `.await`. Writes use `BEGIN IMMEDIATE`, so a
//! transaction takes the write lock up front and waits (up to the busy
//! timeout) for other writers instead of failing half-way; this also holds
//! when several gateway processes on the same host share one database file
//! (not suitable for network file systems).
//!
//! A call whose future is dropped still runs to completion on the blocking
//! pool; since each call is one transaction, it is applied entirely or not
//! at all.
//!
//! Each operation is written once, in `ops.rs`, as the body of a closure that
//! [`store_ops!`] turns into the [`StateStore`] method: the macro copies the
//! borrowed arguments (see [`Arg`]), runs the body on the reader or the writer
//! and lends the copies back to it in their borrowed form (see [`Lend`]).

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, TryLockError};
use std::time::Duration;

use rusqlite::{Connection, ErrorCode, OpenFlags, Transaction, TransactionBehavior};

use super::migrations;
use super::{
    CollectionView, DraftVersion, PingParams, PolicyState, RequestEntry, SendPhase, StoreError,
    WipeState,
};

mod ops;

/// How long a statement waits for another writer before failing with
/// [`StoreError::Busy`].
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// Reader connections of a store on a database file.
const READERS: usize = 4;

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

/// SQLite-backed [`StateStore`]. Cloning is cheap and shares the connections.
#[derive(Clone)]
pub struct SqliteStore {
    inner: Arc<Inner>,
}

/// The connections of a store.
struct Inner {
    writer: Mutex<Connection>,
    /// Connections for reads (`query_only`); empty for an in-memory database
    /// or a file that could not be put in WAL mode, whose reads then share the
    /// writer.
    readers: Vec<Mutex<Connection>>,
    /// Which reader a read waits for when all are busy.
    next_reader: AtomicUsize,
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
        Self::init(conn, path.display().to_string(), Some(path))
    }

    /// Opens a private in-memory database (lost when the last clone is
    /// dropped). Meant for tests and throw-away runs.
    pub fn open_in_memory() -> Result<SqliteStore, StoreError> {
        let conn = Connection::open_in_memory()?;
        Self::init(conn, ":memory:".into(), None)
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

    /// Configures the writer `conn` (of the file at `file`, or in memory),
    /// migrates the schema and opens the readers.
    fn init(
        mut conn: Connection,
        location: String,
        file: Option<&Path>,
    ) -> Result<SqliteStore, StoreError> {
        conn.busy_timeout(BUSY_TIMEOUT)?;
        let mut wal = false;
        if file.is_some() {
            let mode: String =
                conn.pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get(0))?;
            wal = mode.eq_ignore_ascii_case("wal");
            if !wal {
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
        // Readers only in WAL mode: there a read neither waits for the writer
        // nor holds it up.
        let readers = match file {
            Some(path) if wal => (0..READERS)
                .map(|_| open_reader(path).map(Mutex::new))
                .collect::<Result<_, _>>()?,
            _ => Vec::new(),
        };
        tracing::info!(location = %location, schema_version = version, "opened state database");
        Ok(SqliteStore {
            inner: Arc::new(Inner {
                writer: Mutex::new(conn),
                readers,
                next_reader: AtomicUsize::new(0),
                location,
            }),
        })
    }

    /// Runs `f` with the store's connections on the blocking pool.
    async fn run<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Inner) -> Result<T, StoreError> + Send + 'static,
    {
        let inner = Arc::clone(&self.inner);
        let _timed = crate::metrics::StoreCall::start();
        tokio::task::spawn_blocking(move || f(&inner))
            .await
            .map_err(|e| {
                if e.is_panic() {
                    StoreError::Internal("state store task panicked".into())
                } else {
                    StoreError::Internal("state store task was cancelled".into())
                }
            })?
    }

    /// Runs `f` in a read transaction on a reader.
    async fn read<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Transaction<'_>) -> Result<T, StoreError> + Send + 'static,
    {
        self.run(move |db| db.read(f)).await
    }

    /// Runs `f` in a write transaction on the writer; commits if it succeeds.
    async fn write<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Transaction<'_>) -> Result<T, StoreError> + Send + 'static,
    {
        self.run(move |db| db.write(f)).await
    }

    /// Runs `f` with the writer outside any transaction (single statements
    /// commit on their own).
    async fn call<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T, StoreError> + Send + 'static,
    {
        self.run(move |db| db.with_writer(f)).await
    }
}

/// Opens a reader connection on the database file at `path`, whose schema the
/// writer has already migrated.
fn open_reader(path: &Path) -> Result<Connection, StoreError> {
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = Connection::open_with_flags(path, flags)?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    conn.pragma_update(None, "query_only", true)?;
    Ok(conn)
}

/// Locks a connection. A poisoned lock only means an earlier closure
/// panicked; any transaction it had open was rolled back when it unwound, so
/// the connection is in a clean state and can be reused.
fn lock(conn: &Mutex<Connection>) -> MutexGuard<'_, Connection> {
    conn.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Inner {
    fn with_writer<T>(
        &self,
        f: impl FnOnce(&mut Connection) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        f(&mut lock(&self.writer))
    }

    /// Runs `f` on a free reader, or waits for one if all are busy.
    fn with_reader<T>(
        &self,
        f: impl FnOnce(&mut Connection) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let free = self.readers.iter().find_map(|r| match r.try_lock() {
            Ok(conn) => Some(conn),
            Err(TryLockError::Poisoned(p)) => Some(p.into_inner()),
            Err(TryLockError::WouldBlock) => None,
        });
        let mut conn = match free {
            Some(conn) => conn,
            None => {
                let n = self.next_reader.fetch_add(1, Ordering::Relaxed);
                match self.readers.get(n % self.readers.len().max(1)) {
                    Some(reader) => lock(reader),
                    None => return self.with_writer(f),
                }
            }
        };
        f(&mut conn)
    }

    /// Runs `f` in a read transaction (one consistent snapshot) on a reader.
    fn read<T>(
        &self,
        f: impl FnOnce(&Transaction<'_>) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        self.with_reader(|conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Deferred)?;
            let value = f(&tx)?;
            tx.finish()?;
            Ok(value)
        })
    }

    /// Runs `f` in a write transaction on the writer and commits if it
    /// succeeds (an error rolls everything back).
    fn write<T>(
        &self,
        f: impl FnOnce(&Transaction<'_>) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        self.with_writer(|conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let value = f(&tx)?;
            tx.commit()?;
            Ok(value)
        })
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

// ---- operation arguments --------------------------------------------------------

/// An argument of a [`StateStore`] method, copied so that the operation can
/// run on the blocking pool.
trait Arg {
    type Owned: Lend + Send + 'static;
    fn carry(self) -> Self::Owned;
}

/// The copy of an argument, lent back to the operation in its borrowed form.
trait Lend {
    type Out<'a>
    where
        Self: 'a;
    fn lend(&self) -> Self::Out<'_>;
}

impl Arg for &str {
    type Owned = String;
    fn carry(self) -> String {
        self.to_owned()
    }
}

impl Lend for String {
    type Out<'a> = &'a str;
    fn lend(&self) -> &str {
        self
    }
}

impl Arg for Option<&str> {
    type Owned = Option<String>;
    fn carry(self) -> Option<String> {
        self.map(str::to_owned)
    }
}

impl Lend for Option<String> {
    type Out<'a> = Option<&'a str>;
    fn lend(&self) -> Option<&str> {
        self.as_deref()
    }
}

impl<T: Clone + Send + 'static> Arg for &[T] {
    type Owned = Vec<T>;
    fn carry(self) -> Vec<T> {
        self.to_vec()
    }
}

impl<T: 'static> Lend for Vec<T> {
    type Out<'a> = &'a [T];
    fn lend(&self) -> &[T] {
        self
    }
}

impl Arg for Option<&[u8]> {
    type Owned = Option<Vec<u8>>;
    fn carry(self) -> Option<Vec<u8>> {
        self.map(<[u8]>::to_vec)
    }
}

impl Lend for Option<Vec<u8>> {
    type Out<'a> = Option<&'a [u8]>;
    fn lend(&self) -> Option<&[u8]> {
        self.as_deref()
    }
}

/// Arguments passed by reference to a value that is cloned.
macro_rules! by_ref {
    ($($t:ty),*) => {$(
        impl Arg for &$t {
            type Owned = $t;
            fn carry(self) -> $t {
                self.clone()
            }
        }

        impl Lend for $t {
            type Out<'a> = &'a $t;
            fn lend(&self) -> &$t {
                self
            }
        }
    )*};
}

/// Arguments passed by value.
macro_rules! by_value {
    ($($t:ty),*) => {$(
        impl Arg for $t {
            type Owned = $t;
            fn carry(self) -> $t {
                self
            }
        }

        impl Lend for $t {
            type Out<'a> = $t;
            fn lend(&self) -> $t {
                *self
            }
        }
    )*};
}

by_ref!(CollectionView, DraftVersion, PingParams, RequestEntry);
by_value!(u32, i64, PolicyState, WipeState, SendPhase);

/// Implements [`StateStore`] for [`SqliteStore`] from one entry per method:
///
/// ```text
/// KIND fn NAME(ARG: TYPE, ...) -> T => [check { ... } =>] |CONN| { BODY }
/// ```
///
/// The optional `check` block runs first, on the caller's task, with the
/// borrowed arguments (for validation that needs no database: it may
/// `return Err(..)` or an early `Ok`). The body then runs on the blocking
/// pool with the same argument names bound to borrowed views of their copies,
/// and `CONN` bound according to KIND:
///
/// * `read`: a read transaction on a reader (`&Transaction`);
/// * `write`: a write transaction (`BEGIN IMMEDIATE`) on the writer, committed
///   when the body returns `Ok` (`&Transaction`);
/// * `call`: the writer outside a transaction, for single statements
///   (`&mut Connection`);
/// * `run`: the store's connections (`&Inner`), for an operation that reads
///   first and writes only if needed.
macro_rules! store_ops {
    ($(
        $(#[$meta:meta])*
        $kind:ident fn $name:ident($($arg:ident: $ty:ty),* $(,)?) -> $ret:ty =>
            $(check $check:block =>)?
            |$conn:tt| $body:block
    )*) => {
        impl $crate::state::StateStore for $crate::state::sqlite::SqliteStore {
            $(
                $(#[$meta])*
                async fn $name(
                    &self,
                    $($arg: $ty),*
                ) -> Result<$ret, $crate::state::StoreError> {
                    $($check)?
                    $(let $arg = $crate::state::sqlite::Arg::carry($arg);)*
                    self.$kind(move |$conn| {
                        $(let $arg = $crate::state::sqlite::Lend::lend(&$arg);)*
                        $body
                    })
                    .await
                }
            )*
        }
    };
}
pub(crate) use store_ops;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::{FolderEntry, StateStore};

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
                let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
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

    /// A read on a database file does not wait for the writer: it runs on a reader while a
    /// write call holds the writer (the write waits for the read to finish here).
    #[tokio::test]
    async fn reads_do_not_wait_behind_a_write() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("state.db")).unwrap();
        store
            .touch_device("u", "d", "t", None, None, "Sync", 1)
            .await
            .unwrap();
        let (done, read_done) = std::sync::mpsc::channel::<()>();
        let (holding, writer_held) = tokio::sync::oneshot::channel::<()>();
        let writer = store.clone();
        let write = tokio::spawn(async move {
            writer
                .call(move |c| {
                    let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
                    tx.execute("UPDATE devices SET last_command = 'Ping'", [])?;
                    let _ = holding.send(());
                    // Holds the writer (and the write lock) until the read is done.
                    read_done
                        .recv_timeout(Duration::from_secs(60))
                        .map_err(|_| StoreError::Internal("the read never finished".into()))?;
                    tx.commit()?;
                    Ok(())
                })
                .await
        });
        writer_held.await.unwrap();
        // The uncommitted write is not visible, and the read does not wait for it.
        let device = store.device("u", "d").await.unwrap().unwrap();
        assert_eq!(device.last_command.as_deref(), Some("Sync"));
        done.send(()).unwrap();
        write.await.unwrap().unwrap();
        let device = store.device("u", "d").await.unwrap().unwrap();
        assert_eq!(device.last_command.as_deref(), Some("Ping"));
    }
}
