//! App passwords as a provider in the chain: an `rga_` secret goes here
//! alone, and logs in as its owner (their groups now), narrowed to the
//! app password's limit and never outliving it.

use std::sync::Arc;

use async_trait::async_trait;
use regauth_providers::{
    Attachment, Credentials, ExposeSecret, Identity, IdentityProvider, Outcome, Proof,
    ProviderKind, Rejection, Renewal, SecretShape, APP_PASSWORD_PREFIX,
};

use super::records::{ended_key, parse};
use super::{unavailable, unix, AppPassword, AppPasswords, PROVIDER_NAME};
use crate::ops::audit::Safe;

/// App passwords as a provider in the chain: `rga_` secrets go here alone.
pub struct AppPasswordProvider(pub Arc<AppPasswords>);

#[async_trait]
impl IdentityProvider for AppPasswordProvider {
    fn name(&self) -> &str {
        PROVIDER_NAME
    }

    fn kind(&self) -> ProviderKind {
        ProviderKind::Custom(PROVIDER_NAME)
    }

    fn accepts(&self, shape: SecretShape<'_>) -> bool {
        shape == SecretShape::AppPassword
    }

    /// One record read and one HMAC here: no upstream to protect.
    fn checks_locally(&self) -> bool {
        true
    }

    /// The owner check takes the username trimmed and in any ASCII case:
    /// so does the verdict cache's key.
    fn normalize_username<'a>(&self, username: &'a str) -> std::borrow::Cow<'a, str> {
        std::borrow::Cow::Owned(username.trim().to_ascii_lowercase())
    }

    /// An app password stands alone: the typed username tries no account.
    async fn account_of(&self, _credentials: &Credentials) -> Option<String> {
        None
    }

    async fn authenticate(&self, credentials: &Credentials) -> Outcome {
        if !credentials
            .secret
            .expose_secret()
            .starts_with(APP_PASSWORD_PREFIX)
        {
            return Outcome::NotMine;
        }
        self.0.check(credentials).await
    }
}

fn refused(why: impl Into<String>) -> Outcome {
    Outcome::Rejected(Rejection::Other(why.into()))
}

impl AppPasswords {
    /// Checks an app password presented as a registry password.
    async fn check(&self, credentials: &Credentials) -> Outcome {
        let Some((id, secret)) = parse(credentials.secret.expose_secret()) else {
            return Outcome::Rejected(Rejection::WrongSecret);
        };
        let password = match self.find(id).await {
            Ok(Some(password)) => password,
            Ok(None) => return refused("no such app password (revoked?)"),
            Err(e) => return unavailable(e),
        };
        // a robot's rotated secret holds until its overlap ends
        let until = if self.secret_holds(id, secret, &password.digest) {
            None
        } else {
            match self.robot_secret_holds(&password, secret) {
                Some(until) => Some(until),
                None => return Outcome::Rejected(Rejection::WrongSecret),
            }
        };
        if let Some(refusal) = self.refusal(&password, &credentials.username).await {
            return refusal;
        }
        if let Some(team) = password.team() {
            return self.robot_login(&password, team, until).await;
        }
        let owner = self
            .current(
                &password.provider,
                &password.subject,
                password.account.as_deref(),
            )
            .await;
        let Some(networks) = password.parsed_networks() else {
            return refused("the app password's record names a network that is not one");
        };
        match owner {
            Ok(identity) => {
                self.record_use(&password.id);
                password.audit("app_password_used", "");
                let mut identity = logged_in_as(identity, &password);
                identity.networks = networks;
                Outcome::Authenticated(identity)
            }
            Err(outcome) => outcome,
        }
    }

    /// Why an app password whose secret is right does not log in, if it
    /// does not: revoked, made under a replaced ledger, expired, claiming
    /// too long a life, or presented under someone else's name.
    async fn refusal(&self, password: &AppPassword, username: &str) -> Option<Outcome> {
        // revoked, and its record put back: still revoked; made under a
        // ledger since replaced (which forgot what it revoked): ended
        let (ended, ledger) = match (
            self.ledger.ended(&ended_key(&password.id)).await,
            self.ledger.id().await,
        ) {
            (Ok(ended), Ok(ledger)) => (ended, ledger),
            (Err(e), _) | (_, Err(e)) => return Some(unavailable(e)),
        };
        if ended || password.ledger.as_ref().is_some_and(|l| *l != ledger) {
            return Some(refused(
                "the app password was revoked (or made under a revocation ledger since replaced)",
            ));
        }
        if password.expires <= unix(crate::clock::now()) {
            return Some(Outcome::Rejected(Rejection::Expired));
        }
        // A record is authenticated by the state layer; this is a second
        // line against a key leak: nothing regauth makes lives longer.
        let max_lifetime = match password.team() {
            None => Some(self.config.max_lifetime),
            Some(_) => self.robot_max_lifetime(),
        };
        if max_lifetime
            .is_none_or(|max| password.expires.saturating_sub(password.created) > max.as_secs())
        {
            return Some(refused(
                "the record claims a life longer than max_lifetime (or team robots are off)",
            ));
        }
        if !password.subject.eq_ignore_ascii_case(username.trim()) {
            return Some(refused(format!(
                "the Basic username \"{}\" is not the app password's owner",
                Safe(username)
            )));
        }
        None
    }
}

/// The owner as an app password logs them in: their provider's name,
/// never renewed (an app password is checked again, not renewed), proven
/// by a token, until the app password expires at the latest, within its
/// limit.
fn logged_in_as(mut identity: Identity, password: &AppPassword) -> Identity {
    identity.provider = password.provider.clone();
    identity.renewal = Renewal::Never;
    identity.proof = Proof::Token;
    identity.credential_stamp = None;
    identity.expires_at = Some(
        identity
            .expires_at
            .map_or(password.expires, |e| e.min(password.expires)),
    );
    identity.attachment = if password.limit.is_empty() {
        Attachment::default()
    } else {
        Attachment::new(password.limit())
    };
    identity
}
