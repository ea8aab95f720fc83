//! The TOML configuration: file -> validated [`Config`].
//!
//! Every key is documented here and in `deploy/eas-gateway.example.toml` (a test parses that
//! file, so the two cannot drift). Unknown keys and bad values are rejected at start, and the
//! error names the key.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::backend::{ImapSettings, Security, SmtpSettings};

/// A configuration error, naming the key (or file) at fault.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{0}")]
    Syntax(String),
    #[error("bad value for `{key}`: {reason}")]
    Value { key: &'static str, reason: String },
}

/// The whole validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub server: ServerConfig,
    pub imap: ImapSettings,
    /// `imap.session_idle_secs`: an idle pooled IMAP session is logged out after this long.
    pub imap_session_idle: Duration,
    pub smtp: SmtpSettings,
    /// `smtp.claim_lease_secs`: how long a send claim of this process stays its own without
    /// being renewed (it is renewed while the submission runs). After that, a retry of the
    /// same message is no longer "still being sent": it is sent (the dead submission never
    /// issued DATA) or answered as failed (it did: the outcome is unknown).
    pub smtp_claim_lease: Duration,
    pub state_url: String,
    pub identity: IdentityConfig,
    pub auth: AuthConfig,
    pub policy: PolicyConfig,
    pub push: crate::push::PushConfig,
    pub devices: DevicesConfig,
    pub access: AccessRules,
    /// `[admin]`: the admin listener (health checks, metrics); `None` when off.
    pub admin: Option<AdminConfig>,
    /// `[cluster]`: this node's name and the sync lease timing.
    pub cluster: crate::cluster::ClusterConfig,
}

/// `[admin]`: a second listener for health checks and `/metrics`, never the phone-facing one.
#[derive(Debug, Clone)]
pub struct AdminConfig {
    /// `admin.listen`.
    pub listen: SocketAddr,
    /// `admin.token_file`: holds the bearer token every path but `/healthz` and `/readyz`
    /// requires (read when the listener starts).
    pub token_file: PathBuf,
    /// `admin.tls_cert` and `admin.tls_key` (PEM), resolved against the config's directory.
    pub tls: Option<(PathBuf, PathBuf)>,
}

/// What the access rules decide for a device.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Access {
    Allow,
    Block,
    Quarantine,
}

/// `[access]`: which devices may use the gateway, like Exchange's device access rules.
#[derive(Debug, Clone)]
pub struct AccessRules {
    /// `access.default`: the decision when no rule matches.
    pub default: Access,
    /// `[[access.rule]]`, evaluated in order: the first that matches decides.
    pub rules: Vec<AccessRule>,
}

impl Default for AccessRules {
    fn default() -> Self {
        AccessRules {
            default: Access::Allow,
            rules: Vec::new(),
        }
    }
}

/// One `[[access.rule]]`: every condition given must match (case-insensitively; `user_agent`
/// is a pattern where `*` matches any run of characters).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccessRule {
    pub action: Access,
    pub user: Option<String>,
    pub device_type: Option<String>,
    pub user_agent: Option<String>,
    pub device_id: Option<String>,
}

impl AccessRule {
    fn matches(&self, user: &str, device_id: &str, device_type: &str, user_agent: &str) -> bool {
        let eq = |want: &Option<String>, have: &str| {
            want.as_ref().is_none_or(|w| w.eq_ignore_ascii_case(have))
        };
        eq(&self.user, user)
            && eq(&self.device_id, device_id)
            && eq(&self.device_type, device_type)
            && self
                .user_agent
                .as_ref()
                .is_none_or(|p| glob(&p.to_ascii_lowercase(), &user_agent.to_ascii_lowercase()))
    }
}

impl AccessRules {
    /// The decision for a device.
    pub fn decide(
        &self,
        user: &str,
        device_id: &str,
        device_type: &str,
        user_agent: &str,
    ) -> Access {
        self.rules
            .iter()
            .find(|r| r.matches(user, device_id, device_type, user_agent))
            .map_or(self.default, |r| r.action)
    }
}

/// `*` matches any run of characters (also none); everything else matches itself.
fn glob(pattern: &str, text: &str) -> bool {
    let mut parts = pattern.split('*');
    let first = parts.next().unwrap_or("");
    let Some(mut rest) = text.strip_prefix(first) else {
        return false;
    };
    let parts: Vec<&str> = parts.collect();
    let Some((last, middle)) = parts.split_last() else {
        return rest.is_empty();
    };
    for part in middle {
        match rest.find(part) {
            Some(i) => rest = &rest[i + part.len()..],
            None => return false,
        }
    }
    rest.len() >= last.len() && rest.ends_with(last)
}

/// `[devices]`: what the device registry keeps.
#[derive(Debug, Clone)]
pub struct DevicesConfig {
    /// `devices.log_entries`: requests kept per device in the request log (0 keeps none).
    pub log_entries: u32,
    /// `devices.keep_phone_identifiers`: keep the IMEI and PhoneNumber of DeviceInformation
    /// (dropped before they reach the store when false).
    pub keep_phone_identifiers: bool,
    /// `devices.trace_dir`: where `devices trace` writes a device's wire trace (one file per
    /// device; relative to the configuration file's directory).
    pub trace_dir: PathBuf,
    /// `devices.trace_max_bytes`: the size a trace file may reach; past it, it is moved to
    /// `<file>.1` (replacing an older one) and a new file is begun.
    pub trace_max_bytes: u64,
}

impl Default for DevicesConfig {
    fn default() -> Self {
        DevicesConfig {
            log_entries: 200,
            keep_phone_identifiers: false,
            trace_dir: PathBuf::from("/var/lib/eas-gateway/trace"),
            trace_max_bytes: 10 << 20,
        }
    }
}

