//! Document tree and whole-document [`decode`] / [`encode`].

use std::borrow::Cow;

use bytes::Bytes;

use super::codepage::Tag;
use super::error::{DecodeError, DecodeErrorKind, WriteError};
use super::fragment::Fragment;
use super::reader::{Event, Limits, Reader};
use super::writer::Writer;

/// A child of an [`Element`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Node {
    /// A child element.
    Element(Element),
    /// Text.
    Text(String),
    /// Opaque (binary) data.
    Opaque(Bytes),
    /// Children already encoded (see [`Fragment`]); never produced by [`decode`].
    Encoded(Fragment),
}

/// A WBXML element. An element without children is encoded as an empty tag
/// (no content bit); `with_text(tag, "")` keeps an (empty) string and is
/// encoded with content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Element {
    /// The tag.
    pub tag: Tag,
    /// Children in document order.
    pub children: Vec<Node>,
}

impl Element {
    /// An empty element.
    pub fn new(tag: Tag) -> Element {
        Element {
            tag,
            children: Vec::new(),
        }
    }

    /// `<tag>text</tag>`.
    pub fn with_text(tag: Tag, text: impl Into<String>) -> Element {
        Element {
            tag,
            children: vec![Node::Text(text.into())],
        }
    }

    /// An element whose content is opaque data.
    pub fn with_opaque(tag: Tag, data: Bytes) -> Element {
        Element {
            tag,
            children: vec![Node::Opaque(data)],
        }
    }

    /// Appends a child element.
    pub fn push(&mut self, child: Element) -> &mut Self {
        self.children.push(Node::Element(child));
        self
    }

    /// Appends a text node.
    pub fn push_text(&mut self, text: impl Into<String>) -> &mut Self {
        self.children.push(Node::Text(text.into()));
        self
    }

    /// Appends an opaque node.
    pub fn push_opaque(&mut self, data: Bytes) -> &mut Self {
        self.children.push(Node::Opaque(data));
        self
    }

    /// Builder form of [`Element::push`].
    pub fn child(mut self, child: Element) -> Self {
        self.children.push(Node::Element(child));
        self
    }

    /// Builder: appends `<tag>text</tag>`.
    pub fn text_child(self, tag: Tag, text: impl Into<String>) -> Self {
        self.child(Element::with_text(tag, text))
    }

    /// Builder: appends `<tag>opaque</tag>`.
    pub fn opaque_child(self, tag: Tag, data: Bytes) -> Self {
        self.child(Element::with_opaque(tag, data))
    }

    /// First direct child element with `tag`.
    pub fn first(&self, tag: Tag) -> Option<&Element> {
        self.elements().find(|e| e.tag == tag)
    }

    /// Mutable access to the first direct child element with `tag`.
    pub fn first_mut(&mut self, tag: Tag) -> Option<&mut Element> {
        self.children.iter_mut().find_map(|n| match n {
            Node::Element(e) if e.tag == tag => Some(e),
            _ => None,
        })
    }

    /// Direct child elements with `tag`.
    pub fn all(&self, tag: Tag) -> impl Iterator<Item = &Element> {
        self.elements().filter(move |e| e.tag == tag)
    }

    /// All direct child elements.
    pub fn elements(&self) -> impl Iterator<Item = &Element> {
        self.children.iter().filter_map(|n| match n {
            Node::Element(e) => Some(e),
            _ => None,
        })
    }

    /// The text of an element whose content is only text: the first text
    /// node. [`decode`] and [`from_xml`](super::xml::from_xml) merge adjacent
    /// text, so a decoded element has at most one text node. `None` if the
    /// element has no text node or has child elements or opaque data.
    /// See [`Element::text_concat`] for hand-built elements with several
    /// text nodes.
    pub fn text(&self) -> Option<&str> {
        let mut first = None;
        for n in &self.children {
            match n {
                Node::Text(t) => {
                    if first.is_none() {
                        first = Some(t.as_str());
                    }
                }
                _ => return None,
            }
        }
        first
    }

