//! Microsoft Graph, as regauth's app asks it with its own client
//! credentials: a user's groups with their names (`transitiveMemberOf`,
//! paged by `@odata.nextLink`), which needs the application permission
//! `GroupMember.Read.All` and nothing more. Throttling
//! (429) and unavailability (503) are honoured with their `Retry-After`.
//! Each answer is bounded, and a next link is followed only on Graph
//! itself, so the app's token never goes anywhere else.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

use super::config::{EntraConfig, GroupNames};
use crate::Error;

/// A group as Graph lists it.
#[derive(Clone, Debug, Deserialize)]
pub(super) struct Group {
    pub(super) id: String,
    #[serde(rename = "displayName", default)]
    display_name: Option<String>,
    #[serde(rename = "onPremisesSamAccountName", default)]
    sam_account_name: Option<String>,
    #[serde(rename = "securityEnabled", default)]
    security_enabled: Option<bool>,
}

/// One page of a Graph listing.
#[derive(Deserialize)]
struct Page {
    value: Vec<Group>,
    #[serde(rename = "@odata.nextLink", default)]
    next: Option<String>,
}

/// The app's token from the client credentials grant.
#[derive(Deserialize)]
struct AppToken {
    access_token: String,
    #[serde(default)]
    expires_in: Option<u64>,
}

/// The group fields asked for.
const SELECT: &str = "$select=id,displayName,onPremisesSamAccountName,securityEnabled";
/// Groups per page asked for (Graph's largest page for this listing).
const PAGE: usize = 999;

/// How regauth's app proves itself at the token endpoint.
#[derive(Clone)]
pub(super) enum Credential {
    /// None configured: Graph cannot be asked.
    None,
    /// A client secret.
    Secret(SecretString),
    /// A certificate credential.
    Certificate(crate::oidc::ClientAssertion),
}

/// regauth's app at Microsoft Graph.
pub(super) struct Graph {
    base: String,
    token_url: String,
    scope: String,
    client_id: String,
    credential: Credential,
    http: reqwest::Client,
    token: tokio::sync::Mutex<Option<(SecretString, Instant)>>,
    naming: GroupNames,
    max_pages: usize,
    /// Calls made to Graph (`/metrics`, and the tests' count).
    pub(super) calls: AtomicU64,
}

impl Graph {
    pub(super) fn new(
        config: &EntraConfig,
        tenant: &str,
        credential: Credential,
        http: reqwest::Client,
    ) -> Self {
        let base = config.graph_url.trim_end_matches('/').to_owned();
        Self {
            token_url: format!(
                "{}/{tenant}/oauth2/v2.0/token",
                config.authority.trim_end_matches('/'),
            ),
            scope: format!("{base}/.default"),
            base,
            client_id: config.client_id.clone(),
            credential,
            http,
            token: tokio::sync::Mutex::new(None),
            naming: config.group_names,
            max_pages: config.max_group_pages,
            calls: AtomicU64::new(0),
        }
    }

    /// What rules call `group`: its name as configured, unless it has
    /// none, its name looks like a group id (it would stand for another
    /// group in rules written with ids), or holds a `:` (it would stand
    /// for an app role, `role:NAME`, or another provider's group).
    pub(super) fn name(&self, group: &Group) -> Option<String> {
        let name = match self.naming {
            GroupNames::DisplayName => group.display_name.as_deref(),
            GroupNames::SamAccountName => group.sam_account_name.as_deref(),
            GroupNames::Id => None,
        }?;
        let usable = !name.is_empty() && !name.contains(':') && !super::config::is_guid(name);
        usable.then(|| name.to_owned())
    }

