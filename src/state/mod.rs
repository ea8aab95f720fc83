//! Persistent gateway state: devices, provisioning, folder ids and sync state.
//!
//! [`StateStore`] is the storage contract the protocol handlers use. It is
//! expressed in domain terms (a device was seen, a hierarchy was committed)
//! rather than as table access, so that several back ends can implement it
//! without changing callers. [`SqliteStore`] is the embedded default;
//! [`PgStore`] serves deployments where several gateway nodes share one
//! state database. [`Store`] is whichever of the two `[state] url` names.
//!
//! Conventions every implementation follows:
//!
//! * Every call is scoped by user (and device where relevant). One user's
//!   calls never read or change another user's rows. The store treats the
//!   user name and device id as exact strings; callers canonicalise them
//!   (e.g. case folding of the login) before calling.
//! * Every multi-step change happens in one transaction, so concurrent calls
//!   from several tasks or several gateway nodes never observe or leave a
//!   half-applied change.
//! * Sync keys are `u32`; `0` is never stored as a committed key because it
//!   means "initial sync" on the wire.
//! * Methods that store state for a device ([`StateStore::set_policy`],
//!   [`StateStore::commit_hierarchy`], ...) require the device to exist
//!   (created by [`StateStore::touch_device`]) and fail with
//!   [`StoreError::DeviceNotFound`] otherwise. Deleting and resetting
//!   methods succeed as no-ops for unknown devices.
//! * Calls with the same arguments may be retried after
//!   [`StoreError::Busy`]; nothing was applied.

use std::future::Future;

pub mod cluster;
mod migrations;
pub mod postgres;
mod postgres_migrations;
pub mod sqlite;
mod sqlite_lease;
mod store;

pub use cluster::{Cluster, LeaseKey};
pub use postgres::PgStore;
pub use sqlite::SqliteStore;
pub use store::Store;

/// Provisioning (MS-ASPROV) state of a device.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum PolicyState {
    /// No policy has been issued.
    #[default]
    None,
    /// A temporary policy key was issued; waiting for the acknowledge.
    Pending,
    /// The device acknowledged the policy and holds a final key.
    Provisioned,
}

impl PolicyState {
    /// Stable storage / display name.
    pub fn as_str(self) -> &'static str {
        match self {
            PolicyState::None => "none",
            PolicyState::Pending => "pending",
            PolicyState::Provisioned => "provisioned",
        }
    }

    /// Inverse of [`PolicyState::as_str`].
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "none" => Some(PolicyState::None),
            "pending" => Some(PolicyState::Pending),
            "provisioned" => Some(PolicyState::Provisioned),
            _ => None,
        }
    }
}

/// Remote wipe state of a device.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum WipeState {
    /// No wipe pending.
    #[default]
    None,
    /// An administrator requested a full device wipe.
    Requested,
    /// An administrator requested removal of this account only.
    AccountOnlyRequested,
    /// The device acknowledged the wipe.
    Acknowledged,
}

impl WipeState {
    /// Stable storage / display name.
    pub fn as_str(self) -> &'static str {
        match self {
            WipeState::None => "none",
            WipeState::Requested => "requested",
            WipeState::AccountOnlyRequested => "account_only_requested",
            WipeState::Acknowledged => "acknowledged",
        }
    }

    /// Inverse of [`WipeState::as_str`].
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "none" => Some(WipeState::None),
            "requested" => Some(WipeState::Requested),
            "account_only_requested" => Some(WipeState::AccountOnlyRequested),
            "acknowledged" => Some(WipeState::Acknowledged),
            _ => None,
        }
    }
}

/// Everything the gateway remembers about one (user, device) pair.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Device {
    pub user: String,
    pub device_id: String,
    pub device_type: String,
    pub user_agent: Option<String>,
    pub protocol_version: Option<String>,
    pub policy: PolicyState,
    /// Current policy key; `0` means none issued.
    pub policy_key: u32,
    /// Which policy version was acknowledged (opaque to the store).
    pub policy_hash: Option<String>,
    /// Settings `DeviceInformation` fields (Model, IMEI, FriendlyName, OS,
    /// OSLanguage, PhoneNumber, UserAgent, EnableOutboundSMS,
    /// MobileOperator), in the order the device sent them.
    pub device_info: Vec<(String, String)>,
    /// Unix seconds.
    pub first_seen: i64,
    /// Unix seconds; never moves backwards.
    pub last_seen: i64,
    pub wipe: WipeState,
    pub last_command: Option<String>,
    /// An administrator's access override: `allowed`, `blocked`, `quarantined`, or empty
    /// (the configured access rules decide).
    pub access: String,
    /// Wire trace: `on` (bodies redacted), `bodies`, or empty (off).
    pub trace: String,
}

