//! Cross-node events: what one node publishes and what every other node does with it.
//!
//! Payloads are one line of space-separated words, the second always the publishing node's
//! id (a node ignores its own events: it acted on them locally already):
//!
//! * `supersede NODE USER DEVICE TOKEN`: the device made a new request on NODE (TOKEN tells
//!   NODE's requests apart). Its waiting Ping or hanging Sync here ends (as a new request here
//!   would end it), unless the event is older than the device's latest request here: events
//!   come in commit order, and one heard before that request's own event came back was
//!   published before it ([`crate::push::remote`]). What this node remembers of the device's
//!   last requests (its last Ping parameters, the last Sync request it stored) is forgotten in
//!   any case, so that the next request here reads them from the store, where NODE may have
//!   changed them. A node's own `supersede` coming back marks its request as heard. (Without
//!   TOKEN, as older nodes send it, the event always ends the wait.)
//! * `own NODE USER DEVICE UIDVALIDITY BEFORE AFTER MAILBOX`: from mod-sequence BEFORE to
//!   AFTER only the device changed MAILBOX ([`crate::push::own`]).
//! * `folders NODE USER`: a device of USER created, renamed, moved or deleted a folder through
//!   NODE (FolderCreate, FolderUpdate, FolderDelete). This node drops its cached folder
//!   listing of USER ([`crate::commands::folders::FolderCache`]), so that its next request of
//!   the user lists the folders again instead of resolving a collection to a mailbox that was
//!   renamed or deleted. (Changes made by other mail clients are not announced: a node notices
//!   them as before, when a listed mailbox turns out to be gone or an id is not in the
//!   cache.)
//!
//! Words are percent-encoded where they hold `%`, a space or a control character. Events are
//! hints (see the module documentation of [`crate::cluster`]).

use std::sync::Arc;

use tokio::sync::broadcast::error::RecvError;
use tokio::task::JoinHandle;

use crate::backend::{MailBackend, MailboxState};
use crate::commands::{device_key, folders, Gateway};
use crate::state::{Cluster, StateStore};

/// The device made a new request: ends its waiting request here and, through the store's
/// event channel, on every other node. Publishing does not hold up the request.
pub fn device_request<B: MailBackend, S: StateStore>(
    gw: &Gateway<B, S>,
    user: &str,
    device_id: &str,
) {
    let token = gw.push.local_request(user, device_id);
    let payload = line(&[
        "supersede",
        &gw.config.cluster.node_id,
        user,
        device_id,
        &token.to_string(),
    ]);
    let store = gw.store.clone();
    let push = gw.push.clone();
    let (user, device_id) = (user.to_string(), device_id.to_string());
    tokio::spawn(async move {
        if let Err(e) = store.publish(&payload).await {
            tracing::debug!(error = %e, "cannot publish a cluster event");
            // Never coming back: supersedes from other nodes count at once.
            push.own_supersede_heard(&user, &device_id, token);
        }
    });
}

/// The device alone changed `mailbox` from `before` to `after`: remembered here
/// ([`crate::push::Hub::own_change`]) and on every other node.
pub fn own_change<B: MailBackend, S: StateStore>(
    gw: &Gateway<B, S>,
    user: &str,
    device_id: &str,
    mailbox: &str,
    before: MailboxState,
    after: MailboxState,
) {
    gw.push.own_change(user, device_id, mailbox, before, after);
    let payload = line(&[
        "own",
        &gw.config.cluster.node_id,
        user,
        device_id,
        &after.uid_validity.to_string(),
        &before.highest_modseq.to_string(),
        &after.highest_modseq.to_string(),
        mailbox,
    ]);
    publish(&gw.store, payload);
}

/// The user's folder hierarchy changed through this node: the folder listing cached here is
/// dropped now and, through the store's event channel, on every other node. Unlike the other
/// events this one is out (committed) before it returns, so that the device's next request
/// on another node most likely finds that node's cache dropped already.
pub async fn folders_changed<B: MailBackend, S: StateStore>(gw: &Gateway<B, S>, user: &str) {
    folders::forget(&gw.folders, user);
    let payload = line(&["folders", &gw.config.cluster.node_id, user]);
    if let Err(e) = gw.store.publish(&payload).await {
        tracing::debug!(error = %e, "cannot publish a cluster event");
    }
}

