//! Configuration: one TOML file (the embedded default when none is given),
//! overridden by `REGAUTH_SECTION__KEY` environment variables, validated
//! once into a [`Config`].
//!
//! Each section has its own file here: its raw serde type with the
//! defaults on its fields, its validated type, and the validator that turns
//! one into the other. `Config::validate` only composes them, and
//! `Server::builder()` fills the same raw sections in code and goes
//! through the same validators (`Draft`).
//!
//! Every error names the offending key path (`token.lifetime`,
//! `rule[3].actions[0]`), since that is what `regauth check` prints. Nothing
//! after loading re-parses strings. Secrets are never echoed in errors.
//!
//! Some keys stay where earlier versions filed them, since their names are
//! the contract. This is where they go:
//!
//! | key | what it is |
//! |---|---|
//! | `cache.failure_window`, `cache.max_failures`, `cache.max_familiar_failures`, `cache.familiar_for`, `cache.max_client_failures`, `cache.max_provider_failures_per_second` | the failed-login throttle's budgets, read into [`CacheConfig`] and handed to the throttle by `app::assemble` as `identity::Budgets` (`window`, `per_account`, `per_familiar_network`, `familiar_for`, `per_client`, `per_provider_per_second`) |
//! | `refresh_tokens.state_dir` | the older name of `state.dir`, and its default |
//! | `server.request_timeout` | the earlier name of `server.upstream_timeout` |

use std::path::Path;
use std::sync::Arc;

use crate::domain::policy::{Policy, ProviderInfo, RuleConfig};
use app_passwords::{validate_app_passwords, ProviderFacts, RawAppPasswords};

mod app_passwords;
mod authorizer;
mod cache;
pub(crate) mod error;
mod providers;
mod raw;
mod refresh;
mod robots;
mod rules;
mod server;
mod state;
mod token;
mod warnings;

pub use app_passwords::{AppPasswordsConfig, PROVIDER_NAME};
pub use authorizer::{AuthorizerConfig, WebhookAuthorizerConfig};
pub use cache::CacheConfig;
pub use error::ConfigError;
pub use providers::{ProviderConfig, ProviderSettings, UsernamePin, DEFAULT_REFRESH_MAX_AGE};
pub use refresh::RefreshConfig;
pub use regauth_providers::Seconds;
pub use robots::{RobotsConfig, TeamGroup};
pub use server::{Limits, ServerConfig, Timeouts, TlsFiles};
pub use state::{Backend, RedisConfig, StateConfig};
pub use token::TokenConfig;

use authorizer::{validate_authorizer, RawAuthorizer};
use cache::{validate_cache, RawCache};
use error::{invalid, line_of, read_text};
use providers::validate_providers;
use raw::{apply_override, RawConfig};
use refresh::{validate_refresh, RawRefresh};
use rules::validate_rules;
pub(crate) use rules::SeparateRules;
use server::validate_server;
pub(crate) use server::RawServer;
use state::{validate_state, RawState};
use token::validate_token;
pub(crate) use token::RawToken;

/// The default configuration, compiled into the binary.
pub const EMBEDDED: &str = include_str!("../../config/regauth.toml");
/// Where `serve` looks when no `--config` is given.
pub const DEFAULT_PATH: &str = "config/regauth.toml";
const ENV_PREFIX: &str = "REGAUTH_";

/// The validated configuration.
#[derive(Debug)]
pub struct Config {
    /// Where it came from (a path, or `embedded default`).
    pub origin: String,
    /// The `[server]` section.
    pub server: ServerConfig,
    /// The `[token]` section.
    pub token: TokenConfig,
    /// The `[cache]` section.
    pub cache: CacheConfig,
    /// The `[refresh_tokens]` section.
    pub refresh: RefreshConfig,
    /// The `[state]` section.
    pub state: StateConfig,
    /// The `[[provider]]` tables, in the order they are asked.
    pub providers: Vec<ProviderConfig>,
    /// The policy, compiled once: inline rules, then the policy file's.
    pub policy: Arc<Policy>,
    /// Who decides grants: the policy, or a webhook.
    pub authorizer: AuthorizerConfig,
    /// `[app_passwords]`: app passwords and their page, when present.
    pub app_passwords: Option<AppPasswordsConfig>,
}