    /// All text nodes concatenated, under the same conditions as
    /// [`Element::text`].
    pub fn text_concat(&self) -> Option<Cow<'_, str>> {
        let mut texts = Vec::new();
        for n in &self.children {
            match n {
                Node::Text(t) => texts.push(t.as_str()),
                _ => return None,
            }
        }
        match texts.len() {
            0 => None,
            1 => texts.first().map(|t| Cow::Borrowed(*t)),
            _ => Some(Cow::Owned(texts.concat())),
        }
    }

    /// `first(tag).and_then(Element::text)`.
    pub fn text_of(&self, tag: Tag) -> Option<&str> {
        self.first(tag).and_then(Element::text)
    }

    /// The opaque data if the element's content is exactly one opaque node.
    pub fn opaque(&self) -> Option<&Bytes> {
        match self.children.as_slice() {
            [Node::Opaque(b)] => Some(b),
            _ => None,
        }
    }

    /// The text and opaque children joined, child elements skipped: the value of a field
    /// that a client may send either as a string or as opaque data.
    pub fn content_bytes(&self) -> Bytes {
        if let Some(b) = self.opaque() {
            return b.clone();
        }
        let mut out = Vec::new();
        for n in &self.children {
            match n {
                Node::Text(t) => out.extend_from_slice(t.as_bytes()),
                Node::Opaque(b) => out.extend_from_slice(b),
                Node::Element(_) | Node::Encoded(_) => {}
            }
        }
        Bytes::from(out)
    }

    /// True if the element has no children.
    pub fn is_empty(&self) -> bool {
        self.children.is_empty()
    }

    /// True if the tree (this element and everything below it) has more than `n` nodes;
    /// counts only until it knows.
    pub fn has_more_nodes_than(&self, n: usize) -> bool {
        let mut count = 1;
        let mut stack = vec![self];
        while let Some(e) = stack.pop() {
            count += e.children.len();
            if count > n {
                return true;
            }
            stack.extend(e.elements());
        }
        false
    }
}

/// Decodes a whole WBXML document into a tree. Adjacent text (several
/// strings, STR_T, ENTITY) is merged into one text node; opaque data are
/// zero-copy slices of `input`.
pub fn decode(input: Bytes, limits: &Limits) -> Result<Element, DecodeError> {
    let mut reader = Reader::new(input, limits.clone())?;
    let mut stack: Vec<Element> = Vec::new();
    let mut root = None;
    while let Some(ev) = reader.next_event()? {
        match ev {
            Event::Start { tag, .. } => stack.push(Element::new(tag)),
            Event::End(_) => {
                if let Some(el) = stack.pop() {
                    match stack.last_mut() {
                        Some(parent) => parent.children.push(Node::Element(el)),
                        None => root = Some(el),
                    }
                }
            }
            Event::Text(s) => {
                if let Some(top) = stack.last_mut() {
                    match top.children.last_mut() {
                        Some(Node::Text(t)) => t.push_str(&s),
                        _ => top.children.push(Node::Text(s)),
                    }
                }
            }
            Event::Opaque(b) => {
                if let Some(top) = stack.last_mut() {
                    top.children.push(Node::Opaque(b));
                }
            }
        }
    }
    root.ok_or_else(|| DecodeError::new(reader.offset(), DecodeErrorKind::NoRootElement))
}

