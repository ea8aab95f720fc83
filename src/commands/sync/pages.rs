//! Where the mails a window adds come from. A [`PageSource`] gives a page's items: the ones
//! read ahead for it ([`super::prefetch`]) when they are exactly that page and still current,
//! else read from the mail server now. It also plans the read-ahead of the pages after it. The
//! Sync phases decide what to send; this only decides where its bytes are read.

use crate::backend::pool::SessionPool;
use crate::backend::{BackendError, MailBackend, MailFolder, MailboxState};
use crate::mime::BodyOptions;
use crate::state::StateStore;

use super::super::{Context, Gateway};
use super::collection::in_drafts;
use super::prefetch::{self, Prefetches};
use super::server_changes::{self, Changes, Items};
use super::session::RequestSession;

/// The pages a request's answers leave for later, read ahead once its session is back in the
/// pool (so that they are read on it).
#[derive(Default)]
pub(super) struct NextPages(Vec<prefetch::Plan>);

impl NextPages {
    /// Starts reading the pages ahead.
    pub async fn start<B: MailBackend, S: StateStore>(self, gw: &Gateway<B, S>, ctx: &Context) {
        let preparing = !self.0.is_empty();
        for plan in self.0 {
            gw.sync.prefetch.start(&gw.sessions, ctx, plan, None);
        }
        if preparing {
            // A task spawned by a running task waits in its worker's "next task" slot, which
            // no other worker takes, until the spawning task yields: without this, the next
            // page would start only after this response is encoded and written.
            tokio::task::yield_now().await;
        }
    }
}

/// The read-ahead of one collection, as one request sees it.
pub(super) struct ReadAhead<'r, B: MailBackend> {
    prefetch: &'r Prefetches,
    pool: &'r SessionPool<B>,
    ctx: &'r Context,
    user: &'r str,
    device: &'r str,
    cid: &'r str,
    later: &'r mut NextPages,
}

impl<'r, B: MailBackend> ReadAhead<'r, B> {
    pub fn new<S>(
        gw: &'r Gateway<B, S>,
        ctx: &'r Context,
        cid: &'r str,
        later: &'r mut NextPages,
    ) -> Self {
        ReadAhead {
            prefetch: &gw.sync.prefetch,
            pool: &gw.sessions,
            ctx,
            user: ctx.user.address.as_str(),
            device: ctx.device_id(),
            cid,
            later,
        }
    }

    /// Drops what was read ahead (the collection starts over).
    pub fn forget(&self) {
        self.prefetch.forget(self.user, self.device, self.cid);
    }

    /// The folder's state as the read-ahead of a paging device reads it now, without a session
    /// of the request's own; `None` when nothing is read ahead.
    pub async fn paging_state(&self) -> Option<MailboxState> {
        self.prefetch
            .current_state(self.user, self.device, self.cid)
            .await
    }

    /// The pages of `mailbox` in `state`, converted with `opts`.
    pub fn pages<'a>(
        &'a mut self,
        mailbox: &'a MailFolder,
        state: MailboxState,
        opts: &'a BodyOptions,
    ) -> PageSource<'a, 'r, B> {
        let in_drafts = in_drafts(mailbox);
        PageSource {
            // Drafts have ServerIds of their own; folders without mod-sequences cannot prove
            // a prepared page current.
            prefetchable: !in_drafts && state.highest_modseq > 0,
            reads: self,
            mailbox,
            state,
            opts,
            in_drafts,
        }
    }
}

/// The items of a window's pages.
pub(super) struct PageSource<'a, 'r, B: MailBackend> {
    reads: &'a mut ReadAhead<'r, B>,
    mailbox: &'a MailFolder,
    state: MailboxState,
    opts: &'a BodyOptions,
    in_drafts: bool,
    prefetchable: bool,
}

impl<B: MailBackend> PageSource<'_, '_, B> {
    fn folder(&self) -> prefetch::Folder {
        prefetch::Folder {
            mailbox: self.mailbox.name.clone(),
            collection_id: self.reads.cid.to_string(),
            state: self.state,
            opts: self.opts.clone(),
        }
    }

    /// The items of `changes.adds` (those still there), cut in pages of `limit`.
    /// `keep_session`: the request needs its session after this (Fetches to answer), so it
    /// is not handed to a read-ahead.
    pub async fn next_page(
        &mut self,
        session: &mut RequestSession<'_, B>,
        changes: &Changes,
        limit: usize,
        keep_session: bool,
    ) -> Result<Items, BackendError> {
        let prepared = if self.prefetchable {
            self.prepared(session, changes, limit, keep_session).await
        } else {
            None
        };
        match prepared {
            Some(items) => Ok(items),
            None => {
                server_changes::add_data(
                    session.get().await?,
                    &self.mailbox.name,
                    self.reads.cid,
                    &changes.adds,
                    self.in_drafts,
                    self.opts,
                )
                .await
            }
        }
    }

    /// The page read ahead. A paged sync with nothing read ahead: this page and the next ones
    /// are read by a new read-ahead on this request's session, so the mail server goes on
    /// with the next page while this one is converted.
    async fn prepared(
        &mut self,
        session: &mut RequestSession<'_, B>,
        changes: &Changes,
        limit: usize,
        keep_session: bool,
    ) -> Option<Items> {
        let r = &*self.reads;
        let spec = prefetch::PageSpec {
            mailbox: self.mailbox.name.clone(),
            collection_id: r.cid.to_string(),
            uid_validity: self.state.uid_validity,
            uids: changes.adds.clone(),
            opts: self.opts.clone(),
        };
        let modseq = self.state.highest_modseq;
        let prepared = r.prefetch.take(r.user, r.device, &spec, modseq).await;
        let start = prepared.is_none()
            && !changes.next_adds.is_empty()
            && !keep_session
            && limit <= prefetch::MAX_MAILS
            && !r.prefetch.holds(r.user, r.device, r.cid);
        if !start {
            return prepared;
        }
        let mut pages = vec![changes.adds.clone()];
        pages.extend(changes.next_adds.chunks(limit).map(<[u32]>::to_vec));
        let plan = prefetch::Plan {
            folder: self.folder(),
            pages,
        };
        r.prefetch.start(r.pool, r.ctx, plan, session.hand_over());
        r.prefetch.take(r.user, r.device, &spec, modseq).await
    }

    /// Plans the read-ahead of the pages after this window's (`changes.next_adds`), or drops
    /// it when there are none.
    pub fn after(self, changes: &Changes, limit: usize) {
        if self.prefetchable && !changes.next_adds.is_empty() {
            let plan = prefetch::Plan {
                folder: self.folder(),
                pages: changes
                    .next_adds
                    .chunks(limit)
                    .map(<[u32]>::to_vec)
                    .collect(),
            };
            self.reads.later.0.push(plan);
        } else {
            // Nothing more to read ahead: the task and its session go.
            self.reads.forget();
        }
    }
}
