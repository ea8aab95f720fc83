//! The slimmed path must give exactly the item the whole message gives: every case here
//! builds both and compares them, and checks that the slimmed path was taken where it should.

use base64::Engine;
use proptest::prelude::*;

use super::*;
use crate::eas::ProtocolVersion;
use crate::mime::email::application_data_whole;
use crate::mime::{
    application_data, application_data_encoded, BodyPreference, ItemInfo, MailFlags,
};
use crate::wbxml;

/// A prepared message and what was changed in it.
struct Prepared {
    raw: Vec<u8>,
    parts: usize,
    omitted: Vec<(usize, u64)>,
    texts: Vec<usize>,
    /// (part index, text) of the decoded texts moved out of `raw`.
    supplied: Vec<(usize, Vec<u8>)>,
}

fn slim(raw: &[u8], opts: &BodyOptions) -> Option<Prepared> {
    let mut buf = b"left over from the last message".to_vec();
    let mut side = b"and from its texts".to_vec();
    let s = super::slim(raw, opts, &mut buf, &mut side)?;
    Some(Prepared {
        raw: buf,
        parts: s.parts,
        omitted: s.omitted,
        texts: s.texts,
        supplied: s
            .supplied
            .into_iter()
            .map(|(i, r)| (i, side[r].to_vec()))
            .collect(),
    })
}

/// The quoted-printable decoder, appending after other bytes as it does in a message.
fn qp(data: &[u8], plain: usize, boundary: &[u8]) -> Option<Vec<u8>> {
    let mut out = b"before".to_vec();
    decode_quoted_printable(data, plain, boundary, &mut out).then(|| out[6..].to_vec())
}

fn info() -> ItemInfo<'static> {
    ItemInfo {
        file_reference_prefix: "5:9",
        internal_date: 1_795_687_200,
        in_drafts: false,
    }
}

fn pref(body_type: u8, preview: Option<u32>) -> BodyPreference {
    BodyPreference {
        body_type,
        truncation_size: Some(51_200),
        all_or_none: false,
        preview,
    }
}

fn with(prefs: Vec<BodyPreference>, mime_support: u8, version: ProtocolVersion) -> BodyOptions {
    BodyOptions {
        preferences: prefs,
        mime_support,
        mime_truncation: None,
        version,
    }
}

fn html() -> BodyOptions {
    with(vec![pref(BODY_TYPE_HTML, None)], 0, ProtocolVersion::V16_1)
}

/// Body options phones send, and a few odd ones.
fn all_options() -> Vec<BodyOptions> {
    let v = ProtocolVersion::V16_1;
    vec![
        html(),
        with(vec![pref(BODY_TYPE_HTML, Some(200))], 0, v),
        with(vec![pref(BODY_TYPE_PLAIN, None)], 0, v),
        with(vec![pref(BODY_TYPE_PLAIN, Some(100))], 0, v),
        with(Vec::new(), 0, v),
        with(vec![pref(3, None), pref(BODY_TYPE_HTML, None)], 0, v),
        with(vec![pref(BODY_TYPE_MIME, None)], 0, v),
        with(
            vec![pref(BODY_TYPE_MIME, None), pref(BODY_TYPE_HTML, None)],
            1,
            v,
        ),
        with(vec![pref(BODY_TYPE_HTML, None)], 2, v),
        with(vec![pref(BODY_TYPE_HTML, None)], 0, ProtocolVersion::V12_1),
        with(
            vec![pref(BODY_TYPE_HTML, Some(50))],
            0,
            ProtocolVersion::V12_1,
        ),
    ]
}

fn flags() -> MailFlags {
    MailFlags {
        seen: true,
        ..Default::default()
    }
}

/// Flags that give every optional flag element (Flag's children, Categories, LastVerbExecuted).
fn all_flags() -> MailFlags {
    MailFlags {
        seen: false,
        flagged: true,
        answered: true,
        keywords: vec!["Work".into(), "$Junk".into(), "Home".into()],
        ..Default::default()
    }
}

