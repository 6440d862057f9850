//! The traits a provider implements: [`IdentityProvider`] for checking
//! credentials, and [`BrowserLogin`] for a sign-in in a browser, with the
//! data that passes between a sign-in's steps.

use async_trait::async_trait;
use secrecy::SecretString;

use crate::{Credentials, Error, Identity, Outcome, ProviderKind, Rejection, SecretShape};

/// A browser sign-in under way: what the callback needs. The caller keeps
/// it between the redirect and the callback, sealed (it holds the PKCE
/// verifier), and bound to the browser that started the sign-in.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct PendingLogin {
    /// The `state` sent to the IdP, which the callback must bring back.
    pub state: String,
    /// The `nonce` the ID token must carry.
    pub nonce: String,
    /// The PKCE code verifier for the code exchange.
    pub pkce_verifier: String,
}

/// A finished browser sign-in: its outcome and, when the IdP gave one,
/// its refresh token (for [`BrowserLogin::renew`]; the caller keeps it
/// sealed and never logs it).
pub struct Finished {
    /// The identity, or why there is none.
    pub outcome: Outcome,
    /// The IdP's refresh token (`offline_access`), if it gave one.
    pub refresh_token: Option<SecretString>,
}

/// What the IdP says of a user when asked again with their refresh token.
pub enum Renewed {
    /// Still signed in: the identity as the new ID token says (`None` when
    /// the IdP sent no new ID token), and the refresh token to keep (a new
    /// one when the IdP rotates them).
    Current {
        /// The identity now, if the IdP said.
        identity: Option<Identity>,
        /// The refresh token to keep from now on, if it changed.
        refresh_token: Option<SecretString>,
    },
    /// The IdP refuses the refresh: the user was disabled, signed out
    /// everywhere, removed, or their session ended.
    Refused(Rejection),
    /// The IdP could not be asked.
    Unavailable(Error),
}

/// A provider people sign in to in a browser: OpenID Connect's
/// authorization code flow with PKCE.
#[async_trait]
pub trait BrowserLogin: Send + Sync {
    /// The URL to send the browser to, and what [`BrowserLogin::finish`]
    /// will need.
    async fn begin(&self, redirect_uri: &str) -> Result<(String, PendingLogin), Error>;

    /// The identity of a finished sign-in, from the callback's `state` and
    /// `code`: the code is exchanged (with the PKCE verifier) and the ID
    /// token verified (signature, issuer, audience, expiry, nonce).
    async fn finish(
        &self,
        redirect_uri: &str,
        pending: &PendingLogin,
        state: &str,
        code: &str,
    ) -> Finished;

    /// Asks the IdP again about a user who signed in, with the refresh
    /// token of their sign-in: whether they still may, and their groups now.
    async fn renew(&self, refresh_token: &SecretString) -> Renewed;
}

/// One identity provider instance (a configured `[[provider]]`).
#[async_trait]
pub trait IdentityProvider: Send + Sync {
    /// The configured instance name (`name = "..."`).
    fn name(&self) -> &str;

    /// What kind of provider this is (metrics and `check` name it).
    fn kind(&self) -> ProviderKind;

    /// Checks credentials. Must not panic, must not log the secret.
    async fn authenticate(&self, credentials: &Credentials) -> Outcome;

    /// Whether secrets of this shape may be offered to this provider at
    /// all. Passwords by default; token providers say which tokens.
    fn accepts(&self, shape: SecretShape<'_>) -> bool {
        shape == SecretShape::Password
    }

    /// Whether this provider checks secrets itself, with no upstream that
    /// a flood of wrong ones could hurt (a user list's hashes): the
    /// per-provider failure bucket does not apply to it.
    fn checks_locally(&self) -> bool {
        false
    }

    /// Whether [`IdentityProvider::lookup`] can find users at all (a
    /// directory, a user list): then its `NotMine` means "no such user".
    /// Providers that cannot be asked about a user without their secret
    /// (an OIDC issuer, GitHub) answer `false`.
    fn looks_up(&self) -> bool {
        false
    }

    /// Looks up a subject this provider vouched for earlier, without a
    /// password (the refresh-token grant of a [`crate::Renewal::Lookup`] login):
    /// `Authenticated` with its current groups and credential stamp,
    /// `NotMine` if it no longer exists, `Rejected` if it is disabled or
    /// locked. Providers that cannot look users up answer `NotMine`.
    async fn lookup(&self, _subject: &str) -> Outcome {
        Outcome::NotMine
    }

    /// What this provider says now of a group (as its identities name
    /// groups): a team's robots stop while their group is gone, and end
    /// when it is made again (another id). `Err` when it cannot be asked
    /// now.
    async fn group(&self, _group: &str) -> Result<GroupAnswer, Error> {
        Ok(GroupAnswer::Unknown)
    }

    /// The form of a username under which this provider finds the same
    /// account, so that failed logins under `Erin`, `erin` and ` erin` are
    /// counted together. The default is the name as typed.
    fn normalize_username<'a>(&self, username: &'a str) -> std::borrow::Cow<'a, str> {
        std::borrow::Cow::Borrowed(username)
    }

    /// The account these credentials try, for the failed-login throttle:
    /// the normalized username when the secret is a password checked
    /// against that account, `None` when the secret stands alone (a token:
    /// its typed username means nothing, and tokens cannot be guessed).
    async fn account_of(&self, credentials: &Credentials) -> Option<String> {
        Some(self.normalize_username(&credentials.username).into_owned())
    }

    /// Operation counters for `/metrics` (name, value): binds, searches,
    /// cache hits, fetches. None by default.
    fn counters(&self) -> Vec<(&'static str, u64)> {
        Vec::new()
    }

    /// The upstream servers this provider spreads over (several domain
    /// controllers), each with whether it answered last time: for
    /// `/readyz` and `/metrics`. None by default.
    fn servers(&self) -> Vec<(String, bool)> {
        Vec::new()
    }

    /// The browser sign-in this provider offers, if any (an OpenID Connect
    /// issuer with `browser_login = true`).
    fn browser_login(&self) -> Option<&dyn BrowserLogin> {
        None
    }

    /// Readiness: can this provider answer right now?
    async fn ready(&self) -> Result<(), Error> {
        Ok(())
    }

    /// Whether the last call to the identity provider reached it. Cheap:
    /// the chain asks on every cached answer, to warn while the IdP is down.
    fn reachable(&self) -> bool {
        true
    }
}

/// What a provider says of a group ([`IdentityProvider::group`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum GroupAnswer {
    /// This provider cannot tell (an OIDC issuer names groups only in its
    /// tokens).
    Unknown,
    /// There is no such group now.
    Gone,
    /// It exists, with the directory's own id of it where there is one
    /// (`entryUUID=…`, `objectGUID=…`): a group made again under the same
    /// name has another.
    Exists(Option<String>),
}
