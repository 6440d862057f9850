//! The terminal's side of a device login: `regauth login REGISTRY` and
//! `regauth logout REGISTRY` ([`login`]), and the docker credential
//! helper `docker-credential-regauth` ([`helper`]) that hands what they
//! stored to the docker CLI, podman, skopeo and buildah. And the kubelet's
//! image credential provider plugin ([`kubelet`]), which hands a pod's
//! service-account token to the registry.
//!
//! What a login leaves behind: the registry's identity token in one file
//! of the user's, mode 0600 ([`Stored`]), and a `credHelpers` entry naming
//! `regauth` for that registry in the docker CLI's `config.json` and the
//! containers tools' `auth.json` ([`client_configs`]), whose other
//! contents are kept as they are.

pub mod client_configs;
pub mod helper;
pub mod kubelet;
pub mod login;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::files::{write_file, Replace};

/// The username that tells the docker CLI (and containers/image) that the
/// secret is an identity token, presented with the refresh grant.
pub const IDENTITY_TOKEN_USER: &str = "<token>";

/// What is kept for one registry.
#[derive(Clone, Serialize, Deserialize)]
pub struct Entry {
    /// `<token>` for an identity token; else a username whose password
    /// `docker login` stored through the helper.
    pub username: String,
    /// The identity token (or password).
    pub secret: String,
    /// Where the identity token is revoked at logout (RFC 7009), when a
    /// device login made it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revocation_endpoint: Option<String>,
}

impl std::fmt::Debug for Entry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Entry")
            .field("username", &self.username)
            .finish_non_exhaustive()
    }
}

/// The file of the user's registry logins.
#[derive(Default, Serialize, Deserialize)]
pub struct Stored {
    /// By registry host (`registry.corp`, `127.0.0.1:5000`).
    #[serde(default)]
    pub registries: BTreeMap<String, Entry>,
}

/// Where the logins are kept: `$REGAUTH_CREDENTIALS`, else
/// `$XDG_CONFIG_HOME/regauth/credentials.json`, else
/// `~/.config/regauth/credentials.json`.
pub fn credentials_path() -> anyhow::Result<PathBuf> {
    if let Some(path) = std::env::var_os("REGAUTH_CREDENTIALS").filter(|p| !p.is_empty()) {
        return Ok(PathBuf::from(path));
    }
    Ok(config_home()?.join("regauth/credentials.json"))
}

/// `$XDG_CONFIG_HOME`, else `~/.config`.
pub(crate) fn config_home() -> anyhow::Result<PathBuf> {
    if let Some(dir) = std::env::var_os("XDG_CONFIG_HOME").filter(|p| !p.is_empty()) {
        return Ok(PathBuf::from(dir));
    }
    Ok(home()?.join(".config"))
}

/// `$HOME`.
pub(crate) fn home() -> anyhow::Result<PathBuf> {
    std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .map(PathBuf::from)
        .ok_or_else(|| anyhow::anyhow!("HOME is not set: cannot find the user's configuration"))
}

/// The largest credentials file read.
const MAX_FILE_BYTES: u64 = 1024 * 1024;

/// A JSON file of the user's, bounded; `None` when there is none.
pub(crate) fn read_json<T: for<'de> Deserialize<'de>>(path: &Path) -> anyhow::Result<Option<T>> {
    use anyhow::Context as _;
    let file = match std::fs::File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    let mut text = String::new();
    std::io::Read::read_to_string(&mut std::io::Read::take(file, MAX_FILE_BYTES), &mut text)
        .with_context(|| format!("reading {}", path.display()))?;
    if text.trim().is_empty() {
        return Ok(None);
    }
    serde_json::from_str(&text)
        .map(Some)
        .with_context(|| format!("{} is not the JSON expected", path.display()))
}

/// Writes `value` to `path` as JSON, mode 0600, atomically.
pub(crate) fn write_json<T: Serialize>(path: &Path, value: &T) -> anyhow::Result<()> {
    use anyhow::Context as _;
    let mut text = serde_json::to_string_pretty(value)?;
    text.push('\n');
    write_file(path, text.as_bytes(), 0o600, Replace::Atomically)
        .with_context(|| format!("writing {}", path.display()))
}

impl Stored {
    /// The stored logins (none when there is no file yet).
    pub fn load() -> anyhow::Result<Self> {
        Ok(read_json(&credentials_path()?)?.unwrap_or_default())
    }

    /// Changes the stored logins under the file's lock.
    pub fn update<R>(change: impl FnOnce(&mut Stored) -> R) -> anyhow::Result<R> {
        let path = credentials_path()?;
        let _lock = crate::files::lock(&path.with_extension("lock"))?;
        let mut stored: Stored = read_json(&path)?.unwrap_or_default();
        let out = change(&mut stored);
        write_json(&path, &stored)?;
        Ok(out)
    }
}

/// A registry as the tools name it (`https://registry.corp/v2/`,
/// `registry.corp`): its host and port, lower case.
pub fn registry_host(server: &str) -> String {
    let server = server.trim();
    let rest = server.split_once("://").map_or(server, |(_, rest)| rest);
    rest.split('/')
        .next()
        .unwrap_or_default()
        .to_ascii_lowercase()
}

#[cfg(test)]
mod tests {
    #[test]
    fn registries_are_named_by_host() {
        for (server, host) in [
            ("registry.corp", "registry.corp"),
            ("https://Registry.Corp/v2/", "registry.corp"),
            ("http://127.0.0.1:5000", "127.0.0.1:5000"),
            (" [::1]:5000 ", "[::1]:5000"),
        ] {
            assert_eq!(super::registry_host(server), host);
        }
    }
}
