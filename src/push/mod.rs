//! Push: requests that wait for mail changes (Ping, hanging Sync) without an IMAP connection
//! or a thread of their own.
//!
//! A waiting request is a future holding a small [`WaitRequest`]; the IMAP side is one
//! [`watcher`] per user, shared by all the user's devices and folders, which keeps the user's
//! mailbox states fresh in memory (NOTIFY events, or IDLE on INBOX plus a batched poll). A
//! waiter compares those states with the *baseline* of each watched collection: the
//! UIDVALIDITY and HIGHESTMODSEQ of the device's last committed view. The device's own
//! changes are in its view (or, for those that are not, such as its Sent Items copy, recorded
//! by [`own`] and the baseline carried past them), so they never wake its own request, while
//! they do wake the user's other devices. Only a mod-sequence above the baseline is a change:
//! a watcher that has not yet heard of the device's own change knows less than the device.
//! Before answering "changed", a waiter asks the watcher for a fresh STATUS of the mailboxes
//! that look changed, so a stale state never causes a false wake-up.
//!
//! Every waiter ends by its deadline whatever the watcher does (a dropped IMAP connection
//! never keeps a phone waiting past its heartbeat). A device has at most one waiter: a new
//! request of the device ([`Hub::device_request`], or a new wait) ends the previous one.
//! [`Hub::shutdown`] ends all waiters at once.
//!
//! No lock is held across an `.await`: the maps are `DashMap`s or `std::sync::Mutex`es only
//! touched in short synchronous sections.

pub mod events;
pub mod own;
pub mod remote;
pub mod watcher;

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use dashmap::DashMap;
use tokio::sync::{oneshot, watch};
use tokio::time::Instant;

use crate::backend::imap_idle::mailbox_key;
use crate::backend::{Credentials, ImapBackend, ImapSettings};

pub use events::{EventKind, PushSource, StatusReader};
pub use watcher::{Connector, ImapConnector, MailboxInfo, UserWatch, WatchConn};

/// Push settings (the `[push]` configuration section).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushConfig {
    /// Where changes come from: an IMAP watcher per waiting user, or the mail server's events.
    pub source: PushSource,
    /// Where the mail server posts its events (plain HTTP; loopback or a private network).
    pub events_listen: Option<std::net::SocketAddr>,
    /// The shared secret the mail server sends with every event (never logged).
    pub events_secret: Option<crate::backend::Secret>,
    /// Smallest HeartbeatInterval accepted by Ping, seconds (Exchange: 60).
    pub min_heartbeat_secs: u32,
    /// Largest HeartbeatInterval accepted by Ping, seconds (Exchange: 3540).
    pub max_heartbeat_secs: u32,
    /// Most folders one Ping may watch.
    pub max_folders: u32,
    /// Use NOTIFY when the server has it; `false` forces IDLE on INBOX plus polling.
    pub use_notify: bool,
    /// Without NOTIFY: how often the watched mailboxes other than INBOX are polled.
    pub poll_interval: Duration,
    /// IDLE is re-issued this often (RFC 2177: at most 29 minutes).
    pub idle_restart: Duration,
    /// A watcher with no waiters logs out after this long.
    pub watcher_grace: Duration,
    /// Longest pause between reconnection attempts of a watcher.
    pub max_backoff: Duration,
    /// How long a waiter waits for fresh mailbox states before carrying on without them.
    pub refresh_timeout: Duration,
    /// How long a user's watcher may be without a connection to the mail server (retrying)
    /// before its waiters end with [`WaitResult::Unavailable`].
    pub outage_grace: Duration,
    /// While a wait watches the folder hierarchy, the watcher re-reads the mailbox names this
    /// often besides listening for NOTIFY MailboxName events.
    pub hierarchy_poll: Duration,
}

impl Default for PushConfig {
    fn default() -> Self {
        PushConfig {
            source: PushSource::Imap,
            events_listen: None,
            events_secret: None,
            min_heartbeat_secs: 60,
            max_heartbeat_secs: 3540,
            max_folders: 300,
            use_notify: true,
            poll_interval: Duration::from_secs(30),
            idle_restart: Duration::from_secs(25 * 60),
            watcher_grace: Duration::from_secs(30),
            max_backoff: Duration::from_secs(60),
            refresh_timeout: Duration::from_secs(10),
            outage_grace: Duration::from_secs(5),
            hierarchy_poll: Duration::from_secs(10),
        }
    }
}

