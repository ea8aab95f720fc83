//! HTTP Basic authentication, checked by an IMAP LOGIN.
//!
//! The one place where logins are normalised: `DOMAIN\user` drops the domain, `user` becomes
//! `user@<identity.domain>`, and the result is lower-cased. Successful logins are remembered in
//! memory for `auth.cache_secs`, keyed by a salted SHA-256 of login and password (never the
//! password itself). Failed logins are counted per client IP and per user; past the limit the
//! gateway answers 429 without asking the mail server, so one attacker cannot make the mail
//! server's own penalty slow every user (all gateway logins reach it from one address).

use std::net::IpAddr;
use std::time::{Duration, Instant};

use base64::Engine;
use dashmap::DashMap;
use sha2::{Digest, Sha256};

use crate::backend::pool::SessionPool;
use crate::backend::{BackendError, Credentials, MailBackend, Secret};
use crate::config::AuthConfig;

/// The result of checking a request's credentials.
#[derive(Debug)]
pub enum AuthOutcome {
    Ok(Credentials),
    /// No or malformed Authorization header, or wrong password: 401.
    Denied,
    /// Too many failures recently: 429 with Retry-After.
    Throttled(Duration),
    /// The mail server could not be asked: 503 with Retry-After.
    Unavailable(String),
}

/// Login cache and failure counters.
pub struct Authenticator {
    config: AuthConfig,
    domain: String,
    salt: [u8; 16],
    cache: DashMap<[u8; 32], Instant>,
    failures_ip: DashMap<IpAddr, Window>,
    failures_user: DashMap<String, Window>,
}

#[derive(Clone, Copy)]
struct Window {
    start: Instant,
    count: u32,
}

impl Authenticator {
    pub fn new(config: AuthConfig, domain: String) -> Authenticator {
        Authenticator {
            config,
            domain,
            salt: rand::random(),
            cache: DashMap::new(),
            failures_ip: DashMap::new(),
            failures_user: DashMap::new(),
        }
    }

    /// Normalises a login name (see the module docs).
    pub fn normalise(&self, login: &str) -> String {
        normalise(login, &self.domain)
    }

    /// Checks the `Authorization` header value against the mail server.
    pub async fn check<B: MailBackend>(
        &self,
        pool: &SessionPool<B>,
        header: Option<&str>,
        client_ip: IpAddr,
    ) -> AuthOutcome {
        let Some((login, password)) = header.and_then(parse_basic) else {
            return AuthOutcome::Denied;
        };
        let address = self.normalise(&login);
        if address.is_empty() || password.is_empty() {
            return AuthOutcome::Denied;
        }
        let creds = Credentials {
            login: address.clone(),
            password: Secret::new(password),
        };
        let digest = self.digest(&creds);
        let now = Instant::now();
        if let Some(until) = self.cache.get(&digest).map(|e| *e) {
            if until > now {
                return AuthOutcome::Ok(creds);
            }
            self.cache.remove(&digest);
        }
        if let Some(wait) = self.blocked(client_ip, &address, now) {
            return AuthOutcome::Throttled(wait);
        }
        match pool.backend().login(&creds, Some(client_ip)).await {
            Ok(session) => {
                // The command that follows reuses this session.
                pool.put(&creds, session);
                self.cache.insert(digest, now + self.config.cache_ttl);
                self.failures_user.remove(&address);
                AuthOutcome::Ok(creds)
            }
            Err(BackendError::AuthFailed) => {
                self.record_failure(client_ip, &address, now);
                AuthOutcome::Denied
            }
            Err(BackendError::Unavailable(reason)) => AuthOutcome::Unavailable(reason),
            Err(other) => AuthOutcome::Unavailable(other.to_string()),
        }
    }

    /// Drops expired login-cache entries and failure windows that have ended, so the maps hold
    /// only what can still matter (called periodically by the server).
    pub fn sweep(&self, now: Instant) {
        let window = self.config.failure_window;
        self.cache.retain(|_, until| *until > now);
        self.failures_ip
            .retain(|_, w| now.duration_since(w.start) < window);
        self.failures_user
            .retain(|_, w| now.duration_since(w.start) < window);
    }

