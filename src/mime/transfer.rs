//! Content-Transfer-Encodings (RFC 2045) as found in mail: one lenient decoder, fed whole or
//! chunk by chunk.

/// How a MIME part's body is encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransferEncoding {
    Identity,
    Base64,
    QuotedPrintable,
}

impl TransferEncoding {
    /// The encoding a `Content-Transfer-Encoding` value names; unknown ones are read as is.
    pub fn of(cte: &str) -> TransferEncoding {
        match cte.trim().to_ascii_lowercase().as_str() {
            "base64" => TransferEncoding::Base64,
            "quoted-printable" => TransferEncoding::QuotedPrintable,
            _ => TransferEncoding::Identity,
        }
    }
}

/// `input` decoded whole.
pub fn decode(encoding: TransferEncoding, input: &[u8]) -> Vec<u8> {
    let mut d = TransferDecoder::new(encoding);
    let mut out = Vec::with_capacity(input.len());
    d.feed(input, &mut out);
    d.finish(&mut out);
    out
}

/// Incremental transfer-encoding decoder, lenient as mail needs: base64 skips anything
/// outside the alphabet and stops at the first `=`; a malformed `=` in quoted-printable is
/// kept.
pub struct TransferDecoder {
    encoding: TransferEncoding,
    /// Base64: characters of the alphabet not yet decoded; quoted-printable: an incomplete
    /// escape.
    pending: Vec<u8>,
    done: bool,
}

impl TransferDecoder {
    pub fn new(encoding: TransferEncoding) -> TransferDecoder {
        TransferDecoder {
            encoding,
            pending: Vec::new(),
            done: false,
        }
    }

    /// Decodes `input`, appending to `out`; an incomplete group waits for the next call.
    pub fn feed(&mut self, input: &[u8], out: &mut Vec<u8>) {
        match self.encoding {
            TransferEncoding::Identity => out.extend_from_slice(input),
            TransferEncoding::Base64 => {
                for &b in input {
                    if self.done {
                        break;
                    }
                    match b {
                        b'=' => self.done = true,
                        b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'+' | b'/' => {
                            self.pending.push(b)
                        }
                        _ => {}
                    }
                }
                // Whole groups now; an incomplete one waits for the next call.
                let whole = self.pending.len() / 4 * 4;
                if let Some(groups) = self.pending.get(..whole).filter(|g| !g.is_empty()) {
                    decode_base64(groups, out);
                    self.pending.drain(..whole);
                }
            }
            TransferEncoding::QuotedPrintable => {
                let mut data = std::mem::take(&mut self.pending);
                data.extend_from_slice(input);
                let used = decode_qp(&data, out, false);
                self.pending = data.get(used..).unwrap_or_default().to_vec();
            }
        }
    }

    /// Decodes what is left at the end of the data.
    pub fn finish(&mut self, out: &mut Vec<u8>) {
        match self.encoding {
            TransferEncoding::Identity => {}
            TransferEncoding::Base64 => {
                // Two or three characters give one or two bytes (their unused bits ignored);
                // a single one gives nothing.
                if self.pending.len() > 1 {
                    decode_base64(&self.pending, out);
                }
                self.pending.clear();
            }
            TransferEncoding::QuotedPrintable => {
                let data = std::mem::take(&mut self.pending);
                decode_qp(&data, out, true);
            }
        }
    }
}

/// Base64 without padding, unused bits of a last partial group ignored.
const BASE64: base64::engine::GeneralPurpose = base64::engine::GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    base64::engine::GeneralPurposeConfig::new()
        .with_decode_allow_trailing_bits(true)
        .with_decode_padding_mode(base64::engine::DecodePaddingMode::RequireNone),
);

/// Appends to `out` the bytes of `chars`, characters of the base64 alphabet only: whole groups
/// of four and at most one last group of two or three, so it always decodes.
fn decode_base64(chars: &[u8], out: &mut Vec<u8>) {
    use base64::Engine;
    let len = out.len();
    // Cannot fail on such input; were it to, nothing is appended.
    if BASE64.decode_vec(chars, out).is_err() {
        out.truncate(len);
    }
}

/// Decodes quoted-printable; returns how many input bytes were used.
///
/// `mime::slim` has a second quoted-printable decoder on purpose: it reproduces how
/// `mail-parser` decodes text parts (blanks before a line break dropped, line breaks
/// normalised, decoding up to the next boundary), which this decoder, reading an attachment's
/// bytes as RFC 2045 gives them, must not do. Without `last`, an
/// escape cut by the end of `input` is left for the next call.
fn decode_qp(input: &[u8], out: &mut Vec<u8>, last: bool) -> usize {
    fn hex(b: u8) -> Option<u8> {
        match b {
            b'0'..=b'9' => Some(b - b'0'),
            b'a'..=b'f' => Some(b - b'a' + 10),
            b'A'..=b'F' => Some(b - b'A' + 10),
            _ => None,
        }
    }
    let mut i = 0;
    while let Some(&b) = input.get(i) {
        if b != b'=' {
            out.push(b);
            i += 1;
            continue;
        }
        if !last && i + 2 >= input.len() {
            return i;
        }
        match (input.get(i + 1).copied(), input.get(i + 2).copied()) {
            (Some(b'\r'), Some(b'\n')) => i += 3,
            (Some(b'\n'), _) => i += 2,
            (Some(h), Some(l)) => match (hex(h), hex(l)) {
                (Some(h), Some(l)) => {
                    out.push(h * 16 + l);
                    i += 3;
                }
                _ => {
                    out.push(b'=');
                    i += 1;
                }
            },
            _ => {
                out.push(b'=');
                i += 1;
            }
        }
    }
    i
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `input` fed in two pieces split at every position, then finished.
    fn split_everywhere(encoding: TransferEncoding, input: &[u8]) -> Vec<Vec<u8>> {
        (0..=input.len())
            .map(|at| {
                let (a, b) = input.split_at(at);
                let mut d = TransferDecoder::new(encoding);
                let mut out = Vec::new();
                d.feed(a, &mut out);
                d.feed(b, &mut out);
                d.finish(&mut out);
                out
            })
            .collect()
    }

    #[test]
    fn base64_is_lenient_and_chunking_does_not_matter() {
        let cases: [(&[u8], &[u8]); 8] = [
            (b"aGVsbG8=", b"hello"),
            (b"aGVs\r\nbG8=\r\n", b"hello"),
            (b"aGVsbG8", b"hello"),
            (b"a G-V*s\tbG8", b"hello"),
            (b"aGVsbA==aGVsbG8=", b"hell"),
            // Unused bits of a last partial group are ignored; one character gives nothing.
            (b"QR", b"A"),
            (b"QUJ", b"AB"),
            (b"QUJDR", b"ABC"),
        ];
        for (input, want) in cases {
            assert_eq!(decode(TransferEncoding::Base64, input), want, "{input:?}");
            for got in split_everywhere(TransferEncoding::Base64, input) {
                assert_eq!(got, want, "{input:?}");
            }
        }
        assert_eq!(decode(TransferEncoding::Base64, b""), b"");
    }

    #[test]
    fn quoted_printable_chunking_does_not_matter() {
        let input = b"a=3Db=\r\nc=\nd=ZZ= x=4";
        let whole = decode(TransferEncoding::QuotedPrintable, input);
        assert_eq!(whole, b"a=bcd=ZZ= x=4");
        for got in split_everywhere(TransferEncoding::QuotedPrintable, input) {
            assert_eq!(got, whole);
        }
    }
}
