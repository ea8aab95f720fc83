//! `airsync:ApplicationData` of the Email class (MS-ASEMAIL 2.2.2), flag
//! changes and the header summary.

use std::borrow::Cow;

use mail_parser::parsers::fields::thread::thread_name;
use mail_parser::{HeaderName, PartType};

use super::attachments;
use super::body;
use super::headers::{
    self, conversation_id, conversation_index, display_list, for_version, format_date, format_list,
    Parsed,
};
use super::slim;
use super::{
    BodyOptions, ItemInfo, MailFlags, OmittedParts, Summary, BODY_TYPE_HTML, BODY_TYPE_MIME,
};
use crate::eas::ProtocolVersion;
use crate::wbxml::tags::{airsync, airsyncbase, email, email2};
use crate::wbxml::{Element, ElementSink, Filter, Fragment, Node, Tag, TreeBuilder};

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
    let mut tree = TreeBuilder::new(airsync::APPLICATION_DATA);
    let item = ItemParts { flags, info, opts };
    write_item(raw, None, item, &mut tree);
    tree.finish()
}

/// [`application_data`] (or, with `read`, [`application_data_partial`]) encoded at once: an
/// `ApplicationData` element whose content is one [`Node::Encoded`](crate::wbxml::Node), the
/// bytes the tree would encode to, built without the tree. For items that are only sent.
pub fn application_data_encoded(
    raw: &[u8],
    read: Option<&OmittedParts<'_>>,
    flags: &MailFlags,
    info: &ItemInfo<'_>,
    opts: &BodyOptions,
) -> Option<Element> {
    let page = airsync::APPLICATION_DATA.page;
    let item = ItemParts { flags, info, opts };
    let fragment = Fragment::write_with(page, |w| {
        let mut w = Filter::new(w, |t: Tag| t.is_encodable());
        write_item(raw, read, item, &mut w)
    })?;
    let mut ad = Element::new(airsync::APPLICATION_DATA);
    ad.children.push(Node::Encoded(fragment));
    Some(ad)
}

/// Writes the item's elements into `out`: from the prepared message when it can be, else
/// from the message as read. `false` (nothing written) when `read` describes parts the
/// message does not have.
fn write_item<S: ElementSink>(
    raw: &[u8],
    read: Option<&OmittedParts<'_>>,
    item: ItemParts<'_>,
    out: &mut S,
) -> bool {
    let mut out = for_version(out, item.opts.version);
    if prepared(raw, read, item, &mut out) {
        return true;
    }
    match read {
        None => {
            build(&headers::parse(raw), &[], item, &mut out);
            true
        }
        Some(omitted) => {
            let shape = Shape {
                parts: omitted.parts,
                sizes: omitted.sizes,
                texts: &[],
                decoded: &[],
                supplied: &[],
            };
            build_if_shaped(raw, &shape, item, &mut out)
        }
    }
}

/// Writes the item from the message prepared for the parser (`slim.rs`: bodies the item does
/// not show left out, texts decoded in place), which gives the same item faster. Parts a server
/// already sent without their bodies (`read`) are counted in. `false` (nothing written) when
/// the message cannot be prepared, or the prepared copy does not parse into the shape it
/// promised.
fn prepared<S: ElementSink>(
    raw: &[u8],
    read: Option<&OmittedParts<'_>>,
    item: ItemParts<'_>,
    out: &mut S,
) -> bool {
    with_scratch(|buf, side| {
        let s = slim::slim(raw, item.opts, buf, side)?;
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
        build_if_shaped(buf, &shape, item, out).then_some(())
    })
    .is_some()
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
    let mut tree = TreeBuilder::new(airsync::APPLICATION_DATA);
    let mut out = for_version(&mut tree, opts.version);
    let item = ItemParts { flags, info, opts };
    build(&headers::parse(raw), &[], item, &mut out);
    tree.finish()
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
    let mut tree = TreeBuilder::new(airsync::APPLICATION_DATA);
    let item = ItemParts { flags, info, opts };
    write_item(raw, Some(omitted), item, &mut tree).then(|| tree.finish())
}

