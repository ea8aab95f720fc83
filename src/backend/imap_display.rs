//! Reading mails for display without the bodies of their attachments.
//!
//! A Sync page shows headers, the text of a mail and its attachments' names and sizes, never
//! the attachments' bytes. [`ImapSession::fetch_display`] asks for `BODYSTRUCTURE` and the
//! first 128 KiB of every mail, which is all of most mails. A larger mail with non-text leaf
//! parts (images, PDFs, ...) is then read as its header, every part's MIME header, the bodies
//! of its text parts, and `BINARY.SIZE` of the parts left out. Those pieces are put back
//! together into a message of the same MIME tree whose left-out parts have empty bodies
//! ([`FetchedMail`]). Other large mails (single-part, S/MIME, with attached messages, or with a
//! structure the server does not describe plainly) are read whole. Every section is read with
//! `.PEEK`, so `\Seen` is never set.

use bytes::Bytes;

use super::imap::{Command, ImapSession};
use super::imap_mailbox::{fetch_attr, fetch_uid, WHOLE_CHUNK};
use super::imap_parse::{Item, Status};
use super::mailbox::MessageMeta;
use super::BackendError;
use crate::uidset::UidSet;

/// Most bytes (by RFC822.SIZE) per whole-message `UID FETCH`.
const WHOLE_CHUNK_BYTES: u64 = 8 << 20;
/// Bytes of every mail read in the first round trip. A mail at least this large is read
/// again: part by part when it has parts to leave out, else whole. Below it, asking for the
/// parts one by one costs the server more than sending the whole mail.
const PREFIX: u64 = 128 << 10;
/// Deepest MIME nesting read part by part; deeper mails are read whole.
const MAX_DEPTH: usize = 16;
/// Most parts read part by part; mails with more are read whole.
const MAX_PARTS: usize = 200;

/// One mail as read for display.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchedMail {
    pub meta: MessageMeta,
    /// The whole message, or (when `omitted` is not empty) the message with the bodies of the
    /// omitted parts left empty.
    pub raw: Bytes,
    /// Parts whose bodies were left out: their index in a depth-first, pre-order walk of the
    /// top-level message's MIME tree (the root is 0; attached messages are one part, the walk
    /// does not enter them) and their decoded size in bytes.
    pub omitted: Vec<(usize, u64)>,
    /// Number of parts of that walk (0 for a whole message).
    pub parts: usize,
}

impl FetchedMail {
    /// A mail read whole.
    pub fn whole(meta: MessageMeta, raw: Bytes) -> FetchedMail {
        FetchedMail {
            meta,
            raw,
            omitted: Vec::new(),
            parts: 0,
        }
    }
}

/// A `BODYSTRUCTURE`, as far as reading parts needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Structure {
    Leaf {
        /// `type/subtype`, lower case.
        media: String,
        /// Size of the (encoded) body in bytes.
        size: u64,
        /// Content-Transfer-Encoding, lower case.
        encoding: String,
    },
    Multipart {
        /// Subtype, lower case.
        subtype: String,
        boundary: Option<String>,
        children: Vec<Structure>,
    },
}

impl Structure {
    /// Reads a `BODYSTRUCTURE` value; `None` when it is not understood.
    pub(crate) fn parse(item: &Item) -> Option<Structure> {
        Self::parse_at(item, 0)
    }

    fn parse_at(item: &Item, depth: usize) -> Option<Structure> {
        if depth > MAX_DEPTH {
            return None;
        }
        let list = item.as_list()?;
        if list.first()?.as_list().is_some() {
            let mut children = Vec::new();
            let mut rest = list.iter();
            let mut subtype = None;
            for it in rest.by_ref() {
                if it.as_list().is_some() {
                    children.push(Self::parse_at(it, depth + 1)?);
                } else {
                    subtype = it.as_astring();
                    break;
                }
            }
            let boundary = rest
                .next()
                .and_then(Item::as_list)
                .and_then(|params| param(params, "boundary"));
            return Some(Structure::Multipart {
                subtype: subtype?.to_ascii_lowercase(),
                boundary,
                children,
            });
        }
        let t = list.first()?.as_astring()?.to_ascii_lowercase();
        let s = list.get(1)?.as_astring()?.to_ascii_lowercase();
        let size = list.get(6).and_then(Item::as_u64).unwrap_or(0);
        let encoding = list
            .get(5)
            .and_then(Item::as_astring)
            .unwrap_or_default()
            .to_ascii_lowercase();
        Some(Structure::Leaf {
            media: format!("{t}/{s}"),
            size,
            encoding,
        })
    }

