//! Server -> device: what changed in a mailbox since the device's view.
//!
//! Adds are mails in the window that the device does not hold (newest first: highest UID
//! first); Deletes are mails it holds that were expunged or moved away; SoftDeletes are mails
//! it holds that aged out of its FilterType window (ageing changes no MODSEQ, so the window's
//! start is compared too); Changes are flag changes since the view's HIGHESTMODSEQ (CONDSTORE),
//! or by comparing flag bits where the server has no mod-sequences.
//!
//! The UID listing of the folder (a `UID SEARCH` over the whole folder, milliseconds at tens of
//! thousands of mails) is kept between the pages of one sync that has more to send
//! ([`Listings`]): the next page reuses it when the folder's UIDVALIDITY, UIDNEXT and message
//! count are what they were before the listing was made. UIDs only grow, so an unchanged
//! UIDNEXT means nothing was added, and then an unchanged count means nothing was expunged.

use std::collections::HashMap;

use crate::backend::{BackendError, FetchedMail, MailSession, MailboxState, MessageMeta};
use crate::mime;
use crate::uidset::UidSet;
use crate::wbxml::Element;

use super::client_changes::server_id;
use super::mail_flags;
use super::view::{flag_bits, View};
use crate::commands::collection_key;

/// The changes to send, already cut to the window size, and the view the device will hold
/// once it has them.
#[derive(Debug, Default)]
pub struct Changes {
    pub deletes: Vec<u32>,
    pub soft_deletes: Vec<u32>,
    pub changes: Vec<MessageMeta>,
    /// UIDs to add, newest first.
    pub adds: Vec<u32>,
    /// Changes that did not fit.
    pub pending: usize,
    /// When everything that did not fit is adds: the UIDs the next pages will add if the
    /// folder stays as it is (newest first, at most [`super::prefetch::PAGES`] × `limit`).
    pub next_adds: Vec<u32>,
    pub new_view: Option<View>,
}

impl Changes {
    pub fn is_empty(&self) -> bool {
        self.deletes.is_empty()
            && self.soft_deletes.is_empty()
            && self.changes.is_empty()
            && self.adds.is_empty()
    }

    pub fn total(&self) -> usize {
        self.deletes.len()
            + self.soft_deletes.len()
            + self.changes.len()
            + self.adds.len()
            + self.pending
    }
}

/// UID listings of folders whose device still has pages to fetch, per (user, device,
/// collection). An entry lives only while its sync has more to send, so the map holds one
/// compact UID set per device that is in the middle of a long initial sync.
#[derive(Debug, Default)]
pub struct Listings {
    map: dashmap::DashMap<String, Listing>,
}

#[derive(Debug, Clone)]
struct Listing {
    /// The folder's state read before the listing was made.
    state: MailboxState,
    window: Option<i64>,
    uids: UidSet,
}

impl Listings {
    /// The kept listing when it is still the folder's: same window and same state.
    fn get(&self, key: &str, state: &MailboxState, window: Option<i64>) -> Option<UidSet> {
        let l = self.map.get(key)?;
        let same = l.window == window
            && l.state.uid_validity == state.uid_validity
            && l.state.uid_next == state.uid_next
            && l.state.messages == state.messages;
        same.then(|| l.uids.clone())
    }

    /// Forgets the listing of one collection (its sync finished, or was reset).
    pub fn forget(&self, user: &str, device: &str, collection: &str) {
        self.map.remove(&collection_key(user, device, collection));
    }
}

/// Most listings kept at once.
const MAX_LISTINGS: usize = 4096;

/// Which kept listing a computation may use and update.
pub struct ListingSlot<'a> {
    pub listings: &'a Listings,
    pub user: &'a str,
    pub device: &'a str,
    pub collection: &'a str,
}

