//! The request line: both query forms of MS-ASHTTP 2.2.1.1.1.
//!
//! The plain form is `Cmd=Sync&User=u&DeviceId=d&DeviceType=t&...`. The base64 form (12.1+) is
//! one base64 value: version byte, command code, locale (u16 LE), DeviceId (length-prefixed,
//! possibly binary), policy key (length 0 or 4, u32 LE), DeviceType, then tagged parameters.
//! DeviceId and DeviceType are validated here, before they reach storage or logs.

use base64::Engine;

use super::{Command, ProtocolVersion};

/// Longest DeviceId or DeviceType accepted (after hex-encoding a binary DeviceId).
pub const MAX_ID_LEN: usize = 64;

/// Everything the URI says about a request.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RequestLine {
    /// The command as named; `None` in `command` below means it is unknown.
    pub command_name: String,
    pub command: Option<Command>,
    pub user: Option<String>,
    pub device_id: String,
    pub device_type: String,
    /// Only the base64 form carries the version; otherwise it is the `MS-ASProtocolVersion` header.
    pub version: Option<ProtocolVersion>,
    /// Only the base64 form carries the policy key; otherwise `X-MS-PolicyKey`.
    pub policy_key: Option<u32>,
    pub locale: Option<u16>,
    pub attachment_name: Option<String>,
    pub collection_id: Option<String>,
    pub item_id: Option<String>,
    pub long_id: Option<String>,
    pub occurrence: Option<String>,
    pub save_in_sent: bool,
    pub accept_multipart: bool,
    /// Whether the base64 form was used.
    pub base64_form: bool,
}

/// Why a request line was refused (HTTP 400).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QueryError {
    #[error("missing query parameter {0}")]
    Missing(&'static str),
    #[error("query is neither the plain nor a valid base64 form")]
    BadBase64,
    #[error("base64 query ends early at byte {0}")]
    Truncated(usize),
    #[error("unknown protocol version byte {0}")]
    UnknownVersion(u8),
    #[error("unknown command code {0}")]
    UnknownCommandCode(u8),
    #[error("policy key field has length {0}, not 0 or 4")]
    BadPolicyKeyLength(u8),
    #[error("DeviceId is empty, too long or has characters outside A-Z a-z 0-9")]
    BadDeviceId,
    #[error("DeviceType is empty, too long or has unsafe characters")]
    BadDeviceType,
}

impl RequestLine {
    /// Parses the query part of the URI (without the `?`).
    pub fn parse(query: &str) -> Result<RequestLine, QueryError> {
        let lower = query.to_ascii_lowercase();
        if lower.starts_with("cmd=") || lower.contains("&cmd=") {
            parse_plain(query)
        } else {
            parse_base64(query)
        }
    }
}

fn parse_plain(query: &str) -> Result<RequestLine, QueryError> {
    let mut line = RequestLine::default();
    let mut device_id = None;
    let mut device_type = None;
    for (k, v) in form_urlencoded::parse(query.as_bytes()) {
        let v = v.into_owned();
        match k.to_ascii_lowercase().as_str() {
            "cmd" => line.command_name = v,
            "user" => line.user = Some(v),
            "deviceid" => device_id = Some(v),
            "devicetype" => device_type = Some(v),
            "attachmentname" => line.attachment_name = Some(v),
            "collectionid" => line.collection_id = Some(v),
            "itemid" => line.item_id = Some(v),
            "longid" => line.long_id = Some(v),
            "occurrence" => line.occurrence = Some(v),
            "saveinsent" => line.save_in_sent = v.eq_ignore_ascii_case("T"),
            _ => {} // unknown parameters are ignored, as Exchange does
        }
    }
    if line.command_name.is_empty() {
        return Err(QueryError::Missing("Cmd"));
    }
    line.command = Command::from_name(&line.command_name);
    let device_id = device_id.ok_or(QueryError::Missing("DeviceId"))?;
    line.device_id = validate_device_id(device_id.as_bytes())?;
    let device_type = device_type.ok_or(QueryError::Missing("DeviceType"))?;
    line.device_type = validate_device_type(&device_type)?;
    Ok(line)
}

