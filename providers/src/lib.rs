//! Identity provider adapters for regauth.
//!
//! A provider turns credentials into an [`Identity`] (or says why it cannot).
//! This crate knows nothing about JWTs issued to registries, scopes or policy:
//! that is the server crate's business. It must never log, format or return a
//! secret it was handed: passwords and tokens stay inside [`SecretString`].

#![forbid(unsafe_code)]
#![warn(missing_docs)]

use std::collections::BTreeMap;
use std::fmt;

use async_trait::async_trait;
pub use secrecy::{ExposeSecret, SecretString};

pub mod clock;
mod forge;
pub mod gitea;
pub mod github;
pub mod gitlab;
pub mod ldap;
pub mod oidc;
pub mod static_users;
pub mod webhook;

/// Makes aws-lc-rs the process-wide rustls provider, so every TLS client
/// in the process (including ones built without a preconfigured config)
/// uses the one crypto library. Idempotent.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
}

/// Text a client chose, as it may appear in a log line: control
/// characters (newlines, ANSI escapes) escaped, at most [`MAX_LOGGED_BYTES`]
/// bytes of it, the rest counted, and anything shaped like a token (a
/// GitHub, GitLab or Gitea token, or a JWT, pasted as the username) not shown at all.
pub struct Safe<'a>(pub &'a str);

/// At most this many bytes of client-chosen text reach a log line.
pub const MAX_LOGGED_BYTES: usize = 256;

impl fmt::Display for Safe<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = self.0;
        let looks_like_token = GITHUB_TOKEN_PREFIXES.iter().any(|p| text.starts_with(p))
            || gitlab::GITLAB_TOKEN_PREFIXES
                .iter()
                .any(|p| text.starts_with(p))
            || gitea::is_gitea_token(text)
            || text.starts_with(APP_PASSWORD_PREFIX)
            || (text.starts_with("eyJ") && text.matches('.').count() == 2);
        if looks_like_token {
            return f.write_str("[a token, not shown]");
        }
        let mut end = text.len().min(MAX_LOGGED_BYTES);
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        for c in text[..end].chars() {
            if c.is_control() {
                write!(f, "{}", c.escape_unicode())?;
            } else {
                write!(f, "{c}")?;
            }
        }
        if end < text.len() {
            write!(f, "…(+{} bytes)", text.len() - end)?;
        }
        Ok(())
    }
}

/// Upper bound on the body of an identity provider's answer.
pub const MAX_UPSTREAM_BODY: usize = 1024 * 1024;

/// A client that POSTs JSON over HTTPS (or to loopback http) and reads a
/// bounded answer: for the server's webhooks, which must not speak HTTP
/// themselves.
pub struct JsonClient {
    client: reqwest::Client,
    max_response_bytes: usize,
}

impl JsonClient {
    /// A client with this timeout and answer bound.
    pub fn new(timeout: std::time::Duration, max_response_bytes: usize) -> Result<Self, Error> {
        Ok(Self {
            client: http_client(None, timeout)?,
            max_response_bytes,
        })
    }

    /// POSTs `body` (JSON) to `url`: the status and the body of the answer.
    pub async fn post(&self, url: &str, body: Vec<u8>) -> Result<(u16, Vec<u8>), String> {
        let response = self
            .client
            .post(url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body)
            .send()
            .await
            .map_err(|e| e.without_url().to_string())?;
        let status = response.status().as_u16();
        Ok((
            status,
            body_limited(response, self.max_response_bytes).await?,
        ))
    }
}

