//! Refresh tokens ("identity tokens" to the docker CLI): opaque, long-lived,
//! bound to (subject, provider, service) and to the login that minted
//! them, revocable, never rotated.
//!
//! A refresh token is its claims sealed with AES-256-GCM under a key of its
//! own (`refresh_tokens.key_file`), so every replica that shares the key
//! accepts it, a restart changes nothing, rotating the signing key logs
//! nobody out, and clients can neither read nor forge one. What a refresh
//! may later use comes from the token alone, never from another login's
//! memory: for providers that can look users up again it holds the subject
//! and the login's credential stamp (a password change since then refuses
//! it); for providers that cannot, it holds the login's groups and claims
//! and a deadline of its own.
//!
//! Revocations live in one [`Ledger`] record in the state backend,
//! authenticated like every record there. Each revocation raises the
//! ledger's version; a token carries the ledger's id and the version it
//! was issued at, so revocation compares versions, never two hosts'
//! clocks. A ledger that disappears is made anew under a new id, which
//! every earlier token fails: deleting revocations logs everyone out
//! rather than bringing a revoked token back. Tokens and keys are never
//! logged.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use regauth_providers::{Identity, Kind, Renewal};
use serde::{Deserialize, Serialize};

use crate::clock::now_ms;
use crate::config::DEFAULT_REFRESH_MAX_AGE;
use crate::state::Records;

mod ledger;

pub use ledger::Ledger;

/// The format: `rt2.` + base64url(nonce ‖ AES-256-GCM(claims)). `rt1.`
/// tokens (subject only, resolved from the last login) are refused.
const PREFIX: &str = "rt2.";
const LEGACY_PREFIX: &str = "rt1.";
/// Upper bound on the sealed claims (a login's groups and claims included).
const MAX_CLAIMS_BYTES: usize = 8 * 1024;

/// Why a refresh token was not accepted. Logged, never shown to clients.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RefreshError {
    /// Malformed, tampered with, or sealed under another key.
    #[error("not a refresh token of this server (malformed, tampered or from another key)")]
    Invalid,
    /// Past its expiry.
    #[error("the refresh token expired")]
    Expired,
    /// Issued for another service, the one named.
    #[error("the refresh token was issued for service {0:?}")]
    OtherService(String),
    /// Revoked after it was issued (its subject's, or everyone's).
    #[error("the refresh token was revoked")]
    Revoked,
    /// The revocation store could not answer.
    #[error("revocation store: {0}")]
    Store(String),
    /// An `rt1.` token of an earlier version; the user must log in again.
    #[error("a refresh token of an earlier regauth version (rt1): the user must log in again")]
    Legacy,
    /// The login's groups and claims are too large to seal (the size in bytes).
    #[error("the login's groups and claims are too large for a refresh token ({0} bytes)")]
    TooLarge(usize),
    /// Encoding or sealing the claims failed (what failed).
    #[error("sealing failed: {0}")]
    Crypto(&'static str),
}

/// What a refresh token says.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// The subject the token continues.
    pub sub: String,
    /// The provider instance that vouched for the subject.
    pub provider: String,
    /// The service the token is bound to.
    pub service: String,
    /// Issued at, in milliseconds since the epoch (for the log; revocation
    /// compares ledger versions).
    pub iat_ms: u64,
    /// The revocation ledger this token was issued under.
    #[serde(default)]
    pub ledger: String,
    /// The ledger's version when it was issued: a revocation of its
    /// subject (or of everyone) at a later version ends it.
    #[serde(default)]
    pub rev: u64,
    /// Expiry, in seconds since the epoch.
    pub exp: u64,
    /// The login's credential stamp: a lookup that finds another one
    /// (the password changed) refuses the token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stamp: Option<String>,
    /// The login itself, for providers that cannot look users up again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot: Option<Snapshot>,
}

/// What one login established, carried by its refresh token.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshot {
    /// Whether the login was a user or a robot.
    pub kind: Kind,
    /// The login's groups.
    pub groups: Vec<String>,
    /// The login's claims.
    #[serde(default)]
    pub claims: regauth_providers::ClaimSet,
    /// What the login's forge token may do with packages: a refresh never
    /// gets more than the token it continues.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub package_rights: Option<PackageRights>,
}

/// [`regauth_providers::PackageRights`] as a refresh token carries it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PackageRights {
    /// Pull.
    pub read: bool,
    /// Push.
    pub write: bool,
    /// Delete.
    pub delete: bool,
}

impl From<regauth_providers::PackageRights> for PackageRights {
    fn from(r: regauth_providers::PackageRights) -> Self {
        Self {
            read: r.read,
            write: r.write,
            delete: r.delete,
        }
    }
}

impl From<PackageRights> for regauth_providers::PackageRights {
    fn from(r: PackageRights) -> Self {
        Self {
            read: r.read,
            write: r.write,
            delete: r.delete,
        }
    }
}

impl Claims {
    /// The identity a snapshot token stands for.
    pub fn snapshot_identity(&self) -> Option<Identity> {
        let snapshot = self.snapshot.as_ref()?;
        let mut identity =
            Identity::new(&self.sub, &self.provider).with_groups(snapshot.groups.iter().cloned());
        identity.kind = snapshot.kind;
        identity.claims = snapshot.claims.clone();
        identity.package_rights = snapshot.package_rights.map(Into::into);
        identity.renewal = Renewal::Snapshot;
        // Its registry tokens end with it (a JWT login's `exp`, at most).
        identity.expires_at = Some(self.exp);
        Some(identity)
    }
}

/// How long a refresh token of a login without a credential stamp lives
/// at most: without one, a password change cannot end it.
pub const UNSTAMPED_LIFETIME: Duration = Duration::from_secs(12 * 3600);