fn parse_base64(query: &str) -> Result<RequestLine, QueryError> {
    // The value may arrive percent-encoded ("%2B", "%3D").
    let decoded: String = form_urlencoded::parse(format!("q={query}").as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default();
    // A '+' sent without percent-encoding arrives as a space; base64 has no spaces.
    let decoded = decoded.trim().replace(' ', "+");
    let raw = base64::engine::general_purpose::STANDARD
        .decode(decoded.as_bytes())
        .map_err(|_| QueryError::BadBase64)?;
    let mut r = Cursor { buf: &raw, pos: 0 };
    let version_byte = r.u8()?;
    let version =
        ProtocolVersion::from_byte(version_byte).ok_or(QueryError::UnknownVersion(version_byte))?;
    let code = r.u8()?;
    let command = Command::from_code(code).ok_or(QueryError::UnknownCommandCode(code))?;
    let locale = u16::from_le_bytes([r.u8()?, r.u8()?]);
    let id_len = r.u8()? as usize;
    let device_id = validate_device_id(r.take(id_len)?)?;
    let key_len = r.u8()?;
    let policy_key = match key_len {
        0 => None,
        4 => {
            let b = r.take(4)?;
            let b: [u8; 4] = b.try_into().map_err(|_| QueryError::Truncated(r.pos))?;
            Some(u32::from_le_bytes(b))
        }
        n => return Err(QueryError::BadPolicyKeyLength(n)),
    };
    let type_len = r.u8()? as usize;
    let device_type = String::from_utf8_lossy(r.take(type_len)?).into_owned();
    let mut line = RequestLine {
        command_name: command.name().to_string(),
        command: Some(command),
        device_id,
        device_type: validate_device_type(&device_type)?,
        version: Some(version),
        policy_key,
        locale: Some(locale),
        base64_form: true,
        ..RequestLine::default()
    };
    while r.pos < raw.len() {
        let tag = r.u8()?;
        let len = r.u8()? as usize;
        let value = r.take(len)?;
        let text = || String::from_utf8_lossy(value).into_owned();
        match tag {
            0 => line.attachment_name = Some(text()),
            1 => line.collection_id = Some(text()),
            3 => line.item_id = Some(text()),
            4 => line.long_id = Some(text()),
            6 => line.occurrence = Some(text()),
            7 => {
                let bits = value.first().copied().unwrap_or(0);
                line.save_in_sent = bits & 0x01 != 0;
                line.accept_multipart = bits & 0x02 != 0;
            }
            8 => line.user = Some(text()),
            _ => {} // unknown tags are skipped
        }
    }
    Ok(line)
}

struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn u8(&mut self) -> Result<u8, QueryError> {
        let b = *self
            .buf
            .get(self.pos)
            .ok_or(QueryError::Truncated(self.pos))?;
        self.pos += 1;
        Ok(b)
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], QueryError> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|e| *e <= self.buf.len())
            .ok_or(QueryError::Truncated(self.pos))?;
        let s = self
            .buf
            .get(self.pos..end)
            .ok_or(QueryError::Truncated(self.pos))?;
        self.pos = end;
        Ok(s)
    }
}

/// A DeviceId is kept as is when it is plain alphanumeric, else hex-encoded (binary ids of the
/// base64 form, or odd characters), and must then fit in [`MAX_ID_LEN`].
pub fn validate_device_id(raw: &[u8]) -> Result<String, QueryError> {
    if raw.is_empty() {
        return Err(QueryError::BadDeviceId);
    }
    let id = if raw.iter().all(u8::is_ascii_alphanumeric) {
        String::from_utf8_lossy(raw).into_owned()
    } else {
        hex::encode(raw)
    };
    if id.len() > MAX_ID_LEN {
        return Err(QueryError::BadDeviceId);
    }
    Ok(id)
}

/// A DeviceType must be 1..=64 characters of A-Z a-z 0-9 `-` `_` `.`.
pub fn validate_device_type(raw: &str) -> Result<String, QueryError> {
    let ok = !raw.is_empty()
        && raw.len() <= MAX_ID_LEN
        && raw
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if ok {
        Ok(raw.to_string())
    } else {
        Err(QueryError::BadDeviceType)
    }
}