/// Reads a response body of at most `limit` bytes.
pub async fn body_limited(
    mut response: reqwest::Response,
    limit: usize,
) -> Result<Vec<u8>, String> {
    let too_large = || format!("the answer is larger than {limit} bytes");
    if response.content_length().is_some_and(|n| n > limit as u64) {
        return Err(too_large());
    }
    let mut body = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| e.without_url().to_string())?
    {
        if body.len() + chunk.len() > limit {
            return Err(too_large());
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// Reads a JSON body of at most `limit` bytes.
pub async fn json_limited<T: serde::de::DeserializeOwned>(
    response: reqwest::Response,
    limit: usize,
) -> Result<T, String> {
    let body = body_limited(response, limit).await?;
    serde_json::from_slice(&body).map_err(|e| e.to_string())
}

/// A document fetched from an identity provider (discovery, a key set):
/// concurrent callers share one fetch, and after a failure nobody asks
/// again until a back-off has passed (1 s, doubling to a minute), so
/// requests from the internet cannot turn into a flood of IdP calls.
pub(crate) struct Fetched<T> {
    state: std::sync::Mutex<FetchState<T>>,
    flight: tokio::sync::Mutex<()>,
    /// Fetches made (for `/metrics`).
    pub(crate) fetches: std::sync::atomic::AtomicU64,
}

struct FetchState<T> {
    value: Option<std::sync::Arc<T>>,
    failures: u32,
    retry_at: Option<std::time::Instant>,
    error: String,
}

impl<T> Fetched<T> {
    pub(crate) fn new() -> Self {
        Self {
            state: std::sync::Mutex::new(FetchState {
                value: None,
                failures: 0,
                retry_at: None,
                error: String::new(),
            }),
            flight: tokio::sync::Mutex::new(()),
            fetches: std::sync::atomic::AtomicU64::new(0),
        }
    }

    /// The last good value, if any.
    pub(crate) fn current(&self) -> Option<std::sync::Arc<T>> {
        self.state.lock().ok().and_then(|s| s.value.clone())
    }

    /// The error to answer while backing off.
    fn backing_off(state: &FetchState<T>) -> Option<Error> {
        let wait = state
            .retry_at?
            .checked_duration_since(std::time::Instant::now())?;
        Some(Error::Upstream(format!(
            "{} (not asking again for {} s)",
            state.error,
            wait.as_secs().max(1)
        )))
    }

    /// Fetches a new value if `wanted(current)` still holds when this
    /// caller's turn comes (someone else may have fetched meanwhile).
    pub(crate) async fn refresh<W, F, Fut>(
        &self,
        wanted: W,
        fetch: F,
    ) -> Result<std::sync::Arc<T>, Error>
    where
        W: Fn(Option<&T>) -> bool,
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = Result<T, Error>>,
    {
        let poisoned = || Error::Internal("fetch state lock poisoned".into());
        if let Some(e) = Self::backing_off(&*self.state.lock().map_err(|_| poisoned())?) {
            return Err(e);
        }
        let _turn = self.flight.lock().await;
        {
            let state = self.state.lock().map_err(|_| poisoned())?;
            if let Some(value) = state.value.as_ref().filter(|v| !wanted(Some(v))) {
                return Ok(value.clone());
            }
            if let Some(e) = Self::backing_off(&state) {
                return Err(e);
            }
        }
        self.fetches
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let fetched = fetch().await;
        let mut state = self.state.lock().map_err(|_| poisoned())?;
        match fetched {
            Ok(value) => {
                let value = std::sync::Arc::new(value);
                state.value = Some(value.clone());
                state.failures = 0;
                state.retry_at = None;
                Ok(value)
            }
            Err(e) => {
                state.failures = state.failures.saturating_add(1);
                let pause = 1u64 << (state.failures - 1).min(6);
                state.retry_at =
                    Some(std::time::Instant::now() + std::time::Duration::from_secs(pause.min(60)));
                state.error = e.to_string();
                Err(e)
            }
        }
    }
}

/// Which certificate authorities a TLS client trusts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Roots {
    /// The system's roots, plus those of the CA file if one is given.
    SystemAnd,
    /// Only the CA file's certificates (a private directory's CA).
    OnlyTheFile,
}

/// The one TLS client configuration of regauth: aws-lc-rs, TLS 1.2 and
/// 1.3, and the roots asked for.
pub fn client_tls(
    ca_file: Option<&std::path::Path>,
    roots: Roots,
) -> Result<rustls::ClientConfig, Error> {
    use rustls_pki_types::pem::PemObject as _;
    use rustls_pki_types::CertificateDer;
    let mut store = rustls::RootCertStore::empty();
    if roots == Roots::SystemAnd {
        store.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
    }
    if let Some(path) = ca_file {
        let bad = |m: String| Error::Config(format!("ca_file {}: {m}", path.display()));
        let mut added = 0;
        for cert in CertificateDer::pem_file_iter(path).map_err(|e| bad(e.to_string()))? {
            store
                .add(cert.map_err(|e| bad(e.to_string()))?)
                .map_err(|e| bad(e.to_string()))?;
            added += 1;
        }
        if added == 0 {
            return Err(bad("no certificate in the file".into()));
        }
    }
    let provider = std::sync::Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::Config(e.to_string()))?
        .with_root_certificates(store)
        .with_no_client_auth())
}

