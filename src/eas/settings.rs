//! Settings (MS-ASCMD 2.2.1.18): DeviceInformation, UserInformation, Oof, DevicePassword.

use crate::wbxml::tags::settings as s;
use crate::wbxml::Element;

use super::{ParseError, ProtocolVersion};

/// `DeviceInformation/Set`: what the device says about itself.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DeviceInformation {
    /// (field name, value) in request order: Model, IMEI, FriendlyName, OS, OSLanguage,
    /// PhoneNumber, UserAgent, EnableOutboundSMS, MobileOperator.
    pub fields: Vec<(String, String)>,
}

impl DeviceInformation {
    /// Parses a `DeviceInformation` element (with its `Set` child).
    pub fn from_element(di: &Element) -> Result<DeviceInformation, ParseError> {
        let set = di
            .first(s::SET)
            .ok_or_else(|| ParseError::new("Settings", "DeviceInformation without Set"))?;
        let mut fields = Vec::new();
        for e in set.elements() {
            let name = e.tag.name().unwrap_or("Unknown").to_string();
            let value: String = e.text().unwrap_or("").chars().take(1024).collect();
            fields.push((name, value));
        }
        Ok(DeviceInformation { fields })
    }
}

/// One operation of a Settings request, in request order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SettingsOp {
    OofGet,
    OofSet,
    DevicePasswordSet,
    DeviceInformationSet(DeviceInformation),
    UserInformationGet,
    RightsManagementGet,
}

pub fn parse_request(root: &Element) -> Result<Vec<SettingsOp>, ParseError> {
    if root.tag != s::SETTINGS {
        return Err(ParseError::new("Settings", "root element is not Settings"));
    }
    let mut ops = Vec::new();
    for e in root.elements() {
        let op = match e.tag {
            t if t == s::OOF && e.first(s::GET).is_some() => SettingsOp::OofGet,
            t if t == s::OOF => SettingsOp::OofSet,
            t if t == s::DEVICE_PASSWORD => SettingsOp::DevicePasswordSet,
            t if t == s::DEVICE_INFORMATION => {
                SettingsOp::DeviceInformationSet(DeviceInformation::from_element(e)?)
            }
            t if t == s::USER_INFORMATION => SettingsOp::UserInformationGet,
            t if t == s::RIGHTS_MANAGEMENT_INFORMATION => SettingsOp::RightsManagementGet,
            _ => {
                return Err(ParseError::new(
                    "Settings",
                    format!("unexpected element {}", e.tag.name().unwrap_or("?")),
                ))
            }
        };
        ops.push(op);
    }
    Ok(ops)
}

/// The user's identity, for `UserInformation/Get`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserInformation {
    pub primary: String,
    pub aliases: Vec<String>,
    pub display_name: Option<String>,
}

/// The answer to one operation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SettingsResult {
    /// Oof Get: out-of-office is reported disabled.
    OofDisabled,
    /// An operation answered with only a status.
    Status(SettingsOp, u32),
    UserInformation(UserInformation),
}

/// Builds the Settings response. `status` is the command's top-level status.
pub fn response(status: u32, results: &[SettingsResult], version: ProtocolVersion) -> Element {
    let mut root = Element::new(s::SETTINGS).text_child(s::STATUS, status.to_string());
    for r in results {
        let e = match r {
            SettingsResult::OofDisabled => Element::new(s::OOF)
                .text_child(s::STATUS, "1")
                .child(Element::new(s::GET).text_child(s::OOF_STATE, "0")),
            SettingsResult::Status(op, st) => {
                let tag = match op {
                    SettingsOp::OofGet | SettingsOp::OofSet => s::OOF,
                    SettingsOp::DevicePasswordSet => s::DEVICE_PASSWORD,
                    SettingsOp::DeviceInformationSet(_) => s::DEVICE_INFORMATION,
                    SettingsOp::UserInformationGet => s::USER_INFORMATION,
                    SettingsOp::RightsManagementGet => s::RIGHTS_MANAGEMENT_INFORMATION,
                };
                Element::new(tag).text_child(s::STATUS, st.to_string())
            }
            SettingsResult::UserInformation(u) => user_information(u, version),
        };
        root.push(e);
    }
    root
}

