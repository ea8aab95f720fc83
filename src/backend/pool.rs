//! A per-user pool of logged-in mail sessions.
//!
//! Logging in costs several round trips; a phone's no-change Sync should cost one STATUS. So
//! sessions are kept after use, per user and password, for `idle_ttl`, and at most
//! `max_per_user` exist per user at once (in use or idle), which keeps the gateway below the
//! mail server's per-user connection limit (Dovecot's `mail_max_userip_connections`, 10 by
//! default, counts every gateway connection of a user since they all come from one address).
//! Beyond the limit, requests queue. The lock is a std mutex held only to push or pop a session,
//! never across an `.await`.

use std::collections::HashMap;
use std::net::IpAddr;
use std::ops::{Deref, DerefMut};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use dashmap::DashMap;
use sha2::{Digest, Sha256};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::{BackendError, Credentials, MailBackend, MailSession};

/// Pool limits.
#[derive(Debug, Clone, Copy)]
pub struct PoolConfig {
    /// Most sessions per user (in use plus idle).
    pub max_per_user: usize,
    /// How long an idle session is kept.
    pub idle_ttl: Duration,
    /// An idle session older than this is checked with NOOP before reuse.
    pub check_after: Duration,
    /// How long a request waits for a free session before the mail server counts as busy.
    pub wait: Duration,
}

impl Default for PoolConfig {
    fn default() -> Self {
        PoolConfig {
            max_per_user: 6,
            idle_ttl: Duration::from_secs(60),
            check_after: Duration::from_secs(15),
            wait: Duration::from_secs(30),
        }
    }
}

/// Idle sessions per (user, password) digest.
type IdleMap<S> = HashMap<[u8; 32], Vec<Idle<S>>>;

struct Idle<S> {
    since: Instant,
    session: S,
    permit: OwnedSemaphorePermit,
}

/// The pool; a clone shares the same sessions (a handle for background tasks).
pub struct SessionPool<B: MailBackend> {
    inner: Arc<Inner<B>>,
}

impl<B: MailBackend> Clone for SessionPool<B> {
    fn clone(&self) -> Self {
        SessionPool {
            inner: self.inner.clone(),
        }
    }
}

struct Inner<B: MailBackend> {
    backend: B,
    config: PoolConfig,
    salt: [u8; 16],
    idle: Mutex<IdleMap<B::Session>>,
    limits: DashMap<String, Arc<Semaphore>>,
}

/// A session on loan; it goes back to the pool when dropped, unless it broke. It owns a handle
/// to the pool, so a background task can hold one.
pub struct Pooled<B: MailBackend> {
    pool: SessionPool<B>,
    key: [u8; 32],
    session: Option<B::Session>,
    permit: Option<OwnedSemaphorePermit>,
}

impl<B: MailBackend> SessionPool<B> {
    pub fn new(backend: B, config: PoolConfig) -> SessionPool<B> {
        SessionPool {
            inner: Arc::new(Inner {
                backend,
                config,
                salt: rand::random(),
                idle: Mutex::new(HashMap::new()),
                limits: DashMap::new(),
            }),
        }
    }

    pub fn backend(&self) -> &B {
        &self.inner.backend
    }

    fn key(&self, creds: &Credentials) -> [u8; 32] {
        let mut h = Sha256::new();
        h.update(self.inner.salt);
        h.update(creds.login.as_bytes());
        h.update([0]);
        h.update(creds.password.expose().as_bytes());
        h.finalize().into()
    }

    fn take_idle(&self, key: &[u8; 32]) -> Option<Idle<B::Session>> {
        let mut idle = self.inner.idle.lock().unwrap_or_else(|e| e.into_inner());
        let list = idle.get_mut(key)?;
        let s = list.pop();
        if list.is_empty() {
            idle.remove(key);
        }
        s
    }

    /// A logged-in session for these credentials: an idle one when there is one, else a new
    /// login (waiting for a free slot when the user is at the limit).
    pub async fn get(
        &self,
        creds: &Credentials,
        client_ip: Option<IpAddr>,
    ) -> Result<Pooled<B>, BackendError> {
        let key = self.key(creds);
        while let Some(mut idle) = self.take_idle(&key) {
            let age = idle.since.elapsed();
            if age > self.inner.config.idle_ttl {
                tokio::spawn(idle.session.logout());
                continue;
            }
            if age > self.inner.config.check_after && idle.session.noop().await.is_err() {
                continue;
            }
            return Ok(self.lend(key, idle.session, idle.permit));
        }
        let sem = self.user_limit(&creds.login);
        if sem.available_permits() == 0 {
            crate::metrics::get().imap_pool_waits.inc();
        }
        let permit =
            match tokio::time::timeout(self.inner.config.wait, sem.clone().acquire_owned()).await {
                Ok(Ok(p)) => p,
                Ok(Err(_)) => return Err(BackendError::Unavailable("session pool closed".into())),
                Err(_) => {
                    // Every slot is busy or idle under other credentials: close an idle one of this
                    // user, if any, else report the server as busy.
                    return Err(BackendError::Unavailable(
                        "too many concurrent requests for this user".into(),
                    ));
                }
            };
        let session = self.inner.backend.login(creds, client_ip).await?;
        crate::metrics::get().imap_logins.inc();
        Ok(self.lend(key, session, permit))
    }

