//! Drafts (EAS 16.0 / 16.1): the device writes, changes, deletes and sends drafts with Sync
//! Add / Change / Delete in the Drafts folder (MS-ASCMD 2.2.3.7.2, 2.2.3.24; MS-ASEMAIL
//! `email2:Send`).
//!
//! - Add: the draft ([`crate::compose::draft`], a whole MIME message or fields) is APPENDed
//!   with `\Draft`; the answer carries its ServerId and, for attachments the device added,
//!   ClientId -> FileReference. The ClientId is remembered per device: a repeated Add (the
//!   phone lost our answer) stores nothing and answers the same ServerId.
//! - Change: Read / Flag only are flag edits (with the Sync `Conflict` rule); anything else
//!   replaces the draft: the new version is APPENDed, then the old one expunged.
//! - Delete: the draft is expunged (not moved to Deleted Items).
//! - `email2:Send` in an Add or Change: the draft is submitted like SendMail with a Sent Items
//!   copy (Bcc kept there only), and removed from Drafts. A retry record (per device and
//!   ClientId or ServerId) keeps a replayed request from sending twice.
//!
//! ServerIds stay stable: a draft is an *item* `<collection>:<n>`, where `n` is the UID of its
//! first version; every later version's UID is recorded against the item in the state store,
//! per user, so all the user's devices agree ([`StateStore::record_draft_version`]). The views
//! keep IMAP UIDs; [`server_commands`] turns them into items on the way out. A version that
//! another client made (webmail APPENDs the new version and expunges the old one, keeping the
//! Message-ID) is recognised by its Message-ID when the old version leaves in the same
//! response, and reaches the device as a Change of the same ServerId; otherwise as Delete +
//! Add. The device's own Add and Change go straight into its view, so they never come back.

use std::collections::{HashMap, HashSet};

use bytes::Bytes;
use tracing::{debug, info, warn};

use crate::backend::{MailBackend, MailFolder, MailSession};
use crate::commands::draft_versions::Folder;
use crate::compose::draft::{self as compose_draft, Built, DraftError};
use crate::eas::sync::{
    status, ClientCommand, ClientResponse, DraftData, ServerCommand, SyncOptions,
};
use crate::eas::ProtocolVersion;
use crate::state::{DraftVersion, StateStore};
use crate::uidset::UidSet;
use crate::wbxml::tags::{airsync as a, airsyncbase as b};
use crate::wbxml::Element;

use super::client_changes::{
    change_response, flag_edits, parse_server_id, server_id, Applied, Conflict,
};
use crate::commands::send_once::{self, Claim, Failed, Once, Retry, Settled, Settles};
use crate::commands::{CommandError, Context, Gateway};

/// This request's work in one Drafts collection.
struct Drafts<'a, B: MailBackend, S> {
    gw: &'a Gateway<B, S>,
    ctx: &'a Context,
    folder: Folder<'a, S>,
}

/// How the send of a draft ended (see [`Drafts::send_once`]).
enum DraftSend {
    /// Refused before anything was sent, with the Sync status for the item.
    Refused(u32),
    /// Submitted: sent, or why not.
    Submitted(Result<(), Failed>),
}

impl Settles for DraftSend {
    fn settled(&self) -> Settled {
        match self {
            DraftSend::Refused(_) => Settled::NotSent,
            DraftSend::Submitted(r) => r.settled(),
        }
    }
}

impl DraftSend {
    /// The Sync per-item status. A submission whose outcome is unknown counts as sent (the
    /// retry record keeps it from being sent again).
    fn status(self, user: &str) -> u32 {
        match self {
            DraftSend::Refused(st) => st,
            DraftSend::Submitted(Ok(())) => status::SUCCESS,
            DraftSend::Submitted(Err(f)) => {
                info!(
                    user,
                    compose_status = f.status,
                    reason = f.reason,
                    "draft not sent"
                );
                if f.maybe_sent {
                    status::SUCCESS
                } else {
                    status::CONVERSION_ERROR
                }
            }
        }
    }
}

