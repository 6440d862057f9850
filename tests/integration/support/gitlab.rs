//! A fake GitLab REST API v4, shaped like GitLab's documentation and
//! source: `GET /api/v4/user` (`PRIVATE-TOKEN` or `Authorization:
//! Bearer`), `/api/v4/groups?min_access_level=…` and
//! `/api/v4/projects?membership=true` with offset pagination (`Link`,
//! `X-Next-Page` empty on the last page, `X-Page`, `X-Per-Page`,
//! `X-Total`, `X-Total-Pages`), `/api/v4/personal_access_tokens/self`
//! (the token's scopes, for any scope; what `/user` needs is checked),
//! `/api/v4/job` (`JOB-TOKEN`, valid only
//! while the job runs), GitLab's error bodies (`{"message": "401
//! Unauthorized"}`, OAuth's `invalid_token` and `insufficient_scope`, the
//! blocked-account 403), the `RateLimit-*` headers with a plain-text 429,
//! and an HTML 502. One deviation: listings page at two items whatever
//! `per_page` says, so that pagination is easy to reach.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

/// How the fake answers for one access token.
#[derive(Clone, Debug)]
pub enum Token {
    User {
        username: &'static str,
        /// `active`, `blocked`, `deactivated`, ...
        state: &'static str,
        /// A project or group access token's bot user.
        bot: bool,
        /// (full_path, access level): what `/groups?min_access_level`
        /// returns for this user (direct memberships and their subgroups).
        groups: Vec<(&'static str, u8)>,
        /// (id, path_with_namespace, access level) for
        /// `/projects?membership`.
        projects: Vec<(u64, &'static str, u8)>,
        /// The token's scopes (`read_user`, `read_api`, `api`,
        /// `read_registry`, `write_registry`).
        scopes: &'static [&'static str],
    },
    Expired,
    RateLimited,
    ServerError,
}

/// A CI job and its token.
#[derive(Clone, Debug)]
pub struct Job {
    pub project: &'static str,
    pub git_ref: &'static str,
    pub tag: bool,
    /// `running` while the token is valid.
    pub status: &'static str,
    pub source: &'static str,
    pub user: &'static str,
}

#[derive(Default)]
pub struct Calls {
    pub user: AtomicUsize,
    pub token_self: AtomicUsize,
    pub groups: AtomicUsize,
    pub projects: AtomicUsize,
    pub job: AtomicUsize,
}

#[derive(Clone)]
struct Shared {
    tokens: Arc<Mutex<HashMap<String, Token>>>,
    jobs: Arc<Mutex<HashMap<String, Job>>>,
    calls: Arc<Calls>,
    /// GitLab's `external_url`: its links and `web_url`s name it, not the
    /// address regauth calls.
    base: String,
}

pub struct FakeGitLab {
    pub addr: SocketAddr,
    pub calls: Arc<Calls>,
    tokens: Arc<Mutex<HashMap<String, Token>>>,
    jobs: Arc<Mutex<HashMap<String, Job>>>,
    /// Stops the server when dropped.
    _served: super::Served,
}

/// The instance's `external_url`, unlike the loopback address the tests
/// give regauth (as behind a proxy or a TLS-offloading load balancer).
pub const EXTERNAL_URL: &str = "https://gitlab.example.com";

/// Items per page, so two pages are easy to reach.
const PER_PAGE: usize = 2;

fn message(status: StatusCode, text: &str) -> Response {
    (status, axum::Json(serde_json::json!({ "message": text }))).into_response()
}

fn unauthorized() -> Response {
    message(StatusCode::UNAUTHORIZED, "401 Unauthorized")
}

fn rate_limited() -> Response {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let mut r = (
        StatusCode::TOO_MANY_REQUESTS,
        [("content-type", "text/plain")],
        "Retry later\n",
    )
        .into_response();
    let h = r.headers_mut();
    h.insert(
        "ratelimit-name",
        HeaderValue::from_static("throttle_authenticated_api"),
    );
    h.insert("ratelimit-limit", HeaderValue::from_static("60"));
    h.insert("ratelimit-observed", HeaderValue::from_static("67"));
    h.insert("ratelimit-remaining", HeaderValue::from_static("0"));
    h.insert("ratelimit-reset", HeaderValue::from(now + 60));
    h.insert(
        "ratelimit-resettime",
        HeaderValue::from_static("Tue, 05 Jan 2027 11:00:00 GMT"),
    );
    h.insert("retry-after", HeaderValue::from_static("60"));
    r
}

fn server_error() -> Response {
    (
        StatusCode::BAD_GATEWAY,
        [("content-type", "text/html")],
        "<!DOCTYPE html><html><body><h1>502</h1><p>Whoops, GitLab is taking too much time to respond.</p></body></html>",
    )
        .into_response()
}

/// The access token of a request (`PRIVATE-TOKEN` or Bearer).
fn access_token(headers: &HeaderMap) -> Option<String> {
    let text = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    text("private-token")
        .or_else(|| text("authorization").and_then(|v| v.strip_prefix("Bearer ")))
        .map(str::to_owned)
}

/// The token's user, or GitLab's refusal.
fn user_of(shared: &Shared, headers: &HeaderMap) -> Result<Token, Box<Response>> {
    let token = access_token(headers).ok_or_else(|| Box::new(unauthorized()))?;
    let found = shared.tokens.lock().unwrap().get(&token).cloned();
    match found {
        None => Err(Box::new(unauthorized())),
        Some(Token::Expired) => {
            let mut r = (
                StatusCode::UNAUTHORIZED,
                axum::Json(serde_json::json!({
                    "error": "invalid_token",
                    "error_description": "Token is expired. You can either do re-authorization or token refresh.",
                })),
            )
                .into_response();
            r.headers_mut().insert(
                "www-authenticate",
                HeaderValue::from_static("Bearer realm=\"Protected by OAuth 2.0\", error=\"invalid_token\", error_description=\"Token is expired. You can either do re-authorization or token refresh.\""),
            );
            Err(Box::new(r))
        }
        Some(Token::RateLimited) => Err(Box::new(rate_limited())),
        Some(Token::ServerError) => Err(Box::new(server_error())),
        Some(Token::User { state: "blocked", .. }) => Err(Box::new(message(
            StatusCode::FORBIDDEN,
            "403 Forbidden - Your account has been blocked.",
        ))),
        Some(Token::User { state: "deactivated", .. }) => Err(Box::new(message(
            StatusCode::FORBIDDEN,
            "403 Forbidden - Your account has been deactivated by your administrator. Please log back in from a web browser to reactivate your account at http://gitlab.example.com",
        ))),
        Some(user) => Ok(user),
    }
}

fn insufficient_scope(needed: &str) -> Response {
    (
        StatusCode::FORBIDDEN,
        axum::Json(serde_json::json!({
            "error": "insufficient_scope",
            "error_description": "The request requires higher privileges than provided by the access token.",
            "scope": needed,
        })),
    )
        .into_response()
}

fn common_headers(r: &mut Response) {
    let h = r.headers_mut();
    h.insert("ratelimit-limit", HeaderValue::from_static("2000"));
    h.insert("ratelimit-remaining", HeaderValue::from_static("1999"));
    h.insert(
        "ratelimit-name",
        HeaderValue::from_static("throttle_authenticated_api"),
    );
}

async fn user(State(shared): State<Shared>, headers: HeaderMap) -> Response {
    shared.calls.user.fetch_add(1, Ordering::SeqCst);
    match user_of(&shared, &headers) {
        Err(r) => *r,
        Ok(Token::User { scopes, .. })
            if !scopes
                .iter()
                .any(|s| matches!(*s, "api" | "read_api" | "read_user")) =>
        {
            insufficient_scope("api read_api read_user")
        }
        Ok(Token::User {
            username,
            state,
            bot,
            ..
        }) => {
            let body = serde_json::json!({
                "id": 42, "username": username, "name": username,
                "state": state, "locked": false, "bot": bot,
                "avatar_url": "https://secure.gravatar.com/avatar/x",
                "web_url": format!("{}/{username}", shared.base),
                "created_at": "2012-05-23T08:00:58Z", "bio": "", "location": null,
                "public_email": "", "website_url": "", "organization": "",
                "two_factor_enabled": true, "external": false, "private_profile": false,
            });
            let mut r = axum::Json(body).into_response();
            common_headers(&mut r);
            r
        }
        Ok(_) => server_error(),
    }
}

/// `GET /personal_access_tokens/self`: any access token may read itself
/// (personal, project and group access tokens alike).
async fn token_self(State(shared): State<Shared>, headers: HeaderMap) -> Response {
    shared.calls.token_self.fetch_add(1, Ordering::SeqCst);
    match user_of(&shared, &headers) {
        Err(r) => *r,
        Ok(Token::User { scopes, .. }) => {
            let body = serde_json::json!({
                "id": 4, "name": "regauth test token", "revoked": false,
                "created_at": "2026-11-01T10:00:00.000Z", "description": "",
                "scopes": scopes, "user_id": 42, "last_used_at": null,
                "active": true, "expires_at": "2027-11-01",
            });
            let mut r = axum::Json(body).into_response();
            common_headers(&mut r);
            r
        }
        Ok(_) => server_error(),
    }
}

/// One page of `items` with GitLab's offset pagination headers.
fn page(
    shared: &Shared,
    path: &str,
    query: &HashMap<String, String>,
    items: Vec<serde_json::Value>,
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
    common_headers(&mut r);
    // the other query parameters, as GitLab repeats them in its links
    let mut kept: Vec<(&String, &String)> = query.iter().filter(|(k, _)| *k != "page").collect();
    kept.sort();
    let rest: String = kept.iter().map(|(k, v)| format!("&{k}={v}")).collect();
    let link =
        |p: usize, rel: &str| format!("<{}{path}?page={p}{rest}>; rel=\"{rel}\"", shared.base);
    let mut links = Vec::new();
    if page > 1 {
        links.push(link(page - 1, "prev"));
    }
    if page < pages {
        links.push(link(page + 1, "next"));
    }
    links.push(link(1, "first"));
    links.push(link(pages, "last"));
    let next = if page < pages {
        (page + 1).to_string()
    } else {
        String::new()
    };
    let prev = if page > 1 {
        (page - 1).to_string()
    } else {
        String::new()
    };
    let h = r.headers_mut();
    h.insert("link", HeaderValue::from_str(&links.join(", ")).unwrap());
    h.insert("x-next-page", HeaderValue::from_str(&next).unwrap());
    h.insert("x-prev-page", HeaderValue::from_str(&prev).unwrap());
    h.insert("x-page", HeaderValue::from(page));
    h.insert("x-per-page", HeaderValue::from(PER_PAGE));
    h.insert("x-total", HeaderValue::from(total));
    h.insert("x-total-pages", HeaderValue::from(pages));
    r
}

fn min_level(query: &HashMap<String, String>) -> Result<u8, Box<Response>> {
    match query.get("min_access_level") {
        None => Ok(0),
        Some(v) => match v.parse::<u8>() {
            Ok(n) if [5, 10, 15, 20, 30, 40, 50].contains(&n) => Ok(n),
            _ => Err(Box::new(
                (
                    StatusCode::BAD_REQUEST,
                    axum::Json(serde_json::json!({"error": "min_access_level does not have a valid value"})),
                )
                    .into_response(),
            )),
        },
    }
}

async fn groups(
    State(shared): State<Shared>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    shared.calls.groups.fetch_add(1, Ordering::SeqCst);
    let (groups, scopes) = match user_of(&shared, &headers) {
        Err(r) => return *r,
        Ok(Token::User { groups, scopes, .. }) => (groups, scopes),
        Ok(_) => return server_error(),
    };
    if !scopes.iter().any(|s| *s == "api" || *s == "read_api") {
        return insufficient_scope("api read_api");
    }
    let level = match min_level(&query) {
        Ok(level) => level,
        Err(r) => return *r,
    };
    let items = groups
        .iter()
        .enumerate()
        .filter(|(_, (_, l))| *l >= level)
        .map(|(i, (full_path, _))| {
            let (parent, path) = full_path.rsplit_once('/').unwrap_or(("", full_path));
            serde_json::json!({
                "id": 100 + i, "name": path, "path": path, "description": "",
                "visibility": "private", "web_url": format!("{}/groups/{full_path}", shared.base),
                "full_name": full_path.replace('/', " / "), "full_path": full_path,
                "parent_id": if parent.is_empty() { serde_json::Value::Null } else { serde_json::json!(99) },
                "created_at": "2020-01-01T00:00:00Z",
            })
        })
        .collect();
    page(&shared, "/api/v4/groups", &query, items)
}

async fn projects(
    State(shared): State<Shared>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    shared.calls.projects.fetch_add(1, Ordering::SeqCst);
    let (projects, scopes) = match user_of(&shared, &headers) {
        Err(r) => return *r,
        Ok(Token::User {
            projects, scopes, ..
        }) => (projects, scopes),
        Ok(_) => return server_error(),
    };
    if !scopes.iter().any(|s| *s == "api" || *s == "read_api") {
        return insufficient_scope("api read_api");
    }
    let level = match min_level(&query) {
        Ok(level) => level,
        Err(r) => return *r,
    };
    let items = projects
        .iter()
        .filter(|(_, _, l)| *l >= level)
        .map(|(id, path, _)| {
            let name = path.rsplit('/').next().unwrap_or(path);
            serde_json::json!({
                "id": id, "name": name, "path": name,
                "path_with_namespace": path, "name_with_namespace": path.replace('/', " / "),
                "web_url": format!("{}/{path}", shared.base),
            })
        })
        .collect();
    page(&shared, "/api/v4/projects", &query, items)
}

async fn job(State(shared): State<Shared>, headers: HeaderMap) -> Response {
    shared.calls.job.fetch_add(1, Ordering::SeqCst);
    let job_token = headers.get("job-token").and_then(|v| v.to_str().ok());
    let Some(token) = job_token else {
        // an access token on /job: no job behind it
        return if access_token(&headers)
            .is_some_and(|t| shared.tokens.lock().unwrap().contains_key(&t))
        {
            message(StatusCode::NOT_FOUND, "404 Job Not Found")
        } else {
            unauthorized()
        };
    };
    let found = shared.jobs.lock().unwrap().get(token).cloned();
    // A job token authenticates only while its job runs.
    let Some(job) = found.filter(|j| j.status == "running") else {
        return unauthorized();
    };
    let body = serde_json::json!({
        "commit": {"id": "0ff3ae198f8601a285adcf5c0fff204ee6fba5fd", "short_id": "0ff3ae19"},
        "coverage": null, "archived": false, "allow_failure": false,
        "created_at": "2026-12-01T10:00:00.000Z", "started_at": "2026-12-01T10:00:01.000Z",
        "finished_at": null, "duration": 12.5, "queued_duration": 0.4,
        "id": 8812, "name": "build", "ref": job.git_ref, "stage": "build",
        "status": job.status, "tag": job.tag,
        "web_url": format!("{}/{}/-/jobs/8812", shared.base, job.project),
        "source": job.source,
        "project": {"ci_job_token_scope_enabled": true},
        "user": {"id": 7, "name": job.user, "username": job.user, "state": "active"},
        "pipeline": {
            "id": 901, "iid": 12, "project_id": 5, "ref": job.git_ref,
            "sha": "0ff3ae198f8601a285adcf5c0fff204ee6fba5fd", "status": "running",
            "source": job.source,
            "web_url": format!("{}/{}/-/pipelines/901", shared.base, job.project),
        },
    });
    let mut r = axum::Json(body).into_response();
    common_headers(&mut r);
    r
}

impl FakeGitLab {
    pub async fn start() -> Self {
        let tokens = Arc::new(Mutex::new(HashMap::new()));
        let jobs = Arc::new(Mutex::new(HashMap::new()));
        let calls = Arc::new(Calls::default());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let shared = Shared {
            tokens: tokens.clone(),
            jobs: jobs.clone(),
            calls: calls.clone(),
            base: EXTERNAL_URL.into(),
        };
        let app = Router::new()
            .route("/api/v4/user", get(user))
            .route("/api/v4/personal_access_tokens/self", get(token_self))
            .route("/api/v4/groups", get(groups))
            .route("/api/v4/projects", get(projects))
            .route("/api/v4/job", get(job))
            .with_state(shared);
        let served = super::Served::start(listener, app);
        Self {
            addr,
            calls,
            tokens,
            jobs,
            _served: served,
        }
    }

    pub fn token(&self, token: &str, answer: Token) {
        self.tokens.lock().unwrap().insert(token.to_owned(), answer);
    }

    pub fn job(&self, token: &str, job: Job) {
        self.jobs.lock().unwrap().insert(token.to_owned(), job);
    }

    /// The job ends: its token stops working.
    pub fn finish_job(&self, token: &str) {
        if let Some(job) = self.jobs.lock().unwrap().get_mut(token) {
            job.status = "success";
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn calls(&self) -> usize {
        let c = &self.calls;
        c.user.load(Ordering::SeqCst)
            + c.token_self.load(Ordering::SeqCst)
            + c.groups.load(Ordering::SeqCst)
            + c.projects.load(Ordering::SeqCst)
            + c.job.load(Ordering::SeqCst)
    }
}
