//! regauth: a token server that bridges container registries (the Docker
//! token-auth protocol) and a company's identity providers.
//!
//! [`build`] turns a validated [`config::Config`] into an [`AppState`], and
//! [`app`] turns that into an axum `Router` that tests drive with `oneshot`
//! and [`serve`] runs on a socket. Identity providers live in the
//! `regauth-providers` crate; this crate never speaks LDAP or IdP HTTP.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod app_passwords;
pub mod audit;
pub mod authorize;
pub mod builder;
pub mod cache;
pub mod chain;
pub mod client;
pub mod config;
pub mod http;
pub mod issue;
pub mod keys;
pub mod logging;
pub mod metrics;
pub mod offboard;
pub mod pattern;
pub mod policy;
pub mod refresh;
pub mod scope;
pub mod seal;
pub mod server;
pub mod state;
pub mod throttle;
pub mod token;

use std::sync::Arc;
use std::time::Duration;

use regauth_providers::github::GitHub;
use regauth_providers::ldap::Ldap;
use regauth_providers::oidc::Oidc;
use regauth_providers::static_users::StaticUsers;
use regauth_providers::IdentityProvider;

use crate::cache::VerdictCache;
use crate::chain::Chain;
use crate::config::{Config, ProviderSettings};
use crate::keys::{KeyRing, SigningKey};
use crate::policy::Policy;
use crate::throttle::{Budgets, Throttle};

pub use builder::{Builder, Server};

/// Errors building the server from its configuration.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The configuration is invalid.
    #[error(transparent)]
    Config(#[from] config::ConfigError),
    /// A key or certificate (signing, refresh or TLS) could not be loaded or
    /// made.
    #[error(transparent)]
    Key(#[from] token::KeyError),
    /// A provider could not be built from its settings.
    #[error("provider {name}: {source}")]
    Provider {
        /// The provider's instance name.
        name: String,
        /// Why it could not be built.
        #[source]
        source: regauth_providers::Error,
    },
    /// A file could not be read or written.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// The state backend (or the authorizer webhook) could not be set up.
    #[error("state backend: {0}")]
    State(String),
    /// No `[[provider]]` is configured.
    #[error("no identity provider is configured ([[provider]]): nobody could log in. Mount a configuration with at least one provider (for the container image: /etc/regauth/regauth.toml)")]
    NoProvider,
}

/// Everything a request handler needs, shared by all of them. A reload
/// builds a new one from the new configuration and swaps it in whole
/// ([`Live`]); requests in flight finish on the one they started with.
pub struct AppState {
    /// The configuration this state was built from.
    pub config: Arc<Config>,
    /// The policy (the default authorizer, and `regauth explain`'s).
    pub policy: Arc<Policy>,
    /// Who decides grants.
    pub authorizer: Arc<dyn authorize::Authorizer>,
    /// The signing keys: the current one and a staged next one.
    pub keys: KeyRing,
    /// The provider chain that checks credentials.
    pub chain: Arc<Chain>,
    /// Recently signed tokens, reused within `token.reuse_window`.
    pub issued: cache::IssuedTokens,
    /// Refresh tokens, unless `refresh_tokens.enabled = false`.
    pub refresh: Option<refresh::RefreshTokens>,
    /// The state backend (revocations, throttle counters, records), its
    /// records authenticated ([`state::Authenticated`]).
    pub store: Arc<dyn state::Store>,
    /// The same backend without the authenticating layer, which a reload
    /// carries over (and wraps again under its own refresh key).
    pub backend: Arc<dyn state::Store>,
    /// Counters on `/metrics`; they survive reloads.
    pub metrics: Arc<metrics::Metrics>,
    /// The realm announced in `WWW-Authenticate`.
    pub realm: String,
    /// The last readiness report and when it was made (`/readyz`).
    pub readiness: tokio::sync::Mutex<Option<(std::time::Instant, serde_json::Value)>>,
    /// The HTTPS listener's certificate, if `server.tls_*` is set.
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// App passwords and their page, if `[app_passwords]` is set.
    pub app_passwords: Option<Arc<app_passwords::AppPasswords>>,
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
    pub metrics: Arc<metrics::Metrics>,
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
                ProviderSettings::Gitlab(s) => {
                    Arc::new(regauth_providers::gitlab::GitLab::new(&p.name, s).map_err(wrap)?)
                }
                ProviderSettings::Gitea(s) => {
                    Arc::new(regauth_providers::gitea::Gitea::new(&p.name, s).map_err(wrap)?)
                }
                ProviderSettings::Oidc(s) => Arc::new(Oidc::new(&p.name, s).map_err(wrap)?),
                ProviderSettings::Webhook(s) => {
                    Arc::new(regauth_providers::webhook::Webhook::new(&p.name, s).map_err(wrap)?)
                }
                ProviderSettings::InCode { .. } => {
                    return Err(wrap(regauth_providers::Error::Config(
                        "a provider built in code cannot be built from a configuration".into(),
                    )))
                }
            })
        })
        .collect()
}

