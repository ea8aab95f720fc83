//! ItemOperations (MS-ASCMD 2.2.1.10): Fetch a mail or an attachment, EmptyFolderContents, and
//! Move (of a conversation).
//!
//! - Fetch by CollectionId + ServerId answers the mail's ApplicationData fields inside
//!   `Properties`, shaped by the Fetch's Options (BodyPreference, MIMESupport) like Sync.
//! - Fetch by FileReference (`<collectionId>:<uid>:<index>`, as Sync hands them out) answers
//!   the attachment's ContentType, Total and its bytes as base64 text in `Data`; with a Range
//!   option only those bytes, with Range. Only the attachment's MIME part is read from IMAP,
//!   in chunks, while the response is sent ([`attachment_part`], [`item_operations_body`]).
//! - With `MS-ASAcceptMultiPart: T` (or the AcceptMultiPart query option) the response is
//!   multipart: the WBXML first, every fetched attachment and mail body as a part after it.
//! - Fetch by search LongId (`S<collectionId>:<uidvalidity>:<uid>`), looked up only in the user's
//!   own folders; a moved or deleted mail is not found (Status 6).
//! - Reading never sets `\Seen` (the backend fetches with BODY.PEEK).
//! - EmptyFolderContents moves the folder's mail to Trash (expunges it when the folder is Trash
//!   or there is no Trash) and, with DeleteSubFolders, deletes the subfolders. The device's
//!   sync state is left alone: its next Sync of the folder reports the Deletes.
//! - Move moves every mail of a conversation to DstFldId ([`conversation_move`]).

use crate::backend::{BackendError, MailBackend, MailSession, SpecialUse};
use crate::eas::item_operations::{
    self as model, attachment_properties_head, clamp_range, mail_properties, parse_file_reference,
    parse_range, status, FetchRequest, FetchResponse, Operation, OperationResponse,
};
use crate::eas::sync::SyncOptions;
use crate::state::StateStore;
use crate::wbxml::Element;

use super::attachment_part::{self, Lookup};
use super::conversation_move;
use super::draft_versions::current_uid;
use super::ids::parse_server_id;
use super::item_operations_body::{self, PendingData};
use super::mail_item::{body_options, item_data};
use super::mailbox_search::fetch_long_id;
use super::{folders, CommandError, Context, Gateway, Outcome};

pub async fn handle<B: MailBackend, S: StateStore>(
    gw: &Gateway<B, S>,
    ctx: &Context,
    body: &Element,
) -> Result<Outcome, CommandError> {
    let ops = match model::parse(body) {
        Ok(o) => o,
        Err(e) => {
            tracing::debug!(error = %e, "malformed ItemOperations request");
            return Ok(Outcome::Wbxml {
                body: model::status_response(status::PROTOCOL_ERROR),
                status: Some(status::PROTOCOL_ERROR),
            });
        }
    };
    let mut session = gw
        .backend
        .login(&ctx.user.credentials, ctx.client_ip)
        .await?;
    let mut results = Vec::with_capacity(ops.len());
    let mut pending: Vec<Option<PendingData>> = Vec::with_capacity(ops.len());
    let mut outcome = Ok(());
    for op in &ops {
        let mut data = None;
        let r = match op {
            Operation::Fetch(f) => fetch(gw, ctx, &mut session, f).await.map(|(r, d)| {
                data = d;
                OperationResponse::Fetch(r)
            }),
            Operation::EmptyFolderContents {
                collection_id,
                delete_sub_folders,
            } => empty_folder(gw, ctx, &mut session, collection_id, *delete_sub_folders)
                .await
                .map(|status| OperationResponse::EmptyFolderContents {
                    status,
                    collection_id: collection_id.clone(),
                }),
            Operation::Move {
                conversation_id,
                dst_fld_id,
                move_always,
            } => conversation_move::move_conversation(
                gw,
                ctx,
                &mut session,
                conversation_id.as_ref(),
                dst_fld_id.as_deref(),
                move_always.as_ref(),
            )
            .await
            .map(|status| OperationResponse::Move {
                status,
                conversation_id: conversation_id.clone(),
            }),
        };
        match r {
            Ok(r) => {
                results.push(r);
                pending.push(data);
            }
            Err(e) => {
                outcome = Err(e);
                break;
            }
        }
    }
    if let Err(e) = outcome {
        session.logout().await;
        return Err(e);
    }
    if ctx.line.accept_multipart || pending.iter().any(Option::is_some) {
        // Attachment bytes are read from IMAP while the response is sent.
        return Ok(item_operations_body::respond(
            session,
            results,
            pending,
            ctx.line.accept_multipart,
        ));
    }
    session.logout().await;
    Ok(Outcome::Wbxml {
        body: model::response(&results),
        status: Some(status::SUCCESS),
    })
}

