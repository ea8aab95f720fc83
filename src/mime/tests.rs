//! Unit tests of the public functions on small inline messages.

use super::*;
use crate::eas::version::ALL_VERSIONS;
use crate::wbxml::tags::{airsync, airsyncbase, email, email2};
use crate::wbxml::{decode, encode, Limits, Node};

const PLAIN: &[u8] = b"From: Anna <anna@example.org>\r\n\
To: Bob <bob@example.com>\r\n\
Subject: Re: Hello\r\n\
Date: Thu, 26 Nov 2026 10:00:00 +0000\r\n\
Message-ID: <m1@example.org>\r\n\
MIME-Version: 1.0\r\n\
Content-Type: text/plain; charset=utf-8\r\n\
\r\n\
Line one \xC3\xA4\xC3\xB6\xC3\xBC\r\nLine two\r\n";

const SIGNED: &[u8] = b"From: a@example.org\r\n\
Subject: signed\r\n\
MIME-Version: 1.0\r\n\
Content-Type: multipart/signed; protocol=\"application/pkcs7-signature\"; boundary=B\r\n\
\r\n\
--B\r\n\
Content-Type: text/plain\r\n\
\r\n\
signed body\r\n\
--B\r\n\
Content-Type: application/pkcs7-signature; name=smime.p7s\r\n\
Content-Transfer-Encoding: base64\r\n\
\r\n\
AAECAw==\r\n\
--B--\r\n";

fn info() -> ItemInfo<'static> {
    ItemInfo {
        file_reference_prefix: "1:2",
        internal_date: 1_795_687_200,
        in_drafts: false,
    }
}

fn pref(body_type: u8) -> BodyPreference {
    BodyPreference {
        body_type,
        truncation_size: None,
        all_or_none: false,
        preview: None,
    }
}

fn opts(version: ProtocolVersion, prefs: Vec<BodyPreference>, mime_support: u8) -> BodyOptions {
    BodyOptions {
        preferences: prefs,
        mime_support,
        mime_truncation: None,
        version,
    }
}

fn body_type(body: &Element) -> Option<&str> {
    body.text_of(airsyncbase::TYPE)
}

fn all_tags(e: &Element, out: &mut Vec<crate::wbxml::Tag>) {
    out.push(e.tag);
    for c in e.elements() {
        all_tags(c, out);
    }
}

#[test]
fn default_options_send_truncated_plain_text() {
    let b = body_element(PLAIN, &BodyOptions::default_for(ProtocolVersion::V14_1));
    assert_eq!(b.tag, airsyncbase::BODY);
    assert_eq!(body_type(&b), Some("1"));
    assert_eq!(
        b.text_of(airsyncbase::DATA),
        Some("Line one äöü\r\nLine two\r\n")
    );
    assert!(b.first(airsyncbase::TRUNCATED).is_none());

    let big = [PLAIN, "x".repeat(40_000).as_bytes()].concat();
    let b = body_element(&big, &BodyOptions::default_for(ProtocolVersion::V14_1));
    let data = b.text_of(airsyncbase::DATA).unwrap_or_default();
    assert_eq!(data.len(), DEFAULT_PLAIN_TRUNCATION as usize);
    assert_eq!(b.text_of(airsyncbase::TRUNCATED), Some("1"));
}

#[test]
fn first_satisfiable_preference_wins() {
    let v = ProtocolVersion::V14_1;
    let b = body_element(PLAIN, &opts(v, vec![pref(3), pref(2), pref(1)], 0));
    assert_eq!(body_type(&b), Some("2"));
    let html = b.text_of(airsyncbase::DATA).unwrap_or_default();
    assert!(html.contains("Line one äöü<br>"), "{html}");

    let b = body_element(PLAIN, &opts(v, vec![pref(1), pref(2)], 0));
    assert_eq!(body_type(&b), Some("1"));

    // Only RTF asked: plain text.
    let b = body_element(PLAIN, &opts(v, vec![pref(3)], 0));
    assert_eq!(body_type(&b), Some("1"));

    // Type 4 asked explicitly.
    let b = body_element(PLAIN, &opts(v, vec![pref(4)], 0));
    assert_eq!(body_type(&b), Some("4"));
    assert_eq!(
        b.text_of(airsyncbase::DATA),
        Some(String::from_utf8_lossy(PLAIN).as_ref())
    );
}

