//! The owner now: an app password's owner (and a page session's user) as
//! their provider sees them now, or, for a provider that cannot look
//! users up, as their last browser sign-in did, asked again at the IdP
//! with that sign-in's refresh token every `recheck_interval`. An IdP
//! that no longer signs a user in ends the sign-in, and with it their app
//! passwords and page sessions.

use std::fmt;
use std::sync::Arc;

use regauth_providers::{
    BrowserLogin, Error as ProviderError, ExposeSecret, Identity, IdentityProvider, Kind, Outcome,
    Rejection, Renewed, SecretString,
};
use serde::{Deserialize, Serialize};

use super::records::LOCK_HOLD;
use super::{lock_key, owner_key, unavailable, unix, AppPasswordError, AppPasswords};
use crate::ops::audit::Safe;
use crate::state::{Store, StoreError};

/// Each user's last browser sign-in (groups and claims).
const SIGN_INS: &str = "sign_in";

/// A user's last browser sign-in: what their app passwords carry when
/// their provider cannot be asked again.
#[derive(Clone, Serialize, Deserialize)]
pub struct SignIn {
    /// Their groups then.
    pub groups: Vec<String>,
    /// Their claims then.
    pub claims: regauth_providers::ClaimSet,
    /// User or robot.
    pub kind: Kind,
    /// Their account id then, if their provider has one.
    #[serde(default)]
    pub account: Option<String>,
    /// When, in seconds since the epoch (or when the IdP last vouched for
    /// them again with the sign-in's refresh token).
    pub at: u64,
    /// The IdP's refresh token of the sign-in, sealed (the state backend
    /// never sees it): what asks the IdP about the user again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh: Option<String>,
    /// When the IdP was last asked (seconds since the epoch).
    #[serde(default)]
    pub checked: u64,
}

/// Everything but the sealed refresh token (whether there is one shows).
impl fmt::Debug for SignIn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SignIn")
            .field("groups", &self.groups)
            .field("claims", &self.claims)
            .field("kind", &self.kind)
            .field("account", &self.account)
            .field("at", &self.at)
            .field("refresh", &self.refresh.as_ref().map(|_| "<sealed>"))
            .field("checked", &self.checked)
            .finish()
    }
}

/// Whether `found` is the account under the name that was asked about
/// (any, where none was named).
fn same_account(asked: Option<&str>, found: Option<&str>) -> bool {
    asked.is_none_or(|a| found == Some(a))
}

fn gone() -> Outcome {
    Outcome::Rejected(Rejection::Other(
        "the app password's owner no longer exists".into(),
    ))
}

impl AppPasswords {
    /// Keeps a browser sign-in's groups and claims for the owner's app
    /// passwords, with the IdP's refresh token (sealed) that asks about
    /// them again every `recheck_interval`.
    pub async fn remember_sign_in(
        &self,
        identity: &Identity,
        refresh_token: Option<&SecretString>,
    ) -> Result<(), AppPasswordError> {
        let owner = owner_key(&identity.provider, &identity.subject);
        let refresh = match refresh_token {
            Some(token) => Some(
                self.idp_refresh
                    .seal(owner.as_bytes(), token.expose_secret().as_bytes())?,
            ),
            None => None,
        };
        let now = unix(crate::clock::now());
        let sign_in = SignIn {
            groups: identity.groups.clone(),
            claims: identity.claims.clone(),
            kind: identity.kind,
            account: identity.account_id.clone(),
            at: now,
            refresh,
            checked: now,
        };
        let text = serde_json::to_string(&sign_in).map_err(|e| StoreError(e.to_string()))?;
        self.store.put_record(SIGN_INS, &owner, &text).await?;
        Ok(())
    }

    /// The owner's last browser sign-in, if one is kept.
    pub async fn sign_in_of(
        &self,
        provider: &str,
        subject: &str,
    ) -> Result<Option<SignIn>, AppPasswordError> {
        Ok(self
            .sign_in_record(provider, subject)
            .await?
            .map(|(sign_in, _)| sign_in))
    }

    /// The owner's last browser sign-in and its stored text.
    async fn sign_in_record(
        &self,
        provider: &str,
        subject: &str,
    ) -> Result<Option<(SignIn, String)>, AppPasswordError> {
        let text = self
            .store
            .get_record(SIGN_INS, &owner_key(provider, subject))
            .await?;
        Ok(text.and_then(|t| Some((serde_json::from_str(&t).ok()?, t))))
    }

    /// Whether this identity may see and revoke everyone's app passwords.
    pub fn is_admin(&self, identity: &Identity) -> bool {
        self.config.admin_groups.iter().any(|(provider, group)| {
            identity.provider == *provider && identity.groups.contains(group)
        })
    }

