//! Configuration: one TOML file (the embedded default when none is given),
//! overridden by `REGAUTH_SECTION__KEY` environment variables, validated
//! once into a [`Config`].
//!
//! Every error names the offending key path (`token.lifetime`,
//! `rule[3].actions[0]`), since that is what `regauth check` prints. Nothing
//! after loading re-parses strings. Secrets are never echoed in errors.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use regauth_providers::github::GithubConfig;
use regauth_providers::ldap::LdapConfig;
use regauth_providers::oidc::OidcConfig;
use regauth_providers::static_users::StaticConfig;
use serde::Deserialize;

use crate::domain::policy::{Claims, Policy, PolicyFile, ProviderInfo, RuleConfig};

/// The default configuration, compiled into the binary.
pub const EMBEDDED: &str = include_str!("../../config/regauth.toml");
/// Where `serve` looks when no `--config` is given.
pub const DEFAULT_PATH: &str = "config/regauth.toml";
const ENV_PREFIX: &str = "REGAUTH_";

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

fn invalid(origin: &str, key: impl Into<String>, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        origin: origin.to_owned(),
        key: key.into(),
        message: message.into(),
    }
}

pub use regauth_providers::Seconds;

mod raw;
use raw::{apply_override, RawConfig, RawState};

/// Where state that replicas share lives.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    /// Files under `state.dir` (one process, or replicas sharing a volume).
    #[default]
    Embedded,
    /// A Redis server (`redis://` or `rediss://`).
    Redis,
}

/// The `[state]` section, validated.
#[derive(Clone, Debug, PartialEq)]
pub struct StateConfig {
    /// Where the state lives (`state.backend`).
    pub backend: Backend,
    /// Files of the embedded backend (revocations, app passwords).
    pub dir: PathBuf,
    /// How to reach Redis, with `backend = "redis"`.
    pub redis: Option<RedisConfig>,
}

/// How to reach Redis.
#[derive(Clone, Debug, PartialEq)]
pub struct RedisConfig {
    /// `redis://host:port/db` or `rediss://...`, without a password.
    pub url: String,
    /// The ACL user regauth logs in as (`state.username`).
    pub username: Option<String>,
    /// File holding the Redis password (`state.password_file`).
    pub password_file: Option<PathBuf>,
    /// Environment variable holding the Redis password (`state.password_env`).
    pub password_env: Option<String>,
    /// PEM CA certificate for a `rediss://` server (`state.ca_file`).
    pub ca_file: Option<PathBuf>,
    /// Prepended to every Redis key (`state.key_prefix`).
    pub key_prefix: String,
    /// Timeout for connecting to Redis (`state.connect_timeout`).
    pub connect_timeout: Duration,
    /// Timeout for each Redis command's answer (`state.command_timeout`).
    pub command_timeout: Duration,
}

/// Refresh tokens (docker's identity tokens).
#[derive(Clone, Debug)]
pub struct RefreshConfig {
    /// Whether refresh tokens are handed out and accepted
    /// (`refresh_tokens.enabled`).
    pub enabled: bool,
    /// The longest a refresh token lives (`refresh_tokens.lifetime`).
    pub lifetime: Duration,
    /// The sealing key (generated if missing).
    pub key_file: PathBuf,
}

/// One `[[provider]]`: its instance name and its kind's settings.
#[derive(Clone, Debug)]
pub struct ProviderConfig {
    /// The instance name (`name`), unique among the providers.
    pub name: String,
    /// Username patterns pinned to this provider: such logins go to it
    /// alone (e.g. `["ci-*"]` for robots).
    pub usernames: Vec<String>,
    /// The kind's settings (`kind` and the rest of the table).
    pub settings: ProviderSettings,
}

/// The settings of each provider kind, defined by the providers crate.
#[derive(Clone, Debug)]
pub enum ProviderSettings {
    /// `kind = "static"`: users (inline or an htpasswd file) and robots.
    Static(StaticConfig),
    /// `kind = "ldap"`: a directory.
    Ldap(Box<LdapConfig>),
    /// `kind = "github"`: GitHub tokens.
    Github(Box<GithubConfig>),
    /// `kind = "gitlab"`: GitLab access tokens and CI job tokens.
    Gitlab(Box<regauth_providers::gitlab::GitlabConfig>),
    /// `kind = "gitea"`: Gitea and Forgejo access tokens.
    Gitea(Box<regauth_providers::gitea::GiteaConfig>),
    /// `kind = "oidc"`: an OpenID Connect issuer.
    Oidc(Box<OidcConfig>),
    /// `kind = "webhook"`: an authentication webhook.
    Webhook(Box<regauth_providers::webhook::WebhookConfig>),
    /// A provider built by the code embedding regauth (`Server::builder()`).
    InCode {
        /// Its kind, as it says.
        kind: regauth_providers::ProviderKind,
    },
}

impl ProviderConfig {
    /// The instance name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// A provider built in code, known to the configuration by its name.
    pub fn in_code(name: &str, kind: regauth_providers::ProviderKind) -> Self {
        Self {
            name: name.to_owned(),
            usernames: Vec::new(),
            settings: ProviderSettings::InCode { kind },
        }
    }

    /// The provider as the policy sees it.
    pub fn info(&self) -> ProviderInfo {
        let claims = match self.settings {
            ProviderSettings::Oidc(_)
            | ProviderSettings::Webhook(_)
            | ProviderSettings::Gitlab(_)
            | ProviderSettings::InCode { .. } => Claims::Carried,
            ProviderSettings::Static(_)
            | ProviderSettings::Ldap(_)
            | ProviderSettings::Github(_)
            | ProviderSettings::Gitea(_) => Claims::None,
        };
        ProviderInfo {
            name: self.name.clone(),
            claims,
        }
    }
}

/// Failed logins per account from each network it logged in from, by
/// default (or `max_failures` if lower): with the default `max_failures`
/// of 5, a directory sees at most 5 from strangers and 3 from the user's
/// own network before regauth stops asking it.
const DEFAULT_FAMILIAR_FAILURES: u32 = 3;

/// The `[server]` section, validated.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    /// The address to listen on (`server.listen`).
    pub listen: SocketAddr,
    /// A listener of its own, plain HTTP, for the operational endpoints
    /// (`server.ops_listen`): probes and Prometheus, which need not reach
    /// the token endpoint.
    pub ops_listen: Option<SocketAddr>,
    /// The public URL of the token endpoint, if set (`server.realm`); see
    /// [`Config::realm`].
    pub realm: Option<String>,
    /// Whether requests without credentials may get anonymous grants
    /// (`server.anonymous`).
    pub anonymous: bool,
    /// Upper bound for one identity provider's answer.
    pub upstream_timeout: Duration,
    /// How long the server waits for clients.
    pub timeouts: Timeouts,
    /// Size and count bounds on what clients send.
    pub limits: Limits,
    /// Proxies whose `X-Forwarded-For` names the real client
    /// (`server.trusted_proxies`).
    pub trusted_proxies: Vec<crate::http::forwarded::TrustedProxy>,
    /// The HTTPS listener's certificate chain and key, if any.
    pub tls: Option<TlsFiles>,
}

/// A certificate chain and its key, as PEM files.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsFiles {
    /// The PEM certificate chain (`server.tls_certificate`).
    pub certificate: PathBuf,
    /// The PEM private key (`server.tls_key`).
    pub key: PathBuf,
}

