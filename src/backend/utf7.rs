//! Modified UTF-7 for IMAP mailbox names (RFC 3501 section 5.1.3).
//!
//! Printable US-ASCII other than `&` stands for itself, `&-` is `&`, and any
//! other text is UTF-16BE encoded in a modified base64 (`,` instead of `/`, no
//! padding) between `&` and `-`.

use std::fmt;

/// A name that is not valid modified UTF-7.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Utf7Error;

impl fmt::Display for Utf7Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("invalid modified UTF-7 mailbox name")
    }
}

impl std::error::Error for Utf7Error {}

const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+,";

fn sextet(b: u8) -> Option<u32> {
    ALPHABET.iter().position(|&c| c == b).map(|p| p as u32)
}

/// The character for a six-bit value.
// Cannot panic: the value is masked to six bits and ALPHABET has 64 entries.
#[allow(clippy::indexing_slicing)]
fn base64_char(v: u32) -> char {
    char::from(ALPHABET[(v & 0x3f) as usize])
}

/// Decode a modified UTF-7 mailbox name to UTF-8, strictly.
pub fn decode(name: &str) -> Result<String, Utf7Error> {
    let bytes = name.as_bytes();
    let mut out = String::with_capacity(name.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        if b != b'&' {
            if !(0x20..=0x7e).contains(&b) {
                return Err(Utf7Error);
            }
            out.push(char::from(b));
            i += 1;
            continue;
        }
        // '&' ... '-'
        let start = i + 1;
        let len = bytes
            .get(start..)
            .and_then(|rest| rest.iter().position(|&c| c == b'-'))
            .ok_or(Utf7Error)?;
        let encoded = bytes.get(start..start + len).ok_or(Utf7Error)?;
        i = start + len + 1;
        if encoded.is_empty() {
            out.push('&');
            continue;
        }
        let mut units = Vec::with_capacity(encoded.len() * 6 / 16);
        let mut acc: u32 = 0;
        let mut bits = 0u32;
        for &c in encoded {
            acc = (acc << 6) | sextet(c).ok_or(Utf7Error)?;
            bits += 6;
            if bits >= 16 {
                bits -= 16;
                units.push(((acc >> bits) & 0xffff) as u16);
                acc &= (1 << bits) - 1;
            }
        }
        // Leftover bits must be fewer than 6 and all zero.
        if bits >= 6 || acc != 0 || units.is_empty() {
            return Err(Utf7Error);
        }
        let mut run = String::new();
        for ch in char::decode_utf16(units.iter().copied()) {
            let ch = ch.map_err(|_| Utf7Error)?;
            run.push(ch);
        }
        // RFC 3501 also forbids encoding printable ASCII inside a run; some
        // clients do it anyway, so such names are accepted.
        out.push_str(&run);
    }
    Ok(out)
}

/// Decode for display: the decoded name, or the raw name when it is not valid
/// modified UTF-7 (e.g. a server that sends UTF-8 names).
pub fn decode_lossy(name: &str) -> String {
    decode(name).unwrap_or_else(|_| name.to_string())
}

/// Encode a UTF-8 mailbox name to modified UTF-7.
pub fn encode(name: &str) -> String {
    let mut out = String::with_capacity(name.len() + 8);
    let mut pending: Vec<u16> = Vec::new();
    let flush = |pending: &mut Vec<u16>, out: &mut String| {
        if pending.is_empty() {
            return;
        }
        out.push('&');
        let mut acc: u32 = 0;
        let mut bits = 0u32;
        for &u in pending.iter() {
            acc = (acc << 16) | u32::from(u);
            bits += 16;
            while bits >= 6 {
                bits -= 6;
                out.push(base64_char((acc >> bits) & 0x3f));
            }
            acc &= (1 << bits) - 1;
        }
        if bits > 0 {
            out.push(base64_char((acc << (6 - bits)) & 0x3f));
        }
        out.push('-');
        pending.clear();
    };
    for ch in name.chars() {
        if ('\u{20}'..='\u{7e}').contains(&ch) {
            flush(&mut pending, &mut out);
            if ch == '&' {
                out.push_str("&-");
            } else {
                out.push(ch);
            }
        } else {
            let mut buf = [0u16; 2];
            pending.extend_from_slice(ch.encode_utf16(&mut buf));
        }
    }
    flush(&mut pending, &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_rfc_and_common_examples() {
        assert_eq!(decode("Entw&APw-rfe").unwrap(), "Entwürfe");
        assert_eq!(decode("&ZeVnLIqe-").unwrap(), "日本語");
        assert_eq!(
            decode("~peter/mail/&U,BTFw-/&ZeVnLIqe-").unwrap(),
            "~peter/mail/台北/日本語"
        );
        assert_eq!(decode("Tom &- Jerry").unwrap(), "Tom & Jerry");
        assert_eq!(decode("INBOX").unwrap(), "INBOX");
        assert_eq!(
            decode("Gel&APY-schte Elemente").unwrap(),
            "Gelöschte Elemente"
        );
        assert_eq!(
            decode("&BB4EQgQ,BEAEMAQyBDsENQQ9BD0ESwQ1-").unwrap(),
            "Отправленные"
        );
        // astral plane: surrogate pair
        assert_eq!(decode("&2D3eAA-").unwrap(), "😀");
        assert_eq!(decode("").unwrap(), "");
    }

    #[test]
    fn rejects_invalid() {
        for bad in [
            "&",           // unterminated
            "&ZeVnLIqe",   // unterminated
            "&Zé-",        // non-base64
            "&A-",         // too few bits
            "&AP-",        // leftover non-zero bits
            "&2D0-",       // lone high surrogate
            "caf\u{e9}",   // raw 8-bit
            "a\tb",        // control character
            "&ZeVnLIqe/-", // '/' is not in the modified alphabet
        ] {
            assert!(decode(bad).is_err(), "{bad:?}");
        }
        assert_eq!(decode_lossy("caf\u{e9}"), "caf\u{e9}");
    }

    #[test]
    fn encodes_and_round_trips() {
        assert_eq!(encode("Entwürfe"), "Entw&APw-rfe");
        assert_eq!(encode("日本語"), "&ZeVnLIqe-");
        assert_eq!(encode("Tom & Jerry"), "Tom &- Jerry");
        assert_eq!(encode("台北/日本語"), "&U,BTFw-/&ZeVnLIqe-");
        for s in [
            "",
            "plain",
            "Gelöschte Elemente",
            "😀 smile",
            "a&b&&c",
            "ÄÖÜäöüß€",
            "Отправленные",
            "x\u{7f}y",
        ] {
            assert_eq!(decode(&encode(s)).unwrap(), s, "{s:?}");
        }
    }
}
