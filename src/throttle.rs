//! The failed-login throttle: what keeps a CI job retrying a stale
//! password, a password sprayer and a flood of guesses from locking
//! directory accounts or hammering an identity provider.
//!
//! Three budgets, each checked before a provider is asked:
//!
//! - per account: failures per (provider, the provider's normalized form
//!   of the username), keyed by an HMAC so that no username is kept. An
//!   attempt is reserved before the provider is asked, so concurrent
//!   guesses count; only a success of the same subject on the same
//!   provider resets it.
//! - per client: failures per client network (an IPv4 address, an IPv6
//!   /64, which a client cannot rotate out of), across all usernames.
//! - per provider: failed attempts per second reaching each provider (a
//!   token bucket, reserved like the account budget), whoever sends them.
//!
//! Every table is bounded in entries, and every entry is a fixed size.

use std::net::IpAddr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aws_lc_rs::hmac;
use moka::sync::Cache;

/// At most this many accounts and client networks are tracked at once.
const MAX_ENTRIES: u64 = 100_000;

/// The budgets (`cache.max_failures`, `cache.max_client_failures`,
/// `cache.max_provider_failures_per_second`, `cache.failure_window`).
#[derive(Clone, Debug)]
pub struct Budgets {
    /// Failures per account within the window; 0 disables the throttle.
    pub per_account: u32,
    /// Failures per client network within the window; 0 disables it.
    pub per_client: u32,
    /// Failed attempts per second reaching one provider; 0 disables it.
    pub per_provider_per_second: u32,
    /// How long failures are remembered.
    pub window: Duration,
}

/// Why an attempt may not go ahead.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Held {
    /// This account failed too often: 401, the provider is not asked.
    Account,
    /// This client network failed too often: 401.
    Client,
    /// The provider gets too many failed attempts from everyone: 503.
    Provider,
}

/// Whether an attempt reaches the identity provider itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reach {
    /// A password or an opaque token: the IdP checks it (and may lock the
    /// account): the provider's budget applies.
    Upstream,
    /// A JWT checked against cached keys: only the account and client
    /// budgets apply.
    Local,
}

struct Bucket {
    tokens: f64,
    refilled: Instant,
}

/// The throttle's state.
pub struct Throttle {
    key: hmac::Key,
    budgets: Budgets,
    accounts: Cache<[u8; 32], Arc<AtomicU32>>,
    clients: Cache<u128, Arc<AtomicU32>>,
    providers: Mutex<std::collections::HashMap<String, Arc<Mutex<Bucket>>>>,
}

/// An attempt allowed to reach a provider; settle it with the outcome.
/// Dropped unsettled (a cancelled request), it is released.
pub struct Reservation {
    account: Option<(Arc<AtomicU32>, [u8; 32])>,
    bucket: Option<Arc<Mutex<Bucket>>>,
    settled: bool,
}

impl Throttle {
    /// A throttle with these budgets. `secret` keys the account digests.
    pub fn new(budgets: Budgets, secret: &[u8]) -> Self {
        Self {
            key: hmac::Key::new(hmac::HMAC_SHA256, secret),
            accounts: Cache::builder()
                .max_capacity(MAX_ENTRIES)
                .time_to_live(budgets.window)
                .build(),
            clients: Cache::builder()
                .max_capacity(MAX_ENTRIES)
                .time_to_live(budgets.window)
                .build(),
            providers: Mutex::new(Default::default()),
            budgets,
        }
    }

    fn account_key(&self, provider: &str, normalized_user: &str) -> [u8; 32] {
        let mut ctx = hmac::Context::with_key(&self.key);
        for part in [provider.as_bytes(), normalized_user.as_bytes()] {
            ctx.update(&(part.len() as u64).to_be_bytes());
            ctx.update(part);
        }
        let mut out = [0u8; 32];
        out.copy_from_slice(ctx.sign().as_ref());
        out
    }

    /// Whether this client network may try at all.
    pub fn client_allowed(&self, client: IpAddr) -> Result<(), Held> {
        if self.budgets.per_client == 0 {
            return Ok(());
        }
        match self.clients.get(&network_of(client)) {
            Some(count) if count.load(Ordering::Relaxed) >= self.budgets.per_client => {
                Err(Held::Client)
            }
            _ => Ok(()),
        }
    }

    /// Counts a failure against the client network.
    pub fn client_failed(&self, client: IpAddr) {
        if self.budgets.per_client == 0 {
            return;
        }
        self.clients
            .get_with(network_of(client), || Arc::new(AtomicU32::new(0)))
            .fetch_add(1, Ordering::Relaxed);
    }