async fn fetch<B: MailBackend, S: StateStore>(
    gw: &Gateway<B, S>,
    ctx: &Context,
    session: &mut B::Session,
    req: &FetchRequest,
) -> Result<(FetchResponse, Option<PendingData>), CommandError> {
    if let Some(reference) = &req.file_reference {
        if req.store.eq_ignore_ascii_case("Mailbox") && !req.link_id && req.long_id.is_none() {
            return fetch_attachment(gw, ctx, session, req, reference).await;
        }
    }
    fetch_item(gw, ctx, session, req).await.map(|r| (r, None))
}

async fn fetch_item<B: MailBackend, S: StateStore>(
    gw: &Gateway<B, S>,
    ctx: &Context,
    session: &mut B::Session,
    req: &FetchRequest,
) -> Result<FetchResponse, CommandError> {
    if !req.store.eq_ignore_ascii_case("Mailbox") || req.link_id {
        return Ok(FetchResponse::failed(req, status::UNKNOWN_STORE));
    }
    if req.long_id.is_some() {
        // LongIds name Search results: resolved in the user's own folders only.
        return fetch_long_id(gw, ctx, session, req).await;
    }
    let Some(server_id) = &req.server_id else {
        return Ok(FetchResponse::failed(req, status::PROTOCOL_ERROR));
    };
    // A ServerId names its collection; CollectionId, when sent, must agree.
    let cid = match (&req.collection_id, server_id.rsplit_once(':')) {
        (Some(c), _) => c.clone(),
        (None, Some((c, _))) => c.to_string(),
        (None, None) => return Ok(FetchResponse::failed(req, status::OBJECT_NOT_FOUND)),
    };
    let Some(uid) = parse_server_id(&cid, server_id) else {
        return Ok(FetchResponse::failed(req, status::OBJECT_NOT_FOUND));
    };
    let options = match req.options.as_ref().map(SyncOptions::from_element) {
        Some(Ok(o)) => o,
        Some(Err(e)) => {
            tracing::debug!(error = %e, "bad ItemOperations Options");
            return Ok(FetchResponse::failed(req, status::PROTOCOL_ERROR));
        }
        None => SyncOptions::default(),
    };
    let user = ctx.user.address.as_str();
    let resolved = folders::resolve(&gw.store, &gw.folders, session, user, &cid).await?;
    let Some(mailbox) = resolved.and_then(|r| r.mailbox).filter(|m| m.selectable) else {
        return Ok(FetchResponse::failed(req, status::OBJECT_NOT_FOUND));
    };
    let in_drafts = mailbox.special_use == Some(SpecialUse::Drafts);
    let uid = current_uid(&gw.store, session, user, &cid, &mailbox, uid).await?;
    let fetched = match session.fetch_messages(&mailbox.name, &[uid]).await {
        Ok(f) => f,
        Err(BackendError::NotFound(_)) => Vec::new(),
        Err(e) => return Err(e.into()),
    };
    let Some((meta, raw)) = fetched.into_iter().find(|(m, _)| m.uid == uid) else {
        return Ok(FetchResponse::failed(req, status::OBJECT_NOT_FOUND));
    };
    let data = item_data(
        &raw,
        &meta,
        server_id,
        in_drafts,
        &body_options(&options, ctx.version),
    );
    Ok(FetchResponse {
        status: status::SUCCESS,
        long_id: None,
        collection_id: Some(cid),
        server_id: Some(server_id.clone()),
        class: Some("Email"),
        file_reference: None,
        properties: Some(mail_properties(data)),
    })
}

