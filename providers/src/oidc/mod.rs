//! The `oidc` provider: Keycloak or any OpenID Connect issuer.
//!
//! Two ways in. The password grant (Keycloak's "Direct Access Grants")
//! trades a username and password for an access token at the IdP. An
//! access token used as the password (a CI job's client-credentials token,
//! a GitHub Actions or GitLab ID token) is verified locally against the
//! issuer's JWKS. Either way the verified claims become the identity: a
//! username claim, groups from configured claim paths (Keycloak's leading
//! `/` removed), and the top-level string claims for policy rules.
//!
//! A third way, for people rather than machines: a browser sign-in
//! (`browser_login = true`, authorization code with PKCE, `state` and
//! `nonce`, ID-token verification), which regauth's app-password page
//! uses. Discovery, the password grant and the browser sign-in go through
//! the `openidconnect` crate, over regauth's own HTTP client (no
//! redirects, bounded answers).
//!
//! Discovery is lazy and retried, so regauth starts while the IdP is down.
//! The signature algorithm comes from the JWK, never from the token alone:
//! `none` and HMAC are never accepted. Tokens and secrets are never logged.

mod assertion;
mod browser;
mod config;
mod introspect;
mod jwks;

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde_json::Value;

use crate::{
    load_secret, ClaimSet, Credentials, Error, Identity, IdentityProvider, Outcome, Rejection,
    Renewal, SecretShape,
};

pub use self::assertion::ClientAssertion;
pub use self::config::{ClaimValues, OidcConfig, PUBLIC_ISSUERS};
use self::jwks::Keys;

/// What discovery documents carry beyond OpenID Connect Discovery's
/// fields: RFC 8414's introspection endpoint.
#[derive(Clone, Debug, Deserialize, serde::Serialize)]
struct ExtraMetadata {
    #[serde(default)]
    introspection_endpoint: Option<String>,
}

impl openidconnect::AdditionalProviderMetadata for ExtraMetadata {}

/// The discovery document, as the `openidconnect` crate reads it.
type Discovery = openidconnect::ProviderMetadata<
    ExtraMetadata,
    openidconnect::core::CoreAuthDisplay,
    openidconnect::core::CoreClientAuthMethod,
    openidconnect::core::CoreClaimName,
    openidconnect::core::CoreClaimType,
    openidconnect::core::CoreGrantType,
    openidconnect::core::CoreJweContentEncryptionAlgorithm,
    openidconnect::core::CoreJweKeyManagementAlgorithm,
    openidconnect::core::CoreJsonWebKey,
    openidconnect::core::CoreResponseMode,
    openidconnect::core::CoreResponseType,
    openidconnect::core::CoreSubjectIdentifierType,
>;

/// An OpenID Connect client of this issuer, with a token endpoint.
type OidcClient = openidconnect::Client<
    openidconnect::EmptyAdditionalClaims,
    openidconnect::core::CoreAuthDisplay,
    openidconnect::core::CoreGenderClaim,
    openidconnect::core::CoreJweContentEncryptionAlgorithm,
    openidconnect::core::CoreJsonWebKey,
    openidconnect::core::CoreAuthPrompt,
    openidconnect::StandardErrorResponse<openidconnect::core::CoreErrorResponseType>,
    openidconnect::core::CoreTokenResponse,
    openidconnect::core::CoreTokenIntrospectionResponse,
    openidconnect::core::CoreRevocableToken,
    openidconnect::core::CoreRevocationErrorResponse,
    openidconnect::EndpointSet,
    openidconnect::EndpointNotSet,
    openidconnect::EndpointNotSet,
    openidconnect::EndpointNotSet,
    openidconnect::EndpointSet,
    openidconnect::EndpointMaybeSet,
>;

/// Why an HTTP call for `openidconnect` failed (no URL, never a secret).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct HttpError(String);

/// `openidconnect`'s HTTP client: regauth's client (TLS roots, timeouts, no
/// redirects) with answers bounded to [`crate::MAX_UPSTREAM_BODY`].
fn bounded_http(
    client: &reqwest::Client,
) -> impl Fn(
    openidconnect::HttpRequest,
) -> std::pin::Pin<
    Box<dyn std::future::Future<Output = Result<openidconnect::HttpResponse, HttpError>> + Send>,
