//! `airsyncbase:Body` (MS-ASAIRS 2.2.2.9): choosing the body type,
//! converting between plain text and HTML, truncation and preview.
//!
//! Choice, in this order:
//! 1. MIME (type 4) when `MIMESupport` is 2, or 1 and the message is S/MIME;
//!    truncated by the type-4 `BodyPreference`'s `TruncationSize` if there is
//!    one, else by `MIMETruncation`.
//! 2. Else the first `BodyPreference` (request order) whose type can be sent:
//!    1 plain, 2 HTML, 4 MIME (skipped when `MIMESupport` is 1 and the
//!    message is not S/MIME: the client asked for MIME for S/MIME only);
//!    3 RTF is never sent.
//! 3. Else (only RTF or unknown types asked): plain text with the first
//!    preference's truncation; no preference at all: plain text cut at
//!    [`DEFAULT_PLAIN_TRUNCATION`].
//!
//! Plain text of an HTML-only message is derived from the HTML, HTML of a
//! plain-only message is the escaped text with `<br>` line breaks. Every body
//! is UTF-8 (`mail-parser` converts charsets). The MIME body is the raw
//! message as text; bytes that are not UTF-8 are replaced with U+FFFD
//! (`String::from_utf8_lossy`), as a WBXML string must be UTF-8.
//!
//! Truncation counts bytes of that UTF-8 text and cuts on a character
//! boundary at or below the limit; `Truncated` is 1 when cut and
//! `EstimatedDataSize` is the full size in bytes. With `AllOrNone` a body
//! over the limit is sent without `Data` (and `Truncated` 1).
//! `Preview` (14.0+) is the first characters of the plain text with
//! whitespace collapsed, at most [`MAX_PREVIEW_CHARS`].

use std::borrow::Cow;

use mail_parser::decoders::html::html_to_text;
use mail_parser::PartType;

use super::headers::{html_body_ids, part, tag_in_version, text_body_ids, Parsed};
use super::{
    BodyOptions, BODY_TYPE_HTML, BODY_TYPE_MIME, BODY_TYPE_PLAIN, DEFAULT_PLAIN_TRUNCATION,
    MAX_PREVIEW_CHARS,
};
use crate::wbxml::tags::airsyncbase;
use crate::wbxml::ElementSink;

/// The body the server sends and its limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Choice {
    pub body_type: u8,
    pub truncation: Option<u32>,
    pub all_or_none: bool,
    pub preview: Option<u32>,
}

/// Picks the body type and limits for a message (see the module docs).
pub(crate) fn choose(p: &Parsed<'_>, opts: &BodyOptions) -> Choice {
    let smime = p.smime().is_smime();
    if opts.mime_support == 2 || (opts.mime_support == 1 && smime) {
        let pref = opts
            .preferences
            .iter()
            .find(|x| x.body_type == BODY_TYPE_MIME);
        return Choice {
            body_type: BODY_TYPE_MIME,
            truncation: pref
                .and_then(|x| x.truncation_size)
                .or(opts.mime_truncation),
            all_or_none: pref.is_some_and(|x| x.all_or_none),
            preview: pref.and_then(|x| x.preview),
        };
    }
    let usable = |t: u8| match t {
        BODY_TYPE_PLAIN | BODY_TYPE_HTML => true,
        BODY_TYPE_MIME => opts.mime_support != 1 || smime,
        _ => false,
    };
    if let Some(pref) = opts.preferences.iter().find(|x| usable(x.body_type)) {
        let truncation = if pref.body_type == BODY_TYPE_MIME {
            pref.truncation_size.or(opts.mime_truncation)
        } else {
            pref.truncation_size
        };
        return Choice {
            body_type: pref.body_type,
            truncation,
            all_or_none: pref.all_or_none,
            preview: pref.preview,
        };
    }
    match opts.preferences.first() {
        Some(pref) => Choice {
            body_type: BODY_TYPE_PLAIN,
            truncation: pref.truncation_size,
            all_or_none: pref.all_or_none,
            preview: pref.preview,
        },
        None => Choice {
            body_type: BODY_TYPE_PLAIN,
            truncation: Some(DEFAULT_PLAIN_TRUNCATION),
            all_or_none: false,
            preview: None,
        },
    }
}

/// Writes the content of the `airsyncbase:Body` element for `opts`.
pub(crate) fn write_body<S: ElementSink>(out: &mut S, p: &Parsed<'_>, opts: &BodyOptions) {
    let choice = choose(p, opts);
    let text: Cow<'_, str> = match choice.body_type {
        BODY_TYPE_HTML => Cow::Owned(html_body(p)),
        BODY_TYPE_MIME => String::from_utf8_lossy(p.raw),
        _ => Cow::Owned(plain_body(p)),
    };
    let full = text.len();
    let limit = choice
        .truncation
        .and_then(|t| usize::try_from(t).ok())
        .unwrap_or(usize::MAX);
    out.text(airsyncbase::TYPE, &choice.body_type.to_string());
    out.text(airsyncbase::ESTIMATED_DATA_SIZE, &full.to_string());
    if full > limit {
        out.text(airsyncbase::TRUNCATED, "1");
        if !choice.all_or_none {
            out.text(airsyncbase::DATA, truncate_utf8(&text, limit));
        }
    } else {
        out.text(airsyncbase::DATA, text.as_ref());
    }
    if let Some(n) = choice.preview {
        if n > 0 && tag_in_version(airsyncbase::PREVIEW, opts.version) {
            let plain = if choice.body_type == BODY_TYPE_PLAIN {
                text
            } else {
                Cow::Owned(plain_body(p))
            };
            let pv = preview(&plain, n.min(MAX_PREVIEW_CHARS));
            if !pv.is_empty() {
                out.text(airsyncbase::PREVIEW, &pv);
            }
        }
    }
}

