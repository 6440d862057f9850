//! A fake GitHub REST API, shaped like GitHub's documented responses
//! (`GET /user`, `/user/orgs`, `/user/teams` with `Link` pagination, the
//! `X-OAuth-Scopes`, `X-GitHub-SSO` and rate-limit headers, and GitHub's
//! error bodies), served at `/` and under `/api/v3` (Enterprise Server).
//! It counts calls so tests can prove where credentials went.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

/// How the fake answers for one token.
#[derive(Clone, Debug)]
pub enum Behaviour {
    Member {
        login: &'static str,
        orgs: Vec<&'static str>,
        /// (org, team slug, parent slug)
        teams: Vec<(&'static str, &'static str, Option<&'static str>)>,
        /// `X-OAuth-Scopes` (classic tokens); `None` for fine-grained ones.
        scopes: Option<&'static str>,
    },
    Sso,
    RateLimited,
    SecondaryRateLimit,
    ServerError,
    /// Never answers: only regauth's timeout ends the call.
    Slow,
}

#[derive(Default)]
pub struct Calls {
    pub user: AtomicUsize,
    pub orgs: AtomicUsize,
    pub teams: AtomicUsize,
    /// Requests that lacked GitHub's required headers.
    pub bad_headers: AtomicUsize,
}

#[derive(Clone)]
struct Shared {
    tokens: Arc<Mutex<HashMap<String, Behaviour>>>,
    calls: Arc<Calls>,
    base: Arc<Mutex<String>>,
    /// `""` or `"/api/v3"`: where this copy of the API is mounted.
    prefix: &'static str,
}

pub struct FakeGitHub {
    pub addr: SocketAddr,
    pub calls: Arc<Calls>,
    tokens: Arc<Mutex<HashMap<String, Behaviour>>>,
    /// Stops the server when dropped.
    _served: super::Served,
}

/// Teams per page, so two pages are easy to reach.
const TEAMS_PER_PAGE: usize = 2;

fn github_error(status: StatusCode, message: &str) -> Response {
    let body = serde_json::json!({
        "message": message,
        "documentation_url": "https://docs.github.com/rest",
        "status": status.as_u16().to_string(),
    });
    (status, axum::Json(body)).into_response()
}

fn common_headers(response: &mut Response, scopes: Option<&str>) {
    let h = response.headers_mut();
    h.insert(
        "x-github-api-version-selected",
        HeaderValue::from_static("2022-11-28"),
    );
    h.insert("x-ratelimit-limit", HeaderValue::from_static("5000"));
    h.insert("x-ratelimit-remaining", HeaderValue::from_static("4999"));
    h.insert("x-ratelimit-resource", HeaderValue::from_static("core"));
    if let Some(scopes) = scopes {
        h.insert("x-oauth-scopes", HeaderValue::from_str(scopes).unwrap());
        h.insert("x-accepted-oauth-scopes", HeaderValue::from_static(""));
    }
}

/// The token's behaviour, or GitHub's 401 / failure response.
fn behaviour(shared: &Shared, headers: &HeaderMap) -> Result<Behaviour, Box<Response>> {
    let accept = headers.get("accept").and_then(|v| v.to_str().ok());
    if accept != Some("application/vnd.github+json")
        || !headers.contains_key("x-github-api-version")
    {
        shared.calls.bad_headers.fetch_add(1, Ordering::SeqCst);
    }
    let token = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("token "))
        })
        .unwrap_or("");
    let found = shared.tokens.lock().unwrap().get(token).cloned();
    match found {
        None => Err(Box::new(github_error(
            StatusCode::UNAUTHORIZED,
            "Bad credentials",
        ))),
        Some(Behaviour::Sso) => {
            let mut r = github_error(
                StatusCode::FORBIDDEN,
                "Resource protected by organization SAML enforcement. You must grant your Personal Access token access to this organization.",
            );
            r.headers_mut().insert(
                "x-github-sso",
                HeaderValue::from_static(
                    "required; url=https://github.com/orgs/acme/sso?authorization_request=AAAA",
                ),
            );
            Err(Box::new(r))
        }
        Some(Behaviour::RateLimited) => {
            let mut r = github_error(
                StatusCode::FORBIDDEN,
                "API rate limit exceeded for user ID 1.",
            );
            let reset = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_secs()
                + 60;
            let h = r.headers_mut();
            h.insert("x-ratelimit-limit", HeaderValue::from_static("5000"));
            h.insert("x-ratelimit-remaining", HeaderValue::from_static("0"));
            h.insert("x-ratelimit-reset", HeaderValue::from(reset));
            Err(Box::new(r))
        }
        Some(Behaviour::SecondaryRateLimit) => {
            let mut r = github_error(
                StatusCode::TOO_MANY_REQUESTS,
                "You have exceeded a secondary rate limit. Please wait a few minutes before you try again.",
            );
            r.headers_mut()
                .insert("retry-after", HeaderValue::from_static("30"));
            Err(Box::new(r))
        }
        Some(Behaviour::ServerError) => Err(Box::new(github_error(
            StatusCode::BAD_GATEWAY,
            "Server Error",
        ))),
        Some(other) => Ok(other),
    }
}

