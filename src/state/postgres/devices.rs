//! Devices and the device registry (request log, activity) of the PostgreSQL store.

use tokio_postgres::Row;

use super::{
    col, col_opt_u32, col_u32, col_u64, execute, query, query_one, query_opt, read_tx, write_tx,
    Conn, Params, Prepared,
};
use crate::state::{
    CollectionLog, CommandActivity, Device, DeviceActivity, FolderActivity, PolicyState,
    RequestEntry, StoreError, SyncStateSummary, WipeState,
};

/// The request log of a device is cut back to its size on every this many inserts (by id),
/// as in the SQLite store.
const PRUNE_EVERY: i64 = 16;

const DEVICE_COLUMNS: &str = "user_name, device_id, device_type, user_agent, protocol_version, \
     policy_state, policy_key, policy_hash, first_seen, last_seen, wipe_state, last_command, \
     access_state, trace";

fn read_device_row(row: &Row) -> Result<Device, StoreError> {
    let policy: String = col(row, 5)?;
    let wipe: String = col(row, 10)?;
    Ok(Device {
        user: col(row, 0)?,
        device_id: col(row, 1)?,
        device_type: col(row, 2)?,
        user_agent: col(row, 3)?,
        protocol_version: col(row, 4)?,
        policy: PolicyState::parse(&policy)
            .ok_or_else(|| StoreError::Corrupt(format!("unknown policy state {policy:?}")))?,
        policy_key: col_u32(row, 6)?,
        policy_hash: col(row, 7)?,
        device_info: Vec::new(),
        first_seen: col(row, 8)?,
        last_seen: col(row, 9)?,
        wipe: WipeState::parse(&wipe)
            .ok_or_else(|| StoreError::Corrupt(format!("unknown wipe state {wipe:?}")))?,
        last_command: col(row, 11)?,
        access: col(row, 12)?,
        trace: col(row, 13)?,
    })
}

async fn device_info(
    c: &impl Prepared,
    user: &str,
    device_id: &str,
) -> Result<Vec<(String, String)>, StoreError> {
    query(
        c,
        "SELECT name, value FROM device_info
         WHERE user_name = $1 AND device_id = $2 ORDER BY position",
        &[&user, &device_id],
    )
    .await?
    .iter()
    .map(|r| Ok((col(r, 0)?, col(r, 1)?)))
    .collect()
}

pub(super) async fn load_device(
    c: &impl Prepared,
    user: &str,
    device_id: &str,
) -> Result<Option<Device>, StoreError> {
    let Some(row) = query_opt(
        c,
        &format!("SELECT {DEVICE_COLUMNS} FROM devices WHERE user_name = $1 AND device_id = $2"),
        &[&user, &device_id],
    )
    .await?
    else {
        return Ok(None);
    };
    let mut device = read_device_row(&row)?;
    device.device_info = device_info(c, user, device_id).await?;
    Ok(Some(device))
}

/// Fails with [`StoreError::DeviceNotFound`] unless the device exists.
pub(super) async fn require_device(
    c: &impl Prepared,
    user: &str,
    device_id: &str,
) -> Result<(), StoreError> {
    let found = query_opt(
        c,
        "SELECT 1 FROM devices WHERE user_name = $1 AND device_id = $2",
        &[&user, &device_id],
    )
    .await?;
    found.map(|_| ()).ok_or(StoreError::DeviceNotFound)
}

