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

mod response;
mod reuse;

pub use response::response_body;
pub use reuse::{IssuedTokens, SignedToken};

use std::net::IpAddr;
use std::sync::Arc;

use regauth_providers::{Credentials, ExposeSecret, Identity, Renewal};

use crate::domain::claims::{Access, Claims};
use crate::domain::policy::Principal;
use crate::domain::scope::{parse_scopes, Action, ResourceType, Scope};
use crate::identity::chain::Verdict;
use crate::identity::throttle::Held;
use crate::ops::audit;
use crate::refresh::RefreshError;
use crate::AppState;

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
}

/// A parsed token request.
pub struct TokenRequest<'a> {
    /// The token flow, which shapes the answer.
    pub flow: Flow,
    /// The `service` parameter, if any.
    pub service: Option<&'a str>,
    /// Every `scope` value as sent (each may hold several scopes).
    pub scopes: Vec<&'a str>,
    /// The credentials.
    pub who: Who,
    /// Whether a refresh token was asked for.
    pub offline: bool,
    /// The client's address (after trusted proxies).
    pub client: IpAddr,
}

/// A token handed out.
#[derive(Debug)]
pub struct Issued {
    /// Who got it.
    pub principal: Principal,
    /// The service it is for (its `aud`).
    pub service: String,
    /// What was asked for, after parsing and merging.
    pub requested: Vec<Scope>,
    /// What was granted (only scopes with at least one action).
    pub access: Vec<Access>,
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

/// Why no token was handed out. Each variant knows its status, its
/// registry error code and its audit outcome (see `http::error`).
#[derive(Debug)]
pub enum Refusal {
    /// The request is malformed or over a bound (400).
    BadRequest {
        /// What the client is told.
        message: String,
        /// The RFC 6749 error code for the POST flow.
        oauth: &'static str,
    },
    /// An unsupported `grant_type` (400, `unsupported_grant_type`).
    UnsupportedGrant {
        /// The grant type asked for, for the log.
        grant: String,
    },
    /// The credentials are not good (401).
    Unauthorized {
        /// For the log, never the client.
        reason: String,
        /// Something the user can fix, when there is one.
        user_action: Option<String>,
        /// The realm for `WWW-Authenticate`.
        realm: String,
    },
    /// A refresh token that can no longer be used: log in again (401).
    LoginAgain {
        /// For the log.
        reason: String,
        /// The realm for `WWW-Authenticate`.
        realm: String,
    },
    /// Too many failed logins: the provider is not asked (401).
    Throttled {
        /// For the log.
        reason: String,
        /// The realm for `WWW-Authenticate`.
        realm: String,
    },
    /// An identity provider or a store could not answer (503).
    Unavailable {
        /// For the log.
        reason: String,
        /// What the client is told.
        message: &'static str,
        /// Seconds before asking again makes sense.
        retry_after: u64,
    },
    /// The refresh grant is disabled (404, which every client takes as
    /// "use the password").
    RefreshDisabled,
    /// Something that should not happen (500 without details).
    Internal {
        /// For the log.
        reason: String,
    },
}

impl Refusal {
    /// How the audit line and the metrics count this refusal.
    pub fn outcome(&self) -> audit::Outcome {
        match self {
            Refusal::BadRequest { .. } | Refusal::UnsupportedGrant { .. } => {
                audit::Outcome::BadRequest
            }
            Refusal::RefreshDisabled => audit::Outcome::BadRequest,
            Refusal::Unauthorized { .. } | Refusal::LoginAgain { .. } => {
                audit::Outcome::Unauthorized
            }
            Refusal::Throttled { .. } => audit::Outcome::Throttled,
            Refusal::Unavailable { .. } | Refusal::Internal { .. } => audit::Outcome::Unavailable,
        }
    }

    /// Why, for the log.
    pub fn reason(&self) -> String {
        match self {
            Refusal::BadRequest { message, .. } => message.clone(),
            Refusal::UnsupportedGrant { grant } => format!("unsupported grant_type {grant:?}"),
            Refusal::Unauthorized { reason, .. }
            | Refusal::LoginAgain { reason, .. }
            | Refusal::Throttled { reason, .. }
            | Refusal::Unavailable { reason, .. }
            | Refusal::Internal { reason } => reason.clone(),
            Refusal::RefreshDisabled => "refresh tokens are disabled".into(),
        }
    }

