//! The `gitea` provider: Gitea and Forgejo access tokens (they share the
//! API) as registry passwords.
//!
//! The token is checked with `GET /api/v1/user` (`Authorization: token
//! …`); an inactive account or one prohibited from signing in is refused.
//! Organizations and teams become groups (`org`, `org/team`), inside the
//! required `organizations` only. A token needs the `read:user` scope, and
//! `read:organization` to list organizations. Rate limits and outages are
//! 503s; redirects are never followed and the token is only ever sent to
//! `url`'s API.

use std::collections::BTreeSet;
use std::path::PathBuf;

use reqwest::header::{HeaderMap, HeaderValue, AUTHORIZATION};
use secrecy::ExposeSecret;
use serde::Deserialize;

use crate::forge::{header, next_link, not_the_account, retry_after, Api, Forge, GroupCache};
use crate::settings::default;
use crate::{
    Credentials, Error, Identity, Outcome, ProviderKind, Rejection, Renewal, Seconds, SecretShape,
};

pub use crate::shape::is_gitea_token;

/// Items per page: Gitea's maximum.
const PAGE_LIMIT: usize = 50;

/// `[[provider]] kind = "gitea"` as written in the configuration file.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GiteaConfig {
    /// The instance: `https://gitea.corp` or `https://codeberg.org`.
    pub url: String,
    /// Membership in each of these is required; they and their teams are
    /// the only groups. Required unless `allow_any_account = true`.
    #[serde(default)]
    pub organizations: Vec<String>,
    /// Admit every account of the instance (with no groups) when
    /// `organizations` is empty. Without it, an empty list is a
    /// configuration error.
    #[serde(default)]
    pub allow_any_account: bool,
    /// Accept any Basic username instead of requiring the token's login.
    #[serde(default)]
    pub any_username: bool,
    /// PEM CA bundle for an instance with a private CA.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// Timeout for connecting and for each API call.
    #[serde(default = "default::timeout")]
    pub timeout: Seconds,
    /// How long a token's groups are cached.
    #[serde(default = "default::group_cache_ttl")]
    pub team_cache_ttl: Seconds,
    /// Upper bound on pages followed per listing (50 items a page).
    #[serde(default = "default::max_pages")]
    pub max_pages: usize,
    /// Bound a token's registry rights by its scopes, as Gitea's own
    /// registry does (`read:package` pulls, `write:package` pushes and
    /// deletes): a token made for another tool cannot push. Gitea says a
    /// token's scopes only by refusing a call, so two calls find out: a
    /// listing of the user's packages (`read:package`) and a delete of a
    /// package version that cannot exist (`write:package`: Gitea checks
    /// the scope before it looks the package up, so a token that may gets
    /// 404, one that may not 403, and nothing is ever deleted). Off: the
    /// user's full rights.
    #[serde(default = "default::yes")]
    pub check_token_scopes: bool,
}

/// The package version the write probe asks Gitea to delete: a generic
/// package by this name and version is never made by anyone on purpose.
const PROBE_PACKAGE: &str = "generic/regauth-scope-probe/0.0.0-regauth-scope-probe";

/// What a token resolved to besides its user, cached per token.
struct Resolved {
    groups: Vec<String>,
    rights: Option<crate::PackageRights>,
}

impl GiteaConfig {
    /// Checks what can be checked without the network.
    pub fn validate(&self) -> Result<(), crate::Invalid> {
        if self.organizations.is_empty() && !self.allow_any_account {
            return Err(crate::Invalid {
                key: "organizations",
                message: "name the organizations whose members may log in (without them every account of the instance is admitted; set allow_any_account = true if that is really meant)".into(),
            });
        }
        Ok(())
    }
}

/// The `gitea` provider: checks Gitea or Forgejo tokens against `url`'s API.
pub struct Gitea {
    name: String,
    config: GiteaConfig,
    api: Api,
    groups: GroupCache<Resolved>,
}

#[derive(Deserialize)]
struct User {
    #[serde(default)]
    id: i64,
    login: String,
    #[serde(default = "default::yes")]
    active: bool,
    #[serde(default)]
    prohibit_login: bool,
}

#[derive(Deserialize)]
struct Org {
    name: String,
}

#[derive(Deserialize)]
struct Team {
    name: String,
    organization: Option<Org>,
}

#[derive(Deserialize, Default)]
struct ApiError {
    #[serde(default)]
    message: String,
}

impl Gitea {
    /// The provider instance `name`: fails if `url` is not an http(s) URL
    /// or the configuration is invalid.
    pub fn new(name: &str, config: &GiteaConfig) -> Result<Self, Error> {
        config.validate()?;
        let url = config.url.trim_end_matches('/');
        let api = Api::new(
            "Gitea",
            "url",
            &format!("{url}/api/v1"),
            config.ca_file.as_deref(),
            config.timeout.0,
        )?;
        Ok(Self {
            name: name.to_owned(),
            config: config.clone(),
            api,
            groups: GroupCache::new(config.team_cache_ttl.0),
        })
    }