/// 12.x/14.0: `Get/EmailAddresses/SMTPAddress`; 14.1+: `Get/Accounts/Account/...` with
/// `PrimarySmtpAddress` (MS-ASCMD 2.2.3.191).
fn user_information(u: &UserInformation, version: ProtocolVersion) -> Element {
    let mut get = Element::new(s::GET);
    if version >= ProtocolVersion::V14_1 {
        let mut addrs = Element::new(s::EMAIL_ADDRESSES)
            .text_child(s::SMTP_ADDRESS, u.primary.clone())
            .text_child(s::PRIMARY_SMTP_ADDRESS, u.primary.clone());
        for a in &u.aliases {
            addrs.push(Element::with_text(s::SMTP_ADDRESS, a.clone()));
        }
        let mut account = Element::new(s::ACCOUNT);
        if let Some(name) = &u.display_name {
            account.push(Element::with_text(s::USER_DISPLAY_NAME, name.clone()));
        }
        account.push(addrs);
        get.push(Element::new(s::ACCOUNTS).child(account));
    } else {
        let mut addrs =
            Element::new(s::EMAIL_ADDRESSES).text_child(s::SMTP_ADDRESS, u.primary.clone());
        for a in &u.aliases {
            addrs.push(Element::with_text(s::SMTP_ADDRESS, a.clone()));
        }
        get.push(addrs);
    }
    Element::new(s::USER_INFORMATION)
        .text_child(s::STATUS, "1")
        .child(get)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user() -> UserInformation {
        UserInformation {
            primary: "alice@example.test".into(),
            aliases: vec!["a.smith@example.test".into()],
            display_name: None,
        }
    }

    #[test]
    fn user_information_shape_per_version() {
        let old = response(
            1,
            &[SettingsResult::UserInformation(user())],
            ProtocolVersion::V14_0,
        );
        let get = old
            .first(s::USER_INFORMATION)
            .unwrap()
            .first(s::GET)
            .unwrap();
        assert!(get.first(s::EMAIL_ADDRESSES).is_some());
        assert!(get.first(s::ACCOUNTS).is_none());
        let new = response(
            1,
            &[SettingsResult::UserInformation(user())],
            ProtocolVersion::V16_1,
        );
        let addrs = new
            .first(s::USER_INFORMATION)
            .and_then(|u| u.first(s::GET))
            .and_then(|g| g.first(s::ACCOUNTS))
            .and_then(|a| a.first(s::ACCOUNT))
            .and_then(|a| a.first(s::EMAIL_ADDRESSES))
            .unwrap();
        assert_eq!(
            addrs.text_of(s::PRIMARY_SMTP_ADDRESS),
            Some("alice@example.test")
        );
    }

    #[test]
    fn request_ops_in_order() {
        let req = Element::new(s::SETTINGS)
            .child(Element::new(s::OOF).child(Element::new(s::GET)))
            .child(Element::new(s::USER_INFORMATION).child(Element::new(s::GET)))
            .child(
                Element::new(s::DEVICE_INFORMATION)
                    .child(Element::new(s::SET).text_child(s::MODEL, "Pixel")),
            );
        let ops = parse_request(&req).unwrap();
        assert_eq!(ops[0], SettingsOp::OofGet);
        assert_eq!(ops[1], SettingsOp::UserInformationGet);
        match &ops[2] {
            SettingsOp::DeviceInformationSet(d) => {
                assert_eq!(d.fields, vec![("Model".into(), "Pixel".into())])
            }
            other => panic!("{other:?}"),
        }
    }
}