/// `[server]`: the HTTP(S) listener.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Address to listen on.
    pub listen: SocketAddr,
    /// PEM certificate chain and key; `None` means plain HTTP behind a TLS-terminating proxy.
    pub tls: Option<(PathBuf, PathBuf)>,
    /// Largest request body accepted (bytes); larger answers 413 before decoding.
    pub max_body_bytes: usize,
    /// Most connections served at once; when all are taken, a connection that finished its TLS
    /// handshake waits for one up to `handshake_timeout + header_timeout` after it was accepted.
    pub max_connections: usize,
    /// Most connections at once from one client address (the TCP peer; trusted proxies are
    /// exempt). Connections over it are closed at once.
    pub max_connections_per_ip: usize,
    /// A connection must finish its TLS handshake within this time of being accepted.
    pub handshake_timeout: Duration,
    /// A request's headers must arrive within this time of its first byte (of the connection's
    /// acceptance, for the first request); a request body that stalls this long is given up.
    pub header_timeout: Duration,
    /// A keep-alive connection with no request in progress is closed after this time.
    pub idle_timeout: Duration,
    /// Peers whose `X-Forwarded-For` / `X-Real-IP` headers are believed.
    pub trusted_proxies: Vec<std::net::IpAddr>,
    /// `public_url`: the gateway's address as phones reach it (`https://mail.example.org`, no
    /// trailing slash, no `/Microsoft-Server-ActiveSync`). Autodiscover hands out this URL plus
    /// `/Microsoft-Server-ActiveSync`; `None` means `https://` plus the request's Host header.
    pub public_url: Option<String>,
    /// `doctor`: whether `/Microsoft-Server-ActiveSync/doctor` (what `eas-gateway doctor`
    /// measures the proxy path with) answers without credentials; with a valid login it
    /// always answers.
    pub doctor: bool,
}

/// `[identity]`: how logins become addresses.
#[derive(Debug, Clone)]
pub struct IdentityConfig {
    /// A login without `@` becomes `login@domain`.
    pub domain: String,
    /// Extra addresses per user (lower-cased), from `aliases` and `aliases_file`.
    pub aliases: BTreeMap<String, Vec<String>>,
}

/// `[auth]`: the login cache and the failed-login throttle.
#[derive(Debug, Clone)]
pub struct AuthConfig {
    /// How long a successful login is remembered in memory.
    pub cache_ttl: Duration,
    /// Failed logins allowed per client IP within `failure_window` before 429... (see http::auth).
    pub max_failures_per_ip: u32,
    /// Failed logins allowed per user within `failure_window`.
    pub max_failures_per_user: u32,
    /// Failed logins allowed per (client IP, user) within `failure_window`: a password guesser
    /// is stopped here, before the mail server's own per-address penalty builds up and slows the
    /// other users of that address.
    pub max_failures_per_ip_user: u32,
    /// The window over which failures are counted, and how long a block lasts.
    pub failure_window: Duration,
}

/// `[policy]`: the device policy sent by Provision (MS-ASPROV). Default: nothing enforced.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PolicyConfig {
    pub require_password: bool,
    pub allow_simple_password: bool,
    pub alphanumeric_password: bool,
    pub min_password_length: u32,
    /// Seconds of inactivity before the device locks; 0 = not enforced.
    pub max_inactivity_lock_secs: u32,
    /// Failed unlock attempts before the device wipes itself; 0 = not enforced.
    pub max_password_failures: u32,
    pub require_device_encryption: bool,
    pub allow_camera: bool,
    pub allow_storage_card: bool,
}

impl Default for PolicyConfig {
    fn default() -> Self {
        PolicyConfig {
            require_password: false,
            allow_simple_password: true,
            alphanumeric_password: false,
            min_password_length: 0,
            max_inactivity_lock_secs: 0,
            max_password_failures: 0,
            require_device_encryption: false,
            allow_camera: true,
            allow_storage_card: true,
        }
    }
}