enum Work<'a> {
    Open(&'a Element),
    Close,
    Text(&'a str),
    Opaque(&'a [u8]),
    Encoded(&'a Fragment),
}

pub(super) fn encode_into(root: &Element, w: &mut Writer) {
    encode_work(vec![Work::Open(root)], w);
}

/// Writes `nodes` as [`encode_into`] writes an element's children, with one work stack for
/// all of them.
pub(super) fn encode_nodes_into(nodes: &[Node], w: &mut Writer) {
    let mut work = Vec::with_capacity(32);
    push_children(&mut work, nodes);
    encode_work(work, w);
}

/// Pushes `nodes` so that they are popped in document order.
fn push_children<'a>(work: &mut Vec<Work<'a>>, nodes: &'a [Node]) {
    for c in nodes.iter().rev() {
        work.push(match c {
            Node::Element(c) => Work::Open(c),
            Node::Text(t) => Work::Text(t),
            Node::Opaque(b) => Work::Opaque(b),
            Node::Encoded(f) => Work::Encoded(f),
        });
    }
}

fn encode_work(mut work: Vec<Work<'_>>, w: &mut Writer) {
    while let Some(item) = work.pop() {
        match item {
            Work::Open(e) => {
                if !e.tag.is_encodable() {
                    continue;
                }
                if e.children.is_empty() {
                    w.put_tag(e.tag, false);
                    continue;
                }
                w.put_tag(e.tag, true);
                work.push(Work::Close);
                push_children(&mut work, &e.children);
            }
            Work::Close => w.put_end(),
            Work::Text(t) => w.put_str(t),
            Work::Opaque(b) => w.put_opaque(b),
            Work::Encoded(f) => w.put_fragment(f),
        }
    }
}

pub(super) fn encoded_size_hint(root: &Element) -> usize {
    16 + size_hint(&[], vec![root])
}

/// A capacity guess for the bytes of `nodes` written as children.
pub(super) fn nodes_size_hint(nodes: &[Node]) -> usize {
    size_hint(nodes, Vec::with_capacity(16))
}

/// A capacity guess for the bytes of `nodes` plus those of the elements on `stack`.
fn size_hint<'a>(nodes: &'a [Node], mut stack: Vec<&'a Element>) -> usize {
    fn add<'a>(c: &'a Node, stack: &mut Vec<&'a Element>) -> usize {
        match c {
            Node::Element(c) => {
                stack.push(c);
                3
            }
            Node::Text(t) => t.len() + 2,
            Node::Opaque(b) => b.len() + 6,
            Node::Encoded(f) => f.bytes().len() + 2,
        }
    }
    let mut size = 3 * stack.len();
    size += nodes.iter().map(|c| add(c, &mut stack)).sum::<usize>();
    while let Some(e) = stack.pop() {
        size += e.children.iter().map(|c| add(c, &mut stack)).sum::<usize>();
    }
    size
}

/// Encodes a tree as a WBXML document (header `03 01 6A 00`, no string
/// table, minimal SWITCH_PAGE). Never fails: elements whose tag cannot be
/// encoded (token outside 0x05..=0x3F) are left out with their content;
/// [`try_encode`] reports them instead.
pub fn encode(root: &Element) -> Vec<u8> {
    Vec::from(encode_bytes(root))
}

/// [`encode`] into [`Bytes`], without the move into a `Vec` (which copies the document
/// within its buffer).
pub fn encode_bytes(root: &Element) -> Bytes {
    let mut w = Writer::with_capacity(encoded_size_hint(root));
    encode_into(root, &mut w);
    w.take()
}

/// Like [`encode`], but fails on a tag that cannot be encoded or an opaque
/// value longer than 2^32-1 bytes.
pub fn try_encode(root: &Element) -> Result<Vec<u8>, WriteError> {
    let mut stack = vec![root];
    while let Some(e) = stack.pop() {
        if !e.tag.is_encodable() {
            return Err(WriteError::InvalidTag(e.tag));
        }
        for c in &e.children {
            match c {
                Node::Element(c) => stack.push(c),
                Node::Opaque(b) if b.len() as u64 > u64::from(u32::MAX) => {
                    return Err(WriteError::OpaqueTooLong(b.len() as u64))
                }
                _ => {}
            }
        }
    }
    Ok(encode(root))
}
