//! The `gitlab` provider: GitLab tokens as registry passwords, for
//! gitlab.com and self-managed GitLab.
//!
//! Two kinds of token are accepted:
//!
//! - **Access tokens** (`glpat-`: personal, project and group access
//!   tokens), checked with `GET /api/v4/user`. Groups are the `full_path`s
//!   of `GET /api/v4/groups?min_access_level=…` with their parents, inside
//!   the configured top-level `groups` only. Project and group access
//!   tokens belong to bot users (`project_123_bot_…`, `group_45_bot_…`):
//!   they are robots, and a project bot's project counts for `groups`.
//!   Claims: `token_type` (`personal`, `project_bot`, `group_bot`) and a
//!   project bot's `bot_project`.
//! - **CI job tokens** (`CI_JOB_TOKEN`, username `gitlab-ci-token`, or a
//!   `glcbt-` token), checked with `GET /api/v4/job`: the job must be
//!   running. The identity is the job's project path, with claims named as
//!   in GitLab's ID tokens: `token_type = "job"`, `project_path`, `ref`,
//!   `ref_type`, `pipeline_source`, `user_login` (and `tag`, `job_id`). A job token lives as
//!   long as its job: its verdict is cached for `cache.verdict_ttl` at
//!   most and it never gets a refresh token.
//!
//! Deploy tokens (`gldt-`) cannot be checked through GitLab's API and are
//! refused with a message saying so. Rate limits and outages are 503s
//! (never 401s); redirects are never followed and the token is only ever
//! sent to `url`'s API.

use std::collections::BTreeSet;
use std::path::PathBuf;

use reqwest::header::{HeaderMap, HeaderValue};
use secrecy::ExposeSecret;
use serde::Deserialize;

use crate::forge::{header, not_the_account, retry_after, Api, Forge, GroupCache};
use crate::settings::{DEFAULT_GROUP_CACHE_TTL, DEFAULT_MAX_PAGES, DEFAULT_TIMEOUT};
use crate::shape::{is_deploy_token_username, is_job_token_username};
use crate::{
    Credentials, Error, Identity, Kind, Outcome, ProviderKind, Rejection, Renewal, Seconds,
    SecretShape,
};

pub use crate::shape::{is_gitlab_token, GITLAB_TOKEN_PREFIXES, JOB_TOKEN_USERNAME};

mod job;

/// GitLab's role levels (`min_access_level`).
const ACCESS_LEVELS: &[u8] = &[5, 10, 15, 20, 30, 40, 50];

/// `[[provider]] kind = "gitlab"` as written in the configuration file.
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GitlabConfig {
    /// The instance: `https://gitlab.com` or `https://gitlab.corp` (with
    /// its relative URL root, if any).
    pub url: String,
    /// Top-level groups (or subgroups) a login must belong to, each of
    /// them; groups inside them are the only groups. Required unless
    /// `allow_any_account = true`.
    pub groups: Vec<String>,
    /// Admit every account of the instance (with no groups) when `groups`
    /// is empty. Without it, an empty list is a configuration error.
    pub allow_any_account: bool,
    /// The role that makes a group membership count: 10 guest, 20
    /// reporter (the default: the role that may pull images), 30
    /// developer, 40 maintainer, 50 owner.
    pub min_access_level: u8,
    /// Whether a subgroup member's groups include the subgroup's parents
    /// (`acme/platform/core` gives `acme/platform` and `acme` too). Off by
    /// default: GitLab passes rights down, not up, and with it on whoever
    /// may add members to any subgroup grants the parent's registry rights.
    pub parent_groups: bool,
    /// Accept any Basic username with an access token instead of
    /// requiring the token's user.
    pub any_username: bool,
    /// PEM CA bundle for an instance with a private CA.
    pub ca_file: Option<PathBuf>,
    /// Timeout for connecting and for each API call.
    pub timeout: Seconds,
    /// How long a token's groups are cached.
    pub group_cache_ttl: Seconds,
    /// Upper bound on pages followed per listing (100 groups a page).
    pub max_pages: usize,
    /// Bound an access token's registry rights by its scopes, as GitLab's
    /// own registry does (`read_registry` pulls, `write_registry` pulls
    /// and pushes, `api` does everything): a `read_api` token made for
    /// another tool cannot push. Off: the user's full rights.
    pub check_token_scopes: bool,
}

