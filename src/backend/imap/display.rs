//! Reading mails for display without their attachments' bodies: the first 128 KiB of every
//! mail, then a large mail with attachments part by part (headers, text parts, `BINARY.SIZE`
//! of the rest, RFC 3516), put back together with empty attachment bodies ([`FetchedMail`]).
//! Large mails that cannot be taken apart safely (single-part, S/MIME, attached messages) are
//! read whole. Every section is read with `.PEEK`.

use std::collections::HashMap;

use bytes::Bytes;

use super::mailbox::{fetch_attr, fetch_uid, parse_fetch, WHOLE_CHUNK};
use super::parse::{Item, Status};
use super::{Command, ImapSession};
use crate::backend::mailbox::MessageMeta;
use crate::backend::{BackendError, MimePart};
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

    /// Mails read whole, as a `fetch_messages` gives them.
    pub fn all_whole(mails: Vec<(MessageMeta, Bytes)>) -> Vec<FetchedMail> {
        mails
            .into_iter()
            .map(|(meta, raw)| FetchedMail::whole(meta, raw))
            .collect()
    }
}

/// Whether a part is a multipart (BODYSTRUCTURE gives every multipart at least one child).
fn is_multipart(p: &MimePart) -> bool {
    !p.children.is_empty()
}

/// Number of parts of the tree, the root included.
fn count(p: &MimePart) -> usize {
    1 + p.children.iter().map(count).sum::<usize>()
}

/// True for a part whose body is left out: a non-text leaf that is not an attached message,
/// directly below the top-level multipart (Dovecot 2.3 reports wrong `BINARY.SIZE`s for deeper
/// parts), in base64 or unencoded (the encodings whose decoded size can be checked against the
/// encoded one).
fn omittable(p: &MimePart, top_level: bool) -> bool {
    top_level
        && !is_multipart(p)
        && !p.content_type.starts_with("text/")
        && !p.content_type.starts_with("message/")
        && matches!(p.encoding.as_str(), "base64" | "7bit" | "8bit" | "binary")
}

/// Whether `decoded` bytes can be the content of this leaf (a server's `BINARY.SIZE` is only
/// used when it is): unencoded, the same size; base64, 3 bytes per 4 characters with line
/// breaks after at least 40 characters.
fn plausible_size(p: &MimePart, decoded: u64) -> bool {
    if is_multipart(p) {
        return false;
    }
    let size = p.size;
    match p.encoding.as_str() {
        "base64" => {
            let max = (size / 4).saturating_mul(3).saturating_add(2);
            let min = (size.saturating_mul(40) / 42 / 4)
                .saturating_mul(3)
                .saturating_sub(3);
            (min..=max).contains(&decoded)
        }
        _ => decoded == size,
    }
}

/// S/MIME mails are read whole: their MIME form may be sent.
fn is_smime(p: &MimePart) -> bool {
    matches!(
        p.content_type.as_str(),
        "multipart/signed" | "application/pkcs7-mime" | "application/x-pkcs7-mime"
    )
}

/// Whether the mail can be read part by part: a multipart with omittable parts, every part
/// with a type and subtype, every multipart with a boundary, no attached message, at most
/// [`MAX_DEPTH`] levels and [`MAX_PARTS`] parts.
fn partial_plan(root: &MimePart) -> bool {
    fn described(p: &MimePart) -> bool {
        p.content_type
            .split_once('/')
            .is_some_and(|(t, s)| !t.is_empty() && !s.is_empty())
    }
    fn walk(p: &MimePart, top_level: bool, depth: usize, omitted: &mut u64) -> bool {
        if depth > MAX_DEPTH || !described(p) {
            return false;
        }
        if is_multipart(p) {
            return !p.boundary.is_empty()
                && p.children
                    .iter()
                    .all(|c| walk(c, false, depth + 1, omitted));
        }
        // Servers differ on whether an attached message's body ends with the line break
        // before the next boundary (its size would differ by two): such mails are read whole.
        if p.content_type.starts_with("message/") {
            return false;
        }
        if omittable(p, top_level) {
            *omitted = omitted.saturating_add(p.size);
        }
        true
    }
    if !is_multipart(root) || !described(root) || root.boundary.is_empty() {
        return false;
    }
    if is_smime(root) || count(root) > MAX_PARTS {
        return false;
    }
    let mut omitted = 0;
    root.children.iter().all(|c| walk(c, true, 1, &mut omitted)) && omitted > 0
}

