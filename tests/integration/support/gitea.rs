//! A fake Gitea (and Forgejo) API v1, shaped like Gitea's swagger and
//! source: `GET /api/v1/user` (`Authorization: token …` or `bearer`),
//! `/api/v1/user/orgs` (`Link`, entries joined by a bare comma, and
//! `X-Total-Count`) and `/api/v1/user/teams` (`X-Total-Count` only), `page`
//! and `limit` (at most 50), token scopes (`read:user`, and
//! `read:organization` for organizations; `read:package` to list
//! `/api/v1/packages/{owner}`, `write:package` to delete a package version,
//! checked before the package is looked up, as Gitea's router does), and
//! Gitea's error bodies
//! (`{"message": …, "url": …/api/swagger}`). One deviation: listings page
//! at two items whatever `limit` says, so that pagination is easy to reach.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use axum::extract::Path;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

/// How the fake answers for one token.
#[derive(Clone, Debug)]
pub enum Token {
    User {
        login: &'static str,
        /// `prohibit_login`: the account may not sign in.
        prohibited: bool,
        orgs: Vec<&'static str>,
        /// (org, team)
        teams: Vec<(&'static str, &'static str)>,
        scopes: &'static [&'static str],
    },
    RateLimited,
    /// An Actions job's token: Gitea's built-in `gitea-actions` user.
    ActionsTask,
}

#[derive(Default)]
pub struct Calls {
    pub user: AtomicUsize,
    pub orgs: AtomicUsize,
    pub teams: AtomicUsize,
    /// Package calls (listings and deletes).
    pub packages: AtomicUsize,
    /// Package versions actually deleted (none exist in this fake).
    pub deleted: AtomicUsize,
}

#[derive(Clone)]
struct Shared {
    tokens: Arc<Mutex<HashMap<String, Token>>>,
    calls: Arc<Calls>,
    /// Gitea's `ROOT_URL`: its links name it, not the address regauth
    /// calls.
    base: String,
}

pub struct FakeGitea {
    pub addr: SocketAddr,
    pub calls: Arc<Calls>,
    tokens: Arc<Mutex<HashMap<String, Token>>>,
    /// Stops the server when dropped.
    _served: super::Served,
}

const PER_PAGE: usize = 2;

/// The instance's `ROOT_URL`, unlike the loopback address the tests give
/// regauth (as behind a reverse proxy).
pub const ROOT_URL: &str = "https://gitea.example.com";

fn error(shared: &Shared, status: StatusCode, message: &str) -> Response {
    (
        status,
        axum::Json(serde_json::json!({
            "message": message,
            "url": format!("{}/api/swagger", shared.base),
        })),
    )
        .into_response()
}

/// The token's user, or Gitea's refusal; `needed` are the scopes the
/// route requires (all of them).
fn user_of(shared: &Shared, headers: &HeaderMap, needed: &[&str]) -> Result<Token, Box<Response>> {
    let header = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let token = header.strip_prefix("token ").or_else(|| {
        header
            .get(..7)
            .filter(|p| p.eq_ignore_ascii_case("bearer "))
            .map(|_| &header[7..])
    });
    let Some(token) = token else {
        return Err(Box::new(error(
            shared,
            StatusCode::UNAUTHORIZED,
            "token is required",
        )));
    };
    let found = shared.tokens.lock().unwrap().get(token).cloned();
    match found {
        None => Err(Box::new(error(
            shared,
            StatusCode::UNAUTHORIZED,
            "user does not exist [uid: 0, name: ]",
        ))),
        Some(Token::ActionsTask) => Ok(Token::ActionsTask),
        Some(Token::RateLimited) => {
            let mut r = error(shared, StatusCode::TOO_MANY_REQUESTS, "rate limit exceeded");
            r.headers_mut().insert("retry-after", HeaderValue::from_static("20"));
            Err(Box::new(r))
        }
        Some(Token::User { prohibited: true, .. }) => Err(Box::new(
            (
                StatusCode::FORBIDDEN,
                axum::Json(serde_json::json!({
                    "message": "This account is prohibited from signing in, please contact your site administrator."
                })),
            )
                .into_response(),
        )),
        Some(user @ Token::User { scopes, .. }) => {
            let granted = |needed: &str| {
                let area = needed.split(':').nth(1).unwrap_or("");
                scopes.iter().any(|s| *s == needed || *s == "all" || *s == format!("write:{area}"))
            };
            if let Some(missing) = needed.iter().find(|n| !granted(n)) {
                return Err(Box::new(error(
                    shared,
                    StatusCode::FORBIDDEN,
                    &format!(
                        "token does not have at least one of required scope(s), required=[{missing}], token scope={}",
                        scopes.join(",")
                    ),
                )));
            }
            Ok(user)
        }
    }
}

