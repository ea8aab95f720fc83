//! One watcher per user: a single IMAP connection that keeps the user's mailbox states fresh
//! in memory for every waiting request of that user.
//!
//! With NOTIFY the connection examines INBOX and idles: the server pushes `* STATUS` / `* LIST`
//! events for the other personal mailboxes, and INBOX's changes as EXISTS/EXPUNGE/FETCH of the
//! selected mailbox, after which the watcher reads INBOX's STATUS between two IDLEs (a server
//! that refuses the `selected` filter sends STATUS events for INBOX too). Without NOTIFY it
//! selects INBOX, idles (so INBOX changes still arrive at once) and polls the other watched
//! mailboxes with one batched LIST-STATUS at [`PushConfig::poll_interval`]. Between IDLEs it
//! answers waiters' refresh requests (fresh STATUS of a few mailboxes) in one batch.
//!
//! LIST events (NOTIFY MailboxName) bump the user's hierarchy epoch, which ends the waits that
//! watch the hierarchy; while such waits exist the watcher also re-reads the mailbox names
//! every [`PushConfig::hierarchy_poll`] (without NOTIFY that is the only way it learns of them).
//! NOTIFY SET is never re-issued on a connection: Dovecot 2.3 then stops sending events.
//!
//! The watcher reconnects with exponential backoff (its waiters end after
//! [`PushConfig::outage_grace`] without a connection), and stops (logging out and forgetting the
//! credentials) [`PushConfig::watcher_grace`] after its last waiter left.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot, watch, Notify};
use tokio::time::Instant;

use crate::backend::imap_idle::{mailbox_key, Idling, NotifyMode, StatusValues, WatchEvent};
use crate::backend::{
    BackendError, Credentials, ImapBackend, ImapSession, MailBackend, MailSession,
};

use super::{shut_down, Inner, PushConfig};

/// A boxed future (the connector traits are object-safe so tests can use fakes).
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// All mailbox names, sorted, and the events the server sent meanwhile.
pub type Names = (Vec<String>, Vec<WatchEvent>);

/// Opens watch connections.
pub trait Connector: Send + Sync + 'static {
    fn connect<'a>(
        &'a self,
        creds: &'a Credentials,
    ) -> BoxFuture<'a, Result<Box<dyn WatchConn>, BackendError>>;
}

/// One logged-in watch connection. Between `idle_start` and `idle_done` only `idle_readable`
/// and `idle_read` are called.
pub trait WatchConn: Send {
    /// Asks for NOTIFY events (when `want_notify`); [`NotifyMode::None`] means "poll instead",
    /// after which the connection has INBOX selected so IDLE still reports INBOX changes.
    fn arm(&mut self, want_notify: bool) -> BoxFuture<'_, Result<NotifyMode, BackendError>>;
    /// Current states of these mailboxes (see [`ImapSession::watch_states`]).
    fn states<'a>(
        &'a mut self,
        mailboxes: &'a [String],
    ) -> BoxFuture<'a, Result<Vec<WatchEvent>, BackendError>>;
    /// The names of all mailboxes, sorted, and events sent meanwhile (a fake may have none).
    fn mailbox_names(&mut self) -> BoxFuture<'_, Result<Names, BackendError>> {
        Box::pin(async { Ok((Vec::new(), Vec::new())) })
    }
    fn idle_start(&mut self) -> BoxFuture<'_, Result<Vec<WatchEvent>, BackendError>>;
    /// Resolves when the server sent something; cancel-safe.
    fn idle_readable(&mut self) -> BoxFuture<'_, Result<(), BackendError>>;
    fn idle_read(&mut self) -> BoxFuture<'_, Result<Vec<WatchEvent>, BackendError>>;
    fn idle_done(&mut self) -> BoxFuture<'_, Result<Vec<WatchEvent>, BackendError>>;
    fn close(self: Box<Self>) -> BoxFuture<'static, ()>;
}

/// The IMAP connector: logs in through [`ImapBackend`] (no client address: the connection is
/// the gateway's own).
pub struct ImapConnector {
    pub backend: ImapBackend,
}