#[allow(clippy::too_many_arguments)]
pub(super) async fn touch_device(
    c: &mut Conn,
    user: &str,
    device_id: &str,
    device_type: &str,
    user_agent: Option<&str>,
    protocol_version: Option<&str>,
    command: &str,
    now: i64,
) -> Result<Device, StoreError> {
    let tx = write_tx(c, user).await?;
    execute(
        &tx,
        "INSERT INTO devices (user_name, device_id, device_type, user_agent, protocol_version,
                              first_seen, last_seen, last_command, requests_started)
         VALUES ($1, $2, $3, $4, $5, $6, $6, $7, 1)
         ON CONFLICT (user_name, device_id) DO UPDATE SET
             device_type = EXCLUDED.device_type,
             user_agent = COALESCE(EXCLUDED.user_agent, devices.user_agent),
             protocol_version = COALESCE(EXCLUDED.protocol_version, devices.protocol_version),
             last_seen = GREATEST(devices.last_seen, EXCLUDED.last_seen),
             last_command = EXCLUDED.last_command,
             requests_started = devices.requests_started + 1",
        &[
            &user,
            &device_id,
            &device_type,
            &user_agent,
            &protocol_version,
            &now,
            &command,
        ],
    )
    .await?;
    let device = load_device(&tx, user, device_id)
        .await?
        .ok_or_else(|| StoreError::Internal("device row missing right after upsert".into()))?;
    tx.commit().await?;
    Ok(device)
}

pub(super) async fn devices(c: &mut Conn, user: Option<&str>) -> Result<Vec<Device>, StoreError> {
    let tx = read_tx(c).await?;
    let rows = query(
        &tx,
        &format!(
            "SELECT {DEVICE_COLUMNS} FROM devices
             WHERE $1::text IS NULL OR user_name = $1
             ORDER BY user_name COLLATE \"C\", device_id COLLATE \"C\""
        ),
        &[&user],
    )
    .await?;
    let mut devices = Vec::with_capacity(rows.len());
    for row in &rows {
        let mut device = read_device_row(row)?;
        device.device_info = device_info(&tx, &device.user, &device.device_id).await?;
        devices.push(device);
    }
    tx.commit().await?;
    Ok(devices)
}

/// Runs one `UPDATE devices` (parameters `$1` user, `$2` device id):
/// [`StoreError::DeviceNotFound`] when it changed no row.
pub(super) async fn update_device(
    c: &mut Conn,
    user: &str,
    sql: &str,
    params: &Params<'_>,
) -> Result<(), StoreError> {
    let tx = write_tx(c, user).await?;
    if execute(&tx, sql, params).await? == 0 {
        return Err(StoreError::DeviceNotFound);
    }
    tx.commit().await?;
    Ok(())
}

pub(super) async fn set_device_info(
    c: &mut Conn,
    user: &str,
    device_id: &str,
    info: &[(String, String)],
) -> Result<(), StoreError> {
    let tx = write_tx(c, user).await?;
    require_device(&tx, user, device_id).await?;
    execute(
        &tx,
        "DELETE FROM device_info WHERE user_name = $1 AND device_id = $2",
        &[&user, &device_id],
    )
    .await?;
    for (pos, (name, value)) in info.iter().enumerate() {
        execute(
            &tx,
            "INSERT INTO device_info (user_name, device_id, position, name, value)
             VALUES ($1, $2, $3, $4, $5)",
            &[&user, &device_id, &(pos as i64), name, value],
        )
        .await?;
    }
    tx.commit().await?;
    Ok(())
}