/// Applies the device's commands in the Drafts collection `cid`.
#[allow(clippy::too_many_arguments)]
pub(super) async fn apply<B: MailBackend, S: StateStore>(
    gw: &Gateway<B, S>,
    ctx: &Context,
    session: &mut B::Session,
    mailbox: &MailFolder,
    cid: &str,
    commands: &[ClientCommand],
    conflict: Conflict<'_>,
    options: &SyncOptions,
) -> Result<Applied, CommandError> {
    let uid_validity = session.select(&mailbox.name).await?.uid_validity;
    let drafts = Drafts {
        gw,
        ctx,
        folder: Folder {
            store: &gw.store,
            user: ctx.user.address.as_str(),
            cid,
            uid_validity,
            mailbox: mailbox.name.as_str(),
        },
    };
    let folder = &drafts.folder;
    let mut out = Applied::default();
    for cmd in commands {
        match cmd {
            ClientCommand::Add {
                client_id,
                data,
                send,
            } => {
                let r = drafts
                    .add(session, client_id, data.as_ref(), *send, &mut out)
                    .await?;
                out.responses.push(r);
            }
            ClientCommand::Change {
                server_id: sid,
                data,
                send,
            } => {
                if let Some(r) = drafts
                    .change(session, sid, data, *send, conflict, &mut out)
                    .await?
                {
                    out.responses.push(r);
                }
            }
            ClientCommand::Delete { server_id: sid } => {
                let Some(item) = parse_server_id(cid, sid) else {
                    out.responses.push(ClientResponse::Delete {
                        server_id: sid.clone(),
                        status: status::OBJECT_NOT_FOUND,
                    });
                    continue;
                };
                let (_, uids) = folder.versions(item).await?;
                session.expunge(folder.mailbox, &uids).await?;
                info!(user = folder.user, server_id = %sid, "draft deleted");
                for u in uids {
                    out.removed.insert(u);
                }
            }
            ClientCommand::Fetch { server_id: sid } => {
                let opts = super::body_options(options, ctx.version);
                let mut r = match parse_server_id(cid, sid) {
                    Some(item) => {
                        let (uid, _) = folder.versions(item).await?;
                        super::fetch_one(session, mailbox, cid, &server_id(cid, uid), &opts).await?
                    }
                    None => ClientResponse::Fetch {
                        server_id: sid.clone(),
                        status: status::OBJECT_NOT_FOUND,
                        data: None,
                    },
                };
                if let ClientResponse::Fetch { server_id: s, .. } = &mut r {
                    s.clone_from(sid);
                }
                out.responses.push(r);
            }
        }
    }
    Ok(out)
}