async fn user(State(shared): State<Shared>, headers: HeaderMap) -> Response {
    shared.calls.user.fetch_add(1, Ordering::SeqCst);
    match user_of(&shared, &headers, &["read:user"]) {
        Err(r) => *r,
        Ok(Token::User { login, .. }) => axum::Json(serde_json::json!({
            "id": 3, "login": login, "login_name": "", "source_id": 0,
            "full_name": login, "email": format!("{login}@example.com"),
            "avatar_url": format!("{}/avatars/x", shared.base),
            "html_url": format!("{}/{login}", shared.base),
            "language": "en-US", "is_admin": false,
            "last_login": "2026-12-01T10:00:00Z", "created": "2024-01-01T00:00:00Z",
            "restricted": false, "active": true, "prohibit_login": false,
            "location": "", "website": "", "description": "", "visibility": "public",
            "followers_count": 0, "following_count": 0, "starred_repos_count": 0,
            "username": login,
        }))
        .into_response(),
        Ok(Token::ActionsTask) => axum::Json(serde_json::json!({
            "id": -2, "login": "gitea-actions", "login_name": "", "source_id": 0,
            "full_name": "", "email": "teabot@gitea.io", "is_admin": false,
            "active": true, "prohibit_login": false, "restricted": false,
            "username": "gitea-actions",
        }))
        .into_response(),
        Ok(_) => unreachable!(),
    }
}

/// One page, with `X-Total-Count` and, where `link`, a `Link` header.
fn page(
    shared: &Shared,
    path: &str,
    query: &HashMap<String, String>,
    items: Vec<serde_json::Value>,
    link: bool,
) -> Response {
    let page: usize = query
        .get("page")
        .and_then(|p| p.parse().ok())
        .unwrap_or(1)
        .max(1);
    let total = items.len();
    let pages = total.div_ceil(PER_PAGE).max(1);
    let body: Vec<serde_json::Value> = items
        .into_iter()
        .skip((page - 1) * PER_PAGE)
        .take(PER_PAGE)
        .collect();
    let mut r = axum::Json(body).into_response();
    let h = r.headers_mut();
    h.insert("x-total-count", HeaderValue::from(total));
    if link && pages > 1 {
        let to = |p: usize, rel: &str| {
            format!(
                "<{}{path}?limit={PER_PAGE}&page={p}>; rel=\"{rel}\"",
                shared.base
            )
        };
        let mut links = Vec::new();
        if page < pages {
            links.push(to(page + 1, "next"));
            links.push(to(pages, "last"));
        }
        if page > 1 {
            links.push(to(1, "first"));
            links.push(to(page - 1, "prev"));
        }
        h.insert("link", HeaderValue::from_str(&links.join(",")).unwrap());
    }
    r
}

fn org_json(id: usize, name: &str) -> serde_json::Value {
    serde_json::json!({
        "id": id, "name": name, "username": name, "full_name": name, "email": "",
        "avatar_url": "", "description": "", "website": "", "location": "",
        "visibility": "private", "repo_admin_change_team_access": false,
    })
}

