//! The `github` provider: a GitHub personal access token (or app token) as
//! the password, for github.com and GitHub Enterprise Server.
//!
//! The token is checked with `GET /user`; organization membership and
//! teams become groups (`org`, `org/team`, parent teams included). GitHub's
//! failure modes map to what a registry client can act on: SAML SSO
//! enforcement is a 401 that says how to authorize the token, rate limits
//! and outages are 503s (never 401s: the token may be fine). Redirects are
//! never followed and the token is only ever sent to `api_url`'s origin.

use std::collections::BTreeSet;
use std::path::PathBuf;

use reqwest::header::{HeaderMap, HeaderValue, ACCEPT, AUTHORIZATION};
use reqwest::StatusCode;
use secrecy::ExposeSecret;
use serde::Deserialize;

use crate::forge::{header, next_link, not_the_account, retry_after, Api, Forge, GroupCache};
use crate::settings::{DEFAULT_GROUP_CACHE_TTL, DEFAULT_MAX_PAGES, DEFAULT_TIMEOUT};
use crate::{
    Credentials, Error, Identity, Outcome, ProviderKind, Rejection, Renewal, Seconds, SecretShape,
};

/// `[[provider]] kind = "github"` as written in the configuration file.
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GithubConfig {
    /// `https://api.github.com`, or `https://ghe.corp/api/v3`.
    pub api_url: String,
    /// Membership in each of these is required; they and their teams are
    /// the only groups. Required unless `allow_any_account = true`.
    pub organizations: Vec<String>,
    /// Admit every GitHub account (with no groups) when `organizations`
    /// is empty. Without it, an empty list is a configuration error.
    pub allow_any_account: bool,
    /// Accept any Basic username instead of requiring the token's login.
    pub any_username: bool,
    /// PEM CA bundle for a GitHub Enterprise Server with a private CA.
    pub ca_file: Option<PathBuf>,
    /// Timeout for connecting and for each API call.
    pub timeout: Seconds,
    /// How long a token's groups (organizations and teams) are cached.
    pub team_cache_ttl: Seconds,
    /// The `X-GitHub-Api-Version` header sent with every call.
    pub api_version: String,
    /// Upper bound on `Link` pages followed per listing.
    pub max_pages: usize,
    /// Bound registry rights by the token's package scopes (`read:packages`
    /// pulls, `write:packages` pushes, `delete:packages` deletes): a token
    /// made for another tool cannot push. Off: the user's full rights.
    pub check_token_scopes: bool,
}

impl Default for GithubConfig {
    fn default() -> Self {
        Self {
            api_url: "https://api.github.com".into(),
            organizations: Vec::new(),
            allow_any_account: false,
            any_username: false,
            ca_file: None,
            timeout: DEFAULT_TIMEOUT,
            team_cache_ttl: DEFAULT_GROUP_CACHE_TTL,
            api_version: "2022-11-28".into(),
            max_pages: DEFAULT_MAX_PAGES,
            check_token_scopes: true,
        }
    }
}

/// What a classic token's `X-OAuth-Scopes` allow with packages, or why it
/// cannot log in: GitHub says nothing of other tokens' package rights
/// (and GitHub Packages takes only classic tokens), and a token without
/// a package scope may not touch the registry.
fn package_rights(scopes: Option<&str>) -> Result<crate::PackageRights, Rejection> {
    let Some(scopes) = scopes else {
        return Err(Rejection::UserAction(
            "GitHub does not say what this token may do with packages (a fine-grained or app token): use a classic personal access token with read:packages to pull, write:packages to push".into(),
        ));
    };
    let has = |wanted: &str| scopes.split(',').any(|s| s.trim() == wanted);
    let rights = crate::PackageRights {
        read: has("read:packages") || has("write:packages"),
        write: has("write:packages"),
        delete: has("delete:packages"),
    };
    if !rights.any() {
        return Err(Rejection::UserAction(
            "the token lacks the read:packages scope (write:packages to push)".into(),
        ));
    }
    Ok(rights)
}

impl GithubConfig {
    /// Checks what can be checked without the network.
    pub fn validate(&self) -> Result<(), crate::Invalid> {
        if self.organizations.is_empty() && !self.allow_any_account {
            return Err(crate::Invalid {
                key: "organizations",
                message: "name the organizations whose members may log in (without them every GitHub account is admitted; set allow_any_account = true if that is really meant)".into(),
            });
        }
        Ok(())
    }
}

/// The `github` provider: checks GitHub tokens against `api_url`.
pub struct GitHub {
    name: String,
    config: GithubConfig,
    api: Api,
    /// Groups per token, for `team_cache_ttl`.
    groups: GroupCache,
}

#[derive(Deserialize)]
struct User {
    login: String,
}

#[derive(Deserialize)]
struct Org {
    login: String,
}

#[derive(Deserialize)]
struct Team {
    slug: String,
    organization: Org,
    #[serde(default)]
    parent: Option<ParentTeam>,
}

#[derive(Deserialize)]
struct ParentTeam {
    slug: String,
}

