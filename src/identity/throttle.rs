//! The failed-login throttle: what keeps a CI job retrying a stale
//! password, a password sprayer and a flood of guesses from locking
//! directory accounts or hammering an identity provider, without letting
//! a stranger lock a user out.
//!
//! Budgets, each checked before a provider is asked:
//!
//! - per account, split the way Entra ID's smart lockout splits it: one
//!   budget that every network shares where the account has never logged
//!   in (failures per provider and the provider's form of the account,
//!   keyed by an HMAC so that no username is kept), and one per network
//!   where it has logged in within `familiar_for` (its own). A stranger
//!   spends the first and cannot touch the second: the user keeps logging
//!   in from their usual networks. An attempt is reserved before the
//!   provider is asked, so concurrent guesses count; only a success of the
//!   same subject on the same provider resets them.
//! - per client: failures per client network (an IPv4 address, an IPv6
//!   /64, which a client cannot rotate out of), across all usernames.
//! - per provider: failed attempts per second reaching each provider with
//!   an upstream to protect (a token bucket, reserved like the account
//!   budget), from networks the account is not familiar from. Static users
//!   and app passwords are checked here and spend none.
//!
//! Counters and familiar networks live in the state backend, so replicas
//! count together; the provider bucket is per replica. A backend that
//! cannot answer holds every attempt back (fail closed).

use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aws_lc_rs::hmac;

use crate::net::network_of;
use crate::state::Counters;

/// The budgets (`cache.max_failures`, `cache.max_familiar_failures`,
/// `cache.familiar_for`, `cache.max_client_failures`,
/// `cache.max_provider_failures_per_second`, `cache.failure_window`,
/// `cache.failure_spacing`).
#[derive(Clone, Debug)]
pub struct Budgets {
    /// Failures per account within the window, from every network it has
    /// not logged in from, together; 0 disables the account budgets.
    pub per_account: u32,
    /// Failures per account within the window from each network it has
    /// logged in from before.
    pub per_familiar_network: u32,
    /// How long a network stays familiar after a successful login.
    pub familiar_for: Duration,
    /// Failures per client network within the window; 0 disables it.
    pub per_client: u32,
    /// Failed attempts per second reaching one provider; 0 disables it.
    pub per_provider_per_second: u32,
    /// How long failures are remembered.
    pub window: Duration,
    /// The least time between two password attempts of one account
    /// reaching its identity provider, and after a failure: two failures
    /// closer than a second lock a Keycloak account (its quick-login
    /// check). An attempt sooner waits its turn. Applies with the account
    /// budgets; zero disables it.
    pub spacing: Duration,
}

/// Why an attempt may not go ahead.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Held {
    /// This account failed too often: 401, the provider is not asked.
    Account,
    /// This client network failed too often: 401.
    Client,
    /// The provider gets too many failed attempts from everyone, or this
    /// account's attempts already wait their turns: 503.
    Provider,
    /// The state backend cannot say: 503 (fail closed).
    Store(String),
}

/// Whether an attempt reaches the identity provider itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reach {
    /// A password or an opaque token: the IdP checks it (and may lock the
    /// account): the provider's budget applies.
    Upstream,
    /// A JWT checked against cached keys, a static user's hash, an app
    /// password: only the account and client budgets apply.
    Local,
}

/// One login attempt about to reach a provider.
#[derive(Clone, Copy, Debug)]
pub struct Attempt<'a> {
    /// The provider asked.
    pub provider: &'a str,
    /// The account tried (the provider's form of it), for passwords.
    pub account: Option<&'a str>,
    /// The client's address.
    pub client: IpAddr,
    /// Whether it reaches an upstream.
    pub reach: Reach,
}

struct Bucket {
    tokens: f64,
    refilled: Instant,
}

/// The throttle's state.
pub struct Throttle {
    key: hmac::Key,
    budgets: Budgets,
    store: Arc<dyn Counters>,
    providers: Mutex<std::collections::HashMap<String, Arc<Mutex<Bucket>>>>,
    /// When each account that failed lately may next reach its provider.
    spaced: Mutex<std::collections::HashMap<String, Instant>>,
}