/// The one HTTPS client builder: the TLS above (system roots plus
/// `ca_file`), redirects never followed (a token must not leave the
/// origin it was meant for), and `timeout` for connecting and for the
/// whole call.
pub fn http_client(
    ca_file: Option<&std::path::Path>,
    timeout: std::time::Duration,
) -> Result<reqwest::Client, Error> {
    reqwest::Client::builder()
        .use_preconfigured_tls(client_tls(ca_file, Roots::SystemAnd)?)
        .redirect(reqwest::redirect::Policy::none())
        .timeout(timeout)
        .connect_timeout(timeout)
        .build()
        .map_err(|e| Error::Config(format!("HTTP client: {e}")))
}

/// What a secret looks like, which decides the providers it may go to.
/// New shapes may be added: a provider's `accepts` should name the shapes
/// it takes, never accept "anything but".
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum SecretShape<'a> {
    /// `ghp_`, `github_pat_`, `gho_`, `ghu_`, `ghs_`.
    GitHubToken,
    /// `glpat-`, `glcbt-`, `gldt-`, or any secret under the username
    /// `gitlab-ci-token` (a CI job token).
    GitLabToken,
    /// `rga_`: one of regauth's own app passwords.
    AppPassword,
    /// 40 lower-case hex digits: a Gitea or Forgejo access token when a
    /// Gitea provider is configured, a password otherwise.
    HexToken,
    /// A compact JWT, with its (unverified) issuer if it has one.
    Jwt {
        /// The token's `iss` claim, not verified; `None` if it has none.
        issuer: Option<&'a str>,
    },
    /// Anything else: a password (or an opaque token).
    Password,
}

/// The prefix of regauth's app passwords.
pub const APP_PASSWORD_PREFIX: &str = "rga_";

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
    /// The Basic username as the client typed it.
    pub username: String,
    /// The password or token.
    pub secret: SecretString,
}

impl Credentials {
    /// Credentials from a username and a secret.
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
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// An ordinary user account (the default).
    User,
    /// A service account: a static provider's robot, a GitLab project or
    /// group access token's bot, a CI job.
    Robot,
}

impl Kind {
    /// `user` or `robot`, as the audit line says.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::User => "user",
            Kind::Robot => "robot",
        }
    }
}

/// How a refresh token (docker's identity token) may continue a login.
///
/// A refresh token is never resolved from another login's memory: it
/// either asks the provider again (`Lookup`) or carries what this one login
/// established (`Snapshot`), up to a deadline of its own.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Renewal {
    /// The provider looks the subject up again without a secret (LDAP,
    /// static users): each refresh re-resolves groups and re-checks the
    /// account.
    Lookup,
    /// The provider cannot look users up (OIDC, GitHub): the refresh token
    /// carries this login's groups and claims and is refused after `until`
    /// (seconds since the epoch).
    Snapshot {
        /// The last second the snapshot may be used.
        until: u64,
    },
    /// No refresh token for this login (a machine's token, such as a CI
    /// job's JWT).
    Never,
}