/// One folder as reported to a device by FolderSync.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FolderEntry {
    pub server_id: String,
    /// `"0"` for folders at the root.
    pub parent_id: String,
    pub display_name: String,
    /// MS-ASCMD FolderSync `Type` value.
    pub folder_type: u8,
}

/// The folder hierarchy a device was last sent, under its sync key, plus the
/// one before it (kept so a retried FolderSync with the older key can be
/// answered).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HierarchyState {
    pub key: u32,
    pub folders: Vec<FolderEntry>,
    pub previous: Option<(u32, Vec<FolderEntry>)>,
}

/// What a device was told about one mail collection under one sync key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CollectionView {
    pub key: u32,
    pub uid_validity: u32,
    /// Compact UID set the device holds, e.g. `"1:500,502"` (opaque to the
    /// store).
    pub uids: String,
    /// At most `i64::MAX` (RFC 7162 mod-sequences are 63-bit).
    pub highest_modseq: u64,
    /// Optional per-UID flag encoding (opaque to the store).
    pub flags: Option<String>,
    /// Start of the FilterType window, unix seconds.
    pub filter_start: Option<i64>,
    pub more_available: bool,
}

/// Sync state of one collection on one device: the current view, the one
/// before it, and the cached Sync `Options` blob.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CollectionState {
    pub current: CollectionView,
    pub previous: Option<CollectionView>,
    pub options: Option<Vec<u8>>,
}

/// The parameters of a device's last Ping, reused by an empty Ping.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PingParams {
    pub heartbeat_secs: u32,
    /// (collection id, class), in request order.
    pub folders: Vec<(String, String)>,
}

/// What the store knows about a submission's retry record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SendClaim {
    /// No live record, or one whose owner's lease ran out before it issued DATA: the caller
    /// now owns the key and sends.
    New,
    /// Another request with this key is still sending (its owner's lease runs).
    InFlight,
    /// The message was sent already.
    Done,
    /// The owner's lease ran out after it issued DATA (or a submission's answer was lost):
    /// the server may or may not have the message. Never sent again.
    Unknown,
}

/// How far the submission of a claimed retry record got.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SendPhase {
    /// Claimed; no DATA issued yet (nothing can have been sent).
    Claimed,
    /// DATA issued: from here on the server may get the message.
    Data,
    /// The server accepted the message.
    Sent,
    /// The outcome is unknown (see [`SendClaim::Unknown`]).
    Unknown,
}

impl SendPhase {
    /// Stable storage / display name.
    pub fn as_str(self) -> &'static str {
        match self {
            SendPhase::Claimed => "claimed",
            SendPhase::Data => "data",
            SendPhase::Sent => "sent",
            SendPhase::Unknown => "unknown",
        }
    }

    /// Inverse of [`SendPhase::as_str`].
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "claimed" => Some(SendPhase::Claimed),
            "data" => Some(SendPhase::Data),
            "sent" => Some(SendPhase::Sent),
            "unknown" => Some(SendPhase::Unknown),
            _ => None,
        }
    }
}

/// One IMAP version of a draft (see [`StateStore::record_draft_version`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DraftVersion {
    /// The IMAP UID of this version.
    pub uid: u32,
    /// The draft item (ServerId number) the version belongs to.
    pub item: u32,
    pub message_id: Option<String>,
}

/// One collection of a logged Sync request.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct CollectionLog {
    pub collection_id: String,
    /// The sync key the device sent.
    pub key_in: String,
    /// The sync key it was answered with (none for an error without a key).
    pub key_out: Option<String>,
    pub status: u32,
    /// Items sent to the device.
    pub added_out: u32,
    pub changed_out: u32,
    pub deleted_out: u32,
    /// Changes the device sent.
    pub added_in: u32,
    pub changed_in: u32,
    pub deleted_in: u32,
}

