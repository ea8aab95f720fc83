//! Prometheus metrics: one process-wide registry, exposed by the admin listener at `/metrics`
//! in the text exposition format (see [`crate::admin`]).
//!
//! Recording is a few atomic additions; nothing is computed until somebody scrapes. Labels only
//! ever carry values from small fixed sets (command names, statuses, causes, outcomes, protocol
//! versions, sanitised device types): never a user name, a device id or an address.

use std::sync::{LazyLock, Mutex};
use std::time::{Duration, Instant};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

use crate::eas::sync::{ClientCommand, CollectionRequest, CollectionResponse, ServerCommand};
use crate::eas::RequestLine;
use crate::push::WaitResult;
use crate::state::Device;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub command: &'static str,
    pub eas_status: String,
    pub http_status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CommandLabel {
    pub command: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PushLabels {
    pub kind: &'static str,
    pub outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ImapCommandLabel {
    pub command: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResetLabels {
    pub command: &'static str,
    pub cause: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ItemLabels {
    pub direction: &'static str,
    pub op: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabel {
    pub result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct VersionLabel {
    pub version: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TypeLabel {
    pub device_type: String,
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

/// Every metric the gateway exports.
pub struct Metrics {
    registry: Registry,
    pub requests: Family<RequestLabels, Counter>,
    pub request_duration: HistogramFamily<CommandLabel>,
    pub push_waiting: Gauge,
    pub push_watchers: Gauge,
    pub push_ended: Family<PushLabels, Counter>,
    pub imap_logins: Counter,
    pub imap_pool_waits: Counter,
    pub imap_logins_queued: Gauge,
    pub imap_login_queue_timeouts: Counter,
    pub imap_idle_sessions: Gauge,
    pub smtp_submissions: Family<ResultLabel, Counter>,
    pub sync_key_resets: Family<ResetLabels, Counter>,
    pub items_synced: Family<ItemLabels, Counter>,
    pub auth_failures: Counter,
    pub auth_throttled: Counter,
    pub devices_by_version: Family<VersionLabel, Gauge>,
    pub devices_by_type: Family<TypeLabel, Gauge>,
    pub store_calls: Histogram,
    pub push_wake: Histogram,
    pub push_events: Counter,
    pub push_events_refused: Counter,
    pub imap_connections: Gauge,
    pub imap_commands: HistogramFamily<ImapCommandLabel>,
    /// When the device gauges were last computed from the store.
    devices_at: Mutex<Option<Instant>>,
    /// Held while a scrape sets the gauges it reads and encodes them.
    scrape: Mutex<()>,
}

fn duration_histogram() -> Histogram {
    // 5 ms .. about 1.4 h: a hanging Sync or a Ping lasts up to an hour.
    Histogram::new(exponential_buckets(0.005, 2.0, 20))
}

impl Metrics {
    fn new() -> Metrics {
        let mut registry = Registry::with_prefix("eas");
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "requests",
            "Requests answered, by command, EAS status and HTTP status",
            requests.clone(),
        );
        let request_duration: HistogramFamily<CommandLabel> =
            Family::new_with_constructor(duration_histogram);
        registry.register(
            "request_duration_seconds",
            "Time from the request's headers to its answer, by command",
            request_duration.clone(),
        );
        let push_waiting = Gauge::default();
        registry.register(
            "push_waiting",
            "Waiting Pings and hanging Syncs now",
            push_waiting.clone(),
        );
        let push_watchers = Gauge::default();
        registry.register(
            "push_watchers",
            "Users whose mailboxes are watched for push now",
            push_watchers.clone(),
        );
        let push_ended = Family::<PushLabels, Counter>::default();
        registry.register(
            "push_waits_ended",
            "Ended Ping and hanging-Sync waits, by kind and outcome (changed: a push wake-up)",
            push_ended.clone(),
        );
        let imap_logins = Counter::default();
        registry.register(
            "imap_logins",
            "IMAP sessions opened (logins) by the session pool",
            imap_logins.clone(),
        );
        let imap_pool_waits = Counter::default();
        registry.register(
            "imap_pool_waits",
            "Requests that had to wait for a free IMAP session slot of their user",
            imap_pool_waits.clone(),
        );
        let imap_logins_queued = Gauge::default();
        registry.register(
            "imap_logins_queued",
            "Logins waiting now for a turn (imap.max_parallel_logins are in flight)",
            imap_logins_queued.clone(),
        );
        let imap_login_queue_timeouts = Counter::default();
        registry.register(
            "imap_login_queue_timeouts",
            "Logins that got no turn within imap.login_queue_secs (answered 503)",
            imap_login_queue_timeouts.clone(),
        );
        let imap_idle_sessions = Gauge::default();
        registry.register(
            "imap_idle_sessions",
            "Logged-in IMAP sessions idle in the pool now",
            imap_idle_sessions.clone(),
        );
        let smtp_submissions = Family::<ResultLabel, Counter>::default();
        registry.register(
            "smtp_submissions",
            "SMTP submissions, by result (ok or failed)",
            smtp_submissions.clone(),
        );
        let sync_key_resets = Family::<ResetLabels, Counter>::default();
        registry.register(
            "sync_key_resets",
            "Invalid sync key answers (Sync Status 3, FolderSync Status 9), by command and cause",
            sync_key_resets.clone(),
        );
        let items_synced = Family::<ItemLabels, Counter>::default();
        registry.register(
            "sync_items",
            "Items synced, by direction (to_device, from_device) and operation",
            items_synced.clone(),
        );
        let auth_failures = Counter::default();
        registry.register(
            "auth_failures",
            "Requests refused for wrong or missing credentials",
            auth_failures.clone(),
        );
        let auth_throttled = Counter::default();
        registry.register(
            "auth_throttled",
            "Requests refused because of too many failed logins",
            auth_throttled.clone(),
        );
        let devices_by_version = Family::<VersionLabel, Gauge>::default();
        registry.register(
            "devices_by_protocol_version",
            "Known devices, by the protocol version of their last request",
            devices_by_version.clone(),
        );
        let devices_by_type = Family::<TypeLabel, Gauge>::default();
        registry.register(
            "devices_by_type",
            "Known devices, by DeviceType (letters and digits only, rare types as other)",
            devices_by_type.clone(),
        );
        // 100 µs .. about 3 s.
        let store_calls = Histogram::new(exponential_buckets(0.0001, 2.0, 15));
        registry.register(
            "store_call_duration_seconds",
            "State store operations, from the request for the connection to the result",
            store_calls.clone(),
        );
        // 1 ms .. about 16 s.
        let push_wake = Histogram::new(exponential_buckets(0.001, 2.0, 15));
        registry.register(
            "push_wake_duration_seconds",
            "From the push watcher hearing of a change to the waiting request being woken (the refresh that confirms the change)",
            push_wake.clone(),
        );
        let push_events = Counter::default();
        registry.register(
            "push_mail_events",
            "Mail events the mail server posted to the events listener (push.source = \"events\")",
            push_events.clone(),
        );
        let push_events_refused = Counter::default();
        registry.register(
            "push_mail_events_refused",
            "Posts to the events listener refused for a wrong or missing secret",
            push_events_refused.clone(),
        );
        let imap_connections = Gauge::default();
        registry.register(
            "imap_connections",
            "IMAP connections open now (pooled sessions, push watchers, logins under way)",
            imap_connections.clone(),
        );
        // 100 µs .. about 3 s.
        let imap_commands: HistogramFamily<ImapCommandLabel> =
            Family::new_with_constructor(|| Histogram::new(exponential_buckets(0.0001, 2.0, 15)));
        registry.register(
            "imap_command_duration_seconds",
            "IMAP command round trips, from the tag sent to the completion read, by command",
            imap_commands.clone(),
        );
        Metrics {
            push_events,
            push_events_refused,
            imap_connections,
            imap_commands,
            push_wake,
            store_calls,
            registry,
            requests,
            request_duration,
            push_waiting,
            push_watchers,
            push_ended,
            imap_logins,
            imap_pool_waits,
            imap_logins_queued,
            imap_login_queue_timeouts,
            imap_idle_sessions,
            smtp_submissions,
            sync_key_resets,
            items_synced,
            auth_failures,
            auth_throttled,
            devices_by_version,
            devices_by_type,
            devices_at: Mutex::new(None),
            scrape: Mutex::new(()),
        }
    }

    /// The registry in the text exposition format (OpenMetrics flavour, which Prometheus reads).
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }

    /// Serialises scrapes (see [`crate::admin::metrics_text`]).
    pub fn scrape_lock(&self) -> std::sync::MutexGuard<'_, ()> {
        self.scrape.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether the device gauges are older than `max_age` (then the caller recomputes them).
    pub fn devices_stale(&self, max_age: Duration) -> bool {
        let at = self.devices_at.lock().unwrap_or_else(|e| e.into_inner());
        at.is_none_or(|t| t.elapsed() >= max_age)
    }

    /// Recomputes the device gauges from the store's device list.
    pub fn set_devices(&self, devices: &[Device]) {
        use std::collections::HashMap;
        let mut versions: HashMap<String, i64> = HashMap::new();
        let mut types: HashMap<String, i64> = HashMap::new();
        for d in devices {
            let v = d
                .protocol_version
                .as_deref()
                .and_then(crate::eas::ProtocolVersion::parse)
                .map_or("unknown", |v| v.as_str());
            *versions.entry(v.to_string()).or_default() += 1;
            *types.entry(device_type_label(&d.device_type)).or_default() += 1;
        }
        // Only the most common types get their own series.
        let mut ranked: Vec<(String, i64)> = types.into_iter().collect();
        ranked.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        let mut other = 0;
        self.devices_by_type.clear();
        for (i, (t, n)) in ranked.into_iter().enumerate() {
            if i < MAX_DEVICE_TYPES && t != "other" {
                self.devices_by_type
                    .get_or_create(&TypeLabel { device_type: t })
                    .set(n);
            } else {
                other += n;
            }
        }
        if other > 0 {
            self.devices_by_type
                .get_or_create(&TypeLabel {
                    device_type: "other".into(),
                })
                .set(other);
        }
        self.devices_by_version.clear();
        for (v, n) in versions {
            self.devices_by_version
                .get_or_create(&VersionLabel { version: v })
                .set(n);
        }
        *self.devices_at.lock().unwrap_or_else(|e| e.into_inner()) = Some(Instant::now());
    }
}

/// Device types with their own series; the rest are summed as `other`.
const MAX_DEVICE_TYPES: usize = 20;

/// A DeviceType as a label: letters and digits, at most 32 of them; `other` when none.
fn device_type_label(t: &str) -> String {
    let s: String = t
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .take(32)
        .collect();
    if s.is_empty() {
        "other".into()
    } else {
        s
    }
}

static METRICS: LazyLock<Metrics> = LazyLock::new(Metrics::new);

/// The process's metrics.
pub fn get() -> &'static Metrics {
    &METRICS
}

/// The command label of a request: the EAS command's name, `OPTIONS`, `Autodiscover`,
/// `unknown` (an EAS request naming no known command) or `other` (any other path).
pub fn command_label(method: &str, path: &str, query: Option<&str>) -> &'static str {
    let path = path.trim_end_matches('/').to_ascii_lowercase();
    if path.starts_with("/autodiscover/") {
        return "Autodiscover";
    }
    if path != crate::http::handler::EAS_PATH {
        return "other";
    }
    if method.eq_ignore_ascii_case("OPTIONS") {
        return "OPTIONS";
    }
    RequestLine::parse(query.unwrap_or(""))
        .ok()
        .and_then(|l| l.command)
        .map_or("unknown", |c| c.name())
}

/// One answered request (called once per request, where its log line is written).
pub fn request_done(
    command: &'static str,
    http_status: u16,
    eas_status: Option<u32>,
    reason: &str,
    elapsed: Duration,
) {
    let m = get();
    m.requests
        .get_or_create(&RequestLabels {
            command,
            eas_status: eas_status.map_or_else(|| "none".to_string(), |s| s.to_string()),
            http_status,
        })
        .inc();
    m.request_duration
        .get_or_create(&CommandLabel { command })
        .observe(elapsed.as_secs_f64());
    match reason {
        "authentication failed" => {
            m.auth_failures.inc();
        }
        "too many failed logins" => {
            m.auth_throttled.inc();
        }
        _ => {}
    }
}

/// A Ping (`kind` "ping") or hanging Sync ("sync") stopped waiting.
pub fn push_ended(kind: &'static str, result: &WaitResult) {
    let outcome = match result {
        WaitResult::Changed(_) => "changed",
        WaitResult::FolderGone(_) => "folder_gone",
        WaitResult::HierarchyChanged => "hierarchy_changed",
        WaitResult::Unavailable => "unavailable",
        WaitResult::Timeout => "timeout",
        WaitResult::Superseded => "superseded",
        WaitResult::Shutdown => "shutdown",
    };
    get()
        .push_ended
        .get_or_create(&PushLabels { kind, outcome })
        .inc();
}

/// Times one state store operation (observed when dropped, so a cancelled call counts too).
pub struct StoreCall(Instant);

impl StoreCall {
    pub fn start() -> StoreCall {
        StoreCall(Instant::now())
    }
}

impl Drop for StoreCall {
    fn drop(&mut self) {
        get().store_calls.observe(self.0.elapsed().as_secs_f64());
    }
}

/// Counts one open IMAP connection while it lives.
#[derive(Debug)]
pub struct ImapOpen(());

impl ImapOpen {
    pub fn new() -> ImapOpen {
        get().imap_connections.inc();
        ImapOpen(())
    }
}

impl Default for ImapOpen {
    fn default() -> Self {
        ImapOpen::new()
    }
}

impl Drop for ImapOpen {
    fn drop(&mut self) {
        get().imap_connections.dec();
    }
}

/// One IMAP command's round trip.
pub fn imap_command(command: &'static str, took: Duration) {
    get()
        .imap_commands
        .get_or_create(&ImapCommandLabel { command })
        .observe(took.as_secs_f64());
}

/// An invalid sync key answer.
pub fn sync_key_reset(command: &'static str, cause: &'static str) {
    get()
        .sync_key_resets
        .get_or_create(&ResetLabels { command, cause })
        .inc();
}

/// One SMTP submission ended.
pub fn smtp_submission(ok: bool) {
    let result = if ok { "ok" } else { "failed" };
    get()
        .smtp_submissions
        .get_or_create(&ResultLabel { result })
        .inc();
}

/// The items of one Sync: the server's commands to the device, the device's to the server.
pub fn synced(requests: &[CollectionRequest], responses: &[CollectionResponse]) {
    let m = get();
    let count = |direction: &'static str, op: &'static str, n: usize| {
        if n > 0 {
            m.items_synced
                .get_or_create(&ItemLabels { direction, op })
                .inc_by(n as u64);
        }
    };
    let (mut add, mut change, mut delete, mut soft) = (0, 0, 0, 0);
    for r in responses {
        for c in &r.commands {
            match c {
                ServerCommand::Add { .. } => add += 1,
                ServerCommand::Change { .. } => change += 1,
                ServerCommand::Delete { .. } => delete += 1,
                ServerCommand::SoftDelete { .. } => soft += 1,
            }
        }
    }
    count("to_device", "add", add);
    count("to_device", "change", change);
    count("to_device", "delete", delete);
    count("to_device", "soft_delete", soft);
    let (mut add, mut change, mut delete, mut fetch) = (0, 0, 0, 0);
    for r in requests {
        for c in &r.commands {
            match c {
                ClientCommand::Add { .. } => add += 1,
                ClientCommand::Change { .. } => change += 1,
                ClientCommand::Delete { .. } => delete += 1,
                ClientCommand::Fetch { .. } => fetch += 1,
            }
        }
    }
    count("from_device", "add", add);
    count("from_device", "change", change);
    count("from_device", "delete", delete);
    count("from_device", "fetch", fetch);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_grafana_dashboard_uses_only_exported_metrics() {
        let m = Metrics::new();
        m.requests
            .get_or_create(&RequestLabels {
                command: "Sync",
                eas_status: "1".into(),
                http_status: 200,
            })
            .inc();
        m.request_duration
            .get_or_create(&CommandLabel { command: "Sync" })
            .observe(0.1);
        m.push_ended
            .get_or_create(&PushLabels {
                kind: "ping",
                outcome: "changed",
            })
            .inc();
        m.smtp_submissions
            .get_or_create(&ResultLabel { result: "ok" })
            .inc();
        m.sync_key_resets
            .get_or_create(&ResetLabels {
                command: "Sync",
                cause: "uidvalidity",
            })
            .inc();
        m.items_synced
            .get_or_create(&ItemLabels {
                direction: "to_device",
                op: "add",
            })
            .inc();
        m.devices_by_version
            .get_or_create(&VersionLabel {
                version: "16.1".into(),
            })
            .set(1);
        m.devices_by_type
            .get_or_create(&TypeLabel {
                device_type: "iPhone".into(),
            })
            .set(1);
        let text = m.encode();
        let dashboard = include_str!("../deploy/grafana/eas-gateway.json");
        let mut used: Vec<&str> = dashboard
            .match_indices("eas_")
            .map(|(i, _)| {
                let rest = &dashboard[i..];
                let end = rest
                    .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                    .unwrap_or(rest.len());
                &rest[..end]
            })
            .filter(|n| *n != "eas_status" && *n != "eas_gateway")
            .collect();
        used.sort_unstable();
        used.dedup();
        assert!(used.len() >= 10, "{used:?}");
        for name in used {
            assert!(
                text.lines()
                    .any(|l| l.starts_with(&format!("{name} "))
                        || l.starts_with(&format!("{name}{{"))),
                "the dashboard's {name} is not exported:\n{text}"
            );
        }
    }

    #[test]
    fn device_types_are_sanitised() {
        assert_eq!(device_type_label("iPhone"), "iPhone");
        assert_eq!(device_type_label("a\"b}c\n"), "abc");
        assert_eq!(device_type_label("--"), "other");
    }

    #[test]
    fn command_labels() {
        let p = crate::http::handler::EAS_PATH;
        assert_eq!(
            command_label("POST", p, Some("Cmd=Sync&User=a&DeviceId=d&DeviceType=t")),
            "Sync"
        );
        assert_eq!(command_label("OPTIONS", p, None), "OPTIONS");
        assert_eq!(command_label("POST", p, Some("Cmd=Nope")), "unknown");
        assert_eq!(command_label("GET", "/secret/path", None), "other");
        assert_eq!(
            command_label("POST", "/autodiscover/autodiscover.xml", None),
            "Autodiscover"
        );
    }
}