    /// A 400 with a message for the client.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Refusal::BadRequest {
            message: message.into(),
            oauth: "invalid_request",
        }
    }
}

/// Runs the pipeline for one request.
pub async fn issue(state: &AppState, request: TokenRequest<'_>) -> Result<Issued, Refusal> {
    let config = &state.config;
    let limits = &config.server.limits;
    let service = resolve_service(state, request.service)?;
    let items: usize = request.scopes.iter().map(|s| s.split(' ').count()).sum();
    if items > limits.max_scopes {
        return Err(Refusal::bad_request(format!(
            "too many scopes ({items}); at most {} per request",
            limits.max_scopes
        )));
    }
    let requested = parse_scopes(request.scopes.iter().copied());
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

    let (principal, refresh_token, cache_hit) = match request.who {
        Who::Anonymous if config.server.anonymous => (Principal::Anonymous, None, false),
        Who::Anonymous => {
            return Err(Refusal::Unauthorized {
                reason: "anonymous access is disabled".into(),
                user_action: None,
                realm: state.realm.clone(),
            })
        }
        Who::Credentials(credentials) => {
            check_credential_bounds(state, &credentials)?;
            if credentials.username.is_empty() {
                return Err(Refusal::Unauthorized {
                    reason: "empty username".into(),
                    user_action: None,
                    realm: state.realm.clone(),
                });
            }
            let verdict = state.chain.authenticate(&credentials, request.client).await;
            let (identity, cache_hit) = admit(state, verdict, &credentials.username)?;
            let refresh_token = match (&state.refresh, request.offline) {
                (Some(refresh), true) => refresh_token_for(refresh, &identity, service).await?,
                _ => None,
            };
            (Principal::Authenticated(identity), refresh_token, cache_hit)
        }
        Who::Refresh(token) => {
            let (identity, cache_hit) = redeem(state, token.expose_secret(), service).await?;
            (Principal::Authenticated(identity), None, cache_hit)
        }
    };

    let grants = state
        .authorizer
        .authorize_from(&principal, service, &requested, request.client)
        .await
        .map_err(|e| Refusal::Unavailable {
            reason: format!("authorizer: {e}"),
            message: "access cannot be decided right now; try again shortly",
            retry_after: 2,
        })?;
    // An app password narrowed to some repositories gets no more there,
    // and a forge token no more than its package scopes allow.
    let limit = principal.identity().and_then(|id| id.limit.as_deref());
    let rights = principal.identity().and_then(|id| id.package_rights);
    let access: Vec<Access> = grants
        .into_iter()
        .map(|grant| match limit {
            Some(limit) => crate::app_passwords::within(limit, grant),
            None => grant,
        })
        .map(|grant| match rights {
            Some(rights) => within_package_rights(rights, grant),
            None => grant,
        })
        .filter(|grant| !grant.actions.is_empty())
        .map(|grant| Access {
            kind: grant.scope.kind,
            name: grant.scope.name,
            actions: grant.actions,
        })
        .collect();
    let lifetime = config.token.lifetime_for(service).as_secs();
    // A token never outlives the credential behind it (an app password,
    // a CI job's token, a robot's last day); one already at its end (a
    // JWT inside the clock leeway) gets none.
    let left = principal
        .identity()
        .and_then(|id| id.expires_at)
        .map(|at| at.saturating_sub(u64::try_from(crate::clock::now()).unwrap_or_default()));
    if left == Some(0) {
        return Err(Refusal::Unauthorized {
            reason: "the credential has expired".into(),
            user_action: Some("the password or token has expired".into()),
            realm: state.realm.clone(),
        });
    }
    let expires_in = left.map_or(lifetime, |left| left.min(lifetime));
    let (token, reused) = sign_or_reuse(
        state,
        &principal,
        service,
        &access,
        expires_in,
        expires_in == lifetime,
    )?;
    Ok(Issued {
        principal,
        service: service.to_owned(),
        requested,
        access,
        token,
        expires_in,
        refresh_token,
        cache_hit,
        reused,
    })
}

/// A grant cut down to what a forge token's package scopes allow: pull
/// with read, push with write, delete with delete; `*` and resources other
/// than repositories only when it may do all three.
fn within_package_rights(
    rights: regauth_providers::PackageRights,
    mut grant: crate::domain::policy::Grant,
) -> crate::domain::policy::Grant {
    let all = rights.read && rights.write && rights.delete;
    if grant.scope.kind != ResourceType::Repository && !all {
        grant.actions.clear();
        return grant;
    }
    grant.actions.retain(|action| match action {
        Action::Pull => rights.read,
        Action::Push => rights.write,
        Action::Delete => rights.delete,
        _ => all,
    });
    grant
}

