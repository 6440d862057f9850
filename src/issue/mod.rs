//! The issue pipeline, as plain Rust: a parsed token request in, a signed
//! token or one [`Refusal`] out. No HTTP types live here; `http/` only
//! parses requests into a [`TokenRequest`] and turns the result into a
//! response and one audit event.
//!
//! The order is fixed and every step is bounded: the service and the scope
//! list are checked first, credentials are size-checked before anything
//! keeps them, the provider chain decides who is asking (or the refresh
//! token does, from its own contents), the policy decides what they get,
//! and the token is signed or reused. A refusal never says why a login
//! failed; its `reason` is for the log.

mod device;
mod grant;
mod redeem;
mod refusal;
mod response;
mod reuse;
#[cfg(test)]
mod tests;

pub use refusal::{DeviceWait, Refusal};
pub use response::response_body;
pub use reuse::{IssuedTokens, SignedToken};

use std::net::IpAddr;
use std::sync::Arc;

use regauth_providers::{Credentials, ExposeSecret};

use crate::app_passwords::AppPasswords;
use crate::authorize::Authorizer;
use crate::config::{Config, Limits, TokenConfig};
use crate::domain::claims::{Access, Claims, NOT_BEFORE_SKEW};
use crate::domain::policy::Principal;
use crate::domain::scope::{parse_scopes, scopes_text, Scope};
use crate::identity::Chain;
use crate::keys::KeyRing;
use crate::refresh::RefreshTokens;
use refusal::admit;

/// Which of the registry's two token flows a request uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flow {
    /// `GET` per token.md (Basic credentials, `offline_token`).
    Get,
    /// `POST` per oauth.md (`grant_type`, `access_type=offline`).
    Post,
}

/// Who a token request says it is.
pub enum Who {
    /// No credentials at all.
    Anonymous,
    /// A username and a secret (password, access token, PAT).
    Credentials(Credentials),
    /// A refresh token (docker's identity token), POST only.
    Refresh(regauth_providers::SecretString),
    /// A device code polled for (RFC 8628), POST only, by the client it
    /// was given to.
    DeviceCode {
        /// The device code.
        code: regauth_providers::SecretString,
        /// The `client_id` of the poll.
        client_id: String,
    },
}

/// A parsed token request.
pub struct TokenRequest<'a> {
    /// The token flow, which shapes the answer.
    pub flow: Flow,
    /// The `service` parameter, if any.
    pub service: Option<&'a str>,
    /// Every `scope` value as sent (each may hold several scopes).
    pub scopes: &'a [&'a str],
    /// The credentials.
    pub who: Who,
    /// Whether a refresh token was asked for.
    pub offline: bool,
    /// The client's address (after trusted proxies).
    pub client: IpAddr,
}

/// What a token is signed for.
#[derive(Clone, Copy)]
struct Grant<'a> {
    principal: &'a Principal,
    service: &'a str,
    access: &'a [Access],
    /// `access` as text.
    granted: &'a str,
}

/// A token handed out. Its `Debug` leaves the tokens out.
pub struct Issued {
    /// Who got it.
    pub principal: Principal,
    /// The service it is for (its `aud`).
    pub service: String,
    /// What was asked for, after parsing and merging.
    pub requested: Vec<Scope>,
    /// What was granted (only scopes with at least one action).
    pub access: Vec<Access>,
    /// `access` as text (the audit line, the reuse key, POST's `scope`).
    pub granted: String,
    /// The signed token, possibly one signed moments ago for the same grant.
    pub token: Arc<SignedToken>,
    /// Seconds the token lives.
    pub expires_in: u64,
    /// A refresh token, when one was asked for and the login may have one.
    pub refresh_token: Option<String>,
    /// The credentials were answered from the verdict cache.
    pub cache_hit: bool,
    /// The token was reused rather than signed.
    pub reused: bool,
}

impl std::fmt::Debug for Issued {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Issued")
            .field("principal", &self.principal)
            .field("service", &self.service)
            .field("access", &self.access)
            .field("expires_in", &self.expires_in)
            .field(
                "refresh_token",
                &self.refresh_token.as_ref().map(|_| "[redacted]"),
            )
            .field("cache_hit", &self.cache_hit)
            .field("reused", &self.reused)
            .finish_non_exhaustive()
    }
}

