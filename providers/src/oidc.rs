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

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, JwkSet, KeyAlgorithm};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde_json::Value;

use crate::{
    load_secret, Credentials, Error, Identity, IdentityProvider, Outcome, Rejection, Renewal,
    Seconds, SecretShape,
};

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
    /// A JWT from this issuer as the password -> verified against its JWKS.
    #[serde(default = "default_true")]
    pub access_tokens: bool,
    /// RFC 7662: an opaque token, presented with the Basic username
    /// `introspection_username`, is checked at the introspection endpoint.
    #[serde(default)]
    pub introspection: bool,
    /// The Basic username that marks the password as a token to introspect.
    #[serde(default = "default_introspection_username")]
    pub introspection_username: String,
    /// Accepted `aud` values (any of them).
    #[serde(default)]
    pub audiences: Vec<String>,
    /// The claim whose value is the subject.
    #[serde(default = "default_username_claim")]
    pub username_claim: String,
    /// Tried in order when `username_claim` is missing.
    #[serde(default = "default_username_fallbacks")]
    pub username_fallbacks: Vec<String>,
    /// Dotted claim paths whose values are groups.
    #[serde(default = "default_groups_claims")]
    pub groups_claims: Vec<String>,
    /// Timeout for each call to the IdP.
    #[serde(default = "default_timeout")]
    pub timeout: Seconds,
    /// Clock skew allowed on `exp` and `nbf`.
    #[serde(default = "default_leeway")]
    pub leeway: Seconds,
    /// An unknown `kid` refetches the JWKS at most this often.
    #[serde(default = "default_jwks_refresh")]
    pub jwks_min_refresh: Seconds,
    /// How long a refresh token may carry the groups and claims of the
    /// login that minted it; after that the user must log in again.
    #[serde(default = "default_refresh_max_age")]
    pub refresh_max_age: Seconds,
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
}

