//! `[[provider]]`: the identity providers, in the order they are asked.
//! Each table's `name`, `kind`, `usernames` and `refresh_max_age` are
//! read here; the rest by
//! the kind's own settings type from the providers crate, so that errors
//! keep their full key path.

use regauth_providers::entra::EntraConfig;
use regauth_providers::gitea::GiteaConfig;
use regauth_providers::github::GithubConfig;
use regauth_providers::gitlab::GitlabConfig;
use regauth_providers::ldap::LdapConfig;
use regauth_providers::oidc::OidcConfig;
use regauth_providers::static_users::StaticConfig;
use regauth_providers::webhook::WebhookConfig;
use std::time::Duration;

use regauth_providers::{Invalid, ProviderKind, Seconds};
use serde::de::DeserializeOwned;
use serde::Deserialize as _;

use super::error::{invalid, ConfigError};
use crate::domain::pattern::{Pattern, Placeholders};
use crate::domain::policy::{Claims, ProviderInfo};

/// How long a refresh token may carry a snapshot login unless its
/// provider says (`refresh_max_age`).
pub const DEFAULT_REFRESH_MAX_AGE: Duration = Duration::from_secs(3600);

/// One `[[provider]]`: its instance name and its kind's settings.
#[derive(Clone, Debug)]
pub struct ProviderConfig {
    /// The instance name (`name`), unique among the providers.
    pub name: String,
    /// Username patterns pinned to this provider: such logins go to it
    /// alone (e.g. `["ci-*"]` for robots).
    pub usernames: Vec<UsernamePin>,
    /// How long a refresh token may carry a login of this provider as a
    /// snapshot (`refresh_max_age`, for the kinds that cannot look their
    /// users up), never past the credential's own end.
    pub refresh_max_age: Duration,
    /// The kind's settings (`kind` and the rest of the table).
    pub settings: ProviderSettings,
}

/// The settings of each provider kind, defined by the providers crate.
#[derive(Clone, Debug)]
pub enum ProviderSettings {
    /// `kind = "static"`: users (inline or an htpasswd file) and robots.
    Static(StaticConfig),
    /// `kind = "ldap"`: a directory.
    Ldap(Box<LdapConfig>),
    /// `kind = "github"`: GitHub tokens.
    Github(Box<GithubConfig>),
    /// `kind = "gitlab"`: GitLab access tokens and CI job tokens.
    Gitlab(Box<GitlabConfig>),
    /// `kind = "gitea"`: Gitea and Forgejo access tokens.
    Gitea(Box<GiteaConfig>),
    /// `kind = "oidc"`: an OpenID Connect issuer.
    Oidc(Box<OidcConfig>),
    /// `kind = "entra"`: a Microsoft Entra ID tenant.
    Entra(Box<EntraConfig>),
    /// `kind = "webhook"`: an authentication webhook.
    Webhook(Box<WebhookConfig>),
    /// A provider built by the code embedding regauth (`Server::builder()`).
    InCode {
        /// Its kind, as it says.
        kind: ProviderKind,
    },
}

/// A `usernames` pattern, compiled once in the form the chain compares
/// usernames in ([`UsernamePin::form`]), so that `CI-Release` and
/// ` ci-release` cannot escape a `ci-*` pin to another provider.
#[derive(Clone, Debug)]
pub struct UsernamePin(Pattern);

impl UsernamePin {
    /// Compiles a pin as written; errors name the pattern as written and
    /// are fit for `regauth check`.
    pub fn parse(written: &str) -> Result<Self, String> {
        Pattern::parse(written, Placeholders::Forbidden)?;
        Pattern::parse(&Self::form(written), Placeholders::Forbidden).map(Self)
    }

    /// How pins compare usernames: trimmed and lower-cased.
    pub fn form(username: &str) -> String {
        username.trim().to_lowercase()
    }

    /// Whether a username already in [`UsernamePin::form`] matches.
    pub fn matches(&self, username: &str) -> bool {
        self.0.matches(username)
    }
}

impl ProviderSettings {
    /// The kind these settings are of.
    pub fn kind(&self) -> ProviderKind {
        match self {
            ProviderSettings::Static(_) => ProviderKind::Static,
            ProviderSettings::Ldap(_) => ProviderKind::Ldap,
            ProviderSettings::Github(_) => ProviderKind::Github,
            ProviderSettings::Gitlab(_) => ProviderKind::Gitlab,
            ProviderSettings::Gitea(_) => ProviderKind::Gitea,
            ProviderSettings::Oidc(_) => ProviderKind::Oidc,
            ProviderSettings::Entra(_) => ProviderKind::Entra,
            ProviderSettings::Webhook(_) => ProviderKind::Webhook,
            ProviderSettings::InCode { kind } => *kind,
        }
    }