struct ImapWatch {
    session: ImapSession,
    timeout: Duration,
    idling: Option<Idling>,
}

impl Connector for ImapConnector {
    fn connect<'a>(
        &'a self,
        creds: &'a Credentials,
    ) -> BoxFuture<'a, Result<Box<dyn WatchConn>, BackendError>> {
        Box::pin(async move {
            let session = self.backend.login(creds, None).await?;
            Ok(Box::new(ImapWatch {
                session,
                timeout: self.backend.settings().timeout,
                idling: None,
            }) as Box<dyn WatchConn>)
        })
    }
}

impl WatchConn for ImapWatch {
    fn arm(&mut self, want_notify: bool) -> BoxFuture<'_, Result<NotifyMode, BackendError>> {
        Box::pin(async move {
            if want_notify {
                let mode = self.session.notify_set().await?;
                if mode != NotifyMode::None {
                    return Ok(mode);
                }
            }
            self.session.select("INBOX").await?;
            Ok(NotifyMode::None)
        })
    }

    fn states<'a>(
        &'a mut self,
        mailboxes: &'a [String],
    ) -> BoxFuture<'a, Result<Vec<WatchEvent>, BackendError>> {
        Box::pin(self.session.watch_states(mailboxes))
    }

    fn mailbox_names(&mut self) -> BoxFuture<'_, Result<Names, BackendError>> {
        Box::pin(self.session.mailbox_names())
    }

    fn idle_start(&mut self) -> BoxFuture<'_, Result<Vec<WatchEvent>, BackendError>> {
        Box::pin(async move {
            let (idling, events) = self.session.idle_start(self.timeout).await?;
            self.idling = Some(idling);
            Ok(events)
        })
    }

    fn idle_readable(&mut self) -> BoxFuture<'_, Result<(), BackendError>> {
        Box::pin(self.session.idle_readable())
    }

    fn idle_read(&mut self) -> BoxFuture<'_, Result<Vec<WatchEvent>, BackendError>> {
        Box::pin(async move {
            let Some(idling) = &self.idling else {
                return Ok(Vec::new());
            };
            self.session.idle_read(idling, self.timeout).await
        })
    }

    fn idle_done(&mut self) -> BoxFuture<'_, Result<Vec<WatchEvent>, BackendError>> {
        Box::pin(async move {
            match self.idling.take() {
                Some(idling) => self.session.idle_done(idling, self.timeout).await,
                None => Ok(Vec::new()),
            }
        })
    }

    fn close(self: Box<Self>) -> BoxFuture<'static, ()> {
        Box::pin(async move {
            let ImapWatch {
                mut session,
                timeout,
                idling,
            } = *self;
            if let Some(idling) = idling {
                if session.idle_done(idling, timeout).await.is_err() {
                    return;
                }
            }
            session.logout().await;
        })
    }
}

/// What the watcher knows about one mailbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct MailboxInfo {
    pub uid_validity: u32,
    pub uid_next: u32,
    pub messages: u32,
    pub highest_modseq: u64,
    /// The mailbox no longer exists.
    pub gone: bool,
    /// All values are known (a full STATUS was seen); false after only a partial NOTIFY event.
    pub complete: bool,
}

/// A waiter's request for fresh states; answered when they are in [`UserWatch::states`].
pub struct Refresh {
    pub mailboxes: Vec<String>,
    pub done: oneshot::Sender<()>,
}

