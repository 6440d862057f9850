//! The issuer's keys and the JWTs verified with them. A key set is
//! fetched through discovery, each usable key decoded once, and fetched
//! again for an unknown `kid` at most once per `jwks_min_refresh`. The
//! signature algorithm comes from the JWK, never from the token alone:
//! `none` and HMAC are never accepted.

use std::collections::BTreeMap;
use std::time::Instant;

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
        }
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
                let discovery = self.discovery().await?;
                let set = self
                    .get_json::<JwkSet>(discovery.jwks_uri().as_str())
                    .await?;
                Ok(Keys::new(set))
            })
            .await;
        match (fetched, cached) {
            (Ok(keys), _) => Ok(keys.find(kid)),
            (Err(e), Some(keys)) => {
                tracing::warn!(provider = %self.name, error = %e, "JWKS refetch failed; keeping the last good key set");
                Ok(keys.find(kid))
            }
            (Err(e), None) => Err(e),
        }
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
        validation.set_issuer(&[self.issuer.as_str(), self.config.issuer.as_str()]);
        validation.set_audience(&self.config.audiences);
        validation.leeway = self.config.leeway.0.as_secs();
        validation.validate_nbf = true;
        validation.set_required_spec_claims(&["exp", "iss", "aud"]);
        jsonwebtoken::decode::<Value>(token, &key, &validation)
            .map(|data| data.claims)
            .map_err(|e| Refusal::Invalid(format!("token refused: {e}")))
    }
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
