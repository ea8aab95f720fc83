//! Build script: turns the MS-ASWBXML code page data in `wbxml-codepages/`
//! into Rust tables in `OUT_DIR`.
//!
//! Each data file is named `NN-PageName.tsv` (NN = page number). Lines starting
//! with `#` and blank lines are ignored; every other line is
//! `token<TAB>tag<TAB>versions` with the token written as `0xNN`.
//!
//! Generated files:
//! - `wbxml_codepages.rs`: the `PAGES` table used by `src/wbxml/codepage.rs`.
//! - `wbxml_tags.rs`: one module per page with a `Tag` constant per tag
//!   (included by `src/wbxml/tags.rs`).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::{env, fs};

struct TagRow {
    token: u8,
    name: String,
    versions: String,
}

struct Page {
    number: u8,
    name: String,
    module: String,
    tags: Vec<TagRow>,
}

fn main() {
    println!("cargo:rerun-if-changed=wbxml-codepages");
    println!("cargo:rerun-if-changed=build.rs");
    let manifest = PathBuf::from(env::var("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR"));
    let dir = manifest.join("wbxml-codepages");
    let pages = load_pages(&dir);
    let out = PathBuf::from(env::var("OUT_DIR").expect("OUT_DIR"));
    fs::write(out.join("wbxml_codepages.rs"), gen_tables(&pages)).expect("write code page tables");
    fs::write(out.join("wbxml_tags.rs"), gen_tags(&pages)).expect("write tag constants");
}

fn load_pages(dir: &Path) -> Vec<Page> {
    let mut files: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()))
        .map(|e| e.expect("directory entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "tsv"))
        .collect();
    files.sort();
    let mut pages = BTreeMap::new();
    for file in files {
        let stem = file
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or_else(|| panic!("bad file name {}", file.display()));
        let (num, name) = stem
            .split_once('-')
            .unwrap_or_else(|| panic!("{}: file name must be NN-PageName.tsv", file.display()));
        let number: u8 = num
            .parse()
            .unwrap_or_else(|_| panic!("{}: bad page number {num:?}", file.display()));
        assert!(
            !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric()),
            "{}: bad page name {name:?}",
            file.display()
        );
        let text = fs::read_to_string(&file)
            .unwrap_or_else(|e| panic!("cannot read {}: {e}", file.display()));
        let mut tags: Vec<TagRow> = Vec::new();
        for (lineno, line) in text.lines().enumerate() {
            let line = line.trim_end_matches('\r');
            if line.trim().is_empty() || line.starts_with('#') {
                continue;
            }
            let cols: Vec<&str> = line.split('\t').collect();
            let here = format!("{}:{}", file.display(), lineno + 1);
            assert!(cols.len() == 3, "{here}: expected 3 tab-separated columns");
            let token = cols[0]
                .strip_prefix("0x")
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .unwrap_or_else(|| panic!("{here}: bad token {:?}", cols[0]));
            assert!(
                (0x05..=0x3F).contains(&token),
                "{here}: token 0x{token:02X} outside 0x05..=0x3F"
            );
            let name = cols[1].to_string();
            assert!(
                !name.is_empty()
                    && name.chars().all(|c| c.is_ascii_alphanumeric())
                    && name.starts_with(|c: char| c.is_ascii_alphabetic()),
                "{here}: bad tag name {name:?}"
            );
            assert!(
                tags.iter().all(|t| t.token != token),
                "{here}: duplicate token 0x{token:02X}"
            );
            assert!(
                tags.iter().all(|t| t.name != name),
                "{here}: duplicate tag name {name}"
            );
            tags.push(TagRow {
                token,
                name,
                versions: cols[2].to_string(),
            });
        }
        tags.sort_by_key(|t| t.token);
        let page = Page {
            number,
            name: name.to_string(),
            module: module_name(name),
            tags,
        };
        assert!(
            pages.insert(number, page).is_none(),
            "duplicate code page {number}"
        );
    }
    let pages: Vec<Page> = pages.into_values().collect();
    for (i, p) in pages.iter().enumerate() {
        assert!(
            usize::from(p.number) == i,
            "code pages must be numbered 0..N without gaps (page {i} missing)"
        );
    }
    assert!(!pages.is_empty(), "no code page data found");
    pages
}

/// Module name for a page: snake_case of the page name, except where the
/// established EAS spelling reads better or the name is a Rust keyword.
fn module_name(page: &str) -> String {
    match page {
        "AirSync" => "airsync".into(),
        "AirNotify" => "airnotify".into(),
        "AirSyncBase" => "airsyncbase".into(),
        "Move" => "move_items".into(),
        _ => split_words(page).join("_").to_lowercase(),
    }
}