/// How long the server waits for clients (`server.*_timeout`, `server.request_deadline`).
#[derive(Clone, Debug)]
pub struct Timeouts {
    /// For a request's head.
    pub header: Duration,
    /// For the next request on a keep-alive connection.
    pub idle: Duration,
    /// For a whole request.
    pub request: Duration,
    /// For in-flight requests on shutdown.
    pub shutdown: Duration,
}

/// Size and count bounds on what clients send (`server.max_*`).
#[derive(Clone, Debug)]
pub struct Limits {
    /// Connections served at once; more are answered 503 and closed.
    pub max_connections: usize,
    /// Connections from one client network at once (IPv4 address, IPv6 /64).
    pub max_connections_per_client: usize,
    /// Token requests handled at once; more are answered 503.
    pub max_in_flight: usize,
    /// Upper bound on a POST token request's body, in bytes.
    pub max_body_bytes: usize,
    /// Most scope items in one token request.
    pub max_scopes: usize,
    /// Upper bound on a request's head (request line and headers), in bytes.
    pub max_header_bytes: usize,
    /// Upper bound on a username, in bytes.
    pub max_username_bytes: usize,
    /// Upper bound on a password, token or refresh token, in bytes.
    pub max_secret_bytes: usize,
    /// Upper bound on a requested repository name, in bytes.
    pub max_repository_bytes: usize,
}

/// The `[token]` section, validated.
#[derive(Clone, Debug)]
pub struct TokenConfig {
    /// The tokens' `iss` (`token.issuer`), the registry's `auth.token.issuer`.
    pub issuer: String,
    /// The services tokens are issued for, their `aud` (`token.services`).
    pub services: Vec<String>,
    /// How long a token lives unless its service has its own
    /// (`token.lifetime`).
    pub lifetime: Duration,
    /// Per-service lifetimes that override `lifetime`
    /// (`token.service_lifetimes`).
    pub service_lifetimes: BTreeMap<String, Duration>,
    /// How long a token signed for the same grant is handed out again
    /// (`token.reuse_window`); zero disables reuse.
    pub reuse_window: Duration,
    /// The signing key file (`token.key`).
    pub key: PathBuf,
    /// The signing key's certificate file (`token.certificate`).
    pub certificate: PathBuf,
    /// The staged next key (`token.next_key`; default: `key` with `.next`
    /// before the extension).
    pub next_key: PathBuf,
    /// The staged next key's certificate (`token.next_certificate`).
    pub next_certificate: PathBuf,
    /// How long after staging a next key starts to sign.
    pub rotation_overlap: Duration,
    /// Whether token headers carry the certificate chain (`token.x5c`).
    pub x5c: crate::keys::X5c,
}

/// `certs/token.key` -> `certs/token.next.key`.
fn next_path(path: &Path) -> PathBuf {
    let stem = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let name = match path.extension() {
        Some(ext) => format!("{stem}.next.{}", ext.to_string_lossy()),
        None => format!("{stem}.next"),
    };
    path.with_file_name(name)
}

impl TokenConfig {
    /// The longest lifetime of any token this configuration issues.
    pub fn longest_lifetime(&self) -> Duration {
        self.service_lifetimes
            .values()
            .copied()
            .chain(std::iter::once(self.lifetime))
            .max()
            .unwrap_or(self.lifetime)
    }

    /// The lifetime of tokens for `service`.
    pub fn lifetime_for(&self, service: &str) -> Duration {
        self.service_lifetimes
            .get(service)
            .copied()
            .unwrap_or(self.lifetime)
    }
}

/// The `[cache]` section, validated: the verdict cache and the failed-login
/// throttle.
#[derive(Clone, Debug)]
pub struct CacheConfig {
    /// How long a successful check is reused (`cache.verdict_ttl`, at most 1h).
    pub verdict_ttl: Duration,
    /// Most verdicts kept (`cache.verdict_capacity`).
    pub verdict_capacity: u64,
    /// How long failed logins are remembered (`cache.failure_window`).
    pub failure_window: Duration,
    /// Failed logins per account (provider and normalized username) from
    /// the networks it has not logged in from, together.
    pub max_failures: u32,
    /// Failed logins per account from each network it has logged in from
    /// (`cache.max_familiar_failures`, default `max_failures`).
    pub max_familiar_failures: u32,
    /// How long a network stays familiar to an account after a successful
    /// login (`cache.familiar_for`).
    pub familiar_for: Duration,
    /// Failed logins per client network (IPv4 address, IPv6 /64).
    pub max_client_failures: u32,
    /// Failed attempts per second reaching one provider, from everyone.
    pub max_provider_failures_per_second: u32,
}

/// The validated configuration.
#[derive(Debug)]
pub struct Config {
    /// Where it came from (a path, or `embedded default`).
    pub origin: String,
    /// The `[server]` section.
    pub server: ServerConfig,
    /// The `[token]` section.
    pub token: TokenConfig,
    /// The `[cache]` section.
    pub cache: CacheConfig,
    /// The `[refresh_tokens]` section.
    pub refresh: RefreshConfig,
    /// The `[state]` section.
    pub state: StateConfig,
    /// The `[[provider]]` tables, in the order they are asked.
    pub providers: Vec<ProviderConfig>,
    /// The policy, compiled once: inline rules, then the policy file's.
    pub policy: std::sync::Arc<Policy>,
    /// Who decides grants: the policy, or a webhook.
    pub authorizer: AuthorizerConfig,
    /// `[app_passwords]`: app passwords and their page, when present.
    pub app_passwords: Option<AppPasswordsConfig>,
}

/// App passwords and the page that makes them (`[app_passwords]`).
#[derive(Clone, Debug)]
pub struct AppPasswordsConfig {
    /// The key their digests, the page's sessions and sign-in state are
    /// derived from (generated if missing; replicas share it).
    pub key_file: PathBuf,
    /// The expiry the page proposes (`default_lifetime`).
    pub default_lifetime: Duration,
    /// The longest expiry allowed (`max_lifetime`).
    pub max_lifetime: Duration,
    /// How many app passwords one user may have (`max_per_user`).
    pub max_per_user: usize,
    /// How long the groups of a browser sign-in stand in for a provider
    /// that cannot look users up (`sign_in_max_age`).
    pub sign_in_max_age: Duration,
    /// `provider:group` whose members see and revoke everyone's.
    pub admin_groups: Vec<(String, String)>,
    /// The page's external URL, without a trailing slash (`url`, default:
    /// the realm's origin and `/ui`).
    pub url: String,
    /// How long a sign-in to the page lasts (`session_lifetime`).
    pub session_lifetime: Duration,
    /// Password providers whose users sign in with a form (`login_form`).
    pub login_form: Vec<String>,
    /// How often a browser sign-in's IdP is asked again about its user
    /// (`recheck_interval`, with the sign-in's refresh token).
    pub recheck_interval: Duration,
}

