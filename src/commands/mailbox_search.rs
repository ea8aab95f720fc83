//! The mailbox search engine Search and Find share, and the resolution of search LongIds
//! (MS-ASCMD 2.2.3.93 LongId) for ItemOperations Fetch.
//!
//! - One IMAP `UID SEARCH` per folder of the [`scope`]; matches merged newest first
//!   (INTERNALDATE, then folder, then UID) and cut to the requested range ([`run`]); only that
//!   page is fetched ([`fetch_page`]).
//! - A LongId is `S<collectionId>:<uidvalidity>:<uid>` ([`crate::eas::search::long_id`]):
//!   resolved in the requesting user's own folders only, over that user's own IMAP login, and
//!   only while the folder keeps that UIDVALIDITY ([`fetch_long_id`]).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use tracing::debug;

use crate::backend::{BackendError, MailBackend, MailFolder, MailQuery, MailSession, SpecialUse};
use crate::commands::ids::server_id;
use crate::commands::mail_item::{body_options, item_data};
use crate::commands::{folders, CommandError, Context, Gateway};
use crate::eas::item_operations::{
    mail_properties, status as io_status, FetchRequest, FetchResponse,
};
use crate::eas::search as model;
use crate::eas::sync::SyncOptions;
use crate::state::StateStore;

/// The longest a Search or Find may work before it answers "timed out" (clients give up
/// around 40 s).
pub const TIME_BUDGET: Duration = Duration::from_secs(20);

/// Login and availability failures end the request (401 / 503); anything else the mail
/// server said is answered with `code`.
pub(crate) fn backend_failure(e: BackendError, code: u32) -> Result<u32, CommandError> {
    match e {
        BackendError::AuthFailed | BackendError::Unavailable(_) => Err(e.into()),
        other => {
            debug!(error = %other, "mailbox search failed");
            Ok(code)
        }
    }
}

/// The folders a search covers, as (ServerId, mailbox); `None` for an unknown CollectionId.
pub(crate) async fn scope<B: MailBackend, S: StateStore>(
    gw: &Gateway<B, S>,
    ctx: &Context,
    session: &mut B::Session,
    collection_id: Option<&str>,
    deep_traversal: bool,
) -> Result<Option<Vec<(String, MailFolder)>>, CommandError> {
    let user = ctx.user.address.as_str();
    let list = match gw.folders.cached(user) {
        Some(l) if collection_id.is_none_or(|c| l.iter().any(|r| r.server_id == c)) => l,
        _ => folders::list(&gw.store, &gw.folders, session, user).await?,
    };
    let mail_folders = list.iter().filter_map(|r| {
        r.mailbox
            .as_ref()
            .filter(|m| m.selectable)
            .map(|m| (r.server_id.clone(), m.clone()))
    });
    let Some(cid) = collection_id else {
        return Ok(Some(mail_folders.collect()));
    };
    let Some(root) = list.iter().find(|r| r.server_id == cid) else {
        return Ok(None);
    };
    let Some(root_box) = &root.mailbox else {
        // The virtual Outbox: nothing to search.
        return Ok(Some(Vec::new()));
    };
    let prefix = root_box.delimiter.map(|d| format!("{}{d}", root_box.name));
    Ok(Some(
        mail_folders
            .filter(|(id, m)| {
                id == cid
                    || (deep_traversal && prefix.as_deref().is_some_and(|p| m.name.starts_with(p)))
            })
            .collect(),
    ))
}

/// One match: the folder (index into the scope), UID, INTERNALDATE and UIDVALIDITY.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Hit {
    pub folder: usize,
    pub uid: u32,
    pub date: i64,
    pub uid_validity: u32,
}

/// The matches of a search: how many in all, and the requested page of them.
#[derive(Debug, Default)]
pub(crate) struct Found {
    pub total: usize,
    pub page: Vec<Hit>,
    /// (first, last) of the page, `None` when the range starts beyond the matches.
    pub range: Option<(usize, usize)>,
}

