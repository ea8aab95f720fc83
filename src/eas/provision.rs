//! Provision (MS-ASPROV): the policy exchange and the remote-wipe acknowledgement.

use crate::wbxml::tags::{provision as p, settings as s};
use crate::wbxml::Element;

use super::settings::DeviceInformation;
use super::ParseError;

/// Provision status values (MS-ASPROV 2.2.2.54.2).
pub mod status {
    pub const SUCCESS: u32 = 1;
    /// A syntax error in the Provision request.
    pub const PROTOCOL_ERROR: u32 = 2;
    pub const SERVER_ERROR: u32 = 3;
}

/// The only policy type of protocol 12.0 and later.
pub const POLICY_TYPE: &str = "MS-EAS-Provisioning-WBXML";

/// A Provision request.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ProvisionRequest {
    /// 14.1+: device information sent along with the first Provision.
    pub device_information: Option<DeviceInformation>,
    /// The Policy element, when present.
    pub policy: Option<PolicyRequest>,
    /// The client's RemoteWipe acknowledgement status, when present.
    pub remote_wipe_status: Option<u32>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyRequest {
    pub policy_type: String,
    /// Present in an acknowledgement: the temporary key being acknowledged.
    pub policy_key: Option<u32>,
    /// Present in an acknowledgement: 1 applied, 2 partially, 3 not applied, 4 third party.
    pub status: Option<u32>,
}

impl ProvisionRequest {
    pub fn from_element(root: &Element) -> Result<ProvisionRequest, ParseError> {
        if root.tag != p::PROVISION {
            return Err(ParseError::new(
                "Provision",
                "root element is not Provision",
            ));
        }
        let mut req = ProvisionRequest::default();
        if let Some(di) = root.first(s::DEVICE_INFORMATION) {
            req.device_information = Some(DeviceInformation::from_element(di)?);
        }
        if let Some(policy) = root.first(p::POLICIES).and_then(|ps| ps.first(p::POLICY)) {
            let policy_type = policy
                .text_of(p::POLICY_TYPE)
                .ok_or_else(|| ParseError::new("Provision", "Policy without PolicyType"))?
                .to_string();
            let policy_key = match policy.text_of(p::POLICY_KEY) {
                Some(k) => Some(
                    k.trim()
                        .parse()
                        .map_err(|_| ParseError::new("Provision", "PolicyKey is not a number"))?,
                ),
                None => None,
            };
            let status = match policy.text_of(p::STATUS) {
                Some(v) => Some(
                    v.trim()
                        .parse()
                        .map_err(|_| ParseError::new("Provision", "Status is not a number"))?,
                ),
                None => None,
            };
            req.policy = Some(PolicyRequest {
                policy_type,
                policy_key,
                status,
            });
        }
        // An account-only wipe (16.1) is acknowledged the same way in its own element.
        if let Some(rw) = root
            .first(p::REMOTE_WIPE)
            .or_else(|| root.first(p::ACCOUNT_ONLY_REMOTE_WIPE))
        {
            req.remote_wipe_status = rw.text_of(p::STATUS).and_then(|v| v.trim().parse().ok());
        }
        if req.policy.is_none() && req.remote_wipe_status.is_none() {
            return Err(ParseError::new(
                "Provision",
                "neither Policies nor RemoteWipe present",
            ));
        }
        Ok(req)
    }
}

/// The policy settings, as sent in `EASProvisionDoc` (MS-ASPROV 2.2.2.27).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PolicyDocument {
    pub password_enabled: bool,
    pub alphanumeric_password: bool,
    pub min_password_length: u32,
    pub allow_simple_password: bool,
    pub max_inactivity_lock_secs: u32,
    pub max_password_failures: u32,
    pub require_device_encryption: bool,
    pub allow_camera: bool,
    pub allow_storage_card: bool,
}

