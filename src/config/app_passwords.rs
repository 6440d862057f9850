//! `[app_passwords]`: app passwords and the page that makes them, as the
//! file gives them and validated.
//!
//! Every layer reads the configuration, so the configuration imports
//! none of them: this section's types and validator live here rather
//! than beside the feature (which would make `config` import
//! `app_passwords`, and `app_passwords` the state and identity layers
//! that import `config`). It knows the configured providers only through
//! `ProviderFacts`.

use std::path::PathBuf;
use std::time::Duration;

use regauth_providers::Seconds;
use serde::Deserialize;

use super::error::{invalid, is_loopback_http, origin_of, ConfigError};

/// The name app-password logins are checked under (never a configured
/// provider's).
pub const PROVIDER_NAME: &str = "app-passwords";

/// `[app_passwords]` as the file gives it.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct RawAppPasswords {
    pub(crate) key_file: PathBuf,
    pub(crate) default_lifetime: Seconds,
    pub(crate) max_lifetime: Seconds,
    pub(crate) max_per_user: usize,
    pub(crate) sign_in_max_age: Seconds,
    pub(crate) admin_groups: Vec<String>,
    pub(crate) url: Option<String>,
    pub(crate) session_lifetime: Seconds,
    pub(crate) login_form: Vec<String>,
    pub(crate) recheck_interval: Seconds,
    pub(crate) allow_http: bool,
}

impl Default for RawAppPasswords {
    fn default() -> Self {
        let secs = |s| Seconds(Duration::from_secs(s));
        Self {
            key_file: "certs/app-passwords.key".into(),
            default_lifetime: secs(90 * 86400),
            max_lifetime: secs(365 * 86400),
            max_per_user: 20,
            sign_in_max_age: secs(30 * 86400),
            admin_groups: Vec::new(),
            url: None,
            session_lifetime: secs(8 * 3600),
            login_form: Vec::new(),
            recheck_interval: secs(3600),
            allow_http: false,
        }
    }
}

/// App passwords and the page that makes them (`[app_passwords]`).
#[derive(Clone, Debug)]
pub struct AppPasswordsConfig {
    /// The key their digests, the page's sessions and sign-in state are
    /// derived from (generated if missing; replicas share it).
    pub key_file: PathBuf,
    /// The expiry the page proposes (`default_lifetime`).
    pub default_lifetime: Duration,
    /// The longest expiry allowed (`max_lifetime`).
    pub max_lifetime: Duration,
    /// How many app passwords one user may have (`max_per_user`).
    pub max_per_user: usize,
    /// How long the groups of a browser sign-in stand in for a provider
    /// that cannot look users up (`sign_in_max_age`).
    pub sign_in_max_age: Duration,
    /// `provider:group` whose members see and revoke everyone's.
    pub admin_groups: Vec<(String, String)>,
    /// The page's external URL, without a trailing slash (`url`, default:
    /// the realm's origin and `/ui`).
    pub url: String,
    /// How long a sign-in to the page lasts (`session_lifetime`).
    pub session_lifetime: Duration,
    /// Password providers whose users sign in with a form (`login_form`).
    pub login_form: Vec<String>,
    /// How often a browser sign-in's IdP is asked again about its user
    /// (`recheck_interval`, with the sign-in's refresh token).
    pub recheck_interval: Duration,
    /// `[robots]`: team robots, when on.
    pub robots: Option<super::RobotsConfig>,
}

impl AppPasswordsConfig {
    /// Whether the page is served over https (cookies are then `Secure`).
    pub fn https(&self) -> bool {
        self.url.starts_with("https://")
    }

    /// The page's path below its origin (`/ui`).
    pub fn path(&self) -> &str {
        self.url
            .split_once("://")
            .and_then(|(_, rest)| rest.find('/').map(|i| &rest[i..]))
            .unwrap_or("/")
    }
}

/// What the section needs to know of one configured provider.
#[derive(Clone, Copy, Debug)]
pub(crate) struct ProviderFacts<'a> {
    /// Its instance name.
    pub(crate) name: &'a str,
    /// Whether its users can sign in to the page with a password form.
    pub(crate) checks_passwords: bool,
    /// Whether its users can sign in to the page at their IdP.
    pub(crate) browser_login: bool,
}