/// The token pipeline and everything it uses: who checks credentials,
/// who decides grants, the keys that sign, the tokens kept for reuse, the
/// refresh tokens, and the bounds and services of the configuration.
/// Built once per state; [`Issuer::issue`] is a request's whole decision.
pub struct Issuer {
    chain: Arc<Chain>,
    authorizer: Arc<dyn Authorizer>,
    keys: KeyRing,
    reuse: IssuedTokens,
    refresh: Option<RefreshTokens>,
    devices: Option<Arc<AppPasswords>>,
    limits: Limits,
    anonymous: bool,
    token: TokenConfig,
}

/// What an [`Issuer`] is made of besides its configuration.
pub struct IssuerParts {
    /// Checks credentials.
    pub chain: Arc<Chain>,
    /// Decides grants.
    pub authorizer: Arc<dyn Authorizer>,
    /// Signs tokens.
    pub keys: KeyRing,
    /// Refresh tokens, unless disabled.
    pub refresh: Option<RefreshTokens>,
    /// App passwords, when on: device logins are made of them.
    pub devices: Option<Arc<AppPasswords>>,
}

impl Issuer {
    /// An issuer of `parts` under `config`'s bounds, services and
    /// lifetimes.
    pub fn new(parts: IssuerParts, config: &Config) -> Self {
        Self {
            chain: parts.chain,
            authorizer: parts.authorizer,
            keys: parts.keys,
            reuse: IssuedTokens::new(config.token.reuse_window),
            refresh: parts.refresh,
            devices: parts.devices,
            limits: config.server.limits.clone(),
            anonymous: config.server.anonymous,
            token: config.token.clone(),
        }
    }

    /// The provider chain.
    pub fn chain(&self) -> &Arc<Chain> {
        &self.chain
    }

    /// The signing keys.
    pub fn keys(&self) -> &KeyRing {
        &self.keys
    }

    /// The refresh tokens, unless the refresh grant is disabled.
    pub fn refresh(&self) -> Option<&RefreshTokens> {
        self.refresh.as_ref()
    }

    /// Tokens handed out again within `token.reuse_window` so far.
    pub fn reused(&self) -> u64 {
        self.reuse.reused()
    }

    /// Runs the pipeline for one request at `now` (seconds since the
    /// epoch): the service and the scopes first, then who is asking, what
    /// they get, and the token.
    pub async fn issue(&self, request: TokenRequest<'_>, now: i64) -> Result<Issued, Refusal> {
        let service = self.service(request.service)?;
        let requested = self.requested(request.scopes)?;
        let (principal, refresh_token, cache_hit) = self
            .principal(request.who, service, request.offline, request.client)
            .await?;
        grant::from_its_networks(&principal, request.client)?;
        let access = self
            .access(&principal, service, &requested, request.client)
            .await?;
        let lifetime = self.token.lifetime_for(service).as_secs();
        let expires_in = grant::expires_in(&principal, lifetime, now)?;
        let granted = scopes_text(&access);
        let grant = Grant {
            principal: &principal,
            service,
            access: &access,
            granted: &granted,
        };
        let (token, reused) = self.sign_or_reuse(grant, expires_in, expires_in == lifetime, now)?;
        Ok(Issued {
            principal,
            service: service.to_owned(),
            requested,
            access,
            granted,
            token,
            expires_in,
            refresh_token,
            cache_hit,
            reused,
        })
    }

