//! `[refresh_tokens]`: docker's identity tokens, and the key they are
//! sealed with.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::error::{invalid, ConfigError};
use super::Seconds;

/// `[refresh_tokens]` as the file gives it.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct RawRefresh {
    pub(crate) enabled: bool,
    pub(crate) lifetime: Seconds,
    /// Where revocations are kept (`revocations.json`); share it between
    /// replicas. `state.dir` is the newer name, and this key its default.
    pub(crate) state_dir: PathBuf,
    /// The key refresh tokens are sealed with, generated if missing (share
    /// it between replicas, like the signing key).
    pub(crate) key_file: PathBuf,
}

impl Default for RawRefresh {
    fn default() -> Self {
        Self {
            enabled: true,
            lifetime: Seconds(Duration::from_secs(30 * 24 * 3600)),
            state_dir: "data".into(),
            key_file: "certs/refresh.key".into(),
        }
    }
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

/// `[refresh_tokens]`, checked: a refresh token lives at least an hour.
/// `state_dir` is not read here: it is `state.dir`'s default.
pub(crate) fn validate_refresh(
    origin: &str,
    raw: RawRefresh,
) -> Result<RefreshConfig, ConfigError> {
    if raw.lifetime.0 < Duration::from_secs(3600) {
        return Err(invalid(
            origin,
            "refresh_tokens.lifetime",
            "must be at least 1h",
        ));
    }
    Ok(RefreshConfig {
        enabled: raw.enabled,
        lifetime: raw.lifetime.0,
        key_file: raw.key_file,
    })
}