/// `[app_passwords]`, checked: lifetimes, the page's URL, sign-in methods
/// that exist, admin groups of known providers. `realm` is the token
/// endpoint's URL, whose origin the page's URL defaults to.
pub(crate) fn validate_app_passwords(
    origin: &str,
    raw: RawAppPasswords,
    providers: &[ProviderFacts<'_>],
    realm: &str,
) -> Result<AppPasswordsConfig, ConfigError> {
    check_lifetimes(origin, &raw)?;
    let url = page_url(origin, raw.url, realm, raw.allow_http)?;
    if raw.recheck_interval.0 < Duration::from_secs(1) {
        return Err(invalid(
            origin,
            key("recheck_interval"),
            "must be at least 1s",
        ));
    }
    check_sign_in(origin, &raw.login_form, providers)?;
    if providers.iter().any(|p| p.name == PROVIDER_NAME) {
        return Err(invalid(
            origin,
            key("key_file"),
            format!("a provider is named `{PROVIDER_NAME}`, the name app passwords use"),
        ));
    }
    let admin_groups = admin_groups(origin, &raw.admin_groups, providers)?;
    Ok(AppPasswordsConfig {
        key_file: raw.key_file,
        default_lifetime: raw.default_lifetime.0,
        max_lifetime: raw.max_lifetime.0,
        max_per_user: raw.max_per_user,
        sign_in_max_age: raw.sign_in_max_age.0,
        admin_groups,
        url,
        session_lifetime: raw.session_lifetime.0,
        login_form: raw.login_form,
        recheck_interval: raw.recheck_interval.0,
        robots: None,
    })
}

fn key(name: &str) -> String {
    format!("app_passwords.{name}")
}

fn check_lifetimes(origin: &str, raw: &RawAppPasswords) -> Result<(), ConfigError> {
    if raw.max_lifetime.0.is_zero() || raw.default_lifetime.0.is_zero() {
        return Err(invalid(
            origin,
            key("max_lifetime"),
            "must be longer than 0s",
        ));
    }
    if raw.default_lifetime.0 > raw.max_lifetime.0 {
        return Err(invalid(
            origin,
            key("default_lifetime"),
            "must not be longer than max_lifetime",
        ));
    }
    if raw.max_per_user == 0 {
        return Err(invalid(origin, key("max_per_user"), "must be at least 1"));
    }
    if raw.session_lifetime.0.is_zero() {
        return Err(invalid(
            origin,
            key("session_lifetime"),
            "must be longer than 0s",
        ));
    }
    Ok(())
}

/// The page's URL: `url` without a trailing slash, or the realm's origin
/// and `/ui`; absolute, with a path, not the token endpoint, and https
/// unless on loopback or `allow_http` says so.
fn page_url(
    origin: &str,
    url: Option<String>,
    realm: &str,
    allow_http: bool,
) -> Result<String, ConfigError> {
    let url = match url {
        Some(url) => url.trim_end_matches('/').to_owned(),
        None => format!("{}/ui", origin_of(realm)),
    };
    let has_path = url
        .split_once("://")
        .and_then(|(_, rest)| rest.find('/'))
        .is_some();
    if !(url.starts_with("https://") || url.starts_with("http://"))
        || !has_path
        || url.contains(['?', '#'])
    {
        return Err(invalid(
            origin,
            key("url"),
            format!(
                "`{url}` must be an absolute http(s) URL with a path, like https://auth.corp/ui"
            ),
        ));
    }
    if url.ends_with("/auth") || url.ends_with("/token") {
        return Err(invalid(
            origin,
            key("url"),
            "must not be the token endpoint",
        ));
    }
    // Over plain http the page's cookies cannot be __Host- cookies (a
    // sibling subdomain could plant a session) and passwords typed into
    // its form travel in clear: only on loopback, or when asked for.
    if url.starts_with("http://") && !is_loopback_http(&url) && !allow_http {
        return Err(invalid(
            origin,
            key("url"),
            format!("`{url}` is plain http: serve the page over https (set app_passwords.url, or server.realm, to its https URL), or set app_passwords.allow_http = true where the network in between is trusted"),
        ));
    }
    Ok(url)
}

/// Someone can sign in to the page, and `login_form` names providers that
/// check passwords.
fn check_sign_in(
    origin: &str,
    login_form: &[String],
    providers: &[ProviderFacts<'_>],
) -> Result<(), ConfigError> {
    for (i, name) in login_form.iter().enumerate() {
        let message = match providers.iter().find(|p| p.name == name) {
            Some(p) if p.checks_passwords => continue,
            Some(_) => format!("`{name}` does not check passwords (use a static, ldap or webhook provider, or oidc with password_grant)"),
            None => format!("no provider is named `{name}`"),
        };
        return Err(invalid(
            origin,
            format!("app_passwords.login_form[{i}]"),
            message,
        ));
    }
    if login_form.is_empty() && !providers.iter().any(|p| p.browser_login) {
        return Err(invalid(
            origin,
            key("login_form"),
            "nobody could sign in: set browser_login = true on an oidc provider, or name password providers in login_form",
        ));
    }
    Ok(())
}

/// `provider:group` entries, split, each of a configured provider.
fn admin_groups(
    origin: &str,
    entries: &[String],
    providers: &[ProviderFacts<'_>],
) -> Result<Vec<(String, String)>, ConfigError> {
    entries
        .iter()
        .enumerate()
        .map(|(i, entry)| {
            entry
                .split_once(':')
                .filter(|(p, g)| providers.iter().any(|q| q.name == *p) && !g.is_empty())
                .map(|(p, g)| (p.to_owned(), g.to_owned()))
                .ok_or_else(|| {
                    invalid(
                        origin,
                        format!("app_passwords.admin_groups[{i}]"),
                        format!("`{entry}` must be provider:group, with a configured provider"),
                    )
                })
        })
        .collect()
}
