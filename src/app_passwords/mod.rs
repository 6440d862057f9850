//! App passwords: scoped, expiring, revocable registry passwords that a
//! signed-in user makes on regauth's page (`/ui`), for people whose IdP
//! wants a second factor that `docker login` cannot give.
//!
//! An app password is `rga_<id>_<secret>`: the id (80 random bits) finds
//! the record, the secret (256 random bits) is checked against a keyed
//! digest of it (HMAC-SHA256 under `app_passwords.key_file`), compared in
//! constant time. Records live in the state backend (the embedded file, or
//! Redis shared by replicas), so a revocation reaches every replica; a
//! cached verdict lasts `cache.verdict_ttl` at most.
//!
//! At use, the login is the owner's: the Basic username must be theirs,
//! their groups come from their provider when it can look users up (LDAP
//! through its service account, static users), or else from their last
//! browser sign-in, for `sign_in_max_age`. The policy decides as for any
//! login of theirs, and an app password narrowed to some repositories
//! never gets more than that.
//!
//! The page's decisions live here too, and no HTTP: who may open a
//! session ([`sign_in`]), what a session is and how it ends
//! ([`sessions`]), and what a limit means ([`limit`]). The page only
//! parses, calls one of these and renders.
//!
//! The parts: [`records`] (the store of app passwords), [`recheck`]
//! (the owner as their provider, or their last sign-in, sees them now),
//! [`provider`] (app passwords as a provider in the chain).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use regauth_providers::IdentityProvider;
use serde::{Deserialize, Serialize};

use crate::keys::seal::Sealer;
use crate::state::{Store, StoreError};

pub mod device;
pub mod limit;
pub mod provider;
pub mod recheck;
pub mod records;
pub mod robots;
pub mod sessions;
pub mod sign_in;

pub use crate::config::{AppPasswordsConfig, PROVIDER_NAME};
pub use limit::{Limit, LimitError, EVERY_REPOSITORY};
pub use provider::AppPasswordProvider;
pub use records::{revoke_every, AppPassword, Listed, Revocation};
pub use sessions::{Session, SIGN_IN_WINDOW};
pub use sign_in::{browser_providers, BrowserError, IdpAnswer, PasswordForm, SignInError};

/// The state backend's collection of app passwords.
pub(crate) const PASSWORDS: &str = "app_password";

/// The longest a name may be.
pub const MAX_NAME_CHARS: usize = 64;
/// At most this many repository limits per app password.
pub const MAX_LIMITS: usize = 10;
/// At most this many networks per app password.
pub const MAX_NETWORKS: usize = 10;
/// The longest repository pattern of a limit (the registry's name limit).
pub const MAX_PATTERN_BYTES: usize = 255;

/// Why an app password could not be made, listed or revoked, or a page
/// session not opened.
#[derive(Debug, thiserror::Error)]
pub enum AppPasswordError {
    /// Already `max_per_user`.
    #[error("you have {0} app passwords, the most allowed: revoke one first")]
    TooMany(usize),
    /// A name that is empty, too long or not printable.
    #[error("give it a name of 1 to {MAX_NAME_CHARS} printable characters")]
    Name,
    /// An expiry outside 1 day ..= `max_lifetime`.
    #[error("the expiry must be between 1 and {0} days")]
    Lifetime(u64),
    /// A repository limit that does not parse, or an unknown action.
    #[error(transparent)]
    Limit(#[from] LimitError),
    /// No such app password (or not the caller's).
    #[error("no such app password")]
    NotFound,
    /// Everyone's app passwords, asked by someone who is no admin (now).
    #[error("only administrators see everyone's app passwords")]
    NotAdmin,
    /// The state backend could not answer.
    #[error("the state backend: {0}")]
    Store(#[from] StoreError),
    /// No randomness for a secret.
    #[error("no randomness for a secret")]
    Random,
    /// The owner's provider no longer vouches for them (gone, locked,
    /// offboarded): a session does not outlive its account.
    #[error("your account cannot be confirmed: sign in again")]
    Owner,
    /// The owner's provider cannot be asked now.
    #[error("your account cannot be checked right now")]
    OwnerUnavailable,
    /// Another app password of the same owner is being made right now.
    #[error("another app password of yours is being made right now: try again")]
    Busy,
    /// The team's group is not in its directory.
    #[error("the directory has no group {0}: check robots.admin_groups")]
    GroupGone(String),
    /// The team's directory cannot be asked now.
    #[error("the team's directory cannot be asked right now")]
    GroupUnavailable,
    /// Already `robots.max_per_team`.
    #[error("the team has {0} robots, the most allowed: revoke one first")]
    TooManyRobots(usize),
    /// A robot name that is not one.
    #[error("a robot's name is 1 to {} lower-case letters, digits, `.`, `_` or `-`, beginning with a letter or digit", robots::MAX_ROBOT_NAME)]
    RobotName,
    /// A description too long or with invisible characters.
    #[error(
        "a description has at most {} printable characters",
        robots::MAX_DESCRIPTION_CHARS
    )]
    Description,
    /// A robot of that login name exists.
    #[error("there is a robot {0} already")]
    RobotTaken(String),
    /// A rotation overlap longer than `robots.max_overlap`.
    #[error("the overlap may be at most {0} hours")]
    Overlap(u64),
    /// Networks that are not networks, or too many.
    #[error("networks: at most {MAX_NETWORKS}, one per line, like 10.20.0.0/16 or 2001:db8::/48")]
    Networks,
}

