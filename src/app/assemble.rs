//! Building an [`AppState`] from a configuration and its parts.

use std::sync::Arc;

use regauth_providers::entra::Entra;
use regauth_providers::github::GitHub;
use regauth_providers::ldap::Ldap;
use regauth_providers::oidc::Oidc;
use regauth_providers::static_users::StaticUsers;
use regauth_providers::IdentityProvider;

use super::files::{refresh_key, secret_key, signing_keys, tls_config};
use super::{AppState, Carry};
use crate::config::{self, Config, ProviderSettings};
use crate::identity::{Budgets, Chain, Throttle, VerdictCache};
use crate::issue::{Issuer, IssuerParts};
use crate::keys::KeyRing;
use crate::{app_passwords, authorize, keys, ops, refresh, state, Error};

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
                ProviderSettings::Entra(s) => Arc::new(Entra::new(&p.name, s).map_err(wrap)?),
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
        metrics: Arc::new(ops::metrics::Metrics::default()),
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
            let opened = state::open(&config.state).map_err(Error::State)?;
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
    pub metrics: Arc<ops::metrics::Metrics>,
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
    let app_passwords = app_passwords_of(&config, app_password_key, &store, &providers, &ledger)?;
    let mut providers = providers;
    if let Some(passwords) = &app_passwords {
        providers.push(Arc::new(app_passwords::AppPasswordProvider(
            passwords.clone(),
        )));
    }
    let policy = config.policy.clone();
    let authorizer = authorizer_of(&config, authorizer)?;
    let chain = chain_of(&config, providers, &refresh_secret, &store, &metrics)?;
    let realm = config.realm();
    let issuer = Issuer::new(
        IssuerParts {
            chain: chain.clone(),
            authorizer,
            keys,
            refresh: refresh_of(&config, &refresh_secret, ledger),
            devices: app_passwords.clone(),
        },
        &config,
    );
    let tls = config.server.tls.as_ref().map(tls_config).transpose()?;
    Ok(Arc::new(AppState {
        app_passwords,
        tls,
        issuer,
        config: Arc::new(config),
        policy,
        chain,
        store,
        backend,
        metrics,
        realm,
        readiness: tokio::sync::Mutex::new(None),
    }))
}

/// App passwords, when `[app_passwords]` is set (they need their key).
fn app_passwords_of(
    config: &Config,
    key: Option<Vec<u8>>,
    store: &Arc<dyn state::Store>,
    providers: &[Arc<dyn IdentityProvider>],
    ledger: &Arc<refresh::Ledger>,
) -> Result<Option<Arc<app_passwords::AppPasswords>>, Error> {
    match (&config.app_passwords, key) {
        (Some(section), Some(key)) => Ok(Some(Arc::new(app_passwords::AppPasswords::new(
            section.clone(),
            &key,
            store.clone(),
            providers.to_vec(),
            config.server.upstream_timeout,
            ledger.clone(),
        )))),
        (Some(_), None) => Err(Error::NoAppPasswordKey),
        (None, _) => Ok(None),
    }
}

/// Who decides grants: the embedder's authorizer, else the configuration's.
fn authorizer_of(
    config: &Config,
    mine: Option<Arc<dyn authorize::Authorizer>>,
) -> Result<Arc<dyn authorize::Authorizer>, Error> {
    let policy = config.policy.clone();
    Ok(match (mine, &config.authorizer) {
        (Some(mine), _) => mine,
        (None, config::AuthorizerConfig::Policy) => policy,
        (None, config::AuthorizerConfig::Webhook(hook)) => {
            Arc::new(authorize::WebhookAuthorizer::new(hook, policy).map_err(Error::Authorizer)?)
        }
    })
}

/// The provider chain, with its verdict cache and failed-login throttle.
fn chain_of(
    config: &Config,
    providers: Vec<Arc<dyn IdentityProvider>>,
    refresh_secret: &[u8],
    store: &Arc<dyn state::Store>,
    metrics: &Arc<ops::metrics::Metrics>,
) -> Result<Arc<Chain>, Error> {
    let pins = config
        .providers
        .iter()
        .map(|p| (p.name.clone(), p.usernames.clone()))
        .collect();
    let verdicts = VerdictCache::new(
        config.cache.verdict_ttl,
        config.cache.verdict_capacity,
        &keys::random_key()?,
    );
    // Replicas sharing the state backend share the refresh key, so their
    // account digests agree.
    let throttle_key = aws_lc_rs::hmac::sign(
        &aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, refresh_secret),
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
            spacing: config.cache.failure_spacing,
        },
        throttle_key.as_ref(),
        store.clone(),
    );
    Ok(Arc::new(
        Chain::new(
            providers,
            verdicts,
            throttle,
            config.server.upstream_timeout,
        )
        .with_pins(pins)
        .with_metrics(metrics.clone()),
    ))
}

/// Refresh tokens, when enabled, with each provider's snapshot age.
fn refresh_of(
    config: &Config,
    refresh_secret: &[u8],
    ledger: Arc<refresh::Ledger>,
) -> Option<refresh::RefreshTokens> {
    let snapshot_ages = config
        .providers
        .iter()
        .map(|p| (p.name.clone(), p.refresh_max_age))
        .collect();
    config.refresh.enabled.then(|| {
        refresh::RefreshTokens::with_ledger(refresh_secret, config.refresh.lifetime, ledger)
            .with_snapshot_ages(snapshot_ages)
    })
}