/// Asserts that the item of `raw` is the whole message's item for every option set, and that
/// the item encoded without a tree has the bytes of the tree.
fn same_items(raw: &[u8]) {
    for o in all_options() {
        for f in [flags(), all_flags()] {
            let fast = application_data(raw, &f, &info(), &o);
            let whole = application_data_whole(raw, &f, &info(), &o);
            assert_eq!(
                fast,
                whole,
                "options {o:?}, message:\n{}",
                String::from_utf8_lossy(raw)
            );
            let encoded = application_data_encoded(raw, None, &f, &info(), &o).expect("item");
            assert_eq!(
                wbxml::encode(&encoded),
                wbxml::encode(&whole),
                "encoded at once, options {o:?}, message:\n{}",
                String::from_utf8_lossy(raw)
            );
        }
    }
}

fn b64(data: &[u8]) -> String {
    let s = base64::engine::general_purpose::STANDARD.encode(data);
    let mut out = String::new();
    for chunk in s.as_bytes().chunks(76) {
        out.push_str(std::str::from_utf8(chunk).unwrap());
        out.push_str("\r\n");
    }
    out
}

const HEAD: &str = "From: Anna <anna@example.org>\r\nTo: Bob <bob@example.com>\r\n\
Subject: Quarterly report\r\nDate: Thu, 26 Nov 2026 10:00:00 +0000\r\n\
Message-ID: <r1@example.org>\r\nMIME-Version: 1.0\r\n";

fn pdf(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 7 % 251) as u8).collect()
}

/// The bench's shape: mixed(alternative(plain QP, HTML base64), PDF base64).
fn bench_like(pdf_len: usize) -> String {
    format!(
        "{HEAD}Content-Type: multipart/mixed; boundary=\"M\"\r\n\r\n\
         This is a multi-part message.\r\n\
         --M\r\nContent-Type: multipart/alternative; boundary=\"A\"\r\n\r\n\
         --A\r\nContent-Type: text/plain; charset=utf-8\r\n\
         Content-Transfer-Encoding: quoted-printable\r\n\r\n\
         Gr=C3=BC=C3=9Fe, the report =3D attached.=\r\n Second line.\r\n\
         --A\r\nContent-Type: text/html; charset=utf-8\r\nContent-Transfer-Encoding: base64\r\n\r\n\
         {}--A--\r\n\r\n\
         --M\r\nContent-Type: application/pdf; name=\"report.pdf\"\r\n\
         Content-Disposition: attachment; filename=\"report.pdf\"\r\n\
         Content-Transfer-Encoding: base64\r\n\r\n{}--M--\r\nepilogue\r\n",
        b64("<html><body><p>Grüße, the report is attached.</p></body></html>".as_bytes()),
        b64(&pdf(pdf_len)),
    )
}

#[test]
fn bench_shaped_mails_are_slimmed_and_give_the_same_item() {
    for len in [0usize, 1, 2, 3, 4500, 4501, 4502] {
        let raw = bench_like(len);
        same_items(raw.as_bytes());
        let s = slim(raw.as_bytes(), &html()).expect("slimmed");
        // Root, alternative, plain, HTML, PDF.
        assert_eq!(s.parts, 5);
        assert_eq!(s.texts, [2]);
        if len > 0 {
            assert_eq!(s.omitted, [(4, len as u64)]);
        }
        assert!(s.raw.len() < raw.len());
        // The HTML (UTF-8) is decoded and moved out of the copy.
        let decoded = "<html><body><p>Grüße, the report is attached.</p></body></html>";
        assert!(memmem::find(&s.raw, decoded.as_bytes()).is_none());
        assert_eq!(s.supplied.len(), 1);
        assert_eq!(s.supplied[0].0, 3);
        assert!(memmem::find(&s.supplied[0].1, decoded.as_bytes()).is_some());
        // With a plain-text body, the plain alternative stays.
        let plain = with(vec![pref(BODY_TYPE_PLAIN, None)], 0, ProtocolVersion::V16_1);
        if let Some(s) = slim(raw.as_bytes(), &plain) {
            assert!(s.texts.is_empty());
        }
    }
}