    /// Reserves one attempt of this account at this provider, or says
    /// which budget is spent.
    pub fn reserve(
        &self,
        provider: &str,
        normalized_user: &str,
        reach: Reach,
    ) -> Result<Reservation, Held> {
        let mut reservation = Reservation {
            account: None,
            bucket: None,
            settled: false,
        };
        if self.budgets.per_account > 0 {
            let key = self.account_key(provider, normalized_user);
            let count = self.accounts.get_with(key, || Arc::new(AtomicU32::new(0)));
            let limit = self.budgets.per_account;
            let taken = count.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < limit).then_some(n + 1)
            });
            if taken.is_err() {
                reservation.settled = true;
                return Err(Held::Account);
            }
            reservation.account = Some((count, key));
        }
        if self.budgets.per_provider_per_second > 0 && reach == Reach::Upstream {
            let bucket = self.bucket(provider);
            if !take(&bucket, self.budgets.per_provider_per_second) {
                // gives the account slot back on drop
                return Err(Held::Provider);
            }
            reservation.bucket = Some(bucket);
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

    /// The attempt failed (a wrong secret): it stays counted.
    pub fn failed(&self, mut reservation: Reservation) {
        reservation.settled = true;
    }

    /// The attempt did not fail (an unknown user, an unreachable
    /// provider): it is given back.
    pub fn released(&self, reservation: Reservation) {
        drop(reservation);
    }

    /// The attempt succeeded for `subject`: the account's failures are
    /// forgotten if the subject is the account that was tried (a JWT login
    /// that ignores the typed username resets nothing).
    pub fn succeeded(
        &self,
        mut reservation: Reservation,
        normalized_user: &str,
        normalized_subject: &str,
    ) {
        if normalized_user == normalized_subject {
            if let Some((_, key)) = reservation.account.take() {
                self.accounts.invalidate(&key);
            }
        }
        drop(reservation);
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

impl Drop for Reservation {
    fn drop(&mut self) {
        if self.settled {
            return;
        }
        if let Some((count, _)) = &self.account {
            let _ = count.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1));
        }
        if let Some(bucket) = &self.bucket {
            let mut b = bucket.lock().unwrap_or_else(|p| p.into_inner());
            b.tokens += 1.0;
        }
    }
}

/// The network a client cannot rotate out of: an IPv4 address, or the
/// /64 of an IPv6 address (IPv4-mapped addresses count as IPv4).
pub fn network_of(ip: IpAddr) -> u128 {
    match ip.to_canonical() {
        IpAddr::V4(v4) => u128::from(u32::from(v4)),
        IpAddr::V6(v6) => (u128::from(v6) >> 64 << 64) | 1,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn throttle(per_account: u32, per_client: u32, per_second: u32) -> Throttle {
        Throttle::new(
            Budgets {
                per_account,
                per_client,
                per_provider_per_second: per_second,
                window: Duration::from_secs(60),
            },
            b"test key",
        )
    }

    #[test]
    fn reservations_count_before_the_answer() {
        let t = throttle(3, 0, 0);
        let held: Vec<_> = (0..3)
            .map(|_| t.reserve("corp", "erin", Reach::Upstream).unwrap())
            .collect();
        assert_eq!(
            t.reserve("corp", "erin", Reach::Upstream).err(),
            Some(Held::Account),
            "in flight counts"
        );
        assert!(
            t.reserve("corp", "other", Reach::Upstream).is_ok(),
            "another account"
        );
        assert!(
            t.reserve("other", "erin", Reach::Upstream).is_ok(),
            "another provider"
        );
        let mut held = held.into_iter();
        t.released(held.next().unwrap());
        let again = t.reserve("corp", "erin", Reach::Upstream).unwrap();
        for r in held {
            t.failed(r);
        }
        t.failed(again);
        assert_eq!(
            t.reserve("corp", "erin", Reach::Upstream).err(),
            Some(Held::Account)
        );
    }

    #[test]
    fn only_the_same_subject_resets_an_account() {
        let t = throttle(2, 0, 0);
        t.failed(t.reserve("corp", "erin", Reach::Upstream).unwrap());
        let r = t.reserve("corp", "erin", Reach::Upstream).unwrap();
        t.succeeded(r, "erin", "someone-else");
        t.failed(t.reserve("corp", "erin", Reach::Upstream).unwrap());
        assert!(
            t.reserve("corp", "erin", Reach::Upstream).is_err(),
            "not reset by another subject"
        );
        let t = throttle(2, 0, 0);
        t.failed(t.reserve("corp", "erin", Reach::Upstream).unwrap());
        let r = t.reserve("corp", "erin", Reach::Upstream).unwrap();
        t.succeeded(r, "erin", "erin");
        t.failed(t.reserve("corp", "erin", Reach::Upstream).unwrap());
        assert!(
            t.reserve("corp", "erin", Reach::Upstream).is_ok(),
            "reset by erin herself"
        );
    }

    #[test]
    fn clients_are_counted_by_network() {
        let t = throttle(0, 2, 0);
        let a: IpAddr = "2001:db8:1:2::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:ffff::9".parse().unwrap();
        let c: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        t.client_failed(a);
        t.client_failed(b);
        assert_eq!(t.client_allowed(a), Err(Held::Client));
        assert_eq!(t.client_allowed(b), Err(Held::Client), "same /64");
        assert!(t.client_allowed(c).is_ok(), "another /64");
        let v4: IpAddr = "10.0.0.1".parse().unwrap();
        let mapped: IpAddr = "::ffff:10.0.0.1".parse().unwrap();
        assert_eq!(network_of(v4), network_of(mapped));
        assert_ne!(network_of(v4), network_of("10.0.0.2".parse().unwrap()));
    }

    #[test]
    fn the_provider_budget_holds_under_a_burst() {
        let t = throttle(0, 0, 10);
        let mut allowed = 0;
        for i in 0..200 {
            if let Ok(r) = t.reserve("corp", &format!("user{i}"), Reach::Upstream) {
                allowed += 1;
                t.failed(r);
            }
        }
        assert!(
            (50..=52).contains(&allowed),
            "{allowed}: five seconds' worth"
        );
        // successes give their token back
        let t = throttle(0, 0, 1);
        for _ in 0..20 {
            let r = t.reserve("corp", "ann", Reach::Upstream).unwrap();
            t.succeeded(r, "ann", "ann");
        }
    }
}
