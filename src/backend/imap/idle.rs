//! Watching the mailbox tree for the push hub: NOTIFY (RFC 5465), IDLE (RFC 2177) and batched
//! mailbox states. While idling, responses are read from the session's stream directly;
//! [`ImapSession::idle_readable`] is cancel-safe, the reads after it are never cut halfway.

use std::collections::HashSet;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt};

use super::engine::{self, ReadFault};
use super::parse::{self as imap_parse, parse_list, parse_status, Item, Response, Status};
use super::{Command, Completed, ImapSession};
use crate::backend::{server_text, BackendError};

/// Longest response line accepted while idling, literals excluded.
const MAX_LINE: usize = 64 * 1024;
/// Largest response accepted while idling (NOTIFY events are small).
const MAX_RESPONSE: usize = 1024 * 1024;

/// Tags of IDLE commands: distinct from the connection's own `e<n>` tags.
static IDLE_TAG: AtomicU32 = AtomicU32::new(1);

/// Values of one `* STATUS` response; each is `None` when the server did not send it (NOTIFY
/// sends only what changed, e.g. just HIGHESTMODSEQ after a flag change).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct StatusValues {
    pub uid_validity: Option<u32>,
    pub uid_next: Option<u32>,
    pub messages: Option<u32>,
    pub highest_modseq: Option<u64>,
}

/// What the server said about the mailbox tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WatchEvent {
    /// The state (or part of it) of a mailbox.
    Status {
        mailbox: String,
        values: StatusValues,
    },
    /// A mailbox exists (`gone == false`) or no longer does; `old_name` after a rename.
    Listed {
        mailbox: String,
        gone: bool,
        old_name: Option<String>,
    },
    /// Something changed in the selected mailbox (EXISTS, EXPUNGE, FETCH, VANISHED).
    Selected,
}

/// How a watch connection hears of changes (see [`ImapSession::notify_set`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotifyMode {
    /// No NOTIFY: IDLE on a selected INBOX, the other mailboxes polled.
    None,
    /// NOTIFY, with INBOX examined: its changes arrive as [`WatchEvent::Selected`].
    SelectedInbox,
    /// NOTIFY, nothing selected: every change arrives as a STATUS or LIST event.
    Personal,
}

/// The running IDLE command.
#[derive(Debug)]
pub struct Idling {
    tag: String,
}

/// INBOX is case-insensitive: one spelling for keys and comparisons.
pub fn mailbox_key(name: &str) -> String {
    if name.eq_ignore_ascii_case("INBOX") {
        "INBOX".to_string()
    } else {
        name.to_string()
    }
}

/// The events in a list of untagged responses.
pub fn events_of(responses: &[Response]) -> Vec<WatchEvent> {
    responses.iter().filter_map(event_of).collect()
}

fn event_of(r: &Response) -> Option<WatchEvent> {
    let Response::Data {
        number,
        name,
        items,
    } = r
    else {
        return None;
    };
    match name.as_str() {
        "STATUS" => {
            let s = parse_status(items)?;
            let num = |k: &str| s.values.get(k).and_then(|v| v.parse::<u64>().ok());
            let small = |k: &str| num(k).and_then(|v| u32::try_from(v).ok());
            Some(WatchEvent::Status {
                mailbox: mailbox_key(&s.mailbox),
                values: StatusValues {
                    uid_validity: small("UIDVALIDITY"),
                    uid_next: small("UIDNEXT"),
                    messages: small("MESSAGES"),
                    highest_modseq: num("HIGHESTMODSEQ"),
                },
            })
        }
        "LIST" => {
            let e = parse_list(items)?;
            Some(WatchEvent::Listed {
                gone: e.has_attribute("\\NonExistent"),
                mailbox: mailbox_key(&e.name),
                old_name: items.get(3).and_then(old_name).map(|n| mailbox_key(&n)),
            })
        }
        "EXISTS" | "EXPUNGE" | "FETCH" | "RECENT" if number.is_some() => Some(WatchEvent::Selected),
        "VANISHED" => Some(WatchEvent::Selected),
        _ => None,
    }
}

/// `("OLDNAME" ("old name"))` from LIST extended data (RFC 5465 section 5.4).
fn old_name(extended: &Item) -> Option<String> {
    let list = extended.as_list()?;
    let mut it = list.iter();
    while let Some(key) = it.next() {
        let value = it.next()?;
        if key
            .as_astring()
            .is_some_and(|k| k.eq_ignore_ascii_case("OLDNAME"))
        {
            return value.as_list()?.first()?.as_astring();
        }
    }
    None
}

