//! Device -> server: the Change, Delete, Fetch and Add commands of a Sync request, applied to
//! the IMAP mailbox before server changes are computed (MS-ASCMD 3.2.5.1.1).
//!
//! Change sets `\Seen` (Read) and `\Flagged` (Flag Status 2 = flagged, 0/1 = cleared).
//! Delete moves the mail to Trash when DeletesAsMoves is set and the folder is not Trash, else
//! expunges it. A replayed request replays its changes: both are idempotent on IMAP, and a
//! Delete of a mail that is already gone is answered as done.

use crate::backend::{BackendError, MailSession};
use crate::eas::sync::{status, ClientCommand, ClientResponse};
use crate::uidset::UidSet;
use crate::wbxml::tags::email;
use crate::wbxml::Element;

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
}

/// Parses `<collection>:<uid>`; the collection must be this one.
pub fn parse_server_id(collection_id: &str, server_id: &str) -> Option<u32> {
    let (c, uid) = server_id.rsplit_once(':')?;
    if c != collection_id {
        return None;
    }
    uid.parse().ok().filter(|u| *u != 0)
}

pub fn server_id(collection_id: &str, uid: u32) -> String {
    format!("{collection_id}:{uid}")
}

/// Applies the commands in order. `trash` is the Trash mailbox unless this folder is Trash.
pub async fn apply<M: MailSession>(
    session: &mut M,
    mailbox: &str,
    collection_id: &str,
    commands: &[ClientCommand],
    deletes_as_moves: bool,
    trash: Option<&str>,
) -> Result<Applied, BackendError> {
    let mut out = Applied::default();
    for cmd in commands {
        match cmd {
            ClientCommand::Change { server_id, data } => {
                let Some(uid) = parse_server_id(collection_id, server_id) else {
                    out.responses.push(ClientResponse::Change {
                        server_id: server_id.clone(),
                        status: status::OBJECT_NOT_FOUND,
                    });
                    continue;
                };
                let (add, remove) = flag_edits(data);
                if add.is_empty() && remove.is_empty() {
                    continue;
                }
                let found = session.store_flags(mailbox, uid, &add, &remove).await?;
                if found {
                    out.touched.insert(uid);
                } else {
                    out.responses.push(ClientResponse::Change {
                        server_id: server_id.clone(),
                        status: status::OBJECT_NOT_FOUND,
                    });
                }
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
                });
            }
        }
    }
    Ok(out)
}

/// The IMAP flag edits of a Change's ApplicationData: (add, remove).
fn flag_edits(data: &Element) -> (Vec<String>, Vec<String>) {
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
