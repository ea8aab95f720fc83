//! Versioned schema migrations for the SQLite store.
//!
//! The schema version lives in `PRAGMA user_version`. [`run`] applies every
//! migration newer than the stored version, each in its own `IMMEDIATE`
//! transaction together with the version bump, so a crash or a concurrent
//! opener (another gateway node on the same file) never leaves a partly
//! applied step: whoever takes the write lock first applies it, the others
//! see the new version and skip it.
//!
//! Rules for adding a migration:
//! * append a new entry with the next version number; never edit or reorder
//!   an entry that has shipped;
//! * never drop or rewrite data a device still needs (sync keys, folder ids,
//!   provisioning); prefer `ALTER TABLE .. ADD COLUMN` with a default, or
//!   create-new-table + copy + rename inside the same step;
//! * keep the SQL portable in spirit, the PostgreSQL store mirrors it.

use rusqlite::{Connection, TransactionBehavior};

use super::StoreError;

/// One schema step.
pub(crate) struct Migration {
    pub version: i64,
    pub description: &'static str,
    pub sql: &'static str,
}

/// All migrations, in order. Versions are contiguous from 1.
pub(crate) const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        description: "devices, device information, per-user folder ids, folder hierarchy",
        sql: r#"
-- The login column is `user_name` because USER is reserved in PostgreSQL.
CREATE TABLE devices (
    user_name        TEXT    NOT NULL,
    device_id        TEXT    NOT NULL,
    device_type      TEXT    NOT NULL,
    user_agent       TEXT,
    protocol_version TEXT,
    policy_state     TEXT    NOT NULL DEFAULT 'none',
    policy_key       INTEGER NOT NULL DEFAULT 0,
    policy_hash      TEXT,
    first_seen       INTEGER NOT NULL,
    last_seen        INTEGER NOT NULL,
    wipe_state       TEXT    NOT NULL DEFAULT 'none',
    last_command     TEXT,
    PRIMARY KEY (user_name, device_id)
);

CREATE TABLE device_info (
    user_name TEXT    NOT NULL,
    device_id TEXT    NOT NULL,
    position  INTEGER NOT NULL,
    name      TEXT    NOT NULL,
    value     TEXT    NOT NULL,
    PRIMARY KEY (user_name, device_id, position),
    FOREIGN KEY (user_name, device_id) REFERENCES devices (user_name, device_id) ON DELETE CASCADE
);

-- Next ServerId to hand out per user. Only ever increases, so ids are never
-- reused even after mappings are retired.
CREATE TABLE folder_id_counters (
    user_name TEXT    NOT NULL PRIMARY KEY,
    next_id   INTEGER NOT NULL
);

CREATE TABLE folder_ids (
    user_name TEXT NOT NULL,
    identity  TEXT NOT NULL,
    server_id TEXT NOT NULL,
    PRIMARY KEY (user_name, identity),
    UNIQUE (user_name, server_id)
);

-- slot 0 = current, slot 1 = previous.
CREATE TABLE hierarchy_snapshots (
    user_name TEXT    NOT NULL,
    device_id TEXT    NOT NULL,
    slot      INTEGER NOT NULL CHECK (slot IN (0, 1)),
    sync_key  INTEGER NOT NULL,
    PRIMARY KEY (user_name, device_id, slot),
    FOREIGN KEY (user_name, device_id) REFERENCES devices (user_name, device_id) ON DELETE CASCADE
);