    /// The service asked for, which must be configured; none is fine when
    /// only one is.
    fn service<'s>(&'s self, asked: Option<&str>) -> Result<&'s str, Refusal> {
        let services = &self.token.services;
        match asked {
            None | Some("") => match services.as_slice() {
                [only] => Ok(only.as_str()),
                _ => Err(Refusal::bad_request(
                    "the service parameter is required (several services are configured)",
                )),
            },
            Some(name) => services
                .iter()
                .find(|s| s.as_str() == name)
                .map(String::as_str)
                .ok_or_else(|| Refusal::bad_request("unknown service")),
        }
    }

    /// The scopes asked for, parsed and merged, within the bounds.
    fn requested(&self, scopes: &[&str]) -> Result<Vec<Scope>, Refusal> {
        let limits = &self.limits;
        let items: usize = scopes.iter().map(|s| s.split(' ').count()).sum();
        if items > limits.max_scopes {
            return Err(Refusal::bad_request(format!(
                "too many scopes ({items}); at most {} per request",
                limits.max_scopes
            )));
        }
        let requested = parse_scopes(scopes.iter().copied());
        if let Some(long) = requested
            .iter()
            .find(|s| s.name.len() > limits.max_repository_bytes)
        {
            return Err(Refusal::bad_request(format!(
                "a repository name is longer than {} bytes ({} bytes)",
                limits.max_repository_bytes,
                long.name.len()
            )));
        }
        Ok(requested)
    }

    /// Who is asking, with a refresh token when one was asked for and
    /// whether the verdict came from the cache.
    async fn principal(
        &self,
        who: Who,
        service: &str,
        offline: bool,
        client: IpAddr,
    ) -> Result<(Principal, Option<String>, bool), Refusal> {
        match who {
            Who::Anonymous if self.anonymous => Ok((Principal::Anonymous, None, false)),
            Who::Anonymous => Err(Refusal::unauthorized("anonymous access is disabled")),
            Who::Credentials(credentials) => {
                self.check_credential_bounds(&credentials)?;
                if credentials.username.is_empty() {
                    return Err(Refusal::unauthorized("empty username"));
                }
                let verdict = self.chain.authenticate(&credentials, client).await;
                let (identity, cache_hit) = admit(verdict, &credentials.username)?;
                let refresh_token = match (&self.refresh, offline) {
                    (Some(refresh), true) => {
                        redeem::refresh_token_for(refresh, &identity, service).await?
                    }
                    _ => None,
                };
                Ok((Principal::Authenticated(identity), refresh_token, cache_hit))
            }
            Who::Refresh(token) => {
                let (identity, cache_hit) =
                    self.redeem(token.expose_secret(), service, client).await?;
                Ok((Principal::Authenticated(identity), None, cache_hit))
            }
            Who::DeviceCode { code, client_id } => {
                let (identity, token) = self
                    .device_login(code.expose_secret(), &client_id, client)
                    .await?;
                Ok((Principal::Authenticated(identity), Some(token), false))
            }
        }
    }

    /// Usernames and secrets over their bounds are refused before anything
    /// (a cache, a counter, a log line) keeps them.
    fn check_credential_bounds(&self, credentials: &Credentials) -> Result<(), Refusal> {
        let limits = &self.limits;
        if credentials.username.len() > limits.max_username_bytes {
            return Err(Refusal::bad_request(format!(
                "the username is longer than {} bytes",
                limits.max_username_bytes
            )));
        }
        if credentials.secret.expose_secret().len() > limits.max_secret_bytes {
            return Err(Refusal::bad_request(format!(
                "the password or token is longer than {} bytes",
                limits.max_secret_bytes
            )));
        }
        Ok(())
    }

    /// What the principal gets of what it asked for: the authorizer's
    /// grants, within the credential's own limits.
    async fn access(
        &self,
        principal: &Principal,
        service: &str,
        requested: &[Scope],
        client: IpAddr,
    ) -> Result<Vec<Access>, Refusal> {
        let grants = self
            .authorizer
            .authorize_from(principal, service, requested, client)
            .await
            .map_err(|e| Refusal::Unavailable {
                reason: format!("authorizer: {e}"),
                message: "access cannot be decided right now; try again shortly",
                retry_after: 2,
            })?;
        Ok(grant::within_credential(principal, grants))
    }

    /// The token for this grant: the identical one signed within
    /// `token.reuse_window`, or a new signature at `now`.
    fn sign_or_reuse(
        &self,
        grant: Grant<'_>,
        expires_in: u64,
        reusable: bool,
        now: i64,
    ) -> Result<(Arc<SignedToken>, bool), Refusal> {
        let Grant {
            principal,
            service,
            access,
            granted,
        } = grant;
        let reuse_key = IssuedTokens::key(
            principal.subject(),
            principal.provider().unwrap_or(""),
            service,
            granted,
        );
        if let Some(issued) = reusable.then(|| self.reuse.get(&reuse_key)).flatten() {
            return Ok((issued, true));
        }
        let claims = Claims {
            iss: &self.token.issuer,
            sub: principal.subject(),
            aud: service,
            exp: now + expires_in as i64,
            nbf: now - NOT_BEFORE_SKEW,
            iat: now,
            jti: crate::random::random_id().map_err(|e| Refusal::Internal {
                reason: format!("token id: {e}"),
            })?,
            access,
        };
        let jwt = self
            .keys
            .signing(now)
            .sign(&claims)
            .map_err(|e| Refusal::Internal {
                reason: format!("signing failed: {e}"),
            })?;
        let signed = Arc::new(SignedToken::new(&jwt, now, expires_in));
        if reusable {
            self.reuse.insert(reuse_key, signed.clone());
        }
        Ok((signed, false))
    }
}
