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

/// What the devices table shows: `/devices?user=&type=&version=&state=&seen=&sort=`.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize)]
pub struct DeviceFilter {
    /// Part of the user's address (any letter case).
    pub user: String,
    /// Part of the DeviceType (any letter case).
    #[serde(rename = "type")]
    pub device_type: String,
    /// The protocol version, exactly.
    pub version: String,
    /// A word of the device's policy, access or wipe state (`provisioned`, `blocked`,
    /// `quarantined`, `pending`, ...).
    pub state: String,
    /// Seen within: `hour`, `day` or `week`; anything else is no bound.
    pub seen: String,
    /// `user`, `type` or `version`; anything else sorts by last seen, newest first.
    pub sort: String,
}

impl DeviceFilter {
    /// The filter of a query string (unknown keys are ignored).
    pub fn from_query(query: &str) -> DeviceFilter {
        let mut f = DeviceFilter::default();
        for (k, v) in form_urlencoded::parse(query.as_bytes()) {
            let v: String = v.trim().chars().take(200).collect();
            match k.as_ref() {
                "user" => f.user = v,
                "type" => f.device_type = v,
                "version" => f.version = v,
                "state" => f.state = v,
                "seen" => f.seen = v,
                "sort" => f.sort = v,
                _ => {}
            }
        }
        f
    }

    fn keeps(&self, d: &Device, now: i64) -> bool {
        let has = |hay: &str, needle: &str| {
            needle.is_empty() || hay.to_lowercase().contains(&needle.to_lowercase())
        };
        let within = match self.seen.as_str() {
            "hour" => Some(3_600),
            "day" => Some(86_400),
            "week" => Some(7 * 86_400),
            _ => None,
        };
        let state = format!("{} {} {}", d.policy.as_str(), d.access, d.wipe.as_str());
        has(&d.user, &self.user)
            && has(&d.device_type, &self.device_type)
            && (self.version.is_empty() || d.protocol_version.as_deref() == Some(&self.version))
            && has(&state, &self.state)
            && within.is_none_or(|w| d.last_seen >= now - w)
    }

    fn sort(&self, devices: &mut [&Device]) {
        // Ties are ordered by user and device, so the table does not shuffle.
        let who = |d: &Device| (d.user.clone(), d.device_id.clone());
        match self.sort.as_str() {
            "user" => devices.sort_by_key(|d| who(d)),
            "type" => devices.sort_by_key(|d| (d.device_type.to_lowercase(), who(d))),
            "version" => {
                devices.sort_by_key(|d| (std::cmp::Reverse(d.protocol_version.clone()), who(d)))
            }
            _ => devices.sort_by_key(|d| std::cmp::Reverse(d.last_seen)),
        }
    }
}

/// The devices table, most recently seen first.
pub fn devices_html(devices: &mut [Device], now: i64) -> Result<String, minijinja::Error> {
    devices_html_filtered(devices, &DeviceFilter::default(), now)
}

/// The devices `filter` keeps, in its order.
pub fn devices_html_filtered(
    devices: &[Device],
    filter: &DeviceFilter,
    now: i64,
) -> Result<String, minijinja::Error> {
    let mut kept: Vec<&Device> = devices.iter().filter(|d| filter.keeps(d, now)).collect();
    filter.sort(&mut kept);
    let rows: Vec<Row<'_>> = kept
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
    TEMPLATES.get_template("devices.html")?.render(context! {
        devices => minijinja::value::Serde(&rows),
        total => devices.len(),
        filter => minijinja::value::Serde(filter),
        now => utc(now),
    })
}

/// The devices page from the store, as `filter` has it.
pub async fn devices_page<S: StateStore>(
    store: &S,
    filter: &DeviceFilter,
) -> Result<String, String> {
    let devices = store.devices(None).await.map_err(|e| e.to_string())?;
    let now = jiff::Timestamp::now().as_second();
    devices_html_filtered(&devices, filter, now).map_err(|e| e.to_string())
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
    while let Some(&b) = bytes.get(i) {
        if b == b'%' {
            let hex = s.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b);
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
        if let Some(count) = per_minute.get_mut(minute) {
            *count += 1;
        }
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

    #[test]
    fn the_filter_keeps_and_orders_devices() {
        let dev = |user: &str, id: &str, ty: &str, v: &str, seen: i64| Device {
            user: user.into(),
            device_id: id.into(),
            device_type: ty.into(),
            protocol_version: Some(v.into()),
            user_agent: None,
            policy: Default::default(),
            policy_key: 0,
            policy_hash: None,
            device_info: Vec::new(),
            first_seen: seen,
            last_seen: seen,
            wipe: Default::default(),
            last_command: None,
            access: String::new(),
            trace: String::new(),
        };
        let now = 1_000_000;
        let all = vec![
            dev("alice@x", "A1", "iPhone", "16.1", now - 10),
            dev("bob@x", "B1", "Android", "14.1", now - 90_000),
            dev("alice@x", "A2", "Android", "14.1", now - 100),
        ];
        let ids = |q: &str| {
            let html = devices_html_filtered(&all, &DeviceFilter::from_query(q), now).unwrap();
            let mut found: Vec<(usize, &str)> = ["A1", "A2", "B1"]
                .iter()
                .filter_map(|id| html.find(&format!(">{id}</a>")).map(|at| (at, *id)))
                .collect();
            found.sort();
            found.into_iter().map(|(_, id)| id).collect::<Vec<_>>()
        };
        assert_eq!(ids(""), ["A1", "A2", "B1"], "newest first");
        assert_eq!(ids("user=ALICE"), ["A1", "A2"]);
        assert_eq!(ids("type=android&sort=user"), ["A2", "B1"]);
        assert_eq!(ids("version=14.1&seen=day"), ["A2"]);
        assert_eq!(ids("sort=type"), ["A2", "B1", "A1"]);
        assert_eq!(ids("state=provisioned"), Vec::<&str>::new());
    }
}
