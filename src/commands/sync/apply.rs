//! The device's own changes, applied before the server's are computed (MS-ASCMD 3.2.5.1.1):
//! flag Changes under the Conflict rule, Deletes, draft Adds ([`client_changes`], or
//! `drafts.rs` in the Drafts folder). Fetches are answered last, after the server's changes
//! ([`Collection::responses`]).

use crate::backend::{MailBackend, MailFolder, SpecialUse};
use crate::eas::sync::ClientResponse;
use crate::mime;
use crate::state::StateStore;

use super::super::{folders, CommandError};
use super::client_changes::{self, Applied, Conflict};
use super::collection::{in_drafts, Collection};
use super::drafts;
use super::key::Held;
use super::session::RequestSession;
use super::view::View;

/// The device once its own changes are applied.
#[derive(Debug)]
pub(super) struct DeviceView {
    /// The view its key names.
    pub held: Held,
    /// That view without the mails the device deleted and with the drafts it created.
    pub view: View,
    pub applied: Applied,
}

impl<B: MailBackend, S: StateStore> Collection<'_, B, S> {
    /// Applies the request's commands to the mailbox.
    pub(super) async fn apply_client_changes(
        &self,
        session: &mut RequestSession<'_, B>,
        mailbox: &MailFolder,
        held: Held,
    ) -> Result<DeviceView, CommandError> {
        let applied = if self.has_commands() {
            self.apply_commands(session, mailbox, &held.view).await?
        } else {
            Applied::default()
        };
        let mut view = held.view.clone();
        for u in applied.removed.iter() {
            view.uids.remove(u);
            if let Some(f) = view.flags.as_mut() {
                f.remove(&u);
            }
        }
        for u in applied.added.iter() {
            view.uids.insert(u);
        }
        Ok(DeviceView {
            held,
            view,
            applied,
        })
    }

    async fn apply_commands(
        &self,
        session: &mut RequestSession<'_, B>,
        mailbox: &MailFolder,
        held: &View,
    ) -> Result<Applied, CommandError> {
        let conflict = Conflict {
            server_wins: self.options.conflict != Some(0),
            since_modseq: held.highest_modseq,
            flags: held.flags.as_ref(),
        };
        if in_drafts(mailbox) {
            return drafts::apply(
                self.gw,
                self.ctx,
                session.get().await?,
                mailbox,
                self.cid,
                &self.col.commands,
                conflict,
                &self.options,
            )
            .await;
        }
        // Deletes move to Trash (DeletesAsMoves), unless this is Trash.
        let trash = if mailbox.special_use == Some(SpecialUse::Trash) {
            None
        } else {
            self.gw
                .folders
                .cached(self.user)
                .and_then(|l| {
                    folders::special(&l, SpecialUse::Trash).and_then(|r| r.mailbox.clone())
                })
                .map(|m| m.name)
        };
        Ok(client_changes::apply(
            session.get().await?,
            &mailbox.name,
            self.cid,
            &self.col.commands,
            self.col.deletes_as_moves,
            trash.as_deref(),
            conflict,
        )
        .await?)
    }

    /// The answers to the device's commands: those of its changes, then its Fetches.
    pub(super) async fn responses(
        &self,
        session: &mut RequestSession<'_, B>,
        mailbox: &MailFolder,
        applied: Applied,
        opts: &mime::BodyOptions,
    ) -> Result<Vec<ClientResponse>, CommandError> {
        let mut responses = applied.responses;
        if !applied.fetches.is_empty() {
            let session = session.get().await?;
            responses.extend(
                super::fetch_items(session, mailbox, self.cid, &applied.fetches, opts).await?,
            );
        }
        Ok(responses)
    }
}