async fn orgs(
    State(shared): State<Shared>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    shared.calls.orgs.fetch_add(1, Ordering::SeqCst);
    match user_of(&shared, &headers, &["read:user", "read:organization"]) {
        Err(r) => *r,
        Ok(Token::User { orgs, .. }) => {
            let items = orgs
                .iter()
                .enumerate()
                .map(|(i, o)| org_json(10 + i, o))
                .collect();
            page(&shared, "/api/v1/user/orgs", &query, items, true)
        }
        Ok(_) => axum::Json(serde_json::json!([])).into_response(),
    }
}

async fn teams(
    State(shared): State<Shared>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    shared.calls.teams.fetch_add(1, Ordering::SeqCst);
    match user_of(&shared, &headers, &["read:user"]) {
        Err(r) => *r,
        Ok(Token::User { teams, .. }) => {
            let items = teams
                .iter()
                .enumerate()
                .map(|(i, (org, team))| {
                    serde_json::json!({
                        "id": 100 + i, "name": team, "description": "",
                        "organization": org_json(10, org),
                        "includes_all_repositories": false, "permission": "write",
                        "units": ["repo.code", "repo.packages"],
                        "units_map": {"repo.code": "write", "repo.packages": "write"},
                        "can_create_org_repo": false,
                    })
                })
                .collect();
            // Gitea sends no Link header on /user/teams
            page(&shared, "/api/v1/user/teams", &query, items, false)
        }
        Ok(_) => axum::Json(serde_json::json!([])).into_response(),
    }
}

/// `GET /api/v1/packages/{owner}`: the owner's packages (none here).
async fn packages(
    State(shared): State<Shared>,
    Path(owner): Path<String>,
    headers: HeaderMap,
) -> Response {
    shared.calls.packages.fetch_add(1, Ordering::SeqCst);
    match user_of(&shared, &headers, &["read:package"]) {
        Err(r) => *r,
        Ok(Token::User { login, .. }) if login.eq_ignore_ascii_case(&owner) => {
            let mut r = axum::Json(serde_json::json!([])).into_response();
            r.headers_mut()
                .insert("x-total-count", HeaderValue::from_static("0"));
            r
        }
        Ok(_) => error(&shared, StatusCode::NOT_FOUND, "GetUserByName"),
    }
}

/// `DELETE /api/v1/packages/{owner}/{type}/{name}/{version}`: the scope
/// first, then the package (there is none: 404).
async fn delete_package(
    State(shared): State<Shared>,
    Path((owner, _kind, _name, _version)): Path<(String, String, String, String)>,
    headers: HeaderMap,
) -> Response {
    shared.calls.packages.fetch_add(1, Ordering::SeqCst);
    match user_of(&shared, &headers, &["write:package"]) {
        Err(r) => *r,
        Ok(Token::User { login, .. }) if login.eq_ignore_ascii_case(&owner) => {
            error(&shared, StatusCode::NOT_FOUND, "package does not exist")
        }
        Ok(_) => error(&shared, StatusCode::NOT_FOUND, "GetUserByName"),
    }
}

impl FakeGitea {
    pub async fn start() -> Self {
        let tokens = Arc::new(Mutex::new(HashMap::new()));
        let calls = Arc::new(Calls::default());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let shared = Shared {
            tokens: tokens.clone(),
            calls: calls.clone(),
            base: ROOT_URL.into(),
        };
        let app = Router::new()
            .route("/api/v1/user", get(user))
            .route("/api/v1/user/orgs", get(orgs))
            .route("/api/v1/user/teams", get(teams))
            .route("/api/v1/packages/{owner}", get(packages))
            .route(
                "/api/v1/packages/{owner}/{kind}/{name}/{version}",
                axum::routing::delete(delete_package),
            )
            .with_state(shared);
        let served = super::Served::start(listener, app);
        Self {
            addr,
            calls,
            tokens,
            _served: served,
        }
    }

    pub fn token(&self, token: &str, answer: Token) {
        self.tokens.lock().unwrap().insert(token.to_owned(), answer);
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn user_calls(&self) -> usize {
        self.calls.user.load(Ordering::SeqCst)
    }
}
