//! Golden fixtures: tests/fixtures/wbxml/<command>/<case>.wbxml beside <case>.xml.

use std::path::{Path, PathBuf};

use bytes::Bytes;
use eas_gateway::wbxml::{decode, encode, xml, Limits};

fn cases() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/wbxml");
    let mut out = Vec::new();
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(&root)
        .expect("fixture directory")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.is_dir())
        .collect();
    dirs.sort();
    for dir in dirs {
        let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
            .expect("fixture subdirectory")
            .map(|e| e.expect("entry").path())
            .filter(|p| p.extension().is_some_and(|x| x == "wbxml"))
            .collect();
        files.sort();
        out.extend(files);
    }
    out
}

#[test]
fn fixtures_decode_and_encode() {
    let cases = cases();
    assert!(
        cases.len() >= 15,
        "expected at least 15 fixtures, found {}",
        cases.len()
    );
    for wbxml_path in cases {
        let name = wbxml_path.display().to_string();
        let bytes = std::fs::read(&wbxml_path).expect("read .wbxml");
        let xml_text = std::fs::read_to_string(wbxml_path.with_extension("xml"))
            .unwrap_or_else(|e| panic!("{name}: missing .xml: {e}"));
        let expected = xml::from_xml(&xml_text).unwrap_or_else(|e| panic!("{name}: {e}"));
        let decoded = decode(Bytes::from(bytes.clone()), &Limits::default())
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(decoded, expected, "{name}: decode differs from the .xml");
        assert_eq!(
            encode(&expected),
            bytes,
            "{name}: encoding differs from the .wbxml"
        );
        // the XML form is canonical: printing the tree gives the file again
        assert_eq!(
            xml::to_xml(&decoded),
            xml_text,
            "{name}: to_xml differs from the .xml"
        );
        // the libwbxml-spelled source, where present, means the same tree
        let lib = wbxml_path.with_extension("").with_extension("libwbxml.xml");
        if lib.exists() {
            let text = std::fs::read_to_string(&lib).expect("read .libwbxml.xml");
            let tree = xml::from_xml(&text).unwrap_or_else(|e| panic!("{}: {e}", lib.display()));
            assert_eq!(tree, expected, "{}", lib.display());
        }
    }
}

#[test]
fn spec_example_contact() {
    use eas_gateway::wbxml::tags::{airsync, airsyncbase, contacts};
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/wbxml/sync/contact-add-spec.wbxml");
    let bytes = std::fs::read(path).expect("read");
    assert_eq!(
        &bytes[..8],
        &[0x03, 0x01, 0x6A, 0x00, 0x45, 0x5C, 0x4F, 0x50]
    );
    let root = decode(Bytes::from(bytes), &Limits::default()).expect("decode");
    let coll = root
        .first(airsync::COLLECTIONS)
        .and_then(|c| c.first(airsync::COLLECTION))
        .expect("Collection");
    assert_eq!(coll.text_of(airsync::CLASS), Some("Contacts"));
    let data = coll
        .first(airsync::COMMANDS)
        .and_then(|c| c.first(airsync::ADD))
        .and_then(|a| a.first(airsync::APPLICATION_DATA))
        .expect("ApplicationData");
    assert_eq!(data.text_of(contacts::FILE_AS), Some("Funk, Don"));
    assert_eq!(
        data.first(airsyncbase::BODY)
            .and_then(|b| b.text_of(airsyncbase::ESTIMATED_DATA_SIZE)),
        Some("0")
    );
}
