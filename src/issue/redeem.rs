//! Refresh tokens in the pipeline: minting one for a login that asked
//! for it, and redeeming one for the identity it stands for.

use std::sync::Arc;

use regauth_providers::{Identity, Renewal};

use super::refusal::admit;
use super::{Issuer, Refusal};
use crate::ops::audit::Safe;
use crate::refresh::{RefreshError, RefreshTokens};

/// A refresh token for this login, if it may have one. A login too large
/// to seal gets none (the client keeps using its password); a failing RNG
/// is an error.
pub(super) async fn refresh_token_for(
    refresh: &RefreshTokens,
    identity: &Identity,
    service: &str,
) -> Result<Option<String>, Refusal> {
    match refresh.issue(identity, service).await {
        Ok(token) => {
            if token.is_none() && identity.renewal == Renewal::Never {
                tracing::debug!(subject = %Safe(&identity.subject), provider = %identity.provider, "no refresh token for a machine login");
            }
            Ok(token)
        }
        Err(RefreshError::TooLarge(bytes)) => {
            tracing::warn!(subject = %Safe(&identity.subject), provider = %identity.provider, bytes, "the login's groups and claims are too large for a refresh token; none issued");
            Ok(None)
        }
        Err(RefreshError::Store(e)) => Err(Refusal::Unavailable {
            reason: format!("revocation ledger: {e}"),
            message: "refresh tokens cannot be issued right now",
            retry_after: 5,
        }),
        Err(e) => Err(Refusal::Internal {
            reason: format!("refresh token: {e}"),
        }),
    }
}

impl Issuer {
    /// The identity a refresh token stands for: its own snapshot, or a
    /// fresh lookup at its provider that must find the same credential
    /// stamp.
    pub(super) async fn redeem(
        &self,
        token: &str,
        service: &str,
        client: std::net::IpAddr,
    ) -> Result<(Arc<Identity>, bool), Refusal> {
        if token.len() > self.limits.max_secret_bytes {
            return Err(Refusal::bad_request("the refresh token is too long"));
        }
        if let Some(found) = self.device_identity_token(token, client).await? {
            return Ok(found);
        }
        let Some(refresh) = &self.refresh else {
            return Err(Refusal::RefreshDisabled);
        };
        let login_again = |reason: String| Refusal::LoginAgain { reason };
        let claims = match refresh.check(token, service).await {
            Ok(claims) => claims,
            Err(RefreshError::Store(e)) => {
                return Err(Refusal::Unavailable {
                    reason: format!("revocation store: {e}"),
                    message: "refresh tokens cannot be checked right now",
                    retry_after: 5,
                })
            }
            Err(e) => return Err(login_again(format!("refresh token refused: {e}"))),
        };
        let Some(provider) = self.chain.provider(&claims.provider) else {
            return Err(login_again(format!(
                "refresh token of provider {:?}, which is no longer configured",
                claims.provider
            )));
        };
        if let Some(reason) = refused_outright(&claims, provider.as_ref()) {
            return Err(login_again(reason));
        }
        if let Some(identity) = claims.snapshot_identity() {
            // Providers that cannot look users up: this login's own groups
            // and claims, within the token's own deadline (checked by
            // `check`).
            return Ok((Arc::new(identity), false));
        }
        let verdict = self
            .chain
            .lookup(&claims.provider, &claims.sub, token)
            .await;
        let (identity, cache_hit) = match admit(verdict, &claims.sub) {
            Ok(found) => found,
            Err(Refusal::Unauthorized { reason, .. }) => return Err(login_again(reason)),
            Err(other) => return Err(other),
        };
        if identity.subject != claims.sub || identity.provider != claims.provider {
            return Err(login_again(format!(
                "the refresh token of {} now resolves to {} at {}",
                Safe(&claims.sub),
                Safe(&identity.subject),
                identity.provider
            )));
        }
        if identity.credential_stamp != claims.stamp {
            return Err(login_again(format!(
                "the credentials of {} at {} changed after this refresh token was issued",
                Safe(&claims.sub),
                claims.provider
            )));
        }
        Ok((identity, cache_hit))
    }
}

/// Why a refresh token whose seal holds is refused before anyone is
/// asked, if it is.
fn refused_outright(
    claims: &crate::refresh::Claims,
    provider: &dyn regauth_providers::IdentityProvider,
) -> Option<String> {
    // A provider that can look its users up never takes a login's word
    // for them: a snapshot token there (forged with a leaked refresh key,
    // say) would name users and groups the directory never vouched for.
    if claims.snapshot.is_some() && provider.looks_up() {
        return Some(format!(
            "a snapshot refresh token for {}, which looks its users up",
            claims.provider
        ));
    }
    // a name kept for team robots is no user's, even in a token issued
    // before it was kept
    regauth_providers::is_team_robot_name(&claims.sub).then(|| {
        format!(
            "a refresh token for \"{}\", a name kept for team robots",
            Safe(&claims.sub)
        )
    })
}