impl Config {
    /// Reads and validates a configuration file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        let base = path.parent().unwrap_or(Path::new("."));
        Config::from_toml(&text, base)
    }

    /// Parses and validates configuration text. Relative paths resolve against `base`.
    pub fn from_toml(text: &str, base: &Path) -> Result<Config, ConfigError> {
        let raw: RawConfig =
            toml::from_str(text).map_err(|e| ConfigError::Syntax(e.to_string()))?;
        raw.validate(base)
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    server: RawServer,
    imap: RawEndpoint,
    smtp: RawSmtp,
    state: RawState,
    identity: RawIdentity,
    #[serde(default)]
    auth: RawAuth,
    #[serde(default)]
    policy: RawPolicy,
    #[serde(default)]
    push: RawPush,
    #[serde(default)]
    devices: RawDevices,
    #[serde(default)]
    access: RawAccess,
    #[serde(default)]
    admin: RawAdmin,
    #[serde(default)]
    cluster: crate::cluster::RawCluster,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawAdmin {
    listen: Option<String>,
    token_file: Option<PathBuf>,
    tls_cert: Option<PathBuf>,
    tls_key: Option<PathBuf>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawAccess {
    default: Option<Access>,
    #[serde(default)]
    rule: Vec<AccessRule>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawDevices {
    log_entries: Option<u32>,
    keep_phone_identifiers: Option<bool>,
    trace_dir: Option<PathBuf>,
    trace_max_bytes: Option<u64>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawPush {
    min_heartbeat_secs: Option<u32>,
    max_heartbeat_secs: Option<u32>,
    max_folders: Option<u32>,
    use_notify: Option<bool>,
    poll_interval_secs: Option<u64>,
    idle_restart_secs: Option<u64>,
    watcher_grace_secs: Option<u64>,
    hierarchy_poll_secs: Option<u64>,
    outage_grace_secs: Option<u64>,
    source: Option<String>,
    events_listen: Option<String>,
    events_secret: Option<String>,
    events_secret_file: Option<PathBuf>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawServer {
    listen: String,
    tls_cert: Option<PathBuf>,
    tls_key: Option<PathBuf>,
    #[serde(default = "default_max_body_bytes")]
    max_body_bytes: u64,
    #[serde(default = "default_max_connections")]
    max_connections: u64,
    #[serde(default = "default_max_connections_per_ip")]
    max_connections_per_ip: u64,
    #[serde(default = "default_handshake_timeout")]
    handshake_timeout_secs: u64,
    #[serde(default = "default_header_timeout")]
    header_timeout_secs: u64,
    #[serde(default = "default_idle_timeout")]
    idle_timeout_secs: u64,
    #[serde(default)]
    trusted_proxies: Vec<String>,
    public_url: Option<String>,
    #[serde(default)]
    doctor: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEndpoint {
    host: String,
    port: i64,
    #[serde(default = "default_security")]
    security: String,
    timeout_secs: Option<u64>,
    /// `[imap]` only.
    #[serde(default)]
    session_idle_secs: Option<u64>,
    /// `[imap]` only.
    #[serde(default)]
    max_parallel_logins: Option<u64>,
    /// `[imap]` only.
    #[serde(default)]
    login_queue_secs: Option<u64>,
}

/// `[smtp]`: an endpoint, and the lease of a send claim.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSmtp {
    host: String,
    port: i64,
    #[serde(default = "default_security")]
    security: String,
    timeout_secs: Option<u64>,
    #[serde(default = "default_claim_lease_secs")]
    claim_lease_secs: u64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawState {
    url: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawIdentity {
    domain: String,
    #[serde(default)]
    aliases: BTreeMap<String, Vec<String>>,
    aliases_file: Option<PathBuf>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAuth {
    #[serde(default = "default_cache_secs")]
    cache_secs: u64,
    #[serde(default = "default_failures_ip")]
    max_failures_per_ip: u32,
    #[serde(default = "default_failures_user")]
    max_failures_per_user: u32,
    #[serde(default = "default_failures_ip_user")]
    max_failures_per_ip_user: u32,
    #[serde(default = "default_failure_window")]
    failure_window_secs: u64,
}

impl Default for RawAuth {
    fn default() -> Self {
        RawAuth {
            cache_secs: default_cache_secs(),
            max_failures_per_ip: default_failures_ip(),
            max_failures_per_user: default_failures_user(),
            max_failures_per_ip_user: default_failures_ip_user(),
            failure_window_secs: default_failure_window(),
        }
    }
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawPolicy {
    require_password: Option<bool>,
    allow_simple_password: Option<bool>,
    alphanumeric_password: Option<bool>,
    min_password_length: Option<u32>,
    max_inactivity_lock_secs: Option<u32>,
    max_password_failures: Option<u32>,
    require_device_encryption: Option<bool>,
    allow_camera: Option<bool>,
    allow_storage_card: Option<bool>,
}

fn default_max_body_bytes() -> u64 {
    64 * 1024 * 1024
}
fn default_max_connections() -> u64 {
    20_000
}
/// An office or a carrier NAT puts many phones behind one address, each holding a waiting Ping
/// and now and then a second request: 200 fits about a hundred phones, and one address can still
/// hold only 1 % of the default 20,000 slots.
fn default_max_connections_per_ip() -> u64 {
    200
}
fn default_handshake_timeout() -> u64 {
    10
}
fn default_header_timeout() -> u64 {
    30
}
fn default_idle_timeout() -> u64 {
    120
}
fn default_security() -> String {
    "none".into()
}
fn default_claim_lease_secs() -> u64 {
    300
}
/// IMAP: longer than Dovecot's longest auth penalty (15 s, on every login from an address that
/// just failed), so a correct login delayed by it completes instead of timing out.
const DEFAULT_IMAP_TIMEOUT_SECS: u64 = 20;
const DEFAULT_SMTP_TIMEOUT_SECS: u64 = 15;
fn default_cache_secs() -> u64 {
    300
}
fn default_failures_ip() -> u32 {
    20
}
fn default_failures_user() -> u32 {
    10
}
fn default_failures_ip_user() -> u32 {
    3
}
fn default_failure_window() -> u64 {
    300
}

impl RawConfig {
    /// Each section in turn (the first error found is the one reported, in this order).
    fn validate(self, base: &Path) -> Result<Config, ConfigError> {
        let server = self.server.validate(base)?;
        let (imap, imap_session_idle) = self.imap.validate_imap()?;
        let (smtp, smtp_claim_lease) = self.smtp.validate()?;
        let state_url = self.state.validate()?;
        let identity = self.identity.validate(base)?;
        let auth = self.auth.validate()?;
        let policy = self.policy.validate()?;
        let push = self.push.validate(base)?;
        let devices = self.devices.validate(base)?;
        let access = self.access.rules();
        let admin = self.admin.validate(base, server.listen)?;
        let cluster = self.cluster.validate()?;
        Ok(Config {
            cluster,
            push,
            devices,
            access,
            admin,
            server,
            imap,
            imap_session_idle,
            smtp,
            smtp_claim_lease,
            state_url,
            identity,
            auth,
            policy,
        })
    }
}

impl RawServer {
    /// `[server]`.
    fn validate(mut self, base: &Path) -> Result<ServerConfig, ConfigError> {
        let listen: SocketAddr = self.listen.parse().map_err(|_| ConfigError::Value {
            key: "server.listen",
            reason: format!("`{}` is not an address like 127.0.0.1:8443", self.listen),
        })?;
        let tls = server_tls(self.tls_cert.take(), self.tls_key.take(), base)?;
        self.check_limits()?;
        let trusted_proxies = trusted_proxies(&self.trusted_proxies)?;
        let public_url = match &self.public_url {
            Some(u) => Some(public_url(u).map_err(|reason| ConfigError::Value {
                key: "server.public_url",
                reason,
            })?),
            None => None,
        };
        Ok(ServerConfig {
            listen,
            tls,
            max_body_bytes: self.max_body_bytes as usize,
            max_connections: self.max_connections as usize,
            max_connections_per_ip: self.max_connections_per_ip as usize,
            handshake_timeout: Duration::from_secs(self.handshake_timeout_secs),
            header_timeout: Duration::from_secs(self.header_timeout_secs),
            idle_timeout: Duration::from_secs(self.idle_timeout_secs),
            trusted_proxies,
            public_url,
            doctor: self.doctor,
        })
    }

    /// The body size, connection counts and timeouts.
    fn check_limits(&self) -> Result<(), ConfigError> {
        if self.max_body_bytes < 1024 {
            return Err(ConfigError::Value {
                key: "server.max_body_bytes",
                reason: "must be at least 1024".into(),
            });
        }
        if self.max_connections == 0 {
            return Err(ConfigError::Value {
                key: "server.max_connections",
                reason: "must be at least 1".into(),
            });
        }
        if self.max_connections_per_ip == 0 {
            return Err(ConfigError::Value {
                key: "server.max_connections_per_ip",
                reason: "must be at least 1".into(),
            });
        }
        for (key, secs) in [
            ("server.handshake_timeout_secs", self.handshake_timeout_secs),
            ("server.header_timeout_secs", self.header_timeout_secs),
            ("server.idle_timeout_secs", self.idle_timeout_secs),
        ] {
            if !(1..=3600).contains(&secs) {
                return Err(ConfigError::Value {
                    key,
                    reason: "must be between 1 and 3600".into(),
                });
            }
        }
        Ok(())
    }
}

/// `server.tls_cert` and `server.tls_key`: both or neither.
fn server_tls(
    cert: Option<PathBuf>,
    key: Option<PathBuf>,
    base: &Path,
) -> Result<Option<(PathBuf, PathBuf)>, ConfigError> {
    match (cert, key) {
        (Some(cert), Some(key)) => Ok(Some((base.join(cert), base.join(key)))),
        (None, None) => Ok(None),
        (Some(_), None) => Err(ConfigError::Value {
            key: "server.tls_key",
            reason: "tls_cert is set but tls_key is missing".into(),
        }),
        (None, Some(_)) => Err(ConfigError::Value {
            key: "server.tls_cert",
            reason: "tls_key is set but tls_cert is missing".into(),
        }),
    }
}

/// `server.trusted_proxies`: IP addresses.
fn trusted_proxies(raw: &[String]) -> Result<Vec<std::net::IpAddr>, ConfigError> {
    raw.iter()
        .map(|p| {
            p.parse().map_err(|_| ConfigError::Value {
                key: "server.trusted_proxies",
                reason: format!("`{p}` is not an IP address"),
            })
        })
        .collect()
}

impl RawEndpoint {
    /// `[imap]`: the endpoint, `session_idle_secs` and the login gate.
    fn validate_imap(self) -> Result<(ImapSettings, Duration), ConfigError> {
        let session_idle_secs = self.session_idle_secs.unwrap_or(60);
        if !(1..=3600).contains(&session_idle_secs) {
            return Err(ConfigError::Value {
                key: "imap.session_idle_secs",
                reason: "must be between 1 and 3600".into(),
            });
        }
        let max_parallel_logins = self
            .max_parallel_logins
            .unwrap_or(crate::backend::login_gate::DEFAULT_LIMIT as u64);
        if !(1..=10_000).contains(&max_parallel_logins) {
            return Err(ConfigError::Value {
                key: "imap.max_parallel_logins",
                reason: "must be between 1 and 10000".into(),
            });
        }
        let login_queue_secs = self
            .login_queue_secs
            .unwrap_or(crate::backend::login_gate::DEFAULT_QUEUE.as_secs());
        if !(1..=600).contains(&login_queue_secs) {
            return Err(ConfigError::Value {
                key: "imap.login_queue_secs",
                reason: "must be between 1 and 600".into(),
            });
        }
        let logins = crate::backend::login_gate::LoginGate::new(
            max_parallel_logins as usize,
            Duration::from_secs(login_queue_secs),
        );
        let (host, port, security, timeout) = endpoint(self, "imap")?;
        let imap = ImapSettings {
            host,
            port,
            security,
            timeout,
            logins,
        };
        Ok((imap, Duration::from_secs(session_idle_secs)))
    }
}

impl RawSmtp {
    /// `[smtp]`: the endpoint and `claim_lease_secs`.
    fn validate(self) -> Result<(SmtpSettings, Duration), ConfigError> {
        let claim_lease_secs = self.claim_lease_secs;
        let smtp_timeout_secs = self.timeout_secs.unwrap_or(DEFAULT_SMTP_TIMEOUT_SECS);
        if claim_lease_secs <= smtp_timeout_secs {
            return Err(ConfigError::Value {
                key: "smtp.claim_lease_secs",
                reason: format!("must be above smtp.timeout_secs ({smtp_timeout_secs})"),
            });
        }
        let (host, port, security, timeout) = endpoint(
            RawEndpoint {
                host: self.host,
                port: self.port,
                security: self.security,
                timeout_secs: self.timeout_secs,
                session_idle_secs: None,
                max_parallel_logins: None,
                login_queue_secs: None,
            },
            "smtp",
        )?;
        let smtp = SmtpSettings {
            host,
            port,
            security,
            timeout,
        };
        Ok((smtp, Duration::from_secs(claim_lease_secs)))
    }
}

impl RawState {
    /// `state.url`: SQLite or PostgreSQL.
    fn validate(self) -> Result<String, ConfigError> {
        if !["sqlite:", "postgres://", "postgresql://"]
            .iter()
            .any(|scheme| self.url.starts_with(scheme))
        {
            // Not echoed: a database URL may hold a password.
            return Err(ConfigError::Value {
                key: "state.url",
                reason: "expected sqlite:///path/to/state.db or postgres://user@host/db".into(),
            });
        }
        Ok(self.url)
    }
}

impl RawIdentity {
    /// `[identity]`: the domain, and the aliases (lower-cased) of `aliases` and `aliases_file`.
    fn validate(self, base: &Path) -> Result<IdentityConfig, ConfigError> {
        let domain = self.domain.trim().to_ascii_lowercase();
        if domain.is_empty() || domain.contains('@') || domain.contains(char::is_whitespace) {
            return Err(ConfigError::Value {
                key: "identity.domain",
                reason: format!("`{}` is not a mail domain", self.domain),
            });
        }
        let mut aliases: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (user, list) in self.aliases {
            let entry = aliases.entry(user.to_lowercase()).or_default();
            entry.extend(list.into_iter().map(|a| a.to_lowercase()));
        }
        if let Some(file) = self.aliases_file {
            let path = base.join(file);
            let text = std::fs::read_to_string(&path).map_err(|e| ConfigError::Value {
                key: "identity.aliases_file",
                reason: format!("cannot read {}: {e}", path.display()),
            })?;
            parse_aliases(&text, &mut aliases).map_err(|reason| ConfigError::Value {
                key: "identity.aliases_file",
                reason,
            })?;
        }
        Ok(IdentityConfig { domain, aliases })
    }
}

impl RawAuth {
    /// `[auth]`.
    fn validate(self) -> Result<AuthConfig, ConfigError> {
        if self.failure_window_secs == 0 {
            return Err(ConfigError::Value {
                key: "auth.failure_window_secs",
                reason: "must be at least 1".into(),
            });
        }
        Ok(AuthConfig {
            cache_ttl: Duration::from_secs(self.cache_secs),
            max_failures_per_ip: self.max_failures_per_ip,
            max_failures_per_user: self.max_failures_per_user,
            max_failures_per_ip_user: self.max_failures_per_ip_user,
            failure_window: Duration::from_secs(self.failure_window_secs),
        })
    }
}

impl RawPolicy {
    /// `[policy]`: what is not given is the default (nothing enforced).
    fn validate(self) -> Result<PolicyConfig, ConfigError> {
        let d = PolicyConfig::default();
        let policy = PolicyConfig {
            require_password: self.require_password.unwrap_or(d.require_password),
            allow_simple_password: self
                .allow_simple_password
                .unwrap_or(d.allow_simple_password),
            alphanumeric_password: self
                .alphanumeric_password
                .unwrap_or(d.alphanumeric_password),
            min_password_length: self.min_password_length.unwrap_or(d.min_password_length),
            max_inactivity_lock_secs: self
                .max_inactivity_lock_secs
                .unwrap_or(d.max_inactivity_lock_secs),
            max_password_failures: self
                .max_password_failures
                .unwrap_or(d.max_password_failures),
            require_device_encryption: self
                .require_device_encryption
                .unwrap_or(d.require_device_encryption),
            allow_camera: self.allow_camera.unwrap_or(d.allow_camera),
            allow_storage_card: self.allow_storage_card.unwrap_or(d.allow_storage_card),
        };
        if policy.min_password_length > 16 {
            return Err(ConfigError::Value {
                key: "policy.min_password_length",
                reason: "must be between 0 and 16".into(),
            });
        }
        Ok(policy)
    }
}

impl RawPush {
    /// `[push]`: where changes come from (and the events listener's settings), then the
    /// heartbeat bounds and timings.
    fn validate(self, base: &Path) -> Result<crate::push::PushConfig, ConfigError> {
        let source = push_source(self.source.as_deref())?;
        let events_listen = match &self.events_listen {
            Some(a) => Some(a.parse::<SocketAddr>().map_err(|_| ConfigError::Value {
                key: "push.events_listen",
                reason: format!("`{a}` is not an address:port"),
            })?),
            None => None,
        };
        let events_secret = events_secret(self.events_secret, self.events_secret_file, base)?;
        check_events(source, events_listen, events_secret.as_deref())?;
        let dp = crate::push::PushConfig::default();
        let secs =
            |v: Option<u64>, default: Duration| v.map(Duration::from_secs).unwrap_or(default);
        let push = crate::push::PushConfig {
            source,
            events_listen,
            events_secret: events_secret.map(crate::backend::Secret::new),
            min_heartbeat_secs: self.min_heartbeat_secs.unwrap_or(dp.min_heartbeat_secs),
            max_heartbeat_secs: self.max_heartbeat_secs.unwrap_or(dp.max_heartbeat_secs),
            max_folders: self.max_folders.unwrap_or(dp.max_folders),
            use_notify: self.use_notify.unwrap_or(dp.use_notify),
            poll_interval: secs(self.poll_interval_secs, dp.poll_interval),
            idle_restart: secs(self.idle_restart_secs, dp.idle_restart),
            watcher_grace: secs(self.watcher_grace_secs, dp.watcher_grace),
            hierarchy_poll: secs(self.hierarchy_poll_secs, dp.hierarchy_poll),
            outage_grace: secs(self.outage_grace_secs, dp.outage_grace),
            ..dp
        };
        check_push_timing(&push)?;
        Ok(push)
    }
}

/// `push.source`: "imap" (the default) or "events".
fn push_source(raw: Option<&str>) -> Result<crate::push::PushSource, ConfigError> {
    match raw {
        None | Some("imap") => Ok(crate::push::PushSource::Imap),
        Some("events") => Ok(crate::push::PushSource::Events),
        Some(other) => Err(ConfigError::Value {
            key: "push.source",
            reason: format!("`{other}`: must be \"imap\" or \"events\""),
        }),
    }
}

/// `push.events_secret` or the contents of `push.events_secret_file` (trimmed), not both.
fn events_secret(
    secret: Option<String>,
    file: Option<PathBuf>,
    base: &Path,
) -> Result<Option<String>, ConfigError> {
    match (secret, file) {
        (Some(_), Some(_)) => Err(ConfigError::Value {
            key: "push.events_secret_file",
            reason: "set push.events_secret or push.events_secret_file, not both".into(),
        }),
        (Some(s), None) => Ok(Some(s)),
        (None, Some(f)) => {
            let path = base.join(f);
            let text = std::fs::read_to_string(&path).map_err(|e| ConfigError::Value {
                key: "push.events_secret_file",
                reason: format!("cannot read {}: {e}", path.display()),
            })?;
            Ok(Some(text.trim().to_string()))
        }
        (None, None) => Ok(None),
    }
}

/// The secret's form, and what the "events" source and the events listener need.
fn check_events(
    source: crate::push::PushSource,
    events_listen: Option<SocketAddr>,
    events_secret: Option<&str>,
) -> Result<(), ConfigError> {
    if let Some(s) = events_secret {
        if s.len() < 16 || s.len() > 1024 || s.chars().any(|c| c.is_control() || c == ' ') {
            return Err(ConfigError::Value {
                key: "push.events_secret",
                reason: "must be 16 to 1024 characters without spaces or control characters".into(),
            });
        }
    }
    if source == crate::push::PushSource::Events
        && (events_listen.is_none() || events_secret.is_none())
    {
        return Err(ConfigError::Value {
            key: "push.source",
            reason: "\"events\" needs push.events_listen and push.events_secret (or \
                     push.events_secret_file)"
                .into(),
        });
    }
    if events_listen.is_some() && events_secret.is_none() {
        return Err(ConfigError::Value {
            key: "push.events_listen",
            reason: "needs push.events_secret or push.events_secret_file".into(),
        });
    }
    Ok(())
}

/// The heartbeat bounds, the poll interval and the other push timings.
fn check_push_timing(push: &crate::push::PushConfig) -> Result<(), ConfigError> {
    if push.min_heartbeat_secs == 0 || push.max_heartbeat_secs < push.min_heartbeat_secs {
        return Err(ConfigError::Value {
            key: "push.max_heartbeat_secs",
            reason: "must be at least push.min_heartbeat_secs, which must be at least 1".into(),
        });
    }
    if push.poll_interval.is_zero() {
        return Err(ConfigError::Value {
            key: "push.poll_interval_secs",
            reason: "must be at least 1".into(),
        });
    }
    for (key, value) in [
        ("push.hierarchy_poll_secs", push.hierarchy_poll),
        ("push.outage_grace_secs", push.outage_grace),
    ] {
        if value.is_zero() || value > Duration::from_secs(3600) {
            return Err(ConfigError::Value {
                key,
                reason: "must be between 1 and 3600".into(),
            });
        }
    }
    if push.idle_restart > Duration::from_secs(29 * 60) || push.idle_restart.is_zero() {
        return Err(ConfigError::Value {
            key: "push.idle_restart_secs",
            reason: "must be between 1 and 1740 (RFC 2177: 29 minutes)".into(),
        });
    }
    Ok(())
}

impl RawDevices {
    /// `[devices]`: `trace_dir` resolved against the configuration's directory.
    fn validate(self, base: &Path) -> Result<DevicesConfig, ConfigError> {
        let dd = DevicesConfig::default();
        let devices = DevicesConfig {
            log_entries: self.log_entries.unwrap_or(dd.log_entries),
            keep_phone_identifiers: self
                .keep_phone_identifiers
                .unwrap_or(dd.keep_phone_identifiers),
            trace_dir: self.trace_dir.map_or(dd.trace_dir, |d| base.join(d)),
            trace_max_bytes: self.trace_max_bytes.unwrap_or(dd.trace_max_bytes),
        };
        if devices.trace_max_bytes < 4096 {
            return Err(ConfigError::Value {
                key: "devices.trace_max_bytes",
                reason: "must be at least 4096".into(),
            });
        }
        if devices.log_entries > 100_000 {
            return Err(ConfigError::Value {
                key: "devices.log_entries",
                reason: "must be at most 100000".into(),
            });
        }
        Ok(devices)
    }
}

impl RawAccess {
    /// `[access]`: allow unless told otherwise.
    fn rules(self) -> AccessRules {
        AccessRules {
            default: self.default.unwrap_or(Access::Allow),
            rules: self.rule,
        }
    }
}

impl RawAdmin {
    fn validate(self, base: &Path, phone: SocketAddr) -> Result<Option<AdminConfig>, ConfigError> {
        let Some(listen) = self.listen else {
            if self.token_file.is_some() || self.tls_cert.is_some() || self.tls_key.is_some() {
                return Err(ConfigError::Value {
                    key: "admin.listen",
                    reason: "the [admin] section needs `listen` (or remove the section)".into(),
                });
            }
            return Ok(None);
        };
        let listen: SocketAddr = listen.parse().map_err(|_| ConfigError::Value {
            key: "admin.listen",
            reason: format!("`{listen}` is not an address like 127.0.0.1:9090"),
        })?;
        // Port 0 (any free port) never collides; otherwise the admin pages must not share the
        // phone-facing address.
        if listen.port() != 0
            && listen.port() == phone.port()
            && (listen.ip() == phone.ip()
                || listen.ip().is_unspecified()
                || phone.ip().is_unspecified())
        {
            return Err(ConfigError::Value {
                key: "admin.listen",
                reason: "must differ from server.listen (the admin listener is never the phone-facing one)".into(),
            });
        }
        let Some(token_file) = self.token_file else {
            return Err(ConfigError::Value {
                key: "admin.token_file",
                reason: "required when admin.listen is set".into(),
            });
        };
        let tls = match (self.tls_cert, self.tls_key) {
            (Some(cert), Some(key)) => Some((base.join(cert), base.join(key))),
            (None, None) => None,
            _ => {
                return Err(ConfigError::Value {
                    key: "admin.tls_cert",
                    reason: "admin.tls_cert and admin.tls_key go together".into(),
                })
            }
        };
        Ok(Some(AdminConfig {
            listen,
            token_file: base.join(token_file),
            tls,
        }))
    }
}

fn endpoint(
    raw: RawEndpoint,
    section: &'static str,
) -> Result<(String, u16, Security, Duration), ConfigError> {
    let (port_key, sec_key, host_key, timeout_key) = match section {
        "imap" => (
            "imap.port",
            "imap.security",
            "imap.host",
            "imap.timeout_secs",
        ),
        _ => (
            "smtp.port",
            "smtp.security",
            "smtp.host",
            "smtp.timeout_secs",
        ),
    };
    if raw.host.trim().is_empty() {
        return Err(ConfigError::Value {
            key: host_key,
            reason: "must not be empty".into(),
        });
    }
    let port = u16::try_from(raw.port)
        .ok()
        .filter(|p| *p != 0)
        .ok_or_else(|| ConfigError::Value {
            key: port_key,
            reason: format!("{} is not a TCP port (1-65535)", raw.port),
        })?;
    let security = match raw.security.as_str() {
        "none" => Security::None,
        "starttls" => Security::StartTls,
        "tls" => Security::Tls,
        other => {
            return Err(ConfigError::Value {
                key: sec_key,
                reason: format!("`{other}` is not one of none, starttls, tls"),
            })
        }
    };
    let timeout_secs = raw.timeout_secs.unwrap_or(match section {
        "imap" => DEFAULT_IMAP_TIMEOUT_SECS,
        _ => DEFAULT_SMTP_TIMEOUT_SECS,
    });
    if timeout_secs == 0 {
        return Err(ConfigError::Value {
            key: timeout_key,
            reason: "must be at least 1".into(),
        });
    }
    Ok((raw.host, port, security, Duration::from_secs(timeout_secs)))
}

/// Checks and normalises `server.public_url`: `http(s)://host[:port][/prefix]`, nothing else
/// (no user, query or fragment); a trailing `/` or `/Microsoft-Server-ActiveSync` is dropped.
fn public_url(raw: &str) -> Result<String, String> {
    let url = raw.trim();
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))
        .ok_or_else(|| format!("`{raw}` must start with https://"))?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, ""),
    };
    if authority.is_empty() {
        return Err(format!("`{raw}` has no host name"));
    }
    let host_ok = authority
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '[' | ']'));
    let (host, port) = match authority.strip_prefix('[') {
        Some(v6) => match v6.split_once(']') {
            Some((h, rest)) => (
                h,
                rest.strip_prefix(':')
                    .or(Some(rest).filter(|r| !r.is_empty())),
            ),
            None => ("", None),
        },
        None => match authority.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        },
    };
    let port_ok = port.is_none_or(|p| p.parse::<u16>().is_ok_and(|p| p != 0));
    if !host_ok || host.is_empty() || host.contains(['[', ']']) || !port_ok {
        return Err(format!("`{raw}`: `{authority}` is not a host name[:port]"));
    }
    let path_ok = path
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '/' | '.' | '-' | '_' | '~'));
    if !path_ok {
        return Err(format!(
            "`{raw}`: the path may hold only letters, digits, / . - _ ~ (no query or fragment)"
        ));
    }
    let mut path = path.trim_end_matches('/');
    const EAS: &str = "/microsoft-server-activesync";
    if path.len() >= EAS.len() && path[path.len() - EAS.len()..].eq_ignore_ascii_case(EAS) {
        path = path[..path.len() - EAS.len()].trim_end_matches('/');
    }
    let scheme = &url[..url.len() - rest.len()];
    Ok(format!("{scheme}{}{path}", authority.to_ascii_lowercase()))
}

