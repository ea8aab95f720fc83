//! `eas-gateway devices ...`: the device registry for administrators. Every command works on
//! the state store a running gateway uses (SQLite in WAL mode with a busy timeout: reads never
//! block the gateway, each change is one short transaction), and every change is logged with
//! the operating-system user who made it.

use std::fmt::Write as _;
use std::io::Write as _;
use std::time::Duration;

use anyhow::{bail, Context as _};
use serde_json::{json, Value};

use crate::config::{Access, Config};
use crate::state::{
    Device, DeviceActivity, FolderEntry, HierarchyState, RequestEntry, StateStore, Store, WipeState,
};

/// Opens the store named by the configuration.
pub async fn open_store(config: &Config) -> anyhow::Result<Store> {
    Store::open_url(&config.state_url)
        .await
        .context("opening the state store")
}

/// The user as the gateway stores it (`alice` -> `alice@<identity.domain>`).
pub fn user_name(config: &Config, user: &str) -> String {
    crate::http::auth::normalise(user, &config.identity.domain)
}

/// Who runs this command: the login name of the process's user (and the user `sudo` was run
/// by, when it was).
pub fn who() -> String {
    let uid = rustix::process::getuid().as_raw();
    let name = std::fs::read_to_string("/etc/passwd")
        .ok()
        .and_then(|passwd| {
            passwd.lines().find_map(|line| {
                let mut parts = line.split(':');
                let name = parts.next()?;
                let id = parts.nth(1)?;
                (id.parse::<u32>().ok()? == uid).then(|| name.to_string())
            })
        })
        .unwrap_or_else(|| format!("uid {uid}"));
    match std::env::var("SUDO_USER") {
        Ok(by) if !by.is_empty() && by != name => format!("{name} (sudo by {by})"),
        _ => name,
    }
}

/// `2026-12-07 14:03:11` in the local time zone.
pub fn local_time(secs: i64) -> String {
    local_time_ms(secs.saturating_mul(1000), false)
}

fn local_time_ms(ms: i64, with_ms: bool) -> String {
    let Ok(ts) = jiff::Timestamp::from_millisecond(ms) else {
        return ms.to_string();
    };
    let zoned = ts.to_zoned_datetime(jiff::tz::TimeZone::system());
    if with_ms {
        zoned.strftime("%Y-%m-%d %H:%M:%S%.3f").to_string()
    } else {
        zoned.strftime("%Y-%m-%d %H:%M:%S").to_string()
    }
}

/// `3 min ago`, relative to `now` (unix seconds).
pub fn ago(secs: i64, now: i64) -> String {
    let d = now - secs;
    match d {
        i64::MIN..=4 => "just now".into(),
        5..=59 => format!("{d} s ago"),
        60..=3599 => format!("{} min ago", d / 60),
        3600..=86_399 => format!("{} h ago", d / 3600),
        _ => match d / 86_400 {
            1 => "1 day ago".into(),
            n => format!("{n} days ago"),
        },
    }
}

fn when(secs: i64, now: i64) -> String {
    format!("{} ({})", local_time(secs), ago(secs, now))
}

fn unix_now() -> i64 {
    jiff::Timestamp::now().as_second()
}

fn info<'a>(device: &'a Device, name: &str) -> Option<&'a str> {
    device
        .device_info
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// Left-aligned columns, two spaces apart.
fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            let w = cell.chars().count();
            match widths.get_mut(i) {
                Some(width) => *width = (*width).max(w),
                None => widths.push(w),
            }
        }
    }
    let mut out = String::new();
    let mut line = |cells: Vec<&str>| {
        let mut l = String::new();
        for (i, cell) in cells.iter().enumerate() {
            if i + 1 == cells.len() {
                l.push_str(cell);
            } else {
                let _ = write!(l, "{cell:<w$}  ", w = widths.get(i).copied().unwrap_or(0));
            }
        }
        out.push_str(l.trim_end());
        out.push('\n');
    };
    line(header.to_vec());
    for row in rows {
        line(row.iter().map(String::as_str).collect());
    }
    out
}

/// What the device is doing right now, when a request of it runs: `waiting in Ping since
/// ...` for a Ping or hanging Sync.
fn busy_text(d: &Device, a: &DeviceActivity, now: i64) -> Option<String> {
    if a.requests_running == 0 {
        return None;
    }
    let what = match d.last_command.as_deref() {
        Some(c @ ("Ping" | "Sync")) => format!("waiting in {c}"),
        Some(c) => format!("running {c}"),
        None => "running a request".into(),
    };
    Some(format!("{what} since {}", when(d.last_seen, now)))
}