impl Default for GitlabConfig {
    fn default() -> Self {
        Self {
            url: "https://gitlab.com".into(),
            groups: Vec::new(),
            allow_any_account: false,
            min_access_level: 20,
            parent_groups: false,
            any_username: false,
            ca_file: None,
            timeout: DEFAULT_TIMEOUT,
            group_cache_ttl: DEFAULT_GROUP_CACHE_TTL,
            max_pages: DEFAULT_MAX_PAGES,
            check_token_scopes: true,
        }
    }
}

/// What an access token's scopes allow with the registry, or why it may
/// not use it at all.
fn package_rights(scopes: &[String]) -> Result<crate::PackageRights, Rejection> {
    let has = |wanted: &str| scopes.iter().any(|s| s == wanted);
    if has("api") {
        return Ok(crate::PackageRights {
            read: true,
            write: true,
            delete: true,
        });
    }
    let rights = crate::PackageRights {
        read: has("read_registry") || has("write_registry"),
        write: has("write_registry"),
        delete: false,
    };
    if !rights.any() {
        return Err(Rejection::UserAction(
            "the GitLab token lacks the read_registry scope (write_registry to push, api to delete)"
                .into(),
        ));
    }
    Ok(rights)
}

/// `GET /personal_access_tokens/self`: what GitLab says of the token.
#[derive(Deserialize)]
struct TokenSelf {
    #[serde(default)]
    scopes: Vec<String>,
}

impl GitlabConfig {
    /// Checks what can be checked without the network.
    pub fn validate(&self) -> Result<(), crate::Invalid> {
        if self.groups.is_empty() && !self.allow_any_account {
            return Err(crate::Invalid {
                key: "groups",
                message: "name the GitLab groups whose members may log in (without them every account of the instance is admitted; set allow_any_account = true if that is really meant)".into(),
            });
        }
        if let Some(bad) = self
            .groups
            .iter()
            .find(|g| g.is_empty() || g.starts_with('/') || g.ends_with('/'))
        {
            return Err(crate::Invalid {
                key: "groups",
                message: format!("`{bad}` is not a group path (like `acme` or `acme/platform`)"),
            });
        }
        if !ACCESS_LEVELS.contains(&self.min_access_level) {
            return Err(crate::Invalid {
                key: "min_access_level",
                message: "must be one of 5, 10, 15, 20, 30, 40, 50 (10 guest ... 50 owner)".into(),
            });
        }
        Ok(())
    }
}

/// The `gitlab` provider: checks GitLab tokens against `url`'s API.
pub struct GitLab {
    name: String,
    config: GitlabConfig,
    api: Api,
    /// The instance's path below its host (`/gitlab`), or empty.
    root_path: String,
    /// Required groups, lower-cased.
    required: Vec<String>,
    memberships: GroupCache<Memberships>,
}

/// What an access token's user belongs to, inside the required groups.
struct Memberships {
    /// Group paths with their parents, lower-cased.
    groups: Vec<String>,
    /// A project bot's project.
    project: Option<String>,
    /// What the token's scopes allow with the registry (when checked).
    rights: Option<crate::PackageRights>,
}

#[derive(Deserialize)]
struct User {
    username: String,
    #[serde(default)]
    state: String,
    #[serde(default)]
    locked: bool,
    #[serde(default)]
    bot: bool,
}

#[derive(Deserialize)]
struct Group {
    full_path: String,
}

#[derive(Deserialize)]
struct Project {
    id: u64,
    path_with_namespace: String,
}

/// What kind of bot user an access token belongs to, from GitLab's
/// naming of bot users (`project_{id}_bot_…`, `group_{id}_bot_…`).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Bot {
    /// A project access token's bot, for project `id`.
    Project(u64),
    /// A group access token's bot.
    Group,
    /// Another bot (a service account).
    Other,
}

