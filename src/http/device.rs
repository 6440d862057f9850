//! The device login's endpoints (RFC 8628) beside the token endpoint:
//! the device authorization endpoint (`POST /auth/device`), the metadata
//! that names it (`/.well-known/oauth-authorization-server`, RFC 8414),
//! and the revocation endpoint a terminal logs out with (`POST
//! /auth/revoke`, RFC 7009). The poll itself is a grant of the token
//! endpoint. The decisions are [`crate::app_passwords::device`]'s.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use regauth_providers::ExposeSecret as _;

use super::error::ApiError;
use super::extract::ClientIp;
use super::token::{read_form, DEVICE_CODE_GRANT};
use crate::app_passwords::device::DeviceError;
use crate::app_passwords::AppPasswords;
use crate::config::error::origin_of;
use crate::{AppState, Live};

/// What RFC 8414 says of this server: where its endpoints are.
pub async fn metadata(State(live): State<Arc<Live>>) -> Response {
    let state = live.load();
    let origin = origin_of(&state.realm);
    let mut grants = vec!["password", "refresh_token"];
    let mut body = serde_json::json!({
        "issuer": origin,
        "token_endpoint": state.realm,
        "token_endpoint_auth_methods_supported": ["none"],
        "response_types_supported": [],
    });
    if state.app_passwords.is_some() {
        grants.push(DEVICE_CODE_GRANT);
        body["device_authorization_endpoint"] = format!("{origin}/auth/device").into();
        body["revocation_endpoint"] = format!("{origin}/auth/revoke").into();
    }
    body["grant_types_supported"] = grants.into();
    no_store(Json(body).into_response())
}

fn no_store(mut response: Response) -> Response {
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// The app passwords (a 404 when they are off) and the bounded form body
/// of a POST to one of these endpoints (a 400 when it is not one).
async fn posted(
    state: &AppState,
    request: Request,
) -> Result<(Arc<AppPasswords>, Vec<u8>), Response> {
    let Some(passwords) = state.app_passwords.clone() else {
        return Err(ApiError::not_found().into_response());
    };
    let (parts, body) = request.into_parts();
    let limit = state.config.server.limits.max_body_bytes;
    match read_form(&parts.headers, body, limit).await {
        Ok(body) => Ok((passwords, body)),
        Err(refusal) => Err(ApiError::bad_request(refusal.reason()).into_response()),
    }
}

/// The form of a device authorization request.
#[derive(Default)]
struct Asked {
    client_id: Option<String>,
    service: Option<String>,
}

/// `POST /auth/device`: a device code and a user code for a client.
pub async fn authorize(
    State(live): State<Arc<Live>>,
    ClientIp(ip): ClientIp,
    request: Request,
) -> Response {
    let state = live.load();
    let (passwords, body) = match posted(&state, request).await {
        Ok(posted) => posted,
        Err(refused) => return refused,
    };
    let mut asked = Asked::default();
    for (key, value) in form_urlencoded::parse(&body) {
        match key.as_ref() {
            "client_id" => asked.client_id = Some(value.into_owned()),
            "service" => asked.service = Some(value.into_owned()),
            _ => {}
        }
    }
    let Some(service) = service(&state, asked.service.as_deref()) else {
        return ApiError::bad_request("unknown service (or several are configured: name one)")
            .into_response();
    };
    let client_id = asked.client_id.unwrap_or_default();
    let started = passwords
        .start_device_login(&client_id, &service, ip, crate::clock::now())
        .await;
    match started {
        Ok(started) => no_store(Json(answer(&passwords, &started)).into_response()),
        Err(DeviceError::InvalidRequest(message)) => ApiError::bad_request(message).into_response(),
        Err(DeviceError::TooMany) => {
            ApiError::unavailable("too many device logins under way; try again later", 60)
                .into_response()
        }
        Err(e) => {
            tracing::warn!(error = %e, "a device login could not start");
            ApiError::unavailable("device logins cannot start right now; try again shortly", 5)
                .into_response()
        }
    }
}

/// The service asked for, which must be configured; none is fine when
/// only one is.
fn service(state: &AppState, asked: Option<&str>) -> Option<String> {
    let services = &state.config.token.services;
    match asked {
        None | Some("") => (services.len() == 1).then(|| services[0].clone()),
        Some(name) => services.iter().find(|s| s.as_str() == name).cloned(),
    }
}

/// RFC 8628 §3.2's answer.
fn answer(
    passwords: &AppPasswords,
    started: &crate::app_passwords::device::Started,
) -> serde_json::Value {
    let verification = format!("{}/device", passwords.config.url);
    let complete = format!(
        "{verification}?user_code={}",
        form_urlencoded::byte_serialize(started.user_code.as_bytes()).collect::<String>()
    );
    serde_json::json!({
        "device_code": started.device_code.expose_secret(),
        "user_code": started.user_code,
        "verification_uri": verification,
        "verification_uri_complete": complete,
        "expires_in": started.expires_in,
        "interval": started.interval,
    })
}

/// `POST /auth/revoke` (RFC 7009): ends the device login whose identity
/// token is `token`. The answer is 200 whether or not it was one, as the
/// RFC says.
pub async fn revoke(State(live): State<Arc<Live>>, request: Request) -> Response {
    let state = live.load();
    let (passwords, body) = match posted(&state, request).await {
        Ok(posted) => posted,
        Err(refused) => return refused,
    };
    let token = form_urlencoded::parse(&body)
        .find(|(key, _)| key == "token")
        .map(|(_, value)| value.into_owned());
    let Some(token) = token.filter(|t| !t.is_empty()) else {
        return ApiError::bad_request("the revocation request needs token").into_response();
    };
    if token.len() > state.config.server.limits.max_secret_bytes {
        return no_store(StatusCode::OK.into_response());
    }
    match passwords.revoke_device_token(&token).await {
        Ok(_) => no_store(StatusCode::OK.into_response()),
        Err(e) => {
            tracing::warn!(error = %e, "a device login could not be revoked");
            ApiError::unavailable(
                "the token cannot be revoked right now; try again shortly",
                5,
            )
            .into_response()
        }
    }
}
