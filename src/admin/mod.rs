//! The admin listener: health checks for probes and `/metrics` for Prometheus, on an address of
//! its own (`[admin] listen`), never the phone-facing one.
//!
//! `/healthz` and `/readyz` answer anyone (they tell up/down and a one-line reason, nothing
//! more); every other path requires `Authorization: Bearer <token>` with the token from
//! `[admin] token_file`, compared in constant time.

pub mod http;
pub mod pages;

use std::time::Duration;

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::backend::MailBackend;
use crate::commands::Gateway;
use crate::state::StateStore;

pub use http::serve;

/// The admin token, kept as its SHA-256 digest: comparing digests in constant time hides both
/// the token and its length.
pub struct Token([u8; 32]);

impl Token {
    /// Reads the token file (surrounding whitespace is not part of the token).
    pub fn read(path: &std::path::Path) -> anyhow::Result<Token> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| anyhow::anyhow!("cannot read admin token file {}: {e}", path.display()))?;
        let token = text.trim();
        if token.len() < 16 {
            anyhow::bail!(
                "admin token in {} is shorter than 16 characters",
                path.display()
            );
        }
        Ok(Token::new(token))
    }

    pub fn new(token: &str) -> Token {
        Token(Sha256::digest(token.as_bytes()).into())
    }

    /// Whether `given` is the token.
    pub fn matches(&self, given: &str) -> bool {
        let digest: [u8; 32] = Sha256::digest(given.trim().as_bytes()).into();
        bool::from(digest.ct_eq(&self.0))
    }

    /// Whether an `Authorization` header value carries this token as a bearer token.
    pub fn accepts(&self, header: Option<&str>) -> bool {
        let Some(given) = header.and_then(|h| {
            let (scheme, rest) = h.trim().split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then(|| rest.trim())
        }) else {
            return false;
        };
        let digest: [u8; 32] = Sha256::digest(given.as_bytes()).into();
        bool::from(digest.ct_eq(&self.0))
    }
}

/// Reads the token file and the TLS files, as [`serve`] will: errors name the file.
pub fn check(cfg: &crate::config::AdminConfig) -> anyhow::Result<()> {
    Token::read(&cfg.token_file)?;
    if let Some((cert, key)) = &cfg.tls {
        crate::http::tls::acceptor(cert, key)?;
    }
    Ok(())
}

/// Browser sessions opened with the token on the login form: the cookie holds a random id,
/// the map its SHA-256 digest and expiry (the token itself never goes into a cookie).
pub struct Sessions {
    open: dashmap::DashMap<[u8; 32], std::time::Instant>,
}

/// How long a browser session lasts.
pub const SESSION_LIFETIME: Duration = Duration::from_secs(12 * 3600);
/// Browser sessions kept at most (the oldest go first when more are opened).
const MAX_SESSIONS: usize = 1000;

impl Default for Sessions {
    fn default() -> Self {
        Sessions {
            open: dashmap::DashMap::new(),
        }
    }
}

impl Sessions {
    /// Opens a session; returns the cookie value.
    pub fn open(&self) -> String {
        let now = std::time::Instant::now();
        self.open.retain(|_, expires| *expires > now);
        while self.open.len() >= MAX_SESSIONS {
            let oldest = self
                .open
                .iter()
                .min_by_key(|e| *e.value())
                .map(|e| *e.key());
            match oldest {
                Some(k) => {
                    self.open.remove(&k);
                }
                None => break,
            }
        }
        let id: [u8; 32] = rand::random();
        let id = hex::encode(id);
        self.open
            .insert(Sha256::digest(id.as_bytes()).into(), now + SESSION_LIFETIME);
        id
    }

    /// Whether a `Cookie` header carries an open session.
    pub fn accepts(&self, cookie_header: Option<&str>) -> bool {
        let Some(id) = session_id(cookie_header) else {
            return false;
        };
        let key: [u8; 32] = Sha256::digest(id.as_bytes()).into();
        self.open
            .get(&key)
            .is_some_and(|expires| *expires > std::time::Instant::now())
    }
}

/// The session id a `Cookie` header carries.
fn session_id(cookie_header: Option<&str>) -> Option<&str> {
    cookie_header.and_then(|h| {
        h.split(';')
            .filter_map(|c| c.trim().split_once('='))
            .find(|(name, _)| *name == SESSION_COOKIE)
            .map(|(_, v)| v.trim())
    })
}

/// The anti-forgery token of the session a `Cookie` header carries: derived from the secret
/// session id, so only a page served to that session knows it (empty without a session).
pub fn csrf_token(cookie_header: Option<&str>) -> String {
    session_id(cookie_header)
        .map(|id| hex::encode(Sha256::digest(format!("csrf:{id}").as_bytes())))
        .unwrap_or_default()
}