#[test]
fn mime_support_rules() {
    let v = ProtocolVersion::V14_1;
    // MIMESupport 2: MIME for every message, whatever the preferences.
    let b = body_element(PLAIN, &opts(v, vec![pref(2)], 2));
    assert_eq!(body_type(&b), Some("4"));
    // MIMESupport 1: MIME only for S/MIME; a type-4 preference is skipped otherwise.
    let b = body_element(PLAIN, &opts(v, vec![pref(4), pref(1)], 1));
    assert_eq!(body_type(&b), Some("1"));
    let b = body_element(SIGNED, &opts(v, vec![pref(2)], 1));
    assert_eq!(body_type(&b), Some("4"));
    // MIMETruncation applies when no type-4 preference gives a size.
    let mut o = opts(v, vec![], 2);
    o.mime_truncation = Some(20);
    let b = body_element(SIGNED, &o);
    assert_eq!(b.text_of(airsyncbase::DATA).map(str::len), Some(20));
    assert_eq!(b.text_of(airsyncbase::TRUNCATED), Some("1"));
    assert_eq!(
        b.text_of(airsyncbase::ESTIMATED_DATA_SIZE),
        Some(SIGNED.len().to_string().as_str())
    );
}

#[test]
fn all_or_none_and_truncation() {
    let v = ProtocolVersion::V14_1;
    let mut p = pref(1);
    p.truncation_size = Some(12);
    p.all_or_none = true;
    let b = body_element(PLAIN, &opts(v, vec![p.clone()], 0));
    assert!(b.first(airsyncbase::DATA).is_none());
    assert_eq!(b.text_of(airsyncbase::TRUNCATED), Some("1"));
    assert_eq!(b.text_of(airsyncbase::ESTIMATED_DATA_SIZE), Some("27"));

    // "Line one äöü": cutting at 12 bytes would split "ö".
    p.all_or_none = false;
    let b = body_element(PLAIN, &opts(v, vec![p.clone()], 0));
    assert_eq!(b.text_of(airsyncbase::DATA), Some("Line one ä"));

    // Large enough: whole body, AllOrNone or not.
    p.truncation_size = Some(27);
    p.all_or_none = true;
    let b = body_element(PLAIN, &opts(v, vec![p], 0));
    assert_eq!(b.text_of(airsyncbase::DATA).map(str::len), Some(27));
    assert!(b.first(airsyncbase::TRUNCATED).is_none());
}

#[test]
fn preview_only_from_14_0() {
    let mut p = pref(2);
    p.preview = Some(8);
    let b = body_element(PLAIN, &opts(ProtocolVersion::V14_0, vec![p.clone()], 0));
    assert_eq!(b.text_of(airsyncbase::PREVIEW), Some("Line one"));
    let b = body_element(PLAIN, &opts(ProtocolVersion::V12_1, vec![p.clone()], 0));
    assert!(b.first(airsyncbase::PREVIEW).is_none());
    p.preview = Some(100_000);
    let long = [PLAIN, "y ".repeat(400).as_bytes()].concat();
    let b = body_element(&long, &opts(ProtocolVersion::V16_1, vec![p], 0));
    let pv = b.text_of(airsyncbase::PREVIEW).unwrap_or_default();
    assert_eq!(pv.chars().count(), 255);
}

#[test]
fn header_fields() {
    let flags = MailFlags::default();
    let o = opts(ProtocolVersion::V14_1, vec![pref(1)], 0);
    let ad = application_data(PLAIN, &flags, &info(), &o);
    assert_eq!(ad.tag, airsync::APPLICATION_DATA);
    assert_eq!(ad.text_of(email::SUBJECT), Some("Re: Hello"));
    assert_eq!(ad.text_of(email::THREAD_TOPIC), Some("Hello"));
    assert_eq!(ad.text_of(email::FROM), Some("\"Anna\" <anna@example.org>"));
    assert_eq!(ad.text_of(email::TO), Some("\"Bob\" <bob@example.com>"));
    assert_eq!(ad.text_of(email::DISPLAY_TO), Some("Bob"));
    assert!(ad.first(email::CC).is_none());
    assert_eq!(
        ad.text_of(email::DATE_RECEIVED),
        Some("2026-11-26T10:00:00.000Z")
    );
    assert_eq!(ad.text_of(email::IMPORTANCE), Some("1"));
    assert_eq!(ad.text_of(email::READ), Some("0"));
    assert_eq!(ad.text_of(email::MESSAGE_CLASS), Some("IPM.Note"));
    assert_eq!(ad.text_of(email::INTERNET_CPID), Some("65001"));
    assert_eq!(
        ad.text_of(email::CONTENT_CLASS),
        Some("urn:content-classes:message")
    );
    assert_eq!(ad.text_of(airsyncbase::NATIVE_BODY_TYPE), Some("1"));
    assert!(ad.first(email::FLAG).is_some_and(Element::is_empty));
    assert!(ad.first(airsyncbase::ATTACHMENTS).is_none());
    assert!(ad.first(email::CATEGORIES).is_none());
    assert!(ad.first(email2::LAST_VERB_EXECUTED).is_none());
    let cid = ad.first(email2::CONVERSATION_ID).and_then(Element::opaque);
    assert_eq!(cid.map(|b| b.len()), Some(16));
    let cix = ad
        .first(email2::CONVERSATION_INDEX)
        .and_then(Element::opaque);
    assert_eq!(cix.map(|b| b.len()), Some(5));
    assert!(ad.first(email2::IS_DRAFT).is_none());
}