/// Alias file: one line per user, `user@domain: alias1@domain, alias2@domain`; `#` comments.
fn parse_aliases(text: &str, out: &mut BTreeMap<String, Vec<String>>) -> Result<(), String> {
    for (n, line) in text.lines().enumerate() {
        let line = line.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        let Some((user, rest)) = line.split_once(':') else {
            return Err(format!("line {}: expected `user: alias, alias`", n + 1));
        };
        let entry = out.entry(user.trim().to_lowercase()).or_default();
        entry.extend(
            rest.split(',')
                .map(|a| a.trim().to_lowercase())
                .filter(|a| !a.is_empty()),
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"
[server]
listen = "127.0.0.1:8443"
[imap]
host = "127.0.0.1"
port = 143
security = "none"
[smtp]
host = "127.0.0.1"
port = 587
security = "none"
[state]
url = "sqlite:///tmp/x.db"
[identity]
domain = "Example.TEST"
aliases = { "Alice@example.test" = ["A.Smith@example.test"] }
"#;

    #[test]
    fn minimal_config_parses_with_defaults() {
        let c = Config::from_toml(MINIMAL, Path::new("/etc")).expect("valid");
        assert_eq!(c.identity.domain, "example.test");
        assert!(c.server.tls.is_none());
        assert_eq!(
            c.identity.aliases["alice@example.test"],
            vec!["a.smith@example.test"]
        );
        assert_eq!(c.policy, PolicyConfig::default());
    }

    #[test]
    fn unknown_key_is_named() {
        let text = MINIMAL.replace("[imap]", "[imap]\nhots = \"x\"");
        let err = Config::from_toml(&text, Path::new("."))
            .unwrap_err()
            .to_string();
        assert!(err.contains("hots"), "{err}");
    }

    #[test]
    fn bad_values_name_the_key() {
        for (from, to, key) in [
            ("port = 143", "port = 70000", "imap.port"),
            (
                "security = \"none\"\n[smtp]",
                "security = \"ssl\"\n[smtp]",
                "imap.security",
            ),
            (
                "listen = \"127.0.0.1:8443\"",
                "listen = \"nowhere\"",
                "server.listen",
            ),
            (
                "url = \"sqlite:///tmp/x.db\"",
                "url = \"mysql://x\"",
                "state.url",
            ),
        ] {
            let text = MINIMAL.replacen(from, to, 1);
            let err = Config::from_toml(&text, Path::new("."))
                .unwrap_err()
                .to_string();
            assert!(err.contains(key), "{key}: {err}");
        }
    }

    #[test]
    fn the_documented_example_parses_with_every_section() {
        let text = include_str!("../deploy/eas-gateway.example.toml");
        let c = Config::from_toml(text, Path::new("/etc/eas-gateway")).expect("example is valid");
        assert_eq!(c.server.listen.port(), 8443);
        assert_eq!(
            c.server.tls.as_ref().map(|t| t.0.clone()),
            Some(Path::new("/etc/eas-gateway/cert.pem").to_path_buf())
        );
        assert_eq!(c.push.max_heartbeat_secs, 3540);
        assert_eq!(
            c.identity.aliases["alice@example.test"],
            vec!["a.smith@example.test"]
        );
        // Every key the parser knows appears in the example.
        for key in [
            "listen",
            "tls_cert",
            "tls_key",
            "max_body_bytes",
            "max_connections",
            "max_connections_per_ip",
            "handshake_timeout_secs",
            "header_timeout_secs",
            "idle_timeout_secs",
            "trusted_proxies",
            "public_url",
            "doctor",
            "host",
            "port",
            "security",
            "timeout_secs",
            "session_idle_secs",
            "max_parallel_logins",
            "login_queue_secs",
            "source",
            "events_listen",
            "events_secret",
            "events_secret_file",
            "url",
            "domain",
            "aliases",
            "aliases_file",
            "cache_secs",
            "max_failures_per_ip",
            "max_failures_per_user",
            "max_failures_per_ip_user",
            "failure_window_secs",
            "require_password",
            "allow_simple_password",
            "alphanumeric_password",
            "min_password_length",
            "max_inactivity_lock_secs",
            "max_password_failures",
            "require_device_encryption",
            "allow_camera",
            "allow_storage_card",
            "min_heartbeat_secs",
            "max_heartbeat_secs",
            "max_folders",
            "use_notify",
            "poll_interval_secs",
            "idle_restart_secs",
            "watcher_grace_secs",
            "hierarchy_poll_secs",
            "outage_grace_secs",
            "log_entries",
            "keep_phone_identifiers",
            "trace_dir",
            "trace_max_bytes",
            "action",
            "user_agent",
            "device_type",
        ] {
            assert!(
                text.contains(&format!("{key} =")),
                "{key} is not documented"
            );
        }
    }

    #[test]
    fn claim_lease_is_smtp_only_and_above_the_smtp_timeout() {
        let c = Config::from_toml(MINIMAL, Path::new(".")).expect("valid");
        assert_eq!(c.smtp_claim_lease, Duration::from_secs(300));
        let text = MINIMAL.replacen("[smtp]", "[smtp]\nclaim_lease_secs = 40", 1);
        let c = Config::from_toml(&text, Path::new(".")).expect("valid");
        assert_eq!(c.smtp_claim_lease, Duration::from_secs(40));
        let text = MINIMAL.replacen(
            "[smtp]",
            "[smtp]\nclaim_lease_secs = 15\ntimeout_secs = 15",
            1,
        );
        let err = Config::from_toml(&text, Path::new("."))
            .unwrap_err()
            .to_string();
        assert!(err.contains("smtp.claim_lease_secs"), "{err}");
        let text = MINIMAL.replacen("[imap]", "[imap]\nclaim_lease_secs = 40", 1);
        assert!(Config::from_toml(&text, Path::new(".")).is_err());
        let example = include_str!("../deploy/eas-gateway.example.toml");
        assert!(example.contains("claim_lease_secs ="), "documented");
    }

    #[test]
    fn push_events_need_a_listener_and_a_secret() {
        let c = Config::from_toml(MINIMAL, Path::new(".")).expect("valid");
        assert_eq!(c.push.source, crate::push::PushSource::Imap);
        assert_eq!(c.imap_session_idle, Duration::from_secs(60));
        let with = |push: &str| MINIMAL.to_string() + "\n[push]\n" + push;
        let ok = with(
            "source = \"events\"\nevents_listen = \"127.0.0.1:8081\"\n\
             events_secret = \"0123456789abcdef\"",
        );
        let c = Config::from_toml(&ok, Path::new(".")).expect("valid");
        assert_eq!(c.push.source, crate::push::PushSource::Events);
        assert_eq!(
            c.push.events_listen,
            Some("127.0.0.1:8081".parse().unwrap())
        );
        assert!(
            !format!("{c:?}").contains("0123456789abcdef"),
            "secret printed"
        );
        for (text, key) in [
            (with("source = \"events\""), "push.source"),
            (with("source = \"webhooks\""), "push.source"),
            (
                with("events_listen = \"127.0.0.1:8081\""),
                "push.events_listen",
            ),
            (
                with("events_listen = \"127.0.0.1:8081\"\nevents_secret = \"short\""),
                "push.events_secret",
            ),
            (
                with("events_secret = \"0123456789abcdef\"\nevents_secret_file = \"x\""),
                "push.events_secret_file",
            ),
            (
                with("events_secret_file = \"/nonexistent/secret\""),
                "push.events_secret_file",
            ),
            (
                MINIMAL.replacen("[imap]", "[imap]\nsession_idle_secs = 0", 1),
                "imap.session_idle_secs",
            ),
        ] {
            let err = Config::from_toml(&text, Path::new("."))
                .unwrap_err()
                .to_string();
            assert!(err.contains(key), "{key}: {err}");
        }
    }

    #[test]
    fn public_url_is_checked_and_normalised() {
        let c = Config::from_toml(MINIMAL, Path::new(".")).expect("valid");
        assert_eq!(c.server.public_url, None, "absent by default");
        for (given, want) in [
            ("https://Mail.Example.org", "https://mail.example.org"),
            ("https://mail.example.org/", "https://mail.example.org"),
            (
                "https://mail.example.org:8443",
                "https://mail.example.org:8443",
            ),
            (
                "https://mail.example.org/Microsoft-Server-ActiveSync",
                "https://mail.example.org",
            ),
            ("https://example.org/eas/", "https://example.org/eas"),
            ("http://127.0.0.1:8080", "http://127.0.0.1:8080"),
            ("https://[2001:db8::1]:8443/", "https://[2001:db8::1]:8443"),
            ("https://[2001:db8::1]", "https://[2001:db8::1]"),
        ] {
            let text = MINIMAL.replacen(
                "[server]",
                &format!("[server]\npublic_url = \"{given}\""),
                1,
            );
            let c = Config::from_toml(&text, Path::new(".")).expect(given);
            assert_eq!(c.server.public_url.as_deref(), Some(want), "{given}");
        }
        for bad in [
            "mail.example.org",
            "ftp://mail.example.org",
            "https://",
            "https:///x",
            "https://mail.example.org/?q=1",
            "https://mail.example.org/#x",
            "https://user@mail.example.org",
            "https://mail example.org",
            "https://mail.example.org:",
            "https://mail.example.org:0",
            "https://mail.example.org:99999",
            "https://a:b:c",
            "https://:443",
            "https://mail.example.org/\"><x",
        ] {
            let text = MINIMAL.replacen(
                "[server]",
                &format!("[server]\npublic_url = {}", toml_string(bad)),
                1,
            );
            let err = Config::from_toml(&text, Path::new("."))
                .unwrap_err()
                .to_string();
            assert!(err.contains("server.public_url"), "{bad}: {err}");
        }
    }

    fn toml_string(s: &str) -> String {
        format!("'{s}'")
    }

    #[test]
    fn access_rules_decide_in_order() {
        let text = format!(
            "{MINIMAL}\n[access]\ndefault = \"quarantine\"\n\
             [[access.rule]]\naction = \"block\"\nuser_agent = \"Bad*Client/*\"\n\
             [[access.rule]]\naction = \"allow\"\ndevice_type = \"iphone\"\n"
        );
        let c = Config::from_toml(&text, Path::new(".")).expect("valid");
        let d = |t: &str, ua: &str| c.access.decide("u@x", "D1", t, ua);
        assert_eq!(d("iPhone", "Apple-iPhone/1"), Access::Allow);
        assert_eq!(d("iPhone", "BadMailClient/2"), Access::Block);
        assert_eq!(d("Android", "x"), Access::Quarantine);
        assert!(glob("a*", "a") && glob("*b", "ab") && !glob("a*c", "ab") && glob("a**", "a"));
        let bad = format!("{MINIMAL}\n[[access.rule]]\naction = \"maybe\"\n");
        assert!(Config::from_toml(&bad, Path::new(".")).is_err());
    }

    #[test]
    fn alias_file_lines() {
        let mut m = BTreeMap::new();
        parse_aliases("# c\nbob@x: B@x, bobby@x\n\n", &mut m).unwrap();
        assert_eq!(m["bob@x"], vec!["b@x", "bobby@x"]);
        assert!(parse_aliases("nonsense", &mut m).is_err());
    }
}
