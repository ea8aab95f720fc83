//! Versioned schema migrations for the PostgreSQL store.
//!
//! Versions 1 to 7 are the SQLite store's migrations (`migrations.rs`) step for step, in the
//! PostgreSQL dialect: `BIGINT` for integers, `BOOLEAN` for flags, `BYTEA` for blobs, an
//! identity column for the request log. Version 8 adds the sync leases several nodes need;
//! the SQLite store (one node) keeps its leases in process and has no step 8. A step both
//! stores need takes the next number free in both lists.
//!
//! The applied versions are rows of `eas_schema_migrations`. [`run`] takes a session-level
//! advisory lock first, so of several nodes starting at once one applies the pending steps
//! and the others wait, then find nothing left to do. Each step runs in its own transaction
//! together with its row in `eas_schema_migrations`: a failed step leaves no trace.
//!
//! The rules of `migrations.rs` apply: append, never edit a shipped step, never drop data a
//! device still needs.

use tokio_postgres::Client;

use super::StoreError;

/// One schema step.
pub(crate) struct Migration {
    pub version: i64,
    pub description: &'static str,
    pub sql: &'static str,
}

/// The advisory lock key under which migrations run (an arbitrary constant: "easgwmig").
const MIGRATION_LOCK: i64 = 0x6561_7367_776d_6967;

/// All migrations, in order. Versions are contiguous from 1.
pub(crate) const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        description: "devices, device information, per-user folder ids, folder hierarchy",
        sql: r#"
CREATE TABLE devices (
    user_name        TEXT   NOT NULL,
    device_id        TEXT   NOT NULL,
    device_type      TEXT   NOT NULL,
    user_agent       TEXT,
    protocol_version TEXT,
    policy_state     TEXT   NOT NULL DEFAULT 'none',
    policy_key       BIGINT NOT NULL DEFAULT 0,
    policy_hash      TEXT,
    first_seen       BIGINT NOT NULL,
    last_seen        BIGINT NOT NULL,
    wipe_state       TEXT   NOT NULL DEFAULT 'none',
    last_command     TEXT,
    PRIMARY KEY (user_name, device_id)
);

CREATE TABLE device_info (
    user_name TEXT   NOT NULL,
    device_id TEXT   NOT NULL,
    position  BIGINT NOT NULL,
    name      TEXT   NOT NULL,
    value     TEXT   NOT NULL,
    PRIMARY KEY (user_name, device_id, position),
    FOREIGN KEY (user_name, device_id) REFERENCES devices (user_name, device_id) ON DELETE CASCADE
);

-- Next ServerId to hand out per user. Only ever increases, so ids are never
-- reused even after mappings are retired.
CREATE TABLE folder_id_counters (
    user_name TEXT   NOT NULL PRIMARY KEY,
    next_id   BIGINT NOT NULL
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
    user_name TEXT   NOT NULL,
    device_id TEXT   NOT NULL,
    slot      BIGINT NOT NULL CHECK (slot IN (0, 1)),
    sync_key  BIGINT NOT NULL,
    PRIMARY KEY (user_name, device_id, slot),
    FOREIGN KEY (user_name, device_id) REFERENCES devices (user_name, device_id) ON DELETE CASCADE
);

CREATE TABLE hierarchy_folders (
    user_name    TEXT   NOT NULL,
    device_id    TEXT   NOT NULL,
    slot         BIGINT NOT NULL,
    position     BIGINT NOT NULL,
    server_id    TEXT   NOT NULL,
    parent_id    TEXT   NOT NULL,
    display_name TEXT   NOT NULL,
    folder_type  BIGINT NOT NULL,
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
    options       BYTEA,
    PRIMARY KEY (user_name, device_id, collection_id),
    FOREIGN KEY (user_name, device_id) REFERENCES devices (user_name, device_id) ON DELETE CASCADE
);