pub(super) async fn record_request(
    c: &mut Conn,
    e: &RequestEntry,
    keep: u32,
) -> Result<(), StoreError> {
    let (user, device_id) = (e.user.as_str(), e.device_id.as_str());
    let tx = write_tx(c, user).await?;
    require_device(&tx, user, device_id).await?;
    let secs = e.at_ms.div_euclid(1000);
    if keep > 0 {
        let collections = serde_json::to_string(&e.collections)
            .map_err(|err| StoreError::InvalidInput(err.to_string()))?;
        let row = query_one(
            &tx,
            "INSERT INTO request_log (user_name, device_id, at_ms, command, eas_status,
                 http_status, duration_ms, bytes_in, bytes_out, collections, ping_folders,
                 ping_outcome, error)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)
             RETURNING id",
            &[
                &user,
                &device_id,
                &e.at_ms,
                &e.command,
                &e.eas_status.map(i64::from),
                &i64::from(e.http_status),
                &(e.duration_ms as i64),
                &(e.bytes_in as i64),
                &(e.bytes_out as i64),
                &collections,
                &e.ping_folders.join("\n"),
                &e.ping_outcome,
                &e.error,
            ],
        )
        .await?;
        let id: i64 = col(&row, 0)?;
        if id % PRUNE_EVERY == 0 {
            execute(
                &tx,
                "DELETE FROM request_log WHERE user_name = $1 AND device_id = $2 AND id <= (
                     SELECT id FROM request_log WHERE user_name = $1 AND device_id = $2
                     ORDER BY id DESC LIMIT 1 OFFSET $3)",
                &[&user, &device_id, &i64::from(keep)],
            )
            .await?;
        }
    }
    execute(
        &tx,
        "INSERT INTO device_commands (user_name, device_id, command, last_at, count)
         VALUES ($1, $2, $3, $4, 1)
         ON CONFLICT (user_name, device_id, command) DO UPDATE SET
             last_at = GREATEST(device_commands.last_at, EXCLUDED.last_at),
             count = device_commands.count + 1",
        &[&user, &device_id, &e.command, &secs],
    )
    .await?;
    for f in &e.collections {
        let (sent, received) = (i64::from(f.sent()), i64::from(f.received()));
        execute(
            &tx,
            "INSERT INTO device_folders (user_name, device_id, collection_id, last_sync,
                 sync_key, status, last_sent, last_received, total_sent, total_received)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $7, $8)
             ON CONFLICT (user_name, device_id, collection_id) DO UPDATE SET
                 last_sync = EXCLUDED.last_sync, sync_key = EXCLUDED.sync_key,
                 status = EXCLUDED.status, last_sent = EXCLUDED.last_sent,
                 last_received = EXCLUDED.last_received,
                 total_sent = device_folders.total_sent + EXCLUDED.last_sent,
                 total_received = device_folders.total_received + EXCLUDED.last_received",
            &[
                &user,
                &device_id,
                &f.collection_id,
                &secs,
                &f.key_out,
                &i64::from(f.status),
                &sent,
                &received,
            ],
        )
        .await?;
    }
    execute(
        &tx,
        "UPDATE devices SET requests_recorded = requests_recorded + 1
         WHERE user_name = $1 AND device_id = $2",
        &[&user, &device_id],
    )
    .await?;
    if let Some(error) = &e.error {
        execute(
            &tx,
            "UPDATE devices SET last_error = $3, last_error_at = $4
             WHERE user_name = $1 AND device_id = $2",
            &[&user, &device_id, error, &secs],
        )
        .await?;
    }
    tx.commit().await?;
    Ok(())
}

pub(super) async fn request_log(
    c: &impl Prepared,
    user: &str,
    device_id: &str,
    after_id: i64,
    limit: u32,
) -> Result<Vec<RequestEntry>, StoreError> {
    let rows = query(
        c,
        "SELECT id, at_ms, command, eas_status, http_status, duration_ms, bytes_in, bytes_out,
                collections, ping_folders, ping_outcome, error
         FROM request_log WHERE user_name = $1 AND device_id = $2 AND id > $3
         ORDER BY id DESC LIMIT $4",
        &[&user, &device_id, &after_id, &i64::from(limit)],
    )
    .await?;
    let mut entries = Vec::with_capacity(rows.len());
    for r in &rows {
        let collections: String = col(r, 8)?;
        let ping: String = col(r, 9)?;
        let http_status: i64 = col(r, 4)?;
        entries.push(RequestEntry {
            id: col(r, 0)?,
            user: user.to_owned(),
            device_id: device_id.to_owned(),
            at_ms: col(r, 1)?,
            command: col(r, 2)?,
            eas_status: col_opt_u32(r, 3)?,
            http_status: u16::try_from(http_status)
                .map_err(|_| StoreError::Corrupt(format!("HTTP status {http_status}")))?,
            duration_ms: col_u64(r, 5)?,
            bytes_in: col_u64(r, 6)?,
            bytes_out: col_u64(r, 7)?,
            collections: serde_json::from_str::<Vec<CollectionLog>>(&collections)
                .map_err(|e| StoreError::Corrupt(format!("request log collections: {e}")))?,
            ping_folders: ping
                .split('\n')
                .filter(|s| !s.is_empty())
                .map(String::from)
                .collect(),
            ping_outcome: col(r, 10)?,
            error: col(r, 11)?,
        });
    }
    entries.reverse();
    Ok(entries)
}