/// The shared part of one user's watcher.
pub struct UserWatch {
    pub user: String,
    /// Only while the watcher runs; never logged.
    creds: Mutex<Credentials>,
    states: Mutex<HashMap<String, MailboxInfo>>,
    /// Mailboxes waiters watch, with how many waiters watch each.
    interest: Mutex<HashMap<String, usize>>,
    /// Bumped whenever `states` changed.
    pub generation: watch::Sender<u64>,
    /// Bumped when the server reports a mailbox created, renamed or deleted, and when the
    /// watcher (re)connects (it cannot know what changed while it was away). 0 until then.
    pub hierarchy: watch::Sender<u64>,
    /// Since when the watcher has had no usable connection (since its first failed attempt);
    /// `None` while it has one or is still making its first.
    pub down: watch::Sender<Option<Instant>>,
    refresh_tx: mpsc::UnboundedSender<Refresh>,
    pub waiters: AtomicUsize,
    /// Waiters that watch the folder hierarchy (the watcher then re-reads the mailbox names).
    pub(super) hierarchy_waiters: AtomicUsize,
    /// The mailbox names last read, while hierarchy waiters exist.
    names: Mutex<Option<Vec<String>>>,
    /// Signalled when a waiter leaves, so the watcher can start its grace period.
    left: Notify,
    /// Events watcher: watched mailboxes with events not read since ([`super::events`]).
    dirty: Mutex<super::events::Dirty>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic elsewhere cannot leave these maps half-updated in a harmful way.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl UserWatch {
    pub(super) fn new(
        user: &str,
        creds: Credentials,
    ) -> (Arc<UserWatch>, mpsc::UnboundedReceiver<Refresh>) {
        let (refresh_tx, refresh_rx) = mpsc::unbounded_channel();
        let (generation, _) = watch::channel(0);
        let (hierarchy, _) = watch::channel(0);
        // Up until a connection attempt fails: a first login still waiting for its turn
        // (`imap.max_parallel_logins`, a restart's stampede) is not an outage.
        let (down, _) = watch::channel(None);
        (
            Arc::new(UserWatch {
                user: user.to_string(),
                creds: Mutex::new(creds),
                states: Mutex::new(HashMap::new()),
                interest: Mutex::new(HashMap::new()),
                generation,
                hierarchy,
                down,
                refresh_tx,
                waiters: AtomicUsize::new(0),
                hierarchy_waiters: AtomicUsize::new(0),
                names: Mutex::new(None),
                left: Notify::new(),
                dirty: Mutex::new(Default::default()),
            }),
            refresh_rx,
        )
    }

    /// Newer credentials (a changed password) replace the stored ones.
    pub(super) fn set_credentials(&self, creds: &Credentials) {
        let mut c = lock(&self.creds);
        if *c != *creds {
            *c = creds.clone();
        }
    }

    pub(super) fn add_interest(&self, mailboxes: &[String]) {
        let mut i = lock(&self.interest);
        for m in mailboxes {
            *i.entry(mailbox_key(m)).or_insert(0) += 1;
        }
    }

    pub(super) fn remove_interest(&self, mailboxes: &[String]) {
        let mut i = lock(&self.interest);
        for m in mailboxes {
            let k = mailbox_key(m);
            if let Some(n) = i.get_mut(&k) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    i.remove(&k);
                }
            }
        }
    }

    pub(super) fn waiter_left(&self) {
        self.waiters.fetch_sub(1, Ordering::SeqCst);
        self.left.notify_one();
    }

    /// What is known about a mailbox now.
    pub fn state(&self, mailbox: &str) -> Option<MailboxInfo> {
        lock(&self.states).get(&mailbox_key(mailbox)).copied()
    }

    /// Asks the watcher for fresh states and waits (at most `limit`) until they are in.
    pub async fn refresh(&self, mailboxes: Vec<String>, limit: Duration) -> bool {
        let (done, rx) = oneshot::channel();
        if self.refresh_tx.send(Refresh { mailboxes, done }).is_err() {
            return false;
        }
        matches!(tokio::time::timeout(limit, rx).await, Ok(Ok(())))
    }

    pub(super) fn interest(&self) -> Vec<String> {
        lock(&self.interest).keys().cloned().collect()
    }

    /// The current credentials (never logged).
    pub(super) fn credentials(&self) -> Credentials {
        lock(&self.creds).clone()
    }

    /// Resolves when a waiter left.
    pub(super) async fn left_notified(&self) {
        self.left.notified().await
    }

    pub(super) fn dirty(&self) -> MutexGuard<'_, super::events::Dirty> {
        lock(&self.dirty)
    }

    /// Known states of these mailboxes are no longer complete (an event said they changed):
    /// waiters ask for fresh ones. Mailboxes never read stay unknown.
    pub(super) fn mark_stale(&self, mailboxes: &[String]) {
        let mut changed = false;
        {
            let mut states = lock(&self.states);
            for m in mailboxes {
                if let Some(s) = states.get_mut(&mailbox_key(m)) {
                    s.complete = false;
                    changed = true;
                }
            }
        }
        if changed {
            self.generation.send_modify(|g| *g = g.wrapping_add(1));
        }
    }

    /// Applies states read on request (not pushed: a mailbox found gone is no hierarchy event).
    pub(super) fn apply_read(&self, events: &[WatchEvent]) {
        self.apply_events(events);
    }

    /// Applies events; bumps the generation when anything changed. True when the selected
    /// mailbox changed (its new state is not in the events: read it with a STATUS).
    fn apply(&self, events: &[WatchEvent]) -> bool {
        self.apply_events(events).selected
    }

    /// Applies events the server pushed while idling: there a LIST is a mailbox created,
    /// renamed or deleted (NOTIFY MailboxName), which bumps the hierarchy epoch.
    fn apply_pushed(&self, events: &[WatchEvent]) -> Applied {
        let applied = self.apply_events(events);
        if applied.listed {
            self.hierarchy.send_modify(|h| *h = h.wrapping_add(1));
        }
        applied
    }

    fn apply_events(&self, events: &[WatchEvent]) -> Applied {
        let listed = events
            .iter()
            .any(|e| matches!(e, WatchEvent::Listed { .. }));
        if events.is_empty() {
            return Applied::default();
        }
        let selected = events.iter().any(|e| matches!(e, WatchEvent::Selected));
        let mut changed = false;
        {
            let mut states = lock(&self.states);
            for e in events {
                match e {
                    WatchEvent::Status { mailbox, values } => {
                        let entry = states.entry(mailbox.clone()).or_default();
                        let before = *entry;
                        merge(entry, values);
                        changed |= *entry != before;
                    }
                    WatchEvent::Listed {
                        mailbox,
                        gone,
                        old_name,
                    } => {
                        if let Some(old) = old_name {
                            let entry = states.entry(old.clone()).or_default();
                            changed |= !entry.gone;
                            entry.gone = true;
                        }
                        let entry = states.entry(mailbox.clone()).or_default();
                        if entry.gone != *gone {
                            entry.gone = *gone;
                            // A mailbox that came back must be looked at afresh.
                            entry.complete = false;
                            changed = true;
                        }
                    }
                    WatchEvent::Selected => {}
                }
            }
        }
        if changed {
            self.generation.send_modify(|g| *g = g.wrapping_add(1));
        }
        Applied { selected, listed }
    }
}

