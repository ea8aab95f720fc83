//! `airsync:ApplicationData` of the Email class (MS-ASEMAIL 2.2.2), flag
//! changes and the header summary.

use std::borrow::Cow;

use mail_parser::parsers::fields::thread::thread_name;
use mail_parser::{HeaderName, PartType};

use super::attachments;
use super::body;
use super::headers::{
    self, conversation_id, conversation_index, display_list, format_date, format_list,
    prune_for_version, Parsed,
};
use super::slim;
use super::{
    BodyOptions, ItemInfo, MailFlags, OmittedParts, Summary, BODY_TYPE_HTML, BODY_TYPE_MIME,
};
use crate::eas::ProtocolVersion;
use crate::wbxml::tags::{airsync, airsyncbase, email, email2};
use crate::wbxml::Element;

/// `email:InternetCPID`: bodies are always sent as UTF-8.
pub const INTERNET_CPID_UTF8: &str = "65001";
/// `email:ContentClass` of a mail message.
pub const CONTENT_CLASS_MESSAGE: &str = "urn:content-classes:message";
/// `email:FlagType` of a flagged message.
pub const FLAG_TYPE_FOLLOW_UP: &str = "Flag for follow up";
/// `email:Status` (Flag) of an active flag.
pub const FLAG_STATUS_ACTIVE: &str = "2";
/// `email2:LastVerbExecuted`: reply to sender.
pub const LAST_VERB_REPLY_TO_SENDER: &str = "1";
/// `email2:LastVerbExecuted`: forward.
pub const LAST_VERB_FORWARD: &str = "3";

/// The `ApplicationData` element of a Sync Add / Fetch or ItemOperations
/// Fetch: the Email fields a phone shows, the attachments and the body
/// chosen by `opts`.
///
/// Elements, in this order: To, Cc, From, Subject, ReplyTo (each address
/// field only when it has addresses), DateReceived (INTERNALDATE),
/// DisplayTo, ThreadTopic, Importance, Read, airsyncbase:Attachments (when
/// there are any), airsyncbase:Body, MessageClass, InternetCPID (65001),
/// Flag, ContentClass, airsyncbase:NativeBodyType; from 14.0
/// email2:ConversationId, email2:ConversationIndex, Categories (when there
/// are keywords), email2:LastVerbExecuted (from `\Answered` / `$Forwarded`),
/// email2:Sender (when `Sender:` differs from `From:`); from 16.0 email2:Bcc
/// (drafts) and email2:IsDraft.
pub fn application_data(
    raw: &[u8],
    flags: &MailFlags,
    info: &ItemInfo<'_>,
    opts: &BodyOptions,
) -> Element {
    prepared(raw, None, flags, info, opts)
        .unwrap_or_else(|| build(&headers::parse(raw), &[], flags, info, opts))
}

/// The item from the message prepared for the parser (`slim.rs`: bodies the item does not
/// show left out, texts decoded in place), which gives the same item faster. Parts a server
/// already sent without their bodies (`read`) are counted in. `None` when the message cannot
/// be prepared, or the prepared copy does not parse into the shape it promised.
fn prepared(
    raw: &[u8],
    read: Option<&OmittedParts<'_>>,
    flags: &MailFlags,
    info: &ItemInfo<'_>,
    opts: &BodyOptions,
) -> Option<Element> {
    with_scratch(|buf, side| {
        let s = slim::slim(raw, opts, buf, side)?;
        let mut sizes = s.omitted;
        if let Some(read) = read {
            if read.parts != s.parts {
                return None;
            }
            sizes.extend_from_slice(read.sizes);
        }
        // What the parser would have made of these bytes; valid UTF-8 is checked the fast way
        // (`simdutf8`: the texts are the largest bytes of most mails).
        let supplied: Vec<Supplied<'_>> = s
            .supplied
            .iter()
            .map(|(i, r)| {
                let bytes = side.get(r.clone()).unwrap_or_default();
                let text = match simdutf8::basic::from_utf8(bytes) {
                    Ok(t) => Cow::Borrowed(t),
                    Err(_) => String::from_utf8_lossy(bytes),
                };
                Supplied {
                    index: *i,
                    text,
                    size: bytes.len() as u64,
                }
            })
            .collect();
        let shape = Shape {
            parts: s.parts,
            sizes: &sizes,
            texts: &s.texts,
            decoded: &s.decoded,
            supplied: &supplied,
        };
        build_if_shaped(buf, &shape, flags, info, opts)
    })
}

