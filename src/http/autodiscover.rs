//! The Autodiscover endpoints, so that a phone needs only the address and the password:
//!
//! - `/autodiscover/autodiscover.xml` (any letter case): POST with the XML request of MS-ASCMD
//!   2.2.1.1, authenticated like EAS requests (same [`Authenticator`](super::auth), so the same
//!   throttle). GET, which some phones probe with, is authenticated too and answered with the
//!   invalid-request error, as Exchange does.
//! - `/autodiscover/autodiscover.json/v1.0/<address>?Protocol=ActiveSync` and
//!   `/autodiscover/autodiscover.json?Email=<address>&Protocol=ActiveSync` (Outlook for iOS and
//!   Android): GET without credentials, as Exchange serves it; the answer is the same URL for
//!   every address and names no user.
//!
//! The URL handed out is `server.public_url` plus `/Microsoft-Server-ActiveSync`, or without it
//! `https://` plus the request's Host.

use std::net::IpAddr;
use std::time::SystemTime;

use bytes::Bytes;
use hyper::body::Incoming;
use hyper::header::{HeaderValue, HOST};
use hyper::{Method, Request, Response};
use tracing::debug;

use super::handler::{RequestLog, Server};
use super::response::{self, Body};
use crate::backend::MailBackend;
use crate::eas::autodiscover::{self as ad, ErrorCode, JsonProtocol, Settings};
use crate::state::StateStore;

/// The Autodiscover endpoints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    Xml,
    Json,
}

impl Endpoint {
    /// The endpoint a lower-cased path without trailing `/` names, if any.
    pub fn of(path: &str) -> Option<Endpoint> {
        const JSON: &str = "/autodiscover/autodiscover.json";
        if path == "/autodiscover/autodiscover.xml" {
            return Some(Endpoint::Xml);
        }
        let rest = path.strip_prefix(JSON)?;
        // `/v1.0/<address>`, `/v1.0`, or nothing (the `?Email=` form).
        let versioned = rest
            .strip_prefix("/v1.0")
            .is_some_and(|r| r.is_empty() || (r.starts_with('/') && !r[1..].contains('/')));
        (rest.is_empty() || versioned).then_some(Endpoint::Json)
    }
}

const XML_TYPE: &str = "text/xml; charset=utf-8";
const JSON_TYPE: &str = "application/json; charset=utf-8";

impl<B: MailBackend, S: StateStore> Server<B, S> {
    /// Serves one Autodiscover request.
    pub(super) async fn autodiscover(
        &self,
        endpoint: Endpoint,
        req: Request<Incoming>,
        client_ip: IpAddr,
        log: &mut RequestLog,
    ) -> Response<Body> {
        tracing::Span::current().record("cmd", "Autodiscover");
        match endpoint {
            Endpoint::Xml => self.autodiscover_xml(req, client_ip, log).await,
            Endpoint::Json => self.autodiscover_json(&req, log),
        }
    }

    async fn autodiscover_xml(
        &self,
        req: Request<Incoming>,
        client_ip: IpAddr,
        log: &mut RequestLog,
    ) -> Response<Body> {
        if !matches!(*req.method(), Method::POST | Method::GET) {
            log.reason = "method not allowed";
            return not_allowed("GET,POST");
        }
        let user = match self.authenticate(req.headers(), client_ip, log).await {
            Ok(u) => u,
            Err(r) => return r,
        };
        if req.method() == Method::GET {
            log.reason = "Autodiscover GET";
            return xml(ad::error_response(
                ErrorCode::InvalidRequest,
                SystemTime::now(),
            ));
        }
        let Some(base) = self.public_base(&req) else {
            log.reason = "no usable Host header";
            return response::empty(400);
        };
        let max = ad::MAX_REQUEST_BYTES.min(self.limits.max_body_bytes);
        if let Some(r) = self.over_limit(&req, max, log) {
            return r;
        }
        let body = match self.read_body(req.into_body(), max, log).await {
            Ok(b) => b,
            Err(r) => return r,
        };
        let request = match ad::parse_request(&body) {
            Ok(r) => r,
            Err(e) => {
                debug!(error = %e, "invalid Autodiscover request");
                log.reason = "invalid Autodiscover request";
                return xml(ad::error_response(
                    ErrorCode::InvalidRequest,
                    SystemTime::now(),
                ));
            }
        };
        if !request.wants_mobilesync() {
            log.reason = "Autodiscover schema not available";
            return xml(ad::error_response(
                ErrorCode::ProviderNotAvailable,
                SystemTime::now(),
            ));
        }
        let asked = request.email_address.to_lowercase();
        let own = asked == user.address
            || self
                .gateway
                .config
                .identity
                .aliases
                .get(&user.address)
                .is_some_and(|list| list.contains(&asked));
        if !own {
            log.reason = "Autodiscover for another user's address";
            return xml(ad::provider_error_response(
                "The address is not the authenticated user's",
            ));
        }
        let url = format!("{base}{}", ad::EAS_PATH);
        xml(ad::settings_response(&Settings {
            email_address: &asked,
            display_name: ad::display_name(&asked),
            url: &url,
        }))
    }

