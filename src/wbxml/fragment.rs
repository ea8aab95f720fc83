//! Element content encoded ahead of the document that will hold it.
//!
//! A [`Fragment`] is the WBXML of an element's children, written on its own (no header)
//! with the code page state recorded at both ends, so that it can be copied into a
//! document later with the bytes [`encode`](super::encode) would have written for the
//! children themselves. A server encodes items this way on the threads that build them and
//! the response only copies bytes.

use std::borrow::Cow;
use std::cell::RefCell;

use bytes::{BufMut, Bytes, BytesMut};

use super::codepage::Tag;
use super::reader::Limits;
use super::tree::{decode, encode_nodes_into, nodes_size_hint, Element, Node};
use super::writer::{Writer, HEADER};

/// The encoded children of an element whose tag is on code page `start_page`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fragment {
    bytes: Bytes,
    /// The code page current when the fragment starts: the parent tag's page.
    start_page: u8,
    /// The code page current after the last byte.
    end_page: u8,
}

impl Fragment {
    /// Encodes `children` as the content of an element whose tag is on code page `page`.
    pub fn encode(page: u8, children: &[Node]) -> Fragment {
        let mut w = Writer::fragment(page, nodes_size_hint(children));
        encode_nodes_into(children, &mut w);
        Fragment {
            end_page: w.page(),
            bytes: w.take(),
            start_page: page,
        }
    }

    /// The content that `write` writes, for an element whose tag is on code page `page`;
    /// `None` when `write` returns false (what it wrote is dropped). `write` writes into a
    /// buffer the thread keeps; the fragment gets a copy of exactly its bytes.
    pub fn write_with(page: u8, write: impl FnOnce(&mut Writer) -> bool) -> Option<Fragment> {
        thread_local! {
            static BUF: RefCell<BytesMut> = RefCell::new(BytesMut::new());
        }
        BUF.with(|cell| {
            let mut slot = cell.try_borrow_mut().ok();
            let buf = slot.as_deref_mut().map(std::mem::take).unwrap_or_default();
            let mut w = Writer::fragment_in(page, buf);
            let ok = write(&mut w);
            let end_page = w.page();
            let buf = w.into_buf();
            let out = ok.then(|| Fragment {
                bytes: Bytes::copy_from_slice(&buf),
                start_page: page,
                end_page,
            });
            // A buffer grown past 1 MiB (a long body) is not kept.
            if let Some(slot) = slot.as_deref_mut() {
                if buf.capacity() <= 1 << 20 {
                    *slot = buf;
                }
            }
            out
        })
    }

    /// The encoded bytes.
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// The code page the bytes expect to be current where they start.
    pub fn start_page(&self) -> u8 {
        self.start_page
    }

    /// The code page current after the bytes.
    pub fn end_page(&self) -> u8 {
        self.end_page
    }

    /// The children again, decoded as the content of a `tag` element (whose page must be
    /// the fragment's start page). `None` if the bytes do not decode.
    pub fn decode(&self, tag: Tag) -> Option<Vec<Node>> {
        let mut doc = BytesMut::with_capacity(self.bytes.len() + 8);
        doc.put_slice(&HEADER);
        if tag.page != 0 {
            doc.put_slice(&[0x00, tag.page]);
        }
        doc.put_u8((tag.token & 0x3F) | 0x40);
        if self.start_page != tag.page {
            doc.put_slice(&[0x00, self.start_page]);
        }
        doc.put_slice(&self.bytes);
        doc.put_u8(0x01);
        let limits = Limits {
            max_body_bytes: doc.len().max(Limits::default().max_body_bytes),
            ..Limits::default()
        };
        decode(doc.freeze(), &limits).ok().map(|e| e.children)
    }
}

impl Element {
    /// Encodes this element's children now (see [`Fragment`]): the element then holds one
    /// [`Node::Encoded`] and encodes to the same bytes as before. Tree accessors such as
    /// [`Element::first`] no longer see the children; [`Element::expanded`] restores them.
    pub fn encode_content(&mut self) {
        if self.children.is_empty() {
            return;
        }
        let fragment = Fragment::encode(self.tag.page, &self.children);
        self.children = vec![Node::Encoded(fragment)];
    }

    /// The element with every [`Node::Encoded`] decoded back into nodes; borrowed when there
    /// is none. Content that does not decode is left out.
    pub fn expanded(&self) -> Cow<'_, Element> {
        if !has_encoded(self) {
            return Cow::Borrowed(self);
        }
        let mut children = Vec::with_capacity(self.children.len());
        for c in &self.children {
            match c {
                Node::Element(e) => children.push(Node::Element(e.expanded().into_owned())),
                Node::Encoded(f) => {
                    for n in f.decode(self.tag).unwrap_or_default() {
                        children.push(match n {
                            Node::Element(e) => Node::Element(e.expanded().into_owned()),
                            other => other,
                        });
                    }
                }
                other => children.push(other.clone()),
            }
        }
        Cow::Owned(Element {
            tag: self.tag,
            children,
        })
    }
}

fn has_encoded(e: &Element) -> bool {
    let mut stack = vec![e];
    while let Some(e) = stack.pop() {
        for c in &e.children {
            match c {
                Node::Encoded(_) => return true,
                Node::Element(c) => stack.push(c),
                _ => {}
            }
        }
    }
    false
}