/// Only texts the parser reads as UTF-8 are moved out; others are decoded in place for the
/// parser's charset conversion. Text that is not valid UTF-8 gives the parser's U+FFFD.
#[test]
fn texts_in_other_charsets_stay_in_place() {
    let latin1 = b64(b"<p>Gr\xfc\xdfe</p>");
    let bad_utf8 = b64(b"<p>caf\xc3(</p>");
    for (charset, body, moved) in [
        ("iso-8859-1", &latin1, false),
        ("us-ascii", &latin1, false),
        ("utf-8", &bad_utf8, true),
        ("x-unknown-charset", &bad_utf8, true),
    ] {
        let raw = format!(
            "{HEAD}Content-Type: multipart/mixed; boundary=M\r\n\r\n\
             --M\r\nContent-Type: text/html; charset={charset}\r\n\
             Content-Transfer-Encoding: base64\r\n\r\n{body}\r\n--M--\r\n"
        );
        same_items(raw.as_bytes());
        let s = slim(raw.as_bytes(), &html()).expect("slimmed");
        assert_eq!(s.supplied.len(), usize::from(moved), "{charset}");
        assert_eq!(memmem::find(&s.raw, b"<p>").is_some(), !moved, "{charset}");
    }
}

#[test]
fn line_feeds_only() {
    let raw = bench_like(4500).replace("\r\n", "\n");
    same_items(raw.as_bytes());
    assert!(slim(raw.as_bytes(), &html()).is_some());
}

#[test]
fn apple_style_alternative_with_related_html() {
    let raw = format!(
        "{HEAD}Content-Type: multipart/alternative; boundary=\"A\"\r\n\r\n\
         --A\r\nContent-Type: text/plain; charset=us-ascii\r\nContent-Transfer-Encoding: 7bit\r\n\r\n\
         Hello\r\n\
         --A\r\nContent-Type: multipart/related; type=\"text/html\"; boundary=\"R\"\r\n\r\n\
         --R\r\nContent-Type: text/html; charset=us-ascii\r\n\r\n<p>Hello <img src=\"cid:i1\"></p>\r\n\
         --R\r\nContent-Type: image/png; name=a.png\r\nContent-ID: <i1>\r\n\
         Content-Disposition: inline; filename=a.png\r\nContent-Transfer-Encoding: base64\r\n\r\n\
         {}--R--\r\n\r\n--A--\r\n",
        b64(&pdf(300))
    );
    same_items(raw.as_bytes());
    let s = slim(raw.as_bytes(), &html()).expect("slimmed");
    assert_eq!(s.texts, [1]);
    assert_eq!(s.omitted, [(4, 300)]);
}

#[test]
fn unencoded_and_odd_attachments() {
    let binary: Vec<u8> = (0u8..=255).collect();
    let mut raw = format!(
        "{HEAD}Content-Type: Multipart/Mixed; boundary=M\r\n\r\n\
         --M  \r\nContent-Type: text/html\r\n\r\n<b>x</b>\r\n\
         --M\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: binary\r\n\r\n"
    )
    .into_bytes();
    raw.extend_from_slice(&binary);
    raw.extend_from_slice(
        b"\r\n--M\r\nContent-Type: image/gif\r\nContent-Transfer-Encoding: BASE64\r\n\r\n\
          R0lG=ODlh=AQ\r\n\
          --M\r\nContent-Type: image/gif\r\nContent-Type: application/zip\r\n\
          Content-Transfer-Encoding: base64\r\n\r\nUEsDBA==\r\n\
          --M\r\n\r\nno headers at all\r\n\
          --M\r\nContent-Type: text/calendar\r\n\r\nBEGIN:VCALENDAR\r\n\
          --M--\r\n",
    );
    same_items(&raw);
    let s = slim(&raw, &html()).expect("slimmed");
    assert_eq!(s.omitted.len(), 3);
}