/// What an item is made of besides the message's bytes.
#[derive(Clone, Copy)]
struct ItemParts<'a> {
    flags: &'a MailFlags,
    info: &'a ItemInfo<'a>,
    opts: &'a BodyOptions,
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

/// Writes the item of `raw` when it parses into `shape`; `false` (nothing written) otherwise.
fn build_if_shaped<S: ElementSink>(
    raw: &[u8],
    shape: &Shape<'_>,
    item: ItemParts<'_>,
    out: &mut S,
) -> bool {
    let mut p = headers::parse(raw);
    if supply_texts(&mut p, shape.supplied).is_none() || shaped(&p, shape, item.opts).is_none() {
        return false;
    }
    if shape.supplied.is_empty() {
        build(&p, shape.sizes, item, out);
    } else {
        let mut sizes = shape.sizes.to_vec();
        sizes.extend(shape.supplied.iter().map(|s| (s.index, s.size)));
        build(&p, &sizes, item, out);
    }
    true
}

/// `Some` when the parsed message has the shape the bytes given to the parser promised.
fn shaped(p: &Parsed<'_>, shape: &Shape<'_>, opts: &BodyOptions) -> Option<()> {
    let m = p.msg.as_ref()?;
    let choice = body::choose(p, opts);
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
        && attachments::list(p)
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
    Some(())
}

/// Writes the item's elements (see [`application_data`] for the list and order).
fn build<S: ElementSink>(p: &Parsed<'_>, sizes: &[(usize, u64)], item: ItemParts<'_>, out: &mut S) {
    let ItemParts { flags, info, opts } = item;
    let v = opts.version;
    let to = p.addresses(HeaderName::To);
    let cc = p.addresses(HeaderName::Cc);
    let from = p.addresses(HeaderName::From);
    let reply_to = p.addresses(HeaderName::ReplyTo);
    let subject = p.subject();

    text_nonempty(out, email::TO, &format_list(&to));
    text_nonempty(out, email::CC, &format_list(&cc));
    text_nonempty(out, email::FROM, &format_list(&from));
    out.text(email::SUBJECT, subject.as_str());
    text_nonempty(out, email::REPLY_TO, &format_list(&reply_to));
    out.text(email::DATE_RECEIVED, &format_date(info.internal_date));
    text_nonempty(out, email::DISPLAY_TO, &display_list(&to));
    let topic = thread_name(&subject).to_string();
    out.text(email::THREAD_TOPIC, &topic);
    out.text(email::IMPORTANCE, &digit(p.importance()));
    write_read(out, flags);

    write_attachments(out, p, sizes, info);
    out.start(airsyncbase::BODY);
    body::write_body(out, p, opts);
    out.end();

    out.text(email::MESSAGE_CLASS, p.smime().message_class());
    out.text(email::INTERNET_CPID, INTERNET_CPID_UTF8);
    write_flag(out, flags);
    out.text(email::CONTENT_CLASS, CONTENT_CLASS_MESSAGE);
    out.text(
        airsyncbase::NATIVE_BODY_TYPE,
        &digit(body::native_body_type(p)),
    );

    if v >= ProtocolVersion::V14_0 {
        let sent = p.date().unwrap_or(info.internal_date);
        out.opaque(email2::CONVERSATION_ID, &conversation_id(p, &topic, sent));
        out.opaque(email2::CONVERSATION_INDEX, &conversation_index(sent));
        write_categories(out, flags, false);
        write_last_verb(out, flags);
        let sender = p.addresses(HeaderName::Sender);
        if !sender.is_empty() && sender != from {
            text_nonempty(out, email2::SENDER, &format_list(&sender));
        }
    }
    if v >= ProtocolVersion::V16_0 {
        let draft = info.in_drafts || flags.draft;
        if draft {
            let bcc = p.addresses(HeaderName::Bcc);
            text_nonempty(out, email2::BCC, &format_list(&bcc));
        }
        out.text(email2::IS_DRAFT, if draft { "1" } else { "0" });
    }
}

/// A small code (importance, body type) in decimal, without formatting the usual ones.
fn digit(n: u8) -> Cow<'static, str> {
    const DIGITS: [&str; 10] = ["0", "1", "2", "3", "4", "5", "6", "7", "8", "9"];
    match DIGITS.get(usize::from(n)) {
        Some(d) => Cow::Borrowed(d),
        None => Cow::Owned(n.to_string()),
    }
}

