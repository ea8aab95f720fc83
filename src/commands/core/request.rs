//! One request as the commands see it: who, which device, which request line, which body.

use std::net::IpAddr;
use std::sync::Arc;

use crate::backend::Credentials;
use crate::commands::devices;
use crate::eas::{ProtocolVersion, RequestLine};
use crate::wbxml::Element;

/// The authenticated user.
#[derive(Clone)]
pub struct User {
    /// The normalised address (also the IMAP login).
    pub address: String,
    pub credentials: Credentials,
}

/// One request, as the commands see it.
pub struct Context {
    pub user: User,
    /// The device's record as this request found it (just recorded by the HTTP layer).
    pub device: crate::state::Device,
    pub line: RequestLine,
    pub version: ProtocolVersion,
    pub client_ip: Option<IpAddr>,
    pub now: i64,
    /// When the request arrived, before its login (which may have waited for a turn): a
    /// Ping's heartbeat counts from here, as the phone's does.
    pub received: std::time::Instant,
    /// What the request did, for the device's request log.
    pub report: Arc<devices::RequestReport>,
}

impl Context {
    pub fn device_id(&self) -> &str {
        &self.line.device_id
    }
}

/// A request body, as the HTTP layer decoded it.
#[derive(Debug, Clone)]
pub enum Body {
    /// No body (legal for Sync and Ping).
    Empty,
    /// A decoded WBXML document.
    Wbxml(Element),
    /// A raw RFC 822 message (12.x SendMail, SmartReply, SmartForward).
    Mime(bytes::Bytes),
}

impl Body {
    /// The WBXML document, if that is what the body is.
    pub fn element(&self) -> Option<&Element> {
        match self {
            Body::Wbxml(e) => Some(e),
            _ => None,
        }
    }
}
