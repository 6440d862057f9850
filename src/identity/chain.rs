//! The provider chain: which provider a credential goes to, and what the
//! answer means.
//!
//! A credential goes only to the providers that accept its shape (GitHub
//! token, JWT of an issuer, password) or that pin its username. Those are
//! asked in configured order and the chain stops at the first answer that
//! is not `NotMine`: a secret rejected by one provider is never
//! offered to the next, and an unreachable provider is never skipped (that
//! would hand its users' passwords to another IdP). Caches sit in front of
//! every provider, so a burst of token requests costs one upstream check.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use regauth_providers::{
    Credentials, ExposeSecret, Identity, IdentityProvider, Outcome, Rejection, SecretShape,
};

use crate::config::UsernamePin;
use crate::identity::throttle::{Attempt, Held, Reach, Throttle};
use crate::identity::VerdictCache;
use crate::ops::metrics::{Answer, CacheStats};

/// The chain's answer for one credential.
#[derive(Debug)]
pub enum Verdict {
    /// A provider (or the verdict cache) vouched for the credentials.
    Authenticated {
        /// Who the credentials belong to.
        identity: Arc<Identity>,
        /// The answer came from the verdict cache.
        cache_hit: bool,
    },
    /// The owning provider said no.
    Rejected {
        /// The provider that owns the user.
        provider: String,
        /// Why it said no.
        reason: Rejection,
    },
    /// No provider knows this user.
    Unknown,
    /// Too many recent failures for this account or client network.
    Throttled(Held),
    /// The owning provider could not answer.
    Unavailable {
        /// The provider that could not answer (`regauth` or `state` when the
        /// check itself failed).
        provider: String,
        /// Why, for the log.
        reason: String,
        /// Seconds after which asking again makes sense, if the IdP said.
        retry_after: Option<u64>,
    },
}

impl Verdict {
    fn unavailable(provider: &str, error: &regauth_providers::Error) -> Self {
        let retry_after = match error {
            regauth_providers::Error::RateLimited { retry_after, .. } => *retry_after,
            _ => None,
        };
        Verdict::Unavailable {
            provider: provider.to_owned(),
            reason: error.to_string(),
            retry_after,
        }
    }
}

/// Why a check produced no identity, shared by every caller that waited
/// for the same check.
#[derive(Debug)]
enum Miss {
    Rejected(Rejection),
    NotMine,
    Unavailable(regauth_providers::Error),
    /// The throttle did not let the attempt through.
    Held(Held),
}

impl Miss {
    fn of(outcome: Outcome) -> Result<Identity, Miss> {
        match outcome {
            Outcome::Authenticated(identity) => Ok(identity),
            Outcome::Rejected(reason) => Err(Miss::Rejected(reason)),
            Outcome::NotMine => Err(Miss::NotMine),
            Outcome::Unavailable(e) => Err(Miss::Unavailable(e)),
        }
    }
}

/// `outcome`, unless it is a user of `provider` whose name is in the
/// team robots' namespace (`robot$…`): refused, so that no directory
/// entry or token claim can ever log in as a team's robot.
fn kept_for_robots(provider: &str, outcome: Outcome) -> Outcome {
    match outcome {
        Outcome::Authenticated(identity)
            if provider != crate::config::PROVIDER_NAME
                && regauth_providers::is_team_robot_name(&identity.subject) =>
        {
            Outcome::Rejected(Rejection::Other(format!(
                "{provider} names a user \"{}\": names beginning {} are kept for team robots",
                crate::ops::audit::Safe(&identity.subject),
                regauth_providers::TEAM_ROBOT_PREFIX
            )))
        }
        other => other,
    }
}

/// Where one credential may go: the providers that may be asked, in
/// order, and whether a check spends an upstream's budget.
struct Route {
    candidates: Vec<Arc<dyn IdentityProvider>>,
    reach: Reach,
}

