//! State that every replica must agree on: the failure throttle's counters
//! and records (the refresh-token revocation ledger, app passwords,
//! sign-ins, ended page sessions). `backend = "embedded"` keeps them in
//! this process and a file under `state.dir`; `backend = "redis"` in a
//! Redis server that every replica points at.
//!
//! A backend that cannot answer is an error, never a silent yes: callers
//! fail closed (a refresh grant or a throttle decision is a 503). The
//! backend is not trusted with the records' integrity: [`Authenticated`]
//! stores each with a MAC over its collection, id and value under a key
//! derived from the refresh key, which the backend never sees, and a
//! record that fails it is refused and logged. Counters cannot be
//! authenticated that way (deleting one resets it): keep the backend
//! reachable by regauth alone.

mod embedded;
mod metered;
mod records;
mod redis_server;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use crate::config::{Backend, StateConfig};

pub use embedded::Embedded;
pub use metered::Metered;
pub use records::{records_key, Authenticated};
pub use redis_server::Redis;

/// Why the backend could not answer. Never contains a password.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct StoreError(pub String);

/// The shared state, whatever keeps it: counters and records, and
/// whether the backend answers.
#[async_trait]
pub trait Store: Counters + Records {
    /// `embedded` or `redis`.
    fn backend(&self) -> &'static str;

    /// Whether the backend answers (for `/readyz`).
    async fn ping(&self) -> Result<(), StoreError>;
}

/// Counters with a window: what the failed-login throttle keeps.
#[async_trait]
pub trait Counters: Send + Sync {
    /// Adds one to the counter `key` if it is below `limit`; `false` if it
    /// is not. A new counter lives for `window`.
    async fn take(&self, key: &str, limit: u32, window: Duration) -> Result<bool, StoreError>;

    /// Subtracts one from the counter `key` (never below zero).
    async fn give_back(&self, key: &str) -> Result<(), StoreError>;

    /// Adds one to the counter `key`; a new counter lives for `window`.
    async fn add(&self, key: &str, window: Duration) -> Result<(), StoreError>;

    /// The counter `key` (0 if there is none).
    async fn count(&self, key: &str) -> Result<u32, StoreError>;

    /// Forgets the counter `key`.
    async fn clear(&self, key: &str) -> Result<(), StoreError>;
}

/// Small JSON records by collection and id: the revocation ledger, app
/// passwords, sign-ins, ended page sessions.
#[async_trait]
pub trait Records: Send + Sync {
    /// Stores the record `id` of `collection` (small JSON text: an app
    /// password's digest and metadata, a sign-in's groups), replacing it.
    async fn put_record(&self, collection: &str, id: &str, value: &str) -> Result<(), StoreError>;

    /// Stores several records of `collection` at once (one write of the
    /// embedded file), replacing them.
    async fn put_records(
        &self,
        collection: &str,
        entries: &[(String, String)],
    ) -> Result<(), StoreError>;

    /// Replaces the record `id` of `collection` with `value` only if it is
    /// `expected` now (`None`: only if there is none); whether it did.
    async fn swap_record(
        &self,
        collection: &str,
        id: &str,
        expected: Option<&str>,
        value: &str,
    ) -> Result<bool, StoreError>;

    /// The record `id` of `collection`, if there is one.
    async fn get_record(&self, collection: &str, id: &str) -> Result<Option<String>, StoreError>;

    /// Deletes the record `id` of `collection`; whether there was one.
    async fn delete_record(&self, collection: &str, id: &str) -> Result<bool, StoreError>;

    /// Every record of `collection`, as (id, value).
    async fn records(&self, collection: &str) -> Result<Vec<(String, String)>, StoreError>;
}

/// Builds the configured backend. A Redis backend connects lazily, so
/// regauth starts while Redis is down (and says so on `/readyz`).
pub fn open(config: &StateConfig) -> Result<Arc<dyn Store>, StoreError> {
    match (config.backend, &config.redis) {
        (Backend::Redis, Some(redis)) => Ok(Arc::new(Redis::connect(redis)?)),
        _ => Ok(Arc::new(Embedded::new(&config.dir))),
    }
}

#[cfg(test)]
mod tests;
