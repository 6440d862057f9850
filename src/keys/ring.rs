//! The key ring: the current signing key and a staged next one.

use std::path::Path;
use std::time::Duration;

use super::{KeyError, SigningKey};

/// The keys in use: the current one, and a staged next one that is
/// published at once and signs from `switch_at` on. While both exist both
/// are published (`/jwks`, the registry's certificate bundle), so tokens of
/// either verify wherever the bundle was given.
#[derive(Debug)]
pub struct KeyRing {
    /// The key that signs until the switch.
    pub current: SigningKey,
    /// The staged next key, if a rotation is under way.
    pub next: Option<Staged>,
}

/// A staged key and when it starts to sign.
#[derive(Debug)]
pub struct Staged {
    /// The key.
    pub key: SigningKey,
    /// When it was staged (seconds since the epoch).
    pub staged_at: i64,
    /// From when it signs (seconds since the epoch).
    pub switch_at: i64,
}

impl KeyRing {
    /// A ring of one key.
    pub fn single(current: SigningKey) -> Self {
        Self {
            current,
            next: None,
        }
    }

    /// The key that signs at `now`.
    pub fn signing(&self, now: i64) -> &SigningKey {
        match &self.next {
            Some(staged) if now >= staged.switch_at => &staged.key,
            _ => &self.current,
        }
    }

    /// Every key a registry must trust now: the current one and the next.
    pub fn published(&self) -> impl Iterator<Item = &SigningKey> {
        std::iter::once(&self.current).chain(self.next.as_ref().map(|s| &s.key))
    }

    /// The public keys as a JWK set (`/jwks`, registry v3's `jwks` file).
    pub fn jwks(&self) -> serde_json::Value {
        serde_json::json!({ "keys": self.published().map(SigningKey::jwk).collect::<Vec<_>>() })
    }

    /// The certificates of every published key, as one PEM bundle (the
    /// registry's `rootcertbundle` during a rotation).
    pub fn bundle_pem(&self) -> String {
        self.published().map(SigningKey::certificate_pem).collect()
    }

    /// When the first published certificate expires.
    pub fn not_after(&self) -> i64 {
        self.published().map(|k| k.not_after).min().unwrap_or(0)
    }
}

/// Where a staged next key's staging time is kept: beside its key file.
pub fn staged_marker(next_key: &Path) -> std::path::PathBuf {
    let mut name = next_key.as_os_str().to_owned();
    name.push(".staged");
    name.into()
}

/// Loads the staged next key, if its files exist, with when it was staged
/// (the marker file, else the key file's modification time).
pub fn load_staged(
    next_key: &Path,
    next_certificate: &Path,
    overlap: Duration,
) -> Result<Option<Staged>, KeyError> {
    if !next_key.exists() && !next_certificate.exists() {
        return Ok(None);
    }
    let key = SigningKey::load(next_key, next_certificate)?;
    let marker = staged_marker(next_key);
    let staged_at = match std::fs::read_to_string(&marker) {
        Ok(text) => text.trim().parse::<i64>().map_err(|_| KeyError::Invalid {
            path: marker.display().to_string(),
            message: "not a number of seconds since the epoch".into(),
        })?,
        Err(_) => std::fs::metadata(next_key)
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_secs() as i64),
    };
    Ok(Some(Staged {
        key,
        staged_at,
        switch_at: staged_at + overlap.as_secs() as i64,
    }))
}