/// What the device last saw of a collection (from its latest committed view).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Baseline {
    pub uid_validity: u32,
    /// 0 when the server has no CONDSTORE: then any change of UIDNEXT or MESSAGES after the
    /// wait began counts.
    pub highest_modseq: u64,
    /// The last Sync left items unsent: "changed" at once.
    pub more_available: bool,
}

/// One collection a request waits on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Watched {
    pub collection_id: String,
    /// The IMAP mailbox (raw name).
    pub mailbox: String,
    /// `None` for a collection the device never synced: not watched.
    pub baseline: Option<Baseline>,
}

/// A request to wait.
#[derive(Debug, Clone)]
pub struct WaitRequest {
    pub user: String,
    pub device_id: String,
    pub credentials: Credentials,
    pub folders: Vec<Watched>,
    pub deadline: Instant,
    /// Whether a change of the user's folder hierarchy ends the wait.
    pub hierarchy: Hierarchy,
}

/// Watching the folder hierarchy during a wait.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hierarchy {
    /// Folders created, renamed or deleted do not end the wait (only a watched one gone does).
    Ignore,
    /// Any hierarchy change the watcher hears of after [`Hub::hierarchy_epoch`] said this
    /// ([`WaitResult::HierarchyChanged`]), taken before the caller compared the hierarchy with
    /// the device's; `None` when no watcher ran then.
    Since(Option<u64>),
}

/// How a wait ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WaitResult {
    /// These collections changed (in request order).
    Changed(Vec<String>),
    /// These collections' mailboxes no longer exist: the device must sync its hierarchy.
    FolderGone(Vec<String>),
    /// A folder was created, renamed, moved or deleted (or the watcher could not tell for a
    /// while): the caller compares the hierarchy again.
    HierarchyChanged,
    /// The mail server could not be reached for [`PushConfig::outage_grace`]: nothing can be
    /// said about the watched folders.
    Unavailable,
    /// The deadline passed with no change.
    Timeout,
    /// A newer request of the same device ended this one.
    Superseded,
    /// The gateway is shutting down.
    Shutdown,
}

/// The device's last Ping parameters (reused by an empty Ping): the state store's type, so
/// the copy the hub keeps in memory and the stored one are the same thing.
pub use crate::state::PingParams;

/// Counters for tests and measurements.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HubStats {
    pub waiters: usize,
    pub watchers: usize,
}

/// The push hub: one per gateway.
#[derive(Clone)]
pub struct Hub {
    inner: Arc<Inner>,
}

pub(crate) struct Inner {
    config: PushConfig,
    connector: Arc<dyn Connector>,
    /// With [`PushSource::Events`]: reads mailbox states for the events watchers.
    status_reader: Option<Arc<dyn StatusReader>>,
    /// user -> the user's watcher.
    users: DashMap<String, Arc<UserWatch>>,
    /// "user\0device" -> (waiter number, how to end it).
    devices: DashMap<String, (u64, oneshot::Sender<()>)>,
    next_waiter: std::sync::atomic::AtomicU64,
    /// "user\0device" -> last Ping parameters: a cache of what the state store holds
    /// (`commands::ping` reads the store when this has nothing, after a restart).
    ping_params: DashMap<String, PingParams>,
    /// "user\0device\0mailbox" -> the device's own recent changes there ([`own`]).
    own: DashMap<String, Vec<own::Mark>>,
    /// Requests whose own supersede event has not come back ([`remote`]).
    remote: remote::Order,
    shutdown: watch::Sender<bool>,
}

/// Resolves once the hub shuts down (never holds the channel's lock guard across an await).
pub(crate) async fn shut_down(rx: &mut watch::Receiver<bool>) {
    if rx.wait_for(|s| *s).await.is_err() {
        std::future::pending::<()>().await;
    }
}

fn device_key(user: &str, device_id: &str) -> String {
    format!("{user}\u{0}{device_id}")
}

impl Inner {
    fn shutdown_rx(&self) -> watch::Receiver<bool> {
        self.shutdown.subscribe()
    }

    fn is_shut_down(&self) -> bool {
        *self.shutdown.borrow()
    }

    fn remove_watch(&self, me: &Arc<UserWatch>) {
        self.users.remove_if(&me.user, |_, w| Arc::ptr_eq(w, me));
    }

