//! The device registry's view of a request: what a command reports about its request (the
//! collections a Sync touched, the folders a Ping watched and how it ended, the error), and
//! the one store write that records the finished request in the device's request log.
//!
//! Recording costs the request nothing it waits for: the entry is written on its own task
//! after the response is ready.
//!
//! Also the gates every command passes before it runs (a pending wipe, the access rules;
//! MS-ASCMD 2.2.2 common statuses 129, 130, 140) and the Status element each command's
//! refusal is written in ([`status_root`]).

use std::sync::Mutex;

use crate::backend::MailBackend;
use crate::config::{Access, AccessRules, DevicesConfig};
use crate::eas::provision::ProvisionResponse;
use crate::eas::sync::{ClientCommand, CollectionRequest, CollectionResponse, ServerCommand};
use crate::eas::{Command, ProtocolVersion};
use crate::state::{CollectionLog, Device, RequestEntry, StateStore, WipeState};
use crate::wbxml::tags::ping as p;
use crate::wbxml::{tags, Element, Tag};

use super::core::Refusal;
use super::{Body, CommandError, Context, Gateway, Outcome};

/// What one request did, filled in by the command while it runs. Shared between the HTTP
/// layer (which adds the HTTP status, sizes and duration) and the command's [`Context`].
#[derive(Debug, Default)]
pub struct RequestReport {
    inner: Mutex<Option<RequestEntry>>,
}

impl RequestReport {
    fn with(&self, f: impl FnOnce(&mut RequestEntry)) {
        let mut guard = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(entry) = guard.as_mut() {
            f(entry);
        }
    }

    /// The request reached a command of a known device.
    pub fn begin(&self, user: &str, device_id: &str, command: &str) {
        let mut guard = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        *guard = Some(RequestEntry {
            user: user.to_string(),
            device_id: device_id.to_string(),
            command: command.to_string(),
            ..RequestEntry::default()
        });
    }

    /// A Sync answered `responses` to `requests` (matched by collection id).
    pub fn sync(&self, requests: &[CollectionRequest], responses: &[CollectionResponse]) {
        self.with(|entry| {
            for r in responses {
                let req = requests.iter().find(|c| c.collection_id == r.collection_id);
                let mut c = CollectionLog {
                    collection_id: r.collection_id.clone(),
                    key_in: req.map(|c| c.sync_key.clone()).unwrap_or_default(),
                    key_out: r.sync_key.clone(),
                    status: r.status,
                    ..CollectionLog::default()
                };
                for cmd in &r.commands {
                    match cmd {
                        ServerCommand::Add { .. } => c.added_out += 1,
                        ServerCommand::Change { .. } => c.changed_out += 1,
                        ServerCommand::Delete { .. } | ServerCommand::SoftDelete { .. } => {
                            c.deleted_out += 1
                        }
                    }
                }
                for cmd in req.map(|c| c.commands.as_slice()).unwrap_or_default() {
                    match cmd {
                        ClientCommand::Add { .. } => c.added_in += 1,
                        ClientCommand::Change { .. } => c.changed_in += 1,
                        ClientCommand::Delete { .. } => c.deleted_in += 1,
                        ClientCommand::Fetch { .. } => {}
                    }
                }
                match entry
                    .collections
                    .iter_mut()
                    .find(|x| x.collection_id == c.collection_id)
                {
                    // A hanging Sync answers a collection after its first look: one line.
                    Some(x) => *x = c,
                    None => entry.collections.push(c),
                }
            }
        });
    }

    /// The request failed with `error`.
    pub fn error(&self, error: &str) {
        self.with(|entry| entry.error = Some(error.to_string()));
    }

    fn ping(&self, folders: Vec<String>, outcome: String) {
        self.with(|entry| {
            entry.ping_folders = folders;
            entry.ping_outcome = Some(outcome);
        });
    }

    /// Takes the entry out (`None` when the request never reached a command).
    pub fn take(&self) -> Option<RequestEntry> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner()).take()
    }
}

/// How the HTTP layer saw the request end.
#[derive(Debug, Clone, Copy)]
pub struct Finished<'a> {
    pub http_status: u16,
    pub eas_status: Option<u32>,
    pub duration_ms: u64,
    pub bytes_in: u64,
    pub bytes_out: u64,
    /// Why the request failed, when the command reported nothing better.
    pub reason: &'a str,
}

