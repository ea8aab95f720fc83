//! ItemOperations Move (MS-ASCMD 2.2.3.117.1, MS-ASCON 2.2.2.7; 14.0+): every mail of a
//! conversation goes to the destination folder.
//!
//! - The conversation is the `email2:ConversationId` Sync hands out, computed by the same code
//!   ([`mime::application_data`]) from each mail's threading header fields (Message-ID,
//!   References, In-Reply-To, Subject, Date), read with `BODY.PEEK`.
//! - Mails are taken from every folder of the user except Sent Items (MS-ASCON 2.2.2.8) and the
//!   destination, and moved with UID MOVE. The device's views are left as they are: the Move
//!   answer names no new ServerIds, so the phone learns the moved mails from the destination's
//!   next Sync (one Add each) and drops them from the source with its next Sync (one Delete
//!   each), as Exchange does (MS-ASCON test suite: after the Move the source no longer holds
//!   the conversation and the destination holds all of it).
//! - MoveAlways must be present and empty (Status 155 when absent, 2 with content). Mails that
//!   arrive in the conversation later are not moved: IMAP has no server-side rules to carry
//!   that wish.
//! - Statuses: 1 moved (also when the whole conversation already was in the destination),
//!   2 no ConversationId or DstFldId, a malformed MoveAlways, or a 12.x request, 3 the mail
//!   server refused a move, 6 the destination or the conversation does not exist, 156 the
//!   destination is not a mail folder (the virtual Outbox).

use crate::backend::{BackendError, MailBackend, MailSession, SpecialUse};
use crate::eas::item_operations::status;
use crate::eas::ProtocolVersion;
use crate::mime;
use crate::state::StateStore;
use crate::wbxml::Element;

use super::{folders, CommandError, Context, Gateway};

/// The status of one Move operation.
pub async fn move_conversation<B: MailBackend, S: StateStore>(
    gw: &Gateway<B, S>,
    ctx: &Context,
    session: &mut B::Session,
    conversation_id: Option<&Element>,
    dst_fld_id: Option<&str>,
    move_always: Option<&Element>,
) -> Result<u32, CommandError> {
    if ctx.version < ProtocolVersion::V14_0 {
        tracing::debug!("ItemOperations Move before 14.0");
        return Ok(status::PROTOCOL_ERROR);
    }
    let (Some(wanted), Some(dst_id)) = (
        conversation_id.map(|e| e.content_bytes().to_vec()),
        dst_fld_id,
    ) else {
        tracing::debug!("ItemOperations Move without ConversationId or DstFldId");
        return Ok(status::PROTOCOL_ERROR);
    };
    if wanted.is_empty() {
        return Ok(status::PROTOCOL_ERROR);
    }
    match move_always {
        None => {
            tracing::debug!("ItemOperations Move without MoveAlways");
            return Ok(status::MOVE_ALWAYS_MISSING);
        }
        Some(e) if !e.is_empty() => {
            tracing::debug!("ItemOperations Move with content in MoveAlways");
            return Ok(status::PROTOCOL_ERROR);
        }
        Some(_) => {}
    }
    let user = ctx.user.address.as_str();
    let list = folders::list(&gw.store, &gw.folders, session, user).await?;
    let Some(dst) = list.iter().find(|r| r.server_id == dst_id) else {
        return Ok(status::OBJECT_NOT_FOUND);
    };
    let Some(dst_box) = dst.mailbox.as_ref().filter(|m| m.selectable) else {
        return Ok(status::ACTION_NOT_SUPPORTED);
    };
    let mut found = false;
    let mut refused = false;
    for r in list.iter() {
        let Some(mailbox) = r.mailbox.as_ref().filter(|m| m.selectable) else {
            continue;
        };
        if mailbox.name == dst_box.name || mailbox.special_use == Some(SpecialUse::Sent) {
            continue;
        }
        let uids = match conversation_uids(session, &mailbox.name, &wanted).await {
            Ok(u) => u,
            Err(BackendError::NotFound(_)) => continue,
            Err(e) => return Err(e.into()),
        };
        if uids.is_empty() {
            continue;
        }
        found = true;
        match session
            .move_messages(&mailbox.name, &uids, &dst_box.name)
            .await
        {
            Ok(_) => {}
            Err(
                BackendError::Rejected(text)
                | BackendError::NotFound(text)
                | BackendError::Protocol(text),
            ) => {
                tracing::debug!(reason = %text, "the mail server refused a conversation move");
                refused = true;
            }
            Err(e) => return Err(e.into()),
        }
    }
    if refused {
        return Ok(status::SERVER_ERROR);
    }
    if !found {
        // Nothing to move: fine when the conversation is already where it should be.
        let there = conversation_uids(session, &dst_box.name, &wanted).await?;
        if there.is_empty() {
            return Ok(status::OBJECT_NOT_FOUND);
        }
    }
    Ok(status::SUCCESS)
}

/// The UIDs of `mailbox` whose ConversationId is `wanted`.
async fn conversation_uids<M: MailSession>(
    session: &mut M,
    mailbox: &str,
    wanted: &[u8],
) -> Result<Vec<u32>, BackendError> {
    let all = session.search_since(mailbox, None).await?;
    if all.is_empty() {
        return Ok(Vec::new());
    }
    let headers = session.fetch_thread_headers(mailbox, &all).await?;
    let mut uids: Vec<u32> = headers
        .iter()
        .filter(|(meta, header)| {
            mime::conversation_id_of(header, meta.internal_date).as_slice() == wanted
        })
        .map(|(meta, _)| meta.uid)
        .collect();
    uids.sort_unstable();
    uids.dedup();
    Ok(uids)
}