/// The `ApplicationData` of a Sync Change when only IMAP flags changed:
/// Read, Flag (empty when not flagged, which clears the flag on the device),
/// and from 14.0 Categories (empty when there are none, which clears them)
/// and LastVerbExecuted (when answered or forwarded).
pub fn flag_change(flags: &MailFlags, version: ProtocolVersion) -> Element {
    let mut tree = TreeBuilder::new(airsync::APPLICATION_DATA);
    let mut out = for_version(&mut tree, version);
    write_read(&mut out, flags);
    write_flag(&mut out, flags);
    if version >= ProtocolVersion::V14_0 {
        write_categories(&mut out, flags, true);
        write_last_verb(&mut out, flags);
    }
    tree.finish()
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

fn text_nonempty<S: ElementSink>(out: &mut S, tag: Tag, text: &str) {
    if !text.is_empty() {
        out.text(tag, text);
    }
}

fn write_read<S: ElementSink>(out: &mut S, flags: &MailFlags) {
    out.text(email::READ, if flags.seen { "1" } else { "0" });
}

/// `email:Flag`: Status 2 and FlagType "Flag for follow up" when `\Flagged`,
/// an empty element otherwise.
fn write_flag<S: ElementSink>(out: &mut S, flags: &MailFlags) {
    if flags.flagged {
        out.start(email::FLAG);
        out.text(email::STATUS, FLAG_STATUS_ACTIVE);
        out.text(email::FLAG_TYPE, FLAG_TYPE_FOLLOW_UP);
        out.end();
    } else {
        out.empty(email::FLAG);
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

/// `email:Categories`; nothing when there are none and `empty_ok` is false.
fn write_categories<S: ElementSink>(out: &mut S, flags: &MailFlags, empty_ok: bool) {
    let cats = categories(&flags.keywords);
    if cats.is_empty() {
        if empty_ok {
            out.empty(email::CATEGORIES);
        }
        return;
    }
    out.start(email::CATEGORIES);
    for c in cats {
        out.text(email::CATEGORY, c);
    }
    out.end();
}

/// `email2:LastVerbExecuted`: 1 (reply to sender) for `\Answered`, else 3
/// (forward) for `$Forwarded`. IMAP cannot tell a reply-all (2) from a reply.
fn write_last_verb<S: ElementSink>(out: &mut S, flags: &MailFlags) {
    let verb = if flags.answered {
        LAST_VERB_REPLY_TO_SENDER
    } else if flags.forwarded {
        LAST_VERB_FORWARD
    } else {
        return;
    };
    out.text(email2::LAST_VERB_EXECUTED, verb);
}

/// `airsyncbase:Attachments`, nothing when the message has none.
fn write_attachments<S: ElementSink>(
    out: &mut S,
    p: &Parsed<'_>,
    sizes: &[(usize, u64)],
    info: &ItemInfo<'_>,
) {
    let list = attachments::list(p);
    if list.is_empty() {
        return;
    }
    out.start(airsyncbase::ATTACHMENTS);
    for (i, a) in list.iter().enumerate() {
        out.start(airsyncbase::ATTACHMENT);
        out.text(airsyncbase::DISPLAY_NAME, a.display_name.as_str());
        out.text(
            airsyncbase::FILE_REFERENCE,
            &format!("{}:{}", info.file_reference_prefix, i),
        );
        out.text(airsyncbase::METHOD, &a.method.to_string());
        let size = sizes
            .iter()
            .find(|(i, _)| *i == a.part_index)
            .map(|(_, n)| *n)
            .unwrap_or_else(|| attachments::size(p, a.part) as u64);
        out.text(airsyncbase::ESTIMATED_DATA_SIZE, &size.to_string());
        if let Some(cid) = &a.content_id {
            out.text(airsyncbase::CONTENT_ID, cid.as_str());
        }
        if let Some(loc) = &a.content_location {
            out.text(airsyncbase::CONTENT_LOCATION, loc.as_str());
        }
        if a.is_inline {
            out.text(airsyncbase::IS_INLINE, "1");
        }
        out.end();
    }
    out.end();
}
