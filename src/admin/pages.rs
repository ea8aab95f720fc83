//! Server-rendered admin pages (minijinja templates compiled into the binary, HTML-escaped;
//! no JavaScript, nothing loaded from elsewhere).

use std::sync::LazyLock;

use minijinja::{context, Environment};
use serde::Serialize;

use crate::state::{Device, StateStore};

static TEMPLATES: LazyLock<Environment<'static>> = LazyLock::new(|| {
    let mut env = Environment::new();
    // A template that does not parse is a build mistake the unit test below catches.
    let _ = env.add_template("devices.html", include_str!("templates/devices.html"));
    env
});

#[derive(Serialize)]
struct Row<'a> {
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
