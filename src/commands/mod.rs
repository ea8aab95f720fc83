//! What the gateway does for each EAS command: one module per command, each a function of the
//! decoded request and the request's [`Context`], using the mail backend and the state store.
//! Nothing here sees HTTP or bytes.

pub mod attachment_part;
pub mod conversation_move;
pub mod devices;
pub mod find;
pub mod folder_changes;
pub mod folder_sync;
pub mod folders;
pub mod get_attachment;
pub mod get_item_estimate;
pub mod item_operations;
pub mod item_operations_body;
pub mod move_items;
pub mod ping;
pub mod provision;
pub mod search;
pub mod send_mail;
pub mod settings;
pub mod smart;
pub mod sync;

use std::net::IpAddr;
use std::sync::Arc;

use sha2::{Digest, Sha256};

use crate::backend::pool::{PoolConfig, SessionPool};
use crate::backend::{BackendError, Credentials, MailBackend};
use crate::config::Config;
use crate::eas::{provision::PolicyDocument, Command, ProtocolVersion, RequestLine};
use crate::state::{StateStore, StoreError};
use crate::wbxml::Element;

/// Everything a command needs that outlives a request: the backend, the store, the config.
pub struct Gateway<B: MailBackend, S> {
    pub backend: B,
    /// Logged-in mail sessions, per user, reused across requests.
    pub sessions: SessionPool<B>,
    pub store: S,
    pub config: Arc<Config>,
    /// The policy sent by Provision, and a short hash of it: a device that acknowledged another
    /// hash must provision again.
    pub policy: PolicyDocument,
    pub policy_hash: String,
    /// The last folder listing per user.
    pub folders: folders::FolderCache,
    /// One lock per (user, device, collection): a phone retrying while its first request still
    /// runs must not read a half-written view. Never held while a request waits for changes.
    pub collection_locks: dashmap::DashMap<String, Arc<tokio::sync::Mutex<()>>>,
    /// Folder UID listings kept between the pages of a paged Sync.
    pub sync_listings: sync::server_changes::Listings,
    /// Next pages of paged Syncs, read ahead in the background.
    pub sync_prefetch: sync::prefetch::Prefetches,
    /// The Sync request last stored per (user, device), to skip storing it again unchanged.
    pub sync_requests: dashmap::DashMap<String, Vec<u8>>,
    /// Waiting Pings and hanging Syncs, and the per-user IMAP watchers behind them.
    pub push: crate::push::Hub,
}

impl<B: MailBackend, S: StateStore> Gateway<B, S> {
    pub fn new(backend: B, store: S, config: Arc<Config>) -> Gateway<B, S> {
        let p = &config.policy;
        let policy = PolicyDocument {
            password_enabled: p.require_password,
            alphanumeric_password: p.alphanumeric_password,
            min_password_length: p.min_password_length,
            allow_simple_password: p.allow_simple_password,
            max_inactivity_lock_secs: p.max_inactivity_lock_secs,
            max_password_failures: p.max_password_failures,
            require_device_encryption: p.require_device_encryption,
            allow_camera: p.allow_camera,
            allow_storage_card: p.allow_storage_card,
        };
        let digest = Sha256::digest(format!("{policy:?}").as_bytes());
        let policy_hash = hex::encode(&digest[..8]);
        let push = crate::push::Hub::new(config.push.clone(), config.imap.clone());
        Gateway {
            push,
            sessions: SessionPool::new(backend.clone(), PoolConfig::default()),
            backend,
            store,
            config,
            policy,
            policy_hash,
            folders: folders::FolderCache::default(),
            collection_locks: dashmap::DashMap::new(),
            sync_listings: Default::default(),
            sync_prefetch: Default::default(),
            sync_requests: dashmap::DashMap::new(),
        }
    }

    /// Drops the collection locks nobody holds or waits for (each lock is created again on the
    /// next request that needs it).
    pub fn sweep_locks(&self) {
        self.collection_locks
            .retain(|_, lock| Arc::strong_count(lock) > 1);
        self.sync_prefetch.sweep();
    }
}

/// The key of a per-device map entry.
pub fn device_key(user: &str, device_id: &str) -> String {
    format!("{user}\u{0}{device_id}")
}

/// The key of a per-(device, collection) map entry or lock: Sync and MoveItems lock the same
/// collection through it.
pub fn collection_key(user: &str, device_id: &str, collection: &str) -> String {
    format!("{user}\u{0}{device_id}\u{0}{collection}")
}

/// The authenticated user.
#[derive(Clone)]
pub struct User {
    /// The normalised address (also the IMAP login).
    pub address: String,
    pub credentials: Credentials,
}