/// What applying events found.
#[derive(Debug, Clone, Copy, Default)]
struct Applied {
    /// The selected mailbox changed.
    selected: bool,
    /// A LIST event: the hierarchy changed.
    listed: bool,
}

fn merge(entry: &mut MailboxInfo, v: &StatusValues) {
    let full = v.uid_validity.is_some() && v.uid_next.is_some() && v.messages.is_some();
    if let Some(x) = v.uid_validity {
        entry.uid_validity = x;
    }
    if let Some(x) = v.uid_next {
        entry.uid_next = x;
    }
    if let Some(x) = v.messages {
        entry.messages = x;
    }
    if let Some(x) = v.highest_modseq {
        entry.highest_modseq = x;
    }
    entry.gone = false;
    if full {
        entry.complete = true;
    }
}

/// Why an IDLE ended.
enum Leave {
    /// Time to re-issue IDLE or poll.
    Timer,
    /// Waiters asked for fresh states.
    Refresh(Refresh),
    /// The selected mailbox changed: read its STATUS (NOTIFY) or poll now.
    Selected,
    /// No waiters left and the grace period is over, or the hub shuts down.
    Stop,
}

/// The watcher task of one user.
pub(super) async fn run(
    hub: Arc<Inner>,
    me: Arc<UserWatch>,
    mut refresh_rx: mpsc::UnboundedReceiver<Refresh>,
) {
    let cfg = hub.config.clone();
    let mut backoff = Duration::from_millis(500);
    let mut shutdown = hub.shutdown_rx();
    loop {
        if *shutdown.borrow() {
            break;
        }
        let creds = lock(&me.creds).clone();
        let conn = tokio::select! {
            c = hub.connector.connect(&creds) => c,
            _ = shut_down(&mut shutdown) => break,
        };
        drop(creds);
        let error = match conn {
            Ok(conn) => match session(&hub, &me, &cfg, conn, &mut refresh_rx, &mut backoff).await {
                Ok(()) => break,
                Err(e) => e,
            },
            Err(e) => e,
        };
        me.down.send_if_modified(|d| {
            if d.is_none() {
                *d = Some(Instant::now());
                true
            } else {
                false
            }
        });
        tracing::info!(
            user = %me.user,
            error = %error,
            retry_ms = backoff.as_millis() as u64,
            "push watcher disconnected"
        );
        // Back off; stop meanwhile when nobody waits any more.
        let until = Instant::now() + backoff;
        backoff = (backoff * 2).min(cfg.max_backoff);
        loop {
            tokio::select! {
                _ = tokio::time::sleep_until(until) => break,
                _ = shut_down(&mut shutdown) => break,
                _ = me.left.notified() => {}
            }
            if try_stop(&hub, &me) {
                return;
            }
        }
        if try_stop(&hub, &me) {
            return;
        }
    }
    hub.remove_watch(&me);
}