    fn count(&self) -> usize {
        match self {
            Structure::Leaf { .. } => 1,
            Structure::Multipart { children, .. } => {
                1 + children.iter().map(Structure::count).sum::<usize>()
            }
        }
    }

    /// True for a part whose body is left out: a non-text leaf that is not an attached
    /// message, directly below the top-level multipart (Dovecot 2.3 reports wrong
    /// `BINARY.SIZE`s for deeper parts), in base64 or unencoded (the encodings whose decoded
    /// size can be checked against the encoded one).
    fn omittable(&self, top_level: bool) -> bool {
        match self {
            Structure::Leaf {
                media, encoding, ..
            } => {
                top_level
                    && !media.starts_with("text/")
                    && !media.starts_with("message/")
                    && matches!(encoding.as_str(), "base64" | "7bit" | "8bit" | "binary")
            }
            Structure::Multipart { .. } => false,
        }
    }

    /// Whether `decoded` bytes can be the content of this leaf (a server's `BINARY.SIZE` is
    /// only used when it is): unencoded, the same size; base64, 3 bytes per 4 characters
    /// with line breaks after at least 40 characters.
    fn plausible_size(&self, decoded: u64) -> bool {
        let Structure::Leaf { size, encoding, .. } = self else {
            return false;
        };
        match encoding.as_str() {
            "base64" => {
                let max = (size / 4).saturating_mul(3).saturating_add(2);
                let min = (size.saturating_mul(40) / 42 / 4)
                    .saturating_mul(3)
                    .saturating_sub(3);
                (min..=max).contains(&decoded)
            }
            _ => decoded == *size,
        }
    }

    /// S/MIME mails are read whole: their MIME form may be sent.
    fn is_smime(&self) -> bool {
        match self {
            Structure::Multipart { subtype, .. } => subtype == "signed",
            Structure::Leaf { media, .. } => {
                media == "application/pkcs7-mime" || media == "application/x-pkcs7-mime"
            }
        }
    }

    /// Whether the mail can be read part by part: a multipart with omittable parts, every
    /// multipart with a boundary, no attached message.
    fn partial_plan(&self) -> bool {
        fn walk(s: &Structure, top_level: bool, omitted: &mut u64) -> bool {
            match s {
                // Servers differ on whether an attached message's body ends with the line
                // break before the next boundary (its size would differ by two): such mails
                // are read whole.
                Structure::Leaf { media, .. } if media.starts_with("message/") => false,
                Structure::Leaf { size, .. } => {
                    if s.omittable(top_level) {
                        *omitted = omitted.saturating_add(*size);
                    }
                    true
                }
                Structure::Multipart {
                    boundary, children, ..
                } => {
                    boundary.as_deref().is_some_and(|b| !b.is_empty())
                        && !children.is_empty()
                        && children.iter().all(|c| walk(c, false, omitted))
                }
            }
        }
        let Structure::Multipart { children, .. } = self else {
            return false;
        };
        if self.is_smime() || self.count() > MAX_PARTS {
            return false;
        }
        let mut omitted = 0;
        children.iter().all(|c| walk(c, true, &mut omitted)) && omitted > 0
    }
}

/// A body parameter's value by name (case-insensitive).
fn param(params: &[Item], name: &str) -> Option<String> {
    let mut it = params.iter();
    while let (Some(k), Some(v)) = (it.next(), it.next()) {
        if k.as_astring().is_some_and(|k| k.eq_ignore_ascii_case(name)) {
            return v.as_astring();
        }
    }
    None
}

/// The section path of a child: `1`, `1.2`, ...
fn child_path(parent: &str, i: usize) -> String {
    if parent.is_empty() {
        (i + 1).to_string()
    } else {
        format!("{parent}.{}", i + 1)
    }
}

/// The fetch items of a mail read part by part, e.g. `BODY.PEEK[1.MIME]`, `BINARY.SIZE[2]`.
fn plan_items(s: &Structure) -> Vec<String> {
    fn walk(s: &Structure, path: &str, items: &mut Vec<String>) {
        if let Structure::Multipart { children, .. } = s {
            for (i, c) in children.iter().enumerate() {
                let p = child_path(path, i);
                items.push(format!("BODY.PEEK[{p}.MIME]"));
                match c {
                    Structure::Multipart { .. } => walk(c, &p, items),
                    leaf if leaf.omittable(path.is_empty()) => {
                        items.push(format!("BINARY.SIZE[{p}]"))
                    }
                    _ => items.push(format!("BODY.PEEK[{p}]")),
                }
            }
        }
    }
    let mut items = vec!["BODY.PEEK[HEADER]".to_string()];
    walk(s, "", &mut items);
    items
}

