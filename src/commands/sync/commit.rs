//! The new view under the new key, committed in one transaction before the answer is written
//! (a crash between the two is the lost-response case the previous key covers).

use crate::backend::MailBackend;
use crate::eas::sync::{status, ClientResponse, CollectionResponse};
use crate::state::StateStore;

use super::super::CommandError;
use super::collection::{Answer, Collection};
use super::key::Held;
use super::window::Window;

impl<B: MailBackend, S: StateStore> Collection<'_, B, S> {
    /// Commits the view `window` leaves the device with and answers. With nothing to tell (no
    /// items, no answers to commands, no replay), the key stays valid and nothing is answered,
    /// but a newer mod-sequence is remembered so the next request takes the fast path again.
    pub(super) async fn commit(
        &self,
        held: &Held,
        window: Window,
        responses: Vec<ClientResponse>,
    ) -> Result<Answer, CommandError> {
        let Window {
            commands,
            view: mut new_view,
            ..
        } = window;
        let quiet = commands.is_empty() && responses.is_empty();
        if quiet && !self.has_commands() && !held.replay {
            if new_view != held.view {
                new_view.key = held.view.key;
                self.store_view(&new_view).await?;
            }
            return Ok(None);
        }
        new_view.key = held.next_key;
        self.store_view(&new_view).await?;
        Ok(Some(CollectionResponse {
            sync_key: Some(held.next_key.to_string()),
            collection_id: self.cid.to_string(),
            status: status::SUCCESS,
            more_available: new_view.more_available,
            commands,
            responses,
        }))
    }

    async fn store_view(&self, view: &super::view::View) -> Result<(), CommandError> {
        self.gw
            .store
            .commit_collection(
                self.user,
                self.device,
                self.cid,
                &view.encode(),
                self.options_bytes.as_deref(),
            )
            .await?;
        Ok(())
    }
}