/// Runs `f` with this thread's buffers for prepared messages (the copy, the texts moved out
/// of it), so that converting a page of mails does not allocate them per mail. A buffer grown
/// past 1 MiB is not kept.
fn with_scratch<T>(f: impl FnOnce(&mut Vec<u8>, &mut Vec<u8>) -> Option<T>) -> Option<T> {
    type Buffers = (Vec<u8>, Vec<u8>);
    thread_local! {
        static SCRATCH: std::cell::RefCell<Buffers> =
            const { std::cell::RefCell::new((Vec::new(), Vec::new())) };
    }
    SCRATCH.with(|cell| match cell.try_borrow_mut() {
        Ok(mut bufs) => {
            let (buf, side) = &mut *bufs;
            let out = f(buf, side);
            for b in [buf, side] {
                if b.capacity() > 1 << 20 {
                    *b = Vec::new();
                }
            }
            out
        }
        Err(_) => f(&mut Vec::new(), &mut Vec::new()),
    })
}

/// [`application_data`] from the whole message, never slimmed: the reference the slimmed
/// path is checked against.
#[cfg(test)]
pub(crate) fn application_data_whole(
    raw: &[u8],
    flags: &MailFlags,
    info: &ItemInfo<'_>,
    opts: &BodyOptions,
) -> Element {
    build(&headers::parse(raw), &[], flags, info, opts)
}

/// The `email2:ConversationId` [`application_data`] gives this message (its header is
/// enough), without building the rest of the item.
pub fn conversation_id_of(raw: &[u8], internal_date: i64) -> [u8; 16] {
    let p = headers::parse(raw);
    let topic = thread_name(&p.subject()).to_string();
    conversation_id(&p, &topic, p.date().unwrap_or(internal_date))
}

/// [`application_data`] of a message read without some parts' bodies (see
/// [`OmittedParts`]): the same element the whole message gives. `None` when
/// the parsed message does not have the described shape (then the whole
/// message is needed).
pub fn application_data_partial(
    raw: &[u8],
    omitted: &OmittedParts<'_>,
    flags: &MailFlags,
    info: &ItemInfo<'_>,
    opts: &BodyOptions,
) -> Option<Element> {
    prepared(raw, Some(omitted), flags, info, opts).or_else(|| {
        let shape = Shape {
            parts: omitted.parts,
            sizes: omitted.sizes,
            texts: &[],
            decoded: &[],
            supplied: &[],
        };
        build_if_shaped(raw, &shape, flags, info, opts)
    })
}

/// What a message given to the parser was read or prepared without.
struct Shape<'a> {
    /// Number of parts (a depth-first, pre-order walk, the root included).
    parts: usize,
    /// (index, decoded size) of each part whose body is empty in the bytes given.
    sizes: &'a [(usize, u64)],
    /// Plain-text alternatives whose bodies are empty because the HTML body does not show them.
    texts: &'a [usize],
    /// Text parts decoded in place from quoted-printable; none of them may be an attachment
    /// (an attachment's bytes are decoded from the original by other rules).
    decoded: &'a [usize],
    /// Text parts whose bodies are empty in the bytes given, with the text each one has.
    supplied: &'a [Supplied<'a>],
}

/// The text of a part left empty in the bytes given to the parser.
struct Supplied<'a> {
    index: usize,
    /// As the parser would have converted the bytes.
    text: Cow<'a, str>,
    /// The decoded bytes' length: the part's size should it be an attachment.
    size: u64,
}

/// Puts each supplied text into its part, which must be a text part parsed with an empty body;
/// `None` when one is not.
fn supply_texts<'a>(p: &mut headers::Parsed<'a>, supplied: &'a [Supplied<'a>]) -> Option<()> {
    let m = p.msg.as_mut()?;
    for s in supplied {
        match m.parts.get_mut(s.index).map(|x| &mut x.body) {
            Some(PartType::Text(t)) | Some(PartType::Html(t)) if t.is_empty() => {
                *t = Cow::Borrowed(s.text.as_ref());
            }
            _ => return None,
        }
    }
    Some(())
}

/// The item of `raw` when it parses into `shape`, else `None`.
fn build_if_shaped(
    raw: &[u8],
    shape: &Shape<'_>,
    flags: &MailFlags,
    info: &ItemInfo<'_>,
    opts: &BodyOptions,
) -> Option<Element> {
    let mut p = headers::parse(raw);
    supply_texts(&mut p, shape.supplied)?;
    let m = p.msg.as_ref()?;
    let choice = body::choose(&p, opts);
    if m.parts.len() != shape.parts || choice.body_type == BODY_TYPE_MIME {
        return None;
    }
    for (i, _) in shape.sizes {
        match m.parts.get(*i).map(|x| &x.body) {
            Some(PartType::Binary(b)) | Some(PartType::InlineBinary(b)) if b.is_empty() => {}
            _ => return None,
        }
    }
    if !shape.decoded.is_empty()
        && attachments::list(&p)
            .iter()
            .any(|a| shape.decoded.contains(&a.part_index))
    {
        return None;
    }
    if !shape.texts.is_empty() {
        // Only an HTML body without a preview may do without plain-text alternatives, and
        // only when none of them is part of that HTML body.
        if choice.body_type != BODY_TYPE_HTML || choice.preview.unwrap_or(0) > 0 || !p.has_html() {
            return None;
        }
        let html = headers::html_body_ids(m);
        for &i in shape.texts {
            match m.parts.get(i).map(|x| &x.body) {
                Some(PartType::Text(t)) if t.is_empty() => {}
                _ => return None,
            }
            if u32::try_from(i).map_or(true, |i| html.contains(&i)) {
                return None;
            }
        }
    }
    if shape.supplied.is_empty() {
        return Some(build(&p, shape.sizes, flags, info, opts));
    }
    let mut sizes = shape.sizes.to_vec();
    sizes.extend(shape.supplied.iter().map(|s| (s.index, s.size)));
    Some(build(&p, &sizes, flags, info, opts))
}

