//! RFC 5322 fixtures -> EAS Email data, checked for what a user sees.
//!
//! Fixtures are in `tests/fixtures/mime/`; the original files of the
//! attachments fixture are in `tests/fixtures/mime/files/`.

use std::path::PathBuf;

use eas_gateway::eas::version::ALL_VERSIONS;
use eas_gateway::eas::ProtocolVersion;
use eas_gateway::mime::{
    application_data, attachment, body_element, summary, BodyOptions, BodyPreference, ItemInfo,
    MailFlags,
};
use eas_gateway::wbxml::tags::{airsyncbase, email, email2};
use eas_gateway::wbxml::{decode, encode, Element, Limits, Tag};

fn fixture(name: &str) -> Vec<u8> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/mime")
        .join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

const INFO: ItemInfo<'static> = ItemInfo {
    file_reference_prefix: "5:123",
    internal_date: 1_795_687_200, // 2026-11-26T10:00:00Z
    in_drafts: false,
};

fn prefs(body_type: u8, truncation_size: Option<u32>) -> BodyOptions {
    BodyOptions {
        preferences: vec![BodyPreference {
            body_type,
            truncation_size,
            all_or_none: false,
            preview: Some(255),
        }],
        mime_support: 0,
        mime_truncation: None,
        version: ProtocolVersion::V16_1,
    }
}

fn data(app: &Element) -> String {
    app.first(airsyncbase::BODY)
        .and_then(|b| b.text_of(airsyncbase::DATA))
        .unwrap_or_default()
        .to_string()
}

fn body_field(app: &Element, tag: Tag) -> Option<&str> {
    app.first(airsyncbase::BODY).and_then(|b| b.text_of(tag))
}

fn attachments(app: &Element) -> Vec<&Element> {
    app.first(airsyncbase::ATTACHMENTS)
        .map(|a| a.all(airsyncbase::ATTACHMENT).collect())
        .unwrap_or_default()
}

fn tags(e: &Element, out: &mut Vec<Tag>) {
    out.push(e.tag);
    for c in e.elements() {
        tags(c, out);
    }
}

#[test]
fn plain_message() {
    let raw = fixture("plain.eml");
    let app = application_data(&raw, &MailFlags::default(), &INFO, &prefs(1, None));
    assert_eq!(app.text_of(email::SUBJECT), Some("Test plain"));
    assert_eq!(
        app.text_of(email::FROM),
        Some("\"Jörg Müller\" <joerg@example.org>")
    );
    assert_eq!(
        app.text_of(email::TO),
        Some("\"Doe, Anna\" <anna@example.com>, bob@example.com")
    );
    assert_eq!(
        app.text_of(email::CC),
        Some("\"Carol\" <carol@example.net>")
    );
    assert_eq!(
        app.text_of(email::REPLY_TO),
        Some("\"Replies\" <replies@example.org>")
    );
    assert_eq!(
        app.text_of(email::DISPLAY_TO),
        Some("Doe, Anna; bob@example.com")
    );
    assert_eq!(
        app.text_of(email::DATE_RECEIVED),
        Some("2026-11-26T10:00:00.000Z")
    );
    assert_eq!(app.text_of(email::IMPORTANCE), Some("2"));
    let body = data(&app);
    assert!(
        body.contains("grüße aus München! Die Größe ist 10 × 20."),
        "{body}"
    );
    assert!(body.contains("Viele Grüße\r\nJörg"), "{body}");
    assert_eq!(
        body_field(&app, airsyncbase::ESTIMATED_DATA_SIZE),
        Some(body.len().to_string().as_str())
    );
    assert_eq!(
        body_field(&app, airsyncbase::PREVIEW),
        Some("Hallo Anna, grüße aus München! Die Größe ist 10 × 20. Viele Grüße Jörg")
    );

    let s = summary(&raw);
    assert_eq!(s.subject, "Test plain");
    assert_eq!(s.message_id.as_deref(), Some("plain-1@example.org"));
    assert_eq!(s.references, ["root-0@example.org", "mid-1@example.org"]);
    assert_eq!(s.date, Some(1_795_687_200)); // 11:00 +0100
    assert!(!s.has_attachments);
}