impl ListingSlot<'_> {
    fn key(&self) -> String {
        collection_key(self.user, self.device, self.collection)
    }

    /// The kept listing, when it is still the folder's in `state`.
    fn kept(&self, state: &MailboxState, window: Option<i64>) -> Option<UidSet> {
        self.listings.get(&self.key(), state, window)
    }

    /// Keeps `uids`, read in `state`, for the next page.
    fn keep(&self, state: MailboxState, window: Option<i64>, uids: UidSet) {
        let map = &self.listings.map;
        // Devices that stop in the middle of a sync leave their entry behind: a bound keeps
        // that from growing without limit (the next page just searches again).
        if map.len() >= MAX_LISTINGS {
            map.clear();
        }
        map.insert(
            self.key(),
            Listing {
                state,
                window,
                uids,
            },
        );
    }
}

/// What the changes are computed from.
#[derive(Debug, Clone, Copy)]
pub struct Since<'a> {
    /// The device's view, with its own changes of this request applied.
    pub held: &'a View,
    /// The mailbox state from a SELECT made after the device's own changes were applied.
    pub state: MailboxState,
    /// Start of the FilterType window.
    pub window: Option<i64>,
    /// UIDs the device changed in this request: not echoed back.
    pub touched: &'a UidSet,
    /// Most changes sent.
    pub limit: usize,
}

/// Computes the changes. With a `slot`, the folder's UID listing is reused from the previous
/// page when still valid and kept for the next page when more remains to be sent.
pub async fn compute<M: MailSession>(
    session: &mut M,
    mailbox: &str,
    since: Since<'_>,
    slot: Option<ListingSlot<'_>>,
) -> Result<Changes, BackendError> {
    let Since {
        held,
        state,
        window,
        touched,
        ..
    } = since;
    let reused = match &slot {
        // Only a device in the middle of a paged sync reuses a listing.
        Some(s) if held.more_available => s.kept(&state, window),
        _ => None,
    };
    let current = match reused {
        Some(uids) => uids,
        None => session.search_since(mailbox, window).await?,
    };
    let gone = held.uids.difference(&current);
    let (soft, hard) = if gone.is_empty() {
        (UidSet::new(), UidSet::new())
    } else if window.is_some() {
        let still_there = session.existing(mailbox, &gone).await?;
        (
            gone.intersection(&still_there),
            gone.difference(&still_there),
        )
    } else {
        (UidSet::new(), gone)
    };
    let kept = held.uids.intersection(&current);

    // Flag changes.
    let mut flag_updates: HashMap<u32, u8> = HashMap::new();
    let changed: Vec<MessageMeta> = match &held.flags {
        None => {
            let metas = if state.highest_modseq > held.highest_modseq && !kept.is_empty() {
                session
                    .fetch_meta(mailbox, &kept, Some(held.highest_modseq))
                    .await?
            } else {
                Vec::new()
            };
            // Changes already sent from this HIGHESTMODSEQ go again only if changed since.
            metas
                .into_iter()
                .filter(|m| {
                    let bits = flag_bits(m);
                    flag_updates.insert(m.uid, bits);
                    held.sent
                        .as_ref()
                        .and_then(|s| s.get(&m.uid))
                        .is_none_or(|b| *b != bits)
                })
                .collect()
        }
        Some(old) => {
            let metas = if kept.is_empty() {
                Vec::new()
            } else {
                session.fetch_meta(mailbox, &kept, None).await?
            };
            metas
                .into_iter()
                .filter(|m| {
                    let bits = flag_bits(m);
                    flag_updates.insert(m.uid, bits);
                    old.get(&m.uid).copied() != Some(bits)
                })
                .collect()
        }
    };
    let changed: Vec<MessageMeta> = changed
        .into_iter()
        .filter(|m| !touched.contains(m.uid))
        .collect();
    let found = Found {
        current,
        soft,
        hard,
        changed,
        flag_updates,
    };
    Ok(plan(since, found, slot))
}

