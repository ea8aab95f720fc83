//! Autodiscover (MS-ASCMD 2.2.1.1): the XML request a phone sends with the user's address, and
//! the answers: the MobileSync settings (where EAS is served), the errors of the Autodiscover
//! framework (ErrorCode 600 and 601, section 2.2.3.64) and the provider's own error
//! (Action/Error with Status 2, section 4.2.2). Also the JSON form Outlook for iOS/Android asks
//! first (`autodiscover.json`), which Exchange answers with one URL per protocol.
//!
//! Parsing accepts only well-formed UTF-8 XML without a DTD, so no entity is ever expanded; any
//! defect is an [`InvalidRequest`], answered with ErrorCode 600. Nothing here does I/O.

use std::time::{SystemTime, UNIX_EPOCH};

use quick_xml::events::Event;
use quick_xml::name::ResolveResult;
use quick_xml::NsReader;

/// Namespace of the request phones send (section 6.3).
pub const MOBILESYNC_REQUEST_NS: &str =
    "http://schemas.microsoft.com/exchange/autodiscover/mobilesync/requestschema/2006";
/// Namespace of the request Outlook sends (MS-OXDSCLI 2.2.1).
pub const OUTLOOK_REQUEST_NS: &str =
    "http://schemas.microsoft.com/exchange/autodiscover/outlook/requestschema/2006";
/// Namespace of the `Autodiscover` element of every answer (section 6.4).
pub const RESPONSE_NS: &str =
    "http://schemas.microsoft.com/exchange/autodiscover/responseschema/2006";
/// The one `AcceptableResponseSchema` this server has a provider for (section 2.2.3.1).
pub const MOBILESYNC_RESPONSE_NS: &str =
    "http://schemas.microsoft.com/exchange/autodiscover/mobilesync/responseschema/2006";

/// Largest request accepted: a real one is a few hundred bytes.
pub const MAX_REQUEST_BYTES: usize = 64 * 1024;
/// Deepest element nesting accepted (a real request has 3 levels).
const MAX_DEPTH: usize = 16;
/// Longest address accepted (RFC 5321: 64 + 1 + 255).
const MAX_ADDRESS: usize = 320;

/// The culture of every answer (section 2.2.3.38: "of the form en:us").
pub const CULTURE: &str = "en:us";
/// The path of the EAS endpoint, appended to the public URL.
pub const EAS_PATH: &str = "/Microsoft-Server-ActiveSync";
/// The path of the XML Autodiscover endpoint, as Exchange spells it in its JSON answer.
pub const XML_PATH: &str = "/Autodiscover/Autodiscover.xml";

/// A parsed Autodiscover request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// `EMailAddress`, trimmed.
    pub email_address: String,
    /// `AcceptableResponseSchema`, trimmed.
    pub response_schema: String,
}

impl Request {
    /// Whether the phone asks for the MobileSync answer (the only provider here).
    pub fn wants_mobilesync(&self) -> bool {
        self.response_schema == MOBILESYNC_RESPONSE_NS
    }
}

/// A request that is not a well-formed Autodiscover request (ErrorCode 600).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid Autodiscover request: {0}")]
pub struct InvalidRequest(pub String);

fn invalid<T>(reason: impl Into<String>) -> Result<T, InvalidRequest> {
    Err(InvalidRequest(reason.into()))
}

