//! An attachment named by a FileReference, read from IMAP one part at a time: the whole mail
//! is never fetched, and the bytes go to the response in chunks.
//!
//! Which IMAP part is attachment `i` is decided by the same walk that numbers attachments in
//! Sync ([`mime::attachment`]), run on a skeleton of the mail: every part's stored MIME header
//! (from BODYSTRUCTURE and `BODY.PEEK[n.MIME]`) with the part's body replaced by a marker
//! naming its IMAP section. The attachment's "bytes" in the skeleton are then the marker.
//!
//! The part's bytes are read with `BINARY.PEEK[section]<offset.length>` (RFC 3516: the server
//! decodes the transfer encoding) and its decoded size with `BINARY.SIZE`. A server without
//! BINARY, or one that cannot decode the part, is read with `BODY.PEEK` and decoded here
//! (base64, quoted-printable), in two passes: one to count, one to send.

use std::future::Future;
use std::io;

use bytes::Bytes;
use tokio::io::{AsyncWrite, AsyncWriteExt};

use crate::backend::{BackendError, MailSession, MimePart};
use crate::mime::{self, TransferDecoder, TransferEncoding};
use base64::Engine;

/// Bytes fetched from IMAP per command.
pub const CHUNK: u64 = 1024 * 1024;

const MARKER: &str = "X-Eas-Section: ";

/// Where an attachment's bytes are and how to read them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttachmentPart {
    pub mailbox: String,
    pub uid: u32,
    /// IMAP section of the part.
    pub section: String,
    /// `type/subtype` as the attachment list gives it.
    pub content_type: String,
    /// Decoded size in bytes.
    pub size: u64,
    read: ReadMode,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ReadMode {
    /// The server decodes (`BINARY.PEEK`).
    Binary,
    /// The part as stored, decoded here.
    Stored { encoding: TransferEncoding },
}

/// Where the bytes of a part go, chunk by chunk.
pub trait ChunkSink: Send {
    fn chunk(&mut self, data: &[u8]) -> impl Future<Output = io::Result<()>> + Send;
}

/// Raw bytes to an async writer.
pub struct RawSink<W>(pub W);

impl<W: AsyncWrite + Unpin + Send> ChunkSink for RawSink<W> {
    async fn chunk(&mut self, data: &[u8]) -> io::Result<()> {
        self.0.write_all(data).await
    }
}

/// Counts bytes.
struct Counter(u64);

impl ChunkSink for Counter {
    async fn chunk(&mut self, data: &[u8]) -> io::Result<()> {
        self.0 += data.len() as u64;
        Ok(())
    }
}

/// What a FileReference names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lookup {
    Found(AttachmentPart),
    /// The mail does not exist (any more).
    NoMail,
    /// The mail has no such attachment.
    NoAttachment,
}

/// Finds attachment `index` of mail `uid`.
pub async fn locate<S: MailSession>(
    session: &mut S,
    mailbox: &str,
    uid: u32,
    index: usize,
) -> Result<Lookup, BackendError> {
    match find_part(session, mailbox, uid, index).await? {
        Some(Some(p)) => Ok(Lookup::Found(p)),
        Some(None) => Ok(Lookup::NoAttachment),
        None => Ok(Lookup::NoMail),
    }
}

