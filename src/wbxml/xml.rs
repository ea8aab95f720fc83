//! XML form of WBXML trees, for the CLI, debug dumps and tests.
//!
//! # Format
//!
//! - Namespaces are code-page names, as in Microsoft's MS-ASCMD examples: the
//!   root element's page is the default namespace (`<Sync xmlns="AirSync">`);
//!   every other page used in the document is declared on the root with the
//!   lowercase page name as prefix (`xmlns:airsyncbase="AirSyncBase"`) and
//!   its elements are written `<airsyncbase:Body>`.
//! - Elements whose children are all elements are indented by two spaces;
//!   an element with any text or opaque child is written on one line, its
//!   text exactly as is (`&`, `<`, `>` and control characters other than tab
//!   and newline are escaped, e.g. CR as `&#13;`).
//! - An element without children is `<Tag/>`; an element holding an empty
//!   string is `<Tag></Tag>`.
//! - Opaque data is a CDATA section holding the data in base64
//!   (`<airsyncbase:Data><![CDATA[SGVsbG8=]]></airsyncbase:Data>`). Text is
//!   never written as CDATA, so the two cannot be confused.
//! - A tag missing from the tables is written `_0xNN` (its token), a page
//!   missing from the tables as namespace `PageNN` with prefix `pageNN`.
//!
//! With these rules `encode(from_xml(to_xml(t)))` equals `encode(t)` byte for
//! byte for every tree with at most one text or opaque node per element
//! (a shape [`decode`](super::decode) always produces, except that mixed
//! content loses whitespace-only text between elements).
//!
//! # Reading
//!
//! [`from_xml`] reads this format and also libwbxml's (`wbxml2xml -l
//! ACTIVESYNC`): namespaces with a trailing colon (`AirSync:`, and `Gal:`
//! for `GAL`; namespace names match case-insensitively), namespaces
//! declared on any element, the DOCTYPE, libwbxml's spellings of tag names
//! (`Recurrence_Type`, `FlagStatus`, ...) and, in libwbxml namespaces, base64
//! text in the tags libwbxml treats as binary (decoded into opaque data).
//! Whitespace-only text is dropped from elements that contain child elements
//! or opaque data and kept exactly in all others. Attributes other than
//! namespace declarations are rejected.

use std::collections::BTreeSet;
use std::fmt::Write as _;

use base64::Engine as _;
use bytes::Bytes;
use quick_xml::events::{BytesStart, Event};
use quick_xml::name::ResolveResult;
use quick_xml::NsReader;

use super::codepage::{self, Tag};
use super::libwbxml;
use super::tree::{Element, Node};

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

/// The DOCTYPE libwbxml writes and reads for ActiveSync documents.
pub const LIBWBXML_DOCTYPE: &str = r#"<!DOCTYPE ActiveSync PUBLIC "-//MICROSOFT//DTD ActiveSync//EN" "http://www.microsoft.com/">"#;

/// An error reading or producing XML.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("XML error at byte {offset}: {message}")]
pub struct XmlError {
    /// Byte offset in the XML text (0 when producing XML).
    pub offset: u64,
    /// Description.
    pub message: String,
}

fn xml_err<T>(offset: u64, message: impl Into<String>) -> Result<T, XmlError> {
    Err(XmlError {
        offset,
        message: message.into(),
    })
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Style {
    Native,
    Libwbxml,
}

fn ns_name(page: u8, style: Style) -> String {
    let base = match codepage::page(page) {
        Some(p) => p.name.to_string(),
        None => format!("Page{page}"),
    };
    match style {
        Style::Native => base,
        Style::Libwbxml => libwbxml::namespace(page).unwrap_or(base + ":"),
    }
}

fn prefix(page: u8) -> String {
    match codepage::page(page) {
        Some(p) => p.name.to_ascii_lowercase(),
        None => format!("page{page}"),
    }
}

fn local_name(tag: Tag, style: Style) -> Result<String, XmlError> {
    match style {
        Style::Native => Ok(match tag.name() {
            Some(n) => n.to_string(),
            None => format!("_0x{:02X}", tag.token),
        }),
        Style::Libwbxml => match libwbxml::name(tag) {
            Some(n) => Ok(n.to_string()),
            None => xml_err(0, format!("libwbxml 0.11.8 does not know {tag}")),
        },
    }
}

fn escape_text(out: &mut String, s: &str) {
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '\t' | '\n' => out.push(c),
            c if (c as u32) < 0x20 || c == '\u{7F}' => {
                let _ = write!(out, "&#{};", c as u32);
            }
            c => out.push(c),
        }
    }
}

