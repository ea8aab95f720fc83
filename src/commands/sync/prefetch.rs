//! The next pages of a paged sync, read and converted while the device handles the current one.
//!
//! When a Sync response leaves only Adds for later (`MoreAvailable`), the mails of the next
//! pages are already known: the next UIDs of the folder listing. A background task per (user,
//! device, collection) reads them, up to [`PAGES`] pages ahead of the device, on one pooled
//! session (normally the one the request has just given back); each page's conversion runs
//! on the conversion threads while the mail server reads the next. So the device's next
//! request finds its page ready instead of waiting for the mail server and the conversion.
//! Each response that leaves more for later hands the task the pages after the ones it holds.
//! The request that starts a paged sync has its own page read by the task too, on the
//! request's session: the mail server then reads the second page while the first is converted.
//!
//! Nothing here decides what a device is sent: the next request computes its changes as
//! always and only takes the prepared items when they are exactly the ones it needs and still
//! current. "Current" is proven by the folder's state: before each page's FETCH the task reads
//! UIDVALIDITY, UIDNEXT, the message count and HIGHESTMODSEQ (unless it just did, with no
//! FETCH since), and stops as soon as they differ from the state the pages were planned on.
//! Any flag change, expunge or new mail raises HIGHESTMODSEQ (CONDSTORE), so a request that
//! reads the same state again knows the items were read from the folder it sees; a FETCH
//! still running then can only see newer flags, like the request's own FETCH would. The
//! request reads that state through the task ([`Prefetches::current_state`]), which asks the
//! mail server between two of its FETCHes on the session that has the folder selected: a
//! second session would make the mail server keep a second view of the folder up to date.
//! When the task found the folder as planned within the last `VOUCH` (50 ms), after the
//! FETCH of the page the request takes, that reading answers the request at once: the device
//! is answered as of that moment, and the key it gets records that state, so whatever changed
//! since comes with its next Sync. Folders without mod-sequences and Drafts are never read
//! ahead.
//!
//! The task keeps its session while it waits for more pages; a request that needs the mail
//! server for more than the folder's state pauses the task first ([`Prefetches::pause`]) and
//! is lent that session.

use std::collections::VecDeque;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tokio::sync::{oneshot, watch, Notify};
use tokio::task::JoinHandle;
use tracing::debug;

use crate::backend::pool::{Pooled, SessionPool};
use crate::backend::{BackendError, Credentials, MailBackend, MailSession, MailboxState};
use crate::mime::BodyOptions;

use super::server_changes::{page_parts, Converting, Items};
use crate::commands::{collection_key, Context};

/// Pages read ahead of the device, per collection.
pub const PAGES: usize = 3;
/// Collections read ahead at once, over all devices; beyond it, no read-ahead. With [`PAGES`]
/// and [`MAX_MAILS`], this bounds the memory prepared pages hold.
const MAX_COLLECTIONS: usize = 8;
/// Largest page prepared; larger windows are read when asked for.
pub const MAX_MAILS: usize = 100;
/// A read-ahead nobody extended within this time is dropped.
const TTL: Duration = Duration::from_secs(120);
/// A task with nothing to read gives its session back after this long.
const IDLE: Duration = Duration::from_secs(2);
/// Longest wait for the task to read the folder's state; the request then reads it itself.
const ASK_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a state read after a page's FETCH stands for the state a request would read: the
/// request is then answered as if it had come that much earlier (a device paging through a
/// folder asks while the next page is being read; its answer need not wait for that FETCH).
const VOUCH: Duration = Duration::from_millis(50);

/// What a page was prepared for; the request that takes it must want exactly this.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageSpec {
    pub mailbox: String,
    pub collection_id: String,
    pub uid_validity: u32,
    /// Newest first, as the request will add them.
    pub uids: Vec<u32>,
    pub opts: BodyOptions,
}

/// The folder a read-ahead reads from, as the Sync response that planned it saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Folder {
    pub mailbox: String,
    pub collection_id: String,
    /// Pages are read only while the folder stays in this state.
    pub state: MailboxState,
    pub opts: BodyOptions,
}