    /// (cached logins, IPs with failures, users with failures).
    #[cfg(test)]
    fn sizes(&self) -> (usize, usize, usize) {
        (
            self.cache.len(),
            self.failures_ip.len(),
            self.failures_user.len(),
        )
    }

    fn digest(&self, creds: &Credentials) -> [u8; 32] {
        let mut h = Sha256::new();
        h.update(self.salt);
        h.update(creds.login.as_bytes());
        h.update([0]);
        h.update(creds.password.expose().as_bytes());
        h.finalize().into()
    }

    fn blocked(&self, ip: IpAddr, user: &str, now: Instant) -> Option<Duration> {
        let window = self.config.failure_window;
        let check = |w: Option<Window>, max: u32| -> Option<Duration> {
            let w = w?;
            let age = now.duration_since(w.start);
            (age < window && w.count >= max).then(|| window - age)
        };
        check(
            self.failures_ip.get(&ip).map(|w| *w),
            self.config.max_failures_per_ip,
        )
        .or_else(|| {
            check(
                self.failures_user.get(user).map(|w| *w),
                self.config.max_failures_per_user,
            )
        })
    }

    fn record_failure(&self, ip: IpAddr, user: &str, now: Instant) {
        let window = self.config.failure_window;
        let bump = |w: &mut Window| {
            if now.duration_since(w.start) >= window {
                *w = Window {
                    start: now,
                    count: 0,
                };
            }
            w.count += 1;
        };
        bump(&mut self.failures_ip.entry(ip).or_insert(Window {
            start: now,
            count: 0,
        }));
        bump(
            &mut self
                .failures_user
                .entry(user.to_string())
                .or_insert(Window {
                    start: now,
                    count: 0,
                }),
        );
    }
}

/// `DOMAIN\user` -> `user`; no `@` -> `user@domain`; lower-cased.
pub fn normalise(login: &str, domain: &str) -> String {
    let login = login.trim();
    let login = match login.rsplit_once('\\') {
        Some((_, user)) => user,
        None => login,
    };
    if login.is_empty() {
        return String::new();
    }
    if login.contains('@') {
        login.to_lowercase()
    } else {
        format!("{}@{}", login.to_lowercase(), domain)
    }
}

/// Decodes `Basic base64(user:password)`.
fn parse_basic(header: &str) -> Option<(String, String)> {
    let (scheme, value) = header.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let raw = base64::engine::general_purpose::STANDARD
        .decode(value.trim())
        .ok()?;
    let text = String::from_utf8(raw).ok()?;
    let (user, pass) = text.split_once(':')?;
    Some((user.to_string(), pass.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sweep_drops_only_what_has_ended() {
        let auth = Authenticator::new(
            AuthConfig {
                cache_ttl: Duration::from_secs(60),
                max_failures_per_ip: 5,
                max_failures_per_user: 5,
                failure_window: Duration::from_secs(30),
            },
            "example.test".into(),
        );
        let t0 = Instant::now();
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        auth.record_failure(ip, "a@example.test", t0);
        auth.cache.insert([1; 32], t0 + Duration::from_secs(60));
        auth.sweep(t0 + Duration::from_secs(29));
        assert_eq!(auth.sizes(), (1, 1, 1), "nothing has ended yet");
        auth.sweep(t0 + Duration::from_secs(30));
        assert_eq!(auth.sizes(), (1, 0, 0), "failure windows ended");
        auth.sweep(t0 + Duration::from_secs(60));
        assert_eq!(auth.sizes(), (0, 0, 0), "the cached login expired");
    }

    #[test]
    fn normalisation() {
        assert_eq!(normalise("alice", "example.test"), "alice@example.test");
        assert_eq!(normalise("Alice@Example.Test", "x"), "alice@example.test");
        assert_eq!(
            normalise("CORP\\Alice", "example.test"),
            "alice@example.test"
        );
        assert_eq!(normalise("  ", "example.test"), "");
    }

    #[test]
    fn basic_header() {
        let v = base64::engine::general_purpose::STANDARD.encode("bob:pa:ss");
        assert_eq!(
            parse_basic(&format!("Basic {v}")),
            Some(("bob".into(), "pa:ss".into()))
        );
        assert_eq!(parse_basic("Bearer x"), None);
        assert_eq!(parse_basic("Basic !!!"), None);
    }
}