impl Bot {
    fn of(username: &str) -> Bot {
        let id = |prefix: &str| {
            let rest = username.strip_prefix(prefix)?;
            let (digits, tail) = rest.split_once('_')?;
            tail.starts_with("bot")
                .then(|| digits.parse::<u64>().ok())
                .flatten()
        };
        match (id("project_"), id("group_")) {
            (Some(project), _) => Bot::Project(project),
            (None, Some(_)) => Bot::Group,
            (None, None) => Bot::Other,
        }
    }

    fn token_type(self) -> &'static str {
        match self {
            Bot::Project(_) => "project_bot",
            Bot::Group => "group_bot",
            Bot::Other => "bot",
        }
    }
}

/// GitLab's error bodies: `{"message": …}` or OAuth's `{"error": …,
/// "error_description": …}`.
#[derive(Deserialize, Default)]
struct ApiError {
    #[serde(default)]
    message: Option<serde_json::Value>,
    #[serde(default)]
    error: Option<String>,
    #[serde(default)]
    error_description: Option<String>,
}

impl ApiError {
    fn text(&self) -> String {
        match (&self.message, &self.error_description, &self.error) {
            (Some(serde_json::Value::String(m)), _, _) => m.clone(),
            (Some(other), _, _) => other.to_string(),
            (None, Some(d), _) => d.clone(),
            (None, None, Some(e)) => e.clone(),
            (None, None, None) => String::new(),
        }
    }
}

/// Which call a refusal came from, for its message.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Call {
    User,
    TokenSelf,
    Groups,
    Projects,
    Job,
}

impl GitLab {
    /// The provider instance `name`: fails if `url` is not an http(s) URL
    /// or the configuration is invalid.
    pub fn new(name: &str, config: &GitlabConfig) -> Result<Self, Error> {
        config.validate()?;
        let url = config.url.trim_end_matches('/');
        let api = Api::new(
            "GitLab",
            "url",
            &format!("{url}/api/v4"),
            config.ca_file.as_deref(),
            config.timeout.0,
        )?;
        let root_path = url
            .split_once("://")
            .and_then(|(_, rest)| rest.split_once('/'))
            .map(|(_, path)| path.trim_matches('/').to_owned())
            .unwrap_or_default();
        Ok(Self {
            name: name.to_owned(),
            config: config.clone(),
            api,
            root_path,
            required: config
                .groups
                .iter()
                .map(|g| g.trim().to_lowercase())
                .collect(),
            memberships: GroupCache::new(config.group_cache_ttl.0),
        })
    }

    /// One API call with `credential` as the header `name`; GitLab's
    /// refusals become the matching outcome.
    async fn get(
        &self,
        name: &'static str,
        credential: &str,
        url: &str,
        call: Call,
    ) -> Result<reqwest::Response, Outcome> {
        let mut headers = HeaderMap::new();
        let value = HeaderValue::from_str(credential)
            .map_err(|_| Outcome::Rejected(Rejection::WrongSecret))?;
        headers.insert(name, value);
        let response = self.api.get(url, headers).await?;
        let status = response.status().as_u16();
        if response.status().is_success() {
            return Ok(response);
        }
        let wait = retry_after(response.headers(), "ratelimit-reset");
        if status == 429 {
            return Err(self.api.rate_limited(status, wait));
        }
        // Only GitLab's word on the token is a refusal; any other 4xx (a
        // wrong url, a proxy) is a fault to fix, not a failed login.
        let refusal = matches!(status, 401 | 403) || (status == 404 && call == Call::Job);
        if !refusal {
            return Err(self.api.unavailable(format!("answered {status} for {url}")));
        }
        let body: ApiError = crate::json_limited(response, 64 * 1024)
            .await
            .unwrap_or_default();
        Err(Outcome::Rejected(self.refusal(status, &body, call)))
    }