/// What kind of provider an instance is: one of the built-in ones, or a
/// provider of the embedding application's own, under a name it picks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ProviderKind {
    /// Users listed in the configuration (`kind = "static"`).
    Static,
    /// A directory (`kind = "ldap"`).
    Ldap,
    /// An OpenID Connect issuer (`kind = "oidc"`).
    Oidc,
    /// GitHub tokens (`kind = "github"`).
    Github,
    /// GitLab tokens (`kind = "gitlab"`).
    Gitlab,
    /// Gitea and Forgejo tokens (`kind = "gitea"`).
    Gitea,
    /// An authentication webhook (`kind = "webhook"`).
    Webhook,
    /// A provider written by the embedding application.
    Custom(&'static str),
}

impl ProviderKind {
    /// The built-in kinds, in the order configuration errors list them:
    /// the one table of kinds a configuration's `kind` may name.
    pub const ALL: [ProviderKind; 7] = [
        ProviderKind::Static,
        ProviderKind::Ldap,
        ProviderKind::Oidc,
        ProviderKind::Github,
        ProviderKind::Gitlab,
        ProviderKind::Gitea,
        ProviderKind::Webhook,
    ];

    /// The built-in kinds as configuration files spell them, for errors:
    /// `static, ldap, oidc, ...`.
    pub fn names() -> String {
        Self::ALL.map(|kind| kind.as_str()).join(", ")
    }

    /// The kind as configuration files and metrics spell it.
    pub fn as_str(&self) -> &'static str {
        match self {
            ProviderKind::Static => "static",
            ProviderKind::Ldap => "ldap",
            ProviderKind::Oidc => "oidc",
            ProviderKind::Github => "github",
            ProviderKind::Gitlab => "gitlab",
            ProviderKind::Gitea => "gitea",
            ProviderKind::Webhook => "webhook",
            ProviderKind::Custom(name) => name,
        }
    }
}

impl std::fmt::Display for ProviderKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A configuration's `kind`: one of [`ProviderKind::ALL`], never `Custom`.
impl std::str::FromStr for ProviderKind {
    type Err = UnknownProviderKind;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|kind| kind.as_str() == text)
            .ok_or_else(|| UnknownProviderKind(text.to_owned()))
    }
}

/// A `kind` that names no built-in provider.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("unknown provider kind `{0}` (one of: {names})", names = ProviderKind::names())]
pub struct UnknownProviderKind(pub String);

#[cfg(test)]
mod provider_kind_tests {
    use super::ProviderKind;

    #[test]
    fn every_kind_reads_back_from_its_name_and_others_are_listed_unknown() {
        for kind in ProviderKind::ALL {
            assert_eq!(kind.as_str().parse::<ProviderKind>(), Ok(kind));
        }
        let unknown = "smoke".parse::<ProviderKind>().unwrap_err().to_string();
        assert_eq!(
            unknown,
            "unknown provider kind `smoke` (one of: static, ldap, oidc, github, gitlab, gitea, webhook)"
        );
    }
}

/// An authenticated principal, as a provider names it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    /// Canonical name of the principal (what the registry sees as `sub`).
    pub subject: String,
    /// Name of the provider instance that vouched for it.
    pub provider: String,
    /// Whether this is a user or a robot.
    pub kind: Kind,
    /// Group names as this provider documents them (sorted, deduplicated).
    pub groups: Vec<String>,
    /// Extra attributes that policy rules may match on (OIDC claims, ...).
    pub claims: BTreeMap<String, String>,
    /// How a refresh token continues this login.
    pub renewal: Renewal,
    /// Changes whenever the account's credential changes (a password
    /// change time, a hash fingerprint): a refresh token minted under
    /// another stamp is refused. Never a secret.
    pub credential_stamp: Option<String>,
    /// When the credential itself stops being valid (a token's `exp`, a
    /// robot's last day), in seconds since the epoch: a cached verdict
    /// never outlives it.
    pub expires_at: Option<u64>,
    /// The most this login may be granted, whatever the policy grants (an
    /// app password narrowed to some repositories); `None`: no limit.
    pub limit: Option<Vec<AccessLimit>>,
    /// What the credential may do to the forge's own packages, when it is
    /// a forge token whose scopes say (GitHub `read:packages`, GitLab
    /// `read_registry`, Gitea `read:package`...): the server grants no
    /// more than that. `None`: the credential itself sets no such bound.
    pub package_rights: Option<PackageRights>,
    /// The account's own id where the provider has one that a new account
    /// reusing the name does not get (LDAP `entryUUID`/`objectGUID`, an
    /// OIDC `sub`): what outlives this login (app passwords) is bound to it.
    pub account_id: Option<String>,
    /// What the secret of this login was.
    pub proof: Proof,
}

