//! Refresh tokens ("identity tokens" to the docker CLI): opaque, long-lived,
//! bound to (subject, provider, service) and to the login that minted
//! them, revocable, never rotated.
//!
//! A refresh token is its claims sealed with AES-256-GCM under a key of its
//! own (`refresh_tokens.key_file`), so every replica that shares the key
//! accepts it, a restart changes nothing, rotating the signing key logs
//! nobody out, and clients can neither read nor forge one. What a refresh may later use comes from the token
//! alone, never from another login's memory: for providers that can look
//! users up again it holds the subject and the login's credential stamp
//! (a password change since then refuses it); for providers that cannot,
//! it holds the login's groups and claims and a deadline of its own.
//! Revocation is a "revoked before" time per subject and one for everybody,
//! kept in the state backend ([`crate::state`]: a file by default, Redis
//! for replicas). Tokens and keys are never logged.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use regauth_providers::{clock, Identity, Kind, Renewal};
use serde::{Deserialize, Serialize};

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
    /// Issued at, in milliseconds since the epoch (revocation compares it).
    pub iat_ms: u64,
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
    pub claims: BTreeMap<String, String>,
}

impl Claims {
    /// The identity a snapshot token stands for.
    pub fn snapshot_identity(&self) -> Option<Identity> {
        let snapshot = self.snapshot.as_ref()?;
        let mut identity =
            Identity::new(&self.sub, &self.provider).with_groups(snapshot.groups.iter().cloned());
        identity.kind = snapshot.kind;
        identity.claims = snapshot.claims.clone();
        identity.renewal = Renewal::Snapshot { until: self.exp };
        // Its registry tokens end with it (a JWT login's `exp`, at most).
        identity.expires_at = Some(self.exp);
        Some(identity)
    }
}

pub(crate) fn now_ms() -> u64 {
    clock::unix_millis()
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
struct Revocations {
    #[serde(default)]
    all_before_ms: u64,
    #[serde(default)]
    subjects: BTreeMap<String, u64>,
}

/// Revocations in `revocations.json` under a state directory. Readers
/// re-read the file when its modification time changes; writers replace it
/// atomically (write, then rename).
pub struct FileStore {
    path: PathBuf,
    cached: Mutex<Option<(SystemTime, Revocations)>>,
}

impl FileStore {
    /// Revocations in `state_dir/revocations.json`.
    pub fn new(state_dir: impl Into<PathBuf>) -> Self {
        Self {
            path: state_dir.into().join("revocations.json"),
            cached: Mutex::new(None),
        }
    }

    fn load(&self) -> Result<Revocations, RefreshError> {
        let store =
            |e: std::io::Error| RefreshError::Store(format!("{}: {e}", self.path.display()));
        let modified = match std::fs::metadata(&self.path) {
            Ok(meta) => meta.modified().map_err(store)?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Revocations::default()),
            Err(e) => return Err(store(e)),
        };
        let mut cached = self
            .cached
            .lock()
            .map_err(|_| RefreshError::Store("lock poisoned".into()))?;
        // A file rewritten within its timestamp's resolution (a second on
        // some file systems) keeps its time: a fresh one is read again.
        let settled = modified
            .elapsed()
            .is_ok_and(|age| age > Duration::from_secs(2));
        if let Some((at, revocations)) = cached.as_ref() {
            if *at == modified && settled {
                return Ok(revocations.clone());
            }
        }
        let text = std::fs::read_to_string(&self.path).map_err(store)?;
        let revocations: Revocations = serde_json::from_str(&text)
            .map_err(|e| RefreshError::Store(format!("{}: {e}", self.path.display())))?;
        *cached = Some((modified, revocations.clone()));
        Ok(revocations)
    }

    fn update(&self, change: impl FnOnce(&mut Revocations)) -> Result<(), RefreshError> {
        let store =
            |e: std::io::Error| RefreshError::Store(format!("{}: {e}", self.path.display()));
        let mut revocations = self.load()?;
        change(&mut revocations);
        if let Some(dir) = self.path.parent() {
            std::fs::create_dir_all(dir).map_err(store)?;
        }
        // One temporary file per writer, so two writers never share one.
        let temporary =
            self.path
                .with_extension(format!("json.{}.{}.tmp", std::process::id(), now_ms()));
        let text = serde_json::to_string_pretty(&revocations)
            .map_err(|e| RefreshError::Store(e.to_string()))?;
        std::fs::write(&temporary, text).map_err(store)?;
        std::fs::rename(&temporary, &self.path).map_err(store)
    }
}

