//! Authenticated records: a MAC over (collection, id, value) under a key
//! the backend never sees.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use aws_lc_rs::hmac;

use super::{Counters, Records, Store, StoreError};

/// The prefix of an authenticated record: `r1.` + base64url(MAC) + `.` +
/// the value.
const RECORD_FORMAT: &str = "r1.";

/// The key records are authenticated under: derived from the refresh key
/// (which replicas share and the backend never sees).
pub fn records_key(refresh_secret: &[u8]) -> hmac::Key {
    let derived = hmac::sign(
        &hmac::Key::new(hmac::HMAC_SHA256, refresh_secret),
        b"regauth state records v1",
    );
    hmac::Key::new(hmac::HMAC_SHA256, derived.as_ref())
}

/// A backend whose records carry a MAC over (collection, id, value): a
/// record rewritten, moved to another id or collection, or written by
/// anyone without the key is refused (as if absent) and logged. Counters
/// pass through unchanged.
pub struct Authenticated {
    inner: Arc<dyn Store>,
    key: hmac::Key,
}

impl Authenticated {
    /// Authenticates `inner`'s records under `key` (see [`records_key`]).
    pub fn new(inner: Arc<dyn Store>, key: hmac::Key) -> Self {
        Self { inner, key }
    }

    fn tag(&self, collection: &str, id: &str, value: &str) -> String {
        let mut context = hmac::Context::with_key(&self.key);
        for part in [collection.as_bytes(), id.as_bytes(), value.as_bytes()] {
            context.update(&(part.len() as u64).to_be_bytes());
            context.update(part);
        }
        data_encoding::BASE64URL_NOPAD.encode(context.sign().as_ref())
    }

    fn seal(&self, collection: &str, id: &str, value: &str) -> String {
        format!("{RECORD_FORMAT}{}.{value}", self.tag(collection, id, value))
    }

    /// The value of a stored record whose MAC holds.
    fn open(&self, collection: &str, id: &str, stored: &str) -> Option<String> {
        let opened = stored
            .strip_prefix(RECORD_FORMAT)
            .and_then(|rest| rest.split_once('.'))
            .filter(|(tag, value)| {
                aws_lc_rs::constant_time::verify_slices_are_equal(
                    tag.as_bytes(),
                    self.tag(collection, id, value).as_bytes(),
                )
                .is_ok()
            })
            .map(|(_, value)| value.to_owned());
        if opened.is_none() {
            let why = if stored.starts_with(RECORD_FORMAT) {
                "its MAC does not hold (rewritten outside regauth, or sealed under another refresh key)"
            } else {
                "it carries no MAC (written by an earlier version of regauth before the upgrade, or by someone else)"
            };
            tracing::warn!(
                target: "regauth::audit",
                event = "state_record_refused",
                backend = self.inner.backend(),
                collection,
                id = %crate::ops::audit::Safe(id),
                "a stored record is refused: {why}"
            );
        }
        opened
    }

    /// The records of `collection` that carry no MAC (what an earlier
    /// version wrote, or someone else), as (id, value).
    pub async fn unsigned(&self, collection: &str) -> Result<Vec<(String, String)>, StoreError> {
        Ok(self
            .inner
            .records(collection)
            .await?
            .into_iter()
            .filter(|(_, stored)| !stored.starts_with(RECORD_FORMAT))
            .collect())
    }

    /// Signs one unsigned record, if it still holds `value`; whether it did.
    pub async fn sign(&self, collection: &str, id: &str, value: &str) -> Result<bool, StoreError> {
        let sealed = self.seal(collection, id, value);
        self.inner
            .swap_record(collection, id, Some(value), &sealed)
            .await
    }
}

#[async_trait]
impl Store for Authenticated {
    fn backend(&self) -> &'static str {
        self.inner.backend()
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.inner.ping().await
    }
}

#[async_trait]
impl Counters for Authenticated {
    async fn take(&self, key: &str, limit: u32, window: Duration) -> Result<bool, StoreError> {
        self.inner.take(key, limit, window).await
    }

    async fn give_back(&self, key: &str) -> Result<(), StoreError> {
        self.inner.give_back(key).await
    }

    async fn add(&self, key: &str, window: Duration) -> Result<(), StoreError> {
        self.inner.add(key, window).await
    }

    async fn count(&self, key: &str) -> Result<u32, StoreError> {
        self.inner.count(key).await
    }

    async fn clear(&self, key: &str) -> Result<(), StoreError> {
        self.inner.clear(key).await
    }
}

#[async_trait]
impl Records for Authenticated {
    async fn put_record(&self, collection: &str, id: &str, value: &str) -> Result<(), StoreError> {
        let sealed = self.seal(collection, id, value);
        self.inner.put_record(collection, id, &sealed).await
    }

    async fn put_records(
        &self,
        collection: &str,
        entries: &[(String, String)],
    ) -> Result<(), StoreError> {
        let sealed: Vec<(String, String)> = entries
            .iter()
            .map(|(id, value)| (id.clone(), self.seal(collection, id, value)))
            .collect();
        self.inner.put_records(collection, &sealed).await
    }

    async fn swap_record(
        &self,
        collection: &str,
        id: &str,
        expected: Option<&str>,
        value: &str,
    ) -> Result<bool, StoreError> {
        // The MAC is deterministic: the expected value sealed is what the
        // backend holds, if it holds it.
        let expected = expected.map(|e| self.seal(collection, id, e));
        let sealed = self.seal(collection, id, value);
        self.inner
            .swap_record(collection, id, expected.as_deref(), &sealed)
            .await
    }

    async fn get_record(&self, collection: &str, id: &str) -> Result<Option<String>, StoreError> {
        Ok(self
            .inner
            .get_record(collection, id)
            .await?
            .and_then(|stored| self.open(collection, id, &stored)))
    }

    async fn delete_record(&self, collection: &str, id: &str) -> Result<bool, StoreError> {
        self.inner.delete_record(collection, id).await
    }

    async fn records(&self, collection: &str) -> Result<Vec<(String, String)>, StoreError> {
        Ok(self
            .inner
            .records(collection)
            .await?
            .into_iter()
            .filter_map(|(id, stored)| {
                let value = self.open(collection, &id, &stored)?;
                Some((id, value))
            })
            .collect())
    }
}