/// The pages a Sync response left for later, to read ahead.
#[derive(Debug, Clone)]
pub struct Plan {
    pub folder: Folder,
    /// The next pages in order, each newest first.
    pub pages: Vec<Vec<u32>>,
}

/// A page's outcome: its items; `None` when no session was free, the folder changed, or a
/// mail of the page must be read whole (the request then reads the page itself).
type Outcome = Result<Option<Items>, BackendError>;

struct Page {
    uids: Vec<u32>,
    /// Its mails were read and are being converted.
    converting: bool,
    /// Set once converted (or given up).
    ready: Option<Outcome>,
    /// The folder was found in the planned state after this page's FETCH.
    vouched: bool,
}

/// What the task and the requests share of one collection's read-ahead.
#[derive(Default)]
struct Queue {
    /// Pages not taken yet, in order.
    pages: VecDeque<Page>,
    /// Requests waiting for the folder's current state (`None`: it could not be read).
    asking: Vec<oneshot::Sender<Option<MailboxState>>>,
    /// A request uses the mail server itself: no new page is started and the task gives its
    /// session back.
    paused: bool,
    /// The task holds a session, or is about to take one.
    busy: bool,
    /// No further page will be read.
    ended: bool,
    /// When the folder was last found in the planned state.
    checked_at: Option<Instant>,
}

impl Queue {
    /// The next page to read, unless paused or ended.
    fn next_job(&self) -> Option<Vec<u32>> {
        if self.paused || self.ended {
            return None;
        }
        self.pages
            .iter()
            .find(|p| p.ready.is_none() && !p.converting)
            .map(|p| p.uids.clone())
    }

    fn page(&mut self, uids: &[u32]) -> Option<&mut Page> {
        self.pages.iter_mut().find(|p| p.uids == uids)
    }
}

type Shared = Arc<Mutex<Queue>>;

fn lock(q: &Shared) -> MutexGuard<'_, Queue> {
    q.lock().unwrap_or_else(|e| e.into_inner())
}

struct Entry {
    folder: Folder,
    touched: Instant,
    queue: Shared,
    /// Wakes the task: pages were added, a request asks for the state, or it must pause.
    wake: Arc<Notify>,
    /// Bumped after each page and when the task stops holding a session; closed once the
    /// task and its conversions are gone.
    progress: watch::Receiver<()>,
    task: JoinHandle<()>,
}

impl Drop for Entry {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Read-ahead pages per (user, device, collection).
#[derive(Default)]
pub struct Prefetches {
    map: dashmap::DashMap<String, Entry>,
}

impl std::fmt::Debug for Prefetches {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Prefetches")
            .field("collections", &self.map.len())
            .finish()
    }
}

impl Prefetches {
    /// Reads ahead the pages of `plan` for the device's next requests. A read-ahead of the
    /// collection that already holds the first of these pages, planned on the same folder
    /// state, is extended and resumed; any other is replaced. Skipped when too many
    /// collections are read ahead, or (inside the task) when every IMAP session of the user
    /// is in use. `handed` is a session the caller read the plan's folder state on just now,
    /// with the folder selected: a new task reads its first page on it without reading the
    /// state again.
    pub fn start<B: MailBackend>(
        &self,
        pool: &SessionPool<B>,
        ctx: &Context,
        mut plan: Plan,
        handed: Option<Pooled<B>>,
    ) {
        self.sweep();
        let k = collection_key(
            &ctx.user.address,
            ctx.device_id(),
            &plan.folder.collection_id,
        );
        plan.pages.retain(|p| !p.is_empty());
        plan.pages.truncate(PAGES);
        if plan.pages.is_empty() || plan.pages.iter().any(|p| p.len() > MAX_MAILS) {
            self.map.remove(&k);
            return;
        }
        if let Some(mut e) = self.map.get_mut(&k) {
            if e.folder == plan.folder && extend(&e.queue, &plan.pages) {
                e.touched = Instant::now();
                e.wake.notify_one();
                return;
            }
        }
        self.map.remove(&k);
        if self.map.len() >= MAX_COLLECTIONS {
            return;
        }
        let queue: Shared = Arc::default();
        extend(&queue, &plan.pages);
        // A task with a session is busy from the start: a pause waits for it.
        lock(&queue).busy = handed.is_some();
        let wake = Arc::new(Notify::new());
        let (tx, progress) = watch::channel(());
        let mut reader = Reader {
            pool: pool.clone(),
            creds: ctx.user.credentials.clone(),
            client_ip: ctx.client_ip,
            folder: plan.folder.clone(),
            queue: queue.clone(),
            progress: Arc::new(tx),
            checked: handed.is_some(),
            session: handed,
        };
        let task = tokio::spawn({
            let wake = wake.clone();
            async move { reader.run(&wake).await }
        });
        self.map.insert(
            k,
            Entry {
                folder: plan.folder,
                touched: Instant::now(),
                queue,
                wake,
                progress,
                task,
            },
        );
    }