/// The configured providers, in order, behind the verdict cache and the
/// failed-login throttle.
pub struct Chain {
    providers: Vec<Arc<dyn IdentityProvider>>,
    /// Per provider (same order), the username patterns pinned to it.
    pins: Vec<Vec<UsernamePin>>,
    /// Successful verdicts, shared by all requests.
    verdicts: VerdictCache,
    throttle: Arc<Throttle>,
    timeout: Duration,
    metrics: Arc<crate::ops::metrics::Metrics>,
}

impl Chain {
    /// A chain asking `providers` in this order; a provider that takes longer
    /// than `timeout` to answer counts as unavailable.
    pub fn new(
        providers: Vec<Arc<dyn IdentityProvider>>,
        verdicts: VerdictCache,
        throttle: Throttle,
        timeout: Duration,
    ) -> Self {
        Self {
            pins: vec![Vec::new(); providers.len()],
            providers,
            verdicts,
            throttle: Arc::new(throttle),
            timeout,
            metrics: Arc::default(),
        }
    }

    /// Records provider checks in these metrics.
    pub fn with_metrics(mut self, metrics: Arc<crate::ops::metrics::Metrics>) -> Self {
        self.metrics = metrics;
        self
    }

    /// The verdict cache's hits, misses and entries.
    pub fn cache_stats(&self) -> CacheStats {
        self.verdicts.stats()
    }

    /// Applies the verdict cache's pending housekeeping, so its counts are
    /// exact.
    pub async fn settle(&self) {
        self.verdicts.sync().await;
    }

    /// Forgets every cached verdict, as their TTL passing would: tests
    /// pass the TTL this way rather than wait it out.
    #[doc(hidden)]
    pub fn forget_verdicts(&self) {
        self.verdicts.forget_all();
    }

    /// The failed-login throttle (the app-password page's sign-ins count
    /// on it too).
    pub fn throttle(&self) -> &Throttle {
        &self.throttle
    }

    /// The providers, in the order they are asked.
    pub fn providers(&self) -> &[Arc<dyn IdentityProvider>] {
        &self.providers
    }

    /// The provider with this name.
    pub fn provider(&self, name: &str) -> Option<&Arc<dyn IdentityProvider>> {
        self.providers.iter().find(|p| p.name() == name)
    }

    /// Pins username patterns to providers, by provider name. Pins match
    /// case-insensitively and ignore surrounding spaces, so `CI-Release`
    /// and ` ci-release` cannot escape a `ci-*` pin to another provider.
    pub fn with_pins(mut self, pins: Vec<(String, Vec<UsernamePin>)>) -> Self {
        for (name, patterns) in pins {
            if let Some(i) = self.providers.iter().position(|p| p.name() == name) {
                self.pins[i] = patterns;
            }
        }
        self
    }