impl Config {
    /// What `regauth check` warns about: settings that work but put
    /// something at risk (secrets over plain http or LDAP, the limits of
    /// checking browser sign-ins again). Each names its provider or key.
    pub fn warnings(&self) -> Vec<String> {
        let mut out = Vec::new();
        let plain = |url: &str| url.starts_with("http://") && !is_loopback_http(url);
        for p in &self.providers {
            let name = &p.name;
            match &p.settings {
                ProviderSettings::Oidc(oidc) => {
                    if plain(&oidc.issuer) {
                        out.push(format!("provider {name}: the issuer {} is plain http: discovery, keys and passwords travel unprotected and can be forged on the way; use https", oidc.issuer));
                    }
                    if oidc.browser_login {
                        if let Some(section) = &self.app_passwords {
                            out.push(format!(
                                "provider {name}: browser sign-ins ask the IdP for a refresh token (scope offline_access) to check its users again every {}; an IdP that gives none leaves sign_in_max_age ({}) as the bound on app passwords and admin rights",
                                humantime::format_duration(section.recheck_interval),
                                humantime::format_duration(section.sign_in_max_age)
                            ));
                        }
                    }
                }
                ProviderSettings::Github(github) if plain(&github.api_url) => {
                    out.push(format!("provider {name}: api_url {} is plain http: tokens travel unprotected; use https", github.api_url));
                }
                ProviderSettings::Gitlab(gitlab) if plain(&gitlab.url) => {
                    out.push(format!("provider {name}: url {} is plain http: tokens travel unprotected; use https", gitlab.url));
                }
                ProviderSettings::Gitea(gitea) if plain(&gitea.url) => {
                    out.push(format!("provider {name}: url {} is plain http: tokens travel unprotected; use https", gitea.url));
                }
                ProviderSettings::Ldap(ldap) if !ldap.start_tls => {
                    for url in ldap.url.iter().chain(&ldap.urls) {
                        if url.starts_with("ldap://") {
                            out.push(format!("provider {name}: {url} without start_tls: user passwords go to the directory in clear; use ldaps:// or start_tls = true"));
                        }
                    }
                }
                _ => {}
            }
        }
        out.extend(self.unreachable_groups());
        out
    }

    /// Rules naming a group no configured provider can produce: a group
    /// without the provider's `group_prefix` (`ad:developers` where the
    /// groups are `ad:ad:developers`), or any group of a forge provider
    /// that gives none (`allow_any_account` without required groups).
    fn unreachable_groups(&self) -> Vec<String> {
        let single = (self.providers.len() == 1).then(|| self.providers[0].name.as_str());
        let mut out = Vec::new();
        for (rule, i, qualified, group) in self.policy.group_entries() {
            let Some(name) = qualified.or(single) else {
                continue;
            };
            let Some(provider) = self.providers.iter().find(|p| p.name == name) else {
                continue;
            };
            let entry = match qualified {
                Some(p) => format!("{p}:{group}"),
                None => group.to_owned(),
            };
            let why = match &provider.settings {
                ProviderSettings::Ldap(ldap) => ldap
                    .group_prefix
                    .as_deref()
                    .filter(|prefix| group != "*" && !group.starts_with(prefix))
                    .map(|prefix| {
                        format!("provider {name}'s groups all start with its group_prefix `{prefix}` (this would be `{name}:{prefix}{group}`)")
                    }),
                ProviderSettings::Github(g) if g.organizations.is_empty() => {
                    Some(format!("provider {name} admits any account and gives no groups"))
                }
                ProviderSettings::Gitlab(g) if g.groups.is_empty() => {
                    Some(format!("provider {name} admits any account and gives no groups"))
                }
                ProviderSettings::Gitea(g) if g.organizations.is_empty() => {
                    Some(format!("provider {name} admits any account and gives no groups"))
                }
                _ => None,
            };
            if let Some(why) = why {
                out.push(format!(
                    "rule[{rule}].groups[{i}]: `{entry}` can never match: {why}"
                ));
            }
        }
        out
    }
}

impl AppPasswordsConfig {
    /// Whether the page is served over https (cookies are then `Secure`).
    pub fn https(&self) -> bool {
        self.url.starts_with("https://")
    }

    /// The page's path below its origin (`/ui`).
    pub fn path(&self) -> &str {
        self.url
            .split_once("://")
            .and_then(|(_, rest)| rest.find('/').map(|i| &rest[i..]))
            .unwrap_or("/")
    }
}

impl Config {
    /// Loads `path`, or the default path if it exists, or the embedded
    /// default; then applies `REGAUTH_*` overrides from the environment.
    pub fn load(path: Option<&Path>) -> Result<Self, ConfigError> {
        let env: Vec<(String, String)> = std::env::vars()
            .filter(|(k, _)| k.starts_with(ENV_PREFIX) && k.contains("__"))
            .collect();
        let (origin, text) = match path {
            Some(path) => (path.display().to_string(), read_text(path)?),
            None if Path::new(DEFAULT_PATH).exists() => {
                (DEFAULT_PATH.to_owned(), read_text(Path::new(DEFAULT_PATH))?)
            }
            None => ("embedded default".to_owned(), EMBEDDED.to_owned()),
        };
        Self::from_toml(&origin, &text, &env)
    }

    /// Parses and validates configuration text with the given overrides.
    pub fn from_toml(
        origin: &str,
        text: &str,
        env: &[(String, String)],
    ) -> Result<Self, ConfigError> {
        let mut value: toml::Value = toml::from_str(text).map_err(|e| {
            invalid(
                origin,
                "(syntax)",
                e.message().to_owned() + &line_of(text, e.span()),
            )
        })?;
        for (name, raw) in env {
            apply_override(&mut value, name, raw).map_err(|m| invalid(origin, name, m))?;
        }
        let raw: RawConfig = serde_path_to_error::deserialize(value).map_err(|e| {
            let key = e.path().to_string();
            invalid(origin, key, e.into_inner().message().to_owned())
        })?;
        Self::validate(origin, raw)
    }

