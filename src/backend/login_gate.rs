//! A cap on logins in flight to the mail server.
//!
//! After a restart (or a network blip) every phone comes back within seconds, and each of their
//! requests needs a login: thousands of LOGINs at once. A mail server answers a steady stream of
//! logins far faster than a stampede (Dovecot forks a mail process per login and its auth
//! process is one queue), and a stampede makes each login slower than its timeout, so every
//! request would fail with 503 and come back to do it again. The gate lets `limit` logins run
//! at once and queues the rest (the queue time does not count against the IMAP timeout), for at
//! most `queue` before the login counts as "mail server unavailable".
//!
//! Every clone of [`super::ImapSettings`] shares one gate, so the request path, the session
//! pool and the push watchers of a process queue together.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::BackendError;

/// Default of `imap.max_parallel_logins`.
pub const DEFAULT_LIMIT: usize = 32;
/// Default of `imap.login_queue_secs`.
pub const DEFAULT_QUEUE: Duration = Duration::from_secs(60);

/// The shared gate (see the module documentation).
#[derive(Clone)]
pub struct LoginGate {
    limit: usize,
    queue: Duration,
    permits: Arc<Semaphore>,
}

/// A login's place in the gate, released when dropped.
pub struct LoginSlot {
    _permit: OwnedSemaphorePermit,
}

impl LoginGate {
    /// At most `limit` (at least one) logins at once; a login waits at most `queue` for its turn.
    pub fn new(limit: usize, queue: Duration) -> LoginGate {
        let limit = limit.clamp(1, Semaphore::MAX_PERMITS);
        LoginGate {
            limit,
            queue,
            permits: Arc::new(Semaphore::new(limit)),
        }
    }

    pub fn limit(&self) -> usize {
        self.limit
    }

    pub fn queue(&self) -> Duration {
        self.queue
    }

    /// Waits for a turn to log in.
    pub async fn enter(&self) -> Result<LoginSlot, BackendError> {
        if let Ok(permit) = self.permits.clone().try_acquire_owned() {
            return Ok(LoginSlot { _permit: permit });
        }
        let metrics = crate::metrics::get();
        metrics.imap_logins_queued.inc();
        let waited = tokio::time::timeout(self.queue, self.permits.clone().acquire_owned()).await;
        metrics.imap_logins_queued.dec();
        match waited {
            Ok(Ok(permit)) => Ok(LoginSlot { _permit: permit }),
            Ok(Err(_)) => Err(BackendError::Unavailable("login gate closed".into())),
            Err(_) => {
                metrics.imap_login_queue_timeouts.inc();
                Err(BackendError::Unavailable(format!(
                    "no turn to log in within {} s ({} logins in flight)",
                    self.queue.as_secs(),
                    self.limit
                )))
            }
        }
    }
}

impl Default for LoginGate {
    fn default() -> Self {
        LoginGate::new(DEFAULT_LIMIT, DEFAULT_QUEUE)
    }
}

impl fmt::Debug for LoginGate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LoginGate")
            .field("limit", &self.limit)
            .field("queue", &self.queue)
            .finish()
    }
}

/// Two gates are the same setting when their limits are (a configuration comparison).
impl PartialEq for LoginGate {
    fn eq(&self, other: &Self) -> bool {
        self.limit == other.limit && self.queue == other.queue
    }
}

impl Eq for LoginGate {}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn logins_beyond_the_limit_wait_their_turn() {
        let gate = LoginGate::new(2, Duration::from_secs(30));
        let a = gate.enter().await.expect("first");
        let _b = gate.enter().await.expect("second");
        let clone = gate.clone();
        let third = tokio::spawn(async move { clone.enter().await.map(|_| ()) });
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(!third.is_finished(), "a third login waits while two run");
        drop(a);
        third
            .await
            .expect("task")
            .expect("the third gets the freed turn");
    }

    #[tokio::test]
    async fn a_login_waiting_longer_than_the_queue_allows_is_unavailable() {
        let gate = LoginGate::new(1, Duration::from_millis(200));
        let _held = gate.enter().await.expect("first");
        let err = gate.enter().await.err().expect("no turn");
        assert!(matches!(err, BackendError::Unavailable(_)), "{err:?}");
    }

    #[test]
    fn clones_share_one_gate_and_compare_by_setting() {
        let gate = LoginGate::new(1, Duration::from_secs(3));
        let clone = gate.clone();
        let _held = gate.permits.clone().try_acquire_owned().expect("free");
        assert_eq!(clone.permits.available_permits(), 0);
        assert_eq!(gate, LoginGate::new(1, Duration::from_secs(3)));
        assert_ne!(gate, LoginGate::new(2, Duration::from_secs(3)));
    }
}
