//! Which UID holds a draft now. A draft keeps its ServerId `<collection>:<item>` across
//! versions (EAS 16.0 drafts, MS-ASCMD 2.2.3.7.2): `item` is the UID of its first version and
//! every later version's UID is recorded against it in the state store, per user
//! ([`StateStore::record_draft_version`]). Sync's Drafts handling writes the versions; every
//! command naming an item by ServerId (ItemOperations, GetAttachment, MoveItems) reads them
//! through [`current_uid`].

use crate::backend::{MailFolder, MailSession, SpecialUse};
use crate::commands::CommandError;
use crate::state::{DraftVersion, StateStore};

/// Where the drafts of this request live.
pub struct Folder<'a, S> {
    pub store: &'a S,
    pub user: &'a str,
    pub cid: &'a str,
    pub uid_validity: u32,
    pub mailbox: &'a str,
}

impl<S: StateStore> Folder<'_, S> {
    /// The UID holding the draft `item` now (its newest recorded version, else the item
    /// itself) and every UID it has had.
    pub async fn versions(&self, item: u32) -> Result<(u32, Vec<u32>), CommandError> {
        let recorded = self
            .store
            .draft_item_versions(self.user, self.cid, self.uid_validity, item)
            .await?;
        let mut all: Vec<u32> = recorded.iter().map(|v| v.uid).collect();
        if !all.contains(&item) {
            all.push(item);
        }
        let current = recorded.iter().map(|v| v.uid).max().unwrap_or(item);
        Ok((current, all))
    }

    pub async fn record(
        &self,
        uid: u32,
        item: u32,
        message_id: &str,
        client_key: Option<&str>,
    ) -> Result<(), CommandError> {
        self.store
            .record_draft_version(
                self.user,
                self.cid,
                self.uid_validity,
                &DraftVersion {
                    uid,
                    item,
                    message_id: Some(message_id.to_string()),
                },
                client_key,
            )
            .await?;
        Ok(())
    }
}

/// The UID that holds item `uid` of collection `cid` (in `mailbox`) now. A draft keeps its
/// ServerId, and the FileReferences of its attachments, across versions: in Drafts this is its
/// newest recorded version, or `uid` itself when none is recorded; elsewhere it is `uid`. For
/// commands that name an item outside Sync (ItemOperations, GetAttachment, MoveItems).
pub async fn current_uid<M: MailSession, S: StateStore>(
    store: &S,
    session: &mut M,
    user: &str,
    cid: &str,
    mailbox: &MailFolder,
    uid: u32,
) -> Result<u32, CommandError> {
    if mailbox.special_use != Some(SpecialUse::Drafts) {
        return Ok(uid);
    }
    let folder = Folder {
        store,
        user,
        cid,
        uid_validity: session.select(&mailbox.name).await?.uid_validity,
        mailbox: &mailbox.name,
    };
    Ok(folder.versions(uid).await?.0)
}
