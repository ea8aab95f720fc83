//! Search (MS-ASCMD 2.2.1.16) of the Mailbox store, on the engine Find shares
//! ([`crate::commands::mailbox_search`]).
//!
//! - The query becomes one IMAP `UID SEARCH` per folder ([`crate::backend::MailQuery`]):
//!   FreeText words as `TEXT` criteria, DateReceived bounds on INTERNALDATE. With a
//!   CollectionId only that folder is searched (and its subfolders with DeepTraversal);
//!   without one, every mail folder is.
//! - The matches of all folders are merged newest first (INTERNALDATE, then UID); only the
//!   mails of the requested Range (at most 100) are fetched and converted, so the cost of a
//!   request is the searches plus one page of mails. Total counts every match.
//! - A request gets [`TIME_BUDGET`]; beyond it the answer is Store Status 10 (timed out) and
//!   the IMAP connection, left mid-command, is dropped from the pool.
//! - Results are not kept between requests: RebuildResults is accepted, and each page is a
//!   fresh search (so pages stay disjoint while the folder does not change).
//! - A GAL search answers Status 3 (server error; cause: no directory is configured) on the
//!   Search element and on the Store: MS-ASCMD has no dedicated "GAL not available" value,
//!   and 3 is what a missing directory is in those tables. DocumentLibrary and unknown
//!   stores get the same answer.
//! - LongIds are `S<collectionId>:<uidvalidity>:<uid>` ([`crate::eas::search::long_id`]):
//!   resolved only in the requesting user's own folders over that user's own IMAP login, so
//!   they cannot reach another user's mail, and valid while the mail stays in its folder.

use tracing::debug;

use crate::backend::{MailBackend, MailQuery, SpecialUse};
use crate::eas::search::{self as model, status, SearchRequest, SearchResult};
use crate::eas::sync::SyncOptions;
use crate::state::StateStore;
use crate::wbxml::Element;

use super::ids::server_id;
use super::mail_item::{body_options, item_data};
use super::mailbox_search::{backend_failure, fetch_page, run, scope, TIME_BUDGET};
use super::{CommandError, Context, Gateway, Outcome};

pub async fn handle<B: MailBackend, S: StateStore>(
    gw: &Gateway<B, S>,
    ctx: &Context,
    body: &Element,
) -> Result<Outcome, CommandError> {
    let req = match model::parse(body) {
        Ok(SearchRequest::Mailbox(m)) => m,
        Ok(SearchRequest::Gal) => {
            debug!("GAL search: no directory is configured");
            return Ok(unavailable());
        }
        Ok(SearchRequest::Other(name)) => {
            debug!(store = %name, "search of an unsupported store");
            return Ok(unavailable());
        }
        Err(r) => {
            debug!(
                reason = r.reason,
                status = r.status,
                "search request refused"
            );
            return Ok(store_outcome(r.status));
        }
    };
    let options = match req.options.as_ref().map(SyncOptions::from_element) {
        Some(Ok(o)) => o,
        Some(Err(e)) => {
            debug!(error = %e, "bad Search Options");
            return Ok(store_outcome(status::INVALID_REQUEST));
        }
        None => SyncOptions::default(),
    };
    if !req.wants_email() {
        // Only mail lives in IMAP: nothing of another class can match.
        return Ok(wbxml(model::response(status::SUCCESS, &[], None, Some(0))));
    }
    let opts = body_options(&options, ctx.version);
    let query = MailQuery {
        words: req.words.clone(),
        after: req.after,
        before: req.before,
    };
    let mut session = gw
        .sessions
        .get(&ctx.user.credentials, ctx.client_ip)
        .await?;
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
            return Ok(store_outcome(status::FOLDER_SYNC_REQUIRED));
        };
        let found = match run(&mut *session, &scope, &query, req.range).await {
            Ok(f) => f,
            Err(e) => return backend_failure(e, status::SERVER_ERROR).map(store_outcome),
        };
        let page = match fetch_page(&mut *session, &scope, &found.page).await {
            Ok(p) => p,
            Err(e) => return backend_failure(e, status::SERVER_ERROR).map(store_outcome),
        };
        let results: Vec<SearchResult> = page
            .iter()
            .map(|(hit, meta, raw)| {
                // Cannot panic: `run` numbers its hits by their folder's position in `scope`.
                #[allow(clippy::indexing_slicing)]
                let (cid, folder) = &scope[hit.folder];
                let sid = server_id(cid, hit.uid);
                let in_drafts = folder.special_use == Some(SpecialUse::Drafts);
                SearchResult {
                    long_id: model::long_id(cid, hit.uid_validity, hit.uid),
                    collection_id: cid.clone(),
                    application_data: item_data(raw, meta, &sid, in_drafts, &opts),
                }
            })
            .collect();
        let range = found
            .range
            .map(|(first, _)| (first, first + results.len().saturating_sub(1)));
        Ok(wbxml(model::response(
            status::SUCCESS,
            &results,
            range,
            Some(found.total),
        )))
    };
    match tokio::time::timeout(TIME_BUDGET, work).await {
        Ok(r) => r,
        Err(_) => {
            debug!("search timed out");
            Ok(store_outcome(status::TIMED_OUT))
        }
    }
}

fn wbxml(body: Element) -> Outcome {
    Outcome::Wbxml {
        body,
        status: Some(status::SUCCESS),
    }
}

fn unavailable() -> Outcome {
    Outcome::Wbxml {
        body: model::unavailable_store_response(),
        status: Some(status::SERVER_ERROR),
    }
}

fn store_outcome(code: u32) -> Outcome {
    Outcome::Wbxml {
        body: model::store_status_response(code),
        status: Some(code),
    }
}
