//! The device registry's part of the SQLite store: the request log and per-device activity.

use rusqlite::{params, Connection, OptionalExtension};

use super::sqlite::{read_tx, require_device, write_tx};
use super::{
    CollectionLog, CommandActivity, DeviceActivity, FolderActivity, RequestEntry, StoreError,
    SyncStateSummary,
};

/// The request log of a device is cut back to its size on every this many inserts (by id),
/// so a request costs one insert and the occasional delete.
const PRUNE_EVERY: i64 = 16;

pub(crate) fn op_record_request(
    conn: &mut Connection,
    e: &RequestEntry,
    keep: u32,
) -> Result<(), StoreError> {
    let tx = write_tx(conn)?;
    require_device(&tx, &e.user, &e.device_id)?;
    let secs = e.at_ms.div_euclid(1000);
    if keep > 0 {
        let collections = serde_json::to_string(&e.collections)
            .map_err(|err| StoreError::InvalidInput(err.to_string()))?;
        let id: i64 = tx
            .prepare_cached(
                "INSERT INTO request_log (user_name, device_id, at_ms, command, eas_status,
                     http_status, duration_ms, bytes_in, bytes_out, collections, ping_folders,
                     ping_outcome, error)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)
                 RETURNING id",
            )?
            .query_row(
                params![
                    e.user,
                    e.device_id,
                    e.at_ms,
                    e.command,
                    e.eas_status,
                    e.http_status,
                    e.duration_ms as i64,
                    e.bytes_in as i64,
                    e.bytes_out as i64,
                    collections,
                    e.ping_folders.join("\n"),
                    e.ping_outcome,
                    e.error,
                ],
                |r| r.get(0),
            )?;
        if id % PRUNE_EVERY == 0 {
            tx.prepare_cached(
                "DELETE FROM request_log WHERE user_name = ?1 AND device_id = ?2 AND id <= (
                     SELECT id FROM request_log WHERE user_name = ?1 AND device_id = ?2
                     ORDER BY id DESC LIMIT 1 OFFSET ?3)",
            )?
            .execute(params![e.user, e.device_id, keep])?;
        }
    }
    tx.prepare_cached(
        "INSERT INTO device_commands (user_name, device_id, command, last_at, count)
         VALUES (?1, ?2, ?3, ?4, 1)
         ON CONFLICT (user_name, device_id, command) DO UPDATE SET
             last_at = MAX(device_commands.last_at, excluded.last_at),
             count = device_commands.count + 1",
    )?
    .execute(params![e.user, e.device_id, e.command, secs])?;
    for c in &e.collections {
        let (sent, received) = (i64::from(c.sent()), i64::from(c.received()));
        tx.prepare_cached(
            "INSERT INTO device_folders (user_name, device_id, collection_id, last_sync,
                 sync_key, status, last_sent, last_received, total_sent, total_received)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?7, ?8)
             ON CONFLICT (user_name, device_id, collection_id) DO UPDATE SET
                 last_sync = excluded.last_sync, sync_key = excluded.sync_key,
                 status = excluded.status, last_sent = excluded.last_sent,
                 last_received = excluded.last_received,
                 total_sent = device_folders.total_sent + excluded.last_sent,
                 total_received = device_folders.total_received + excluded.last_received",
        )?
        .execute(params![
            e.user,
            e.device_id,
            c.collection_id,
            secs,
            c.key_out,
            c.status,
            sent,
            received
        ])?;
    }
    tx.prepare_cached(
        "UPDATE devices SET requests_recorded = requests_recorded + 1
         WHERE user_name = ?1 AND device_id = ?2",
    )?
    .execute(params![e.user, e.device_id])?;
    if let Some(error) = &e.error {
        tx.prepare_cached(
            "UPDATE devices SET last_error = ?3, last_error_at = ?4
             WHERE user_name = ?1 AND device_id = ?2",
        )?
        .execute(params![e.user, e.device_id, error, secs])?;
    }
    tx.commit()?;
    Ok(())
}

