//! Refresh tokens ("identity tokens" to the docker CLI): opaque, long-lived,
//! bound to (subject, provider, service), revocable, never rotated.
//!
//! A refresh token is its claims sealed with AES-256-GCM under a key
//! derived from the signing key, so every replica that shares the signing
//! key accepts it and a restart changes nothing, while clients can neither
//! read nor forge one. Revocation is a "revoked before" time per subject
//! and one for everybody, kept in a [`RevocationStore`] (a file by default,
//! shared by every replica that mounts it). Tokens and keys are never logged.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_lc_rs::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM, NONCE_LEN};
use aws_lc_rs::rand::SecureRandom;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde::{Deserialize, Serialize};

const PREFIX: &str = "rt1.";

/// Why a refresh token was not accepted. Logged, never shown to clients.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RefreshError {
    #[error("not a refresh token of this server (malformed, tampered or from another key)")]
    Invalid,
    #[error("the refresh token expired")]
    Expired,
    #[error("the refresh token was issued for service {0:?}")]
    OtherService(String),
    #[error("the refresh token was revoked")]
    Revoked,
    #[error("revocation store: {0}")]
    Store(String),
}

/// What a refresh token says.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    pub sub: String,
    pub provider: String,
    pub service: String,
    /// Issued at, in milliseconds since the epoch (revocation compares it).
    pub iat_ms: u64,
    /// Expiry, in seconds since the epoch.
    pub exp: u64,
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or_default()
}

/// Where revocations live. Implementations must be shared by every replica.
pub trait RevocationStore: Send + Sync {
    /// Tokens of `subject` issued at or before this time (ms) are revoked.
    fn revoked_before(&self, subject: &str) -> Result<u64, RefreshError>;
    fn revoke_subject(&self, subject: &str) -> Result<(), RefreshError>;
    fn revoke_all(&self) -> Result<(), RefreshError>;
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
        if let Some((at, revocations)) = cached.as_ref() {
            if *at == modified {
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
        let temporary = self.path.with_extension("json.tmp");
        let text = serde_json::to_string_pretty(&revocations)
            .map_err(|e| RefreshError::Store(e.to_string()))?;
        std::fs::write(&temporary, text).map_err(store)?;
        std::fs::rename(&temporary, &self.path).map_err(store)
    }
}

impl RevocationStore for FileStore {
    fn revoked_before(&self, subject: &str) -> Result<u64, RefreshError> {
        let r = self.load()?;
        Ok(r.all_before_ms
            .max(r.subjects.get(subject).copied().unwrap_or(0)))
    }

    fn revoke_subject(&self, subject: &str) -> Result<(), RefreshError> {
        let at = now_ms();
        self.update(|r| {
            r.subjects.insert(subject.to_owned(), at);
        })
    }

    fn revoke_all(&self) -> Result<(), RefreshError> {
        let at = now_ms();
        self.update(|r| r.all_before_ms = at)
    }
}

/// Issues and checks refresh tokens.
pub struct RefreshTokens {
    key: LessSafeKey,
    lifetime: Duration,
    pub store: Box<dyn RevocationStore>,
}

impl RefreshTokens {
    /// `secret` is key material shared by the replicas (the signing key).
    pub fn new(secret: &[u8], lifetime: Duration, store: Box<dyn RevocationStore>) -> Self {
        let derived = aws_lc_rs::hmac::sign(
            &aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, secret),
            b"regauth refresh-token key v1",
        );
        let key = UnboundKey::new(&AES_256_GCM, derived.as_ref())
            .map(LessSafeKey::new)
            .unwrap_or_else(|_| unreachable!("a SHA-256 output is an AES-256 key"));
        Self {
            key,
            lifetime,
            store,
        }
    }