impl AppPasswordError {
    /// Whether the user can put this right (another name, another expiry,
    /// fewer app passwords): what the page shows beside the form, where
    /// the other errors are the server's.
    pub fn is_for_the_user(&self) -> bool {
        matches!(
            self,
            Self::TooMany(_)
                | Self::Name
                | Self::Lifetime(_)
                | Self::Limit(_)
                | Self::Owner
                | Self::Busy
                | Self::Networks
                | Self::TooManyRobots(_)
                | Self::GroupGone(_)
                | Self::RobotName
                | Self::Description
                | Self::RobotTaken(_)
                | Self::Overlap(_)
        )
    }
}

impl From<crate::keys::NoRandomness> for AppPasswordError {
    fn from(_: crate::keys::NoRandomness) -> Self {
        Self::Random
    }
}

/// App passwords: their records, their checks, the sign-ins behind
/// them, and the page's sessions.
pub struct AppPasswords {
    /// `[app_passwords]`.
    pub config: AppPasswordsConfig,
    store: Arc<dyn Store>,
    digest_key: aws_lc_rs::hmac::Key,
    /// The configured providers, for looking owners up again.
    providers: Vec<Arc<dyn IdentityProvider>>,
    /// How long a lookup may take.
    timeout: Duration,
    /// The page's sessions.
    sessions: Sealer,
    /// The page's sign-ins under way (OIDC state, nonce, PKCE verifier)
    /// and the sign-in form's CSRF token.
    pending: Sealer,
    /// The IdPs' refresh tokens in sign-in records.
    idp_refresh: Sealer,
    /// One re-check at the IdP per user at a time.
    rechecks: moka::sync::Cache<String, Arc<tokio::sync::Mutex<()>>>,
    /// Where revocations are recorded so that a stored record put back
    /// cannot bring a revoked app password (or an ended session) back.
    ledger: Arc<crate::refresh::Ledger>,
    /// Uses not written yet: when the last batch was written, and the
    /// last use per id since (see [`records`]).
    uses: std::sync::Mutex<(u64, BTreeMap<String, u64>)>,
    /// When this process last swept expired device logins (ms).
    device_swept: std::sync::atomic::AtomicU64,
}

impl AppPasswords {
    /// App passwords under `key` (at least 32 bytes, shared by replicas),
    /// kept in `store`; owners are looked up among `providers`.
    pub fn new(
        config: AppPasswordsConfig,
        key: &[u8],
        store: Arc<dyn Store>,
        providers: Vec<Arc<dyn IdentityProvider>>,
        timeout: Duration,
        ledger: Arc<crate::refresh::Ledger>,
    ) -> Self {
        let derived = aws_lc_rs::hmac::sign(
            &aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, key),
            b"regauth app-password digest key v1",
        );
        Self {
            config,
            store,
            digest_key: aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, derived.as_ref()),
            providers,
            timeout,
            sessions: Sealer::new(key, b"regauth ui session v1"),
            pending: Sealer::new(key, b"regauth ui sign-in v1"),
            idp_refresh: Sealer::new(key, b"regauth idp refresh token v1"),
            rechecks: moka::sync::Cache::builder()
                .max_capacity(10_000)
                .time_to_idle(Duration::from_secs(300))
                .build(),
            ledger,
            uses: std::sync::Mutex::new((0, BTreeMap::new())),
            device_swept: std::sync::atomic::AtomicU64::new(0),
        }
    }

    /// The state backend the records live in.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// The revocation ledger (ended page sessions are recorded there).
    pub fn ledger(&self) -> &crate::refresh::Ledger {
        &self.ledger
    }

    /// Where an IdP sends a browser sign-in back to.
    pub fn callback_url(&self) -> String {
        format!("{}/callback", self.config.url)
    }
}