> + '_ {
    move |request| {
        let client = client.clone();
        Box::pin(async move {
            let request = reqwest::Request::try_from(request)
                .map_err(|e| HttpError(e.without_url().to_string()))?;
            let response = client
                .execute(request)
                .await
                .map_err(|e| HttpError(e.without_url().to_string()))?;
            let status = response.status();
            let headers = response.headers().clone();
            let body = crate::body_limited(response, crate::MAX_UPSTREAM_BODY)
                .await
                .map_err(HttpError)?;
            let mut answer = http::Response::new(body);
            *answer.status_mut() = status;
            *answer.headers_mut() = headers;
            Ok(answer)
        })
    }
}

/// The `oidc` provider: one configured issuer.
pub struct Oidc {
    name: String,
    config: OidcConfig,
    issuer: String,
    client_secret: Option<SecretString>,
    http: reqwest::Client,
    discovery: crate::Fetched<Discovery>,
    keys: crate::Fetched<Keys>,
    warned_missing_groups: AtomicBool,
}

/// How a login reached this provider, which decides its refresh tokens.
#[derive(Clone, Copy)]
enum Via {
    /// The user's password, traded at the IdP.
    PasswordGrant,
    /// A token presented as the password (JWT or introspected).
    Token,
    /// A browser sign-in (its ID token).
    Browser,
}

/// Why a token was not accepted.
enum Refusal {
    /// The token is not valid (logged, then a 401).
    Invalid(String),
    /// The IdP could not be asked (a 503).
    Unavailable(Error),
}

impl Oidc {
    /// The provider instance `name`: checks the configuration and loads the
    /// client secret; the IdP is not contacted yet.
    pub fn new(name: &str, config: &OidcConfig) -> Result<Self, Error> {
        let issuer = config.issuer.trim_end_matches('/').to_owned();
        if !(issuer.starts_with("https://") || issuer.starts_with("http://")) {
            return Err(Error::Config("issuer must be an http(s) URL".into()));
        }
        if !config.password_grant && !config.takes_access_tokens() && !config.browser_login {
            return Err(Error::Config(
                "enable password_grant, access_tokens, browser_login or several".into(),
            ));
        }
        if config.takes_access_tokens() && config.audiences.is_empty() {
            return Err(Error::Config(
                "audiences: name at least one accepted aud".into(),
            ));
        }
        config.validate()?;
        if let Some(path) = &config.jwks_file {
            // read once now, so that a missing or broken file stops startup
            let text = std::fs::read(path)
                .map_err(|e| Error::Config(format!("jwks_file {}: {e}", path.display())))?;
            Keys::parse_file(&text, None, jwks::Empty::Refused)?;
        }
        let client_secret = if config.password_grant || config.introspection || config.browser_login
        {
            if config.client_id.is_none() {
                return Err(Error::Config(
                    "password_grant, introspection and browser_login need client_id".into(),
                ));
            }
            match (&config.client_secret_file, &config.client_secret_env) {
                // a public client, or one with a certificate credential
                (None, None) => None,
                (file, env) => Some(load_secret(
                    "client_secret",
                    file.as_deref(),
                    env.as_deref(),
                )?),
            }
        } else {
            None
        };
        let http = crate::http_client(config.ca_file.as_deref(), config.timeout.0)?;
        Ok(Self {
            name: name.to_owned(),
            config: config.clone(),
            issuer,
            client_secret,
            http,
            discovery: crate::Fetched::new(),
            keys: crate::Fetched::new(),
            warned_missing_groups: AtomicBool::new(false),
        })
    }

    async fn get_json<T: serde::de::DeserializeOwned>(&self, url: &str) -> Result<T, Error> {
        json_answer(url, self.http.get(url)).await
    }