/// Searches every folder of the scope and cuts the merged, newest-first matches to `range`.
pub(crate) async fn run<M: MailSession>(
    session: &mut M,
    scope: &[(String, MailFolder)],
    query: &MailQuery,
    range: (u32, u32),
) -> Result<Found, BackendError> {
    let started = Instant::now();
    let mut hits = Vec::new();
    for (i, (_, folder)) in scope.iter().enumerate() {
        let found = match session.search_mail(&folder.name, query).await {
            Ok(f) => f,
            // Deleted since the listing: it has no matches.
            Err(BackendError::NotFound(_)) => continue,
            Err(e) => return Err(e),
        };
        hits.extend(found.hits.iter().map(|&(uid, date)| Hit {
            folder: i,
            uid,
            date,
            uid_validity: found.uid_validity,
        }));
    }
    hits.sort_unstable_by(|a, b| {
        b.date
            .cmp(&a.date)
            .then(a.folder.cmp(&b.folder))
            .then(b.uid.cmp(&a.uid))
    });
    let total = hits.len();
    let range = model::clamp_range(range, total);
    let page = match range {
        Some((first, last)) => hits.get(first..=last).unwrap_or_default().to_vec(),
        None => Vec::new(),
    };
    debug!(
        folders = scope.len(),
        total,
        elapsed_ms = started.elapsed().as_millis() as u64,
        "mailbox search"
    );
    Ok(Found { total, page, range })
}

/// The mails of a page, in page order; mails gone since the search are left out.
pub(crate) async fn fetch_page<M: MailSession>(
    session: &mut M,
    scope: &[(String, MailFolder)],
    page: &[Hit],
) -> Result<Vec<(Hit, crate::backend::MessageMeta, bytes::Bytes)>, BackendError> {
    let mut by_folder: HashMap<usize, Vec<u32>> = HashMap::new();
    for h in page {
        by_folder.entry(h.folder).or_default().push(h.uid);
    }
    let mut fetched = HashMap::new();
    for (folder, uids) in by_folder {
        let Some((_, mailbox)) = scope.get(folder) else {
            continue;
        };
        let mails = match session.fetch_messages(&mailbox.name, &uids).await {
            Ok(m) => m,
            Err(BackendError::NotFound(_)) => Vec::new(),
            Err(e) => return Err(e),
        };
        for (meta, raw) in mails {
            fetched.insert((folder, meta.uid), (meta, raw));
        }
    }
    Ok(page
        .iter()
        .filter_map(|h| {
            fetched
                .remove(&(h.folder, h.uid))
                .map(|(meta, raw)| (*h, meta, raw))
        })
        .collect())
}

/// ItemOperations Fetch of a search LongId: the mail's properties shaped by the Fetch's
/// Options, or Status 6 when the LongId names nothing (any more) in this user's folders.
pub async fn fetch_long_id<B: MailBackend, S: StateStore>(
    gw: &Gateway<B, S>,
    ctx: &Context,
    session: &mut B::Session,
    req: &FetchRequest,
) -> Result<FetchResponse, CommandError> {
    let not_found = || FetchResponse::failed(req, io_status::OBJECT_NOT_FOUND);
    let Some((cid, uid_validity, uid)) = req.long_id.as_deref().and_then(model::parse_long_id)
    else {
        return Ok(not_found());
    };
    let options = match req.options.as_ref().map(SyncOptions::from_element) {
        Some(Ok(o)) => o,
        Some(Err(e)) => {
            debug!(error = %e, "bad ItemOperations Options");
            return Ok(FetchResponse::failed(req, io_status::PROTOCOL_ERROR));
        }
        None => SyncOptions::default(),
    };
    let user = ctx.user.address.as_str();
    // Only this user's folders are looked at: a LongId cannot name anyone else's mail.
    let resolved = folders::resolve(&gw.store, &gw.folders, session, user, &cid).await?;
    let Some(mailbox) = resolved.and_then(|r| r.mailbox).filter(|m| m.selectable) else {
        return Ok(not_found());
    };
    let state = match session.select(&mailbox.name).await {
        Ok(s) => s,
        Err(BackendError::NotFound(_)) => return Ok(not_found()),
        Err(e) => return Err(e.into()),
    };
    if state.uid_validity != uid_validity {
        return Ok(not_found());
    }
    let fetched = match session.fetch_messages(&mailbox.name, &[uid]).await {
        Ok(f) => f,
        Err(BackendError::NotFound(_)) => Vec::new(),
        Err(e) => return Err(e.into()),
    };
    let Some((meta, raw)) = fetched.into_iter().find(|(m, _)| m.uid == uid) else {
        return Ok(not_found());
    };
    let sid = server_id(&cid, uid);
    let data = item_data(
        &raw,
        &meta,
        &sid,
        mailbox.special_use == Some(SpecialUse::Drafts),
        &body_options(&options, ctx.version),
    );
    Ok(FetchResponse {
        status: io_status::SUCCESS,
        long_id: req.long_id.clone(),
        collection_id: None,
        server_id: None,
        class: Some("Email"),
        file_reference: None,
        properties: Some(mail_properties(data)),
    })
}