impl CollectionLog {
    /// Items sent to the device.
    pub fn sent(&self) -> u32 {
        self.added_out + self.changed_out + self.deleted_out
    }

    /// Changes the device sent.
    pub fn received(&self) -> u32 {
        self.added_in + self.changed_in + self.deleted_in
    }
}

/// One request of a device, as the request log keeps it.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct RequestEntry {
    /// Assigned by the store; increases with every entry (0 for an entry not stored yet).
    pub id: i64,
    pub user: String,
    pub device_id: String,
    /// Unix milliseconds when the request arrived.
    pub at_ms: i64,
    pub command: String,
    pub eas_status: Option<u32>,
    pub http_status: u16,
    pub duration_ms: u64,
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub collections: Vec<CollectionLog>,
    /// The folders a Ping watched.
    pub ping_folders: Vec<String>,
    /// How a Ping ended: `changed: ID,ID`, `expired`, ...
    pub ping_outcome: Option<String>,
    pub error: Option<String>,
}

/// The last request of one command a device made.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct CommandActivity {
    pub command: String,
    /// Unix seconds.
    pub last_at: i64,
    pub count: u64,
}

/// The last Sync of one folder on a device.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct FolderActivity {
    pub collection_id: String,
    /// Unix seconds.
    pub last_sync: i64,
    pub sync_key: Option<String>,
    pub status: u32,
    /// Items sent to the device by that Sync, and changes the device sent.
    pub last_sent: u64,
    pub last_received: u64,
    pub total_sent: u64,
    pub total_received: u64,
}

/// The committed sync state of one collection, for the admin.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct SyncStateSummary {
    pub collection_id: String,
    pub sync_key: u32,
    pub previous_key: Option<u32>,
    pub more_available: bool,
    /// Start of the FilterType window, unix seconds.
    pub filter_start: Option<i64>,
}

/// What the registry knows about a device beyond its [`Device`] record.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct DeviceActivity {
    /// (unix seconds, text) of the last failed request.
    pub last_error: Option<(i64, String)>,
    /// An administrator's override: `allowed`, `blocked`, `quarantined`; empty when none.
    pub access: String,
    /// When the device acknowledged a remote wipe (unix seconds).
    pub wipe_acknowledged_at: Option<i64>,
    /// Requests of the device that started and are not recorded yet: a waiting Ping or
    /// hanging Sync (or a request still running; also one a stopped gateway never finished).
    pub requests_running: u64,
    pub commands: Vec<CommandActivity>,
    pub folders: Vec<FolderActivity>,
    /// The committed FolderSync key.
    pub hierarchy_key: Option<u32>,
    pub sync_states: Vec<SyncStateSummary>,
}

/// Errors from a [`StateStore`]. Messages never contain credentials (store
/// URLs are not echoed back).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// The database reported an error.
    #[error("state database error: {0}")]
    Database(String),
    /// Stored data is unreadable or violates an invariant.
    #[error("state database is corrupt: {0}")]
    Corrupt(String),
    /// The database stayed locked by another writer past the busy timeout.
    /// The operation was not applied and may be retried.
    #[error("state database is busy")]
    Busy,
    /// The (user, device) pair has no device record.
    #[error("device not found")]
    DeviceNotFound,
    /// The change conflicts with existing state; nothing was applied.
    #[error("state conflict: {0}")]
    Conflict(String),
    /// A caller passed a value the store cannot represent.
    #[error("invalid state value: {0}")]
    InvalidInput(String),
    /// The store could not be configured or opened.
    #[error("state store configuration: {0}")]
    Config(String),
    /// The database was written by a newer gateway version.
    #[error(
        "state database schema version {found} is newer than this build supports ({supported})"
    )]
    SchemaTooNew { found: i64, supported: i64 },
    /// Internal failure (e.g. a worker task panicked).
    #[error("state store internal error: {0}")]
    Internal(String),
}