/// Accounts remembered for spacing before the ones whose turn has passed
/// are dropped.
const SPACED_ACCOUNTS: usize = 10_000;

/// An attempt allowed to reach a provider; settle it with the outcome.
/// Dropped unsettled (a cancelled request), it is given back.
pub struct Reservation {
    /// The budget counter the attempt was charged to.
    account: Option<String>,
    /// The account's keys, for a success to reset: (the unfamiliar
    /// budget, this network's budget, this network's familiarity).
    keys: Option<AccountKeys>,
    bucket: Option<Arc<Mutex<Bucket>>>,
    /// The account's spacing key, when the attempt reaches an upstream.
    spaced: Option<String>,
    store: Arc<dyn Counters>,
}

/// The store keys of one account seen from one network.
#[derive(Clone)]
struct AccountKeys {
    shared: String,
    network: String,
    familiar: String,
}

impl Throttle {
    /// A throttle with these budgets over `store`. `secret` keys the
    /// account digests (replicas sharing a store must share it).
    pub fn new(budgets: Budgets, secret: &[u8], store: Arc<dyn Counters>) -> Self {
        Self {
            key: hmac::Key::new(hmac::HMAC_SHA256, secret),
            budgets,
            store,
            providers: Mutex::new(Default::default()),
            spaced: Mutex::new(Default::default()),
        }
    }

    fn digest(&self, tag: &str, parts: &[&[u8]]) -> String {
        let mut ctx = hmac::Context::with_key(&self.key);
        for part in parts {
            ctx.update(&(part.len() as u64).to_be_bytes());
            ctx.update(part);
        }
        let digest = ctx.sign();
        let mut key = String::with_capacity(tag.len() + 48);
        key.push_str(tag);
        key.push_str(&hex::encode(&digest.as_ref()[..24]));
        key
    }

    fn account_keys(&self, provider: &str, account: &str, client: IpAddr) -> AccountKeys {
        let (provider, account) = (provider.as_bytes(), account.as_bytes());
        let network = network_of(client).to_be_bytes();
        AccountKeys {
            shared: self.digest("a:", &[provider, account]),
            network: self.digest("an:", &[provider, account, &network]),
            familiar: self.digest("f:", &[provider, account, &network]),
        }
    }

    fn client_key(client: IpAddr) -> String {
        format!("c:{:032x}", network_of(client))
    }

    /// Reserves one failure of this client network's budget for a login
    /// about to reach the providers: attempts in flight count, so a burst
    /// from one network cannot outrun its budget.
    pub async fn reserve_client(&self, client: IpAddr) -> Result<ClientSlot, Held> {
        if self.budgets.per_client == 0 {
            return Ok(ClientSlot {
                key: None,
                store: self.store.clone(),
            });
        }
        let key = Self::client_key(client);
        match self
            .store
            .take(&key, self.budgets.per_client, self.budgets.window)
            .await
        {
            Ok(true) => Ok(ClientSlot {
                key: Some(key),
                store: self.store.clone(),
            }),
            Ok(false) => Err(Held::Client),
            Err(e) => Err(Held::Store(e.0)),
        }
    }

    /// The login failed (a wrong secret, or nobody knows the user): the
    /// client's slot stays counted.
    pub fn client_failed(&self, mut slot: ClientSlot) {
        slot.key = None;
    }

    /// The login succeeded or could not be decided: the slot is given back.
    pub async fn client_released(&self, mut slot: ClientSlot) {
        if let Some(key) = slot.key.take() {
            let _ = self.store.give_back(&key).await;
        }
    }

