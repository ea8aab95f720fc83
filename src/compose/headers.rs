//! The raw header block of a message: where it ends and which fields it has, as byte ranges,
//! so fields can be dropped, reordered or added without re-encoding anything.

use std::ops::Range;

use bytes::Bytes;

/// Where the header block of a message ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeaderBlock {
    /// Offset just after the last header line's line end (where the empty line starts).
    pub body_start: usize,
    /// Length of the empty line (2 for CRLF, 1 for LF, 0 when the message has no body).
    pub separator_len: usize,
}

/// One header field, continuation lines included, with its line end.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Field {
    /// The field name as written.
    pub name: String,
    pub range: Range<usize>,
}

impl Field {
    /// Case-insensitive name comparison.
    pub fn is(&self, name: &str) -> bool {
        self.name.eq_ignore_ascii_case(name)
    }
}

impl HeaderBlock {
    /// Finds the end of the header block. `None` when the message starts with an empty line
    /// or its first line is not a header field.
    pub fn split(raw: &[u8]) -> Option<HeaderBlock> {
        if raw.starts_with(b"\r\n") || raw.starts_with(b"\n") || raw.is_empty() {
            return None;
        }
        let first_line = raw.split(|b| *b == b'\n').next().unwrap_or(raw);
        if !first_line.contains(&b':') {
            return None;
        }
        let mut pos = 0;
        while let Some(rest) = raw.get(pos..).filter(|r| !r.is_empty()) {
            let end = match rest.iter().position(|b| *b == b'\n') {
                Some(i) => pos + i + 1,
                None => {
                    // The last header line without a line end and no body.
                    return Some(HeaderBlock {
                        body_start: raw.len(),
                        separator_len: 0,
                    });
                }
            };
            let line = rest.get(..end - pos).unwrap_or(rest);
            if line == b"\r\n" || line == b"\n" {
                return Some(HeaderBlock {
                    body_start: pos,
                    separator_len: line.len(),
                });
            }
            pos = end;
        }
        Some(HeaderBlock {
            body_start: raw.len(),
            separator_len: 0,
        })
    }

    /// The fields of the block, in order. Lines that are neither a field nor a continuation
    /// are kept with the field before them (they are passed through untouched).
    pub fn fields(&self, raw: &[u8]) -> Vec<Field> {
        let head = raw.get(..self.body_start).unwrap_or(raw);
        let mut out: Vec<Field> = Vec::new();
        let mut pos = 0;
        while let Some(rest) = head.get(pos..).filter(|r| !r.is_empty()) {
            let len = rest
                .iter()
                .position(|b| *b == b'\n')
                .map_or(rest.len(), |i| i + 1);
            let line = rest.get(..len).unwrap_or(rest);
            let end = pos + line.len();
            let continuation = matches!(line.first(), Some(b' ' | b'\t'));
            let name = line
                .iter()
                .position(|b| *b == b':')
                .and_then(|i| line.get(..i))
                .filter(|n| !n.is_empty() && n.iter().all(|b| b.is_ascii_graphic()));
            match (continuation, name, out.last_mut()) {
                (false, Some(n), _) => out.push(Field {
                    name: String::from_utf8_lossy(n).into_owned(),
                    range: pos..end,
                }),
                (_, _, Some(prev)) => prev.range.end = end,
                (_, _, None) => out.push(Field {
                    name: String::new(),
                    range: pos..end,
                }),
            }
            pos = end;
        }
        out
    }
}

/// The message with every bare LF (and bare CR) turned into CRLF, as SMTP requires; the same
/// buffer when there is nothing to change.
pub fn crlf(raw: Bytes) -> Bytes {
    if !needs_crlf(&raw) {
        return raw;
    }
    let mut out = Vec::with_capacity(raw.len() + raw.len() / 32);
    let mut i = 0;
    while let Some(&b) = raw.get(i) {
        match b {
            b'\r' if raw.get(i + 1) == Some(&b'\n') => {
                out.extend_from_slice(b"\r\n");
                i += 2;
            }
            b'\r' | b'\n' => {
                out.extend_from_slice(b"\r\n");
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    Bytes::from(out)
}

fn needs_crlf(raw: &[u8]) -> bool {
    let mut i = 0;
    while let Some(&b) = raw.get(i) {
        match b {
            b'\r' if raw.get(i + 1) == Some(&b'\n') => i += 2,
            b'\r' | b'\n' => return true,
            _ => i += 1,
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_and_lists_fields() {
        let raw = b"A: 1\r\nB: 2\r\n  more\r\nC:3\r\n\r\nbody";
        let b = HeaderBlock::split(raw).unwrap();
        assert_eq!(b.body_start, 25);
        assert_eq!(b.separator_len, 2);
        let f = b.fields(raw);
        let names: Vec<_> = f.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(names, ["A", "B", "C"]);
        assert_eq!(&raw[f[1].range.clone()], b"B: 2\r\n  more\r\n");
        assert_eq!(&raw[b.body_start + b.separator_len..], b"body");
    }

    #[test]
    fn odd_blocks() {
        assert_eq!(HeaderBlock::split(b"\r\nbody"), None);
        assert_eq!(HeaderBlock::split(b"no colon here\r\n\r\n"), None);
        let only = HeaderBlock::split(b"A: 1\r\nB: 2").unwrap();
        assert_eq!((only.body_start, only.separator_len), (10, 0));
        assert_eq!(only.fields(b"A: 1\r\nB: 2").len(), 2);
    }

    #[test]
    fn line_ends() {
        assert_eq!(
            &crlf(Bytes::from_static(b"a\nb\r\nc\rd"))[..],
            b"a\r\nb\r\nc\r\nd"
        );
        let same = Bytes::from_static(b"a\r\nb");
        assert_eq!(crlf(same.clone()).as_ptr(), same.as_ptr());
    }
}