    /// Reads a `[[provider]]` table's settings (all but `name`, `kind` and
    /// `usernames`) as `kind`'s, and checks them by the kind's own rules.
    fn parse(
        kind: ProviderKind,
        origin: &str,
        prefix: &str,
        table: toml::Table,
    ) -> Result<Self, ConfigError> {
        Ok(match kind {
            ProviderKind::Static => Self::Static(parsed(origin, prefix, table)?),
            ProviderKind::Ldap => Self::Ldap(Box::new(parsed(origin, prefix, table)?)),
            ProviderKind::Github => Self::Github(Box::new(parsed(origin, prefix, table)?)),
            ProviderKind::Gitlab => Self::Gitlab(Box::new(parsed(origin, prefix, table)?)),
            ProviderKind::Gitea => Self::Gitea(Box::new(parsed(origin, prefix, table)?)),
            ProviderKind::Oidc => Self::Oidc(Box::new(parsed(origin, prefix, table)?)),
            ProviderKind::Entra => Self::Entra(Box::new(parsed(origin, prefix, table)?)),
            ProviderKind::Webhook => Self::Webhook(Box::new(parsed(origin, prefix, table)?)),
            ProviderKind::Custom(name) => {
                return Err(invalid(
                    origin,
                    format!("{prefix}.kind"),
                    regauth_providers::UnknownProviderKind(name.to_owned()).to_string(),
                ))
            }
        })
    }

    /// Whether users of this provider can sign in to the app-password page
    /// with a password form.
    pub fn checks_passwords(&self) -> bool {
        match self {
            ProviderSettings::Static(_)
            | ProviderSettings::Ldap(_)
            | ProviderSettings::Webhook(_) => true,
            ProviderSettings::Oidc(oidc) => oidc.password_grant,
            ProviderSettings::Entra(entra) => entra.password_grant,
            _ => false,
        }
    }

    /// Whether users of this provider sign in to the app-password page in
    /// the browser, at their IdP.
    pub fn browser_login(&self) -> bool {
        match self {
            ProviderSettings::Oidc(oidc) => oidc.browser_login,
            ProviderSettings::Entra(entra) => entra.browser_login,
            _ => false,
        }
    }
}

impl ProviderConfig {
    /// The instance name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// A provider built in code, known to the configuration by its name.
    pub fn in_code(name: &str, kind: ProviderKind) -> Self {
        Self {
            name: name.to_owned(),
            usernames: Vec::new(),
            refresh_max_age: DEFAULT_REFRESH_MAX_AGE,
            settings: ProviderSettings::InCode { kind },
        }
    }

    /// The provider as the policy sees it.
    pub fn info(&self) -> ProviderInfo {
        let claims = match self.settings {
            ProviderSettings::Oidc(_)
            | ProviderSettings::Entra(_)
            | ProviderSettings::Webhook(_)
            | ProviderSettings::Gitlab(_)
            | ProviderSettings::InCode { .. } => Claims::Carried,
            ProviderSettings::Static(_)
            | ProviderSettings::Ldap(_)
            | ProviderSettings::Github(_)
            | ProviderSettings::Gitea(_) => Claims::None,
        };
        ProviderInfo {
            name: self.name.clone(),
            claims,
        }
    }
}

/// A kind's settings type: read from the rest of its table, then checked
/// by the kind's own rules (the kinds that have any).
trait Settings: DeserializeOwned {
    fn check(&self) -> Result<(), Invalid> {
        Ok(())
    }
}

impl Settings for StaticConfig {}
impl Settings for LdapConfig {}

/// The kinds whose settings type checks itself with `validate()`.
macro_rules! checked_by_validate {
    ($($settings:ty),*) => {$(
        impl Settings for $settings {
            fn check(&self) -> Result<(), Invalid> {
                self.validate()
            }
        }
    )*};
}
checked_by_validate!(
    GithubConfig,
    GitlabConfig,
    GiteaConfig,
    OidcConfig,
    EntraConfig,
    WebhookConfig
);

/// The settings of one kind, read and checked; errors are under `prefix`.
fn parsed<T: Settings>(origin: &str, prefix: &str, table: toml::Table) -> Result<T, ConfigError> {
    let settings: T = serde_path_to_error::deserialize(toml::Value::Table(table)).map_err(|e| {
        let key = match e.path().to_string().as_str() {
            "." | "" => prefix.to_owned(),
            path => format!("{prefix}.{path}"),
        };
        invalid(origin, key, e.into_inner().message().to_owned())
    })?;
    settings
        .check()
        .map_err(|e| invalid(origin, format!("{prefix}.{}", e.key), e.message))?;
    Ok(settings)
}

/// `[[provider]]`, checked: each table by its kind, names fit for rules
/// and unique, and forges of one kind each pinned to their users.
pub(crate) fn validate_providers(
    origin: &str,
    tables: Vec<toml::Value>,
) -> Result<Vec<ProviderConfig>, ConfigError> {
    let providers = tables
        .into_iter()
        .enumerate()
        .map(|(i, value)| parse_provider(origin, i, value))
        .collect::<Result<Vec<_>, _>>()?;
    check_names(origin, &providers)?;
    check_forges_are_pinned(origin, &providers)?;
    Ok(providers)
}

