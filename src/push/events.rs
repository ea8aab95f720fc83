//! Push from mail server events: the watcher of a user without an IMAP connection of its own.
//!
//! With `push.source = "events"` the mail server posts every change of a user's mailboxes to
//! the gateway (Dovecot's push_notification Lua driver, `deploy/dovecot/`), and
//! [`super::Hub::mail_event`] turns such an event into what a NOTIFY event is for the IMAP
//! watcher: the mailbox's known state goes stale and the generation moves, so every waiter
//! watching it asks for a fresh STATUS and compares it with its baseline exactly as with the
//! IMAP watcher (the same [`super::WaitResult`]s, the same own-change marks). A folder created,
//! renamed or deleted bumps the hierarchy epoch.
//!
//! The runner here answers those refresh requests with a STATUS on a pooled session of the
//! user (the one the phone's request just left behind, while the pool keeps it), so a waiting
//! phone holds no IMAP connection. A read that fails marks the watcher down (its waiters end
//! with [`super::WaitResult::Unavailable`] after the outage grace, as with the IMAP watcher) and
//! is retried with backoff until one succeeds or nobody waits.
//!
//! Lost events are not detected: a Ping then ends at its heartbeat with "no changes" and the
//! phone pings again, which compares afresh.

use std::collections::HashSet;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::backend::imap_idle::{mailbox_key, StatusValues, WatchEvent};
use crate::backend::pool::SessionPool;
use crate::backend::{BackendError, Credentials, MailBackend, MailSession};

use super::watcher::{BoxFuture, Refresh, UserWatch};
use super::{shut_down, Inner};

/// Where `push.source` says changes come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PushSource {
    /// One IMAP connection per waiting user (NOTIFY + IDLE): works with any IMAP server.
    #[default]
    Imap,
    /// Events posted by the mail server: no IMAP connection while phones wait.
    Events,
}

/// What an event says changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    /// Mail arrived, was appended, expunged, or its flags changed.
    Mailbox,
    /// A mailbox was created, deleted or renamed.
    Hierarchy,
}

impl EventKind {
    /// The kind of a push_notification event name (RFC 5423 names); `None` for events that
    /// change nothing a phone sees (subscriptions) and unknown names.
    pub fn from_name(name: &str) -> Option<EventKind> {
        match name {
            "MessageNew" | "MessageAppend" | "MessageExpunge" | "MessageRead" | "MessageTrash"
            | "FlagsSet" | "FlagsClear" => Some(EventKind::Mailbox),
            "MailboxCreate" | "MailboxDelete" | "MailboxRename" => Some(EventKind::Hierarchy),
            _ => None,
        }
    }
}

/// Reads mailbox states for the events watcher (a pooled session in the gateway).
pub trait StatusReader: Send + Sync + 'static {
    fn states<'a>(
        &'a self,
        creds: &'a Credentials,
        mailboxes: &'a [String],
    ) -> BoxFuture<'a, Result<Vec<WatchEvent>, BackendError>>;
}

impl<B: MailBackend> StatusReader for SessionPool<B> {
    fn states<'a>(
        &'a self,
        creds: &'a Credentials,
        mailboxes: &'a [String],
    ) -> BoxFuture<'a, Result<Vec<WatchEvent>, BackendError>> {
        Box::pin(async move {
            if mailboxes.is_empty() {
                return Ok(Vec::new());
            }
            let mut session = self.get(creds, None).await?;
            let mut out = Vec::with_capacity(mailboxes.len());
            for m in mailboxes {
                match session.status(m).await {
                    Ok(s) => out.push(WatchEvent::Status {
                        mailbox: mailbox_key(m),
                        values: StatusValues {
                            uid_validity: Some(s.uid_validity),
                            uid_next: Some(s.uid_next),
                            messages: Some(s.messages),
                            highest_modseq: Some(s.highest_modseq),
                        },
                    }),
                    Err(BackendError::NotFound(_)) => out.push(WatchEvent::Listed {
                        mailbox: mailbox_key(m),
                        gone: true,
                        old_name: None,
                    }),
                    Err(e) => return Err(e),
                }
            }
            Ok(out)
        })
    }
}

