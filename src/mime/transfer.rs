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
    /// Base64: sextets not yet decoded; quoted-printable: an incomplete escape.
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
                        return;
                    }
                    let v = match b {
                        b'A'..=b'Z' => b - b'A',
                        b'a'..=b'z' => b - b'a' + 26,
                        b'0'..=b'9' => b - b'0' + 52,
                        b'+' => 62,
                        b'/' => 63,
                        b'=' => {
                            self.done = true;
                            continue;
                        }
                        _ => continue,
                    };
                    self.pending.push(v);
                    if let [a, b, c, d] = self.pending[..] {
                        out.extend_from_slice(&[a << 2 | b >> 4, b << 4 | c >> 2, c << 6 | d]);
                        self.pending.clear();
                    }
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
                match self.pending[..] {
                    [a, b] => out.push(a << 2 | b >> 4),
                    [a, b, c] => out.extend_from_slice(&[a << 2 | b >> 4, b << 4 | c >> 2]),
                    _ => {}
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

/// Decodes quoted-printable; returns how many input bytes were used. Without `last`, an
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