    fn headers(token: &str) -> Result<HeaderMap, Rejection> {
        let mut headers = HeaderMap::new();
        let value =
            HeaderValue::from_str(&format!("token {token}")).map_err(|_| Rejection::WrongSecret)?;
        headers.insert(AUTHORIZATION, value);
        Ok(headers)
    }

    /// Whether a call the token's scope must allow is refused for the
    /// scope (403) or let through to the handler (2xx, 404).
    async fn scope_allows(
        &self,
        method: reqwest::Method,
        token: &str,
        url: &str,
    ) -> Result<bool, Outcome> {
        let response = self
            .api
            .call(
                method,
                url,
                Self::headers(token).map_err(Outcome::Rejected)?,
            )
            .await?;
        match response.status().as_u16() {
            200..=299 | 404 => Ok(true),
            403 => Ok(false),
            429 => {
                let wait = retry_after(response.headers(), "x-ratelimit-reset");
                Err(self.api.rate_limited(429, wait))
            }
            401 => Err(Outcome::Rejected(Rejection::WrongSecret)),
            s => Err(self.api.unavailable(format!("answered {s} for {url}"))),
        }
    }

    /// What the token's scopes allow with packages: `read:package` lists,
    /// `write:package` deletes (see `check_token_scopes`).
    async fn token_rights(
        &self,
        token: &str,
        login: &str,
    ) -> Result<crate::PackageRights, Outcome> {
        let base = &self.api.base;
        let read = self
            .scope_allows(
                reqwest::Method::GET,
                token,
                &format!("{base}/packages/{login}?limit=1"),
            )
            .await?;
        let write = self
            .scope_allows(
                reqwest::Method::DELETE,
                token,
                &format!("{base}/packages/{login}/{PROBE_PACKAGE}"),
            )
            .await?;
        let rights = crate::PackageRights {
            read: read || write,
            write,
            delete: write,
        };
        if !rights.any() {
            return Err(Outcome::Rejected(Rejection::UserAction(
                "the Gitea token lacks the read:package scope (write:package to push)".into(),
            )));
        }
        Ok(rights)
    }

    /// One API call; Gitea's refusals become the matching outcome.
    async fn get(&self, token: &str, url: &str) -> Result<reqwest::Response, Outcome> {
        let headers = Self::headers(token).map_err(Outcome::Rejected)?;
        let response = self.api.get(url, headers).await?;
        let status = response.status().as_u16();
        if response.status().is_success() {
            return Ok(response);
        }
        if status == 429 {
            let wait = retry_after(response.headers(), "x-ratelimit-reset");
            return Err(self.api.rate_limited(status, wait));
        }
        // Only Gitea's word on the token is a refusal; any other 4xx (a
        // wrong url, a proxy) is a fault to fix, not a failed login.
        if !matches!(status, 401 | 403) {
            return Err(self.api.unavailable(format!("answered {status} for {url}")));
        }
        let body: ApiError = crate::json_limited(response, 64 * 1024)
            .await
            .unwrap_or_default();
        Err(Outcome::Rejected(match status {
            401 => Rejection::WrongSecret,
            403 if body.message.contains("scope") => Rejection::UserAction(
                "this Gitea token lacks a scope: give it read:user and read:organization".into(),
            ),
            403 if body.message.contains("prohibited")
                || body.message.contains("not activated") =>
            {
                Rejection::Disabled
            }
            s => Rejection::Other(format!(
                "Gitea answered {s}: {}",
                crate::Safe(&body.message)
            )),
        }))
    }

    /// A listing, page by page up to `max_pages`: while `Link` has a
    /// `rel="next"` where Gitea sends one, otherwise until `X-Total-Count`
    /// or a short page. The next page is always asked of `url`'s API:
    /// Gitea's links name its `ROOT_URL`, which may be another address.
    async fn list<T: serde::de::DeserializeOwned>(
        &self,
        token: &str,
        path: &str,
    ) -> Result<Vec<T>, Outcome> {
        let mut items = Vec::new();
        let mut url = format!("{}{path}?limit={PAGE_LIMIT}&page=1", self.api.base);
        for page in 1..=self.config.max_pages {
            let response = self.get(token, &url).await?;
            let headers = response.headers();
            let next = next_link(headers);
            let has_link = headers.contains_key("link");
            let total: Option<usize> =
                header(headers, "x-total-count").and_then(|t| t.trim().parse().ok());
            let batch: Vec<T> = self.api.json(response, path).await?;
            let (empty, full) = (batch.is_empty(), batch.len() >= PAGE_LIMIT);
            items.extend(batch);
            url = format!(
                "{}{path}?limit={PAGE_LIMIT}&page={}",
                self.api.base,
                page + 1
            );
            let more = match (next, has_link) {
                (Some(_), _) => true,
                (None, true) => false,
                // X-Total-Count where sent (an instance may page below
                // PAGE_LIMIT), else until a short page
                (None, false) => !empty && total.map_or(full, |t| items.len() < t),
            };
            if !more {
                return Ok(items);
            }
        }
        tracing::warn!(provider = %self.name, path, pages = self.config.max_pages, "stopped following Gitea pagination at max_pages");
        Ok(items)
    }

