//! Device -> server: the Change, Delete, Fetch and Add commands of a Sync request, applied to
//! the IMAP mailbox before server changes are computed (MS-ASCMD 3.2.5.1.1).
//!
//! Change sets `\Seen` (Read) and `\Flagged` (Flag Status 2 = flagged, 0/1 = cleared). When
//! the mail's flags changed on the server since the device's view, the Sync Options `Conflict`
//! decides ([`Conflict`]): the server wins by default (the change is not applied, it is answered
//! Status 7 and the server's flags reach the device as a Change), `Conflict` 0 applies it
//! and still sends the device the mail's flags as they are then.
//! Delete moves the mail to Trash when DeletesAsMoves is set and the folder is not Trash, else
//! expunges it. A replayed request replays its changes: both are idempotent on IMAP, and a
//! Delete of a mail that is already gone is answered as done.

use std::collections::HashMap;

use tracing::debug;

use crate::backend::{BackendError, FlagStore, MailSession};
use crate::eas::sync::{status, ClientCommand, ClientResponse};
use crate::uidset::UidSet;
use crate::wbxml::tags::{email, email2};
use crate::wbxml::Element;

use super::view::flag_bits;

/// What applying the device's commands did.
#[derive(Debug, Default)]
pub struct Applied {
    pub responses: Vec<ClientResponse>,
    /// UIDs whose flags the device changed (not echoed back as Change).
    pub touched: UidSet,
    /// UIDs the device deleted (no longer in its view).
    pub removed: UidSet,
    /// Fetch commands, answered after the changes (they need bodies).
    pub fetches: Vec<String>,
    /// UIDs the device created (draft Add / Change): added to its view, not sent back.
    pub added: UidSet,
}

/// What a device's flag Change is checked against (MS-ASCMD 2.2.3.34 Conflict).
#[derive(Debug, Clone, Copy)]
pub struct Conflict<'a> {
    /// Conflict 1 (the default): the server's flags win.
    pub server_wins: bool,
    /// The view's HIGHESTMODSEQ (CONDSTORE): a mail with a higher MODSEQ changed since.
    pub since_modseq: u64,
    /// The view's flag bits per UID, where the server has no mod-sequences.
    pub flags: Option<&'a HashMap<u32, u8>>,
}

/// What became of a device's flag edit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Edit {
    Stored,
    /// Stored although the server had changed the mail too (client wins): the device is sent
    /// the mail's flags as they are now.
    StoredOverServer,
    /// Not stored: the server changed the mail and wins (Status 7).
    Refused,
    /// The mail does not exist (Status 8).
    Missing,
}

impl Conflict<'_> {
    /// Which of `uids` changed on the server since the view, where only comparing flag bits
    /// can tell (no mod-sequences). With mod-sequences the check is the conditional STORE of
    /// [`Conflict::edit`], in the same round trip.
    pub async fn changed_on_server<M: MailSession>(
        &self,
        session: &mut M,
        mailbox: &str,
        uids: &UidSet,
    ) -> Result<UidSet, BackendError> {
        let Some(old) = self.flags.filter(|_| !uids.is_empty()) else {
            return Ok(UidSet::new());
        };
        let metas = session.fetch_meta(mailbox, uids, None).await?;
        Ok(UidSet::from_uids(
            metas
                .iter()
                .filter(|m| old.get(&m.uid).is_some_and(|b| *b != flag_bits(m)))
                .map(|m| m.uid),
        ))
    }

    /// Applies a flag edit under the Conflict rule. `changed` says the flag-bit comparison
    /// ([`Conflict::changed_on_server`]) found a server change; with mod-sequences the STORE is
    /// conditional on the view's HIGHESTMODSEQ (one round trip; a second only when the client
    /// wins a conflict).
    pub async fn edit<M: MailSession>(
        &self,
        session: &mut M,
        mailbox: &str,
        uid: u32,
        add: &[String],
        remove: &[String],
        changed: bool,
    ) -> Result<Edit, BackendError> {
        let conflict = if changed {
            true
        } else if self.flags.is_none() && self.since_modseq > 0 {
            match session
                .store_flags_unchanged_since(mailbox, uid, add, remove, self.since_modseq)
                .await?
            {
                FlagStore::Stored => return Ok(Edit::Stored),
                FlagStore::Missing => return Ok(Edit::Missing),
                FlagStore::Modified => true,
            }
        } else {
            false
        };
        if conflict && self.server_wins {
            return Ok(Edit::Refused);
        }
        Ok(
            match session.store_flags(mailbox, uid, add, remove).await? {
                false => Edit::Missing,
                true if conflict => Edit::StoredOverServer,
                true => Edit::Stored,
            },
        )
    }

    /// Applies the flag edits of the device's Change `server_id` (Read, Flag) to `uid` under
    /// the Conflict rule and notes the outcome in `out`: the mail touched, or the Change's
    /// Status 7 / 8. `conflicted` is what [`Conflict::changed_on_server`] found for the
    /// request's changed mails; `None` checks `uid` alone here. A Change with no flag edit does
    /// nothing.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn change_flags<M: MailSession>(
        &self,
        session: &mut M,
        mailbox: &str,
        server_id: &str,
        uid: u32,
        data: &Element,
        conflicted: Option<&UidSet>,
        out: &mut Applied,
    ) -> Result<(), BackendError> {
        let (add, remove) = flag_edits(data);
        if add.is_empty() && remove.is_empty() {
            return Ok(());
        }
        let changed = match conflicted {
            Some(c) => c.contains(uid),
            None => self
                .changed_on_server(session, mailbox, &UidSet::from_uids([uid]))
                .await?
                .contains(uid),
        };
        match self
            .edit(session, mailbox, uid, &add, &remove, changed)
            .await?
        {
            Edit::Stored => out.touched.insert(uid),
            // Client wins over a server change: the device still gets the mail's flags.
            Edit::StoredOverServer => {}
            // The server wins: not applied; its flags reach the device as a Change.
            Edit::Refused => out
                .responses
                .push(change_response(server_id, status::CONFLICT)),
            Edit::Missing => out
                .responses
                .push(change_response(server_id, status::OBJECT_NOT_FOUND)),
        }
        Ok(())
    }
}

