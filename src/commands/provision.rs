//! Provision (MS-ASPROV 3.2.5): the two-step policy key exchange, and the gate that keeps
//! unprovisioned devices out of every other command.

use rand::Rng;
use tracing::{debug, info};

use crate::backend::MailBackend;
use crate::eas::provision::{
    status as provision_status, PolicyResponse, ProvisionRequest, ProvisionResponse, POLICY_TYPE,
};
use crate::eas::status::CommonStatus;
use crate::eas::{Command, ProtocolVersion};
use crate::state::{PolicyState, StateStore};
use crate::wbxml::Element;

use super::core::Refusal;
use super::devices::status_root;
use super::{CommandError, Context, Gateway, Outcome};

/// Answers Provision.
pub async fn handle<B: MailBackend, S: StateStore>(
    gw: &Gateway<B, S>,
    ctx: &Context,
    body: &Element,
) -> Result<Outcome, CommandError> {
    let req = match ProvisionRequest::from_element(body) {
        Ok(r) => r,
        // A syntax error is Provision Status 2 (MS-ASPROV 3.2.5.2, Interop MSASPROV_S03_TC03).
        Err(e) => {
            debug!(error = %e, "malformed Provision request");
            return Ok(wbxml(ProvisionResponse {
                status: provision_status::PROTOCOL_ERROR,
                device_information_status: None,
                policy: None,
                remote_wipe: false,
                account_only_wipe: false,
            }));
        }
    };
    let user = ctx.user.address.as_str();
    let device_id = ctx.device_id();
    let device = &ctx.device;

    let mut resp = ProvisionResponse {
        status: 1,
        device_information_status: None,
        policy: None,
        remote_wipe: false,
        account_only_wipe: false,
    };
    if let Some(info) = &req.device_information {
        gw.store
            .set_device_info(
                user,
                device_id,
                &super::devices::kept_info(&gw.config.devices, &info.fields),
            )
            .await?;
        resp.device_information_status = Some(1);
    }
    if let Some(wipe_status) = req.remote_wipe_status {
        info!(
            user,
            device_id, wipe_status, "device acknowledged remote wipe"
        );
        gw.store
            .set_wipe(user, device_id, crate::state::WipeState::Acknowledged)
            .await?;
    }
    // A pending wipe answers the policy request (MS-ASPROV 3.2.5.1.2).
    if req.remote_wipe_status.is_none() && super::devices::wipe_pending(ctx.device.wipe, &mut resp)
    {
        return Ok(wbxml(resp));
    }
    let Some(policy) = req.policy else {
        return Ok(wbxml(resp));
    };
    if policy.policy_type != POLICY_TYPE {
        resp.policy = Some(PolicyResponse {
            policy_type: policy.policy_type,
            status: 3,
            policy_key: None,
            document: None,
        });
        return Ok(wbxml(resp));
    }
    let pol = match policy.policy_key {
        // Step 1: hand out the policy with a temporary key.
        None => {
            let key = new_key();
            gw.store
                .set_policy(user, device_id, PolicyState::Pending, key, None)
                .await?;
            debug!(user, device_id, "sent policy with temporary key");
            PolicyResponse {
                policy_type: policy.policy_type,
                status: 1,
                policy_key: Some(key),
                document: Some(gw.policy.to_element(ctx.version == ProtocolVersion::V12_0)),
            }
        }
        // Step 2: the device acknowledges the temporary key and gets the final one.
        Some(ack_key) => {
            let matches = device.policy == PolicyState::Pending && device.policy_key == ack_key;
            if !matches {
                PolicyResponse {
                    policy_type: policy.policy_type,
                    status: 5,
                    policy_key: None,
                    document: None,
                }
            } else {
                let applied = policy.status.unwrap_or(1);
                if applied != 1 {
                    // The default policy enforces nothing, so a device that could not apply
                    // it fully is still let in; the fact is logged for the operator.
                    info!(
                        user,
                        device_id, applied, "device reports it did not fully apply the policy"
                    );
                }
                let key = new_key();
                gw.store
                    .set_policy(
                        user,
                        device_id,
                        PolicyState::Provisioned,
                        key,
                        Some(&gw.policy_hash),
                    )
                    .await?;
                info!(user, device_id, "device provisioned");
                PolicyResponse {
                    policy_type: policy.policy_type,
                    status: 1,
                    policy_key: Some(key),
                    document: None,
                }
            }
        }
    };
    resp.policy = Some(pol);
    Ok(wbxml(resp))
}

fn wbxml(resp: ProvisionResponse) -> Outcome {
    let status = resp
        .policy
        .as_ref()
        .map(|p| p.status)
        .unwrap_or(resp.status);
    Outcome::Wbxml {
        body: resp.to_element(),
        status: Some(status),
    }
}

/// A random non-zero policy key.
fn new_key() -> u32 {
    rand::thread_rng().gen_range(1..=u32::MAX)
}

/// Lets a request through only when the device holds the current final policy key (or, for
/// Ping, sends no key at all and is provisioned under the current policy). Otherwise 12.x gets
/// HTTP 449 and 14.0+ a command body with Status 142/143/144 (MS-ASPROV 3.2.5.1).
pub async fn gate<B: MailBackend, S: StateStore>(
    gw: &Gateway<B, S>,
    ctx: &Context,
    command: Command,
) -> Result<Option<Outcome>, CommandError> {
    // The record the HTTP layer just wrote: no second read.
    let d = &ctx.device;
    let current = d.policy == PolicyState::Provisioned
        && d.policy_hash.as_deref() == Some(gw.policy_hash.as_str());
    if ctx.line.policy_key.is_none() && current && command == Command::Ping {
        // The stock Android / Samsung mail client sends Ping without the X-MS-PolicyKey
        // header (AOSP EasPing leaves it out on purpose), whatever the protocol version. A
        // device provisioned under the current policy is let in for Ping only: Ping reads
        // nothing but which folders changed. A wrong key sent in the header still fails.
        return Ok(None);
    }
    let sent = ctx.line.policy_key.unwrap_or(0);
    let provisioned = d.policy == PolicyState::Provisioned && sent != 0;
    let status = if provisioned && d.policy_key == sent {
        if d.policy_hash.as_deref() == Some(gw.policy_hash.as_str()) {
            return Ok(None);
        }
        CommonStatus::PolicyRefresh
    } else if provisioned {
        CommonStatus::InvalidPolicyKey
    } else {
        CommonStatus::DeviceNotProvisioned
    };
    if !ctx.version.uses_status_for_provisioning() {
        return Ok(Some(Outcome::Refused {
            refusal: Refusal::NeedsProvisioning,
            reason: "device must provision",
        }));
    }
    let Some((root, status_tag)) = status_root(command) else {
        return Ok(Some(Outcome::Refused {
            refusal: Refusal::NeedsProvisioning,
            reason: "device must provision",
        }));
    };
    let code = u32::from(status.code());
    Ok(Some(Outcome::Wbxml {
        body: Element::new(root).text_child(status_tag, code.to_string()),
        status: Some(code),
    }))
}