    /// The app's token for Graph, from the client credentials grant,
    /// kept until a minute before it expires.
    async fn app_token(&self) -> Result<SecretString, Error> {
        let mut held = self.token.lock().await;
        if let Some((token, until)) = held.as_ref() {
            if Instant::now() < *until {
                return Ok(token.clone());
            }
        }
        let mut form = vec![
            ("grant_type", "client_credentials".to_owned()),
            ("client_id", self.client_id.clone()),
            ("scope", self.scope.clone()),
        ];
        match &self.credential {
            Credential::None => {
                return Err(Error::Config(
                    "Microsoft Graph needs the app's client secret or certificate".into(),
                ))
            }
            Credential::Secret(secret) => {
                form.push(("client_secret", secret.expose_secret().to_owned()))
            }
            Credential::Certificate(assertion) => form.extend(assertion.params(&self.token_url)?),
        }
        self.calls.fetch_add(1, Relaxed);
        let response = self
            .http
            .post(&self.token_url)
            .form(&form)
            .send()
            .await
            .map_err(|e| Error::Upstream(format!("Graph's app token: {}", e.without_url())))?;
        let answer: AppToken = answer("Graph's app token", response).await?;
        let life = answer.expires_in.unwrap_or(3600).saturating_sub(60).max(1);
        let token = SecretString::from(answer.access_token);
        *held = Some((token.clone(), Instant::now() + Duration::from_secs(life)));
        Ok(token)
    }

    /// A call to Graph with the app's token.
    async fn call<T: serde::de::DeserializeOwned>(
        &self,
        what: &str,
        request: reqwest::RequestBuilder,
    ) -> Result<T, Error> {
        let token = self.app_token().await?;
        self.calls.fetch_add(1, Relaxed);
        let response = request
            .bearer_auth(token.expose_secret())
            .send()
            .await
            .map_err(|e| Error::Upstream(format!("{what}: {}", e.without_url())))?;
        if response.status() == reqwest::StatusCode::UNAUTHORIZED {
            // revoked or rotated: the next call gets a new one
            *self.token.lock().await = None;
        }
        answer(what, response).await
    }

    /// The security groups `user` (an object id) is a member of, directly
    /// or through other groups.
    pub(super) async fn member_of(&self, user: &str) -> Result<Vec<Group>, Error> {
        if !super::config::is_guid(user) {
            return Err(Error::Upstream("the token's oid is no object id".into()));
        }
        let mut url = format!(
            "{}/v1.0/users/{user}/transitiveMemberOf/microsoft.graph.group?{SELECT}&$top={PAGE}",
            self.base
        );
        let mut groups = Vec::new();
        for _ in 0..self.max_pages {
            let page: Page = self
                .call("Graph transitiveMemberOf", self.http.get(&url))
                .await?;
            groups.extend(
                page.value
                    .into_iter()
                    .filter(|g| g.security_enabled != Some(false)),
            );
            match page.next {
                None => return Ok(groups),
                Some(next) if next.starts_with(&format!("{}/", self.base)) => url = next,
                Some(_) => {
                    return Err(Error::Upstream(
                        "Graph's next link leads away from Graph".into(),
                    ))
                }
            }
        }
        Err(Error::Upstream(format!(
            "the user is in more groups than {} pages of 100 (max_group_pages)",
            self.max_pages
        )))
    }
}

/// The JSON answer of a Graph (or token endpoint) call, or why there is
/// none: 429 and 503 as the rate limit they are, with `Retry-After`.
async fn answer<T: serde::de::DeserializeOwned>(
    what: &str,
    response: reqwest::Response,
) -> Result<T, Error> {
    let status = response.status().as_u16();
    if status == 429 || status == 503 {
        let retry_after = crate::forge::header(response.headers(), "retry-after")
            .and_then(|v| v.trim().parse().ok());
        return Err(Error::RateLimited {
            message: format!("{what} answered {status}"),
            retry_after,
        });
    }
    if !(200..300).contains(&status) {
        return Err(Error::Upstream(format!("{what} answered {status}")));
    }
    crate::json_limited(response, crate::MAX_UPSTREAM_BODY)
        .await
        .map_err(|e| Error::Upstream(format!("{what}: {e}")))
}
