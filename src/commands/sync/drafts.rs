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

use crate::backend::{MailBackend, MailFolder, MailSession, SpecialUse};
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
use crate::commands::send_mail::{self, Claim, Claimed, Settled};
use crate::commands::{CommandError, Context, Gateway};

/// Where the drafts of this request live.
struct Folder<'a, S> {
    store: &'a S,
    user: &'a str,
    cid: &'a str,
    uid_validity: u32,
    mailbox: &'a str,
}

impl<S: StateStore> Folder<'_, S> {
    /// The UID holding the draft `item` now (its newest recorded version, else the item
    /// itself) and every UID it has had.
    async fn versions(&self, item: u32) -> Result<(u32, Vec<u32>), CommandError> {
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

    async fn record(
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
    let folder = Folder {
        store: &gw.store,
        user: ctx.user.address.as_str(),
        cid,
        uid_validity,
        mailbox: mailbox.name.as_str(),
    };
    let mut out = Applied::default();
    for cmd in commands {
        match cmd {
            ClientCommand::Add {
                client_id,
                data,
                send,
            } => {
                let r = add(
                    gw,
                    ctx,
                    session,
                    &folder,
                    client_id,
                    data.as_ref(),
                    *send,
                    &mut out,
                )
                .await?;
                out.responses.push(r);
            }
            ClientCommand::Change {
                server_id: sid,
                data,
                send,
            } => {
                if let Some(r) = change(
                    gw, ctx, session, &folder, sid, data, *send, conflict, &mut out,
                )
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

#[allow(clippy::too_many_arguments)]
async fn add<B: MailBackend, S: StateStore>(
    gw: &Gateway<B, S>,
    ctx: &Context,
    session: &mut B::Session,
    folder: &Folder<'_, S>,
    client_id: &str,
    data: Option<&Element>,
    send: bool,
    out: &mut Applied,
) -> Result<ClientResponse, CommandError> {
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
        let Some(claim) = claim(gw, ctx, &key).await? else {
            return Ok(answer(None, status::SUCCESS, None));
        };
        let built = match build(ctx, &fields, None) {
            Ok(b) => b,
            Err(st) => {
                send_mail::settle(gw, folder.user, &claim, Settled::NotSent).await;
                return Ok(answer(None, st, None));
            }
        };
        let st = submit(gw, ctx, session, &claim, built.raw).await?;
        return Ok(answer(None, st, None));
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

#[allow(clippy::too_many_arguments)]
async fn change<B: MailBackend, S: StateStore>(
    gw: &Gateway<B, S>,
    ctx: &Context,
    session: &mut B::Session,
    folder: &Folder<'_, S>,
    sid: &str,
    data: &Element,
    send: bool,
    conflict: Conflict<'_>,
    out: &mut Applied,
) -> Result<Option<ClientResponse>, CommandError> {
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

    let send_key = format!("draft-send\n{}\n{sid}", ctx.device_id());
    let send_claim = if send {
        let Some(c) = claim(gw, ctx, &send_key).await? else {
            // Sent already (a replayed request): the draft is gone.
            for u in &uids {
                out.removed.insert(*u);
            }
            return Ok(None);
        };
        Some(c)
    } else {
        None
    };
    let fetched = session.fetch_messages(folder.mailbox, &[current]).await?;
    let Some((meta, old)) = fetched.into_iter().next() else {
        if let Some(c) = &send_claim {
            send_mail::settle(gw, folder.user, c, Settled::NotSent).await;
        }
        return Ok(Some(change_response(sid, status::OBJECT_NOT_FOUND)));
    };
    let built = match build(ctx, &fields, Some(&old)) {
        Ok(b) => b,
        Err(st) => {
            if let Some(c) = &send_claim {
                send_mail::settle(gw, folder.user, c, Settled::NotSent).await;
            }
            return Ok(Some(change_response(sid, st)));
        }
    };

    if let Some(c) = &send_claim {
        let st = submit(gw, ctx, session, c, built.raw).await?;
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

/// Takes the retry record `key` for a send: `None` when it was sent already, or may have been
/// (an earlier submission's outcome is unknown: treated as sent, like a submission whose
/// answer was lost, and logged by [`send_mail::claim`]). A send still in flight, or a store
/// that cannot record, answers "retry later" (HTTP 503).
async fn claim<B: MailBackend, S: StateStore>(
    gw: &Gateway<B, S>,
    ctx: &Context,
    key: &str,
) -> Result<Option<Claim>, CommandError> {
    match send_mail::claim(gw, ctx, key, send_mail::CLIENT_ID_TTL, "Sync", "draft").await? {
        Claimed::New(c) => Ok(Some(c)),
        Claimed::Done => {
            info!(
                user = ctx.user.address.as_str(),
                "draft already sent (a retry): not sent again"
            );
            Ok(None)
        }
        Claimed::Unknown => Ok(None),
    }
}

/// Submits a claimed draft; the Sync per-item status.
async fn submit<B: MailBackend, S: StateStore>(
    gw: &Gateway<B, S>,
    ctx: &Context,
    session: &mut B::Session,
    claim: &Claim,
    raw: Vec<u8>,
) -> Result<u32, CommandError> {
    let user = ctx.user.address.as_str();
    let r = send_mail::send_draft(gw, ctx, session, claim, Bytes::from(raw)).await;
    send_mail::settle_after(gw, user, claim, &r).await;
    match r? {
        Ok(()) => Ok(status::SUCCESS),
        Err(f) => {
            info!(
                user,
                compose_status = f.status,
                reason = f.reason,
                "draft not sent"
            );
            Ok(if f.maybe_sent {
                status::SUCCESS
            } else {
                status::CONVERSION_ERROR
            })
        }
    }
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
