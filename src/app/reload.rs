//! Reloading: a new state from the configuration's files, swapped in
//! whole; and the watcher that reloads when a key or certificate changes.

use std::sync::Arc;
use std::time::Duration;

use super::assemble::{build_carrying, providers};
use super::{AppState, Live};
use crate::config::Config;
use crate::{keys, Error};

/// Re-reads the whole configuration (providers, users files, rules, keys,
/// TLS) and swaps in a new state. On any error the old state stays and
/// the error names what is wrong. Settings of the socket itself
/// (`server.listen`, the connection limits) and the app-password page's
/// path need a restart.
pub fn reload(live: &Live, path: Option<&std::path::Path>) -> Result<Arc<AppState>, Error> {
    let config = Config::load(path)?;
    if config.providers.is_empty() {
        return Err(Error::NoProvider);
    }
    let old = live.load();
    if config.server.listen != old.config.server.listen
        || config.server.tls.is_some() != old.config.server.tls.is_some()
    {
        tracing::warn!(
            "server.listen and switching HTTPS on or off take effect at the next restart"
        );
    }
    let page = |c: &Config| c.app_passwords.as_ref().map(|a| a.path().to_owned());
    if page(&config).is_some() && page(&config) != page(&old.config) {
        tracing::warn!(
            "the app-password page's path (app_passwords.url, or turning it on) takes effect at the next restart"
        );
    }
    let providers = providers(&config)?;
    let state = build_carrying(config, providers, old.carry())?;
    live.swap(state.clone());
    Ok(state)
}

/// The files whose change triggers a reload without a signal: the HTTPS
/// certificate and key, and the signing keys (a Kubernetes Secret update,
/// `regauth keys rotate` on another host).
pub fn watched_files(config: &Config) -> Vec<std::path::PathBuf> {
    let token = &config.token;
    let mut files = vec![
        token.key.clone(),
        token.certificate.clone(),
        token.next_key.clone(),
        token.next_certificate.clone(),
        keys::staged_marker(&token.next_key),
    ];
    if let Some(tls) = &config.server.tls {
        files.push(tls.certificate.clone());
        files.push(tls.key.clone());
    }
    files
}

/// Polls [`watched_files`] every `every` and reloads when one changes.
pub fn spawn_file_watcher(
    live: Arc<Live>,
    path: Option<std::path::PathBuf>,
    every: Duration,
) -> tokio::task::JoinHandle<()> {
    fn stamps(files: &[std::path::PathBuf]) -> Vec<Option<std::time::SystemTime>> {
        files
            .iter()
            .map(|f| std::fs::metadata(f).and_then(|m| m.modified()).ok())
            .collect()
    }
    tokio::spawn(async move {
        let mut files = watched_files(&live.load().config);
        let mut seen = stamps(&files);
        loop {
            tokio::time::sleep(every).await;
            let now = stamps(&files);
            if now == seen {
                continue;
            }
            seen = now;
            match reload(&live, path.as_deref()) {
                Ok(state) => {
                    tracing::info!(kid = %state.issuer.keys().signing(crate::clock::now()).kid, "a key or certificate file changed: reloaded");
                    files = watched_files(&state.config);
                    seen = stamps(&files);
                }
                Err(e) => {
                    tracing::error!(error = %e, "a key or certificate file changed, but the reload failed; keeping the running state")
                }
            }
        }
    })
}