/// The device's access: the administrator's override, else what the access rules decide.
pub fn access_text(config: &Config, d: &Device) -> String {
    if !d.access.is_empty() {
        return d.access.clone();
    }
    let decided = config.access.decide(
        &d.user,
        &d.device_id,
        &d.device_type,
        d.user_agent.as_deref().unwrap_or(""),
    );
    match decided {
        Access::Allow => "allowed (rules)",
        Access::Block => "blocked (rules)",
        Access::Quarantine => "quarantined (rules)",
    }
    .to_string()
}

fn device_json(config: &Config, d: &Device, activity: Option<&DeviceActivity>) -> Value {
    let mut v = json!({
        "user": d.user,
        "device_id": d.device_id,
        "device_type": d.device_type,
        "user_agent": d.user_agent,
        "model": info(d, "Model"),
        "os": info(d, "OS"),
        "friendly_name": info(d, "FriendlyName"),
        "device_information": d.device_info.iter().map(|(n, v)| json!({"name": n, "value": v})).collect::<Vec<_>>(),
        "protocol_version": d.protocol_version,
        "first_seen": d.first_seen,
        "last_seen": d.last_seen,
        "last_command": d.last_command,
        "policy": d.policy.as_str(),
        "policy_key": d.policy_key,
        "wipe": d.wipe.as_str(),
    });
    // Cannot panic: `v` is the object built above, and indexing an object by key inserts.
    #[allow(clippy::indexing_slicing)]
    if let Some(a) = activity {
        v["access"] = json!(access_text(config, d));
        v["trace"] = json!(match d.trace.as_str() {
            "" => "off",
            t => t,
        });
        v["wipe_acknowledged_at"] = json!(a.wipe_acknowledged_at);
        v["requests_running"] = json!(a.requests_running);
        v["waiting"] = json!(
            a.requests_running > 0 && matches!(d.last_command.as_deref(), Some("Ping" | "Sync"))
        );
        v["last_error"] = json!(a
            .last_error
            .as_ref()
            .map(|(at, text)| json!({"at": at, "error": text})));
    }
    v
}

/// Whether the device waits in quarantine (by its override or by the access rules) for an
/// administrator to release it with `devices allow`.
pub fn is_quarantined(config: &Config, d: &Device) -> bool {
    crate::commands::devices::access_for(
        &config.access,
        Some(d),
        &d.user,
        &d.device_id,
        &d.device_type,
        None,
    ) == Access::Quarantine
}

/// `devices list` (`quarantined`: only the devices waiting in quarantine).
pub async fn list(
    config: &Config,
    store: &Store,
    user: Option<&str>,
    as_json: bool,
    quarantined: bool,
) -> anyhow::Result<String> {
    let mut devices = store.devices(user).await?;
    if quarantined {
        devices.retain(|d| is_quarantined(config, d));
    }
    let mut activities = Vec::with_capacity(devices.len());
    for d in &devices {
        activities.push(store.device_activity(&d.user, &d.device_id).await?);
    }
    if as_json {
        let all: Vec<Value> = devices
            .iter()
            .zip(&activities)
            .map(|(d, a)| device_json(config, d, a.as_ref()))
            .collect();
        return Ok(serde_json::to_string_pretty(&all)? + "\n");
    }
    let now = unix_now();
    let rows: Vec<Vec<String>> = devices
        .iter()
        .zip(&activities)
        .map(|(d, a)| {
            let access = access_text(config, d);
            let error = a
                .as_ref()
                .and_then(|a| a.last_error.as_ref())
                .map(|(at, e)| format!("{} ({})", e, ago(*at, now)))
                .unwrap_or_default();
            vec![
                d.user.clone(),
                d.device_id.clone(),
                d.device_type.clone(),
                info(d, "Model").unwrap_or("-").to_string(),
                d.protocol_version.clone().unwrap_or_else(|| "-".into()),
                d.policy.as_str().to_string(),
                access,
                d.wipe.as_str().to_string(),
                when(d.last_seen, now),
                a.as_ref()
                    .and_then(|a| busy_text(d, a, now))
                    .and_then(|t| t.split(" since ").next().map(String::from))
                    .unwrap_or_else(|| "-".into()),
                d.last_command.clone().unwrap_or_default(),
                error,
            ]
        })
        .collect();
    Ok(table(
        &[
            "USER",
            "DEVICE",
            "TYPE",
            "MODEL",
            "VERSION",
            "POLICY",
            "ACCESS",
            "WIPE",
            "LAST SEEN",
            "NOW",
            "LAST COMMAND",
            "LAST ERROR",
        ],
        &rows,
    ))
}