/// Parses a request body (section 2.2.1.1; schema in section 6.3).
///
/// The root is `Autodiscover` in the MobileSync or Outlook request namespace (or none, as some
/// clients send); it holds exactly one `Request` (section 2.2.3.150.1: more is ErrorCode 600)
/// with one `EMailAddress` and one `AcceptableResponseSchema`. Other children of `Request`
/// (Outlook's `LegacyDN`) are ignored.
pub fn parse_request(body: &[u8]) -> Result<Request, InvalidRequest> {
    if body.len() > MAX_REQUEST_BYTES {
        return invalid("request too large");
    }
    let body = body.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(body);
    let Ok(text) = std::str::from_utf8(body) else {
        return invalid("not UTF-8");
    };
    let mut reader = NsReader::from_str(text);
    {
        let cfg = reader.config_mut();
        cfg.trim_text(true);
        cfg.check_end_names = true;
        cfg.expand_empty_elements = true;
    }
    // Local names of the open elements.
    let mut open: Vec<String> = Vec::new();
    let mut seen_root = false;
    let mut requests = 0;
    let mut address: Option<String> = None;
    let mut schema: Option<String> = None;
    // The field whose text is being read, and that text.
    let mut field: Option<(Field, String)> = None;
    loop {
        let (ns, event) = match reader.read_resolved_event() {
            Ok(x) => x,
            Err(e) => return invalid(format!("malformed XML: {e}")),
        };
        match event {
            Event::Start(e) => {
                if open.len() >= MAX_DEPTH {
                    return invalid("elements nested too deeply");
                }
                let local = String::from_utf8_lossy(e.local_name().as_ref()).into_owned();
                match open.len() {
                    0 => {
                        if seen_root {
                            return invalid("more than one root element");
                        }
                        seen_root = true;
                        let ns_ok = match &ns {
                            ResolveResult::Bound(n) => {
                                let n = n.as_ref();
                                n == MOBILESYNC_REQUEST_NS.as_bytes()
                                    || n == OUTLOOK_REQUEST_NS.as_bytes()
                            }
                            ResolveResult::Unbound => true,
                            ResolveResult::Unknown(_) => false,
                        };
                        if local != "Autodiscover" || !ns_ok {
                            return invalid("the root is not an Autodiscover request element");
                        }
                    }
                    1 if local == "Request" => {
                        requests += 1;
                        if requests > 1 {
                            return invalid("more than one Request");
                        }
                    }
                    2 if open.get(1).is_some_and(|e| e == "Request") => {
                        field = match local.as_str() {
                            "EMailAddress" if address.is_some() => {
                                return invalid("more than one EMailAddress")
                            }
                            "AcceptableResponseSchema" if schema.is_some() => {
                                return invalid("more than one AcceptableResponseSchema")
                            }
                            "EMailAddress" => Some((Field::Address, String::new())),
                            "AcceptableResponseSchema" => Some((Field::Schema, String::new())),
                            _ => None,
                        };
                    }
                    _ => {}
                }
                open.push(local);
            }
            Event::End(_) => {
                if open.len() == 3 {
                    match field.take() {
                        Some((Field::Address, t)) => address = Some(t),
                        Some((Field::Schema, t)) => schema = Some(t),
                        None => {}
                    }
                }
                open.pop();
            }
            Event::Text(t) => {
                let text = match t.unescape() {
                    Ok(s) => s,
                    Err(e) => return invalid(format!("malformed text: {e}")),
                };
                if open.is_empty() {
                    if !text.trim().is_empty() {
                        return invalid("text outside the root element");
                    }
                } else if let (Some((_, buf)), 3) = (field.as_mut(), open.len()) {
                    buf.push_str(&text);
                }
            }
            Event::CData(c) => {
                let Ok(text) = std::str::from_utf8(&c) else {
                    return invalid("not UTF-8");
                };
                if let (Some((_, buf)), 3) = (field.as_mut(), open.len()) {
                    buf.push_str(text);
                }
            }
            Event::DocType(_) => return invalid("a DTD is not accepted"),
            Event::Eof => break,
            Event::Empty(_) | Event::Decl(_) | Event::PI(_) | Event::Comment(_) => {}
        }
    }
    if !open.is_empty() {
        return invalid("unclosed element");
    }
    if !seen_root {
        return invalid("no root element");
    }
    if requests == 0 {
        return invalid("no Request");
    }
    let Some(address) = address.map(|a| a.trim().to_string()) else {
        return invalid("no EMailAddress");
    };
    let Some(schema) = schema.map(|s| s.trim().to_string()) else {
        return invalid("no AcceptableResponseSchema");
    };
    if !is_address(&address) {
        return invalid("EMailAddress is not an address");
    }
    if schema.is_empty() {
        return invalid("empty AcceptableResponseSchema");
    }
    Ok(Request {
        email_address: address,
        response_schema: schema,
    })
}

#[derive(Debug, Clone, Copy)]
enum Field {
    Address,
    Schema,
}

/// `local@domain`, within length, without spaces or control characters.
fn is_address(a: &str) -> bool {
    let Some((local, domain)) = a.rsplit_once('@') else {
        return false;
    };
    !local.is_empty()
        && !domain.is_empty()
        && a.len() <= MAX_ADDRESS
        && !a.chars().any(|c| c.is_whitespace() || c.is_control())
}

/// The framework's error codes (section 2.2.3.64).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    /// 600: the request is not a valid Autodiscover request.
    InvalidRequest,
    /// 601: no provider for the requested `AcceptableResponseSchema`.
    ProviderNotAvailable,
}

impl ErrorCode {
    pub fn code(self) -> u32 {
        match self {
            ErrorCode::InvalidRequest => 600,
            ErrorCode::ProviderNotAvailable => 601,
        }
    }

