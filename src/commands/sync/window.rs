//! The server's changes since the device's view, cut to the window (MS-ASCMD 2.2.3.199
//! WindowSize, 2.2.3.114 MoreAvailable): Deletes, SoftDeletes (mails that left the FilterType
//! window), flag Changes, then Adds newest first ([`server_changes`]). A mail the device was
//! never sent gets no Change or Delete, and no mail is added twice: the view the answer leaves
//! the device with is computed with the commands.

use std::ops::ControlFlow;

use tracing::debug;

use crate::backend::{MailBackend, MailFolder, MailSession, MailboxState};
use crate::eas::sync::{status, CollectionResponse, ServerCommand};
use crate::mime;
use crate::state::StateStore;

use super::super::CommandError;
use super::apply::DeviceView;
use super::client_changes::server_id;
use super::collection::{in_drafts, Collection, Step};
use super::pages::ReadAhead;
use super::server_changes::{self, Changes, Items, ListingSlot, Since};
use super::session::RequestSession;
use super::view::{flag_bits, View};
use super::{body_options, drafts, mail_flags};

/// What the answer sends of the server's changes.
pub(super) struct Window {
    pub commands: Vec<ServerCommand>,
    /// The view the device holds once it has them.
    pub view: View,
    /// How the answer's items are converted (Fetches too).
    pub body_options: mime::BodyOptions,
}

impl<B: MailBackend, S: StateStore> Collection<'_, B, S> {
    /// The server's changes to send, or Status 3 when the folder's UIDVALIDITY changed.
    pub(super) async fn collect(
        &self,
        session: &mut RequestSession<'_, B>,
        mailbox: &MailFolder,
        device: &DeviceView,
        reads: &mut ReadAhead<'_, B>,
    ) -> Result<Step<Window>, CommandError> {
        let limit = self.limit();
        let (mstate, mut changes) = match self
            .server_changes(session, mailbox, device, limit, reads)
            .await?
        {
            ControlFlow::Continue(found) => found,
            ControlFlow::Break(answer) => return Ok(ControlFlow::Break(answer)),
        };
        let body_options = body_options(&self.options, self.ctx.version);
        let mut view = changes
            .new_view
            .take()
            .unwrap_or_else(|| device.view.clone());
        let mut commands = self.change_commands(&changes);
        let mut pages = reads.pages(mailbox, mstate, &body_options);
        if !changes.adds.is_empty() {
            let keep_session = !device.applied.fetches.is_empty();
            let items = pages
                .next_page(session, &changes, limit, keep_session)
                .await?;
            self.add_commands(&changes.adds, items, &mut view, &mut commands);
        }
        pages.after(&changes, limit);
        if in_drafts(mailbox) {
            drafts::server_commands(
                &self.gw.store,
                session.get().await?,
                self.user,
                self.cid,
                mstate.uid_validity,
                &mailbox.name,
                &mut commands,
            )
            .await?;
        }
        Ok(ControlFlow::Continue(Window {
            commands,
            view,
            body_options,
        }))
    }

    /// What changed on the server, cut to `limit`, and the folder's state it was found in.
    /// A device paging through the folder whose next pages are read ahead: when the folder is
    /// still as the read-ahead found it, the changes are the kept listing's next UIDs, and the
    /// mail server is not asked.
    async fn server_changes(
        &self,
        session: &mut RequestSession<'_, B>,
        mailbox: &MailFolder,
        device: &DeviceView,
        limit: usize,
        reads: &ReadAhead<'_, B>,
    ) -> Result<Step<(MailboxState, Changes)>, CommandError> {
        let held = &device.held;
        let has_commands = self.has_commands();
        let get_changes = self.get_changes();
        let slot = || ListingSlot {
            listings: &self.gw.sync.listings,
            user: self.user,
            device: self.device,
            collection: self.cid,
        };
        if !has_commands && !held.replay && get_changes && held.view.more_available {
            if let Some(st) = reads.paging_state().await {
                if let Some(c) =
                    server_changes::compute_paged(&device.view, st, self.window, limit, slot())
                {
                    return Ok(ControlFlow::Continue((st, c)));
                }
            }
        }
        let session = session.get().await?;
        let mstate = session.select(&mailbox.name).await?;
        if mstate.uid_validity != held.view.uid_validity {
            debug!(
                collection_id = self.cid,
                "UIDVALIDITY changed: the device must resync"
            );
            crate::metrics::sync_key_reset("Sync", "uidvalidity");
            return Ok(ControlFlow::Break(Some(CollectionResponse::error(
                self.cid,
                status::INVALID_SYNC_KEY,
            ))));
        }
        let unchanged = || Changes {
            new_view: Some(device.view.clone()),
            ..Default::default()
        };
        // GetChanges 0 sends nothing, but when the device's own changes are all that
        // changed, the view moves past them, so they do not wake its Ping.
        let own_only =
            !get_changes && has_commands && mstate.highest_modseq > device.view.highest_modseq;
        if !get_changes && !own_only {
            return Ok(ControlFlow::Continue((mstate, unchanged())));
        }
        let since = Since {
            held: &device.view,
            state: mstate,
            window: self.window,
            touched: &device.applied.touched,
            limit,
        };
        let found =
            server_changes::compute(session, &mailbox.name, since, get_changes.then(slot)).await?;
        let changes = match found.new_view {
            _ if get_changes => found,
            Some(view) if found.is_empty() && found.pending == 0 => Changes {
                new_view: Some(view),
                ..Default::default()
            },
            _ => unchanged(),
        };
        Ok(ControlFlow::Continue((mstate, changes)))
    }

    /// Deletes, SoftDeletes and flag Changes, in that order.
    fn change_commands(&self, changes: &Changes) -> Vec<ServerCommand> {
        let cid = self.cid;
        let mut commands = Vec::new();
        for uid in &changes.deletes {
            commands.push(ServerCommand::Delete {
                server_id: server_id(cid, *uid),
            });
        }
        for uid in &changes.soft_deletes {
            commands.push(ServerCommand::SoftDelete {
                server_id: server_id(cid, *uid),
            });
        }
        for meta in &changes.changes {
            commands.push(ServerCommand::Change {
                server_id: server_id(cid, meta.uid),
                data: mime::flag_change(&mail_flags(meta), self.ctx.version),
            });
        }
        commands
    }

    /// Adds, newest first. A mail expunged between the search and the fetch is not sent and
    /// leaves the view.
    fn add_commands(
        &self,
        adds: &[u32],
        mut items: Items,
        view: &mut View,
        commands: &mut Vec<ServerCommand>,
    ) {
        for uid in adds {
            let Some((meta, data)) = items.remove(uid) else {
                view.uids.remove(*uid);
                continue;
            };
            if let Some(f) = view.flags.as_mut() {
                f.insert(*uid, flag_bits(&meta));
            }
            commands.push(ServerCommand::Add {
                data,
                server_id: server_id(self.cid, *uid),
            });
        }
    }
}
