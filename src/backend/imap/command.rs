//! IMAP commands and their outcomes: the command builder (astrings quoted, or sent as
//! literals), a completed command with its untagged data, and the classification of NO, BAD
//! and BYE by response code (RFC 5530). Only a command's name is ever shown.

use bytes::Bytes;

use super::parse::{Item, Response, Status, StatusResp};
use crate::backend::{server_text, BackendError};

#[derive(Debug, Clone)]
pub(super) enum Segment {
    Text(Vec<u8>),
    /// A literal sent as the concatenation of its pieces (a message is not copied to be sent).
    Literal(Vec<Bytes>),
}

/// A command to send (without tag and CRLF). Built from raw text and
/// astrings; astrings are quoted or sent as literals as needed.
#[derive(Debug, Clone)]
pub struct Command {
    /// Command name for logs and errors; the arguments are never shown.
    pub(super) name: &'static str,
    pub(super) segments: Vec<Segment>,
}

impl Command {
    pub fn new(name: &'static str) -> Self {
        Command {
            name,
            segments: vec![Segment::Text(name.as_bytes().to_vec())],
        }
    }

    fn push_text(&mut self, text: &[u8]) {
        if let Some(Segment::Text(t)) = self.segments.last_mut() {
            t.extend_from_slice(text);
        } else {
            self.segments.push(Segment::Text(text.to_vec()));
        }
    }

    /// Append raw protocol text (a space is not added).
    pub fn raw(mut self, text: &str) -> Self {
        self.push_text(text.as_bytes());
        self
    }

    /// Append an astring (after a space, unless it opens a list): a quoted
    /// string when possible, else a literal.
    pub fn astring(mut self, value: &str) -> Self {
        let opens_list =
            matches!(self.segments.last(), Some(Segment::Text(t)) if t.ends_with(b"("));
        if !opens_list {
            self.push_text(b" ");
        }
        let quotable = value
            .bytes()
            .all(|b| (0x01..=0x7f).contains(&b) && b != b'\r' && b != b'\n');
        if quotable {
            let mut q = Vec::with_capacity(value.len() + 2);
            q.push(b'"');
            for b in value.bytes() {
                if b == b'"' || b == b'\\' {
                    q.push(b'\\');
                }
                q.push(b);
            }
            q.push(b'"');
            self.push_text(&q);
        } else {
            self.segments
                .push(Segment::Literal(vec![Bytes::copy_from_slice(
                    value.as_bytes(),
                )]));
        }
        self
    }

    /// Append a literal made of these pieces in order (after a space).
    pub fn literal_parts(mut self, parts: Vec<Bytes>) -> Self {
        self.push_text(b" ");
        self.segments.push(Segment::Literal(parts));
        self
    }

    pub(super) fn has_literal(&self) -> bool {
        self.segments
            .iter()
            .any(|s| matches!(s, Segment::Literal(_)))
    }
}

/// The outcome of one tagged command: untagged responses received meanwhile and
/// the tagged completion.
#[derive(Debug, Clone)]
pub struct Completed {
    pub untagged: Vec<Response>,
    pub done: StatusResp,
}

impl Completed {
    /// Untagged data responses with this (upper-case) name.
    pub fn data<'a>(&'a self, wanted: &'a str) -> impl Iterator<Item = &'a [Item]> + 'a {
        self.untagged.iter().filter_map(move |r| match r {
            Response::Data { name, items, .. } if name == wanted => Some(items.as_slice()),
            _ => None,
        })
    }

    /// Like [`Completed::data`], for taking values (e.g. literals) out of the responses.
    pub fn data_mut<'a>(
        &'a mut self,
        wanted: &'a str,
    ) -> impl Iterator<Item = &'a mut [Item]> + 'a {
        self.untagged.iter_mut().filter_map(move |r| match r {
            Response::Data { name, items, .. } if name == wanted => Some(items.as_mut_slice()),
            _ => None,
        })
    }

    /// OK, or the completion classified as a failure of command `what`.
    pub fn ok(&self, what: &str) -> Result<(), BackendError> {
        if self.done.status == Status::Ok {
            Ok(())
        } else {
            Err(classify(&self.done, Phase::Command, what))
        }
    }

    /// Capabilities announced in the completion code or in an untagged CAPABILITY.
    pub fn capabilities(&self) -> Option<Vec<String>> {
        self.done.capabilities().or_else(|| {
            self.data("CAPABILITY").last().map(|items| {
                items
                    .iter()
                    .filter_map(Item::as_atom)
                    .map(str::to_ascii_uppercase)
                    .collect()
            })
        })
    }
}

/// What a failed command was doing, for classification.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Login,
    Command,
}

/// Map a NO/BAD/BYE completion to a [`BackendError`] (RFC 5530 response codes).
pub fn classify(resp: &StatusResp, phase: Phase, what: &str) -> BackendError {
    let text = server_text(&resp.text);
    let code = resp.code.as_ref().map(|c| c.name.as_str()).unwrap_or("");
    let detail = if code.is_empty() {
        format!("{what}: {text}")
    } else {
        format!("{what}: [{code}] {text}")
    };
    match resp.status {
        Status::Bye => BackendError::Unavailable(detail),
        Status::Bad => BackendError::Protocol(detail),
        Status::Ok | Status::PreAuth => {
            BackendError::Protocol(format!("{what}: unexpected status"))
        }
        Status::No => match code {
            "UNAVAILABLE" | "LIMIT" | "SERVERBUG" | "INUSE" => BackendError::Unavailable(detail),
            // Plaintext login refused: a server/gateway configuration problem,
            // not the user's password.
            "PRIVACYREQUIRED" => BackendError::Unavailable(format!(
                "{detail} (the server wants TLS: set security to starttls or tls)"
            )),
            _ if phase == Phase::Login => BackendError::AuthFailed,
            "NONEXISTENT" => BackendError::NotFound(detail),
            _ => BackendError::Rejected(detail),
        },
    }
}

pub(super) fn has_cap(caps: &[String], cap: &str) -> bool {
    caps.iter().any(|c| c.eq_ignore_ascii_case(cap))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::imap::parse::Code;

    #[test]
    fn command_phase_classification() {
        let no = |code: Option<&str>| StatusResp {
            status: Status::No,
            code: code.map(|c| Code {
                name: c.into(),
                args: None,
            }),
            text: "t".into(),
        };
        assert!(matches!(
            classify(&no(Some("NONEXISTENT")), Phase::Command, "SELECT"),
            BackendError::NotFound(_)
        ));
        assert!(matches!(
            classify(&no(Some("ALREADYEXISTS")), Phase::Command, "CREATE"),
            BackendError::Rejected(_)
        ));
        assert!(matches!(
            classify(&no(None), Phase::Command, "CREATE"),
            BackendError::Rejected(_)
        ));
        assert!(matches!(
            classify(&no(Some("SERVERBUG")), Phase::Command, "FETCH"),
            BackendError::Unavailable(_)
        ));
        assert!(matches!(
            classify(&no(Some("NONEXISTENT")), Phase::Login, "LOGIN"),
            BackendError::AuthFailed
        ));
        let bye = StatusResp {
            status: Status::Bye,
            code: None,
            text: "shutting down".into(),
        };
        assert!(matches!(
            classify(&bye, Phase::Command, "NOOP"),
            BackendError::Unavailable(_)
        ));
    }
}