impl ImapSession {
    /// Enables CONDSTORE, examines INBOX and asks for events about every personal mailbox:
    /// INBOX's as EXISTS/EXPUNGE/FETCH of the selected mailbox (the server reports those as
    /// soon as IDLE on a selected mailbox would), the others' as STATUS and LIST events
    /// (RFC 5465). When the server refuses the `selected` filter, INBOX is closed again and
    /// all events come as STATUS. [`NotifyMode::None`] when the server has no NOTIFY or
    /// refuses it (the caller then polls).
    pub async fn notify_set(&mut self) -> Result<NotifyMode, BackendError> {
        const PERSONAL: &str = "(personal (MessageNew MessageExpunge FlagChange MailboxName))";
        if !self.has_capability("NOTIFY") {
            return Ok(NotifyMode::None);
        }
        if self.has_capability("CONDSTORE") {
            self.run_ok(&Command::new("ENABLE").raw(" CONDSTORE"))
                .await?;
        }
        let examined = self.run(&Command::new("EXAMINE").astring("INBOX")).await?;
        if examined.done.status == Status::Ok {
            self.set_selected(Some("INBOX".to_string()));
            let c = self
                .run(&Command::new("NOTIFY").raw(&format!(
                    " SET (selected (MessageNew MessageExpunge FlagChange)) {PERSONAL}"
                )))
                .await?;
            if c.done.status == Status::Ok {
                return Ok(NotifyMode::SelectedInbox);
            }
            tracing::debug!(
                reason = %server_text(&c.done.text),
                "NOTIFY with a selected filter refused"
            );
            // Read-only: CLOSE expunges nothing.
            self.run_ok(&Command::new("CLOSE")).await?;
            self.set_selected(None);
        }
        let c = self
            .run(&Command::new("NOTIFY").raw(&format!(" SET {PERSONAL}")))
            .await?;
        Ok(if c.done.status == Status::Ok {
            NotifyMode::Personal
        } else {
            NotifyMode::None
        })
    }