async fn fetch_attachment<B: MailBackend, S: StateStore>(
    gw: &Gateway<B, S>,
    ctx: &Context,
    session: &mut B::Session,
    req: &FetchRequest,
    reference: &str,
) -> Result<(FetchResponse, Option<PendingData>), CommandError> {
    let failed = |status| Ok((FetchResponse::failed(req, status), None));
    let Some((cid, uid, index)) = parse_file_reference(reference) else {
        return failed(status::INVALID_ATTACHMENT);
    };
    let requested = match &req.range {
        Some(r) => match parse_range(r) {
            Some(r) => Some(r),
            None => return failed(status::INVALID_RANGE),
        },
        None => None,
    };
    let user = ctx.user.address.as_str();
    let resolved = folders::resolve(&gw.store, &gw.folders, session, user, &cid).await?;
    let Some(mailbox) = resolved.and_then(|r| r.mailbox).filter(|m| m.selectable) else {
        return failed(status::OBJECT_NOT_FOUND);
    };
    let uid = current_uid(&gw.store, session, user, &cid, &mailbox, uid).await?;
    let part = match attachment_part::locate(session, &mailbox.name, uid, index).await {
        Ok(Lookup::Found(p)) => p,
        Ok(Lookup::NoMail) | Err(BackendError::NotFound(_)) => {
            return failed(status::OBJECT_NOT_FOUND)
        }
        Ok(Lookup::NoAttachment) => return failed(status::INVALID_ATTACHMENT),
        Err(e) => return Err(e.into()),
    };
    let total = part.size;
    let (range, first, last) = match requested {
        None => (None, 0, total.saturating_sub(1)),
        Some(r) => match clamp_range(r, total) {
            Some((first, last)) => (Some((first, last)), first, last),
            None => return failed(status::INVALID_RANGE),
        },
    };
    let response = FetchResponse {
        status: status::SUCCESS,
        long_id: None,
        collection_id: None,
        server_id: None,
        class: None,
        file_reference: Some(reference.to_string()),
        properties: Some(attachment_properties_head(&part.content_type, range, total)),
    };
    Ok((response, Some(PendingData { part, first, last })))
}

/// Empties a folder; returns the operation's status.
async fn empty_folder<B: MailBackend, S: StateStore>(
    gw: &Gateway<B, S>,
    ctx: &Context,
    session: &mut B::Session,
    cid: &str,
    delete_sub_folders: bool,
) -> Result<u32, CommandError> {
    let user = ctx.user.address.as_str();
    let Some(resolved) = folders::resolve(&gw.store, &gw.folders, session, user, cid).await? else {
        return Ok(status::OBJECT_NOT_FOUND);
    };
    let Some(mailbox) = resolved.mailbox else {
        // The virtual Outbox is always empty.
        return Ok(status::SUCCESS);
    };
    let list = folders::list(&gw.store, &gw.folders, session, user).await?;
    let trash = folders::special(&list, SpecialUse::Trash)
        .and_then(|r| r.mailbox.as_ref())
        .filter(|t| t.name != mailbox.name)
        .map(|t| t.name.clone());
    let result: Result<(), BackendError> = async {
        if mailbox.selectable {
            let uids: Vec<u32> = session
                .search_since(&mailbox.name, None)
                .await?
                .iter()
                .collect();
            if !uids.is_empty() {
                match &trash {
                    Some(t) => {
                        session.move_messages(&mailbox.name, &uids, t).await?;
                    }
                    None => session.expunge(&mailbox.name, &uids).await?,
                }
            }
        }
        if delete_sub_folders {
            if let Some(d) = mailbox.delimiter {
                let prefix = format!("{}{d}", mailbox.name);
                let mut subs: Vec<&str> = list
                    .iter()
                    .filter_map(|r| r.mailbox.as_ref())
                    .filter(|m| m.name.starts_with(&prefix))
                    .map(|m| m.name.as_str())
                    .collect();
                subs.sort_by_key(|n| std::cmp::Reverse(n.len()));
                for name in subs {
                    match session.delete_folder(name).await {
                        Ok(()) | Err(BackendError::NotFound(_)) => {}
                        Err(e) => return Err(e),
                    }
                }
            }
        }
        Ok(())
    }
    .await;
    if delete_sub_folders {
        folders::forget(&gw.folders, user);
    }
    match result {
        Ok(()) => Ok(status::SUCCESS),
        Err(BackendError::NotFound(_)) => Ok(status::OBJECT_NOT_FOUND),
        Err(BackendError::Rejected(text) | BackendError::Protocol(text)) => {
            tracing::debug!(reason = %text, "the mail server refused to empty a folder");
            Ok(status::SERVER_ERROR)
        }
        Err(e) => Err(e.into()),
    }
}