#[test]
fn conversation_id_follows_thread_root() {
    let o = opts(ProtocolVersion::V14_1, vec![pref(1)], 0);
    let flags = MailFlags::default();
    let root = b"Message-ID: <root@x>\r\nSubject: a\r\n\r\nbody\r\n";
    let reply = b"Message-ID: <r1@x>\r\nIn-Reply-To: <root@x>\r\nSubject: Re: a\r\n\r\nb\r\n";
    let reply2 =
        b"Message-ID: <r2@x>\r\nReferences: <root@x> <r1@x>\r\nSubject: Re: a\r\n\r\nb\r\n";
    let other = b"Message-ID: <other@x>\r\nSubject: a\r\n\r\nbody\r\n";
    let id = |raw: &[u8]| {
        application_data(raw, &flags, &info(), &o)
            .first(email2::CONVERSATION_ID)
            .and_then(Element::opaque)
            .cloned()
    };
    assert!(id(root).is_some());
    assert_eq!(id(root), id(reply));
    assert_eq!(id(root), id(reply2));
    assert_ne!(id(root), id(other));
}

#[test]
fn flags_and_categories() {
    let flags = MailFlags {
        seen: true,
        flagged: true,
        answered: false,
        forwarded: true,
        draft: false,
        keywords: vec![
            "Work".into(),
            "$MDNSent".into(),
            "Family".into(),
            "NonJunk".into(),
            "Work".into(),
        ],
    };
    let ad = flag_change(&flags, ProtocolVersion::V14_1);
    assert_eq!(ad.text_of(email::READ), Some("1"));
    let flag = ad
        .first(email::FLAG)
        .cloned()
        .unwrap_or(Element::new(email::FLAG));
    assert_eq!(flag.text_of(email::STATUS), Some("2"));
    assert_eq!(flag.text_of(email::FLAG_TYPE), Some("Flag for follow up"));
    let cats: Vec<&str> = ad
        .first(email::CATEGORIES)
        .map(|c| c.all(email::CATEGORY).filter_map(Element::text).collect())
        .unwrap_or_default();
    assert_eq!(cats, ["Work", "Family"]);
    assert_eq!(ad.text_of(email2::LAST_VERB_EXECUTED), Some("3"));

    let answered = MailFlags {
        answered: true,
        forwarded: true,
        ..MailFlags::default()
    };
    let ad = flag_change(&answered, ProtocolVersion::V16_0);
    assert_eq!(ad.text_of(email2::LAST_VERB_EXECUTED), Some("1"));
    assert_eq!(ad.text_of(email::READ), Some("0"));
    // No keywords: an empty Categories clears them on the device.
    assert!(ad.first(email::CATEGORIES).is_some_and(Element::is_empty));
    assert!(ad.first(email::FLAG).is_some_and(Element::is_empty));

    // 12.1 knows neither Categories nor Email2.
    let ad = flag_change(&flags, ProtocolVersion::V12_1);
    let names: Vec<_> = ad.elements().map(|e| e.tag).collect();
    assert_eq!(names, [email::READ, email::FLAG]);
}

#[test]
fn drafts_in_16() {
    let raw =
        b"From: me@x\r\nTo: you@x\r\nBcc: Hidden <hidden@x>\r\nSubject: draft\r\n\r\nbody\r\n";
    let draft_info = ItemInfo {
        in_drafts: true,
        ..info()
    };
    let o16 = opts(ProtocolVersion::V16_0, vec![pref(1)], 0);
    let ad = application_data(raw, &MailFlags::default(), &draft_info, &o16);
    assert_eq!(ad.text_of(email2::IS_DRAFT), Some("1"));
    assert_eq!(ad.text_of(email2::BCC), Some("\"Hidden\" <hidden@x>"));
    let ad = application_data(raw, &MailFlags::default(), &info(), &o16);
    assert_eq!(ad.text_of(email2::IS_DRAFT), Some("0"));
    assert!(ad.first(email2::BCC).is_none());
    let o14 = opts(ProtocolVersion::V14_1, vec![pref(1)], 0);
    let ad = application_data(raw, &MailFlags::default(), &draft_info, &o14);
    assert!(ad.first(email2::IS_DRAFT).is_none());
}

