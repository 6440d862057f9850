//! regauth as a library: `Server::builder()` assembles the token service
//! in code, from your providers, your authorizer (or rules), a signing key
//! held in memory and a few settings, without any file on disk, and gives
//! back an `axum::Router` to nest under any path of your own application.
//!
//! ```no_run
//! # async fn example() -> Result<(), regauth::Error> {
//! use std::sync::Arc;
//! let (key_pem, cert_pem) = regauth::keys::generate(
//!     regauth::keys::KeyType::Es256,
//!     "my-app",
//!     std::time::Duration::from_secs(365 * 86400),
//! )?;
//! # let my_users: Arc<dyn regauth_providers::IdentityProvider> = todo!();
//! let auth = regauth::Server::builder()
//!     .issuer("my-app")
//!     .service("registry.example.com")
//!     .realm("https://app.example.com/registry-auth/auth")
//!     .signing_key_pem(key_pem.as_bytes(), cert_pem.as_bytes())?
//!     .provider(my_users)
//!     .rules_toml(r#"
//!         [[rule]]
//!         users = ["*"]
//!         repos = ["${user}/*"]
//!         actions = ["pull", "push"]
//!     "#)?
//!     .build()?;
//! let app: axum::Router = axum::Router::new().nest("/registry-auth", auth);
//! # Ok(()) }
//! ```

use std::sync::Arc;
use std::time::Duration;

use regauth_providers::IdentityProvider;

use super::{assemble, AppState, Live, Parts};
use crate::authorize::Authorizer;
use crate::config::Config;
use crate::domain::policy::{PolicyFile, RuleConfig};
use crate::keys::{KeyRing, SigningKey};
use crate::Error;

/// The entry point: `Server::builder()`.
pub struct Server;

impl Server {
    /// A builder with no providers, no rules and no key yet.
    pub fn builder() -> Builder {
        Builder::default()
    }
}

/// Assembles a token service in code. Every setting not made here keeps
/// the default of the configuration file's key of the same name.
#[derive(Default)]
pub struct Builder {
    issuer: Option<String>,
    services: Vec<String>,
    realm: Option<String>,
    lifetime: Option<Duration>,
    refuse_anonymous: bool,
    providers: Vec<Arc<dyn IdentityProvider>>,
    rules: Vec<RuleConfig>,
    authorizer: Option<Arc<dyn Authorizer>>,
    key: Option<SigningKey>,
    refresh_secret: Option<Vec<u8>>,
    store: Option<Arc<dyn crate::state::Store>>,
}

impl Builder {
    /// The token issuer (the registry's `auth.token.issuer`).
    pub fn issuer(mut self, issuer: impl Into<String>) -> Self {
        self.issuer = Some(issuer.into());
        self
    }

    /// A service tokens may be issued for (the registry's
    /// `auth.token.service`); call once per service.
    pub fn service(mut self, service: impl Into<String>) -> Self {
        self.services.push(service.into());
        self
    }

    /// The public URL of the token endpoint, as the registry announces it
    /// (include the path you nest the router under).
    pub fn realm(mut self, realm: impl Into<String>) -> Self {
        self.realm = Some(realm.into());
        self
    }

    /// How long tokens live (at least 60 s; default 15 min).
    pub fn token_lifetime(mut self, lifetime: Duration) -> Self {
        self.lifetime = Some(lifetime);
        self
    }

    /// Refuse requests without credentials (by default they get what
    /// `anonymous` rules grant).
    pub fn refuse_anonymous(mut self) -> Self {
        self.refuse_anonymous = true;
        self
    }

    /// An identity provider, asked after those added before it.
    pub fn provider(mut self, provider: Arc<dyn IdentityProvider>) -> Self {
        self.providers.push(provider);
        self
    }

    /// A policy rule (see the README's Policy section).
    pub fn rule(mut self, rule: RuleConfig) -> Self {
        self.rules.push(rule);
        self
    }

    /// Policy rules as TOML `[[rule]]` tables.
    pub fn rules_toml(mut self, text: &str) -> Result<Self, Error> {
        let file: PolicyFile = toml::from_str(text).map_err(|e| {
            Error::Config(crate::config::ConfigError::Invalid {
                origin: "rules".into(),
                key: "(syntax)".into(),
                message: e.message().to_owned(),
            })
        })?;
        self.rules.extend(file.rule);
        Ok(self)
    }

