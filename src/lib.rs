//! regauth: a token server that bridges container registries (the Docker
//! token-auth protocol) and a company's identity providers.
//!
//! [`build`] turns a validated [`config::Config`] into an [`AppState`], and
//! [`app`] turns that into an axum `Router` that tests drive with `oneshot`
//! and [`serve`] runs on a socket. Identity providers live in the
//! `regauth-providers` crate; this crate never speaks LDAP or IdP HTTP.

#![forbid(unsafe_code)]

pub mod audit;
pub mod cache;
pub mod chain;
pub mod config;
pub mod http;
pub mod issue;
pub mod logging;
pub mod metrics;
pub mod pattern;
pub mod policy;
pub mod refresh;
pub mod scope;
pub mod server;
pub mod throttle;
pub mod token;

use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use regauth_providers::github::GitHub;
use regauth_providers::ldap::Ldap;
use regauth_providers::oidc::Oidc;
use regauth_providers::static_users::StaticUsers;
use regauth_providers::IdentityProvider;

use crate::cache::VerdictCache;
use crate::chain::Chain;
use crate::config::{Config, ProviderSettings};
use crate::policy::Policy;
use crate::throttle::{Budgets, Throttle};
use crate::token::SigningKey;

/// Errors building the server from its configuration.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Config(#[from] config::ConfigError),
    #[error(transparent)]
    Key(#[from] token::KeyError),
    #[error("provider {name}: {source}")]
    Provider {
        name: String,
        #[source]
        source: regauth_providers::Error,
    },
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// Everything a request handler needs, shared by all of them.
pub struct AppState {
    pub config: Arc<Config>,
    pub policy: ArcSwap<Policy>,
    pub key: SigningKey,
    pub chain: Chain,
    /// Recently signed tokens, reused within `token.reuse_window`.
    pub issued: cache::IssuedTokens,
    /// Refresh tokens, unless `refresh_tokens.enabled = false`.
    pub refresh: Option<refresh::RefreshTokens>,
    pub metrics: metrics::Metrics,
    /// The realm announced in `WWW-Authenticate`.
    pub realm: String,
    /// The last readiness report and when it was made (`/readyz`).
    pub readiness: tokio::sync::Mutex<Option<(std::time::Instant, (bool, serde_json::Value))>>,
}

impl AppState {
    /// Re-reads and swaps in the policy; on error the old one stays.
    pub fn reload_policy(&self) -> Result<usize, config::ConfigError> {
        let policy = self.config.load_policy()?;
        let rules = policy.len();
        self.policy.store(Arc::new(policy));
        Ok(rules)
    }
}

/// Builds the providers named in the configuration.
pub fn providers(config: &Config) -> Result<Vec<Arc<dyn IdentityProvider>>, Error> {
    config
        .providers
        .iter()
        .map(|p| -> Result<Arc<dyn IdentityProvider>, Error> {
            let wrap = |source| Error::Provider {
                name: p.name.clone(),
                source,
            };
            Ok(match &p.settings {
                ProviderSettings::Static(s) => {
                    Arc::new(StaticUsers::load(&p.name, s).map_err(wrap)?)
                }
                ProviderSettings::Ldap(s) => Arc::new(Ldap::new(&p.name, s).map_err(wrap)?),
                ProviderSettings::Github(s) => Arc::new(GitHub::new(&p.name, s).map_err(wrap)?),
                ProviderSettings::Oidc(s) => Arc::new(Oidc::new(&p.name, s).map_err(wrap)?),
            })
        })
        .collect()
}

/// Loads the signing key, generating a development key pair first when
/// neither the key nor the certificate exists.
pub fn signing_key(config: &Config) -> Result<SigningKey, Error> {
    let (key, cert) = (&config.token.key, &config.token.certificate);
    if !key.exists() && !cert.exists() {
        let (key_pem, cert_pem) = token::generate(
            token::KeyType::Es256,
            &config.token.issuer,
            Duration::from_secs(365 * 24 * 3600),
        )?;
        token::write_key_files(key, cert, &key_pem, &cert_pem, false)?;
        tracing::warn!(
            key = %key.display(),
            certificate = %cert.display(),
            "generated a new ES256 signing key and self-signed certificate; give the certificate to the registry as rootcertbundle"
        );
    }
    let signing = SigningKey::load(key, cert)?;
    let left = signing.not_after - token::now();
    if left <= 0 {
        tracing::error!(certificate = %cert.display(), "the signing certificate has expired: registries will reject every token");
    } else if left < 30 * 24 * 3600 {
        tracing::warn!(certificate = %cert.display(), days_left = left / 86400, "the signing certificate expires soon: rotate it");
    }
    Ok(signing)
}

/// Refresh tokens keyed by the signing key, so every replica that shares
/// the key accepts them. `None` when disabled.
pub fn refresh_tokens(config: &Config) -> Result<Option<refresh::RefreshTokens>, Error> {
    if !config.refresh.enabled {
        return Ok(None);
    }
    let secret = std::fs::read(&config.token.key)?;
    Ok(Some(refresh::RefreshTokens::new(
        &secret,
        config.refresh.lifetime,
        Box::new(refresh::FileStore::new(&config.refresh.state_dir)),
    )))
}

/// Builds the shared state from a validated configuration.
pub fn build(config: Config) -> Result<Arc<AppState>, Error> {
    let providers = providers(&config)?;
    build_with(config, providers)
}

/// Builds the shared state with the given providers instead of the
/// configured ones (for embedding and for tests with fake providers).
pub fn build_with(
    config: Config,
    providers: Vec<Arc<dyn IdentityProvider>>,
) -> Result<Arc<AppState>, Error> {
    let policy = config.load_policy()?;
    let key = signing_key(&config)?;
    let pins = config
        .providers
        .iter()
        .map(|p| (p.name.clone(), p.usernames.clone()))
        .collect();
    let verdicts = VerdictCache::new(
        config.cache.verdict_ttl,
        config.cache.verdict_capacity,
        &cache::random_key()?,
    );
    let throttle = Throttle::new(
        Budgets {
            per_account: config.cache.max_failures,
            per_client: config.cache.max_client_failures,
            per_provider_per_second: config.cache.max_provider_failures_per_second,
            window: config.cache.failure_window,
        },
        &cache::random_key()?,
    );
    let chain = Chain::new(
        providers,
        verdicts,
        throttle,
        config.server.upstream_timeout,
    )
    .with_pins(pins);
    let realm = config.realm();
    let issued = cache::IssuedTokens::new(config.token.reuse_window);
    let refresh = refresh_tokens(&config)?;
    Ok(Arc::new(AppState {
        issued,
        refresh,
        config: Arc::new(config),
        policy: ArcSwap::from_pointee(policy),
        key,
        chain,
        metrics: metrics::Metrics::default(),
        realm,
        readiness: tokio::sync::Mutex::new(None),
    }))
}

/// The application as a router (no socket): what tests drive.
pub fn app(state: Arc<AppState>) -> axum::Router {
    http::router(state)
}

/// Serves until `shutdown` completes, then drains in-flight requests for
/// at most `server.shutdown_timeout` (see [`server`] for the bounds every
/// connection is held to).
pub async fn serve<F>(
    state: Arc<AppState>,
    listener: tokio::net::TcpListener,
    shutdown: F,
) -> std::io::Result<()>
where
    F: std::future::Future<Output = ()> + Send + 'static,
{
    server::serve(state, listener, shutdown).await
}