    fn autodiscover_json(&self, req: &Request<Incoming>, log: &mut RequestLog) -> Response<Body> {
        if req.method() != Method::GET {
            log.reason = "method not allowed";
            return not_allowed("GET");
        }
        let value = req
            .uri()
            .query()
            .and_then(|q| {
                form_urlencoded::parse(q.as_bytes())
                    .find(|(k, _)| k.eq_ignore_ascii_case("Protocol"))
                    .map(|(_, v)| v.into_owned())
            })
            .unwrap_or_default();
        let Some(protocol) = JsonProtocol::parse(&value) else {
            log.reason = "Autodiscover JSON: protocol not served";
            let mut r = response::raw(JSON_TYPE, Bytes::from(ad::json_invalid_protocol(&value)));
            *r.status_mut() = hyper::StatusCode::BAD_REQUEST;
            return r;
        };
        let Some(base) = self.public_base(req) else {
            log.reason = "no usable Host header";
            return response::empty(400);
        };
        response::raw(JSON_TYPE, Bytes::from(ad::json_response(protocol, &base)))
    }

    /// `server.public_url`, else `https://` plus the request's host (checked: a host name or
    /// address and an optional port, nothing that could change the URL's meaning).
    fn public_base<T>(&self, req: &Request<T>) -> Option<String> {
        if let Some(url) = &self.gateway.config.server.public_url {
            return Some(url.clone());
        }
        let host = req
            .headers()
            .get(HOST)
            .and_then(|v| v.to_str().ok())
            .or_else(|| req.uri().authority().map(|a| a.as_str()))?
            .trim();
        let ok = !host.is_empty()
            && host.len() <= 261
            && host
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '[' | ']'));
        ok.then(|| format!("https://{}", host.to_ascii_lowercase()))
    }
}

fn xml(body: String) -> Response<Body> {
    response::raw(XML_TYPE, Bytes::from(body))
}

fn not_allowed(allow: &'static str) -> Response<Body> {
    let mut r = response::empty(405);
    r.headers_mut()
        .insert("Allow", HeaderValue::from_static(allow));
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths() {
        for (p, want) in [
            ("/autodiscover/autodiscover.xml", Some(Endpoint::Xml)),
            ("/autodiscover/autodiscover.json", Some(Endpoint::Json)),
            ("/autodiscover/autodiscover.json/v1.0", Some(Endpoint::Json)),
            (
                "/autodiscover/autodiscover.json/v1.0/alice@example.test",
                Some(Endpoint::Json),
            ),
            (
                "/autodiscover/autodiscover.json/v1.0/alice%40example.test",
                Some(Endpoint::Json),
            ),
            ("/autodiscover/autodiscover.json/v1.0/a/b", None),
            ("/autodiscover/autodiscover.jsonx", None),
            ("/autodiscover/autodiscover.json/v2.0/a", None),
            ("/autodiscover", None),
            ("/microsoft-server-activesync", None),
        ] {
            assert_eq!(Endpoint::of(p), want, "{p}");
        }
    }
}