/// Loads the signing keys: the current one, generating a key pair first
/// when neither its key nor its certificate exists, and a staged next one
/// (`regauth keys rotate`) if its files exist.
pub fn signing_keys(config: &Config) -> Result<KeyRing, Error> {
    let current = signing_key(config)?.with_x5c(config.token.x5c);
    let next = keys::load_staged(
        &config.token.next_key,
        &config.token.next_certificate,
        config.token.rotation_overlap,
    )?
    .map(|staged| keys::Staged {
        key: staged.key.with_x5c(config.token.x5c),
        ..staged
    });
    if let Some(staged) = &next {
        tracing::info!(
            next_kid = %staged.key.kid,
            switch_at = %token::rfc3339(staged.switch_at),
            "a next signing key is staged: published now, signing from switch_at"
        );
    }
    Ok(KeyRing { current, next })
}

/// Loads the current signing key, generating a development key pair first
/// when neither the key nor the certificate exists.
pub fn signing_key(config: &Config) -> Result<SigningKey, Error> {
    let (key, cert) = (&config.token.key, &config.token.certificate);
    if !key.exists() && !cert.exists() {
        let (key_pem, cert_pem) = token::generate(
            token::KeyType::Es256,
            &config.token.issuer,
            Duration::from_secs(365 * 24 * 3600),
        )?;
        token::write_key_files(key, cert, &key_pem, &cert_pem, token::IfExists::Refuse)?;
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

/// The refresh-token key (`refresh_tokens.key_file`), generated (32
/// random bytes, mode 0600) when missing. Replicas must share it.
pub fn refresh_key(config: &Config) -> Result<Vec<u8>, Error> {
    secret_key(&config.refresh.key_file, "refresh-token")
}

/// A secret key file (`what` key, for messages), generated (32 random
/// bytes, base64, mode 0600) when missing; refused when it is not such a
/// key (a placeholder, a short or patterned text) or readable by everyone
/// (see [`keys::load_secret_key`]). Replicas must share it.
pub fn secret_key(path: &std::path::Path, what: &str) -> Result<Vec<u8>, Error> {
    if !path.exists() {
        keys::write_secret_file(path, &keys::new_secret_key_text()?)?;
        tracing::warn!(key = %path.display(), "generated a new {what} key; replicas must share this file");
    }
    Ok(keys::load_secret_key(path, what)?)
}

/// The configured state backend, its records authenticated under the
/// existing refresh key (for the command line, which must not make a
/// key: records under a new one would be refused by the servers).
pub fn open_state(config: &Config) -> Result<Arc<dyn state::Store>, Error> {
    let path = &config.refresh.key_file;
    if !path.exists() {
        return Err(Error::Key(token::KeyError::Invalid {
            path: path.display().to_string(),
            message: "there is no refresh-token key yet: start `regauth serve` once with this configuration (or copy the servers' key here)".into(),
        }));
    }
    let key = keys::load_secret_key(path, "refresh-token")?;
    let backend = state::open(&config.state).map_err(|e| Error::State(e.0))?;
    Ok(Arc::new(state::Authenticated::new(
        backend,
        state::records_key(&key),
    )))
}

/// Refresh tokens sealed under the refresh key, so every replica that
/// shares the key accepts them. `None` when disabled.
pub fn refresh_tokens(
    config: &Config,
    secret: &[u8],
    store: Arc<dyn state::Store>,
) -> Option<refresh::RefreshTokens> {
    config
        .refresh
        .enabled
        .then(|| refresh::RefreshTokens::new(secret, config.refresh.lifetime, store))
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
    let carry = Carry {
        metrics: Arc::new(metrics::Metrics::default()),
        store: None,
    };
    build_carrying(config, providers, carry)
}

/// Builds a new state for a reload, keeping what `carry` holds. Keys,
/// the refresh key and the state backend come from the configuration's
/// files.
pub fn build_carrying(
    config: Config,
    providers: Vec<Arc<dyn IdentityProvider>>,
    carry: Carry,
) -> Result<Arc<AppState>, Error> {
    let keys = signing_keys(&config)?;
    let refresh_secret = refresh_key(&config)?;
    let app_password_key = match &config.app_passwords {
        Some(section) => Some(secret_key(&section.key_file, "app-password")?),
        None => None,
    };
    let store = match carry.store {
        Some((state, store)) if state == config.state => store,
        _ => {
            let opened = state::open(&config.state).map_err(|e| Error::State(e.0))?;
            Arc::new(state::Metered::new(opened, carry.metrics.clone())) as Arc<dyn state::Store>
        }
    };
    assemble(
        config,
        Parts {
            providers,
            keys,
            refresh_secret,
            store,
            authorizer: None,
            metrics: carry.metrics,
            app_password_key,
        },
    )
}

/// What a state is assembled from besides its configuration: everything
/// that may come from files or from the code embedding regauth.
pub struct Parts {
    /// The identity providers, in the order to ask them.
    pub providers: Vec<Arc<dyn IdentityProvider>>,
    /// The signing keys.
    pub keys: KeyRing,
    /// The refresh-token key (at least 32 bytes; replicas share it).
    pub refresh_secret: Vec<u8>,
    /// The state backend (its records are authenticated under a key
    /// derived from `refresh_secret`).
    pub store: Arc<dyn state::Store>,
    /// Who decides grants; `None`: the configuration's (`[authorizer]`).
    pub authorizer: Option<Arc<dyn authorize::Authorizer>>,
    /// The metrics to count into.
    pub metrics: Arc<metrics::Metrics>,
    /// The app-password key (at least 32 bytes; replicas share it), when
    /// `[app_passwords]` is set.
    pub app_password_key: Option<Vec<u8>>,
}

/// Assembles a state from a configuration and its parts.
pub fn assemble(config: Config, parts: Parts) -> Result<Arc<AppState>, Error> {
    let Parts {
        providers,
        keys,
        refresh_secret,
        store,
        authorizer,
        metrics,
        app_password_key,
    } = parts;
    let backend = store;
    let store: Arc<dyn state::Store> = Arc::new(state::Authenticated::new(
        backend.clone(),
        state::records_key(&refresh_secret),
    ));
    // One ledger per state, for refresh tokens and app passwords alike.
    let ledger = Arc::new(refresh::Ledger::new(store.clone(), config.refresh.lifetime));
    let app_passwords = match (&config.app_passwords, app_password_key) {
        (Some(section), Some(key)) => Some(Arc::new(app_passwords::AppPasswords::new(
            section.clone(),
            &key,
            store.clone(),
            providers.clone(),
            config.server.upstream_timeout,
            ledger.clone(),
        ))),
        (Some(_), None) => {
            return Err(Error::State(
                "[app_passwords] needs its key (app_passwords.key_file)".into(),
            ))
        }
        (None, _) => None,
    };
    let mut providers = providers;
    if let Some(passwords) = &app_passwords {
        providers.push(Arc::new(app_passwords::AppPasswordProvider(
            passwords.clone(),
        )));
    }
    let policy = config.policy.clone();
    let authorizer: Arc<dyn authorize::Authorizer> = match (authorizer, &config.authorizer) {
        (Some(mine), _) => mine,
        (None, config::AuthorizerConfig::Policy) => policy.clone(),
        (None, config::AuthorizerConfig::Webhook(hook)) => {
            Arc::new(authorize::Webhook::new(hook, policy.clone()).map_err(|e| Error::State(e.0))?)
        }
    };
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
    // Replicas sharing the state backend share the refresh key, so their
    // account digests agree.
    let throttle_key = aws_lc_rs::hmac::sign(
        &aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, &refresh_secret),
        b"regauth throttle key v1",
    );
    let throttle = Throttle::new(
        Budgets {
            per_account: config.cache.max_failures,
            per_familiar_network: config.cache.max_familiar_failures,
            familiar_for: config.cache.familiar_for,
            per_client: config.cache.max_client_failures,
            per_provider_per_second: config.cache.max_provider_failures_per_second,
            window: config.cache.failure_window,
        },
        throttle_key.as_ref(),
        store.clone(),
    );
    let chain = Arc::new(
        Chain::new(
            providers,
            verdicts,
            throttle,
            config.server.upstream_timeout,
        )
        .with_pins(pins)
        .with_metrics(metrics.clone()),
    );
    let realm = config.realm();
    let issued = cache::IssuedTokens::new(config.token.reuse_window);
    let refresh = config.refresh.enabled.then(|| {
        refresh::RefreshTokens::with_ledger(&refresh_secret, config.refresh.lifetime, ledger)
    });
    let tls = config.server.tls.as_ref().map(tls_config).transpose()?;
    Ok(Arc::new(AppState {
        app_passwords,
        tls,
        issued,
        refresh,
        config: Arc::new(config),
        policy,
        authorizer,
        keys,
        chain,
        store,
        backend,
        metrics,
        realm,
        readiness: tokio::sync::Mutex::new(None),
    }))
}

/// The HTTPS listener's TLS configuration (rustls with aws-lc-rs,
/// HTTP/1.1 only) from a PEM certificate chain and key.
pub fn tls_config(files: &config::TlsFiles) -> Result<Arc<rustls::ServerConfig>, Error> {
    use rustls_pki_types::pem::PemObject as _;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    let invalid = |path: &std::path::Path, message: String| {
        Error::Key(token::KeyError::Invalid {
            path: path.display().to_string(),
            message,
        })
    };
    let chain = CertificateDer::pem_file_iter(&files.certificate)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| {
            invalid(
                &files.certificate,
                format!("not a PEM certificate chain ({e})"),
            )
        })?;
    if chain.is_empty() {
        return Err(invalid(&files.certificate, "no CERTIFICATE block".into()));
    }
    let key = PrivateKeyDer::from_pem_file(&files.key)
        .map_err(|e| invalid(&files.key, format!("not a PEM private key ({e})")))?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut tls = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| invalid(&files.certificate, e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| invalid(&files.key, format!("does not fit the certificate: {e}")))?;
    tls.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(tls))
}

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
                    tracing::info!(kid = %state.keys.signing(token::now()).kid, "a key or certificate file changed: reloaded");
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

/// The application as a router (no socket): what tests drive.
pub fn app(state: Arc<AppState>) -> axum::Router {
    http::router(Live::new(state))
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
    server::serve(Live::new(state), listener, shutdown).await
}
