//! The token endpoint: `GET` per the registry's token.md and `POST` per its
//! oauth.md, on `/auth`, `/token` and `/auth/token`.
//!
//! The handler parses leniently (what real clients send) and answers
//! strictly (what real registries and clients accept): exactly 200 on
//! success, 401 for bad credentials and never an anonymous token instead,
//! 400 for malformed requests, 503 when the identity provider is down.
//! It never echoes a secret and never says why a login failed.

use std::borrow::Cow;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Instant;

use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use regauth_providers::Credentials;

use super::error::ApiError;
use crate::audit::{self, Event, Outcome};
use crate::cache::{Issued, IssuedTokens};
use crate::chain::Verdict;
use crate::policy::Principal;
use crate::refresh::RefreshError;
use crate::scope::{parse_basic, parse_bool, parse_scopes, BasicAuth};
use crate::token::{self, Access, Claims};
use crate::AppState;

/// The parameters of a token request, from the query or the form body.
#[derive(Default)]
struct Params<'a> {
    service: Option<Cow<'a, str>>,
    scopes: Vec<Cow<'a, str>>,
    client_id: Option<Cow<'a, str>>,
    grant_type: Option<Cow<'a, str>>,
    offline_token: Option<Cow<'a, str>>,
    access_type: Option<Cow<'a, str>>,
    refresh_token: Option<Cow<'a, str>>,
    username: Option<Cow<'a, str>>,
    password: Option<Cow<'a, str>>,
}

impl<'a> Params<'a> {
    fn parse(input: &'a [u8]) -> Self {
        let mut p = Params::default();
        for (key, value) in form_urlencoded::parse(input) {
            match key.as_ref() {
                "service" => p.service = Some(value),
                "scope" => p.scopes.push(value),
                "client_id" => p.client_id = Some(value),
                "grant_type" => p.grant_type = Some(value),
                "offline_token" => p.offline_token = Some(value),
                "access_type" => p.access_type = Some(value),
                "refresh_token" => p.refresh_token = Some(value),
                "username" => p.username = Some(value),
                "password" => p.password = Some(value),
                // `account` is informational only: never authenticate from
                // it, and ignore it when it differs from the Basic user.
                _ => {}
            }
        }
        p
    }
}

/// The success body: `token` and `access_token` (the same JWT), integer
/// `expires_in`, RFC 3339 `issued_at`, and on POST the granted `scope`.
/// Written by hand because it is the hot path and only `scope` can need
/// escaping (a JWT is base64url and dots).
fn token_body(
    jwt: &str,
    expires_in: u64,
    iat: i64,
    scope: Option<&str>,
    refresh_token: Option<&str>,
) -> bytes::Bytes {
    let issued_at = token::rfc3339(iat);
    let mut body = String::with_capacity(2 * jwt.len() + 128);
    body.push_str("{\"token\":\"");
    body.push_str(jwt);
    body.push_str("\",\"access_token\":\"");
    body.push_str(jwt);
    body.push_str("\",\"expires_in\":");
    body.push_str(&expires_in.to_string());
    body.push_str(",\"issued_at\":\"");
    body.push_str(&issued_at);
    body.push('"');
    if let Some(scope) = scope {
        body.push_str(",\"scope\":");
        body.push_str(&serde_json::Value::from(scope).to_string());
    }
    if let Some(refresh_token) = refresh_token {
        // base64url with a fixed prefix: nothing to escape
        body.push_str(",\"refresh_token\":\"");
        body.push_str(refresh_token);
        body.push('"');
    }
    body.push('}');
    body.into()
}

/// The client's address: the peer, or, when the peer is a trusted proxy,
/// the right-most `X-Forwarded-For` entry that is not a trusted proxy.
fn client_ip(state: &AppState, request: &Request) -> IpAddr {
    let peer = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip())
        .unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
    let trusted = &state.config.server.trusted_proxies;
    let is_trusted = |ip: IpAddr| trusted.iter().any(|net| net.contains(ip));
    if !is_trusted(peer) {
        return peer;
    }
    let forwarded = request
        .headers()
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|hop| hop.trim().parse::<IpAddr>().ok())
        .collect::<Vec<_>>();
    forwarded
        .into_iter()
        .rev()
        .find(|ip| !is_trusted(*ip))
        .unwrap_or(peer)
}

type Failure = (ApiError, Outcome);