/// (part index, decoded size) of the parts left out, as in [`FetchedMail::omitted`].
type Omitted = Vec<(usize, u64)>;

/// Puts a mail read part by part back together; `None` when a piece is missing or a size is
/// not plausible.
fn assemble(s: &Structure, secs: &[Item]) -> Option<(Vec<u8>, Omitted)> {
    fn bytes<'a>(secs: &'a [Item], key: &str) -> Option<&'a [u8]> {
        fetch_attr(secs, key)?.as_nstring()?
    }
    fn walk(
        s: &Structure,
        path: &str,
        secs: &[Item],
        out: &mut Vec<u8>,
        index: &mut usize,
        omitted: &mut Omitted,
    ) -> Option<()> {
        let Structure::Multipart {
            boundary, children, ..
        } = s
        else {
            return None;
        };
        let boundary = boundary.as_deref()?;
        for (i, c) in children.iter().enumerate() {
            let p = child_path(path, i);
            *index += 1;
            out.extend_from_slice(b"--");
            out.extend_from_slice(boundary.as_bytes());
            out.extend_from_slice(b"\r\n");
            out.extend_from_slice(bytes(secs, &format!("BODY[{p}.MIME]"))?);
            match c {
                Structure::Multipart { .. } => walk(c, &p, secs, out, index, omitted)?,
                leaf if leaf.omittable(path.is_empty()) => {
                    let size = fetch_attr(secs, &format!("BINARY.SIZE[{p}]"))?.as_u64()?;
                    if !leaf.plausible_size(size) {
                        return None;
                    }
                    omitted.push((*index, size));
                }
                _ => out.extend_from_slice(bytes(secs, &format!("BODY[{p}]"))?),
            }
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b"--");
        out.extend_from_slice(boundary.as_bytes());
        out.extend_from_slice(b"--\r\n");
        Some(())
    }
    let mut out = bytes(secs, "BODY[HEADER]")?.to_vec();
    let mut omitted = Vec::new();
    let mut index = 0;
    walk(s, "", secs, &mut out, &mut index, &mut omitted)?;
    Some((out, omitted))
}

