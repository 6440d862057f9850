//! The configuration file as serde reads it, before validation, and the
//! `REGAUTH_SECTION__KEY` environment overrides applied to it. Each
//! section's raw type sits beside its validator (`server.rs`, ...);
//! `Config::validate` turns them into the checked configuration.

use std::path::PathBuf;

use serde::Deserialize;

use super::app_passwords::RawAppPasswords;
use super::authorizer::RawAuthorizer;
use super::cache::RawCache;
use super::refresh::RawRefresh;
use super::server::RawServer;
use super::state::RawState;
use super::token::RawToken;
use super::ENV_PREFIX;
use crate::domain::policy::RuleConfig;

/// The whole file. A missing section is its defaults, except `[token]`,
/// which names the issuer and services.
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
    /// Parsed by `kind` in `providers::validate_providers`, so errors keep
    /// their path.
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
    /// Present: team robots are on (with `[app_passwords]`).
    #[serde(default)]
    pub(super) robots: Option<super::robots::RawRobots>,
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