/// GitHub's `github-authentication-token-expiration` header
/// (`2026-12-31 23:59:59 UTC`, sometimes with a numeric offset) as seconds
/// since the epoch.
fn token_expiration(value: &str) -> Option<u64> {
    use time::macros::format_description;
    let value = value.trim();
    let utc = format_description!("[year]-[month]-[day] [hour]:[minute]:[second] UTC");
    let offset = format_description!(
        "[year]-[month]-[day] [hour]:[minute]:[second] [offset_hour sign:mandatory][offset_minute]"
    );
    let at = time::PrimitiveDateTime::parse(value, &utc)
        .map(|t| t.assume_utc())
        .or_else(|_| time::OffsetDateTime::parse(value, &offset))
        .ok()?;
    u64::try_from(at.unix_timestamp()).ok()
}

impl GitHub {
    /// The provider instance `name`: fails if `api_url` is not an http(s) URL
    /// or the configuration is invalid.
    pub fn new(name: &str, config: &GithubConfig) -> Result<Self, Error> {
        let api = Api::new(
            "GitHub",
            "api_url",
            &config.api_url,
            config.ca_file.as_deref(),
            config.timeout.0,
        )?;
        config.validate()?;
        Ok(Self {
            name: name.to_owned(),
            config: config.clone(),
            api,
            groups: GroupCache::new(config.team_cache_ttl.0),
        })
    }

    /// One API call; GitHub's refusals become the matching outcome.
    async fn get(&self, token: &str, url: &str) -> Result<reqwest::Response, Outcome> {
        let mut headers = HeaderMap::new();
        let bearer = HeaderValue::from_str(&format!("Bearer {token}"))
            .map_err(|_| Outcome::Rejected(Rejection::WrongSecret))?;
        headers.insert(AUTHORIZATION, bearer);
        headers.insert(
            ACCEPT,
            HeaderValue::from_static("application/vnd.github+json"),
        );
        if let Ok(version) = HeaderValue::from_str(&self.config.api_version) {
            headers.insert("x-github-api-version", version);
        }
        // Link headers are followed only within api_url (Api::get).
        let response = self.api.get(url, headers).await?;
        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }
        let headers = response.headers();
        let rate_limited = header(headers, "x-ratelimit-remaining") == Some("0")
            || headers.contains_key("retry-after")
            || status == StatusCode::TOO_MANY_REQUESTS;
        Err(match status {
            StatusCode::UNAUTHORIZED => Outcome::Rejected(Rejection::WrongSecret),
            StatusCode::FORBIDDEN if headers.contains_key("x-github-sso") => {
                let url = header(headers, "x-github-sso")
                    .and_then(|v| v.split("url=").nth(1))
                    .unwrap_or("https://github.com/settings/tokens");
                Outcome::Rejected(Rejection::UserAction(format!(
                    "this GitHub token is not authorized for the organization's SAML single sign-on: authorize it at {url} and log in again"
                )))
            }
            StatusCode::FORBIDDEN | StatusCode::TOO_MANY_REQUESTS if rate_limited => self
                .api
                .rate_limited(status.as_u16(), retry_after(headers, "x-ratelimit-reset")),
            StatusCode::FORBIDDEN => {
                Outcome::Rejected(Rejection::Other("GitHub refused the token (403)".into()))
            }
            s => self.api.unavailable(format!("answered {s}")),
        })
    }

    /// A listing, following `Link: rel="next"` up to `max_pages`.
    async fn list<T: serde::de::DeserializeOwned>(
        &self,
        token: &str,
        path: &str,
    ) -> Result<Vec<T>, Outcome> {
        let mut url = format!("{}{path}?per_page=100", self.api.base);
        let mut items = Vec::new();
        for _ in 0..self.config.max_pages {
            let response = self.get(token, &url).await?;
            let next = next_link(response.headers());
            let page: Vec<T> = self.api.json(response, path).await?;
            items.extend(page);
            match next {
                Some(n) => url = n,
                None => return Ok(items),
            }
        }
        tracing::warn!(provider = %self.name, path, pages = self.config.max_pages, "stopped following GitHub pagination at max_pages");
        Ok(items)
    }

    async fn resolve_groups(
        &self,
        token: &str,
        login: &str,
        scopes: Option<&str>,
    ) -> Result<Vec<String>, Outcome> {
        let wanted: BTreeSet<String> = self
            .config
            .organizations
            .iter()
            .map(|o| o.to_lowercase())
            .collect();
        let orgs: BTreeSet<String> = self
            .list::<Org>(token, "/user/orgs")
            .await?
            .into_iter()
            .map(|o| o.login.to_lowercase())
            .collect();
        if let Some(missing) = wanted.iter().find(|o| !orgs.contains(*o)) {
            let why = match scopes {
                Some(s) if !s.split(',').any(|x| matches!(x.trim(), "read:org" | "write:org" | "admin:org")) => {
                    "the classic token lacks the read:org scope (it sees public memberships only)"
                }
                Some(_) => "the user is not a member",
                None => "the user is not a member, or the fine-grained token has no access to the organization",
            };
            tracing::warn!(provider = %self.name, user = login, organization = %missing, "GitHub organization membership missing: {why}");
            return Err(Outcome::Rejected(Rejection::Other(format!(
                "not a member of GitHub organization {missing}: {why}"
            ))));
        }
        // Only the listed organizations (and their teams) become groups: an
        // account's other organizations are chosen by whoever runs them.
        let in_scope = |org: &str| wanted.contains(org);
        let mut groups: BTreeSet<String> = orgs.iter().filter(|o| in_scope(o)).cloned().collect();
        for team in self.list::<Team>(token, "/user/teams").await? {
            let org = team.organization.login.to_lowercase();
            if !in_scope(&org) {
                continue;
            }
            groups.insert(format!("{org}/{}", team.slug));
            if let Some(parent) = team.parent {
                groups.insert(format!("{org}/{}", parent.slug));
            }
            groups.insert(org);
        }
        Ok(groups.into_iter().collect())
    }
}