/// The fetch items of a mail read part by part, e.g. `BODY.PEEK[1.MIME]`, `BINARY.SIZE[2]`.
fn plan_items(root: &MimePart) -> Vec<String> {
    fn walk(p: &MimePart, top_level: bool, items: &mut Vec<String>) {
        for c in &p.children {
            let s = &c.section;
            items.push(format!("BODY.PEEK[{s}.MIME]"));
            if is_multipart(c) {
                walk(c, false, items);
            } else if omittable(c, top_level) {
                items.push(format!("BINARY.SIZE[{s}]"));
            } else {
                items.push(format!("BODY.PEEK[{s}]"));
            }
        }
    }
    let mut items = vec!["BODY.PEEK[HEADER]".to_string()];
    walk(root, true, &mut items);
    items
}

/// (part index, decoded size) of the parts left out, as in [`FetchedMail::omitted`].
type Omitted = Vec<(usize, u64)>;

/// Puts a mail read part by part back together; `None` when a piece is missing or a size is
/// not plausible.
fn assemble(root: &MimePart, secs: &[Item]) -> Option<(Vec<u8>, Omitted)> {
    fn bytes<'a>(secs: &'a [Item], key: &str) -> Option<&'a [u8]> {
        fetch_attr(secs, key)?.as_nstring()?
    }
    fn walk(
        p: &MimePart,
        top_level: bool,
        secs: &[Item],
        out: &mut Vec<u8>,
        index: &mut usize,
        omitted: &mut Omitted,
    ) -> Option<()> {
        if !is_multipart(p) || p.boundary.is_empty() {
            return None;
        }
        let boundary = p.boundary.as_bytes();
        for c in &p.children {
            let s = &c.section;
            *index += 1;
            out.extend_from_slice(b"--");
            out.extend_from_slice(boundary);
            out.extend_from_slice(b"\r\n");
            out.extend_from_slice(bytes(secs, &format!("BODY[{s}.MIME]"))?);
            if is_multipart(c) {
                walk(c, false, secs, out, index, omitted)?;
            } else if omittable(c, top_level) {
                let size = fetch_attr(secs, &format!("BINARY.SIZE[{s}]"))?.as_u64()?;
                if !plausible_size(c, size) {
                    return None;
                }
                omitted.push((*index, size));
            } else {
                out.extend_from_slice(bytes(secs, &format!("BODY[{s}]"))?);
            }
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b"--");
        out.extend_from_slice(boundary);
        out.extend_from_slice(b"--\r\n");
        Some(())
    }
    let mut out = bytes(secs, "BODY[HEADER]")?.to_vec();
    let mut omitted = Vec::new();
    let mut index = 0;
    walk(root, true, secs, &mut out, &mut index, &mut omitted)?;
    Some((out, omitted))
}

/// Large mails to read whole, with their size.
type Whole = Vec<(MessageMeta, u64)>;
/// Large mails to read part by part, with their structure.
type Partial = Vec<(MessageMeta, MimePart)>;

impl ImapSession {
    /// Metadata and the first [`PREFIX`] bytes of `uids` in the selected mailbox: the mails
    /// read whole that way, and the metadata of the larger ones.
    pub(super) async fn fetch_prefixes(
        &mut self,
        uids: &[u32],
    ) -> Result<(Vec<FetchedMail>, Vec<MessageMeta>), BackendError> {
        let items = format!("{} BODY.PEEK[]<0.{PREFIX}>", self.meta_items());
        let cmds: Vec<Command> = uids
            .chunks(WHOLE_CHUNK)
            .map(|chunk| {
                let set = UidSet::from_uids(chunk.iter().copied());
                Command::new("UID FETCH").raw(&format!(" {set} ({items})"))
            })
            .collect();
        let mut done = self.pipeline(&cmds).await?;
        let mut out: Vec<FetchedMail> = Vec::with_capacity(uids.len());
        let mut large: Vec<MessageMeta> = Vec::new();
        for c in &mut done {
            c.ok("UID FETCH")?;
            for items in c.data_mut("FETCH") {
                let Some((meta, prefix)) = parse_fetch(items) else {
                    continue;
                };
                match prefix {
                    // Shorter than asked for: the whole mail.
                    Some(raw) if (raw.len() as u64) < PREFIX => {
                        out.push(FetchedMail::whole(meta, raw));
                    }
                    _ => large.push(meta),
                }
            }
        }
        Ok((out, large))
    }

    /// Splits large mails by their structure into those read whole and those read part by
    /// part.
    pub(super) async fn plan_large(
        &mut self,
        large: Vec<MessageMeta>,
    ) -> Result<(Whole, Partial), BackendError> {
        let large_uids: Vec<u32> = large.iter().map(|m| m.uid).collect();
        let mut structures = self.structures(&large_uids).await?;
        let mut whole = Vec::new();
        let mut partial = Vec::new();
        for meta in large {
            match structures.remove(&meta.uid).flatten() {
                Some(s) if partial_plan(&s) => partial.push((meta, s)),
                _ => {
                    let size = u64::from(meta.size);
                    whole.push((meta, size));
                }
            }
        }
        Ok((whole, partial))
    }

