//! Wiring: the state requests are served from ([`AppState`], swapped
//! whole on reload by [`Live`]), assembled from a configuration and its
//! parts (keys, secrets, the state backend, providers).

use std::sync::Arc;

use crate::config::Config;
use crate::domain::policy::Policy;
use crate::identity::Chain;
use crate::issue::Issuer;
use crate::{app_passwords, config, ops, state};

mod assemble;
mod files;
mod reload;

pub use assemble::{assemble, build, build_carrying, build_with, providers, refresh_tokens, Parts};
pub use files::{open_state, refresh_key, secret_key, signing_key, signing_keys, tls_config};
pub use reload::{reload, spawn_file_watcher, watched_files};

/// Everything a request handler needs, shared by all of them. A reload
/// builds a new one from the new configuration and swaps it in whole
/// ([`Live`]); requests in flight finish on the one they started with.
pub struct AppState {
    /// The configuration this state was built from.
    pub config: Arc<Config>,
    /// The policy (the default authorizer, and `regauth explain`'s).
    pub policy: Arc<Policy>,
    /// The token pipeline with its keys, reuse cache and refresh tokens.
    pub issuer: Issuer,
    /// The provider chain that checks credentials: the issuer's, shared
    /// with the app-password page and the readiness report.
    pub chain: Arc<Chain>,
    /// The state backend (revocations, throttle counters, records), its
    /// records authenticated ([`state::Authenticated`]).
    pub store: Arc<dyn state::Store>,
    /// The same backend without the authenticating layer, which a reload
    /// carries over (and wraps again under its own refresh key).
    pub backend: Arc<dyn state::Store>,
    /// Counters on `/metrics`; they survive reloads.
    pub metrics: Arc<ops::metrics::Metrics>,
    /// The realm announced in `WWW-Authenticate`.
    pub realm: String,
    /// The last readiness report and when it was made (`/readyz`).
    pub readiness: tokio::sync::Mutex<Option<(std::time::Instant, serde_json::Value)>>,
    /// The HTTPS listener's certificate, if `server.tls_*` is set.
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// App passwords and their page, if `[app_passwords]` is set.
    pub app_passwords: Option<Arc<app_passwords::AppPasswords>>,
}

impl AppState {
    /// What the components report for `/metrics`.
    pub fn snapshot(&self) -> ops::metrics::Snapshot {
        let keys = self.issuer.keys();
        ops::metrics::Snapshot {
            verdicts: self.chain.cache_stats(),
            reused: self.issuer.reused(),
            signing_not_after: keys.not_after(),
            signing_keys: keys.published().count() as u64,
            providers: self
                .chain
                .providers()
                .iter()
                .map(|p| ops::metrics::ProviderReport {
                    name: p.name().to_owned(),
                    counters: p.counters(),
                    servers: p.servers(),
                })
                .collect(),
        }
    }
}

/// The state requests are served from, swapped whole on reload.
pub struct Live {
    state: arc_swap::ArcSwap<AppState>,
}

impl Live {
    /// Serves `state` until [`Live::swap`] replaces it.
    pub fn new(state: Arc<AppState>) -> Arc<Self> {
        Arc::new(Self {
            state: arc_swap::ArcSwap::new(state),
        })
    }

    /// The state a new request starts with.
    pub fn load(&self) -> Arc<AppState> {
        self.state.load_full()
    }

    /// Replaces the state; requests already running keep theirs.
    pub fn swap(&self, state: Arc<AppState>) {
        self.state.store(state);
    }
}

/// What a reload carries over from the state it replaces.
pub struct Carry {
    /// Metrics keep counting across reloads.
    pub metrics: Arc<ops::metrics::Metrics>,
    /// The state backend, kept when `[state]` did not change (so embedded
    /// throttle counters survive a reload).
    pub store: Option<(config::StateConfig, Arc<dyn state::Store>)>,
}

impl AppState {
    /// What a reload of this state keeps.
    pub fn carry(&self) -> Carry {
        Carry {
            metrics: self.metrics.clone(),
            store: Some((self.config.state.clone(), self.backend.clone())),
        }
    }
}