impl FileStore {
    /// Tokens of `subject` issued at or before this time (ms) are revoked.
    pub fn revoked_before(&self, subject: &str) -> Result<u64, RefreshError> {
        let r = self.load()?;
        Ok(r.all_before_ms
            .max(r.subjects.get(subject).copied().unwrap_or(0)))
    }

    /// Revokes `subject`'s tokens issued until `at` (ms), never moving an
    /// earlier revocation back.
    pub fn revoke_subject_at(&self, subject: &str, at: u64) -> Result<(), RefreshError> {
        self.update(|r| {
            let entry = r.subjects.entry(subject.to_owned()).or_default();
            *entry = (*entry).max(at);
        })
    }

    /// Revokes everyone's tokens issued until `at` (ms).
    pub fn revoke_all_at(&self, at: u64) -> Result<(), RefreshError> {
        self.update(|r| r.all_before_ms = r.all_before_ms.max(at))
    }
}

/// How long a refresh token of a login without a credential stamp lives
/// at most: without one, a password change cannot end it.
pub const UNSTAMPED_LIFETIME: Duration = Duration::from_secs(12 * 3600);

/// Issues and checks refresh tokens.
pub struct RefreshTokens {
    sealer: crate::seal::Sealer,
    lifetime: Duration,
    /// The state backend holding revocations.
    pub store: std::sync::Arc<dyn crate::state::Store>,
}

impl RefreshTokens {
    /// `secret` is key material shared by the replicas (the refresh key).
    pub fn new(
        secret: &[u8],
        lifetime: Duration,
        store: std::sync::Arc<dyn crate::state::Store>,
    ) -> Self {
        Self {
            sealer: crate::seal::Sealer::new(secret, b"regauth refresh-token key v2"),
            lifetime,
            store,
        }
    }