    /// Your own authorizer instead of the rules.
    pub fn authorizer(mut self, authorizer: Arc<dyn Authorizer>) -> Self {
        self.authorizer = Some(authorizer);
        self
    }

    /// The signing key, parsed from PEM held in memory (a PKCS#8 key and
    /// the certificate chain whose leaf holds its public key).
    pub fn signing_key_pem(
        mut self,
        key_pem: &[u8],
        certificate_pem: &[u8],
    ) -> Result<Self, Error> {
        let key = SigningKey::from_pem(
            key_pem,
            certificate_pem,
            std::path::Path::new("(key in memory)"),
            std::path::Path::new("(certificate in memory)"),
        )?;
        self.key = Some(key);
        Ok(self)
    }

    /// A signing key already loaded.
    pub fn signing_key(mut self, key: SigningKey) -> Self {
        self.key = Some(key);
        self
    }

    /// The refresh-token key (at least 32 bytes; every instance that must
    /// accept another's refresh tokens needs the same). Default: random,
    /// so refresh tokens last as long as the process.
    pub fn refresh_key(mut self, secret: impl Into<Vec<u8>>) -> Self {
        self.refresh_secret = Some(secret.into());
        self
    }

    /// The state backend. Default: in memory.
    pub fn state(mut self, store: Arc<dyn crate::state::Store>) -> Self {
        self.store = Some(store);
        self
    }

    /// The shared state behind the router (for inspection and tests).
    pub fn build_state(self) -> Result<Arc<AppState>, Error> {
        let issuer = self.issuer.unwrap_or_else(|| "regauth".into());
        if self.services.is_empty() {
            return Err(config_error("service", "name at least one service"));
        }
        let key = self
            .key
            .ok_or_else(|| config_error("signing_key", "a signing key is required"))?;
        let secret = match self.refresh_secret {
            Some(secret) if secret.len() >= 32 => secret,
            Some(_) => return Err(config_error("refresh_key", "needs at least 32 bytes")),
            None => crate::keys::random_key()?.to_vec(),
        };
        // The settings as configuration text, so that they are validated
        // exactly as a file's would be.
        let mut text = String::from("[server]\n");
        if let Some(realm) = &self.realm {
            text.push_str(&format!("realm = {}\n", toml_string(realm)));
        }
        if self.refuse_anonymous {
            text.push_str("anonymous = false\n");
        }
        text.push_str(&format!(
            "[token]\nissuer = {}\nservices = [",
            toml_string(&issuer)
        ));
        let services: Vec<String> = self.services.iter().map(|s| toml_string(s)).collect();
        text.push_str(&services.join(", "));
        text.push_str("]\n");
        if let Some(lifetime) = self.lifetime {
            text.push_str(&format!("lifetime = {}\n", lifetime.as_secs()));
        }
        let mut config = Config::from_toml("builder", &text, &[])?;
        // the providers were built in code: the policy knows them by name
        config.providers = self
            .providers
            .iter()
            .map(|p| crate::config::ProviderConfig::in_code(p.name(), p.kind()))
            .collect();
        config.policy = Arc::new(
            crate::domain::policy::Policy::compile(&self.rules, "rule", &config.provider_infos())
                .map_err(|e| {
                Error::Config(crate::config::ConfigError::Invalid {
                    origin: "rules".into(),
                    key: e.path,
                    message: e.message,
                })
            })?,
        );
        let store = self
            .store
            .unwrap_or_else(|| Arc::new(crate::state::Embedded::in_memory()));
        assemble(
            config,
            Parts {
                providers: self.providers,
                keys: KeyRing::single(key),
                refresh_secret: secret,
                store,
                authorizer: self.authorizer,
                metrics: Arc::default(),
                app_password_key: None,
            },
        )
    }

    /// The token service as a router, to serve or to nest under a path.
    pub fn build(self) -> Result<axum::Router, Error> {
        Ok(crate::http::router(Live::new(self.build_state()?)))
    }
}

fn config_error(key: &str, message: &str) -> Error {
    Error::Config(crate::config::ConfigError::Invalid {
        origin: "builder".into(),
        key: key.into(),
        message: message.into(),
    })
}

/// A TOML basic string.
fn toml_string(value: &str) -> String {
    toml::Value::String(value.to_owned()).to_string()
}
