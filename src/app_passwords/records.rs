//! The store of app passwords: their records (never a secret, only its
//! keyed digest), made, listed and revoked, and their last uses, written
//! in batches apart from the records.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use regauth_providers::{Identity, Outcome, SecretString, APP_PASSWORD_PREFIX};

use super::limit::AccessLimit;
use serde::{Deserialize, Serialize};

use super::{
    lock_key, owner_key, unix, AppPasswordError, AppPasswords, Limit, LimitError, PASSWORDS,
};
use crate::ops::audit::Safe;
use crate::state::{Store, StoreError};

/// Last use per app password, apart from the record: a use racing a
/// revocation can never bring the record back.
const LAST_USED: &str = "app_password_used";

/// How long a creation waits for another of the same owner's to finish.
const CREATE_WAIT: Duration = Duration::from_secs(5);
/// How long a lock in the shared backend lasts should its holder never
/// release it (creations here, re-checks in [`super::recheck`]).
pub(super) const LOCK_HOLD: Duration = Duration::from_secs(10);

/// Last uses are written together, at most this often: a stream of
/// logins costs no store write per login.
const USES_EVERY: u64 = 30;

/// One app password, as stored (never its secret).
#[derive(Clone, Serialize, Deserialize)]
pub struct AppPassword {
    /// Its id (the part of the password after `rga_` and before `_`).
    pub id: String,
    /// The owner's provider.
    pub provider: String,
    /// The owner (their subject at that provider).
    pub subject: String,
    /// What the owner called it ("laptop", "ci-nightly").
    pub name: String,
    /// When it was made, in seconds since the epoch.
    pub created: u64,
    /// When it stops working, in seconds since the epoch.
    pub expires: u64,
    /// The repositories and actions it is narrowed to, as stored; empty:
    /// the owner's rights. [`AppPassword::limit`] is what it means.
    #[serde(default)]
    pub limit: Vec<AccessLimit>,
    /// The owner's account id when their provider has one (LDAP
    /// `entryUUID`, OIDC `sub`): a new account under the same name does
    /// not inherit the app password.
    #[serde(default)]
    pub account: Option<String>,
    /// HMAC-SHA256 of the secret, hex.
    pub(super) digest: String,
    /// The revocation ledger it was made under (none: made before
    /// ledgers): a ledger deleted and made anew, which forgets
    /// revocations, ends it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) ledger: Option<String>,
    /// The client a device login was approved for (`docker`,
    /// `regauth-login`): this app password is that login's identity
    /// token ([`super::device`]); `None` for one made on the page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device: Option<String>,
    /// The client networks it works from (`10.20.0.0/16`); empty: any.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub networks: Vec<String>,
    /// Set when this is a team's robot, not a person's app password
    /// ([`super::robots`]): its subject is then the robot's login name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) team: Option<super::robots::Team>,
}

/// Everything but the digest of the secret.
impl fmt::Debug for AppPassword {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AppPassword")
            .field("id", &self.id)
            .field("provider", &self.provider)
            .field("subject", &self.subject)
            .field("name", &self.name)
            .field("created", &self.created)
            .field("expires", &self.expires)
            .field("limit", &self.limit)
            .field("account", &self.account)
            .field("ledger", &self.ledger)
            .field("device", &self.device)
            .field("networks", &self.networks)
            .field("team", &self.team)
            .finish_non_exhaustive()
    }
}

impl AppPassword {
    /// The limit it is made with, compiled.
    pub fn limit(&self) -> Limit {
        if self.limit.is_empty() {
            Limit::Unlimited
        } else {
            Limit::from_stored(&self.limit)
        }
    }

    /// One audit line about this app password (never its secret): `event`
    /// (`app_password_created`, `_used`, `_revoked`), and `by` whom when
    /// not its owner (empty otherwise).
    pub fn audit(&self, event: &'static str, by: &str) {
        tracing::info!(
            target: "regauth::audit",
            event,
            id = %self.id,
            name = %Safe(&self.name),
            subject = %Safe(&self.subject),
            provider = %self.provider,
            expires = self.expires,
            limited = !self.limit.is_empty(),
            by = %Safe(by),
            "{}",
            event.replace('_', " ")
        );
    }
}

/// What else an app password is made with: the device login it is the
/// identity token of, the networks it works from.
pub(super) struct Made<'a> {
    pub(super) device: Option<&'a str>,
    pub(super) networks: &'a [ipnet::IpNet],
    /// The team whose robot it is.
    pub(super) team: Option<super::robots::Team>,
}

