//! One collection of a Sync request, in the order MS-ASCMD 3.2.5.1.1 gives:
//!
//! 1. [`Collection::open`]: the folder, its stored state and the Options that apply.
//! 2. [`Collection::resolve_key`] (`key.rs`): the view the sync key names, or a fresh start
//!    (key 0), or Status 3; the previous key is a replay of a request whose answer was lost.
//! 3. [`Collection::apply_client_changes`] (`apply.rs`): the device's Change, Delete and Add.
//! 4. [`Collection::collect`] (`window.rs`): the server's changes since the view, cut to the
//!    window, with MoreAvailable for the rest.
//! 5. [`Collection::commit`] (`commit.rs`): the new view under the new key, in one
//!    transaction, then the answer.
//!
//! Each phase may answer the collection early ([`Step`]). The mails a window adds come from
//! a [`super::pages::PageSource`], which hides whether they were read ahead.

use std::ops::ControlFlow;

use bytes::Bytes;
use tracing::debug;

use crate::backend::{MailBackend, MailFolder, SpecialUse};
use crate::eas::sync::{
    effective_window_size, filter_days, status, CollectionRequest, CollectionResponse, SyncOptions,
    DEFAULT_WINDOW_SIZE,
};
use crate::state::{CollectionState, StateStore};
use crate::wbxml::{self, Limits};

use super::super::{folders, CommandError, Context, Gateway};
use super::pages::{NextPages, ReadAhead};
use super::session::RequestSession;
use super::view::window_start;

/// What a collection answers: `None` when it has nothing to report (its key stays valid).
pub(super) type Answer = Option<CollectionResponse>;

/// A phase's outcome: go on with `T`, or answer the collection now.
pub(super) type Step<T> = ControlFlow<Answer, T>;

/// One collection of a Sync request, as its phases see it.
pub(super) struct Collection<'r, B: MailBackend, S> {
    pub gw: &'r Gateway<B, S>,
    pub ctx: &'r Context,
    pub col: &'r CollectionRequest,
    pub user: &'r str,
    pub device: &'r str,
    /// The collection id.
    pub cid: &'r str,
    /// From the request, else cached for this collection, else the defaults.
    pub options: SyncOptions,
    /// The request's own Options, stored with the new view (`None` keeps the cached ones).
    pub options_bytes: Option<Vec<u8>>,
    /// Start of the FilterType window.
    pub window: Option<i64>,
    /// Items the request's earlier collections left of its WindowSize.
    pub budget: usize,
}

/// Syncs one collection: `Ok(None)` when it has nothing to report (its key stays valid).
/// Pages to read ahead once the request's session is back in the pool go to `next_pages`.
pub(super) async fn sync_collection<B: MailBackend, S: StateStore>(
    gw: &Gateway<B, S>,
    ctx: &Context,
    session: &mut RequestSession<'_, B>,
    col: &CollectionRequest,
    budget: usize,
    next_pages: &mut NextPages,
) -> Result<Answer, CommandError> {
    let (c, mailbox, state) = match Collection::open(gw, ctx, session, col, budget).await? {
        ControlFlow::Continue(opened) => opened,
        ControlFlow::Break(answer) => return Ok(answer),
    };
    let mut reads = ReadAhead::new(gw, ctx, c.cid, next_pages);
    let held = match c
        .resolve_key(session, state, mailbox.as_ref(), &reads)
        .await?
    {
        ControlFlow::Continue(held) => held,
        ControlFlow::Break(answer) => return Ok(answer),
    };
    let Some(mailbox) = mailbox else {
        return Ok(c.without_mailbox(&held));
    };
    if c.unchanged(session, &mailbox, &held).await? {
        return Ok(None);
    }
    let device = c.apply_client_changes(session, &mailbox, held).await?;
    let window = match c.collect(session, &mailbox, &device, &mut reads).await? {
        ControlFlow::Continue(window) => window,
        ControlFlow::Break(answer) => return Ok(answer),
    };
    let responses = c
        .responses(session, &mailbox, device.applied, &window.body_options)
        .await?;
    c.commit(&device.held, window, responses).await
}

impl<'r, B: MailBackend, S: StateStore> Collection<'r, B, S> {
    /// The collection's folder (Status 12 when there is none), its stored state, and the
    /// Options that apply (Status 4 when they cannot be read). Folders without a mailbox
    /// (Outbox, \Noselect parents) sync as empty folders: their mailbox is `None`.
    pub(super) async fn open(
        gw: &'r Gateway<B, S>,
        ctx: &'r Context,
        session: &mut RequestSession<'_, B>,
        col: &'r CollectionRequest,
        budget: usize,
    ) -> Result<Step<(Self, Option<MailFolder>, Option<CollectionState>)>, CommandError> {
        let user = ctx.user.address.as_str();
        let device = ctx.device_id();
        let cid = col.collection_id.as_str();
        let resolved = match gw.folders.find(user, cid) {
            Some(r) => Some(r),
            None => {
                folders::resolve(&gw.store, &gw.folders, session.get().await?, user, cid).await?
            }
        };
        let Some(resolved) = resolved else {
            debug!(collection_id = cid, "unknown collection");
            return Ok(ControlFlow::Break(Some(CollectionResponse::error(
                cid,
                status::FOLDER_HIERARCHY_CHANGED,
            ))));
        };
        let state = gw.store.collection_state(user, device, cid).await?;
        let options_element = match &col.options {
            Some(o) => Some(o.clone()),
            None => state
                .as_ref()
                .and_then(|s| s.options.as_ref())
                .and_then(|b| wbxml::decode(Bytes::from(b.clone()), &Limits::default()).ok()),
        };
        let options = match options_element.as_ref().map(SyncOptions::from_element) {
            Some(Ok(o)) => o,
            Some(Err(e)) => {
                debug!(error = %e, "bad Sync Options");
                return Ok(ControlFlow::Break(Some(CollectionResponse::error(
                    cid,
                    status::PROTOCOL_ERROR,
                ))));
            }
            None => SyncOptions::default(),
        };
        let c = Collection {
            gw,
            ctx,
            col,
            user,
            device,
            cid,
            options_bytes: col.options.as_ref().map(wbxml::encode),
            window: window_start(filter_days(options.filter_type), ctx.now),
            options,
            budget,
        };
        let mailbox = resolved.mailbox.filter(|m| m.selectable);
        Ok(ControlFlow::Continue((c, mailbox, state)))
    }

    /// The request carries Change, Delete, Add or Fetch commands for this collection.
    pub(super) fn has_commands(&self) -> bool {
        !self.col.commands.is_empty()
    }

    /// GetChanges (true when absent).
    pub(super) fn get_changes(&self) -> bool {
        self.col.get_changes.unwrap_or(true)
    }

    /// Most items this response may carry: the collection's WindowSize, within what the
    /// request's earlier collections left of the request's.
    pub(super) fn limit(&self) -> usize {
        let limit = self
            .col
            .window_size
            .map_or(DEFAULT_WINDOW_SIZE, effective_window_size) as usize;
        limit.min(self.budget.max(1))
    }
}

/// The Drafts folder, whose items have ServerIds of their own (`drafts.rs`).
pub(super) fn in_drafts(mailbox: &MailFolder) -> bool {
    mailbox.special_use == Some(SpecialUse::Drafts)
}
