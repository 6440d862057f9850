//! `[authorizer] kind = "webhook"`: an HTTP service decides grants.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use super::{AuthorizeError, Authorizer};
use crate::config::WebhookAuthorizerConfig;
use crate::domain::policy::{Grant, Policy, Principal};
use crate::domain::scope::{Action, ResourceType, Scope};

/// `[authorizer] kind = "webhook"`: an HTTP service decides.
///
/// It receives `POST {subject, provider, kind, groups, claims, service,
/// scopes: [{type, name, actions}]}` and answers `{scopes: [{type, name,
/// actions}]}`: the actions it grants per scope. Scopes it leaves out get
/// nothing. A timeout, a status other than 200, an answer larger than
/// `max_response_bytes` or one that does not parse is a 503. Answers are
/// cached per identity, service and scopes for `cache_ttl`; with
/// `cap_with_policy`, the policy caps what the hook grants.
///
/// Anonymous requests cost nobody a login, so each client network may
/// cause at most `anonymous_calls_per_second` calls (answers from the
/// cache are free), and they have calls of their own at once
/// (`max_concurrent_anonymous_calls`) apart from everyone else's
/// (`max_concurrent_calls`): beyond either, the request is a 503 at once
/// rather than a queue, and anonymous requests never take the calls of
/// logged-in ones.
pub struct WebhookAuthorizer {
    url: String,
    client: regauth_providers::JsonClient,
    cache: moka::future::Cache<String, Arc<Vec<Grant>>>,
    cap: Option<Arc<Policy>>,
    in_flight: tokio::sync::Semaphore,
    anonymous_in_flight: tokio::sync::Semaphore,
    anonymous_rate: u32,
    /// Per client network: (calls left, when last refilled).
    anonymous_buckets: moka::sync::Cache<u128, Arc<std::sync::Mutex<(f64, std::time::Instant)>>>,
}

/// Seconds of calls a client network may save up.
const ANONYMOUS_BURST_SECONDS: f64 = 4.0;

#[derive(serde::Serialize)]
struct AskScope<'a> {
    #[serde(rename = "type")]
    kind: &'a ResourceType,
    name: &'a str,
    actions: &'a [Action],
}

#[derive(serde::Serialize)]
struct Ask<'a> {
    subject: &'a str,
    provider: Option<&'a str>,
    kind: Option<regauth_providers::Kind>,
    groups: &'a [String],
    claims: Option<&'a regauth_providers::ClaimSet>,
    service: &'a str,
    scopes: Vec<AskScope<'a>>,
}

#[derive(serde::Deserialize)]
struct Answer {
    scopes: Vec<AnswerScope>,
}

#[derive(serde::Deserialize)]
struct AnswerScope {
    #[serde(rename = "type")]
    kind: ResourceType,
    name: String,
    actions: Vec<Action>,
}

impl WebhookAuthorizer {
    /// A webhook authorizer; `policy` is the cap when `cap_with_policy`.
    pub fn new(
        config: &WebhookAuthorizerConfig,
        policy: Arc<Policy>,
    ) -> Result<Self, AuthorizeError> {
        let client = regauth_providers::JsonClient::new(config.timeout, config.max_response_bytes)
            .map_err(|e| AuthorizeError(e.to_string()))?;
        Ok(Self {
            url: config.url.clone(),
            client,
            cache: moka::future::Cache::builder()
                .max_capacity(10_000)
                .time_to_live(config.cache_ttl)
                .build(),
            cap: config.cap_with_policy.then_some(policy),
            in_flight: tokio::sync::Semaphore::new(config.max_concurrent_calls),
            anonymous_in_flight: tokio::sync::Semaphore::new(config.max_concurrent_anonymous_calls),
            anonymous_rate: config.anonymous_calls_per_second,
            anonymous_buckets: moka::sync::Cache::builder()
                .max_capacity(100_000)
                .time_to_idle(Duration::from_secs(60))
                .build(),
        })
    }

