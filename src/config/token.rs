//! `[token]`: the tokens regauth signs (issuer, services, lifetimes) and
//! the keys it signs them with.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use super::error::{invalid, ConfigError};
use super::Seconds;
use crate::keys::X5c;

/// `[token]` as the file gives it. `issuer` and `services` have no
/// default: they are options here only so that the section can start at
/// its defaults in code, and [`validate_token`] reports them missing in
/// serde's words.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct RawToken {
    pub(crate) issuer: Option<String>,
    pub(crate) services: Option<Vec<String>>,
    pub(crate) lifetime: Seconds,
    /// Per-service lifetimes that override `lifetime`.
    pub(crate) service_lifetimes: BTreeMap<String, Seconds>,
    /// A token identical in subject, service and access to one signed less
    /// than this long ago is handed out again instead of signing anew.
    pub(crate) reuse_window: Seconds,
    pub(crate) key: PathBuf,
    pub(crate) certificate: PathBuf,
    /// A staged next key (`regauth keys rotate`); default: `key` and
    /// `certificate` with `.next` before the extension.
    pub(crate) next_key: Option<PathBuf>,
    pub(crate) next_certificate: Option<PathBuf>,
    /// How long after staging the next key starts to sign (default: the
    /// longest token lifetime).
    pub(crate) rotation_overlap: Option<Seconds>,
    /// Send the certificate chain (`x5c`) in token headers (registry 2.8
    /// needs it; a v3 registry trusting only a `jwks` file needs it off).
    pub(crate) x5c: bool,
}

impl Default for RawToken {
    fn default() -> Self {
        Self {
            issuer: None,
            services: None,
            lifetime: Seconds(Duration::from_secs(900)),
            service_lifetimes: BTreeMap::new(),
            reuse_window: Seconds(Duration::from_secs(5)),
            key: "certs/token.key".into(),
            certificate: "certs/token.crt".into(),
            next_key: None,
            next_certificate: None,
            rotation_overlap: None,
            x5c: true,
        }
    }
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
    pub x5c: X5c,
}

impl TokenConfig {
    /// The longest lifetime of any token this configuration issues.
    pub fn longest_lifetime(&self) -> Duration {
        longest(self.lifetime, &self.service_lifetimes)
    }

    /// The lifetime of tokens for `service`.
    pub fn lifetime_for(&self, service: &str) -> Duration {
        self.service_lifetimes
            .get(service)
            .copied()
            .unwrap_or(self.lifetime)
    }
}

fn longest(lifetime: Duration, service_lifetimes: &BTreeMap<String, Duration>) -> Duration {
    service_lifetimes
        .values()
        .copied()
        .chain(std::iter::once(lifetime))
        .max()
        .unwrap_or(lifetime)
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

/// `[token]`, checked: an issuer, named services, lifetimes clients do not
/// cut short, and a reuse window well inside the lifetime.
pub(crate) fn validate_token(origin: &str, raw: RawToken) -> Result<TokenConfig, ConfigError> {
    let missing = |field: &str| invalid(origin, "token", format!("missing field `{field}`"));
    let issuer = raw.issuer.ok_or_else(|| missing("issuer"))?;
    let services = raw.services.ok_or_else(|| missing("services"))?;
    if issuer.trim().is_empty() {
        return Err(invalid(origin, "token.issuer", "must not be empty"));
    }
    if services.is_empty() {
        return Err(invalid(
            origin,
            "token.services",
            "name at least one service",
        ));
    }
    if let Some(i) = services.iter().position(String::is_empty) {
        return Err(invalid(
            origin,
            format!("token.services[{i}]"),
            "must not be empty",
        ));
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
    let lifetime = check_lifetime("token.lifetime".into(), raw.lifetime.0)?;
    let mut service_lifetimes = BTreeMap::new();
    for (service, d) in raw.service_lifetimes {
        let key = format!("token.service_lifetimes.{service}");
        if !services.contains(&service) {
            return Err(invalid(origin, key, "is not one of token.services"));
        }
        service_lifetimes.insert(service, check_lifetime(key, d.0)?);
    }
    if raw.reuse_window.0 * 10 > lifetime {
        return Err(invalid(
            origin,
            "token.reuse_window",
            "must be at most a tenth of token.lifetime",
        ));
    }
    Ok(TokenConfig {
        issuer,
        services,
        rotation_overlap: raw
            .rotation_overlap
            .map_or_else(|| longest(lifetime, &service_lifetimes), |s| s.0),
        lifetime,
        service_lifetimes,
        reuse_window: raw.reuse_window.0,
        next_key: raw.next_key.unwrap_or_else(|| next_path(&raw.key)),
        next_certificate: raw
            .next_certificate
            .unwrap_or_else(|| next_path(&raw.certificate)),
        key: raw.key,
        certificate: raw.certificate,
        x5c: if raw.x5c { X5c::Send } else { X5c::Omit },
    })
}