impl UserWatch {
    /// An event about `mailbox` (the IMAP name; `None`: not known): the states waiters watch
    /// there go stale, so they ask for fresh ones. A hierarchy event makes every watched
    /// mailbox stale (one may be gone) and bumps the hierarchy epoch.
    pub(super) fn mail_event(&self, mailbox: Option<&str>, kind: EventKind) {
        let interest = self.interest();
        let stale: Vec<String> = match (kind, mailbox) {
            (EventKind::Mailbox, Some(m)) => {
                let k = mailbox_key(m);
                if !interest.contains(&k) {
                    return;
                }
                vec![k]
            }
            _ => interest,
        };
        self.dirty().extend(stale.iter().cloned());
        self.mark_stale(&stale);
        if kind == EventKind::Hierarchy {
            self.hierarchy.send_modify(|h| *h = h.wrapping_add(1));
        }
    }
}

/// The events watcher task of one user: answers refreshes with pooled STATUS reads.
pub(super) async fn run(
    hub: Arc<Inner>,
    me: Arc<UserWatch>,
    mut refresh_rx: mpsc::UnboundedReceiver<Refresh>,
) {
    let cfg = hub.config.clone();
    let Some(reader) = hub.status_reader.clone() else {
        hub.remove_watch(&me);
        return;
    };
    let mut shutdown = hub.shutdown_rx();
    // Changes before this watcher existed were not heard of: waiters compare the hierarchy
    // again, as after an IMAP watcher's (re)connection.
    me.down.send_replace(None);
    me.hierarchy.send_modify(|h| *h = h.wrapping_add(1));
    let mut pending: Vec<Refresh> = Vec::new();
    let mut backoff = Duration::from_millis(500);
    let mut retry_at: Option<Instant> = None;
    let mut grace: Option<Instant> = None;
    loop {
        if me.waiters.load(Ordering::SeqCst) == 0 {
            grace.get_or_insert_with(|| Instant::now() + cfg.watcher_grace);
        } else {
            grace = None;
        }
        let far = Instant::now() + Duration::from_secs(86_400);
        tokio::select! {
            r = refresh_rx.recv() => match r {
                Some(r) => pending.push(r),
                None => break,
            },
            _ = tokio::time::sleep_until(retry_at.unwrap_or(far)) => {}
            _ = tokio::time::sleep_until(grace.unwrap_or(far)) => {
                if hub.remove_watch_if_idle(&me) {
                    return;
                }
                grace = None;
                continue;
            }
            _ = me.left_notified() => continue,
            _ = shut_down(&mut shutdown) => break,
        }
        while let Ok(r) = refresh_rx.try_recv() {
            pending.push(r);
        }
        let mut names: Vec<String> = pending
            .iter()
            .flat_map(|r| r.mailboxes.iter().map(|m| mailbox_key(m)))
            .collect();
        if retry_at.is_some() {
            names.extend(me.interest());
        }
        names.sort();
        names.dedup();
        {
            let mut dirty = me.dirty();
            for n in &names {
                dirty.remove(n);
            }
        }
        let creds = me.credentials();
        let read = tokio::select! {
            r = reader.states(&creds, &names) => r,
            _ = shut_down(&mut shutdown) => break,
        };
        drop(creds);
        match read {
            Ok(events) => {
                me.apply_read(&events);
                me.down.send_replace(None);
                backoff = Duration::from_millis(500);
                retry_at = None;
            }
            Err(e) => {
                me.down.send_if_modified(|d| {
                    if d.is_none() {
                        *d = Some(Instant::now());
                        true
                    } else {
                        false
                    }
                });
                tracing::info!(
                    user = %me.user,
                    error = %e,
                    retry_ms = backoff.as_millis() as u64,
                    "push: reading mailbox states failed"
                );
                retry_at = Some(Instant::now() + backoff);
                backoff = (backoff * 2).min(cfg.max_backoff);
            }
        }
        // Events that came in while the read was on its way may be newer than what it read.
        let again: Vec<String> = {
            let dirty = me.dirty();
            names
                .iter()
                .filter(|n| dirty.contains(*n))
                .cloned()
                .collect()
        };
        if !again.is_empty() {
            me.mark_stale(&again);
        }
        for r in pending.drain(..) {
            let _ = r.done.send(());
        }
    }
    hub.remove_watch(&me);
}

/// Mailboxes with events not yet read (only watched ones are kept).
pub(super) type Dirty = HashSet<String>;