impl OidcConfig {
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
        for (claim, values) in &self.required_claims {
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
    fn values(&self) -> &[String] {
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

fn default_refresh_max_age() -> Seconds {
    Seconds(Duration::from_secs(3600))
}

fn default_true() -> bool {
    true
}
fn default_introspection_username() -> String {
    "oauth2accesstoken".into()
}
fn default_username_claim() -> String {
    "preferred_username".into()
}
fn default_username_fallbacks() -> Vec<String> {
    vec!["sub".into()]
}
fn default_groups_claims() -> Vec<String> {
    vec!["groups".into()]
}
fn default_timeout() -> Seconds {
    Seconds(Duration::from_secs(10))
}
fn default_leeway() -> Seconds {
    Seconds(Duration::from_secs(30))
}
fn default_jwks_refresh() -> Seconds {
    Seconds(Duration::from_secs(30))
}

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

/// A fetched key set, with each usable key decoded once.
struct Keys {
    decoded: BTreeMap<String, (Algorithm, DecodingKey)>,
    /// The one key of a single-key set, for tokens without a `kid`.
    only: Option<(Algorithm, DecodingKey)>,
    fetched: Instant,
}

impl Keys {
    fn new(set: JwkSet) -> Self {
        let usable = |jwk: &Jwk| Some((algorithm_of(jwk)?, DecodingKey::from_jwk(jwk).ok()?));
        let decoded = set
            .keys
            .iter()
            .filter_map(|jwk| Some((jwk.common.key_id.clone()?, usable(jwk)?)))
            .collect();
        let only = match set.keys.as_slice() {
            [jwk] => usable(jwk),
            _ => None,
        };
        Self {
            decoded,
            only,
            fetched: Instant::now(),
        }
    }

    fn find(&self, kid: Option<&str>) -> Option<(Algorithm, DecodingKey)> {
        match kid {
            Some(kid) => self.decoded.get(kid).cloned(),
            None => self.only.clone(),
        }
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
        if !config.password_grant && !config.access_tokens && !config.browser_login {
            return Err(Error::Config(
                "enable password_grant, access_tokens, browser_login or several".into(),
            ));
        }
        if config.access_tokens && config.audiences.is_empty() {
            return Err(Error::Config(
                "audiences: name at least one accepted aud".into(),
            ));
        }
        config.validate()?;
        let client_secret = if config.password_grant || config.introspection || config.browser_login
        {
            if config.client_id.is_none() {
                return Err(Error::Config(
                    "password_grant, introspection and browser_login need client_id".into(),
                ));
            }
            match (&config.client_secret_file, &config.client_secret_env) {
                (None, None) => None, // a public client
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
        let response = self
            .http
            .get(url)
            .send()
            .await
            .map_err(|e| Error::Upstream(format!("{}: {}", url, e.without_url())))?;
        if !response.status().is_success() {
            return Err(Error::Upstream(format!(
                "{url} answered {}",
                response.status()
            )));
        }
        crate::json_limited(response, crate::MAX_UPSTREAM_BODY)
            .await
            .map_err(|e| Error::Upstream(format!("{url}: {e}")))
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

    /// The decoded key for `kid`: from the cached set, refetched at most
    /// once per `jwks_min_refresh` when the kid is unknown (one fetch for
    /// all concurrent callers, with the same back-off as discovery). A
    /// failed fetch keeps the last good set. Symmetric keys are never
    /// usable.
    async fn key(&self, kid: Option<&str>) -> Result<Option<(Algorithm, DecodingKey)>, Error> {
        let cached = self.keys.current();
        if let Some(keys) = &cached {
            if let Some(found) = keys.find(kid) {
                return Ok(Some(found));
            }
        }
        let min_refresh = self.config.jwks_min_refresh.0;
        let stale = |current: Option<&Keys>| match current {
            None => true,
            Some(keys) => keys.find(kid).is_none() && keys.fetched.elapsed() >= min_refresh,
        };
        if !stale(cached.as_deref()) {
            return Ok(None);
        }
        let fetched = self
            .keys
            .refresh(stale, || async {
                let discovery = self.discovery().await?;
                let set = self
                    .get_json::<JwkSet>(discovery.jwks_uri().as_str())
                    .await?;
                Ok(Keys::new(set))
            })
            .await;
        match (fetched, cached) {
            (Ok(keys), _) => Ok(keys.find(kid)),
            (Err(e), Some(keys)) => {
                tracing::warn!(provider = %self.name, error = %e, "JWKS refetch failed; keeping the last good key set");
                Ok(keys.find(kid))
            }
            (Err(e), None) => Err(e),
        }
    }

    /// Verifies a JWT from this issuer and returns its claims.
    async fn verify(&self, token: &str) -> Result<Value, Refusal> {
        let header = jsonwebtoken::decode_header(token)
            .map_err(|e| Refusal::Invalid(format!("not a usable JWT header: {e}")))?;
        let (algorithm, key) = self
            .key(header.kid.as_deref())
            .await
            .map_err(Refusal::Unavailable)?
            .ok_or_else(|| {
                Refusal::Invalid(format!(
                    "no usable key {:?} in the issuer's JWKS",
                    header.kid
                ))
            })?;
        if header.alg != algorithm {
            return Err(Refusal::Invalid(format!(
                "token alg {:?} differs from the key's {algorithm:?}",
                header.alg
            )));
        }
        let mut validation = Validation::new(algorithm);
        validation.set_issuer(&[self.issuer.as_str(), self.config.issuer.as_str()]);
        validation.set_audience(&self.config.audiences);
        validation.leeway = self.config.leeway.0.as_secs();
        validation.validate_nbf = true;
        validation.set_required_spec_claims(&["exp", "iss", "aud"]);
        jsonwebtoken::decode::<Value>(token, &key, &validation)
            .map(|data| data.claims)
            .map_err(|e| Refusal::Invalid(format!("token refused: {e}")))
    }

    /// RFC 7662 introspection of an opaque token: its claims if active.
    async fn introspect(&self, token: &str) -> Outcome {
        let discovery = match self.discovery().await {
            Ok(d) => d,
            Err(e) => return Outcome::Unavailable(e),
        };
        let Some(endpoint) = &discovery.additional_metadata().introspection_endpoint else {
            return Outcome::Unavailable(Error::Upstream(
                "the IdP offers no introspection_endpoint".into(),
            ));
        };
        let client_id = self.config.client_id.as_deref().unwrap_or_default();
        let secret = self
            .client_secret
            .as_ref()
            .map(|s| s.expose_secret().to_owned());
        let response = self
            .http
            .post(endpoint)
            .basic_auth(client_id, secret)
            .form(&[("token", token), ("token_type_hint", "access_token")])
            .send()
            .await;
        let response = match response {
            Ok(r) if r.status().is_success() => r,
            Ok(r) => {
                return Outcome::Unavailable(Error::Upstream(format!(
                    "introspection answered {}",
                    r.status()
                )))
            }
            Err(e) => {
                return Outcome::Unavailable(Error::Upstream(format!(
                    "introspection: {}",
                    e.without_url()
                )))
            }
        };
        let claims: Value = match crate::json_limited(response, crate::MAX_UPSTREAM_BODY).await {
            Ok(v) => v,
            Err(e) => return Outcome::Unavailable(Error::Upstream(format!("introspection: {e}"))),
        };
        if claims["active"] != Value::Bool(true) {
            return Outcome::Rejected(Rejection::Other(
                "the IdP says the token is not active".into(),
            ));
        }
        let audience_ok = match &claims["aud"] {
            Value::String(aud) => self.config.audiences.contains(aud),
            Value::Array(auds) => auds
                .iter()
                .filter_map(Value::as_str)
                .any(|a| self.config.audiences.iter().any(|x| x == a)),
            _ => false,
        };
        let issuer_ok = match claims.get("iss").and_then(Value::as_str) {
            Some(iss) => iss.trim_end_matches('/') == self.issuer,
            None => true,
        };
        if !issuer_ok {
            return Outcome::Rejected(Rejection::Other(
                "introspected token is from another issuer".into(),
            ));
        }
        if !audience_ok {
            return Outcome::Rejected(Rejection::Other(
                "introspected token is for another audience".into(),
            ));
        }
        let mut claims = claims;
        if claims.get(&self.config.username_claim).is_none() {
            // RFC 7662 names the user `username`
            if let Some(username) = claims.get("username").cloned() {
                claims[self.config.username_claim.as_str()] = username;
            }
        }
        match self.identity(&claims, Via::Token) {
            Ok(identity) => Outcome::Authenticated(identity),
            Err(rejection) => Outcome::Rejected(rejection),
        }
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
        Ok(client.set_auth_type(if basic {
            openidconnect::AuthType::BasicAuth
        } else {
            openidconnect::AuthType::RequestBody
        }))
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
        let answer = client
            .exchange_password(&username, &password)
            .add_scope(openidconnect::Scope::new("openid".into()))
            .request_async(&http)
            .await;
        match answer {
            Ok(token) => Ok(token.access_token().secret().to_owned()),
            Err(RequestTokenError::ServerResponse(refusal)) => match refusal.error() {
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

    /// Every `required_claims` entry holds one of its values.
    fn required_claims_hold(&self, claims: &Value) -> Result<(), Rejection> {
        for (claim, accepted) in &self.config.required_claims {
            let value = claims.get(claim).and_then(Value::as_str);
            if !value.is_some_and(|v| accepted.values().iter().any(|a| a == v)) {
                return Err(Rejection::Other(format!(
                    "the token's {claim} claim ({}) is not one required_claims accepts",
                    value.unwrap_or("missing")
                )));
            }
        }
        Ok(())
    }

    fn identity(&self, claims: &Value, via: Via) -> Result<Identity, Rejection> {
        self.required_claims_hold(claims)?;
        let username = std::iter::once(&self.config.username_claim)
            .chain(self.config.username_fallbacks.iter())
            .find_map(|c| claims.get(c).and_then(Value::as_str))
            .ok_or_else(|| {
                Rejection::Other(format!(
                    "the token has no {} claim",
                    self.config.username_claim
                ))
            })?;
        let mut groups = BTreeSet::new();
        let mut missing = Vec::new();
        for path in &self.config.groups_claims {
            match claim_path(claims, path) {
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
            Via::Token => claims.get("exp").and_then(Value::as_u64),
            Via::PasswordGrant | Via::Browser => None,
        };
        identity.account_id = claims.get("sub").and_then(Value::as_str).map(str::to_owned);
        identity.proof = match via {
            Via::PasswordGrant => crate::Proof::Password,
            Via::Token => crate::Proof::Token,
            Via::Browser => crate::Proof::Browser,
        };
        // This provider cannot look users up again: a refresh token carries
        // this login, until refresh_max_age or the token's own expiry.
        let max_age = crate::clock::unix_seconds() + self.config.refresh_max_age.0.as_secs();
        let exp = claims.get("exp").and_then(Value::as_u64);
        identity.renewal = match via {
            Via::PasswordGrant => Renewal::Snapshot { until: max_age },
            Via::Token if self.config.offline_tokens => Renewal::Snapshot {
                until: exp.map_or(max_age, |exp| exp.min(max_age)),
            },
            Via::Token | Via::Browser => Renewal::Never,
        };
        identity.claims = claims
            .as_object()
            .map(|o| {
                o.iter()
                    .filter_map(|(k, v)| v.as_str().map(|s| (k.clone(), s.to_owned())))
                    .collect::<BTreeMap<_, _>>()
            })
            .unwrap_or_default();
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

impl Oidc {
    /// The claims of an ID token from the token endpoint, verified with
    /// the issuer's keys (fetched now: only for a code or refresh token
    /// the IdP took, so made-up ones cause no JWKS fetch): signature with
    /// an asymmetric algorithm (never HMAC under the client secret),
    /// issuer, audience, expiry, and the nonce when one was sent.
    async fn verified_id_token(
        &self,
        discovery: &Discovery,
        id_token: &openidconnect::core::CoreIdToken,
        nonce: Option<&str>,
    ) -> Result<Value, Outcome> {
        use base64::Engine as _;
        use openidconnect::{JsonWebKeySet, Nonce};
        let http = bounded_http(&self.http);
        let keys = JsonWebKeySet::fetch_async(discovery.jwks_uri(), &http)
            .await
            .map_err(|e| Outcome::Unavailable(Error::Upstream(format!("JWKS: {e}"))))?;
        let with_keys = discovery.clone().set_jwks(keys);
        let client = self
            .client(&with_keys, None)
            .map_err(Outcome::Unavailable)?;
        let verifier = client.id_token_verifier().set_allowed_algs({
            use openidconnect::core::CoreJwsSigningAlgorithm as A;
            [
                A::RsaSsaPkcs1V15Sha256,
                A::RsaSsaPkcs1V15Sha384,
                A::RsaSsaPkcs1V15Sha512,
                A::RsaSsaPssSha256,
                A::RsaSsaPssSha384,
                A::RsaSsaPssSha512,
                A::EcdsaP256Sha256,
                A::EcdsaP384Sha384,
                A::EdDsa,
            ]
        });
        let checked = match nonce {
            Some(nonce) => id_token
                .claims(&verifier, &Nonce::new(nonce.to_owned()))
                .map(drop),
            // a refresh's ID token carries the sign-in's nonce, or none
            None => id_token
                .claims(&verifier, |_: Option<&Nonce>| Ok(()))
                .map(drop),
        };
        if let Err(e) = checked {
            return Err(Outcome::Rejected(Rejection::Other(format!(
                "ID token refused: {e}"
            ))));
        }
        // Verified: its claims, as the IdP wrote them, become the identity.
        let compact = id_token.to_string();
        compact
            .split('.')
            .nth(1)
            .and_then(|part| {
                base64::engine::general_purpose::URL_SAFE_NO_PAD
                    .decode(part)
                    .ok()
            })
            .and_then(|json| serde_json::from_slice(&json).ok())
            .ok_or_else(|| Outcome::Unavailable(Error::Upstream("an unreadable ID token".into())))
    }
}

#[async_trait]
impl crate::BrowserLogin for Oidc {
    async fn begin(&self, redirect_uri: &str) -> Result<(String, crate::PendingLogin), Error> {
        use openidconnect::core::CoreAuthenticationFlow;
        use openidconnect::{CsrfToken, Nonce, PkceCodeChallenge};
        let discovery = self.discovery().await?;
        let client = self.client(&discovery, Some(redirect_uri))?;
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        let (url, state, nonce) = client
            .authorize_url(
                CoreAuthenticationFlow::AuthorizationCode,
                CsrfToken::new_random,
                Nonce::new_random,
            )
            .add_scope(openidconnect::Scope::new("profile".into()))
            // a refresh token that outlives the IdP session, so regauth
            // can ask about the user again while their app passwords live
            .add_scope(openidconnect::Scope::new("offline_access".into()))
            .set_pkce_challenge(challenge)
            .url();
        Ok((
            url.to_string(),
            crate::PendingLogin {
                state: state.secret().clone(),
                nonce: nonce.secret().clone(),
                pkce_verifier: verifier.secret().clone(),
            },
        ))
    }

    async fn finish(
        &self,
        redirect_uri: &str,
        pending: &crate::PendingLogin,
        state: &str,
        code: &str,
    ) -> crate::Finished {
        use openidconnect::{
            AuthorizationCode, OAuth2TokenResponse as _, PkceCodeVerifier, RequestTokenError,
        };
        let refused = |outcome| crate::Finished {
            outcome,
            refresh_token: None,
        };
        let same_state = aws_lc_rs::constant_time::verify_slices_are_equal(
            state.as_bytes(),
            pending.state.as_bytes(),
        )
        .is_ok();
        if !same_state {
            return refused(Outcome::Rejected(Rejection::Other(
                "the sign-in's state does not match the browser's".into(),
            )));
        }
        let discovery = match self.discovery().await {
            Ok(d) => d,
            Err(e) => return refused(Outcome::Unavailable(e)),
        };
        let http = bounded_http(&self.http);
        let client = match self.client(&discovery, Some(redirect_uri)) {
            Ok(c) => c,
            Err(e) => return refused(Outcome::Unavailable(e)),
        };
        let exchanged = client
            .exchange_code(AuthorizationCode::new(code.to_owned()))
            .set_pkce_verifier(PkceCodeVerifier::new(pending.pkce_verifier.clone()))
            .request_async(&http)
            .await;
        let token = match exchanged {
            Ok(token) => token,
            Err(RequestTokenError::ServerResponse(refusal)) => {
                return refused(Outcome::Rejected(Rejection::Other(format!(
                    "the IdP refused the code: {}",
                    refusal.error()
                ))))
            }
            Err(e) => {
                return refused(Outcome::Unavailable(Error::Upstream(format!(
                    "code exchange: {e}"
                ))))
            }
        };
        let Some(id_token) = openidconnect::TokenResponse::id_token(&token) else {
            return refused(Outcome::Unavailable(Error::Upstream(
                "the token endpoint sent no ID token".into(),
            )));
        };
        let claims = match self
            .verified_id_token(&discovery, id_token, Some(&pending.nonce))
            .await
        {
            Ok(claims) => claims,
            Err(outcome) => return refused(outcome),
        };
        let outcome = match self.identity(&claims, Via::Browser) {
            Ok(identity) => Outcome::Authenticated(identity),
            Err(rejection) => Outcome::Rejected(rejection),
        };
        crate::Finished {
            outcome,
            refresh_token: token
                .refresh_token()
                .map(|t| SecretString::from(t.secret().clone())),
        }
    }

    async fn renew(&self, refresh_token: &SecretString) -> crate::Renewed {
        use openidconnect::core::CoreErrorResponseType as Code;
        use openidconnect::{OAuth2TokenResponse as _, RefreshToken, RequestTokenError};
        let discovery = match self.discovery().await {
            Ok(d) => d,
            Err(e) => return crate::Renewed::Unavailable(e),
        };
        let client = match self.client(&discovery, None) {
            Ok(c) => c,
            Err(e) => return crate::Renewed::Unavailable(e),
        };
        let http = bounded_http(&self.http);
        let refresh = RefreshToken::new(refresh_token.expose_secret().to_owned());
        let answer = client
            .exchange_refresh_token(&refresh)
            .request_async(&http)
            .await;
        let token = match answer {
            Ok(token) => token,
            Err(RequestTokenError::ServerResponse(refusal)) => {
                return match refusal.error() {
                    Code::InvalidClient | Code::UnauthorizedClient => {
                        crate::Renewed::Unavailable(Error::Upstream(format!(
                            "the IdP refused regauth's client ({})",
                            refusal.error()
                        )))
                    }
                    Code::Extension(code)
                        if code == "server_error" || code == "temporarily_unavailable" =>
                    {
                        crate::Renewed::Unavailable(Error::Upstream(format!(
                            "token endpoint: {code}"
                        )))
                    }
                    other => crate::Renewed::Refused(Rejection::Other(format!(
                        "the IdP refused the sign-in's refresh token ({other})"
                    ))),
                }
            }
            Err(e) => return crate::Renewed::Unavailable(Error::Upstream(format!("refresh: {e}"))),
        };
        let identity = match openidconnect::TokenResponse::id_token(&token) {
            None => None,
            Some(id_token) => match self.verified_id_token(&discovery, id_token, None).await {
                Ok(claims) => match self.identity(&claims, Via::Browser) {
                    Ok(identity) => Some(identity),
                    Err(rejection) => return crate::Renewed::Refused(rejection),
                },
                Err(Outcome::Unavailable(e)) => return crate::Renewed::Unavailable(e),
                Err(Outcome::Rejected(rejection)) => return crate::Renewed::Refused(rejection),
                Err(_) => None,
            },
        };
        crate::Renewed::Current {
            identity,
            refresh_token: token
                .refresh_token()
                .map(|t| SecretString::from(t.secret().clone())),
        }
    }
}

/// The signature algorithm a JWK is for; `None` for symmetric keys.
fn algorithm_of(jwk: &Jwk) -> Option<Algorithm> {
    let declared = jwk.common.key_algorithm;
    match &jwk.algorithm {
        AlgorithmParameters::RSA(_) => Some(match declared {
            Some(KeyAlgorithm::RS384) => Algorithm::RS384,
            Some(KeyAlgorithm::RS512) => Algorithm::RS512,
            Some(KeyAlgorithm::PS256) => Algorithm::PS256,
            Some(KeyAlgorithm::PS384) => Algorithm::PS384,
            Some(KeyAlgorithm::PS512) => Algorithm::PS512,
            _ => Algorithm::RS256,
        }),
        AlgorithmParameters::EllipticCurve(ec) => match ec.curve {
            EllipticCurve::P256 => Some(Algorithm::ES256),
            EllipticCurve::P384 => Some(Algorithm::ES384),
            _ => None,
        },
        AlgorithmParameters::OctetKeyPair(_) => Some(Algorithm::EdDSA),
        AlgorithmParameters::OctetKey(_) => None,
    }
}

/// `realm_access.roles` -> claims["realm_access"]["roles"].
fn claim_path<'v>(claims: &'v Value, path: &str) -> Option<&'v Value> {
    path.split('.')
        .try_fold(claims, |value, key| value.get(key))
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
                self.config.access_tokens
                    && issuer.is_some_and(|i| i.trim_end_matches('/') == self.issuer)
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
        // As strict as the chain's routing: a password with two dots is a
        // password, not a token.
        let looks_like_jwt = jsonwebtoken::decode_header(secret).is_ok();
        if looks_like_jwt && self.config.access_tokens {
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
        let secret = credentials.secret.expose_secret();
        let token = jsonwebtoken::decode_header(secret).is_ok()
            || (self.config.introspection
                && credentials.username == self.config.introspection_username);
        (!token && self.config.password_grant)
            .then(|| self.normalize_username(&credentials.username).into_owned())
    }

    async fn ready(&self) -> Result<(), Error> {
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
        assert_eq!(
            claim_path(&claims, "realm_access.roles").unwrap()[0],
            "developer"
        );
        assert_eq!(
            claim_path(&claims, "resource_access.registry.roles").unwrap()[0],
            "pusher"
        );
        assert!(claim_path(&claims, "resource_access.other.roles").is_none());
        assert_eq!(group_name("/platform/core"), "platform/core");
        assert_eq!(group_name("plain"), "plain");
    }

    #[test]
    fn symmetric_keys_have_no_algorithm() {
        let oct: Jwk =
            serde_json::from_value(serde_json::json!({"kty": "oct", "k": "c2VjcmV0", "kid": "h"}))
                .unwrap();
        assert_eq!(algorithm_of(&oct), None);
        let ec: Jwk = serde_json::from_value(serde_json::json!({
            "kty": "EC", "crv": "P-256", "kid": "e",
            "x": "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU",
            "y": "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"
        }))
        .unwrap();
        assert_eq!(algorithm_of(&ec), Some(Algorithm::ES256));
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
        let ok = Oidc::new(
            "o",
            &parse(serde_json::json!({"issuer": "https://x/", "audiences": ["a"]})),
        )
        .unwrap();
        assert!(ok.accepts(SecretShape::Jwt {
            issuer: Some("https://x")
        }));
        assert!(!ok.accepts(SecretShape::Jwt {
            issuer: Some("https://y")
        }));
        assert!(!ok.accepts(SecretShape::Password));
    }
}