    /// Reads the planned mails in one pipeline into `out`; returns the UIDs of the mails to
    /// read whole after all (a part refused, e.g. `[UNKNOWN-CTE]`, a piece missing, or the mail
    /// expunged meanwhile: reading whole settles all three).
    pub(super) async fn fetch_planned(
        &mut self,
        whole: &Whole,
        partial: &Partial,
        out: &mut Vec<FetchedMail>,
    ) -> Result<Vec<u32>, BackendError> {
        let mut cmds = whole_commands(whole);
        let whole_cmds = cmds.len();
        cmds.extend(partial.iter().map(|(meta, s)| {
            Command::new("UID FETCH").raw(&format!(" {} ({})", meta.uid, plan_items(s).join(" ")))
        }));
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
        let mut by_uid: HashMap<u32, &mut [Item]> = HashMap::new();
        for c in &mut done {
            for items in c.data_mut("FETCH") {
                if let Some(uid) = fetch_uid(items) {
                    by_uid.insert(uid, items);
                }
            }
        }
        for (meta, _) in whole {
            // Left out when expunged meanwhile.
            let Some(items) = by_uid.get_mut(&meta.uid) else {
                continue;
            };
            if let Some((_, Some(body))) = parse_fetch(items) {
                out.push(FetchedMail::whole(meta.clone(), body));
            }
        }
        let mut retry = Vec::new();
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
                    parts: count(s),
                }),
                None => retry.push(meta.uid),
            }
        }
        Ok(retry)
    }
}

/// Whole-mail FETCHes in chunks of at most [`WHOLE_CHUNK`] mails and
/// [`WHOLE_CHUNK_BYTES`] bytes (a single larger mail gets a command of its own).
fn whole_commands(whole: &Whole) -> Vec<Command> {
    let mut cmds = Vec::new();
    let mut chunk: Vec<u32> = Vec::new();
    let mut chunk_bytes = 0u64;
    for (meta, size) in whole {
        if !chunk.is_empty()
            && (chunk.len() >= WHOLE_CHUNK || chunk_bytes + size > WHOLE_CHUNK_BYTES)
        {
            cmds.push(whole_command(&chunk));
            chunk.clear();
            chunk_bytes = 0;
        }
        chunk.push(meta.uid);
        chunk_bytes += size;
    }
    if !chunk.is_empty() {
        cmds.push(whole_command(&chunk));
    }
    cmds
}

fn whole_command(uids: &[u32]) -> Command {
    let set = UidSet::from_uids(uids.iter().copied());
    Command::new("UID FETCH").raw(&format!(" {set} (UID BODY.PEEK[])"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::imap::parse::parse_response;
    use crate::backend::imap::parse::Response;
    use crate::backend::imap::parts::parse_bodystructure;

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
        let s = parse_bodystructure(fetch_attr(&items, "BODYSTRUCTURE").unwrap()).unwrap();
        assert_eq!(count(&s), 3);
        assert!(partial_plan(&s));
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
        let s = parse_bodystructure(&fetch_items(MIXED)[0].as_list().unwrap()[3]).unwrap();
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

    fn leaf(content_type: &str, size: u64, encoding: &str) -> MimePart {
        MimePart {
            content_type: content_type.into(),
            size,
            encoding: encoding.into(),
            ..Default::default()
        }
    }

    fn multipart(subtype: &str, boundary: &str, children: Vec<MimePart>) -> MimePart {
        MimePart {
            content_type: format!("multipart/{subtype}"),
            boundary: boundary.into(),
            children,
            ..Default::default()
        }
    }

    #[test]
    fn only_top_level_attachments_are_left_out() {
        let pdf = leaf("application/pdf", 1000, "base64");
        let nested = multipart(
            "mixed",
            "a",
            vec![multipart("related", "b", vec![pdf.clone()])],
        );
        assert!(!partial_plan(&nested));
        let qp = leaf("image/gif", 1000, "quoted-printable");
        let top = |c: MimePart| multipart("mixed", "a", vec![c]);
        assert!(!partial_plan(&top(qp)));
        assert!(partial_plan(&top(pdf.clone())));
        assert!(plausible_size(&pdf, 740));
        assert!(!plausible_size(&pdf, 753));
        assert!(!plausible_size(&pdf, 600));
    }

    #[test]
    fn whole_for_simple_and_smime() {
        let single = Item::List(vec![
            Item::Str(b"text".to_vec()),
            Item::Str(b"plain".to_vec()),
        ]);
        assert!(!partial_plan(&parse_bodystructure(&single).unwrap()));
        let signed = multipart(
            "signed",
            "b",
            vec![leaf("application/pkcs7-signature", 100, "base64")],
        );
        assert!(!partial_plan(&signed));
        let alt_only = multipart("alternative", "b", vec![leaf("text/plain", 100, "7bit")]);
        assert!(!partial_plan(&alt_only));
    }
}