    /// The discovery document, fetched on first use. Concurrent callers
    /// share one fetch, and after a failure the IdP is asked again only
    /// after a growing pause (1 s, doubling, at most a minute).
    async fn discovery(&self) -> Result<Arc<Discovery>, Error> {
        if let Some(found) = self.discovery.current() {
            return Ok(found);
        }
        self.discovery
            .refresh(
                |current| current.is_none(),
                || async {
                    let url = format!("{}/.well-known/openid-configuration", self.issuer);
                    let found: Discovery = self.get_json(&url).await?;
                    let named = found.issuer().as_str().trim_end_matches('/');
                    if named != self.issuer {
                        return Err(Error::Upstream(format!(
                            "discovery names issuer {named:?}, configured {:?}",
                            self.issuer
                        )));
                    }
                    Ok(found)
                },
            )
            .await
    }

    /// A client of the issuer for the token endpoint (password grant,
    /// code exchange); `redirect` for the browser sign-in.
    fn client(&self, discovery: &Discovery, redirect: Option<&str>) -> Result<OidcClient, Error> {
        let client_id = self.config.client_id.clone().unwrap_or_default();
        let secret = self
            .client_secret
            .as_ref()
            .map(|s| openidconnect::ClientSecret::new(s.expose_secret().to_owned()));
        let client = openidconnect::core::CoreClient::from_provider_metadata(
            discovery.clone(),
            openidconnect::ClientId::new(client_id),
            secret,
        );
        let token_url = discovery
            .token_endpoint()
            .cloned()
            .ok_or_else(|| Error::Upstream("the IdP offers no token_endpoint".into()))?;
        let client = client.set_token_uri(token_url);
        let client = match redirect {
            Some(uri) => client.set_redirect_uri(
                openidconnect::RedirectUrl::new(uri.to_owned())
                    .map_err(|e| Error::Config(format!("redirect URI {uri:?}: {e}")))?,
            ),
            None => client,
        };
        // the client authenticates as the IdP's metadata says it may
        let basic = discovery
            .token_endpoint_auth_methods_supported()
            .is_none_or(|methods| {
                methods.contains(&openidconnect::core::CoreClientAuthMethod::ClientSecretBasic)
            });
        let basic = basic && self.config.client_assertion.is_none();
        Ok(client.set_auth_type(if basic {
            openidconnect::AuthType::BasicAuth
        } else {
            openidconnect::AuthType::RequestBody
        }))
    }

    /// The client assertion's form parameters for the token endpoint, when
    /// the client has a certificate credential (none otherwise).
    fn assertion(&self, discovery: &Discovery) -> Result<Vec<(&'static str, String)>, Error> {
        let Some(assertion) = &self.config.client_assertion else {
            return Ok(Vec::new());
        };
        let endpoint = discovery
            .token_endpoint()
            .ok_or_else(|| Error::Upstream("the IdP offers no token_endpoint".into()))?;
        Ok(assertion.params(endpoint.url().as_str())?.to_vec())
    }

