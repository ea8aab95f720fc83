//! Find (MS-ASCMD 2.2.1.2, protocol 16.1): the typed request and response.
//!
//! A mailbox Find is `ExecuteSearch/MailBoxSearchCriterion` with a `Query` holding `FreeText`,
//! `airsync:Class` and `airsync:CollectionId`, and `Options` with `Range` (which must start at
//! 0) and `DeepTraversal`. A GAL Find (`GALSearchCriterion`) names a directory this gateway
//! does not have.

use crate::wbxml::tags::{
    airsync as a, airsyncbase as b, email, email2, find as f, item_operations as io,
};
use crate::wbxml::Element;

use super::search::{parse_range, words, MAX_FREE_TEXT, MAX_WORDS};

/// Find status values (MS-ASCMD 2.2.3.177.2).
pub mod status {
    pub const SUCCESS: u32 = 1;
    /// The request failed to validate.
    pub const INVALID_REQUEST: u32 = 2;
    /// The folder hierarchy is out of date (an unknown CollectionId).
    pub const FOLDER_SYNC_REQUIRED: u32 = 3;
    /// The requested Range does not begin with 0.
    pub const START_WITH_RANGE_ZERO: u32 = 4;
}

/// Longest Preview, in characters (MS-ASCMD 2.2.3.137).
pub const PREVIEW_CHARS: usize = 255;

/// A decoded Find request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FindRequest {
    Mailbox(MailboxFind),
    /// A GAL search (with or without Picture options).
    Gal,
}

/// A mailbox Find.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MailboxFind {
    pub search_id: String,
    pub words: Vec<String>,
    pub class: Option<String>,
    pub collection_id: Option<String>,
    /// Zero-based, inclusive; Range not starting at 0 is refused before this is built.
    pub range: (u32, u32),
    pub deep_traversal: bool,
}

impl MailboxFind {
    /// Whether the search can match mail at all (Class Email, or no Class).
    pub fn wants_email(&self) -> bool {
        self.class
            .as_deref()
            .is_none_or(|c| c.eq_ignore_ascii_case("Email"))
    }
}

/// Why a Find request is refused: the status, and whether it belongs in the Response
/// element (Range) or the top-level Find element.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejected {
    pub status: u32,
    pub reason: &'static str,
}

fn invalid(reason: &'static str) -> Rejected {
    Rejected {
        status: status::INVALID_REQUEST,
        reason,
    }
}

/// The Range when the request names none.
pub const DEFAULT_RANGE: (u32, u32) = (0, 99);

/// Decodes a Find request.
pub fn parse(root: &Element) -> Result<FindRequest, Rejected> {
    if root.tag != f::FIND {
        return Err(invalid("root element is not Find"));
    }
    // SearchId is required (MS-ASCMD 2.2.3.158).
    let search_id = root
        .text_of(f::SEARCH_ID)
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .ok_or(invalid("no SearchId"))?;
    let exec = root
        .first(f::EXECUTE_SEARCH)
        .ok_or(invalid("no ExecuteSearch"))?;
    if exec.first(f::GAL_SEARCH_CRITERION).is_some() {
        return Ok(FindRequest::Gal);
    }
    let crit = exec
        .first(f::MAIL_BOX_SEARCH_CRITERION)
        .ok_or(invalid("no search criterion"))?;
    let query = crit.first(f::QUERY).ok_or(invalid("no Query"))?;
    let text = query
        .first(f::FREE_TEXT)
        .and_then(Element::text_concat)
        .unwrap_or_default();
    if text.len() > MAX_FREE_TEXT {
        return Err(invalid("FreeText too long"));
    }
    let words = words(&text);
    if words.is_empty() {
        return Err(invalid("empty FreeText"));
    }
    if words.len() > MAX_WORDS {
        return Err(invalid("too many words"));
    }
    let mut req = MailboxFind {
        search_id,
        words,
        class: query.text_of(a::CLASS).map(|c| c.trim().to_string()),
        collection_id: query
            .text_of(a::COLLECTION_ID)
            .map(|c| c.trim().to_string())
            .filter(|c| !c.is_empty()),
        range: DEFAULT_RANGE,
        deep_traversal: false,
    };
    if let Some(o) = crit.first(f::OPTIONS) {
        if let Some(r) = o.first(f::RANGE) {
            let range = parse_range(r.text().unwrap_or("")).ok_or(invalid("bad Range"))?;
            if range.0 != 0 {
                return Err(Rejected {
                    status: status::START_WITH_RANGE_ZERO,
                    reason: "Range does not start at 0",
                });
            }
            req.range = range;
        }
        req.deep_traversal = o.first(f::DEEP_TRAVERSAL).is_some();
    }
    Ok(FindRequest::Mailbox(req))
}