    fn status_attrs(&self) -> &'static str {
        if self.has_capability("CONDSTORE") {
            "UIDVALIDITY UIDNEXT MESSAGES HIGHESTMODSEQ"
        } else {
            "UIDVALIDITY UIDNEXT MESSAGES"
        }
    }

    /// The current state of each of `mailboxes`: a `Status` event for each that exists and a
    /// `Listed { gone: true }` event for each that does not. One LIST-STATUS when the server
    /// has it and more than one mailbox is asked for, else pipelined STATUS commands. Events
    /// the server sent meanwhile are included.
    pub async fn watch_states(
        &mut self,
        mailboxes: &[String],
    ) -> Result<Vec<WatchEvent>, BackendError> {
        if mailboxes.is_empty() {
            return Ok(Vec::new());
        }
        let attrs = self.status_attrs();
        let wanted: HashSet<String> = mailboxes.iter().map(|m| mailbox_key(m)).collect();
        // The STATUS of the selected mailbox answers from this session's view of it, which
        // lags behind changes made on other connections (a device's own flag change, just
        // committed in its view) until the next command: a NOOP brings it up to date first.
        // Not pipelined: Dovecot answers a STATUS sent along with a NOOP before the NOOP has
        // caught up.
        let mut out = Vec::new();
        if self
            .selected()
            .is_some_and(|m| wanted.contains(&mailbox_key(m)))
        {
            let c = self.run_ok(&Command::new("NOOP")).await?;
            out.extend(events_of(&c.untagged));
        }
        if self.has_capability("LIST-STATUS") && wanted.len() > 1 {
            let cmd = Command::new("LIST")
                .raw(" \"\" \"*\"")
                .raw(&format!(" RETURN (STATUS ({attrs}))"));
            let c = self.run(&cmd).await?;
            if c.done.status == Status::Ok {
                out.extend(states_from(&c, &wanted));
                return Ok(out);
            }
        }
        let cmds: Vec<Command> = wanted
            .iter()
            .map(|m| {
                Command::new("STATUS")
                    .astring(m)
                    .raw(&format!(" ({attrs})"))
            })
            .collect();
        let names: Vec<&String> = wanted.iter().collect();
        let done = self.pipeline(&cmds).await?;
        for (name, c) in names.into_iter().zip(&done) {
            out.extend(events_of(&c.untagged));
            match c.done.status {
                Status::Ok => {}
                Status::No if c.done.has_code("NONEXISTENT") => out.push(WatchEvent::Listed {
                    mailbox: name.clone(),
                    gone: true,
                    old_name: None,
                }),
                _ => {
                    tracing::debug!(
                        reason = %server_text(&c.done.text),
                        "STATUS refused while watching"
                    );
                }
            }
        }
        Ok(out)
    }

    /// The names of all the user's mailboxes (`LIST "" "*"`, nothing else), sorted; events
    /// the server sent meanwhile are returned too.
    pub async fn mailbox_names(&mut self) -> Result<(Vec<String>, Vec<WatchEvent>), BackendError> {
        let c = self
            .run_ok(&Command::new("LIST").raw(" \"\" \"*\""))
            .await?;
        let mut names = Vec::new();
        let mut events = Vec::new();
        for r in &c.untagged {
            match r {
                Response::Data { name, items, .. } if name == "LIST" => {
                    if let Some(e) = parse_list(items) {
                        names.push(mailbox_key(&e.name));
                    }
                }
                other => events.extend(event_of(other)),
            }
        }
        names.sort();
        Ok((names, events))
    }

    /// Starts IDLE; returns the running command and the events sent before the server's
    /// continuation.
    pub async fn idle_start(
        &mut self,
        timeout: Duration,
    ) -> Result<(Idling, Vec<WatchEvent>), BackendError> {
        let tag = format!("w{}", IDLE_TAG.fetch_add(1, Ordering::Relaxed));
        write_line(self, format!("{tag} IDLE\r\n").as_bytes(), timeout).await?;
        let mut events = Vec::new();
        loop {
            match read_response(self, timeout).await? {
                Response::Continue(_) => return Ok((Idling { tag }, events)),
                Response::Tagged { tag: t, resp } if t == tag => {
                    return Err(BackendError::Protocol(format!(
                        "IDLE refused: {}",
                        server_text(&resp.text)
                    )))
                }
                other => events.extend(check(other)?),
            }
        }
    }

    /// Waits until the server has sent something. Cancel-safe: nothing is consumed.
    pub async fn idle_readable(&mut self) -> Result<(), BackendError> {
        match self.raw_io().fill_buf().await {
            Ok([]) => Err(BackendError::Unavailable(
                "IMAP server closed the connection".to_string(),
            )),
            Ok(_) => Ok(()),
            Err(e) => Err(BackendError::Unavailable(format!(
                "IMAP connection lost: {e}"
            ))),
        }
    }

    /// Reads the responses that have arrived (at least one) while idling.
    pub async fn idle_read(
        &mut self,
        idling: &Idling,
        timeout: Duration,
    ) -> Result<Vec<WatchEvent>, BackendError> {
        let mut events = Vec::new();
        loop {
            match read_response(self, timeout).await? {
                Response::Tagged { tag, resp } if tag == idling.tag => {
                    return Err(BackendError::Unavailable(format!(
                        "IMAP server ended IDLE: {}",
                        server_text(&resp.text)
                    )))
                }
                other => events.extend(check(other)?),
            }
            if self.raw_io().buffer().is_empty() {
                return Ok(events);
            }
        }
    }

    /// Ends IDLE; returns the events sent before the completion.
    pub async fn idle_done(
        &mut self,
        idling: Idling,
        timeout: Duration,
    ) -> Result<Vec<WatchEvent>, BackendError> {
        write_line(self, b"DONE\r\n", timeout).await?;
        let mut events = Vec::new();
        loop {
            match read_response(self, timeout).await? {
                Response::Tagged { tag, resp } if tag == idling.tag => {
                    if resp.status != Status::Ok {
                        tracing::debug!(reason = %server_text(&resp.text), "IDLE ended with an error");
                    }
                    return Ok(events);
                }
                other => events.extend(check(other)?),
            }
        }
    }
}

/// An untagged response while idling: BYE ends the connection, the rest may be events.
fn check(r: Response) -> Result<Option<WatchEvent>, BackendError> {
    match &r {
        Response::Status(s) if s.status == Status::Bye => Err(BackendError::Unavailable(format!(
            "IMAP server said BYE: {}",
            server_text(&s.text)
        ))),
        _ => Ok(event_of(&r)),
    }
}

fn states_from(c: &Completed, wanted: &HashSet<String>) -> Vec<WatchEvent> {
    let mut out = events_of(&c.untagged);
    let mut seen = HashSet::new();
    for e in &out {
        if let WatchEvent::Status { mailbox, .. } = e {
            seen.insert(mailbox.clone());
        }
    }
    for w in wanted {
        if !seen.contains(w) {
            out.push(WatchEvent::Listed {
                mailbox: w.clone(),
                gone: true,
                old_name: None,
            });
        }
    }
    // Only the asked-for mailboxes (and events the server pushed) matter; keep the rest too,
    // they are cheap and keep the watcher's picture complete.
    out
}