    fn validate(origin: &str, mut raw: RawConfig) -> Result<Self, ConfigError> {
        let ops_listen: Option<SocketAddr> = match &raw.server.ops_listen {
            Some(text) => Some(text.parse().map_err(|_| {
                invalid(
                    origin,
                    "server.ops_listen",
                    format!("`{text}` is not an address like 0.0.0.0:9101"),
                )
            })?),
            None => None,
        };
        let listen: SocketAddr = raw.server.listen.parse().map_err(|_| {
            invalid(
                origin,
                "server.listen",
                format!(
                    "`{}` is not an address like 127.0.0.1:5001",
                    raw.server.listen
                ),
            )
        })?;
        if let Some(realm) = &raw.server.realm {
            if !(realm.starts_with("https://") || realm.starts_with("http://")) {
                return Err(invalid(
                    origin,
                    "server.realm",
                    "must be an absolute http(s) URL",
                ));
            }
        }
        let mut trusted_proxies = Vec::new();
        for (i, text) in raw.server.trusted_proxies.iter().enumerate() {
            trusted_proxies.push(
                crate::http::forwarded::TrustedProxy::parse(text).ok_or_else(|| {
                    invalid(
                        origin,
                        format!("server.trusted_proxies[{i}]"),
                        format!("`{text}` is not an address or network like 10.0.0.0/8"),
                    )
                })?,
            );
        }
        let server = &raw.server;
        for (key, value) in [
            ("server.max_scopes", server.max_scopes),
            ("server.max_connections", server.max_connections),
            (
                "server.max_connections_per_client",
                server.max_connections_per_client,
            ),
            ("server.max_in_flight", server.max_in_flight),
            ("server.max_username_bytes", server.max_username_bytes),
            ("server.max_secret_bytes", server.max_secret_bytes),
            ("server.max_repository_bytes", server.max_repository_bytes),
            ("server.max_body_bytes", server.max_body_bytes),
        ] {
            if value == 0 {
                return Err(invalid(origin, key, "must be at least 1"));
            }
        }
        // hyper needs at least 8 KiB; a Basic header with the largest
        // secret must fit.
        let smallest_head =
            8192.max(server.max_secret_bytes * 4 / 3 + server.max_username_bytes * 2 + 1024);
        if server.max_header_bytes < smallest_head {
            return Err(invalid(
                origin,
                "server.max_header_bytes",
                format!("must be at least {smallest_head} (8 KiB, and room for a Basic header with server.max_secret_bytes)"),
            ));
        }
        for (key, value) in [
            ("server.upstream_timeout", server.upstream_timeout.0),
            ("server.request_deadline", server.request_deadline.0),
            ("server.header_timeout", server.header_timeout.0),
            ("server.idle_timeout", server.idle_timeout.0),
        ] {
            if value.is_zero() {
                return Err(invalid(origin, key, "must be longer than 0s"));
            }
        }
        if server.request_deadline.0 <= server.upstream_timeout.0 {
            return Err(invalid(
                origin,
                "server.request_deadline",
                "must be longer than server.upstream_timeout, so that an unreachable identity provider is answered 503 before the request is cut off",
            ));
        }
        if raw.token.issuer.trim().is_empty() {
            return Err(invalid(origin, "token.issuer", "must not be empty"));
        }
        if raw.token.services.is_empty() {
            return Err(invalid(
                origin,
                "token.services",
                "name at least one service",
            ));
        }
        for (i, s) in raw.token.services.iter().enumerate() {
            if s.is_empty() {
                return Err(invalid(
                    origin,
                    format!("token.services[{i}]"),
                    "must not be empty",
                ));
            }
        }
        let check_lifetime = |key: String, d: Duration| {
            if d < Duration::from_secs(60) {
                Err(invalid(
                    origin,
                    key,
                    "must be at least 60s (clients treat shorter tokens as 60s and reuse them)",
                ))
            } else {
                Ok(d)
            }
        };
        let lifetime = check_lifetime("token.lifetime".into(), raw.token.lifetime.0)?;
        let mut service_lifetimes = BTreeMap::new();
        for (service, d) in &raw.token.service_lifetimes {
            let key = format!("token.service_lifetimes.{service}");
            if !raw.token.services.contains(service) {
                return Err(invalid(origin, key, "is not one of token.services"));
            }
            service_lifetimes.insert(service.clone(), check_lifetime(key, d.0)?);
        }
        let providers = raw
            .provider
            .into_iter()
            .enumerate()
            .map(|(i, value)| parse_provider(origin, i, value))
            .collect::<Result<Vec<_>, _>>()?;
        let mut names = std::collections::BTreeSet::new();
        for (i, p) in providers.iter().enumerate() {
            let valid = !p.name().is_empty()
                && p.name()
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
            if !valid {
                return Err(invalid(
                    origin,
                    format!("provider[{i}].name"),
                    format!(
                        "`{}` must be letters, digits, `-` and `_` (it is written `name:` in rules and inserted as ${{provider}})",
                        p.name()
                    ),
                ));
            }
            if !names.insert(p.name().to_owned()) {
                return Err(invalid(
                    origin,
                    format!("provider[{i}].name"),
                    format!("`{}` is used twice", p.name()),
                ));
            }
        }
        check_forges_are_pinned(origin, &providers)?;
        for (i, rule) in raw.rule.iter().enumerate() {
            for (j, p) in rule.providers.iter().enumerate() {
                if !names.contains(p) {
                    return Err(invalid(
                        origin,
                        format!("rule[{i}].providers[{j}]"),
                        format!("no provider is named `{p}`"),
                    ));
                }
            }
        }
        let realm_default = {
            let scheme = match (&raw.server.tls_certificate, &raw.server.tls_key) {
                (Some(_), Some(_)) => "https",
                _ => "http",
            };
            raw.server
                .realm
                .clone()
                .unwrap_or_else(|| format!("{scheme}://{listen}/auth"))
        };
        let app_passwords = match raw.app_passwords.take() {
            Some(section) => Some(validate_app_passwords(
                origin,
                section,
                &providers,
                &realm_default,
            )?),
            None => None,
        };
        let infos: Vec<ProviderInfo> = providers.iter().map(ProviderConfig::info).collect();
        let policy = compile_policy(origin, raw.rule, raw.policy.as_deref(), &infos)?;
        if raw.token.reuse_window.0 * 10 > lifetime {
            return Err(invalid(
                origin,
                "token.reuse_window",
                "must be at most a tenth of token.lifetime",
            ));
        }
        if raw.refresh_tokens.lifetime.0 < Duration::from_secs(3600) {
            return Err(invalid(
                origin,
                "refresh_tokens.lifetime",
                "must be at least 1h",
            ));
        }
        if raw.cache.verdict_ttl.0 > Duration::from_secs(3600) {
            return Err(invalid(origin, "cache.verdict_ttl", "must be at most 1h"));
        }
        let state = validate_state(origin, raw.state, raw.refresh_tokens.state_dir.clone())?;
        let authorizer = validate_authorizer(origin, raw.authorizer)?;
        let config = Self {
            origin: origin.to_owned(),
            server: ServerConfig {
                listen,
                ops_listen,
                anonymous: raw.server.anonymous,
                upstream_timeout: raw.server.upstream_timeout.0,
                timeouts: Timeouts {
                    header: raw.server.header_timeout.0,
                    idle: raw.server.idle_timeout.0,
                    request: raw.server.request_deadline.0,
                    shutdown: raw.server.shutdown_timeout.0,
                },
                limits: Limits {
                    max_connections: raw.server.max_connections,
                    max_connections_per_client: raw.server.max_connections_per_client,
                    max_in_flight: raw.server.max_in_flight,
                    max_body_bytes: raw.server.max_body_bytes,
                    max_scopes: raw.server.max_scopes,
                    max_header_bytes: raw.server.max_header_bytes,
                    max_username_bytes: raw.server.max_username_bytes,
                    max_secret_bytes: raw.server.max_secret_bytes,
                    max_repository_bytes: raw.server.max_repository_bytes,
                },
                realm: raw.server.realm,
                trusted_proxies,
                tls: match (raw.server.tls_certificate, raw.server.tls_key) {
                    (Some(certificate), Some(key)) => Some(TlsFiles { certificate, key }),
                    (None, None) => None,
                    (Some(_), None) => {
                        return Err(invalid(
                            origin,
                            "server.tls_key",
                            "server.tls_certificate needs its key",
                        ))
                    }
                    (None, Some(_)) => {
                        return Err(invalid(
                            origin,
                            "server.tls_certificate",
                            "server.tls_key needs its certificate",
                        ))
                    }
                },
            },
            token: {
                let longest = service_lifetimes
                    .values()
                    .copied()
                    .chain(std::iter::once(lifetime))
                    .max()
                    .unwrap_or(lifetime);
                TokenConfig {
                    issuer: raw.token.issuer,
                    services: raw.token.services,
                    lifetime,
                    service_lifetimes,
                    reuse_window: raw.token.reuse_window.0,
                    next_key: raw
                        .token
                        .next_key
                        .unwrap_or_else(|| next_path(&raw.token.key)),
                    next_certificate: raw
                        .token
                        .next_certificate
                        .unwrap_or_else(|| next_path(&raw.token.certificate)),
                    key: raw.token.key,
                    certificate: raw.token.certificate,
                    rotation_overlap: raw.token.rotation_overlap.map_or(longest, |s| s.0),
                    x5c: if raw.token.x5c {
                        crate::keys::X5c::Send
                    } else {
                        crate::keys::X5c::Omit
                    },
                }
            },
            cache: CacheConfig {
                verdict_ttl: raw.cache.verdict_ttl.0,
                verdict_capacity: raw.cache.verdict_capacity,
                failure_window: raw.cache.failure_window.0,
                max_failures: raw.cache.max_failures,
                max_familiar_failures: raw
                    .cache
                    .max_familiar_failures
                    .unwrap_or(raw.cache.max_failures.min(DEFAULT_FAMILIAR_FAILURES)),
                familiar_for: raw.cache.familiar_for.0,
                max_client_failures: raw.cache.max_client_failures,
                max_provider_failures_per_second: raw.cache.max_provider_failures_per_second,
            },
            refresh: RefreshConfig {
                enabled: raw.refresh_tokens.enabled,
                lifetime: raw.refresh_tokens.lifetime.0,
                key_file: raw.refresh_tokens.key_file,
            },
            state,
            providers,
            policy: std::sync::Arc::new(policy),
            authorizer,
            app_passwords,
        };
        Ok(config)
    }