#[test]
fn doubtful_messages_are_parsed_whole() {
    let doubtful = [
        // The boundary inside a line.
        format!(
            "{HEAD}Content-Type: multipart/mixed; boundary=M\r\n\r\n--M\r\n\
             Content-Type: text/plain\r\n\r\nsee --M here\r\n--M\r\n\
             Content-Type: image/png\r\nContent-Transfer-Encoding: base64\r\n\r\nAAAA\r\n--M--\r\n"
        ),
        // No close delimiter.
        format!(
            "{HEAD}Content-Type: multipart/mixed; boundary=M\r\n\r\n--M\r\n\
             Content-Type: image/png\r\nContent-Transfer-Encoding: base64\r\n\r\nAAAA\r\n"
        ),
        // A boundary that starts another one.
        format!(
            "{HEAD}Content-Type: multipart/mixed; boundary=M\r\n\r\n--M\r\n\
             Content-Type: multipart/alternative; boundary=M2\r\n\r\n--M2\r\n\
             Content-Type: text/plain\r\n\r\nx\r\n--M2--\r\n--M\r\n\
             Content-Type: image/png\r\nContent-Transfer-Encoding: base64\r\n\r\nAAAA\r\n--M--\r\n"
        ),
        // An attached message.
        format!(
            "{HEAD}Content-Type: multipart/mixed; boundary=M\r\n\r\n--M\r\n\
             Content-Type: message/rfc822\r\n\r\nSubject: inner\r\n\r\nhi\r\n--M\r\n\
             Content-Type: image/png\r\nContent-Transfer-Encoding: base64\r\n\r\nAAAA\r\n--M--\r\n"
        ),
        // A header block without an empty line.
        format!(
            "{HEAD}Content-Type: multipart/mixed; boundary=M\r\n\r\n--M\r\n\
             Content-Type: image/png\r\n--M--\r\n"
        ),
    ];
    for raw in &doubtful {
        assert!(slim(raw.as_bytes(), &html()).is_none(), "{raw}");
        same_items(raw.as_bytes());
    }
}

#[test]
fn bodies_the_parser_rejects_are_kept() {
    let raw = format!(
        "{HEAD}Content-Type: multipart/mixed; boundary=M\r\n\r\n\
         --M\r\nContent-Type: multipart/alternative; boundary=A\r\n\r\n\
         --A\r\nContent-Type: text/plain\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n\
         a==b\r\n--A\r\nContent-Type: text/html\r\n\r\n<p>a</p>\r\n--A--\r\n\
         --M\r\nContent-Type: image/png\r\nContent-Transfer-Encoding: base64\r\n\r\nAA*A\r\n\
         --M\r\nContent-Type: image/png\r\nContent-Transfer-Encoding: base64\r\n\r\nAAAA\r\n\
         --M--\r\n"
    );
    same_items(raw.as_bytes());
    let s = slim(raw.as_bytes(), &html()).expect("slimmed");
    assert!(s.texts.is_empty());
    assert_eq!(s.omitted, [(5, 3)]);
}

#[test]
fn fixtures_give_the_same_item() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/mime");
    let mut slimmed = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_file() {
            let raw = std::fs::read(&path).unwrap();
            same_items(&raw);
            if slim(&raw, &html()).is_some() {
                slimmed.push(path.file_name().unwrap().to_string_lossy().into_owned());
            }
        }
    }
    // attachments.eml has an attached message, so it is parsed whole; latin1.eml and
    // plain.eml are one text part in quoted-printable, shift_jis.eml one in base64, each
    // decoded in place.
    slimmed.sort();
    assert_eq!(
        slimmed,
        [
            "alternative.eml",
            "latin1.eml",
            "plain.eml",
            "shift_jis.eml"
        ]
    );
}

#[test]
fn single_text_parts_in_base64_are_decoded() {
    let text = "<p>Grüße</p>\r\n<p>zweite Zeile</p>";
    let raw = format!(
        "{HEAD}Content-Type: text/html; charset=utf-8\r\nContent-Transfer-Encoding: Base64\r\n\r\n{}",
        b64(text.as_bytes())
    );
    same_items(raw.as_bytes());
    let s = slim(raw.as_bytes(), &html()).expect("decoded");
    // UTF-8: moved out of the copy, which keeps the header.
    assert!(s
        .raw
        .ends_with(b"Content-Transfer-Encoding: binary\r\n\r\n"));
    assert_eq!(s.supplied, [(0, text.as_bytes().to_vec())]);
    // Base64 that is not in its plain form is left to the parser.
    // Unused bits that are not zero (QR==) are also left to the parser.
    for odd in ["PHA+b2s8L3A", "PHA+b2s8L3A+=", "PH=A+b2s8L3A+", "PHA+QR=="] {
        let raw = format!(
            "{HEAD}Content-Type: text/html\r\nContent-Transfer-Encoding: base64\r\n\r\n{odd}"
        );
        assert!(slim(raw.as_bytes(), &html()).is_none(), "{odd}");
        same_items(raw.as_bytes());
    }
    // Decoded text holding an enclosing boundary stays encoded.
    let raw = format!(
        "{HEAD}Content-Type: multipart/mixed; boundary=M\r\n\r\n--M\r\nContent-Type: text/html\r\n\
         Content-Transfer-Encoding: base64\r\n\r\n{}--M--\r\n",
        b64(b"a\r\n--M\r\nb")
    );
    assert!(slim(raw.as_bytes(), &html()).is_none());
    same_items(raw.as_bytes());
}

