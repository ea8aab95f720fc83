//! GetAttachment (MS-ASCMD 2.2.1.8, 12.x): one attachment by its FileReference, given as the
//! AttachmentName query parameter, answered as the raw bytes with the part's Content-Type.
//!
//! Only the attachment's MIME part is read, in chunks, while the response is sent (see
//! [`attachment_part`](super::attachment_part)); the Content-Length is the part's decoded size.
//! Reading never marks the mail read (`BINARY.PEEK` / `BODY.PEEK`).

use crate::backend::{BackendError, MailBackend, MailSession};
use crate::eas::item_operations::parse_file_reference;
use crate::state::StateStore;

use super::attachment_part::{self, AttachmentPart, Lookup, RawSink};
use super::core::{Media, Refusal};
use super::{folders, CommandError, Context, Gateway, Outcome};

pub async fn handle<B: MailBackend, S: StateStore>(
    gw: &Gateway<B, S>,
    ctx: &Context,
) -> Result<Outcome, CommandError> {
    let Some((cid, uid, index)) = ctx
        .line
        .attachment_name
        .as_deref()
        .and_then(parse_file_reference)
    else {
        return Err(CommandError::BadRequest(
            "GetAttachment without a valid AttachmentName".into(),
        ));
    };
    let user = ctx.user.address.as_str();
    let mut session = gw
        .backend
        .login(&ctx.user.credentials, ctx.client_ip)
        .await?;
    let found = locate(gw, user, &mut session, &cid, uid, index).await;
    let part = match found {
        Ok(Some(p)) => p,
        Ok(None) => {
            session.logout().await;
            return Ok(not_found());
        }
        Err(e) => {
            session.logout().await;
            return Err(e);
        }
    };
    let content_type = part.content_type.clone();
    let length = part.size;
    Ok(Outcome::streamed(
        session,
        Media::Other(content_type),
        Some(length),
        None,
        "attachment stream",
        move |mut session, writer| async move {
            let mut sink = RawSink(writer);
            let last = part.size.saturating_sub(1);
            let r = attachment_part::stream(&mut session, &part, 0, last, &mut sink).await;
            (session, r)
        },
    ))
}

async fn locate<B: MailBackend, S: StateStore>(
    gw: &Gateway<B, S>,
    user: &str,
    session: &mut B::Session,
    cid: &str,
    uid: u32,
    index: usize,
) -> Result<Option<AttachmentPart>, CommandError> {
    let resolved = folders::resolve(&gw.store, &gw.folders, session, user, cid).await?;
    let Some(mailbox) = resolved.and_then(|r| r.mailbox).filter(|m| m.selectable) else {
        return Ok(None);
    };
    let uid =
        super::draft_versions::current_uid(&gw.store, session, user, cid, &mailbox, uid).await?;
    match attachment_part::locate(session, &mailbox.name, uid, index).await {
        Ok(Lookup::Found(p)) => Ok(Some(p)),
        Ok(Lookup::NoMail | Lookup::NoAttachment) | Err(BackendError::NotFound(_)) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// Exchange answers an unknown attachment with HTTP 500; a 404 says the same more precisely
/// and is not retried by clients.
fn not_found() -> Outcome {
    Outcome::Refused {
        refusal: Refusal::NotFound,
        reason: "attachment not found",
    }
}