    /// What the policy needs to know about the configured providers.
    pub fn provider_infos(&self) -> Vec<ProviderInfo> {
        self.providers.iter().map(ProviderConfig::info).collect()
    }

    /// The realm URL for `WWW-Authenticate` and the registry configuration.
    pub fn realm(&self) -> String {
        let scheme = if self.server.tls.is_some() {
            "https"
        } else {
            "http"
        };
        self.server
            .realm
            .clone()
            .unwrap_or_else(|| format!("{scheme}://{}/auth", self.server.listen))
    }
}

/// Who decides what an identity may do (`[authorizer]`).
#[derive(Clone, Debug, PartialEq)]
pub enum AuthorizerConfig {
    /// The `[[rule]]`s.
    Policy,
    /// An HTTP service (`kind = "webhook"`).
    Webhook(crate::authorize::WebhookAuthorizerConfig),
}

/// Compiles the inline rules and those of the policy file together, once.
/// An error in the file names the file and its own rule numbers.
fn compile_policy(
    origin: &str,
    mut rules: Vec<RuleConfig>,
    file: Option<&Path>,
    infos: &[ProviderInfo],
) -> Result<Policy, ConfigError> {
    let inline = rules.len();
    let file_origin = file.map(|p| p.display().to_string());
    if let (Some(path), Some(file_origin)) = (file, &file_origin) {
        let text = read_text(path)?;
        let parsed: PolicyFile = toml::from_str::<toml::Value>(&text)
            .map_err(|e| invalid(file_origin, "(syntax)", e.message().to_owned()))
            .and_then(|v| {
                serde_path_to_error::deserialize(v).map_err(|e| {
                    let key = e.path().to_string();
                    invalid(file_origin, key, e.into_inner().message().to_owned())
                })
            })?;
        rules.extend(parsed.rule);
    }
    Policy::compile(&rules, "rule", infos).map_err(|e| match &file_origin {
        Some(file_origin) if e.rule >= inline => {
            let own = e.rule - inline;
            let path = e
                .path
                .replacen(&format!("rule[{}]", e.rule), &format!("rule[{own}]"), 1);
            invalid(file_origin, path, e.message)
        }
        _ => invalid(origin, e.path, e.message),
    })
}

/// `[app_passwords]`, checked: lifetimes, the page's URL, sign-in methods
/// that exist, admin groups of known providers.
fn validate_app_passwords(
    origin: &str,
    raw: raw::RawAppPasswords,
    providers: &[ProviderConfig],
    realm: &str,
) -> Result<AppPasswordsConfig, ConfigError> {
    let key = |k: &str| format!("app_passwords.{k}");
    if raw.max_lifetime.0.is_zero() || raw.default_lifetime.0.is_zero() {
        return Err(invalid(
            origin,
            key("max_lifetime"),
            "must be longer than 0s",
        ));
    }
    if raw.default_lifetime.0 > raw.max_lifetime.0 {
        return Err(invalid(
            origin,
            key("default_lifetime"),
            "must not be longer than max_lifetime",
        ));
    }
    if raw.max_per_user == 0 {
        return Err(invalid(origin, key("max_per_user"), "must be at least 1"));
    }
    if raw.session_lifetime.0.is_zero() {
        return Err(invalid(
            origin,
            key("session_lifetime"),
            "must be longer than 0s",
        ));
    }
    let url = match raw.url {
        Some(url) => url.trim_end_matches('/').to_owned(),
        None => {
            let origin_of = realm
                .split_once("://")
                .map(|(scheme, rest)| {
                    format!("{scheme}://{}", rest.split('/').next().unwrap_or_default())
                })
                .unwrap_or_default();
            format!("{origin_of}/ui")
        }
    };
    let has_path = url
        .split_once("://")
        .and_then(|(_, rest)| rest.find('/'))
        .is_some();
    if !(url.starts_with("https://") || url.starts_with("http://"))
        || !has_path
        || url.contains(['?', '#'])
    {
        return Err(invalid(
            origin,
            key("url"),
            format!(
                "`{url}` must be an absolute http(s) URL with a path, like https://auth.corp/ui"
            ),
        ));
    }
    if url.ends_with("/auth") || url.ends_with("/token") {
        return Err(invalid(
            origin,
            key("url"),
            "must not be the token endpoint",
        ));
    }
    // Over plain http the page's cookies cannot be __Host- cookies (a
    // sibling subdomain could plant a session) and passwords typed into
    // its form travel in clear: only on loopback, or when asked for.
    if url.starts_with("http://") && !is_loopback_http(&url) && !raw.allow_http {
        return Err(invalid(
            origin,
            key("url"),
            format!("`{url}` is plain http: serve the page over https (set app_passwords.url, or server.realm, to its https URL), or set app_passwords.allow_http = true where the network in between is trusted"),
        ));
    }
    if raw.recheck_interval.0 < Duration::from_secs(1) {
        return Err(invalid(
            origin,
            key("recheck_interval"),
            "must be at least 1s",
        ));
    }
    let provider = |name: &str| providers.iter().find(|p| p.name == name);
    for (i, name) in raw.login_form.iter().enumerate() {
        match provider(name).map(|p| &p.settings) {
            Some(ProviderSettings::Static(_) | ProviderSettings::Ldap(_) | ProviderSettings::Webhook(_)) => {}
            Some(ProviderSettings::Oidc(oidc)) if oidc.password_grant => {}
            Some(_) => {
                return Err(invalid(
                    origin,
                    format!("app_passwords.login_form[{i}]"),
                    format!("`{name}` does not check passwords (use a static, ldap or webhook provider, or oidc with password_grant)"),
                ))
            }
            None => {
                return Err(invalid(
                    origin,
                    format!("app_passwords.login_form[{i}]"),
                    format!("no provider is named `{name}`"),
                ))
            }
        }
    }
    let browser = providers
        .iter()
        .any(|p| matches!(&p.settings, ProviderSettings::Oidc(oidc) if oidc.browser_login));
    if !browser && raw.login_form.is_empty() {
        return Err(invalid(
            origin,
            key("login_form"),
            "nobody could sign in: set browser_login = true on an oidc provider, or name password providers in login_form",
        ));
    }
    if providers
        .iter()
        .any(|p| p.name == crate::app_passwords::PROVIDER_NAME)
    {
        return Err(invalid(
            origin,
            key("key_file"),
            format!(
                "a provider is named `{}`, the name app passwords use",
                crate::app_passwords::PROVIDER_NAME
            ),
        ));
    }
    let mut admin_groups = Vec::new();
    for (i, entry) in raw.admin_groups.iter().enumerate() {
        let found = entry
            .split_once(':')
            .filter(|(p, g)| provider(p).is_some() && !g.is_empty());
        let Some((p, g)) = found else {
            return Err(invalid(
                origin,
                format!("app_passwords.admin_groups[{i}]"),
                format!("`{entry}` must be provider:group, with a configured provider"),
            ));
        };
        admin_groups.push((p.to_owned(), g.to_owned()));
    }
    Ok(AppPasswordsConfig {
        key_file: raw.key_file,
        default_lifetime: raw.default_lifetime.0,
        max_lifetime: raw.max_lifetime.0,
        max_per_user: raw.max_per_user,
        sign_in_max_age: raw.sign_in_max_age.0,
        admin_groups,
        url,
        session_lifetime: raw.session_lifetime.0,
        login_form: raw.login_form,
        recheck_interval: raw.recheck_interval.0,
    })
}