-- slot 0 = current, slot 1 = previous.
CREATE TABLE collection_views (
    user_name      TEXT    NOT NULL,
    device_id      TEXT    NOT NULL,
    collection_id  TEXT    NOT NULL,
    slot           BIGINT  NOT NULL CHECK (slot IN (0, 1)),
    sync_key       BIGINT  NOT NULL,
    uid_validity   BIGINT  NOT NULL,
    uids           TEXT    NOT NULL,
    highest_modseq BIGINT  NOT NULL,
    flags          TEXT,
    filter_start   BIGINT,
    more_available BOOLEAN NOT NULL,
    PRIMARY KEY (user_name, device_id, collection_id, slot),
    FOREIGN KEY (user_name, device_id, collection_id)
        REFERENCES collections (user_name, device_id, collection_id)
        ON DELETE CASCADE ON UPDATE CASCADE
);

CREATE TABLE sync_request_cache (
    user_name TEXT  NOT NULL,
    device_id TEXT  NOT NULL,
    request   BYTEA NOT NULL,
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
    user_name      TEXT   NOT NULL,
    device_id      TEXT   NOT NULL,
    heartbeat_secs BIGINT NOT NULL,
    -- one "collection id <TAB> class" per line
    folders        TEXT   NOT NULL,
    PRIMARY KEY (user_name, device_id),
    FOREIGN KEY (user_name, device_id) REFERENCES devices (user_name, device_id) ON DELETE CASCADE
);