/// Parses one `[[provider]]` table: `name`, `kind` and `usernames` here,
/// the rest by the kind's own settings type.
fn parse_provider(
    origin: &str,
    index: usize,
    value: toml::Value,
) -> Result<ProviderConfig, ConfigError> {
    let prefix = format!("provider[{index}]");
    let toml::Value::Table(mut table) = value else {
        return Err(invalid(origin, prefix, "must be a table"));
    };
    let mut take = |key: &str| match table.remove(key) {
        Some(toml::Value::String(s)) => Ok(s),
        Some(_) => Err(invalid(
            origin,
            format!("{prefix}.{key}"),
            "must be a string",
        )),
        None => Err(invalid(
            origin,
            format!("{prefix}.{key}"),
            if key == "kind" {
                format!("missing (one of: {})", ProviderKind::names())
            } else {
                "missing".to_owned()
            },
        )),
    };
    let name = take("name")?;
    let kind = take("kind")?;
    let usernames = pins(origin, &prefix, table.remove("usernames"))?;
    let kind = kind
        .parse::<ProviderKind>()
        .map_err(|e| invalid(origin, format!("{prefix}.kind"), e.to_string()))?;
    // Only the kinds whose logins refresh tokens carry as snapshots take
    // it; for the others it stays in the table, an unknown key there.
    let taken = kind
        .snapshots()
        .then(|| table.remove("refresh_max_age"))
        .flatten();
    let refresh_max_age = match taken {
        Some(value) => {
            Seconds::deserialize(value)
                .map_err(|e| invalid(origin, format!("{prefix}.refresh_max_age"), e.message()))?
                .0
        }
        None => DEFAULT_REFRESH_MAX_AGE,
    };
    Ok(ProviderConfig {
        name,
        usernames,
        refresh_max_age,
        settings: ProviderSettings::parse(kind, origin, &prefix, table)?,
    })
}

/// A provider's `usernames`, compiled.
fn pins(
    origin: &str,
    prefix: &str,
    value: Option<toml::Value>,
) -> Result<Vec<UsernamePin>, ConfigError> {
    let items = match value {
        None => return Ok(Vec::new()),
        Some(toml::Value::Array(items)) => items,
        Some(_) => {
            return Err(invalid(
                origin,
                format!("{prefix}.usernames"),
                "must be an array of patterns",
            ))
        }
    };
    items
        .into_iter()
        .enumerate()
        .map(|(j, item)| {
            let key = format!("{prefix}.usernames[{j}]");
            let written = item
                .as_str()
                .ok_or_else(|| invalid(origin, key.clone(), "must be a string"))?;
            UsernamePin::parse(written).map_err(|m| invalid(origin, key, m))
        })
        .collect()
}

/// Names are written `name:` in rules and inserted as `${provider}`: plain
/// and unique.
fn check_names(origin: &str, providers: &[ProviderConfig]) -> Result<(), ConfigError> {
    let mut names = std::collections::BTreeSet::new();
    for (i, p) in providers.iter().enumerate() {
        let valid = !p.name().is_empty()
            && p.name()
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if !valid {
            return Err(invalid(
                origin,
                format!("provider[{i}].name"),
                format!(
                    "`{}` must be letters, digits, `-` and `_` (it is written `name:` in rules and inserted as ${{provider}})",
                    p.name()
                ),
            ));
        }
        if !names.insert(p.name()) {
            return Err(invalid(
                origin,
                format!("provider[{i}].name"),
                format!("`{}` is used twice", p.name()),
            ));
        }
    }
    Ok(())
}

/// Refuses two providers of one forge kind (GitHub, GitLab, Gitea) unless
/// each pins its usernames: a token goes to the first provider of its
/// shape, so an unpinned second one would see its users' tokens sent to
/// the first one's host (and refused there).
fn check_forges_are_pinned(origin: &str, providers: &[ProviderConfig]) -> Result<(), ConfigError> {
    let forge = |p: &ProviderConfig| match p.settings {
        ProviderSettings::Github(_) | ProviderSettings::Gitlab(_) | ProviderSettings::Gitea(_) => {
            Some(p.settings.kind())
        }
        _ => None,
    };
    for (i, p) in providers.iter().enumerate() {
        let Some(kind) = forge(p) else { continue };
        let others: Vec<&str> = providers
            .iter()
            .enumerate()
            .filter(|(j, q)| *j != i && forge(q) == Some(kind))
            .map(|(_, q)| q.name())
            .collect();
        if !others.is_empty() && p.usernames.is_empty() {
            return Err(invalid(
                origin,
                format!("provider[{i}].usernames"),
                format!(
                    "`{}` and {} both take {kind} tokens: pin each one's users with usernames = [...], or a token of one would be sent to the other's host",
                    p.name(),
                    others.iter().map(|o| format!("`{o}`")).collect::<Vec<_>>().join(", ")
                ),
            ));
        }
    }
    Ok(())
}