    /// The folder's state, read now by the read-ahead of `collection` on its session (after
    /// the FETCH it may be running). `None` when nothing is read ahead or the state could not
    /// be read. When the task read it within `VOUCH`, after the FETCH of the page the
    /// request will take, that reading stands: the request is answered as of that moment,
    /// and whatever changed since is in the next Sync (the key records that state).
    pub async fn current_state(
        &self,
        user: &str,
        device: &str,
        collection: &str,
    ) -> Option<MailboxState> {
        let rx = {
            let e = self.map.get(&collection_key(user, device, collection))?;
            let mut q = lock(&e.queue);
            if q.ended || q.paused {
                return None;
            }
            let fresh = q.checked_at.is_some_and(|t| t.elapsed() < VOUCH);
            if fresh && q.pages.front().is_some_and(|p| p.vouched) {
                return Some(e.folder.state);
            }
            let (tx, rx) = oneshot::channel();
            q.asking.push(tx);
            e.wake.notify_one();
            rx
        };
        // The task answers after its current FETCH; a task that stopped without answering
        // must not hold the request for longer than a mail server may take.
        match tokio::time::timeout(ASK_TIMEOUT, rx).await {
            Ok(Ok(state)) => state,
            _ => None,
        }
    }

    /// Stops the read-ahead of `collection` from starting pages and waits until its task has
    /// given its session back: the device's request then gets that session, which has the
    /// folder selected. Pages already read stay; the next [`Prefetches::start`] resumes.
    pub async fn pause(&self, user: &str, device: &str, collection: &str) {
        let k = collection_key(user, device, collection);
        let Some((queue, mut progress)) = self.map.get(&k).map(|e| {
            lock(&e.queue).paused = true;
            e.wake.notify_one();
            (e.queue.clone(), e.progress.clone())
        }) else {
            return;
        };
        loop {
            progress.borrow_and_update();
            if !lock(&queue).busy {
                return;
            }
            if progress.changed().await.is_err() {
                return;
            }
        }
    }

    /// The prepared items for `spec`, when its page is the next one read ahead and the folder
    /// is still at `highest_modseq`; waits for a page being read. `None` otherwise (the caller
    /// reads the mails itself), and a read-ahead that does not fit is dropped.
    pub async fn take(
        &self,
        user: &str,
        device: &str,
        spec: &PageSpec,
        highest_modseq: u64,
    ) -> Option<Items> {
        let k = collection_key(user, device, &spec.collection_id);
        let (queue, progress) = {
            let e = self.map.get(&k)?;
            let f = &e.folder;
            let fits = f.mailbox == spec.mailbox
                && f.state.uid_validity == spec.uid_validity
                && f.state.highest_modseq == highest_modseq
                && highest_modseq != 0
                && f.opts == spec.opts
                && lock(&e.queue)
                    .pages
                    .front()
                    .is_some_and(|p| p.uids == spec.uids);
            if fits {
                (e.queue.clone(), e.progress.clone())
            } else {
                drop(e);
                debug!(collection_id = %spec.collection_id, "read-ahead page not the one asked for");
                self.map.remove(&k);
                return None;
            }
        };
        front_ready(&queue, progress).await;
        let (page, ended) = {
            let mut q = lock(&queue);
            let page = match q.pages.front() {
                Some(f) if f.uids == spec.uids && f.ready.is_some() => q.pages.pop_front(),
                _ => None,
            };
            (page, q.ended)
        };
        match page.and_then(|p| p.ready) {
            Some(Ok(Some(items))) => return Some(items),
            Some(Err(e)) => {
                debug!(collection_id = %spec.collection_id, error = %e, "read-ahead failed")
            }
            Some(Ok(None)) if !ended => {
                // A mail of the page must be read whole: the request reads the page, and the
                // pages after it stay.
                debug!(collection_id = %spec.collection_id, "read-ahead page left to the request");
                return None;
            }
            _ => {
                debug!(collection_id = %spec.collection_id, "read-ahead stopped: the folder changed or no session was free")
            }
        }
        self.map.remove(&k);
        None
    }

