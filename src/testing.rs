//! What unit tests across the crate share: one scripted identity provider,
//! a chain in front of it, and a signing key. Test builds only.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use regauth_providers::{Credentials, IdentityProvider, Outcome, ProviderKind, SecretShape};

use crate::identity::throttle::Budgets;
use crate::identity::{Chain, Throttle, VerdictCache};
use crate::keys::{KeyRing, KeyType, SigningKey};

/// A provider that answers from a script and counts its calls: by
/// default it takes passwords, answers at once and looks nobody up.
pub(crate) struct Scripted {
    name: &'static str,
    answer: fn(&Credentials) -> Outcome,
    /// What [`IdentityProvider::lookup`] answers, for a provider that
    /// looks its users up.
    lookup: Option<fn(&str) -> Outcome>,
    /// The one shape of token it takes instead of passwords.
    takes: Option<SecretShape<'static>>,
    /// How long each check takes after it is counted.
    delay: Duration,
    calls: AtomicUsize,
}

impl Scripted {
    /// A provider named `name` that answers every check with `answer`.
    pub(crate) fn new(name: &'static str, answer: fn(&Credentials) -> Outcome) -> Arc<Self> {
        Arc::new(Self::answering(name, answer))
    }

    /// [`Scripted::new`] before it is shared, for a script with more in it.
    pub(crate) fn answering(name: &'static str, answer: fn(&Credentials) -> Outcome) -> Self {
        Self {
            name,
            answer,
            lookup: None,
            takes: None,
            delay: Duration::ZERO,
            calls: AtomicUsize::new(0),
        }
    }

    /// Looks users up with `lookup`, as a directory does.
    pub(crate) fn looking_up(self, lookup: fn(&str) -> Outcome) -> Self {
        Self {
            lookup: Some(lookup),
            ..self
        }
    }

    /// Takes tokens of this shape only, as a token provider does.
    pub(crate) fn taking(self, shape: SecretShape<'static>) -> Self {
        Self {
            takes: Some(shape),
            ..self
        }
    }

    /// Answers each check `delay` after it was asked (and counted).
    pub(crate) fn slowed_by(self, delay: Duration) -> Self {
        Self { delay, ..self }
    }

    /// How often it was asked to check credentials.
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
    fn accepts(&self, shape: SecretShape<'_>) -> bool {
        shape == *self.takes.as_ref().unwrap_or(&SecretShape::Password)
    }
    fn looks_up(&self) -> bool {
        self.lookup.is_some()
    }
    async fn lookup(&self, subject: &str) -> Outcome {
        self.lookup
            .map_or(Outcome::NotMine, |lookup| lookup(subject))
    }
    /// Every group exists but those named `gone…`; `again…` is another
    /// group at every question (made again under its name).
    async fn group(
        &self,
        group: &str,
    ) -> Result<regauth_providers::GroupAnswer, regauth_providers::Error> {
        use regauth_providers::GroupAnswer;
        Ok(if group.starts_with("gone") {
            GroupAnswer::Gone
        } else if group.starts_with("again") {
            let n = self.calls.fetch_add(1, Ordering::SeqCst);
            GroupAnswer::Exists(Some(format!("entryUUID={n}")))
        } else {
            GroupAnswer::Exists(Some(format!("entryUUID={group}")))
        })
    }
    async fn authenticate(&self, credentials: &Credentials) -> Outcome {
        self.calls.fetch_add(1, Ordering::SeqCst);
        if !self.delay.is_zero() {
            tokio::time::sleep(self.delay).await;
        }
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
            spacing: Duration::ZERO,
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