/// One result: the mail's ServerId and collection, and its Find properties.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FindResult {
    pub server_id: String,
    pub collection_id: String,
    pub properties: Element,
}

/// The Find properties of a mail from its ApplicationData (as built for Sync): Subject,
/// DateReceived, DisplayTo, DisplayCc, Importance, Read, IsDraft, Preview, HasAttachments,
/// From. `display_cc` are the Cc display names; `preview` the plain text body, cut here.
pub fn properties(application_data: &Element, display_cc: &str, preview: &str) -> Element {
    let mut p = Element::new(f::PROPERTIES);
    let copy = |p: &mut Element, tag| {
        if let Some(e) = application_data.first(tag) {
            p.push(e.clone());
        }
    };
    copy(&mut p, email::SUBJECT);
    copy(&mut p, email::DATE_RECEIVED);
    copy(&mut p, email::DISPLAY_TO);
    if !display_cc.is_empty() {
        p.push(Element::with_text(f::DISPLAY_CC, display_cc));
    }
    copy(&mut p, email::IMPORTANCE);
    copy(&mut p, email::READ);
    copy(&mut p, email2::IS_DRAFT);
    let preview = preview_text(preview);
    if !preview.is_empty() {
        p.push(Element::with_text(f::PREVIEW, preview));
    }
    let has_attachments = application_data.first(b::ATTACHMENTS).is_some();
    p.push(Element::with_text(
        f::HAS_ATTACHMENTS,
        if has_attachments { "1" } else { "0" },
    ));
    copy(&mut p, email::FROM);
    p
}

/// Body text as a one-line preview of at most [`PREVIEW_CHARS`] characters.
pub fn preview_text(body: &str) -> String {
    body.split_whitespace()
        .flat_map(|w| [" ", w])
        .skip(1)
        .flat_map(str::chars)
        .take(PREVIEW_CHARS)
        .collect()
}