impl<B: MailBackend, S: StateStore> Drafts<'_, B, S> {
    async fn add(
        &self,
        session: &mut B::Session,
        client_id: &str,
        data: Option<&Element>,
        send: bool,
        out: &mut Applied,
    ) -> Result<ClientResponse, CommandError> {
        let (gw, ctx, folder) = (self.gw, self.ctx, &self.folder);
        let answer =
            |server_id: Option<String>, status: u32, data: Option<Element>| ClientResponse::Add {
                client_id: client_id.to_string(),
                server_id,
                status,
                data,
            };
        let Some(data) = data.filter(|_| ctx.version >= ProtocolVersion::V16_0) else {
            // Mail cannot be created by Sync Add before 16.0 (MS-ASCMD 2.2.3.7.2).
            debug!(version = %ctx.version, "draft Add refused: needs 16.0 and ApplicationData");
            return Ok(answer(None, status::CONVERSION_ERROR, None));
        };
        if client_id.is_empty() {
            debug!("draft Add without ClientId");
            return Ok(answer(None, status::PROTOCOL_ERROR, None));
        }
        let fields = DraftData::from_application_data(data);
        let client_key = format!("{} {client_id}", ctx.device_id());

        if send {
            let key = format!("draft-add\n{}\n{client_id}", ctx.device_id());
            let fields = &fields;
            let sent = self
                .send_once(key, |claim| async move {
                    match build(ctx, fields, None) {
                        Ok(built) => self.submit(session, &claim, built.raw).await,
                        Err(st) => Ok(DraftSend::Refused(st)),
                    }
                })
                .await?;
            return Ok(answer(None, sent.unwrap_or(status::SUCCESS), None));
        }

        if let Some(v) = gw
            .store
            .draft_by_client_key(folder.user, folder.cid, folder.uid_validity, &client_key)
            .await?
        {
            // The device repeats an Add it made (it lost our answer): nothing new is stored.
            let (uid, _) = folder.versions(v.item).await?;
            info!(
                user = folder.user,
                client_id, "repeated draft Add: answered again"
            );
            out.added.insert(uid);
            out.touched.insert(uid);
            return Ok(answer(
                Some(server_id(folder.cid, v.item)),
                status::SUCCESS,
                None,
            ));
        }
        let built = match build(ctx, &fields, None) {
            Ok(b) => b,
            Err(st) => return Ok(answer(None, st, None)),
        };
        let flags = draft_flags(&fields);
        let Some(uid) = session
            .append(folder.mailbox, &flags, built.raw.clone())
            .await?
        else {
            warn!(
                user = folder.user,
                "the IMAP server did not report the new draft's UID (no UIDPLUS)"
            );
            return Ok(answer(None, status::SERVER_ERROR, None));
        };
        folder
            .record(uid, uid, &built.message_id, Some(&client_key))
            .await?;
        info!(user = folder.user, uid, "draft stored");
        out.added.insert(uid);
        out.touched.insert(uid);
        Ok(answer(
            Some(server_id(folder.cid, uid)),
            status::SUCCESS,
            attachments_data(&built, folder.cid, uid),
        ))
    }

    async fn change(
        &self,
        session: &mut B::Session,
        sid: &str,
        data: &Element,
        send: bool,
        conflict: Conflict<'_>,
        out: &mut Applied,
    ) -> Result<Option<ClientResponse>, CommandError> {
        let (ctx, folder) = (self.ctx, &self.folder);
        let Some(item) = parse_server_id(folder.cid, sid) else {
            return Ok(Some(change_response(sid, status::OBJECT_NOT_FOUND)));
        };
        let (current, uids) = folder.versions(item).await?;
        let fields = DraftData::from_application_data(data);
        let content = fields.has_content() && ctx.version >= ProtocolVersion::V16_0;
        let send = send && ctx.version >= ProtocolVersion::V16_0;

        if !content && !send {
            conflict
                .change_flags(session, folder.mailbox, sid, current, data, None, out)
                .await?;
            return Ok(None);
        }

        if send {
            let send_key = format!("draft-send\n{}\n{sid}", ctx.device_id());
            let fields = &fields;
            let s = &mut *session;
            let sent = self
                .send_once(send_key, |claim| async move {
                    let fetched = s.fetch_messages(folder.mailbox, &[current]).await?;
                    let Some((_, old)) = fetched.into_iter().next() else {
                        return Ok(DraftSend::Refused(status::OBJECT_NOT_FOUND));
                    };
                    match build(ctx, fields, Some(&old)) {
                        Ok(built) => self.submit(s, &claim, built.raw).await,
                        Err(st) => Ok(DraftSend::Refused(st)),
                    }
                })
                .await?;
            let Some(st) = sent else {
                // Sent already (a replayed request): the draft is gone.
                for u in &uids {
                    out.removed.insert(*u);
                }
                return Ok(None);
            };
            if st != status::SUCCESS {
                return Ok(Some(change_response(sid, st)));
            }
            session.expunge(folder.mailbox, &uids).await?;
            info!(user = folder.user, server_id = %sid, "draft sent and removed from Drafts");
            for u in uids {
                out.removed.insert(u);
            }
            return Ok(None);
        }

        let fetched = session.fetch_messages(folder.mailbox, &[current]).await?;
        let Some((meta, old)) = fetched.into_iter().next() else {
            return Ok(Some(change_response(sid, status::OBJECT_NOT_FOUND)));
        };
        let built = match build(ctx, &fields, Some(&old)) {
            Ok(b) => b,
            Err(st) => return Ok(Some(change_response(sid, st))),
        };

        // Replace: the new version first, then the old one goes.
        let (add, remove) = flag_edits(data);
        let mut flags: Vec<String> = meta
            .flags
            .iter()
            .filter(|f| !f.eq_ignore_ascii_case("\\Recent") && !remove.contains(f))
            .cloned()
            .collect();
        for f in add.into_iter().chain(["\\Draft".to_string()]) {
            if !flags.iter().any(|g| g.eq_ignore_ascii_case(&f)) {
                flags.push(f);
            }
        }
        let Some(new_uid) = session
            .append(folder.mailbox, &flags, built.raw.clone())
            .await?
        else {
            warn!(
                user = folder.user,
                "the IMAP server did not report the new draft's UID (no UIDPLUS)"
            );
            return Ok(Some(change_response(sid, status::SERVER_ERROR)));
        };
        folder
            .record(new_uid, item, &built.message_id, None)
            .await?;
        session.expunge(folder.mailbox, &uids).await?;
        info!(user = folder.user, server_id = %sid, uid = new_uid, "draft replaced");
        for u in uids {
            out.removed.insert(u);
        }
        out.added.insert(new_uid);
        out.touched.insert(new_uid);
        Ok(
            attachments_data(&built, folder.cid, new_uid).map(|d| ClientResponse::Change {
                server_id: sid.to_string(),
                status: status::SUCCESS,
                data: Some(d),
            }),
        )
    }

    /// Sends a draft exactly once under the retry record `key` ([`send_once::claimed`]):
    /// `None` when it was sent already, or may have been (an earlier submission's outcome is
    /// unknown: treated as sent, like a submission whose answer was lost, and logged there),
    /// else the Sync status of this send. A send still in flight, or a store that cannot
    /// record, answers "retry later" (HTTP 503).
    async fn send_once<F, Fut>(&self, key: String, send: F) -> Result<Option<u32>, CommandError>
    where
        F: FnOnce(Claim) -> Fut,
        Fut: std::future::Future<Output = Result<DraftSend, CommandError>>,
    {
        let retry = Retry {
            key,
            ttl: send_once::CLIENT_ID_TTL,
            command: "Sync",
            what: "draft",
        };
        let user = self.ctx.user.address.as_str();
        match send_once::claimed(self.gw, self.ctx, retry, send).await? {
            Once::Done => {
                info!(user, "draft already sent (a retry): not sent again");
                Ok(None)
            }
            Once::Unknown => Ok(None),
            Once::Ran(sent) => Ok(Some(sent.status(user))),
        }
    }

    /// Submits a claimed draft like SendMail with SaveInSentItems, on this request's session.
    async fn submit(
        &self,
        session: &mut B::Session,
        claim: &Claim,
        raw: Vec<u8>,
    ) -> Result<DraftSend, CommandError> {
        send_once::send_draft(self.gw, self.ctx, session, claim, Bytes::from(raw))
            .await
            .map(DraftSend::Submitted)
    }
}

