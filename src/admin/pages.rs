//! Server-rendered admin pages (minijinja templates compiled into the binary, HTML-escaped;
//! nothing loaded from elsewhere). The one script, `/admin.js`, is served from the binary too:
//! it asks for a confirmation before an action and refreshes a device's request log.

use std::sync::LazyLock;

use minijinja::{context, Environment};
use serde::Serialize;

use crate::config::Config;
use crate::state::{Device, RequestEntry, StateStore};

static TEMPLATES: LazyLock<Environment<'static>> = LazyLock::new(|| {
    let mut env = Environment::new();
    // A template that does not parse is a build mistake the unit test below catches.
    let _ = env.add_template("devices.html", include_str!("templates/devices.html"));
    let _ = env.add_template("device.html", include_str!("templates/device.html"));
    let _ = env.add_template("log_rows.html", include_str!("templates/log_rows.html"));
    let _ = env.add_template("overview.html", include_str!("templates/overview.html"));
    env
});

#[derive(Serialize)]
struct Row<'a> {
    href: String,
    user: &'a str,
    device_id: &'a str,
    device_type: &'a str,
    protocol_version: &'a str,
    user_agent: &'a str,
    last_seen: String,
    last_command: &'a str,
    policy: &'static str,
    access: &'a str,
    wipe: &'static str,
}

fn utc(unix: i64) -> String {
    jiff::Timestamp::from_second(unix)
        .map(|t| t.strftime("%Y-%m-%d %H:%M:%S").to_string())
        .unwrap_or_default()
}

/// The devices table, most recently seen first.
pub fn devices_html(devices: &mut [Device], now: i64) -> Result<String, minijinja::Error> {
    devices.sort_by_key(|d| std::cmp::Reverse(d.last_seen));
    let rows: Vec<Row<'_>> = devices
        .iter()
        .map(|d| Row {
            href: device_path(&d.user, &d.device_id),
            user: &d.user,
            device_id: &d.device_id,
            device_type: &d.device_type,
            protocol_version: d.protocol_version.as_deref().unwrap_or(""),
            user_agent: d.user_agent.as_deref().unwrap_or(""),
            last_seen: utc(d.last_seen),
            last_command: d.last_command.as_deref().unwrap_or(""),
            policy: d.policy.as_str(),
            access: &d.access,
            wipe: d.wipe.as_str(),
        })
        .collect();
    TEMPLATES
        .get_template("devices.html")?
        .render(context! { devices => minijinja::value::Serde(&rows), now => utc(now) })
}

/// The devices page from the store.
pub async fn devices_page<S: StateStore>(store: &S) -> Result<String, String> {
    let mut devices = store.devices(None).await.map_err(|e| e.to_string())?;
    let now = jiff::Timestamp::now().as_second();
    devices_html(&mut devices, now).map_err(|e| e.to_string())
}

