//! Folder ids, hierarchy and collection sync state, Ping parameters, send claims and draft
//! versions of the PostgreSQL store.

use tokio_postgres::types::ToSql;

use super::devices::require_device;
use super::{
    check_key, col, col_u32, execute, query, query_one, query_opt, read_tx, write_tx, Conn,
    Prepared,
};
use crate::state::{
    CollectionState, CollectionView, DraftVersion, FolderEntry, HierarchyState, PingParams,
    SendClaim, SendPhase, StoreError,
};

/// Slot numbers of the two kept snapshots.
const CURRENT: i64 = 0;
const PREVIOUS: i64 = 1;

async fn lookup_folder_id(
    c: &impl Prepared,
    user: &str,
    identity: &str,
) -> Result<Option<String>, StoreError> {
    query_opt(
        c,
        "SELECT server_id FROM folder_ids WHERE user_name = $1 AND identity = $2",
        &[&user, &identity],
    )
    .await?
    .map(|r| col(&r, 0))
    .transpose()
}

pub(super) async fn folder_server_ids(
    c: &mut Conn,
    user: &str,
    identities: &[String],
) -> Result<Vec<String>, StoreError> {
    if identities.iter().any(|i| i.is_empty()) {
        return Err(StoreError::InvalidInput("empty folder identity".into()));
    }
    // Fast path: every folder already has an id, no lock needed.
    {
        let tx = read_tx(c).await?;
        let mut known = Vec::with_capacity(identities.len());
        for identity in identities {
            match lookup_folder_id(&tx, user, identity).await? {
                Some(id) => known.push(id),
                None => break,
            }
        }
        tx.commit().await?;
        if known.len() == identities.len() {
            return Ok(known);
        }
    }
    // Under the user's lock, look up again (another node may have assigned ids meanwhile)
    // and assign the missing ones.
    let tx = write_tx(c, user).await?;
    let mut ids = Vec::with_capacity(identities.len());
    for identity in identities {
        if let Some(id) = lookup_folder_id(&tx, user, identity).await? {
            ids.push(id);
            continue;
        }
        let row = query_one(
            &tx,
            "INSERT INTO folder_id_counters (user_name, next_id) VALUES ($1, 2)
             ON CONFLICT (user_name) DO UPDATE SET next_id = folder_id_counters.next_id + 1
             RETURNING next_id - 1",
            &[&user],
        )
        .await?;
        let id = col::<i64>(&row, 0)?.to_string();
        execute(
            &tx,
            "INSERT INTO folder_ids (user_name, identity, server_id) VALUES ($1, $2, $3)",
            &[&user, identity, &id],
        )
        .await?;
        ids.push(id);
    }
    tx.commit().await?;
    Ok(ids)
}

pub(super) async fn rebind_folder_identity(
    c: &mut Conn,
    user: &str,
    old_identity: &str,
    new_identity: &str,
) -> Result<Option<String>, StoreError> {
    if new_identity.is_empty() {
        return Err(StoreError::InvalidInput("empty folder identity".into()));
    }
    let tx = write_tx(c, user).await?;
    let Some(id) = lookup_folder_id(&tx, user, old_identity).await? else {
        return Ok(None);
    };
    if old_identity == new_identity {
        return Ok(Some(id));
    }
    if lookup_folder_id(&tx, user, new_identity).await?.is_some() {
        return Err(StoreError::Conflict(
            "the new folder identity already has a ServerId".into(),
        ));
    }
    execute(
        &tx,
        "UPDATE folder_ids SET identity = $3 WHERE user_name = $1 AND identity = $2",
        &[&user, &old_identity, &new_identity],
    )
    .await?;
    tx.commit().await?;
    Ok(Some(id))
}

