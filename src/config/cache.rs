//! `[cache]`: the verdict cache, and the failed-login throttle's budgets,
//! which earlier versions filed here and which keep their keys (see the
//! table of such keys in the `config` module's documentation).

use std::time::Duration;

use serde::Deserialize;

use super::error::{invalid, ConfigError};
use super::Seconds;

/// Failed logins per account from each network it logged in from, by
/// default (or `max_failures` if lower): with the default `max_failures`
/// of 5, a directory sees at most 5 from strangers and 3 from the user's
/// own network before regauth stops asking it.
const DEFAULT_FAMILIAR_FAILURES: u32 = 3;

/// `[cache]` as the file gives it.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct RawCache {
    pub(crate) verdict_ttl: Seconds,
    pub(crate) verdict_capacity: u64,
    pub(crate) failure_window: Seconds,
    pub(crate) max_failures: u32,
    /// Default: `max_failures` or [`DEFAULT_FAMILIAR_FAILURES`], the lower.
    pub(crate) max_familiar_failures: Option<u32>,
    pub(crate) familiar_for: Seconds,
    pub(crate) max_client_failures: u32,
    pub(crate) max_provider_failures_per_second: u32,
    pub(crate) failure_spacing: Seconds,
}

impl Default for RawCache {
    fn default() -> Self {
        let secs = |s| Seconds(Duration::from_secs(s));
        Self {
            verdict_ttl: secs(60),
            verdict_capacity: 100_000,
            failure_window: secs(1800),
            max_failures: 5,
            max_familiar_failures: None,
            familiar_for: secs(30 * 86400),
            max_client_failures: 100,
            max_provider_failures_per_second: 20,
            failure_spacing: secs(1),
        }
    }
}

/// The `[cache]` section, validated: the verdict cache and the failed-login
/// throttle.
#[derive(Clone, Debug)]
pub struct CacheConfig {
    /// How long a successful check is reused (`cache.verdict_ttl`, at most 1h).
    pub verdict_ttl: Duration,
    /// Most verdicts kept (`cache.verdict_capacity`).
    pub verdict_capacity: u64,
    /// How long failed logins are remembered (`cache.failure_window`).
    pub failure_window: Duration,
    /// Failed logins per account (provider and normalized username) from
    /// the networks it has not logged in from, together.
    pub max_failures: u32,
    /// Failed logins per account from each network it has logged in from
    /// (`cache.max_familiar_failures`, default `max_failures` or 3, the
    /// lower).
    pub max_familiar_failures: u32,
    /// How long a network stays familiar to an account after a successful
    /// login (`cache.familiar_for`).
    pub familiar_for: Duration,
    /// Failed logins per client network (IPv4 address, IPv6 /64).
    pub max_client_failures: u32,
    /// Failed attempts per second reaching one provider, from everyone.
    pub max_provider_failures_per_second: u32,
    /// After a failed password, the least time before the same account's
    /// next attempt reaches its identity provider (`cache.failure_spacing`).
    pub failure_spacing: Duration,
}

/// `[cache]`, checked: verdicts are not reused for longer than an hour.
pub(crate) fn validate_cache(origin: &str, raw: RawCache) -> Result<CacheConfig, ConfigError> {
    if raw.verdict_ttl.0 > Duration::from_secs(3600) {
        return Err(invalid(origin, "cache.verdict_ttl", "must be at most 1h"));
    }
    if raw.failure_spacing.0 > Duration::from_secs(10) {
        return Err(invalid(
            origin,
            "cache.failure_spacing",
            "must be at most 10s",
        ));
    }
    Ok(CacheConfig {
        verdict_ttl: raw.verdict_ttl.0,
        verdict_capacity: raw.verdict_capacity,
        failure_window: raw.failure_window.0,
        max_failures: raw.max_failures,
        max_familiar_failures: raw
            .max_familiar_failures
            .unwrap_or(raw.max_failures.min(DEFAULT_FAMILIAR_FAILURES)),
        familiar_for: raw.familiar_for.0,
        max_client_failures: raw.max_client_failures,
        max_provider_failures_per_second: raw.max_provider_failures_per_second,
        failure_spacing: raw.failure_spacing.0,
    })
}