/// `None` when the mail is gone, `Some(None)` when it has no such attachment.
async fn find_part<S: MailSession>(
    session: &mut S,
    mailbox: &str,
    uid: u32,
    index: usize,
) -> Result<Option<Option<AttachmentPart>>, BackendError> {
    let Some(tree) = session.mime_tree(mailbox, uid).await? else {
        return Ok(None);
    };
    let mut skeleton = Vec::new();
    write_skeleton(&tree, &mut skeleton);
    let Some(att) = mime::attachment(&skeleton, index) else {
        return Ok(Some(None));
    };
    let Some(section) = marker_section(&att.data) else {
        tracing::debug!(
            uid,
            index,
            "attachment without a section marker in the skeleton"
        );
        return Ok(Some(None));
    };
    let Some(part) = find(&tree, &section) else {
        return Ok(Some(None));
    };
    let binary = session
        .capabilities()
        .iter()
        .any(|c| c.eq_ignore_ascii_case("BINARY"));
    let mut found = AttachmentPart {
        mailbox: mailbox.to_string(),
        uid,
        section,
        content_type: att.content_type,
        size: 0,
        read: ReadMode::Stored {
            encoding: TransferEncoding::of(&part.encoding),
        },
    };
    if binary {
        let estimate = session.binary_size(mailbox, uid, &found.section).await;
        let exact = match estimate {
            Ok(Some(estimate)) => exact_size(session, &found, estimate).await,
            other => other,
        };
        match exact {
            Ok(Some(size)) => {
                found.size = size;
                found.read = ReadMode::Binary;
                return Ok(Some(Some(found)));
            }
            Ok(None) => return Ok(None),
            // [UNKNOWN-CTE] and the like: the server cannot decode it, we can.
            Err(BackendError::Rejected(why)) => {
                tracing::debug!(reason = %why, "BINARY refused; decoding the part here");
            }
            Err(e) => return Err(e),
        }
    }
    let mut counter = Counter(0);
    let complete = read_stored(session, &found, 0, u64::MAX, &mut counter).await;
    match complete {
        Ok(true) => {}
        Ok(false) => return Ok(None),
        Err(e) => return Err(BackendError::Protocol(e.to_string())),
    }
    found.size = counter.0;
    Ok(Some(Some(found)))
}

/// The exact decoded size of a part. `BINARY.SIZE` is only close for some servers (Dovecot
/// 2.3 answers a few bytes short for large base64 parts), so the part's end is read: from a
/// little before the announced size until a fetch comes back short. `None` when the mail is
/// gone.
async fn exact_size<S: MailSession>(
    session: &mut S,
    part: &AttachmentPart,
    estimate: u64,
) -> Result<Option<u64>, BackendError> {
    let mut margin = (estimate / 1024).max(64 * 1024);
    let mut start = estimate.saturating_sub(margin);
    loop {
        let Some(got) = session
            .fetch_part_range(&part.mailbox, part.uid, &part.section, true, start, CHUNK)
            .await?
        else {
            return Ok(None);
        };
        let got = got.len() as u64;
        if got == 0 && start > 0 {
            // The part ends before `start`: look further back.
            margin = margin.saturating_mul(4);
            start = estimate.saturating_sub(margin);
            continue;
        }
        if got < CHUNK {
            return Ok(Some(start + got));
        }
        start += got;
    }
}

/// Sends bytes `first ..= last` of the part to `sink` in chunks of at most [`CHUNK`] bytes.
/// An error (the mail vanished, IMAP failed, the sink closed) ends the stream early.
pub async fn stream<S: MailSession>(
    session: &mut S,
    part: &AttachmentPart,
    first: u64,
    last: u64,
    sink: &mut impl ChunkSink,
) -> io::Result<()> {
    if part.size == 0 || first > last {
        return Ok(());
    }
    let want = last - first + 1;
    match part.read {
        ReadMode::Binary => {
            let mut offset = first;
            let mut remaining = want;
            while remaining > 0 {
                let n = remaining.min(CHUNK);
                let bytes = session
                    .fetch_part_range(&part.mailbox, part.uid, &part.section, true, offset, n)
                    .await
                    .map_err(io::Error::other)?
                    .ok_or_else(|| io::Error::other("the mail was deleted while being read"))?;
                if bytes.is_empty() {
                    return Err(io::Error::other("the part ended early"));
                }
                let take = bytes
                    .len()
                    .min(usize::try_from(remaining).unwrap_or(usize::MAX));
                sink.chunk(bytes.get(..take).unwrap_or_default()).await?;
                offset += take as u64;
                remaining -= take as u64;
            }
            Ok(())
        }
        ReadMode::Stored { .. } => {
            let complete = read_stored(session, part, first, want, sink).await?;
            if complete {
                Ok(())
            } else {
                Err(io::Error::other("the mail was deleted while being read"))
            }
        }
    }
}

/// Reads the stored part, decodes it and passes decoded bytes `skip .. skip + want` to
/// `sink`. `false` when the mail is gone.
async fn read_stored<S: MailSession>(
    session: &mut S,
    part: &AttachmentPart,
    skip: u64,
    want: u64,
    sink: &mut impl ChunkSink,
) -> io::Result<bool> {
    let ReadMode::Stored { encoding } = part.read else {
        return Ok(true);
    };
    let mut source = SessionSource { session, part };
    decode_stored(&mut source, encoding, skip, want, sink).await
}

