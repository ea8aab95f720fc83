//! The SQLite store's operations: one entry per [`StateStore`] method (see
//! [`store_ops!`] for the form), grouped by area, and the row helpers they
//! share.

use rusqlite::{params, Connection, OptionalExtension, Row, ToSql};

use super::store_ops;
use crate::state::{
    CollectionLog, CollectionState, CollectionView, CommandActivity, Device, DeviceActivity,
    DraftVersion, FolderActivity, FolderEntry, HierarchyState, PingParams, PolicyState,
    RequestEntry, SendClaim, SendPhase, StoreError, SyncStateSummary, WipeState,
};

/// Slot numbers of the two kept snapshots.
const CURRENT: i64 = 0;
const PREVIOUS: i64 = 1;

/// The request log of a device is cut back to its size on every this many inserts (by id),
/// so a request costs one insert and the occasional delete.
const PRUNE_EVERY: i64 = 16;

store_ops! {
    // ---- devices ----------------------------------------------------------------

    #[allow(clippy::too_many_arguments)]
    write fn touch_device(
        user: &str,
        device_id: &str,
        device_type: &str,
        user_agent: Option<&str>,
        protocol_version: Option<&str>,
        command: &str,
        now: i64,
    ) -> Device => |tx| {
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
        load_device(tx, user, device_id)?
            .ok_or_else(|| StoreError::Internal("device row missing right after upsert".into()))
    }

    read fn device(user: &str, device_id: &str) -> Option<Device> => |tx| {
        load_device(tx, user, device_id)
    }

    // BEGIN IMMEDIATE takes the write lock: it fails on a read-only database and when
    // another writer holds the lock past the busy timeout.
    write fn check_writable() -> () => |_| { Ok(()) }

    read fn devices(user: Option<&str>) -> Vec<Device> => |tx| {
        let raws = tx
            .prepare_cached(&format!(
                "SELECT {DEVICE_COLUMNS} FROM devices
                 WHERE ?1 IS NULL OR user_name = ?1 ORDER BY user_name, device_id"
            ))?
            .query_map(params![user], read_device_row)?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        raws.into_iter().map(|raw| finish_device(tx, raw)).collect()
    }

    write fn set_policy(
        user: &str,
        device_id: &str,
        state: PolicyState,
        key: u32,
        policy_hash: Option<&str>,
    ) -> () => |tx| {
        update_device(
            tx,
            "UPDATE devices SET policy_state = ?3, policy_key = ?4, policy_hash = ?5
             WHERE user_name = ?1 AND device_id = ?2",
            params![user, device_id, state.as_str(), key, policy_hash],
        )
    }

    write fn set_device_info(user: &str, device_id: &str, info: &[(String, String)]) -> () => |tx| {
        require_device(tx, user, device_id)?;
        tx.prepare_cached("DELETE FROM device_info WHERE user_name = ?1 AND device_id = ?2")?
            .execute(params![user, device_id])?;
        let mut ins = tx.prepare_cached(
            "INSERT INTO device_info (user_name, device_id, position, name, value)
             VALUES (?1, ?2, ?3, ?4, ?5)",
        )?;
        for (pos, (name, value)) in info.iter().enumerate() {
            ins.execute(params![user, device_id, pos as i64, name, value])?;
        }
        Ok(())
    }

    write fn set_wipe(user: &str, device_id: &str, wipe: WipeState) -> () => |tx| {
        update_device(
            tx,
            "UPDATE devices SET wipe_state = ?3,
                 wipe_acknowledged_at = CASE WHEN ?3 = 'acknowledged'
                     THEN COALESCE(wipe_acknowledged_at, CAST(strftime('%s', 'now') AS INTEGER))
                     ELSE NULL END
             WHERE user_name = ?1 AND device_id = ?2",
            params![user, device_id, wipe.as_str()],
        )
    }

    write fn delete_device(user: &str, device_id: &str) -> bool => |tx| {
        let n = tx
            .prepare_cached("DELETE FROM devices WHERE user_name = ?1 AND device_id = ?2")?
            .execute(params![user, device_id])?;
        Ok(n > 0)
    }

    write fn set_access(user: &str, device_id: &str, access: &str) -> () =>
    check {
        if !matches!(access, "" | "allowed" | "blocked" | "quarantined") {
            return Err(StoreError::InvalidInput(format!("access state {access:?}")));
        }
    } => |tx| {
        update_device(
            tx,
            "UPDATE devices SET access_state = ?3 WHERE user_name = ?1 AND device_id = ?2",
            params![user, device_id, access],
        )
    }

    write fn set_trace(user: &str, device_id: &str, trace: &str) -> () =>
    check {
        if !matches!(trace, "" | "on" | "bodies") {
            return Err(StoreError::InvalidInput(format!("trace mode {trace:?}")));
        }
    } => |tx| {
        update_device(
            tx,
            "UPDATE devices SET trace = ?3 WHERE user_name = ?1 AND device_id = ?2",
            params![user, device_id, trace],
        )
    }

    // ---- device registry: request log and activity ----------------------------------

    write fn record_request(e: &RequestEntry, keep: u32) -> () => |tx| {
        require_device(tx, &e.user, &e.device_id)?;
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
        Ok(())
    }

    read fn request_log(
        user: &str,
        device_id: &str,
        after_id: i64,
        limit: u32,
    ) -> Vec<RequestEntry> => |tx| {
        let mut entries = tx
            .prepare_cached(
                "SELECT id, at_ms, command, eas_status, http_status, duration_ms, bytes_in,
                        bytes_out, collections, ping_folders, ping_outcome, error
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
        entries.reverse();
        Ok(entries)
    }

    read fn device_activity(user: &str, device_id: &str) -> Option<DeviceActivity> => |tx| {
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

    // ---- folder ids --------------------------------------------------------------

    run fn folder_server_ids(user: &str, identities: &[String]) -> Vec<String> =>
    check {
        if identities.iter().any(|i| i.is_empty()) {
            return Err(StoreError::InvalidInput("empty folder identity".into()));
        }
    } => |db| {
        // Fast path: every folder already has an id, no write lock needed.
        let known = db.read(|tx| {
            let mut known = Vec::with_capacity(identities.len());
            for identity in identities {
                match lookup_folder_id(tx, user, identity)? {
                    Some(id) => known.push(id),
                    None => break,
                }
            }
            Ok(known)
        })?;
        if known.len() == identities.len() {
            return Ok(known);
        }
        // Slow path: under the write lock, look up again (another writer may
        // have assigned ids meanwhile) and assign the missing ones.
        db.write(|tx| {
            let mut ids = Vec::with_capacity(identities.len());
            for identity in identities {
                if let Some(id) = lookup_folder_id(tx, user, identity)? {
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
            Ok(ids)
        })
    }

    write fn rebind_folder_identity(
        user: &str,
        old_identity: &str,
        new_identity: &str,
    ) -> Option<String> =>
    check {
        if new_identity.is_empty() {
            return Err(StoreError::InvalidInput("empty folder identity".into()));
        }
    } => |tx| {
        let Some(id) = lookup_folder_id(tx, user, old_identity)? else {
            return Ok(None);
        };
        if old_identity == new_identity {
            return Ok(Some(id));
        }
        if lookup_folder_id(tx, user, new_identity)?.is_some() {
            return Err(StoreError::Conflict(
                "the new folder identity already has a ServerId".into(),
            ));
        }
        tx.prepare_cached(
            "UPDATE folder_ids SET identity = ?3 WHERE user_name = ?1 AND identity = ?2",
        )?
        .execute(params![user, old_identity, new_identity])?;
        Ok(Some(id))
    }

    write fn retire_folder_ids(user: &str, identities: &[String]) -> usize => |tx| {
        let mut del =
            tx.prepare_cached("DELETE FROM folder_ids WHERE user_name = ?1 AND identity = ?2")?;
        let mut removed = 0;
        for identity in identities {
            removed += del.execute(params![user, identity])?;
        }
        Ok(removed)
    }

    // ---- folder hierarchy ----------------------------------------------------------

    read fn hierarchy(user: &str, device_id: &str) -> Option<HierarchyState> => |tx| {
        let keys: Vec<(i64, u32)> = tx
            .prepare_cached(
                "SELECT slot, sync_key FROM hierarchy_snapshots
                 WHERE user_name = ?1 AND device_id = ?2 ORDER BY slot",
            )?
            .query_map(params![user, device_id], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect::<rusqlite::Result<_>>()?;
        match keys.as_slice() {
            [] => Ok(None),
            [(CURRENT, key), rest @ ..] => {
                let previous = match rest {
                    [] => None,
                    [(PREVIOUS, pkey)] => {
                        Some((*pkey, load_folders(tx, user, device_id, PREVIOUS)?))
                    }
                    _ => {
                        return Err(StoreError::Corrupt(
                            "unexpected hierarchy snapshot slots".into(),
                        ))
                    }
                };
                Ok(Some(HierarchyState {
                    key: *key,
                    folders: load_folders(tx, user, device_id, CURRENT)?,
                    previous,
                }))
            }
            _ => Err(StoreError::Corrupt(
                "hierarchy has a previous snapshot but no current one".into(),
            )),
        }
    }

    write fn commit_hierarchy(
        user: &str,
        device_id: &str,
        new_key: u32,
        folders: &[FolderEntry],
    ) -> () => check { check_key(new_key)?; } => |tx| {
        require_device(tx, user, device_id)?;
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
                "DELETE FROM hierarchy_folders
                 WHERE user_name = ?1 AND device_id = ?2 AND slot = ?3",
            )?
            .execute(params![user, device_id, CURRENT])?;
        } else {
            // Folder rows follow their snapshot through ON DELETE / ON UPDATE
            // CASCADE.
            tx.prepare_cached(
                "DELETE FROM hierarchy_snapshots
                 WHERE user_name = ?1 AND device_id = ?2 AND slot = ?3",
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
        Ok(())
    }

    write fn reset_sync_state(user: &str, device_id: &str) -> () => |tx| {
        for table in ["hierarchy_snapshots", "collections", "sync_request_cache"] {
            tx.prepare_cached(&format!(
                "DELETE FROM {table} WHERE user_name = ?1 AND device_id = ?2"
            ))?
            .execute(params![user, device_id])?;
        }
        Ok(())
    }

    // ---- collections -----------------------------------------------------------------

    read fn collection_state(
        user: &str,
        device_id: &str,
        collection_id: &str,
    ) -> Option<CollectionState> => |tx| {
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
            (Some((CURRENT, current)), Some((PREVIOUS, previous)), None) => {
                Ok(Some(CollectionState {
                    current,
                    previous: Some(previous),
                    options,
                }))
            }
            _ => Err(StoreError::Corrupt(
                "unexpected collection view slots".into(),
            )),
        }
    }

    write fn commit_collection(
        user: &str,
        device_id: &str,
        collection_id: &str,
        view: &CollectionView,
        options: Option<&[u8]>,
    ) -> () =>
    check {
        check_key(view.key)?;
        sql_modseq(view)?;
    } => |tx| {
        let modseq = sql_modseq(view)?;
        require_device(tx, user, device_id)?;
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
        Ok(())
    }

    write fn reset_collection(user: &str, device_id: &str, collection_id: &str) -> bool => |tx| {
        let n = tx
            .prepare_cached(
                "DELETE FROM collections
                 WHERE user_name = ?1 AND device_id = ?2 AND collection_id = ?3",
            )?
            .execute(params![user, device_id, collection_id])?;
        Ok(n > 0)
    }

    write fn set_cached_sync_request(
        user: &str,
        device_id: &str,
        request: Option<&[u8]>,
    ) -> () => |tx| {
        match request {
            Some(request) => {
                require_device(tx, user, device_id)?;
                tx.prepare_cached(
                    "INSERT INTO sync_request_cache (user_name, device_id, request)
                     VALUES (?1, ?2, ?3)
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
        Ok(())
    }

    read fn cached_sync_request(user: &str, device_id: &str) -> Option<Vec<u8>> => |tx| {
        Ok(tx
            .prepare_cached(
                "SELECT request FROM sync_request_cache WHERE user_name = ?1 AND device_id = ?2",
            )?
            .query_row(params![user, device_id], |r| r.get(0))
            .optional()?)
    }

    // ---- Ping ------------------------------------------------------------------------

    write fn set_ping_params(user: &str, device_id: &str, params: &PingParams) -> () =>
    check {
        for (id, class) in &params.folders {
            check_ping_text(id)?;
            check_ping_text(class)?;
        }
    } => |tx| {
        let mut folders = String::new();
        for (id, class) in &params.folders {
            folders.push_str(id);
            folders.push('\t');
            folders.push_str(class);
            folders.push('\n');
        }
        require_device(tx, user, device_id)?;
        tx.prepare_cached(
            "INSERT INTO ping_params (user_name, device_id, heartbeat_secs, folders)
             VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (user_name, device_id)
             DO UPDATE SET heartbeat_secs = excluded.heartbeat_secs, folders = excluded.folders",
        )?
        .execute(params![user, device_id, params.heartbeat_secs, folders])?;
        Ok(())
    }

    read fn ping_params(user: &str, device_id: &str) -> Option<PingParams> => |tx| {
        let row: Option<(u32, String)> = tx
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

    // ---- SendMail claims -------------------------------------------------------------

    write fn claim_send(
        user: &str,
        key: &str,
        owner: &str,
        now: i64,
        lease_until: i64,
        expires: i64,
    ) -> SendClaim => |tx| {
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
        Ok(claim)
    }

    call fn renew_send(user: &str, key: &str, owner: &str, lease_until: i64) -> bool => |c| {
        let n = c
            .prepare_cached(
                "UPDATE send_records SET lease_until = max(lease_until, ?4)
                 WHERE user_name = ?1 AND record_key = ?2 AND owner = ?3
                   AND phase IN ('claimed', 'data') AND sent = 0",
            )?
            .execute(params![user, key, owner, lease_until])?;
        Ok(n == 1)
    }

    call fn set_send_phase(user: &str, key: &str, owner: &str, phase: SendPhase) -> bool => |c| {
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
        let n = c.prepare_cached(sql)?.execute(params![user, key, owner])?;
        Ok(n == 1)
    }

    call fn release_send(user: &str, key: &str, owner: &str) -> () => |c| {
        c.prepare_cached(
            "DELETE FROM send_records
             WHERE user_name = ?1 AND record_key = ?2 AND owner = ?3 AND sent = 0",
        )?
        .execute(params![user, key, owner])?;
        Ok(())
    }

    // ---- draft versions --------------------------------------------------------------

    write fn record_draft_version(
        user: &str,
        collection_id: &str,
        uid_validity: u32,
        version: &DraftVersion,
        client_key: Option<&str>,
    ) -> DraftVersion =>
    check {
        if version.uid == 0 || version.item == 0 {
            return Err(StoreError::InvalidInput(
                "draft UID and item must not be 0".into(),
            ));
        }
    } => |tx| {
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
        let stored = draft_query(tx, user, collection_id, uid_validity, "uid = ?4", &version.uid)?
            .pop()
            .ok_or(rusqlite::Error::QueryReturnedNoRows)?;
        Ok(stored)
    }

    read fn draft_versions(
        user: &str,
        collection_id: &str,
        uid_validity: u32,
        uids: &[u32],
    ) -> Vec<DraftVersion> =>
    check {
        if uids.is_empty() {
            return Ok(Vec::new());
        }
    } => |tx| {
        // One query for all: the UIDs go in as a JSON array.
        let list: Vec<String> = uids.iter().map(u32::to_string).collect();
        let json = format!("[{}]", list.join(","));
        let filter = "uid IN (SELECT value FROM json_each(?4))";
        draft_query(tx, user, collection_id, uid_validity, filter, &json)
    }

    read fn draft_item_versions(
        user: &str,
        collection_id: &str,
        uid_validity: u32,
        item: u32,
    ) -> Vec<DraftVersion> => |tx| {
        draft_query(tx, user, collection_id, uid_validity, "item = ?4", &item)
    }

    read fn draft_versions_by_message_id(
        user: &str,
        collection_id: &str,
        uid_validity: u32,
        message_id: &str,
    ) -> Vec<DraftVersion> => |tx| {
        draft_query(tx, user, collection_id, uid_validity, "message_id = ?4", &message_id)
    }

    read fn draft_by_client_key(
        user: &str,
        collection_id: &str,
        uid_validity: u32,
        client_key: &str,
    ) -> Option<DraftVersion> => |tx| {
        let found = draft_query(tx, user, collection_id, uid_validity, "client_key = ?4", &client_key)?;
        Ok(found.into_iter().next())
    }

    call fn forget_draft(user: &str, collection_id: &str, uid_validity: u32, item: u32) -> () => |c| {
        c.prepare_cached(
            "DELETE FROM draft_versions
             WHERE user_name = ?1 AND collection_id = ?2 AND uid_validity = ?3 AND item = ?4",
        )?
        .execute(params![user, collection_id, uid_validity, item])?;
        Ok(())
    }
}

// ---- helpers ----------------------------------------------------------------------

fn require_device(conn: &Connection, user: &str, device_id: &str) -> Result<(), StoreError> {
    let found = conn
        .prepare_cached("SELECT 1 FROM devices WHERE user_name = ?1 AND device_id = ?2")?
        .query_row(params![user, device_id], |_| Ok(()))
        .optional()?;
    match found {
        Some(()) => Ok(()),
        None => Err(StoreError::DeviceNotFound),
    }
}

/// Runs an `UPDATE` of one device row; [`StoreError::DeviceNotFound`] if there is none.
fn update_device(conn: &Connection, sql: &str, params: &[&dyn ToSql]) -> Result<(), StoreError> {
    match conn.prepare_cached(sql)?.execute(params)? {
        0 => Err(StoreError::DeviceNotFound),
        _ => Ok(()),
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

/// The view's HIGHESTMODSEQ as stored (SQLite integers are signed).
fn sql_modseq(view: &CollectionView) -> Result<i64, StoreError> {
    i64::try_from(view.highest_modseq).map_err(|_| {
        StoreError::InvalidInput(format!(
            "HIGHESTMODSEQ {} exceeds 63 bits",
            view.highest_modseq
        ))
    })
}

fn check_ping_text(v: &str) -> Result<(), StoreError> {
    if v.contains(['\t', '\n', '\r']) {
        return Err(StoreError::InvalidInput(
            "Ping folder contains a tab or line break".into(),
        ));
    }
    Ok(())
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

/// The recorded versions in `user`'s Drafts collection `collection_id` under `uid_validity`
/// that `filter` (SQL on the parameter `?4`, which is `arg`) picks, in UID order.
fn draft_query(
    conn: &Connection,
    user: &str,
    collection_id: &str,
    uid_validity: u32,
    filter: &str,
    arg: &dyn ToSql,
) -> Result<Vec<DraftVersion>, StoreError> {
    let sql = format!(
        "SELECT uid, item, message_id FROM draft_versions
         WHERE user_name = ?1 AND collection_id = ?2 AND uid_validity = ?3 AND {filter}
         ORDER BY uid"
    );
    let mut stmt = conn.prepare_cached(&sql)?;
    let rows = stmt.query_map(params![user, collection_id, uid_validity, arg], |r| {
        Ok(DraftVersion {
            uid: r.get(0)?,
            item: r.get(1)?,
            message_id: r.get(2)?,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
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