#[test]
fn html_only_message_gives_plain_text_on_request() {
    let raw = fixture("html_only.eml");
    let app = application_data(&raw, &MailFlags::default(), &INFO, &prefs(1, None));
    assert_eq!(app.text_of(airsyncbase::NATIVE_BODY_TYPE), Some("2"));
    assert_eq!(body_field(&app, airsyncbase::TYPE), Some("1"));
    let text = data(&app);
    assert!(text.contains("Hallo Welt, schöne Grüße!"), "{text}");
    assert!(text.contains("Absatz & mehr"), "{text}");
    assert!(
        !text.contains("<p>") && !text.contains("color: red"),
        "{text}"
    );
    assert_eq!(app.text_of(email::IMPORTANCE), Some("0"));

    let app = application_data(&raw, &MailFlags::default(), &INFO, &prefs(2, None));
    assert!(data(&app).contains("<p>Hallo <b>Welt</b>"));
}

#[test]
fn alternative_message_picks_the_matching_part() {
    let raw = fixture("alternative.eml");
    let flags = MailFlags::default();
    let plain = application_data(&raw, &flags, &INFO, &prefs(1, None));
    assert_eq!(data(&plain), "Plain version: Käse");
    let html = application_data(&raw, &flags, &INFO, &prefs(2, None));
    assert!(data(&html).contains("HTML version: <i>K&auml;se</i>"));
    assert_eq!(html.text_of(airsyncbase::NATIVE_BODY_TYPE), Some("2"));
    // RTF is never sent: the next preference (plain) wins.
    let mut opts = prefs(3, None);
    opts.preferences.push(BodyPreference {
        body_type: 1,
        truncation_size: None,
        all_or_none: false,
        preview: None,
    });
    let b = body_element(&raw, &opts);
    assert_eq!(b.text_of(airsyncbase::TYPE), Some("1"));
    assert_eq!(b.text_of(airsyncbase::DATA), Some("Plain version: Käse"));
}

#[test]
fn attachments_are_listed_and_fetched() {
    let raw = fixture("attachments.eml");
    let app = application_data(&raw, &MailFlags::default(), &INFO, &prefs(2, None));
    assert_eq!(app.text_of(email::SUBJECT), Some("Anhänge and more"));
    assert!(data(&app).contains("cid:logo@example.org"));
    let list = attachments(&app);
    let names: Vec<_> = list
        .iter()
        .filter_map(|a| a.text_of(airsyncbase::DISPLAY_NAME))
        .collect();
    assert_eq!(
        names,
        [
            "logo.png",
            "Bücher Übersicht.pdf",
            "notes.txt",
            "Original subject.eml"
        ]
    );
    let refs: Vec<_> = list
        .iter()
        .filter_map(|a| a.text_of(airsyncbase::FILE_REFERENCE))
        .collect();
    assert_eq!(refs, ["5:123:0", "5:123:1", "5:123:2", "5:123:3"]);
    let methods: Vec<_> = list
        .iter()
        .filter_map(|a| a.text_of(airsyncbase::METHOD))
        .collect();
    assert_eq!(methods, ["1", "1", "1", "5"]);

    let logo = list[0];
    assert_eq!(
        logo.text_of(airsyncbase::CONTENT_ID),
        Some("logo@example.org")
    );
    assert_eq!(logo.text_of(airsyncbase::IS_INLINE), Some("1"));
    assert!(list[1].first(airsyncbase::IS_INLINE).is_none());

    let files = [
        ("files/logo.png", "image/png", "logo.png"),
        (
            "files/report.pdf",
            "application/pdf",
            "Bücher Übersicht.pdf",
        ),
        ("files/notes.txt", "text/plain", "notes.txt"),
        (
            "files/forwarded.eml",
            "message/rfc822",
            "Original subject.eml",
        ),
    ];
    for (i, (file, ctype, name)) in files.iter().enumerate() {
        let original = fixture(file);
        let a = attachment(&raw, i).unwrap_or_else(|| panic!("attachment {i}"));
        assert_eq!(a.data, original, "bytes of {file}");
        assert_eq!(a.content_type, *ctype);
        assert_eq!(a.file_name, *name);
        assert_eq!(
            list[i].text_of(airsyncbase::ESTIMATED_DATA_SIZE),
            Some(original.len().to_string().as_str()),
            "size of {file}"
        );
    }
    assert!(attachment(&raw, 4).is_none());
    assert!(summary(&raw).has_attachments);
}