enum Work<'a> {
    Open(&'a Element, usize, bool),
    Close(String, usize, bool, bool),
    Text(&'a str),
    Opaque(Tag, &'a [u8]),
}

fn write_doc(root: &Element, style: Style) -> Result<String, XmlError> {
    let root = &*root.expanded();
    let mut pages = BTreeSet::new();
    let mut walk = vec![root];
    while let Some(e) = walk.pop() {
        pages.insert(e.tag.page);
        walk.extend(e.elements());
    }
    let root_page = root.tag.page;
    let mut decls = format!(" xmlns=\"{}\"", ns_name(root_page, style));
    for &p in pages.iter().filter(|&&p| p != root_page) {
        let _ = write!(decls, " xmlns:{}=\"{}\"", prefix(p), ns_name(p, style));
    }
    let mut out = String::new();
    match style {
        Style::Native => out.push_str("<?xml version=\"1.0\" encoding=\"utf-8\"?>\n"),
        Style::Libwbxml => {
            out.push_str("<?xml version=\"1.0\"?>\n");
            out.push_str(LIBWBXML_DOCTYPE);
            out.push('\n');
        }
    }
    let mut work = vec![Work::Open(root, 0, false)];
    let mut first = true;
    while let Some(item) = work.pop() {
        match item {
            Work::Open(e, ind, compact) => {
                let local = local_name(e.tag, style)?;
                let name = if e.tag.page == root_page {
                    local
                } else {
                    format!("{}:{}", prefix(e.tag.page), local)
                };
                if !compact {
                    out.extend(std::iter::repeat_n(' ', ind * 2));
                }
                out.push('<');
                out.push_str(&name);
                if first {
                    out.push_str(&decls);
                    first = false;
                }
                if e.children.is_empty() {
                    out.push_str("/>");
                    if !compact {
                        out.push('\n');
                    }
                    continue;
                }
                out.push('>');
                let inner_compact =
                    compact || e.children.iter().any(|c| !matches!(c, Node::Element(_)));
                if !inner_compact {
                    out.push('\n');
                }
                work.push(Work::Close(name, ind, compact, inner_compact));
                for c in e.children.iter().rev() {
                    work.push(match c {
                        Node::Element(c) => Work::Open(c, ind + 1, inner_compact),
                        Node::Text(t) => Work::Text(t),
                        Node::Opaque(b) => Work::Opaque(e.tag, b),
                        // `expanded` above left none.
                        Node::Encoded(_) => continue,
                    });
                }
            }
            Work::Close(name, ind, compact, inner_compact) => {
                if !inner_compact {
                    out.extend(std::iter::repeat_n(' ', ind * 2));
                }
                out.push_str("</");
                out.push_str(&name);
                out.push('>');
                if !compact {
                    out.push('\n');
                }
            }
            Work::Text(t) => escape_text(&mut out, t),
            Work::Opaque(tag, b) => match style {
                Style::Native => {
                    out.push_str("<![CDATA[");
                    B64.encode_string(b, &mut out);
                    out.push_str("]]>");
                }
                Style::Libwbxml if libwbxml::is_binary(tag) => B64.encode_string(b, &mut out),
                Style::Libwbxml => {
                    return xml_err(0, format!("libwbxml cannot represent opaque data in {tag}"));
                }
            },
        }
    }
    Ok(out)
}

/// The XML form of a tree (see the module documentation).
pub fn to_xml(root: &Element) -> String {
    // Native style has no failure cases.
    write_doc(root, Style::Native).unwrap_or_default()
}

/// XML that libwbxml 0.11.8's `xml2wbxml -a -n` encodes into the same WBXML
/// as [`encode`](super::encode): DOCTYPE, namespaces with a trailing colon,
/// libwbxml's tag spellings, base64 text for the tags libwbxml treats as
/// binary. Fails for what libwbxml cannot express: page 25 and the other
/// tags it lacks, and opaque data in any other tag.
pub fn to_xml_libwbxml(root: &Element) -> Result<String, XmlError> {
    write_doc(root, Style::Libwbxml)
}

fn unescape(raw: &str, offset: u64) -> Result<String, XmlError> {
    if !raw.contains('&') {
        return Ok(raw.to_string());
    }
    let mut out = String::with_capacity(raw.len());
    let mut rest = raw;
    while let Some(i) = rest.find('&') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        let Some(end) = after.find(';') else {
            return xml_err(offset, "unterminated character reference");
        };
        let ent = &after[..end];
        let c = match ent {
            "lt" => '<',
            "gt" => '>',
            "amp" => '&',
            "quot" => '"',
            "apos" => '\'',
            _ => {
                let code =
                    if let Some(h) = ent.strip_prefix("#x").or_else(|| ent.strip_prefix("#X")) {
                        u32::from_str_radix(h, 16).ok()
                    } else if let Some(d) = ent.strip_prefix('#') {
                        d.parse::<u32>().ok()
                    } else {
                        None
                    };
                match code.and_then(char::from_u32) {
                    Some(c) => c,
                    None => return xml_err(offset, format!("unknown entity &{ent};")),
                }
            }
        };
        out.push(c);
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

struct Open {
    el: Element,
    libwbxml: bool,
}

fn resolve_tag(ns: &ResolveResult, e: &BytesStart, offset: u64) -> Result<(Tag, bool), XmlError> {
    let local = e.local_name();
    let local = std::str::from_utf8(local.as_ref()).unwrap_or("");
    let ns_str = match ns {
        ResolveResult::Bound(n) => std::str::from_utf8(n.as_ref()).unwrap_or(""),
        ResolveResult::Unbound => {
            return xml_err(offset, format!("element <{local}> has no namespace"))
        }
        ResolveResult::Unknown(p) => {
            return xml_err(
                offset,
                format!(
                    "element <{local}> uses undeclared prefix {}",
                    String::from_utf8_lossy(p)
                ),
            )
        }
    };
    let lib = ns_str.ends_with(':');
    let page_name = ns_str.strip_suffix(':').unwrap_or(ns_str);
    let by_name = codepage::page_by_name(page_name).or_else(|| {
        codepage::pages()
            .iter()
            .find(|p| p.name.eq_ignore_ascii_case(page_name))
    });
    let page = match by_name {
        Some(p) => p.number,
        None => match page_name
            .strip_prefix("Page")
            .and_then(|n| n.parse::<u8>().ok())
        {
            Some(n) if codepage::page(n).is_none() => n,
            _ => return xml_err(offset, format!("unknown namespace {ns_str:?}")),
        },
    };
    if let Some(hex) = local.strip_prefix("_0x") {
        if let Ok(t) = u8::from_str_radix(hex, 16) {
            return Ok((Tag::new(page, t), lib));
        }
    }
    match libwbxml::lookup(page, local) {
        Some(t) => Ok((t, lib)),
        None => xml_err(
            offset,
            format!("unknown tag <{local}> in namespace {ns_str:?}"),
        ),
    }
}

fn check_attributes(e: &BytesStart, offset: u64) -> Result<(), XmlError> {
    for a in e.attributes() {
        let a = match a {
            Ok(a) => a,
            Err(err) => return xml_err(offset, err.to_string()),
        };
        let key = a.key.as_ref();
        if key != b"xmlns" && !key.starts_with(b"xmlns:") {
            return xml_err(
                offset,
                format!("attribute {} not supported", String::from_utf8_lossy(key)),
            );
        }
    }
    Ok(())
}

fn finish(mut open: Open, had_end_tag: bool, offset: u64) -> Result<Element, XmlError> {
    let el = &mut open.el;
    if el.children.is_empty() && had_end_tag {
        el.children.push(Node::Text(String::new()));
    }
    if el.children.iter().any(|c| !matches!(c, Node::Text(_))) {
        el.children
            .retain(|c| !matches!(c, Node::Text(t) if t.chars().all(char::is_whitespace)));
    } else if open.libwbxml && libwbxml::is_binary(el.tag) {
        let text: String = el
            .children
            .iter()
            .filter_map(|c| match c {
                Node::Text(t) => Some(t.as_str()),
                _ => None,
            })
            .collect::<String>()
            .split_whitespace()
            .collect();
        match B64.decode(text.as_bytes()) {
            Ok(data) => el.children = vec![Node::Opaque(Bytes::from(data))],
            Err(e) => return xml_err(offset, format!("bad base64 in {}: {e}", el.tag)),
        }
    }
    Ok(open.el)
}

/// Parses the XML form (this module's or libwbxml's) into a tree.
pub fn from_xml(s: &str) -> Result<Element, XmlError> {
    let mut reader = NsReader::from_str(s);
    {
        let cfg = reader.config_mut();
        cfg.trim_text(false);
        cfg.expand_empty_elements = false;
        cfg.check_end_names = true;
    }
    let mut stack: Vec<Open> = Vec::new();
    let mut root: Option<Element> = None;
    loop {
        let offset = reader.buffer_position();
        let (ns, ev) = match reader.read_resolved_event() {
            Ok(x) => x,
            Err(e) => return xml_err(reader.error_position(), e.to_string()),
        };
        match ev {
            Event::Start(ref e) | Event::Empty(ref e) => {
                if stack.is_empty() && root.is_some() {
                    return xml_err(offset, "more than one root element");
                }
                let (tag, lib) = resolve_tag(&ns, e, offset)?;
                check_attributes(e, offset)?;
                let open = Open {
                    el: Element::new(tag),
                    libwbxml: lib,
                };
                if matches!(ev, Event::Start(_)) {
                    stack.push(open);
                } else {
                    let el = finish(open, false, offset)?;
                    attach(&mut stack, &mut root, el);
                }
            }
            Event::End(_) => {
                let Some(open) = stack.pop() else {
                    return xml_err(offset, "unexpected end tag");
                };
                let el = finish(open, true, offset)?;
                attach(&mut stack, &mut root, el);
            }
            Event::Text(t) => {
                let raw = match std::str::from_utf8(&t) {
                    Ok(r) => r,
                    Err(_) => return xml_err(offset, "invalid UTF-8"),
                };
                let text = unescape(raw, offset)?;
                match stack.last_mut() {
                    Some(top) => match top.el.children.last_mut() {
                        Some(Node::Text(prev)) => prev.push_str(&text),
                        _ => top.el.children.push(Node::Text(text)),
                    },
                    None if text.chars().all(char::is_whitespace) => {}
                    None => return xml_err(offset, "text outside the root element"),
                }
            }
            Event::CData(c) => {
                let Some(top) = stack.last_mut() else {
                    return xml_err(offset, "CDATA outside the root element");
                };
                let b64: Vec<u8> = c
                    .iter()
                    .copied()
                    .filter(|b| !b.is_ascii_whitespace())
                    .collect();
                match B64.decode(&b64) {
                    Ok(data) => top.el.children.push(Node::Opaque(Bytes::from(data))),
                    Err(e) => {
                        return xml_err(offset, format!("CDATA is not base64 opaque data: {e}"))
                    }
                }
            }
            Event::Eof => break,
            Event::Decl(_) | Event::PI(_) | Event::Comment(_) | Event::DocType(_) => {}
        }
    }
    if !stack.is_empty() {
        return xml_err(s.len() as u64, "unclosed element");
    }
    match root {
        Some(r) => Ok(r),
        None => xml_err(s.len() as u64, "no root element"),
    }
}

fn attach(stack: &mut [Open], root: &mut Option<Element>, el: Element) {
    match stack.last_mut() {
        Some(parent) => parent.el.children.push(Node::Element(el)),
        None => *root = Some(el),
    }
}