/// Who a token request says it is.
enum Who {
    Anonymous,
    Credentials(Credentials),
    /// A refresh token (docker's identity token), POST only.
    Refresh(String),
}

pub async fn get(State(state): State<Arc<AppState>>, request: Request) -> Response {
    let started = Instant::now();
    let ip = client_ip(&state, &request);
    let params = Params::parse(request.uri().query().unwrap_or("").as_bytes());
    let mut event = Event {
        method: "GET",
        grant: "basic",
        client_ip: Some(ip),
        client_id: params.client_id.as_deref().unwrap_or(""),
        ..Default::default()
    };
    let result = match parse_basic(
        request
            .headers()
            .get(header::AUTHORIZATION)
            .map(|h| h.as_bytes()),
    ) {
        Err(e) => Err((ApiError::bad_request(e.to_string()), Outcome::BadRequest)),
        Ok(BasicAuth::Absent) => {
            event.grant = "anonymous";
            issue(&state, &mut event, &params, Who::Anonymous, ip, false).await
        }
        Ok(BasicAuth::Present { username, password }) => {
            let who = Who::Credentials(Credentials::new(username, password));
            issue(&state, &mut event, &params, who, ip, false).await
        }
    };
    finish(&state, event, result, started)
}

pub async fn post(State(state): State<Arc<AppState>>, request: Request) -> Response {
    let started = Instant::now();
    let ip = client_ip(&state, &request);
    let (parts, body) = request.into_parts();
    let mut event = Event {
        method: "POST",
        client_ip: Some(ip),
        ..Default::default()
    };
    let body = match read_form(&parts.headers, body, state.config.server.max_body_bytes).await {
        Ok(body) => body,
        Err(e) => return finish(&state, event, Err((e, Outcome::BadRequest)), started),
    };
    let params = Params::parse(&body);
    event.client_id = params.client_id.as_deref().unwrap_or("");
    let result = match params.grant_type.as_deref() {
        Some("password") => {
            event.grant = "password";
            match (params.username.as_deref(), params.password.as_deref()) {
                (Some(username), Some(password)) => {
                    let who = Who::Credentials(Credentials::new(username, password));
                    issue(&state, &mut event, &params, who, ip, true).await
                }
                _ => Err((
                    ApiError::bad_request("the password grant needs username and password"),
                    Outcome::BadRequest,
                )),
            }
        }
        Some("refresh_token") => {
            event.grant = "refresh_token";
            match (&state.refresh, params.refresh_token.as_deref()) {
                // Disabled: 404 is the one answer every client falls back on.
                (None, _) => {
                    event.reason = "refresh tokens are disabled".into();
                    Err((ApiError::not_found(), Outcome::BadRequest))
                }
                (Some(_), None | Some("")) => Err((
                    ApiError::bad_request("the refresh_token grant needs refresh_token"),
                    Outcome::BadRequest,
                )),
                (Some(_), Some(token)) => {
                    let who = Who::Refresh(token.to_owned());
                    issue(&state, &mut event, &params, who, ip, true).await
                }
            }
        }
        Some(other) => {
            event.grant = "unsupported";
            event.reason = format!("unsupported grant_type {other:?}");
            Err((
                ApiError::bad_request("unsupported grant_type (use password or refresh_token)")
                    .with_code("UNSUPPORTED")
                    .oauth("unsupported_grant_type"),
                Outcome::BadRequest,
            ))
        }
        None => Err((
            ApiError::bad_request("grant_type is required").oauth("invalid_request"),
            Outcome::BadRequest,
        )),
    };
    finish(&state, event, result, started)
}

/// Reads an `application/x-www-form-urlencoded` body (chunked or not) up to
/// `limit` bytes.
async fn read_form(headers: &HeaderMap, body: Body, limit: usize) -> Result<Vec<u8>, ApiError> {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let media = content_type.split(';').next().unwrap_or("").trim();
    if !media.eq_ignore_ascii_case("application/x-www-form-urlencoded") {
        return Err(ApiError::bad_request(
            "the body must be application/x-www-form-urlencoded",
        ));
    }
    axum::body::to_bytes(body, limit)
        .await
        .map(|b| b.to_vec())
        .map_err(|_| {
            ApiError::bad_request(format!(
                "the request body is larger than {limit} bytes or unreadable"
            ))
        })
}