/// Refuses two providers of one forge kind (GitHub, GitLab, Gitea) unless
/// each pins its usernames: a token goes to the first provider of its
/// shape, so an unpinned second one would see its users' tokens sent to
/// the first one's host (and refused there).
fn check_forges_are_pinned(origin: &str, providers: &[ProviderConfig]) -> Result<(), ConfigError> {
    let forge = |p: &ProviderConfig| match p.settings {
        ProviderSettings::Github(_) => Some("github"),
        ProviderSettings::Gitlab(_) => Some("gitlab"),
        ProviderSettings::Gitea(_) => Some("gitea"),
        _ => None,
    };
    for (i, p) in providers.iter().enumerate() {
        let Some(kind) = forge(p) else { continue };
        let others: Vec<&str> = providers
            .iter()
            .enumerate()
            .filter(|(j, q)| *j != i && forge(q) == Some(kind))
            .map(|(_, q)| q.name())
            .collect();
        if !others.is_empty() && p.usernames.is_empty() {
            return Err(invalid(
                origin,
                format!("provider[{i}].usernames"),
                format!(
                    "`{}` and {} both take {kind} tokens: pin each one's users with usernames = [...], or a token of one would be sent to the other's host",
                    p.name(),
                    others.iter().map(|o| format!("`{o}`")).collect::<Vec<_>>().join(", ")
                ),
            ));
        }
    }
    Ok(())
}