async fn write_line(
    session: &mut ImapSession,
    line: &[u8],
    timeout: Duration,
) -> Result<(), BackendError> {
    let io = session.raw_io().get_mut();
    let fut = async {
        io.write_all(line).await?;
        io.flush().await
    };
    match tokio::time::timeout(timeout, fut).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(BackendError::Unavailable(format!(
            "IMAP connection lost: {e}"
        ))),
        Err(_) => Err(BackendError::Unavailable(
            "IMAP server did not take IDLE input in time".to_string(),
        )),
    }
}

async fn read_response(
    session: &mut ImapSession,
    timeout: Duration,
) -> Result<Response, BackendError> {
    loop {
        let raw = match tokio::time::timeout(timeout, read_raw(session)).await {
            Ok(r) => r?,
            Err(_) => {
                return Err(BackendError::Unavailable(
                    "IMAP server stalled in the middle of a response".to_string(),
                ))
            }
        };
        match imap_parse::parse_response(&raw) {
            Ok(r) => return Ok(r),
            Err(e) if raw.starts_with(b"* ") => {
                tracing::debug!(error = %e, len = raw.len(), "skipping unparseable IMAP response");
            }
            Err(e) => {
                return Err(BackendError::Protocol(format!(
                    "unparseable IMAP response: {e}"
                )))
            }
        }
    }
}

/// One complete response (line plus literals) as raw bytes. Faults are errors of the
/// connection, except responses too large for an idle connection (protocol errors).
async fn read_raw(session: &mut ImapSession) -> Result<Vec<u8>, BackendError> {
    let mut out = Vec::new();
    match engine::read_raw(session.raw_io(), &mut out, MAX_LINE, MAX_RESPONSE).await {
        Ok(()) => Ok(out),
        Err(ReadFault::LiteralTooLarge(len)) => Err(BackendError::Protocol(format!(
            "IMAP literal of {len} bytes is too large while idling"
        ))),
        Err(f @ ReadFault::LineTooLong) => Err(BackendError::Protocol(f.to_string())),
        Err(f) => Err(BackendError::Unavailable(f.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(line: &str) -> Response {
        imap_parse::parse_response(line.as_bytes()).unwrap()
    }

    #[test]
    fn dovecot_rename_event_with_atoms() {
        // As Dovecot 2.3 sends it: the names as atoms.
        let r = [parse("* LIST () \"/\" Older (\"OLDNAME\" (Old))\r\n")];
        assert_eq!(
            events_of(&r),
            vec![WatchEvent::Listed {
                mailbox: "Older".into(),
                gone: false,
                old_name: Some("Old".into()),
            }]
        );
    }

    #[test]
    fn notify_events_become_watch_events() {
        let r = [
            parse(
                "* STATUS INBOX (MESSAGES 1 UIDNEXT 2 UIDVALIDITY 17 UNSEEN 1 HIGHESTMODSEQ 2)\r\n",
            ),
            parse("* STATUS inbox (HIGHESTMODSEQ 3)\r\n"),
            parse("* LIST () \"/\" probe\r\n"),
            parse("* LIST (\\NonExistent) \"/\" probe\r\n"),
            parse("* LIST () \"/\" \"new name\" (\"OLDNAME\" (\"old\"))\r\n"),
            parse("* 4 EXISTS\r\n"),
            parse("* OK still here\r\n"),
        ];
        let e = events_of(&r);
        assert_eq!(
            e[0],
            WatchEvent::Status {
                mailbox: "INBOX".into(),
                values: StatusValues {
                    uid_validity: Some(17),
                    uid_next: Some(2),
                    messages: Some(1),
                    highest_modseq: Some(2),
                },
            }
        );
        assert_eq!(
            e[1],
            WatchEvent::Status {
                mailbox: "INBOX".into(),
                values: StatusValues {
                    highest_modseq: Some(3),
                    ..Default::default()
                },
            }
        );
        assert_eq!(
            e[2],
            WatchEvent::Listed {
                mailbox: "probe".into(),
                gone: false,
                old_name: None
            }
        );
        assert!(matches!(&e[3], WatchEvent::Listed { gone: true, .. }));
        assert_eq!(
            e[4],
            WatchEvent::Listed {
                mailbox: "new name".into(),
                gone: false,
                old_name: Some("old".into())
            }
        );
        assert_eq!(e[5], WatchEvent::Selected);
        assert_eq!(e.len(), 6);
    }

    #[test]
    fn bye_while_idling_is_an_error() {
        assert!(check(parse("* BYE shutting down\r\n")).is_err());
        assert!(check(parse("* OK hi\r\n")).unwrap().is_none());
    }
}