/// Builds a base64 request line; used by tests and the load generator.
pub fn encode_base64(line: &RequestLine, version: ProtocolVersion, code: u8) -> String {
    let mut out = vec![
        match version {
            ProtocolVersion::V12_0 => 120,
            ProtocolVersion::V12_1 => 121,
            ProtocolVersion::V14_0 => 140,
            ProtocolVersion::V14_1 => 141,
            ProtocolVersion::V16_0 => 160,
            ProtocolVersion::V16_1 => 161,
        },
        code,
    ];
    out.extend_from_slice(&line.locale.unwrap_or(0x0409).to_le_bytes());
    out.push(line.device_id.len() as u8);
    out.extend_from_slice(line.device_id.as_bytes());
    match line.policy_key {
        Some(k) => {
            out.push(4);
            out.extend_from_slice(&k.to_le_bytes());
        }
        None => out.push(0),
    }
    out.push(line.device_type.len() as u8);
    out.extend_from_slice(line.device_type.as_bytes());
    let mut param = |tag: u8, v: &Option<String>| {
        if let Some(v) = v {
            out.push(tag);
            out.push(v.len() as u8);
            out.extend_from_slice(v.as_bytes());
        }
    };
    param(1, &line.collection_id);
    param(3, &line.item_id);
    param(4, &line.long_id);
    param(8, &line.user);
    if line.save_in_sent || line.accept_multipart {
        out.push(7);
        out.push(1);
        out.push(u8::from(line.save_in_sent) | (u8::from(line.accept_multipart) << 1));
    }
    base64::engine::general_purpose::STANDARD.encode(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_form() {
        let l = RequestLine::parse(
            "Cmd=FolderSync&User=alice&DeviceId=ABC123&DeviceType=iPhone&SaveInSent=T",
        )
        .unwrap();
        assert_eq!(l.command, Some(Command::FolderSync));
        assert_eq!(l.user.as_deref(), Some("alice"));
        assert_eq!(l.device_id, "ABC123");
        assert_eq!(l.device_type, "iPhone");
        assert!(l.save_in_sent);
        assert!(!l.base64_form);
    }

    #[test]
    fn unknown_command_is_kept_by_name() {
        let l = RequestLine::parse("Cmd=Frobnicate&DeviceId=a&DeviceType=b").unwrap();
        assert_eq!(l.command, None);
        assert_eq!(l.command_name, "Frobnicate");
    }

    #[test]
    fn plain_form_errors() {
        assert_eq!(
            RequestLine::parse("Cmd=Sync&DeviceType=x"),
            Err(QueryError::Missing("DeviceId"))
        );
        assert_eq!(
            RequestLine::parse("Cmd=Sync&DeviceId=a&DeviceType=x%0Ay"),
            Err(QueryError::BadDeviceType)
        );
        let long = "a".repeat(65);
        assert_eq!(
            RequestLine::parse(&format!("Cmd=Sync&DeviceId={long}&DeviceType=x")),
            Err(QueryError::BadDeviceId)
        );
        // Odd characters are hex-encoded, never passed through.
        let l = RequestLine::parse("Cmd=Sync&DeviceId=a%2F..&DeviceType=x").unwrap();
        assert_eq!(l.device_id, hex::encode("a/.."));
    }

    #[test]
    fn base64_form_round_trip() {
        let line = RequestLine {
            device_id: "Appl12345".into(),
            device_type: "iPhone".into(),
            policy_key: Some(3_000_000_001),
            user: Some("alice".into()),
            collection_id: Some("5".into()),
            save_in_sent: true,
            locale: Some(0x0409),
            ..RequestLine::default()
        };
        let q = encode_base64(&line, ProtocolVersion::V14_1, 20);
        let l = RequestLine::parse(&q).unwrap();
        assert_eq!(l.command, Some(Command::Provision));
        assert_eq!(l.version, Some(ProtocolVersion::V14_1));
        assert_eq!(l.policy_key, Some(3_000_000_001));
        assert_eq!(l.device_id, "Appl12345");
        assert_eq!(l.user.as_deref(), Some("alice"));
        assert_eq!(l.collection_id.as_deref(), Some("5"));
        assert!(l.save_in_sent && !l.accept_multipart);
        assert!(l.base64_form);
        // Percent-encoded form of the same value.
        let pct = q
            .replace('+', "%2B")
            .replace('=', "%3D")
            .replace('/', "%2F");
        assert_eq!(RequestLine::parse(&pct).unwrap(), l);
    }

    #[test]
    fn base64_plus_signs_sent_raw_are_kept() {
        // These keys encode with "+" (and "/") in the base64 text.
        for key in [0xbeef_beef_u32, 0xf8fb_efbe, 0xfbfb_fbfb] {
            let line = RequestLine {
                device_id: "Dev1".into(),
                device_type: "Phone".into(),
                policy_key: Some(key),
                ..RequestLine::default()
            };
            let q = encode_base64(&line, ProtocolVersion::V14_1, 9);
            let l = RequestLine::parse(&q).unwrap();
            assert!(q.contains('+'), "{q}");
            assert_eq!(l.policy_key, Some(key), "{q}");
        }
    }

    #[test]
    fn base64_binary_device_id_is_hex() {
        let mut raw = vec![141u8, 9, 0x09, 0x04, 4, 0xde, 0xad, 0xbe, 0xef, 0, 3];
        raw.extend_from_slice(b"SP2");
        let q = base64::engine::general_purpose::STANDARD.encode(&raw);
        let l = RequestLine::parse(&q).unwrap();
        assert_eq!(l.device_id, "deadbeef");
        assert_eq!(l.command, Some(Command::FolderSync));
        assert_eq!(l.policy_key, None);
    }

    #[test]
    fn base64_errors_never_panic() {
        for raw in [
            vec![],
            vec![141],
            vec![99, 0],
            vec![141, 99],
            vec![141, 0, 0, 0, 200],
            vec![141, 0, 0, 0, 1, b'a', 3, 1, 2, 3],
            vec![141, 0, 0, 0, 1, b'a', 0, 1, b'x', 8, 50],
        ] {
            let q = base64::engine::general_purpose::STANDARD.encode(&raw);
            assert!(RequestLine::parse(&q).is_err(), "{raw:?}");
        }
        assert_eq!(RequestLine::parse("%%%"), Err(QueryError::BadBase64));
    }
}