/// Whether `url` is `http://` to localhost or a loopback address (no
/// userinfo: `http://127.0.0.1@elsewhere/` is elsewhere).
fn is_loopback_http(url: &str) -> bool {
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

fn validate_authorizer(
    origin: &str,
    raw: raw::RawAuthorizer,
) -> Result<AuthorizerConfig, ConfigError> {
    match raw.kind.as_str() {
        "policy" => {
            if raw.url.is_some() {
                return Err(invalid(
                    origin,
                    "authorizer.url",
                    "is for kind = \"webhook\"",
                ));
            }
            Ok(AuthorizerConfig::Policy)
        }
        "webhook" => {
            let url = raw.url.ok_or_else(|| {
                invalid(
                    origin,
                    "authorizer.url",
                    "kind = \"webhook\" needs url = \"https://...\"",
                )
            })?;
            if !(url.starts_with("https://") || is_loopback_http(&url)) {
                return Err(invalid(
                    origin,
                    "authorizer.url",
                    "must be https:// (or http:// to a loopback address)",
                ));
            }
            if raw.max_response_bytes == 0 {
                return Err(invalid(
                    origin,
                    "authorizer.max_response_bytes",
                    "must be at least 1",
                ));
            }
            if raw.max_concurrent_calls == 0 || raw.max_concurrent_anonymous_calls == 0 {
                return Err(invalid(
                    origin,
                    "authorizer.max_concurrent_calls",
                    "must be at least 1 (and max_concurrent_anonymous_calls too)",
                ));
            }
            Ok(AuthorizerConfig::Webhook(
                crate::authorize::WebhookAuthorizerConfig {
                    url,
                    timeout: raw.timeout.0,
                    cache_ttl: raw.cache_ttl.0,
                    max_response_bytes: raw.max_response_bytes,
                    cap_with_policy: raw.cap_with_policy,
                    anonymous_calls_per_second: raw.anonymous_calls_per_second,
                    max_concurrent_calls: raw.max_concurrent_calls,
                    max_concurrent_anonymous_calls: raw.max_concurrent_anonymous_calls,
                },
            ))
        }
        other => Err(invalid(
            origin,
            "authorizer.kind",
            format!("unknown authorizer `{other}` (policy or webhook)"),
        )),
    }
}

fn validate_state(
    origin: &str,
    raw: RawState,
    legacy_dir: PathBuf,
) -> Result<StateConfig, ConfigError> {
    let dir = raw.dir.unwrap_or(legacy_dir);
    let redis = match (raw.backend, raw.url) {
        (Backend::Embedded, None) => None,
        (Backend::Embedded, Some(_)) => {
            return Err(invalid(origin, "state.url", "is for backend = \"redis\""))
        }
        (Backend::Redis, None) => {
            return Err(invalid(
                origin,
                "state.url",
                "backend = \"redis\" needs url = \"redis://host:6379\" (or rediss://)",
            ))
        }
        (Backend::Redis, Some(url)) => {
            if !(url.starts_with("redis://") || url.starts_with("rediss://")) {
                return Err(invalid(
                    origin,
                    "state.url",
                    "must start with redis:// or rediss://",
                ));
            }
            let authority = url.split_once("://").map_or("", |(_, rest)| rest);
            let authority = authority.split('/').next().unwrap_or("");
            if authority.contains('@') {
                return Err(invalid(
                    origin,
                    "state.url",
                    "must not contain credentials: use state.password_file or state.password_env",
                ));
            }
            if raw.password_file.is_some() && raw.password_env.is_some() {
                return Err(invalid(
                    origin,
                    "state.password_file",
                    "set password_file or password_env, not both",
                ));
            }
            if raw.key_prefix.is_empty() {
                return Err(invalid(origin, "state.key_prefix", "must not be empty"));
            }
            Some(RedisConfig {
                url,
                username: raw.username,
                password_file: raw.password_file,
                password_env: raw.password_env,
                ca_file: raw.ca_file,
                key_prefix: raw.key_prefix,
                connect_timeout: raw.connect_timeout.0,
                command_timeout: raw.command_timeout.0,
            })
        }
    };
    Ok(StateConfig {
        backend: raw.backend,
        dir,
        redis,
    })
}

const PROVIDER_KINDS: &str = "static, ldap, oidc, github, gitlab, gitea, webhook";

/// Parses one `[[provider]]` table: `name` and `kind` here, the rest by the
/// kind's own settings type, so errors keep their full key path.
fn parse_provider(
    origin: &str,
    index: usize,
    value: toml::Value,
) -> Result<ProviderConfig, ConfigError> {
    let prefix = format!("provider[{index}]");
    let toml::Value::Table(mut table) = value else {
        return Err(invalid(origin, prefix, "must be a table"));
    };
    let mut take = |key: &str| match table.remove(key) {
        Some(toml::Value::String(s)) => Ok(s),
        Some(_) => Err(invalid(
            origin,
            format!("{prefix}.{key}"),
            "must be a string",
        )),
        None => Err(invalid(
            origin,
            format!("{prefix}.{key}"),
            if key == "kind" {
                format!("missing (one of: {PROVIDER_KINDS})")
            } else {
                "missing".to_owned()
            },
        )),
    };
    let name = take("name")?;
    let kind = take("kind")?;
    let usernames = match table.remove("usernames") {
        None => Vec::new(),
        Some(toml::Value::Array(items)) => items
            .into_iter()
            .enumerate()
            .map(|(j, item)| {
                let key = format!("{prefix}.usernames[{j}]");
                let pattern = item
                    .as_str()
                    .ok_or_else(|| invalid(origin, key.clone(), "must be a string"))?
                    .to_owned();
                crate::domain::pattern::Pattern::parse(
                    &pattern,
                    crate::domain::pattern::Placeholders::Forbidden,
                )
                .map_err(|m| invalid(origin, key, m))?;
                Ok(pattern)
            })
            .collect::<Result<Vec<_>, ConfigError>>()?,
        Some(_) => {
            return Err(invalid(
                origin,
                format!("{prefix}.usernames"),
                "must be an array of patterns",
            ))
        }
    };
    fn settings<T: serde::de::DeserializeOwned>(
        origin: &str,
        prefix: &str,
        table: toml::Table,
    ) -> Result<T, ConfigError> {
        serde_path_to_error::deserialize(toml::Value::Table(table)).map_err(|e| {
            let key = match e.path().to_string().as_str() {
                "." | "" => prefix.to_owned(),
                path => format!("{prefix}.{path}"),
            };
            invalid(origin, key, e.into_inner().message().to_owned())
        })
    }
    let settings = match kind.as_str() {
        "static" => ProviderSettings::Static(settings(origin, &prefix, table)?),
        "ldap" => ProviderSettings::Ldap(Box::new(settings(origin, &prefix, table)?)),
        "github" => {
            let github: GithubConfig = settings(origin, &prefix, table)?;
            github
                .validate()
                .map_err(|e| invalid(origin, format!("{prefix}.{}", e.key), e.message))?;
            ProviderSettings::Github(Box::new(github))
        }
        "gitlab" => {
            let gitlab: regauth_providers::gitlab::GitlabConfig = settings(origin, &prefix, table)?;
            gitlab
                .validate()
                .map_err(|e| invalid(origin, format!("{prefix}.{}", e.key), e.message))?;
            ProviderSettings::Gitlab(Box::new(gitlab))
        }
        "gitea" => {
            let gitea: regauth_providers::gitea::GiteaConfig = settings(origin, &prefix, table)?;
            gitea
                .validate()
                .map_err(|e| invalid(origin, format!("{prefix}.{}", e.key), e.message))?;
            ProviderSettings::Gitea(Box::new(gitea))
        }
        "webhook" => {
            let webhook: regauth_providers::webhook::WebhookConfig =
                settings(origin, &prefix, table)?;
            webhook
                .validate()
                .map_err(|e| invalid(origin, format!("{prefix}.{}", e.key), e.message))?;
            ProviderSettings::Webhook(Box::new(webhook))
        }
        "oidc" => {
            let oidc: OidcConfig = settings(origin, &prefix, table)?;
            oidc.validate()
                .map_err(|e| invalid(origin, format!("{prefix}.{}", e.key), e.message))?;
            ProviderSettings::Oidc(Box::new(oidc))
        }
        other => {
            return Err(invalid(
                origin,
                format!("{prefix}.kind"),
                format!("unknown provider kind `{other}` (one of: {PROVIDER_KINDS})"),
            ))
        }
    };
    Ok(ProviderConfig {
        name,
        usernames,
        settings,
    })
}

fn read_text(path: &Path) -> Result<String, ConfigError> {
    std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.display().to_string(),
        source,
    })
}