/// The changes of a device in the middle of a paged sync when they need nothing from the mail
/// server: the listing kept from the previous page is still the folder's in `state`, every
/// mail the device holds is in it, and no flag changed since its view (same HIGHESTMODSEQ).
/// Then the changes are the next UIDs of the listing. `None` when any of that does not hold.
pub fn compute_paged(
    held: &View,
    state: MailboxState,
    window: Option<i64>,
    limit: usize,
    slot: ListingSlot<'_>,
) -> Option<Changes> {
    let paging = held.more_available
        && held.flags.is_none()
        && held.highest_modseq != 0
        && held.highest_modseq == state.highest_modseq
        && held.uid_validity == state.uid_validity;
    if !paging {
        return None;
    }
    let current = slot.kept(&state, window)?;
    if !held.uids.difference(&current).is_empty() {
        return None;
    }
    let found = Found {
        current,
        ..Found::default()
    };
    let since = Since {
        held,
        state,
        window,
        touched: &UidSet::new(),
        limit,
    };
    Some(plan(since, found, Some(slot)))
}

/// What [`compute`] read from the mail server.
#[derive(Default)]
struct Found {
    /// The folder's UIDs (in the window).
    current: UidSet,
    /// Held mails that aged out of the window.
    soft: UidSet,
    /// Held mails that are gone.
    hard: UidSet,
    /// Held mails whose flags changed.
    changed: Vec<MessageMeta>,
    /// Flag bits read for every held mail (servers without mod-sequences).
    flag_updates: HashMap<u32, u8>,
}

/// Cuts what was found to the window and makes the view the device will hold after it.
fn plan(since: Since<'_>, found: Found, slot: Option<ListingSlot<'_>>) -> Changes {
    let Since {
        held,
        state,
        window,
        touched,
        limit,
    } = since;
    let Found {
        current,
        soft,
        hard,
        changed,
        flag_updates,
    } = found;
    // Deletions and flag changes first (small), then adds.
    let mut out = Changes::default();
    let mut budget = limit;
    let mut take = |n: usize| {
        let t = n.min(budget);
        budget -= t;
        t
    };
    let hard: Vec<u32> = hard.iter().collect();
    let n = take(hard.len());
    out.deletes = hard.iter().take(n).copied().collect();
    out.pending += hard.len() - n;
    let soft: Vec<u32> = soft.iter().collect();
    let n = take(soft.len());
    out.soft_deletes = soft.iter().take(n).copied().collect();
    out.pending += soft.len() - n;
    let n = take(changed.len());
    let all_changes_sent = n == changed.len();
    out.pending += changed.len() - n;
    out.changes = changed.into_iter().take(n).collect();
    let adds_all: Vec<u32> = current.difference(&held.uids).iter().rev().collect();
    let n = take(adds_all.len());
    out.adds = adds_all.iter().take(n).copied().collect();
    out.pending += adds_all.len() - n;
    if out.pending == adds_all.len() - n {
        out.next_adds = adds_all
            .iter()
            .skip(n)
            .take(limit.saturating_mul(super::prefetch::PAGES))
            .copied()
            .collect();
    }

    // The view the device will hold after this response.
    let mut uids = held.uids.clone();
    for u in out.deletes.iter().chain(out.soft_deletes.iter()) {
        uids.remove(*u);
    }
    uids = uids.union(&UidSet::from_uids(out.adds.iter().copied()));
    let flags = held.flags.as_ref().map(|old| {
        let mut map: HashMap<u32, u8> = old
            .iter()
            .filter(|(u, _)| uids.contains(**u))
            .map(|(u, b)| (*u, *b))
            .collect();
        for m in &out.changes {
            map.insert(m.uid, flag_bits(m));
        }
        for u in touched.iter() {
            if let Some(b) = flag_updates.get(&u) {
                map.insert(u, *b);
            }
        }
        map
    });
    if let Some(s) = &slot {
        // UIDNEXT 0 means the server did not say: such a state proves nothing.
        if out.pending > 0 && state.uid_next != 0 {
            s.keep(state, window, current);
        } else {
            s.listings.map.remove(&s.key());
        }
    }
    // With mod-sequences and Changes left over: remember what was sent (and the device's own
    // edits) so the next window goes on from there.
    let sent = (held.flags.is_none() && !all_changes_sent).then(|| {
        let mut map: HashMap<u32, u8> = held
            .sent
            .iter()
            .flatten()
            .filter(|(u, _)| uids.contains(**u))
            .map(|(u, b)| (*u, *b))
            .collect();
        for m in &out.changes {
            map.insert(m.uid, flag_bits(m));
        }
        for u in touched.iter() {
            if let Some(b) = flag_updates.get(&u) {
                map.insert(u, *b);
            }
        }
        map
    });
    out.new_view = Some(View {
        key: held.key,
        uid_validity: state.uid_validity,
        uids,
        highest_modseq: if all_changes_sent {
            state.highest_modseq
        } else {
            held.highest_modseq
        },
        flags,
        sent,
        filter_start: window,
        more_available: out.pending > 0,
    });
    out
}

