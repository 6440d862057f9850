//! What the providers' settings share: durations as written (`"15m"`),
//! defaults named once where several providers use them, and secrets read
//! from a file or a variable.
//!
//! Settings structs without a required key take `#[serde(default)]` and
//! an `impl Default`. Those with one (an issuer, a URL, a DN) cannot: serde
//! would fill a missing required key from the struct's default instead of
//! saying it is missing. Their fields name a function of [`default`].

use std::time::Duration;

use secrecy::SecretString;

use crate::Error;

/// Timeout for connecting and for each call to a forge or an OpenID
/// Connect issuer.
pub(crate) const DEFAULT_TIMEOUT: Seconds = Seconds(Duration::from_secs(10));
/// How long a forge token's or a directory user's groups are cached.
pub(crate) const DEFAULT_GROUP_CACHE_TTL: Seconds = Seconds(Duration::from_secs(300));
/// Upper bound on the pages of a forge's listing followed.
pub(crate) const DEFAULT_MAX_PAGES: usize = 20;

/// serde takes a field's default from a function: these give the shared
/// defaults above, and others by their value on the field
/// (`default = "default::seconds::<30>"`).
pub(crate) mod default {
    use super::*;

    /// [`DEFAULT_TIMEOUT`].
    pub(crate) fn timeout() -> Seconds {
        DEFAULT_TIMEOUT
    }

    /// [`DEFAULT_GROUP_CACHE_TTL`].
    pub(crate) fn group_cache_ttl() -> Seconds {
        DEFAULT_GROUP_CACHE_TTL
    }

    /// [`DEFAULT_MAX_PAGES`].
    pub(crate) fn max_pages() -> usize {
        DEFAULT_MAX_PAGES
    }

    /// `true`.
    pub(crate) fn yes() -> bool {
        true
    }

    /// `S` seconds.
    pub(crate) fn seconds<const S: u64>() -> Seconds {
        Seconds(Duration::from_secs(S))
    }

    /// The number `N`.
    pub(crate) fn count<const N: usize>() -> usize {
        N
    }
}

/// A duration written as `"15m"`, `"90s"` or a number of seconds, for
/// provider and server configuration alike.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Seconds(pub Duration);

impl<'de> serde::Deserialize<'de> for Seconds {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(serde::Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Number(u64),
            Text(String),
        }
        match Raw::deserialize(d)? {
            Raw::Number(n) => Ok(Seconds(Duration::from_secs(n))),
            Raw::Text(t) => humantime::parse_duration(&t)
                .map(Seconds)
                .map_err(|e| serde::de::Error::custom(format!("`{t}` is not a duration: {e}"))),
        }
    }
}

/// Reads a secret from a file (trailing newline removed) or an environment
/// variable. Errors name the source, never the value.
pub fn load_secret(
    key: &str,
    file: Option<&std::path::Path>,
    env: Option<&str>,
) -> Result<SecretString, Error> {
    match (file, env) {
        (Some(path), None) => {
            let text = std::fs::read_to_string(path).map_err(|source| Error::Io {
                path: path.display().to_string(),
                source,
            })?;
            let value = text.strip_suffix('\n').unwrap_or(&text);
            let value = value.strip_suffix('\r').unwrap_or(value);
            Ok(SecretString::from(value.to_owned()))
        }
        (None, Some(var)) => std::env::var(var).map(SecretString::from).map_err(|_| {
            Error::Config(format!("{key}_env: environment variable {var} is not set"))
        }),
        (Some(_), Some(_)) => Err(Error::Config(format!(
            "{key}_file and {key}_env: set only one"
        ))),
        (None, None) => Err(Error::Config(format!(
            "{key}_file or {key}_env is required"
        ))),
    }
}