    /// The password grant: Ok(access token), or the outcome to return.
    async fn password_grant(&self, credentials: &Credentials) -> Result<String, Outcome> {
        use openidconnect::core::CoreErrorResponseType as Code;
        use openidconnect::{OAuth2TokenResponse as _, RequestTokenError};
        let discovery = self.discovery().await.map_err(Outcome::Unavailable)?;
        let client = self
            .client(&discovery, None)
            .map_err(Outcome::Unavailable)?;
        let username = openidconnect::ResourceOwnerUsername::new(credentials.username.clone());
        let password = openidconnect::ResourceOwnerPassword::new(
            credentials.secret.expose_secret().to_owned(),
        );
        let http = bounded_http(&self.http);
        let mut request = client
            .exchange_password(&username, &password)
            .add_scope(openidconnect::Scope::new("openid".into()));
        for (name, value) in self.assertion(&discovery).map_err(Outcome::Unavailable)? {
            request = request.add_extra_param(name, value);
        }
        if self.config.password_grant_id_token {
            // the ID token names the user only with `profile`
            request = request.add_scope(openidconnect::Scope::new("profile".into()));
        }
        let answer = request.request_async(&http).await;
        match answer {
            Ok(token) if self.config.password_grant_id_token => {
                token.extra_fields().id_token().map(|t| t.to_string()).ok_or_else(|| {
                    Outcome::Unavailable(Error::Upstream(
                        "the token endpoint sent no ID token for the password grant".into(),
                    ))
                })
            }
            Ok(token) => Ok(token.access_token().secret().to_owned()),
            Err(RequestTokenError::ServerResponse(refusal)) => match refusal.error() {
                Code::InvalidGrant if needs_second_factor(refusal.error_description()) => {
                    Err(Outcome::Rejected(Rejection::Other(
                        "the IdP asks this account for a second factor, which a password cannot give: it signs in at the page (app passwords, regauth login)".into(),
                    )))
                }
                Code::InvalidGrant => Err(Outcome::Rejected(Rejection::WrongSecret)),
                Code::InvalidClient | Code::UnauthorizedClient => {
                    tracing::error!(provider = %self.name, error = %refusal.error(), "the IdP refused regauth's client: check client_id, the secret and Direct Access Grants");
                    Err(Outcome::Unavailable(Error::Upstream(format!(
                        "the IdP refused the client ({})",
                        refusal.error()
                    ))))
                }
                Code::Extension(code)
                    if code == "server_error" || code == "temporarily_unavailable" =>
                {
                    Err(Outcome::Unavailable(Error::Upstream(format!(
                        "token endpoint: {code}"
                    ))))
                }
                other => Err(Outcome::Rejected(Rejection::Other(format!(
                    "token endpoint refused the password grant: {other}"
                )))),
            },
            Err(RequestTokenError::Request(e)) => Err(Outcome::Unavailable(Error::Upstream(
                format!("token endpoint: {e}"),
            ))),
            Err(RequestTokenError::Parse(_, _)) | Err(RequestTokenError::Other(_)) => {
                Err(Outcome::Unavailable(Error::Upstream(
                    "token endpoint sent an answer that is not a token response".into(),
                )))
            }
        }
    }

    /// Every `required_claims` entry holds one of its values (at its
    /// path; a list holds it when any element does).
    fn required_claims_hold(&self, claims: &ClaimSet) -> Result<(), Rejection> {
        for (claim, accepted) in &self.config.required_claims {
            let holds = claims.any(claim, |v| accepted.values().iter().any(|a| a == v));
            if holds.is_none() {
                let found = claims.text(claim);
                return Err(Rejection::Other(format!(
                    "the token's {claim} claim ({}) is not one required_claims accepts",
                    found.as_deref().unwrap_or("missing or not text")
                )));
            }
        }
        Ok(())
    }

    fn identity(&self, payload: &Value, via: Via) -> Result<Identity, Rejection> {
        let mut claims = ClaimSet::of_token(payload);
        self.required_claims_hold(&claims)?;
        let username = std::iter::once(&self.config.username_claim)
            .chain(self.config.username_fallbacks.iter())
            .find_map(|c| claims.get(c).and_then(Value::as_str))
            .ok_or_else(|| {
                Rejection::Other(format!(
                    "the token has no {} claim",
                    self.config.username_claim
                ))
            })?
            .to_owned();
        let mut groups = BTreeSet::new();
        let mut missing = Vec::new();
        for path in &self.config.groups_claims {
            match claims.get(path) {
                Some(Value::Array(values)) => {
                    groups.extend(values.iter().filter_map(Value::as_str).map(group_name));
                }
                Some(Value::String(value)) => {
                    groups.insert(group_name(value));
                }
                _ => missing.push(path.as_str()),
            }
        }
        if !missing.is_empty() && !self.warned_missing_groups.swap(true, Ordering::Relaxed) {
            tracing::warn!(provider = %self.name, claims = ?missing, "tokens lack a configured groups claim; in Keycloak, add a \"Group Membership\" mapper (full group path) to the client's dedicated scope");
        }
        let mut identity = Identity::new(username, self.name.clone()).with_groups(groups);
        // A token presented as the password ends with its `exp`; after a
        // password grant the credential is the password, and the access
        // token regauth got for it says nothing about registry tokens.
        identity.expires_at = match via {
            Via::Token => payload.get("exp").and_then(Value::as_u64),
            Via::PasswordGrant | Via::Browser => None,
        };
        identity.account_id = payload
            .get("sub")
            .and_then(Value::as_str)
            .map(str::to_owned);
        identity.proof = match via {
            Via::PasswordGrant => crate::Proof::Password,
            Via::Token => crate::Proof::Token,
            Via::Browser => crate::Proof::Browser,
        };
        // This provider cannot look users up again: a refresh token carries
        // this login (and a token's ends with its `exp`, `expires_at`).
        identity.renewal = match via {
            Via::PasswordGrant => Renewal::Snapshot,
            Via::Token if self.config.offline_tokens => Renewal::Snapshot,
            Via::Token | Via::Browser => Renewal::Never,
        };
        // The groups are the identity's groups already: carried once, so
        // that a refresh token of a user in many groups stays small.
        for path in &self.config.groups_claims {
            claims.remove(path);
        }
        identity.claims = claims;
        Ok(identity)
    }