    async fn resolve(&self, token: &str, login: &str) -> Result<Resolved, Outcome> {
        let rights = match self.config.check_token_scopes {
            true => Some(self.token_rights(token, login).await?),
            false => None,
        };
        Ok(Resolved {
            groups: self.resolve_groups(token, login).await?,
            rights,
        })
    }

    async fn resolve_groups(&self, token: &str, login: &str) -> Result<Vec<String>, Outcome> {
        let wanted: BTreeSet<String> = self
            .config
            .organizations
            .iter()
            .map(|o| o.trim().to_lowercase())
            .collect();
        // Without required organizations (allow_any_account) every
        // account is admitted, and any of them may create an organization
        // with a policy group's name: such logins get no groups.
        if wanted.is_empty() {
            return Ok(Vec::new());
        }
        let orgs: BTreeSet<String> = self
            .list::<Org>(token, "/user/orgs")
            .await
            .inspect_err(|outcome| {
                if matches!(outcome, Outcome::Rejected(Rejection::UserAction(_))) {
                    tracing::warn!(provider = %self.name, user = login, "Gitea token cannot list organizations: add the read:organization scope to it");
                }
            })?
            .into_iter()
            .map(|o| o.name.to_lowercase())
            .collect();
        if let Some(missing) = wanted.iter().find(|o| !orgs.contains(*o)) {
            tracing::warn!(provider = %self.name, user = login, organization = %missing, "Gitea organization membership missing");
            return Err(Outcome::Rejected(Rejection::Other(format!(
                "not a member of Gitea organization {missing}"
            ))));
        }
        // the required organizations (the account is in each) and their teams
        let mut groups = wanted.clone();
        for team in self.list::<Team>(token, "/user/teams").await? {
            let Some(org) = team.organization.map(|o| o.name.to_lowercase()) else {
                continue;
            };
            if wanted.contains(&org) {
                groups.insert(format!("{org}/{}", team.name.to_lowercase()));
            }
        }
        Ok(groups.into_iter().collect())
    }
}

impl Forge for Gitea {
    const KIND: ProviderKind = ProviderKind::Gitea;
    const SHAPE: SecretShape<'static> = SecretShape::HexToken;

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
        let user: User = self.api.json(response, "/user").await?;
        if !user.active || user.prohibit_login {
            return Err(Outcome::Rejected(Rejection::Disabled));
        }
        // Gitea's built-in users (the Actions user `gitea-actions`, id -2,
        // behind every Actions job's token; the ghost user) are nobody's.
        if user.id <= 0 {
            return Err(Outcome::Rejected(Rejection::UserAction(format!(
                "a token of Gitea's built-in user {:?} (an Actions job token) cannot log in: use a personal access token",
                user.login
            ))));
        }
        if !self.config.any_username
            && !user.login.eq_ignore_ascii_case(credentials.username.trim())
        {
            return Err(not_the_account(&credentials.username, "login", &user.login));
        }
        let resolved = self
            .groups
            .get_or(token, self.resolve(token, &user.login))
            .await?;
        // Gitea logins are case-insensitive; repository names are
        // lower-case, so `${user}` only works lower-cased.
        let mut identity = Identity::new(user.login.to_lowercase(), self.name.clone())
            .with_groups(resolved.groups.iter().cloned());
        identity.proof = crate::Proof::Token;
        identity.package_rights = resolved.rights;
        identity.account_id = Some(user.id.to_string());
        identity.renewal = Renewal::Snapshot;
        Ok(identity)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn organizations_are_required_unless_any_account_is_allowed() {
        let c: GiteaConfig = serde_json::from_str(r#"{"url":"http://127.0.0.1:1"}"#).unwrap();
        let err = Gitea::new("gt", &c).err().unwrap().to_string();
        assert!(err.contains("organizations"), "{err}");
        let c: GiteaConfig =
            serde_json::from_str(r#"{"url":"http://127.0.0.1:1","allow_any_account":true}"#)
                .unwrap();
        assert!(Gitea::new("gt", &c).is_ok());
    }
}