    pub fn issue(&self, subject: &str, provider: &str, service: &str) -> String {
        let iat_ms = now_ms();
        let claims = Claims {
            sub: subject.to_owned(),
            provider: provider.to_owned(),
            service: service.to_owned(),
            iat_ms,
            exp: iat_ms / 1000 + self.lifetime.as_secs(),
        };
        let mut sealed = serde_json::to_vec(&claims).unwrap_or_default();
        let mut nonce = [0u8; NONCE_LEN];
        let _ = aws_lc_rs::rand::SystemRandom::new().fill(&mut nonce);
        // Sealing only fails for inputs larger than GCM allows.
        let _ = self.key.seal_in_place_append_tag(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(PREFIX.as_bytes()),
            &mut sealed,
        );
        let mut out = Vec::with_capacity(NONCE_LEN + sealed.len());
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&sealed);
        format!("{PREFIX}{}", URL_SAFE_NO_PAD.encode(out))
    }

    /// Opens a token presented for `service`, checking expiry and revocation.
    pub fn check(&self, token: &str, service: &str) -> Result<Claims, RefreshError> {
        let encoded = token.strip_prefix(PREFIX).ok_or(RefreshError::Invalid)?;
        let mut raw = URL_SAFE_NO_PAD
            .decode(encoded)
            .map_err(|_| RefreshError::Invalid)?;
        if raw.len() < NONCE_LEN + AES_256_GCM.tag_len() {
            return Err(RefreshError::Invalid);
        }
        let mut sealed = raw.split_off(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(&raw).map_err(|_| RefreshError::Invalid)?;
        let plain = self
            .key
            .open_in_place(nonce, Aad::from(PREFIX.as_bytes()), &mut sealed)
            .map_err(|_| RefreshError::Invalid)?;
        let claims: Claims = serde_json::from_slice(plain).map_err(|_| RefreshError::Invalid)?;
        if claims.exp <= now_ms() / 1000 {
            return Err(RefreshError::Expired);
        }
        if claims.service != service {
            return Err(RefreshError::OtherService(claims.service));
        }
        if claims.iat_ms <= self.store.revoked_before(&claims.sub)? {
            return Err(RefreshError::Revoked);
        }
        Ok(claims)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tokens(dir: &std::path::Path) -> RefreshTokens {
        RefreshTokens::new(
            b"signing key bytes",
            Duration::from_secs(3600),
            Box::new(FileStore::new(dir)),
        )
    }

    #[test]
    fn round_trip_and_binding() {
        let dir = tempfile::tempdir().unwrap();
        let t = tokens(dir.path());
        let token = t.issue("ann", "corp", "reg");
        assert!(token.starts_with(PREFIX));
        assert!(
            !token.contains("ann"),
            "opaque: the subject is not readable"
        );
        let claims = t.check(&token, "reg").unwrap();
        assert_eq!(
            (claims.sub.as_str(), claims.provider.as_str()),
            ("ann", "corp")
        );
        assert_eq!(
            t.check(&token, "other"),
            Err(RefreshError::OtherService("reg".into()))
        );
        // another key (another deployment) cannot open it
        let other = RefreshTokens::new(
            b"another key",
            Duration::from_secs(60),
            Box::new(FileStore::new(dir.path())),
        );
        assert_eq!(other.check(&token, "reg"), Err(RefreshError::Invalid));
    }

    #[test]
    fn tampered_truncated_and_garbage_are_invalid() {
        let dir = tempfile::tempdir().unwrap();
        let t = tokens(dir.path());
        let token = t.issue("ann", "corp", "reg");
        let mut flipped = token.clone().into_bytes();
        let i = flipped.len() - 5;
        flipped[i] = if flipped[i] == b'A' { b'B' } else { b'A' };
        let flipped = String::from_utf8(flipped).unwrap();
        for bad in [
            flipped.as_str(),
            &token[..token.len() - 1],
            &token[..10],
            "rt1.",
            "rt1.!!!",
            "",
            "eyJhbGciOi.x.y",
        ] {
            assert_eq!(t.check(bad, "reg"), Err(RefreshError::Invalid), "{bad}");
        }
    }

    #[test]
    fn revocation_by_subject_and_for_all_survives_a_new_instance() {
        let dir = tempfile::tempdir().unwrap();
        let t = tokens(dir.path());
        let ann = t.issue("ann", "corp", "reg");
        let ben = t.issue("ben", "corp", "reg");
        std::thread::sleep(Duration::from_millis(5));
        tokens(dir.path()).store.revoke_subject("ann").unwrap();
        // the first instance sees the file change
        assert_eq!(t.check(&ann, "reg"), Err(RefreshError::Revoked));
        assert!(t.check(&ben, "reg").is_ok());
        // a token issued after the revocation works
        std::thread::sleep(Duration::from_millis(5));
        let again = t.issue("ann", "corp", "reg");
        assert!(t.check(&again, "reg").is_ok());
        std::thread::sleep(Duration::from_millis(5));
        t.store.revoke_all().unwrap();
        assert_eq!(
            tokens(dir.path()).check(&ben, "reg"),
            Err(RefreshError::Revoked)
        );
        assert_eq!(
            tokens(dir.path()).check(&again, "reg"),
            Err(RefreshError::Revoked)
        );
    }

    #[test]
    fn expired_tokens_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let t = RefreshTokens::new(b"k", Duration::ZERO, Box::new(FileStore::new(dir.path())));
        let token = t.issue("ann", "corp", "reg");
        assert_eq!(t.check(&token, "reg"), Err(RefreshError::Expired));
    }
}
