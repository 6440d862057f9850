//! `docker-credential-regauth`: the docker credential helper protocol
//! (`store`, `get`, `erase`, `list`, `version`; the server URL or the
//! credentials on stdin, JSON on stdout, errors on stdout with exit
//! status 1) over the logins `regauth login` stored.
//!
//! `get` never prompts (the docker CLI captures its output): a registry
//! signed in before gets `{"Username": "<token>", "Secret": ...}`, which
//! the docker CLI and containers/image present as an identity token with
//! the refresh grant. Any other registry gets the protocol's exact
//! "credentials not found in native keychain" (on which the tools go on
//! without credentials, so anonymous pulls still work) and, on stderr,
//! the `regauth login` line that signs it in.

use std::io::{Read as _, Write as _};

use serde::{Deserialize, Serialize};

use super::{registry_host, Entry, Stored};

/// The protocol's answer for a registry it holds nothing for.
pub const NOT_FOUND: &str = "credentials not found in native keychain";
/// The largest input read from stdin.
const MAX_INPUT_BYTES: u64 = 64 * 1024;

/// Credentials as the protocol passes them.
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Credentials {
    #[serde(rename = "ServerURL", default)]
    server_url: String,
    #[serde(default)]
    username: String,
    #[serde(default)]
    secret: String,
}

/// Runs the helper with `action` (its one argument); the exit status.
pub fn run(action: Option<&str>) -> i32 {
    let mut input = String::new();
    let read = match action {
        Some("store" | "get" | "erase") => std::io::stdin()
            .take(MAX_INPUT_BYTES)
            .read_to_string(&mut input)
            .map(|_| ()),
        _ => Ok(()),
    };
    let answer = read
        .map_err(|e| anyhow::anyhow!("reading stdin: {e}"))
        .and_then(|()| answer(action, &input));
    let mut out = std::io::stdout().lock();
    match answer {
        Ok(text) => {
            let _ = out.write_all(text.as_bytes());
            0
        }
        Err(e) => {
            let _ = writeln!(out, "{e:#}");
            1
        }
    }
}

/// What the helper prints for `action` on `input`.
fn answer(action: Option<&str>, input: &str) -> anyhow::Result<String> {
    match action {
        Some("get") => {
            let host = registry_host(input);
            if host.is_empty() {
                anyhow::bail!("get takes the registry's URL on stdin");
            }
            let stored = Stored::load()?;
            let Some(entry) = stored.registries.get(&host) else {
                eprintln!("docker-credential-regauth: not signed in to {host}: run `regauth login {host}`");
                anyhow::bail!(NOT_FOUND);
            };
            Ok(serde_json::to_string(&Credentials {
                server_url: input.trim().to_owned(),
                username: entry.username.clone(),
                secret: entry.secret.clone(),
            })?)
        }
        Some("store") => {
            let given: Credentials = serde_json::from_str(input).map_err(|_| {
                anyhow::anyhow!("store takes {{\"ServerURL\", \"Username\", \"Secret\"}} on stdin")
            })?;
            let host = registry_host(&given.server_url);
            if host.is_empty() || given.secret.is_empty() {
                anyhow::bail!("store needs a ServerURL and a Secret");
            }
            Stored::update(|stored| {
                // an identity token stored back by the docker CLI keeps
                // where it is revoked
                let revocation = stored
                    .registries
                    .get(&host)
                    .filter(|e| e.secret == given.secret)
                    .and_then(|e| e.revocation_endpoint.clone());
                stored.registries.insert(
                    host,
                    Entry {
                        username: given.username,
                        secret: given.secret,
                        revocation_endpoint: revocation,
                    },
                );
            })?;
            Ok(String::new())
        }
        Some("erase") => {
            let host = registry_host(input);
            Stored::update(|stored| stored.registries.remove(&host))?;
            Ok(String::new())
        }
        Some("list") => {
            let stored = Stored::load()?;
            let listed: std::collections::BTreeMap<&str, &str> = stored
                .registries
                .iter()
                .map(|(host, entry)| (host.as_str(), entry.username.as_str()))
                .collect();
            Ok(serde_json::to_string(&listed)?)
        }
        Some("version") => Ok(format!(
            "docker-credential-regauth {}\n",
            env!("CARGO_PKG_VERSION")
        )),
        _ => anyhow::bail!("usage: docker-credential-regauth store|get|erase|list|version"),
    }
}
