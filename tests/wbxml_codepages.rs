//! The generated code page tables against the MS-ASWBXML tag list kept in
//! tests/fixtures/wbxml/codepages-expected.tsv.

use std::collections::BTreeSet;

use eas_gateway::wbxml::{codepage, tags, Tag};

fn expected() -> Vec<(u8, String, u8, String)> {
    let text = include_str!("fixtures/wbxml/codepages-expected.tsv");
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| {
            let c: Vec<&str> = l.split('\t').collect();
            assert_eq!(c.len(), 4, "bad line {l:?}");
            let page = c[0].parse().expect("page");
            let token = u8::from_str_radix(c[2].trim_start_matches("0x"), 16).expect("token");
            (page, c[1].to_string(), token, c[3].to_string())
        })
        .collect()
}

#[test]
fn all_586_tags_match() {
    let exp = expected();
    assert_eq!(exp.len(), 586);
    for (page, page_name, token, name) in &exp {
        let tag = Tag::new(*page, *token);
        assert_eq!(tag.name(), Some(name.as_str()), "{page}/0x{token:02X}");
        assert_eq!(tag.page_name(), Some(page_name.as_str()), "{page}");
        assert_eq!(
            Tag::from_names(page_name, name),
            Some(tag),
            "{page_name}:{name}"
        );
        assert!(tag.versions().is_some());
    }
    // nothing beyond the expectations
    let want: BTreeSet<(u8, u8)> = exp.iter().map(|(p, _, t, _)| (*p, *t)).collect();
    let mut have = BTreeSet::new();
    for p in codepage::pages() {
        for tag in p.tags() {
            have.insert((tag.page, tag.token));
        }
    }
    assert_eq!(have, want);
    assert_eq!(codepage::tag_count(), 586);
}

#[test]
fn every_token_round_trips() {
    assert_eq!(codepage::pages().len(), 26);
    for (i, p) in codepage::pages().iter().enumerate() {
        assert_eq!(usize::from(p.number), i);
        for token in 0..=0xFFu8 {
            let tag = Tag::new(p.number, token);
            if let Some(name) = tag.name() {
                assert!((0x05..=0x3F).contains(&token));
                assert_eq!(p.token(name), Some(token));
                assert_eq!(Tag::from_names(p.name, name), Some(tag));
            }
        }
        for &(name, token) in p.by_name {
            assert_eq!(Tag::new(p.number, token).name(), Some(name));
        }
    }
    assert!(codepage::page(3).is_some_and(|p| p.tags().count() == 0 && p.name == "AirNotify"));
    assert!(codepage::page(26).is_none());
}

#[test]
fn typed_constants() {
    assert_eq!(tags::airsync::SYNC_KEY, Tag::new(0, 0x0B));
    assert_eq!(tags::airsync::MIME_SUPPORT, Tag::new(0, 0x22));
    assert_eq!(tags::airsync::SERVER_ID, Tag::new(0, 0x0D));
    assert_eq!(tags::settings::DEVICE_INFORMATION, Tag::new(18, 0x16));
    assert_eq!(tags::provision::EAS_PROVISION_DOC, Tag::new(14, 0x0D));
    assert_eq!(tags::move_items::MOVE_ITEMS, Tag::new(5, 0x05));
    assert_eq!(tags::gal::PAGE_NAME, "GAL");
    assert_eq!(tags::find::PAGE, 25);
    assert!(tags::airnotify::ALL.is_empty());
    let all: &[&[Tag]] = &[
        tags::airsync::ALL,
        tags::contacts::ALL,
        tags::email::ALL,
        tags::airnotify::ALL,
        tags::calendar::ALL,
        tags::move_items::ALL,
        tags::get_item_estimate::ALL,
        tags::folder_hierarchy::ALL,
        tags::meeting_response::ALL,
        tags::tasks::ALL,
        tags::resolve_recipients::ALL,
        tags::validate_cert::ALL,
        tags::contacts2::ALL,
        tags::ping::ALL,
        tags::provision::ALL,
        tags::search::ALL,
        tags::gal::ALL,
        tags::airsyncbase::ALL,
        tags::settings::ALL,
        tags::document_library::ALL,
        tags::item_operations::ALL,
        tags::compose_mail::ALL,
        tags::email2::ALL,
        tags::notes::ALL,
        tags::rights_management::ALL,
        tags::find::ALL,
    ];
    let total: usize = all.iter().map(|a| a.len()).sum();
    assert_eq!(total, 586);
    for (page, list) in all.iter().enumerate() {
        for t in *list {
            assert_eq!(usize::from(t.page), page);
            assert!(t.name().is_some());
        }
    }
}

#[test]
fn cli_codepages_listing() {
    let mut out = Vec::new();
    eas_gateway::cli::wbxml::print_codepages(&mut out).expect("print");
    let text = String::from_utf8(out).expect("utf-8");
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 586);
    assert_eq!(lines[0], "0 0x05 Sync");
    assert!(lines.contains(&"14 0x0D EASProvisionDoc"));
    assert_eq!(lines[585], "25 0x22 Picture");
    let exp = expected();
    for (line, (page, _, token, name)) in lines.iter().zip(&exp) {
        assert_eq!(*line, format!("{page} 0x{token:02X} {name}"));
    }
}