impl AppPassword {
    /// The networks it works from, parsed; `None` when a stored one does
    /// not parse (it then works from nowhere).
    pub fn parsed_networks(&self) -> Option<Vec<ipnet::IpNet>> {
        self.networks
            .iter()
            .map(|n| regauth_providers::parse_network(n))
            .collect()
    }
}

/// An app password with its last use, for the page.
#[derive(Clone, Debug)]
pub struct Listed {
    /// The app password.
    pub password: AppPassword,
    /// When it last logged in (at most once per verdict TTL is recorded).
    pub last_used: Option<u64>,
}

/// An app password revoked on the page.
#[derive(Debug)]
pub struct Revocation {
    /// The app password, now revoked.
    pub password: AppPassword,
    /// Whether the one who revoked it is an admin now.
    pub by_admin: bool,
}

/// `rga_<id>_<secret>` split, if it has that shape.
pub(super) fn parse(password: &str) -> Option<(&str, &str)> {
    let rest = password.strip_prefix(APP_PASSWORD_PREFIX)?;
    let (id, secret) = rest.split_once('_')?;
    let base32 = |s: &str| {
        s.bytes()
            .all(|b| b.is_ascii_lowercase() || (b'2'..=b'7').contains(&b))
    };
    (id.len() == 16 && secret.len() == 52 && base32(id) && base32(secret)).then_some((id, secret))
}

/// `N` random bytes in lower-case base32, the alphabet [`parse`] takes.
pub(super) fn random_base32<const N: usize>() -> Result<String, AppPasswordError> {
    let raw = crate::random::random_bytes::<N>()?;
    Ok(data_encoding::BASE32_NOPAD.encode(&raw).to_lowercase())
}

/// Whether `who` owns `password`: the same provider and name, and the
/// same account where both know it (a new account under an old name does
/// not see the old one's).
fn owns(who: &Identity, password: &AppPassword) -> bool {
    who.provider == password.provider
        && who.subject == password.subject
        && match (&who.account_id, &password.account) {
            (Some(a), Some(b)) => a == b,
            _ => true,
        }
}

/// Formatting characters (bidirectional overrides, zero-width marks) that
/// could make a name look like another.
pub(super) fn invisible(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{ad}' | '\u{34f}' | '\u{61c}' | '\u{115f}' | '\u{1160}' | '\u{180b}'..='\u{180f}'
            | '\u{3164}' | '\u{fe00}'..='\u{fe0f}' | '\u{ffa0}' | '\u{e0000}'..='\u{e0fff}'
            | '\u{200b}'..='\u{200f}'
            | '\u{2028}'..='\u{202e}' | '\u{2060}'..='\u{206f}' | '\u{feff}' | '\u{fff9}'..='\u{fffb}')
}

impl AppPasswords {
    pub(super) fn digest(&self, id: &str, secret: &str) -> String {
        let mut context = aws_lc_rs::hmac::Context::with_key(&self.digest_key);
        context.update(id.as_bytes());
        context.update(b"\0");
        context.update(secret.as_bytes());
        hex::encode(context.sign().as_ref())
    }

    /// Whether `secret` is the one whose digest under `id` is `digest`
    /// (compared in constant time).
    pub(super) fn secret_holds(&self, id: &str, secret: &str, digest: &str) -> bool {
        super::ct_eq(&self.digest(id, secret), digest)
    }

    /// Makes an app password for the owner, narrowed to `limit`, and
    /// audits it; the secret is returned once and never stored.
    pub async fn create(
        &self,
        owner: &Identity,
        name: &str,
        lifetime: Duration,
        limit: &Limit,
    ) -> Result<(AppPassword, SecretString), AppPasswordError> {
        let made = Made {
            device: None,
            networks: &[],
            team: None,
        };
        self.create_for(owner, name, lifetime, limit, made).await
    }

    /// [`AppPasswords::create`] of an app password that works only from
    /// `networks` (at most [`super::MAX_NETWORKS`]; none: any).
    pub async fn create_within(
        &self,
        owner: &Identity,
        name: &str,
        lifetime: Duration,
        limit: &Limit,
        networks: &[ipnet::IpNet],
    ) -> Result<(AppPassword, SecretString), AppPasswordError> {
        if networks.len() > super::MAX_NETWORKS {
            return Err(AppPasswordError::Networks);
        }
        let made = Made {
            device: None,
            networks,
            team: None,
        };
        self.create_for(owner, name, lifetime, limit, made).await
    }