    /// Removes the watcher if nobody waits on it. Waiters register under the same map lock,
    /// so none can slip in between the check and the removal.
    fn remove_watch_if_idle(&self, me: &Arc<UserWatch>) -> bool {
        let removed = self
            .users
            .remove_if(&me.user, |_, w| {
                Arc::ptr_eq(w, me) && w.waiters.load(Ordering::SeqCst) == 0
            })
            .is_some();
        removed
            || !self
                .users
                .get(&me.user)
                .is_some_and(|w| Arc::ptr_eq(&w, me))
    }
}

/// Ends the device slot when the waiter ends.
struct DeviceSlot<'a> {
    inner: &'a Inner,
    key: String,
    id: u64,
}

impl Drop for DeviceSlot<'_> {
    fn drop(&mut self) {
        self.inner
            .devices
            .remove_if(&self.key, |_, (id, _)| *id == self.id);
    }
}

/// A waiter's registration with its user's watcher.
struct Attached {
    watch: Arc<UserWatch>,
    mailboxes: Vec<String>,
    hierarchy: bool,
}

impl Drop for Attached {
    fn drop(&mut self) {
        if self.hierarchy {
            self.watch.hierarchy_waiters.fetch_sub(1, Ordering::SeqCst);
        }
        self.watch.remove_interest(&self.mailboxes);
        self.watch.waiter_left();
    }
}

impl Hub {
    /// A hub watching the IMAP server in `imap`.
    pub fn new(config: PushConfig, imap: ImapSettings) -> Hub {
        Hub::with_connector(
            config,
            Arc::new(ImapConnector {
                backend: ImapBackend::new(imap),
            }),
        )
    }

    /// A hub fed by the mail server's events ([`Hub::mail_event`]) when `config.source` is
    /// [`PushSource::Events`]: mailbox states are read with `reader` (the session pool), and
    /// no IMAP connection is held for waiting users. Otherwise the same as [`Hub::new`].
    pub fn with_events(
        config: PushConfig,
        imap: ImapSettings,
        reader: Arc<dyn StatusReader>,
    ) -> Hub {
        let events = config.source == PushSource::Events;
        let mut hub = Hub::new(config, imap);
        if events {
            if let Some(inner) = Arc::get_mut(&mut hub.inner) {
                inner.status_reader = Some(reader);
            }
        }
        hub
    }

    /// A hub with another way of watching (tests).
    pub fn with_connector(config: PushConfig, connector: Arc<dyn Connector>) -> Hub {
        let (shutdown, _) = watch::channel(false);
        Hub {
            inner: Arc::new(Inner {
                config,
                connector,
                status_reader: None,
                users: DashMap::new(),
                devices: DashMap::new(),
                next_waiter: std::sync::atomic::AtomicU64::new(1),
                ping_params: DashMap::new(),
                own: DashMap::new(),
                remote: remote::Order::default(),
                shutdown,
            }),
        }
    }

    pub fn config(&self) -> &PushConfig {
        &self.inner.config
    }

    /// The device made a new request: its waiting request (if any) ends now.
    pub fn device_request(&self, user: &str, device_id: &str) {
        if let Some((_, (_, end))) = self.inner.devices.remove(&device_key(user, device_id)) {
            let _ = end.send(());
        }
    }

    /// The device made a new request on this node: its waiting request (if any) ends now.
    /// Returns the request's token for its supersede event; until that event comes back
    /// ([`Hub::own_supersede_heard`]), supersedes from other nodes are older than this request
    /// and end none of the device's waits here ([`remote`]).
    pub fn local_request(&self, user: &str, device_id: &str) -> u64 {
        let token = self.inner.remote.begin(device_key(user, device_id));
        self.device_request(user, device_id);
        token
    }

    /// The supersede event of the device's request with `token` came back on the event
    /// stream, or could not be published: supersedes from other nodes heard from now on are
    /// newer than it.
    pub fn own_supersede_heard(&self, user: &str, device_id: &str, token: u64) {
        self.inner.remote.heard(&device_key(user, device_id), token);
    }

    /// Another node heard of a new request of the device: ends the device's waiting request
    /// here unless that supersede is older than the device's latest request here (see
    /// [`remote`]). False when it was older and ignored.
    pub fn remote_supersede(&self, user: &str, device_id: &str) -> bool {
        if self.inner.remote.blocks(&device_key(user, device_id)) {
            return false;
        }
        self.device_request(user, device_id);
        true
    }