fn line_of(text: &str, span: Option<std::ops::Range<usize>>) -> String {
    span.map(|s| {
        format!(
            " (line {})",
            text[..s.start.min(text.len())].lines().count().max(1)
        )
    })
    .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"
        [token]
        issuer = "regauth"
        services = ["registry"]
    "#;

    /// Review (2026-12-01) M10: plaintext transports start, but `check`
    /// says so, naming the provider.
    #[test]
    fn plaintext_transports_are_warned_about() {
        let text = format!(
            r#"{MINIMAL}
            [[provider]]
            name = "sso"
            kind = "oidc"
            issuer = "http://sso.corp.example/realms/main"
            audiences = ["registry"]
            [[provider]]
            name = "dir"
            kind = "ldap"
            url = "ldap://dc.corp.example"
            bind_dn = "cn=x"
            bind_password_env = "PATH"
            user_base = "dc=corp"
            [[provider]]
            name = "git"
            kind = "gitlab"
            url = "http://gitlab.corp.example"
            groups = ["acme"]
            [[provider]]
            name = "local"
            kind = "oidc"
            issuer = "http://127.0.0.1:8080"
            audiences = ["registry"]
            "#
        );
        let config = Config::from_toml("t.toml", &text, &[]).unwrap();
        let warnings = config.warnings().join("\n");
        for provider in ["provider sso:", "provider dir:", "provider git:"] {
            assert!(warnings.contains(provider), "{provider}: {warnings}");
        }
        assert!(
            !warnings.contains("provider local:"),
            "loopback is fine: {warnings}"
        );
    }

    /// Review L2: the page over plain http sends LDAP passwords in clear
    /// and cannot use __Host- cookies: refused unless on loopback or asked.
    #[test]
    fn the_page_over_plain_http_is_refused_unless_loopback_or_allowed() {
        let page = |url: &str, extra: &str| {
            format!(
                r#"{MINIMAL}
                [[provider]]
                name = "local"
                kind = "static"
                [provider.users]
                [app_passwords]
                key_file = "/nonexistent/app.key"
                login_form = ["local"]
                url = "{url}"
                {extra}
                "#
            )
        };
        let refused = err(&page("http://auth.corp.example/ui", ""));
        assert!(
            refused.contains("app_passwords.url") && refused.contains("allow_http"),
            "{refused}"
        );
        for (url, extra) in [
            ("http://auth.corp.example/ui", "allow_http = true"),
            ("http://127.0.0.1:5001/ui", ""),
            ("http://localhost:5001/ui", ""),
            ("https://auth.corp.example/ui", ""),
        ] {
            Config::from_toml("t.toml", &page(url, extra), &[])
                .unwrap_or_else(|e| panic!("{url}: {e}"));
        }
    }

    fn err(text: &str) -> String {
        Config::from_toml("t.toml", text, &[])
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn embedded_default_is_valid() {
        let c = Config::from_toml("embedded", EMBEDDED, &[]).unwrap();
        assert_eq!(c.server.listen.to_string(), "127.0.0.1:5001");
        assert_eq!(c.token.lifetime, Duration::from_secs(900));
    }

    #[test]
    fn every_shipped_config_is_valid() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/config");
        let mut checked = 0;
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "toml") {
                let text = std::fs::read_to_string(&path).unwrap();
                Config::from_toml(&path.display().to_string(), &text, &[])
                    .unwrap_or_else(|e| panic!("{e}"));
                checked += 1;
            }
        }
        assert!(checked >= 4, "{checked}");
    }

    #[test]
    fn defaults() {
        let c = Config::from_toml("t", MINIMAL, &[]).unwrap();
        assert!(c.server.anonymous);
        assert_eq!(c.cache.verdict_ttl, Duration::from_secs(60));
        assert_eq!(c.realm(), "http://127.0.0.1:5001/auth");
    }

    #[test]
    fn unknown_keys_name_their_path() {
        let e = err(&format!(
            "{MINIMAL}\n[server]\nlisten = \"127.0.0.1:1\"\nlistn = 1"
        ));
        assert!(e.contains("server.listn") || e.contains("listn"), "{e}");
        let e = err(&format!("{MINIMAL}\n[[provider]]\nkind = \"static\"\nname = \"a\"\nhtpasswd = \"x\"\nusrs = {{}}"));
        assert!(e.contains("usrs"), "{e}");
        let e = err(&format!(
            "{MINIMAL}\n[[provider]]\nkind = \"static\"\nname = \"a\"\ngroups = {{ a = 1 }}"
        ));
        assert!(e.contains("provider[0].groups.a"), "{e}");
    }

    #[test]
    fn two_providers_of_one_forge_need_pins() {
        let gitlab = |name: &str, pin: &str| {
            format!("\n[[provider]]\nname = \"{name}\"\nkind = \"gitlab\"\nurl = \"https://{name}.example\"\ngroups = [\"acme\"]\n{pin}\n")
        };
        let e = err(&format!(
            "{MINIMAL}{}{}",
            gitlab("saas", ""),
            gitlab("corp", "")
        ));
        assert!(
            e.contains("usernames") && e.contains("gitlab tokens"),
            "{e}"
        );
        let pinned = format!(
            "{MINIMAL}{}{}",
            gitlab("saas", "usernames = [\"ext-*\"]"),
            gitlab("corp", "usernames = [\"*\"]")
        );
        assert!(Config::from_toml("t", &pinned, &[]).is_ok());
    }

    #[test]
    fn an_authorization_webhook_is_https_or_loopback_http() {
        let with = |url: &str| {
            Config::from_toml(
                "t",
                &format!("{MINIMAL}\n[authorizer]\nkind = \"webhook\"\nurl = \"{url}\""),
                &[],
            )
            .map_err(|e| e.to_string())
        };
        for ok in [
            "https://authz.internal/decide",
            "http://127.0.0.1:9000/decide",
            "http://localhost:9000/",
            "http://[::1]:9000/decide",
        ] {
            assert!(with(ok).is_ok(), "{ok}: {:?}", with(ok).err());
        }
        for refused in [
            "http://10.0.0.5/decide",
            "http://127.0.0.1@authz.example/",
            "http://127.0.0.1.example/",
            "ftp://127.0.0.1/",
            "not a url",
        ] {
            let e = with(refused).expect_err(refused);
            assert!(e.contains("authorizer.url"), "{refused}: {e}");
        }
    }

    #[test]
    fn bad_values_name_their_key() {
        assert!(
            err(&MINIMAL.replace("[token]", "[token]\nlifetime = \"30s\""))
                .contains("token.lifetime")
        );
        assert!(
            err(&MINIMAL.replace("[token]", "[token]\nlifetime = \"soon\""))
                .contains("token.lifetime")
        );
        assert!(err(&MINIMAL.replace("[\"registry\"]", "[]")).contains("token.services"));
        assert!(
            err(&format!("{MINIMAL}\n[server]\nlisten = \"nowhere\"")).contains("server.listen")
        );
        assert!(err(&format!(
            "{MINIMAL}\n[[rule]]\nusers=[\"a\"]\nrepos=[\"x\"]\nactions=[\"pul\"]"
        ))
        .contains("rule[0].actions[0]"));
        assert!(err(&format!(
            "{MINIMAL}\n[[rule]]\nusers=[\"a\"]\nproviders=[\"nope\"]\nrepos=[\"x\"]\nactions=[\"pull\"]"
        ))
        .contains("rule[0].providers[0]"));
        let twice =
            "[[provider]]\nkind=\"static\"\nname=\"a\"\n[[provider]]\nkind=\"static\"\nname=\"a\"";
        assert!(err(&format!("{MINIMAL}\n{twice}")).contains("provider[1].name"));
        assert!(err(&format!(
            "{MINIMAL}\n[[provider]]\nkind=\"smoke\"\nname=\"a\""
        ))
        .contains("provider[0]"));
    }

    /// Providers that would admit the whole internet are refused, naming
    /// the key to set.
    #[test]
    fn providers_that_admit_everyone_are_refused() {
        let e = err(&format!(
            "{MINIMAL}\n[[provider]]\nname=\"gh\"\nkind=\"github\""
        ));
        assert!(e.contains("provider[0].organizations"), "{e}");
        let ok = format!(
            "{MINIMAL}\n[[provider]]\nname=\"gh\"\nkind=\"github\"\nallow_any_account=true"
        );
        Config::from_toml("t", &ok, &[]).unwrap();
        for issuer in [
            "https://token.actions.githubusercontent.com",
            "https://gitlab.com/",
        ] {
            let e = err(&format!(
                "{MINIMAL}\n[[provider]]\nname=\"ci\"\nkind=\"oidc\"\nissuer=\"{issuer}\"\naudiences=[\"r\"]"
            ));
            assert!(e.contains("provider[0].required_claims"), "{e}");
        }
        let ok = format!(
            "{MINIMAL}\n[[provider]]\nname=\"ci\"\nkind=\"oidc\"\nissuer=\"https://gitlab.com\"\naudiences=[\"r\"]\nrequired_claims={{ namespace_path = \"acme\" }}"
        );
        Config::from_toml("t", &ok, &[]).unwrap();
    }

    #[test]
    fn trusted_proxies_name_their_key() {
        let e = err(&format!(
            "{MINIMAL}\n[server]\ntrusted_proxies = [\"10.0.0.0/99\"]"
        ));
        assert!(e.contains("server.trusted_proxies[0]"), "{e}");
    }

    #[test]
    fn env_overrides() {
        let env = vec![
            (
                "REGAUTH_SERVER__LISTEN".to_owned(),
                "127.0.0.1:7000".to_owned(),
            ),
            ("REGAUTH_TOKEN__LIFETIME".to_owned(), "600".to_owned()),
            ("REGAUTH_SERVER__ANONYMOUS".to_owned(), "false".to_owned()),
        ];
        let c = Config::from_toml("t", MINIMAL, &env).unwrap();
        assert_eq!(c.server.listen.port(), 7000);
        assert_eq!(c.token.lifetime, Duration::from_secs(600));
        assert!(!c.server.anonymous);
    }
}
