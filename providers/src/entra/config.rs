//! `[[provider]] kind = "entra"` as written in the configuration file, and
//! the OpenID Connect issuer it makes of it.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Deserialize;

use crate::oidc::{ClaimValues, OidcConfig};
use crate::settings::default;
use crate::Seconds;

/// `[[provider]] kind = "entra"`: one Microsoft Entra ID tenant.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EntraConfig {
    /// The directory (tenant) ID (Entra admin center, Overview), or a
    /// verified domain of the tenant, whose id regauth then learns from
    /// the tenant's metadata on first use.
    pub tenant: String,
    /// The application (client) ID of regauth's app registration.
    pub client_id: String,
    /// File holding the app's client secret: the password grant, the
    /// browser sign-in's code exchange and Microsoft Graph need it.
    #[serde(default)]
    pub client_secret_file: Option<PathBuf>,
    /// Environment variable holding the client secret.
    #[serde(default)]
    pub client_secret_env: Option<String>,
    /// A certificate credential instead of a secret: the certificate (PEM)
    /// uploaded to the app registration...
    #[serde(default)]
    pub client_certificate_file: Option<PathBuf>,
    /// ...and its RSA private key (PEM).
    #[serde(default)]
    pub client_key_file: Option<PathBuf>,
    /// The login host; regauth appends `/{tenant}/v2.0`.
    #[serde(default = "text::authority")]
    pub authority: String,
    /// The issuer host of v1.0 tokens; regauth appends `/{tenant}/`.
    #[serde(default = "text::v1_issuer")]
    pub v1_issuer: String,
    /// Microsoft Graph, for groups past the token's limit and group names.
    #[serde(default = "text::graph_url")]
    pub graph_url: String,
    /// PEM CA bundle added to the system roots (a TLS-inspecting proxy).
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// Other tenants (GUIDs) whose users are admitted, for a multi-tenant
    /// app: none by default, whatever the app registration allows.
    #[serde(default)]
    pub tenants: Vec<String>,
    /// Accepted `aud` values; by default the client ID and
    /// `api://{client_id}`.
    #[serde(default)]
    pub audiences: Vec<String>,
    /// Basic username and password -> Entra's password grant (ROPC).
    /// Accounts with MFA or federated sign-in cannot use it: they sign in
    /// at the page.
    #[serde(default)]
    pub password_grant: bool,
    /// People sign in to regauth's page in a browser through Entra.
    #[serde(default)]
    pub browser_login: bool,
    /// An access token for regauth's app (`aud` the client ID) as the
    /// password. On by default.
    #[serde(default = "default::yes")]
    pub access_tokens: bool,
    /// The claim whose value is a user's subject (`upn` is tried after
    /// it, for v1.0 tokens). An app's (a client credentials token) is
    /// `app:{client id}`.
    #[serde(default = "text::username_claim")]
    pub username_claim: String,
    /// Where groups come from: the token's `groups` claim, and Graph
    /// when the token says there are too many (`token`); or Graph always
    /// (`graph`).
    #[serde(default)]
    pub groups_source: GroupsSource,
    /// What a group is called in rules: its `displayName`, its
    /// `onPremisesSamAccountName` (groups synced from AD), or its `id`
    /// alone. Its id is always a group too.
    #[serde(default)]
    pub group_names: GroupNames,
    /// The `roles` claim's app roles as groups `role:NAME`.
    #[serde(default = "default::yes")]
    pub roles_as_groups: bool,
    /// How long a user's groups from Graph are kept.
    #[serde(default = "default::group_cache_ttl")]
    pub group_cache_ttl: Seconds,
    /// Upper bound on the pages of groups followed in Graph.
    #[serde(default = "default::count::<50>")]
    pub max_group_pages: usize,
    /// Timeout for each call to Entra and Graph.
    #[serde(default = "default::timeout")]
    pub timeout: Seconds,
    /// Clock skew allowed on `exp` and `nbf`.
    #[serde(default = "default::seconds::<30>")]
    pub leeway: Seconds,
    /// Give refresh tokens to logins with an access token too.
    #[serde(default)]
    pub offline_tokens: bool,
    /// Claims every token must carry with one of these values.
    #[serde(default)]
    pub required_claims: BTreeMap<String, ClaimValues>,
}

/// Where a user's groups come from.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum GroupsSource {
    /// The token's `groups` claim; Graph when it says there are too many
    /// for a token, or carries none.
    #[default]
    Token,
    /// Microsoft Graph, always.
    Graph,
}

/// What a group is called in rules.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
pub enum GroupNames {
    /// Its display name (not unique in a tenant: see the README).
    #[default]
    #[serde(rename = "displayName")]
    DisplayName,
    /// Its `onPremisesSamAccountName`, for groups synced from AD.
    #[serde(rename = "onPremisesSamAccountName")]
    SamAccountName,
    /// Its object id alone.
    #[serde(rename = "id")]
    Id,
}