pub use crate::commands::ids::{parse_server_id, server_id};

/// Applies the commands in order. `trash` is the Trash mailbox unless this folder is Trash.
pub async fn apply<M: MailSession>(
    session: &mut M,
    mailbox: &str,
    collection_id: &str,
    commands: &[ClientCommand],
    deletes_as_moves: bool,
    trash: Option<&str>,
    conflict: Conflict<'_>,
) -> Result<Applied, BackendError> {
    let mut out = Applied::default();
    let changed_uids = UidSet::from_uids(commands.iter().filter_map(|c| match c {
        ClientCommand::Change {
            server_id, data, ..
        } if invalid_change(data).is_none() => {
            let (add, remove) = flag_edits(data);
            (!add.is_empty() || !remove.is_empty())
                .then(|| parse_server_id(collection_id, server_id))
                .flatten()
        }
        _ => None,
    }));
    let conflicted = conflict
        .changed_on_server(session, mailbox, &changed_uids)
        .await?;
    for cmd in commands {
        match cmd {
            ClientCommand::Change {
                server_id, data, ..
            } => {
                let Some(uid) = parse_server_id(collection_id, server_id) else {
                    out.responses
                        .push(change_response(server_id, status::OBJECT_NOT_FOUND));
                    continue;
                };
                if let Some(why) = invalid_change(data) {
                    debug!(server_id, why, "Change refused");
                    out.responses
                        .push(change_response(server_id, status::CONVERSION_ERROR));
                    continue;
                }
                conflict
                    .change_flags(
                        session,
                        mailbox,
                        server_id,
                        uid,
                        data,
                        Some(&conflicted),
                        &mut out,
                    )
                    .await?;
            }
            ClientCommand::Delete { server_id } => {
                let Some(uid) = parse_server_id(collection_id, server_id) else {
                    out.responses.push(ClientResponse::Delete {
                        server_id: server_id.clone(),
                        status: status::OBJECT_NOT_FOUND,
                    });
                    continue;
                };
                let uids = [uid];
                match (deletes_as_moves, trash) {
                    (true, Some(trash)) => {
                        session.move_messages(mailbox, &uids, trash).await?;
                    }
                    _ => {
                        session.expunge(mailbox, &uids).await?;
                    }
                }
                out.removed.insert(uid);
            }
            ClientCommand::Fetch { server_id } => out.fetches.push(server_id.clone()),
            ClientCommand::Add { client_id, .. } => {
                // Mail cannot be created by Sync Add outside Drafts (MS-ASCMD 2.2.3.7.2).
                out.responses.push(ClientResponse::Add {
                    client_id: client_id.clone(),
                    server_id: None,
                    status: status::CONVERSION_ERROR,
                    data: None,
                });
            }
        }
    }
    Ok(out)
}

