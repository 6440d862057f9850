//! The moka caches in front of the identity providers (verdicts: who a
//! credential belongs to) and of the signer (tokens signed moments ago).
//!
//! Keys that involve a secret are HMAC-SHA256 digests under a key that lives
//! only in this process, so a memory dump or a debug print of a cache never
//! shows a password, and two processes never share a key. Every cache is
//! bounded and counts its hits and misses.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use aws_lc_rs::hmac;
use moka::future::Cache;
use regauth_providers::{Credentials, ExposeSecret, Identity};

use crate::ops::metrics::CacheStats;

/// A digest standing for (provider, user, secret).
pub type VerdictKey = [u8; 32];

/// Hit/miss counters of one cache.
#[derive(Debug, Default)]
struct Counters {
    hits: AtomicU64,
    misses: AtomicU64,
}

impl Counters {
    fn record(&self, hit: bool) {
        let counter = if hit { &self.hits } else { &self.misses };
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// Successful verdicts, with concurrent identical lookups coalesced.
pub struct VerdictCache {
    key: hmac::Key,
    entries: Cache<VerdictKey, Arc<Identity>>,
    /// Hits and misses of [`VerdictCache::get`].
    counters: Counters,
}

/// A verdict lives for the TTL, and never past its credential's expiry
/// (a token's `exp`, a robot's last day).
struct VerdictExpiry {
    ttl: Duration,
}

impl moka::Expiry<VerdictKey, Arc<Identity>> for VerdictExpiry {
    fn expire_after_create(
        &self,
        _key: &VerdictKey,
        identity: &Arc<Identity>,
        _created_at: std::time::Instant,
    ) -> Option<Duration> {
        let left = identity.expires_at.map(|at| {
            Duration::from_secs(at.saturating_sub(regauth_providers::clock::unix_seconds()))
        });
        Some(left.map_or(self.ttl, |left| left.min(self.ttl)))
    }
}

impl VerdictCache {
    /// A cache whose digests are keyed by `secret` (process-local).
    pub fn new(ttl: Duration, capacity: u64, secret: &[u8; 32]) -> Self {
        Self {
            key: hmac::Key::new(hmac::HMAC_SHA256, secret),
            entries: Cache::builder()
                .max_capacity(capacity)
                .expire_after(VerdictExpiry { ttl })
                .build(),
            counters: Counters::default(),
        }
    }

    /// The key of a password (or token) verdict. `user` is the username
    /// in the provider's normalized form: spellings the provider takes for
    /// the same account (`Erin`, ` erin`) share one verdict, so varying
    /// them cannot bypass the cache.
    pub fn key(&self, provider: &str, user: &str, credentials: &Credentials) -> VerdictKey {
        self.key_for("login", provider, user, credentials.secret.expose_secret())
    }

    /// The key of any verdict: `purpose` keeps kinds of proof apart (a
    /// password can never stand for a refresh token, nor the reverse).
    pub fn key_for(&self, purpose: &str, provider: &str, user: &str, secret: &str) -> VerdictKey {
        let mut ctx = hmac::Context::with_key(&self.key);
        // Length prefixes keep ("ab","c") and ("a","bc") apart.
        for part in [
            purpose.as_bytes(),
            provider.as_bytes(),
            user.as_bytes(),
            secret.as_bytes(),
        ] {
            ctx.update(&(part.len() as u64).to_be_bytes());
            ctx.update(part);
        }
        let mut out = [0u8; 32];
        out.copy_from_slice(ctx.sign().as_ref());
        out
    }

    /// The cached identity for `key`, if any; counted as a hit or a miss.
    pub async fn get(&self, key: &VerdictKey) -> Option<Arc<Identity>> {
        let found = self.entries.get(key).await;
        self.counters.record(found.is_some());
        found
    }

    /// Runs `check` once for concurrent callers with the same key; only an
    /// identity is stored. Other answers are shared with the callers that
    /// waited, then forgotten.
    pub async fn get_or_check<F, E>(
        &self,
        key: VerdictKey,
        check: F,
    ) -> Result<Arc<Identity>, Arc<E>>
    where
        F: std::future::Future<Output = Result<Identity, E>>,
        E: Send + Sync + 'static,
    {
        self.entries
            .try_get_with(key, async move { check.await.map(Arc::new) })
            .await
    }

    /// Forgets every verdict at once (tests, passing the TTL).
    pub(crate) fn forget_all(&self) {
        self.entries.invalidate_all();
    }

    /// Applies pending housekeeping, so counts are exact (tests, metrics).
    pub async fn sync(&self) {
        self.entries.run_pending_tasks().await;
    }

    /// Hits, misses and entries (exact after [`VerdictCache::sync`]).
    pub fn stats(&self) -> CacheStats {
        CacheStats {
            hits: self.counters.hits.load(Ordering::Relaxed),
            misses: self.counters.misses.load(Ordering::Relaxed),
            entries: self.entries.entry_count(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::random_key;
    use std::sync::atomic::AtomicUsize;

    #[tokio::test]
    async fn keys_differ_by_every_part_and_hide_the_secret() {
        let cache = VerdictCache::new(Duration::from_secs(60), 10, &random_key().unwrap());
        let a = cache.key("p", "ab", &Credentials::new("ab", "c"));
        assert_ne!(a, cache.key("p", "a", &Credentials::new("a", "bc")));
        assert_ne!(a, cache.key("q", "ab", &Credentials::new("ab", "c")));
        assert_eq!(a, cache.key("p", "ab", &Credentials::new("ab", "c")));
        let other = VerdictCache::new(Duration::from_secs(60), 10, &random_key().unwrap());
        assert_ne!(
            a,
            other.key("p", "ab", &Credentials::new("ab", "c")),
            "process-local key"
        );
    }

    #[tokio::test]
    async fn concurrent_checks_share_one_call() {
        let cache = Arc::new(VerdictCache::new(
            Duration::from_secs(60),
            10,
            &random_key().unwrap(),
        ));
        let calls = Arc::new(AtomicUsize::new(0));
        let key = cache.key("p", "u", &Credentials::new("u", "s"));
        let mut tasks = Vec::new();
        for _ in 0..16 {
            let (cache, calls) = (cache.clone(), calls.clone());
            tasks.push(tokio::spawn(async move {
                cache
                    .get_or_check::<_, ()>(key, async {
                        calls.fetch_add(1, Ordering::SeqCst);
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        Ok(Identity::new("u", "p"))
                    })
                    .await
                    .is_ok()
            }));
        }
        for t in tasks {
            assert!(t.await.unwrap());
        }
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }
}