/// The draft's message, or the per-item status that refuses it.
fn build(ctx: &Context, fields: &DraftData, old: Option<&[u8]>) -> Result<Built, u32> {
    let user = ctx.user.address.as_str();
    let domain = user.rsplit_once('@').map_or("localhost", |(_, d)| d);
    compose_draft::build(fields, old, user, domain, ctx.now).map_err(|e| {
        info!(user, error = %e, "draft refused");
        match e {
            DraftError::Build(_) => status::SERVER_ERROR,
            DraftError::InvalidAddress(_) | DraftError::InvalidMime => status::CONVERSION_ERROR,
        }
    })
}

/// `\Draft`, `\Seen` unless the device says unread, `\Flagged` when flagged.
fn draft_flags(fields: &DraftData) -> Vec<String> {
    let mut flags = vec!["\\Draft".to_string()];
    if fields.read != Some(false) {
        flags.push("\\Seen".into());
    }
    if fields.flagged == Some(true) {
        flags.push("\\Flagged".into());
    }
    flags
}

/// 16.0 ApplicationData answering the device's new attachments: ClientId -> FileReference.
fn attachments_data(built: &Built, cid: &str, uid: u32) -> Option<Element> {
    if built.added.is_empty() {
        return None;
    }
    let mut atts = Element::new(b::ATTACHMENTS);
    for (client_id, index) in &built.added {
        atts.push(
            Element::new(b::ATTACHMENT)
                .text_child(b::CLIENT_ID, client_id.clone())
                .text_child(b::FILE_REFERENCE, format!("{cid}:{uid}:{index}")),
        );
    }
    Some(Element::new(a::APPLICATION_DATA).child(atts))
}