    /// This node missed cluster events: the order of requests is not known, so supersedes from
    /// other nodes end waits again at once.
    pub fn remote_order_lost(&self) {
        self.inner.remote.clear();
    }

    /// Answers every waiting request at once (they end with [`WaitResult::Shutdown`]) and
    /// stops the watchers; later waits end at once too.
    pub fn shutdown(&self) {
        self.inner.shutdown.send_replace(true);
    }

    pub fn is_shut_down(&self) -> bool {
        self.inner.is_shut_down()
    }

    pub fn stats(&self) -> HubStats {
        HubStats {
            waiters: self.inner.devices.len(),
            watchers: self.inner.users.len(),
        }
    }

    /// Whether waits are fed by the mail server's events ([`PushSource::Events`]).
    pub fn uses_events(&self) -> bool {
        self.inner.status_reader.is_some()
    }

    /// The mail server reports a change of `user`'s `mailbox` (its name in UTF-8, as the server
    /// shows it to users; `None` when not known). Waits of the user that watch that mailbox
    /// compare it with their baselines again (or the hierarchy, for a folder created, renamed
    /// or deleted). True when a waiting user heard of it. Ignored unless the hub uses events.
    pub fn mail_event(&self, user: &str, mailbox: Option<&str>, kind: EventKind) -> bool {
        if !self.uses_events() {
            return false;
        }
        let watch = match self.inner.users.get(user) {
            Some(w) => w.clone(),
            None => match self.inner.users.get(&user.to_lowercase()) {
                Some(w) => w.clone(),
                None => return false,
            },
        };
        let name = mailbox.map(crate::backend::utf7::encode);
        watch.mail_event(name.as_deref(), kind);
        true
    }

    /// Remembers the device's Ping parameters in memory (the caller persists them).
    pub fn set_ping_params(&self, user: &str, device_id: &str, params: PingParams) {
        self.inner
            .ping_params
            .insert(device_key(user, device_id), params);
    }

    /// Counts the folder hierarchy changes the user's watcher heard of (and its reconnections,
    /// after which it cannot tell); `None` when no watcher runs. Read it before comparing the
    /// hierarchy and pass it to the wait ([`Hierarchy::Since`]).
    pub fn hierarchy_epoch(&self, user: &str) -> Option<u64> {
        self.inner.users.get(user).map(|w| *w.hierarchy.borrow())
    }

    /// Forgets the device's Ping parameters kept in memory (another node may have stored newer
    /// ones): the next Ping reads them from the store.
    pub fn forget_ping_params(&self, user: &str, device_id: &str) {
        self.inner.ping_params.remove(&device_key(user, device_id));
    }

    /// The device's last Ping parameters, as far as memory knows.
    pub fn ping_params(&self, user: &str, device_id: &str) -> Option<PingParams> {
        self.inner
            .ping_params
            .get(&device_key(user, device_id))
            .map(|p| p.clone())
    }

    fn begin(&self, user: &str, device_id: &str) -> (DeviceSlot<'_>, oneshot::Receiver<()>) {
        let key = device_key(user, device_id);
        let id = self.inner.next_waiter.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        if let Some((_, end)) = self.inner.devices.insert(key.clone(), (id, tx)) {
            let _ = end.send(());
        }
        (
            DeviceSlot {
                inner: &self.inner,
                key,
                id,
            },
            rx,
        )
    }

    fn attach(
        &self,
        user: &str,
        creds: &Credentials,
        mailboxes: Vec<String>,
        hierarchy: bool,
    ) -> Attached {
        let watch = {
            let entry = self.inner.users.entry(user.to_string()).or_insert_with(|| {
                let (w, rx) = UserWatch::new(user, creds.clone());
                if self.inner.status_reader.is_some() {
                    tokio::spawn(events::run(self.inner.clone(), w.clone(), rx));
                } else {
                    tokio::spawn(watcher::run(self.inner.clone(), w.clone(), rx));
                }
                w
            });
            // Counted under the map lock: see `remove_watch_if_idle`.
            entry.waiters.fetch_add(1, Ordering::SeqCst);
            entry.clone()
        };
        watch.set_credentials(creds);
        watch.add_interest(&mailboxes);
        if hierarchy {
            watch.hierarchy_waiters.fetch_add(1, Ordering::SeqCst);
        }
        Attached {
            watch,
            mailboxes,
            hierarchy,
        }
    }