/// Percent-encodes one path segment (everything but unreserved characters).
pub fn encode_segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Decodes a percent-encoded path segment (`None` when it is not valid UTF-8 or malformed).
pub fn decode_segment(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = s.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// The admin path of a device's page.
pub fn device_path(user: &str, device_id: &str) -> String {
    format!(
        "/devices/{}/{}",
        encode_segment(user),
        encode_segment(device_id)
    )
}

/// Whether a logged request failed: an error, an HTTP error, a common status (100 and up),
/// or a folder of a Sync answered other than Status 1.
fn failed(e: &RequestEntry) -> bool {
    e.error.is_some()
        || e.http_status >= 400
        || e.eas_status.is_some_and(|s| s >= 100)
        || e.collections.iter().any(|c| c.status != 1)
}

/// Requests shown on a device's page.
const LOG_SHOWN: u32 = 50;

#[derive(Serialize)]
struct LogRow {
    at: String,
    command: String,
    http_status: u16,
    eas_status: String,
    duration_ms: u64,
    bytes: String,
    detail: String,
    error: String,
    failed: bool,
}

fn utc_ms(ms: i64) -> String {
    jiff::Timestamp::from_millisecond(ms)
        .map(|t| t.strftime("%H:%M:%S").to_string())
        .unwrap_or_default()
}

fn log_rows(entries: &[RequestEntry]) -> Vec<LogRow> {
    entries
        .iter()
        .rev()
        .map(|e| {
            let mut detail = Vec::new();
            for c in &e.collections {
                detail.push(format!(
                    "{}: {} → {} st {} ↓{} ↑{}",
                    c.collection_id,
                    c.key_in,
                    c.key_out.as_deref().unwrap_or("-"),
                    c.status,
                    c.sent(),
                    c.received()
                ));
            }
            if let Some(o) = &e.ping_outcome {
                detail.push(format!("Ping [{}]: {o}", e.ping_folders.join(",")));
            }
            LogRow {
                at: utc_ms(e.at_ms),
                command: e.command.clone(),
                http_status: e.http_status,
                eas_status: e.eas_status.map(|s| s.to_string()).unwrap_or_default(),
                duration_ms: e.duration_ms,
                bytes: format!("{} / {}", e.bytes_in, e.bytes_out),
                detail: detail.join("; "),
                error: e.error.clone().unwrap_or_default(),
                failed: failed(e),
            }
        })
        .collect()
}

/// The rows of a device's request log, newest first (the page's log refreshes with these).
pub async fn log_fragment<S: StateStore>(
    store: &S,
    user: &str,
    device_id: &str,
) -> Result<String, String> {
    let entries = store
        .request_log(user, device_id, 0, LOG_SHOWN)
        .await
        .map_err(|e| e.to_string())?;
    TEMPLATES
        .get_template("log_rows.html")
        .and_then(|t| t.render(context! { log => minijinja::value::Serde(log_rows(&entries)) }))
        .map_err(|e| e.to_string())
}

/// A device's page: what `devices show` prints, its request log and the action forms.
/// `Ok(None)` for an unknown device.
pub async fn device_page<S: StateStore>(
    config: &Config,
    store: &S,
    user: &str,
    device_id: &str,
    csrf: &str,
) -> Result<Option<String>, String> {
    if store
        .device(user, device_id)
        .await
        .map_err(|e| e.to_string())?
        .is_none()
    {
        return Ok(None);
    }
    let details = crate::cli::devices::show(config, store, user, device_id, false)
        .await
        .map_err(|e| e.to_string())?;
    let entries = store
        .request_log(user, device_id, 0, LOG_SHOWN)
        .await
        .map_err(|e| e.to_string())?;
    let path = device_path(user, device_id);
    TEMPLATES
        .get_template("device.html")
        .and_then(|t| {
            t.render(context! {
                user, device_id, details, csrf,
                path => &path,
                log => minijinja::value::Serde(log_rows(&entries)),
                now => utc(jiff::Timestamp::now().as_second()),
            })
        })
        .map(Some)
        .map_err(|e| e.to_string())
}

#[derive(Serialize)]
struct Bar {
    x: u32,
    y: u32,
    height: u32,
    label: String,
}

/// Height of the overview's chart area, in SVG units.
const CHART_HEIGHT: u32 = 100;

/// The overview from the devices and their logged requests, `now_ms` in unix milliseconds.
pub fn overview_html(
    devices: &[Device],
    entries: &[RequestEntry],
    waiting_pings: usize,
    now_ms: i64,
) -> Result<String, minijinja::Error> {
    let start = now_ms - 3_600_000;
    let mut per_minute = [0u32; 60];
    let mut errors: std::collections::BTreeMap<&str, u32> = Default::default();
    let mut total = 0u32;
    for e in entries
        .iter()
        .filter(|e| e.at_ms >= start && e.at_ms <= now_ms)
    {
        let minute = (((e.at_ms - start) / 60_000) as usize).min(59);
        per_minute[minute] += 1;
        total += 1;
        if failed(e) {
            *errors.entry(e.command.as_str()).or_default() += 1;
        }
    }
    let max = per_minute.iter().copied().max().unwrap_or(0).max(1);
    let bars: Vec<Bar> = per_minute
        .iter()
        .enumerate()
        .map(|(i, &n)| {
            let height = n * CHART_HEIGHT / max;
            Bar {
                x: i as u32 * 10,
                y: CHART_HEIGHT - height,
                height,
                label: format!("{} min ago: {n}", 59 - i),
            }
        })
        .collect();
    let day_start = (now_ms / 1000).div_euclid(86_400) * 86_400;
    let seen_today = devices.iter().filter(|d| d.last_seen >= day_start).count();
    let errors: Vec<(&str, u32)> = errors.into_iter().collect();
    TEMPLATES.get_template("overview.html")?.render(context! {
        bars => minijinja::value::Serde(&bars),
        max, total,
        errors => minijinja::value::Serde(&errors),
        waiting_pings, seen_today,
        devices => devices.len(),
        now => utc(now_ms / 1000),
    })
}

/// The overview page from the store and the push hub's count of waiting Pings.
pub async fn overview_page<S: StateStore>(
    store: &S,
    waiting_pings: usize,
) -> Result<String, String> {
    let devices = store.devices(None).await.map_err(|e| e.to_string())?;
    let now_ms = jiff::Timestamp::now().as_millisecond();
    let mut entries = Vec::new();
    for d in &devices {
        let log = store
            .request_log(&d.user, &d.device_id, 0, u32::MAX)
            .await
            .map_err(|e| e.to_string())?;
        entries.extend(log.into_iter().filter(|e| e.at_ms >= now_ms - 3_600_000));
    }
    overview_html(&devices, &entries, waiting_pings, now_ms).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_escapes_what_devices_send() {
        let mut d = vec![Device {
            user: "alice@example.test".into(),
            device_id: "ABC123".into(),
            device_type: "<script>alert(1)</script>".into(),
            user_agent: Some("Agent\"/><b>".into()),
            protocol_version: Some("16.1".into()),
            policy: Default::default(),
            policy_key: 0,
            policy_hash: None,
            device_info: Vec::new(),
            first_seen: 1_700_000_000,
            last_seen: 1_700_000_000,
            wipe: Default::default(),
            last_command: Some("Sync".into()),
            access: String::new(),
            trace: String::new(),
        }];
        let html = devices_html(&mut d, 1_700_000_100).unwrap();
        assert!(html.contains("alice@example.test"));
        assert!(html.contains("2023-11-14 22:13:20"), "{html}");
        assert!(!html.contains("<script>"), "{html}");
        assert!(html.contains("&lt;script&gt;"), "{html}");
        assert!(!html.contains("<b>"));
        let html = devices_html(&mut [], 0).unwrap();
        assert!(html.contains("No device has connected yet."));
    }
}