/// Stored (encoded) bytes of one part.
trait StoredSource: Send {
    fn fetch(
        &mut self,
        offset: u64,
        len: u64,
    ) -> impl Future<Output = Result<Option<Bytes>, BackendError>> + Send;
}

struct SessionSource<'a, S> {
    session: &'a mut S,
    part: &'a AttachmentPart,
}

impl<S: MailSession> StoredSource for SessionSource<'_, S> {
    async fn fetch(&mut self, offset: u64, len: u64) -> Result<Option<Bytes>, BackendError> {
        let p = self.part;
        self.session
            .fetch_part_range(&p.mailbox, p.uid, &p.section, false, offset, len)
            .await
    }
}

async fn decode_stored(
    source: &mut impl StoredSource,
    encoding: TransferEncoding,
    skip: u64,
    want: u64,
    sink: &mut impl ChunkSink,
) -> io::Result<bool> {
    let mut decoder = TransferDecoder::new(encoding);
    let mut offset = 0u64;
    let mut position = 0u64; // decoded bytes seen
    let end = skip.saturating_add(want);
    let mut out = Vec::new();
    let mut finished = false;
    while !finished && position < end {
        let Some(bytes) = source
            .fetch(offset, CHUNK)
            .await
            .map_err(io::Error::other)?
        else {
            return Ok(false);
        };
        offset += bytes.len() as u64;
        out.clear();
        // A short answer is the part's end.
        finished = (bytes.len() as u64) < CHUNK;
        decoder.feed(&bytes, &mut out);
        if finished {
            decoder.finish(&mut out);
        }
        let len = out.len() as u64;
        let from = skip.saturating_sub(position).min(len);
        let to = end.saturating_sub(position).min(len);
        if from < to {
            sink.chunk(out.get(from as usize..to as usize).unwrap_or_default())
                .await?;
        }
        position += len;
    }
    Ok(true)
}

/// The mail with every leaf's body replaced by a marker naming its IMAP section, encoded
/// with the part's own transfer encoding so the part parses as it would whole.
fn write_skeleton(p: &MimePart, out: &mut Vec<u8>) {
    if p.header.is_empty() {
        out.extend_from_slice(b"\r\n");
    } else {
        out.extend_from_slice(&p.header);
    }
    if p.content_type.starts_with("multipart/") && !p.boundary.is_empty() {
        for c in &p.children {
            out.extend_from_slice(format!("\r\n--{}\r\n", p.boundary).as_bytes());
            write_skeleton(c, out);
        }
        out.extend_from_slice(format!("\r\n--{}--\r\n", p.boundary).as_bytes());
        return;
    }
    let marker = format!("{MARKER}{}\r\n\r\n", p.section);
    match TransferEncoding::of(&p.encoding) {
        TransferEncoding::Base64 => {
            out.extend_from_slice(
                base64::engine::general_purpose::STANDARD
                    .encode(marker.as_bytes())
                    .as_bytes(),
            );
            out.extend_from_slice(b"\r\n");
        }
        _ => out.extend_from_slice(marker.as_bytes()),
    }
}

fn marker_section(data: &[u8]) -> Option<String> {
    let at = data
        .windows(MARKER.len())
        .position(|w| w == MARKER.as_bytes())?;
    let rest = data.get(at + MARKER.len()..)?;
    let section: String = rest
        .iter()
        .take_while(|b| b.is_ascii_digit() || **b == b'.')
        .map(|&b| char::from(b))
        .collect();
    (!section.is_empty()).then_some(section)
}