fn build(
    p: &Parsed<'_>,
    sizes: &[(usize, u64)],
    flags: &MailFlags,
    info: &ItemInfo<'_>,
    opts: &BodyOptions,
) -> Element {
    let v = opts.version;
    let mut ad = Element::new(airsync::APPLICATION_DATA);

    let to = p.addresses(HeaderName::To);
    let cc = p.addresses(HeaderName::Cc);
    let from = p.addresses(HeaderName::From);
    let reply_to = p.addresses(HeaderName::ReplyTo);
    let subject = p.subject();

    push_nonempty(&mut ad, email::TO, format_list(&to));
    push_nonempty(&mut ad, email::CC, format_list(&cc));
    push_nonempty(&mut ad, email::FROM, format_list(&from));
    ad.push(Element::with_text(email::SUBJECT, subject.as_str()));
    push_nonempty(&mut ad, email::REPLY_TO, format_list(&reply_to));
    ad.push(Element::with_text(
        email::DATE_RECEIVED,
        format_date(info.internal_date),
    ));
    push_nonempty(&mut ad, email::DISPLAY_TO, display_list(&to));
    let topic = thread_name(&subject).to_string();
    ad.push(Element::with_text(email::THREAD_TOPIC, topic.as_str()));
    ad.push(Element::with_text(
        email::IMPORTANCE,
        p.importance().to_string(),
    ));
    ad.push(read_element(flags));

    let atts = attachments_element(p, sizes, info);
    if let Some(a) = atts {
        ad.push(a);
    }
    ad.push(body::body_element(p, opts));

    ad.push(Element::with_text(
        email::MESSAGE_CLASS,
        p.smime().message_class(),
    ));
    ad.push(Element::with_text(email::INTERNET_CPID, INTERNET_CPID_UTF8));
    ad.push(flag_element(flags));
    ad.push(Element::with_text(
        email::CONTENT_CLASS,
        CONTENT_CLASS_MESSAGE,
    ));
    ad.push(Element::with_text(
        airsyncbase::NATIVE_BODY_TYPE,
        body::native_body_type(p).to_string(),
    ));

    if v >= ProtocolVersion::V14_0 {
        let sent = p.date().unwrap_or(info.internal_date);
        ad.push(Element::with_opaque(
            email2::CONVERSATION_ID,
            conversation_id(p, &topic, sent).to_vec().into(),
        ));
        ad.push(Element::with_opaque(
            email2::CONVERSATION_INDEX,
            conversation_index(sent).to_vec().into(),
        ));
        if let Some(c) = categories_element(flags, false) {
            ad.push(c);
        }
        if let Some(l) = last_verb_element(flags) {
            ad.push(l);
        }
        let sender = p.addresses(HeaderName::Sender);
        if !sender.is_empty() && sender != from {
            push_nonempty(&mut ad, email2::SENDER, format_list(&sender));
        }
    }
    if v >= ProtocolVersion::V16_0 {
        let draft = info.in_drafts || flags.draft;
        if draft {
            let bcc = p.addresses(HeaderName::Bcc);
            push_nonempty(&mut ad, email2::BCC, format_list(&bcc));
        }
        ad.push(Element::with_text(
            email2::IS_DRAFT,
            if draft { "1" } else { "0" },
        ));
    }
    prune_for_version(&mut ad, v);
    ad
}

/// The `ApplicationData` of a Sync Change when only IMAP flags changed:
/// Read, Flag (empty when not flagged, which clears the flag on the device),
/// and from 14.0 Categories (empty when there are none, which clears them)
/// and LastVerbExecuted (when answered or forwarded).
pub fn flag_change(flags: &MailFlags, version: ProtocolVersion) -> Element {
    let mut ad = Element::new(airsync::APPLICATION_DATA);
    ad.push(read_element(flags));
    ad.push(flag_element(flags));
    if version >= ProtocolVersion::V14_0 {
        if let Some(c) = categories_element(flags, true) {
            ad.push(c);
        }
        if let Some(l) = last_verb_element(flags) {
            ad.push(l);
        }
    }
    prune_for_version(&mut ad, version);
    ad
}