    async fn outcome_of_token(&self, token: &str, via: Via) -> Outcome {
        match self.verify(token).await {
            Ok(claims) => match self.identity(&claims, via) {
                Ok(identity) => Outcome::Authenticated(identity),
                Err(rejection) => Outcome::Rejected(rejection),
            },
            Err(Refusal::Invalid(why)) => Outcome::Rejected(Rejection::Other(why)),
            Err(Refusal::Unavailable(e)) => Outcome::Unavailable(e),
        }
    }
}

/// Whether a refused password grant says the account needs a second
/// factor or a federated sign-in (Entra ID's AADSTS50076, 50079, 50158,
/// 50072): the password may be right, and no password alone will do.
fn needs_second_factor(description: Option<&String>) -> bool {
    const CODES: [&str; 4] = ["AADSTS50076", "AADSTS50079", "AADSTS50158", "AADSTS50072"];
    description.is_some_and(|d| CODES.iter().any(|code| d.contains(code)))
}

/// Whether the secret is a JWT, as the chain routes it.
pub(crate) fn is_jwt(credentials: &Credentials) -> bool {
    let secret = credentials.secret.expose_secret();
    matches!(
        SecretShape::of(&credentials.username, secret),
        SecretShape::Jwt { .. }
    )
}

/// The JSON answer to `request`, bounded to [`crate::MAX_UPSTREAM_BODY`];
/// `what` names the call in errors (never a secret).
async fn json_answer<T: serde::de::DeserializeOwned>(
    what: &str,
    request: reqwest::RequestBuilder,
) -> Result<T, Error> {
    let response = request
        .send()
        .await
        .map_err(|e| Error::Upstream(format!("{what}: {}", e.without_url())))?;
    if !response.status().is_success() {
        return Err(Error::Upstream(format!(
            "{what} answered {}",
            response.status()
        )));
    }
    crate::json_limited(response, crate::MAX_UPSTREAM_BODY)
        .await
        .map_err(|e| Error::Upstream(format!("{what}: {e}")))
}

/// Keycloak group paths: `/platform/core` -> `platform/core`.
fn group_name(value: &str) -> String {
    value.trim_start_matches('/').to_owned()
}

#[async_trait]
impl IdentityProvider for Oidc {
    fn name(&self) -> &str {
        &self.name
    }

    fn kind(&self) -> crate::ProviderKind {
        crate::ProviderKind::Oidc
    }

    fn accepts(&self, shape: SecretShape<'_>) -> bool {
        match shape {
            SecretShape::Password => self.config.password_grant || self.config.introspection,
            SecretShape::Jwt { issuer } => {
                self.config.takes_access_tokens()
                    && issuer.is_some_and(|i| {
                        i.trim_end_matches('/') == self.issuer
                            || self.config.other_issuers.iter().any(|o| *o == *i)
                    })
            }
            SecretShape::GitHubToken
            | SecretShape::GitLabToken
            | SecretShape::HexToken
            | SecretShape::AppPassword => false,
        }
    }

    async fn authenticate(&self, credentials: &Credentials) -> Outcome {
        let secret = credentials.secret.expose_secret();
        if secret.is_empty() {
            return Outcome::Rejected(Rejection::EmptySecret);
        }
        // The chain's routing: a password with two dots is a password, not
        // a token.
        if is_jwt(credentials) && self.config.takes_access_tokens() {
            return self.outcome_of_token(secret, Via::Token).await;
        }
        // Opaque tokens are introspected only under the agreed username, so
        // a password is never sent to the introspection endpoint.
        if self.config.introspection && credentials.username == self.config.introspection_username {
            return self.introspect(secret).await;
        }
        if !self.config.password_grant {
            return Outcome::NotMine;
        }
        match self.password_grant(credentials).await {
            Ok(token) => self.outcome_of_token(&token, Via::PasswordGrant).await,
            Err(outcome) => outcome,
        }
    }

