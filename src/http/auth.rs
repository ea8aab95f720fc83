//! HTTP Basic authentication, checked by an IMAP LOGIN.
//!
//! The one place where logins are normalised: `DOMAIN\user` drops the domain, `user` becomes
//! `user@<identity.domain>`, and the result is lower-cased. Successful logins are remembered in
//! memory for `auth.cache_secs`, keyed by a salted SHA-256 of login and password (never the
//! password itself). Failed logins are counted per client IP, per user and per (client IP, user);
//! past a limit the gateway answers 429 without asking the mail server. The mail server sees the
//! client's address (IMAP ID `x-originating-ip`) and Dovecot delays every login from an address
//! after a failure from it (its auth penalty: up to 15 s, until 15 s pass without a failure or a
//! login succeeds), also the correct logins of other users of that address. So a guesser is
//! stopped after a few tries of one user (`max_failures_per_ip_user`), and a login that times
//! out while its address has just failed is answered 429, not 503: the delay is the address's
//! own doing, not a mail server outage.
//!
//! Credentials longer than [`MAX_USER_BYTES`] / [`MAX_PASSWORD_BYTES`] are refused at the door
//! (401, counted as a failure) and never sent to the mail server, whose input buffer they could
//! overrun.

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

/// Longest user name accepted (bytes, as sent).
pub const MAX_USER_BYTES: usize = 256;
/// Longest password accepted (bytes).
pub const MAX_PASSWORD_BYTES: usize = 1024;
/// How long after a failed login from an address a mail server may still delay logins from it
/// (Dovecot's penalty lasts until 15 s after the last failure; plus a login's own 15 s timeout).
const PENALTY_HORIZON: Duration = Duration::from_secs(30);
/// Retry-After for a login that timed out in the mail server's penalty for the address.
const PENALTY_RETRY: Duration = Duration::from_secs(15);

/// Login cache and failure counters.
pub struct Authenticator {
    config: AuthConfig,
    domain: String,
    salt: [u8; 16],
    cache: DashMap<[u8; 32], Instant>,
    failures_ip: DashMap<IpAddr, Window>,
    failures_user: DashMap<String, Window>,
    failures_pair: DashMap<(IpAddr, String), Window>,
}

#[derive(Clone, Copy)]
struct Window {
    start: Instant,
    count: u32,
    /// The latest failure.
    last: Instant,
}