/// Issues and checks refresh tokens.
pub struct RefreshTokens {
    sealer: crate::keys::seal::Sealer,
    lifetime: Duration,
    /// How long a snapshot login lives, by provider (`refresh_max_age`).
    snapshot_ages: BTreeMap<String, Duration>,
    /// The revocation ledger.
    pub ledger: Arc<Ledger>,
}

impl RefreshTokens {
    /// `secret` is key material shared by the replicas (the refresh key);
    /// revocations live in `store`'s ledger.
    pub fn new(secret: &[u8], lifetime: Duration, store: Arc<dyn Records>) -> Self {
        Self::with_ledger(secret, lifetime, Arc::new(Ledger::new(store, lifetime)))
    }

    /// Refresh tokens whose revocations live in `ledger` (shared with the
    /// app passwords, so that one process reads one ledger).
    pub fn with_ledger(secret: &[u8], lifetime: Duration, ledger: Arc<Ledger>) -> Self {
        Self {
            sealer: crate::keys::seal::Sealer::new(secret, b"regauth refresh-token key v2"),
            lifetime,
            snapshot_ages: BTreeMap::new(),
            ledger,
        }
    }

    /// Snapshot logins of these providers live this long at most
    /// (`refresh_max_age`); others' [`DEFAULT_REFRESH_MAX_AGE`].
    pub fn with_snapshot_ages(mut self, ages: BTreeMap<String, Duration>) -> Self {
        self.snapshot_ages = ages;
        self
    }

    /// Until when (seconds since the epoch) a refresh token issued at
    /// `now` may carry `identity`'s login as a snapshot: its provider's
    /// `refresh_max_age`, never past the credential's own end.
    fn snapshot_until(&self, identity: &Identity, now: u64) -> u64 {
        let age = self
            .snapshot_ages
            .get(&identity.provider)
            .copied()
            .unwrap_or(DEFAULT_REFRESH_MAX_AGE);
        let until = now + age.as_secs();
        identity.expires_at.map_or(until, |end| end.min(until))
    }

    /// A refresh token continuing this login for `service`, or `None`
    /// when the login gets none (a machine's token, or a snapshot whose
    /// deadline has passed).
    pub async fn issue(
        &self,
        identity: &Identity,
        service: &str,
    ) -> Result<Option<String>, RefreshError> {
        let iat_ms = now_ms();
        let lifetime_end = iat_ms / 1000 + self.lifetime.as_secs();
        let (exp, snapshot) = match identity.renewal {
            Renewal::Never => return Ok(None),
            // Nothing would notice a password change: a short life only.
            Renewal::Lookup if identity.credential_stamp.is_none() => (
                lifetime_end.min(iat_ms / 1000 + UNSTAMPED_LIFETIME.as_secs()),
                None,
            ),
            Renewal::Lookup => (lifetime_end, None),
            // a snapshot cannot carry the networks a credential is bound
            // to: such a login gets no refresh token
            Renewal::Snapshot if !identity.networks.is_empty() => return Ok(None),
            Renewal::Snapshot => (
                lifetime_end.min(self.snapshot_until(identity, iat_ms / 1000)),
                Some(Snapshot {
                    kind: identity.kind,
                    groups: identity.groups.clone(),
                    claims: identity.claims.clone(),
                    package_rights: identity.package_rights.map(Into::into),
                }),
            ),
        };
        if exp <= iat_ms / 1000 {
            return Ok(None);
        }
        let (ledger, rev) = self
            .ledger
            .stamp()
            .await
            .map_err(|e| RefreshError::Store(e.0))?;
        let claims = Claims {
            sub: identity.subject.clone(),
            provider: identity.provider.clone(),
            service: service.to_owned(),
            iat_ms,
            ledger,
            rev,
            exp,
            stamp: identity.credential_stamp.clone(),
            snapshot,
        };
        let plain =
            serde_json::to_vec(&claims).map_err(|_| RefreshError::Crypto("encoding the claims"))?;
        if plain.len() > MAX_CLAIMS_BYTES {
            return Err(RefreshError::TooLarge(plain.len()));
        }
        let sealed = self
            .sealer
            .seal(PREFIX.as_bytes(), &plain)
            .map_err(|_| RefreshError::Crypto("no randomness for the nonce"))?;
        Ok(Some(format!("{PREFIX}{sealed}")))
    }

    /// Opens a token presented for `service`, checking expiry and revocation.
    pub async fn check(&self, token: &str, service: &str) -> Result<Claims, RefreshError> {
        let claims = self.open(token, service)?;
        let revoked = self
            .ledger
            .revoked(&claims.sub, &claims.ledger, claims.rev)
            .await
            .map_err(|e| RefreshError::Store(e.0))?;
        if revoked {
            return Err(RefreshError::Revoked);
        }
        Ok(claims)
    }

    /// Opens a token presented for `service`, checking expiry only.
    pub fn open(&self, token: &str, service: &str) -> Result<Claims, RefreshError> {
        if token.starts_with(LEGACY_PREFIX) {
            return Err(RefreshError::Legacy);
        }
        let encoded = token.strip_prefix(PREFIX).ok_or(RefreshError::Invalid)?;
        let plain = self
            .sealer
            .open(PREFIX.as_bytes(), encoded)
            .ok_or(RefreshError::Invalid)?;
        let claims: Claims = serde_json::from_slice(&plain).map_err(|_| RefreshError::Invalid)?;
        if claims.exp <= now_ms() / 1000 {
            return Err(RefreshError::Expired);
        }
        if claims.service != service {
            return Err(RefreshError::OtherService(claims.service));
        }
        Ok(claims)
    }
}

#[cfg(test)]
mod tests;