/// Whether `given` is the anti-forgery token of the session in the `Cookie` header.
pub fn csrf_matches(cookie_header: Option<&str>, given: &str) -> bool {
    let expected = csrf_token(cookie_header);
    !expected.is_empty()
        && bool::from(Sha256::digest(expected.as_bytes()).ct_eq(&Sha256::digest(given.as_bytes())))
}

/// Names the session in logs: the first 12 hex digits of its id's SHA-256 digest (the id
/// itself is a secret).
pub fn session_label(cookie_header: Option<&str>) -> String {
    session_id(cookie_header)
        .map(|id| {
            format!(
                "session {}",
                &hex::encode(Sha256::digest(id.as_bytes()))[..12]
            )
        })
        .unwrap_or_else(|| "session ?".into())
}

/// The browser session cookie's name.
pub const SESSION_COOKIE: &str = "eas_admin_session";

/// How long the readiness check waits for the mail server.
const READY_TIMEOUT: Duration = Duration::from_secs(3);
/// How long device gauges computed from the store are reused.
const DEVICES_MAX_AGE: Duration = Duration::from_secs(30);

/// Whether the gateway can serve: `Err` carries the one-line reason for the 503.
pub async fn readiness<B: MailBackend, S: StateStore>(
    gw: &Gateway<B, S>,
) -> Result<(), &'static str> {
    let timeout = READY_TIMEOUT.min(gw.config.imap.timeout);
    match tokio::time::timeout(
        timeout,
        crate::backend::imap::probe_imap(&gw.config.imap, None),
    )
    .await
    {
        Ok(Ok(_)) => {}
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "readiness: mail server does not answer");
            return Err("mail server unavailable");
        }
        Err(_) => {
            tracing::warn!("readiness: mail server did not answer in time");
            return Err("mail server unavailable");
        }
    }
    match tokio::time::timeout(READY_TIMEOUT, gw.store.check_writable()).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "readiness: state store not writable");
            Err("state store not writable")
        }
        Err(_) => {
            tracing::warn!("readiness: state store did not answer in time");
            Err("state store not writable")
        }
    }
}

/// The metrics page: the gauges read now, the device counts at most 30 s old.
pub async fn metrics_text<B: MailBackend, S: StateStore>(gw: &Gateway<B, S>) -> String {
    let m = crate::metrics::get();
    let devices = if m.devices_stale(DEVICES_MAX_AGE) {
        gw.store
            .devices(None)
            .await
            .inspect_err(|e| tracing::warn!(error = %e, "metrics: cannot list devices"))
            .ok()
    } else {
        None
    };
    // The gauges read now and the text they end up in, as one step: two scrapes at once
    // (of two gateways in one process, in tests) must not mix their readings.
    let _scrape = m.scrape_lock();
    let stats = gw.push.stats();
    m.push_waiting.set(stats.waiters as i64);
    m.push_watchers.set(stats.watchers as i64);
    m.imap_idle_sessions.set(gw.sessions.idle_count() as i64);
    if let Some(devices) = devices {
        m.set_devices(&devices);
    }
    m.encode()
}

#[cfg(test)]
mod tests {
    use super::Token;

    #[test]
    fn bearer_token_is_checked() {
        let t = Token::new("0123456789abcdef");
        assert!(t.accepts(Some("Bearer 0123456789abcdef")));
        assert!(t.accepts(Some("bearer  0123456789abcdef ")));
        assert!(!t.accepts(Some("Bearer 0123456789abcdeF")));
        assert!(!t.accepts(Some("Basic 0123456789abcdef")));
        assert!(!t.accepts(Some("Bearer")));
        assert!(!t.accepts(None));
        assert!(t.matches("0123456789abcdef"));
        assert!(!t.matches("0123456789abcde"));
    }

    #[test]
    fn sessions_open_and_are_recognised() {
        let s = super::Sessions::default();
        let id = s.open();
        assert_eq!(id.len(), 64);
        assert!(s.accepts(Some(&format!("a=b; eas_admin_session={id}"))));
        assert!(!s.accepts(Some("eas_admin_session=00")));
        assert!(!s.accepts(Some(&format!("other={id}"))));
        assert!(!s.accepts(None));
        let cookie = format!("eas_admin_session={id}");
        let csrf = super::csrf_token(Some(&cookie));
        assert_eq!(csrf.len(), 64);
        assert!(super::csrf_matches(Some(&cookie), &csrf));
        assert!(!super::csrf_matches(Some(&cookie), ""));
        assert!(!super::csrf_matches(Some("eas_admin_session=other"), &csrf));
        assert!(!super::csrf_matches(None, ""));
        assert!(super::session_label(Some(&cookie)).starts_with("session "));
    }
}
