//! What the token providers of code forges (GitHub, GitLab, Gitea and
//! Forgejo) share: one [`IdentityProvider`] impl over the [`Forge`] trait,
//! GET calls that never leave the API's origin and never follow a
//! redirect, `Link` pagination, rate-limit answers turned into a 503 with
//! `Retry-After`, and groups cached per token.

use std::borrow::Cow;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use reqwest::header::{HeaderMap, USER_AGENT};

use crate::{
    Credentials, Error, ExposeSecret, Identity, IdentityProvider, Outcome, ProviderKind, Rejection,
    SecretShape,
};

/// A forge's token provider: what sets it apart from the other forges.
/// What they have in common (a token stands alone, logins are
/// case-insensitive, the counters) is the one [`IdentityProvider`] impl
/// below.
pub(crate) trait Forge: Send + Sync {
    /// The provider's kind.
    const KIND: ProviderKind;
    /// The shape of the forge's tokens: the only secrets it is offered.
    const SHAPE: SecretShape<'static>;

    /// The configured instance name.
    fn instance(&self) -> &str;

    /// The forge's API.
    fn api(&self) -> &Api;

    /// The counters of the per-token cache.
    fn cache_counters(&self) -> [(&'static str, u64); 2];

    /// Checks a token of the forge's shape.
    fn login(
        &self,
        credentials: &Credentials,
    ) -> impl Future<Output = Result<Identity, Outcome>> + Send;
}

#[async_trait]
impl<F: Forge> IdentityProvider for F {
    fn name(&self) -> &str {
        self.instance()
    }

    fn kind(&self) -> ProviderKind {
        F::KIND
    }

    fn accepts(&self, shape: SecretShape<'_>) -> bool {
        shape == F::SHAPE
    }

    /// Forge logins are case-insensitive.
    fn normalize_username<'a>(&self, username: &'a str) -> Cow<'a, str> {
        Cow::Owned(username.trim().to_lowercase())
    }

    fn counters(&self) -> Vec<(&'static str, u64)> {
        let mut counters = vec![("api_calls", self.api().calls())];
        counters.extend(self.cache_counters());
        counters
    }

    /// A token stands alone: the typed username tries no account.
    async fn account_of(&self, _credentials: &Credentials) -> Option<String> {
        None
    }

    async fn authenticate(&self, credentials: &Credentials) -> Outcome {
        let shape = SecretShape::of(&credentials.username, credentials.secret.expose_secret());
        if !self.accepts(shape) {
            return Outcome::NotMine;
        }
        match self.login(credentials).await {
            Ok(identity) => Outcome::Authenticated(identity),
            Err(outcome) => outcome,
        }
    }
}

/// One forge's REST API: its base URL and the client that calls it.
pub(crate) struct Api {
    /// The forge's name in messages (`GitHub`, `GitLab`, `Gitea`).
    pub forge: &'static str,
    /// The API's base URL, without a trailing slash.
    pub base: String,
    client: reqwest::Client,
    calls: AtomicU64,
}

impl Api {
    /// The API at `base` (an http(s) URL; `key` names the setting in errors).
    pub fn new(
        forge: &'static str,
        key: &str,
        base: &str,
        ca_file: Option<&std::path::Path>,
        timeout: Duration,
    ) -> Result<Self, Error> {
        let base = base.trim_end_matches('/').to_owned();
        if !(base.starts_with("https://") || base.starts_with("http://")) {
            return Err(Error::Config(format!("{key} must be an http(s) URL")));
        }
        Ok(Self {
            forge,
            base,
            client: crate::http_client(ca_file, timeout)?,
            calls: AtomicU64::new(0),
        })
    }