    /// Waits until a watched collection changes, the deadline passes, the device makes a new
    /// request, or the hub shuts down. Ends the device's previous waiter first.
    pub async fn wait_for_changes(&self, req: WaitRequest) -> WaitResult {
        if self.is_shut_down() {
            return WaitResult::Shutdown;
        }
        let (_slot, mut superseded) = self.begin(&req.user, &req.device_id);
        let mut shutdown = self.inner.shutdown_rx();
        let watched: Vec<(&Watched, Baseline)> = req
            .folders
            .iter()
            .filter_map(|w| w.baseline.map(|b| (w, b)))
            .map(|(w, mut b)| {
                b.highest_modseq = self.past_own_changes(
                    &req.user,
                    &req.device_id,
                    &w.mailbox,
                    b.uid_validity,
                    b.highest_modseq,
                );
                (w, b)
            })
            .collect();
        let more: Vec<String> = watched
            .iter()
            .filter(|(_, b)| b.more_available)
            .map(|(w, _)| w.collection_id.clone())
            .collect();
        if !more.is_empty() {
            return WaitResult::Changed(more);
        }
        let deadline = req.deadline;
        let hierarchy = match req.hierarchy {
            Hierarchy::Ignore => None,
            Hierarchy::Since(epoch) => Some(epoch),
        };
        if watched.is_empty() && hierarchy.is_none() {
            return tokio::select! {
                _ = shut_down(&mut shutdown) => WaitResult::Shutdown,
                _ = &mut superseded => WaitResult::Superseded,
                _ = tokio::time::sleep_until(deadline) => WaitResult::Timeout,
            };
        }
        let mailboxes: Vec<String> = watched.iter().map(|(w, _)| w.mailbox.clone()).collect();
        let attached = self.attach(
            &req.user,
            &req.credentials,
            mailboxes.clone(),
            hierarchy.is_some(),
        );
        let watch = attached.watch.clone();
        let mut hierarchy_rx = watch.hierarchy.subscribe();
        if let Some(since) = hierarchy {
            let now = *hierarchy_rx.borrow_and_update();
            // A watcher that started meanwhile (0: not connected yet) reports its start.
            let moved = match since {
                Some(epoch) => epoch != now,
                None => now != 0,
            };
            if moved {
                return WaitResult::HierarchyChanged;
            }
        }
        let mut down_rx = watch.down.subscribe();
        let grace = self.inner.config.outage_grace;
        let limit = self.inner.config.refresh_timeout;
        // Baselines of collections without mod-sequences: the state when the wait began.
        let snapshots: std::sync::Mutex<HashMap<String, MailboxInfo>> = Default::default();
        let work = async {
            let mut generation = watch.generation.subscribe();
            watch.refresh(mailboxes.clone(), limit).await;
            generation.borrow_and_update();
            take_snapshots(&watch, &watched, &snapshots);
            if let Some(r) = evaluate(&watch, &watched, &snapshots, true) {
                return r;
            }
            loop {
                if generation.changed().await.is_err() {
                    std::future::pending::<()>().await;
                }
                let heard = std::time::Instant::now();
                take_snapshots(&watch, &watched, &snapshots);
                let suspects = suspects(&watch, &watched, &snapshots);
                if suspects.is_empty() {
                    continue;
                }
                watch.refresh(suspects, limit).await;
                generation.borrow_and_update();
                if let Some(r) = evaluate(&watch, &watched, &snapshots, true) {
                    crate::metrics::get()
                        .push_wake
                        .observe(heard.elapsed().as_secs_f64());
                    return r;
                }
            }
        };
        let result = tokio::select! {
            biased;
            _ = shut_down(&mut shutdown) => WaitResult::Shutdown,
            _ = &mut superseded => match evaluate(&watch, &watched, &snapshots, false) {
                Some(WaitResult::Changed(ids)) => WaitResult::Changed(ids),
                _ => WaitResult::Superseded,
            },
            _ = tokio::time::sleep_until(deadline) => WaitResult::Timeout,
            _ = changed(&mut hierarchy_rx, hierarchy.is_some()) => WaitResult::HierarchyChanged,
            _ = outage(&mut down_rx, grace) => WaitResult::Unavailable,
            r = work => r,
        };
        drop(attached);
        result
    }
}

/// Resolves when the value changes (never when `enabled` is false or the sender is gone).
async fn changed(rx: &mut watch::Receiver<u64>, enabled: bool) {
    if !enabled || rx.changed().await.is_err() {
        std::future::pending::<()>().await;
    }
}