    pub fn message(self) -> &'static str {
        match self {
            ErrorCode::InvalidRequest => "Invalid Request",
            ErrorCode::ProviderNotAvailable => "Provider is not available",
        }
    }
}

/// What a MobileSync settings answer holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings<'a> {
    pub email_address: &'a str,
    pub display_name: &'a str,
    /// The EAS URL (`https://host/Microsoft-Server-ActiveSync`).
    pub url: &'a str,
}

const XML_DECL: &str = "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n";

/// The MobileSync settings answer (section 4.2.4, without CertEnroll).
pub fn settings_response(s: &Settings<'_>) -> String {
    let url = escape(s.url);
    format!(
        "{XML_DECL}<Autodiscover xmlns=\"{RESPONSE_NS}\">\n\
         \x20 <Response xmlns=\"{MOBILESYNC_RESPONSE_NS}\">\n\
         \x20   <Culture>{CULTURE}</Culture>\n\
         \x20   <User>\n\
         \x20     <DisplayName>{}</DisplayName>\n\
         \x20     <EMailAddress>{}</EMailAddress>\n\
         \x20   </User>\n\
         \x20   <Action>\n\
         \x20     <Settings>\n\
         \x20       <Server>\n\
         \x20         <Type>MobileSync</Type>\n\
         \x20         <Url>{url}</Url>\n\
         \x20         <Name>{url}</Name>\n\
         \x20       </Server>\n\
         \x20     </Settings>\n\
         \x20   </Action>\n\
         \x20 </Response>\n\
         </Autodiscover>\n",
        escape(s.display_name),
        escape(s.email_address),
    )
}

/// The MobileSync provider's error (section 4.2.2): Action/Error with Status 2 ("protocol
/// error") and a message. It names no user: it answers requests for addresses that are not the
/// caller's.
pub fn provider_error_response(message: &str) -> String {
    format!(
        "{XML_DECL}<Autodiscover xmlns=\"{RESPONSE_NS}\">\n\
         \x20 <Response xmlns=\"{MOBILESYNC_RESPONSE_NS}\">\n\
         \x20   <Culture>{CULTURE}</Culture>\n\
         \x20   <Action>\n\
         \x20     <Error>\n\
         \x20       <Status>2</Status>\n\
         \x20       <Message>{}</Message>\n\
         \x20       <DebugData />\n\
         \x20     </Error>\n\
         \x20   </Action>\n\
         \x20 </Response>\n\
         </Autodiscover>\n",
        escape(message)
    )
}

/// The framework's error answer (section 4.2.1) with `code`; `now` fills the `Time` attribute
/// (time of day, UTC, in the form of the example: `16:56:32.6164027`).
pub fn error_response(code: ErrorCode, now: SystemTime) -> String {
    let since = now.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs() % 86_400;
    let time = format!(
        "{:02}:{:02}:{:02}.{:07}",
        secs / 3600,
        secs / 60 % 60,
        secs % 60,
        since.subsec_nanos() / 100
    );
    format!(
        "{XML_DECL}<Autodiscover xmlns=\"{RESPONSE_NS}\">\n\
         \x20 <Response xmlns=\"{MOBILESYNC_RESPONSE_NS}\">\n\
         \x20   <Error Time=\"{time}\" Id=\"1\">\n\
         \x20     <ErrorCode>{}</ErrorCode>\n\
         \x20     <Message>{}</Message>\n\
         \x20     <DebugData />\n\
         \x20   </Error>\n\
         \x20 </Response>\n\
         </Autodiscover>\n",
        code.code(),
        code.message()
    )
}

/// XML text and attribute escaping.
fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c if c.is_control() => {}
            c => out.push(c),
        }
    }
    out
}

/// The display name offered for an address: its local part (the gateway knows no names).
pub fn display_name(address: &str) -> &str {
    address.split('@').next().unwrap_or(address)
}

/// The protocols the JSON form answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JsonProtocol {
    /// The EAS URL.
    ActiveSync,
    /// The XML Autodiscover URL (Outlook then posts its XML request there).
    AutodiscoverV1,
}

impl JsonProtocol {
    /// The `Protocol` query value, compared case-insensitively as Exchange does.
    pub fn parse(value: &str) -> Option<JsonProtocol> {
        if value.eq_ignore_ascii_case("ActiveSync") {
            Some(JsonProtocol::ActiveSync)
        } else if value.eq_ignore_ascii_case("AutodiscoverV1") {
            Some(JsonProtocol::AutodiscoverV1)
        } else {
            None
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            JsonProtocol::ActiveSync => "ActiveSync",
            JsonProtocol::AutodiscoverV1 => "AutodiscoverV1",
        }
    }
}