    /// [`AppPasswords::create`], for the device login of `made.device`
    /// (its client) when there is one, bound to `made.networks`.
    pub(super) async fn create_for(
        &self,
        owner: &Identity,
        name: &str,
        lifetime: Duration,
        limit: &Limit,
        made: Made<'_>,
    ) -> Result<(AppPassword, SecretString), AppPasswordError> {
        let name = name.trim();
        if name.is_empty()
            || name.chars().count() > super::MAX_NAME_CHARS
            || name.chars().any(invisible)
        {
            return Err(AppPasswordError::Name);
        }
        let max_days = self.config.max_lifetime.as_secs() / 86400;
        if lifetime < Duration::from_secs(86400) || lifetime > self.config.max_lifetime {
            return Err(AppPasswordError::Lifetime(max_days.max(1)));
        }
        // stored, it would read as no limit at all
        if limit.reaches_nothing() {
            return Err(LimitError::Nothing.into());
        }
        // The account as its provider (or its last sign-in) sees it now:
        // a session of someone locked or offboarded mints nothing.
        match self
            .current(&owner.provider, &owner.subject, owner.account_id.as_deref())
            .await
        {
            Ok(_) => {}
            Err(Outcome::Unavailable(_)) => return Err(AppPasswordError::OwnerUnavailable),
            Err(_) => return Err(AppPasswordError::Owner),
        }
        // One creation per owner at a time on every replica, so that
        // `max_per_user` holds: a counter of one in the shared backend,
        // that expires should a replica die holding it.
        let lock = lock_key("apw-create", &owner_key(&owner.provider, &owner.subject));
        self.hold(&lock).await?;
        let made = self.create_held(owner, name, lifetime, limit, made).await;
        self.release(&lock).await;
        if let Ok((password, _)) = &made {
            password.audit("app_password_created", "");
        }
        made
    }

    /// [`AppPasswords::create`] once the owner's creation lock is held.
    async fn create_held(
        &self,
        owner: &Identity,
        name: &str,
        lifetime: Duration,
        limit: &Limit,
        made: Made<'_>,
    ) -> Result<(AppPassword, SecretString), AppPasswordError> {
        let mine = self.list(Some(owner)).await?;
        if mine.len() >= self.config.max_per_user {
            return Err(AppPasswordError::TooMany(mine.len()));
        }
        self.create_record(owner, name, lifetime, limit, made).await
    }

    /// Writes a new record for `owner` (its checks done, its lock held).
    pub(super) async fn create_record(
        &self,
        owner: &Identity,
        name: &str,
        lifetime: Duration,
        limit: &Limit,
        made: Made<'_>,
    ) -> Result<(AppPassword, SecretString), AppPasswordError> {
        let id = random_base32::<10>()?;
        let secret = random_base32::<32>()?;
        let created = unix(crate::clock::now());
        let password = AppPassword {
            id: id.clone(),
            provider: owner.provider.clone(),
            subject: owner.subject.clone(),
            name: name.to_owned(),
            created,
            expires: created + lifetime.as_secs(),
            limit: limit.to_stored(),
            account: owner.account_id.clone(),
            digest: self.digest(&id, &secret),
            ledger: Some(self.ledger.id().await?),
            device: made.device.map(str::to_owned),
            networks: made.networks.iter().map(ToString::to_string).collect(),
            team: made.team,
        };
        let record = serde_json::to_string(&password).map_err(|e| StoreError(e.to_string()))?;
        self.store.put_record(PASSWORDS, &id, &record).await?;
        let text = format!("{APP_PASSWORD_PREFIX}{id}_{secret}");
        Ok((password, SecretString::from(text)))
    }

    /// App passwords of one owner, or everyone's (`None`), newest first;
    /// expired ones are left out and deleted. Team robots are not app
    /// passwords: they are listed by team ([`super::robots`]).
    pub async fn list(&self, owner: Option<&Identity>) -> Result<Vec<Listed>, AppPasswordError> {
        self.listed(|p| p.team.is_none() && owner.is_none_or(|owner| owns(owner, p)))
            .await
    }

    /// The records `wanted` takes, newest first, with their last use;
    /// expired ones are left out and deleted.
    pub(super) async fn listed(
        &self,
        wanted: impl Fn(&AppPassword) -> bool,
    ) -> Result<Vec<Listed>, AppPasswordError> {
        let mut used: BTreeMap<String, u64> = self
            .store
            .records(LAST_USED)
            .await?
            .into_iter()
            .filter_map(|(id, at)| Some((id, at.parse().ok()?)))
            .collect();
        used.extend(self.pending_uses());
        let now = unix(crate::clock::now());
        let mut out = Vec::new();
        for (id, text) in self.store.records(PASSWORDS).await? {
            let Ok(password) = serde_json::from_str::<AppPassword>(&text) else {
                tracing::warn!(id = %Safe(&id), "an unreadable app-password record");
                continue;
            };
            if password.expires <= now {
                self.forget(&id).await;
                continue;
            }
            if wanted(&password) {
                out.push(Listed {
                    last_used: used.get(&id).copied(),
                    password,
                });
            }
        }
        out.sort_by_key(|l| std::cmp::Reverse(l.password.created));
        Ok(out)
    }