/// One request, as the commands see it.
pub struct Context {
    pub user: User,
    /// The device's record as this request found it (just recorded by the HTTP layer).
    pub device: crate::state::Device,
    pub line: RequestLine,
    pub version: ProtocolVersion,
    pub client_ip: Option<IpAddr>,
    pub now: i64,
    /// What the request did, for the device's request log.
    pub report: Arc<devices::RequestReport>,
}

impl Context {
    pub fn device_id(&self) -> &str {
        &self.line.device_id
    }
}

/// What a command produced, for the HTTP layer to write.
#[derive(Debug)]
pub enum Outcome {
    /// A WBXML body; `status` is the EAS status for the request log.
    Wbxml { body: Element, status: Option<u32> },
    /// HTTP 200 with no body (the empty Sync/Ping response, 12.x SendMail success).
    Empty,
    /// HTTP 200 with raw bytes (GetAttachment).
    Raw {
        content_type: String,
        body: bytes::Bytes,
    },
    /// HTTP 200 with a body written while it is sent (attachments read from IMAP in chunks):
    /// the command's task writes into the other end of `body`; `length` when known up front.
    /// A task that fails midway closes its end early and the client sees a cut response.
    Stream {
        content_type: String,
        length: Option<u64>,
        body: tokio::io::DuplexStream,
        status: Option<u32>,
    },
    /// A bare HTTP status (449 for 12.x provisioning, 501 ...), with a reason for the log.
    Http { status: u16, reason: &'static str },
}

impl Outcome {
    /// A response that `write` produces on its own task while it is sent, through a pipe, so
    /// a large attachment never sits in memory whole. `write` gets the mail session and
    /// gives it back; it is logged out when the body is done. A write that fails is logged
    /// (`what` names the response): the client sees the body end early.
    pub fn streamed<M, F, Fut>(
        session: M,
        content_type: String,
        length: Option<u64>,
        status: Option<u32>,
        what: &'static str,
        write: F,
    ) -> Outcome
    where
        M: crate::backend::MailSession + 'static,
        F: FnOnce(M, tokio::io::DuplexStream) -> Fut,
        Fut: std::future::Future<Output = (M, std::io::Result<()>)> + Send + 'static,
    {
        /// Bytes buffered between the IMAP reader and the HTTP response.
        const PIPE: usize = 256 * 1024;
        let (reader, writer) = tokio::io::duplex(PIPE);
        let task = write(session, writer);
        tokio::spawn(async move {
            let (session, result) = task.await;
            if let Err(e) = result {
                tracing::warn!(error = %e, "{what} ended early");
            }
            session.logout().await;
        });
        Outcome::Stream {
            content_type,
            length,
            body: reader,
            status,
        }
    }
}

/// Why a command could not produce a protocol answer.
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    /// The request body is not what the command expects (HTTP 400).
    #[error("{0}")]
    BadRequest(String),
    /// The mail server is unreachable or busy (HTTP 503 + Retry-After).
    #[error("mail server unavailable: {0}")]
    Unavailable(String),
    /// The state store is busy (locked by another writer past its busy timeout) or cannot be
    /// reached; nothing was applied and the request may be retried (HTTP 503 + Retry-After).
    #[error("state store unavailable: {0}")]
    StoreUnavailable(String),
    /// The mail server refused the stored credentials mid-request (HTTP 401).
    #[error("mail server refused the login")]
    AuthFailed,
    /// Anything else (HTTP 500).
    #[error("{0}")]
    Internal(String),
}

impl From<BackendError> for CommandError {
    fn from(e: BackendError) -> Self {
        match e {
            BackendError::AuthFailed => CommandError::AuthFailed,
            BackendError::Unavailable(r) => CommandError::Unavailable(r),
            other => CommandError::Internal(other.to_string()),
        }
    }
}

impl From<StoreError> for CommandError {
    fn from(e: StoreError) -> Self {
        if e.is_retryable() {
            CommandError::StoreUnavailable(e.to_string())
        } else {
            CommandError::Internal(format!("state store: {e}"))
        }
    }
}

impl From<crate::eas::ParseError> for CommandError {
    fn from(e: crate::eas::ParseError) -> Self {
        CommandError::BadRequest(e.to_string())
    }
}

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

/// A request body, as the HTTP layer decoded it.
#[derive(Debug, Clone)]
pub enum Body {
    /// No body (legal for Sync and Ping).
    Empty,
    /// A decoded WBXML document.
    Wbxml(Element),
    /// A raw RFC 822 message (12.x SendMail, SmartReply, SmartForward).
    Mime(bytes::Bytes),
}

impl Body {
    /// The WBXML document, if that is what the body is.
    pub fn element(&self) -> Option<&Element> {
        match self {
            Body::Wbxml(e) => Some(e),
            _ => None,
        }
    }
}

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
    crate::cluster::device_request(gw, &ctx.user.address, ctx.device_id());
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
