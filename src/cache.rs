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
use aws_lc_rs::rand::SecureRandom;
use moka::future::Cache;
use regauth_providers::{Credentials, ExposeSecret, Identity};

/// A digest standing for (provider, user, secret).
pub type VerdictKey = [u8; 32];

/// Hit/miss counters of one cache.
#[derive(Debug, Default)]
pub struct Counters {
    /// Lookups that found an entry.
    pub hits: AtomicU64,
    /// Lookups that found none.
    pub misses: AtomicU64,
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
    pub counters: Counters,
}

/// 32 random bytes, or an error when the system has no entropy source
/// (a key of zeros would make every digest predictable).
pub fn random_key() -> Result<[u8; 32], crate::token::KeyError> {
    let mut secret = [0u8; 32];
    aws_lc_rs::rand::SystemRandom::new()
        .fill(&mut secret)
        .map_err(|_| crate::token::KeyError::Generate("the system has no randomness".into()))?;
    Ok(secret)
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

    /// Applies pending housekeeping, so counts are exact (tests, metrics).
    pub async fn sync(&self) {
        self.entries.run_pending_tasks().await;
    }

    /// The number of cached verdicts (exact after [`VerdictCache::sync`]).
    pub fn entry_count(&self) -> u64 {
        self.entries.entry_count()
    }
}

/// A token signed recently, kept for reuse.
#[derive(Debug)]
pub struct Issued {
    /// The signed token.
    pub jwt: String,
    /// When it was signed, in seconds since the epoch.
    pub iat: i64,
    /// The complete GET response body for this token.
    pub body: bytes::Bytes,
}

impl Issued {
    /// A signed token with its GET response body.
    pub fn new(jwt: String, iat: i64, expires_in: u64) -> Self {
        let body = crate::token::response_body(&jwt, expires_in, iat, None, None);
        Self { jwt, iat, body }
    }
}

/// Recently signed tokens by (subject, provider, service, granted access).
///
/// A push asks for the same token again for every layer within seconds;
/// handing back the identical token (same claims, same `iat`, so the
/// client's expiry arithmetic holds) saves the signature, which is most of
/// a request's cost. Its only visible effect is a repeated `jti` within the
/// window. A zero window disables it.
pub struct IssuedTokens {
    entries: Option<moka::sync::Cache<String, Arc<Issued>>>,
    /// Tokens handed out again (for `/metrics`).
    pub reused: AtomicU64,
}

/// At most this many bytes of tokens are kept for reuse.
const REUSE_BYTES: u64 = 32 * 1024 * 1024;
/// Grants larger than this are signed every time rather than kept.
const REUSE_MAX_GRANT_BYTES: usize = 8 * 1024;

impl IssuedTokens {
    /// Keeps tokens for `window`; a zero window keeps none.
    pub fn new(window: Duration) -> Self {
        Self {
            entries: (!window.is_zero()).then(|| {
                moka::sync::Cache::builder()
                    .max_capacity(REUSE_BYTES)
                    .weigher(|key: &String, issued: &Arc<Issued>| {
                        let bytes = key.len() + issued.jwt.len() + issued.body.len() + 64;
                        u32::try_from(bytes).unwrap_or(u32::MAX)
                    })
                    .time_to_live(window)
                    .build()
            }),
            reused: AtomicU64::new(0),
        }
    }

    /// The reuse key of a grant: subject, provider, service and the granted
    /// access as text.
    pub fn key(subject: &str, provider: &str, service: &str, granted: &str) -> String {
        // NUL cannot occur in any of the parts' meaningful values, and the
        // parts' lengths make the key unambiguous anyway.
        format!(
            "{}:{subject}\0{}:{provider}\0{}:{service}\0{granted}",
            subject.len(),
            provider.len(),
            service.len()
        )
    }

    /// A token kept for this key, if any; each hit counts in `reused`.
    pub fn get(&self, key: &str) -> Option<Arc<Issued>> {
        let found = self.entries.as_ref()?.get(key);
        if found.is_some() {
            self.reused.fetch_add(1, Ordering::Relaxed);
        }
        found
    }

    /// Keeps a token for reuse, unless reuse is disabled or the key is too
    /// large.
    pub fn insert(&self, key: String, issued: Arc<Issued>) {
        if key.len() > REUSE_MAX_GRANT_BYTES {
            return;
        }
        if let Some(entries) = &self.entries {
            entries.insert(key, issued);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
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

    #[test]
    fn issued_tokens_are_reused_only_for_the_same_key_and_window() {
        let tokens = IssuedTokens::new(Duration::from_secs(60));
        let key = IssuedTokens::key("bob", "local", "svc", "repository:a:pull");
        assert!(tokens.get(&key).is_none());
        tokens.insert(key.clone(), Arc::new(Issued::new("t".into(), 1, 60)));
        assert_eq!(tokens.get(&key).unwrap().jwt, "t");
        assert!(tokens
            .get(&IssuedTokens::key(
                "bob",
                "local",
                "svc",
                "repository:a:push"
            ))
            .is_none());
        assert!(tokens
            .get(&IssuedTokens::key(
                "bo",
                "blocal",
                "svc",
                "repository:a:pull"
            ))
            .is_none());
        let off = IssuedTokens::new(Duration::ZERO);
        off.insert(key.clone(), Arc::new(Issued::new("t".into(), 1, 60)));
        assert!(off.get(&key).is_none());
    }
}