/// Resolves once the watcher has been without a connection for `grace` in one go.
async fn outage(rx: &mut watch::Receiver<Option<Instant>>, grace: Duration) {
    loop {
        let since = *rx.borrow_and_update();
        let ended = match since {
            None => rx.changed().await.is_err(),
            Some(t) => tokio::select! {
                _ = tokio::time::sleep_until(t + grace) => return,
                r = rx.changed() => r.is_err(),
            },
        };
        if ended {
            std::future::pending::<()>().await;
        }
    }
}

fn take_snapshots(
    watch: &UserWatch,
    watched: &[(&Watched, Baseline)],
    snapshots: &std::sync::Mutex<HashMap<String, MailboxInfo>>,
) {
    let mut snaps = snapshots.lock().unwrap_or_else(|e| e.into_inner());
    for (w, b) in watched {
        if b.highest_modseq != 0 || snaps.contains_key(&w.collection_id) {
            continue;
        }
        if let Some(s) = watch.state(&w.mailbox) {
            if s.complete && !s.gone && s.highest_modseq == 0 {
                snaps.insert(w.collection_id.clone(), s);
            }
        }
    }
}

/// How one watched collection compares with what the watcher knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    Same,
    Changed,
    Gone,
    /// Not (fully) known: ask for a fresh state.
    Unknown,
}

fn verdict(b: &Baseline, snapshot: Option<&MailboxInfo>, s: Option<MailboxInfo>) -> Verdict {
    let Some(s) = s else {
        return Verdict::Unknown;
    };
    if s.gone {
        return Verdict::Gone;
    }
    if b.more_available {
        return Verdict::Changed;
    }
    if s.uid_validity != 0 && s.uid_validity != b.uid_validity {
        return Verdict::Changed;
    }
    if b.highest_modseq != 0 || s.highest_modseq != 0 {
        if s.highest_modseq > b.highest_modseq || (b.highest_modseq != 0 && s.highest_modseq == 0) {
            return Verdict::Changed;
        }
        if s.highest_modseq < b.highest_modseq {
            // Mod-sequences only grow: the watcher has not yet heard of a change the device
            // already holds (typically its own), which says nothing about later ones.
            return Verdict::Unknown;
        }
        return if s.complete {
            Verdict::Same
        } else {
            Verdict::Unknown
        };
    }
    if !s.complete {
        return Verdict::Unknown;
    }
    match snapshot {
        Some(snap) if snap.uid_next != s.uid_next || snap.messages != s.messages => {
            Verdict::Changed
        }
        _ => Verdict::Same,
    }
}

/// Mailboxes that may have changed (to refresh before answering).
fn suspects(
    watch: &UserWatch,
    watched: &[(&Watched, Baseline)],
    snapshots: &std::sync::Mutex<HashMap<String, MailboxInfo>>,
) -> Vec<String> {
    let snaps = snapshots.lock().unwrap_or_else(|e| e.into_inner());
    watched
        .iter()
        .filter(|(w, b)| {
            verdict(b, snaps.get(&w.collection_id), watch.state(&w.mailbox)) != Verdict::Same
        })
        .map(|(w, _)| mailbox_key(&w.mailbox))
        .collect()
}

/// The answer the watcher's states give now, if any. `fresh` is true right after a refresh:
/// only then does a vanished mailbox count as gone.
fn evaluate(
    watch: &UserWatch,
    watched: &[(&Watched, Baseline)],
    snapshots: &std::sync::Mutex<HashMap<String, MailboxInfo>>,
    fresh: bool,
) -> Option<WaitResult> {
    let snaps = snapshots.lock().unwrap_or_else(|e| e.into_inner());
    let mut changed = Vec::new();
    let mut gone = Vec::new();
    for (w, b) in watched {
        match verdict(b, snaps.get(&w.collection_id), watch.state(&w.mailbox)) {
            Verdict::Changed => changed.push(w.collection_id.clone()),
            Verdict::Gone if fresh => gone.push(w.collection_id.clone()),
            _ => {}
        }
    }
    if !gone.is_empty() {
        Some(WaitResult::FolderGone(gone))
    } else if !changed.is_empty() {
        Some(WaitResult::Changed(changed))
    } else {
        None
    }
}

#[cfg(test)]
mod tests;
