//! The issuer's keys and the JWTs verified with them. A key set is
//! fetched through discovery (or from `jwks_url`), each usable key decoded
//! once, and fetched again for an unknown `kid` at most once per
//! `jwks_min_refresh`. A key set from `jwks_file` (a cluster's
//! service-account keys, whose issuer regauth cannot reach) is read again
//! whenever the file changes, so a key removed from it stops verifying at
//! the next token. The signature algorithm comes from the JWK, never from
//! the token alone: `none` and HMAC are never accepted.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Instant, SystemTime};

use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, JwkSet, KeyAlgorithm};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::Value;

use super::{Oidc, Refusal};
use crate::Error;

/// A fetched key set, with each usable key decoded once.
pub(super) struct Keys {
    decoded: BTreeMap<String, (Algorithm, DecodingKey)>,
    /// The one key of a single-key set, for tokens without a `kid`.
    only: Option<(Algorithm, DecodingKey)>,
    fetched: Instant,
    /// For a set read from `jwks_file`: the file it was read from.
    stamp: Option<FileStamp>,
}

/// What changes when a file is replaced or rewritten (a ConfigMap volume
/// swaps a symlink, an editor renames, `>` truncates).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct FileStamp {
    inode: u64,
    modified: Option<SystemTime>,
    len: u64,
}

/// Whether a key set with no key is taken: not at startup (a
/// misconfiguration), but later (the cluster's keys withdrawn: every token
/// refused).
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Empty {
    Allowed,
    Refused,
}

/// How long after its last change a file that does not parse is taken to
/// be still being written.
const WRITING_GRACE: std::time::Duration = std::time::Duration::from_secs(10);

impl FileStamp {
    /// Whether the file changed within [`WRITING_GRACE`].
    fn being_written(&self) -> bool {
        self.modified
            .and_then(|m| m.elapsed().ok())
            .is_some_and(|age| age < WRITING_GRACE)
    }

    async fn of(path: &Path) -> Option<Self> {
        use std::os::unix::fs::MetadataExt;
        let meta = tokio::fs::metadata(path).await.ok()?;
        Some(Self {
            inode: meta.ino(),
            modified: meta.modified().ok(),
            len: meta.len(),
        })
    }
}

impl Keys {
    pub(super) fn new(set: JwkSet) -> Self {
        let usable = |jwk: &Jwk| Some((algorithm_of(jwk)?, DecodingKey::from_jwk(jwk).ok()?));
        let decoded = set
            .keys
            .iter()
            .filter_map(|jwk| Some((jwk.common.key_id.clone()?, usable(jwk)?)))
            .collect();
        let only = match set.keys.as_slice() {
            [jwk] => usable(jwk),
            _ => None,
        };
        Self {
            decoded,
            only,
            fetched: Instant::now(),
            stamp: None,
        }
    }

    /// The key set in `text` (a JWKS document), read from a file stamped so.
    pub(super) fn parse_file(
        text: &[u8],
        stamp: Option<FileStamp>,
        empty: Empty,
    ) -> Result<Self, Error> {
        let set: JwkSet = serde_json::from_slice(text)
            .map_err(|e| Error::Config(format!("jwks_file is not a JWKS document: {e}")))?;
        if set.keys.is_empty() && empty == Empty::Refused {
            return Err(Error::Config("jwks_file holds no key".into()));
        }
        Ok(Self {
            stamp,
            ..Self::new(set)
        })
    }

    fn find(&self, kid: Option<&str>) -> Option<(Algorithm, DecodingKey)> {
        match kid {
            Some(kid) => self.decoded.get(kid).cloned(),
            None => self.only.clone(),
        }
    }
}