    /// What a 4xx from GitLab means.
    fn refusal(&self, status: u16, body: &ApiError, call: Call) -> Rejection {
        let text = body.text();
        match (status, call) {
            (403, _) if body.error.as_deref() == Some("insufficient_scope") => {
                Rejection::UserAction(match call {
                    Call::User => "this GitLab token cannot read its user: give it the read_api scope (or read_user and read_api for a personal token)".into(),
                    _ => "this GitLab token cannot list its groups: give it the read_api scope".into(),
                })
            }
            (401, Call::Job) => Rejection::Other(
                "the GitLab job token is not valid: its job is not running (or the token is wrong)"
                    .into(),
            ),
            (401, _) if text.contains("expired") => Rejection::Expired,
            (401, _) if text.contains("revoked") => {
                Rejection::Other("the GitLab token was revoked".into())
            }
            (401, _) => Rejection::WrongSecret,
            (403, _)
                if text.contains("blocked")
                    || text.contains("deactivated")
                    || text.contains("pending approval") =>
            {
                Rejection::Disabled
            }
            (404, _) => Rejection::Other("not a GitLab job token".into()),
            (s, _) => Rejection::Other(format!("GitLab answered {s}: {}", crate::Safe(&text))),
        }
    }

    /// A listing of `path` (with its query), page by page up to
    /// `max_pages`: the next page is `X-Next-Page` (empty on the last one),
    /// asked of `url`'s API whatever host GitLab's own links name (behind
    /// a proxy they may name another).
    async fn list<T: serde::de::DeserializeOwned>(
        &self,
        token: &str,
        path: &str,
        call: Call,
    ) -> Result<Vec<T>, Outcome> {
        let mut items = Vec::new();
        let mut page = 1u64;
        for _ in 0..self.config.max_pages {
            let url = format!("{}{path}&per_page=100&page={page}", self.api.base);
            let response = self.get("private-token", token, &url, call).await?;
            let next = header(response.headers(), "x-next-page")
                .and_then(|n| n.trim().parse::<u64>().ok())
                .filter(|n| *n > page);
            let batch: Vec<T> = self.api.json(response, "listing").await?;
            items.extend(batch);
            match next {
                Some(n) => page = n,
                None => return Ok(items),
            }
        }
        tracing::warn!(provider = %self.name, pages = self.config.max_pages, "stopped following GitLab pagination at max_pages");
        Ok(items)
    }

    /// Whether `path` is one of the required groups or inside one.
    fn in_scope(&self, path: &str) -> bool {
        self.required.is_empty()
            || self.required.iter().any(|g| {
                path == g
                    || path
                        .strip_prefix(g.as_str())
                        .is_some_and(|r| r.starts_with('/'))
            })
    }

