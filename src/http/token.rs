//! The token endpoint: `GET` per the registry's token.md and `POST` per its
//! oauth.md, on `/auth`, `/token` and `/auth/token`.
//!
//! The handlers only parse (leniently: what real clients send) and respond
//! (strictly: what real registries and clients accept). The decision is
//! [`crate::issue`]'s; each request ends in one audit line built from its
//! result.

use std::borrow::Cow;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use regauth_providers::{Credentials, SecretString};

use crate::domain::scope::scopes_text;
use crate::http::credentials::{parse_basic, parse_bool, BasicAuth};
use crate::http::extract::ClientIp;
use crate::issue::{Flow, Issued, Refusal, TokenRequest, Who};
use crate::ops::audit::{self, Event, GrantType, IssuedSummary, Outcome};
use crate::{AppState, Live};

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
    device_code: Option<Cow<'a, str>>,
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
                "device_code" => p.device_code = Some(value),
                "username" => p.username = Some(value),
                "password" => p.password = Some(value),
                // `account` is informational only: never authenticate from
                // it, and ignore it when it differs from the Basic user.
                _ => {}
            }
        }
        p
    }

    /// The pipeline's view of these parameters, whose `scope` values the
    /// audit's request already holds.
    fn request(
        &'a self,
        flow: Flow,
        who: Who,
        offline: bool,
        client: IpAddr,
        meta: &'a audit::Request<'a>,
    ) -> TokenRequest<'a> {
        TokenRequest {
            flow,
            service: self.service.as_deref(),
            scopes: &meta.scopes,
            who,
            offline,
            client,
        }
    }
}

pub async fn get(
    State(live): State<Arc<Live>>,
    ClientIp(ip): ClientIp,
    request: Request,
) -> Response {
    let state = live.load();
    let started = Instant::now();
    let params = Params::parse(request.uri().query().unwrap_or("").as_bytes());
    let mut meta = audit::Request {
        method: "GET",
        grant: GrantType::Basic,
        client_ip: Some(ip),
        client_id: params.client_id.as_deref().unwrap_or(""),
        service: params.service.as_deref().unwrap_or(""),
        scopes: params.scopes.iter().map(|s| s.as_ref()).collect(),
    };
    let authorization = request
        .headers()
        .get(header::AUTHORIZATION)
        .map(|h| h.as_bytes());
    let who = match parse_basic(authorization) {
        Err(e) => Err(Refusal::bad_request(e.to_string())),
        Ok(BasicAuth::Absent) => {
            meta.grant = GrantType::Anonymous;
            Ok(Who::Anonymous)
        }
        Ok(BasicAuth::Present(credentials)) => Ok(Who::Credentials(credentials)),
    };
    let result = match who {
        Ok(who) => {
            let offline = params.offline_token.as_deref().and_then(parse_bool) == Some(true);
            let request = params.request(Flow::Get, who, offline, ip, &meta);
            state.issuer.issue(request, crate::clock::now()).await
        }
        Err(refusal) => Err(refusal),
    };
    finish(&state, &meta, Flow::Get, result, started)
}

pub async fn post(
    State(live): State<Arc<Live>>,
    ClientIp(ip): ClientIp,
    request: Request,
) -> Response {
    let state = live.load();
    let started = Instant::now();
    let (parts, body) = request.into_parts();
    let mut meta = audit::Request {
        method: "POST",
        client_ip: Some(ip),
        ..Default::default()
    };
    let limit = state.config.server.limits.max_body_bytes;
    let body = match read_form(&parts.headers, body, limit).await {
        Ok(body) => body,
        Err(refusal) => return finish(&state, &meta, Flow::Post, Err(refusal), started),
    };
    let params = Params::parse(&body);
    meta.client_id = params.client_id.as_deref().unwrap_or("");
    meta.service = params.service.as_deref().unwrap_or("");
    meta.scopes = params.scopes.iter().map(|s| s.as_ref()).collect();
    let offline = params.access_type.as_deref() == Some("offline");
    let (grant, who) = who_of_form(&params, grants(&state));
    meta.grant = grant;
    let result = match who {
        Ok(who) => {
            let request = params.request(Flow::Post, who, offline, ip, &meta);
            state.issuer.issue(request, crate::clock::now()).await
        }
        Err(refusal) => Err(refusal),
    };
    finish(&state, &meta, Flow::Post, result, started)
}

/// Which of the grants beyond the password's this server answers.
#[derive(Clone, Copy)]
struct Grants {
    /// The refresh grant: refresh tokens, or device logins' identity
    /// tokens.
    refresh: bool,
    /// The device code grant (app passwords on).
    device: bool,
}

fn grants(state: &AppState) -> Grants {
    let device = state.app_passwords.is_some();
    Grants {
        refresh: state.issuer.refresh().is_some() || device,
        device,
    }
}

