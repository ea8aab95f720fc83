//! Status codes common to all commands (MS-ASCMD 2.2.2), and HTTP statuses EAS gives meaning to.

/// Common status values that any command may answer in its `Status` element (14.0+).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u16)]
pub enum CommonStatus {
    InvalidContent = 101,
    InvalidWbxml = 102,
    InvalidXml = 103,
    InvalidDateTime = 104,
    InvalidCombinationOfIds = 105,
    InvalidIds = 106,
    InvalidMime = 107,
    DeviceIdMissingOrInvalid = 108,
    DeviceTypeMissingOrInvalid = 109,
    ServerError = 110,
    ServerErrorRetryLater = 111,
    MailboxQuotaExceeded = 113,
    SendQuotaExceeded = 115,
    MessagePreviouslySent = 118,
    MessageHasNoRecipient = 119,
    MailSubmissionFailed = 120,
    AttachmentIsTooLarge = 122,
    AccessDenied = 130,
    ObjectNotFound = 131,
    DeviceNotProvisioned = 142,
    PolicyRefresh = 143,
    InvalidPolicyKey = 144,
    ItemNotFound = 150,
}

impl CommonStatus {
    pub fn code(self) -> u16 {
        self as u16
    }
}

/// HTTP 449 "Retry after sending a PROVISION command": how 12.x is told to provision.
pub const HTTP_NEEDS_PROVISIONING: u16 = 449;