    /// The required group `paths` (memberships, lower-cased) do not reach.
    fn missing<'a>(&'a self, paths: &BTreeSet<String>) -> Option<&'a str> {
        self.required
            .iter()
            .find(|g| {
                !paths.iter().any(|p| {
                    p == *g
                        || p.strip_prefix(g.as_str())
                            .is_some_and(|r| r.starts_with('/'))
                })
            })
            .map(String::as_str)
    }

    async fn access_token(
        &self,
        credentials: &Credentials,
        token: &str,
    ) -> Result<Identity, Outcome> {
        let url = format!("{}/user", self.api.base);
        let response = self.get("private-token", token, &url, Call::User).await?;
        let user: User = self.api.json(response, "/user").await?;
        if user.state != "active" {
            return Err(Outcome::Rejected(Rejection::Disabled));
        }
        if user.locked {
            return Err(Outcome::Rejected(Rejection::Locked));
        }
        if !self.config.any_username
            && !user
                .username
                .eq_ignore_ascii_case(credentials.username.trim())
        {
            return Err(not_the_account(
                &credentials.username,
                "user",
                &user.username,
            ));
        }
        let bot = user.bot.then(|| Bot::of(&user.username));
        let memberships = self
            .memberships
            .get_or(token, self.memberships(token, &user.username, bot))
            .await?;
        // GitLab usernames are case-insensitive; repository names are
        // lower-case, so `${user}` only works lower-cased.
        let mut identity = Identity::new(user.username.to_lowercase(), self.name.clone())
            .with_groups(memberships.groups.iter().cloned());
        identity.proof = crate::Proof::Token;
        identity.package_rights = memberships.rights;
        let token_type = bot.map_or("personal", Bot::token_type);
        identity.claims.insert("token_type", token_type);
        if bot.is_some() {
            identity.kind = Kind::Robot;
            if let Some(project) = &memberships.project {
                identity.claims.insert("bot_project", project.clone());
            }
        }
        identity.renewal = Renewal::Snapshot;
        Ok(identity)
    }

    /// The token's groups inside the required ones (with their parents),
    /// and for a project bot its project.
    async fn memberships(
        &self,
        token: &str,
        username: &str,
        bot: Option<Bot>,
    ) -> Result<Memberships, Outcome> {
        let rights = match self.config.check_token_scopes {
            true => Some(self.token_rights(token).await?),
            false => None,
        };
        let level = self.config.min_access_level;
        // Without required groups (allow_any_account) every account is
        // admitted, and any of them may create a group with a policy
        // group's name: such logins get no groups, as GitHub's do.
        let groups = if self.required.is_empty() {
            Vec::new()
        } else {
            self.list::<Group>(
                token,
                &format!("/groups?min_access_level={level}"),
                Call::Groups,
            )
            .await
            .inspect_err(|outcome| {
                if matches!(outcome, Outcome::Rejected(Rejection::UserAction(_))) {
                    tracing::warn!(provider = %self.name, user = username, "GitLab token cannot list groups: add the read_api scope to it");
                }
            })?
        };
        let mut paths = BTreeSet::new();
        for group in groups {
            let path = group.full_path.to_lowercase();
            if self.config.parent_groups {
                let mut at = 0;
                while let Some(i) = path[at..].find('/') {
                    paths.insert(path[..at + i].to_owned());
                    at += i + 1;
                }
            }
            paths.insert(path);
        }
        let mut projects = BTreeSet::new();
        if let Some(Bot::Project(id)) = bot {
            let listed = self
                .list::<Project>(
                    token,
                    &format!("/projects?membership=true&simple=true&min_access_level={level}"),
                    Call::Projects,
                )
                .await?;
            // the bot's own project, by the id in its name
            projects.extend(
                listed
                    .into_iter()
                    .filter(|p| p.id == id)
                    .map(|p| p.path_with_namespace.to_lowercase()),
            );
        }
        let reached: BTreeSet<String> = paths.union(&projects).cloned().collect();
        if let Some(missing) = self.missing(&reached) {
            tracing::warn!(provider = %self.name, user = username, group = missing, min_access_level = level, "GitLab group membership missing");
            return Err(Outcome::Rejected(Rejection::Other(format!(
                "not a member of GitLab group {missing} (at access level {level} or above)"
            ))));
        }
        Ok(Memberships {
            rights,
            groups: paths.into_iter().filter(|p| self.in_scope(p)).collect(),
            // a project bot belongs to exactly one project
            project: (projects.len() == 1)
                .then(|| projects.into_iter().next())
                .flatten(),
        })
    }

    /// The access token's registry rights, from its scopes.
    async fn token_rights(&self, token: &str) -> Result<crate::PackageRights, Outcome> {
        let url = format!("{}/personal_access_tokens/self", self.api.base);
        let response = self
            .get("private-token", token, &url, Call::TokenSelf)
            .await?;
        let found: TokenSelf = self
            .api
            .json(response, "/personal_access_tokens/self")
            .await?;
        package_rights(&found.scopes).map_err(Outcome::Rejected)
    }
}

impl Forge for GitLab {
    const KIND: ProviderKind = ProviderKind::Gitlab;
    const SHAPE: SecretShape<'static> = SecretShape::GitLabToken;

    fn instance(&self) -> &str {
        &self.name
    }

    fn api(&self) -> &Api {
        &self.api
    }