-- A message a device submitted (keyed by ClientId or Message-ID), so that a
-- retried submission is answered without sending again.
CREATE TABLE send_records (
    user_name  TEXT    NOT NULL,
    record_key TEXT    NOT NULL,
    expires    BIGINT  NOT NULL,
    sent       BOOLEAN NOT NULL,
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
    user_name     TEXT   NOT NULL,
    collection_id TEXT   NOT NULL,
    uid_validity  BIGINT NOT NULL,
    uid           BIGINT NOT NULL,
    item          BIGINT NOT NULL,
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
ALTER TABLE send_records ADD COLUMN lease_until BIGINT NOT NULL DEFAULT 0;
ALTER TABLE send_records ADD COLUMN phase TEXT NOT NULL DEFAULT 'claimed'
    CHECK (phase IN ('claimed', 'data', 'sent', 'unknown'));
-- A claim of an older gateway may have been in DATA: it counts as started (never sent twice).
UPDATE send_records SET phase = CASE WHEN sent THEN 'sent' ELSE 'data' END;
"#,
    },
    Migration {
        version: 6,
        description: "device registry: last error, access state, per-command and per-folder activity, request log",
        sql: r#"
ALTER TABLE devices ADD COLUMN last_error TEXT;
ALTER TABLE devices ADD COLUMN last_error_at BIGINT;
-- allowed | blocked | quarantined: an administrator's override ('' = the access rules decide).
ALTER TABLE devices ADD COLUMN access_state TEXT NOT NULL DEFAULT '';
ALTER TABLE devices ADD COLUMN wipe_acknowledged_at BIGINT;
-- Requests started (counted by the request's first write) and recorded (counted when its
-- log entry is written): a Ping or hanging Sync that is waiting right now is the difference.
ALTER TABLE devices ADD COLUMN requests_started BIGINT NOT NULL DEFAULT 0;
ALTER TABLE devices ADD COLUMN requests_recorded BIGINT NOT NULL DEFAULT 0;

-- The last request of each command a device made.
CREATE TABLE device_commands (
    user_name TEXT   NOT NULL,
    device_id TEXT   NOT NULL,
    command   TEXT   NOT NULL,
    last_at   BIGINT NOT NULL,
    count     BIGINT NOT NULL,
    PRIMARY KEY (user_name, device_id, command),
    FOREIGN KEY (user_name, device_id) REFERENCES devices (user_name, device_id) ON DELETE CASCADE
);

-- The last Sync of each folder a device synced: when, the key it ended with, the items of
-- that Sync each way and the totals.
CREATE TABLE device_folders (
    user_name      TEXT   NOT NULL,
    device_id      TEXT   NOT NULL,
    collection_id  TEXT   NOT NULL,
    last_sync      BIGINT NOT NULL,
    sync_key       TEXT,
    status         BIGINT NOT NULL,
    last_sent      BIGINT NOT NULL,
    last_received  BIGINT NOT NULL,
    total_sent     BIGINT NOT NULL,
    total_received BIGINT NOT NULL,
    PRIMARY KEY (user_name, device_id, collection_id),
    FOREIGN KEY (user_name, device_id) REFERENCES devices (user_name, device_id) ON DELETE CASCADE
);

-- The last requests of each device.
CREATE TABLE request_log (
    id           BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    user_name    TEXT   NOT NULL,
    device_id    TEXT   NOT NULL,
    at_ms        BIGINT NOT NULL,
    command      TEXT   NOT NULL,
    eas_status   BIGINT,
    http_status  BIGINT NOT NULL,
    duration_ms  BIGINT NOT NULL,
    bytes_in     BIGINT NOT NULL,
    bytes_out    BIGINT NOT NULL,
    -- JSON: [{collection_id, key_in, key_out, status, added_out, ...}]
    collections  TEXT   NOT NULL,
    -- the watched folder ids, one per line
    ping_folders TEXT   NOT NULL,
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
    Migration {
        version: 8,
        description: "sync leases: one node at a time syncs a device's collection",
        sql: r#"
-- Held by `owner` (a gateway node) until `expires_at` (the database's clock, so nodes with
-- skewed clocks agree); an expired lease may be taken over. Not tied to the device record:
-- a lease outlives nothing but its ttl.
CREATE TABLE sync_leases (
    user_name     TEXT        NOT NULL,
    device_id     TEXT        NOT NULL,
    collection_id TEXT        NOT NULL,
    owner         TEXT        NOT NULL,
    expires_at    TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (user_name, device_id, collection_id)
);
"#,
    },
];

/// The schema version this build writes.
pub(crate) fn latest_version() -> i64 {
    MIGRATIONS.last().map_or(0, |m| m.version)
}

async fn current_version(client: &Client) -> Result<i64, StoreError> {
    let row = client
        .query_one(
            "SELECT COALESCE(max(version), 0) FROM eas_schema_migrations",
            &[],
        )
        .await?;
    Ok(row.get(0))
}

/// Brings the schema up to date. Returns the resulting version.
pub(crate) async fn run(client: &mut Client) -> Result<i64, StoreError> {
    run_to(client, latest_version()).await
}

/// Applies migrations up to and including `target`, under the migration advisory lock.
pub(crate) async fn run_to(client: &mut Client, target: i64) -> Result<i64, StoreError> {
    client
        .execute("SELECT pg_advisory_lock($1)", &[&MIGRATION_LOCK])
        .await?;
    let result = apply(client, target).await;
    // Dropping the connection would release the lock too; unlock so a pooled connection
    // does not keep it.
    let unlocked = client
        .execute("SELECT pg_advisory_unlock($1)", &[&MIGRATION_LOCK])
        .await;
    let version = result?;
    unlocked?;
    Ok(version)
}

async fn apply(client: &mut Client, target: i64) -> Result<i64, StoreError> {
    client
        .batch_execute(
            "CREATE TABLE IF NOT EXISTS eas_schema_migrations (
                 version     BIGINT      PRIMARY KEY,
                 description TEXT        NOT NULL,
                 applied_at  TIMESTAMPTZ NOT NULL DEFAULT now()
             )",
        )
        .await?;
    let supported = latest_version();
    let found = current_version(client).await?;
    if found > supported {
        return Err(StoreError::SchemaTooNew { found, supported });
    }
    for m in MIGRATIONS
        .iter()
        .filter(|m| m.version <= target && m.version > found)
    {
        let tx = client.transaction().await?;
        tx.batch_execute(m.sql).await?;
        tx.execute(
            "INSERT INTO eas_schema_migrations (version, description) VALUES ($1, $2)",
            &[&m.version, &m.description],
        )
        .await?;
        tx.commit().await?;
        tracing::info!(
            version = m.version,
            description = m.description,
            "applied state schema migration"
        );
    }
    current_version(client).await
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
    fn shared_versions_mean_the_same_as_sqlite() {
        let sqlite = super::super::migrations::MIGRATIONS;
        for s in sqlite {
            let p = &MIGRATIONS[(s.version - 1) as usize];
            assert_eq!((p.version, p.description), (s.version, s.description));
        }
    }
}