/// Pages of at least this many mails are read in two halves: the first half is converted
/// while the mail server reads the second.
const SPLIT_FETCH: usize = 40;

/// Converted mails by UID: their metadata and ApplicationData.
pub type Items = HashMap<u32, (MessageMeta, Element)>;

/// The ApplicationData of each added mail, by UID. Mails are read without their attachments'
/// bodies unless a body may be sent as MIME; one the partial form does not suit is read again
/// whole. The conversion runs on the conversion threads, split over the machine's cores, and
/// starts as soon as the first mails have arrived.
pub async fn add_data<M: MailSession>(
    session: &mut M,
    mailbox: &str,
    cid: &str,
    uids: &[u32],
    in_drafts: bool,
    opts: &mime::BodyOptions,
) -> Result<Items, BackendError> {
    let mut converting = Converting::default();
    for part in page_parts(uids, opts) {
        converting
            .read(session, mailbox, cid, part, in_drafts, opts)
            .await?;
    }
    let (mut out, again) = converting.finish().await?;
    if !again.is_empty() {
        let whole = fetch_whole(session, mailbox, &again).await?;
        let (items, _) = Converting(convert_start(whole, cid, in_drafts, opts))
            .finish()
            .await?;
        out.extend(items);
    }
    Ok(out)
}

/// The mails of `uids` read whole.
async fn fetch_whole<M: MailSession>(
    session: &mut M,
    mailbox: &str,
    uids: &[u32],
) -> Result<Vec<FetchedMail>, BackendError> {
    Ok(FetchedMail::all_whole(
        session.fetch_messages(mailbox, uids).await?,
    ))
}

/// Mails read from the mail server whose conversion runs on the conversion threads.
#[derive(Default)]
pub struct Converting(Vec<Conversion>);

impl Converting {
    /// Reads the mails of `uids` (see [`add_data`]) and starts converting them.
    pub async fn read<M: MailSession>(
        &mut self,
        session: &mut M,
        mailbox: &str,
        cid: &str,
        uids: &[u32],
        in_drafts: bool,
        opts: &mime::BodyOptions,
    ) -> Result<(), BackendError> {
        let fetched = if opts.may_send_mime() {
            fetch_whole(session, mailbox, uids).await?
        } else {
            session.fetch_for_display(mailbox, uids).await?
        };
        self.0.extend(convert_start(fetched, cid, in_drafts, opts));
        Ok(())
    }

    /// The converted mails, and the UIDs of those that must be read whole first.
    pub async fn finish(self) -> Result<(Items, Vec<u32>), BackendError> {
        let mut out = HashMap::new();
        let mut again = Vec::new();
        for t in self.0 {
            let done = t.await.map_err(|_| {
                BackendError::Protocol("mail conversion failed (a conversion panicked)".into())
            })?;
            for (uid, data) in done {
                match data {
                    Some(d) => {
                        out.insert(uid, d);
                    }
                    None => again.push(uid),
                }
            }
        }
        Ok((out, again))
    }
}