fn find<'a>(p: &'a MimePart, section: &str) -> Option<&'a MimePart> {
    if p.section == section && p.children.is_empty() {
        return Some(p);
    }
    p.children.iter().find_map(|c| find(c, section))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_in_pieces(enc: TransferEncoding, input: &[u8], piece: usize) -> Vec<u8> {
        let mut d = TransferDecoder::new(enc);
        let mut out = Vec::new();
        for c in input.chunks(piece) {
            d.feed(c, &mut out);
        }
        d.finish(&mut out);
        out
    }

    #[test]
    fn decoders_agree_whatever_the_chunking() {
        let b64 = b"aGVs\r\nbG8gd29y\r\nbGQ=\r\n";
        let qp = b"a=3Db=\r\nc=\nd=ZZ=";
        for piece in 1..8 {
            assert_eq!(
                decode_in_pieces(TransferEncoding::Base64, b64, piece),
                b"hello world"
            );
            assert_eq!(
                decode_in_pieces(TransferEncoding::QuotedPrintable, qp, piece),
                b"a=bcd=ZZ="
            );
        }
        assert_eq!(
            decode_in_pieces(TransferEncoding::Base64, b"aGVsbG8", 3),
            b"hello"
        );
    }

    /// Stored bytes handed out a few at a time, as a server may answer a partial fetch.
    struct Pieces(Vec<u8>);

    impl StoredSource for Pieces {
        async fn fetch(&mut self, offset: u64, len: u64) -> Result<Option<Bytes>, BackendError> {
            let from = (offset as usize).min(self.0.len());
            let to = (from + len as usize).min(self.0.len());
            Ok(Some(Bytes::copy_from_slice(&self.0[from..to])))
        }
    }

    struct Collect(Vec<u8>);

    impl ChunkSink for Collect {
        async fn chunk(&mut self, data: &[u8]) -> io::Result<()> {
            self.0.extend_from_slice(data);
            Ok(())
        }
    }

    #[tokio::test]
    async fn stored_parts_are_decoded_by_range() {
        let data: Vec<u8> = (0..3_000_000u32).map(|i| (i * 31 % 251) as u8).collect();
        let b64 = base64::engine::general_purpose::STANDARD.encode(&data);
        let wrapped: Vec<u8> = b64
            .as_bytes()
            .chunks(76)
            .flat_map(|l| l.iter().copied().chain(*b"\r\n"))
            .collect();
        for (skip, want) in [
            (0u64, u64::MAX),
            (5, 10),
            (1_048_570, 2_000_000),
            (2_999_999, 9),
        ] {
            let mut sink = Collect(Vec::new());
            let mut source = Pieces(wrapped.clone());
            let done = decode_stored(&mut source, TransferEncoding::Base64, skip, want, &mut sink)
                .await
                .unwrap();
            assert!(done);
            let end = skip.saturating_add(want).min(data.len() as u64) as usize;
            assert!(sink.0 == data[skip as usize..end], "{skip}+{want}");
        }
    }

    fn leaf(section: &str, ct: &str, header: &str, cte: &str) -> MimePart {
        MimePart {
            section: section.into(),
            header: Bytes::from(header.to_string()),
            content_type: ct.into(),
            encoding: cte.into(),
            size: 10,
            ..MimePart::default()
        }
    }

    #[test]
    fn skeleton_names_the_section_of_each_attachment() {
        let tree = MimePart {
            section: String::new(),
            header: Bytes::from_static(
                b"Subject: x\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"b1\"\r\n\r\n",
            ),
            content_type: "multipart/mixed".into(),
            boundary: "b1".into(),
            children: vec![
                MimePart {
                    section: "1".into(),
                    header: Bytes::from_static(
                        b"Content-Type: multipart/alternative; boundary=b2\r\n\r\n",
                    ),
                    content_type: "multipart/alternative".into(),
                    boundary: "b2".into(),
                    children: vec![
                        leaf("1.1", "text/plain", "Content-Type: text/plain\r\n\r\n", "7bit"),
                        leaf(
                            "1.2",
                            "text/html",
                            "Content-Type: text/html\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n",
                            "quoted-printable",
                        ),
                    ],
                    ..MimePart::default()
                },
                leaf(
                    "2",
                    "application/pdf",
                    "Content-Type: application/pdf; name=a.pdf\r\nContent-Transfer-Encoding: base64\r\nContent-Disposition: attachment; filename=a.pdf\r\n\r\n",
                    "base64",
                ),
                leaf(
                    "3",
                    "message/rfc822",
                    "Content-Type: message/rfc822\r\n\r\n",
                    "7bit",
                ),
            ],
            ..MimePart::default()
        };
        let mut sk = Vec::new();
        write_skeleton(&tree, &mut sk);
        let a0 = mime::attachment(&sk, 0).unwrap();
        assert_eq!(marker_section(&a0.data).as_deref(), Some("2"));
        assert_eq!(a0.content_type, "application/pdf");
        let a1 = mime::attachment(&sk, 1).unwrap();
        assert_eq!(marker_section(&a1.data).as_deref(), Some("3"));
        assert!(mime::attachment(&sk, 2).is_none());
    }
}