    /// Whether `url` is on this API (the base itself, or below it): the
    /// only place a token is ever sent.
    pub fn owns(&self, url: &str) -> bool {
        url.strip_prefix(&self.base)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with(['/', '?']))
    }

    /// GETs `url` with `headers` (the credential among them). Any status
    /// comes back as a response; a URL outside the API or a failed call is
    /// `Unavailable`.
    pub async fn get(&self, url: &str, headers: HeaderMap) -> Result<reqwest::Response, Outcome> {
        self.call(reqwest::Method::GET, url, headers).await
    }

    /// Like [`Api::get`], with another method (a probe of what a token's
    /// scopes allow).
    pub async fn call(
        &self,
        method: reqwest::Method,
        url: &str,
        headers: HeaderMap,
    ) -> Result<reqwest::Response, Outcome> {
        if !self.owns(url) {
            return Err(self.unavailable(format!("pointed outside its API URL: {url}")));
        }
        self.calls.fetch_add(1, Relaxed);
        self.client
            .request(method, url)
            .headers(headers)
            .header(USER_AGENT, "regauth")
            .send()
            .await
            .map_err(|e| {
                let what = if e.is_timeout() {
                    "timed out"
                } else {
                    "failed"
                };
                self.unavailable(format!("request {what}: {}", e.without_url()))
            })
    }

    /// The calls made so far (`/metrics`).
    pub fn calls(&self) -> u64 {
        self.calls.load(Relaxed)
    }

    /// `Unavailable`, naming the forge.
    pub fn unavailable(&self, what: impl std::fmt::Display) -> Outcome {
        Outcome::Unavailable(Error::Upstream(format!("{} {what}", self.forge)))
    }

    /// `Unavailable` with the forge's advice on when to try again.
    pub fn rate_limited(&self, status: u16, retry_after: Option<u64>) -> Outcome {
        Outcome::Unavailable(Error::RateLimited {
            message: format!("{} answered {status}", self.forge),
            retry_after,
        })
    }

    /// A JSON body of at most [`crate::MAX_UPSTREAM_BODY`] bytes.
    pub async fn json<T: serde::de::DeserializeOwned>(
        &self,
        response: reqwest::Response,
        what: &str,
    ) -> Result<T, Outcome> {
        crate::json_limited(response, crate::MAX_UPSTREAM_BODY)
            .await
            .map_err(|e| self.unavailable(format!("{what}: {e}")))
    }
}

/// The refusal of a token whose account (its `noun`: login, user) is not
/// the Basic username typed with it.
pub(crate) fn not_the_account(typed: &str, noun: &str, account: &str) -> Outcome {
    Outcome::Rejected(Rejection::Other(format!(
        "the Basic username \"{}\" is not the token's {noun} {account:?}",
        crate::Safe(typed),
    )))
}

/// A header's value, if it is text.
pub(crate) fn header<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// The `rel="next"` target of a `Link` header.
pub(crate) fn next_link(headers: &HeaderMap) -> Option<String> {
    let link = header(headers, "link")?;
    link.split(',').find_map(|part| {
        let (target, params) = part.split_once(';')?;
        params
            .split(';')
            .any(|p| p.trim() == "rel=\"next\"")
            .then(|| {
                target
                    .trim()
                    .trim_start_matches('<')
                    .trim_end_matches('>')
                    .to_owned()
            })
    })
}

/// Seconds to wait: `Retry-After`, or else the reset time in `reset_header`
/// (seconds since the epoch) minus now, at least 1.
pub(crate) fn retry_after(headers: &HeaderMap, reset_header: &str) -> Option<u64> {
    header(headers, "retry-after")
        .and_then(|v| v.trim().parse().ok())
        .or_else(|| {
            let reset: u64 = header(headers, reset_header)?.trim().parse().ok()?;
            Some(reset.saturating_sub(crate::clock::unix_seconds()).max(1))
        })
}

/// A digest standing for a token in a cache key.
pub(crate) fn token_digest(token: &str) -> String {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, token.as_bytes());
    hex::encode(digest.as_ref())
}

/// Groups (or whatever a forge resolves besides the user) per token, by a
/// digest of it, for a while: another token of the same user, with other
/// scopes, resolves its own.
pub(crate) struct GroupCache<T = Vec<String>> {
    cache: moka::future::Cache<String, Arc<T>>,
    hits: AtomicU64,
    misses: AtomicU64,
}

