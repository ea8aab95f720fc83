//! The IMAP session of one Sync request, taken from the pool only when first needed: a device
//! paging through a folder is answered from the pages read ahead for it, without a session of
//! its own.

use std::net::IpAddr;

use crate::backend::pool::{Pooled, SessionPool};
use crate::backend::{BackendError, Credentials, MailBackend};

use super::prefetch::Prefetches;
use crate::commands::{Context, Gateway};
use crate::state::StateStore;

pub struct RequestSession<'a, B: MailBackend> {
    pool: &'a SessionPool<B>,
    prefetch: &'a Prefetches,
    creds: &'a Credentials,
    client_ip: Option<IpAddr>,
    user: &'a str,
    device: &'a str,
    /// The request's collections, whose read-aheads pause before a session is taken.
    collections: Vec<&'a str>,
    held: Option<Pooled<B>>,
}

impl<'a, B: MailBackend> RequestSession<'a, B> {
    /// No session yet, for `ctx`'s request on `collections`.
    pub fn new<S: StateStore>(
        gw: &'a Gateway<B, S>,
        ctx: &'a Context,
        collections: Vec<&'a str>,
    ) -> Self {
        RequestSession {
            pool: &gw.sessions,
            prefetch: &gw.sync.prefetch,
            creds: &ctx.user.credentials,
            client_ip: ctx.client_ip,
            user: &ctx.user.address,
            device: ctx.device_id(),
            collections,
            held: None,
        }
    }

    /// The request's session. The first call pauses the read-aheads of the request's
    /// collections and waits until they gave their sessions back, so that the request
    /// normally gets the session that already has its folder selected.
    pub async fn get(&mut self) -> Result<&mut B::Session, BackendError> {
        let s = match self.held.take() {
            Some(s) => s,
            None => {
                for c in &self.collections {
                    self.prefetch.pause(self.user, self.device, c).await;
                }
                self.pool.get(self.creds, self.client_ip).await?
            }
        };
        Ok(&mut **self.held.insert(s))
    }

    /// The session taken so far, for a read-ahead to go on with.
    pub fn hand_over(&mut self) -> Option<Pooled<B>> {
        self.held.take()
    }

    /// Gives the session back to the pool (if one was taken).
    pub fn release(&mut self) {
        self.held = None;
    }
}
