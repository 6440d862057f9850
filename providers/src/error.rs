//! The errors of this crate: configuration problems and unreachable
//! upstreams. Messages never contain secrets.

/// A configuration value a provider refuses: the key (relative to its
/// `[[provider]]` table) and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid {
    /// The offending key, e.g. `organizations` or `required_claims`.
    pub key: &'static str,
    /// What is wrong and how to fix it.
    pub message: String,
}

impl From<Invalid> for Error {
    fn from(invalid: Invalid) -> Self {
        Error::Config(format!("{}: {}", invalid.key, invalid.message))
    }
}

/// Errors of this crate: configuration problems and unreachable upstreams.
/// Messages never contain secrets.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The configuration is invalid.
    #[error("configuration: {0}")]
    Config(String),
    /// A file could not be read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The file, as it was given.
        path: String,
        /// Why it could not be read.
        #[source]
        source: std::io::Error,
    },
    /// The identity provider failed or could not be reached.
    #[error("identity provider unavailable: {0}")]
    Upstream(String),
    /// The IdP throttles us: retry after this many seconds, if it said.
    #[error("identity provider rate limit reached: {message}")]
    RateLimited {
        /// What happened, for the log.
        message: String,
        /// Seconds to wait before retrying, if the IdP said.
        retry_after: Option<u64>,
    },
    /// A failure inside regauth itself (a poisoned lock, a cancelled password
    /// check).
    #[error("internal: {0}")]
    Internal(String),
}