impl Oidc {
    /// The decoded key for `kid`: from the cached set, refetched at most
    /// once per `jwks_min_refresh` when the kid is unknown (one fetch for
    /// all concurrent callers, with the same back-off as discovery). A
    /// failed fetch keeps the last good set. Symmetric keys are never
    /// usable.
    async fn key(&self, kid: Option<&str>) -> Result<Option<(Algorithm, DecodingKey)>, Error> {
        if let Some(path) = &self.config.jwks_file {
            return self.key_from_file(path, kid).await;
        }
        let cached = self.keys.current();
        if let Some(keys) = &cached {
            if let Some(found) = keys.find(kid) {
                return Ok(Some(found));
            }
        }
        let min_refresh = self.config.jwks_min_refresh.0;
        let stale = |current: Option<&Keys>| match current {
            None => true,
            Some(keys) => keys.find(kid).is_none() && keys.fetched.elapsed() >= min_refresh,
        };
        if !stale(cached.as_deref()) {
            return Ok(None);
        }
        let fetched = self
            .keys
            .refresh(stale, || async {
                let set = match &self.config.jwks_url {
                    Some(url) => self.get_json::<JwkSet>(url).await?,
                    None => {
                        let discovery = self.discovery().await?;
                        self.get_json::<JwkSet>(discovery.jwks_uri().as_str())
                            .await?
                    }
                };
                Ok(Keys::new(set))
            })
            .await;
        self.found_or_kept(fetched, cached, kid)
    }

    /// The key for `kid` from `jwks_file`, read again whenever the file
    /// has changed since it was last read. A file that is gone takes its
    /// keys with it (503 until it is back). A file that does not read as a
    /// key set while it is being written (changed within
    /// [`WRITING_GRACE`]) leaves the last good set in use; after that it
    /// is refused like a missing one, so a broken file never keeps a
    /// removed key alive.
    async fn key_from_file(
        &self,
        path: &Path,
        kid: Option<&str>,
    ) -> Result<Option<(Algorithm, DecodingKey)>, Error> {
        let Some(stamp) = FileStamp::of(path).await else {
            self.keys.replace(None);
            return Err(Error::Upstream(format!(
                "jwks_file {} is missing",
                path.display()
            )));
        };
        let cached = self.keys.current();
        if let Some(keys) = cached.as_deref().filter(|k| k.stamp == Some(stamp)) {
            return Ok(keys.find(kid));
        }
        let read = read_bounded(path, crate::MAX_UPSTREAM_BODY)
            .await
            .map_err(|e| Error::Upstream(format!("jwks_file: {e}")))
            .and_then(|text| Keys::parse_file(&text, Some(stamp), Empty::Allowed));
        match (read, cached) {
            (Ok(keys), _) => Ok(self.keys.replace(Some(keys)).and_then(|k| k.find(kid))),
            (Err(e), Some(keys)) if stamp.being_written() => {
                tracing::warn!(provider = %self.name, error = %e, "jwks_file does not read as a key set while it changes; keeping the last good key set");
                Ok(keys.find(kid))
            }
            (Err(e), _) => {
                self.keys.replace(None);
                Err(e)
            }
        }
    }

    /// The key for `kid` from a freshly fetched set, or from the last good
    /// one when the fetch failed.
    fn found_or_kept(
        &self,
        fetched: Result<std::sync::Arc<Keys>, Error>,
        cached: Option<std::sync::Arc<Keys>>,
        kid: Option<&str>,
    ) -> Result<Option<(Algorithm, DecodingKey)>, Error> {
        match (fetched, cached) {
            (Ok(keys), _) => Ok(keys.find(kid)),
            (Err(e), Some(keys)) => {
                tracing::warn!(provider = %self.name, error = %e, "reading the JWKS again failed; keeping the last good key set");
                Ok(keys.find(kid))
            }
            (Err(e), None) => Err(e),
        }
    }

    /// Whether the key set can be had (read or fetched when none is yet).
    pub(super) async fn keys_ready(&self) -> Result<(), Error> {
        if self.config.jwks_file.is_some() {
            return self.key(None).await.map(|_| ());
        }
        if self.keys.current().is_some() {
            return Ok(());
        }
        self.key(Some("")).await.map(|_| ())
    }