impl<B: MailBackend, S: StateStore> Gateway<B, S> {
    /// Records a finished request in its device's log, on a task of its own.
    pub fn record_request(&self, report: &RequestReport, done: Finished<'_>) {
        let Some(mut entry) = report.take() else {
            return;
        };
        let now_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or(0);
        entry.at_ms = now_ms - done.duration_ms as i64;
        entry.http_status = done.http_status;
        entry.eas_status = done.eas_status;
        entry.duration_ms = done.duration_ms;
        entry.bytes_in = done.bytes_in;
        entry.bytes_out = done.bytes_out;
        if entry.error.is_none() && done.http_status >= 400 && !done.reason.is_empty() {
            entry.error = Some(done.reason.to_string());
        }
        let store = self.store.clone();
        let keep = self.config.devices.log_entries;
        tokio::spawn(async move {
            if let Err(e) = store.record_request(&entry, keep).await {
                // A device removed while its request ran has nothing to record into.
                tracing::debug!(error = %e, "request not recorded in the device log");
            }
        });
    }
}

/// Runs one command and reports it: the wrapper [`super::dispatch`] calls.
pub(super) async fn reported<B: MailBackend, S: StateStore>(
    gw: &Gateway<B, S>,
    ctx: &Context,
    implemented: super::Implemented,
    body: Body,
) -> Result<Outcome, CommandError> {
    let command = ctx.line.command.map_or("", |c| c.name());
    ctx.report
        .begin(&ctx.user.address, ctx.device_id(), command);
    let ping = ctx.line.command == Some(crate::eas::Command::Ping);
    let asked: Option<Vec<String>> = match (&body, ping) {
        (Body::Wbxml(e), true) => crate::eas::ping::PingRequest::from_element(e)
            .ok()
            .and_then(|r| r.folders)
            .map(|fs| fs.into_iter().map(|f| f.id).collect()),
        _ => None,
    };
    let result = super::dispatch_command(gw, ctx, implemented, body).await;
    match &result {
        Err(e) => ctx.report.error(&e.chain()),
        Ok(Outcome::Wbxml { body, status }) if ping && body.tag == p::PING => {
            let folders = asked
                .or_else(|| {
                    gw.push
                        .ping_params(&ctx.user.address, ctx.device_id())
                        .map(|p| p.folders.into_iter().map(|(id, _)| id).collect())
                })
                .unwrap_or_default();
            let outcome = match status {
                Some(1) => "expired".to_string(),
                Some(2) => {
                    let changed: Vec<&str> = body
                        .first(p::FOLDERS)
                        .map(|fs| fs.all(p::FOLDER).filter_map(|f| f.text()).collect())
                        .unwrap_or_default();
                    format!("changed: {}", changed.join(","))
                }
                Some(s) => format!("status {s}"),
                None => "answered".to_string(),
            };
            ctx.report.ping(folders, outcome);
        }
        _ => {}
    }
    result
}

/// The DeviceInformation fields the store keeps: IMEI and PhoneNumber only when allowed.
pub fn kept_info(config: &DevicesConfig, fields: &[(String, String)]) -> Vec<(String, String)> {
    fields
        .iter()
        .filter(|(name, _)| {
            config.keep_phone_identifiers
                || !(name.eq_ignore_ascii_case("IMEI") || name.eq_ignore_ascii_case("PhoneNumber"))
        })
        .cloned()
        .collect()
}

/// Marks `resp` with the wipe the device must carry out, if one is pending (also after it
/// was acknowledged: a wiped device that comes back is wiped again until an administrator
/// removes it). Returns whether it did.
pub fn wipe_pending(wipe: WipeState, resp: &mut ProvisionResponse) -> bool {
    match wipe {
        WipeState::None => false,
        WipeState::AccountOnlyRequested => {
            resp.account_only_wipe = true;
            true
        }
        WipeState::Requested | WipeState::Acknowledged => {
            resp.remote_wipe = true;
            true
        }
    }
}

/// Keeps a device out before its command runs: a pending (or carried out) wipe sends it to
/// Provision (common status 140, HTTP 449 for 12.x); a blocked device gets 129 and a
/// quarantined one 130, without reaching the mail server. `None` lets the request through.
/// (The HTTP layer answers most refused devices before their login already, with
/// [`access_for`] and [`refusal`]; this catches the rest.)
pub(super) fn gate<B: MailBackend, S: StateStore>(
    gw: &Gateway<B, S>,
    ctx: &Context,
    command: Command,
) -> Option<Outcome> {
    if ctx.device.wipe != WipeState::None {
        if command == Command::Provision {
            return None;
        }
        if !ctx.version.uses_status_for_provisioning() {
            return Some(Outcome::Refused {
                refusal: Refusal::NeedsProvisioning,
                reason: "remote wipe pending",
            });
        }
        return Some(refused(REMOTE_WIPE_REQUESTED, ctx.version, command));
    }
    let access = access_for(
        &gw.config.access,
        Some(&ctx.device),
        &ctx.user.address,
        ctx.device_id(),
        &ctx.device.device_type,
        ctx.device.user_agent.as_deref(),
    );
    refusal(access, ctx.version, command)
}

