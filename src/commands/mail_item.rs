//! A stored mail as an EAS Email item (MS-ASEMAIL 2.2.2; MS-ASAIRS 2.2.2 Body): one
//! conversion for Sync, ItemOperations, Search and Find.
//!
//! - What a device asked for (BodyPreference, MIMESupport) becomes [`body_options`].
//! - IMAP flags become EAS Read / Flag / LastVerbExecuted through [`mail_flags`]; the MIME
//!   work itself is in [`crate::mime`].

use crate::backend::MessageMeta;
use crate::eas::sync::SyncOptions;
use crate::eas::ProtocolVersion;
use crate::mime;

/// The Email ApplicationData of one stored mail, as Sync, ItemOperations, Search and Find send
/// it; `server_id` also prefixes its attachments' FileReferences.
pub fn item_data(
    raw: &[u8],
    meta: &MessageMeta,
    server_id: &str,
    in_drafts: bool,
    opts: &mime::BodyOptions,
) -> crate::wbxml::Element {
    let info = item_info(meta, server_id, in_drafts);
    mime::application_data(raw, &mail_flags(meta), &info, opts)
}

/// What the MIME layer needs to know of a stored mail besides its bytes.
pub fn item_info<'a>(
    meta: &MessageMeta,
    server_id: &'a str,
    in_drafts: bool,
) -> mime::ItemInfo<'a> {
    mime::ItemInfo {
        file_reference_prefix: server_id,
        internal_date: meta.internal_date,
        in_drafts,
    }
}

/// IMAP flags as the MIME layer wants them.
pub fn mail_flags(meta: &MessageMeta) -> mime::MailFlags {
    mime::MailFlags {
        seen: meta.has_flag("\\Seen"),
        flagged: meta.has_flag("\\Flagged"),
        answered: meta.has_flag("\\Answered"),
        forwarded: meta.has_flag("$Forwarded"),
        draft: meta.has_flag("\\Draft"),
        keywords: meta
            .flags
            .iter()
            .filter(|f| !f.starts_with('\\') && !f.starts_with('$'))
            .cloned()
            .collect(),
    }
}

/// Sync Options as the MIME layer wants them.
pub fn body_options(o: &SyncOptions, version: ProtocolVersion) -> mime::BodyOptions {
    if o.body_preferences.is_empty() && o.mime_support == 0 {
        return mime::BodyOptions::default_for(version);
    }
    mime::BodyOptions {
        preferences: o
            .body_preferences
            .iter()
            .map(|p| mime::BodyPreference {
                body_type: p.body_type,
                truncation_size: p.truncation_size,
                all_or_none: p.all_or_none,
                preview: p.preview,
            })
            .collect(),
        mime_support: o.mime_support,
        mime_truncation: o.mime_truncation,
        version,
    }
}