    /// Reserves one attempt of this account at this provider from this
    /// client, or says which budget is spent.
    pub async fn reserve(&self, attempt: Attempt<'_>) -> Result<Reservation, Held> {
        let mut reservation = Reservation {
            account: None,
            keys: None,
            bucket: None,
            spaced: None,
            store: self.store.clone(),
        };
        let mut familiar = false;
        if let (true, Some(account)) = (self.budgets.per_account > 0, attempt.account) {
            let keys = self.account_keys(attempt.provider, account, attempt.client);
            familiar = self
                .store
                .count(&keys.familiar)
                .await
                .map_err(|e| Held::Store(e.0))?
                > 0;
            let (key, limit) = if familiar {
                (&keys.network, self.budgets.per_familiar_network)
            } else {
                (&keys.shared, self.budgets.per_account)
            };
            match self.store.take(key, limit, self.budgets.window).await {
                Ok(true) => reservation.account = Some(key.clone()),
                Ok(false) => return Err(Held::Account),
                Err(e) => return Err(Held::Store(e.0)),
            }
            reservation.keys = Some(keys);
        }
        // The provider bucket holds back the flood, which never comes from
        // where the account is at home.
        if self.budgets.per_provider_per_second > 0 && attempt.reach == Reach::Upstream && !familiar
        {
            let bucket = self.bucket(attempt.provider);
            if !take(&bucket, self.budgets.per_provider_per_second) {
                // the account slot is given back when `reservation` drops
                return Err(Held::Provider);
            }
            reservation.bucket = Some(bucket);
        }
        // Last, once nothing else holds it back: the account's turn.
        if let (Reach::Upstream, Some(keys)) = (attempt.reach, &reservation.keys) {
            if !self.budgets.spacing.is_zero() {
                let key = keys.shared.clone();
                let wait = self.turn(&key).ok_or(Held::Provider)?;
                reservation.spaced = Some(key);
                tokio::time::sleep(wait).await;
            }
        }
        Ok(reservation)
    }

    fn bucket(&self, provider: &str) -> Arc<Mutex<Bucket>> {
        let mut buckets = self.providers.lock().unwrap_or_else(|p| p.into_inner());
        buckets
            .entry(provider.to_owned())
            .or_insert_with(|| {
                Arc::new(Mutex::new(Bucket {
                    tokens: f64::from(self.budgets.per_provider_per_second) * BURST_SECONDS,
                    refilled: Instant::now(),
                }))
            })
            .clone()
    }

    /// The attempt failed (a wrong secret): it stays counted, and the
    /// account's next attempt waits a spacing from now (the provider may
    /// have taken a while to say so).
    pub fn failed(&self, mut reservation: Reservation) {
        reservation.account = None;
        reservation.bucket = None;
        if let Some(key) = reservation.spaced.take() {
            let next = Instant::now() + self.budgets.spacing;
            let mut spaced = self.spaced.lock().unwrap_or_else(|p| p.into_inner());
            let turn = spaced.entry(key).or_insert(next);
            *turn = (*turn).max(next);
        }
    }

    /// Takes the next turn of the account keyed `key`: how long the
    /// attempt waits for it (zero when the account's last attempt is a
    /// spacing past). The account's attempts reach its provider one
    /// spacing apart, so no two can fail closer than that, however many
    /// come at once. The account budgets bound how many wait (a stranger
    /// can make a user's login wait a spacing for each failure the budget
    /// lets through, once per window); `None`, held back as a 503, only
    /// if more than the budgets could admit are queued already.
    fn turn(&self, key: &str) -> Option<Duration> {
        let now = Instant::now();
        let spacing = self.budgets.spacing;
        let mut spaced = self.spaced.lock().unwrap_or_else(|p| p.into_inner());
        if spaced.len() > SPACED_ACCOUNTS {
            spaced.retain(|_, turn| *turn > now);
        }
        let turn = spaced.entry(key.to_owned()).or_insert(now);
        let start = (*turn).max(now);
        // as many as the account's budgets let be in flight at once
        let ahead = self.budgets.per_account + self.budgets.per_familiar_network;
        if start > now + spacing * ahead {
            return None;
        }
        *turn = start + spacing;
        Some(start - now)
    }

    /// The attempt did not fail (an unknown user, an unreachable
    /// provider): it is given back.
    pub async fn released(&self, mut reservation: Reservation) {
        if let Some(key) = reservation.account.take() {
            let _ = self.store.give_back(&key).await;
        }
    }