impl EntraConfig {
    /// Checks what can be checked without the network.
    pub fn validate(&self) -> Result<(), crate::Invalid> {
        let invalid = |key, message: String| Err(crate::Invalid { key, message });
        if !is_guid(&self.tenant) && !is_domain(&self.tenant) {
            return invalid("tenant", format!("{:?} is neither a directory (tenant) ID nor a domain: write the GUID of Overview in the Entra admin center, or a verified domain such as corp.example", self.tenant));
        }
        for tenant in &self.tenants {
            if !is_guid(tenant) {
                return invalid("tenants", format!("{tenant:?} is not a directory (tenant) ID: tokens name other tenants by their GUID"));
            }
        }
        if !is_guid(&self.client_id) {
            return invalid(
                "client_id",
                "write the application (client) ID, a GUID".into(),
            );
        }
        for (key, url) in [
            ("authority", &self.authority),
            ("v1_issuer", &self.v1_issuer),
            ("graph_url", &self.graph_url),
        ] {
            if !(url.starts_with("https://") || url.starts_with("http://")) {
                return invalid(key, format!("{url:?} is not an http(s) URL"));
            }
        }
        let secret = self.client_secret_file.is_some() || self.client_secret_env.is_some();
        match (&self.client_certificate_file, &self.client_key_file) {
            (Some(_), Some(_)) if secret => {
                return invalid(
                    "client_certificate_file",
                    "set a client secret or a certificate credential, not both".into(),
                )
            }
            (Some(_), None) | (None, Some(_)) => {
                return invalid(
                    "client_key_file",
                    "a certificate credential needs client_certificate_file and client_key_file"
                        .into(),
                )
            }
            _ => {}
        }
        if !self.access_tokens && !self.password_grant && !self.browser_login {
            return invalid(
                "access_tokens",
                "enable access_tokens, password_grant, browser_login or several".into(),
            );
        }
        self.oidc(&self.tenant)?.validate()
    }

    /// The tenants whose users are admitted: the home tenant `home` (its
    /// id) and `tenants`.
    pub(super) fn admitted<'a>(&'a self, home: &'a str) -> impl Iterator<Item = &'a str> {
        std::iter::once(home).chain(self.tenants.iter().map(String::as_str))
    }

    /// The issuer of this tenant's v2.0 tokens.
    pub(super) fn issuer_of(&self, tenant: &str) -> String {
        format!("{}/{tenant}/v2.0", self.authority.trim_end_matches('/'))
    }

    /// The OpenID Connect issuer regauth sees in the tenant `home` (its
    /// id): its v2.0 issuer, the v1.0 one and the other admitted tenants'
    /// as further issuers, groups left to the provider.
    pub(super) fn oidc(&self, home: &str) -> Result<OidcConfig, crate::Invalid> {
        let v1 = |tenant: &str| format!("{}/{tenant}/", self.v1_issuer.trim_end_matches('/'));
        let mut other_issuers: Vec<String> = self.admitted(home).map(v1).collect();
        other_issuers.extend(self.tenants.iter().map(|t| self.issuer_of(t)));
        let audiences = if self.audiences.is_empty() {
            vec![self.client_id.clone(), format!("api://{}", self.client_id)]
        } else {
            self.audiences.clone()
        };
        let table = serde_json::json!({
            "issuer": self.issuer_of(home),
            "client_id": self.client_id,
            "password_grant": self.password_grant,
            "browser_login": self.browser_login,
            "access_tokens": self.access_tokens,
            "audiences": audiences,
            "username_claim": self.username_claim,
            // the provider names users and apps itself (`Entra::subject`)
            "username_fallbacks": ["upn", "azp", "appid"],
            "groups_claims": [],
        });
        let mut oidc: OidcConfig = serde_json::from_value(table).map_err(|e| crate::Invalid {
            key: "tenant",
            message: format!("no OpenID Connect issuer can be made of it: {e}"),
        })?;
        oidc.client_secret_file = self.client_secret_file.clone();
        oidc.client_secret_env = self.client_secret_env.clone();
        oidc.ca_file = self.ca_file.clone();
        oidc.timeout = self.timeout;
        oidc.leeway = self.leeway;
        oidc.offline_tokens = self.offline_tokens;
        oidc.required_claims = self.required_claims.clone();
        oidc.other_issuers = other_issuers;
        oidc.password_grant_id_token = true;
        Ok(oidc)
    }
}

/// Whether `text` is a GUID (`8-4-4-4-12` hex digits).
pub(super) fn is_guid(text: &str) -> bool {
    let parts: Vec<&str> = text.split('-').collect();
    parts.len() == 5
        && parts
            .iter()
            .zip([8, 4, 4, 4, 12])
            .all(|(p, n)| p.len() == n && p.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// Whether `text` is a domain name (`corp.example`): labels of letters,
/// digits and hyphens, at least two.
fn is_domain(text: &str) -> bool {
    let labels: Vec<&str> = text.split('.').collect();
    labels.len() >= 2
        && text.len() <= 253
        && labels.iter().all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

/// serde's defaults of the text keys.
mod text {
    pub(super) fn authority() -> String {
        "https://login.microsoftonline.com".into()
    }

    pub(super) fn v1_issuer() -> String {
        "https://sts.windows.net".into()
    }

    pub(super) fn graph_url() -> String {
        "https://graph.microsoft.com".into()
    }

    pub(super) fn username_claim() -> String {
        "preferred_username".into()
    }
}