impl StoreError {
    /// Whether retrying the same call later may succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(self, StoreError::Busy)
    }
}

/// Storage contract for gateway state. See the module documentation for the
/// conventions all implementations follow; [`Cluster`] adds what several nodes on one
/// store need (sync leases, events).
pub trait StateStore: Cluster + Clone + Send + Sync + 'static {
    // ---- devices -------------------------------------------------------

    /// Records that a device made a request. Creates the device on first
    /// sight (`first_seen = last_seen = now`); otherwise updates
    /// `device_type`, `last_command` and `last_seen` (which never moves
    /// backwards), and `user_agent` / `protocol_version` when given (`None`
    /// keeps the stored value). Returns the resulting record.
    #[allow(clippy::too_many_arguments)]
    fn touch_device(
        &self,
        user: &str,
        device_id: &str,
        device_type: &str,
        user_agent: Option<&str>,
        protocol_version: Option<&str>,
        command: &str,
        now: i64,
    ) -> impl Future<Output = Result<Device, StoreError>> + Send;

    /// The device record, if the device is known.
    fn device(
        &self,
        user: &str,
        device_id: &str,
    ) -> impl Future<Output = Result<Option<Device>, StoreError>> + Send;

    /// Admin listing: the devices of `user`, or of all users when `None`,
    /// ordered by user then device id (byte-wise).
    fn devices(
        &self,
        user: Option<&str>,
    ) -> impl Future<Output = Result<Vec<Device>, StoreError>> + Send;

    /// Sets the provisioning state, policy key and acknowledged policy hash.
    fn set_policy(
        &self,
        user: &str,
        device_id: &str,
        state: PolicyState,
        key: u32,
        policy_hash: Option<&str>,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Replaces the stored DeviceInformation fields (order is kept).
    fn set_device_info(
        &self,
        user: &str,
        device_id: &str,
        info: &[(String, String)],
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Sets the remote wipe state.
    fn set_wipe(
        &self,
        user: &str,
        device_id: &str,
        wipe: WipeState,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Admin: removes the device and all its state (policy, info, hierarchy,
    /// collections, cached request). Per-user folder ids are kept, since
    /// they belong to the user. Returns whether the device existed.
    fn delete_device(
        &self,
        user: &str,
        device_id: &str,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    // ---- device registry -------------------------------------------------

    /// Records one finished request of a device: appends it to the device's request log
    /// (keeping about the last `keep` entries; none when `0`), and updates the device's
    /// per-command and per-folder activity and its last error (when `entry.error` is set).
    /// One transaction. Fails with [`StoreError::DeviceNotFound`] for an unknown device.
    fn record_request(
        &self,
        entry: &RequestEntry,
        keep: u32,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// The device's logged requests with an id above `after_id`, the last `limit` of them,
    /// oldest first.
    fn request_log(
        &self,
        user: &str,
        device_id: &str,
        after_id: i64,
        limit: u32,
    ) -> impl Future<Output = Result<Vec<RequestEntry>, StoreError>> + Send;

    /// The device's activity, if the device is known.
    fn device_activity(
        &self,
        user: &str,
        device_id: &str,
    ) -> impl Future<Output = Result<Option<DeviceActivity>, StoreError>> + Send;

    /// Sets an administrator's access override (`""` removes it).
    fn set_access(
        &self,
        user: &str,
        device_id: &str,
        access: &str,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Sets the device's wire trace: `on`, `bodies` or `""` (off).
    fn set_trace(
        &self,
        user: &str,
        device_id: &str,
        trace: &str,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    // ---- per-user folder ids -------------------------------------------

    /// Maps folder identities (opaque strings derived by the backend, e.g.
    /// `"guid:<X-GUID>"` or `"uv:<uidvalidity>:<name>"`) to ServerIds, in
    /// input order. Unknown identities get new ids in one transaction.
    ///
    /// ServerIds are per user (all of a user's devices see the same ids),
    /// short decimal strings from a per-user counter starting at `1`,
    /// stable for the life of the folder, reveal nothing about the name,
    /// and are never reused for another identity (also not after
    /// [`StateStore::retire_folder_ids`]). `"0"` is never assigned.
    fn folder_server_ids(
        &self,
        user: &str,
        identities: &[String],
    ) -> impl Future<Output = Result<Vec<String>, StoreError>> + Send;

    /// Moves the ServerId of `old_identity` to `new_identity`, for a fallback
    /// identity (such as `"uv:<uidvalidity>:<name>"`) that changed because
    /// the folder was renamed; the devices keep seeing the same ServerId.
    ///
    /// Returns the ServerId, or `None` (nothing changed) when `old_identity`
    /// is unknown. Fails with [`StoreError::Conflict`] (nothing changed) when
    /// `new_identity` already has a ServerId of its own.
    fn rebind_folder_identity(
        &self,
        user: &str,
        old_identity: &str,
        new_identity: &str,
    ) -> impl Future<Output = Result<Option<String>, StoreError>> + Send;

    /// Forgets the mapping of folders that no longer exist. Their ServerIds
    /// are never handed out again; if an identity shows up again later it
    /// gets a fresh ServerId. Unknown identities are ignored. Returns how
    /// many mappings were removed.
    fn retire_folder_ids(
        &self,
        user: &str,
        identities: &[String],
    ) -> impl Future<Output = Result<usize, StoreError>> + Send;

    // ---- folder hierarchy (FolderSync) ---------------------------------

    /// The hierarchy last committed for the device, if any.
    fn hierarchy(
        &self,
        user: &str,
        device_id: &str,
    ) -> impl Future<Output = Result<Option<HierarchyState>, StoreError>> + Send;

    /// Atomically makes `(new_key, folders)` current and the previous
    /// current the previous; older snapshots are dropped, so exactly two
    /// keys are kept. Committing the key that is already current (a retried
    /// request) replaces the current folders and keeps the previous
    /// snapshot. `new_key` must not be `0`.
    fn commit_hierarchy(
        &self,
        user: &str,
        device_id: &str,
        new_key: u32,
        folders: &[FolderEntry],
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Drops all sync state of the device (hierarchy, collections, cached
    /// Sync request) while keeping the device record, provisioning and
    /// device information. Used when the device restarts with sync key 0.
    fn reset_sync_state(
        &self,
        user: &str,
        device_id: &str,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    // ---- per-collection mail sync state (Sync) -------------------------

    /// The sync state of one collection on the device, if any.
    fn collection_state(
        &self,
        user: &str,
        device_id: &str,
        collection_id: &str,
    ) -> impl Future<Output = Result<Option<CollectionState>, StoreError>> + Send;

    /// Atomically makes `view` the current view of the collection and the
    /// previous current the previous (same same-key rule as
    /// [`StateStore::commit_hierarchy`]). `options: Some(..)` replaces the
    /// cached Sync Options, `None` keeps them. `view.key` must not be `0`.
    fn commit_collection(
        &self,
        user: &str,
        device_id: &str,
        collection_id: &str,
        view: &CollectionView,
        options: Option<&[u8]>,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Deletes the sync state of one collection (sync key 0 flow). Returns
    /// whether there was any.
    fn reset_collection(
        &self,
        user: &str,
        device_id: &str,
        collection_id: &str,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// Stores (`Some`) or clears (`None`) the device's cached last Sync
    /// request, used to answer empty / partial Sync requests.
    fn set_cached_sync_request(
        &self,
        user: &str,
        device_id: &str,
        request: Option<&[u8]>,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// The device's cached last Sync request, if any.
    fn cached_sync_request(
        &self,
        user: &str,
        device_id: &str,
    ) -> impl Future<Output = Result<Option<Vec<u8>>, StoreError>> + Send;

    // ---- push (Ping) ----------------------------------------------------

    /// Stores the device's last Ping parameters (replacing earlier ones).
    /// Class and collection ids must not contain tabs or line breaks.
    fn set_ping_params(
        &self,
        user: &str,
        device_id: &str,
        params: &PingParams,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// The device's last Ping parameters, if any.
    fn ping_params(
        &self,
        user: &str,
        device_id: &str,
    ) -> impl Future<Output = Result<Option<PingParams>, StoreError>> + Send;

    // ---- submission retry records (SendMail, SmartReply, SmartForward) ----

    /// Claims the retry record `key` of `user` for `owner` (a gateway process and one of its
    /// requests), leased until `lease_until`, remembered until `expires` (unix seconds). A
    /// record whose expiry is at or before `now` counts as absent; expired records of the
    /// user are dropped on the way. Returns:
    /// - [`SendClaim::New`] (the claim is recorded, phase [`SendPhase::Claimed`]) when there
    ///   is no live record, or when the live one's lease ran out (at or before `now`) before
    ///   its owner issued DATA: the claim passes to `owner`;
    /// - [`SendClaim::Unknown`] when the live record's lease ran out after DATA (the record
    ///   becomes [`SendPhase::Unknown`]) or it is unknown already;
    /// - otherwise what the live record says ([`SendClaim::InFlight`], [`SendClaim::Done`]).
    fn claim_send(
        &self,
        user: &str,
        key: &str,
        owner: &str,
        now: i64,
        lease_until: i64,
        expires: i64,
    ) -> impl Future<Output = Result<SendClaim, StoreError>> + Send;

    /// Extends the lease of `owner`'s claim `key` (still claimed or in DATA) to `lease_until`.
    /// `false` when `owner` no longer holds such a claim.
    fn renew_send(
        &self,
        user: &str,
        key: &str,
        owner: &str,
        lease_until: i64,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// Moves `owner`'s claim `key` to `phase`: [`SendPhase::Data`] only from
    /// [`SendPhase::Claimed`] (the check that nobody took the claim over, made before DATA);
    /// [`SendPhase::Unknown`] unless sent; [`SendPhase::Sent`] from any phase (the server's
    /// answer is the truth, also after another node judged the outcome unknown). `false` when
    /// `owner` holds no claim `key` that can move there.
    fn set_send_phase(
        &self,
        user: &str,
        key: &str,
        owner: &str,
        phase: SendPhase,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// Forgets `owner`'s claim `key` (nothing was sent; a retry must send). A record held
    /// by another owner, or already sent, is kept.
    fn release_send(
        &self,
        user: &str,
        key: &str,
        owner: &str,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    // ---- draft versions (Drafts folder, per user) -----------------------

    /// Records that the UID `version.uid` of the Drafts collection (under
    /// `uid_validity`) is a version of the draft item `version.item`, with
    /// the Sync Add's `client_key` when a device created it. A UID that is
    /// already recorded keeps its item; the stored record is returned.
    fn record_draft_version(
        &self,
        user: &str,
        collection_id: &str,
        uid_validity: u32,
        version: &DraftVersion,
        client_key: Option<&str>,
    ) -> impl Future<Output = Result<DraftVersion, StoreError>> + Send;

    /// The recorded versions among `uids`, in UID order.
    fn draft_versions(
        &self,
        user: &str,
        collection_id: &str,
        uid_validity: u32,
        uids: &[u32],
    ) -> impl Future<Output = Result<Vec<DraftVersion>, StoreError>> + Send;

    /// Every recorded version of the draft `item`, in UID order.
    fn draft_item_versions(
        &self,
        user: &str,
        collection_id: &str,
        uid_validity: u32,
        item: u32,
    ) -> impl Future<Output = Result<Vec<DraftVersion>, StoreError>> + Send;

    /// The recorded versions with this Message-ID, in UID order.
    fn draft_versions_by_message_id(
        &self,
        user: &str,
        collection_id: &str,
        uid_validity: u32,
        message_id: &str,
    ) -> impl Future<Output = Result<Vec<DraftVersion>, StoreError>> + Send;

    /// The first version of the draft a Sync Add with `client_key` created.
    fn draft_by_client_key(
        &self,
        user: &str,
        collection_id: &str,
        uid_validity: u32,
        client_key: &str,
    ) -> impl Future<Output = Result<Option<DraftVersion>, StoreError>> + Send;

    /// Forgets every version of the draft `item` (it was deleted or sent).
    fn forget_draft(
        &self,
        user: &str,
        collection_id: &str,
        uid_validity: u32,
        item: u32,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Takes the store's write lock and lets it go (for readiness checks): fails when the
    /// store cannot be written now.
    fn check_writable(&self) -> impl Future<Output = Result<(), StoreError>> + Send;
}