    /// The attempt succeeded for `normalized_subject`: if that is the
    /// account that was tried (a JWT login that ignores the typed username
    /// resets nothing), its failures are forgotten and this network
    /// becomes (or stays) familiar.
    pub async fn succeeded(
        &self,
        mut reservation: Reservation,
        account: Option<&str>,
        normalized_subject: &str,
    ) {
        let charged = reservation.account.take();
        let keys = reservation.keys.take();
        match (keys, account == Some(normalized_subject)) {
            (Some(keys), true) => {
                let _ = self.store.clear(&keys.shared).await;
                let _ = self.store.clear(&keys.network).await;
                // familiar for `familiar_for` from this login on (a new
                // counter gets the window; an old one would keep its own)
                let _ = self.store.clear(&keys.familiar).await;
                let _ = self
                    .store
                    .add(&keys.familiar, self.budgets.familiar_for)
                    .await;
            }
            _ => {
                if let Some(key) = charged {
                    let _ = self.store.give_back(&key).await;
                }
            }
        }
    }
}

/// How many seconds of failures the provider bucket holds at most.
const BURST_SECONDS: f64 = 5.0;

/// Takes a token from a bucket refilled at `rate` per second.
fn take(bucket: &Mutex<Bucket>, rate: u32) -> bool {
    let mut b = bucket.lock().unwrap_or_else(|p| p.into_inner());
    let now = Instant::now();
    let rate = f64::from(rate);
    let elapsed = now.duration_since(b.refilled).as_secs_f64();
    b.tokens = (b.tokens + elapsed * rate).min(rate * BURST_SECONDS);
    b.refilled = now;
    if b.tokens >= 1.0 {
        b.tokens -= 1.0;
        true
    } else {
        false
    }
}

/// A client network's reserved slot; dropped unsettled, it is given back.
pub struct ClientSlot {
    key: Option<String>,
    store: Arc<dyn Counters>,
}