/// The parts a page is read in: two halves, so that the first is converted while the mail
/// server reads the second (one part for small pages and for mails read whole).
pub fn page_parts<'a>(uids: &'a [u32], opts: &mime::BodyOptions) -> Vec<&'a [u32]> {
    if uids.is_empty() {
        return Vec::new();
    }
    if uids.len() < SPLIT_FETCH || opts.may_send_mime() {
        return vec![uids];
    }
    let (a, b) = uids.split_at(uids.len() / 2);
    vec![a, b]
}

/// Fewest mails converted by one blocking task.
const MIN_CONVERT_CHUNK: usize = 8;

/// A conversion running on the conversion threads: (UID, data), data `None` when the mail
/// must be read whole first.
type Conversion = tokio::sync::oneshot::Receiver<Vec<(u32, Option<(MessageMeta, Element)>)>>;

/// The threads mails are converted on, one per core. They take conversions in the order they
/// were started, so the page a device waits for is converted before the pages read ahead
/// after it, instead of all of them sharing the cores and finishing late together.
fn converters() -> Option<&'static rayon::ThreadPool> {
    static POOL: std::sync::OnceLock<Option<rayon::ThreadPool>> = std::sync::OnceLock::new();
    POOL.get_or_init(|| {
        rayon::ThreadPoolBuilder::new()
            .num_threads(std::thread::available_parallelism().map_or(1, |n| n.get()))
            .thread_name(|i| format!("convert-{i}"))
            .start_handler(|_| lower_priority())
            // A job that panics loses its page (the request answers an error), not the process.
            .panic_handler(|_| tracing::error!("a mail conversion panicked"))
            .build()
            .map_err(|e| tracing::warn!(error = %e, "no conversion threads: converting on the blocking pool"))
            .ok()
    })
    .as_ref()
}

/// Lowers the calling thread's scheduling priority (nice 10): conversions for pages read ahead
/// then take the cores only when requests, the mail server and the network need none. (On
/// Linux the nice value is per thread: "the process" 0 of setpriority is the calling thread.)
fn lower_priority() {
    #[cfg(target_os = "linux")]
    if let Err(e) = rustix::process::setpriority_process(None, 10) {
        tracing::debug!(error = %e, "could not lower the conversion threads' priority");
    }
}

/// Starts converting fetched mails, split over the machine's cores.
fn convert_start(
    fetched: Vec<FetchedMail>,
    cid: &str,
    in_drafts: bool,
    opts: &mime::BodyOptions,
) -> Vec<Conversion> {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let per_task = fetched.len().div_ceil(threads).max(MIN_CONVERT_CHUNK);
    let mut tasks = Vec::new();
    let mut rest = fetched;
    while !rest.is_empty() {
        let tail = rest.split_off(per_task.min(rest.len()));
        let chunk = std::mem::replace(&mut rest, tail);
        let cid = cid.to_string();
        let opts = opts.clone();
        let (tx, rx) = tokio::sync::oneshot::channel();
        let job = move || {
            let out = chunk
                .into_iter()
                .map(|m| (m.meta.uid, convert_one(m, &cid, in_drafts, &opts)))
                .collect::<Vec<_>>();
            let _ = tx.send(out);
        };
        match converters() {
            Some(pool) => pool.spawn_fifo(job),
            None => drop(tokio::task::spawn_blocking(job)),
        }
        tasks.push(rx);
    }
    tasks
}

