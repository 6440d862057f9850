//! What unit tests across the crate share: one scripted identity provider,
//! a chain in front of it, and a signing key. Test builds only.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use regauth_providers::{Credentials, IdentityProvider, Outcome, ProviderKind};

use crate::identity::throttle::Budgets;
use crate::identity::{Chain, Throttle, VerdictCache};
use crate::keys::{KeyRing, KeyType, SigningKey};

/// A provider that answers from a script and counts its calls.
pub(crate) struct Scripted {
    name: &'static str,
    answer: fn(&Credentials) -> Outcome,
    calls: AtomicUsize,
}

impl Scripted {
    /// A provider named `name` that answers every check with `answer`.
    pub(crate) fn new(name: &'static str, answer: fn(&Credentials) -> Outcome) -> Arc<Self> {
        Arc::new(Self {
            name,
            answer,
            calls: AtomicUsize::new(0),
        })
    }

    /// How often it was asked.
    pub(crate) fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }
}

#[async_trait]
impl IdentityProvider for Scripted {
    fn name(&self) -> &str {
        self.name
    }
    fn kind(&self) -> ProviderKind {
        ProviderKind::Custom("scripted")
    }
    async fn authenticate(&self, credentials: &Credentials) -> Outcome {
        self.calls.fetch_add(1, Ordering::SeqCst);
        (self.answer)(credentials)
    }
}

/// A verdict cache and a throttle allowing `max_failures` per account,
/// on an in-memory backend.
pub(crate) fn caches(max_failures: u32) -> (VerdictCache, Throttle) {
    let verdicts = VerdictCache::new(
        Duration::from_secs(60),
        100,
        &crate::keys::random_key().unwrap(),
    );
    let throttle = Throttle::new(
        Budgets {
            per_account: max_failures,
            per_familiar_network: max_failures,
            familiar_for: Duration::from_secs(3600),
            per_client: 0,
            per_provider_per_second: 0,
            window: Duration::from_secs(60),
        },
        b"test",
        Arc::new(crate::state::Embedded::in_memory()),
    );
    (verdicts, throttle)
}

/// A chain asking `providers` in order, with a 1 s timeout.
pub(crate) fn chain(providers: Vec<Arc<dyn IdentityProvider>>, max_failures: u32) -> Arc<Chain> {
    let (verdicts, throttle) = caches(max_failures);
    Arc::new(Chain::new(
        providers,
        verdicts,
        throttle,
        Duration::from_secs(1),
    ))
}

/// A key ring with one fresh ES256 key.
pub(crate) fn keys() -> KeyRing {
    let (key, cert) =
        crate::keys::generate(KeyType::Es256, "regauth-test", Duration::from_secs(3600)).unwrap();
    let current = SigningKey::from_pem(
        key.as_bytes(),
        cert.as_bytes(),
        std::path::Path::new("key"),
        std::path::Path::new("cert"),
    )
    .unwrap();
    KeyRing {
        current,
        next: None,
    }
}