/// A configuration before validation, typed: the sections a file is read
/// into, or that code fills in (`Server::builder()`), each starting at the
/// file's defaults, with the providers already typed. [`Config::from_draft`]
/// validates it section by section, as it does a file.
#[derive(Debug, Default)]
pub(crate) struct Draft {
    /// `[server]`.
    pub(crate) server: RawServer,
    /// `[token]`.
    pub(crate) token: RawToken,
    /// `[cache]`.
    pub(crate) cache: RawCache,
    /// `[refresh_tokens]`.
    pub(crate) refresh_tokens: RawRefresh,
    /// `[state]`.
    pub(crate) state: RawState,
    /// `[authorizer]`.
    pub(crate) authorizer: RawAuthorizer,
    /// `[app_passwords]`, when present.
    pub(crate) app_passwords: Option<RawAppPasswords>,
    /// `[robots]`, when present.
    pub(crate) robots: Option<robots::RawRobots>,
    /// The providers: the `[[provider]]` tables, validated, or providers
    /// built in code.
    pub(crate) providers: Vec<ProviderConfig>,
    /// The configuration's own `[[rule]]` tables.
    pub(crate) rules: Vec<RuleConfig>,
    /// Rules kept apart: the policy file's, or those handed to the builder.
    pub(crate) separate_rules: Option<SeparateRules>,
}

/// `[app_passwords]` with `[robots]` validated into it: team robots live
/// in its records and on its page, so they need it.
fn with_robots(
    origin: &str,
    app_passwords: Option<AppPasswordsConfig>,
    robots: Option<robots::RawRobots>,
    providers: &[ProviderConfig],
) -> Result<Option<AppPasswordsConfig>, ConfigError> {
    let Some(raw) = robots else {
        return Ok(app_passwords);
    };
    let Some(mut section) = app_passwords else {
        return Err(invalid(
            origin,
            "robots",
            "team robots need [app_passwords] (their key, records and page)",
        ));
    };
    let names: Vec<&str> = providers.iter().map(|p| p.name.as_str()).collect();
    section.robots = Some(robots::validate_robots(origin, raw, &names)?);
    Ok(Some(section))
}

impl Config {
    /// Loads `path`, or the default path if it exists, or the embedded
    /// default; then applies `REGAUTH_*` overrides from the environment.
    pub fn load(path: Option<&Path>) -> Result<Self, ConfigError> {
        let env: Vec<(String, String)> = std::env::vars()
            .filter(|(k, _)| k.starts_with(ENV_PREFIX) && k.contains("__"))
            .collect();
        let (origin, text) = match path {
            Some(path) => (path.display().to_string(), read_text(path)?),
            None if Path::new(DEFAULT_PATH).exists() => {
                (DEFAULT_PATH.to_owned(), read_text(Path::new(DEFAULT_PATH))?)
            }
            None => ("embedded default".to_owned(), EMBEDDED.to_owned()),
        };
        Self::from_toml(&origin, &text, &env)
    }

    /// Parses and validates configuration text with the given overrides.
    pub fn from_toml(
        origin: &str,
        text: &str,
        env: &[(String, String)],
    ) -> Result<Self, ConfigError> {
        let mut value: toml::Value = toml::from_str(text).map_err(|e| {
            invalid(
                origin,
                "(syntax)",
                e.message().to_owned() + &line_of(text, e.span()),
            )
        })?;
        for (name, raw) in env {
            apply_override(&mut value, name, raw).map_err(|m| invalid(origin, name, m))?;
        }
        let raw: RawConfig = serde_path_to_error::deserialize(value).map_err(|e| {
            let key = e.path().to_string();
            invalid(origin, key, e.into_inner().message().to_owned())
        })?;
        Self::validate(origin, raw)
    }

    /// The file's sections, validated: its providers and its policy file
    /// first, then the rest as for any [`Draft`].
    fn validate(origin: &str, raw: RawConfig) -> Result<Self, ConfigError> {
        let providers = validate_providers(origin, raw.provider)?;
        let separate_rules = match &raw.policy {
            Some(path) => Some(SeparateRules::read(path)?),
            None => None,
        };
        Self::from_draft(
            origin,
            Draft {
                server: raw.server,
                token: raw.token,
                cache: raw.cache,
                refresh_tokens: raw.refresh_tokens,
                state: raw.state,
                authorizer: raw.authorizer,
                app_passwords: raw.app_passwords,
                robots: raw.robots,
                providers,
                rules: raw.rule,
                separate_rules,
            },
        )
    }