/// The answer for a device the access decision keeps out: common status 129 when blocked,
/// 130 when quarantined (HTTP 403 for 12.x, which has no common statuses); `None` when the
/// device is allowed.
pub fn refusal(access: Access, version: ProtocolVersion, command: Command) -> Option<Outcome> {
    let code = match access {
        Access::Allow => return None,
        Access::Block => DEVICE_BLOCKED,
        Access::Quarantine => ACCESS_DENIED,
    };
    Some(refused(code, version, command))
}

fn refused(code: u32, version: ProtocolVersion, command: Command) -> Outcome {
    if !version.uses_status_for_provisioning() {
        // 12.x has no common statuses: a refused device gets HTTP 403.
        return Outcome::Refused {
            refusal: Refusal::DeviceRefused,
            reason: "device refused by access rules",
        };
    }
    let root = match command {
        Command::Provision => Some((
            crate::wbxml::tags::provision::PROVISION,
            crate::wbxml::tags::provision::STATUS,
        )),
        _ => status_root(command),
    };
    let Some((root, status_tag)) = root else {
        return Outcome::Refused {
            refusal: Refusal::DeviceRefused,
            reason: "device refused",
        };
    };
    Outcome::Wbxml {
        body: Element::new(root).text_child(status_tag, code.to_string()),
        status: Some(code),
    }
}

/// MS-ASCMD 2.2.2 common statuses.
const DEVICE_BLOCKED: u32 = 129;
const ACCESS_DENIED: u32 = 130;
const REMOTE_WIPE_REQUESTED: u32 = 140;

/// The access decision for a device: the administrator's override on its record, else the
/// configured rules (with the request's DeviceType and User-Agent, or the stored ones).
pub fn access_for(
    rules: &AccessRules,
    device: Option<&Device>,
    user: &str,
    device_id: &str,
    device_type: &str,
    user_agent: Option<&str>,
) -> Access {
    match device.map(|d| d.access.as_str()) {
        Some("allowed") => return Access::Allow,
        Some("blocked") => return Access::Block,
        Some("quarantined") => return Access::Quarantine,
        _ => {}
    }
    let user_agent = user_agent
        .or_else(|| device.and_then(|d| d.user_agent.as_deref()))
        .unwrap_or("");
    rules.decide(user, device_id, device_type, user_agent)
}

/// The root element and Status element of each command's response.
pub fn status_root(command: Command) -> Option<(Tag, Tag)> {
    use tags::*;
    Some(match command {
        Command::Sync => (airsync::SYNC, airsync::STATUS),
        Command::FolderSync => (folder_hierarchy::FOLDER_SYNC, folder_hierarchy::STATUS),
        Command::FolderCreate => (folder_hierarchy::FOLDER_CREATE, folder_hierarchy::STATUS),
        Command::FolderDelete => (folder_hierarchy::FOLDER_DELETE, folder_hierarchy::STATUS),
        Command::FolderUpdate => (folder_hierarchy::FOLDER_UPDATE, folder_hierarchy::STATUS),
        Command::GetItemEstimate => (
            get_item_estimate::GET_ITEM_ESTIMATE,
            get_item_estimate::STATUS,
        ),
        Command::MoveItems => (move_items::MOVE_ITEMS, move_items::STATUS),
        Command::Ping => (ping::PING, ping::STATUS),
        Command::Settings => (settings::SETTINGS, settings::STATUS),
        Command::ItemOperations => (item_operations::ITEM_OPERATIONS, item_operations::STATUS),
        Command::Search => (search::SEARCH, search::STATUS),
        Command::Find => (find::FIND, find::STATUS),
        Command::SendMail => (compose_mail::SEND_MAIL, compose_mail::STATUS),
        Command::SmartReply => (compose_mail::SMART_REPLY, compose_mail::STATUS),
        Command::SmartForward => (compose_mail::SMART_FORWARD, compose_mail::STATUS),
        Command::MeetingResponse => (meeting_response::MEETING_RESPONSE, meeting_response::STATUS),
        Command::ResolveRecipients => (
            resolve_recipients::RESOLVE_RECIPIENTS,
            resolve_recipients::STATUS,
        ),
        Command::ValidateCert => (validate_cert::VALIDATE_CERT, validate_cert::STATUS),
        Command::Provision | Command::GetAttachment => return None,
    })
}
