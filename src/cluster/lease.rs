//! The store's lease of a (user, device, collection), beside the in-process collection lock.
//!
//! A request takes the in-process lock first (so requests of one node queue there, not on
//! the store), then the lease. When another node holds it, the request tries again with a
//! short backoff for up to [`ClusterConfig::lease_wait`] (a phone that retried on this node
//! while its first request still runs elsewhere), and is then answered 503 with Retry-After,
//! as when the store is busy. While the request works the lease is renewed every third of
//! its ttl; at the end it is given back. A request whose future is dropped gives it back from
//! a spawned task; a node that dies leaves it to expire.
//!
//! The owner is the node id plus a number per lease taken, so that two requests of one node
//! never take each other's lease for their own (the release of an earlier request, sent from
//! a spawned task, cannot remove a later one's).

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::ClusterConfig;
use crate::backend::MailBackend;
use crate::commands::{CommandError, Context, Gateway};
use crate::state::{Cluster, LeaseKey, StateStore, StoreError};

/// Lease numbers of this process.
static NEXT: AtomicU64 = AtomicU64::new(1);

/// First and longest pause between two attempts at a lease another node holds.
const BACKOFF: (Duration, Duration) = (Duration::from_millis(20), Duration::from_millis(250));

/// Held leases of one request: one or more collections of one device.
pub struct Lease<S: Cluster> {
    store: S,
    user: String,
    device: String,
    /// Sorted, without duplicates.
    collections: Vec<String>,
    owner: String,
    renewer: Option<JoinHandle<()>>,
    /// Becomes `true` when a renewal found the lease taken over (or could not renew it for a
    /// whole ttl).
    lost: watch::Receiver<bool>,
    released: bool,
}

impl<S: Cluster> Lease<S> {
    /// Takes the leases of `collections` of the device, waiting as described in the module
    /// documentation.
    pub async fn take(
        store: &S,
        config: &ClusterConfig,
        user: &str,
        device: &str,
        collections: &[&str],
    ) -> Result<Lease<S>, CommandError> {
        let mut cols: Vec<String> = collections.iter().map(|c| c.to_string()).collect();
        cols.sort();
        cols.dedup();
        let owner = format!(
            "{}/{}",
            config.node_id,
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let ttl = config.lease_ttl;
        let give_up = Instant::now() + config.lease_wait;
        let mut pause = BACKOFF.0;
        loop {
            let mut taken = 0;
            for c in &cols {
                let key = key(user, device, c);
                if !store.acquire_lease(key, &owner, ttl).await? {
                    break;
                }
                taken += 1;
            }
            if taken == cols.len() {
                break;
            }
            // Never sit on some while waiting for the others.
            for c in cols.iter().take(taken) {
                let _ = store.release_lease(key(user, device, c), &owner).await;
            }
            if Instant::now() + pause > give_up {
                tracing::info!(
                    collection_id = %cols.get(taken).map_or("", String::as_str),
                    "collection busy on another gateway node"
                );
                return Err(CommandError::StoreUnavailable(StoreError::Conflict(
                    "the collection is being synced by another gateway node".into(),
                )));
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(BACKOFF.1);
        }
        let (lost_tx, lost) = watch::channel(false);
        let renewer = tokio::spawn(renew(
            store.clone(),
            user.to_string(),
            device.to_string(),
            cols.clone(),
            owner.clone(),
            ttl,
            lost_tx,
        ));
        Ok(Lease {
            store: store.clone(),
            user: user.to_string(),
            device: device.to_string(),
            collections: cols,
            owner,
            renewer: Some(renewer),
            lost,
            released: false,
        })
    }

    /// Resolves when the lease was lost: another node may be working on the collection.
    pub async fn lost(&self) {
        let mut rx = self.lost.clone();
        if rx.wait_for(|l| *l).await.is_err() {
            // The renewer ended without losing it (it was stopped): never.
            std::future::pending::<()>().await;
        }
    }

    /// Gives the leases back now.
    pub async fn release(mut self) {
        self.released = true;
        if let Some(r) = self.renewer.take() {
            r.abort();
        }
        release_all(
            &self.store,
            &self.user,
            &self.device,
            &self.collections,
            &self.owner,
        )
        .await;
    }
}

impl<S: Cluster> Drop for Lease<S> {
    fn drop(&mut self) {
        if let Some(r) = self.renewer.take() {
            r.abort();
        }
        if self.released {
            return;
        }
        let (store, user, device, cols, owner) = (
            self.store.clone(),
            std::mem::take(&mut self.user),
            std::mem::take(&mut self.device),
            std::mem::take(&mut self.collections),
            std::mem::take(&mut self.owner),
        );
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(async move { release_all(&store, &user, &device, &cols, &owner).await });
        }
    }
}

fn key<'a>(user: &'a str, device: &'a str, collection: &'a str) -> LeaseKey<'a> {
    LeaseKey {
        user,
        device_id: device,
        collection_id: collection,
    }
}

async fn release_all<S: Cluster>(
    store: &S,
    user: &str,
    device: &str,
    cols: &[String],
    owner: &str,
) {
    for c in cols {
        if let Err(e) = store.release_lease(key(user, device, c), owner).await {
            // It expires by itself.
            tracing::warn!(error = %e, "cannot give back a sync lease");
        }
    }
}

async fn renew<S: Cluster>(
    store: S,
    user: String,
    device: String,
    cols: Vec<String>,
    owner: String,
    ttl: Duration,
    lost: watch::Sender<bool>,
) {
    let mut renewed = Instant::now();
    loop {
        tokio::time::sleep(ttl / 3).await;
        let started = Instant::now();
        let mut ok = true;
        for c in &cols {
            match store.renew_lease(key(&user, &device, c), &owner, ttl).await {
                Ok(true) => {}
                Ok(false) => {
                    tracing::warn!(collection_id = %c, "sync lease taken over by another node");
                    let _ = lost.send(true);
                    return;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "cannot renew a sync lease");
                    ok = false;
                }
            }
        }
        if ok {
            renewed = started;
        } else if renewed.elapsed() >= ttl {
            // Another node may have it by now.
            let _ = lost.send(true);
            return;
        }
    }
}

/// Runs `work` on one collection of the request's device under the collection's lease (see
/// the module documentation); the lease lost midway ends `work` unfinished (nothing it did
/// not commit is kept) with 503.
pub async fn leased<B, S, T, F>(
    gw: &Gateway<B, S>,
    ctx: &Context,
    collection: &str,
    work: F,
) -> Result<T, CommandError>
where
    B: MailBackend,
    S: StateStore,
    F: Future<Output = Result<T, CommandError>>,
{
    let lease = Lease::take(
        &gw.store,
        &gw.config.cluster,
        &ctx.user.address,
        ctx.device_id(),
        &[collection],
    )
    .await?;
    let out = tokio::select! {
        out = work => out,
        _ = lease.lost() => Err(CommandError::StoreUnavailable(StoreError::Conflict(
            "the sync lease was lost to another gateway node".into(),
        ))),
    };
    lease.release().await;
    out
}