    /// Verifies a JWT from this issuer and returns its claims.
    pub(super) async fn verify(&self, token: &str) -> Result<Value, Refusal> {
        let header = jsonwebtoken::decode_header(token)
            .map_err(|e| Refusal::Invalid(format!("not a usable JWT header: {e}")))?;
        let (algorithm, key) = self
            .key(header.kid.as_deref())
            .await
            .map_err(Refusal::Unavailable)?
            .ok_or_else(|| {
                Refusal::Invalid(format!(
                    "no usable key {:?} in the issuer's JWKS",
                    header.kid
                ))
            })?;
        if header.alg != algorithm {
            return Err(Refusal::Invalid(format!(
                "token alg {:?} differs from the key's {algorithm:?}",
                header.alg
            )));
        }
        let mut validation = Validation::new(algorithm);
        let issuers = [self.issuer.as_str(), self.config.issuer.as_str()];
        validation.set_issuer(
            &issuers
                .into_iter()
                .chain(self.config.other_issuers.iter().map(String::as_str))
                .collect::<Vec<_>>(),
        );
        validation.set_audience(&self.config.audiences);
        validation.leeway = self.config.leeway.0.as_secs();
        validation.validate_nbf = true;
        validation.set_required_spec_claims(&["exp", "iss", "aud"]);
        jsonwebtoken::decode::<Value>(token, &key, &validation)
            .map(|data| data.claims)
            .map_err(|e| Refusal::Invalid(format!("token refused: {e}")))
    }
}

/// The file at `path`, refused when longer than `limit` bytes.
pub(super) async fn read_bounded(path: &Path, limit: usize) -> Result<Vec<u8>, String> {
    use tokio::io::AsyncReadExt;
    let file = tokio::fs::File::open(path)
        .await
        .map_err(|e| format!("{}: {e}", path.display()))?;
    let mut text = Vec::new();
    file.take(limit as u64 + 1)
        .read_to_end(&mut text)
        .await
        .map_err(|e| format!("{}: {e}", path.display()))?;
    if text.len() > limit {
        return Err(format!("{} is longer than {limit} bytes", path.display()));
    }
    Ok(text)
}

/// The signature algorithm a JWK is for; `None` for symmetric keys.
fn algorithm_of(jwk: &Jwk) -> Option<Algorithm> {
    let declared = jwk.common.key_algorithm;
    match &jwk.algorithm {
        AlgorithmParameters::RSA(_) => Some(match declared {
            Some(KeyAlgorithm::RS384) => Algorithm::RS384,
            Some(KeyAlgorithm::RS512) => Algorithm::RS512,
            Some(KeyAlgorithm::PS256) => Algorithm::PS256,
            Some(KeyAlgorithm::PS384) => Algorithm::PS384,
            Some(KeyAlgorithm::PS512) => Algorithm::PS512,
            _ => Algorithm::RS256,
        }),
        AlgorithmParameters::EllipticCurve(ec) => match ec.curve {
            EllipticCurve::P256 => Some(Algorithm::ES256),
            EllipticCurve::P384 => Some(Algorithm::ES384),
            _ => None,
        },
        AlgorithmParameters::OctetKeyPair(_) => Some(Algorithm::EdDSA),
        AlgorithmParameters::OctetKey(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn symmetric_keys_have_no_algorithm() {
        let oct: Jwk =
            serde_json::from_value(serde_json::json!({"kty": "oct", "k": "c2VjcmV0", "kid": "h"}))
                .unwrap();
        assert_eq!(algorithm_of(&oct), None);
        let ec: Jwk = serde_json::from_value(serde_json::json!({
            "kty": "EC", "crv": "P-256", "kid": "e",
            "x": "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU",
            "y": "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"
        }))
        .unwrap();
        assert_eq!(algorithm_of(&ec), Some(Algorithm::ES256));
    }
}