/// What an identity's login presented.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum Proof {
    /// A password the provider checked (the default).
    #[default]
    Password,
    /// A token issued to the user or a job (an access token, a JWT, a
    /// forge token, an app password): it proves possession, not the
    /// user's presence.
    Token,
    /// An interactive sign-in at the identity provider.
    Browser,
}

/// What a forge token may do with packages, read from its scopes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PackageRights {
    /// Download packages (a registry's pull).
    pub read: bool,
    /// Publish packages (a registry's push).
    pub write: bool,
    /// Delete packages.
    pub delete: bool,
}

impl PackageRights {
    /// Whether the token may do anything with packages at all.
    pub fn any(self) -> bool {
        self.read || self.write || self.delete
    }
}

/// Part of an [`Identity::limit`]: these actions on repositories matching
/// this pattern.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct AccessLimit {
    /// A repository pattern, as in policy rules (`dev/**`).
    pub repos: String,
    /// The actions allowed there (`pull`, `push`, `delete`).
    pub actions: Vec<String>,
}

impl Identity {
    /// An identity of `subject` vouched for by `provider`: a user with no
    /// groups or claims, renewed by lookup.
    pub fn new(subject: impl Into<String>, provider: impl Into<String>) -> Self {
        Self {
            subject: subject.into(),
            provider: provider.into(),
            kind: Kind::User,
            groups: Vec::new(),
            claims: BTreeMap::new(),
            renewal: Renewal::Lookup,
            credential_stamp: None,
            expires_at: None,
            limit: None,
            package_rights: None,
            account_id: None,
            proof: Proof::Password,
        }
    }

    /// Replaces the groups with these, sorted and deduplicated.
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
    /// The password or token is wrong.
    WrongSecret,
    /// The secret is empty.
    EmptySecret,
    /// The account (or the robot) has expired.
    Expired,
    /// The account is disabled.
    Disabled,
    /// The directory has locked the account (too many failures, or an
    /// administrator).
    Locked,
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
            Rejection::Locked => f.write_str("account locked"),
            Rejection::Other(msg) | Rejection::UserAction(msg) => f.write_str(msg),
        }
    }
}

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

/// A browser sign-in under way: what the callback needs. The caller keeps
/// it between the redirect and the callback, sealed (it holds the PKCE
/// verifier), and bound to the browser that started the sign-in.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct PendingLogin {
    /// The `state` sent to the IdP, which the callback must bring back.
    pub state: String,
    /// The `nonce` the ID token must carry.
    pub nonce: String,
    /// The PKCE code verifier for the code exchange.
    pub pkce_verifier: String,
}

/// A finished browser sign-in: its outcome and, when the IdP gave one,
/// its refresh token (for [`BrowserLogin::renew`]; the caller keeps it
/// sealed and never logs it).
pub struct Finished {
    /// The identity, or why there is none.
    pub outcome: Outcome,
    /// The IdP's refresh token (`offline_access`), if it gave one.
    pub refresh_token: Option<SecretString>,
}

/// What the IdP says of a user when asked again with their refresh token.
pub enum Renewed {
    /// Still signed in: the identity as the new ID token says (`None` when
    /// the IdP sent no new ID token), and the refresh token to keep (a new
    /// one when the IdP rotates them).
    Current {
        /// The identity now, if the IdP said.
        identity: Option<Identity>,
        /// The refresh token to keep from now on, if it changed.
        refresh_token: Option<SecretString>,
    },
    /// The IdP refuses the refresh: the user was disabled, signed out
    /// everywhere, removed, or their session ended.
    Refused(Rejection),
    /// The IdP could not be asked.
    Unavailable(Error),
}