impl Window {
    fn new(now: Instant) -> Window {
        Window {
            start: now,
            count: 0,
            last: now,
        }
    }
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
            failures_pair: DashMap::new(),
        }
    }

    /// Normalises a login name (see the module docs).
    pub fn normalise(&self, login: &str) -> String {
        normalise(login, &self.domain)
    }

    /// The normalised login a Basic `Authorization` header names, without checking its password
    /// (`None` when the header is missing, malformed, empty or over the length limits).
    pub fn login_of(&self, header: Option<&str>) -> Option<String> {
        let (login, password) = header.and_then(parse_basic)?;
        if login.len() > MAX_USER_BYTES
            || password.is_empty()
            || password.len() > MAX_PASSWORD_BYTES
        {
            return None;
        }
        Some(self.normalise(&login)).filter(|a| !a.is_empty())
    }

    /// Whether the header's credentials are in the login cache: their password was checked by
    /// the mail server within `auth.cache_secs`. Asks nobody.
    pub fn cached(&self, header: Option<&str>) -> bool {
        let Some((login, password)) = header.and_then(parse_basic) else {
            return false;
        };
        let creds = Credentials {
            login: self.normalise(&login),
            password: Secret::new(password),
        };
        self.cache
            .get(&self.digest(&creds))
            .is_some_and(|until| *until > Instant::now())
    }

    /// Checks the `Authorization` header value against the mail server.
    pub async fn check<B: MailBackend>(
        &self,
        pool: &SessionPool<B>,
        header: Option<&str>,
        client_ip: IpAddr,
    ) -> AuthOutcome {
        // The header is decoded whatever its length (hyper bounds the header block), so an
        // oversized password still counts against its user.
        let now = Instant::now();
        let Some((login, password)) = header.and_then(parse_basic) else {
            return AuthOutcome::Denied;
        };
        if login.len() > MAX_USER_BYTES {
            return self.oversized(client_ip, None, now);
        }
        let address = self.normalise(&login);
        if address.is_empty() || password.is_empty() {
            return AuthOutcome::Denied;
        }
        if password.len() > MAX_PASSWORD_BYTES {
            return self.oversized(client_ip, Some(&address), now);
        }
        let creds = Credentials {
            login: address.clone(),
            password: Secret::new(password),
        };
        let digest = self.digest(&creds);
        if let Some(until) = self.cache.get(&digest).map(|e| *e) {
            if until > now {
                return AuthOutcome::Ok(creds);
            }
            self.cache.remove(&digest);
        }
        if let Some(wait) = self.blocked(client_ip, Some(&address), now) {
            return AuthOutcome::Throttled(wait);
        }
        match pool.backend().login(&creds, Some(client_ip)).await {
            Ok(session) => {
                // The command that follows reuses this session.
                pool.put(&creds, session);
                self.cache.insert(digest, now + self.config.cache_ttl);
                self.failures_user.remove(&address);
                self.failures_pair.remove(&(client_ip, address));
                AuthOutcome::Ok(creds)
            }
            Err(BackendError::AuthFailed) => {
                self.record_failure(client_ip, Some(&address), now);
                AuthOutcome::Denied
            }
            Err(e) => {
                let reason = match e {
                    BackendError::Unavailable(reason) => reason,
                    other => other.to_string(),
                };
                // The mail server delays logins from an address that just failed (Dovecot's
                // auth penalty): a login from such an address that did not finish in time is
                // held up by that address's own failures, not by an outage.
                if self.failed_lately(client_ip, Instant::now()) {
                    tracing::info!(reason = %reason, "login from an address with recent failures did not finish");
                    return AuthOutcome::Throttled(PENALTY_RETRY);
                }
                AuthOutcome::Unavailable(reason)
            }
        }
    }

    /// Credentials too long to be real: refused and counted, never sent to the mail server.
    fn oversized(&self, ip: IpAddr, user: Option<&str>, now: Instant) -> AuthOutcome {
        if let Some(wait) = self.blocked(ip, user, now) {
            return AuthOutcome::Throttled(wait);
        }
        tracing::info!("credentials over the length limit refused");
        self.record_failure(ip, user, now);
        AuthOutcome::Denied
    }

    /// Whether a login from `ip` failed within [`PENALTY_HORIZON`].
    fn failed_lately(&self, ip: IpAddr, now: Instant) -> bool {
        self.failures_ip
            .get(&ip)
            .is_some_and(|w| w.count > 0 && now.duration_since(w.last) < PENALTY_HORIZON)
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
        self.failures_pair
            .retain(|_, w| now.duration_since(w.start) < window);
    }

    /// (cached logins, IPs with failures, users with failures, (IP, user) pairs with failures).
    #[cfg(test)]
    fn sizes(&self) -> (usize, usize, usize, usize) {
        (
            self.cache.len(),
            self.failures_ip.len(),
            self.failures_user.len(),
            self.failures_pair.len(),
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

    fn blocked(&self, ip: IpAddr, user: Option<&str>, now: Instant) -> Option<Duration> {
        let window = self.config.failure_window;
        let check = |w: Option<Window>, max: u32| -> Option<Duration> {
            let w = w?;
            let age = now.duration_since(w.start);
            (age < window && w.count >= max).then(|| window - age)
        };
        let c = &self.config;
        let pair = user.and_then(|u| {
            check(
                self.failures_pair.get(&(ip, u.to_string())).map(|w| *w),
                c.max_failures_per_ip_user,
            )
        });
        pair.or_else(|| {
            user.and_then(|u| {
                check(
                    self.failures_user.get(u).map(|w| *w),
                    c.max_failures_per_user,
                )
            })
        })
        .or_else(|| check(self.failures_ip.get(&ip).map(|w| *w), c.max_failures_per_ip))
    }

    fn record_failure(&self, ip: IpAddr, user: Option<&str>, now: Instant) {
        let window = self.config.failure_window;
        let bump = |w: &mut Window| {
            if now.duration_since(w.start) >= window {
                *w = Window::new(now);
            }
            w.count += 1;
            w.last = now;
        };
        bump(&mut self.failures_ip.entry(ip).or_insert(Window::new(now)));
        if let Some(user) = user {
            bump(
                &mut self
                    .failures_user
                    .entry(user.to_string())
                    .or_insert(Window::new(now)),
            );
            bump(
                &mut self
                    .failures_pair
                    .entry((ip, user.to_string()))
                    .or_insert(Window::new(now)),
            );
        }
    }
}

/// Logs a refused login in one fixed form for fail2ban and the like:
/// `auth failed: client_ip=203.0.113.7 user=alice@example.test` (the user as normalised, `-`
/// when none could be read; characters other than printable ASCII become `?`, so that the
/// line stays one line whatever a client sends). Never the password.
pub fn log_failure(client_ip: IpAddr, user: Option<&str>) {
    let user: String = match user {
        Some(u) if !u.is_empty() => u
            .chars()
            .take(MAX_USER_BYTES)
            .map(|c| if c.is_ascii_graphic() { c } else { '?' })
            .collect(),
        _ => "-".to_string(),
    };
    tracing::warn!("auth failed: client_ip={client_ip} user={user}");
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
                max_failures_per_ip_user: 3,
                failure_window: Duration::from_secs(30),
            },
            "example.test".into(),
        );
        let t0 = Instant::now();
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        auth.record_failure(ip, Some("a@example.test"), t0);
        auth.cache.insert([1; 32], t0 + Duration::from_secs(60));
        auth.sweep(t0 + Duration::from_secs(29));
        assert_eq!(auth.sizes(), (1, 1, 1, 1), "nothing has ended yet");
        auth.sweep(t0 + Duration::from_secs(30));
        assert_eq!(auth.sizes(), (1, 0, 0, 0), "failure windows ended");
        auth.sweep(t0 + Duration::from_secs(60));
        assert_eq!(auth.sizes(), (0, 0, 0, 0), "the cached login expired");
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
