//! The next page of a paged sync, read and converted while the device handles the current one.
//!
//! When a Sync response leaves only Adds for later (`MoreAvailable`), the mails of the next
//! page are already known: the next UIDs of the folder listing. A background task reads and
//! converts them on a pooled session (normally the one the request has just given back), so
//! the device's next request finds its page ready instead of waiting for the mail server and
//! the conversion.
//!
//! Nothing here decides what a device is sent: the next request computes its changes as
//! always and only takes the prepared items when they are exactly the ones it needs and still
//! current. "Current" is proven by the folder's HIGHESTMODSEQ: the task reads it before its
//! FETCH, and the request reads it again before it takes the page. Any flag change, expunge or
//! new mail raises it (CONDSTORE), so an equal value means the items were read from the folder
//! the request sees; a FETCH still running then can only see newer flags, like the request's
//! own FETCH would. Folders without mod-sequences and Drafts are never prefetched.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::task::JoinHandle;
use tracing::debug;

use crate::backend::pool::SessionPool;
use crate::backend::{BackendError, Credentials, MailBackend, MailSession, MessageMeta};
use crate::mime::BodyOptions;
use crate::wbxml::Element;

use super::server_changes::add_data;
use crate::commands::collection_key;

/// Pages prepared or in preparation at once, over all devices; beyond it, no prefetch. With
/// [`MAX_MAILS`], this bounds the memory prepared pages hold.
const MAX_PAGES: usize = 16;
/// Largest page prepared; larger windows are read when asked for.
const MAX_MAILS: usize = 100;
/// A page nobody asked for within this time is dropped.
const TTL: Duration = Duration::from_secs(120);

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

/// A prepared page.
struct Ready {
    /// HIGHESTMODSEQ read before the FETCH.
    highest_modseq: u64,
    uid_validity: u32,
    items: HashMap<u32, (MessageMeta, Element)>,
}

type Outcome = Result<Option<Ready>, BackendError>;

struct Entry {
    spec: PageSpec,
    started: Instant,
    task: JoinHandle<()>,
    /// Set once the task has finished and put its outcome in `result`.
    done: tokio::sync::watch::Receiver<bool>,
    result: Arc<Mutex<Option<Outcome>>>,
}

/// Prepared next pages per (user, device, collection).
#[derive(Default)]
pub struct Prefetches {
    map: dashmap::DashMap<String, Entry>,
}

impl std::fmt::Debug for Prefetches {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Prefetches")
            .field("pages", &self.map.len())
            .finish()
    }
}

impl Prefetches {
    /// Starts preparing `spec` for the device's next request, replacing any earlier page of
    /// that collection. Skipped when too many pages are in preparation, or (inside the task)
    /// when every IMAP session of the user is in use.
    pub fn start<B: MailBackend>(
        &self,
        pool: &SessionPool<B>,
        creds: &Credentials,
        client_ip: Option<IpAddr>,
        user: &str,
        device: &str,
        spec: PageSpec,
    ) {
        self.sweep();
        let k = collection_key(user, device, &spec.collection_id);
        if let Some((_, old)) = self.map.remove(&k) {
            old.task.abort();
        }
        if spec.uids.is_empty() || spec.uids.len() > MAX_MAILS || self.map.len() >= MAX_PAGES {
            return;
        }
        let pool = pool.clone();
        let creds = creds.clone();
        let s = spec.clone();
        let (done_tx, done) = tokio::sync::watch::channel(false);
        let result: Arc<Mutex<Option<Outcome>>> = Arc::default();
        let slot = result.clone();
        let task = tokio::spawn(async move {
            let outcome = prepare(&pool, &creds, client_ip, &s).await;
            *slot.lock().unwrap_or_else(|e| e.into_inner()) = Some(outcome);
            let _ = done_tx.send(true);
        });
        self.map.insert(
            k,
            Entry {
                spec,
                started: Instant::now(),
                task,
                done,
                result,
            },
        );
    }

    /// Waits until the page of `collection` (if one is in preparation) is ready, so that
    /// its IMAP session is back in the pool before the caller takes one: the device's
    /// requests and their prepared pages then use one IMAP session instead of two, which
    /// spares the mail server from keeping two views of the folder up to date.
    pub async fn wait(&self, user: &str, device: &str, collection: &str) {
        let done = self
            .map
            .get(&collection_key(user, device, collection))
            .map(|e| e.done.clone());
        if let Some(mut done) = done {
            let _ = done.wait_for(|d| *d).await;
        }
    }

    /// The prepared items for `spec`, when a page was prepared for exactly it and the folder
    /// is still at `highest_modseq`; waits for a preparation still running. `None` otherwise
    /// (the caller reads the mails itself).
    pub async fn take(
        &self,
        user: &str,
        device: &str,
        spec: &PageSpec,
        highest_modseq: u64,
    ) -> Option<HashMap<u32, (MessageMeta, Element)>> {
        let (_, entry) = self
            .map
            .remove(&collection_key(user, device, &spec.collection_id))?;
        if entry.spec != *spec || highest_modseq == 0 {
            entry.task.abort();
            debug!(collection_id = %spec.collection_id, "prefetched page not the one asked for");
            return None;
        }
        let mut done = entry.done.clone();
        if done.wait_for(|d| *d).await.is_err() {
            debug!(collection_id = %spec.collection_id, "prefetch task ended");
            return None;
        }
        let outcome = entry
            .result
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        match outcome {
            Some(Ok(Some(ready)))
                if ready.highest_modseq == highest_modseq
                    && ready.uid_validity == spec.uid_validity =>
            {
                Some(ready.items)
            }
            Some(Ok(Some(_))) => {
                debug!(collection_id = %spec.collection_id, "folder changed since the prefetch");
                None
            }
            Some(Ok(None)) | None => None,
            Some(Err(e)) => {
                debug!(collection_id = %spec.collection_id, error = %e, "prefetch failed");
                None
            }
        }
    }

    /// Drops the page of one collection (its sync was reset).
    pub fn forget(&self, user: &str, device: &str, collection: &str) {
        if let Some((_, e)) = self.map.remove(&collection_key(user, device, collection)) {
            e.task.abort();
        }
    }

    /// Drops pages nobody asked for in time.
    pub fn sweep(&self) {
        self.map.retain(|_, e| {
            let keep = e.started.elapsed() < TTL;
            if !keep {
                e.task.abort();
            }
            keep
        });
    }

    /// Pages prepared or in preparation (for tests and metrics).
    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}

/// Reads and converts the mails of `spec` on a pooled session; `None` when no session was
/// free or the folder is no longer the one the page was planned for.
async fn prepare<B: MailBackend>(
    pool: &SessionPool<B>,
    creds: &Credentials,
    client_ip: Option<IpAddr>,
    spec: &PageSpec,
) -> Outcome {
    let Some(mut session) = pool.try_get(creds, client_ip).await? else {
        return Ok(None);
    };
    let st = session.select(&spec.mailbox).await?;
    if st.uid_validity != spec.uid_validity || st.highest_modseq == 0 {
        return Ok(None);
    }
    let items = add_data(
        &mut *session,
        &spec.mailbox,
        &spec.collection_id,
        &spec.uids,
        false,
        &spec.opts,
    )
    .await?;
    Ok(Some(Ready {
        highest_modseq: st.highest_modseq,
        uid_validity: st.uid_validity,
        items,
    }))
}
