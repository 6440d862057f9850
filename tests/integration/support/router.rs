//! Requests through regauth's router without a socket (`oneshot`), the
//! token requests registry clients make, and the [`Reply`] the tests look
//! at.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use http_body_util::BodyExt as _;
use regauth::AppState;
use tower::ServiceExt as _;

use super::SERVICE;

/// A response as the tests look at it.
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: axum::http::HeaderMap,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The token's (header, claims), after checking the response shape.
    pub fn token(&self) -> (serde_json::Value, serde_json::Value) {
        assert_eq!(self.status, StatusCode::OK, "{}", self.text());
        let body = self.json();
        let token = body["token"].as_str().expect("token");
        assert_eq!(body["access_token"], body["token"]);
        decode(token)
    }

    /// The granted access list of the token.
    pub fn access(&self) -> Vec<(String, String, Vec<String>)> {
        let (_, claims) = self.token();
        claims["access"]
            .as_array()
            .expect("access is an array")
            .iter()
            .map(|a| {
                (
                    a["type"].as_str().unwrap().to_owned(),
                    a["name"].as_str().unwrap().to_owned(),
                    a["actions"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|x| x.as_str().unwrap().to_owned())
                        .collect(),
                )
            })
            .collect()
    }

    /// Every granted action, across the access entries.
    pub fn actions(&self) -> Vec<String> {
        self.access().into_iter().flat_map(|(_, _, a)| a).collect()
    }

    /// Asserts the registry's JSON error shape with this status.
    pub fn assert_error(&self, status: StatusCode) -> serde_json::Value {
        assert_eq!(self.status, status, "{}", self.text());
        let body = self.json();
        assert!(body["errors"][0]["code"].is_string(), "{body}");
        assert!(body["errors"][0]["message"].is_string(), "{body}");
        body
    }
}

pub fn decode(jwt: &str) -> (serde_json::Value, serde_json::Value) {
    let parts: Vec<&str> = jwt.split('.').collect();
    assert_eq!(parts.len(), 3, "compact JWT");
    let part = |p: &str| -> serde_json::Value {
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(p).expect("base64url")).expect("JSON")
    };
    (part(parts[0]), part(parts[1]))
}

pub fn basic(user: &str, password: &str) -> String {
    format!("Basic {}", STANDARD.encode(format!("{user}:{password}")))
}

/// Sends one request through the router of `state`.
pub async fn call(state: &Arc<AppState>, request: Request<Body>) -> Reply {
    call_live(&regauth::Live::new(state.clone()), request).await
}

/// Sends one request through the router of a [`regauth::Live`] state.
pub async fn call_live(live: &Arc<regauth::Live>, request: Request<Body>) -> Reply {
    let response = regauth::http::router(live.clone())
        .oneshot(request)
        .await
        .expect("infallible router");
    let status = response.status();
    let headers = response.headers().clone();
    let body = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes()
        .to_vec();
    Reply {
        status,
        headers,
        body,
    }
}

pub async fn get(state: &Arc<AppState>, uri: &str, auth: Option<&str>) -> Reply {
    let mut request = Request::get(uri);
    if let Some(auth) = auth {
        request = request.header("authorization", auth);
    }
    call(state, request.body(Body::empty()).unwrap()).await
}

pub async fn post_form(state: &Arc<AppState>, uri: &str, form: &str) -> Reply {
    let request = Request::post(uri)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(Body::from(form.to_owned()))
        .unwrap();
    call(state, request).await
}

/// A GET token request for one scope with Basic credentials.
pub async fn token_for(state: &Arc<AppState>, user: &str, secret: &str, scope: &str) -> Reply {
    let uri = format!("/auth?service={SERVICE}&scope={scope}");
    get(state, &uri, Some(&basic(user, secret))).await
}

/// A GET token request for `scope` (none if empty) with Basic credentials
/// from `client` (an `X-Forwarded-For` hop, believed when the config trusts
/// the router's peer: `trusted_proxies = ["0.0.0.0"]`).
pub async fn token_from(
    state: &Arc<AppState>,
    client: &str,
    user: &str,
    secret: &str,
    scope: &str,
) -> Reply {
    let mut uri = format!("/auth?service={SERVICE}");
    if !scope.is_empty() {
        uri.push_str(&format!("&scope={scope}"));
    }
    let request = Request::get(uri)
        .header("authorization", basic(user, secret))
        .header("x-forwarded-for", client)
        .body(Body::empty())
        .unwrap();
    call(state, request).await
}

/// `docker login`: GET with `offline_token=true`, Basic credentials and
/// no scope. The reply holds a `refresh_token` when the login may have one.
pub async fn login_offline(state: &Arc<AppState>, user: &str, secret: &str) -> Reply {
    let uri = format!("/auth?account={user}&client_id=docker&offline_token=true&service={SERVICE}");
    get(state, &uri, Some(&basic(user, secret))).await
}

/// The refresh token of a [`login_offline`] reply.
pub fn refresh_token_of(reply: &Reply) -> String {
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    reply.json()["refresh_token"]
        .as_str()
        .unwrap_or_else(|| panic!("a refresh_token in {}", reply.text()))
        .to_owned()
}

/// docker's later requests: POST `grant_type=refresh_token`, no username.
pub async fn refresh_grant(state: &Arc<AppState>, token: &str, scope: &str) -> Reply {
    post_form(
        state,
        "/auth",
        &format!(
            "grant_type=refresh_token&client_id=docker&service={SERVICE}&scope={scope}&refresh_token={token}"
        ),
    )
    .await
}
