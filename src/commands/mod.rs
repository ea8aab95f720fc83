//! What the gateway does for each EAS command (MS-ASCMD 2.2.1): one module per command, each
//! a function of the decoded request and the request's [`Context`]; this file only dispatches.
//! Nothing here sees HTTP or bytes.
//!
//! - A new command: its module here, its line in [`IMPLEMENTED`] and in [`dispatch_command`].
//! - What commands share lives below them, never in another command: the vocabulary in
//!   [`core`]; item identity in [`ids`]; stored mail -> EAS item in [`mail_item`]; folders in
//!   [`folders`]; sending exactly once in [`send_once`]; the search engine in
//!   [`mailbox_search`]; Sync's views for other commands in [`collection_view`]; draft
//!   versions in [`draft_versions`]; attachment parts in [`attachment_part`]; the device
//!   registry's gates and request log in [`devices`].

pub mod attachment_part;
pub mod collection_view;
pub mod conversation_move;
pub mod core;
pub mod devices;
pub mod draft_versions;
pub mod find;
pub mod folder_changes;
pub mod folder_sync;
pub mod folders;
pub mod get_attachment;
pub mod get_item_estimate;
pub mod ids;
pub mod item_operations;
pub mod item_operations_body;
pub mod mail_item;
pub mod mailbox_search;
pub mod move_items;
pub mod ping;
pub mod provision;
pub mod search;
pub mod send_mail;
pub mod send_once;
pub mod settings;
pub mod smart;
pub mod sync;

use crate::backend::MailBackend;
use crate::eas::Command;
use crate::state::StateStore;

pub use self::core::{
    collection_key, device_key, Body, CommandError, Context, ErrorClass, Gateway, Media, Outcome,
    Refusal, User,
};

/// Commands that are implemented, in the order `MS-ASProtocolCommands` lists them.
pub const IMPLEMENTED: &[Command] = &[
    Command::Sync,
    Command::SendMail,
    Command::SmartForward,
    Command::SmartReply,
    Command::GetAttachment,
    Command::FolderSync,
    Command::FolderCreate,
    Command::FolderDelete,
    Command::FolderUpdate,
    Command::MoveItems,
    Command::GetItemEstimate,
    Command::Settings,
    Command::Search,
    Command::ItemOperations,
    Command::Ping,
    Command::Provision,
    Command::Find,
];

/// A command of [`IMPLEMENTED`]: what the HTTP layer's one "not implemented" check
/// ([`implemented`]) gives, and all [`dispatch`] takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Implemented(Command);

/// The request line's command, when it is one this gateway implements.
pub fn implemented(command: Option<Command>) -> Option<Implemented> {
    command.filter(|c| IMPLEMENTED.contains(c)).map(Implemented)
}

impl Implemented {
    pub fn command(self) -> Command {
        self.0
    }
}

/// Runs one command, and reports it for the device's request log.
pub async fn dispatch<B: MailBackend, S: StateStore>(
    gw: &Gateway<B, S>,
    ctx: &Context,
    command: Implemented,
    body: Body,
) -> Result<Outcome, CommandError> {
    devices::reported(gw, ctx, command, body).await
}

async fn dispatch_command<B: MailBackend, S: StateStore>(
    gw: &Gateway<B, S>,
    ctx: &Context,
    command: Implemented,
    body: Body,
) -> Result<Outcome, CommandError> {
    // Every command's future is boxed: a `match` over inline futures is as large as the
    // largest command's (Sync's), and a waiting Ping would hold that much for its whole
    // heartbeat. Boxed, each request holds only its own command's state.
    let command = command.command();
    if let Some(outcome) = devices::gate(gw, ctx, command) {
        return Ok(outcome);
    }
    if command != Command::Provision {
        if let Some(outcome) = Box::pin(provision::gate(gw, ctx, command)).await? {
            return Ok(outcome);
        }
    }
    // A new request of the device ends its waiting Ping or hanging Sync first.
    crate::cluster::device_request(gw, &ctx.user.address, ctx.device_id());
    match command {
        // Commands whose body may be empty (Ping, Sync) or raw MIME (12.x sending).
        Command::Ping => Box::pin(ping::handle(gw, ctx, body)).await,
        Command::Sync => {
            // The document itself, not a copy: a hanging Sync keeps no second one.
            let element = match body {
                Body::Wbxml(e) => Some(e),
                _ => None,
            };
            Box::pin(sync::handle(gw, ctx, element)).await
        }
        Command::SendMail => Box::pin(send_mail::handle(gw, ctx, &body)).await,
        Command::SmartReply => Box::pin(smart::handle_reply(gw, ctx, &body)).await,
        Command::SmartForward => Box::pin(smart::handle_forward(gw, ctx, &body)).await,
        Command::GetAttachment => Box::pin(get_attachment::handle(gw, ctx)).await,
        // The rest need a WBXML document.
        _ => {
            let Some(element) = body.element() else {
                return Err(CommandError::BadRequest(format!(
                    "{command} needs a WBXML body"
                )));
            };
            match command {
                Command::Provision => Box::pin(provision::handle(gw, ctx, element)).await,
                Command::Settings => Box::pin(settings::handle(gw, ctx, element)).await,
                Command::FolderSync => Box::pin(folder_sync::handle(gw, ctx, element)).await,
                Command::FolderCreate | Command::FolderUpdate | Command::FolderDelete => {
                    Box::pin(folder_changes::handle(gw, ctx, element)).await
                }
                Command::MoveItems => Box::pin(move_items::handle(gw, ctx, element)).await,
                Command::GetItemEstimate => {
                    Box::pin(get_item_estimate::handle(gw, ctx, element)).await
                }
                Command::ItemOperations => {
                    Box::pin(item_operations::handle(gw, ctx, element)).await
                }
                Command::Search => Box::pin(search::handle(gw, ctx, element)).await,
                Command::Find => Box::pin(find::handle(gw, ctx, element)).await,
                // IMPLEMENTED lists a command with no line above.
                _ => Err(CommandError::Internal(format!("{command} has no handler"))),
            }
        }
    }
}