pub(super) fn change_response(server_id: &str, status: u32) -> ClientResponse {
    ClientResponse::Change {
        server_id: server_id.to_string(),
        status,
        data: None,
    }
}

/// Most Category elements in Categories (MS-ASEMAIL 2.2.2.9).
const MAX_CATEGORIES: usize = 300;

/// Why the ApplicationData of a mail Change cannot be applied (Status 6), if it cannot: Read is
/// a boolean (MS-ASEMAIL 2.2.2.47, [MS-ASDTYPE] 2.1), a Flag Status is 0, 1 or 2 (2.2.2.74),
/// Categories holds at most 300 Category elements (2.2.2.9), and ConversationId and
/// ConversationIndex are the server's (2.2.2.21, 2.2.2.22). Other read-only elements
/// (Subject, From ...) are left alone without an error, as MS-ASCMD 2.2.3.24 says a Change
/// that sends them costs bandwidth only.
pub(super) fn invalid_change(data: &Element) -> Option<&'static str> {
    if let Some(read) = data.first(email::READ) {
        if !matches!(read.text().map(str::trim), Some("0" | "1")) {
            return Some("Read is not 0 or 1");
        }
    }
    if let Some(flag) = data.first(email::FLAG) {
        if let Some(st) = flag.first(email::STATUS) {
            if !matches!(st.text().map(str::trim), Some("0" | "1" | "2")) {
                return Some("Flag Status is not 0, 1 or 2");
            }
        }
    }
    if let Some(cats) = data.first(email::CATEGORIES) {
        if cats.elements().any(|c| c.tag != email::CATEGORY)
            || cats.all(email::CATEGORY).count() > MAX_CATEGORIES
        {
            return Some("Categories holds other elements or too many");
        }
    }
    if data.first(email2::CONVERSATION_ID).is_some()
        || data.first(email2::CONVERSATION_INDEX).is_some()
    {
        return Some("ConversationId and ConversationIndex are read-only");
    }
    None
}

/// The IMAP flag edits of a Change's ApplicationData: (add, remove).
pub(super) fn flag_edits(data: &Element) -> (Vec<String>, Vec<String>) {
    let mut add = Vec::new();
    let mut remove = Vec::new();
    match data.text_of(email::READ).map(str::trim) {
        Some("1") => add.push("\\Seen".to_string()),
        Some("0") => remove.push("\\Seen".to_string()),
        _ => {}
    }
    if let Some(flag) = data.first(email::FLAG) {
        match flag.text_of(email::STATUS).map(str::trim) {
            Some("2") => add.push("\\Flagged".to_string()),
            _ => remove.push("\\Flagged".to_string()),
        }
    }
    (add, remove)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wbxml::tags::airsync;

    #[test]
    fn server_ids() {
        assert_eq!(parse_server_id("5", "5:42"), Some(42));
        assert_eq!(parse_server_id("5", "6:42"), None);
        assert_eq!(parse_server_id("5", "5:0"), None);
        assert_eq!(parse_server_id("5", "42"), None);
        assert_eq!(server_id("5", 42), "5:42");
    }

    #[test]
    fn invalid_changes() {
        let app = || Element::new(airsync::APPLICATION_DATA);
        assert_eq!(invalid_change(&app().text_child(email::READ, "1")), None);
        assert_eq!(
            invalid_change(&app().child(Element::new(email::FLAG))),
            None
        );
        assert!(invalid_change(&app().text_child(email::READ, "2")).is_some());
        assert!(invalid_change(&app().text_child(email::READ, "yes")).is_some());
        assert!(invalid_change(
            &app().child(Element::new(email::FLAG).text_child(email::STATUS, "3"))
        )
        .is_some());
        assert!(invalid_change(&app().text_child(email2::CONVERSATION_ID, "x")).is_some());
        assert_eq!(invalid_change(&app().text_child(email::SUBJECT, "x")), None);
    }

    #[test]
    fn read_and_flag_edits() {
        let data = Element::new(airsync::APPLICATION_DATA)
            .text_child(email::READ, "1")
            .child(Element::new(email::FLAG).text_child(email::STATUS, "2"));
        assert_eq!(
            flag_edits(&data),
            (vec!["\\Seen".into(), "\\Flagged".into()], vec![])
        );
        let data = Element::new(airsync::APPLICATION_DATA)
            .text_child(email::READ, "0")
            .child(Element::new(email::FLAG));
        assert_eq!(
            flag_edits(&data),
            (vec![], vec!["\\Seen".into(), "\\Flagged".into()])
        );
    }
}
