//! Device logins in the pipeline (RFC 8628): a poll with a device code,
//! answered with the wait the RFC names or, once approved, with the
//! login's identity token; and that identity token presented again with
//! the refresh grant. Either way the identity token logs in as the app
//! password it is, through the chain: its owner checked at their
//! provider, its verdict cached, its failures throttled.

use std::net::IpAddr;
use std::sync::Arc;

use regauth_providers::{Credentials, ExposeSecret as _, Identity};

use super::refusal::{admit, DeviceWait};
use super::{Issuer, Refusal};
use crate::app_passwords::device::DeviceError;
use crate::app_passwords::AppPasswordError;

impl Issuer {
    /// A poll with `code` by `client_id`: the identity of the approving
    /// user and their new identity token, or why not yet.
    pub(super) async fn device_login(
        &self,
        code: &str,
        client_id: &str,
        client: IpAddr,
    ) -> Result<(Arc<Identity>, String), Refusal> {
        let Some(devices) = &self.devices else {
            return Err(Refusal::UnsupportedGrant {
                grant: "device_code (app passwords are off)".into(),
            });
        };
        if code.len() > self.limits.max_secret_bytes {
            return Err(Refusal::bad_request("the device code is too long"));
        }
        let polled = devices
            .poll_device_login(code, client_id, crate::clock::now_ms())
            .await;
        let (password, token) = polled.map_err(refusal)?;
        let credentials = Credentials::new(&password.subject, token.expose_secret());
        let verdict = self.chain.authenticate(&credentials, client).await;
        match admit(verdict, &password.subject) {
            Ok((identity, _)) => Ok((identity, token.expose_secret().to_owned())),
            Err(refused) => {
                // never handed out: it must not linger either
                if let Err(e) = devices.revoke_device_token(token.expose_secret()).await {
                    tracing::warn!(error = %e, "could not revoke an identity token that did not log in");
                }
                Err(refused)
            }
        }
    }

    /// The identity a device login's identity token stands for, when
    /// `token` is one.
    pub(super) async fn device_identity_token(
        &self,
        token: &str,
        client: IpAddr,
    ) -> Result<Option<(Arc<Identity>, bool)>, Refusal> {
        let Some(devices) = &self.devices else {
            return Ok(None);
        };
        let owner = match devices.device_token_owner(token).await {
            Ok(Some(owner)) => owner,
            Ok(None) => return Ok(None),
            Err(e) => {
                return Err(Refusal::Unavailable {
                    reason: format!("app passwords: {e}"),
                    message: "the identity token cannot be checked right now",
                    retry_after: 5,
                })
            }
        };
        let verdict = self
            .chain
            .authenticate(&Credentials::new(&owner, token), client)
            .await;
        match admit(verdict, &owner) {
            Ok(found) => Ok(Some(found)),
            Err(Refusal::Unauthorized { reason, .. }) => Err(Refusal::LoginAgain { reason }),
            Err(other) => Err(other),
        }
    }
}

/// A device login's error as the token endpoint's answer.
fn refusal(e: DeviceError) -> Refusal {
    let wait = |wait, reason: &str| Refusal::Device {
        wait,
        reason: format!("device login: {reason}"),
    };
    match e {
        DeviceError::Pending => wait(DeviceWait::Pending, "not answered yet"),
        DeviceError::SlowDown => wait(DeviceWait::SlowDown, "polled too fast"),
        DeviceError::Expired => wait(DeviceWait::Expired, "the device code expired"),
        DeviceError::Denied => wait(DeviceWait::Denied, "the user denied it"),
        DeviceError::InvalidGrant => wait(
            DeviceWait::InvalidGrant,
            "not a device code of this server for this client, or used already",
        ),
        DeviceError::Made(AppPasswordError::TooMany(n)) => wait(
            DeviceWait::Denied,
            &format!("the user has {n} app passwords, the most allowed"),
        ),
        DeviceError::Made(AppPasswordError::Owner) => wait(
            DeviceWait::Denied,
            "the approving account is no longer vouched for",
        ),
        DeviceError::InvalidRequest(message) => Refusal::bad_request(message),
        other => Refusal::Unavailable {
            reason: format!("device login: {other}"),
            message: "the device login cannot be finished right now; try again shortly",
            retry_after: 5,
        },
    }
}