    /// Whether this user is an admin now, as their provider (or their last
    /// sign-in) says: a session does not keep rights its user lost.
    pub async fn is_admin_now(&self, provider: &str, subject: &str, account: Option<&str>) -> bool {
        match self.current(provider, subject, account).await {
            Ok(identity) => self.is_admin(&identity),
            Err(_) => false,
        }
    }

    /// A user as their provider sees them now, or as their last browser
    /// sign-in did (asked again at the IdP every `recheck_interval`); with
    /// `account`, only that account under the name.
    pub async fn current(
        &self,
        provider_name: &str,
        subject: &str,
        account: Option<&str>,
    ) -> Result<Identity, Outcome> {
        // a name kept for robots is nobody's account (one made before)
        if regauth_providers::is_team_robot_name(subject) {
            return Err(gone());
        }
        let Some(provider) = self.providers.iter().find(|p| p.name() == provider_name) else {
            return Err(Outcome::Rejected(Rejection::Other(format!(
                "the app password's provider {provider_name} is no longer configured"
            ))));
        };
        if provider.looks_up() {
            return self.looked_up(provider.as_ref(), subject, account).await;
        }
        let sign_in = self
            .sign_in_of(provider_name, subject)
            .await
            .map_err(unavailable)?;
        let sign_in = match sign_in {
            Some(s) if same_account(account, s.account.as_deref()) => {
                Some(self.rechecked(provider, subject, s).await?)
            }
            other => other,
        };
        let now = unix(crate::clock::now());
        match sign_in {
            Some(s) if !same_account(account, s.account.as_deref()) => Err(gone()),
            Some(s) if s.at + self.config.sign_in_max_age.as_secs() > now => {
                let mut identity = Identity::new(subject, provider_name).with_groups(s.groups);
                identity.claims = s.claims;
                identity.kind = s.kind;
                identity.account_id = s.account;
                Ok(identity)
            }
            _ => Err(self.sign_in_again()),
        }
    }

    /// [`AppPasswords::current`] at a provider that looks users up.
    async fn looked_up(
        &self,
        provider: &dyn IdentityProvider,
        subject: &str,
        account: Option<&str>,
    ) -> Result<Identity, Outcome> {
        let looked = tokio::time::timeout(self.timeout, provider.lookup(subject))
            .await
            .unwrap_or_else(|_| {
                Outcome::Unavailable(ProviderError::Upstream(format!(
                    "{} did not answer within {:?}",
                    provider.name(),
                    self.timeout
                )))
            });
        match looked {
            Outcome::Authenticated(found)
                if found.subject == subject
                    && same_account(account, found.account_id.as_deref()) =>
            {
                Ok(found)
            }
            Outcome::Authenticated(_) | Outcome::NotMine => Err(gone()),
            other => Err(other),
        }
    }

    /// The sign-in as the IdP sees it now: asked again with the sign-in's
    /// refresh token once `recheck_interval` has passed. Fresh groups
    /// replace the old ones; an IdP that refuses ends the sign-in (and so
    /// the user's app passwords and page sessions); an IdP that cannot be
    /// asked leaves the last answer, bounded by `sign_in_max_age`.
    async fn rechecked(
        &self,
        provider: &Arc<dyn IdentityProvider>,
        subject: &str,
        sign_in: SignIn,
    ) -> Result<SignIn, Outcome> {
        let interval = self.config.recheck_interval.as_secs();
        let (Some(_), Some(browser)) = (&sign_in.refresh, provider.browser_login()) else {
            return Ok(sign_in);
        };
        if unix(crate::clock::now()) < sign_in.checked.saturating_add(interval) {
            return Ok(sign_in);
        }
        let owner = owner_key(provider.name(), subject);
        let turn = self
            .rechecks
            .get_with(owner.clone(), || Arc::new(tokio::sync::Mutex::new(())));
        let _turn = turn.lock().await;
        // One re-check per user on every replica at a time: an IdP that
        // rotates refresh tokens and refuses a used one would otherwise
        // see two replicas race and end the sign-in.
        let lock = lock_key("recheck", &owner);
        match self.store.take(&lock, 1, LOCK_HOLD).await {
            Ok(true) => {}
            // another replica asks the IdP right now: the last answer stands
            Ok(false) => return Ok(sign_in),
            Err(e) => return Err(unavailable(e)),
        }
        let rechecked = self
            .recheck_held(browser, provider.name(), subject, &owner, interval)
            .await;
        if let Err(e) = self.store.give_back(&lock).await {
            tracing::warn!(error = %e, "could not release the re-check lock; it expires by itself");
        }
        rechecked
    }