async fn user(State(shared): State<Shared>, headers: HeaderMap) -> Response {
    shared.calls.user.fetch_add(1, Ordering::SeqCst);
    match behaviour(&shared, &headers) {
        Err(r) => *r,
        Ok(Behaviour::Slow) => std::future::pending().await,
        Ok(Behaviour::Member { login, scopes, .. }) => {
            let body = serde_json::json!({
                "login": login, "id": 583231, "node_id": "MDQ6VXNlcjU4MzIzMQ==",
                "type": "User", "site_admin": false, "name": "The Octocat",
            });
            let mut r = axum::Json(body).into_response();
            common_headers(&mut r, scopes);
            r
        }
        Ok(_) => unreachable!(),
    }
}

async fn orgs(State(shared): State<Shared>, headers: HeaderMap) -> Response {
    shared.calls.orgs.fetch_add(1, Ordering::SeqCst);
    match behaviour(&shared, &headers) {
        Err(r) => *r,
        Ok(Behaviour::Member { orgs, scopes, .. }) => {
            let body: Vec<serde_json::Value> = orgs
                .iter()
                .enumerate()
                .map(|(i, o)| serde_json::json!({"login": o, "id": 1000 + i, "url": format!("https://api.github.com/orgs/{o}")}))
                .collect();
            let mut r = axum::Json(body).into_response();
            common_headers(&mut r, scopes);
            r
        }
        Ok(_) => github_error(StatusCode::BAD_GATEWAY, "Server Error"),
    }
}

async fn teams(
    State(shared): State<Shared>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    shared.calls.teams.fetch_add(1, Ordering::SeqCst);
    let page: usize = query.get("page").and_then(|p| p.parse().ok()).unwrap_or(1);
    match behaviour(&shared, &headers) {
        Err(r) => *r,
        Ok(Behaviour::Member { teams, scopes, .. }) => {
            let pages = teams.len().div_ceil(TEAMS_PER_PAGE).max(1);
            let body: Vec<serde_json::Value> = teams
                .iter()
                .skip((page - 1) * TEAMS_PER_PAGE)
                .take(TEAMS_PER_PAGE)
                .map(|(org, slug, parent)| {
                    serde_json::json!({
                        "name": slug, "slug": slug, "id": 1, "privacy": "closed",
                        "organization": {"login": org, "id": 1},
                        "parent": parent.map(|p| serde_json::json!({"slug": p, "name": p, "id": 2})),
                    })
                })
                .collect();
            let mut r = axum::Json(body).into_response();
            common_headers(&mut r, scopes);
            if page < pages {
                let base = shared.base.lock().unwrap().clone();
                let path = format!("{}/user/teams", shared.prefix);
                let link = format!(
                    "<{base}{path}?per_page=100&page={}>; rel=\"next\", <{base}{path}?per_page=100&page={pages}>; rel=\"last\"",
                    page + 1
                );
                r.headers_mut()
                    .insert("link", HeaderValue::from_str(&link).unwrap());
            }
            r
        }
        Ok(_) => github_error(StatusCode::BAD_GATEWAY, "Server Error"),
    }
}

impl FakeGitHub {
    pub async fn start() -> Self {
        let tokens = Arc::new(Mutex::new(HashMap::new()));
        let calls = Arc::new(Calls::default());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let shared = Shared {
            tokens: tokens.clone(),
            calls: calls.clone(),
            base: Arc::new(Mutex::new(format!("http://{addr}"))),
            prefix: "",
        };
        let api = |shared: Shared| {
            Router::new()
                .route("/user", get(user))
                .route("/user/orgs", get(orgs))
                .route("/user/teams", get(teams))
                .with_state(shared)
        };
        let enterprise = Shared {
            prefix: "/api/v3",
            ..shared.clone()
        };
        let app = Router::new()
            .merge(api(shared))
            .nest("/api/v3", api(enterprise));
        let served = super::Served::start(listener, app);
        Self {
            addr,
            calls,
            tokens,
            _served: served,
        }
    }

    pub fn token(&self, token: &str, behaviour: Behaviour) {
        self.tokens
            .lock()
            .unwrap()
            .insert(token.to_owned(), behaviour);
    }

    pub fn revoke(&self, token: &str) {
        self.tokens.lock().unwrap().remove(token);
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn user_calls(&self) -> usize {
        self.calls.user.load(Ordering::SeqCst)
    }
}