/// Usernames and secrets over their bounds are refused before anything
/// (a cache, a counter, a log line) keeps them.
fn check_credential_bounds(state: &AppState, credentials: &Credentials) -> Result<(), Refusal> {
    let limits = &state.config.server.limits;
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

/// A refresh token for this login, if it may have one. A login too large
/// to seal gets none (the client keeps using its password); a failing RNG
/// is an error.
async fn refresh_token_for(
    refresh: &crate::refresh::RefreshTokens,
    identity: &Identity,
    service: &str,
) -> Result<Option<String>, Refusal> {
    match refresh.issue(identity, service).await {
        Ok(token) => {
            if token.is_none() && identity.renewal == Renewal::Never {
                tracing::debug!(subject = %crate::ops::audit::Safe(&identity.subject), provider = %identity.provider, "no refresh token for a machine login");
            }
            Ok(token)
        }
        Err(RefreshError::TooLarge(bytes)) => {
            tracing::warn!(subject = %crate::ops::audit::Safe(&identity.subject), provider = %identity.provider, bytes, "the login's groups and claims are too large for a refresh token; none issued");
            Ok(None)
        }
        Err(RefreshError::Store(e)) => Err(Refusal::Unavailable {
            reason: format!("revocation ledger: {e}"),
            message: "refresh tokens cannot be issued right now",
            retry_after: 5,
        }),
        Err(e) => Err(Refusal::Internal {
            reason: format!("refresh token: {e}"),
        }),
    }
}

/// The identity a refresh token stands for: its own snapshot, or a fresh
/// lookup at its provider that must find the same credential stamp.
async fn redeem(
    state: &AppState,
    token: &str,
    service: &str,
) -> Result<(Arc<Identity>, bool), Refusal> {
    let Some(refresh) = &state.refresh else {
        return Err(Refusal::RefreshDisabled);
    };
    let login_again = |reason: String| Refusal::LoginAgain {
        reason,
        realm: state.realm.clone(),
    };
    if token.len() > state.config.server.limits.max_secret_bytes {
        return Err(Refusal::bad_request("the refresh token is too long"));
    }
    let claims = match refresh.check(token, service).await {
        Ok(claims) => claims,
        Err(RefreshError::Store(e)) => {
            return Err(Refusal::Unavailable {
                reason: format!("revocation store: {e}"),
                message: "refresh tokens cannot be checked right now",
                retry_after: 5,
            })
        }
        Err(e) => return Err(login_again(format!("refresh token refused: {e}"))),
    };
    let Some(provider) = state.chain.provider(&claims.provider) else {
        return Err(login_again(format!(
            "refresh token of provider {:?}, which is no longer configured",
            claims.provider
        )));
    };
    // A provider that can look its users up never takes a login's word
    // for them: a snapshot token there (forged with a leaked refresh key,
    // say) would name users and groups the directory never vouched for.
    if claims.snapshot.is_some() && provider.looks_up() {
        return Err(login_again(format!(
            "a snapshot refresh token for {}, which looks its users up",
            claims.provider
        )));
    }
    if let Some(identity) = claims.snapshot_identity() {
        // Providers that cannot look users up: this login's own groups and
        // claims, within the token's own deadline (checked by `check`).
        return Ok((Arc::new(identity), false));
    }
    let verdict = state
        .chain
        .lookup(&claims.provider, &claims.sub, token)
        .await;
    let (identity, cache_hit) = match admit(state, verdict, &claims.sub) {
        Ok(found) => found,
        Err(Refusal::Unauthorized { reason, .. }) => return Err(login_again(reason)),
        Err(other) => return Err(other),
    };
    if identity.subject != claims.sub || identity.provider != claims.provider {
        return Err(login_again(format!(
            "the refresh token of {} now resolves to {} at {}",
            audit::Safe(&claims.sub),
            audit::Safe(&identity.subject),
            identity.provider
        )));
    }
    if identity.credential_stamp != claims.stamp {
        return Err(login_again(format!(
            "the credentials of {} at {} changed after this refresh token was issued",
            audit::Safe(&claims.sub),
            claims.provider
        )));
    }
    Ok((identity, cache_hit))
}

/// Turns the chain's verdict into an identity (and whether it was cached).
fn admit(state: &AppState, verdict: Verdict, user: &str) -> Result<(Arc<Identity>, bool), Refusal> {
    let user = audit::Safe(user);
    let unauthorized = |reason: String, user_action: Option<String>| Refusal::Unauthorized {
        reason,
        user_action,
        realm: state.realm.clone(),
    };
    match verdict {
        Verdict::Authenticated {
            identity,
            cache_hit,
        } => Ok((identity, cache_hit)),
        Verdict::Rejected { provider, reason } => Err(unauthorized(
            format!("rejected by {provider}: {reason} (user \"{user}\")"),
            reason.client_message().map(str::to_owned),
        )),
        Verdict::Unknown => Err(unauthorized(
            format!("no provider knows user \"{user}\""),
            None,
        )),
        Verdict::Throttled(held) => Err(Refusal::Throttled {
            reason: match held {
                Held::Client => format!(
                    "too many failed logins from this client's network (user \"{user}\"); not asking the identity provider"
                ),
                Held::Account | Held::Provider | Held::Store(_) => format!(
                    "too many failed logins for user \"{user}\"; not asking the identity provider"
                ),
            },
            realm: state.realm.clone(),
        }),
        Verdict::Unavailable {
            provider,
            reason,
            retry_after,
        } => Err(Refusal::Unavailable {
            reason: format!("provider {provider} unavailable: {reason}"),
            message: "the identity provider is unavailable; try again shortly",
            retry_after: retry_after.unwrap_or(5),
        }),
    }
}

fn resolve_service<'s>(state: &'s AppState, asked: Option<&str>) -> Result<&'s str, Refusal> {
    let services = &state.config.token.services;
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

