//! What a credential itself allows, on top of the authorizer's grants: an
//! app password's repository limit, a forge token's package scopes, and
//! the credential's own end.

use regauth_providers::PackageRights;

use super::Refusal;
use crate::app_passwords::Limit;
use crate::domain::claims::Access;
use crate::domain::policy::{Grant, Principal};
use crate::domain::scope::{Action, ResourceType};

/// The grants cut down to what the principal's credential allows, as the
/// token's `access` (scopes left with no action are dropped).
pub(super) fn within_credential(principal: &Principal, grants: Vec<Grant>) -> Vec<Access> {
    // An app password narrowed to some repositories gets no more there,
    // and a forge token no more than its package scopes allow.
    let limit = principal
        .identity()
        .and_then(|id| id.attachment.get::<Limit>());
    let rights = principal.identity().and_then(|id| id.package_rights);
    grants
        .into_iter()
        .map(|grant| match limit {
            Some(limit) => limit.within(grant),
            None => grant,
        })
        .map(|grant| match rights {
            Some(rights) => within_package_rights(rights, grant),
            None => grant,
        })
        .filter(|grant| !grant.actions.is_empty())
        .map(|grant| Access {
            kind: grant.scope.kind,
            name: grant.scope.name,
            actions: grant.actions,
        })
        .collect()
}

/// A grant cut down to what a forge token's package scopes allow: pull
/// with read, push with write, delete with delete; `*` and resources other
/// than repositories only when it may do all three.
fn within_package_rights(rights: PackageRights, mut grant: Grant) -> Grant {
    let all = rights.read && rights.write && rights.delete;
    if grant.scope.kind != ResourceType::Repository && !all {
        grant.actions.clear();
        return grant;
    }
    grant.actions.retain(|action| match action {
        Action::Pull => rights.read,
        Action::Push => rights.write,
        Action::Delete => rights.delete,
        _ => all,
    });
    grant
}

/// The credential works from `client`: a robot or an app password bound
/// to networks is refused (401) from anywhere else, whatever it would be
/// granted there.
pub(super) fn from_its_networks(
    principal: &Principal,
    client: std::net::IpAddr,
) -> Result<(), Refusal> {
    match principal.identity() {
        Some(id) if !id.works_from(client) => Err(Refusal::Unauthorized {
            reason: format!(
                "the credential of {} works only from {}, not from {client}",
                crate::ops::audit::Safe(&id.subject),
                id.networks
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            user_action: None,
        }),
        _ => Ok(()),
    }
}

/// How long the token lives: the service's lifetime, but never past the
/// credential behind it (an app password, a CI job's token, a robot's
/// last day); one already at its end (a JWT inside the clock leeway) gets
/// none.
pub(super) fn expires_in(principal: &Principal, lifetime: u64, now: i64) -> Result<u64, Refusal> {
    let now = u64::try_from(now).unwrap_or_default();
    let left = principal
        .identity()
        .and_then(|id| id.expires_at)
        .map(|at| at.saturating_sub(now));
    if left == Some(0) {
        return Err(Refusal::Unauthorized {
            reason: "the credential has expired".into(),
            user_action: Some("the password or token has expired".into()),
        });
    }
    Ok(left.map_or(lifetime, |left| left.min(lifetime)))
}