pub(crate) fn op_request_log(
    conn: &mut Connection,
    user: &str,
    device_id: &str,
    after_id: i64,
    limit: u32,
) -> Result<Vec<RequestEntry>, StoreError> {
    let tx = read_tx(conn)?;
    let mut entries = tx
        .prepare_cached(
            "SELECT id, at_ms, command, eas_status, http_status, duration_ms, bytes_in, bytes_out,
                    collections, ping_folders, ping_outcome, error
             FROM request_log WHERE user_name = ?1 AND device_id = ?2 AND id > ?3
             ORDER BY id DESC LIMIT ?4",
        )?
        .query_map(params![user, device_id, after_id, limit], |r| {
            let collections: String = r.get(8)?;
            let ping: String = r.get(9)?;
            Ok((
                RequestEntry {
                    id: r.get(0)?,
                    user: user.to_string(),
                    device_id: device_id.to_string(),
                    at_ms: r.get(1)?,
                    command: r.get(2)?,
                    eas_status: r.get(3)?,
                    http_status: r.get(4)?,
                    duration_ms: r.get::<_, i64>(5)?.max(0) as u64,
                    bytes_in: r.get::<_, i64>(6)?.max(0) as u64,
                    bytes_out: r.get::<_, i64>(7)?.max(0) as u64,
                    collections: Vec::new(),
                    ping_folders: ping
                        .split('\n')
                        .filter(|s| !s.is_empty())
                        .map(String::from)
                        .collect(),
                    ping_outcome: r.get(10)?,
                    error: r.get(11)?,
                },
                collections,
            ))
        })?
        .map(|row| {
            let (mut entry, collections) = row?;
            entry.collections = serde_json::from_str::<Vec<CollectionLog>>(&collections)
                .map_err(|e| StoreError::Corrupt(format!("request log collections: {e}")))?;
            Ok(entry)
        })
        .collect::<Result<Vec<_>, StoreError>>()?;
    tx.finish()?;
    entries.reverse();
    Ok(entries)
}

pub(crate) fn op_device_activity(
    conn: &mut Connection,
    user: &str,
    device_id: &str,
) -> Result<Option<DeviceActivity>, StoreError> {
    let tx = read_tx(conn)?;
    type Head = (Option<String>, Option<i64>, String, Option<i64>, i64);
    let head: Option<Head> = tx
        .prepare_cached(
            "SELECT last_error, last_error_at, access_state, wipe_acknowledged_at,
                    requests_started - requests_recorded
             FROM devices WHERE user_name = ?1 AND device_id = ?2",
        )?
        .query_row(params![user, device_id], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
        })
        .optional()?;
    let Some((error, error_at, access, wipe_ack, running)) = head else {
        return Ok(None);
    };
    let commands = tx
        .prepare_cached(
            "SELECT command, last_at, count FROM device_commands
             WHERE user_name = ?1 AND device_id = ?2 ORDER BY command",
        )?
        .query_map(params![user, device_id], |r| {
            Ok(CommandActivity {
                command: r.get(0)?,
                last_at: r.get(1)?,
                count: r.get::<_, i64>(2)?.max(0) as u64,
            })
        })?
        .collect::<rusqlite::Result<_>>()?;
    let folders = tx
        .prepare_cached(
            "SELECT collection_id, last_sync, sync_key, status, last_sent, last_received,
                    total_sent, total_received
             FROM device_folders WHERE user_name = ?1 AND device_id = ?2
             ORDER BY length(collection_id), collection_id",
        )?
        .query_map(params![user, device_id], |r| {
            Ok(FolderActivity {
                collection_id: r.get(0)?,
                last_sync: r.get(1)?,
                sync_key: r.get(2)?,
                status: r.get(3)?,
                last_sent: r.get::<_, i64>(4)?.max(0) as u64,
                last_received: r.get::<_, i64>(5)?.max(0) as u64,
                total_sent: r.get::<_, i64>(6)?.max(0) as u64,
                total_received: r.get::<_, i64>(7)?.max(0) as u64,
            })
        })?
        .collect::<rusqlite::Result<_>>()?;
    let hierarchy_key = tx
        .prepare_cached(
            "SELECT sync_key FROM hierarchy_snapshots
             WHERE user_name = ?1 AND device_id = ?2 AND slot = 0",
        )?
        .query_row(params![user, device_id], |r| r.get(0))
        .optional()?;
    let mut sync_states: Vec<SyncStateSummary> = Vec::new();
    {
        let mut stmt = tx.prepare_cached(
            "SELECT collection_id, slot, sync_key, more_available, filter_start
             FROM collection_views WHERE user_name = ?1 AND device_id = ?2
             ORDER BY length(collection_id), collection_id, slot",
        )?;
        let rows = stmt.query_map(params![user, device_id], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, i64>(1)?,
                r.get::<_, u32>(2)?,
                r.get::<_, bool>(3)?,
                r.get::<_, Option<i64>>(4)?,
            ))
        })?;
        for row in rows {
            let (collection_id, slot, key, more, filter_start) = row?;
            if slot == 0 {
                sync_states.push(SyncStateSummary {
                    collection_id,
                    sync_key: key,
                    previous_key: None,
                    more_available: more,
                    filter_start,
                });
            } else if let Some(s) = sync_states
                .last_mut()
                .filter(|s| s.collection_id == collection_id)
            {
                s.previous_key = Some(key);
            }
        }
    }
    tx.finish()?;
    Ok(Some(DeviceActivity {
        last_error: error.map(|e| (error_at.unwrap_or(0), e)),
        access,
        wipe_acknowledged_at: wipe_ack,
        requests_running: running.max(0) as u64,
        commands,
        folders,
        hierarchy_key,
        sync_states,
    }))
}