/// Removes the watcher from the hub when nobody waits; true when removed.
fn try_stop(hub: &Inner, me: &Arc<UserWatch>) -> bool {
    if hub.is_shut_down() {
        hub.remove_watch(me);
        return true;
    }
    hub.remove_watch_if_idle(me)
}

/// One connection's life: arm, first states, then IDLE rounds. `Ok` when the watcher stops.
async fn session(
    hub: &Arc<Inner>,
    me: &Arc<UserWatch>,
    cfg: &PushConfig,
    mut conn: Box<dyn WatchConn>,
    refresh_rx: &mut mpsc::UnboundedReceiver<Refresh>,
    backoff: &mut Duration,
) -> Result<(), BackendError> {
    let result = session_inner(hub, me, cfg, &mut conn, refresh_rx, backoff).await;
    if result.is_ok() {
        conn.close().await;
    }
    result
}

async fn session_inner(
    hub: &Arc<Inner>,
    me: &Arc<UserWatch>,
    cfg: &PushConfig,
    conn: &mut Box<dyn WatchConn>,
    refresh_rx: &mut mpsc::UnboundedReceiver<Refresh>,
    backoff: &mut Duration,
) -> Result<(), BackendError> {
    let mode = conn.arm(cfg.use_notify).await?;
    let notify = mode != NotifyMode::None;
    tracing::debug!(user = %me.user, ?mode, "push watcher connected");
    // Everything may have changed while disconnected: fresh states for all watched mailboxes.
    let events = conn.states(&me.interest()).await?;
    me.apply(&events);
    // Waiters compare again even when nothing changed (they may have missed the old state),
    // and the hierarchy too (changes while disconnected were not heard of).
    me.generation.send_modify(|g| *g = g.wrapping_add(1));
    me.hierarchy.send_modify(|h| *h = h.wrapping_add(1));
    me.down.send_replace(None);
    *backoff = Duration::from_millis(500);
    let mut shutdown = hub.shutdown_rx();
    let mut next_poll = Instant::now() + cfg.poll_interval;
    // Mailbox names are re-read while hierarchy waiters exist: a safety net for a server whose
    // MailboxName events stop (Dovecot 2.3 was seen going silent on one watch connection).
    *lock(&me.names) = None;
    let mut next_names = Instant::now();
    let mut pending: Vec<Refresh> = Vec::new();
    // The selected mailbox (INBOX) changed since its last STATUS (NOTIFY mode).
    let mut inbox_dirty = false;
    let inbox = [mailbox_key("INBOX")];
    loop {
        // Not idling: answer refreshes, poll when due.
        while let Ok(r) = refresh_rx.try_recv() {
            pending.push(r);
        }
        if !pending.is_empty() || inbox_dirty {
            let mut names: Vec<String> = pending
                .iter()
                .flat_map(|r| r.mailboxes.iter().map(|m| mailbox_key(m)))
                .collect();
            if inbox_dirty {
                names.extend(inbox.iter().cloned());
            }
            names.sort();
            names.dedup();
            let events = conn.states(&names).await?;
            me.apply(&events);
            // A STATUS is at least as fresh as any EXISTS that came before its answer.
            inbox_dirty = false;
            for r in pending.drain(..) {
                let _ = r.done.send(());
            }
        }
        if me.hierarchy_waiters.load(Ordering::SeqCst) == 0 {
            *lock(&me.names) = None;
        } else if Instant::now() >= next_names {
            let (names, events) = conn.mailbox_names().await?;
            me.apply(&events);
            let mut known = lock(&me.names);
            if known.as_ref().is_some_and(|k| *k != names) {
                me.hierarchy.send_modify(|h| *h = h.wrapping_add(1));
            }
            *known = Some(names);
            next_names = Instant::now() + cfg.hierarchy_poll;
        }
        if !notify && Instant::now() >= next_poll {
            let events = conn.states(&me.interest()).await?;
            me.apply(&events);
            next_poll = Instant::now() + cfg.poll_interval;
        }

        let events = conn.idle_start().await?;
        inbox_dirty |= me.apply_pushed(&events).selected;
        let mut restart = if notify {
            Instant::now() + cfg.idle_restart
        } else {
            next_poll.min(Instant::now() + cfg.idle_restart)
        };
        if me.hierarchy_waiters.load(Ordering::SeqCst) > 0 {
            restart = restart.min(next_names);
        }
        let mut grace: Option<Instant> = None;
        let leave = if inbox_dirty {
            Leave::Selected
        } else {
            loop {
                if me.waiters.load(Ordering::SeqCst) == 0 {
                    grace.get_or_insert_with(|| Instant::now() + cfg.watcher_grace);
                } else {
                    grace = None;
                }
                let grace_at = grace.unwrap_or_else(|| restart + Duration::from_secs(86_400));
                tokio::select! {
                    r = conn.idle_readable() => {
                        r?;
                        let events = conn.idle_read().await?;
                        // benches/push.rs times the notification step with this line.
                        tracing::debug!(user = %me.user, events = events.len(), "push watcher event");
                        if me.apply_pushed(&events).selected {
                            break Leave::Selected;
                        }
                    }
                    r = refresh_rx.recv() => match r {
                        Some(r) => break Leave::Refresh(r),
                        None => break Leave::Stop,
                    },
                    _ = tokio::time::sleep_until(restart) => break Leave::Timer,
                    _ = tokio::time::sleep_until(grace_at) => {
                        if hub.remove_watch_if_idle(me) {
                            break Leave::Stop;
                        }
                        grace = None;
                    }
                    _ = me.left.notified() => {}
                    _ = shut_down(&mut shutdown) => break Leave::Stop,
                }
            }
        };
        let events = conn.idle_done().await?;
        inbox_dirty |= me.apply_pushed(&events).selected;
        match leave {
            Leave::Stop => {
                hub.remove_watch(me);
                return Ok(());
            }
            Leave::Refresh(r) => pending.push(r),
            // NOTIFY: read INBOX's STATUS; polling: poll everything now.
            Leave::Selected if notify => inbox_dirty = true,
            Leave::Selected => {
                inbox_dirty = false;
                next_poll = Instant::now();
            }
            Leave::Timer => {}
        }
    }
}