#[test]
fn legacy_charsets_are_converted() {
    let flags = MailFlags::default();
    let latin = fixture("latin1.eml");
    let app = application_data(&latin, &flags, &INFO, &prefs(1, None));
    assert_eq!(app.text_of(email::SUBJECT), Some("Grüße aus Köln"));
    assert_eq!(
        app.text_of(email::FROM),
        Some("\"Jörg\" <joerg@example.org>")
    );
    assert!(data(&app).contains("Frau Müller,"));
    assert!(data(&app).contains("Übersicht für Straßenbau."));

    let cp = fixture("cp1252.eml");
    let app = application_data(&cp, &flags, &INFO, &prefs(1, None));
    assert_eq!(app.text_of(email::SUBJECT), Some("Rechnung – 100 €"));
    assert_eq!(data(&app), "Preis: 100 € „Zitat“ – fertig … Grüße\r\n");

    let sj = fixture("shift_jis.eml");
    let app = application_data(&sj, &flags, &INFO, &prefs(1, None));
    assert_eq!(app.text_of(email::SUBJECT), Some("日本語の件名"));
    assert_eq!(
        app.text_of(email::FROM),
        Some("\"山田太郎\" <yamada@example.jp>")
    );
    assert_eq!(data(&app), "こんにちは、世界。日本語のメールです。\n");
}

#[test]
fn smime_messages() {
    let raw = fixture("smime_signed.eml");
    let flags = MailFlags::default();
    let mut opts = prefs(2, None);
    opts.mime_support = 1;
    let app = application_data(&raw, &flags, &INFO, &opts);
    assert_eq!(
        app.text_of(email::MESSAGE_CLASS),
        Some("IPM.Note.SMIME.MultipartSigned")
    );
    assert_eq!(body_field(&app, airsyncbase::TYPE), Some("4"));
    assert_eq!(data(&app).as_bytes(), raw.as_slice());
    assert_eq!(
        body_field(&app, airsyncbase::ESTIMATED_DATA_SIZE),
        Some(raw.len().to_string().as_str())
    );

    // Without MIME support the signed text is the body and the signature an attachment.
    let app = application_data(&raw, &flags, &INFO, &prefs(1, None));
    assert_eq!(body_field(&app, airsyncbase::TYPE), Some("1"));
    assert_eq!(data(&app), "Signed text body.");
    let a = attachment(&raw, 0).map(|a| (a.file_name, a.data));
    assert_eq!(
        a,
        Some(("smime.p7s".to_string(), fixture("files/smime.p7s")))
    );

    // MIMESupport 1 does not turn an ordinary message into MIME.
    let plain = fixture("plain.eml");
    let app = application_data(&plain, &flags, &INFO, &opts);
    assert_eq!(body_field(&app, airsyncbase::TYPE), Some("2"));

    let enc = fixture("smime_encrypted.eml");
    let app = application_data(&enc, &flags, &INFO, &opts);
    assert_eq!(app.text_of(email::MESSAGE_CLASS), Some("IPM.Note.SMIME"));
    assert_eq!(body_field(&app, airsyncbase::TYPE), Some("4"));
}

#[test]
fn message_without_date_or_from() {
    let raw = fixture("no_date_no_from.eml");
    let app = application_data(&raw, &MailFlags::default(), &INFO, &prefs(1, None));
    assert!(app.first(email::FROM).is_none());
    assert!(app.first(email::TO).is_none());
    assert_eq!(app.text_of(email::SUBJECT), Some("Nothing but a subject"));
    assert_eq!(
        app.text_of(email::DATE_RECEIVED),
        Some("2026-11-26T10:00:00.000Z")
    );
    assert_eq!(data(&app), "Just a body.\r\n");
    assert!(app.first(email2::CONVERSATION_ID).is_some());
    let s = summary(&raw);
    assert_eq!(s.date, None);
    assert_eq!(s.from, "");
    assert_eq!(s.message_id, None);
}