fn convert_one(
    m: FetchedMail,
    cid: &str,
    in_drafts: bool,
    opts: &mime::BodyOptions,
) -> Option<(MessageMeta, Element)> {
    let sid = server_id(cid, m.meta.uid);
    let info = super::item_info(&m.meta, &sid, in_drafts);
    let omitted = mime::OmittedParts {
        parts: m.parts,
        sizes: &m.omitted,
    };
    let read = (!m.omitted.is_empty()).then_some(&omitted);
    // Encoded here, on the conversion thread, without building the tree: the response then
    // copies bytes.
    let data = mime::application_data_encoded(&m.raw, read, &mail_flags(&m.meta), &info, opts);
    data.map(|d| (m.meta, d))
}

#[cfg(test)]
mod tests {
    use super::*;

    const STATE: MailboxState = MailboxState {
        uid_validity: 7,
        uid_next: 251,
        messages: 250,
        highest_modseq: 900,
    };

    fn slot(listings: &Listings) -> ListingSlot<'_> {
        ListingSlot {
            listings,
            user: "u@example.test",
            device: "dev",
            collection: "3",
        }
    }

    /// A device that holds UIDs 201..=250 of a folder of 1..=250 whose listing was kept.
    fn paging() -> (Listings, View) {
        let listings = Listings::default();
        slot(&listings).keep(STATE, None, UidSet::from_uids(1..=250));
        let held = View {
            key: 4,
            uid_validity: 7,
            uids: UidSet::from_uids(201..=250),
            highest_modseq: 900,
            flags: None,
            sent: None,
            filter_start: None,
            more_available: true,
        };
        (listings, held)
    }

    #[test]
    fn a_paging_device_gets_the_next_uids_of_the_kept_listing() {
        let (listings, held) = paging();
        let c = compute_paged(&held, STATE, None, 50, slot(&listings)).expect("paged");
        assert_eq!(c.adds, (151..=200).rev().collect::<Vec<_>>());
        assert!(c.deletes.is_empty() && c.soft_deletes.is_empty() && c.changes.is_empty());
        assert_eq!(c.pending, 150);
        assert_eq!(
            c.next_adds,
            (1..=150).rev().collect::<Vec<_>>(),
            "three pages ahead"
        );
        let view = c.new_view.expect("view");
        assert_eq!(view.uids, UidSet::from_uids(151..=250));
        assert_eq!(view.highest_modseq, 900);
        assert!(view.more_available);
        assert!(slot(&listings).kept(&STATE, None).is_some(), "listing kept");
    }

    #[test]
    fn the_last_page_forgets_the_listing() {
        let (listings, mut held) = paging();
        held.uids = UidSet::from_uids(21..=250);
        let c = compute_paged(&held, STATE, None, 50, slot(&listings)).expect("paged");
        assert_eq!(c.adds, (1..=20).rev().collect::<Vec<_>>());
        assert_eq!(c.pending, 0);
        assert!(c.next_adds.is_empty());
        assert!(!c.new_view.expect("view").more_available);
        assert!(slot(&listings).kept(&STATE, None).is_none());
    }

    #[test]
    fn anything_the_listing_cannot_prove_needs_the_mail_server() {
        let (listings, held) = paging();
        let changed = MailboxState {
            highest_modseq: 901,
            ..STATE
        };
        assert!(compute_paged(&held, changed, None, 50, slot(&listings)).is_none());
        let grown = MailboxState {
            uid_next: 252,
            messages: 251,
            ..STATE
        };
        assert!(compute_paged(&held, grown, None, 50, slot(&listings)).is_none());
        assert!(compute_paged(&held, STATE, Some(0), 50, slot(&listings)).is_none());
        let mut gone = held.clone();
        gone.uids.insert(300);
        assert!(compute_paged(&gone, STATE, None, 50, slot(&listings)).is_none());
        let mut done = held.clone();
        done.more_available = false;
        assert!(compute_paged(&done, STATE, None, 50, slot(&listings)).is_none());
        let mut flags = held.clone();
        flags.flags = Some(HashMap::new());
        assert!(compute_paged(&flags, STATE, None, 50, slot(&listings)).is_none());
    }
}
