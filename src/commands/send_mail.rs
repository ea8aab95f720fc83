//! SendMail (MS-ASCMD 2.2.1.17): one message, sent exactly once by
//! [`crate::commands::send_once`] (its documentation has the order of the steps, the retry
//! records and every failure answer).

use crate::backend::MailBackend;
use crate::eas::compose_mail::ComposeKind;
use crate::state::StateStore;

use super::send_once::{request, send};
use super::{Body, CommandError, Context, Gateway, Outcome};

pub use super::send_once::MAX_MESSAGE_BYTES;

pub async fn handle<B: MailBackend, S: StateStore>(
    gw: &Gateway<B, S>,
    ctx: &Context,
    body: &Body,
) -> Result<Outcome, CommandError> {
    match request(ComposeKind::SendMail, ctx, body) {
        Ok(req) => send(gw, ctx, req).await,
        Err(outcome) => outcome,
    }
}