/// Display names of a formatted address list (`"Ann" <a@x>, b@y` -> `Ann; b@y`).
pub fn display_names(list: &str) -> String {
    let mut items = Vec::new();
    let (mut cur, mut quoted, mut angle) = (String::new(), false, false);
    for c in list.chars() {
        match c {
            '"' => quoted = !quoted,
            '<' if !quoted => angle = true,
            '>' if !quoted => angle = false,
            ',' if !quoted && !angle => {
                items.push(std::mem::take(&mut cur));
                continue;
            }
            _ => {}
        }
        cur.push(c);
    }
    items.push(cur);
    items
        .iter()
        .filter_map(|item| {
            let item = item.trim();
            let name = match item.split_once('<') {
                Some((n, addr)) => {
                    let n = n.trim().trim_matches('"').trim();
                    if n.is_empty() {
                        addr.trim_end_matches('>').trim()
                    } else {
                        n
                    }
                }
                None => item.trim_matches('"'),
            };
            (!name.is_empty()).then(|| name.to_string())
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// A Find response with results: Store `Mailbox`, Status, the results, Range and Total.
pub fn response(results: &[FindResult], range: Option<(usize, usize)>, total: usize) -> Element {
    let mut resp = Element::new(f::RESPONSE)
        .text_child(io::STORE, "Mailbox")
        .text_child(f::STATUS, status::SUCCESS.to_string());
    for r in results {
        resp.push(
            Element::new(f::RESULT)
                .text_child(a::CLASS, "Email")
                .text_child(a::SERVER_ID, r.server_id.clone())
                .text_child(a::COLLECTION_ID, r.collection_id.clone())
                .child(r.properties.clone()),
        );
    }
    if let Some((first, last)) = range.filter(|_| !results.is_empty()) {
        resp.push(Element::with_text(f::RANGE, format!("{first}-{last}")));
    }
    resp.push(Element::with_text(f::TOTAL, total.to_string()));
    Element::new(f::FIND)
        .text_child(f::STATUS, status::SUCCESS.to_string())
        .child(resp)
}

/// A response whose Response element carries a status (Range refused, GAL not available).
pub fn response_status(store: &str, code: u32) -> Element {
    Element::new(f::FIND)
        .text_child(f::STATUS, status::SUCCESS.to_string())
        .child(
            Element::new(f::RESPONSE)
                .text_child(io::STORE, store)
                .text_child(f::STATUS, code.to_string()),
        )
}

/// A response with only the top-level status (malformed request, FolderSync required).
pub fn top_status(code: u32) -> Element {
    Element::new(f::FIND).text_child(f::STATUS, code.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn find(query: Element, options: Option<Element>) -> Element {
        let mut crit = Element::new(f::MAIL_BOX_SEARCH_CRITERION).child(query);
        if let Some(o) = options {
            crit.push(o);
        }
        Element::new(f::FIND)
            .text_child(f::SEARCH_ID, "8f1a0c52-9e8c-4e0e-9a4e-5a1c8c0f0b11")
            .child(Element::new(f::EXECUTE_SEARCH).child(crit))
    }

    #[test]
    fn parses_mailbox_and_gal() {
        let req = find(
            Element::new(f::QUERY)
                .text_child(f::FREE_TEXT, "budget 2026")
                .text_child(a::CLASS, "Email")
                .text_child(a::COLLECTION_ID, "5"),
            Some(
                Element::new(f::OPTIONS)
                    .text_child(f::RANGE, "0-24")
                    .child(Element::new(f::DEEP_TRAVERSAL)),
            ),
        );
        let FindRequest::Mailbox(m) = parse(&req).unwrap() else {
            panic!("not a mailbox find")
        };
        assert_eq!(m.words, vec!["budget", "2026"]);
        assert_eq!(m.collection_id.as_deref(), Some("5"));
        assert_eq!(m.range, (0, 24));
        assert!(m.deep_traversal && m.wants_email());
        let gal = Element::new(f::FIND).text_child(f::SEARCH_ID, "1").child(
            Element::new(f::EXECUTE_SEARCH)
                .child(Element::new(f::GAL_SEARCH_CRITERION).text_child(f::QUERY, "anna")),
        );
        assert_eq!(parse(&gal), Ok(FindRequest::Gal));
    }

    #[test]
    fn rejects() {
        let q = || Element::new(f::QUERY).text_child(f::FREE_TEXT, "x");
        let r = parse(&find(
            q(),
            Some(Element::new(f::OPTIONS).text_child(f::RANGE, "10-19")),
        ));
        assert_eq!(r.unwrap_err().status, status::START_WITH_RANGE_ZERO);
        let r = parse(&find(
            q(),
            Some(Element::new(f::OPTIONS).text_child(f::RANGE, "x")),
        ));
        assert_eq!(r.unwrap_err().status, status::INVALID_REQUEST);
        let r = parse(&find(Element::new(f::QUERY), None));
        assert_eq!(r.unwrap_err().status, status::INVALID_REQUEST);
        assert_eq!(
            parse(&Element::new(f::FIND)).unwrap_err().status,
            status::INVALID_REQUEST
        );
    }

    #[test]
    fn properties_and_helpers() {
        let ad = Element::new(a::APPLICATION_DATA)
            .text_child(email::TO, "\"Bo\" <bo@x>")
            .text_child(email::FROM, "\"Ann\" <ann@x>")
            .text_child(email::SUBJECT, "Hi")
            .text_child(email::DATE_RECEIVED, "2020-01-01T10:00:00.000Z")
            .text_child(email::DISPLAY_TO, "Bo")
            .text_child(email::IMPORTANCE, "1")
            .text_child(email::READ, "0")
            .child(Element::new(b::ATTACHMENTS));
        let p = properties(&ad, "Cy; d@x", "  line one\r\n line   two ");
        let tags: Vec<_> = p.elements().map(|c| c.tag).collect();
        assert_eq!(
            tags,
            vec![
                email::SUBJECT,
                email::DATE_RECEIVED,
                email::DISPLAY_TO,
                f::DISPLAY_CC,
                email::IMPORTANCE,
                email::READ,
                f::PREVIEW,
                f::HAS_ATTACHMENTS,
                email::FROM
            ]
        );
        assert_eq!(p.text_of(f::PREVIEW), Some("line one line two"));
        assert_eq!(p.text_of(f::HAS_ATTACHMENTS), Some("1"));
        assert_eq!(
            preview_text(&"é".repeat(400)).chars().count(),
            PREVIEW_CHARS
        );
        assert_eq!(
            display_names("\"Doe, Jane\" <j@x>, b@y, <c@z>"),
            "Doe, Jane; b@y; c@z"
        );
        assert_eq!(display_names(""), "");
        let e = response(&[], Some((0, 9)), 0);
        let r = e.first(f::RESPONSE).unwrap();
        let tags: Vec<_> = r.elements().map(|c| c.tag).collect();
        assert_eq!(tags, vec![io::STORE, f::STATUS, f::TOTAL]);
    }
}