/// A provider people sign in to in a browser: OpenID Connect's
/// authorization code flow with PKCE.
#[async_trait]
pub trait BrowserLogin: Send + Sync {
    /// The URL to send the browser to, and what [`BrowserLogin::finish`]
    /// will need.
    async fn begin(&self, redirect_uri: &str) -> Result<(String, PendingLogin), Error>;

    /// The identity of a finished sign-in, from the callback's `state` and
    /// `code`: the code is exchanged (with the PKCE verifier) and the ID
    /// token verified (signature, issuer, audience, expiry, nonce).
    async fn finish(
        &self,
        redirect_uri: &str,
        pending: &PendingLogin,
        state: &str,
        code: &str,
    ) -> Finished;

    /// Asks the IdP again about a user who signed in, with the refresh
    /// token of their sign-in: whether they still may, and their groups now.
    async fn renew(&self, refresh_token: &SecretString) -> Renewed;
}

/// One identity provider instance (a configured `[[provider]]`).
#[async_trait]
pub trait IdentityProvider: Send + Sync {
    /// The configured instance name (`name = "..."`).
    fn name(&self) -> &str;

    /// What kind of provider this is (metrics and `check` name it).
    fn kind(&self) -> ProviderKind;

    /// Checks credentials. Must not panic, must not log the secret.
    async fn authenticate(&self, credentials: &Credentials) -> Outcome;

    /// Whether secrets of this shape may be offered to this provider at
    /// all. Passwords by default; token providers say which tokens.
    fn accepts(&self, shape: SecretShape<'_>) -> bool {
        shape == SecretShape::Password
    }

    /// Whether this provider checks secrets itself, with no upstream that
    /// a flood of wrong ones could hurt (a user list's hashes): the
    /// per-provider failure bucket does not apply to it.
    fn checks_locally(&self) -> bool {
        false
    }

    /// Whether [`IdentityProvider::lookup`] can find users at all (a
    /// directory, a user list): then its `NotMine` means "no such user".
    /// Providers that cannot be asked about a user without their secret
    /// (an OIDC issuer, GitHub) answer `false`.
    fn looks_up(&self) -> bool {
        false
    }

    /// Looks up a subject this provider vouched for earlier, without a
    /// password (the refresh-token grant of a [`Renewal::Lookup`] login):
    /// `Authenticated` with its current groups and credential stamp,
    /// `NotMine` if it no longer exists, `Rejected` if it is disabled or
    /// locked. Providers that cannot look users up answer `NotMine`.
    async fn lookup(&self, _subject: &str) -> Outcome {
        Outcome::NotMine
    }

    /// The form of a username under which this provider finds the same
    /// account, so that failed logins under `Erin`, `erin` and ` erin` are
    /// counted together. The default is the name as typed.
    fn normalize_username<'a>(&self, username: &'a str) -> std::borrow::Cow<'a, str> {
        std::borrow::Cow::Borrowed(username)
    }

    /// The account these credentials try, for the failed-login throttle:
    /// the normalized username when the secret is a password checked
    /// against that account, `None` when the secret stands alone (a token:
    /// its typed username means nothing, and tokens cannot be guessed).
    async fn account_of(&self, credentials: &Credentials) -> Option<String> {
        Some(self.normalize_username(&credentials.username).into_owned())
    }

    /// Operation counters for `/metrics` (name, value): binds, searches,
    /// cache hits, fetches. None by default.
    fn counters(&self) -> Vec<(&'static str, u64)> {
        Vec::new()
    }

    /// The upstream servers this provider spreads over (several domain
    /// controllers), each with whether it answered last time: for
    /// `/readyz` and `/metrics`. None by default.
    fn servers(&self) -> Vec<(String, bool)> {
        Vec::new()
    }

    /// The browser sign-in this provider offers, if any (an OpenID Connect
    /// issuer with `browser_login = true`).
    fn browser_login(&self) -> Option<&dyn BrowserLogin> {
        None
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