    /// A refresh token continuing this login for `service`, or `None`
    /// when the login gets none (a machine's token, or a snapshot whose
    /// deadline has passed).
    pub fn issue(
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
            Renewal::Snapshot { until } => (
                lifetime_end.min(until),
                Some(Snapshot {
                    kind: identity.kind,
                    groups: identity.groups.clone(),
                    claims: identity.claims.clone(),
                }),
            ),
        };
        if exp <= iat_ms / 1000 {
            return Ok(None);
        }
        let claims = Claims {
            sub: identity.subject.clone(),
            provider: identity.provider.clone(),
            service: service.to_owned(),
            iat_ms,
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
        let revoked_before = self
            .store
            .revoked_before(&claims.sub)
            .await
            .map_err(|e| RefreshError::Store(e.0))?;
        if claims.iat_ms <= revoked_before {
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
mod tests {
    use super::*;
    use crate::state::Embedded;

    fn login(subject: &str) -> Identity {
        Identity::new(subject, "corp")
    }

    fn issue(t: &RefreshTokens, subject: &str) -> String {
        t.issue(&login(subject), "reg").unwrap().unwrap()
    }

    fn tokens(dir: &std::path::Path) -> RefreshTokens {
        RefreshTokens::new(
            b"refresh key bytes",
            Duration::from_secs(3600),
            std::sync::Arc::new(Embedded::new(dir)),
        )
    }

    #[tokio::test]
    async fn round_trip_and_binding() {
        let dir = tempfile::tempdir().unwrap();
        let t = tokens(dir.path());
        let token = issue(&t, "ann");
        assert!(token.starts_with(PREFIX));
        assert!(
            !token.contains("ann"),
            "opaque: the subject is not readable"
        );
        let claims = t.check(&token, "reg").await.unwrap();
        assert_eq!(
            (claims.sub.as_str(), claims.provider.as_str()),
            ("ann", "corp")
        );
        assert_eq!(
            t.check(&token, "other").await,
            Err(RefreshError::OtherService("reg".into()))
        );
        // another key (another deployment) cannot open it
        let other = RefreshTokens::new(
            b"another key",
            Duration::from_secs(60),
            std::sync::Arc::new(Embedded::new(dir.path())),
        );
        assert_eq!(other.check(&token, "reg").await, Err(RefreshError::Invalid));
    }

    #[tokio::test]
    async fn tampered_truncated_and_garbage_are_invalid() {
        let dir = tempfile::tempdir().unwrap();
        let t = tokens(dir.path());
        let token = issue(&t, "ann");
        let mut flipped = token.clone().into_bytes();
        let i = flipped.len() - 5;
        flipped[i] = if flipped[i] == b'A' { b'B' } else { b'A' };
        let flipped = String::from_utf8(flipped).unwrap();
        for bad in [
            flipped.as_str(),
            &token[..token.len() - 1],
            &token[..10],
            "rt2.",
            "rt2.!!!",
            "",
            "eyJhbGciOi.x.y",
        ] {
            assert_eq!(
                t.check(bad, "reg").await,
                Err(RefreshError::Invalid),
                "{bad}"
            );
        }
    }

    #[tokio::test]
    async fn revocation_by_subject_and_for_all_survives_a_new_instance() {
        let dir = tempfile::tempdir().unwrap();
        let t = tokens(dir.path());
        let ann = issue(&t, "ann");
        let ben = issue(&t, "ben");
        let later = now_ms() + 5;
        tokens(dir.path())
            .store
            .revoke(Some("ann"), later)
            .await
            .unwrap();
        // the first instance sees the file change
        assert_eq!(t.check(&ann, "reg").await, Err(RefreshError::Revoked));
        assert!(t.check(&ben, "reg").await.is_ok());
        // a token issued after the revocation works
        tokio::time::sleep(Duration::from_millis(10)).await;
        let again = issue(&t, "ann");
        assert!(t.check(&again, "reg").await.is_ok());
        t.store.revoke(None, now_ms() + 5).await.unwrap();
        assert_eq!(
            tokens(dir.path()).check(&ben, "reg").await,
            Err(RefreshError::Revoked)
        );
        assert_eq!(
            tokens(dir.path()).check(&again, "reg").await,
            Err(RefreshError::Revoked)
        );
    }

    #[tokio::test]
    async fn expired_tokens_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let t = RefreshTokens::new(
            b"k",
            Duration::ZERO,
            std::sync::Arc::new(Embedded::new(dir.path())),
        );
        assert_eq!(t.issue(&login("ann"), "reg"), Ok(None), "born expired");
        assert_eq!(t.check("rt1.AAAA", "reg").await, Err(RefreshError::Legacy));
    }

    #[tokio::test]
    async fn each_token_carries_its_own_login() {
        let dir = tempfile::tempdir().unwrap();
        let t = tokens(dir.path());
        // machine logins get none
        let mut machine = login("ci");
        machine.renewal = Renewal::Never;
        assert_eq!(t.issue(&machine, "reg"), Ok(None));
        // a snapshot login: its groups, claims and deadline travel along
        let mut feature = Identity::new("acme/app", "gha").with_groups(["readers"]);
        feature
            .claims
            .insert("ref".into(), "refs/heads/feature".into());
        let until = clock::unix_seconds() + 600;
        feature.renewal = Renewal::Snapshot { until };
        let token = t.issue(&feature, "reg").unwrap().unwrap();
        let claims = t.check(&token, "reg").await.unwrap();
        assert_eq!(claims.exp, until, "the snapshot's deadline, not 30 days");
        let back = claims.snapshot_identity().unwrap();
        assert_eq!(back.groups, ["readers"]);
        assert_eq!(back.claims["ref"], "refs/heads/feature");
        // a lookup login carries its stamp and no snapshot
        let mut ann = login("ann");
        ann.credential_stamp = Some("pwdChangedTime=20261201000000Z".into());
        let claims = t
            .check(&t.issue(&ann, "reg").unwrap().unwrap(), "reg")
            .await
            .unwrap();
        assert_eq!(claims.stamp, ann.credential_stamp);
        assert!(claims.snapshot.is_none() && claims.snapshot_identity().is_none());
    }

    #[test]
    fn oversized_logins_get_no_token() {
        let dir = tempfile::tempdir().unwrap();
        let t = tokens(dir.path());
        let mut big =
            Identity::new("u", "sso").with_groups((0..2000).map(|i| format!("group-{i}")));
        big.renewal = Renewal::Snapshot { until: u64::MAX };
        assert!(matches!(
            t.issue(&big, "reg"),
            Err(RefreshError::TooLarge(_))
        ));
    }
}