/// The JSON answer: `{"Protocol":"ActiveSync","Url":"https://host/Microsoft-Server-ActiveSync"}`
/// for `base` = `https://host`.
pub fn json_response(protocol: JsonProtocol, base: &str) -> String {
    let path = match protocol {
        JsonProtocol::ActiveSync => EAS_PATH,
        JsonProtocol::AutodiscoverV1 => XML_PATH,
    };
    format!(
        "{{\"Protocol\":\"{}\",\"Url\":{}}}",
        protocol.name(),
        json_string(&format!("{base}{path}"))
    )
}

/// Exchange's answer (with HTTP 400) to a protocol it does not serve.
pub fn json_invalid_protocol(value: &str) -> String {
    let message = format!(
        "The given protocol value '{value}' is invalid. Supported values are 'ActiveSync,AutodiscoverV1'"
    );
    format!(
        "{{\"ErrorCode\":\"InvalidProtocol\",\"ErrorMessage\":{}}}",
        json_string(&message)
    )
}

/// A JSON string literal.
fn json_string(s: &str) -> String {
    use std::fmt::Write as _;
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ios(address: &str) -> String {
        format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Autodiscover xmlns=\"{MOBILESYNC_REQUEST_NS}\">\n\
             <Request>\n<EMailAddress>{address}</EMailAddress>\n\
             <AcceptableResponseSchema>{MOBILESYNC_RESPONSE_NS}</AcceptableResponseSchema>\n\
             </Request>\n</Autodiscover>\n"
        )
    }

    #[test]
    fn phone_requests_parse() {
        let r = parse_request(ios("alice@example.test").as_bytes()).unwrap();
        assert_eq!(r.email_address, "alice@example.test");
        assert!(r.wants_mobilesync());
        // A byte-order mark, a prefix, CDATA, spaces around values.
        let body = format!(
            "\u{FEFF}<a:Autodiscover xmlns:a=\"{MOBILESYNC_REQUEST_NS}\"><a:Request>\
             <a:EMailAddress> <![CDATA[bob@example.test]]> </a:EMailAddress>\
             <a:AcceptableResponseSchema>\n{MOBILESYNC_RESPONSE_NS}\n</a:AcceptableResponseSchema>\
             </a:Request></a:Autodiscover>"
        );
        let r = parse_request(body.as_bytes()).unwrap();
        assert_eq!(r.email_address, "bob@example.test");
        assert!(r.wants_mobilesync());
        // Outlook's request, with LegacyDN: parsed, but not for the MobileSync provider.
        let body = format!(
            "<Autodiscover xmlns=\"{OUTLOOK_REQUEST_NS}\"><Request><LegacyDN>/o=x</LegacyDN>\
             <EMailAddress>c@example.test</EMailAddress><AcceptableResponseSchema>\
             http://schemas.microsoft.com/exchange/autodiscover/outlook/responseschema/2006a\
             </AcceptableResponseSchema></Request></Autodiscover>"
        );
        let r = parse_request(body.as_bytes()).unwrap();
        assert_eq!(r.email_address, "c@example.test");
        assert!(!r.wants_mobilesync());
        // No namespace at all.
        let body =
            ios("d@example.test").replace(&format!(" xmlns=\"{MOBILESYNC_REQUEST_NS}\""), "");
        assert!(parse_request(body.as_bytes()).is_ok());
    }

    #[test]
    fn defects_are_invalid_requests_never_panics() {
        let good = ios("alice@example.test");
        let cases: Vec<Vec<u8>> = vec![
            Vec::new(),
            b"   ".to_vec(),
            b"plain text".to_vec(),
            good.as_bytes()[..good.len() / 2].to_vec(),
            good.replace("</Request>", "</Requests>").into_bytes(),
            good.replace("alice@example.test", "&xxe;").into_bytes(),
            good.replace("alice@example.test", "not an address")
                .into_bytes(),
            good.replace("alice@example.test", "").into_bytes(),
            good.replace("<Autodiscover ", "<Other ")
                .replace("</Autodiscover>", "</Other>")
                .into_bytes(),
            good.replace(MOBILESYNC_REQUEST_NS, "urn:other")
                .into_bytes(),
            good.replace("</Request>", "</Request><Request/>")
                .into_bytes(),
            good.replace(
                "</EMailAddress>",
                "</EMailAddress><EMailAddress>b@x</EMailAddress>",
            )
            .into_bytes(),
            good.replace("<Request>", "")
                .replace("</Request>", "")
                .into_bytes(),
            format!("{good}<Autodiscover/>").into_bytes(),
            format!("{good}trailing").into_bytes(),
            format!(
                "<?xml version=\"1.0\"?><!DOCTYPE a [<!ENTITY x SYSTEM \"file:///etc/passwd\">]>{}",
                good.replace("alice@example.test", "&x;")
            )
            .into_bytes(),
            "<a>".repeat(10_000).into_bytes(),
            vec![0xFF, 0xFE, b'<', 0],
            vec![b'x'; MAX_REQUEST_BYTES + 1],
        ];
        for body in cases {
            let r = parse_request(&body);
            assert!(
                r.is_err(),
                "{:?} parsed as {r:?}",
                String::from_utf8_lossy(&body)
            );
        }
        // Every prefix of a good request: an error or the request, never a panic.
        for n in 0..good.len() {
            let _ = parse_request(&good.as_bytes()[..n]);
        }
    }

    #[test]
    fn settings_answer_has_the_shape_of_the_spec_example() {
        let xml = settings_response(&Settings {
            email_address: "chris@woodgrovebank.com",
            display_name: "Chris <Gray>",
            url: "https://loandept.woodgrovebank.com/Microsoft-Server-ActiveSync",
        });
        let want = [
            format!("<Autodiscover xmlns=\"{RESPONSE_NS}\">"),
            format!("<Response xmlns=\"{MOBILESYNC_RESPONSE_NS}\">"),
            "<Culture>en:us</Culture>".into(),
            "<DisplayName>Chris &lt;Gray&gt;</DisplayName>".into(),
            "<EMailAddress>chris@woodgrovebank.com</EMailAddress>".into(),
            "<Type>MobileSync</Type>".into(),
            "<Url>https://loandept.woodgrovebank.com/Microsoft-Server-ActiveSync</Url>".into(),
            "<Name>https://loandept.woodgrovebank.com/Microsoft-Server-ActiveSync</Name>".into(),
        ];
        let mut at = 0;
        for w in &want {
            let i = xml[at..]
                .find(w.as_str())
                .unwrap_or_else(|| panic!("{w} in order in {xml}"));
            at += i + w.len();
        }
        // Well-formed: our own parser reads it to the end.
        let mut r = NsReader::from_str(&xml);
        loop {
            match r.read_event().expect("well-formed") {
                Event::Eof => break,
                _ => continue,
            }
        }
    }

    #[test]
    fn error_answers() {
        let t = UNIX_EPOCH
            + std::time::Duration::new(86_400 * 3 + 16 * 3600 + 56 * 60 + 32, 616_402_700);
        let xml = error_response(ErrorCode::InvalidRequest, t);
        assert!(
            xml.contains("<Error Time=\"16:56:32.6164027\" Id=\"1\">"),
            "{xml}"
        );
        assert!(xml.contains("<ErrorCode>600</ErrorCode>"));
        assert!(xml.contains("<Message>Invalid Request</Message>"));
        let xml = error_response(ErrorCode::ProviderNotAvailable, t);
        assert!(xml.contains("<ErrorCode>601</ErrorCode>"));
        let xml = provider_error_response("not <yours>");
        assert!(xml.contains("<Status>2</Status>"));
        assert!(xml.contains("<Message>not &lt;yours&gt;</Message>"));
        assert!(!xml.contains("<User>"));
    }

    #[test]
    fn json_answers() {
        assert_eq!(
            json_response(JsonProtocol::ActiveSync, "https://mail.example.org"),
            r#"{"Protocol":"ActiveSync","Url":"https://mail.example.org/Microsoft-Server-ActiveSync"}"#
        );
        assert_eq!(
            json_response(JsonProtocol::AutodiscoverV1, "https://mail.example.org"),
            r#"{"Protocol":"AutodiscoverV1","Url":"https://mail.example.org/Autodiscover/Autodiscover.xml"}"#
        );
        assert_eq!(
            JsonProtocol::parse("activesync"),
            Some(JsonProtocol::ActiveSync)
        );
        assert_eq!(JsonProtocol::parse("Ews"), None);
        assert_eq!(
            json_invalid_protocol("E\"w\\s\n"),
            r#"{"ErrorCode":"InvalidProtocol","ErrorMessage":"The given protocol value 'E\"w\\s\n' is invalid. Supported values are 'ActiveSync,AutodiscoverV1'"}"#
        );
    }

    #[test]
    fn display_name_is_the_local_part() {
        assert_eq!(display_name("alice@example.test"), "alice");
        assert_eq!(display_name("x"), "x");
    }
}