async fn issue<'p>(
    state: &'p AppState,
    event: &mut Event<'p>,
    params: &'p Params<'p>,
    who: Who,
    ip: IpAddr,
    oauth: bool,
) -> Result<Response, Failure> {
    let config = &state.config;
    let service = resolve_service(state, params.service.as_deref())?;
    event.service = service;
    let items: usize = params.scopes.iter().map(|s| s.split(' ').count()).sum();
    if items > config.server.max_scopes {
        return Err((
            ApiError::bad_request(format!(
                "too many scopes ({items}); at most {} per request",
                config.server.max_scopes
            )),
            Outcome::BadRequest,
        ));
    }
    let scopes = parse_scopes(params.scopes.iter().map(|s| s.as_ref()));
    event.requested = join_scopes(
        scopes
            .iter()
            .map(|s| (s.kind.as_str(), s.name.as_str(), &s.actions)),
    );

    let offline = if oauth {
        params.access_type.as_deref() == Some("offline")
    } else {
        params.offline_token.as_deref().and_then(parse_bool) == Some(true)
    };
    let mut refresh_token = None;
    let principal = match who {
        Who::Anonymous if config.server.anonymous => Principal::Anonymous,
        Who::Anonymous => {
            event.reason = "anonymous access is disabled".into();
            return Err((ApiError::unauthorized(&state.realm), Outcome::Unauthorized));
        }
        Who::Credentials(credentials) => {
            if credentials.username.is_empty() {
                event.reason = "empty username".into();
                return Err((ApiError::unauthorized(&state.realm), Outcome::Unauthorized));
            }
            let verdict = state.chain.authenticate(&credentials, ip).await;
            let principal = admit(state, event, verdict, &credentials.username)?;
            if let (true, Some(refresh), Principal::Authenticated(id)) =
                (offline, &state.refresh, &principal)
            {
                refresh_token = Some(refresh.issue(&id.subject, &id.provider, service));
            }
            principal
        }
        Who::Refresh(token) => {
            let Some(refresh) = &state.refresh else {
                return Err((ApiError::not_found(), Outcome::BadRequest));
            };
            let claims = match refresh.check(&token, service) {
                Ok(claims) => claims,
                Err(RefreshError::Store(e)) => {
                    event.reason = format!("revocation store: {e}");
                    return Err((
                        ApiError::unavailable("refresh tokens cannot be checked right now", 5),
                        Outcome::Unavailable,
                    ));
                }
                Err(e) => {
                    event.reason = format!("refresh token refused: {e}");
                    return Err((login_again(&state.realm), Outcome::Unauthorized));
                }
            };
            // The subject comes from the token alone; its groups are
            // resolved again, without a password.
            let verdict = state
                .chain
                .lookup(&claims.provider, &claims.sub, &token)
                .await;
            match admit(state, event, verdict, &claims.sub) {
                Err((e, Outcome::Unauthorized)) if e.status == 401 => {
                    return Err((login_again(&state.realm), Outcome::Unauthorized))
                }
                other => other?,
            }
        }
    };

    let policy = state.policy.load();
    let access: Vec<Access> = scopes
        .iter()
        .map(|scope| policy.evaluate(&principal, service, scope))
        .filter(|grant| !grant.actions.is_empty())
        .map(|grant| Access {
            kind: grant.scope.kind,
            name: grant.scope.name,
            actions: grant.actions,
        })
        .collect();
    event.granted = join_scopes(
        access
            .iter()
            .map(|a| (a.kind.as_str(), a.name.as_str(), &a.actions)),
    );

    let expires_in = config.token.lifetime_for(service).as_secs();
    let reuse_key = IssuedTokens::key(
        principal.subject(),
        principal.provider().unwrap_or(""),
        service,
        &event.granted,
    );
    let (jwt, iat, get_body) = match state.issued.get(&reuse_key) {
        Some(issued) => {
            event.reused = true;
            (issued.jwt.clone(), issued.iat, issued.body.clone())
        }
        None => {
            let iat = token::now();
            let claims = Claims {
                iss: &config.token.issuer,
                sub: principal.subject(),
                aud: service,
                exp: iat + expires_in as i64,
                nbf: iat - token::NOT_BEFORE_SKEW,
                iat,
                jti: token::random_id(),
                access: &access,
            };
            let jwt = state.key.sign(&claims).map_err(|e| {
                tracing::error!(error = %e, "signing failed");
                (ApiError::internal(), Outcome::Unavailable)
            })?;
            let body = token_body(&jwt, expires_in, iat, None, None);
            state.issued.insert(
                reuse_key,
                Issued {
                    jwt: jwt.clone(),
                    iat,
                    body: body.clone(),
                },
            );
            (jwt, iat, body)
        }
    };
    let body = if oauth || refresh_token.is_some() {
        let scope = oauth.then(|| {
            access
                .iter()
                .map(|a| format!("{}:{}:{}", a.kind, a.name, a.actions.join(",")))
                .collect::<Vec<_>>()
                .join(" ")
        });
        token_body(
            &jwt,
            expires_in,
            iat,
            scope.as_deref(),
            refresh_token.as_deref(),
        )
    } else {
        get_body
    };
    Ok((
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            ),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
        ],
        body,
    )
        .into_response())
}

