//! Property tests: no input makes the decoder panic; random trees round-trip
//! through WBXML and through the XML form.

use bytes::Bytes;
use eas_gateway::wbxml::{codepage, decode, encode, xml, Element, Limits, Node, Tag};
use proptest::prelude::*;

fn all_tags() -> Vec<Tag> {
    codepage::pages().iter().flat_map(|p| p.tags()).collect()
}

fn tag() -> impl Strategy<Value = Tag> {
    let tags = all_tags();
    (0..tags.len()).prop_map(move |i| tags[i])
}

fn leaf() -> impl Strategy<Value = Element> {
    prop_oneof![
        tag().prop_map(Element::new),
        (tag(), any::<String>()).prop_map(|(t, s)| Element::with_text(t, s)),
        (tag(), "[ -~\\r\\n\\t]{0,20}").prop_map(|(t, s)| Element::with_text(t, s)),
        (tag(), proptest::collection::vec(any::<u8>(), 0..64))
            .prop_map(|(t, d)| Element::with_opaque(t, Bytes::from(d))),
    ]
}

fn tree() -> impl Strategy<Value = Element> {
    leaf().prop_recursive(5, 64, 6, |inner| {
        (tag(), proptest::collection::vec(inner, 1..6)).prop_map(|(t, children)| Element {
            tag: t,
            children: children.into_iter().map(Node::Element).collect(),
        })
    })
}

/// Mutates a valid document, so the fuzzing also reaches deep states.
fn mutated_doc() -> impl Strategy<Value = Vec<u8>> {
    (
        tree(),
        proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..4),
        any::<prop::sample::Index>(),
    )
        .prop_map(|(t, edits, cut)| {
            let mut b = encode(&t);
            for (i, v) in edits {
                let n = b.len();
                b[i.index(n)] = v;
            }
            let keep = cut.index(b.len() + 1);
            if keep > 4 && keep % 3 == 0 {
                b.truncate(keep);
            }
            b
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn random_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..256)) {
        let _ = decode(Bytes::from(data.clone()), &Limits::default());
        let mut with_header = vec![0x03, 0x01, 0x6A, 0x00];
        with_header.extend_from_slice(&data);
        let _ = decode(Bytes::from(with_header), &Limits::default());
    }

    #[test]
    fn mutated_documents_never_panic(doc in mutated_doc()) {
        let small = Limits { max_body_bytes: 4096, max_depth: 4, max_elements: 20, max_string_bytes: 16 };
        let _ = decode(Bytes::from(doc.clone()), &Limits::default());
        let _ = decode(Bytes::from(doc), &small);
    }

    #[test]
    fn random_xml_never_panics(s in "[<>/a-zA-Z:=\" &;#x0-9\\[\\]!-]{0,80}") {
        let _ = xml::from_xml(&s);
        let _ = xml::from_xml(&format!("<Sync xmlns=\"AirSync\">{s}</Sync>"));
    }

    #[test]
    fn trees_round_trip(t in tree()) {
        let bytes = encode(&t);
        let back = decode(Bytes::from(bytes.clone()), &Limits::default());
        prop_assert_eq!(back.as_ref(), Ok(&t));
        let x = xml::to_xml(&t);
        let from = xml::from_xml(&x);
        prop_assert!(from.is_ok(), "{:?}\n{}", from, x);
        let from = from.unwrap_or_else(|_| Element::new(t.tag));
        prop_assert_eq!(&from, &t, "{}", x);
        prop_assert_eq!(encode(&from), bytes);
    }

    /// Content encoded ahead (`Element::encode_content`) at any elements encodes to the same
    /// document, and expands back into the same tree.
    #[test]
    fn pre_encoded_content_gives_the_same_bytes(
        t in tree(),
        picks in proptest::collection::vec(any::<bool>(), 64),
    ) {
        let mut pre = t.clone();
        let mut n = 0;
        pre_encode(&mut pre, &picks, &mut n);
        prop_assert_eq!(encode(&pre), encode(&t));
        let expanded = pre.expanded();
        prop_assert_eq!(expanded.as_ref(), &t);
        prop_assert_eq!(xml::to_xml(&pre), xml::to_xml(&t));
    }
}

/// Encodes the content of the elements whose pre-order number is picked, innermost first.
fn pre_encode(e: &mut Element, picks: &[bool], n: &mut usize) {
    let me = *n;
    *n += 1;
    for c in &mut e.children {
        if let Node::Element(c) = c {
            pre_encode(c, picks, n);
        }
    }
    if picks.get(me % picks.len()).copied().unwrap_or(false) {
        e.encode_content();
    }
}