impl Drop for ClientSlot {
    fn drop(&mut self) {
        if let Some(key) = self.key.take() {
            let store = self.store.clone();
            if let Ok(runtime) = tokio::runtime::Handle::try_current() {
                runtime.spawn(async move {
                    let _ = store.give_back(&key).await;
                });
            }
        }
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        if let Some(bucket) = self.bucket.take() {
            let mut b = bucket.lock().unwrap_or_else(|p| p.into_inner());
            b.tokens += 1.0;
        }
        if let Some(key) = self.account.take() {
            // a cancelled attempt: give the slot back off the request path
            let store = self.store.clone();
            if let Ok(runtime) = tokio::runtime::Handle::try_current() {
                runtime.spawn(async move {
                    let _ = store.give_back(&key).await;
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn throttle(per_account: u32, per_client: u32, per_second: u32) -> Throttle {
        Throttle::new(
            Budgets {
                per_account,
                per_familiar_network: per_account,
                familiar_for: Duration::from_secs(3600),
                per_client,
                per_provider_per_second: per_second,
                window: Duration::from_secs(60),
                spacing: Duration::ZERO,
            },
            b"test key",
            Arc::new(crate::state::Embedded::in_memory()),
        )
    }

    const HOME: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 1));

    fn attempt<'a>(provider: &'a str, account: Option<&'a str>, reach: Reach) -> Attempt<'a> {
        attempt_from(provider, account, reach, HOME)
    }

    fn attempt_from<'a>(
        provider: &'a str,
        account: Option<&'a str>,
        reach: Reach,
        client: IpAddr,
    ) -> Attempt<'a> {
        Attempt {
            provider,
            account,
            client,
            reach,
        }
    }

    /// Keycloak locks an account for two failures less than a second
    /// apart: an account's password attempts reach the provider a spacing
    /// apart (a spacing after a failure, too), however many come at once,
    /// and an attempt more than two turns out is held back.
    #[tokio::test]
    async fn an_accounts_attempts_reach_the_provider_a_spacing_apart() {
        let spacing = Duration::from_millis(200);
        let t = Throttle {
            budgets: Budgets {
                spacing,
                ..throttle(10, 0, 0).budgets
            },
            ..throttle(10, 0, 0)
        };
        let upstream = attempt("kc", Some("ann"), Reach::Upstream);
        let started = Instant::now();
        let (first, second) = tokio::join!(t.reserve(upstream), t.reserve(upstream));
        assert!(
            started.elapsed() >= spacing,
            "two at once: {:?}",
            started.elapsed()
        );
        t.failed(first.unwrap());
        // another account has a turn at once; a local check (a JWT) takes none
        let bob = t.account_keys("kc", "bob", HOME).shared;
        assert_eq!(t.turn(&bob), Some(Duration::ZERO));
        let local = t.reserve(attempt("kc", Some("ann"), Reach::Local)).await;
        assert!(local.unwrap().spaced.is_none());
        // after a failure the next waits a spacing, the one after two
        let started = Instant::now();
        t.failed(second.unwrap());
        let (a, b) = tokio::join!(t.reserve(upstream), t.reserve(upstream));
        assert!(started.elapsed() >= spacing * 2, "{:?}", started.elapsed());
        assert!(a.is_ok() && b.is_ok());
        // no more turns are handed out than the budgets admit (10 + 10)
        let carl = t.account_keys("kc", "carl", HOME).shared;
        let turns = (0..25).map_while(|_| t.turn(&carl)).count();
        assert_eq!(turns, 21, "the first at once, then one per budget slot");
    }

    #[tokio::test]
    async fn reservations_count_before_the_answer() {
        let t = throttle(3, 0, 0);
        let mut held = Vec::new();
        for _ in 0..3 {
            held.push(
                t.reserve(attempt("corp", Some("erin"), Reach::Upstream))
                    .await
                    .unwrap(),
            );
        }
        assert_eq!(
            t.reserve(attempt("corp", Some("erin"), Reach::Upstream))
                .await
                .err(),
            Some(Held::Account),
            "in flight counts"
        );
        assert!(t
            .reserve(attempt("corp", Some("other"), Reach::Upstream))
            .await
            .is_ok());
        assert!(t
            .reserve(attempt("other", Some("erin"), Reach::Upstream))
            .await
            .is_ok());
        let mut held = held.into_iter();
        t.released(held.next().unwrap()).await;
        let again = t
            .reserve(attempt("corp", Some("erin"), Reach::Upstream))
            .await
            .unwrap();
        for r in held {
            t.failed(r);
        }
        t.failed(again);
        assert_eq!(
            t.reserve(attempt("corp", Some("erin"), Reach::Upstream))
                .await
                .err(),
            Some(Held::Account)
        );
    }

    #[tokio::test]
    async fn only_the_same_subject_resets_an_account() {
        let t = throttle(2, 0, 0);
        t.failed(
            t.reserve(attempt("corp", Some("erin"), Reach::Upstream))
                .await
                .unwrap(),
        );
        let r = t
            .reserve(attempt("corp", Some("erin"), Reach::Upstream))
            .await
            .unwrap();
        t.succeeded(r, Some("erin"), "someone-else").await;
        t.failed(
            t.reserve(attempt("corp", Some("erin"), Reach::Upstream))
                .await
                .unwrap(),
        );
        assert!(
            t.reserve(attempt("corp", Some("erin"), Reach::Upstream))
                .await
                .is_err(),
            "not reset by another subject"
        );
        let t = throttle(2, 0, 0);
        t.failed(
            t.reserve(attempt("corp", Some("erin"), Reach::Upstream))
                .await
                .unwrap(),
        );
        let r = t
            .reserve(attempt("corp", Some("erin"), Reach::Upstream))
            .await
            .unwrap();
        t.succeeded(r, Some("erin"), "erin").await;
        t.failed(
            t.reserve(attempt("corp", Some("erin"), Reach::Upstream))
                .await
                .unwrap(),
        );
        assert!(
            t.reserve(attempt("corp", Some("erin"), Reach::Upstream))
                .await
                .is_ok(),
            "reset by erin herself"
        );
    }

    /// The review's M2: five wrong passwords from one address locked the
    /// user out everywhere. Now they spend only what unfamiliar networks
    /// share; where the user logged in before keeps its own budget, and is
    /// not held back by the provider bucket either.
    #[tokio::test]
    async fn strangers_cannot_lock_out_a_familiar_network() {
        let t = throttle(2, 0, 1);
        let stranger: IpAddr = "198.51.100.7".parse().unwrap();
        let another: IpAddr = "203.0.113.9".parse().unwrap();
        let erin = || attempt("corp", Some("erin"), Reach::Upstream);
        let r = t.reserve(erin()).await.unwrap();
        t.succeeded(r, Some("erin"), "erin").await;
        for _ in 0..2 {
            let r = t
                .reserve(attempt_from(
                    "corp",
                    Some("erin"),
                    Reach::Upstream,
                    stranger,
                ))
                .await
                .unwrap();
            t.failed(r);
        }
        for from in [stranger, another] {
            assert_eq!(
                t.reserve(attempt_from("corp", Some("erin"), Reach::Upstream, from))
                    .await
                    .err(),
                Some(Held::Account),
                "unfamiliar networks share one budget"
            );
        }
        // the provider bucket (1/s, 5 s burst) is empty by now for strangers
        for i in 0..10 {
            let r = t
                .reserve(attempt_from(
                    "corp",
                    Some(&format!("u{i}")),
                    Reach::Upstream,
                    stranger,
                ))
                .await;
            if let Ok(r) = r {
                t.failed(r);
            }
        }
        assert_eq!(
            t.reserve(attempt_from("corp", Some("zed"), Reach::Upstream, stranger))
                .await
                .err(),
            Some(Held::Provider)
        );
        // erin at home: neither her account nor the bucket holds her back
        for _ in 0..2 {
            let r = t.reserve(erin()).await.unwrap();
            t.failed(r);
        }
        assert_eq!(
            t.reserve(erin()).await.err(),
            Some(Held::Account),
            "her own budget is hers"
        );
    }

    #[tokio::test]
    async fn clients_are_counted_by_network_and_in_flight() {
        let t = throttle(0, 2, 0);
        let a: IpAddr = "2001:db8:1:2::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:ffff::9".parse().unwrap();
        let c: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        let first = t.reserve_client(a).await.unwrap();
        let second = t.reserve_client(b).await.unwrap();
        assert_eq!(
            t.reserve_client(a).await.err(),
            Some(Held::Client),
            "in flight counts"
        );
        t.client_released(second).await;
        t.client_failed(first);
        t.client_failed(t.reserve_client(b).await.unwrap());
        assert_eq!(
            t.reserve_client(b).await.err(),
            Some(Held::Client),
            "same /64"
        );
        assert!(t.reserve_client(c).await.is_ok(), "another /64");
        // a token login tries no account
        let t = throttle(1, 0, 0);
        t.failed(
            t.reserve(attempt("gh", None, Reach::Upstream))
                .await
                .unwrap(),
        );
        assert!(t
            .reserve(attempt("gh", None, Reach::Upstream))
            .await
            .is_ok());
        let v4: IpAddr = "10.0.0.1".parse().unwrap();
        let mapped: IpAddr = "::ffff:10.0.0.1".parse().unwrap();
        assert_eq!(network_of(v4), network_of(mapped));
        assert_ne!(network_of(v4), network_of("10.0.0.2".parse().unwrap()));
    }

    #[tokio::test]
    async fn the_provider_budget_holds_under_a_burst() {
        let t = throttle(0, 0, 10);
        let mut allowed = 0;
        for i in 0..200 {
            if let Ok(r) = t
                .reserve(attempt("corp", Some(&format!("user{i}")), Reach::Upstream))
                .await
            {
                allowed += 1;
                t.failed(r);
            }
        }
        assert!(
            (50..=52).contains(&allowed),
            "{allowed}: five seconds' worth"
        );
        // JWTs checked locally do not spend it
        assert!(t
            .reserve(attempt("corp", Some("x"), Reach::Local))
            .await
            .is_ok());
        // successes give their token back
        let t = throttle(0, 0, 1);
        for _ in 0..20 {
            let r = t
                .reserve(attempt("corp", Some("ann"), Reach::Upstream))
                .await
                .unwrap();
            t.succeeded(r, Some("ann"), "ann").await;
        }
    }
}