/// `airsyncbase:NativeBodyType`: 2 when the message has an HTML part, else 1.
pub(crate) fn native_body_type(p: &Parsed<'_>) -> u8 {
    if p.has_html() {
        BODY_TYPE_HTML
    } else {
        BODY_TYPE_PLAIN
    }
}

/// The plain-text body: every text body part (HTML parts converted to text)
/// joined with a newline. An unparsable message is its raw bytes as text.
pub(crate) fn plain_body(p: &Parsed<'_>) -> String {
    let Some(m) = p.msg.as_ref() else {
        return String::from_utf8_lossy(p.raw).into_owned();
    };
    let mut out: Vec<Cow<'_, str>> = Vec::new();
    for &id in &text_body_ids(m) {
        match part(m, id).map(|x| &x.body) {
            Some(PartType::Text(t)) => out.push(Cow::Borrowed(t.as_ref())),
            Some(PartType::Html(h)) => out.push(Cow::Owned(html_to_text(h))),
            _ => {}
        }
    }
    out.join("\n")
}

/// The HTML body: every HTML body part joined; text parts among them are
/// escaped. A message without any HTML part gets its plain text as HTML.
pub(crate) fn html_body(p: &Parsed<'_>) -> String {
    let Some(m) = p.msg.as_ref() else {
        return text_to_html(&plain_body(p));
    };
    if !p.has_html() {
        return text_to_html(&plain_body(p));
    }
    let mut out = String::new();
    for &id in &html_body_ids(m) {
        match part(m, id).map(|x| &x.body) {
            Some(PartType::Html(h)) => out.push_str(h),
            Some(PartType::Text(t)) => {
                out.push_str("<div>");
                escape_html_into(t, &mut out);
                out.push_str("</div>");
            }
            _ => {}
        }
    }
    out
}

/// Plain text as an HTML document: escaped, one `<br>` per line break.
pub(crate) fn text_to_html(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + text.len() / 8 + 160);
    out.push_str(
        "<html><head><meta http-equiv=\"Content-Type\" content=\"text/html; charset=utf-8\">\
         </head><body>",
    );
    escape_html_into(text, &mut out);
    out.push_str("</body></html>");
    out
}

/// Escapes `& < > "`, turns CRLF / LF into `<br>` and keeps runs of spaces.
fn escape_html_into(text: &str, out: &mut String) {
    let mut prev_space = false;
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        let mut space = false;
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\r' => {
                if chars.peek() != Some(&'\n') {
                    out.push_str("<br>\n");
                }
            }
            '\n' => out.push_str("<br>\n"),
            ' ' => {
                if prev_space {
                    out.push_str("&nbsp;");
                } else {
                    out.push(' ');
                }
                space = true;
            }
            '\t' => {
                out.push_str("&nbsp;&nbsp;&nbsp;&nbsp;");
            }
            c => out.push(c),
        }
        prev_space = space;
    }
}

/// The longest prefix of `s` of at most `max` bytes that ends on a character
/// boundary.
pub(crate) fn truncate_utf8(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut i = max;
    while i > 0 && !s.is_char_boundary(i) {
        i -= 1;
    }
    s.get(..i).unwrap_or("")
}

/// The first `max_chars` characters of `text` with every run of whitespace
/// (and control characters) collapsed into one space, trimmed.
pub(crate) fn preview(text: &str, max_chars: u32) -> String {
    let max = usize::try_from(max_chars).unwrap_or(usize::MAX);
    let mut out = String::new();
    let mut count = 0usize;
    let mut space = false;
    for c in text.chars() {
        if count >= max {
            break;
        }
        if c.is_whitespace() || c.is_control() {
            space = true;
            continue;
        }
        if space && count > 0 {
            out.push(' ');
            count += 1;
            if count >= max {
                break;
            }
        }
        space = false;
        out.push(c);
        count += 1;
    }
    out.truncate(out.trim_end().len());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truncation_on_char_boundary() {
        assert_eq!(truncate_utf8("äöü", 3), "ä");
        assert_eq!(truncate_utf8("äöü", 4), "äö");
        assert_eq!(truncate_utf8("äöü", 1), "");
        assert_eq!(truncate_utf8("abc", 10), "abc");
        assert_eq!(truncate_utf8("日本", 5), "日");
    }

    #[test]
    fn preview_collapses_whitespace() {
        assert_eq!(preview("  Hello\r\n\r\n  world\t!", 255), "Hello world !");
        assert_eq!(preview("abc def", 4), "abc");
        assert_eq!(preview("äöü", 2), "äö");
        assert_eq!(preview("", 10), "");
    }

    #[test]
    fn html_escaping() {
        let h = text_to_html("a < b & \"c\"\r\nnext  line");
        assert!(h.contains("a &lt; b &amp; &quot;c&quot;<br>\nnext &nbsp;line"));
        assert!(h.starts_with("<html>"));
    }
}