/// Splits a CamelCase name into words: before an uppercase letter that follows
/// a lowercase letter or digit, and before the last uppercase letter of an
/// uppercase run that is followed by a lowercase letter.
fn split_words(name: &str) -> Vec<String> {
    let chars: Vec<char> = name.chars().collect();
    let mut words = Vec::new();
    let mut cur = String::new();
    for (i, &c) in chars.iter().enumerate() {
        if i > 0 && c.is_ascii_uppercase() {
            let prev = chars[i - 1];
            let next_lower = chars.get(i + 1).is_some_and(|n| n.is_ascii_lowercase());
            let boundary = prev.is_ascii_lowercase()
                || prev.is_ascii_digit()
                || (prev.is_ascii_uppercase() && next_lower);
            if boundary && !cur.is_empty() {
                words.push(std::mem::take(&mut cur));
            }
        }
        cur.push(c);
    }
    if !cur.is_empty() {
        words.push(cur);
    }
    words
}

fn const_name(tag: &str) -> String {
    split_words(tag).join("_").to_uppercase()
}

fn gen_tables(pages: &[Page]) -> String {
    let mut s = String::new();
    s.push_str("// Generated by build.rs from wbxml-codepages/. Do not edit.\n");
    let _ = writeln!(s, "pub(crate) static PAGES: [PageDef; {}] = [", pages.len());
    for p in pages {
        let mut by_token = vec!["None".to_string(); 64];
        let mut versions = vec!["None".to_string(); 64];
        for t in &p.tags {
            by_token[usize::from(t.token)] = format!("Some({:?})", t.name);
            versions[usize::from(t.token)] = format!("Some({:?})", t.versions);
        }
        let mut by_name: Vec<(&str, u8)> =
            p.tags.iter().map(|t| (t.name.as_str(), t.token)).collect();
        by_name.sort();
        let _ = writeln!(s, "    PageDef {{");
        let _ = writeln!(s, "        number: {},", p.number);
        let _ = writeln!(s, "        name: {:?},", p.name);
        let _ = writeln!(s, "        module: {:?},", p.module);
        let _ = writeln!(s, "        by_token: [{}],", by_token.join(", "));
        let _ = writeln!(s, "        versions: [{}],", versions.join(", "));
        let _ = writeln!(s, "        by_name: &[");
        for (n, t) in by_name {
            let _ = writeln!(s, "            ({n:?}, 0x{t:02X}),");
        }
        let _ = writeln!(s, "        ],");
        let _ = writeln!(s, "    }},");
    }
    s.push_str("];\n");
    s
}

fn gen_tags(pages: &[Page]) -> String {
    let mut s = String::new();
    s.push_str("// Generated by build.rs from wbxml-codepages/. Do not edit.\n");
    for p in pages {
        let _ = writeln!(s, "/// Code page {} ({}).", p.number, p.name);
        let _ = writeln!(s, "pub mod {} {{", p.module);
        let _ = writeln!(s, "    use crate::wbxml::Tag;");
        let _ = writeln!(s, "    /// Code page number.");
        let _ = writeln!(s, "    pub const PAGE: u8 = {};", p.number);
        let _ = writeln!(s, "    /// Code page name.");
        let _ = writeln!(s, "    pub const PAGE_NAME: &str = {:?};", p.name);
        // Names are assigned in token order; a name that collides with an
        // earlier one (after case conversion) gets the token appended.
        let mut used: Vec<String> = vec!["PAGE".into(), "PAGE_NAME".into(), "ALL".into()];
        let mut all = Vec::new();
        for t in &p.tags {
            let mut name = const_name(&t.name);
            if used.contains(&name) {
                name = format!("{name}_{:02X}", t.token);
            }
            used.push(name.clone());
            let _ = writeln!(
                s,
                "    /// `{}` (token 0x{:02X}; versions: {}).",
                t.name, t.token, t.versions
            );
            let _ = writeln!(
                s,
                "    pub const {name}: Tag = Tag::new({}, 0x{:02X});",
                p.number, t.token
            );
            all.push(name);
        }
        let _ = writeln!(s, "    /// Every tag of this page, in token order.");
        let _ = writeln!(s, "    pub const ALL: &[Tag] = &[{}];", all.join(", "));
        let _ = writeln!(s, "}}");
    }
    s
}