    /// The providers this credential may go to, in the order to ask them:
    /// a provider whose pinned usernames match takes the login alone;
    /// otherwise every provider that accepts the secret's shape (a GitHub
    /// token never reaches LDAP, a password never reaches GitHub, a JWT only
    /// the OIDC provider of its issuer).
    fn route(&self, credentials: &Credentials) -> Route {
        let shape = SecretShape::of(&credentials.username, credentials.secret.expose_secret());
        // A JWT is verified against the issuer's keys here: a forged one
        // never reaches the IdP, so it does not spend the IdP's budget.
        let reach = match shape {
            SecretShape::Jwt { .. } => Reach::Local,
            _ => Reach::Upstream,
        };
        let username = UsernamePin::form(&credentials.username);
        // An app password names its owner itself: pins do not apply.
        let pinned = self
            .pins
            .iter()
            .position(|patterns| patterns.iter().any(|p| p.matches(&username)))
            .filter(|_| shape != SecretShape::AppPassword);
        let providers = match pinned {
            Some(i) => &self.providers[i..=i],
            None => &self.providers[..],
        };
        let accepting = |shape: &SecretShape<'_>| -> Vec<Arc<dyn IdentityProvider>> {
            providers
                .iter()
                .filter(|p| p.accepts(shape.borrowed()))
                .cloned()
                .collect()
        };
        let mut candidates = accepting(&shape);
        if candidates.is_empty() && shape == SecretShape::HexToken {
            // 40 hex digits are a Gitea token only where a Gitea provider
            // takes them; anywhere else they are a password.
            candidates = accepting(&SecretShape::Password);
        }
        Route { candidates, reach }
    }

    /// The provider's answer, or Unavailable after the request timeout.
    async fn bounded(&self, answer: impl std::future::Future<Output = Outcome>) -> Outcome {
        match tokio::time::timeout(self.timeout, answer).await {
            Ok(outcome) => outcome,
            Err(_) => Outcome::Unavailable(regauth_providers::Error::Upstream(format!(
                "no answer within {:?}",
                self.timeout
            ))),
        }
    }

    /// Re-resolves a subject that `provider` vouched for earlier, without a
    /// password (refresh grants). `proof` (the refresh token) keys the
    /// verdict cache, so repeated refreshes within the TTL cost one lookup.
    pub async fn lookup(&self, provider: &str, subject: &str, proof: &str) -> Verdict {
        let Some(p) = self.provider(provider) else {
            return Verdict::Unknown;
        };
        let key = self.verdicts.key_for("lookup", provider, subject, proof);
        if let Some(identity) = self.verdicts.get(&key).await {
            return Verdict::Authenticated {
                identity,
                cache_hit: true,
            };
        }
        let check = async {
            let looked = self.bounded(p.lookup(subject)).await;
            Miss::of(kept_for_robots(provider, looked))
        };
        match self.verdicts.get_or_check(key, check).await {
            Ok(identity) => Verdict::Authenticated {
                identity,
                cache_hit: false,
            },
            Err(miss) => self.verdict_of(provider, &miss),
        }
    }

    fn verdict_of(&self, provider: &str, miss: &Miss) -> Verdict {
        match miss {
            Miss::NotMine => Verdict::Unknown,
            Miss::Rejected(reason) => Verdict::Rejected {
                provider: provider.to_owned(),
                reason: reason.clone(),
            },
            Miss::Unavailable(error) => Verdict::unavailable(provider, error),
            Miss::Held(Held::Provider) => Verdict::Unavailable {
                provider: provider.to_owned(),
                reason:
                    "too many failed logins reach this provider right now; holding attempts back"
                        .into(),
                retry_after: Some(1),
            },
            Miss::Held(Held::Store(e)) => Verdict::Unavailable {
                provider: provider.to_owned(),
                reason: format!("the state backend cannot count failed logins: {e}"),
                retry_after: Some(2),
            },
            Miss::Held(held) => Verdict::Throttled(held.clone()),
        }
    }

    /// Checks credentials. A fresh cached verdict answers at once; then
    /// every provider the credential may go to is asked in turn, each
    /// attempt reserved with the throttle first, until one knows the user.
    ///
    /// The asking runs in a task of its own: a client that hangs up after
    /// its guess reached the directory cannot take the guess back (the
    /// attempt is settled, and counted, whether anyone waits for it).
    pub async fn authenticate(
        self: &Arc<Self>,
        credentials: &Credentials,
        client: IpAddr,
    ) -> Verdict {
        // A fresh cached verdict answers without any upstream call, even
        // while the user is throttled (the cached secret is known good).
        let route = self.route(credentials);
        for provider in &route.candidates {
            let user = provider.normalize_username(&credentials.username);
            let key = self.verdicts.key(provider.name(), &user, credentials);
            if let Some(identity) = self.verdicts.get(&key).await {
                if !provider.reachable() {
                    tracing::warn!(
                        provider = provider.name(),
                        subject = %crate::ops::audit::Safe(&identity.subject),
                        "identity provider unreachable: serving a cached verdict"
                    );
                }
                return Verdict::Authenticated {
                    identity,
                    cache_hit: true,
                };
            }
        }
        let chain = self.clone();
        let credentials = credentials.clone();
        let asking = tokio::spawn(async move { chain.ask(route, &credentials, client).await });
        asking.await.unwrap_or_else(|_| Verdict::Unavailable {
            provider: "regauth".into(),
            reason: "the credential check did not finish".into(),
            retry_after: Some(1),
        })
    }

    /// Asks the route's providers in turn, the throttle's budgets
    /// reserved first.
    async fn ask(
        self: &Arc<Self>,
        route: Route,
        credentials: &Credentials,
        client: IpAddr,
    ) -> Verdict {
        let client_slot = match self.throttle.reserve_client(client).await {
            Ok(slot) => slot,
            Err(Held::Store(e)) => {
                return Verdict::Unavailable {
                    provider: "state".into(),
                    reason: format!("the state backend cannot count failed logins: {e}"),
                    retry_after: Some(2),
                }
            }
            Err(held) => return Verdict::Throttled(held),
        };
        for provider in &route.candidates {
            let reach = if provider.checks_locally() {
                Reach::Local
            } else {
                route.reach
            };
            match self.attempt(provider, credentials, client, reach).await {
                Ok(identity) => {
                    self.throttle.client_released(client_slot).await;
                    return Verdict::Authenticated {
                        identity,
                        cache_hit: false,
                    };
                }
                Err(miss) => match &*miss {
                    Miss::NotMine => continue,
                    // Held back with the flood: still the sender's failure,
                    // so a flood's networks run out of their own budgets.
                    Miss::Rejected(_) | Miss::Held(Held::Provider) => {
                        self.throttle.client_failed(client_slot);
                        return self.verdict_of(provider.name(), &miss);
                    }
                    other => {
                        self.throttle.client_released(client_slot).await;
                        return self.verdict_of(provider.name(), other);
                    }
                },
            }
        }
        self.throttle.client_failed(client_slot);
        Verdict::Unknown
    }

    /// One provider's check of the credentials, its attempt reserved with
    /// the throttle first and settled by its answer. Concurrent requests
    /// with the same credentials share this one check, and so one
    /// reservation.
    async fn attempt(
        &self,
        provider: &Arc<dyn IdentityProvider>,
        credentials: &Credentials,
        client: IpAddr,
        reach: Reach,
    ) -> Result<Arc<Identity>, Arc<Miss>> {
        let user = provider.normalize_username(&credentials.username);
        let key = self.verdicts.key(provider.name(), &user, credentials);
        // The account tried, for passwords; a token tries none.
        let account = provider.account_of(credentials).await;
        let attempt = Attempt {
            provider: provider.name(),
            account: account.as_deref(),
            client,
            reach,
        };
        let check = async {
            let reservation = self.throttle.reserve(attempt).await.map_err(Miss::Held)?;
            let started = std::time::Instant::now();
            let outcome = kept_for_robots(
                provider.name(),
                self.bounded(provider.authenticate(credentials)).await,
            );
            let answer = match &outcome {
                Outcome::Authenticated(_) => Answer::Authenticated,
                Outcome::Rejected(_) => Answer::Rejected,
                Outcome::NotMine => Answer::Unknown,
                Outcome::Unavailable(_) => Answer::Unavailable,
            };
            self.metrics
                .login(provider.name(), answer, started.elapsed());
            match Miss::of(outcome) {
                Ok(identity) => {
                    let subject = provider.normalize_username(&identity.subject);
                    self.throttle
                        .succeeded(reservation, account.as_deref(), &subject)
                        .await;
                    Ok(identity)
                }
                Err(miss @ Miss::Rejected(_)) => {
                    self.throttle.failed(reservation);
                    Err(miss)
                }
                Err(miss) => {
                    self.throttle.released(reservation).await;
                    Err(miss)
                }
            }
        };
        self.verdicts.get_or_check(key, check).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{caches, chain, Scripted};

    const IP: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);

    #[tokio::test]
    async fn routing_by_shape_and_pinned_usernames() {
        let passwords = Scripted::new("passwords", |c| {
            Outcome::Authenticated(Identity::new(&c.username, "passwords"))
        });
        let tokens = Arc::new(
            Scripted::answering("tokens", |c| {
                Outcome::Authenticated(Identity::new(&c.username, "tokens"))
            })
            .taking(SecretShape::GitHubToken),
        );
        let chain = chain(vec![passwords.clone(), tokens.clone()], 0);
        let who = |v: Verdict| match v {
            Verdict::Authenticated { identity, .. } => identity.provider.clone(),
            other => format!("{other:?}"),
        };
        assert_eq!(
            who(chain
                .authenticate(&Credentials::new("u", "ghp_abc"), IP)
                .await),
            "tokens"
        );
        assert_eq!(
            who(chain.authenticate(&Credentials::new("u", "pw"), IP).await),
            "passwords"
        );
        assert_eq!(passwords.calls(), 1, "the token never reached it");
        assert_eq!(tokens.calls(), 1, "the password never reached it");
        // a pinned username goes to its provider alone
        let chain = Arc::new(Arc::try_unwrap(chain).ok().unwrap().with_pins(vec![(
            "tokens".into(),
            vec![UsernamePin::parse("ci-*").unwrap()],
        )]));
        assert!(matches!(
            chain
                .authenticate(&Credentials::new("ci-x", "pw"), IP)
                .await,
            Verdict::Unknown
        ));
        assert_eq!(passwords.calls(), 1);
    }

    #[tokio::test]
    async fn rejected_never_falls_through() {
        let first = Scripted::new("first", |_| Outcome::Rejected(Rejection::WrongSecret));
        let second = Scripted::new("second", |c| {
            Outcome::Authenticated(Identity::new(&c.username, "second"))
        });
        let chain = chain(vec![first.clone(), second.clone()], 0);
        let v = chain.authenticate(&Credentials::new("u", "p"), IP).await;
        assert!(matches!(v, Verdict::Rejected { .. }));
        assert_eq!(second.calls(), 0);
    }

    #[tokio::test]
    async fn not_mine_moves_on_and_unavailable_stops() {
        let first = Scripted::new("first", |_| Outcome::NotMine);
        let second = Scripted::new("second", |_| {
            Outcome::Unavailable(regauth_providers::Error::Upstream("down".into()))
        });
        let third = Scripted::new("third", |c| {
            Outcome::Authenticated(Identity::new(&c.username, "third"))
        });
        let chain = chain(vec![first.clone(), second, third.clone()], 0);
        let v = chain.authenticate(&Credentials::new("u", "p"), IP).await;
        assert!(matches!(v, Verdict::Unavailable { ref provider, .. } if provider == "second"));
        assert_eq!(third.calls(), 0);
        assert_eq!(first.calls(), 1);
    }

    #[tokio::test]
    async fn verdicts_are_cached_per_secret() {
        let only = Scripted::new("only", |c| {
            if c.username == "u" {
                Outcome::Authenticated(Identity::new("u", "only"))
            } else {
                Outcome::NotMine
            }
        });
        let chain = chain(vec![only.clone()], 0);
        for _ in 0..5 {
            assert!(matches!(
                chain.authenticate(&Credentials::new("u", "p"), IP).await,
                Verdict::Authenticated { .. }
            ));
        }
        assert_eq!(only.calls(), 1);
        let v = chain.authenticate(&Credentials::new("u", "p"), IP).await;
        assert!(matches!(
            v,
            Verdict::Authenticated {
                cache_hit: true,
                ..
            }
        ));
        // a different secret is a different verdict
        chain
            .authenticate(&Credentials::new("u", "other"), IP)
            .await;
        assert_eq!(only.calls(), 2);
        assert!(matches!(
            chain.authenticate(&Credentials::new("x", "p"), IP).await,
            Verdict::Unknown
        ));
    }

    #[tokio::test]
    async fn failures_are_throttled_before_the_idp_is_asked() {
        let p = Scripted::new("p", |_| Outcome::Rejected(Rejection::WrongSecret));
        let chain = chain(vec![p.clone()], 3);
        for i in 0..3 {
            let bad = Credentials::new("u", format!("bad{i}"));
            assert!(matches!(
                chain.authenticate(&bad, IP).await,
                Verdict::Rejected { .. }
            ));
        }
        for i in 0..10 {
            let bad = Credentials::new("u", format!("again{i}"));
            assert!(matches!(
                chain.authenticate(&bad, IP).await,
                Verdict::Throttled(Held::Account)
            ));
        }
        assert_eq!(p.calls(), 3);
    }

    /// Attempts the provider bucket holds back are the sender's failures:
    /// a flood from one network runs out of its own budget.
    #[tokio::test]
    async fn held_back_attempts_spend_the_senders_budget() {
        let p = Scripted::new("upstream", |_| Outcome::Rejected(Rejection::WrongSecret));
        let verdicts = VerdictCache::new(
            Duration::from_secs(60),
            100,
            &crate::keys::random_key().unwrap(),
        );
        let throttle = Throttle::new(
            crate::identity::throttle::Budgets {
                per_account: 5,
                per_familiar_network: 5,
                familiar_for: Duration::from_secs(3600),
                per_client: 10,
                per_provider_per_second: 1,
                window: Duration::from_secs(60),
                spacing: Duration::ZERO,
            },
            b"test",
            Arc::new(crate::state::Embedded::in_memory()),
        );
        let chain = Arc::new(Chain::new(
            vec![p.clone()],
            verdicts,
            throttle,
            Duration::from_secs(1),
        ));
        let mut held = 0;
        for i in 0..30 {
            let v = chain
                .authenticate(&Credentials::new(format!("u{i}"), "wrong"), IP)
                .await;
            match v {
                Verdict::Unavailable { .. } => held += 1,
                Verdict::Throttled(Held::Client) => {}
                Verdict::Rejected { .. } => {}
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(p.calls(), 5, "the bucket's burst");
        assert_eq!(held, 5, "then held back until the client's budget ran out");
    }

    /// 200 concurrent wrong passwords reach the provider at most
    /// `max_failures` times: each attempt is reserved before it is asked.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_guesses_are_counted_before_the_answer() {
        let slow = Arc::new(
            Scripted::answering("slow", |_| Outcome::Rejected(Rejection::WrongSecret))
                .slowed_by(Duration::from_millis(50)),
        );
        let (verdicts, throttle) = caches(5);
        let chain = Arc::new(Chain::new(
            vec![slow.clone()],
            verdicts,
            throttle,
            Duration::from_secs(5),
        ));
        let tasks: Vec<_> = (0..200)
            .map(|i| {
                let chain = chain.clone();
                tokio::spawn(async move {
                    chain
                        .authenticate(&Credentials::new("erin", format!("guess{i}")), IP)
                        .await
                })
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
        assert_eq!(slow.calls(), 5);
    }

    /// A client that hangs up after its guess reached the provider cannot
    /// take the guess back: the attempt still counts.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn hanging_up_does_not_take_a_guess_back() {
        let slow = Arc::new(
            Scripted::answering("slow", |_| Outcome::Rejected(Rejection::WrongSecret))
                .slowed_by(Duration::from_millis(100)),
        );
        let (verdicts, throttle) = caches(3);
        let chain = Arc::new(Chain::new(
            vec![slow.clone()],
            verdicts,
            throttle,
            Duration::from_secs(5),
        ));
        for i in 0..20 {
            let chain = chain.clone();
            let guess = tokio::spawn(async move {
                chain
                    .authenticate(&Credentials::new("erin", format!("guess{i}")), IP)
                    .await
            });
            // hang up once the guess is on its way
            tokio::time::sleep(Duration::from_millis(20)).await;
            guess.abort();
            tokio::time::sleep(Duration::from_millis(150)).await;
        }
        assert_eq!(slow.calls(), 3, "only max_failures guesses got through");
    }
}
