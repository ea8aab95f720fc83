//! The sync key (MS-ASCMD 2.2.3.177.4, 3.1.5.3): which view of the folder the device holds.
//!
//! Key 0 starts over: the answer is key 1 and no items. The current key goes on from its view.
//! The previous key means our last answer was lost: the request is answered again from the
//! previous view, under the current key, so the device ends up where that answer would have
//! left it. Any other key, or a view that cannot be read, is Status 3 (the device starts over).
//! An unchanged folder with nothing asked of it keeps its key ([`Collection::unchanged`]).

use std::ops::ControlFlow;

use tracing::debug;

use crate::backend::{MailBackend, MailFolder, MailSession};
use crate::eas::sync::{status, CollectionResponse};
use crate::state::{CollectionState, StateStore};
use crate::uidset::UidSet;

use super::super::CommandError;
use super::collection::{Answer, Collection, Step};
use super::pages::ReadAhead;
use super::session::RequestSession;
use super::view::View;

/// The view a sync key names.
#[derive(Debug)]
pub(super) struct Held {
    pub view: View,
    /// The key is the previous one: the request repeats one whose answer was lost.
    pub replay: bool,
    /// The collection's current key.
    pub current_key: u32,
    /// The key the answer carries: a new one, or the current one again for a replay.
    pub next_key: u32,
}

impl<B: MailBackend, S: StateStore> Collection<'_, B, S> {
    /// The view the request's key names, or the answer when it names none (Status 3) or is 0
    /// (a fresh start).
    pub(super) async fn resolve_key(
        &self,
        session: &mut RequestSession<'_, B>,
        state: Option<CollectionState>,
        mailbox: Option<&MailFolder>,
        reads: &ReadAhead<'_, B>,
    ) -> Result<Step<Held>, CommandError> {
        if self.col.sync_key == "0" {
            let answer = self.start_over(session, mailbox, reads).await?;
            return Ok(ControlFlow::Break(answer));
        }
        let invalid = || {
            ControlFlow::Break(Some(CollectionResponse::error(
                self.cid,
                status::INVALID_SYNC_KEY,
            )))
        };
        let Some(state) = state else {
            crate::metrics::sync_key_reset("Sync", "no_state");
            return Ok(invalid());
        };
        let key: Option<u32> = self.col.sync_key.parse().ok();
        let (stored, replay) = match key {
            Some(k) if k == state.current.key => (&state.current, false),
            Some(k) if state.previous.as_ref().is_some_and(|p| p.key == k) => {
                (state.previous.as_ref().unwrap_or(&state.current), true)
            }
            _ => {
                debug!(collection_id = self.cid, sync_key = %self.col.sync_key, "unknown sync key");
                crate::metrics::sync_key_reset("Sync", "unknown_key");
                return Ok(invalid());
            }
        };
        let Some(view) = View::decode(stored) else {
            crate::metrics::sync_key_reset("Sync", "unreadable_state");
            return Ok(invalid());
        };
        let current_key = state.current.key;
        let next_key = if replay {
            current_key
        } else {
            current_key.wrapping_add(1).max(1)
        };
        Ok(ControlFlow::Continue(Held {
            view,
            replay,
            current_key,
            next_key,
        }))
    }

    /// Key 0: forgets the collection's state and answers key 1 with an empty view.
    async fn start_over(
        &self,
        session: &mut RequestSession<'_, B>,
        mailbox: Option<&MailFolder>,
        reads: &ReadAhead<'_, B>,
    ) -> Result<Answer, CommandError> {
        let gw = self.gw;
        gw.sync.listings.forget(self.user, self.device, self.cid);
        reads.forget();
        gw.store
            .reset_collection(self.user, self.device, self.cid)
            .await?;
        let (uid_validity, flags) = match mailbox {
            Some(m) => {
                let st = session.get().await?.select(&m.name).await?;
                let flags = (st.highest_modseq == 0).then(Default::default);
                (st.uid_validity, flags)
            }
            None => (0, None),
        };
        let view = View {
            key: 1,
            uid_validity,
            uids: UidSet::new(),
            highest_modseq: 0,
            flags,
            sent: None,
            filter_start: self.window,
            more_available: false,
        };
        gw.store
            .commit_collection(
                self.user,
                self.device,
                self.cid,
                &view.encode(),
                self.options_bytes.as_deref(),
            )
            .await?;
        Ok(Some(CollectionResponse {
            sync_key: Some("1".into()),
            collection_id: self.cid.to_string(),
            status: status::SUCCESS,
            more_available: false,
            commands: Vec::new(),
            responses: Vec::new(),
        }))
    }

    /// A folder without a mailbox: nothing can change in it. A replay or a request with
    /// commands gets the current key back, with nothing in it.
    pub(super) fn without_mailbox(&self, held: &Held) -> Answer {
        if !held.replay && !self.has_commands() {
            return None;
        }
        Some(CollectionResponse {
            sync_key: Some(held.current_key.to_string()),
            collection_id: self.cid.to_string(),
            status: status::SUCCESS,
            more_available: false,
            commands: Vec::new(),
            responses: Vec::new(),
        })
    }

    /// Whether the collection has nothing to report and its key stays valid, as far as one
    /// STATUS can tell: no commands, no replay, nothing pending, GetChanges 0 or the folder at
    /// the view's UIDVALIDITY and HIGHESTMODSEQ with the same FilterType window.
    pub(super) async fn unchanged(
        &self,
        session: &mut RequestSession<'_, B>,
        mailbox: &MailFolder,
        held: &Held,
    ) -> Result<bool, CommandError> {
        let view = &held.view;
        if self.has_commands() || held.replay || view.more_available || view.flags.is_some() {
            return Ok(false);
        }
        if !self.get_changes() {
            return Ok(true);
        }
        if view.highest_modseq > 0 && view.filter_start == self.window {
            let st = session.get().await?.status(&mailbox.name).await?;
            if st.uid_validity == view.uid_validity && st.highest_modseq == view.highest_modseq {
                return Ok(true);
            }
        }
        Ok(false)
    }
}
