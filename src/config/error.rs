//! Why a configuration is refused, and the checks several sections share.
//! Every error names where it came from and the offending key path, since
//! that is what `regauth check` prints.
//!
//! A leaf module: section validators outside `config` (the
//! `[app_passwords]` one) use it without importing the rest of `config`.

use std::path::Path;

/// Why the configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A configuration or policy file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file, as it was given.
        path: String,
        /// Why it could not be read.
        #[source]
        source: std::io::Error,
    },
    /// A value is missing, malformed or inconsistent with another.
    #[error("{origin}: {key}: {message}")]
    Invalid {
        /// The file it is in (a path, or `embedded default`).
        origin: String,
        /// The offending key path, e.g. `token.lifetime` or
        /// `rule[3].actions[0]`.
        key: String,
        /// What is wrong.
        message: String,
    },
}

/// The error for `key` in the configuration from `origin`.
pub(crate) fn invalid(
    origin: &str,
    key: impl Into<String>,
    message: impl Into<String>,
) -> ConfigError {
    ConfigError::Invalid {
        origin: origin.to_owned(),
        key: key.into(),
        message: message.into(),
    }
}

/// A file's text, or the error naming the file.
pub(crate) fn read_text(path: &Path) -> Result<String, ConfigError> {
    std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.display().to_string(),
        source,
    })
}

/// ` (line N)` for a syntax error at `span` of `text`.
pub(crate) fn line_of(text: &str, span: Option<std::ops::Range<usize>>) -> String {
    span.map(|s| {
        format!(
            " (line {})",
            text[..s.start.min(text.len())].lines().count().max(1)
        )
    })
    .unwrap_or_default()
}

/// `scheme://host[:port]` of `url` (empty when it has no scheme): where
/// the realm's server answers, and so the page and the device endpoints.
pub(crate) fn origin_of(url: &str) -> String {
    url.split_once("://")
        .map(|(scheme, rest)| format!("{scheme}://{}", rest.split('/').next().unwrap_or_default()))
        .unwrap_or_default()
}

/// Whether `url` is `http://` to localhost or a loopback address (no
/// userinfo: `http://127.0.0.1@elsewhere/` is elsewhere). Several sections
/// allow plain http only there.
pub(crate) fn is_loopback_http(url: &str) -> bool {
    let Some(rest) = url.strip_prefix("http://") else {
        return false;
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    if authority.contains('@') {
        return false;
    }
    let host = match authority.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or_default(),
        None => authority.split(':').next().unwrap_or_default(),
    };
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_origin_is_the_urls_scheme_and_host() {
        assert_eq!(
            super::origin_of("https://auth.corp:8443/auth"),
            "https://auth.corp:8443"
        );
        assert_eq!(
            super::origin_of("http://localhost:5001/auth/token"),
            "http://localhost:5001"
        );
        assert_eq!(super::origin_of("no scheme"), "");
    }
}