CREATE TABLE hierarchy_folders (
    user_name    TEXT    NOT NULL,
    device_id    TEXT    NOT NULL,
    slot         INTEGER NOT NULL,
    position     INTEGER NOT NULL,
    server_id    TEXT    NOT NULL,
    parent_id    TEXT    NOT NULL,
    display_name TEXT    NOT NULL,
    folder_type  INTEGER NOT NULL,
    PRIMARY KEY (user_name, device_id, slot, position),
    FOREIGN KEY (user_name, device_id, slot) REFERENCES hierarchy_snapshots (user_name, device_id, slot)
        ON DELETE CASCADE ON UPDATE CASCADE
);
"#,
    },
    Migration {
        version: 2,
        description: "per-collection mail sync state and cached Sync request",
        sql: r#"
CREATE TABLE collections (
    user_name     TEXT NOT NULL,
    device_id     TEXT NOT NULL,
    collection_id TEXT NOT NULL,
    options       BLOB,
    PRIMARY KEY (user_name, device_id, collection_id),
    FOREIGN KEY (user_name, device_id) REFERENCES devices (user_name, device_id) ON DELETE CASCADE
);

-- slot 0 = current, slot 1 = previous.
CREATE TABLE collection_views (
    user_name      TEXT    NOT NULL,
    device_id      TEXT    NOT NULL,
    collection_id  TEXT    NOT NULL,
    slot           INTEGER NOT NULL CHECK (slot IN (0, 1)),
    sync_key       INTEGER NOT NULL,
    uid_validity   INTEGER NOT NULL,
    uids           TEXT    NOT NULL,
    highest_modseq INTEGER NOT NULL,
    flags          TEXT,
    filter_start   INTEGER,
    more_available INTEGER NOT NULL CHECK (more_available IN (0, 1)),
    PRIMARY KEY (user_name, device_id, collection_id, slot),
    FOREIGN KEY (user_name, device_id, collection_id)
        REFERENCES collections (user_name, device_id, collection_id)
        ON DELETE CASCADE ON UPDATE CASCADE
);

CREATE TABLE sync_request_cache (
    user_name TEXT NOT NULL,
    device_id TEXT NOT NULL,
    request   BLOB NOT NULL,
    PRIMARY KEY (user_name, device_id),
    FOREIGN KEY (user_name, device_id) REFERENCES devices (user_name, device_id) ON DELETE CASCADE
);
"#,
    },
    Migration {
        version: 3,
        description: "last Ping parameters per device, send retry records per user",
        sql: r#"
CREATE TABLE ping_params (
    user_name      TEXT    NOT NULL,
    device_id      TEXT    NOT NULL,
    heartbeat_secs INTEGER NOT NULL,
    -- one "collection id <TAB> class" per line
    folders        TEXT    NOT NULL,
    PRIMARY KEY (user_name, device_id),
    FOREIGN KEY (user_name, device_id) REFERENCES devices (user_name, device_id) ON DELETE CASCADE
);

-- A message a device submitted (keyed by ClientId or Message-ID), so that a
-- retried submission is answered without sending again.
CREATE TABLE send_records (
    user_name  TEXT    NOT NULL,
    record_key TEXT    NOT NULL,
    expires    INTEGER NOT NULL,
    sent       INTEGER NOT NULL CHECK (sent IN (0, 1)),
    PRIMARY KEY (user_name, record_key)
);
"#,
    },
    Migration {
        version: 4,
        description: "draft versions per user (stable draft ServerIds)",
        sql: r#"
-- One IMAP version (UID) of a draft in a user's Drafts folder, and the draft
-- item it belongs to: the ServerId number every device of the user knows the
-- draft by, which stays the same when the draft is replaced by a new version.
CREATE TABLE draft_versions (
    user_name     TEXT    NOT NULL,
    collection_id TEXT    NOT NULL,
    uid_validity  INTEGER NOT NULL,
    uid           INTEGER NOT NULL,
    item          INTEGER NOT NULL,
    message_id    TEXT,
    -- "<device id> <ClientId>" of the Sync Add that created the draft
    client_key    TEXT,
    PRIMARY KEY (user_name, collection_id, uid_validity, uid)
);
CREATE INDEX draft_versions_item
    ON draft_versions (user_name, collection_id, uid_validity, item);
CREATE INDEX draft_versions_message_id
    ON draft_versions (user_name, collection_id, uid_validity, message_id);
CREATE INDEX draft_versions_client
    ON draft_versions (user_name, collection_id, client_key);
"#,
    },
    Migration {
        version: 5,
        description: "send claims with an owner, a lease and a phase",
        sql: r#"
-- Who holds a send claim (a gateway process and one of its requests), until when it is
-- known to be alive (renewed while the submission runs), and how far the submission got:
-- claimed (no DATA sent yet), data (DATA issued: the server may get the message), sent,
-- unknown (the owner died after DATA; never sent again).
ALTER TABLE send_records ADD COLUMN owner TEXT NOT NULL DEFAULT '';
ALTER TABLE send_records ADD COLUMN lease_until INTEGER NOT NULL DEFAULT 0;
ALTER TABLE send_records ADD COLUMN phase TEXT NOT NULL DEFAULT 'claimed'
    CHECK (phase IN ('claimed', 'data', 'sent', 'unknown'));
-- A claim of an older gateway may have been in DATA: it counts as started (never sent twice).
UPDATE send_records SET phase = CASE sent WHEN 1 THEN 'sent' ELSE 'data' END;
"#,
    },
    Migration {
        version: 6,
        description: "device registry: last error, access state, per-command and per-folder activity, request log",
        sql: r#"
ALTER TABLE devices ADD COLUMN last_error TEXT;
ALTER TABLE devices ADD COLUMN last_error_at INTEGER;
-- allowed | blocked | quarantined: an administrator's override ('' = the access rules decide).
ALTER TABLE devices ADD COLUMN access_state TEXT NOT NULL DEFAULT '';
ALTER TABLE devices ADD COLUMN wipe_acknowledged_at INTEGER;
-- Requests started (counted by the request's first write) and recorded (counted when its
-- log entry is written): a Ping or hanging Sync that is waiting right now is the difference.
ALTER TABLE devices ADD COLUMN requests_started INTEGER NOT NULL DEFAULT 0;
ALTER TABLE devices ADD COLUMN requests_recorded INTEGER NOT NULL DEFAULT 0;

-- The last request of each command a device made.
CREATE TABLE device_commands (
    user_name TEXT    NOT NULL,
    device_id TEXT    NOT NULL,
    command   TEXT    NOT NULL,
    last_at   INTEGER NOT NULL,
    count     INTEGER NOT NULL,
    PRIMARY KEY (user_name, device_id, command),
    FOREIGN KEY (user_name, device_id) REFERENCES devices (user_name, device_id) ON DELETE CASCADE
);

-- The last Sync of each folder a device synced: when, the key it ended with, the items of
-- that Sync each way and the totals.
CREATE TABLE device_folders (
    user_name      TEXT    NOT NULL,
    device_id      TEXT    NOT NULL,
    collection_id  TEXT    NOT NULL,
    last_sync      INTEGER NOT NULL,
    sync_key       TEXT,
    status         INTEGER NOT NULL,
    last_sent      INTEGER NOT NULL,
    last_received  INTEGER NOT NULL,
    total_sent     INTEGER NOT NULL,
    total_received INTEGER NOT NULL,
    PRIMARY KEY (user_name, device_id, collection_id),
    FOREIGN KEY (user_name, device_id) REFERENCES devices (user_name, device_id) ON DELETE CASCADE
);

-- The last requests of each device (the gateway keeps devices.log_entries of them).
CREATE TABLE request_log (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    user_name    TEXT    NOT NULL,
    device_id    TEXT    NOT NULL,
    at_ms        INTEGER NOT NULL,
    command      TEXT    NOT NULL,
    eas_status   INTEGER,
    http_status  INTEGER NOT NULL,
    duration_ms  INTEGER NOT NULL,
    bytes_in     INTEGER NOT NULL,
    bytes_out    INTEGER NOT NULL,
    -- JSON: [{collection_id, key_in, key_out, status, added_out, ...}]
    collections  TEXT    NOT NULL,
    -- the watched folder ids, one per line
    ping_folders TEXT    NOT NULL,
    ping_outcome TEXT,
    error        TEXT,
    FOREIGN KEY (user_name, device_id) REFERENCES devices (user_name, device_id) ON DELETE CASCADE
);
CREATE INDEX request_log_device ON request_log (user_name, device_id, id);
"#,
    },
    Migration {
        version: 7,
        description: "device registry: wire trace on demand",
        sql: r#"
-- '' (off) | on (bodies redacted) | bodies: the gateway writes the device's requests and
-- responses, decoded to XML, to a trace file.
ALTER TABLE devices ADD COLUMN trace TEXT NOT NULL DEFAULT '';
"#,
    },
];

