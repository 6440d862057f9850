//! Registry tokens: the claim set and the token endpoint's success body.
//! Keys and signatures live in [`crate::keys`].

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde::Serialize;

use crate::scope::{Action, ResourceType};

pub use crate::keys::{generate, write_key_files, IfExists, KeyError, KeyType, SigningKey};

/// One entry of the `access` claim.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct Access {
    /// The resource type (`type`).
    #[serde(rename = "type")]
    pub kind: ResourceType,
    /// The resource name, e.g. a repository.
    pub name: String,
    /// The actions granted on it.
    pub actions: Vec<Action>,
}

/// The registry token's claim set.
#[derive(Debug, Serialize)]
pub struct Claims<'a> {
    /// The issuer (`token.issuer`).
    pub iss: &'a str,
    /// The subject (empty for anonymous).
    pub sub: &'a str,
    /// The service the token is for.
    pub aud: &'a str,
    /// Expiry, in seconds since the epoch.
    pub exp: i64,
    /// Not valid before, in seconds since the epoch (set back by
    /// [`NOT_BEFORE_SKEW`]).
    pub nbf: i64,
    /// Issued at, in seconds since the epoch.
    pub iat: i64,
    /// A random token ID.
    pub jti: String,
    /// The access granted.
    pub access: &'a [Access],
}

/// The token endpoint's success body: `token` and `access_token` (the same
/// JWT), integer `expires_in`, RFC 3339 `issued_at`, and on POST the
/// granted `scope`.
/// Written by hand because it is the hot path and only `scope` can need
/// escaping (a JWT is base64url and dots).
pub fn response_body(
    jwt: &str,
    expires_in: u64,
    iat: i64,
    scope: Option<&str>,
    refresh_token: Option<&str>,
) -> bytes::Bytes {
    let issued_at = rfc3339(iat);
    let mut body = String::with_capacity(2 * jwt.len() + 128);
    body.push_str("{\"token\":\"");
    body.push_str(jwt);
    body.push_str("\",\"access_token\":\"");
    body.push_str(jwt);
    body.push_str("\",\"expires_in\":");
    body.push_str(&expires_in.to_string());
    body.push_str(",\"issued_at\":\"");
    body.push_str(&issued_at);
    body.push('"');
    if let Some(scope) = scope {
        body.push_str(",\"scope\":");
        body.push_str(&serde_json::Value::from(scope).to_string());
    }
    if let Some(refresh_token) = refresh_token {
        // base64url with a fixed prefix: nothing to escape
        body.push_str(",\"refresh_token\":\"");
        body.push_str(refresh_token);
        body.push('"');
    }
    body.push('}');
    body.into()
}

/// How far `nbf` is set back, to absorb clock skew between hosts.
pub const NOT_BEFORE_SKEW: i64 = 5;

/// The current time, in seconds since the epoch.
pub fn now() -> i64 {
    regauth_providers::clock::unix_seconds() as i64
}

/// A random token ID. Fails only without an OS entropy source, and then a
/// token must not be issued (its `jti` would not be unique).
pub fn random_id() -> Result<String, KeyError> {
    use aws_lc_rs::rand::SecureRandom as _;
    let mut bytes = [0u8; 16];
    aws_lc_rs::rand::SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| KeyError::Generate("the system has no randomness for a token ID".into()))?;
    Ok(URL_SAFE_NO_PAD.encode(bytes))
}

/// RFC 3339 UTC with second precision, e.g. `2026-11-24T01:02:03Z`.
pub fn rfc3339(unix: i64) -> String {
    let format =
        time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]Z");
    time::OffsetDateTime::from_unix_timestamp(unix)
        .ok()
        .and_then(|t| t.format(&format).ok())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_format() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_700_000_000), "2023-11-14T22:13:20Z");
    }
}
