//! A backend wrapper that times every operation into the metrics.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;

use super::{Counters, Records, Store, StoreError};

/// A backend whose every operation is timed into the metrics.
pub struct Metered {
    inner: Arc<dyn Store>,
    metrics: Arc<crate::ops::metrics::Metrics>,
}

impl Metered {
    /// Times `inner`'s operations into `metrics`.
    pub fn new(inner: Arc<dyn Store>, metrics: Arc<crate::ops::metrics::Metrics>) -> Self {
        Self { inner, metrics }
    }

    async fn timed<T>(
        &self,
        operation: impl std::future::Future<Output = Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        let started = Instant::now();
        let result = operation.await;
        self.metrics
            .state_op(self.inner.backend(), result.is_ok(), started.elapsed());
        result
    }
}

#[async_trait]
impl Store for Metered {
    fn backend(&self) -> &'static str {
        self.inner.backend()
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.timed(self.inner.ping()).await
    }
}

#[async_trait]
impl Counters for Metered {
    async fn take(&self, key: &str, limit: u32, window: Duration) -> Result<bool, StoreError> {
        self.timed(self.inner.take(key, limit, window)).await
    }

    async fn give_back(&self, key: &str) -> Result<(), StoreError> {
        self.timed(self.inner.give_back(key)).await
    }

    async fn add(&self, key: &str, window: Duration) -> Result<(), StoreError> {
        self.timed(self.inner.add(key, window)).await
    }

    async fn count(&self, key: &str) -> Result<u32, StoreError> {
        self.timed(self.inner.count(key)).await
    }

    async fn clear(&self, key: &str) -> Result<(), StoreError> {
        self.timed(self.inner.clear(key)).await
    }
}

#[async_trait]
impl Records for Metered {
    async fn put_record(&self, collection: &str, id: &str, value: &str) -> Result<(), StoreError> {
        self.timed(self.inner.put_record(collection, id, value))
            .await
    }

    async fn put_records(
        &self,
        collection: &str,
        entries: &[(String, String)],
    ) -> Result<(), StoreError> {
        self.timed(self.inner.put_records(collection, entries))
            .await
    }

    async fn swap_record(
        &self,
        collection: &str,
        id: &str,
        expected: Option<&str>,
        value: &str,
    ) -> Result<bool, StoreError> {
        self.timed(self.inner.swap_record(collection, id, expected, value))
            .await
    }

    async fn get_record(&self, collection: &str, id: &str) -> Result<Option<String>, StoreError> {
        self.timed(self.inner.get_record(collection, id)).await
    }

    async fn delete_record(&self, collection: &str, id: &str) -> Result<bool, StoreError> {
        self.timed(self.inner.delete_record(collection, id)).await
    }

    async fn records(&self, collection: &str) -> Result<Vec<(String, String)>, StoreError> {
        self.timed(self.inner.records(collection)).await
    }
}