    /// Keycloak (and most IdPs) match usernames case-insensitively.
    fn normalize_username<'a>(&self, username: &'a str) -> std::borrow::Cow<'a, str> {
        std::borrow::Cow::Owned(username.trim().to_lowercase())
    }

    /// Only the password grant tries an account; a token stands alone.
    async fn account_of(&self, credentials: &Credentials) -> Option<String> {
        let token = is_jwt(credentials)
            || (self.config.introspection
                && credentials.username == self.config.introspection_username);
        (!token && self.config.password_grant)
            .then(|| self.normalize_username(&credentials.username).into_owned())
    }

    /// Discovery answered, or for an issuer known by its keys alone
    /// (`jwks_file`, `jwks_url`), the keys are there.
    async fn ready(&self) -> Result<(), Error> {
        let keys_alone = (self.config.jwks_file.is_some() || self.config.jwks_url.is_some())
            && !(self.config.password_grant
                || self.config.browser_login
                || self.config.introspection);
        if keys_alone {
            return self.keys_ready().await;
        }
        self.discovery().await.map(|_| ())
    }

    fn browser_login(&self) -> Option<&dyn crate::BrowserLogin> {
        self.config
            .browser_login
            .then_some(self as &dyn crate::BrowserLogin)
    }

    fn counters(&self) -> Vec<(&'static str, u64)> {
        use std::sync::atomic::Ordering::Relaxed;
        vec![
            ("discovery_fetches", self.discovery.fetches.load(Relaxed)),
            ("jwks_fetches", self.keys.fetches.load(Relaxed)),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn claim_paths_and_keycloak_groups() {
        let claims = serde_json::json!({
            "groups": ["/platform", "/platform/core"],
            "realm_access": {"roles": ["developer"]},
            "resource_access": {"registry": {"roles": ["pusher"]}},
        });
        let claims = ClaimSet::of_token(&claims);
        assert_eq!(claims.get("realm_access.roles").unwrap()[0], "developer");
        assert_eq!(
            claims.get("resource_access.registry.roles").unwrap()[0],
            "pusher"
        );
        assert!(claims.get("resource_access.other.roles").is_none());
        assert_eq!(group_name("/platform/core"), "platform/core");
        assert_eq!(group_name("plain"), "plain");
    }

    #[test]
    fn configuration_is_checked() {
        let parse =
            |json: serde_json::Value| -> OidcConfig { serde_json::from_value(json).unwrap() };
        assert!(Oidc::new(
            "o",
            &parse(serde_json::json!({"issuer": "ftp://x", "audiences": ["a"]}))
        )
        .is_err());
        assert!(
            Oidc::new("o", &parse(serde_json::json!({"issuer": "https://x"}))).is_err(),
            "audiences required"
        );
        assert!(Oidc::new("o", &parse(serde_json::json!({"issuer": "https://x", "audiences": ["a"], "password_grant": true}))).is_err(), "client_id required");
        // a provider for the browser sign-in alone takes no token: no audience to name
        let browser =
            serde_json::json!({"issuer": "https://x", "client_id": "c", "browser_login": true});
        assert!(
            Oidc::new("o", &parse(browser.clone())).is_ok(),
            "browser-only needs no audiences"
        );
        let mut tokens_too = browser;
        tokens_too["access_tokens"] = true.into();
        assert!(
            Oidc::new("o", &parse(tokens_too)).is_err(),
            "access tokens need audiences"
        );
        let ok = Oidc::new(
            "o",
            &parse(serde_json::json!({"issuer": "https://x/", "audiences": ["a"]})),
        )
        .unwrap();
        assert!(ok.accepts(SecretShape::Jwt {
            issuer: Some("https://x".into())
        }));
        assert!(!ok.accepts(SecretShape::Jwt {
            issuer: Some("https://y".into())
        }));
        assert!(!ok.accepts(SecretShape::Password));
    }
}