#[test]
fn base64_sizes_follow_the_parser() {
    assert_eq!(base64_size(b"QUJD"), Some(3));
    assert_eq!(base64_size(b"QUJDRA=="), Some(4));
    assert_eq!(base64_size(b"QUJDREU="), Some(5));
    assert_eq!(base64_size(b"QUJD\r\nREU="), Some(5));
    assert_eq!(base64_size(b"Q=QUJD"), Some(4));
    // An unfinished group at the end gives nothing.
    assert_eq!(base64_size(b"QUJDRA"), Some(3));
    assert_eq!(base64_size(b"QU-J"), None);
    assert_eq!(base64_size(b"QU*J"), None);
}

#[test]
fn quoted_printable_acceptance() {
    assert!(quoted_printable_decodes(b"x=3Dy=\r\nz = w"));
    assert!(quoted_printable_decodes(b"=ZZ and =\r\n"));
    assert!(!quoted_printable_decodes(b"a==bcd"));
    assert!(!quoted_printable_decodes(b"xyz=A="));
    assert!(!quoted_printable_decodes(b"xyz=  ="));
    assert!(!quoted_printable_decodes(b"xyz=A\r\n="));
    // Too short to be sure the parser's final cut stays above zero.
    assert!(!quoted_printable_decodes(b"="));
    assert!(!quoted_printable_decodes(b"ab=\r\n"));
}

#[test]
fn quoted_printable_decoding_follows_the_parser() {
    // Every end of the run-copying part must give what the per-character rules give.
    let dec = |s: &[u8], b: &[u8]| {
        let all = qp(s, 0, b);
        let end = if b.is_empty() {
            s.len()
        } else {
            memmem::find(s, b).map_or(0, |i| i.saturating_sub(4))
        };
        for plain in 0..=end {
            assert_eq!(qp(s, plain, b), all, "{plain}");
        }
        all.map(|v| String::from_utf8_lossy(&v).into_owned())
    };
    assert_eq!(
        dec(b"Gr=C3=BC=C3=9Fe  \r\nx=\r\ny\r\n--B--\r\n", b"B").unwrap(),
        "Grüße\r\nxy"
    );
    assert_eq!(dec(b"a =ZZ b\n--B\n", b"B").unwrap(), "a =ZZ b");
    // The parser's cut after a soft break before the delimiter takes real text.
    assert_eq!(dec(b"abcdef=\r\n--B--", b"B").unwrap(), "abcd");
    assert_eq!(dec(b"no delimiter", b"B"), None);
    assert_eq!(dec(b"to the end  ", b"").unwrap(), "to the end  ");
    assert_eq!(dec(b"a==b\r\n--B", b"B"), None);
}

// Random MIME trees: whatever the split decides, the item is the whole message's.

#[derive(Debug, Clone)]
enum Tree {
    Leaf {
        content_type: &'static str,
        encoding: &'static str,
        body: String,
    },
    Multi {
        subtype: &'static str,
        children: Vec<Tree>,
    },
}

fn leaf() -> impl Strategy<Value = Tree> {
    (
        prop::sample::select(vec![
            "text/plain",
            "text/plain",
            "text/html",
            "text/html",
            "application/pdf; name=r.pdf",
            "application/pdf; name=r.pdf",
            "image/png",
            "text/calendar",
            "message/rfc822",
        ]),
        prop::sample::select(vec!["base64", "quoted-printable", "7bit", "binary"]),
        prop::sample::select(vec![
            "QUJDREVG\r\nR0hJ",
            "QUJDREVG\r\nR0hJ",
            "QUJDREVG\r\nR0hJ",
            "<p>Gr=C3=BC=C3=9Fe</p>",
            "plain words\r\nand lines",
            "QUJD=",
            "eA0KLS1iMA0KLS1iMS0tDQp5",
            "PHA+b2s8L3A+",
            "QU*J",
            "a=3Db =\r\nc",
            "a==b",
            "<p>Gr=C3=BC=C3=9Fe</p>",
            "trailing blanks  \r\nand =\r\nsoft",
            "ends in a soft break=",
            "=A",
            "=",
            "x=\t\r\ny =4",
            "=0D=0A--b0 =3D",
            "plain words\r\nand lines",
            "Subject: inner\r\n\r\nbody",
            "-- b0 --",
            "--b1",
            "",
        ]),
    )
        .prop_map(|(content_type, encoding, body)| Tree::Leaf {
            content_type,
            encoding,
            body: body.to_string(),
        })
}

