//! Single MIME parts of a stored mail over IMAP: the part tree (BODYSTRUCTURE plus each
//! part's MIME header), a part's decoded size (`BINARY.SIZE`, RFC 3516) and byte ranges of a
//! part, decoded by the server (`BINARY.PEEK[section]<offset.length>`) or as stored
//! (`BODY.PEEK[section]<offset.length>`). Nothing here sets `\Seen`.

use std::collections::HashMap;

use bytes::Bytes;

use super::mailbox::{fetch_attr, fetch_uid};
use super::parse::Item;
use super::{Command, ImapSession};
use crate::backend::{BackendError, MimePart};
use crate::uidset::UidSet;

/// Most parts of one mail whose headers are fetched.
const MAX_PARTS: usize = 1000;

impl ImapSession {
    /// The BODYSTRUCTURE of mails of the selected mailbox by UID (`None`: not understood);
    /// mails that are gone are left out.
    pub(super) async fn structures(
        &mut self,
        uids: &[u32],
    ) -> Result<HashMap<u32, Option<MimePart>>, BackendError> {
        let set = UidSet::from_uids(uids.iter().copied());
        let c = self
            .run_ok(&Command::new("UID FETCH").raw(&format!(" {set} (UID BODYSTRUCTURE)")))
            .await?;
        Ok(c.data("FETCH")
            .filter_map(|items| {
                let uid = fetch_uid(items)?;
                Some((
                    uid,
                    fetch_attr(items, "BODYSTRUCTURE").and_then(parse_bodystructure),
                ))
            })
            .collect())
    }
}

/// The UID FETCH of every part's header of `root` (see [`fill_headers`]); refused for a mail
/// of more than [`MAX_PARTS`] parts.
pub(super) fn header_command(uid: u32, root: &MimePart) -> Result<Command, BackendError> {
    let mut sections = Vec::new();
    collect_sections(root, &mut sections);
    if sections.len() > MAX_PARTS {
        return Err(BackendError::Rejected(format!(
            "mail has {} MIME parts",
            sections.len()
        )));
    }
    let mut args = format!(" {uid} (UID");
    for s in &sections {
        args.push_str(&format!(" BODY.PEEK[{}]", header_section(s)));
    }
    args.push(')');
    Ok(Command::new("UID FETCH").raw(&args))
}

/// The section whose text is a part's header: the message header for the top level.
fn header_section(section: &str) -> String {
    if section.is_empty() {
        "HEADER".to_string()
    } else {
        format!("{section}.MIME")
    }
}

/// An attribute of the FETCH response for `uid`.
pub(super) fn fetch_value<'a>(items: &'a [Item], uid: u32, key: &str) -> Option<&'a Item> {
    (fetch_uid(items) == Some(uid))
        .then(|| fetch_attr(items, key))
        .flatten()
}

fn text(item: Option<&Item>) -> String {
    item.and_then(Item::as_astring)
        .filter(|_| !item.is_some_and(Item::is_nil))
        .unwrap_or_default()
        .to_ascii_lowercase()
}

/// A `BODYSTRUCTURE` value as a part tree (sections numbered, headers not filled in); `None`
/// when it is not a BODYSTRUCTURE or nests too deep.
pub(crate) fn parse_bodystructure(item: &Item) -> Option<MimePart> {
    parse_structure(&*item.parsed()?, "", 0)
}

/// One BODYSTRUCTURE node. `section` is the node's IMAP section ("" for a multipart top
/// level); a top-level single part is section "1" with the message header.
fn parse_structure(item: &Item, section: &str, depth: usize) -> Option<MimePart> {
    if depth > 50 {
        return None;
    }
    let list = item.as_list()?;
    if matches!(list.first(), Some(Item::List(_))) {
        let mut children = Vec::new();
        let mut rest = list.iter().peekable();
        while let Some(Item::List(_)) = rest.peek() {
            let child = rest.next()?;
            let n = children.len() + 1;
            let s = if section.is_empty() {
                n.to_string()
            } else {
                format!("{section}.{n}")
            };
            children.push(parse_structure(child, &s, depth + 1)?);
        }
        let subtype = text(rest.next());
        let boundary = rest
            .next()
            .and_then(Item::as_list)
            .and_then(|params| {
                let mut it = params.iter();
                while let (Some(k), Some(v)) = (it.next(), it.next()) {
                    if k.as_astring()
                        .is_some_and(|k| k.eq_ignore_ascii_case("boundary"))
                    {
                        return v.as_astring();
                    }
                }
                None
            })
            .unwrap_or_default();
        return Some(MimePart {
            section: section.to_string(),
            header: Bytes::new(),
            content_type: format!("multipart/{subtype}"),
            encoding: String::new(),
            size: 0,
            boundary,
            children,
        });
    }
    let section = if section.is_empty() { "1" } else { section };
    Some(MimePart {
        section: section.to_string(),
        header: Bytes::new(),
        content_type: format!("{}/{}", text(list.first()), text(list.get(1))),
        encoding: text(list.get(5)),
        size: list.get(6).and_then(Item::as_u64).unwrap_or(0),
        boundary: String::new(),
        children: Vec::new(),
    })
}

