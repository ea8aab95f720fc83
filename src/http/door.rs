//! Refused devices are answered at the door, before any login at the mail server.
//!
//! A device that the access rules or an administrator's override block, or that is
//! quarantined and already registered, gets its status (common status 129 or 130; HTTP 403
//! for 12.x) from the request line and the Basic credential's user name alone: the user name
//! is known without checking the password. When the login cache holds the credentials (their
//! password was checked lately), the request also counts as the device's (last seen, last
//! command; a device seen for the first time is registered); otherwise the password stays
//! unchecked and nothing is recorded, so an unauthenticated caller changes nothing. The answer says no more than that this user's
//! device is refused, whatever the password: that a device of that user exists is not
//! revealed (a rule matches devices the gateway never saw the same way), and a refused phone
//! with a changed password keeps seeing its refusal instead of asking for a password it
//! could not use anyway.
//!
//! A quarantined device the gateway has never seen goes through the normal login once: it is
//! registered only with a checked password (so that unauthenticated callers cannot fill the
//! registry), and so appears in `devices list --quarantined` for the administrator to release.
//! A device with a remote wipe pending also takes the normal path (it must reach Provision).

use hyper::header::HeaderMap;
use hyper::Response;
use tracing::debug;

use super::handler::{RequestLog, Server};
use super::response::{self, Body};
use crate::backend::MailBackend;
use crate::commands::{self, devices as dev, Outcome};
use crate::config::Access;
use crate::eas::{ProtocolVersion, RequestLine};
use crate::state::{StateStore, WipeState};
use crate::wbxml;

impl<B: MailBackend, S: StateStore> Server<B, S> {
    /// The answer for a refused device, or `None` to go on with the login.
    pub(super) async fn refuse_before_login(
        &self,
        headers: &HeaderMap,
        line: &RequestLine,
        log: &mut RequestLog,
    ) -> Option<Response<Body>> {
        let command = commands::implemented(line.command)?.command();
        let version = line.version.or_else(|| {
            headers
                .get("MS-ASProtocolVersion")
                .and_then(|v| v.to_str().ok())
                .and_then(ProtocolVersion::parse)
        })?;
        let authorization = headers
            .get(hyper::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok());
        let user = self.auth.login_of(authorization)?;
        if line
            .user
            .as_ref()
            .is_some_and(|named| self.auth.normalise(named) != user)
        {
            return None;
        }
        let device = match self.gateway.store.device(&user, &line.device_id).await {
            Ok(d) => d,
            Err(e) => {
                debug!(error = %e, "device not read at the door");
                return None;
            }
        };
        if device.as_ref().is_some_and(|d| d.wipe != WipeState::None) {
            return None;
        }
        let user_agent = headers
            .get(hyper::header::USER_AGENT)
            .and_then(|v| v.to_str().ok());
        let access = dev::access_for(
            &self.gateway.config.access,
            device.as_ref(),
            &user,
            &line.device_id,
            &line.device_type,
            user_agent,
        );
        match access {
            Access::Allow => return None,
            Access::Quarantine if device.is_none() => return None,
            _ => {}
        }
        if self.auth.cached(authorization) {
            tracing::Span::current().record("user", user.as_str());
            let touched = self
                .gateway
                .store
                .touch_device(
                    &user,
                    &line.device_id,
                    &line.device_type,
                    user_agent
                        .map(|s| s.chars().take(200).collect::<String>())
                        .as_deref(),
                    Some(version.as_str()),
                    command.name(),
                    super::handler::unix_now(),
                )
                .await;
            if let Err(e) = touched {
                debug!(error = %e, "refused device not touched");
            }
        }
        log.reason = match access {
            Access::Block => "device blocked",
            _ => "device quarantined",
        };
        Some(match dev::refusal(access, version, command)? {
            Outcome::Wbxml { body, status } => {
                log.eas_status = status;
                response::wbxml(wbxml::encode_bytes(&body))
            }
            Outcome::Refused { refusal, .. } => response::refused(refusal),
            _ => response::empty(403),
        })
    }
}