pub(super) async fn device_activity(
    c: &mut Conn,
    user: &str,
    device_id: &str,
) -> Result<Option<DeviceActivity>, StoreError> {
    let tx = read_tx(c).await?;
    let Some(head) = query_opt(
        &tx,
        "SELECT last_error, last_error_at, access_state, wipe_acknowledged_at,
                requests_started - requests_recorded
         FROM devices WHERE user_name = $1 AND device_id = $2",
        &[&user, &device_id],
    )
    .await?
    else {
        return Ok(None);
    };
    let error: Option<String> = col(&head, 0)?;
    let error_at: Option<i64> = col(&head, 1)?;
    let commands = query(
        &tx,
        "SELECT command, last_at, count FROM device_commands
         WHERE user_name = $1 AND device_id = $2 ORDER BY command COLLATE \"C\"",
        &[&user, &device_id],
    )
    .await?
    .iter()
    .map(|r| {
        Ok(CommandActivity {
            command: col(r, 0)?,
            last_at: col(r, 1)?,
            count: col_u64(r, 2)?,
        })
    })
    .collect::<Result<_, StoreError>>()?;
    let folders = query(
        &tx,
        "SELECT collection_id, last_sync, sync_key, status, last_sent, last_received,
                total_sent, total_received
         FROM device_folders WHERE user_name = $1 AND device_id = $2
         ORDER BY length(collection_id), collection_id COLLATE \"C\"",
        &[&user, &device_id],
    )
    .await?
    .iter()
    .map(|r| {
        Ok(FolderActivity {
            collection_id: col(r, 0)?,
            last_sync: col(r, 1)?,
            sync_key: col(r, 2)?,
            status: col_u32(r, 3)?,
            last_sent: col_u64(r, 4)?,
            last_received: col_u64(r, 5)?,
            total_sent: col_u64(r, 6)?,
            total_received: col_u64(r, 7)?,
        })
    })
    .collect::<Result<_, StoreError>>()?;
    let hierarchy_key = match query_opt(
        &tx,
        "SELECT sync_key FROM hierarchy_snapshots
         WHERE user_name = $1 AND device_id = $2 AND slot = 0",
        &[&user, &device_id],
    )
    .await?
    {
        Some(r) => Some(col_u32(&r, 0)?),
        None => None,
    };
    let mut sync_states: Vec<SyncStateSummary> = Vec::new();
    for r in &query(
        &tx,
        "SELECT collection_id, slot, sync_key, more_available, filter_start
         FROM collection_views WHERE user_name = $1 AND device_id = $2
         ORDER BY length(collection_id), collection_id COLLATE \"C\", slot",
        &[&user, &device_id],
    )
    .await?
    {
        let collection_id: String = col(r, 0)?;
        let slot: i64 = col(r, 1)?;
        let key = col_u32(r, 2)?;
        if slot == 0 {
            sync_states.push(SyncStateSummary {
                collection_id,
                sync_key: key,
                previous_key: None,
                more_available: col(r, 3)?,
                filter_start: col(r, 4)?,
            });
        } else if let Some(s) = sync_states
            .last_mut()
            .filter(|s| s.collection_id == collection_id)
        {
            s.previous_key = Some(key);
        }
    }
    let activity = DeviceActivity {
        last_error: error.map(|e| (error_at.unwrap_or(0), e)),
        access: col(&head, 2)?,
        wipe_acknowledged_at: col(&head, 3)?,
        requests_running: col_u64(&head, 4)?,
        commands,
        folders,
        hierarchy_key,
        sync_states,
    };
    tx.commit().await?;
    Ok(Some(activity))
}