/// Sections whose header is needed, top level first; the top level is "".
fn collect_sections(p: &MimePart, out: &mut Vec<String>) {
    if out.is_empty() {
        out.push(String::new());
    } else {
        out.push(p.section.clone());
    }
    for c in &p.children {
        collect_sections(c, out);
    }
}

/// Puts the headers fetched by [`header_command`] into the tree.
pub(super) fn fill_headers(root: &mut MimePart, fetched: &[Item]) {
    fn find(fetched: &[Item], key: &str) -> Bytes {
        match fetch_attr(fetched, key) {
            Some(Item::Str(s)) => Bytes::copy_from_slice(s),
            _ => Bytes::new(),
        }
    }
    fn walk(p: &mut MimePart, fetched: &[Item]) {
        p.header = find(fetched, &format!("BODY[{}.MIME]", p.section));
        for c in &mut p.children {
            walk(c, fetched);
        }
    }
    for c in &mut root.children {
        walk(c, fetched);
    }
    root.header = find(fetched, "BODY[HEADER]");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::imap::parse::{parse_response, Response};

    fn structure(line: &str) -> MimePart {
        let Response::Data { items, .. } = parse_response(line.as_bytes()).unwrap() else {
            panic!("not data")
        };
        let value = fetch_value(&items, 7, "BODYSTRUCTURE").expect("BODYSTRUCTURE");
        parse_bodystructure(value).expect("structure")
    }

    #[test]
    fn nested_multipart_sections_and_boundaries() {
        let p = structure(
            "* 1 FETCH (UID 7 BODYSTRUCTURE (((\"text\" \"plain\" (\"charset\" \"utf-8\") NIL NIL \
             \"7bit\" 41 1 NIL NIL NIL NIL)(\"text\" \"html\" NIL NIL NIL \"quoted-printable\" 48 1 \
             NIL NIL NIL NIL) \"alternative\" (\"boundary\" \"alt\") NIL NIL NIL)(\"application\" \
             \"pdf\" (\"name\" \"a.pdf\") NIL NIL \"base64\" 410 NIL (\"attachment\" (\"filename\" \
             \"a.pdf\")) NIL NIL) \"mixed\" (\"boundary\" \"outer\") NIL NIL NIL))\r\n",
        );
        assert_eq!(p.section, "");
        assert_eq!(p.content_type, "multipart/mixed");
        assert_eq!(p.boundary, "outer");
        let alt = &p.children[0];
        assert_eq!((alt.section.as_str(), alt.boundary.as_str()), ("1", "alt"));
        assert_eq!(alt.children[1].section, "1.2");
        assert_eq!(alt.children[1].encoding, "quoted-printable");
        let pdf = &p.children[1];
        assert_eq!(pdf.section, "2");
        assert_eq!(pdf.content_type, "application/pdf");
        assert_eq!((pdf.encoding.as_str(), pdf.size), ("base64", 410));
        let mut sections = Vec::new();
        collect_sections(&p, &mut sections);
        assert_eq!(sections, ["", "1", "1.1", "1.2", "2"]);
        assert_eq!(header_section(""), "HEADER");
        assert_eq!(header_section("1.2"), "1.2.MIME");
    }

    #[test]
    fn a_single_part_mail_is_section_one() {
        let p = structure(
            "* 1 FETCH (UID 7 BODYSTRUCTURE (\"image\" \"png\" NIL NIL NIL \"base64\" 100 NIL NIL \
             NIL NIL))\r\n",
        );
        assert_eq!(p.section, "1");
        assert!(p.children.is_empty());
        assert_eq!(p.content_type, "image/png");
    }
}
