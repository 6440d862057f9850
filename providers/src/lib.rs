//! Identity provider adapters for regauth.
//!
//! A provider turns credentials into an [`Identity`] (or says why it cannot).
//! This crate knows nothing about JWTs issued to registries, scopes or policy:
//! that is the server crate's business. It must never log, format or return a
//! secret it was handed: passwords and tokens stay inside [`SecretString`].

#![forbid(unsafe_code)]

use std::collections::BTreeMap;
use std::fmt;

use async_trait::async_trait;
pub use secrecy::{ExposeSecret, SecretString};

pub mod github;
pub mod ldap;
pub mod oidc;
pub mod static_users;

/// Makes aws-lc-rs the process-wide rustls provider, so every TLS client
/// in the process (including ones built without a preconfigured config)
/// uses the one crypto library. Idempotent.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
}

/// Identities of recent logins, for providers that cannot look a user up
/// without the user's secret (OIDC, GitHub): a refresh grant reuses the
/// last login's groups for `max_age`, then the user must log in again.
pub(crate) struct RecentLogins(moka::future::Cache<String, Identity>);

impl RecentLogins {
    pub(crate) fn new(max_age: std::time::Duration) -> Self {
        Self(
            moka::future::Cache::builder()
                .max_capacity(100_000)
                .time_to_live(max_age)
                .build(),
        )
    }

    pub(crate) async fn remember(&self, identity: &Identity) {
        self.0
            .insert(identity.subject.clone(), identity.clone())
            .await;
    }

    pub(crate) async fn lookup(&self, subject: &str) -> Outcome {
        match self.0.get(subject).await {
            Some(identity) => Outcome::Authenticated(identity),
            None => Outcome::NotMine,
        }
    }
}

/// TLS for HTTPS calls to identity providers: aws-lc-rs, the system's
/// roots, plus the certificates of `ca_file` (a private CA) if given.
pub(crate) fn https_client_tls(
    ca_file: Option<&std::path::Path>,
) -> Result<rustls::ClientConfig, Error> {
    use rustls_pki_types::pem::PemObject as _;
    use rustls_pki_types::CertificateDer;
    let mut roots = rustls::RootCertStore::empty();
    roots.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
    if let Some(path) = ca_file {
        let bad = |m: String| Error::Config(format!("ca_file {}: {m}", path.display()));
        for cert in CertificateDer::pem_file_iter(path).map_err(|e| bad(e.to_string()))? {
            roots
                .add(cert.map_err(|e| bad(e.to_string()))?)
                .map_err(|e| bad(e.to_string()))?;
        }
    }
    let provider = std::sync::Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::Config(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

/// What a secret looks like, which decides the providers it may go to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SecretShape<'a> {
    /// `ghp_`, `github_pat_`, `gho_`, `ghu_`, `ghs_`.
    GitHubToken,
    /// A compact JWT, with its (unverified) issuer if it has one.
    Jwt {
        issuer: Option<&'a str>,
    },
    Password,
}

/// The prefixes of GitHub's token formats.
pub const GITHUB_TOKEN_PREFIXES: &[&str] = &["ghp_", "github_pat_", "gho_", "ghu_", "ghs_"];

/// A duration written as `"15m"`, `"90s"` or a number of seconds, for
/// provider and server configuration alike.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Seconds(pub std::time::Duration);

impl<'de> serde::Deserialize<'de> for Seconds {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(serde::Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Number(u64),
            Text(String),
        }
        match Raw::deserialize(d)? {
            Raw::Number(n) => Ok(Seconds(std::time::Duration::from_secs(n))),
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

/// What a client presented: the Basic username and the secret (a password,
/// an access token or a personal access token).
#[derive(Clone)]
pub struct Credentials {
    pub username: String,
    pub secret: SecretString,
}

impl Credentials {
    pub fn new(username: impl Into<String>, secret: impl Into<String>) -> Self {
        Self {
            username: username.into(),
            secret: SecretString::from(secret.into()),
        }
    }
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .field("secret", &"[redacted]")
            .finish()
    }
}

/// What kind of principal an identity is. Robots are service accounts for CI.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    User,
    Robot,
}

/// An authenticated principal, as a provider names it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    /// Canonical name of the principal (what the registry sees as `sub`).
    pub subject: String,
    /// Name of the provider instance that vouched for it.
    pub provider: String,
    pub kind: Kind,
    /// Group names as this provider documents them (sorted, deduplicated).
    pub groups: Vec<String>,
    /// Extra attributes that policy rules may match on (OIDC claims, ...).
    pub claims: BTreeMap<String, String>,
}

