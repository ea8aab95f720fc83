//! One way to write elements, two outputs: a tree ([`TreeBuilder`]) or WBXML bytes at once
//! (a fragment [`Writer`], see [`Fragment::write_with`](super::Fragment::write_with)).
//!
//! Code that builds items writes them through [`ElementSink`], so the same code gives a tree
//! to commands that read or rearrange the item and bytes to commands that only send it. The
//! bytes are those [`encode`](super::encode) gives for the tree.

use super::codepage::Tag;
use super::tree::{Element, Node};
use super::writer::Writer;

/// Where elements go. An element opened with [`ElementSink::start`] should get content;
/// [`Filter`] turns one that ends up with none into an empty element, as a tree would encode.
pub trait ElementSink {
    /// Opens an element; close it with [`ElementSink::end`].
    fn start(&mut self, tag: Tag);
    /// Closes the innermost element opened by `start`.
    fn end(&mut self);
    /// An element without content.
    fn empty(&mut self, tag: Tag);
    /// `<tag>text</tag>` (an empty `text` still gives an element with content).
    fn text(&mut self, tag: Tag, text: &str);
    /// `<tag>opaque data</tag>`.
    fn opaque(&mut self, tag: Tag, data: &[u8]);
}

/// Builds the children of a root element as a tree.
#[derive(Debug)]
pub struct TreeBuilder {
    /// The root, then each open element.
    stack: Vec<Element>,
}

impl TreeBuilder {
    /// A builder whose elements become children of a `root` element.
    pub fn new(root: Tag) -> TreeBuilder {
        let mut stack = Vec::with_capacity(4);
        stack.push(Element::new(root));
        TreeBuilder { stack }
    }

    /// The root with everything written (elements still open are closed).
    pub fn finish(mut self) -> Element {
        while self.stack.len() > 1 {
            self.end();
        }
        self.stack
            .pop()
            .unwrap_or_else(|| Element::new(Tag::new(0, 0)))
    }

    fn push(&mut self, e: Element) {
        if let Some(top) = self.stack.last_mut() {
            top.children.push(Node::Element(e));
        }
    }
}

impl ElementSink for TreeBuilder {
    fn start(&mut self, tag: Tag) {
        self.stack.push(Element::new(tag));
    }

    fn end(&mut self) {
        if self.stack.len() > 1 {
            if let Some(e) = self.stack.pop() {
                self.push(e);
            }
        }
    }

    fn empty(&mut self, tag: Tag) {
        self.push(Element::new(tag));
    }

    fn text(&mut self, tag: Tag, text: &str) {
        self.push(Element::with_text(tag, text));
    }

    fn opaque(&mut self, tag: Tag, data: &[u8]) {
        self.push(Element::with_opaque(
            tag,
            bytes::Bytes::copy_from_slice(data),
        ));
    }
}

/// Encodes at once. Tags that cannot be encoded are the caller's to filter out (see
/// [`Filter`]); the writer's own checks are skipped here, as when it encodes a tree.
impl ElementSink for Writer {
    fn start(&mut self, tag: Tag) {
        self.put_tag(tag, true);
    }

    fn end(&mut self) {
        self.put_end();
    }

    fn empty(&mut self, tag: Tag) {
        self.put_tag(tag, false);
    }

    fn text(&mut self, tag: Tag, text: &str) {
        self.put_tag(tag, true);
        self.put_str(text);
        self.put_end();
    }

    fn opaque(&mut self, tag: Tag, data: &[u8]) {
        self.put_tag(tag, true);
        self.put_opaque(data);
        self.put_end();
    }
}

/// Passes on only the elements whose tag `keep` accepts, each with its content; the content
/// of a dropped element is dropped too. An element is opened downstream only when its first
/// kept child arrives, so one whose children were all dropped becomes an empty element: the
/// bytes are those of the tree with the same elements removed.
pub struct Filter<'s, S: ElementSink, F: Fn(Tag) -> bool> {
    inner: &'s mut S,
    keep: F,
    /// Depth inside a dropped element (0: not inside one).
    dropped: usize,
    /// Elements started here but not yet downstream (no kept content so far), outermost first.
    pending: Vec<Tag>,
}

impl<'s, S: ElementSink, F: Fn(Tag) -> bool> Filter<'s, S, F> {
    /// Filters what is written to `inner`.
    pub fn new(inner: &'s mut S, keep: F) -> Self {
        Filter {
            inner,
            keep,
            dropped: 0,
            pending: Vec::new(),
        }
    }

    /// True when an element with this tag is to be left out (it is, or is inside, a dropped one).
    fn drops(&mut self, tag: Tag) -> bool {
        self.dropped > 0 || !(self.keep)(tag)
    }