/// Header fields needed by SmartReply / SmartForward and Search.
pub fn summary(raw: &[u8]) -> Summary {
    let p = headers::parse(raw);
    Summary {
        subject: p.subject(),
        from: format_list(&p.addresses(HeaderName::From)),
        to: format_list(&p.addresses(HeaderName::To)),
        cc: format_list(&p.addresses(HeaderName::Cc)),
        message_id: p.message_id(),
        references: p.references(),
        date: p.date(),
        has_attachments: attachments::count(&p) > 0,
    }
}

fn push_nonempty(ad: &mut Element, tag: crate::wbxml::Tag, text: String) {
    if !text.is_empty() {
        ad.push(Element::with_text(tag, text));
    }
}

fn read_element(flags: &MailFlags) -> Element {
    Element::with_text(email::READ, if flags.seen { "1" } else { "0" })
}

/// `email:Flag`: Status 2 and FlagType "Flag for follow up" when `\Flagged`,
/// an empty element otherwise.
fn flag_element(flags: &MailFlags) -> Element {
    if flags.flagged {
        Element::new(email::FLAG)
            .text_child(email::STATUS, FLAG_STATUS_ACTIVE)
            .text_child(email::FLAG_TYPE, FLAG_TYPE_FOLLOW_UP)
    } else {
        Element::new(email::FLAG)
    }
}

/// Keywords shown as categories: everything but `$`-prefixed IMAP keywords
/// (`$MDNSent`, `$Junk`, `$label1`, ...) and the junk markers `Junk`,
/// `NonJunk`, `NotJunk`, which are client bookkeeping, not user categories.
pub fn categories(keywords: &[String]) -> Vec<&str> {
    let mut out: Vec<&str> = Vec::new();
    for k in keywords {
        let k = k.trim();
        let technical = k.is_empty()
            || k.starts_with('$')
            || k.starts_with('\\')
            || ["Junk", "NonJunk", "NotJunk"]
                .iter()
                .any(|j| k.eq_ignore_ascii_case(j));
        if !technical && !out.contains(&k) {
            out.push(k);
        }
    }
    out
}

/// `email:Categories`; `None` when there are none and `empty_ok` is false.
fn categories_element(flags: &MailFlags, empty_ok: bool) -> Option<Element> {
    let cats = categories(&flags.keywords);
    if cats.is_empty() && !empty_ok {
        return None;
    }
    let mut e = Element::new(email::CATEGORIES);
    for c in cats {
        e.push(Element::with_text(email::CATEGORY, c));
    }
    Some(e)
}

/// `email2:LastVerbExecuted`: 1 (reply to sender) for `\Answered`, else 3
/// (forward) for `$Forwarded`. IMAP cannot tell a reply-all (2) from a reply.
fn last_verb_element(flags: &MailFlags) -> Option<Element> {
    let verb = if flags.answered {
        LAST_VERB_REPLY_TO_SENDER
    } else if flags.forwarded {
        LAST_VERB_FORWARD
    } else {
        return None;
    };
    Some(Element::with_text(email2::LAST_VERB_EXECUTED, verb))
}

/// `airsyncbase:Attachments`, `None` when the message has none.
fn attachments_element(
    p: &Parsed<'_>,
    sizes: &[(usize, u64)],
    info: &ItemInfo<'_>,
) -> Option<Element> {
    let list = attachments::list(p);
    if list.is_empty() {
        return None;
    }
    let mut atts = Element::new(airsyncbase::ATTACHMENTS);
    for (i, a) in list.iter().enumerate() {
        let mut e = Element::new(airsyncbase::ATTACHMENT)
            .text_child(airsyncbase::DISPLAY_NAME, a.display_name.as_str())
            .text_child(
                airsyncbase::FILE_REFERENCE,
                format!("{}:{}", info.file_reference_prefix, i),
            )
            .text_child(airsyncbase::METHOD, a.method.to_string())
            .text_child(
                airsyncbase::ESTIMATED_DATA_SIZE,
                sizes
                    .iter()
                    .find(|(i, _)| *i == a.part_index)
                    .map(|(_, n)| *n)
                    .unwrap_or_else(|| attachments::size(p, a.part) as u64)
                    .to_string(),
            );
        if let Some(cid) = &a.content_id {
            e.push(Element::with_text(airsyncbase::CONTENT_ID, cid.as_str()));
        }
        if let Some(loc) = &a.content_location {
            e.push(Element::with_text(
                airsyncbase::CONTENT_LOCATION,
                loc.as_str(),
            ));
        }
        if a.is_inline {
            e.push(Element::with_text(airsyncbase::IS_INLINE, "1"));
        }
        atts.push(e);
    }
    Some(atts)
}