impl PolicyDocument {
    /// The `Data/EASProvisionDoc` element. Elements that did not exist in 12.0 are left out for
    /// a 12.0 device.
    pub fn to_element(&self, v12_0: bool) -> Element {
        let b = |x: bool| if x { "1" } else { "0" };
        let mut doc = Element::new(p::EAS_PROVISION_DOC)
            .text_child(p::DEVICE_PASSWORD_ENABLED, b(self.password_enabled))
            .text_child(
                p::ALPHANUMERIC_DEVICE_PASSWORD_REQUIRED,
                b(self.alphanumeric_password),
            )
            .text_child(p::PASSWORD_RECOVERY_ENABLED, "0")
            .text_child(p::ATTACHMENTS_ENABLED, "1")
            .text_child(
                p::MIN_DEVICE_PASSWORD_LENGTH,
                self.min_password_length.max(1).to_string(),
            );
        // MS-ASPROV: an empty MaxInactivityTimeDeviceLock / MaxDevicePasswordFailedAttempts
        // means "not enforced".
        doc = if self.max_inactivity_lock_secs > 0 {
            doc.text_child(
                p::MAX_INACTIVITY_TIME_DEVICE_LOCK,
                self.max_inactivity_lock_secs.to_string(),
            )
        } else {
            doc.child(Element::new(p::MAX_INACTIVITY_TIME_DEVICE_LOCK))
        };
        doc = if self.max_password_failures > 0 {
            doc.text_child(
                p::MAX_DEVICE_PASSWORD_FAILED_ATTEMPTS,
                self.max_password_failures.to_string(),
            )
        } else {
            doc.child(Element::new(p::MAX_DEVICE_PASSWORD_FAILED_ATTEMPTS))
        };
        doc = doc
            .child(Element::new(p::MAX_ATTACHMENT_SIZE))
            .text_child(
                p::ALLOW_SIMPLE_DEVICE_PASSWORD,
                b(self.allow_simple_password),
            )
            .child(Element::new(p::DEVICE_PASSWORD_EXPIRATION))
            .text_child(p::DEVICE_PASSWORD_HISTORY, "0");
        if v12_0 {
            return Element::new(p::DATA).child(doc);
        }
        doc = doc
            .text_child(p::ALLOW_STORAGE_CARD, b(self.allow_storage_card))
            .text_child(p::ALLOW_CAMERA, b(self.allow_camera))
            .text_child(
                p::REQUIRE_DEVICE_ENCRYPTION,
                b(self.require_device_encryption),
            )
            .text_child(p::ALLOW_UNSIGNED_APPLICATIONS, "1")
            .text_child(p::ALLOW_UNSIGNED_INSTALLATION_PACKAGES, "1")
            .text_child(p::MIN_DEVICE_PASSWORD_COMPLEX_CHARACTERS, "1")
            .text_child(p::ALLOW_WI_FI, "1")
            .text_child(p::ALLOW_TEXT_MESSAGING, "1")
            .text_child(p::ALLOW_POPIMAP_EMAIL, "1")
            .text_child(p::ALLOW_BLUETOOTH, "2")
            .text_child(p::ALLOW_IR_DA, "1")
            .text_child(p::REQUIRE_MANUAL_SYNC_WHEN_ROAMING, "0")
            .text_child(p::ALLOW_DESKTOP_SYNC, "1")
            .text_child(p::MAX_CALENDAR_AGE_FILTER, "0")
            .text_child(p::ALLOW_HTML_EMAIL, "1")
            .text_child(p::MAX_EMAIL_AGE_FILTER, "0")
            .child(Element::new(p::MAX_EMAIL_BODY_TRUNCATION_SIZE))
            .child(Element::new(p::MAX_EMAIL_HTML_BODY_TRUNCATION_SIZE))
            .text_child(p::REQUIRE_SIGNED_SMIME_MESSAGES, "0")
            .text_child(p::REQUIRE_ENCRYPTED_SMIME_MESSAGES, "0")
            .text_child(p::REQUIRE_SIGNED_SMIME_ALGORITHM, "0")
            .text_child(p::REQUIRE_ENCRYPTION_SMIME_ALGORITHM, "0")
            .text_child(p::ALLOW_SMIME_ENCRYPTION_ALGORITHM_NEGOTIATION, "2")
            .text_child(p::ALLOW_SMIME_SOFT_CERTS, "1")
            .text_child(p::ALLOW_BROWSER, "1")
            .text_child(p::ALLOW_CONSUMER_EMAIL, "1")
            .text_child(p::ALLOW_REMOTE_DESKTOP, "1")
            .text_child(p::ALLOW_INTERNET_SHARING, "1")
            .child(Element::new(p::UNAPPROVED_IN_ROM_APPLICATION_LIST))
            .child(Element::new(p::APPROVED_APPLICATION_LIST));
        Element::new(p::DATA).child(doc)
    }
}

/// A Provision response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProvisionResponse {
    /// 1 success, 2 protocol error, 3 server error.
    pub status: u32,
    /// Present when the request carried DeviceInformation (14.1+): its Set status.
    pub device_information_status: Option<u32>,
    pub policy: Option<PolicyResponse>,
    /// Present when a wipe is pending.
    pub remote_wipe: bool,
    /// Present when an account-only wipe (16.1) is pending.
    pub account_only_wipe: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyResponse {
    pub policy_type: String,
    /// 1 success, 2 no policy, 3 unknown type, 4 corrupt, 5 wrong key acknowledged.
    pub status: u32,
    pub policy_key: Option<u32>,
    pub document: Option<Element>,
}

impl ProvisionResponse {
    pub fn to_element(&self) -> Element {
        let mut root = Element::new(p::PROVISION).text_child(p::STATUS, self.status.to_string());
        if let Some(st) = self.device_information_status {
            root.push(Element::new(s::DEVICE_INFORMATION).text_child(s::STATUS, st.to_string()));
        }
        if self.remote_wipe {
            root.push(Element::new(p::REMOTE_WIPE));
        }
        if self.account_only_wipe {
            root.push(Element::new(p::ACCOUNT_ONLY_REMOTE_WIPE));
        }
        if let Some(pol) = &self.policy {
            let mut policy = Element::new(p::POLICY)
                .text_child(p::POLICY_TYPE, pol.policy_type.clone())
                .text_child(p::STATUS, pol.status.to_string());
            if let Some(k) = pol.policy_key {
                policy.push(Element::with_text(p::POLICY_KEY, k.to_string()));
            }
            if let Some(doc) = &pol.document {
                policy.push(doc.clone());
            }
            root.push(Element::new(p::POLICIES).child(policy));
        }
        root
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn initial_and_ack_requests() {
        let initial = Element::new(p::PROVISION).child(
            Element::new(p::POLICIES)
                .child(Element::new(p::POLICY).text_child(p::POLICY_TYPE, POLICY_TYPE)),
        );
        let r = ProvisionRequest::from_element(&initial).unwrap();
        assert_eq!(r.policy.as_ref().unwrap().policy_key, None);
        let ack = Element::new(p::PROVISION).child(
            Element::new(p::POLICIES).child(
                Element::new(p::POLICY)
                    .text_child(p::POLICY_TYPE, POLICY_TYPE)
                    .text_child(p::POLICY_KEY, "123")
                    .text_child(p::STATUS, "1"),
            ),
        );
        let r = ProvisionRequest::from_element(&ack).unwrap();
        assert_eq!(r.policy.unwrap().policy_key, Some(123));
        assert!(ProvisionRequest::from_element(&Element::new(p::PROVISION)).is_err());
    }
}