    async fn forget(&self, id: &str) {
        if let Err(e) = delete(self.store.as_ref(), id).await {
            tracing::warn!(id = %Safe(id), error = %e, "could not delete an app-password record");
        }
    }

    /// Revokes the app password `id` if `by` owns it (or `admin`): it stops
    /// working within `cache.verdict_ttl`.
    pub async fn revoke(
        &self,
        id: &str,
        by: &Identity,
        admin: bool,
    ) -> Result<AppPassword, AppPasswordError> {
        let password = self
            .find(id)
            .await?
            .filter(|p| p.team.is_none())
            .ok_or(AppPasswordError::NotFound)?;
        if !(owns(by, &password) || admin) {
            return Err(AppPasswordError::NotFound);
        }
        end(self.store.as_ref(), &self.ledger, &password).await?;
        Ok(password)
    }

    /// The record of app password `id`, if there is a readable one.
    pub(super) async fn find(&self, id: &str) -> Result<Option<AppPassword>, StoreError> {
        let found = self.store.get_record(PASSWORDS, id).await?;
        Ok(found.and_then(|text| serde_json::from_str::<AppPassword>(&text).ok()))
    }

    /// Takes a lock in the shared backend, waiting [`CREATE_WAIT`] at
    /// most for another replica's to end; it lasts [`LOCK_HOLD`] should
    /// this process never give it back.
    pub(super) async fn hold(&self, lock: &str) -> Result<(), AppPasswordError> {
        let deadline = std::time::Instant::now() + CREATE_WAIT;
        while !self.store.take(lock, 1, LOCK_HOLD).await? {
            if std::time::Instant::now() > deadline {
                return Err(AppPasswordError::Busy);
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        Ok(())
    }

    /// Gives back a lock [`AppPasswords::hold`] took.
    pub(super) async fn release(&self, lock: &str) {
        if let Err(e) = self.store.give_back(lock).await {
            tracing::warn!(error = %e, "could not release a lock in the state backend; it expires by itself");
        }
    }

    /// Notes a use of app password `id`; every [`USES_EVERY`] seconds the
    /// uses noted since are written in one batch, in a task of its own
    /// (never on the login's path).
    pub(super) fn record_use(&self, id: &str) {
        let now = unix(crate::clock::now());
        let batch = {
            let mut uses = self.uses.lock().unwrap_or_else(|p| p.into_inner());
            uses.1.insert(id.to_owned(), now);
            if now >= uses.0 + USES_EVERY {
                uses.0 = now;
                Some(std::mem::take(&mut uses.1))
            } else {
                None
            }
        };
        let Some(batch) = batch else { return };
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let store = self.store.clone();
        runtime.spawn(async move {
            let entries: Vec<(String, String)> = batch
                .into_iter()
                .map(|(id, at)| (id, at.to_string()))
                .collect();
            if let Err(e) = store.put_records(LAST_USED, &entries).await {
                tracing::warn!(error = %e, uses = entries.len(), "could not record app passwords' last use");
            }
        });
    }

    /// Uses noted and not written yet.
    fn pending_uses(&self) -> BTreeMap<String, u64> {
        self.uses
            .lock()
            .map(|uses| uses.1.clone())
            .unwrap_or_default()
    }
}

/// Deletes app password `id` and its last use (which, kept apart, can
/// never bring it back: a failure to delete it is only logged).
async fn delete(store: &dyn Store, id: &str) -> Result<(), StoreError> {
    store.delete_record(PASSWORDS, id).await?;
    if let Err(e) = store.delete_record(LAST_USED, id).await {
        tracing::warn!(id = %Safe(id), error = %e, "could not delete an app password's last use");
    }
    Ok(())
}

/// The ledger's key of app password `id`'s revocation.
pub(super) fn ended_key(id: &str) -> String {
    format!("app-password:{id}")
}

/// Revokes an app password: recorded in the ledger until it would have
/// expired (so its record put back cannot bring it back), then deleted.
pub(super) async fn end(
    store: &dyn Store,
    ledger: &crate::refresh::Ledger,
    password: &AppPassword,
) -> Result<(), StoreError> {
    ledger
        .end(&ended_key(&password.id), password.expires)
        .await?;
    delete(store, &password.id).await
}

/// Revokes the app passwords of `subject` (at any provider, any case) or,
/// with `None`, everyone's, straight in the state backend: what `regauth
/// tokens revoke` does when someone leaves or a key leaked. The revoked
/// ones, each with an audit line.
pub async fn revoke_every(
    store: &dyn Store,
    ledger: &crate::refresh::Ledger,
    subject: Option<&str>,
) -> Result<Vec<AppPassword>, StoreError> {
    let mut revoked = Vec::new();
    for (id, text) in store.records(PASSWORDS).await? {
        let password = serde_json::from_str::<AppPassword>(&text).ok();
        let theirs = subject.is_none_or(|s| {
            password
                .as_ref()
                .is_some_and(|p| p.subject.eq_ignore_ascii_case(s.trim()))
        });
        if !theirs {
            continue;
        }
        match password {
            Some(password) => {
                end(store, ledger, &password).await?;
                if password.team.is_some() {
                    password.robot_audit("robot_revoked", "regauth tokens revoke");
                } else {
                    password.audit("app_password_revoked", "regauth tokens revoke");
                }
                revoked.push(password);
            }
            None => delete(store, &id).await?,
        }
    }
    // Their sign-ins too: what stood in for an OIDC provider is gone, so
    // a page session still open can mint nothing new.
    super::recheck::forget_sign_ins(store, subject).await?;
    Ok(revoked)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::app_passwords::testing::passwords;

    #[test]
    fn only_well_formed_app_passwords_parse() {
        let id = "a".repeat(16);
        let secret = "b".repeat(52);
        assert_eq!(
            parse(&format!("rga_{id}_{secret}")),
            Some((&id[..], &secret[..]))
        );
        for bad in [
            format!("rga_{id}{secret}"),
            format!("rga_{id}_{secret}x"),
            format!("rga_{}_{secret}", "A".repeat(16)),
            format!("rga_{id}_{}", "1".repeat(52)),
            format!("rgb_{id}_{secret}"),
            "rga_".to_owned(),
        ] {
            assert_eq!(parse(&bad), None, "{bad}");
        }
    }

    #[tokio::test]
    async fn a_made_password_parses_is_listed_and_its_secret_is_never_kept() {
        let passwords = passwords();
        let owner = Identity::new("alice", "local");
        let limit = Limit::from_form(["dev/**"], ["pull"]).unwrap();
        let (made, secret) = passwords
            .create(&owner, " laptop ", Duration::from_secs(86400), &limit)
            .await
            .unwrap();
        use regauth_providers::ExposeSecret as _;
        let (id, raw) = parse(secret.expose_secret()).unwrap();
        assert_eq!((id, made.name.as_str()), (made.id.as_str(), "laptop"));
        assert!(!format!("{made:?}").contains(&made.digest));
        let stored = passwords.store.get_record(PASSWORDS, id).await.unwrap();
        assert!(!stored.unwrap().contains(raw), "the secret is not stored");
        let listed = passwords.list(Some(&owner)).await.unwrap();
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].password.limit, limit.to_stored());
        // someone else's list does not show it
        let other = Identity::new("bob", "local");
        assert!(passwords.list(Some(&other)).await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn names_and_lifetimes_are_checked() {
        let passwords = passwords();
        let owner = Identity::new("alice", "local");
        let day = Duration::from_secs(86400);
        for name in ["", "   ", "a\u{202e}b", &"x".repeat(65)] {
            let made = passwords.create(&owner, name, day, &Limit::Unlimited).await;
            assert!(matches!(made, Err(AppPasswordError::Name)), "{name:?}");
        }
        for lifetime in [Duration::from_secs(3600), day * 366] {
            let made = passwords
                .create(&owner, "n", lifetime, &Limit::Unlimited)
                .await;
            assert!(matches!(made, Err(AppPasswordError::Lifetime(365))));
        }
        // a limit that reaches nothing is refused, never kept as no limit
        let nothing = Limit::from_stored(&[]);
        let made = passwords.create(&owner, "n", day, &nothing).await;
        assert!(matches!(
            made,
            Err(AppPasswordError::Limit(LimitError::Nothing))
        ));
        // an owner their provider no longer knows makes none
        let gone = Identity::new("gone", "local");
        let made = passwords.create(&gone, "n", day, &Limit::Unlimited).await;
        assert!(matches!(made, Err(AppPasswordError::Owner)));
    }
}
