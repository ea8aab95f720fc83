//! Interoperability with libwbxml 0.11.8 (Debian package `libwbxml2-utils`:
//! `wbxml2xml -l ACTIVESYNC`, `xml2wbxml -a -n`). The tests fail, naming the
//! package, when the tools are missing.

use std::path::{Path, PathBuf};
use std::process::Command;

use bytes::Bytes;
use eas_gateway::wbxml::{codepage, decode, encode, libwbxml, xml, Element, Limits, Node, Tag};

fn require_tools() {
    for tool in ["wbxml2xml", "xml2wbxml"] {
        match Command::new(tool).arg("-h").output() {
            Ok(_) => {}
            Err(e) => panic!(
                "`{tool}` could not be run ({e}): install the Debian package libwbxml2-utils \
                 (apt-get install libwbxml2-utils) to run the libwbxml interoperability tests"
            ),
        }
    }
}

/// Our WBXML -> `wbxml2xml -l ACTIVESYNC` -> XML text.
fn libwbxml_decode(dir: &Path, bytes: &[u8]) -> String {
    let input = dir.join("in.wbxml");
    let output = dir.join("out.xml");
    std::fs::write(&input, bytes).expect("write temp");
    let _ = std::fs::remove_file(&output);
    let out = Command::new("wbxml2xml")
        .args(["-l", "ACTIVESYNC", "-o"])
        .arg(&output)
        .arg(&input)
        .output()
        .expect("run wbxml2xml");
    assert!(
        out.status.success(),
        "wbxml2xml failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::read_to_string(&output).expect("read wbxml2xml output")
}

/// XML text -> `xml2wbxml -a -n` -> WBXML bytes.
fn libwbxml_encode(dir: &Path, xml_text: &str) -> Vec<u8> {
    let input = dir.join("in.xml");
    let output = dir.join("out.wbxml");
    std::fs::write(&input, xml_text).expect("write temp");
    let _ = std::fs::remove_file(&output);
    let out = Command::new("xml2wbxml")
        .args(["-a", "-n", "-o"])
        .arg(&output)
        .arg(&input)
        .output()
        .expect("run xml2wbxml");
    assert!(
        out.status.success(),
        "xml2wbxml failed: {}{}\n{xml_text}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::read(&output).expect("read xml2wbxml output")
}

fn fixture_files(suffix: &str) -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/wbxml");
    let mut out = Vec::new();
    for dir in std::fs::read_dir(root).expect("fixtures") {
        let dir = dir.expect("entry").path();
        if !dir.is_dir() {
            continue;
        }
        for f in std::fs::read_dir(&dir).expect("fixture dir") {
            let f = f.expect("entry").path();
            let name = f
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or("")
                .to_string();
            if name.ends_with(suffix) && (suffix != ".xml" || !name.ends_with(".libwbxml.xml")) {
                out.push(f);
            }
        }
    }
    out.sort();
    out
}

/// libwbxml drops leading and trailing whitespace of text (wbxml2xml and
/// xml2wbxml both), so comparisons use trees with trimmed text.
fn trimmed(e: &Element) -> Element {
    Element {
        tag: e.tag,
        children: e
            .children
            .iter()
            .map(|c| match c {
                Node::Element(c) => Node::Element(trimmed(c)),
                Node::Text(t) => Node::Text(t.trim().to_string()),
                Node::Opaque(b) => Node::Opaque(b.clone()),
                Node::Encoded(f) => Node::Encoded(f.clone()),
            })
            .collect(),
    }
}

fn check_tree(dir: &Path, tree: &Element, what: &str) {
    let norm = trimmed(tree);
    // our encoder -> libwbxml decoder -> our XML reader
    let text = libwbxml_decode(dir, &encode(tree));
    let back = xml::from_xml(&text).unwrap_or_else(|e| panic!("{what}: {e}\n{text}"));
    assert_eq!(
        trimmed(&back),
        norm,
        "{what}: wbxml2xml output differs\n{text}"
    );
    // libwbxml-spelled XML -> libwbxml encoder -> same bytes as ours
    let lib_xml = xml::to_xml_libwbxml(tree).unwrap_or_else(|e| panic!("{what}: {e}"));
    let theirs = libwbxml_encode(dir, &lib_xml);
    assert_eq!(
        theirs,
        encode(&norm),
        "{what}: xml2wbxml bytes differ\n{lib_xml}"
    );
}

#[test]
fn fixtures_through_libwbxml() {
    require_tools();
    let dir = tempfile::tempdir().expect("tempdir");
    let mut checked = 0;
    let mut skipped = Vec::new();
    for path in fixture_files(".xml") {
        let text = std::fs::read_to_string(&path).expect("read");
        let tree = xml::from_xml(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        // libwbxml lacks page 25 and cannot round-trip opaque data in most tags
        if xml::to_xml_libwbxml(&tree).is_err() {
            skipped.push(path.display().to_string());
            continue;
        }
        check_tree(dir.path(), &tree, &path.display().to_string());
        checked += 1;
    }
    assert!(
        checked >= 14,
        "only {checked} fixtures checked; skipped {skipped:?}"
    );
    assert!(skipped.len() <= 3, "skipped {skipped:?}");
}

#[test]
fn libwbxml_sources_encode_to_what_we_decode() {
    require_tools();
    let dir = tempfile::tempdir().expect("tempdir");
    let files = fixture_files(".libwbxml.xml");
    assert!(files.len() >= 10);
    for path in files {
        let text = std::fs::read_to_string(&path).expect("read");
        let bytes = libwbxml_encode(dir.path(), &text);
        let decoded = decode(Bytes::from(bytes.clone()), &Limits::default())
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let native = path.with_extension("").with_extension("xml");
        let expected = xml::from_xml(&std::fs::read_to_string(&native).expect("read .xml"))
            .expect("parse .xml");
        assert_eq!(decoded, expected, "{}", path.display());
        assert_eq!(encode(&decoded), bytes, "{}", path.display());
    }
}

/// Every tag libwbxml 0.11.8 knows, one page per document, as text, empty
/// and (for libwbxml's binary tags) opaque elements: checks the tag tables
/// and the alias list against libwbxml's own tables.
#[test]
fn every_tag_through_libwbxml() {
    require_tools();
    let dir = tempfile::tempdir().expect("tempdir");
    let mut total = 0;
    for page in codepage::pages() {
        let tags: Vec<Tag> = page
            .tags()
            .filter(|t| libwbxml::name(*t).is_some())
            .collect();
        if tags.is_empty() {
            continue;
        }
        let mut root = Element::new(tags[0]);
        for (i, &t) in tags.iter().enumerate() {
            let child = if libwbxml::is_binary(t) {
                Element::with_opaque(t, Bytes::from(vec![0u8, 1, 2, 0xFF, i as u8]))
            } else if i % 2 == 0 {
                Element::with_text(t, format!("v{i} & <x>"))
            } else {
                Element::new(t)
            };
            root.push(child);
            total += 1;
        }
        check_tree(dir.path(), &root, page.name);
    }
    // 586 spec tags minus page 25 (22) and the three 16.1 tags libwbxml lacks
    assert_eq!(total, 586 - 22 - 3);
}
