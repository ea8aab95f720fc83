//! `[cluster]`: this node's name and the sync lease timing.

use std::time::Duration;

use serde::Deserialize;

use crate::config::ConfigError;

/// Default `lease_ttl_secs`: well above the longest Sync work that does not wait (a page of
/// large mails read and converted), so a live node never loses its lease.
pub const DEFAULT_LEASE_TTL_SECS: u64 = 60;
/// Default `lease_wait_secs`: how long a request waits for another node to finish the same
/// collection (a phone that gave up on its first request and retried elsewhere).
pub const DEFAULT_LEASE_WAIT_SECS: u64 = 20;

/// The validated `[cluster]` section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterConfig {
    /// This node's name in lease owners and events.
    pub node_id: String,
    /// A sync lease lasts this long unless renewed (renewed every third of it).
    pub lease_ttl: Duration,
    /// How long a request waits for a lease another node holds before it is answered 503
    /// with Retry-After.
    pub lease_wait: Duration,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        ClusterConfig {
            node_id: default_node_id(),
            lease_ttl: Duration::from_secs(DEFAULT_LEASE_TTL_SECS),
            lease_wait: Duration::from_secs(DEFAULT_LEASE_WAIT_SECS),
        }
    }
}

/// `[cluster]` as written.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawCluster {
    node_id: Option<String>,
    lease_ttl_secs: Option<u64>,
    lease_wait_secs: Option<u64>,
}

impl RawCluster {
    pub fn validate(self) -> Result<ClusterConfig, ConfigError> {
        let node_id = match self.node_id {
            Some(id) => {
                let ok =
                    !id.is_empty() && id.len() <= 100 && id.chars().all(|c| c.is_ascii_graphic());
                if !ok {
                    return Err(ConfigError::Value {
                        key: "cluster.node_id",
                        reason: "1 to 100 printable ASCII characters, no spaces".into(),
                    });
                }
                id
            }
            None => default_node_id(),
        };
        let ttl = self.lease_ttl_secs.unwrap_or(DEFAULT_LEASE_TTL_SECS);
        if !(3..=3600).contains(&ttl) {
            return Err(ConfigError::Value {
                key: "cluster.lease_ttl_secs",
                reason: "must be 3 to 3600".into(),
            });
        }
        let wait = self.lease_wait_secs.unwrap_or(DEFAULT_LEASE_WAIT_SECS);
        if wait > 600 {
            return Err(ConfigError::Value {
                key: "cluster.lease_wait_secs",
                reason: "must be at most 600".into(),
            });
        }
        Ok(ClusterConfig {
            node_id,
            lease_ttl: Duration::from_secs(ttl),
            lease_wait: Duration::from_secs(wait),
        })
    }
}

/// `HOST-PID-RANDOM`: unique per start of the process.
pub fn default_node_id() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| {
            h.trim()
                .chars()
                .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_'))
                .take(60)
                .collect::<String>()
        })
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "node".to_string());
    format!(
        "{host}-{}-{:08x}",
        std::process::id(),
        rand::random::<u32>()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_bounds() {
        let c = RawCluster::default().validate().unwrap();
        assert_eq!(c.lease_ttl, Duration::from_secs(60));
        assert!(c.node_id.contains(&std::process::id().to_string()));
        assert_ne!(c.node_id, default_node_id(), "a random part");
        let bad = RawCluster {
            node_id: Some("a b".into()),
            ..Default::default()
        };
        assert!(bad.validate().is_err());
        let bad = RawCluster {
            lease_ttl_secs: Some(1),
            ..Default::default()
        };
        assert!(bad.validate().is_err());
    }

    #[test]
    fn the_section_is_read_from_the_configuration() {
        let base = "[server]\nlisten = \"127.0.0.1:8080\"\n\
                    [imap]\nhost = \"h\"\nport = 143\nsecurity = \"none\"\n\
                    [smtp]\nhost = \"h\"\nport = 587\nsecurity = \"none\"\n\
                    [state]\nurl = \"postgres://u@h/db\"\n\
                    [identity]\ndomain = \"example.test\"\n";
        let path = std::path::Path::new(".");
        let c = crate::config::Config::from_toml(base, path).unwrap();
        assert_eq!(c.cluster.lease_wait, Duration::from_secs(20));
        let text = format!("{base}[cluster]\nnode_id = \"gw1\"\nlease_ttl_secs = 30\n");
        let c = crate::config::Config::from_toml(&text, path).unwrap();
        assert_eq!(c.cluster.node_id, "gw1");
        assert_eq!(c.cluster.lease_ttl, Duration::from_secs(30));
        let text = format!("{base}[cluster]\nlease_ttl = 30\n");
        assert!(crate::config::Config::from_toml(&text, path).is_err());
        let text = format!("{base}[cluster]\nlease_ttl_secs = 0\n");
        let err = crate::config::Config::from_toml(&text, path).unwrap_err();
        assert!(err.to_string().contains("cluster.lease_ttl_secs"), "{err}");
    }
}