    /// Like [`SessionPool::get`], but for work that may be skipped: `None` instead of waiting
    /// when every slot of the user is taken, and one slot always stays free for requests.
    pub async fn try_get(
        &self,
        creds: &Credentials,
        client_ip: Option<IpAddr>,
    ) -> Result<Option<Pooled<B>>, BackendError> {
        let key = self.key(creds);
        if let Some(idle) = self.take_idle(&key) {
            if idle.since.elapsed() <= self.inner.config.check_after {
                return Ok(Some(self.lend(key, idle.session, idle.permit)));
            }
            // Too old to hand out unchecked: back to the pool as it was, for `get` to check.
            self.park(key, idle);
        }
        let sem = self.user_limit(&creds.login);
        if sem.available_permits() < 2 {
            return Ok(None);
        }
        let Ok(permit) = sem.try_acquire_owned() else {
            return Ok(None);
        };
        let session = self.inner.backend.login(creds, client_ip).await?;
        crate::metrics::get().imap_logins.inc();
        Ok(Some(self.lend(key, session, permit)))
    }

    /// Keeps a session that was logged in elsewhere (by the authenticator).
    pub fn put(&self, creds: &Credentials, session: B::Session) {
        let sem = self.user_limit(&creds.login);
        match sem.try_acquire_owned() {
            Ok(permit) => self.give_back(self.key(creds), session, permit),
            Err(_) => {
                tokio::spawn(session.logout());
            }
        }
    }

    fn give_back(&self, key: [u8; 32], session: B::Session, permit: OwnedSemaphorePermit) {
        self.park(
            key,
            Idle {
                since: Instant::now(),
                session,
                permit,
            },
        );
    }

    fn park(&self, key: [u8; 32], idle: Idle<B::Session>) {
        let mut map = self.inner.idle.lock().unwrap_or_else(|e| e.into_inner());
        map.entry(key).or_default().push(idle);
    }

    /// The semaphore bounding this user's sessions.
    fn user_limit(&self, login: &str) -> Arc<Semaphore> {
        self.inner
            .limits
            .entry(login.to_string())
            .or_insert_with(|| Arc::new(Semaphore::new(self.inner.config.max_per_user)))
            .clone()
    }

    fn lend(&self, key: [u8; 32], session: B::Session, permit: OwnedSemaphorePermit) -> Pooled<B> {
        Pooled {
            pool: self.clone(),
            key,
            session: Some(session),
            permit: Some(permit),
        }
    }

    /// Logs out sessions idle for longer than the TTL; call now and then.
    pub fn sweep(&self) {
        let expired: Vec<B::Session> = {
            let mut idle = self.inner.idle.lock().unwrap_or_else(|e| e.into_inner());
            let ttl = self.inner.config.idle_ttl;
            let mut out = Vec::new();
            for list in idle.values_mut() {
                let (old, keep): (Vec<_>, Vec<_>) =
                    list.drain(..).partition(|i| i.since.elapsed() > ttl);
                *list = keep;
                out.extend(old.into_iter().map(|i| i.session));
            }
            idle.retain(|_, l| !l.is_empty());
            out
        };
        for s in expired {
            tokio::spawn(s.logout());
        }
    }

    /// Number of idle sessions (for metrics and tests).
    pub fn idle_count(&self) -> usize {
        let idle = self.inner.idle.lock().unwrap_or_else(|e| e.into_inner());
        idle.values().map(Vec::len).sum()
    }
}

impl<B: MailBackend> Deref for Pooled<B> {
    type Target = B::Session;
    fn deref(&self) -> &B::Session {
        // Invariant: `session` is `Some` until drop.
        self.session.as_ref().unwrap_or_else(|| unreachable!())
    }
}

impl<B: MailBackend> DerefMut for Pooled<B> {
    fn deref_mut(&mut self) -> &mut B::Session {
        self.session.as_mut().unwrap_or_else(|| unreachable!())
    }
}

impl<B: MailBackend> Drop for Pooled<B> {
    fn drop(&mut self) {
        let (Some(session), Some(permit)) = (self.session.take(), self.permit.take()) else {
            return;
        };
        if session.is_usable() {
            self.pool.give_back(self.key, session, permit);
        } else {
            drop(permit);
            if let Ok(rt) = tokio::runtime::Handle::try_current() {
                rt.spawn(session.logout());
            }
        }
    }
}