/// Server -> device in the Drafts collection: ServerIds name draft items, and a new version
/// of a draft whose old version leaves in the same response is one Change (see the module
/// documentation). `commands` carry IMAP UIDs as built by the caller; the Message-IDs of new
/// mails are read here.
#[allow(clippy::too_many_arguments)]
pub(super) async fn server_commands<M: MailSession, S: StateStore>(
    store: &S,
    session: &mut M,
    user: &str,
    cid: &str,
    uid_validity: u32,
    mailbox: &str,
    commands: &mut Vec<ServerCommand>,
) -> Result<(), CommandError> {
    if commands.is_empty() {
        return Ok(());
    }
    let uid_of = |c: &ServerCommand| {
        let sid = match c {
            ServerCommand::Add { server_id, .. }
            | ServerCommand::Change { server_id, .. }
            | ServerCommand::Delete { server_id }
            | ServerCommand::SoftDelete { server_id } => server_id,
        };
        parse_server_id(cid, sid)
    };
    let deleted: HashSet<u32> = commands
        .iter()
        .filter(|c| {
            matches!(
                c,
                ServerCommand::Delete { .. } | ServerCommand::SoftDelete { .. }
            )
        })
        .filter_map(uid_of)
        .collect();
    let all: Vec<u32> = commands.iter().filter_map(uid_of).collect();
    let recorded = store.draft_versions(user, cid, uid_validity, &all).await?;
    let mut item_of: HashMap<u32, u32> = recorded.iter().map(|v| (v.uid, v.item)).collect();
    // The recorded versions that leave in this response, with their Message-IDs.
    let mut leaving: Vec<DraftVersion> = recorded
        .into_iter()
        .filter(|v| deleted.contains(&v.uid))
        .collect();
    // New mails with no recorded version: recognise a new version of a known draft by its
    // Message-ID (the newest leaving version with the same one), and record every one so
    // later versions can be recognised.
    let unknown: Vec<u32> = commands
        .iter()
        .filter(|c| matches!(c, ServerCommand::Add { .. }))
        .filter_map(uid_of)
        .filter(|u| !item_of.contains_key(u))
        .collect();
    let mut found: Vec<(u32, Option<String>)> = Vec::new();
    if !unknown.is_empty() {
        // The header fields are enough: Message-ID is all that is needed here.
        let uids = UidSet::from_uids(unknown.iter().copied());
        for (meta, header) in session.fetch_thread_headers(mailbox, &uids).await? {
            found.push((meta.uid, crate::mime::summary(&header).message_id));
        }
    }
    for (uid, message_id) in found {
        let message_id = message_id.map(|id| format!("<{id}>"));
        let item = message_id
            .as_ref()
            .and_then(|id| {
                leaving
                    .iter()
                    .filter(|v| v.message_id.as_ref() == Some(id))
                    .max_by_key(|v| v.uid)
            })
            .map_or(uid, |v| v.item);
        let v = store
            .record_draft_version(
                user,
                cid,
                uid_validity,
                &DraftVersion {
                    uid,
                    item,
                    message_id,
                },
                None,
            )
            .await?;
        item_of.insert(uid, v.item);
        if deleted.contains(&uid) {
            leaving.push(v);
        }
    }
    let item = |uid: u32| item_of.get(&uid).copied().unwrap_or(uid);
    let deleted_items: HashSet<u32> = deleted.iter().map(|u| item(*u)).collect();
    let added_items: HashSet<u32> = commands
        .iter()
        .filter(|c| matches!(c, ServerCommand::Add { .. }))
        .filter_map(uid_of)
        .map(item)
        .collect();
    let mut out = Vec::with_capacity(commands.len());
    for c in commands.drain(..) {
        let Some(uid) = uid_of(&c) else {
            out.push(c);
            continue;
        };
        let sid = server_id(cid, item(uid));
        out.push(match c {
            ServerCommand::Delete { .. } if added_items.contains(&item(uid)) => continue,
            ServerCommand::SoftDelete { .. } if added_items.contains(&item(uid)) => continue,
            ServerCommand::Delete { .. } => ServerCommand::Delete { server_id: sid },
            ServerCommand::SoftDelete { .. } => ServerCommand::SoftDelete { server_id: sid },
            ServerCommand::Change { data, .. } => ServerCommand::Change {
                server_id: sid,
                data,
            },
            ServerCommand::Add { data, .. } if deleted_items.contains(&item(uid)) => {
                debug!(user, server_id = %sid, "draft replaced on the server: sent as a Change");
                ServerCommand::Change {
                    server_id: sid,
                    data,
                }
            }
            ServerCommand::Add { data, .. } => ServerCommand::Add {
                server_id: sid,
                data,
            },
        });
    }
    *commands = out;
    Ok(())
}