/// The schema version this build writes.
pub(crate) fn latest_version() -> i64 {
    MIGRATIONS.last().map_or(0, |m| m.version)
}

fn user_version(conn: &Connection) -> Result<i64, StoreError> {
    Ok(conn.pragma_query_value(None, "user_version", |r| r.get(0))?)
}

/// Brings the schema up to date. Returns the resulting version.
pub(crate) fn run(conn: &mut Connection) -> Result<i64, StoreError> {
    run_to(conn, latest_version())
}

/// Applies migrations up to and including `target`.
pub(crate) fn run_to(conn: &mut Connection, target: i64) -> Result<i64, StoreError> {
    let supported = latest_version();
    let found = user_version(conn)?;
    if found > supported {
        return Err(StoreError::SchemaTooNew { found, supported });
    }
    for m in MIGRATIONS.iter().filter(|m| m.version <= target) {
        if m.version <= found {
            continue;
        }
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        // Re-read under the write lock: another process may have migrated
        // between our first read and taking the lock.
        let current = user_version(&tx)?;
        if current > supported {
            return Err(StoreError::SchemaTooNew {
                found: current,
                supported,
            });
        }
        if current >= m.version {
            continue;
        }
        if current != m.version - 1 {
            return Err(StoreError::Corrupt(format!(
                "schema version {current} cannot be migrated to {}",
                m.version
            )));
        }
        tx.execute_batch(m.sql)?;
        // user_version is part of the database header and therefore
        // committed or rolled back together with the schema change.
        tx.pragma_update(None, "user_version", m.version)?;
        tx.commit()?;
        tracing::info!(
            version = m.version,
            description = m.description,
            "applied state schema migration"
        );
    }
    user_version(conn)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_are_contiguous_from_one() {
        for (i, m) in MIGRATIONS.iter().enumerate() {
            assert_eq!(m.version, i as i64 + 1, "{}", m.description);
        }
        assert_eq!(latest_version(), MIGRATIONS.len() as i64);
    }

    #[test]
    fn run_is_idempotent() {
        let mut conn = Connection::open_in_memory().unwrap();
        assert_eq!(run(&mut conn).unwrap(), latest_version());
        assert_eq!(run(&mut conn).unwrap(), latest_version());
    }

    #[test]
    fn upgrade_keeps_existing_rows() {
        let mut conn = Connection::open_in_memory().unwrap();
        conn.pragma_update(None, "foreign_keys", true).unwrap();
        assert_eq!(run_to(&mut conn, 1).unwrap(), 1);
        conn.execute(
            "INSERT INTO devices (user_name, device_id, device_type, first_seen, last_seen)
             VALUES ('u', 'd', 't', 1, 2)",
            [],
        )
        .unwrap();
        assert_eq!(run(&mut conn).unwrap(), latest_version());
        let n: i64 = conn
            .query_row("SELECT count(*) FROM devices", [], |r| r.get(0))
            .unwrap();
        assert_eq!(n, 1);
        conn.execute(
            "INSERT INTO sync_request_cache (user_name, device_id, request) VALUES ('u', 'd', x'01')",
            [],
        )
        .unwrap();
    }

    #[test]
    fn send_records_of_an_older_gateway_get_a_phase() {
        let mut conn = Connection::open_in_memory().unwrap();
        assert_eq!(run_to(&mut conn, 4).unwrap(), 4);
        conn.execute_batch(
            "INSERT INTO send_records (user_name, record_key, expires, sent)
             VALUES ('u', 'done', 9, 1), ('u', 'in flight', 9, 0);",
        )
        .unwrap();
        assert_eq!(run(&mut conn).unwrap(), latest_version());
        let phase = |k: &str| -> (String, String, i64) {
            conn.query_row(
                "SELECT phase, owner, lease_until FROM send_records WHERE record_key = ?1",
                [k],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .unwrap()
        };
        assert_eq!(phase("done"), ("sent".into(), String::new(), 0));
        // It may have been in DATA: never sent again.
        assert_eq!(phase("in flight"), ("data".into(), String::new(), 0));
    }

    #[test]
    fn newer_schema_is_refused() {
        let mut conn = Connection::open_in_memory().unwrap();
        conn.pragma_update(None, "user_version", latest_version() + 1)
            .unwrap();
        assert_eq!(
            run(&mut conn),
            Err(StoreError::SchemaTooNew {
                found: latest_version() + 1,
                supported: latest_version()
            })
        );
    }

    #[test]
    fn failed_step_rolls_back_version() {
        let mut conn = Connection::open_in_memory().unwrap();
        // A table that collides with migration 1 makes it fail.
        conn.execute_batch("CREATE TABLE devices (x INTEGER);")
            .unwrap();
        assert!(run(&mut conn).is_err());
        assert_eq!(user_version(&conn).unwrap(), 0);
    }
}