    /// [`AppPasswords::rechecked`] once the user's re-check lock is held.
    async fn recheck_held(
        &self,
        browser: &dyn BrowserLogin,
        provider: &str,
        subject: &str,
        owner: &str,
        interval: u64,
    ) -> Result<SignIn, Outcome> {
        // Another request may have asked while this one waited.
        let Some((current, expected)) = self
            .sign_in_record(provider, subject)
            .await
            .map_err(unavailable)?
        else {
            return Err(self.sign_in_again());
        };
        if unix(crate::clock::now()) < current.checked.saturating_add(interval) {
            return Ok(current);
        }
        let token = current
            .refresh
            .as_deref()
            .and_then(|sealed| self.idp_refresh.open(owner.as_bytes(), sealed))
            .and_then(|plain| String::from_utf8(plain).ok());
        let Some(token) = token else {
            return Ok(current);
        };
        match browser.renew(&SecretString::from(token)).await {
            Renewed::Current {
                identity,
                refresh_token,
            } => {
                let next = self
                    .renewed(current, identity, refresh_token, subject, owner)
                    .await?;
                // only over the sign-in this answer continues (a new
                // sign-in meanwhile wins)
                let text = serde_json::to_string(&next).map_err(unavailable)?;
                let written = self
                    .store
                    .swap_record(SIGN_INS, owner, Some(&expected), &text)
                    .await
                    .map_err(unavailable)?;
                if !written {
                    tracing::debug!(owner = %Safe(owner), "the sign-in changed while the IdP was asked again");
                }
                tracing::debug!(provider, subject = %Safe(subject), "the IdP vouched for a signed-in user again");
                Ok(next)
            }
            Renewed::Refused(why) => Err(self.end_sign_in(owner, &why.to_string()).await),
            Renewed::Unavailable(e) => {
                tracing::warn!(provider, subject = %Safe(subject), error = %e, "the IdP could not be asked about a signed-in user again; keeping the last answer");
                Ok(current)
            }
        }
    }

    /// The sign-in after the IdP vouched for its user again, with
    /// `identity` when it sent fresh claims and the refresh token it
    /// rotated to, if any.
    async fn renewed(
        &self,
        current: SignIn,
        identity: Option<Identity>,
        refresh_token: Option<SecretString>,
        subject: &str,
        owner: &str,
    ) -> Result<SignIn, Outcome> {
        let now = unix(crate::clock::now());
        let mut next = current;
        // Only fresh claims renew the sign-in's age: without an ID token
        // the IdP vouched for the account, not its groups, and
        // sign_in_max_age still bounds the old ones.
        if let Some(identity) = identity {
            let other_account = matches!(
                (&identity.account_id, &next.account),
                (Some(a), Some(b)) if a != b
            );
            if other_account || identity.subject != subject {
                return Err(self
                    .end_sign_in(owner, "the IdP now names another account")
                    .await);
            }
            next.at = now;
            next.groups = identity.groups;
            next.claims = identity.claims;
            next.kind = identity.kind;
        }
        if let Some(token) = refresh_token {
            next.refresh = self
                .idp_refresh
                .seal(owner.as_bytes(), token.expose_secret().as_bytes())
                .ok()
                .or(next.refresh);
        }
        next.checked = now;
        Ok(next)
    }

    /// Forgets a sign-in the IdP no longer stands behind: the user's app
    /// passwords and page sessions end with it.
    async fn end_sign_in(&self, owner: &str, why: &str) -> Outcome {
        tracing::info!(
            target: "regauth::audit",
            event = "sign_in_ended",
            owner = %Safe(owner),
            reason = %Safe(why),
            "the identity provider no longer signs this user in: their app passwords and page sessions end"
        );
        if let Err(e) = self.store.delete_record(SIGN_INS, owner).await {
            return unavailable(e);
        }
        self.sign_in_again()
    }

    fn sign_in_again(&self) -> Outcome {
        Outcome::Rejected(Rejection::UserAction(format!(
            "sign in at {} again to renew your app passwords",
            self.config.url
        )))
    }
}

/// Forgets the sign-ins of `subject` (at any provider, any case) or, with
/// `None`, everyone's: part of `regauth tokens revoke`.
pub(super) async fn forget_sign_ins(
    store: &dyn Store,
    subject: Option<&str>,
) -> Result<(), StoreError> {
    for (key, _) in store.records(SIGN_INS).await? {
        let theirs = subject.is_none_or(|s| {
            key.split_once(':')
                .is_some_and(|(_, who)| who.eq_ignore_ascii_case(s.trim()))
        });
        if theirs {
            store.delete_record(SIGN_INS, &key).await?;
        }
    }
    Ok(())
}