    fn cache_counters(&self) -> [(&'static str, u64); 2] {
        self.memberships.counters()
    }

    async fn login(&self, credentials: &Credentials) -> Result<Identity, Outcome> {
        let token = credentials.secret.expose_secret();
        if token.is_empty() {
            return Err(Outcome::Rejected(Rejection::EmptySecret));
        }
        if token.starts_with("gldt-") || is_deploy_token_username(&credentials.username) {
            return Err(Outcome::Rejected(Rejection::UserAction(
                "GitLab deploy tokens cannot be checked through GitLab's API: use a personal, project or group access token, or the job's CI_JOB_TOKEN".into(),
            )));
        }
        let supported = ["glpat-", "glcbt-"];
        if token.starts_with("gl")
            && GITLAB_TOKEN_PREFIXES.iter().any(|p| token.starts_with(p))
            && !supported.iter().any(|p| token.starts_with(p))
        {
            return Err(Outcome::Rejected(Rejection::UserAction(
                "this kind of GitLab token cannot log in to the registry: use a personal, project or group access token, or the job's CI_JOB_TOKEN".into(),
            )));
        }
        if token.starts_with("glcbt-") || is_job_token_username(&credentials.username) {
            self.job_token(token).await
        } else {
            self.access_token(credentials, token).await
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::IdentityProvider as _;

    pub(super) fn config(json: serde_json::Value) -> GitlabConfig {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn groups_are_required_unless_any_account_is_allowed() {
        let err = GitLab::new("gl", &config(serde_json::json!({})))
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("groups"), "{err}");
        assert!(GitLab::new(
            "gl",
            &config(serde_json::json!({"allow_any_account": true}))
        )
        .is_ok());
        let err = GitLab::new(
            "gl",
            &config(serde_json::json!({"groups": ["acme"], "min_access_level": 25})),
        )
        .err()
        .unwrap()
        .to_string();
        assert!(err.contains("min_access_level"), "{err}");
    }

    #[test]
    fn bot_users_by_gitlabs_naming() {
        assert!(Bot::of("project_12_bot_4ffca233d8298ea1") == Bot::Project(12));
        assert!(Bot::of("group_7_bot_9c1d2e3f4a5b6c7d") == Bot::Group);
        assert!(Bot::of("service_account_group_7_1a2b") == Bot::Other);
        assert!(Bot::of("project_x_bot_1") == Bot::Other);
        assert!(Bot::of("project_12_botany") == Bot::Project(12));
    }

    #[test]
    fn required_groups_reach_subgroups_not_lookalikes() {
        let gl = GitLab::new("gl", &config(serde_json::json!({"groups": ["acme"]}))).unwrap();
        assert!(gl.in_scope("acme"));
        assert!(gl.in_scope("acme/platform"));
        assert!(!gl.in_scope("acme-evil"));
        assert!(!gl.in_scope("other/acme"));
        let reached = BTreeSet::from(["acme-evil".to_owned(), "acme2/x".to_owned()]);
        assert_eq!(gl.missing(&reached), Some("acme"));
        let reached = BTreeSet::from(["acme/platform".to_owned()]);
        assert_eq!(gl.missing(&reached), None);
    }

    #[tokio::test]
    async fn only_gitlab_tokens_are_considered() {
        let gl = GitLab::new(
            "gl",
            &config(serde_json::json!({"url": "http://127.0.0.1:1", "groups": ["acme"]})),
        )
        .unwrap();
        assert!(matches!(
            gl.authenticate(&Credentials::new("u", "password")).await,
            Outcome::NotMine
        ));
        assert!(matches!(
            gl.authenticate(&Credentials::new("u", "gldt-abc")).await,
            Outcome::Rejected(Rejection::UserAction(_))
        ));
        // unreachable API: unavailable, never rejected
        for (user, token) in [
            ("u", "glpat-abc"),
            ("gitlab-ci-token", "abc"),
            ("x", "glcbt-abc"),
        ] {
            assert!(
                matches!(
                    gl.authenticate(&Credentials::new(user, token)).await,
                    Outcome::Unavailable(_)
                ),
                "{user}"
            );
        }
    }
}