fn tree() -> impl Strategy<Value = Tree> {
    leaf().prop_recursive(3, 16, 4, |inner| {
        (
            prop::sample::select(vec![
                "mixed",
                "alternative",
                "alternative",
                "related",
                "digest",
            ]),
            prop::collection::vec(inner, 1..4),
        )
            .prop_map(|(subtype, children)| Tree::Multi { subtype, children })
    })
}

fn render(t: &Tree, depth: usize, out: &mut String) {
    match t {
        Tree::Leaf {
            content_type,
            encoding,
            body,
        } => {
            out.push_str(&format!(
                "Content-Type: {content_type}\r\nContent-Transfer-Encoding: {encoding}\r\n\r\n{body}"
            ));
        }
        Tree::Multi { subtype, children } => {
            let b = format!("b{depth}");
            out.push_str(&format!(
                "Content-Type: multipart/{subtype}; boundary=\"{b}\"\r\n\r\n"
            ));
            for c in children {
                out.push_str(&format!("--{b}\r\n"));
                render(c, depth + 1, out);
                out.push_str("\r\n");
            }
            out.push_str(&format!("--{b}--\r\n"));
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1000))]

    #[test]
    fn random_trees_give_the_same_item(t in tree(), lf in any::<bool>()) {
        let mut raw = HEAD.to_string();
        render(&t, 0, &mut raw);
        if lf {
            raw = raw.replace("\r\n", "\n");
        }
        same_items(raw.as_bytes());
    }
}

/// A measurement, not a check of speed: `SLIM_MAILDIR=<a Maildir/cur> cargo test --release
/// --lib measure_conversion -- --ignored --nocapture` converts every mail of the folder both
/// ways (asserting equal items) and prints the time per mail of each way, of the slimming
/// alone, and of a plain `mail-parser` parse of the whole mail.
#[test]
#[ignore]
fn measure_conversion() {
    let Ok(dir) = std::env::var("SLIM_MAILDIR") else {
        eprintln!("SLIM_MAILDIR not set");
        return;
    };
    // Maildir files end their lines in LF; IMAP sends them with CRLF.
    let mails: Vec<Vec<u8>> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| std::fs::read(e.unwrap().path()).unwrap())
        .map(|m| {
            if m.contains(&b'\r') {
                m
            } else {
                String::from_utf8_lossy(&m)
                    .replace('\n', "\r\n")
                    .into_bytes()
            }
        })
        .collect();
    let o = html();
    for m in &mails {
        assert_eq!(
            application_data(m, &flags(), &info(), &o),
            application_data_whole(m, &flags(), &info(), &o)
        );
    }
    let per_mail = |f: &dyn Fn(&[u8])| {
        let t = std::time::Instant::now();
        for m in &mails {
            f(m);
        }
        t.elapsed().as_secs_f64() * 1e6 / mails.len() as f64
    };
    for _ in 0..3 {
        let whole = per_mail(&|m| {
            std::hint::black_box(application_data_whole(m, &flags(), &info(), &o));
        });
        let fast = per_mail(&|m| {
            std::hint::black_box(application_data(m, &flags(), &info(), &o));
        });
        let encoded = per_mail(&|m| {
            std::hint::black_box(application_data_encoded(m, None, &flags(), &info(), &o));
        });
        let slimming = per_mail(&|m| {
            std::hint::black_box(slim(m, &o));
        });
        let parse = per_mail(&|m| {
            std::hint::black_box(mail_parser::MessageParser::new().parse(m));
        });
        eprintln!(
            "{} mails: item from the whole mail {whole:.1} us, slimmed {fast:.1} us, slimmed and \
             encoded without a tree {encoded:.1} us (slimming alone {slimming:.1} us); \
             mail-parser parse of the whole mail {parse:.1} us",
            mails.len()
        );
    }
}
