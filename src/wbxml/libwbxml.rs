//! Compatibility data for libwbxml 0.11.8 (`wbxml2xml -l ACTIVESYNC`,
//! `xml2wbxml -a -n`), whose ActiveSync tables spell some tags differently
//! from MS-ASWBXML, lack a few tags, and show some opaque values as base64.

use super::codepage::Tag;

/// `(page, token, libwbxml name, also)` for every tag libwbxml 0.11.8 names
/// differently from MS-ASWBXML. Entries with `also` set are a second name
/// libwbxml accepts for a tag it otherwise spells as the spec does.
const ALIASES: &[(u8, u8, &str, bool)] = &[
    (1, 0x07, "AssistantTelephoneNumber", false), // spec: AssistantPhoneNumber
    (1, 0x0D, "BusinessCity", false),             // spec: BusinessAddressCity
    (1, 0x0E, "BusinessCountry", false),          // spec: BusinessAddressCountry
    (1, 0x0F, "BusinessPostalCode", false),       // spec: BusinessAddressPostalCode
    (1, 0x10, "BusinessState", false),            // spec: BusinessAddressState
    (1, 0x11, "BusinessStreet", false),           // spec: BusinessAddressStreet
    (1, 0x21, "HomeCity", false),                 // spec: HomeAddressCity
    (1, 0x22, "HomeCountry", false),              // spec: HomeAddressCountry
    (1, 0x23, "HomePostalCode", false),           // spec: HomeAddressPostalCode
    (1, 0x24, "HomeState", false),                // spec: HomeAddressState
    (1, 0x25, "HomeStreet", false),               // spec: HomeAddressStreet
    (1, 0x2D, "OtherCity", false),                // spec: OtherAddressCity
    (1, 0x2E, "OtherCountry", false),             // spec: OtherAddressCountry
    (1, 0x2F, "OtherPostalCode", false),          // spec: OtherAddressPostalCode
    (1, 0x30, "OtherState", false),               // spec: OtherAddressState
    (1, 0x31, "OtherStreet", false),              // spec: OtherAddressStreet
    (2, 0x19, "Reply-To", false),                 // spec: ReplyTo
    (2, 0x29, "Recurrence_Type", false),          // spec: Type
    (2, 0x2A, "Recurrence_Until", false),         // spec: Until
    (2, 0x2B, "Recurrence_Occurrences", false),   // spec: Occurrences
    (2, 0x2C, "Recurrence_Interval", false),      // spec: Interval
    (2, 0x2D, "Recurrence_DayOfWeek", false),     // spec: DayOfWeek
    (2, 0x2E, "Recurrence_DayOfMonth", false),    // spec: DayOfMonth
    (2, 0x2F, "Recurrence_WeekOfMonth", false),   // spec: WeekOfMonth
    (2, 0x30, "Recurrence_MonthOfYear", false),   // spec: MonthOfYear
    (2, 0x3B, "FlagStatus", false),               // spec: Status
    (2, 0x1D, "DTStamp", false),                  // spec: DtStamp
    (4, 0x09, "Attendee_Email", false),           // spec: Email
    (4, 0x0A, "Attendee_Name", false),            // spec: Name
    (4, 0x15, "Exception_Deleted", false),        // spec: Deleted
    (4, 0x16, "Exception_StartTime", false),      // spec: ExceptionStartTime
    (4, 0x19, "Organizer_Email", false),          // spec: OrganizerEmail
    (4, 0x1A, "Organizer_Name", false),           // spec: OrganizerName
    (4, 0x1C, "Recurrence_Type", false),          // spec: Type
    (4, 0x1D, "Recurrence_Until", false),         // spec: Until
    (4, 0x1E, "Recurrence_Occurrences", false),   // spec: Occurrences
    (4, 0x1F, "Recurrence_Interval", false),      // spec: Interval
    (4, 0x20, "Recurrence_DayOfWeek", false),     // spec: DayOfWeek
    (4, 0x21, "Recurrence_DayOfMonth", false),    // spec: DayOfMonth
    (4, 0x22, "Recurrence_WeekOfMonth", false),   // spec: WeekOfMonth
    (4, 0x23, "Recurrence_MonthOfYear", false),   // spec: MonthOfYear
    (4, 0x29, "Attendee_Status", false),          // spec: AttendeeStatus
    (4, 0x2A, "Attendee_Type", false),            // spec: AttendeeType
    (4, 0x05, "TimeZone", false),                 // spec: Timezone
    (4, 0x11, "DTStamp", false),                  // spec: DtStamp
    (9, 0x10, "Recurrence_Type", false),          // spec: Type
    (9, 0x11, "Recurrence_Start", false),         // spec: Start
    (9, 0x12, "Recurrence_Until", false),         // spec: Until
    (9, 0x13, "Recurrence_Occurrences", false),   // spec: Occurrences
    (9, 0x14, "Recurrence_Interval", false),      // spec: Interval
    (9, 0x15, "Recurrence_DayOfMonth", false),    // spec: DayOfMonth
    (9, 0x16, "Recurrence_DayOfWeek", false),     // spec: DayOfWeek
    (9, 0x17, "Recurrence_WeekOfMonth", false),   // spec: WeekOfMonth
    (9, 0x18, "Recurrence_MonthOfYear", false),   // spec: MonthOfYear
    (9, 0x19, "Recurrence_Regenerate", false),    // spec: Regenerate
    (9, 0x1A, "Recurrence_DeadOccur", false),     // spec: DeadOccur
    (9, 0x0D, "UTCDueDate", false),               // spec: UtcDueDate
    (9, 0x1F, "UTCStartDate", false),             // spec: UtcStartDate
    (14, 0x10, "DeviceEncryptionEnabled", true),  // also
    (18, 0x2B, "ihsManagementInformation", false), // spec: RightsManagementInformation
    (18, 0x1F, "SmtpAddress", false),             // spec: SMTPAddress
    (21, 0x17, "ForwardeeName", false),           // spec: Name
    (21, 0x18, "ForwardeeEmail", false),          // spec: Email
    (21, 0x10, "MIME", false),                    // spec: Mime
    (24, 0x12, "RMOwner", false),                 // spec: Owner
    (24, 0x18, "RemoveRightsManagementDistribution", false), // spec: RemoveRightsManagementProtection
];