/// `now` (seconds since the epoch, from [`crate::clock::now`]) as records
/// keep it.
fn unix(now: i64) -> u64 {
    u64::try_from(now).unwrap_or(0)
}

/// Compares two secrets (or their digests) in time that does not depend
/// on where they differ.
fn ct_eq(a: &str, b: &str) -> bool {
    aws_lc_rs::constant_time::verify_slices_are_equal(a.as_bytes(), b.as_bytes()).is_ok()
}

/// The key of a user's records: provider names cannot hold `:`. The
/// subject is as the provider names it (static users are case-sensitive).
fn owner_key(provider: &str, subject: &str) -> String {
    format!("{provider}:{subject}")
}

/// The key of a lock in the shared backend about one owner: `what` and
/// a digest of the owner's key (no name in the backend's key space).
fn lock_key(what: &str, owner: &str) -> String {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, owner.as_bytes());
    format!("{what}:{}", hex::encode(&digest.as_ref()[..16]))
}

/// `value` as JSON sealed for `aad`; `None` without randomness.
fn seal<T: Serialize>(sealer: &Sealer, aad: &[u8], value: &T) -> Option<String> {
    let plain = serde_json::to_vec(value).ok()?;
    sealer.seal(aad, &plain).ok()
}

/// What [`seal`] made for `aad`, if it opens and reads as a `T`.
fn open<T: for<'de> Deserialize<'de>>(sealer: &Sealer, aad: &[u8], text: &str) -> Option<T> {
    serde_json::from_slice(&sealer.open(aad, text)?).ok()
}

/// The failure of a check behind a login, as a provider's outcome.
fn unavailable(e: impl std::fmt::Display) -> regauth_providers::Outcome {
    regauth_providers::Outcome::Unavailable(regauth_providers::Error::Upstream(format!(
        "app passwords: {e}"
    )))
}

/// What the unit tests of this module's parts share: app passwords on an
/// in-memory store, with providers the tests script.
#[cfg(test)]
pub(crate) mod testing {
    use super::*;
    use crate::testing::Scripted;
    use regauth_providers::{ExposeSecret as _, Identity, Outcome, Rejection};

    /// A `local` provider that looks its users up: `gone` no longer
    /// exists, `admin` is in `admins`, anyone else is a plain user; the
    /// password `right` is everyone's.
    pub(crate) fn directory() -> Arc<Scripted> {
        Arc::new(
            Scripted::answering("local", |credentials| {
                if credentials.secret.expose_secret() == "right" {
                    member(&credentials.username)
                } else {
                    Outcome::Rejected(Rejection::WrongSecret)
                }
            })
            .looking_up(member),
        )
    }

    /// The [`directory`]'s answer about `subject`.
    fn member(subject: &str) -> Outcome {
        match subject {
            "gone" => Outcome::NotMine,
            "lead" => Outcome::Authenticated(
                Identity::new(subject, "local").with_groups(["platform", "platform-admins"]),
            ),
            "member" => {
                Outcome::Authenticated(Identity::new(subject, "local").with_groups(["platform"]))
            }
            "admin" => {
                Outcome::Authenticated(Identity::new(subject, "local").with_groups(["admins"]))
            }
            _ => Outcome::Authenticated(Identity::new(subject, "local")),
        }
    }

    pub(crate) fn config() -> AppPasswordsConfig {
        AppPasswordsConfig {
            key_file: "unused".into(),
            default_lifetime: Duration::from_secs(30 * 86400),
            max_lifetime: Duration::from_secs(365 * 86400),
            max_per_user: 3,
            sign_in_max_age: Duration::from_secs(86400),
            admin_groups: vec![("local".into(), "admins".into())],
            url: "http://regauth.test/ui".into(),
            session_lifetime: Duration::from_secs(3600),
            login_form: vec!["local".into()],
            recheck_interval: Duration::from_secs(300),
            robots: None,
        }
    }

    /// App passwords whose owners are [`directory`] users.
    pub(crate) fn passwords() -> AppPasswords {
        passwords_with_key(&[7u8; 32])
    }

    /// [`passwords`] under another key.
    pub(crate) fn passwords_with_key(key: &[u8]) -> AppPasswords {
        let store: Arc<dyn Store> = Arc::new(crate::state::Embedded::in_memory());
        let ledger = Arc::new(crate::refresh::Ledger::new(
            store.clone(),
            Duration::from_secs(3600),
        ));
        AppPasswords::new(
            config(),
            key,
            store,
            vec![directory()],
            Duration::from_secs(1),
            ledger,
        )
    }
}
