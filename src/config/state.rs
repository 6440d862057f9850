//! `[state]`: where the state replicas share lives (revocations, app
//! passwords, the failed-login throttle): files, or Redis.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::error::{invalid, ConfigError};
use super::Seconds;

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

/// `[state]` as the file gives it.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct RawState {
    pub(crate) backend: Backend,
    /// Default: `refresh_tokens.state_dir`, the older name.
    pub(crate) dir: Option<PathBuf>,
    pub(crate) url: Option<String>,
    /// The Redis ACL user (default: Redis's `default` user).
    pub(crate) username: Option<String>,
    pub(crate) password_file: Option<PathBuf>,
    pub(crate) password_env: Option<String>,
    pub(crate) ca_file: Option<PathBuf>,
    pub(crate) key_prefix: String,
    pub(crate) connect_timeout: Seconds,
    pub(crate) command_timeout: Seconds,
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
            key_prefix: "regauth:".into(),
            connect_timeout: Seconds(Duration::from_secs(2)),
            command_timeout: Seconds(Duration::from_secs(1)),
        }
    }
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

/// `[state]`, checked: Redis settings only with the Redis backend, and a
/// Redis URL without credentials. `legacy_dir` is `refresh_tokens.state_dir`,
/// the default of `state.dir`.
pub(crate) fn validate_state(
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