/// The token for this grant: the identical one signed within
/// `token.reuse_window`, or a new signature.
fn sign_or_reuse(
    state: &AppState,
    principal: &Principal,
    service: &str,
    access: &[Access],
    expires_in: u64,
    reusable: bool,
) -> Result<(Arc<SignedToken>, bool), Refusal> {
    let config = &state.config;
    let granted = scopes_text(access);
    let reuse_key = IssuedTokens::key(
        principal.subject(),
        principal.provider().unwrap_or(""),
        service,
        &granted,
    );
    if let Some(issued) = reusable.then(|| state.issued.get(&reuse_key)).flatten() {
        return Ok((issued, true));
    }
    let iat = crate::clock::now();
    let claims = Claims {
        iss: &config.token.issuer,
        sub: principal.subject(),
        aud: service,
        exp: iat + expires_in as i64,
        nbf: iat - crate::domain::claims::NOT_BEFORE_SKEW,
        iat,
        jti: crate::keys::random_id().map_err(|e| Refusal::Internal {
            reason: format!("token id: {e}"),
        })?,
        access,
    };
    let jwt = state
        .keys
        .signing(iat)
        .sign(&claims)
        .map_err(|e| Refusal::Internal {
            reason: format!("signing failed: {e}"),
        })?;
    let signed = Arc::new(SignedToken::new(jwt, iat, expires_in));
    if reusable {
        state.issued.insert(reuse_key, signed.clone());
    }
    Ok((signed, false))
}

/// `type:name:actions` items joined by spaces (the audit line, the reuse
/// key and the POST answer's `scope`).
pub fn scopes_text<'a, I, S>(items: I) -> String
where
    I: IntoIterator<Item = &'a S>,
    S: ScopeLike + 'a,
{
    let mut out = String::new();
    for item in items {
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(item.kind().as_str());
        out.push(':');
        out.push_str(item.name());
        out.push(':');
        for (i, action) in item.actions().iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            out.push_str(action.as_str());
        }
    }
    out
}

/// A requested or granted scope, for [`scopes_text`].
pub trait ScopeLike {
    /// The resource type.
    fn kind(&self) -> &ResourceType;
    /// The resource name.
    fn name(&self) -> &str;
    /// The actions.
    fn actions(&self) -> &[Action];
}

impl ScopeLike for Scope {
    fn kind(&self) -> &ResourceType {
        &self.kind
    }
    fn name(&self) -> &str {
        &self.name
    }
    fn actions(&self) -> &[Action] {
        &self.actions
    }
}

impl ScopeLike for Access {
    fn kind(&self) -> &ResourceType {
        &self.kind
    }
    fn name(&self) -> &str {
        &self.name
    }
    fn actions(&self) -> &[Action] {
        &self.actions
    }
}
