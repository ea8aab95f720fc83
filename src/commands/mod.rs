//! What the gateway does for each EAS command: one module per command, each a function of the
//! decoded request and the request's [`Context`], using the mail backend and the state store.
//! Nothing here sees HTTP or bytes.

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
    collection_key, device_key, Body, CommandError, Context, Gateway, Outcome, User,
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

/// Runs one command, and reports it for the device's request log.
pub async fn dispatch<B: MailBackend, S: StateStore>(
    gw: &Gateway<B, S>,
    ctx: &Context,
    body: Body,
) -> Result<Outcome, CommandError> {
    devices::reported(gw, ctx, body).await
}

async fn dispatch_command<B: MailBackend, S: StateStore>(
    gw: &Gateway<B, S>,
    ctx: &Context,
    body: Body,
) -> Result<Outcome, CommandError> {
    let Some(command) = ctx.line.command else {
        return Ok(Outcome::Http {
            status: 501,
            reason: "unknown command",
        });
    };
    if !IMPLEMENTED.contains(&command) {
        return Ok(Outcome::Http {
            status: 501,
            reason: "command not implemented",
        });
    }
    if let Some(outcome) = devices::gate(gw, ctx, command) {
        return Ok(outcome);
    }
    if command != Command::Provision {
        if let Some(outcome) = provision::gate(gw, ctx, command).await? {
            return Ok(outcome);
        }
    }
    // A new request of the device ends its waiting Ping or hanging Sync first.
    gw.push.device_request(&ctx.user.address, ctx.device_id());
    match command {
        // Commands whose body may be empty (Ping, Sync) or raw MIME (12.x sending).
        Command::Ping => ping::handle(gw, ctx, body).await,
        Command::Sync => sync::handle(gw, ctx, body.element().cloned()).await,
        Command::SendMail => send_mail::handle(gw, ctx, &body).await,
        Command::SmartReply => smart::handle_reply(gw, ctx, &body).await,
        Command::SmartForward => smart::handle_forward(gw, ctx, &body).await,
        Command::GetAttachment => get_attachment::handle(gw, ctx).await,
        // The rest need a WBXML document.
        _ => {
            let Some(element) = body.element() else {
                return Err(CommandError::BadRequest(format!(
                    "{command} needs a WBXML body"
                )));
            };
            match command {
                Command::Provision => provision::handle(gw, ctx, element).await,
                Command::Settings => settings::handle(gw, ctx, element).await,
                Command::FolderSync => folder_sync::handle(gw, ctx, element).await,
                Command::FolderCreate | Command::FolderUpdate | Command::FolderDelete => {
                    folder_changes::handle(gw, ctx, element).await
                }
                Command::MoveItems => move_items::handle(gw, ctx, element).await,
                Command::GetItemEstimate => get_item_estimate::handle(gw, ctx, element).await,
                Command::ItemOperations => item_operations::handle(gw, ctx, element).await,
                Command::Search => search::handle(gw, ctx, element).await,
                Command::Find => find::handle(gw, ctx, element).await,
                _ => Ok(Outcome::Http {
                    status: 501,
                    reason: "command not implemented",
                }),
            }
        }
    }
}