#[cfg(test)]
mod tests {
    use crate::state::{CollectionLog, RequestEntry, SqliteStore, StateStore};

    fn entry(n: i64) -> RequestEntry {
        RequestEntry {
            user: "u".into(),
            device_id: "d".into(),
            at_ms: n * 1000,
            command: if n % 2 == 0 { "Sync" } else { "Ping" }.into(),
            http_status: 200,
            collections: vec![CollectionLog {
                collection_id: "3".into(),
                key_in: n.to_string(),
                key_out: Some((n + 1).to_string()),
                status: 1,
                added_out: 2,
                changed_in: 1,
                ..CollectionLog::default()
            }],
            ..RequestEntry::default()
        }
    }

    #[tokio::test]
    async fn the_log_keeps_the_newest_entries_and_the_activity_adds_up() {
        let store = SqliteStore::open_in_memory().unwrap();
        store
            .touch_device("u", "d", "t", None, None, "Sync", 1)
            .await
            .unwrap();
        for n in 1..=40 {
            store.record_request(&entry(n), 5).await.unwrap();
        }
        let all = store.request_log("u", "d", 0, 1000).await.unwrap();
        // Cut back to 5 every 16 inserts: never more than 5 + 15 kept.
        assert!(all.len() >= 5 && all.len() < 5 + 16, "{}", all.len());
        let last: Vec<i64> = all.iter().rev().take(5).map(|e| e.at_ms / 1000).collect();
        assert_eq!(last, [40, 39, 38, 37, 36]);
        let tail = store.request_log("u", "d", 0, 3).await.unwrap();
        assert_eq!(tail.iter().map(|e| e.id).collect::<Vec<_>>(), [38, 39, 40]);
        assert_eq!(tail[2].collections, entry(40).collections);
        let newer = store.request_log("u", "d", 39, 100).await.unwrap();
        assert_eq!(newer.len(), 1);

        let a = store.device_activity("u", "d").await.unwrap().unwrap();
        assert_eq!(a.commands.iter().map(|c| c.count).sum::<u64>(), 40);
        let f = &a.folders[0];
        assert_eq!((f.last_sent, f.last_received), (2, 1));
        assert_eq!((f.total_sent, f.total_received), (80, 40));
        assert_eq!(f.sync_key.as_deref(), Some("41"));
        // One request started (touch_device), forty recorded: nothing is waiting.
        assert_eq!(a.requests_running, 0);

        let mut failed = entry(41);
        failed.error = Some("mail server unavailable".into());
        store.record_request(&failed, 5).await.unwrap();
        let a = store.device_activity("u", "d").await.unwrap().unwrap();
        assert_eq!(a.last_error, Some((41, "mail server unavailable".into())));

        // Nothing is kept for unknown devices, and removing a device drops its log.
        let mut stranger = entry(1);
        stranger.device_id = "other".into();
        assert!(store.record_request(&stranger, 5).await.is_err());
        store.delete_device("u", "d").await.unwrap();
        store
            .touch_device("u", "d", "t", None, None, "Sync", 1)
            .await
            .unwrap();
        assert!(store
            .request_log("u", "d", 0, 100)
            .await
            .unwrap()
            .is_empty());
        let a = store.device_activity("u", "d").await.unwrap().unwrap();
        assert_eq!(
            a.requests_running, 1,
            "the request that touched the device runs"
        );
    }
}
