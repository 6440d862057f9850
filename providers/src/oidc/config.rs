//! `[[provider]] kind = "oidc"` as written in the configuration file, and
//! what can be checked of it without the network.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Deserialize;

use crate::settings::default;
use crate::Seconds;

/// `[[provider]] kind = "oidc"` as written in the configuration file.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OidcConfig {
    /// Exactly the tokens' `iss` (e.g. `https://sso.corp/realms/main`).
    pub issuer: String,
    /// PEM CA bundle for an IdP with a private CA (added to system roots).
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// The client regauth is at the IdP, for the password grant and
    /// introspection.
    #[serde(default)]
    pub client_id: Option<String>,
    /// File holding the client secret (none for a public client).
    #[serde(default)]
    pub client_secret_file: Option<PathBuf>,
    /// Environment variable holding the client secret.
    #[serde(default)]
    pub client_secret_env: Option<String>,
    /// Basic username/password -> the IdP's password grant.
    #[serde(default)]
    pub password_grant: bool,
    /// People sign in to regauth's app-password page through this IdP in
    /// a browser (authorization code with PKCE); needs `client_id`.
    #[serde(default)]
    pub browser_login: bool,
    /// A JWT from this issuer as the password -> verified against its
    /// JWKS. Unset: on, but for a provider only for the browser sign-in
    /// (`browser_login` without `password_grant` or `audiences`), where
    /// no token is ever presented ([`OidcConfig::takes_access_tokens`]).
    #[serde(default)]
    pub access_tokens: Option<bool>,
    /// RFC 7662: an opaque token, presented with the Basic username
    /// `introspection_username`, is checked at the introspection endpoint.
    #[serde(default)]
    pub introspection: bool,
    /// The Basic username that marks the password as a token to introspect.
    #[serde(default = "text::introspection_username")]
    pub introspection_username: String,
    /// Accepted `aud` values (any of them).
    #[serde(default)]
    pub audiences: Vec<String>,
    /// The claim whose value is the subject.
    #[serde(default = "text::username_claim")]
    pub username_claim: String,
    /// Tried in order when `username_claim` is missing.
    #[serde(default = "text::username_fallbacks")]
    pub username_fallbacks: Vec<String>,
    /// Dotted claim paths whose values are groups.
    #[serde(default = "text::groups_claims")]
    pub groups_claims: Vec<String>,
    /// The issuer's keys from this file instead of discovery: a
    /// Kubernetes cluster's service-account keys (`kubectl get --raw
    /// /openid/v1/jwks`), whose issuer regauth cannot reach. Read again
    /// whenever the file changes.
    #[serde(default)]
    pub jwks_file: Option<PathBuf>,
    /// The issuer's keys from this URL instead of discovery's `jwks_uri`
    /// (an issuer without a discovery document).
    #[serde(default)]
    pub jwks_url: Option<String>,
    /// Timeout for each call to the IdP.
    #[serde(default = "default::timeout")]
    pub timeout: Seconds,
    /// Clock skew allowed on `exp` and `nbf`.
    #[serde(default = "default::seconds::<30>")]
    pub leeway: Seconds,
    /// An unknown `kid` refetches the JWKS at most this often.
    #[serde(default = "default::seconds::<30>")]
    pub jwks_min_refresh: Seconds,
    /// Give refresh tokens to logins with a JWT access token or an
    /// introspected token too (machine logins get none by default). They
    /// end at the token's own `exp` at the latest.
    #[serde(default)]
    pub offline_tokens: bool,
    /// Claims every token must carry with exactly one of these values
    /// (`{ repository_owner = "acme" }`), checked before anything else.
    /// Required for public CI issuers, where anyone can mint a token.
    #[serde(default)]
    pub required_claims: BTreeMap<String, ClaimValues>,
    /// Further `iss` values this issuer's tokens may carry (Entra ID's v1
    /// tokens, other tenants admitted); set by a provider built on this
    /// one, never written in a configuration.
    #[serde(skip)]
    pub other_issuers: Vec<String>,
    /// Verify the ID token the password grant answers with instead of its
    /// access token (Entra ID's access token for `openid` is Microsoft
    /// Graph's, which no one but Graph can verify); set by a provider
    /// built on this one.
    #[serde(skip)]
    pub password_grant_id_token: bool,
    /// The client proves itself with a signed assertion (a certificate
    /// credential) instead of a secret; set by a provider built on this one.
    #[serde(skip)]
    pub client_assertion: Option<super::ClientAssertion>,
}