fn folder_name(h: Option<&HierarchyState>, id: &str) -> String {
    h.and_then(|h| h.folders.iter().find(|f| f.server_id == id))
        .map(|f| f.display_name.clone())
        .unwrap_or_default()
}

async fn known_device(
    store: &impl StateStore,
    user: &str,
    device_id: &str,
) -> anyhow::Result<Device> {
    match store.device(user, device_id).await? {
        Some(d) => Ok(d),
        None => bail!("no device {device_id} of {user}"),
    }
}

/// `devices show`.
pub async fn show(
    config: &Config,
    store: &impl StateStore,
    user: &str,
    device_id: &str,
    as_json: bool,
) -> anyhow::Result<String> {
    let d = known_device(store, user, device_id).await?;
    let a = store
        .device_activity(user, device_id)
        .await?
        .unwrap_or_default();
    let h = store.hierarchy(user, device_id).await?;
    // Cannot panic: `v`, `fv` and `sv` are JSON objects (serialized structs), and indexing an
    // object by key inserts.
    #[allow(clippy::indexing_slicing)]
    if as_json {
        let mut v = device_json(config, &d, Some(&a));
        v["commands"] = json!(a.commands);
        v["folders"] = json!(a
            .folders
            .iter()
            .map(|f| {
                let mut fv = json!(f);
                fv["name"] = json!(folder_name(h.as_ref(), &f.collection_id));
                fv
            })
            .collect::<Vec<_>>());
        v["hierarchy_key"] = json!(a.hierarchy_key);
        v["sync_states"] = json!(a
            .sync_states
            .iter()
            .map(|s| {
                let mut sv = json!(s);
                sv["name"] = json!(folder_name(h.as_ref(), &s.collection_id));
                sv
            })
            .collect::<Vec<_>>());
        return Ok(serde_json::to_string_pretty(&v)? + "\n");
    }
    let now = unix_now();
    let mut out = String::new();
    let opt = |s: Option<&str>| s.unwrap_or("-").to_string();
    let mut field = |name: &str, value: String| {
        let _ = writeln!(out, "{:<18}{value}", format!("{name}:"));
    };
    field("User", d.user.clone());
    field("Device", d.device_id.clone());
    field("Type", d.device_type.clone());
    field("User-Agent", opt(d.user_agent.as_deref()));
    field("Protocol", opt(d.protocol_version.as_deref()));
    field("First seen", when(d.first_seen, now));
    field("Last seen", when(d.last_seen, now));
    field(
        "Now",
        busy_text(&d, &a, now).unwrap_or_else(|| "idle".into()),
    );
    field(
        "Policy",
        if d.policy_key == 0 {
            d.policy.as_str().to_string()
        } else {
            format!("{} (key {})", d.policy.as_str(), d.policy_key)
        },
    );
    field("Access", access_text(config, &d));
    if !d.trace.is_empty() {
        let what = if d.trace == "bodies" {
            "with mail bodies"
        } else {
            "bodies redacted"
        };
        field(
            "Trace",
            format!(
                "on, {what}: {}",
                crate::http::trace::file_of(&config.devices, &d).display()
            ),
        );
    }
    field(
        "Wipe",
        match a.wipe_acknowledged_at {
            Some(at) => format!("{} {}", d.wipe.as_str(), when(at, now)),
            None => d.wipe.as_str().to_string(),
        },
    );
    field(
        "Last error",
        a.last_error
            .as_ref()
            .map(|(at, e)| format!("{e} ({})", when(*at, now)))
            .unwrap_or_else(|| "-".into()),
    );
    if !d.device_info.is_empty() {
        out.push_str("\nDevice information:\n");
        for (n, v) in &d.device_info {
            let _ = writeln!(out, "  {:<16}{v}", format!("{n}:"));
        }
    }
    if !a.commands.is_empty() {
        out.push_str("\nLast request per command:\n");
        let rows: Vec<Vec<String>> = a
            .commands
            .iter()
            .map(|c| vec![c.command.clone(), when(c.last_at, now), c.count.to_string()])
            .collect();
        for l in table(&["COMMAND", "LAST", "COUNT"], &rows).lines() {
            let _ = writeln!(out, "  {l}");
        }
    }
    let _ = writeln!(
        out,
        "\nFolders (FolderSync key {}):",
        a.hierarchy_key.map_or_else(
            || "none: next FolderSync starts over".into(),
            |k| k.to_string()
        )
    );
    let mut ids: Vec<&str> = a
        .sync_states
        .iter()
        .map(|s| s.collection_id.as_str())
        .chain(a.folders.iter().map(|f| f.collection_id.as_str()))
        .collect();
    ids.sort_by_key(|id| (id.len(), *id));
    ids.dedup();
    let rows: Vec<Vec<String>> = ids
        .iter()
        .map(|id| {
            let state = a.sync_states.iter().find(|s| s.collection_id == *id);
            let act = a.folders.iter().find(|f| f.collection_id == *id);
            vec![
                id.to_string(),
                folder_name(h.as_ref(), id),
                state.map_or_else(
                    || "none".into(),
                    |s| {
                        let mut k = s.sync_key.to_string();
                        if s.more_available {
                            k.push_str(" (more)");
                        }
                        k
                    },
                ),
                act.map_or_else(|| "-".into(), |f| when(f.last_sync, now)),
                act.map_or_else(|| "-".into(), |f| f.status.to_string()),
                act.map_or_else(
                    || "-".into(),
                    |f| format!("{} / {}", f.last_sent, f.last_received),
                ),
                act.map_or_else(
                    || "-".into(),
                    |f| format!("{} / {}", f.total_sent, f.total_received),
                ),
            ]
        })
        .collect();
    for l in table(
        &[
            "ID",
            "NAME",
            "SYNC KEY",
            "LAST SYNC",
            "STATUS",
            "SENT / RECEIVED",
            "TOTAL",
        ],
        &rows,
    )
    .lines()
    {
        let _ = writeln!(out, "  {l}");
    }
    Ok(out)
}