    /// Validates a configuration section by section.
    pub(crate) fn from_draft(origin: &str, draft: Draft) -> Result<Self, ConfigError> {
        let server = validate_server(origin, draft.server)?;
        let token = validate_token(origin, draft.token)?;
        let policy = validate_rules(origin, draft.rules, draft.separate_rules, &draft.providers)?;
        let app_passwords = match draft.app_passwords {
            Some(section) => {
                let facts: Vec<ProviderFacts<'_>> = draft
                    .providers
                    .iter()
                    .map(|p| ProviderFacts {
                        name: &p.name,
                        checks_passwords: p.settings.checks_passwords(),
                        browser_login: p.settings.browser_login(),
                    })
                    .collect();
                Some(validate_app_passwords(
                    origin,
                    section,
                    &facts,
                    &server.realm(),
                )?)
            }
            None => None,
        };
        let app_passwords = with_robots(origin, app_passwords, draft.robots, &draft.providers)?;
        // `state.dir` defaults to `refresh_tokens.state_dir`, its older name.
        let legacy_state_dir = draft.refresh_tokens.state_dir.clone();
        Ok(Self {
            origin: origin.to_owned(),
            server,
            token,
            refresh: validate_refresh(origin, draft.refresh_tokens)?,
            cache: validate_cache(origin, draft.cache)?,
            state: validate_state(origin, draft.state, legacy_state_dir)?,
            authorizer: validate_authorizer(origin, draft.authorizer)?,
            providers: draft.providers,
            policy: Arc::new(policy),
            app_passwords,
        })
    }

    /// What the policy needs to know about the configured providers.
    pub fn provider_infos(&self) -> Vec<ProviderInfo> {
        self.providers.iter().map(ProviderConfig::info).collect()
    }