#[test]
fn sender_and_importance() {
    let raw = b"From: Boss <boss@x>\r\nSender: Assistant <asst@x>\r\nX-Priority: 1 (Highest)\r\n\
Subject: s\r\n\r\nb\r\n";
    let o = opts(ProtocolVersion::V14_0, vec![pref(1)], 0);
    let ad = application_data(raw, &MailFlags::default(), &info(), &o);
    assert_eq!(ad.text_of(email2::SENDER), Some("\"Assistant\" <asst@x>"));
    assert_eq!(ad.text_of(email::IMPORTANCE), Some("2"));
    let low = b"Importance: Low\r\nSubject: s\r\n\r\nb\r\n";
    let ad = application_data(low, &MailFlags::default(), &info(), &o);
    assert_eq!(ad.text_of(email::IMPORTANCE), Some("0"));
    assert!(ad.first(email2::SENDER).is_none());
}

#[test]
fn every_emitted_tag_exists_in_its_version_and_encodes() {
    let flags = MailFlags {
        seen: true,
        flagged: true,
        answered: true,
        forwarded: true,
        draft: true,
        keywords: vec!["Work".into()],
    };
    for &v in &ALL_VERSIONS {
        let mut p = pref(2);
        p.preview = Some(50);
        p.truncation_size = Some(100);
        let o = opts(v, vec![p], 1);
        let draft_info = ItemInfo {
            in_drafts: true,
            ..info()
        };
        for raw in [PLAIN, SIGNED] {
            let elements = [
                application_data(raw, &flags, &draft_info, &o),
                flag_change(&flags, v),
                body_element(raw, &o),
            ];
            for e in elements {
                let mut tags = Vec::new();
                all_tags(&e, &mut tags);
                for t in tags {
                    assert!(headers::tag_in_version(t, v), "{t} emitted for version {v}");
                }
                let wbxml = encode(&e);
                let back = decode(wbxml.into(), &Limits::default());
                assert_eq!(back.ok(), Some(e));
            }
        }
    }
}

#[test]
fn v12_has_no_email2_or_categories() {
    let flags = MailFlags {
        keywords: vec!["Work".into()],
        answered: true,
        ..MailFlags::default()
    };
    let o = opts(ProtocolVersion::V12_1, vec![pref(1)], 0);
    let ad = application_data(SIGNED, &flags, &info(), &o);
    let mut tags = Vec::new();
    all_tags(&ad, &mut tags);
    assert!(tags.iter().all(|t| t.page != email2::PAGE));
    assert!(!tags.contains(&email::CATEGORIES));
    assert!(!tags.contains(&airsyncbase::PREVIEW));
    assert_eq!(
        ad.text_of(email::MESSAGE_CLASS),
        Some("IPM.Note.SMIME.MultipartSigned")
    );
}

#[test]
fn attachments_of_signed_message() {
    let a = attachment(SIGNED, 0);
    assert_eq!(
        a,
        Some(Attachment {
            content_type: "application/pkcs7-signature".into(),
            file_name: "smime.p7s".into(),
            data: vec![0, 1, 2, 3],
        })
    );
    assert!(attachment(SIGNED, 1).is_none());
    assert!(attachment(PLAIN, 0).is_none());
    assert!(summary(SIGNED).has_attachments);
    assert!(!summary(PLAIN).has_attachments);
}

#[test]
fn summary_fields() {
    let s = summary(PLAIN);
    assert_eq!(s.subject, "Re: Hello");
    assert_eq!(s.from, "\"Anna\" <anna@example.org>");
    assert_eq!(s.to, "\"Bob\" <bob@example.com>");
    assert_eq!(s.cc, "");
    assert_eq!(s.message_id.as_deref(), Some("m1@example.org"));
    assert!(s.references.is_empty());
    assert_eq!(s.date, Some(1_795_687_200));
}

#[test]
fn unparsable_input_is_best_effort() {
    for raw in [&b""[..], b"\xff\xfe\x00garbage", b"\r\n\r\n", b"::::\r\n"] {
        let o = opts(ProtocolVersion::V16_1, vec![pref(1)], 0);
        let ad = application_data(raw, &MailFlags::default(), &info(), &o);
        assert!(ad.first(airsyncbase::BODY).is_some());
        assert!(ad.first(email::SUBJECT).is_some());
        assert_eq!(summary(raw).subject, "");
        assert!(attachment(raw, 0).is_none());
        assert!(ad.children.iter().all(|n| matches!(n, Node::Element(_))));
    }
}

#[test]
fn categories_filter() {
    let k = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    assert_eq!(
        categories(&k(&["$label1", "Junk", "Private", " ", "Private"])),
        ["Private"]
    );
}