    /// Whether pages of `collection` are read ahead.
    pub fn holds(&self, user: &str, device: &str, collection: &str) -> bool {
        self.map
            .contains_key(&collection_key(user, device, collection))
    }

    /// Drops the read-ahead of one collection (its sync was reset).
    pub fn forget(&self, user: &str, device: &str, collection: &str) {
        self.map.remove(&collection_key(user, device, collection));
    }

    /// Drops read-aheads nobody asked for in time.
    pub fn sweep(&self) {
        self.map.retain(|_, e| e.touched.elapsed() < TTL);
    }

    /// Collections read ahead (for tests and metrics).
    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}

/// Appends to `queue` the pages of `pages` it lacks, when the pages it holds are the first of
/// them, and resumes it; `false` otherwise.
fn extend(queue: &Shared, pages: &[Vec<u32>]) -> bool {
    let mut q = lock(queue);
    if q.ended || q.pages.len() > pages.len() {
        return false;
    }
    if !q.pages.iter().zip(pages).all(|(p, n)| p.uids == *n) {
        return false;
    }
    let have = q.pages.len();
    for uids in pages.iter().skip(have) {
        q.pages.push_back(Page {
            uids: uids.clone(),
            converting: false,
            ready: None,
            vouched: false,
        });
    }
    q.paused = false;
    true
}

/// Waits until the first page of `queue` is read or will not be.
async fn front_ready(queue: &Shared, mut progress: watch::Receiver<()>) {
    loop {
        progress.borrow_and_update();
        {
            let q = lock(queue);
            match q.pages.front() {
                Some(f) if f.ready.is_none() && (f.converting || !(q.paused || q.ended)) => {}
                _ => return,
            }
        }
        if progress.changed().await.is_err() {
            return;
        }
    }
}

/// One collection's read-ahead task and its session.
struct Reader<B: MailBackend> {
    pool: SessionPool<B>,
    creds: Credentials,
    client_ip: Option<IpAddr>,
    folder: Folder,
    queue: Shared,
    progress: Arc<watch::Sender<()>>,
    session: Option<Pooled<B>>,
    /// The folder's state was last read on this session and found as planned, with no FETCH
    /// since: a page may start without reading it again.
    checked: bool,
}

impl<B: MailBackend> Reader<B> {
    /// The read-ahead task of one collection: reads the queue's pages in order, answers
    /// requests for the folder's state between its FETCHes, keeps its session while it waits
    /// for more pages, and gives it back when paused or ended. A page's conversion finishes in
    /// a task of its own, so the mail server reads the next page meanwhile.
    async fn run(&mut self, wake: &Notify) {
        loop {
            let job = {
                let mut q = lock(&self.queue);
                let job = q.next_job();
                if job.is_some() || !q.asking.is_empty() {
                    q.busy = true;
                }
                job
            };
            match job {
                Some(uids) => self.read_page(uids).await,
                None if self.asked() => {
                    // Only asked for the state: no page read meanwhile.
                    let _ = self.check().await;
                }
                None => {
                    if self.release(false) {
                        return;
                    }
                    if self.session.is_none() {
                        wake.notified().await;
                    } else if tokio::time::timeout(IDLE, wake.notified()).await.is_err() {
                        // The device stopped asking: the session is not kept from other work.
                        self.release(true);
                    }
                }
            }
        }
    }