impl OidcConfig {
    /// Whether a JWT of this issuer is taken as a password: as
    /// `access_tokens` says, and when it says nothing, unless the
    /// provider serves the browser sign-in alone.
    pub fn takes_access_tokens(&self) -> bool {
        self.access_tokens
            .unwrap_or(!(self.browser_login && !self.password_grant && self.audiences.is_empty()))
    }

    /// Checks what can be checked without the network.
    pub fn validate(&self) -> Result<(), crate::Invalid> {
        let issuer = self.issuer.trim_end_matches('/');
        if PUBLIC_ISSUERS.contains(&issuer) && self.required_claims.is_empty() {
            return Err(crate::Invalid {
                key: "required_claims",
                message: format!(
                    "{issuer} is a public issuer (anyone can get a token from it, with any audience): restrict it, e.g. required_claims = {{ repository_owner = \"acme\" }}"
                ),
            });
        }
        if self.introspection && self.audiences.is_empty() {
            return Err(crate::Invalid {
                key: "audiences",
                message: "introspection needs the accepted audiences (an introspected token for another client must not log in)".into(),
            });
        }
        if self.jwks_file.is_some() && self.jwks_url.is_some() {
            return Err(crate::Invalid {
                key: "jwks_file",
                message: "set jwks_file or jwks_url, not both".into(),
            });
        }
        if let Some(url) = &self.jwks_url {
            if !(url.starts_with("https://") || url.starts_with("http://")) {
                return Err(crate::Invalid {
                    key: "jwks_url",
                    message: "must be an http(s) URL".into(),
                });
            }
        }
        if (self.jwks_file.is_some() || self.jwks_url.is_some()) && !self.takes_access_tokens() {
            return Err(crate::Invalid {
                key: "jwks_file",
                message: "the keys verify tokens presented as passwords: this provider takes none (access_tokens = false)".into(),
            });
        }
        for (claim, values) in &self.required_claims {
            if !crate::is_claim_path(claim) {
                return Err(crate::Invalid {
                    key: "required_claims",
                    message: format!("{claim:?} is not a claim path like kubernetes.io.namespace"),
                });
            }
            if values.values().is_empty() || values.values().iter().any(|v| v.is_empty()) {
                return Err(crate::Invalid {
                    key: "required_claims",
                    message: format!("{claim}: name at least one non-empty value"),
                });
            }
        }
        Ok(())
    }
}

/// One accepted value or a list of them.
#[derive(Clone, Debug, Deserialize)]
#[serde(untagged)]
pub enum ClaimValues {
    /// Exactly this value.
    One(String),
    /// Any of these values.
    Any(Vec<String>),
}

impl ClaimValues {
    pub(crate) fn values(&self) -> &[String] {
        match self {
            ClaimValues::One(v) => std::slice::from_ref(v),
            ClaimValues::Any(v) => v,
        }
    }
}

/// Issuers where anyone can obtain a token with any audience (every
/// repository of a public CI service, every Google account): without
/// `required_claims`, `users = ["*"]` would mean the whole internet.
pub const PUBLIC_ISSUERS: &[&str] = &[
    "https://token.actions.githubusercontent.com",
    "https://gitlab.com",
    "https://accounts.google.com",
    "https://app.terraform.io",
    "https://agent.buildkite.com",
    // Microsoft's tenant for personal accounts
    "https://login.microsoftonline.com/9188040d-6c67-4c5b-b112-36a304b66dad/v2.0",
];

/// serde's defaults of the text keys (the shared ones are
/// [`crate::settings::default`]).
mod text {
    pub(super) fn introspection_username() -> String {
        "oauth2accesstoken".into()
    }

    pub(super) fn username_claim() -> String {
        "preferred_username".into()
    }

    pub(super) fn username_fallbacks() -> Vec<String> {
        vec!["sub".into()]
    }

    pub(super) fn groups_claims() -> Vec<String> {
        vec!["groups".into()]
    }
}
