//! Writing an ItemOperations response whose attachment bytes are read from IMAP while the
//! response is sent: a task owns the IMAP session and writes into a pipe the HTTP body reads.
//!
//! - Inline (the default): the WBXML document is written with the streaming writer; each
//!   fetched attachment's `Data` is one inline string, base64 text produced chunk by chunk.
//! - Multipart (MS-ASCMD 2.2.1.10.1, asked for with `MS-ASAcceptMultiPart: T` or the
//!   AcceptMultiPart query option): the WBXML is part 0, built in memory with a `Part` element
//!   in place of every `Data` (attachments and `airsyncbase:Body`), then the parts follow as
//!   raw bytes. Every length is known before the first byte is sent, so the response has a
//!   Content-Length.

use std::io;

use base64::Engine;
use bytes::Bytes;
use tokio::io::{AsyncWriteExt, DuplexStream};

use crate::backend::MailSession;
use crate::eas::item_operations::{self as model, multipart, OperationResponse};
use crate::wbxml::async_writer::AsyncWriter;
use crate::wbxml::tags::{airsyncbase as b, item_operations as io_tags};
use crate::wbxml::{Element, Node};

use super::attachment_part::{self, AttachmentPart, ChunkSink, RawSink};
use super::core::{Media, Outcome};

/// Attachment bytes still to be read for a Fetch: `first ..= last` of the part (nothing when
/// the part is empty).
#[derive(Debug, Clone)]
pub struct PendingData {
    pub part: AttachmentPart,
    pub first: u64,
    pub last: u64,
}

impl PendingData {
    fn len(&self) -> u64 {
        if self.part.size == 0 {
            0
        } else {
            self.last - self.first + 1
        }
    }
}

/// The response, streamed inline or as multipart; `session` is logged out when done.
pub fn respond<S: MailSession>(
    session: S,
    results: Vec<OperationResponse>,
    pending: Vec<Option<PendingData>>,
    want_multipart: bool,
) -> Outcome {
    if want_multipart {
        match multipart_plan(&results, &pending) {
            Some(plan) => return multipart_response(session, plan),
            None => tracing::info!(
                "multipart response too large for its 32-bit offsets; sending inline"
            ),
        }
    }
    inline_response(session, results, pending)
}

fn inline_response<S: MailSession>(
    session: S,
    results: Vec<OperationResponse>,
    pending: Vec<Option<PendingData>>,
) -> Outcome {
    Outcome::streamed(
        session,
        Media::Wbxml,
        None,
        Some(model::status::SUCCESS),
        "ItemOperations response",
        move |mut session, pipe| async move {
            let r = write_inline(&mut session, &results, &pending, pipe).await;
            (session, r)
        },
    )
}

fn wio(e: crate::wbxml::WriteError) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, e)
}

async fn write_inline<S: MailSession>(
    session: &mut S,
    results: &[OperationResponse],
    pending: &[Option<PendingData>],
    pipe: DuplexStream,
) -> io::Result<()> {
    let mut w = AsyncWriter::new(pipe);
    w.writer().start(io_tags::ITEM_OPERATIONS).map_err(wio)?;
    w.writer()
        .text_element(io_tags::STATUS, &model::status::SUCCESS.to_string())
        .map_err(wio)?;
    w.writer().start(io_tags::RESPONSE).map_err(wio)?;
    for (i, r) in results.iter().enumerate() {
        let el = model::operation_element(r);
        match pending.get(i).and_then(Option::as_ref) {
            None => w.writer().element(&el).map_err(wio)?,
            Some(p) => {
                // Fetch > ... > Properties (last) > ContentType, Range, Total, then Data.
                let (head, props) = match el.children.split_last() {
                    Some((Node::Element(props), head)) => (head, props),
                    _ => return Err(io::Error::other("attachment Fetch without Properties")),
                };
                w.writer().start(el.tag).map_err(wio)?;
                for n in head {
                    w.writer().node(n).map_err(wio)?;
                }
                w.writer().start(props.tag).map_err(wio)?;
                for n in &props.children {
                    w.writer().node(n).map_err(wio)?;
                }
                w.writer().start(io_tags::DATA).map_err(wio)?;
                w.writer().start_text().map_err(wio)?;
                let mut sink = Base64Sink {
                    w: &mut w,
                    carry: Vec::new(),
                };
                if p.len() > 0 {
                    attachment_part::stream(session, &p.part, p.first, p.last, &mut sink).await?;
                }
                sink.finish()?;
                w.writer().end_text().map_err(wio)?;
                w.writer().end().map_err(wio)?; // Data
                w.writer().end().map_err(wio)?; // Properties
                w.writer().end().map_err(wio)?; // Fetch
            }
        }
        w.flush_if_over().await?;
    }
    w.writer().end().map_err(wio)?; // Response
    w.writer().end().map_err(wio)?; // ItemOperations
    w.finish().await?;
    Ok(())
}

/// Writes an element tree (tags the codec cannot write are left out, as in `encode`).
/// Bytes fed to base64 per step: a multiple of 3, so only the last step pads.
const B64_STEP: usize = 48 * 1024;