/// Tags of MS-ASWBXML that libwbxml 0.11.8 does not know (besides all of
/// page 25, Find).
const MISSING: &[Tag] = &[Tag::new(8, 0x10), Tag::new(8, 0x11), Tag::new(14, 0x3B)];

/// Tags whose opaque content libwbxml shows as base64 text (and encodes
/// back from base64 into OPAQUE).
const BINARY: &[Tag] = &[
    Tag::new(10, 0x1C), // ResolveRecipients Data
    Tag::new(15, 0x20), // Search ConversationId
    Tag::new(16, 0x12), // GAL Data
    Tag::new(17, 0x1F), // AirSyncBase Content
    Tag::new(20, 0x18), // ItemOperations ConversationId
    Tag::new(21, 0x10), // ComposeMail Mime
    Tag::new(22, 0x09), // Email2 ConversationId
    Tag::new(22, 0x0A), // Email2 ConversationIndex
];

/// The tag libwbxml calls `name` on `page` (spec name or libwbxml spelling).
pub fn lookup(page: u8, name: &str) -> Option<Tag> {
    if let Some(p) = super::codepage::page(page) {
        if let Some(t) = p.token(name) {
            return Some(Tag::new(page, t));
        }
    }
    ALIASES
        .iter()
        .find(|&&(p, _, n, _)| p == page && n == name)
        .map(|&(p, t, _, _)| Tag::new(p, t))
}

/// The name libwbxml 0.11.8 uses for `tag`, or `None` if it does not know it.
pub fn name(tag: Tag) -> Option<&'static str> {
    if tag.page >= 25 || MISSING.contains(&tag) {
        return None;
    }
    if let Some(&(_, _, n, _)) = ALIASES
        .iter()
        .find(|&&(p, t, _, also)| p == tag.page && t == tag.token && !also)
    {
        return Some(n);
    }
    tag.name()
}

/// True if libwbxml writes this tag's opaque content as base64 text.
pub fn is_binary(tag: Tag) -> bool {
    BINARY.contains(&tag)
}

/// The namespace libwbxml uses for a page: the page name with a trailing
/// colon, except `Gal:` for page 16 (`GAL`).
pub fn namespace(page: u8) -> Option<String> {
    match page {
        16 => Some("Gal:".to_string()),
        _ => super::codepage::page(page).map(|p| format!("{}:", p.name)),
    }
}

/// Number of alias entries (for tests).
pub fn alias_count() -> usize {
    ALIASES.len()
}