impl ImapSession {
    /// Mails of `mailbox` to show on a device, in no particular order; missing UIDs are left
    /// out. Mails with attachments are read without the attachments' bodies (see the module
    /// docs); without the server's BINARY extension every mail is read whole.
    pub async fn fetch_display(
        &mut self,
        mailbox: &str,
        uids: &[u32],
    ) -> Result<Vec<FetchedMail>, BackendError> {
        if uids.is_empty() {
            return Ok(Vec::new());
        }
        if !self.has_capability("BINARY") {
            return self.fetch_whole(mailbox, uids).await;
        }
        self.ensure_selected(mailbox).await?;
        // 1. Metadata, structure and the first PREFIX bytes of every mail: all of most mails.
        let items = format!(
            "{} BODYSTRUCTURE BODY.PEEK[]<0.{PREFIX}>",
            self.meta_items()
        );
        let cmds: Vec<Command> = uids
            .chunks(WHOLE_CHUNK)
            .map(|chunk| {
                let set = UidSet::from_uids(chunk.iter().copied());
                Command::new("UID FETCH").raw(&format!(" {set} ({items})"))
            })
            .collect();
        let mut done = self.pipeline(&cmds).await?;
        let mut out: Vec<FetchedMail> = Vec::with_capacity(uids.len());
        let mut whole: Vec<(MessageMeta, u64)> = Vec::new();
        let mut partial: Vec<(MessageMeta, Structure)> = Vec::new();
        for c in &mut done {
            c.ok("UID FETCH")?;
            for items in c.data_mut("FETCH") {
                let Some((meta, prefix)) = super::imap_mailbox::parse_fetch(items) else {
                    continue;
                };
                match prefix {
                    // Shorter than asked for: the whole mail.
                    Some(raw) if (raw.len() as u64) < PREFIX => {
                        out.push(FetchedMail::whole(meta, raw));
                        continue;
                    }
                    _ => {}
                }
                let structure = fetch_attr(items, "BODYSTRUCTURE").and_then(Structure::parse);
                match structure {
                    Some(s) if s.partial_plan() => partial.push((meta, s)),
                    _ => {
                        let size = u64::from(meta.size);
                        whole.push((meta, size));
                    }
                }
            }
        }
        drop(done);
        if whole.is_empty() && partial.is_empty() {
            return Ok(out);
        }

        // 2. Whole mails in size-bounded chunks, the others part by part, in one pipeline.
        let mut cmds = Vec::new();
        let mut chunk: Vec<u32> = Vec::new();
        let mut chunk_bytes = 0u64;
        let mut whole_cmds = 0usize;
        for (meta, size) in &whole {
            if !chunk.is_empty()
                && (chunk.len() >= WHOLE_CHUNK || chunk_bytes + size > WHOLE_CHUNK_BYTES)
            {
                cmds.push(whole_command(&chunk));
                whole_cmds += 1;
                chunk.clear();
                chunk_bytes = 0;
            }
            chunk.push(meta.uid);
            chunk_bytes += size;
        }
        if !chunk.is_empty() {
            cmds.push(whole_command(&chunk));
            whole_cmds += 1;
        }
        for (meta, s) in &partial {
            let plan = plan_items(s);
            cmds.push(Command::new("UID FETCH").raw(&format!(
                " {} ({})",
                meta.uid,
                plan.join(" ")
            )));
        }
        let mut done = self.pipeline(&cmds).await?;

        // A server may run pipelined FETCHes side by side, so a response can arrive with
        // another command's completion: responses are matched by UID, not by command.
        for c in done.iter().take(whole_cmds) {
            c.ok("UID FETCH")?;
        }
        let parts_ok: Vec<bool> = done
            .iter()
            .skip(whole_cmds)
            .map(|c| c.done.status == Status::Ok)
            .collect();
        let mut by_uid: std::collections::HashMap<u32, &mut [Item]> =
            std::collections::HashMap::new();
        for c in &mut done {
            for items in c.data_mut("FETCH") {
                if let Some(uid) = fetch_uid(items) {
                    by_uid.insert(uid, items);
                }
            }
        }
        for (meta, _) in &whole {
            let Some(items) = by_uid.get_mut(&meta.uid) else {
                // Expunged meanwhile.
                continue;
            };
            if let Some((_, Some(body))) = super::imap_mailbox::parse_fetch(items) {
                out.push(FetchedMail::whole(meta.clone(), body));
            }
        }
        let mut retry: Vec<u32> = Vec::new();
        for ((meta, s), ok) in partial.iter().zip(parts_ok) {
            let assembled = by_uid
                .get(&meta.uid)
                .filter(|_| ok)
                .and_then(|items| assemble(s, items));
            match assembled {
                Some((raw, omitted)) => out.push(FetchedMail {
                    meta: meta.clone(),
                    raw: Bytes::from(raw),
                    omitted,
                    parts: s.count(),
                }),
                // Refused (e.g. [UNKNOWN-CTE] for a part the server cannot decode), a piece
                // missing, or expunged meanwhile: read whole, which settles all three.
                None => retry.push(meta.uid),
            }
        }
        if !retry.is_empty() {
            out.extend(self.fetch_whole(mailbox, &retry).await?);
        }
        Ok(out)
    }

    /// Whole mails as [`FetchedMail`]s.
    async fn fetch_whole(
        &mut self,
        mailbox: &str,
        uids: &[u32],
    ) -> Result<Vec<FetchedMail>, BackendError> {
        Ok(self
            .fetch_full(mailbox, uids)
            .await?
            .into_iter()
            .map(|(meta, raw)| FetchedMail::whole(meta, raw))
            .collect())
    }
}