    /// Takes one call from `client`'s network's allowance.
    fn anonymous_call_allowed(&self, client: std::net::IpAddr) -> bool {
        let rate = f64::from(self.anonymous_rate);
        let bucket = self
            .anonymous_buckets
            .get_with(crate::net::network_of(client), || {
                Arc::new(std::sync::Mutex::new((
                    rate * ANONYMOUS_BURST_SECONDS,
                    std::time::Instant::now(),
                )))
            });
        let mut bucket = bucket.lock().unwrap_or_else(|p| p.into_inner());
        let now = std::time::Instant::now();
        let refill = now.duration_since(bucket.1).as_secs_f64() * rate;
        bucket.0 = (bucket.0 + refill).min(rate * ANONYMOUS_BURST_SECONDS);
        bucket.1 = now;
        if bucket.0 >= 1.0 {
            bucket.0 -= 1.0;
            true
        } else {
            false
        }
    }

    async fn decide(
        &self,
        principal: &Principal,
        service: &str,
        scopes: &[Scope],
        client: Option<std::net::IpAddr>,
    ) -> Result<Vec<Grant>, AuthorizeError> {
        let identity = principal.identity();
        let ask = Ask {
            subject: principal.subject(),
            provider: principal.provider(),
            kind: identity.map(|id| id.kind),
            groups: identity.map_or(&[][..], |id| &id.groups),
            claims: identity.map(|id| &id.claims),
            service,
            scopes: scopes
                .iter()
                .map(|s| AskScope {
                    kind: &s.kind,
                    name: &s.name,
                    actions: &s.actions,
                })
                .collect(),
        };
        let body = serde_json::to_vec(&ask).map_err(|e| AuthorizeError(e.to_string()))?;
        // the request body is the whole question: it is the cache key too
        let key = String::from_utf8_lossy(&body).into_owned();
        let anonymous = matches!(principal, Principal::Anonymous);
        let grants = self
            .cache
            .try_get_with(key, async {
                if let (true, Some(client)) = (anonymous, client) {
                    if !self.anonymous_call_allowed(client) {
                        return Err(AuthorizeError(
                            "authorization webhook: this client network's anonymous requests ask it too often".into(),
                        ));
                    }
                }
                let calls = if anonymous {
                    &self.anonymous_in_flight
                } else {
                    &self.in_flight
                };
                let _turn = calls.try_acquire().map_err(|_| {
                    AuthorizeError(
                        "authorization webhook: as many calls as allowed are under way".into(),
                    )
                })?;
                self.ask(body, scopes).await.map(Arc::new)
            })
            .await
            .map_err(|e| (*e).clone())?;
        let mut grants = (*grants).clone();
        if let Some(policy) = &self.cap {
            for grant in &mut grants {
                let allowed = policy
                    .evaluate_from(principal, service, &grant.scope, client)
                    .actions;
                grant.actions.retain(|a| allowed.contains(a));
            }
        }
        Ok(grants)
    }

    async fn ask(&self, body: Vec<u8>, scopes: &[Scope]) -> Result<Vec<Grant>, AuthorizeError> {
        let fail = |what: String| AuthorizeError(format!("authorization webhook: {what}"));
        let (status, body) = self.client.post(&self.url, body).await.map_err(fail)?;
        if status != 200 {
            return Err(fail(format!("answered {status}")));
        }
        let answer: Answer =
            serde_json::from_slice(&body).map_err(|e| fail(format!("unusable answer: {e}")))?;
        Ok(scopes
            .iter()
            .map(|scope| {
                let granted: Vec<Action> = answer
                    .scopes
                    .iter()
                    .filter(|a| a.kind == scope.kind && a.name == scope.name)
                    .flat_map(|a| a.actions.iter())
                    .filter(|a| scope.actions.contains(a))
                    .cloned()
                    .collect();
                let mut actions: Vec<Action> = Vec::new();
                for action in granted {
                    if !actions.contains(&action) {
                        actions.push(action);
                    }
                }
                Grant {
                    scope: scope.clone(),
                    actions,
                    trace: Vec::new(),
                }
            })
            .collect())
    }
}

#[async_trait]
impl Authorizer for WebhookAuthorizer {
    async fn authorize(
        &self,
        principal: &Principal,
        service: &str,
        scopes: &[Scope],
    ) -> Result<Vec<Grant>, AuthorizeError> {
        self.decide(principal, service, scopes, None).await
    }

    async fn authorize_from(
        &self,
        principal: &Principal,
        service: &str,
        scopes: &[Scope],
        client: std::net::IpAddr,
    ) -> Result<Vec<Grant>, AuthorizeError> {
        self.decide(principal, service, scopes, Some(client)).await
    }
}