impl<T: Send + Sync + 'static> GroupCache<T> {
    /// A cache keeping groups for `ttl`.
    pub fn new(ttl: Duration) -> Self {
        Self {
            cache: moka::future::Cache::builder()
                .max_capacity(100_000)
                .time_to_live(ttl)
                .build(),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
        }
    }

    /// The token's groups, resolved by `resolve` when not cached.
    pub async fn get_or<F>(&self, token: &str, resolve: F) -> Result<Arc<T>, Outcome>
    where
        F: std::future::Future<Output = Result<T, Outcome>>,
    {
        let key = token_digest(token);
        if let Some(groups) = self.cache.get(&key).await {
            self.hits.fetch_add(1, Relaxed);
            return Ok(groups);
        }
        self.misses.fetch_add(1, Relaxed);
        let groups = Arc::new(resolve.await?);
        self.cache.insert(key, groups.clone()).await;
        Ok(groups)
    }

    /// Hits and misses so far (`/metrics`).
    pub fn counters(&self) -> [(&'static str, u64); 2] {
        [
            ("group_cache_hits", self.hits.load(Relaxed)),
            ("group_cache_misses", self.misses.load(Relaxed)),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn link_header_next() {
        let mut h = HeaderMap::new();
        h.insert(
            "link",
            r#"<https://api.github.com/user/teams?page=2>; rel="next", <https://api.github.com/user/teams?page=5>; rel="last""#
                .parse()
                .unwrap(),
        );
        assert_eq!(
            next_link(&h).as_deref(),
            Some("https://api.github.com/user/teams?page=2")
        );
        // Gitea joins entries without a space
        h.insert(
            "link",
            r#"<https://git/api/v1/user/orgs?limit=50&page=2>; rel="next",<https://git/api/v1/user/orgs?limit=50&page=3>; rel="last""#
                .parse()
                .unwrap(),
        );
        assert_eq!(
            next_link(&h).as_deref(),
            Some("https://git/api/v1/user/orgs?limit=50&page=2")
        );
        h.insert(
            "link",
            r#"<https://x/?page=1>; rel="prev""#.parse().unwrap(),
        );
        assert_eq!(next_link(&h), None);
    }

    #[test]
    fn a_token_stays_on_its_api() {
        let api = Api::new(
            "GitHub",
            "api_url",
            "https://api.github.com/",
            None,
            Duration::from_secs(1),
        )
        .unwrap();
        assert!(api.owns("https://api.github.com/user"));
        assert!(api.owns("https://api.github.com?page=2"));
        assert!(api.owns("https://api.github.com"));
        for elsewhere in [
            "https://api.github.com.evil.example/user",
            "https://api.github.com@evil.example/user",
            "https://api.github.com:8443/user",
            "http://api.github.com/user",
            "https://evil.example/https://api.github.com/user",
        ] {
            assert!(!api.owns(elsewhere), "{elsewhere}");
        }
        let gitlab = Api::new(
            "GitLab",
            "url",
            "https://git.corp/gitlab/api/v4",
            None,
            Duration::from_secs(1),
        )
        .unwrap();
        assert!(gitlab.owns("https://git.corp/gitlab/api/v4/groups?page=2"));
        assert!(!gitlab.owns("https://git.corp/gitlab/api/v4evil/groups"));
    }

    #[test]
    fn retry_after_or_reset() {
        let mut h = HeaderMap::new();
        h.insert("retry-after", "30".parse().unwrap());
        assert_eq!(retry_after(&h, "ratelimit-reset"), Some(30));
        let mut h = HeaderMap::new();
        let reset = crate::clock::unix_seconds() + 60;
        h.insert("ratelimit-reset", reset.to_string().parse().unwrap());
        let wait = retry_after(&h, "ratelimit-reset").unwrap();
        assert!((55..=60).contains(&wait), "{wait}");
        assert_eq!(retry_after(&HeaderMap::new(), "ratelimit-reset"), None);
    }
}
