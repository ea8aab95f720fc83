//! Property tests: no input makes the MIME -> EAS conversion panic, and every
//! result encodes as WBXML.

use std::path::PathBuf;

use eas_gateway::eas::version::ALL_VERSIONS;
use eas_gateway::mime::{
    application_data, attachment, body_element, flag_change, summary, BodyOptions, BodyPreference,
    ItemInfo, MailFlags,
};
use eas_gateway::wbxml::encode;
use proptest::prelude::*;

const FIXTURES: &[&str] = &[
    "plain.eml",
    "html_only.eml",
    "alternative.eml",
    "attachments.eml",
    "latin1.eml",
    "cp1252.eml",
    "shift_jis.eml",
    "smime_signed.eml",
    "smime_encrypted.eml",
    "no_date_no_from.eml",
];

fn fixture(name: &str) -> Vec<u8> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/mime")
        .join(name);
    std::fs::read(path).unwrap_or_default()
}

fn options() -> impl Strategy<Value = BodyOptions> {
    (
        proptest::collection::vec(
            (
                0u8..6,
                proptest::option::of(0u32..3000),
                any::<bool>(),
                proptest::option::of(0u32..400),
            ),
            0..3,
        ),
        0u8..3,
        proptest::option::of(0u32..5000),
        0usize..ALL_VERSIONS.len(),
    )
        .prop_map(|(prefs, mime_support, mime_truncation, v)| BodyOptions {
            preferences: prefs
                .into_iter()
                .map(
                    |(body_type, truncation_size, all_or_none, preview)| BodyPreference {
                        body_type,
                        truncation_size,
                        all_or_none,
                        preview,
                    },
                )
                .collect(),
            mime_support,
            mime_truncation,
            version: ALL_VERSIONS[v],
        })
}

fn flags() -> impl Strategy<Value = MailFlags> {
    (
        any::<[bool; 5]>(),
        proptest::collection::vec("[A-Za-z$\\\\]{0,8}", 0..4),
    )
        .prop_map(|(b, keywords)| MailFlags {
            seen: b[0],
            flagged: b[1],
            answered: b[2],
            forwarded: b[3],
            draft: b[4],
            keywords,
        })
}

/// A fixture with random edits: overwritten bytes, inserted MIME-ish
/// fragments and a random cut.
fn mutated() -> impl Strategy<Value = Vec<u8>> {
    (
        0..FIXTURES.len(),
        proptest::collection::vec((any::<usize>(), any::<u8>()), 0..16),
        proptest::collection::vec(
            (
                any::<usize>(),
                prop_oneof![
                    Just(&b"\r\n--MIX\r\n"[..]),
                    Just(&b"\r\n--ALT--\r\n"[..]),
                    Just(&b"Content-Type: message/rfc822\r\n\r\n"[..]),
                    Just(&b"Content-Transfer-Encoding: base64\r\n"[..]),
                    Just(&b"=?utf-8?B?w6Q?="[..]),
                    Just(&b"=\r\n"[..]),
                    Just(&b"\r\n\r\n"[..]),
                    Just(&b"\x00\xff"[..]),
                ],
            ),
            0..6,
        ),
        any::<usize>(),
    )
        .prop_map(|(f, edits, inserts, cut)| {
            let mut raw = fixture(FIXTURES[f]);
            for (pos, b) in edits {
                if !raw.is_empty() {
                    let i = pos % raw.len();
                    raw[i] = b;
                }
            }
            for (pos, frag) in inserts {
                let i = pos % (raw.len() + 1);
                raw.splice(i..i, frag.iter().copied());
            }
            let keep = cut % (raw.len() + 1);
            if cut % 3 == 0 {
                raw.truncate(keep);
            }
            raw
        })
}

fn exercise(raw: &[u8], flags: &MailFlags, opts: &BodyOptions) {
    let info = ItemInfo {
        file_reference_prefix: "1:1",
        internal_date: 1_795_687_200,
        in_drafts: flags.draft,
    };
    let app = application_data(raw, flags, &info, opts);
    assert!(!encode(&app).is_empty());
    let body = body_element(raw, opts);
    assert!(!encode(&body).is_empty());
    let _ = encode(&flag_change(flags, opts.version));
    let s = summary(raw);
    let n = app
        .first(eas_gateway::wbxml::tags::airsyncbase::ATTACHMENTS)
        .map(|a| a.elements().count())
        .unwrap_or(0);
    assert_eq!(s.has_attachments, n > 0);
    for i in 0..=n {
        let a = attachment(raw, i);
        assert_eq!(a.is_some(), i < n);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn arbitrary_bytes_never_panic(
        raw in proptest::collection::vec(any::<u8>(), 0..2048),
        flags in flags(),
        opts in options(),
    ) {
        exercise(&raw, &flags, &opts);
    }

    #[test]
    fn ascii_headers_and_bodies_never_panic(
        raw in "([A-Za-z-]{1,12}: [ -~]{0,40}\r\n){0,6}(\r\n)?[ -~\r\n]{0,400}",
        flags in flags(),
        opts in options(),
    ) {
        exercise(raw.as_bytes(), &flags, &opts);
    }

    #[test]
    fn mutated_fixtures_never_panic(raw in mutated(), flags in flags(), opts in options()) {
        exercise(&raw, &flags, &opts);
    }
}
