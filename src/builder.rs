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

use crate::app::{assemble, AppState, Live, Parts};
use crate::authorize::Authorizer;
use crate::config::error::invalid;
use crate::config::{Config, Draft, ProviderConfig, RawServer, RawToken, Seconds, SeparateRules};
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
        let file: PolicyFile = toml::from_str(text)
            .map_err(|e| Error::Config(invalid("rules", "(syntax)", e.message())))?;
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
        // The settings fill the sections a file would, and go through the
        // same validators; every other key keeps the file's default.
        let mut token = RawToken {
            issuer: Some(self.issuer.unwrap_or_else(|| "regauth".into())),
            services: Some(self.services),
            ..RawToken::default()
        };
        if let Some(lifetime) = self.lifetime {
            token.lifetime = Seconds(lifetime);
        }
        let draft = Draft {
            server: RawServer {
                realm: self.realm,
                anonymous: !self.refuse_anonymous,
                ..RawServer::default()
            },
            token,
            // the providers were built in code: the policy knows them by name
            providers: self
                .providers
                .iter()
                .map(|p| ProviderConfig::in_code(p.name(), p.kind()))
                .collect(),
            separate_rules: Some(SeparateRules {
                origin: "rules".into(),
                rules: self.rules,
            }),
            ..Draft::default()
        };
        let config = Config::from_draft("builder", draft)?;
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
    Error::Config(invalid("builder", key, message))
}

#[cfg(test)]
mod tests {
    use super::*;
    use async_trait::async_trait;
    use regauth_providers::{Credentials, Outcome, ProviderKind, Rejection};

    struct Host;

    #[async_trait]
    impl IdentityProvider for Host {
        fn name(&self) -> &str {
            "host"
        }
        fn kind(&self) -> ProviderKind {
            ProviderKind::Custom("host")
        }
        async fn authenticate(&self, _: &Credentials) -> Outcome {
            Outcome::Rejected(Rejection::WrongSecret)
        }
    }

    fn keyed() -> Builder {
        let (key, cert) =
            crate::keys::generate(crate::keys::KeyType::Es256, "t", Duration::from_secs(86400))
                .unwrap();
        Server::builder()
            .signing_key_pem(key.as_bytes(), cert.as_bytes())
            .unwrap()
            .provider(Arc::new(Host))
    }

    fn refused(builder: Builder) -> String {
        match builder.build_state() {
            Ok(_) => panic!("the builder accepted it"),
            Err(e) => e.to_string(),
        }
    }

    /// The builder's settings land in the sections a file would fill, and
    /// every other key keeps the file's default.
    #[tokio::test]
    async fn settings_fill_the_sections_and_the_rest_keeps_the_file_defaults() {
        let state = keyed()
            .issuer("my-app")
            .service("registry.example")
            .realm("https://app.example/registry-auth/auth")
            .token_lifetime(Duration::from_secs(600))
            .refuse_anonymous()
            .rules_toml("[[rule]]\nusers = [\"host:*\"]\nrepos = [\"x\"]\nactions = [\"pull\"]")
            .unwrap()
            .build_state()
            .unwrap();
        let config = &state.config;
        assert_eq!(config.origin, "builder");
        assert_eq!(config.token.issuer, "my-app");
        assert_eq!(config.token.services, ["registry.example"]);
        assert_eq!(config.token.lifetime, Duration::from_secs(600));
        assert!(!config.server.anonymous);
        assert_eq!(config.realm(), "https://app.example/registry-auth/auth");
        assert_eq!(config.providers[0].name(), "host");
        assert_eq!(config.policy.len(), 1);
        let file = Config::from_toml(
            "t",
            "[token]\nissuer = \"my-app\"\nservices = [\"registry.example\"]",
            &[],
        )
        .unwrap();
        assert_eq!(config.token.reuse_window, file.token.reuse_window);
        assert_eq!(config.cache.verdict_ttl, file.cache.verdict_ttl);
        assert_eq!(
            config.server.limits.max_scopes,
            file.server.limits.max_scopes
        );
        assert_eq!(config.state, file.state);
    }

    /// Settings are refused in the words a file's would be; the rules'
    /// errors name the rules.
    #[test]
    fn errors_name_the_builder_or_the_rules() {
        let short = refused(keyed().service("r").token_lifetime(Duration::from_secs(30)));
        assert!(
            short.starts_with("builder: token.lifetime: must be at least 60s"),
            "{short}"
        );
        let rule = refused(
            keyed()
                .service("r")
                .rules_toml("[[rule]]\nusers = [\"*\"]\nrepos = [\"x\"]\nactions = [\"pul\"]")
                .unwrap(),
        );
        assert!(
            rule.starts_with("rules: rule[0].actions[0]: unknown action `pul`"),
            "{rule}"
        );
        assert_eq!(
            refused(keyed()),
            "builder: service: name at least one service"
        );
    }
}
