//! `[authorizer]`: who decides what an identity may do, the `[[rule]]`s
//! or an HTTP service.

use std::time::Duration;

use serde::Deserialize;

use super::error::{invalid, is_loopback_http, ConfigError};
use super::Seconds;

/// `[authorizer]` as the file gives it.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct RawAuthorizer {
    pub(crate) kind: String,
    pub(crate) url: Option<String>,
    pub(crate) timeout: Seconds,
    pub(crate) cache_ttl: Seconds,
    pub(crate) max_response_bytes: usize,
    pub(crate) cap_with_policy: bool,
    pub(crate) anonymous_calls_per_second: u32,
    pub(crate) max_concurrent_calls: usize,
    pub(crate) max_concurrent_anonymous_calls: usize,
}

impl Default for RawAuthorizer {
    fn default() -> Self {
        Self {
            kind: "policy".into(),
            url: None,
            timeout: Seconds(Duration::from_secs(2)),
            cache_ttl: Seconds(Duration::from_secs(30)),
            max_response_bytes: 64 * 1024,
            cap_with_policy: false,
            anonymous_calls_per_second: 5,
            max_concurrent_calls: 32,
            max_concurrent_anonymous_calls: 8,
        }
    }
}

/// The settings of a webhook authorizer.
#[derive(Clone, Debug, PartialEq)]
pub struct WebhookAuthorizerConfig {
    /// Where to POST (https, or http to a loopback address).
    pub url: String,
    /// Upper bound for the answer.
    pub timeout: Duration,
    /// How long an answer is reused for the same identity and scopes.
    pub cache_ttl: Duration,
    /// Upper bound on the answer's body.
    pub max_response_bytes: usize,
    /// Grant only what the policy grants too.
    pub cap_with_policy: bool,
    /// Calls per second one client network's anonymous requests may cause.
    pub anonymous_calls_per_second: u32,
    /// Calls for logged-in requests under way at once, at most.
    pub max_concurrent_calls: usize,
    /// Calls for anonymous requests under way at once, at most.
    pub max_concurrent_anonymous_calls: usize,
}

/// Who decides what an identity may do (`[authorizer]`).
#[derive(Clone, Debug, PartialEq)]
pub enum AuthorizerConfig {
    /// The `[[rule]]`s.
    Policy,
    /// An HTTP service (`kind = "webhook"`).
    Webhook(WebhookAuthorizerConfig),
}

/// `[authorizer]`, checked: a webhook's URL is https (or loopback http) and
/// its bounds are at least 1; the policy takes no URL.
pub(crate) fn validate_authorizer(
    origin: &str,
    raw: RawAuthorizer,
) -> Result<AuthorizerConfig, ConfigError> {
    match raw.kind.as_str() {
        "policy" => {
            if raw.url.is_some() {
                return Err(invalid(
                    origin,
                    "authorizer.url",
                    "is for kind = \"webhook\"",
                ));
            }
            Ok(AuthorizerConfig::Policy)
        }
        "webhook" => webhook(origin, raw).map(AuthorizerConfig::Webhook),
        other => Err(invalid(
            origin,
            "authorizer.kind",
            format!("unknown authorizer `{other}` (policy or webhook)"),
        )),
    }
}

fn webhook(origin: &str, raw: RawAuthorizer) -> Result<WebhookAuthorizerConfig, ConfigError> {
    let url = raw.url.ok_or_else(|| {
        invalid(
            origin,
            "authorizer.url",
            "kind = \"webhook\" needs url = \"https://...\"",
        )
    })?;
    if !(url.starts_with("https://") || is_loopback_http(&url)) {
        return Err(invalid(
            origin,
            "authorizer.url",
            "must be https:// (or http:// to a loopback address)",
        ));
    }
    if raw.max_response_bytes == 0 {
        return Err(invalid(
            origin,
            "authorizer.max_response_bytes",
            "must be at least 1",
        ));
    }
    if raw.max_concurrent_calls == 0 || raw.max_concurrent_anonymous_calls == 0 {
        return Err(invalid(
            origin,
            "authorizer.max_concurrent_calls",
            "must be at least 1 (and max_concurrent_anonymous_calls too)",
        ));
    }
    Ok(WebhookAuthorizerConfig {
        url,
        timeout: raw.timeout.0,
        cache_ttl: raw.cache_ttl.0,
        max_response_bytes: raw.max_response_bytes,
        cap_with_policy: raw.cap_with_policy,
        anonymous_calls_per_second: raw.anonymous_calls_per_second,
        max_concurrent_calls: raw.max_concurrent_calls,
        max_concurrent_anonymous_calls: raw.max_concurrent_anonymous_calls,
    })
}