#[test]
fn big_html_body_is_truncated_on_a_char_boundary() {
    let raw = fixture("big_html.eml");
    let start = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|p| p + 4)
        .unwrap_or(0);
    let full = String::from_utf8_lossy(&raw[start..]).into_owned();
    assert!(full.len() > 200_000);
    // A limit that falls inside a multi-byte character.
    let limit = (1000..1100)
        .find(|&i| !full.is_char_boundary(i))
        .unwrap_or(1000);

    let app = application_data(
        &raw,
        &MailFlags::default(),
        &INFO,
        &prefs(2, Some(limit as u32)),
    );
    let d = data(&app);
    assert!(
        d.len() < limit && d.len() >= limit - 3,
        "{} vs {limit}",
        d.len()
    );
    assert!(full.starts_with(&d));
    assert_eq!(body_field(&app, airsyncbase::TRUNCATED), Some("1"));
    assert_eq!(
        body_field(&app, airsyncbase::ESTIMATED_DATA_SIZE),
        Some(full.len().to_string().as_str())
    );

    // Plain text of the same message: truncated the same way, full size of the text.
    let plain = body_element(&raw, &prefs(1, None));
    let full_text = plain
        .text_of(airsyncbase::DATA)
        .unwrap_or_default()
        .to_string();
    assert!(full_text.contains("Größenänderung – Überprüfung der Maßnahmen für Ärzte"));
    let cut = body_element(&raw, &prefs(1, Some(4097)));
    let d = cut.text_of(airsyncbase::DATA).unwrap_or_default();
    assert!(d.len() <= 4097 && full_text.starts_with(d));
    assert_eq!(
        cut.text_of(airsyncbase::ESTIMATED_DATA_SIZE),
        Some(full_text.len().to_string().as_str())
    );

    // AllOrNone: nothing but the size and the flag.
    let mut opts = prefs(2, Some(1000));
    opts.preferences[0].all_or_none = true;
    let b = body_element(&raw, &opts);
    assert!(b.first(airsyncbase::DATA).is_none());
    assert_eq!(b.text_of(airsyncbase::TRUNCATED), Some("1"));
}

#[test]
fn garbage_gives_a_best_effort_element() {
    let raw = fixture("garbage.bin");
    for &v in &ALL_VERSIONS {
        let mut opts = prefs(2, Some(512));
        opts.version = v;
        let app = application_data(&raw, &MailFlags::default(), &INFO, &opts);
        assert_eq!(app.text_of(email::SUBJECT), Some(""));
        assert!(app.first(airsyncbase::BODY).is_some());
        assert!(encode(&app).len() > 10);
    }
    let _ = summary(&raw);
    for i in 0..4 {
        let _ = attachment(&raw, i);
    }
}

#[test]
fn versions_gate_elements() {
    let flags = MailFlags {
        seen: true,
        flagged: true,
        answered: true,
        forwarded: false,
        draft: false,
        keywords: vec!["Urlaub".into()],
    };
    for name in [
        "plain.eml",
        "attachments.eml",
        "smime_signed.eml",
        "no_date_no_from.eml",
    ] {
        let raw = fixture(name);
        for &v in &ALL_VERSIONS {
            let mut opts = prefs(2, Some(100));
            opts.version = v;
            let app = application_data(&raw, &flags, &INFO, &opts);
            let mut all = Vec::new();
            tags(&app, &mut all);
            let has_email2 = all.iter().any(|t| t.page == email2::PAGE);
            let has_categories = all.contains(&email::CATEGORIES);
            let has_preview = all.contains(&airsyncbase::PREVIEW);
            if v < ProtocolVersion::V14_0 {
                assert!(!has_email2 && !has_categories && !has_preview, "{name} {v}");
            } else {
                assert!(has_email2 && has_categories && has_preview, "{name} {v}");
            }
            assert_eq!(all.contains(&email2::IS_DRAFT), v >= ProtocolVersion::V16_0);
            // Every tree survives a WBXML round trip.
            let back = decode(encode(&app).into(), &Limits::default());
            assert_eq!(back.ok().as_ref(), Some(&app), "{name} {v}");
        }
    }
}