/// Attachment bytes as base64 text into the open inline string.
struct Base64Sink<'a> {
    w: &'a mut AsyncWriter<DuplexStream>,
    carry: Vec<u8>,
}

impl Base64Sink<'_> {
    fn finish(&mut self) -> io::Result<()> {
        if !self.carry.is_empty() {
            let text = base64::engine::general_purpose::STANDARD.encode(&self.carry);
            self.w.writer().text_chunk(&text).map_err(wio)?;
            self.carry.clear();
        }
        Ok(())
    }
}

impl ChunkSink for Base64Sink<'_> {
    async fn chunk(&mut self, data: &[u8]) -> io::Result<()> {
        let mut data = data;
        if !self.carry.is_empty() {
            let need = (3 - self.carry.len()).min(data.len());
            let (head, rest) = data.split_at(need);
            self.carry.extend_from_slice(head);
            data = rest;
            if self.carry.len() < 3 {
                return Ok(());
            }
            let text = base64::engine::general_purpose::STANDARD.encode(&self.carry);
            self.carry.clear();
            self.w.writer().text_chunk(&text).map_err(wio)?;
        }
        let whole = data.len() - data.len() % 3;
        let (body, rest) = data.split_at(whole);
        for step in body.chunks(B64_STEP) {
            let text = base64::engine::general_purpose::STANDARD.encode(step);
            self.w.writer().text_chunk(&text).map_err(wio)?;
            self.w.flush_if_over().await?;
        }
        self.carry.extend_from_slice(rest);
        Ok(())
    }
}

/// One part after the WBXML.
enum Part {
    Memory(Bytes),
    Attachment(PendingData),
}

impl Part {
    fn len(&self) -> u64 {
        match self {
            Part::Memory(b) => b.len() as u64,
            Part::Attachment(p) => p.len(),
        }
    }
}

/// A multipart response ready to send: its head, the WBXML part and the parts after it.
struct MultipartPlan {
    head: Vec<u8>,
    wbxml: Bytes,
    parts: Vec<Part>,
    total: u64,
}

/// Plans the multipart response; `None` when it cannot be described with 32-bit offsets.
fn multipart_plan(
    results: &[OperationResponse],
    pending: &[Option<PendingData>],
) -> Option<MultipartPlan> {
    let mut parts: Vec<Part> = Vec::new();
    let mut resp = Element::new(io_tags::RESPONSE);
    for (i, r) in results.iter().enumerate() {
        let mut el = model::operation_element(r);
        if let Some(p) = pending.get(i).and_then(Option::as_ref) {
            parts.push(Part::Attachment(p.clone()));
            if let Some(props) = el.first_mut(io_tags::PROPERTIES) {
                props.push(Element::with_text(io_tags::PART, parts.len().to_string()));
            }
        } else if let Some(body) = el
            .first_mut(io_tags::PROPERTIES)
            .and_then(|p| p.first_mut(b::BODY))
        {
            if let Some(pos) = body
                .children
                .iter()
                .position(|n| matches!(n, Node::Element(d) if d.tag == b::DATA))
            {
                let data = match body.children.get(pos) {
                    Some(Node::Element(d)) => d.content_bytes(),
                    _ => Bytes::new(),
                };
                parts.push(Part::Memory(data));
                if let Some(slot) = body.children.get_mut(pos) {
                    *slot =
                        Node::Element(Element::with_text(io_tags::PART, parts.len().to_string()));
                }
            }
        }
        resp.push(el);
    }
    let doc = Element::new(io_tags::ITEM_OPERATIONS)
        .text_child(io_tags::STATUS, model::status::SUCCESS.to_string())
        .child(resp);
    let wbxml = crate::wbxml::encode_bytes(&doc);
    let mut lengths = vec![wbxml.len() as u64];
    lengths.extend(parts.iter().map(Part::len));
    let head = multipart::head(&lengths)?;
    let total: u64 = head.len() as u64 + lengths.iter().sum::<u64>();
    Some(MultipartPlan {
        head,
        wbxml,
        parts,
        total,
    })
}

fn multipart_response<S: MailSession>(session: S, plan: MultipartPlan) -> Outcome {
    let MultipartPlan {
        head,
        wbxml,
        parts,
        total,
    } = plan;
    Outcome::streamed(
        session,
        Media::Other(multipart::CONTENT_TYPE.to_string()),
        Some(total),
        Some(model::status::SUCCESS),
        "multipart ItemOperations response",
        move |mut session, mut pipe| async move {
            let result: io::Result<()> = async {
                pipe.write_all(&head).await?;
                pipe.write_all(&wbxml).await?;
                let mut sink = RawSink(&mut pipe);
                for p in &parts {
                    match p {
                        Part::Memory(b) => sink.0.write_all(b).await?,
                        Part::Attachment(a) if a.len() > 0 => {
                            attachment_part::stream(
                                &mut session,
                                &a.part,
                                a.first,
                                a.last,
                                &mut sink,
                            )
                            .await?
                        }
                        Part::Attachment(_) => {}
                    }
                }
                pipe.flush().await
            }
            .await;
            (session, result)
        },
    )
}