    /// Opens the pending elements downstream: they now have content.
    fn flush(&mut self) {
        for tag in self.pending.drain(..) {
            self.inner.start(tag);
        }
    }
}

impl<S: ElementSink, F: Fn(Tag) -> bool> ElementSink for Filter<'_, S, F> {
    fn start(&mut self, tag: Tag) {
        if self.drops(tag) {
            self.dropped += 1;
            return;
        }
        self.pending.push(tag);
    }

    fn end(&mut self) {
        if self.dropped > 0 {
            self.dropped -= 1;
            return;
        }
        match self.pending.pop() {
            Some(tag) => {
                self.flush();
                self.inner.empty(tag);
            }
            None => self.inner.end(),
        }
    }

    fn empty(&mut self, tag: Tag) {
        if !self.drops(tag) {
            self.flush();
            self.inner.empty(tag);
        }
    }

    fn text(&mut self, tag: Tag, text: &str) {
        if !self.drops(tag) {
            self.flush();
            self.inner.text(tag, text);
        }
    }

    fn opaque(&mut self, tag: Tag, data: &[u8]) {
        if !self.drops(tag) {
            self.flush();
            self.inner.opaque(tag, data);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wbxml::tags::{airsync, airsyncbase, email, email2};
    use crate::wbxml::{encode, Fragment};

    /// Writes the same elements into any sink: a mix of pages, an element whose only child is
    /// dropped, a dropped element with content, empty text, opaque data.
    fn write<S: ElementSink>(out: &mut S) {
        out.text(email::SUBJECT, "hi");
        out.start(email::FLAG);
        out.text(email2::CONVERSATION_ID, "dropped");
        out.end();
        out.start(email2::IS_DRAFT);
        out.text(email::READ, "inside a dropped element");
        out.end();
        out.start(airsyncbase::BODY);
        out.text(airsyncbase::TYPE, "2");
        out.text(airsyncbase::DATA, "");
        out.end();
        out.opaque(email2::CONVERSATION_INDEX, &[1, 2, 3]);
        out.empty(email::CATEGORIES);
        out.text(email::TO, "a\0b");
    }

    fn keep(t: Tag) -> bool {
        t != email2::CONVERSATION_ID && t != email2::IS_DRAFT
    }

    #[test]
    fn writer_and_tree_give_the_same_bytes() {
        let mut tree = TreeBuilder::new(airsync::APPLICATION_DATA);
        write(&mut Filter::new(&mut tree, keep));
        let tree = tree.finish();
        let page = airsync::APPLICATION_DATA.page;
        let fragment = Fragment::write_with(page, |w| {
            write(&mut Filter::new(w, keep));
            true
        })
        .expect("fragment");
        let mut encoded = Element::new(airsync::APPLICATION_DATA);
        encoded.children.push(Node::Encoded(fragment));
        assert_eq!(encode(&encoded), encode(&tree));
    }

    #[test]
    fn the_filter_drops_content_and_empties_what_lost_all_children() {
        let mut tree = TreeBuilder::new(airsync::APPLICATION_DATA);
        write(&mut Filter::new(&mut tree, keep));
        let tree = tree.finish();
        let flag = tree.first(email::FLAG).expect("Flag kept");
        assert!(flag.is_empty(), "its only child was dropped: {flag:?}");
        assert!(tree.first(email2::IS_DRAFT).is_none());
        assert!(
            tree.first(email::READ).is_none(),
            "content of a dropped element"
        );
        let body = tree.first(airsyncbase::BODY).expect("Body");
        assert_eq!(body.text_of(airsyncbase::TYPE), Some("2"));
        assert_eq!(body.text_of(airsyncbase::DATA), Some(""));
        assert_eq!(
            tree.first(email2::CONVERSATION_INDEX)
                .and_then(Element::opaque)
                .map(|b| b.to_vec()),
            Some(vec![1, 2, 3])
        );
    }

    #[test]
    fn a_refused_fragment_is_none_and_the_next_starts_clean() {
        let page = airsync::APPLICATION_DATA.page;
        let refused = Fragment::write_with(page, |w| {
            ElementSink::text(w, email::SUBJECT, "left over?");
            false
        });
        assert!(refused.is_none());
        let next = Fragment::write_with(page, |w| {
            ElementSink::text(w, email::READ, "1");
            true
        })
        .expect("fragment");
        let mut tree = TreeBuilder::new(airsync::APPLICATION_DATA);
        tree.text(email::READ, "1");
        let mut encoded = Element::new(airsync::APPLICATION_DATA);
        encoded.children.push(Node::Encoded(next));
        assert_eq!(encode(&encoded), encode(&tree.finish()));
    }
}