    fn asked(&self) -> bool {
        !lock(&self.queue).asking.is_empty()
    }

    /// Gives the session back when paused or ended, or always with `idle`; `true` when the
    /// task is over.
    fn release(&mut self, idle: bool) -> bool {
        let release = {
            let q = lock(&self.queue);
            idle || q.paused || q.ended
        };
        if !release {
            return false;
        }
        // The session goes back to the pool before a paused request is let go.
        self.session = None;
        self.checked = false;
        let ended = {
            let mut q = lock(&self.queue);
            q.busy = false;
            for tx in q.asking.drain(..) {
                let _ = tx.send(None);
            }
            q.ended
        };
        self.progress.send_replace(());
        ended
    }

    /// Reads the folder's state on the task's session (taken from the pool if it has none),
    /// answers the requests waiting for it, and ends the read-ahead when the folder is no
    /// longer in the planned state. `Ok(false)` when it is not (or no session was free).
    async fn check(&mut self) -> Result<bool, BackendError> {
        let read = self.read_state().await;
        let state = read.as_ref().ok().copied().flatten();
        let mut q = lock(&self.queue);
        for tx in q.asking.drain(..) {
            let _ = tx.send(state);
        }
        let current = state.is_some_and(|st| st == self.folder.state && st.highest_modseq != 0);
        if current {
            // The task reads nothing while it checks: every page read so far was read before.
            for p in q.pages.iter_mut() {
                p.vouched |= p.converting || p.ready.is_some();
            }
            q.checked_at = Some(Instant::now());
        } else {
            q.ended = true;
        }
        self.checked = current;
        read.map(|_| current)
    }

    async fn read_state(&mut self) -> Result<Option<MailboxState>, BackendError> {
        let s = match &mut self.session {
            Some(s) => s,
            None => match self.pool.try_get(&self.creds, self.client_ip).await? {
                Some(s) => self.session.insert(s),
                None => return Ok(None),
            },
        };
        Ok(Some(s.select(&self.folder.mailbox).await?))
    }

    /// Reads one page, answering state requests between its parts, and leaves its
    /// conversion to a task of its own.
    async fn read_page(&mut self, uids: Vec<u32>) {
        let read = self.read_parts(&uids).await;
        let mut q = lock(&self.queue);
        let Some(page) = q.page(&uids) else {
            return;
        };
        match read {
            Ok(Some(converting)) => {
                page.converting = true;
                drop(q);
                let (queue, progress) = (self.queue.clone(), self.progress.clone());
                tokio::spawn(async move {
                    let outcome = match converting.finish().await {
                        Ok((items, again)) => Ok(again.is_empty().then_some(items)),
                        Err(e) => Err(e),
                    };
                    if let Some(p) = lock(&queue).page(&uids) {
                        p.ready = Some(outcome);
                    }
                    progress.send_replace(());
                });
            }
            other => {
                page.ready = Some(other.map(|_| None));
                q.ended = true;
                drop(q);
                self.progress.send_replace(());
            }
        }
    }

    /// The page's mails read and being converted; `None` when the folder is no longer in the
    /// planned state or no session was free.
    async fn read_parts(&mut self, uids: &[u32]) -> Result<Option<Converting>, BackendError> {
        // A request's check that came just before this page stands for the page's own.
        if (!self.checked || self.asked()) && !self.check().await? {
            return Ok(None);
        }
        let mut converting = Converting::default();
        for (i, part) in page_parts(uids, &self.folder.opts).into_iter().enumerate() {
            if i > 0 && self.asked() && !self.check().await? {
                return Ok(None);
            }
            let Some(s) = self.session.as_mut() else {
                return Ok(None);
            };
            let f = &self.folder;
            self.checked = false;
            converting
                .read(&mut **s, &f.mailbox, &f.collection_id, part, false, &f.opts)
                .await?;
        }
        Ok(Some(converting))
    }
}
