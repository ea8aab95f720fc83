//! GetAttachment (MS-ASCMD 2.2.1.8, 12.x): one attachment by its FileReference, given as the
//! AttachmentName query parameter, answered as the raw bytes with the part's Content-Type.
//! The mail is read with BODY.PEEK: fetching an attachment never marks the mail read.

use crate::backend::{BackendError, MailBackend, MailSession};
use crate::eas::item_operations::parse_file_reference;
use crate::mime;
use crate::state::StateStore;

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
        .sessions
        .get(&ctx.user.credentials, ctx.client_ip)
        .await?;
    let resolved = folders::resolve(&gw.store, &gw.folders, &mut *session, user, &cid).await?;
    let Some(mailbox) = resolved.and_then(|r| r.mailbox).filter(|m| m.selectable) else {
        return Ok(not_found());
    };
    let fetched = match session.fetch_messages(&mailbox.name, &[uid]).await {
        Ok(f) => f,
        Err(BackendError::NotFound(_)) => Vec::new(),
        Err(e) => return Err(e.into()),
    };
    drop(session);
    let Some((_, raw)) = fetched.into_iter().find(|(m, _)| m.uid == uid) else {
        return Ok(not_found());
    };
    let Some(att) = mime::attachment(&raw, index) else {
        return Ok(not_found());
    };
    Ok(Outcome::Raw {
        content_type: att.content_type,
        body: bytes::Bytes::from(att.data),
    })
}

/// Exchange answers an unknown attachment with HTTP 500; a 404 says the same more precisely
/// and is not retried by clients.
fn not_found() -> Outcome {
    Outcome::Http {
        status: 404,
        reason: "attachment not found",
    }
}