/// A refused refresh token or a user who can no longer be found: the
/// client must log in again (docker then asks for the password).
fn login_again(realm: &str) -> ApiError {
    let mut e = ApiError::unauthorized(realm);
    e.message = "the identity token is no longer valid: log in again".into();
    e
}

/// Turns the chain's verdict into a principal, noting the reason for the
/// audit line when it is a refusal.
fn admit(
    state: &AppState,
    event: &mut Event<'_>,
    verdict: Verdict,
    user: &str,
) -> Result<Principal, Failure> {
    let refused = (ApiError::unauthorized(&state.realm), Outcome::Unauthorized);
    match verdict {
        Verdict::Authenticated {
            identity,
            cache_hit,
        } => {
            event.cache_hit = cache_hit;
            event.subject = identity.subject.clone();
            event.provider = identity.provider.clone();
            Ok(Principal::Authenticated(identity))
        }
        Verdict::Rejected { provider, reason } => {
            event.reason = format!("rejected by {provider}: {reason} (user {user:?})");
            let mut error = refused.0;
            if let Some(message) = reason.client_message() {
                // something the user can fix, e.g. authorize a token for SSO
                error.message = message.to_owned();
            }
            Err((error, refused.1))
        }
        Verdict::Unknown => {
            event.reason = format!("no provider knows user {user:?}");
            Err(refused)
        }
        Verdict::Throttled => {
            event.reason = format!(
                "too many failed logins for user {user:?} from this address; not asking the identity provider"
            );
            Err((refused.0, Outcome::Throttled))
        }
        Verdict::Unavailable {
            provider,
            reason,
            retry_after,
        } => {
            event.reason = format!("provider {provider} unavailable: {reason}");
            Err((
                ApiError::unavailable(
                    "the identity provider is unavailable; try again shortly",
                    retry_after.unwrap_or(5),
                ),
                Outcome::Unavailable,
            ))
        }
    }
}

fn resolve_service<'s>(state: &'s AppState, asked: Option<&str>) -> Result<&'s str, Failure> {
    let services = &state.config.token.services;
    match asked {
        None | Some("") => match services.as_slice() {
            [only] => Ok(only.as_str()),
            _ => Err((
                ApiError::bad_request(
                    "the service parameter is required (several services are configured)",
                ),
                Outcome::BadRequest,
            )),
        },
        Some(name) => services
            .iter()
            .find(|s| s.as_str() == name)
            .map(String::as_str)
            .ok_or_else(|| {
                (
                    ApiError::bad_request("unknown service").oauth("invalid_request"),
                    Outcome::BadRequest,
                )
            }),
    }
}

fn join_scopes<'a>(items: impl Iterator<Item = (&'a str, &'a str, &'a Vec<String>)>) -> String {
    items
        .map(|(kind, name, actions)| format!("{kind}:{name}:{}", actions.join(",")))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Records the audit event and metrics for a finished request. A request
/// refused before any reason was noted logs the client-facing message.
fn finish(
    state: &AppState,
    mut event: Event<'_>,
    result: Result<Response, Failure>,
    started: Instant,
) -> Response {
    let (response, outcome) = match result {
        Ok(response) => (response, Outcome::Issued),
        Err((error, outcome)) => {
            if event.reason.is_empty() {
                event.reason = error.message.clone();
            }
            (error.into_response(), outcome)
        }
    };
    state.metrics.record(outcome);
    audit::record(&event, outcome, started.elapsed());
    response
}