async fn load_folders(
    c: &impl Prepared,
    user: &str,
    device_id: &str,
    slot: i64,
) -> Result<Vec<FolderEntry>, StoreError> {
    query(
        c,
        "SELECT server_id, parent_id, display_name, folder_type FROM hierarchy_folders
         WHERE user_name = $1 AND device_id = $2 AND slot = $3 ORDER BY position",
        &[&user, &device_id, &slot],
    )
    .await?
    .iter()
    .map(|r| {
        let folder_type: i64 = col(r, 3)?;
        Ok(FolderEntry {
            server_id: col(r, 0)?,
            parent_id: col(r, 1)?,
            display_name: col(r, 2)?,
            folder_type: u8::try_from(folder_type)
                .map_err(|_| StoreError::Corrupt(format!("folder type {folder_type}")))?,
        })
    })
    .collect()
}

pub(super) async fn hierarchy(
    c: &mut Conn,
    user: &str,
    device_id: &str,
) -> Result<Option<HierarchyState>, StoreError> {
    let tx = read_tx(c).await?;
    let keys = query(
        &tx,
        "SELECT slot, sync_key FROM hierarchy_snapshots
         WHERE user_name = $1 AND device_id = $2 ORDER BY slot",
        &[&user, &device_id],
    )
    .await?
    .iter()
    .map(|r| Ok((col::<i64>(r, 0)?, col_u32(r, 1)?)))
    .collect::<Result<Vec<_>, StoreError>>()?;
    let state = match keys.as_slice() {
        [] => None,
        [(CURRENT, key), rest @ ..] => {
            let previous = match rest {
                [] => None,
                [(PREVIOUS, pkey)] => {
                    Some((*pkey, load_folders(&tx, user, device_id, PREVIOUS).await?))
                }
                _ => {
                    return Err(StoreError::Corrupt(
                        "unexpected hierarchy snapshot slots".into(),
                    ))
                }
            };
            Some(HierarchyState {
                key: *key,
                folders: load_folders(&tx, user, device_id, CURRENT).await?,
                previous,
            })
        }
        _ => {
            return Err(StoreError::Corrupt(
                "hierarchy has a previous snapshot but no current one".into(),
            ))
        }
    };
    tx.commit().await?;
    Ok(state)
}

pub(super) async fn commit_hierarchy(
    c: &mut Conn,
    user: &str,
    device_id: &str,
    new_key: u32,
    folders: &[FolderEntry],
) -> Result<(), StoreError> {
    check_key(new_key)?;
    let tx = write_tx(c, user).await?;
    require_device(&tx, user, device_id).await?;
    let current = query_opt(
        &tx,
        "SELECT sync_key FROM hierarchy_snapshots
         WHERE user_name = $1 AND device_id = $2 AND slot = $3",
        &[&user, &device_id, &CURRENT],
    )
    .await?
    .map(|r| col_u32(&r, 0))
    .transpose()?;
    if current == Some(new_key) {
        // Retried commit of the same key: replace in place, keep previous.
        execute(
            &tx,
            "DELETE FROM hierarchy_folders WHERE user_name = $1 AND device_id = $2 AND slot = $3",
            &[&user, &device_id, &CURRENT],
        )
        .await?;
    } else {
        // Folder rows follow their snapshot through ON DELETE / ON UPDATE CASCADE.
        execute(
            &tx,
            "DELETE FROM hierarchy_snapshots WHERE user_name = $1 AND device_id = $2 AND slot = $3",
            &[&user, &device_id, &PREVIOUS],
        )
        .await?;
        execute(
            &tx,
            "UPDATE hierarchy_snapshots SET slot = $4
             WHERE user_name = $1 AND device_id = $2 AND slot = $3",
            &[&user, &device_id, &CURRENT, &PREVIOUS],
        )
        .await?;
        execute(
            &tx,
            "INSERT INTO hierarchy_snapshots (user_name, device_id, slot, sync_key)
             VALUES ($1, $2, $3, $4)",
            &[&user, &device_id, &CURRENT, &i64::from(new_key)],
        )
        .await?;
    }
    for (pos, f) in folders.iter().enumerate() {
        execute(
            &tx,
            "INSERT INTO hierarchy_folders
                 (user_name, device_id, slot, position, server_id, parent_id, display_name,
                  folder_type)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            &[
                &user,
                &device_id,
                &CURRENT,
                &(pos as i64),
                &f.server_id,
                &f.parent_id,
                &f.display_name,
                &i64::from(f.folder_type),
            ],
        )
        .await?;
    }
    tx.commit().await?;
    Ok(())
}