/// RFC 8628's grant type.
pub const DEVICE_CODE_GRANT: &str = "urn:ietf:params:oauth:grant-type:device_code";

/// Who a POST says it is, by its `grant_type`, and how the audit line
/// names the grant.
fn who_of_form(params: &Params<'_>, grants: Grants) -> (GrantType, Result<Who, Refusal>) {
    let refresh_enabled = grants.refresh;
    match params.grant_type.as_deref() {
        Some(DEVICE_CODE_GRANT) if grants.device => {
            let who = match (params.device_code.as_deref(), params.client_id.as_deref()) {
                (Some(code), Some(client_id)) if !code.is_empty() => Ok(Who::DeviceCode {
                    code: SecretString::from(code.to_owned()),
                    client_id: client_id.to_owned(),
                }),
                _ => Err(Refusal::bad_request(
                    "the device code grant needs device_code and client_id",
                )),
            };
            (GrantType::DeviceCode, who)
        }
        Some("password") => {
            let who = match (params.username.as_deref(), params.password.as_deref()) {
                (Some(username), Some(password)) => {
                    Ok(Who::Credentials(Credentials::new(username, password)))
                }
                _ => Err(Refusal::bad_request(
                    "the password grant needs username and password",
                )),
            };
            (GrantType::Password, who)
        }
        Some("refresh_token") => {
            let who = match (refresh_enabled, params.refresh_token.as_deref()) {
                // Disabled: 404 is the one answer every client falls back on.
                (false, _) => Err(Refusal::RefreshDisabled),
                (true, None | Some("")) => Err(Refusal::bad_request(
                    "the refresh_token grant needs refresh_token",
                )),
                (true, Some(token)) => Ok(Who::Refresh(SecretString::from(token.to_owned()))),
            };
            (GrantType::RefreshToken, who)
        }
        Some(other) => (
            GrantType::Unsupported,
            Err(Refusal::UnsupportedGrant {
                grant: audit::Safe(other).to_string(),
            }),
        ),
        None => (
            GrantType::Unknown,
            Err(Refusal::bad_request("grant_type is required")),
        ),
    }
}

/// Reads an `application/x-www-form-urlencoded` body (chunked or not) up to
/// `limit` bytes.
pub(super) async fn read_form(
    headers: &HeaderMap,
    body: Body,
    limit: usize,
) -> Result<Vec<u8>, Refusal> {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let media = content_type.split(';').next().unwrap_or("").trim();
    if !media.eq_ignore_ascii_case("application/x-www-form-urlencoded") {
        return Err(Refusal::bad_request(
            "the body must be application/x-www-form-urlencoded",
        ));
    }
    axum::body::to_bytes(body, limit)
        .await
        .map(|b| b.to_vec())
        .map_err(|_| {
            Refusal::bad_request(format!(
                "the request body is larger than {limit} bytes or unreadable"
            ))
        })
}

/// The success answer: on GET the stored body of the token (unless a
/// refresh token goes with it), on POST also the granted `scope`.
fn respond(flow: Flow, issued: &Issued) -> Response {
    let signed = &issued.token;
    let body = match (flow, &issued.refresh_token) {
        (Flow::Get, None) => signed.body.clone(),
        (flow, refresh_token) => {
            let scope = (flow == Flow::Post).then_some(issued.granted.as_str());
            crate::issue::response_body(
                signed.jwt(),
                issued.expires_in,
                signed.iat,
                scope,
                refresh_token.as_deref(),
            )
        }
    };
    (
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            ),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
        ],
        body,
    )
        .into_response()
}

/// Records the audit event and metrics for a finished request.
fn finish(
    state: &AppState,
    meta: &audit::Request<'_>,
    flow: Flow,
    result: Result<Issued, Refusal>,
    started: Instant,
) -> Response {
    let (event, outcome) = event_of(meta, &result);
    state.metrics.record(outcome);
    audit::record(meta, &event, outcome, started.elapsed());
    match result {
        Ok(issued) => respond(flow, &issued),
        Err(refusal) => crate::http::error::refused(refusal, &state.realm),
    }
}

/// The audit event of a finished request.
fn event_of<'a>(
    meta: &audit::Request<'a>,
    result: &'a Result<Issued, Refusal>,
) -> (Event<'a>, Outcome) {
    match result {
        Ok(issued) => {
            let event = Event::issued(IssuedSummary {
                subject: issued.principal.subject(),
                kind: issued
                    .principal
                    .identity()
                    .map_or("", |id| id.kind.as_str()),
                provider: issued.principal.provider().unwrap_or_default(),
                service: &issued.service,
                requested: scopes_text(&issued.requested),
                granted: &issued.granted,
                cache_hit: issued.cache_hit,
                reused: issued.reused,
            });
            (event, Outcome::Issued)
        }
        Err(refusal) => (
            Event::refused(meta.service, &meta.scopes, refusal.reason()),
            refusal.outcome(),
        ),
    }
}
