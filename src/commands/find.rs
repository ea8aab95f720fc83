//! Find (MS-ASCMD 2.2.1.2, protocol 16.1): mailbox free-text search with the Search engine
//! ([`super::mailbox_search`]): same IMAP `TEXT` criteria, same folder scope (one CollectionId, its
//! subfolders with DeepTraversal, or every mail folder), same newest-first merge, same time
//! budget. Results carry the mail's Sync ServerId and CollectionId, so the device can fetch
//! or change the mail with ItemOperations and Sync.
//!
//! - A Range must start at 0 (Response Status 4 otherwise, as the spec says); at most 100
//!   results are answered, Total counts every match.
//! - The properties are Subject, DateReceived, DisplayTo, DisplayCc, Importance, Read,
//!   IsDraft (16.x drafts), Preview (255 characters of the plain text), HasAttachments, From.
//! - GAL (and its Picture options) has no directory behind it: the Response names the GAL
//!   store with Status 2; Find's table has no "not available" value and 2 tells the client
//!   not to retry the same request.
//! - A timeout or a mail server failure answers Response Status 2 for the Mailbox store
//!   (Find has no server-error value); login and availability failures end the request.

use tracing::debug;

use crate::backend::{MailBackend, MailQuery, SpecialUse};
use crate::eas::find::{self as model, status, FindRequest, FindResult};
use crate::mime;
use crate::state::StateStore;
use crate::wbxml::tags::{airsyncbase as b, email};
use crate::wbxml::Element;

use super::ids::server_id;
use super::mail_item::item_data;
use super::mailbox_search::{backend_failure, fetch_page, run, scope, TIME_BUDGET};
use super::{CommandError, Context, Gateway, Outcome};

/// Bytes of plain text converted for a Preview (enough for 255 characters).
const PREVIEW_BYTES: u32 = 2048;

pub async fn handle<B: MailBackend, S: StateStore>(
    gw: &Gateway<B, S>,
    ctx: &Context,
    body: &Element,
) -> Result<Outcome, CommandError> {
    let req = match model::parse(body) {
        Ok(FindRequest::Mailbox(m)) => m,
        Ok(FindRequest::Gal) => {
            debug!("GAL find: no directory is configured");
            return Ok(outcome(
                model::response_status("GAL", status::INVALID_REQUEST),
                status::INVALID_REQUEST,
            ));
        }
        Err(r) if r.status == status::START_WITH_RANGE_ZERO => {
            return Ok(outcome(
                model::response_status("Mailbox", r.status),
                r.status,
            ));
        }
        Err(r) => {
            debug!(reason = r.reason, "find request refused");
            return Ok(outcome(model::top_status(r.status), r.status));
        }
    };
    if !req.wants_email() {
        return Ok(outcome(model::response(&[], None, 0), status::SUCCESS));
    }
    let query = MailQuery {
        words: req.words.clone(),
        after: None,
        before: None,
    };
    let opts =
        mime::BodyOptions::with_preference(ctx.version, mime::BODY_TYPE_PLAIN, Some(PREVIEW_BYTES));
    let mut session = gw
        .sessions
        .get(&ctx.user.credentials, ctx.client_ip)
        .await?;
    let failed = || {
        outcome(
            model::response_status("Mailbox", status::INVALID_REQUEST),
            status::INVALID_REQUEST,
        )
    };
    let work = async {
        let Some(scope) = scope(
            gw,
            ctx,
            &mut *session,
            req.collection_id.as_deref(),
            req.deep_traversal,
        )
        .await?
        else {
            return Ok(outcome(
                model::top_status(status::FOLDER_SYNC_REQUIRED),
                status::FOLDER_SYNC_REQUIRED,
            ));
        };
        let found = match run(&mut *session, &scope, &query, req.range).await {
            Ok(f) => f,
            Err(e) => return backend_failure(e, status::INVALID_REQUEST).map(|_| failed()),
        };
        let page = match fetch_page(&mut *session, &scope, &found.page).await {
            Ok(p) => p,
            Err(e) => return backend_failure(e, status::INVALID_REQUEST).map(|_| failed()),
        };
        let results: Vec<FindResult> = page
            .iter()
            .map(|(hit, meta, raw)| {
                // Cannot panic: `run` numbers its hits by their folder's position in `scope`.
                #[allow(clippy::indexing_slicing)]
                let (cid, folder) = &scope[hit.folder];
                let sid = server_id(cid, hit.uid);
                let in_drafts = folder.special_use == Some(SpecialUse::Drafts);
                let ad = item_data(raw, meta, &sid, in_drafts, &opts);
                let cc = model::display_names(ad.text_of(email::CC).unwrap_or(""));
                let preview = ad
                    .first(b::BODY)
                    .and_then(|body| body.text_of(b::DATA))
                    .unwrap_or("");
                FindResult {
                    properties: model::properties(&ad, &cc, preview),
                    server_id: sid,
                    collection_id: cid.clone(),
                }
            })
            .collect();
        let range = found
            .range
            .map(|(first, _)| (first, first + results.len().saturating_sub(1)));
        Ok(outcome(
            model::response(&results, range, found.total),
            status::SUCCESS,
        ))
    };
    match tokio::time::timeout(TIME_BUDGET, work).await {
        Ok(r) => r,
        Err(_) => {
            debug!("find timed out");
            Ok(failed())
        }
    }
}

fn outcome(body: Element, code: u32) -> Outcome {
    Outcome::Wbxml {
        body,
        status: Some(code),
    }
}
