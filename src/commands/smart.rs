//! SmartReply (MS-ASCMD 2.2.1.20) and SmartForward (2.2.1.19): SendMail with an original.
//!
//! The original is named by Source (FolderId + ItemId; 12.x: CollectionId + ItemId in the
//! query). Without ReplaceMime the gateway adds the original to the device's message (quoted
//! for a reply, with its attachments for a forward; see [`crate::compose::smart`]); with
//! ReplaceMime the device's message is sent as it is. Either way the original gets `\Answered`
//! or `$Forwarded` once the mail has left, and is never marked read. An original that no
//! longer exists answers Status 150 ItemNotFound (HTTP 500 for 12.x), except with ReplaceMime,
//! where the message is complete without it and is sent. LongId (a Search result) names
//! the original too. Everything else is [`super::send_once`].

use crate::backend::MailBackend;
use crate::eas::compose_mail::ComposeKind;
use crate::state::StateStore;

use super::send_once::{request, send};
use super::{Body, CommandError, Context, Gateway, Outcome};

pub async fn handle_reply<B: MailBackend, S: StateStore>(
    gw: &Gateway<B, S>,
    ctx: &Context,
    body: &Body,
) -> Result<Outcome, CommandError> {
    handle(gw, ctx, body, ComposeKind::SmartReply).await
}

pub async fn handle_forward<B: MailBackend, S: StateStore>(
    gw: &Gateway<B, S>,
    ctx: &Context,
    body: &Body,
) -> Result<Outcome, CommandError> {
    handle(gw, ctx, body, ComposeKind::SmartForward).await
}

async fn handle<B: MailBackend, S: StateStore>(
    gw: &Gateway<B, S>,
    ctx: &Context,
    body: &Body,
    kind: ComposeKind,
) -> Result<Outcome, CommandError> {
    match request(kind, ctx, body) {
        Ok(req) => send(gw, ctx, req).await,
        Err(outcome) => outcome,
    }
}