fn publish<S: Cluster>(store: &S, payload: String) {
    let store = store.clone();
    tokio::spawn(async move {
        if let Err(e) = store.publish(&payload).await {
            tracing::debug!(error = %e, "cannot publish a cluster event");
        }
    });
}

/// Subscribes to the store's events now and acts on those of other nodes until the process
/// ends. `gateway` finds the gateway in `holder` (the server that owns it).
pub fn spawn_bridge<T, B, S>(holder: Arc<T>, gateway: fn(&T) -> &Gateway<B, S>) -> JoinHandle<()>
where
    T: Send + Sync + 'static,
    B: MailBackend,
    S: StateStore,
{
    let mut events = gateway(&holder).store.subscribe();
    tokio::spawn(async move {
        loop {
            match events.recv().await {
                Ok(payload) => apply(gateway(&holder), &payload),
                Err(RecvError::Lagged(n)) => {
                    tracing::warn!(missed = n, "cluster events missed (this node fell behind)");
                    gateway(&holder).push.remote_order_lost();
                }
                Err(RecvError::Closed) => return,
            }
        }
    })
}

/// Acts on one event (ignores its own node's, and anything it does not understand).
pub fn apply<B: MailBackend, S: StateStore>(gw: &Gateway<B, S>, payload: &str) {
    let words: Vec<String> = payload.split(' ').map(unescape).collect();
    let w: Vec<&str> = words.iter().map(String::as_str).collect();
    let own = gw.config.cluster.node_id.as_str();
    match w.as_slice() {
        ["supersede", node, user, device, token] if *node == own => {
            if let Ok(token) = token.parse() {
                gw.push.own_supersede_heard(user, device, token);
            }
        }
        [_, node, ..] if *node == own => {}
        ["supersede", _, user, device, ..] => {
            gw.push.remote_supersede(user, device);
            gw.push.forget_ping_params(user, device);
            gw.sync.requests.remove(&device_key(user, device));
        }
        ["folders", _, user] => folders::forget(&gw.folders, user),
        ["own", _, user, device, validity, before, after, mailbox] => {
            let (Ok(uid_validity), Ok(before), Ok(after)) =
                (validity.parse(), before.parse(), after.parse())
            else {
                return;
            };
            let state = |highest_modseq| MailboxState {
                uid_validity,
                uid_next: 0,
                messages: 0,
                highest_modseq,
            };
            gw.push
                .own_change(user, device, mailbox, state(before), state(after));
        }
        _ => tracing::debug!("unknown cluster event"),
    }
}

/// One event line of `words`.
pub fn line(words: &[&str]) -> String {
    words
        .iter()
        .map(|w| escape(w))
        .collect::<Vec<_>>()
        .join(" ")
}

fn escape(word: &str) -> String {
    let mut out = String::with_capacity(word.len());
    for c in word.chars() {
        if c == '%' || c == ' ' || c.is_control() {
            let mut buf = [0u8; 4];
            for b in c.encode_utf8(&mut buf).bytes() {
                out.push_str(&format!("%{b:02X}"));
            }
        } else {
            out.push(c);
        }
    }
    out
}

fn unescape(word: &str) -> String {
    if !word.contains('%') {
        return word.to_string();
    }
    let bytes = word.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(rest) = bytes.get(i..).filter(|r| !r.is_empty()) {
        if let [b'%', a, b, ..] = rest {
            if let (Some(h), Some(l)) = (hex(*a), hex(*b)) {
                out.push(h << 4 | l);
                i += 3;
                continue;
            }
        }
        if let Some(&b) = rest.first() {
            out.push(b);
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hex(b: u8) -> Option<u8> {
    (b as char).to_digit(16).map(|d| d as u8)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_survive_the_line() {
        let words = [
            "own",
            "n1",
            "a@b",
            "DEV 1%",
            "7",
            "1",
            "2",
            "Sent Items\tx",
            "%4",
        ];
        let l = line(&words);
        assert!(!l.contains('\t'));
        let back: Vec<String> = l.split(' ').map(unescape).collect();
        assert_eq!(back, words);
        assert_eq!(unescape("ab%"), "ab%");
        assert_eq!(unescape("%zz"), "%zz");
        assert_eq!(unescape("%é"), "%é");
    }
}