impl Forge for GitHub {
    const KIND: ProviderKind = ProviderKind::Github;
    const SHAPE: SecretShape<'static> = SecretShape::GitHubToken;

    fn instance(&self) -> &str {
        &self.name
    }

    fn api(&self) -> &Api {
        &self.api
    }

    fn cache_counters(&self) -> [(&'static str, u64); 2] {
        self.groups.counters()
    }

    async fn login(&self, credentials: &Credentials) -> Result<Identity, Outcome> {
        let token = credentials.secret.expose_secret();
        let response = self.get(token, &format!("{}/user", self.api.base)).await?;
        let scopes = header(response.headers(), "x-oauth-scopes").map(str::to_owned);
        let token_expires = header(response.headers(), "github-authentication-token-expiration")
            .and_then(token_expiration);
        let user: User = self.api.json(response, "/user").await?;
        let rights = match self.config.check_token_scopes {
            true => Some(package_rights(scopes.as_deref()).map_err(Outcome::Rejected)?),
            false => None,
        };
        if !self.config.any_username && !user.login.eq_ignore_ascii_case(&credentials.username) {
            return Err(not_the_account(&credentials.username, "login", &user.login));
        }
        // Per token, not per login: another token of the same user (without
        // read:org, or not authorized for SSO) must pass the checks itself.
        let groups = self
            .groups
            .get_or(
                token,
                self.resolve_groups(token, &user.login, scopes.as_deref()),
            )
            .await?;
        // GitHub logins are case-insensitive: one subject for every spelling
        // (revocation and `${user}` see the same name).
        let mut identity = Identity::new(user.login.to_lowercase(), self.name.clone())
            .with_groups(groups.iter().cloned());
        identity.proof = crate::Proof::Token;
        identity.package_rights = rights;
        // GitHub cannot be asked about a user without their token: a
        // refresh token carries this login, never past the token's own end
        // when GitHub says when.
        identity.renewal = Renewal::Snapshot;
        identity.expires_at = token_expires;
        Ok(identity)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::IdentityProvider as _;

    #[test]
    fn package_scopes_bound_the_token() {
        let r = package_rights(Some("repo, read:packages")).unwrap();
        assert!(r.read && !r.write && !r.delete);
        let r = package_rights(Some("write:packages,delete:packages")).unwrap();
        assert!(r.read && r.write && r.delete, "write implies read");
        for refused in [Some("repo, read:org"), Some(""), None] {
            let why = package_rights(refused).unwrap_err();
            assert!(
                why.client_message().is_some(),
                "{refused:?}: the user is told"
            );
        }
    }

    #[test]
    fn token_expiration_header() {
        assert_eq!(
            token_expiration("2027-01-01 00:00:00 UTC"),
            Some(1_798_761_600)
        );
        assert_eq!(
            token_expiration("2027-01-01 01:00:00 +0100"),
            Some(1_798_761_600)
        );
        assert_eq!(token_expiration("soon"), None);
    }

    #[test]
    fn organizations_are_required_unless_any_account_is_allowed() {
        let c: GithubConfig = serde_json::from_str(r#"{"api_url":"http://127.0.0.1:1"}"#).unwrap();
        let err = GitHub::new("gh", &c).err().unwrap().to_string();
        assert!(err.contains("organizations"), "{err}");
        let c: GithubConfig =
            serde_json::from_str(r#"{"api_url":"http://127.0.0.1:1","allow_any_account":true}"#)
                .unwrap();
        assert!(GitHub::new("gh", &c).is_ok());
    }

    #[tokio::test]
    async fn only_github_shaped_tokens_are_considered() {
        let c: GithubConfig =
            serde_json::from_str(r#"{"api_url":"http://127.0.0.1:1","organizations":["acme"]}"#)
                .unwrap();
        let gh = GitHub::new("gh", &c).unwrap();
        assert!(matches!(
            gh.authenticate(&Credentials::new("u", "password")).await,
            Outcome::NotMine
        ));
        assert!(gh.accepts(SecretShape::GitHubToken));
        assert!(!gh.accepts(SecretShape::Password));
        // unreachable API: unavailable, never rejected
        assert!(matches!(
            gh.authenticate(&Credentials::new("u", "ghp_abc")).await,
            Outcome::Unavailable(_)
        ));
    }
}
