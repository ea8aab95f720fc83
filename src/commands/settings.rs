//! Settings (MS-ASCMD 2.2.1.18): stores DeviceInformation, answers UserInformation from the
//! configured identity, reports out-of-office as disabled.

use crate::backend::MailBackend;
use crate::eas::settings::{self, SettingsOp, SettingsResult, UserInformation};
use crate::state::StateStore;
use crate::wbxml::Element;

use super::{CommandError, Context, Gateway, Outcome};

/// Settings status 7: "denied by policy" (used for operations this gateway does not offer).
const DENIED: u32 = 7;

pub async fn handle<B: MailBackend, S: StateStore>(
    gw: &Gateway<B, S>,
    ctx: &Context,
    body: &Element,
) -> Result<Outcome, CommandError> {
    let ops = match settings::parse_request(body) {
        Ok(ops) => ops,
        Err(e) => {
            tracing::debug!(error = %e, "malformed Settings request");
            // Settings status 2: protocol error.
            return Ok(Outcome::Wbxml {
                body: settings::response(2, &[], ctx.version),
                status: Some(2),
            });
        }
    };
    let mut results = Vec::with_capacity(ops.len());
    for op in ops {
        let r = match op {
            SettingsOp::OofGet => SettingsResult::OofDisabled,
            SettingsOp::DeviceInformationSet(ref info) => {
                gw.store
                    .set_device_info(
                        &ctx.user.address,
                        ctx.device_id(),
                        &super::devices::kept_info(&gw.config.devices, &info.fields),
                    )
                    .await?;
                SettingsResult::Status(op, 1)
            }
            SettingsOp::UserInformationGet => {
                let aliases = gw
                    .config
                    .identity
                    .aliases
                    .get(&ctx.user.address)
                    .cloned()
                    .unwrap_or_default();
                SettingsResult::UserInformation(UserInformation {
                    primary: ctx.user.address.clone(),
                    aliases,
                    display_name: None,
                })
            }
            // Out-of-office, the recovery password and rights management are not offered:
            // the password is a secret this gateway does not keep.
            SettingsOp::OofSet
            | SettingsOp::DevicePasswordSet
            | SettingsOp::RightsManagementGet => SettingsResult::Status(op, DENIED),
        };
        results.push(r);
    }
    Ok(Outcome::Wbxml {
        body: settings::response(1, &results, ctx.version),
        status: Some(1),
    })
}