fn whole_command(uids: &[u32]) -> Command {
    let set = UidSet::from_uids(uids.iter().copied());
    Command::new("UID FETCH").raw(&format!(" {set} (UID BODY.PEEK[])"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::imap_parse::parse_response;
    use crate::backend::imap_parse::Response;

    fn fetch_items(line: &str) -> Vec<Item> {
        match parse_response(line.as_bytes()).unwrap() {
            Response::Data { items, .. } => items,
            other => panic!("not data: {other:?}"),
        }
    }

    const MIXED: &str = "* 1 FETCH (UID 7 BODYSTRUCTURE ((\"text\" \"html\" (\"charset\" \"utf-8\") NIL NIL \"quoted-printable\" 120 3 NIL NIL NIL NIL)(\"application\" \"pdf\" (\"name\" \"a.pdf\") NIL NIL \"base64\" 600 NIL (\"attachment\" (\"filename\" \"a.pdf\")) NIL NIL) \"mixed\" (\"boundary\" \"XyZ\") NIL NIL NIL))\r\n";

    #[test]
    fn structure_and_plan() {
        let items = fetch_items(MIXED);
        let s = Structure::parse(fetch_attr(&items, "BODYSTRUCTURE").unwrap()).unwrap();
        assert_eq!(s.count(), 3);
        assert!(s.partial_plan());
        assert_eq!(
            plan_items(&s),
            [
                "BODY.PEEK[HEADER]",
                "BODY.PEEK[1.MIME]",
                "BODY.PEEK[1]",
                "BODY.PEEK[2.MIME]",
                "BINARY.SIZE[2]"
            ]
        );
    }

    fn lit(s: &str) -> String {
        format!("{{{}}}\r\n{s}", s.len())
    }

    #[test]
    fn reassembled_message() {
        let s = Structure::parse(&fetch_items(MIXED)[0].as_list().unwrap()[3]).unwrap();
        let header = "Content-Type: multipart/mixed; boundary=\"XyZ\"\r\nA: b\r\n\r\n";
        let line = format!(
            "* 1 FETCH (UID 7 BODY[HEADER] {} BODY[1.MIME] {} BODY[1] {} BODY[2.MIME] {} \
             BINARY.SIZE[2] 444)\r\n",
            lit(header),
            lit("Content-Type: text/html\r\n\r\n"),
            lit("<p>x"),
            lit("Content-Type: application/pdf\r\n\r\n"),
        );
        let items = fetch_items(&line);
        let (raw, omitted) = assemble(&s, &items).unwrap();
        assert_eq!(omitted, [(2, 444)]);
        assert_eq!(
            String::from_utf8(raw).unwrap(),
            format!(
                "{header}--XyZ\r\nContent-Type: text/html\r\n\r\n<p>x\r\n\
                 --XyZ\r\nContent-Type: application/pdf\r\n\r\n\r\n--XyZ--\r\n"
            )
        );
        // A size the encoded part cannot have (as Dovecot 2.3 reports for nested parts)
        // gives no message either.
        let wrong = line.replace("BINARY.SIZE[2] 444", "BINARY.SIZE[2] 100");
        assert!(assemble(&s, &fetch_items(&wrong)).is_none());
        // A missing piece gives no message.
        let partial = format!("* 1 FETCH (UID 7 BODY[HEADER] {})\r\n", lit("A: b"));
        assert!(assemble(&s, &fetch_items(&partial)).is_none());
    }

    #[test]
    fn only_top_level_attachments_are_left_out() {
        let pdf = Structure::Leaf {
            media: "application/pdf".into(),
            size: 1000,
            encoding: "base64".into(),
        };
        let nested = Structure::Multipart {
            subtype: "mixed".into(),
            boundary: Some("a".into()),
            children: vec![Structure::Multipart {
                subtype: "related".into(),
                boundary: Some("b".into()),
                children: vec![pdf.clone()],
            }],
        };
        assert!(!nested.partial_plan());
        let qp = Structure::Leaf {
            media: "image/gif".into(),
            size: 1000,
            encoding: "quoted-printable".into(),
        };
        let top = |c: Structure| Structure::Multipart {
            subtype: "mixed".into(),
            boundary: Some("a".into()),
            children: vec![c],
        };
        assert!(!top(qp).partial_plan());
        assert!(top(pdf.clone()).partial_plan());
        assert!(pdf.plausible_size(740));
        assert!(!pdf.plausible_size(753));
        assert!(!pdf.plausible_size(600));
    }

    #[test]
    fn whole_for_simple_and_smime() {
        let leaf = Item::List(vec![
            Item::Str(b"text".to_vec()),
            Item::Str(b"plain".to_vec()),
        ]);
        assert!(!Structure::parse(&leaf).unwrap().partial_plan());
        let signed = Structure::Multipart {
            subtype: "signed".into(),
            boundary: Some("b".into()),
            children: vec![Structure::Leaf {
                media: "application/pkcs7-signature".into(),
                size: 100,
                encoding: "base64".into(),
            }],
        };
        assert!(!signed.partial_plan());
        let alt_only = Structure::Multipart {
            subtype: "alternative".into(),
            boundary: Some("b".into()),
            children: vec![Structure::Leaf {
                media: "text/plain".into(),
                size: 100,
                encoding: "7bit".into(),
            }],
        };
        assert!(!alt_only.partial_plan());
    }
}