impl Identity {
    pub fn new(subject: impl Into<String>, provider: impl Into<String>) -> Self {
        Self {
            subject: subject.into(),
            provider: provider.into(),
            kind: Kind::User,
            groups: Vec::new(),
            claims: BTreeMap::new(),
        }
    }

    pub fn with_groups<I, S>(mut self, groups: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let mut groups: Vec<String> = groups.into_iter().map(Into::into).collect();
        groups.sort();
        groups.dedup();
        self.groups = groups;
        self
    }
}

/// The answer of one provider to one set of credentials.
#[derive(Debug)]
pub enum Outcome {
    /// The credentials are valid.
    Authenticated(Identity),
    /// This provider owns the user and the secret is wrong (or the account
    /// is disabled or expired). The chain stops here.
    Rejected(Rejection),
    /// Unknown user, or a credential shape that is not for this provider.
    NotMine,
    /// The identity provider could not be reached or answered garbage.
    Unavailable(Error),
}

/// Why credentials were rejected. Logged, never told to the client.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Rejection {
    WrongSecret,
    EmptySecret,
    Expired,
    Disabled,
    /// Anything else, with a message fit for the log (never a secret).
    Other(String),
    /// Something the user can fix, with a message meant for the client
    /// (e.g. "authorize this token for SAML SSO").
    UserAction(String),
}

impl Rejection {
    /// What the client may be told: only a `UserAction` says anything.
    pub fn client_message(&self) -> Option<&str> {
        match self {
            Rejection::UserAction(message) => Some(message),
            _ => None,
        }
    }
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Rejection::WrongSecret => f.write_str("wrong password or token"),
            Rejection::EmptySecret => f.write_str("empty password"),
            Rejection::Expired => f.write_str("account expired"),
            Rejection::Disabled => f.write_str("account disabled"),
            Rejection::Other(msg) | Rejection::UserAction(msg) => f.write_str(msg),
        }
    }
}

/// Errors of this crate: configuration problems and unreachable upstreams.
/// Messages never contain secrets.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("configuration: {0}")]
    Config(String),
    #[error("cannot read {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("identity provider unavailable: {0}")]
    Upstream(String),
    /// The IdP throttles us: retry after this many seconds, if it said.
    #[error("identity provider rate limit reached: {message}")]
    RateLimited {
        message: String,
        retry_after: Option<u64>,
    },
    #[error("internal: {0}")]
    Internal(String),
}

/// One identity provider instance (a configured `[[provider]]`).
#[async_trait]
pub trait IdentityProvider: Send + Sync {
    /// The configured instance name (`name = "..."`).
    fn name(&self) -> &str;

    /// The provider kind (`static`, `ldap`, `oidc`, `github`).
    fn kind(&self) -> &'static str;

    /// Checks credentials. Must not panic, must not log the secret.
    async fn authenticate(&self, credentials: &Credentials) -> Outcome;

    /// Whether secrets of this shape may be offered to this provider at
    /// all. Passwords by default; token providers say which tokens.
    fn accepts(&self, shape: SecretShape<'_>) -> bool {
        shape == SecretShape::Password
    }

    /// Looks up a subject this provider vouched for earlier, without a
    /// password (the refresh-token grant): `Authenticated` with its current
    /// groups, `NotMine` if it no longer exists, `Rejected` if it is
    /// disabled. Providers that cannot look users up answer `NotMine`.
    async fn lookup(&self, _subject: &str) -> Outcome {
        Outcome::NotMine
    }

    /// Readiness: can this provider answer right now?
    async fn ready(&self) -> Result<(), Error> {
        Ok(())
    }

    /// Whether the last call to the identity provider reached it. Cheap:
    /// the chain asks on every cached answer, to warn while the IdP is down.
    fn reachable(&self) -> bool {
        true
    }
}