/// `devices remove`: forgets the device and all its state.
pub async fn remove(store: &Store, user: &str, device_id: &str) -> anyhow::Result<String> {
    remove_by(store, user, device_id, &who()).await
}

/// [`remove`] on behalf of `who`.
pub async fn remove_by(
    store: &impl StateStore,
    user: &str,
    device_id: &str,
    who: &str,
) -> anyhow::Result<String> {
    if !store.delete_device(user, device_id).await? {
        bail!("no device {device_id} of {user}");
    }
    tracing::info!(
        who = %who,
        user,
        device_id,
        "device removed: its next request starts over with Provision and FolderSync"
    );
    Ok(format!(
        "removed {device_id} of {user}: its next request starts over (Provision, FolderSync)\n"
    ))
}

fn find_folder<'a>(h: &'a HierarchyState, name: &str) -> anyhow::Result<&'a FolderEntry> {
    let matches: Vec<&FolderEntry> = h
        .folders
        .iter()
        .filter(|f| f.server_id == name || f.display_name.eq_ignore_ascii_case(name))
        .collect();
    match matches.as_slice() {
        [one] => Ok(one),
        [] => bail!(
            "the device has no folder {name:?} (known: {})",
            h.folders
                .iter()
                .map(|f| format!("{} {}", f.server_id, f.display_name))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        many => bail!(
            "{name:?} names several folders; use the id: {}",
            many.iter()
                .map(|f| format!("{} {}", f.server_id, f.display_name))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

/// `devices resync`: the next Sync of the folder (or of every folder, and the next
/// FolderSync) answers that the sync key is invalid, and the device starts that part over.
pub async fn resync(
    store: &Store,
    user: &str,
    device_id: &str,
    folder: Option<&str>,
) -> anyhow::Result<String> {
    resync_by(store, user, device_id, folder, &who()).await
}

/// [`resync`] on behalf of `who`.
pub async fn resync_by(
    store: &impl StateStore,
    user: &str,
    device_id: &str,
    folder: Option<&str>,
    who: &str,
) -> anyhow::Result<String> {
    known_device(store, user, device_id).await?;
    match folder {
        Some(name) => {
            let Some(h) = store.hierarchy(user, device_id).await? else {
                bail!("the device has no folders yet (it has not run FolderSync)");
            };
            let f = find_folder(&h, name)?;
            store
                .reset_collection(user, device_id, &f.server_id)
                .await?;
            tracing::info!(
                who = %who,
                user,
                device_id,
                collection_id = %f.server_id,
                "folder resync requested: its next Sync answers Status 3"
            );
            Ok(format!(
                "{device_id} of {user}: the next Sync of {} ({}) answers Status 3 and the folder syncs again from key 0\n",
                f.display_name, f.server_id
            ))
        }
        None => {
            store.reset_sync_state(user, device_id).await?;
            tracing::info!(
                who = %who,
                user,
                device_id,
                "resync requested: next FolderSync answers Status 9, next Sync Status 3"
            );
            Ok(format!(
                "{device_id} of {user}: the next FolderSync answers Status 9 and every Sync Status 3; the device syncs everything again\n"
            ))
        }
    }
}

/// `devices wipe` / `account-wipe`: the device's next request gets the Provision dance with
/// RemoteWipe (or AccountOnlyRemoteWipe, 16.1 only).
pub async fn wipe(
    store: &Store,
    user: &str,
    device_id: &str,
    account_only: bool,
) -> anyhow::Result<String> {
    wipe_by(store, user, device_id, account_only, &who()).await
}

/// [`wipe`] on behalf of `who`.
pub async fn wipe_by(
    store: &impl StateStore,
    user: &str,
    device_id: &str,
    account_only: bool,
    who: &str,
) -> anyhow::Result<String> {
    let d = known_device(store, user, device_id).await?;
    if account_only && d.protocol_version.as_deref() != Some("16.1") {
        bail!(
            "an account-only wipe needs EAS 16.1; {device_id} speaks {}: nothing changed",
            d.protocol_version
                .as_deref()
                .unwrap_or("an unknown version")
        );
    }
    let state = if account_only {
        WipeState::AccountOnlyRequested
    } else {
        WipeState::Requested
    };
    store.set_wipe(user, device_id, state).await?;
    let what = if account_only {
        "account-only wipe"
    } else {
        "remote wipe"
    };
    tracing::info!(who = %who, user, device_id, "{what} requested");
    Ok(format!(
        "{what} of {device_id} of {user} requested: its next request is answered with it\n"
    ))
}

/// `devices cancel-wipe`: only before the device acknowledged the wipe.
pub async fn cancel_wipe(store: &Store, user: &str, device_id: &str) -> anyhow::Result<String> {
    let d = known_device(store, user, device_id).await?;
    match d.wipe {
        WipeState::None => bail!("no wipe is pending for {device_id} of {user}"),
        WipeState::Acknowledged => bail!(
            "{device_id} of {user} acknowledged the wipe already; `devices remove` lets it start over"
        ),
        WipeState::Requested | WipeState::AccountOnlyRequested => {}
    }
    store.set_wipe(user, device_id, WipeState::None).await?;
    tracing::info!(who = %who(), user, device_id, "wipe cancelled");
    Ok(format!("wipe of {device_id} of {user} cancelled\n"))
}

/// `devices allow|block`: a per-device override of the access rules (`None`: back to the
/// rules).
pub async fn set_access(
    store: &Store,
    user: &str,
    device_id: &str,
    access: Option<Access>,
) -> anyhow::Result<String> {
    set_access_by(store, user, device_id, access, &who()).await
}

/// [`set_access`] on behalf of `who`.
pub async fn set_access_by(
    store: &impl StateStore,
    user: &str,
    device_id: &str,
    access: Option<Access>,
    who: &str,
) -> anyhow::Result<String> {
    known_device(store, user, device_id).await?;
    let value = match access {
        None => "",
        Some(Access::Allow) => "allowed",
        Some(Access::Block) => "blocked",
        Some(Access::Quarantine) => "quarantined",
    };
    store.set_access(user, device_id, value).await?;
    let shown = if value.is_empty() {
        "decided by the access rules"
    } else {
        value
    };
    tracing::info!(who = %who, user, device_id, access = shown, "device access set");
    Ok(format!("{device_id} of {user}: {shown}\n"))
}

fn size(n: u64) -> String {
    if n < 10 * 1024 {
        format!("{n} B")
    } else if n < 10 * 1024 * 1024 {
        format!("{} KB", n / 1024)
    } else {
        format!("{} MB", n / (1024 * 1024))
    }
}

/// One request log entry as one line.
pub fn entry_line(e: &RequestEntry) -> String {
    let mut l = format!(
        "{}  {:<14} HTTP {}",
        local_time_ms(e.at_ms, true),
        e.command,
        e.http_status
    );
    if let Some(s) = e.eas_status {
        let _ = write!(l, "  status {s}");
    }
    let _ = write!(
        l,
        "  {} ms  in {}  out {}",
        e.duration_ms,
        size(e.bytes_in),
        size(e.bytes_out)
    );
    for c in &e.collections {
        let _ = write!(
            l,
            "  [{}] key {} -> {} status {}: sent +{} ~{} -{}, received +{} ~{} -{}",
            c.collection_id,
            c.key_in,
            c.key_out.as_deref().unwrap_or("-"),
            c.status,
            c.added_out,
            c.changed_out,
            c.deleted_out,
            c.added_in,
            c.changed_in,
            c.deleted_in
        );
    }
    if !e.ping_folders.is_empty() || e.ping_outcome.is_some() {
        let _ = write!(
            l,
            "  watching {}: {}",
            e.ping_folders.join(","),
            e.ping_outcome.as_deref().unwrap_or("-")
        );
    }
    if let Some(err) = &e.error {
        let _ = write!(l, "  error: {err}");
    }
    l
}

fn entry_json(e: &RequestEntry) -> anyhow::Result<String> {
    Ok(serde_json::to_string(e)?)
}

/// `devices log`: the device's last `limit` requests; with `follow`, then every new one as it
/// is recorded, until the process is stopped.
pub async fn log(
    store: &Store,
    user: &str,
    device_id: &str,
    limit: u32,
    follow: bool,
    as_json: bool,
) -> anyhow::Result<()> {
    known_device(store, user, device_id).await?;
    let print = |entries: &[RequestEntry]| -> anyhow::Result<i64> {
        let stdout = std::io::stdout();
        let mut out = stdout.lock();
        let mut last = 0;
        for e in entries {
            if as_json {
                writeln!(out, "{}", entry_json(e)?)?;
            } else {
                writeln!(out, "{}", entry_line(e))?;
            }
            last = e.id;
        }
        out.flush()?;
        Ok(last)
    };
    let mut last = print(&store.request_log(user, device_id, 0, limit).await?)?;
    if !follow {
        return Ok(());
    }
    loop {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let entries = store.request_log(user, device_id, last, 10_000).await?;
        if !entries.is_empty() {
            last = print(&entries)?;
        }
    }
}

/// `devices trace USER DEVICE on|off [--bodies]`: the running gateway reads the flag with the
/// device's next request.
pub async fn trace(
    config: &Config,
    store: &Store,
    user: &str,
    device_id: &str,
    on: bool,
    bodies: bool,
) -> anyhow::Result<String> {
    let device = known_device(store, user, device_id).await?;
    let mode = match (on, bodies) {
        (false, _) => "",
        (true, false) => "on",
        (true, true) => "bodies",
    };
    store.set_trace(user, device_id, mode).await?;
    let path = crate::http::trace::file_of(&config.devices, &device);
    tracing::info!(who = %who(), user, device_id, trace = if on { mode } else { "off" }, "device trace set");
    Ok(match mode {
        "" => format!("trace of {device_id} of {user} off ({})\n", path.display()),
        "on" => format!(
            "tracing {device_id} of {user} to {} (credentials and mail bodies redacted)\n",
            path.display()
        ),
        _ => format!(
            "tracing {device_id} of {user} to {} (credentials redacted; mail bodies included)\n",
            path.display()
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_times() {
        assert_eq!(ago(100, 100), "just now");
        assert_eq!(ago(100, 130), "30 s ago");
        assert_eq!(ago(0, 180), "3 min ago");
        assert_eq!(ago(0, 7200), "2 h ago");
        assert_eq!(ago(0, 86_400), "1 day ago");
        assert_eq!(ago(0, 3 * 86_400 + 5), "3 days ago");
    }

    #[test]
    fn local_times_have_the_documented_shape() {
        let s = local_time(1_796_652_191);
        assert_eq!(s.len(), "2026-12-07 14:03:11".len(), "{s}");
        assert_eq!(&s[4..5], "-");
        assert_eq!(&s[13..14], ":");
    }

    #[test]
    fn columns_line_up() {
        let t = table(&["A", "BB"], &[vec!["long".into(), "x".into()]]);
        assert_eq!(t, "A     BB\nlong  x\n");
    }
}