pub(super) async fn collection_state(
    c: &mut Conn,
    user: &str,
    device_id: &str,
    collection_id: &str,
) -> Result<Option<CollectionState>, StoreError> {
    let tx = read_tx(c).await?;
    let Some(options) = query_opt(
        &tx,
        "SELECT options FROM collections
         WHERE user_name = $1 AND device_id = $2 AND collection_id = $3",
        &[&user, &device_id, &collection_id],
    )
    .await?
    else {
        return Ok(None);
    };
    let options: Option<Vec<u8>> = col(&options, 0)?;
    let rows = query(
        &tx,
        "SELECT slot, sync_key, uid_validity, uids, highest_modseq, flags, filter_start,
                more_available
         FROM collection_views
         WHERE user_name = $1 AND device_id = $2 AND collection_id = $3 ORDER BY slot",
        &[&user, &device_id, &collection_id],
    )
    .await?;
    tx.commit().await?;
    let mut views = Vec::with_capacity(rows.len());
    for r in &rows {
        let modseq: i64 = col(r, 4)?;
        views.push((
            col::<i64>(r, 0)?,
            CollectionView {
                key: col_u32(r, 1)?,
                uid_validity: col_u32(r, 2)?,
                uids: col(r, 3)?,
                highest_modseq: u64::try_from(modseq)
                    .map_err(|_| StoreError::Corrupt(format!("negative HIGHESTMODSEQ {modseq}")))?,
                flags: col(r, 5)?,
                filter_start: col(r, 6)?,
                more_available: col(r, 7)?,
            },
        ));
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

pub(super) async fn commit_collection(
    c: &mut Conn,
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
    let tx = write_tx(c, user).await?;
    require_device(&tx, user, device_id).await?;
    execute(
        &tx,
        "INSERT INTO collections (user_name, device_id, collection_id, options)
         VALUES ($1, $2, $3, $4)
         ON CONFLICT (user_name, device_id, collection_id) DO UPDATE SET
             options = COALESCE(EXCLUDED.options, collections.options)",
        &[&user, &device_id, &collection_id, &options],
    )
    .await?;
    let current = query_opt(
        &tx,
        "SELECT sync_key FROM collection_views
         WHERE user_name = $1 AND device_id = $2 AND collection_id = $3 AND slot = $4",
        &[&user, &device_id, &collection_id, &CURRENT],
    )
    .await?
    .map(|r| col_u32(&r, 0))
    .transpose()?;
    if current == Some(view.key) {
        // Retried commit of the same key: replace in place, keep previous.
        execute(
            &tx,
            "DELETE FROM collection_views
             WHERE user_name = $1 AND device_id = $2 AND collection_id = $3 AND slot = $4",
            &[&user, &device_id, &collection_id, &CURRENT],
        )
        .await?;
    } else {
        execute(
            &tx,
            "DELETE FROM collection_views
             WHERE user_name = $1 AND device_id = $2 AND collection_id = $3 AND slot = $4",
            &[&user, &device_id, &collection_id, &PREVIOUS],
        )
        .await?;
        execute(
            &tx,
            "UPDATE collection_views SET slot = $5
             WHERE user_name = $1 AND device_id = $2 AND collection_id = $3 AND slot = $4",
            &[&user, &device_id, &collection_id, &CURRENT, &PREVIOUS],
        )
        .await?;
    }
    execute(
        &tx,
        "INSERT INTO collection_views
             (user_name, device_id, collection_id, slot, sync_key, uid_validity, uids,
              highest_modseq, flags, filter_start, more_available)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
        &[
            &user,
            &device_id,
            &collection_id,
            &CURRENT,
            &i64::from(view.key),
            &i64::from(view.uid_validity),
            &view.uids,
            &modseq,
            &view.flags,
            &view.filter_start,
            &view.more_available,
        ],
    )
    .await?;
    tx.commit().await?;
    Ok(())
}

pub(super) async fn set_cached_sync_request(
    c: &mut Conn,
    user: &str,
    device_id: &str,
    request: Option<&[u8]>,
) -> Result<(), StoreError> {
    let tx = write_tx(c, user).await?;
    match request {
        Some(request) => {
            require_device(&tx, user, device_id).await?;
            execute(
                &tx,
                "INSERT INTO sync_request_cache (user_name, device_id, request) VALUES ($1, $2, $3)
                 ON CONFLICT (user_name, device_id) DO UPDATE SET request = EXCLUDED.request",
                &[&user, &device_id, &request],
            )
            .await?;
        }
        None => {
            execute(
                &tx,
                "DELETE FROM sync_request_cache WHERE user_name = $1 AND device_id = $2",
                &[&user, &device_id],
            )
            .await?;
        }
    }
    tx.commit().await?;
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

pub(super) async fn set_ping_params(
    c: &mut Conn,
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
    let tx = write_tx(c, user).await?;
    require_device(&tx, user, device_id).await?;
    execute(
        &tx,
        "INSERT INTO ping_params (user_name, device_id, heartbeat_secs, folders)
         VALUES ($1, $2, $3, $4)
         ON CONFLICT (user_name, device_id)
         DO UPDATE SET heartbeat_secs = EXCLUDED.heartbeat_secs, folders = EXCLUDED.folders",
        &[
            &user,
            &device_id,
            &i64::from(params.heartbeat_secs),
            &folders,
        ],
    )
    .await?;
    tx.commit().await?;
    Ok(())
}

pub(super) async fn ping_params(
    c: &impl Prepared,
    user: &str,
    device_id: &str,
) -> Result<Option<PingParams>, StoreError> {
    let Some(row) = query_opt(
        c,
        "SELECT heartbeat_secs, folders FROM ping_params
         WHERE user_name = $1 AND device_id = $2",
        &[&user, &device_id],
    )
    .await?
    else {
        return Ok(None);
    };
    let text: String = col(&row, 1)?;
    let mut folders = Vec::new();
    for line in text.lines() {
        let (id, class) = line
            .split_once('\t')
            .ok_or_else(|| StoreError::Corrupt("Ping folder line without a tab".into()))?;
        folders.push((id.to_owned(), class.to_owned()));
    }
    Ok(Some(PingParams {
        heartbeat_secs: col_u32(&row, 0)?,
        folders,
    }))
}

pub(super) async fn claim_send(
    c: &mut Conn,
    user: &str,
    key: &str,
    owner: &str,
    now: i64,
    lease_until: i64,
    expires: i64,
) -> Result<SendClaim, StoreError> {
    let tx = write_tx(c, user).await?;
    execute(
        &tx,
        "DELETE FROM send_records WHERE user_name = $1 AND expires <= $2",
        &[&user, &now],
    )
    .await?;
    let live = query_opt(
        &tx,
        "SELECT sent, phase, lease_until FROM send_records
         WHERE user_name = $1 AND record_key = $2",
        &[&user, &key],
    )
    .await?;
    let claim = match live {
        None => {
            execute(
                &tx,
                "INSERT INTO send_records
                     (user_name, record_key, expires, sent, owner, lease_until, phase)
                 VALUES ($1, $2, $3, FALSE, $4, $5, 'claimed')",
                &[&user, &key, &expires, &owner, &lease_until],
            )
            .await?;
            SendClaim::New
        }
        Some(row) if col::<bool>(&row, 0)? => SendClaim::Done,
        Some(row) => {
            let phase: String = col(&row, 1)?;
            let lease: i64 = col(&row, 2)?;
            let phase = SendPhase::parse(&phase)
                .ok_or_else(|| StoreError::Corrupt(format!("send record phase {phase:?}")))?;
            match phase {
                SendPhase::Sent => SendClaim::Done,
                SendPhase::Unknown => SendClaim::Unknown,
                SendPhase::Claimed | SendPhase::Data if lease > now => SendClaim::InFlight,
                SendPhase::Claimed => {
                    // The owner died (or stopped renewing) before DATA: nothing was sent.
                    execute(
                        &tx,
                        "UPDATE send_records
                         SET owner = $3, lease_until = $4, expires = GREATEST(expires, $5)
                         WHERE user_name = $1 AND record_key = $2",
                        &[&user, &key, &owner, &lease_until, &expires],
                    )
                    .await?;
                    SendClaim::New
                }
                SendPhase::Data => {
                    execute(
                        &tx,
                        "UPDATE send_records SET phase = 'unknown'
                         WHERE user_name = $1 AND record_key = $2",
                        &[&user, &key],
                    )
                    .await?;
                    SendClaim::Unknown
                }
            }
        }
    };
    tx.commit().await?;
    Ok(claim)
}

pub(super) async fn set_send_phase(
    c: &mut Conn,
    user: &str,
    key: &str,
    owner: &str,
    phase: SendPhase,
) -> Result<bool, StoreError> {
    let sql = match phase {
        SendPhase::Data => {
            "UPDATE send_records SET phase = 'data'
             WHERE user_name = $1 AND record_key = $2 AND owner = $3
               AND phase = 'claimed' AND NOT sent"
        }
        SendPhase::Unknown => {
            "UPDATE send_records SET phase = 'unknown'
             WHERE user_name = $1 AND record_key = $2 AND owner = $3 AND NOT sent"
        }
        SendPhase::Sent => {
            "UPDATE send_records SET phase = 'sent', sent = TRUE
             WHERE user_name = $1 AND record_key = $2 AND owner = $3"
        }
        SendPhase::Claimed => {
            return Err(StoreError::InvalidInput(
                "a send claim cannot move back to claimed".into(),
            ))
        }
    };
    let tx = write_tx(c, user).await?;
    let n = execute(&tx, sql, &[&user, &key, &owner]).await?;
    tx.commit().await?;
    Ok(n == 1)
}

pub(super) async fn record_draft_version(
    c: &mut Conn,
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
    let tx = write_tx(c, user).await?;
    execute(
        &tx,
        "INSERT INTO draft_versions
             (user_name, collection_id, uid_validity, uid, item, message_id, client_key)
         VALUES ($1, $2, $3, $4, $5, $6, $7)
         ON CONFLICT (user_name, collection_id, uid_validity, uid) DO NOTHING",
        &[
            &user,
            &collection_id,
            &i64::from(uid_validity),
            &i64::from(version.uid),
            &i64::from(version.item),
            &version.message_id,
            &client_key,
        ],
    )
    .await?;
    let stored = draft_query(
        &tx,
        user,
        collection_id,
        uid_validity,
        "uid = $4",
        &i64::from(version.uid),
    )
    .await?
    .pop()
    .ok_or_else(|| StoreError::Internal("draft version missing right after insert".into()))?;
    tx.commit().await?;
    Ok(stored)
}

/// The recorded versions in `user`'s Drafts collection `collection_id` under `uid_validity`
/// that `filter` (SQL on the parameter `$4`, which is `arg`) picks, in UID order.
pub(super) async fn draft_query(
    c: &impl Prepared,
    user: &str,
    collection_id: &str,
    uid_validity: u32,
    filter: &str,
    arg: &(dyn ToSql + Sync),
) -> Result<Vec<DraftVersion>, StoreError> {
    let sql = format!(
        "SELECT uid, item, message_id FROM draft_versions
         WHERE user_name = $1 AND collection_id = $2 AND uid_validity = $3 AND {filter}
         ORDER BY uid"
    );
    query(
        c,
        &sql,
        &[&user, &collection_id, &i64::from(uid_validity), arg],
    )
    .await?
    .iter()
    .map(|r| {
        Ok(DraftVersion {
            uid: col_u32(r, 0)?,
            item: col_u32(r, 1)?,
            message_id: col(r, 2)?,
        })
    })
    .collect()
}
