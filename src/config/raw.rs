//! The configuration file as serde reads it, before validation, and the
//! `REGAUTH_SECTION__KEY` environment overrides applied to it. Nothing
//! outside `config` sees these types: `Config::validate` turns them into
//! the checked configuration.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::{Backend, Seconds, ENV_PREFIX};
use crate::domain::policy::RuleConfig;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawConfig {
    #[serde(default)]
    pub(super) server: RawServer,
    pub(super) token: RawToken,
    #[serde(default)]
    pub(super) cache: RawCache,
    #[serde(default)]
    pub(super) refresh_tokens: RawRefresh,
    #[serde(default)]
    pub(super) state: RawState,
    /// Parsed by `kind` in [`parse_provider`], so errors keep their path.
    #[serde(default)]
    pub(super) provider: Vec<toml::Value>,
    #[serde(default)]
    pub(super) rule: Vec<RuleConfig>,
    /// A separate policy file with `[[rule]]` tables (reloaded on SIGHUP).
    #[serde(default)]
    pub(super) policy: Option<PathBuf>,
    #[serde(default)]
    pub(super) authorizer: RawAuthorizer,
    /// Present: app passwords and their page are on.
    #[serde(default)]
    pub(super) app_passwords: Option<RawAppPasswords>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAppPasswords {
    #[serde(default = "default_app_password_key")]
    pub(super) key_file: PathBuf,
    #[serde(default = "default_app_password_lifetime")]
    pub(super) default_lifetime: Seconds,
    #[serde(default = "default_app_password_max_lifetime")]
    pub(super) max_lifetime: Seconds,
    #[serde(default = "default_app_passwords_per_user")]
    pub(super) max_per_user: usize,
    #[serde(default = "default_sign_in_max_age")]
    pub(super) sign_in_max_age: Seconds,
    #[serde(default)]
    pub(super) admin_groups: Vec<String>,
    #[serde(default)]
    pub(super) url: Option<String>,
    #[serde(default = "default_session_lifetime")]
    pub(super) session_lifetime: Seconds,
    #[serde(default)]
    pub(super) login_form: Vec<String>,
    #[serde(default = "default_recheck_interval")]
    pub(super) recheck_interval: Seconds,
    #[serde(default)]
    pub(super) allow_http: bool,
}

fn default_recheck_interval() -> Seconds {
    Seconds(Duration::from_secs(3600))
}

fn default_app_password_key() -> PathBuf {
    "certs/app-passwords.key".into()
}
fn default_app_password_lifetime() -> Seconds {
    Seconds(Duration::from_secs(90 * 86400))
}
fn default_app_password_max_lifetime() -> Seconds {
    Seconds(Duration::from_secs(365 * 86400))
}
fn default_app_passwords_per_user() -> usize {
    20
}
fn default_sign_in_max_age() -> Seconds {
    Seconds(Duration::from_secs(30 * 86400))
}
fn default_session_lifetime() -> Seconds {
    Seconds(Duration::from_secs(8 * 3600))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAuthorizer {
    #[serde(default = "default_authorizer_kind")]
    pub(super) kind: String,
    #[serde(default)]
    pub(super) url: Option<String>,
    #[serde(default = "default_authorizer_timeout")]
    pub(super) timeout: Seconds,
    #[serde(default = "default_authorizer_cache_ttl")]
    pub(super) cache_ttl: Seconds,
    #[serde(default = "default_authorizer_max_response")]
    pub(super) max_response_bytes: usize,
    #[serde(default)]
    pub(super) cap_with_policy: bool,
    #[serde(default = "default_anonymous_calls")]
    pub(super) anonymous_calls_per_second: u32,
    #[serde(default = "default_max_concurrent_calls")]
    pub(super) max_concurrent_calls: usize,
    #[serde(default = "default_max_concurrent_anonymous_calls")]
    pub(super) max_concurrent_anonymous_calls: usize,
}

fn default_max_concurrent_anonymous_calls() -> usize {
    8
}

fn default_anonymous_calls() -> u32 {
    5
}
fn default_max_concurrent_calls() -> usize {
    32
}

impl Default for RawAuthorizer {
    fn default() -> Self {
        Self {
            kind: default_authorizer_kind(),
            url: None,
            timeout: default_authorizer_timeout(),
            cache_ttl: default_authorizer_cache_ttl(),
            max_response_bytes: default_authorizer_max_response(),
            cap_with_policy: false,
            anonymous_calls_per_second: default_anonymous_calls(),
            max_concurrent_calls: default_max_concurrent_calls(),
            max_concurrent_anonymous_calls: default_max_concurrent_anonymous_calls(),
        }
    }
}

fn default_authorizer_kind() -> String {
    "policy".into()
}
fn default_authorizer_timeout() -> Seconds {
    Seconds(Duration::from_secs(2))
}
fn default_authorizer_cache_ttl() -> Seconds {
    Seconds(Duration::from_secs(30))
}
fn default_authorizer_max_response() -> usize {
    64 * 1024
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawServer {
    pub(super) listen: String,
    /// A listener of its own for /healthz, /readyz, /metrics and /jwks.
    pub(super) ops_listen: Option<String>,
    /// The public URL of the token endpoint, as the registry's `realm`.
    pub(super) realm: Option<String>,
    pub(super) anonymous: bool,
    /// Upper bound for one identity provider's answer (`request_timeout`
    /// is the name earlier versions used).
    #[serde(alias = "request_timeout")]
    pub(super) upstream_timeout: Seconds,
    /// Upper bound for a whole request, from its first byte to its answer.
    pub(super) request_deadline: Seconds,
    /// A client must send a request's head within this time.
    pub(super) header_timeout: Seconds,
    /// An idle keep-alive connection is closed after this time.
    pub(super) idle_timeout: Seconds,
    /// On SIGTERM, in-flight requests get this long to finish.
    pub(super) shutdown_timeout: Seconds,
    /// Connections served at once; more are answered 503 and closed.
    pub(super) max_connections: usize,
    /// Connections from one client network at once (IPv4 address, IPv6 /64).
    pub(super) max_connections_per_client: usize,
    /// Requests handled at once; more are answered 503.
    pub(super) max_in_flight: usize,
    pub(super) max_body_bytes: usize,
    pub(super) max_scopes: usize,
    /// Upper bound on a request's head (request line and headers).
    pub(super) max_header_bytes: usize,
    pub(super) max_username_bytes: usize,
    pub(super) max_secret_bytes: usize,
    /// Upper bound on a requested repository name (the registry's own).
    pub(super) max_repository_bytes: usize,
    /// Proxies (CIDRs) whose `X-Forwarded-For` names the real client.
    pub(super) trusted_proxies: Vec<String>,
    /// Serve HTTPS with this certificate chain (PEM) and key.
    pub(super) tls_certificate: Option<PathBuf>,
    pub(super) tls_key: Option<PathBuf>,
}

impl Default for RawServer {
    fn default() -> Self {
        let secs = |s| Seconds(Duration::from_secs(s));
        Self {
            listen: "127.0.0.1:5001".into(),
            ops_listen: None,
            realm: None,
            anonymous: true,
            upstream_timeout: secs(10),
            request_deadline: secs(14),
            header_timeout: secs(10),
            idle_timeout: secs(60),
            shutdown_timeout: secs(20),
            max_connections: 4096,
            max_connections_per_client: 256,
            max_in_flight: 1024,
            max_body_bytes: 64 * 1024,
            max_scopes: 100,
            max_header_bytes: 32 * 1024,
            max_username_bytes: 256,
            max_secret_bytes: 16 * 1024,
            max_repository_bytes: 255,
            trusted_proxies: Vec::new(),
            tls_certificate: None,
            tls_key: None,
        }
    }
}

fn default_true() -> bool {
    true
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawToken {
    pub(super) issuer: String,
    pub(super) services: Vec<String>,
    #[serde(default = "default_lifetime")]
    pub(super) lifetime: Seconds,
    /// Per-service lifetimes that override `lifetime`.
    #[serde(default)]
    pub(super) service_lifetimes: BTreeMap<String, Seconds>,
    /// A token identical in subject, service and access to one signed less
    /// than this long ago is handed out again instead of signing anew.
    #[serde(default = "default_reuse_window")]
    pub(super) reuse_window: Seconds,
    #[serde(default = "default_key")]
    pub(super) key: PathBuf,
    #[serde(default = "default_certificate")]
    pub(super) certificate: PathBuf,
    /// A staged next key (`regauth keys rotate`); default: `key` and
    /// `certificate` with `.next` before the extension.
    #[serde(default)]
    pub(super) next_key: Option<PathBuf>,
    #[serde(default)]
    pub(super) next_certificate: Option<PathBuf>,
    /// How long after staging the next key starts to sign (default: the
    /// longest token lifetime).
    #[serde(default)]
    pub(super) rotation_overlap: Option<Seconds>,
    /// Send the certificate chain (`x5c`) in token headers (registry 2.8
    /// needs it; a v3 registry trusting only a `jwks` file needs it off).
    #[serde(default = "default_true")]
    pub(super) x5c: bool,
}

fn default_lifetime() -> Seconds {
    Seconds(Duration::from_secs(900))
}
fn default_reuse_window() -> Seconds {
    Seconds(Duration::from_secs(5))
}
fn default_key() -> PathBuf {
    "certs/token.key".into()
}
fn default_certificate() -> PathBuf {
    "certs/token.crt".into()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawCache {
    #[serde(default = "default_verdict_ttl")]
    pub(super) verdict_ttl: Seconds,
    #[serde(default = "default_verdict_capacity")]
    pub(super) verdict_capacity: u64,
    #[serde(default = "default_failure_window")]
    pub(super) failure_window: Seconds,
    #[serde(default = "default_max_failures")]
    pub(super) max_failures: u32,
    #[serde(default)]
    pub(super) max_familiar_failures: Option<u32>,
    #[serde(default = "default_familiar_for")]
    pub(super) familiar_for: Seconds,
    #[serde(default = "default_max_client_failures")]
    pub(super) max_client_failures: u32,
    #[serde(default = "default_max_provider_failures_per_second")]
    pub(super) max_provider_failures_per_second: u32,
}

impl Default for RawCache {
    fn default() -> Self {
        Self {
            verdict_ttl: default_verdict_ttl(),
            verdict_capacity: default_verdict_capacity(),
            failure_window: default_failure_window(),
            max_failures: default_max_failures(),
            max_familiar_failures: None,
            familiar_for: default_familiar_for(),
            max_client_failures: default_max_client_failures(),
            max_provider_failures_per_second: default_max_provider_failures_per_second(),
        }
    }
}

fn default_familiar_for() -> Seconds {
    Seconds(Duration::from_secs(30 * 86400))
}
fn default_max_client_failures() -> u32 {
    100
}
fn default_max_provider_failures_per_second() -> u32 {
    20
}

fn default_verdict_ttl() -> Seconds {
    Seconds(Duration::from_secs(60))
}
fn default_verdict_capacity() -> u64 {
    100_000
}
fn default_failure_window() -> Seconds {
    Seconds(Duration::from_secs(1800))
}
fn default_max_failures() -> u32 {
    5
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRefresh {
    #[serde(default = "default_true")]
    pub(super) enabled: bool,
    #[serde(default = "default_refresh_lifetime")]
    pub(super) lifetime: Seconds,
    /// Where revocations are kept (`revocations.json`); share it between
    /// replicas. `state.dir` is the newer name.
    #[serde(default = "default_state_dir")]
    pub(super) state_dir: PathBuf,
    /// The key refresh tokens are sealed with, generated if missing (share
    /// it between replicas, like the signing key).
    #[serde(default = "default_refresh_key")]
    pub(super) key_file: PathBuf,
}

fn default_refresh_key() -> PathBuf {
    "certs/refresh.key".into()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawState {
    #[serde(default)]
    pub(super) backend: Backend,
    #[serde(default)]
    pub(super) dir: Option<PathBuf>,
    #[serde(default)]
    pub(super) url: Option<String>,
    /// The Redis ACL user (default: Redis's `default` user).
    #[serde(default)]
    pub(super) username: Option<String>,
    #[serde(default)]
    pub(super) password_file: Option<PathBuf>,
    #[serde(default)]
    pub(super) password_env: Option<String>,
    #[serde(default)]
    pub(super) ca_file: Option<PathBuf>,
    #[serde(default = "default_key_prefix")]
    pub(super) key_prefix: String,
    #[serde(default = "default_connect_timeout")]
    pub(super) connect_timeout: Seconds,
    #[serde(default = "default_command_timeout")]
    pub(super) command_timeout: Seconds,
}

impl Default for RawState {
    fn default() -> Self {
        Self {
            backend: Backend::Embedded,
            dir: None,
            url: None,
            username: None,
            password_file: None,
            password_env: None,
            ca_file: None,
            key_prefix: default_key_prefix(),
            connect_timeout: default_connect_timeout(),
            command_timeout: default_command_timeout(),
        }
    }
}

fn default_key_prefix() -> String {
    "regauth:".into()
}
fn default_connect_timeout() -> Seconds {
    Seconds(Duration::from_secs(2))
}
fn default_command_timeout() -> Seconds {
    Seconds(Duration::from_secs(1))
}

impl Default for RawRefresh {
    fn default() -> Self {
        Self {
            enabled: true,
            lifetime: default_refresh_lifetime(),
            state_dir: default_state_dir(),
            key_file: default_refresh_key(),
        }
    }
}

fn default_refresh_lifetime() -> Seconds {
    Seconds(Duration::from_secs(30 * 24 * 3600))
}
fn default_state_dir() -> PathBuf {
    "data".into()
}

/// `REGAUTH_SERVER__LISTEN=...` sets `server.listen`. Numbers, booleans and
/// arrays are parsed as TOML; anything else is a string.
pub(super) fn apply_override(root: &mut toml::Value, name: &str, raw: &str) -> Result<(), String> {
    let path: Vec<String> = name[ENV_PREFIX.len()..]
        .split("__")
        .map(str::to_ascii_lowercase)
        .collect();
    if path.iter().any(String::is_empty) {
        return Err("empty key segment".into());
    }
    let parsed = toml::from_str::<toml::Table>(&format!("v = {raw}"))
        .ok()
        .and_then(|mut t| t.remove("v"))
        .filter(|v| !v.is_str() && !v.is_table());
    let value = parsed.unwrap_or_else(|| toml::Value::String(raw.to_owned()));
    let mut node = root;
    for (i, key) in path.iter().enumerate() {
        let table = node
            .as_table_mut()
            .ok_or_else(|| format!("`{}` is not a table", path[..i].join(".")))?;
        if i + 1 == path.len() {
            table.insert(key.clone(), value);
            return Ok(());
        }
        node = table
            .entry(key.clone())
            .or_insert_with(|| toml::Value::Table(Default::default()));
    }
    Ok(())
}