    /// The realm URL for `WWW-Authenticate` and the registry configuration.
    pub fn realm(&self) -> String {
        self.server.realm()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    const MINIMAL: &str = r#"
        [token]
        issuer = "regauth"
        services = ["registry"]
    "#;

    /// Review (2026-12-01) M10: plaintext transports start, but `check`
    /// says so, naming the provider.
    #[test]
    fn plaintext_transports_are_warned_about() {
        let text = format!(
            r#"{MINIMAL}
            [[provider]]
            name = "sso"
            kind = "oidc"
            issuer = "http://sso.corp.example/realms/main"
            audiences = ["registry"]
            [[provider]]
            name = "dir"
            kind = "ldap"
            url = "ldap://dc.corp.example"
            bind_dn = "cn=x"
            bind_password_env = "PATH"
            user_base = "dc=corp"
            [[provider]]
            name = "git"
            kind = "gitlab"
            url = "http://gitlab.corp.example"
            groups = ["acme"]
            [[provider]]
            name = "local"
            kind = "oidc"
            issuer = "http://127.0.0.1:8080"
            audiences = ["registry"]
            "#
        );
        let config = Config::from_toml("t.toml", &text, &[]).unwrap();
        let warnings = config.warnings().join("\n");
        for provider in ["provider sso:", "provider dir:", "provider git:"] {
            assert!(warnings.contains(provider), "{provider}: {warnings}");
        }
        assert!(
            !warnings.contains("provider local:"),
            "loopback is fine: {warnings}"
        );
    }

    /// Today's crane refused the default realm, `http://127.0.0.1:5001/auth`
    /// (go-containerregistry refuses loopback and private addresses): on
    /// loopback over http the default names `localhost`, and `check` warns
    /// about a realm that is such an address.
    #[test]
    fn the_realm_is_one_go_containerregistry_clients_accept() {
        let realm_of = |server: &str| {
            let text = format!("{MINIMAL}\n[server]\n{server}");
            let config = Config::from_toml("t.toml", &text, &[]).unwrap();
            let warned = config.warnings().iter().any(|w| w.contains("server.realm"));
            (config.realm(), warned)
        };
        assert_eq!(
            realm_of("listen = \"127.0.0.1:5001\""),
            ("http://localhost:5001/auth".to_owned(), false)
        );
        assert_eq!(
            realm_of("listen = \"[::1]:5001\""),
            ("http://localhost:5001/auth".to_owned(), false)
        );
        assert_eq!(
            realm_of("realm = \"https://auth.corp.example/auth\""),
            ("https://auth.corp.example/auth".to_owned(), false)
        );
        for realm in [
            "http://10.1.2.3:5001/auth",
            "https://192.168.0.9/auth",
            "https://127.0.0.1:5001/auth",
            "https://[fd00::1]/auth",
            "https://[fe80::1]/auth",
        ] {
            let (_, warned) = realm_of(&format!("realm = \"{realm}\""));
            assert!(warned, "{realm}");
        }
        let (realm, warned) = realm_of("listen = \"0.0.0.0:5001\"");
        assert!(warned, "{realm}");
        let (_, warned) = realm_of("realm = \"https://203.0.113.7/auth\"");
        assert!(!warned, "a public address is accepted");
    }

    /// `refresh_max_age` is the server's, per `[[provider]]`, for the kinds
    /// whose logins refresh tokens carry as snapshots; elsewhere it stays
    /// an unknown key.
    #[test]
    fn refresh_max_age_is_read_per_provider_for_snapshot_kinds() {
        let text = format!(
            r#"{MINIMAL}
            [[provider]]
            name = "hub"
            kind = "github"
            organizations = ["acme"]
            refresh_max_age = "10m"
            [[provider]]
            name = "sso"
            kind = "oidc"
            issuer = "https://sso.corp.example"
            audiences = ["registry"]
            "#
        );
        let config = Config::from_toml("t.toml", &text, &[]).unwrap();
        let ages: Vec<Duration> = config.providers.iter().map(|p| p.refresh_max_age).collect();
        assert_eq!(ages, [Duration::from_secs(600), DEFAULT_REFRESH_MAX_AGE]);
        let ldap = format!(
            r#"{MINIMAL}
            [[provider]]
            name = "dir"
            kind = "ldap"
            url = "ldaps://dc.corp.example"
            bind_dn = "cn=x"
            bind_password_env = "PATH"
            user_base = "dc=corp"
            refresh_max_age = "10m"
            "#
        );
        let error = Config::from_toml("t.toml", &ldap, &[])
            .unwrap_err()
            .to_string();
        assert!(error.contains("refresh_max_age"), "{error}");
        let bad = text.replace("\"10m\"", "\"soon\"");
        let error = Config::from_toml("t.toml", &bad, &[])
            .unwrap_err()
            .to_string();
        assert!(error.contains("provider[0].refresh_max_age"), "{error}");
    }

    /// Review L2: the page over plain http sends LDAP passwords in clear
    /// and cannot use __Host- cookies: refused unless on loopback or asked.
    #[test]
    fn the_page_over_plain_http_is_refused_unless_loopback_or_allowed() {
        let page = |url: &str, extra: &str| {
            format!(
                r#"{MINIMAL}
                [[provider]]
                name = "local"
                kind = "static"
                [provider.users]
                [app_passwords]
                key_file = "/nonexistent/app.key"
                login_form = ["local"]
                url = "{url}"
                {extra}
                "#
            )
        };
        let refused = err(&page("http://auth.corp.example/ui", ""));
        assert!(
            refused.contains("app_passwords.url") && refused.contains("allow_http"),
            "{refused}"
        );
        for (url, extra) in [
            ("http://auth.corp.example/ui", "allow_http = true"),
            ("http://127.0.0.1:5001/ui", ""),
            ("http://localhost:5001/ui", ""),
            ("https://auth.corp.example/ui", ""),
        ] {
            Config::from_toml("t.toml", &page(url, extra), &[])
                .unwrap_or_else(|e| panic!("{url}: {e}"));
        }
    }

    fn err(text: &str) -> String {
        Config::from_toml("t.toml", text, &[])
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn embedded_default_is_valid() {
        let c = Config::from_toml("embedded", EMBEDDED, &[]).unwrap();
        assert_eq!(c.server.listen.to_string(), "127.0.0.1:5001");
        assert_eq!(c.token.lifetime, Duration::from_secs(900));
    }

    #[test]
    fn every_shipped_config_is_valid() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/config");
        let mut checked = 0;
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "toml") {
                let text = std::fs::read_to_string(&path).unwrap();
                Config::from_toml(&path.display().to_string(), &text, &[])
                    .unwrap_or_else(|e| panic!("{e}"));
                checked += 1;
            }
        }
        assert!(checked >= 4, "{checked}");
    }

    #[test]
    fn defaults() {
        let c = Config::from_toml("t", MINIMAL, &[]).unwrap();
        assert!(c.server.anonymous);
        assert_eq!(c.cache.verdict_ttl, Duration::from_secs(60));
        assert_eq!(c.realm(), "http://localhost:5001/auth");
    }

    #[test]
    fn unknown_keys_name_their_path() {
        let e = err(&format!(
            "{MINIMAL}\n[server]\nlisten = \"127.0.0.1:1\"\nlistn = 1"
        ));
        assert!(e.contains("server.listn") || e.contains("listn"), "{e}");
        let e = err(&format!("{MINIMAL}\n[[provider]]\nkind = \"static\"\nname = \"a\"\nhtpasswd = \"x\"\nusrs = {{}}"));
        assert!(e.contains("usrs"), "{e}");
        let e = err(&format!(
            "{MINIMAL}\n[[provider]]\nkind = \"static\"\nname = \"a\"\ngroups = {{ a = 1 }}"
        ));
        assert!(e.contains("provider[0].groups.a"), "{e}");
    }

    #[test]
    fn two_providers_of_one_forge_need_pins() {
        let gitlab = |name: &str, pin: &str| {
            format!("\n[[provider]]\nname = \"{name}\"\nkind = \"gitlab\"\nurl = \"https://{name}.example\"\ngroups = [\"acme\"]\n{pin}\n")
        };
        let e = err(&format!(
            "{MINIMAL}{}{}",
            gitlab("saas", ""),
            gitlab("corp", "")
        ));
        assert!(
            e.contains("usernames") && e.contains("gitlab tokens"),
            "{e}"
        );
        let pinned = format!(
            "{MINIMAL}{}{}",
            gitlab("saas", "usernames = [\"ext-*\"]"),
            gitlab("corp", "usernames = [\"*\"]")
        );
        assert!(Config::from_toml("t", &pinned, &[]).is_ok());
    }

    #[test]
    fn an_authorization_webhook_is_https_or_loopback_http() {
        let with = |url: &str| {
            Config::from_toml(
                "t",
                &format!("{MINIMAL}\n[authorizer]\nkind = \"webhook\"\nurl = \"{url}\""),
                &[],
            )
            .map_err(|e| e.to_string())
        };
        for ok in [
            "https://authz.internal/decide",
            "http://127.0.0.1:9000/decide",
            "http://localhost:9000/",
            "http://[::1]:9000/decide",
        ] {
            assert!(with(ok).is_ok(), "{ok}: {:?}", with(ok).err());
        }
        for refused in [
            "http://10.0.0.5/decide",
            "http://127.0.0.1@authz.example/",
            "http://127.0.0.1.example/",
            "ftp://127.0.0.1/",
            "not a url",
        ] {
            let e = with(refused).expect_err(refused);
            assert!(e.contains("authorizer.url"), "{refused}: {e}");
        }
    }

    #[test]
    fn bad_values_name_their_key() {
        assert!(
            err(&MINIMAL.replace("[token]", "[token]\nlifetime = \"30s\""))
                .contains("token.lifetime")
        );
        assert!(
            err(&MINIMAL.replace("[token]", "[token]\nlifetime = \"soon\""))
                .contains("token.lifetime")
        );
        assert!(err(&MINIMAL.replace("[\"registry\"]", "[]")).contains("token.services"));
        assert!(
            err(&format!("{MINIMAL}\n[server]\nlisten = \"nowhere\"")).contains("server.listen")
        );
        assert!(err(&format!(
            "{MINIMAL}\n[[rule]]\nusers=[\"a\"]\nrepos=[\"x\"]\nactions=[\"pul\"]"
        ))
        .contains("rule[0].actions[0]"));
        assert!(err(&format!(
            "{MINIMAL}\n[[rule]]\nusers=[\"a\"]\nproviders=[\"nope\"]\nrepos=[\"x\"]\nactions=[\"pull\"]"
        ))
        .contains("rule[0].providers[0]"));
        let twice =
            "[[provider]]\nkind=\"static\"\nname=\"a\"\n[[provider]]\nkind=\"static\"\nname=\"a\"";
        assert!(err(&format!("{MINIMAL}\n{twice}")).contains("provider[1].name"));
        assert!(err(&format!(
            "{MINIMAL}\n[[provider]]\nkind=\"smoke\"\nname=\"a\""
        ))
        .contains("provider[0]"));
    }

    /// Providers that would admit the whole internet are refused, naming
    /// the key to set.
    #[test]
    fn providers_that_admit_everyone_are_refused() {
        let e = err(&format!(
            "{MINIMAL}\n[[provider]]\nname=\"gh\"\nkind=\"github\""
        ));
        assert!(e.contains("provider[0].organizations"), "{e}");
        let ok = format!(
            "{MINIMAL}\n[[provider]]\nname=\"gh\"\nkind=\"github\"\nallow_any_account=true"
        );
        Config::from_toml("t", &ok, &[]).unwrap();
        for issuer in [
            "https://token.actions.githubusercontent.com",
            "https://gitlab.com/",
        ] {
            let e = err(&format!(
                "{MINIMAL}\n[[provider]]\nname=\"ci\"\nkind=\"oidc\"\nissuer=\"{issuer}\"\naudiences=[\"r\"]"
            ));
            assert!(e.contains("provider[0].required_claims"), "{e}");
        }
        let ok = format!(
            "{MINIMAL}\n[[provider]]\nname=\"ci\"\nkind=\"oidc\"\nissuer=\"https://gitlab.com\"\naudiences=[\"r\"]\nrequired_claims={{ namespace_path = \"acme\" }}"
        );
        Config::from_toml("t", &ok, &[]).unwrap();
    }

    #[test]
    fn trusted_proxies_name_their_key() {
        let e = err(&format!(
            "{MINIMAL}\n[server]\ntrusted_proxies = [\"10.0.0.0/99\"]"
        ));
        assert!(e.contains("server.trusted_proxies[0]"), "{e}");
    }

    /// Pins are compiled once, in the form the chain compares usernames
    /// in, and refused as written.
    #[test]
    fn username_pins_are_compiled_in_the_form_they_compare() {
        let with = |pins: &str| {
            Config::from_toml(
                "t",
                &format!(
                    "{MINIMAL}\n[[provider]]\nkind=\"static\"\nname=\"a\"\nusernames=[{pins}]"
                ),
                &[],
            )
        };
        let config = with("\" CI-*\"").unwrap();
        let pin = &config.providers[0].usernames[0];
        assert!(pin.matches(&UsernamePin::form("ci-release")));
        assert!(pin.matches(&UsernamePin::form(" CI-Release")));
        assert!(!pin.matches(&UsernamePin::form("release")));
        let e = with("\"${user}\"").unwrap_err().to_string();
        assert_eq!(e, "t: provider[0].usernames[0]: placeholders such as `${user}` are only allowed in repository names (`${user}`)");
    }

    /// `[token]` has no default issuer or services, reported as serde
    /// would; every other section may be left out.
    #[test]
    fn token_names_its_issuer_and_services() {
        assert_eq!(err(""), "t.toml: .: missing field `token`");
        assert_eq!(err("[token]\n"), "t.toml: token: missing field `issuer`");
        assert_eq!(
            err("[token]\nissuer = \"x\""),
            "t.toml: token: missing field `services`"
        );
    }

    #[test]
    fn env_overrides() {
        let env = vec![
            (
                "REGAUTH_SERVER__LISTEN".to_owned(),
                "127.0.0.1:7000".to_owned(),
            ),
            ("REGAUTH_TOKEN__LIFETIME".to_owned(), "600".to_owned()),
            ("REGAUTH_SERVER__ANONYMOUS".to_owned(), "false".to_owned()),
        ];
        let c = Config::from_toml("t", MINIMAL, &env).unwrap();
        assert_eq!(c.server.listen.port(), 7000);
        assert_eq!(c.token.lifetime, Duration::from_secs(600));
        assert!(!c.server.anonymous);
    }
}
