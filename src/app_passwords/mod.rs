//! App passwords: scoped, expiring, revocable registry passwords that a
//! signed-in user makes on regauth's page (`/ui`), for people whose IdP
//! wants a second factor that `docker login` cannot give.
//!
//! An app password is `rga_<id>_<secret>`: the id (80 random bits) finds
//! the record, the secret (256 random bits) is checked against a keyed
//! digest of it (HMAC-SHA256 under `app_passwords.key_file`), compared in
//! constant time. Records live in the state backend (the embedded file, or
//! Redis shared by replicas), so a revocation reaches every replica; a
//! cached verdict lasts `cache.verdict_ttl` at most.
//!
//! At use, the login is the owner's: the Basic username must be theirs,
//! their groups come from their provider when it can look users up (LDAP
//! through its service account, static users), or else from their last
//! browser sign-in, for `sign_in_max_age`. The policy decides as for any
//! login of theirs, and an app password narrowed to some repositories
//! never gets more than that.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use regauth_providers::{
    AccessLimit, Credentials, Error as ProviderError, ExposeSecret, Identity, IdentityProvider,
    Kind, Outcome, Rejection, Renewal, Renewed, SecretShape, SecretString, APP_PASSWORD_PREFIX,
};
use serde::{Deserialize, Serialize};

use crate::domain::pattern::{Pattern, Placeholders};
use crate::domain::policy::Grant;
use crate::domain::scope::{Action, ResourceType};
use crate::ops::audit::Safe;
use crate::state::{Store, StoreError};

pub mod config;
pub use self::config::{AppPasswordsConfig, PROVIDER_NAME};

/// The state backend's collection of app passwords.
pub(crate) const PASSWORDS: &str = "app_password";
/// Last use per app password, apart from the record: a use racing a
/// revocation can never bring the record back.
const LAST_USED: &str = "app_password_used";
/// Each user's last browser sign-in (groups and claims).
const SIGN_INS: &str = "sign_in";

/// The longest a name may be.
pub const MAX_NAME_CHARS: usize = 64;
/// At most this many repository limits per app password.
pub const MAX_LIMITS: usize = 10;
/// The longest repository pattern of a limit (the registry's name limit).
pub const MAX_PATTERN_BYTES: usize = 255;

/// One app password, as stored (never its secret).
#[derive(Clone, Debug, Serialize, Deserialize)]
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
    /// The repositories and actions it is narrowed to; empty: the owner's
    /// rights.
    #[serde(default)]
    pub limit: Vec<AccessLimit>,
    /// The owner's account id when their provider has one (LDAP
    /// `entryUUID`, OIDC `sub`): a new account under the same name does
    /// not inherit the app password.
    #[serde(default)]
    pub account: Option<String>,
    /// HMAC-SHA256 of the secret, hex.
    digest: String,
    /// The revocation ledger it was made under (none: made before
    /// ledgers): a ledger deleted and made anew, which forgets
    /// revocations, ends it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    ledger: Option<String>,
}

impl AppPassword {
    /// One audit line about this app password (never its secret): `event`
    /// (`app_password_created`, `_used`, `_revoked`), and `by` whom when
    /// not its owner (empty otherwise).
    pub fn audit(&self, event: &'static str, by: &str) {
        tracing::info!(
            target: "regauth::ops::audit",
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

/// An app password with its last use, for the page.
#[derive(Clone, Debug)]
pub struct Listed {
    /// The app password.
    pub password: AppPassword,
    /// When it last logged in (at most once per verdict TTL is recorded).
    pub last_used: Option<u64>,
}

/// A user's last browser sign-in: what their app passwords carry when
/// their provider cannot be asked again.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SignIn {
    /// Their groups then.
    pub groups: Vec<String>,
    /// Their claims then.
    pub claims: BTreeMap<String, String>,
    /// User or robot.
    pub kind: Kind,
    /// Their account id then, if their provider has one.
    #[serde(default)]
    pub account: Option<String>,
    /// When, in seconds since the epoch (or when the IdP last vouched for
    /// them again with the sign-in's refresh token).
    pub at: u64,
    /// The IdP's refresh token of the sign-in, sealed (the state backend
    /// never sees it): what asks the IdP about the user again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh: Option<String>,
    /// When the IdP was last asked (seconds since the epoch).
    #[serde(default)]
    pub checked: u64,
}

/// Why an app password could not be made, listed or revoked.
#[derive(Debug, thiserror::Error)]
pub enum AppPasswordError {
    /// Already `max_per_user`.
    #[error("you have {0} app passwords, the most allowed: revoke one first")]
    TooMany(usize),
    /// A name that is empty, too long or not printable.
    #[error("give it a name of 1 to {MAX_NAME_CHARS} printable characters")]
    Name,
    /// An expiry outside 1 day ..= `max_lifetime`.
    #[error("the expiry must be between 1 and {0} days")]
    Lifetime(u64),
    /// A repository limit that does not parse, or an unknown action.
    #[error("{0}")]
    Limit(String),
    /// No such app password (or not the caller's).
    #[error("no such app password")]
    NotFound,
    /// The state backend could not answer.
    #[error("the state backend: {0}")]
    Store(#[from] StoreError),
    /// No randomness for a secret.
    #[error("no randomness for a secret")]
    Random,
    /// The owner's provider no longer vouches for them (gone, locked,
    /// offboarded): a session does not outlive its account.
    #[error("your account cannot be confirmed: sign in again")]
    Owner,
    /// The owner's provider cannot be asked now.
    #[error("your account cannot be checked right now")]
    OwnerUnavailable,
    /// Another app password of the same owner is being made right now.
    #[error("another app password of yours is being made right now: try again")]
    Busy,
}

/// App passwords: their records, their checks, and the sign-ins behind
/// them.
pub struct AppPasswords {
    /// `[app_passwords]`.
    pub config: AppPasswordsConfig,
    store: Arc<dyn Store>,
    digest_key: aws_lc_rs::hmac::Key,
    /// The configured providers, for looking owners up again.
    providers: Vec<Arc<dyn IdentityProvider>>,
    /// How long a lookup may take.
    timeout: Duration,
    /// The page's sessions.
    pub sessions: crate::keys::seal::Sealer,
    /// The page's sign-ins under way (OIDC state, nonce, PKCE verifier).
    pub pending: crate::keys::seal::Sealer,
    /// The IdPs' refresh tokens in sign-in records.
    idp_refresh: crate::keys::seal::Sealer,
    /// One re-check at the IdP per user at a time.
    rechecks: moka::sync::Cache<String, Arc<tokio::sync::Mutex<()>>>,
    /// Where revocations are recorded so that a stored record put back
    /// cannot bring a revoked app password (or an ended session) back.
    ledger: Arc<crate::refresh::Ledger>,
    /// Uses not written yet: when the last batch was written, and the
    /// last use per id since (see [`AppPasswords::record_use`]).
    uses: std::sync::Mutex<(u64, BTreeMap<String, u64>)>,
}

/// How long a creation waits for another of the same owner's to finish.
const CREATE_WAIT: Duration = Duration::from_secs(5);
/// How long a creation lock lasts should its holder never release it.
const CREATE_HOLD: Duration = Duration::from_secs(10);

/// Last uses are written together, at most this often: a stream of
/// logins costs no store write per login.
const USES_EVERY: u64 = 30;

fn now() -> u64 {
    regauth_providers::clock::unix_seconds()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// `rga_<id>_<secret>` split, if it has that shape.
fn parse(password: &str) -> Option<(&str, &str)> {
    let rest = password.strip_prefix(APP_PASSWORD_PREFIX)?;
    let (id, secret) = rest.split_once('_')?;
    let base32 = |s: &str| {
        s.bytes()
            .all(|b| b.is_ascii_lowercase() || (b'2'..=b'7').contains(&b))
    };
    (id.len() == 16 && secret.len() == 52 && base32(id) && base32(secret)).then_some((id, secret))
}

fn random_base32(bytes: usize) -> Result<String, AppPasswordError> {
    use aws_lc_rs::rand::SecureRandom as _;
    let mut raw = vec![0u8; bytes];
    aws_lc_rs::rand::SystemRandom::new()
        .fill(&mut raw)
        .map_err(|_| AppPasswordError::Random)?;
    Ok(data_encoding::BASE32_NOPAD.encode(&raw).to_lowercase())
}

/// The key of a user's records: provider names cannot hold `:`. The
/// subject is as the provider names it (static users are case-sensitive).
fn owner_key(provider: &str, subject: &str) -> String {
    format!("{provider}:{subject}")
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
fn invisible(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{ad}' | '\u{34f}' | '\u{61c}' | '\u{115f}' | '\u{1160}' | '\u{180b}'..='\u{180f}'
            | '\u{3164}' | '\u{fe00}'..='\u{fe0f}' | '\u{ffa0}' | '\u{e0000}'..='\u{e0fff}'
            | '\u{200b}'..='\u{200f}'
            | '\u{2028}'..='\u{202e}' | '\u{2060}'..='\u{206f}' | '\u{feff}' | '\u{fff9}'..='\u{fffb}')
}

impl AppPasswords {
    /// App passwords under `key` (at least 32 bytes, shared by replicas),
    /// kept in `store`; owners are looked up among `providers`.
    pub fn new(
        config: AppPasswordsConfig,
        key: &[u8],
        store: Arc<dyn Store>,
        providers: Vec<Arc<dyn IdentityProvider>>,
        timeout: Duration,
        ledger: Arc<crate::refresh::Ledger>,
    ) -> Self {
        let derived = aws_lc_rs::hmac::sign(
            &aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, key),
            b"regauth app-password digest key v1",
        );
        Self {
            config,
            store,
            digest_key: aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, derived.as_ref()),
            providers,
            timeout,
            sessions: crate::keys::seal::Sealer::new(key, b"regauth ui session v1"),
            pending: crate::keys::seal::Sealer::new(key, b"regauth ui sign-in v1"),
            idp_refresh: crate::keys::seal::Sealer::new(key, b"regauth idp refresh token v1"),
            rechecks: moka::sync::Cache::builder()
                .max_capacity(10_000)
                .time_to_idle(Duration::from_secs(300))
                .build(),
            ledger,
            uses: std::sync::Mutex::new((0, BTreeMap::new())),
        }
    }

    /// Notes a use of app password `id`; every [`USES_EVERY`] seconds the
    /// uses noted since are written in one batch, in a task of its own
    /// (never on the login's path).
    fn record_use(&self, id: &str) {
        let now = now();
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

    /// The state backend the records live in.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// The revocation ledger (ended page sessions are recorded there).
    pub fn ledger(&self) -> &crate::refresh::Ledger {
        &self.ledger
    }

    fn digest(&self, id: &str, secret: &str) -> String {
        let mut context = aws_lc_rs::hmac::Context::with_key(&self.digest_key);
        context.update(id.as_bytes());
        context.update(b"\0");
        context.update(secret.as_bytes());
        hex(context.sign().as_ref())
    }

    /// Makes an app password for the owner; the secret is returned once
    /// and never stored.
    pub async fn create(
        &self,
        owner: &Identity,
        name: &str,
        lifetime: Duration,
        limit: Vec<AccessLimit>,
    ) -> Result<(AppPassword, SecretString), AppPasswordError> {
        let name = name.trim();
        if name.is_empty() || name.chars().count() > MAX_NAME_CHARS || name.chars().any(invisible) {
            return Err(AppPasswordError::Name);
        }
        let max_days = self.config.max_lifetime.as_secs() / 86400;
        if lifetime < Duration::from_secs(86400) || lifetime > self.config.max_lifetime {
            return Err(AppPasswordError::Lifetime(max_days.max(1)));
        }
        check_limits(&limit)?;
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
        let lock = format!(
            "apw-create:{}",
            hex(&aws_lc_rs::digest::digest(
                &aws_lc_rs::digest::SHA256,
                owner_key(&owner.provider, &owner.subject).as_bytes()
            )
            .as_ref()[..16])
        );
        let deadline = std::time::Instant::now() + CREATE_WAIT;
        while !self.store.take(&lock, 1, CREATE_HOLD).await? {
            if std::time::Instant::now() > deadline {
                return Err(AppPasswordError::Busy);
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        let made = self.create_held(owner, name, lifetime, limit).await;
        if let Err(e) = self.store.give_back(&lock).await {
            tracing::warn!(error = %e, "could not release the app-password creation lock; it expires by itself");
        }
        made
    }

    /// [`AppPasswords::create`] once the owner's creation lock is held.
    async fn create_held(
        &self,
        owner: &Identity,
        name: &str,
        lifetime: Duration,
        limit: Vec<AccessLimit>,
    ) -> Result<(AppPassword, SecretString), AppPasswordError> {
        let mine = self.list(Some(owner)).await?;
        if mine.len() >= self.config.max_per_user {
            return Err(AppPasswordError::TooMany(mine.len()));
        }
        let id = random_base32(10)?;
        let secret = random_base32(32)?;
        let created = now();
        let password = AppPassword {
            id: id.clone(),
            provider: owner.provider.clone(),
            subject: owner.subject.clone(),
            name: name.to_owned(),
            created,
            expires: created + lifetime.as_secs(),
            limit,
            account: owner.account_id.clone(),
            digest: self.digest(&id, &secret),
            ledger: Some(self.ledger.id().await?),
        };
        let record = serde_json::to_string(&password).map_err(|e| StoreError(e.to_string()))?;
        self.store.put_record(PASSWORDS, &id, &record).await?;
        let text = format!("{APP_PASSWORD_PREFIX}{id}_{secret}");
        Ok((password, SecretString::from(text)))
    }

    /// App passwords of one owner, or everyone's (`None`), newest first;
    /// expired ones are left out and deleted.
    pub async fn list(&self, owner: Option<&Identity>) -> Result<Vec<Listed>, AppPasswordError> {
        let mut used: BTreeMap<String, u64> = self
            .store
            .records(LAST_USED)
            .await?
            .into_iter()
            .filter_map(|(id, at)| Some((id, at.parse().ok()?)))
            .collect();
        used.extend(self.pending_uses());
        let now = now();
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
            let theirs = owner.is_none_or(|owner| owns(owner, &password));
            if theirs {
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
        let found = self.store.get_record(PASSWORDS, id).await?;
        let password = found
            .and_then(|text| serde_json::from_str::<AppPassword>(&text).ok())
            .ok_or(AppPasswordError::NotFound)?;
        let theirs = owns(by, &password);
        if !(theirs || admin) {
            return Err(AppPasswordError::NotFound);
        }
        end(self.store.as_ref(), &self.ledger, &password).await?;
        Ok(password)
    }

    /// Keeps a browser sign-in's groups and claims for the owner's app
    /// passwords, with the IdP's refresh token (sealed) that asks about
    /// them again every `recheck_interval`.
    pub async fn remember_sign_in(
        &self,
        identity: &Identity,
        refresh_token: Option<&SecretString>,
    ) -> Result<(), AppPasswordError> {
        let owner = owner_key(&identity.provider, &identity.subject);
        let refresh = match refresh_token {
            Some(token) => Some(
                self.idp_refresh
                    .seal(owner.as_bytes(), token.expose_secret().as_bytes())
                    .map_err(|_| AppPasswordError::Random)?,
            ),
            None => None,
        };
        let sign_in = SignIn {
            groups: identity.groups.clone(),
            claims: identity.claims.clone(),
            kind: identity.kind,
            account: identity.account_id.clone(),
            at: now(),
            refresh,
            checked: now(),
        };
        let text = serde_json::to_string(&sign_in).map_err(|e| StoreError(e.to_string()))?;
        self.store
            .put_record(
                SIGN_INS,
                &owner_key(&identity.provider, &identity.subject),
                &text,
            )
            .await?;
        Ok(())
    }

    /// The owner's last browser sign-in, if one is kept.
    pub async fn sign_in_of(
        &self,
        provider: &str,
        subject: &str,
    ) -> Result<Option<SignIn>, AppPasswordError> {
        Ok(self
            .sign_in_record(provider, subject)
            .await?
            .map(|(sign_in, _)| sign_in))
    }

    /// The owner's last browser sign-in and its stored text.
    async fn sign_in_record(
        &self,
        provider: &str,
        subject: &str,
    ) -> Result<Option<(SignIn, String)>, AppPasswordError> {
        let text = self
            .store
            .get_record(SIGN_INS, &owner_key(provider, subject))
            .await?;
        Ok(text.and_then(|t| Some((serde_json::from_str(&t).ok()?, t))))
    }

    /// Whether this identity may see and revoke everyone's app passwords.
    pub fn is_admin(&self, identity: &Identity) -> bool {
        self.config.admin_groups.iter().any(|(provider, group)| {
            identity.provider == *provider && identity.groups.contains(group)
        })
    }

    /// Whether this user is an admin now, as their provider (or their last
    /// sign-in) says: a session does not keep rights its user lost.
    pub async fn is_admin_now(&self, provider: &str, subject: &str, account: Option<&str>) -> bool {
        match self.current(provider, subject, account).await {
            Ok(identity) => self.is_admin(&identity),
            Err(_) => false,
        }
    }

    /// Checks an app password presented as a registry password.
    async fn check(&self, credentials: &Credentials) -> Outcome {
        let presented = credentials.secret.expose_secret();
        let Some((id, secret)) = parse(presented) else {
            return Outcome::Rejected(Rejection::WrongSecret);
        };
        let unavailable = |e: StoreError| {
            Outcome::Unavailable(ProviderError::Upstream(format!("app passwords: {e}")))
        };
        let record = match self.store.get_record(PASSWORDS, id).await {
            Ok(record) => record,
            Err(e) => return unavailable(e),
        };
        let digest = self.digest(id, secret);
        let Some(password) = record.and_then(|t| serde_json::from_str::<AppPassword>(&t).ok())
        else {
            return Outcome::Rejected(Rejection::Other("no such app password (revoked?)".into()));
        };
        if aws_lc_rs::constant_time::verify_slices_are_equal(
            digest.as_bytes(),
            password.digest.as_bytes(),
        )
        .is_err()
        {
            return Outcome::Rejected(Rejection::WrongSecret);
        }
        // revoked, and its record put back: still revoked; made under a
        // ledger since replaced (which forgot what it revoked): ended
        let (ended, ledger) = match (
            self.ledger.ended(&ended_key(id)).await,
            self.ledger.id().await,
        ) {
            (Ok(ended), Ok(ledger)) => (ended, ledger),
            (Err(e), _) | (_, Err(e)) => return unavailable(e),
        };
        if ended || password.ledger.as_ref().is_some_and(|l| *l != ledger) {
            return Outcome::Rejected(Rejection::Other(
                "the app password was revoked (or made under a revocation ledger since replaced)"
                    .into(),
            ));
        }
        if password.expires <= now() {
            return Outcome::Rejected(Rejection::Expired);
        }
        // A record is authenticated by the state layer; this is a second
        // line against a key leak: nothing regauth makes lives longer.
        if password.expires.saturating_sub(password.created) > self.config.max_lifetime.as_secs() {
            return Outcome::Rejected(Rejection::Other(
                "the app password's record claims a life longer than max_lifetime".into(),
            ));
        }
        if !password
            .subject
            .eq_ignore_ascii_case(credentials.username.trim())
        {
            return Outcome::Rejected(Rejection::Other(format!(
                "the Basic username \"{}\" is not the app password's owner",
                Safe(&credentials.username)
            )));
        }
        let owner = self
            .current(
                &password.provider,
                &password.subject,
                password.account.as_deref(),
            )
            .await;
        let mut identity = match owner {
            Ok(identity) => identity,
            Err(outcome) => return outcome,
        };
        identity.provider = password.provider.clone();
        identity.renewal = Renewal::Never;
        identity.proof = regauth_providers::Proof::Token;
        identity.credential_stamp = None;
        identity.expires_at = Some(
            identity
                .expires_at
                .map_or(password.expires, |e| e.min(password.expires)),
        );
        identity.limit = (!password.limit.is_empty()).then(|| password.limit.clone());
        self.record_use(&password.id);
        password.audit("app_password_used", "");
        Outcome::Authenticated(identity)
    }

    /// A user as their provider sees them now, or as their last browser
    /// sign-in did (asked again at the IdP every `recheck_interval`); with
    /// `account`, only that account under the name.
    pub async fn current(
        &self,
        provider_name: &str,
        subject: &str,
        account: Option<&str>,
    ) -> Result<Identity, Outcome> {
        let Some(provider) = self.providers.iter().find(|p| p.name() == provider_name) else {
            return Err(Outcome::Rejected(Rejection::Other(format!(
                "the app password's provider {provider_name} is no longer configured"
            ))));
        };
        let gone = || {
            Outcome::Rejected(Rejection::Other(
                "the app password's owner no longer exists".into(),
            ))
        };
        let same_account = |found: Option<&str>| account.is_none_or(|a| found == Some(a));
        if provider.looks_up() {
            let looked = tokio::time::timeout(self.timeout, provider.lookup(subject))
                .await
                .unwrap_or_else(|_| {
                    Outcome::Unavailable(ProviderError::Upstream(format!(
                        "{provider_name} did not answer within {:?}",
                        self.timeout
                    )))
                });
            return match looked {
                Outcome::Authenticated(found)
                    if found.subject == subject && same_account(found.account_id.as_deref()) =>
                {
                    Ok(found)
                }
                Outcome::Authenticated(_) | Outcome::NotMine => Err(gone()),
                other => Err(other),
            };
        }
        let sign_in = self.sign_in_of(provider_name, subject).await.map_err(|e| {
            Outcome::Unavailable(ProviderError::Upstream(format!("app passwords: {e}")))
        })?;
        let renew = || {
            Outcome::Rejected(Rejection::UserAction(format!(
                "sign in at {} again to renew your app passwords",
                self.config.url
            )))
        };
        let sign_in = match sign_in {
            Some(s) if same_account(s.account.as_deref()) => {
                Some(self.rechecked(provider, subject, s).await?)
            }
            other => other,
        };
        match sign_in {
            Some(s) if !same_account(s.account.as_deref()) => Err(gone()),
            Some(s) if s.at + self.config.sign_in_max_age.as_secs() > now() => {
                let mut identity = Identity::new(subject, provider_name).with_groups(s.groups);
                identity.claims = s.claims;
                identity.kind = s.kind;
                identity.account_id = s.account;
                Ok(identity)
            }
            _ => Err(renew()),
        }
    }
}

impl AppPasswords {
    /// The sign-in as the IdP sees it now: asked again with the sign-in's
    /// refresh token once `recheck_interval` has passed. Fresh groups
    /// replace the old ones; an IdP that refuses ends the sign-in (and so
    /// the user's app passwords and page sessions); an IdP that cannot be
    /// asked leaves the last answer, bounded by `sign_in_max_age`.
    async fn rechecked(
        &self,
        provider: &Arc<dyn IdentityProvider>,
        subject: &str,
        sign_in: SignIn,
    ) -> Result<SignIn, Outcome> {
        let interval = self.config.recheck_interval.as_secs();
        let (Some(_), Some(browser)) = (&sign_in.refresh, provider.browser_login()) else {
            return Ok(sign_in);
        };
        if now() < sign_in.checked.saturating_add(interval) {
            return Ok(sign_in);
        }
        let owner = owner_key(provider.name(), subject);
        let turn = self
            .rechecks
            .get_with(owner.clone(), || Arc::new(tokio::sync::Mutex::new(())));
        let _turn = turn.lock().await;
        // One re-check per user on every replica at a time: an IdP that
        // rotates refresh tokens and refuses a used one would otherwise
        // see two replicas race and end the sign-in.
        let lock = format!(
            "recheck:{}",
            hex(
                &aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, owner.as_bytes()).as_ref()
                    [..16]
            )
        );
        match self.store.take(&lock, 1, CREATE_HOLD).await {
            Ok(true) => {}
            // another replica asks the IdP right now: the last answer stands
            Ok(false) => return Ok(sign_in),
            Err(e) => {
                return Err(Outcome::Unavailable(ProviderError::Upstream(format!(
                    "app passwords: {e}"
                ))))
            }
        }
        let rechecked = self
            .recheck_held(browser, provider.name(), subject, &owner, interval)
            .await;
        if let Err(e) = self.store.give_back(&lock).await {
            tracing::warn!(error = %e, "could not release the re-check lock; it expires by itself");
        }
        rechecked
    }

    /// [`AppPasswords::rechecked`] once the user's re-check lock is held.
    async fn recheck_held(
        &self,
        browser: &dyn regauth_providers::BrowserLogin,
        provider: &str,
        subject: &str,
        owner: &str,
        interval: u64,
    ) -> Result<SignIn, Outcome> {
        let unavailable = |e: AppPasswordError| {
            Outcome::Unavailable(ProviderError::Upstream(format!("app passwords: {e}")))
        };
        // Another request may have asked while this one waited.
        let Some((current, expected)) = self
            .sign_in_record(provider, subject)
            .await
            .map_err(unavailable)?
        else {
            return Err(self.sign_in_again());
        };
        if now() < current.checked.saturating_add(interval) {
            return Ok(current);
        }
        let token = current
            .refresh
            .as_deref()
            .and_then(|sealed| self.idp_refresh.open(owner.as_bytes(), sealed))
            .and_then(|plain| String::from_utf8(plain).ok());
        let Some(token) = token else {
            return Ok(current);
        };
        match browser.renew(&SecretString::from(token)).await {
            Renewed::Current {
                identity,
                refresh_token,
            } => {
                let mut next = current.clone();
                // Only fresh claims renew the sign-in's age: without an
                // ID token the IdP vouched for the account, not its groups,
                // and sign_in_max_age still bounds the old ones.
                if identity.is_some() {
                    next.at = now();
                }
                if let Some(identity) = identity {
                    let other_account = matches!(
                        (&identity.account_id, &current.account),
                        (Some(a), Some(b)) if a != b
                    );
                    if other_account || identity.subject != subject {
                        return Err(self
                            .end_sign_in(owner, "the IdP now names another account")
                            .await);
                    }
                    next.groups = identity.groups;
                    next.claims = identity.claims;
                    next.kind = identity.kind;
                }
                if let Some(token) = refresh_token {
                    next.refresh = self
                        .idp_refresh
                        .seal(owner.as_bytes(), token.expose_secret().as_bytes())
                        .ok()
                        .or(next.refresh);
                }
                next.checked = now();
                let text = serde_json::to_string(&next)
                    .map_err(|e| unavailable(StoreError(e.to_string()).into()))?;
                // only over the sign-in this answer continues (a new
                // sign-in meanwhile wins)
                let written = self
                    .store
                    .swap_record(SIGN_INS, owner, Some(&expected), &text)
                    .await
                    .map_err(|e| unavailable(e.into()))?;
                if !written {
                    tracing::debug!(owner = %Safe(owner), "the sign-in changed while the IdP was asked again");
                }
                tracing::debug!(provider, subject = %Safe(subject), "the IdP vouched for a signed-in user again");
                Ok(next)
            }
            Renewed::Refused(why) => Err(self.end_sign_in(owner, &why.to_string()).await),
            Renewed::Unavailable(e) => {
                tracing::warn!(provider, subject = %Safe(subject), error = %e, "the IdP could not be asked about a signed-in user again; keeping the last answer");
                Ok(current)
            }
        }
    }

    /// Forgets a sign-in the IdP no longer stands behind: the user's app
    /// passwords and page sessions end with it.
    async fn end_sign_in(&self, owner: &str, why: &str) -> Outcome {
        tracing::info!(
            target: "regauth::ops::audit",
            event = "sign_in_ended",
            owner = %Safe(owner),
            reason = %Safe(why),
            "the identity provider no longer signs this user in: their app passwords and page sessions end"
        );
        if let Err(e) = self.store.delete_record(SIGN_INS, owner).await {
            return Outcome::Unavailable(ProviderError::Upstream(format!("app passwords: {e}")));
        }
        self.sign_in_again()
    }

    fn sign_in_again(&self) -> Outcome {
        Outcome::Rejected(Rejection::UserAction(format!(
            "sign in at {} again to renew your app passwords",
            self.config.url
        )))
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
fn ended_key(id: &str) -> String {
    format!("app-password:{id}")
}

/// Revokes an app password: recorded in the ledger until it would have
/// expired (so its record put back cannot bring it back), then deleted.
async fn end(
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
                password.audit("app_password_revoked", "regauth tokens revoke");
                revoked.push(password);
            }
            None => delete(store, &id).await?,
        }
    }
    // Their sign-ins too: what stood in for an OIDC provider is gone, so
    // a page session still open can mint nothing new.
    for (key, _) in store.records(SIGN_INS).await? {
        let theirs = subject.is_none_or(|s| {
            key.split_once(':')
                .is_some_and(|(_, who)| who.eq_ignore_ascii_case(s.trim()))
        });
        if theirs {
            store.delete_record(SIGN_INS, &key).await?;
        }
    }
    Ok(revoked)
}

/// Checks repository limits: patterns that parse, known actions, a few.
fn check_limits(limits: &[AccessLimit]) -> Result<(), AppPasswordError> {
    if limits.len() > MAX_LIMITS {
        return Err(AppPasswordError::Limit(format!(
            "at most {MAX_LIMITS} repository patterns"
        )));
    }
    for limit in limits {
        if limit.repos.len() > MAX_PATTERN_BYTES {
            return Err(AppPasswordError::Limit(format!(
                "a repository pattern has at most {MAX_PATTERN_BYTES} bytes"
            )));
        }
        if limit.actions.len() > 3 {
            return Err(AppPasswordError::Limit(
                "at most pull, push and delete".into(),
            ));
        }
        Pattern::parse(&limit.repos, Placeholders::Forbidden)
            .map_err(|e| AppPasswordError::Limit(format!("`{}`: {e}", limit.repos)))?;
        if limit.actions.is_empty() {
            return Err(AppPasswordError::Limit(format!(
                "`{}`: choose at least one action",
                limit.repos
            )));
        }
        if let Some(bad) = limit
            .actions
            .iter()
            .find(|a| !matches!(a.as_str(), "pull" | "push" | "delete"))
        {
            return Err(AppPasswordError::Limit(format!(
                "`{bad}` is not an action (pull, push, delete)"
            )));
        }
    }
    Ok(())
}

/// A grant cut down to an identity's limit: only repository scopes whose
/// name a limit's pattern matches, only the actions it allows there (`*`
/// only when it allows all of them).
pub fn within(limits: &[AccessLimit], mut grant: Grant) -> Grant {
    if grant.scope.kind != ResourceType::Repository {
        grant.actions.clear();
        return grant;
    }
    let allowed: Vec<Action> = limits
        .iter()
        // repository semantics, as in the policy's `repos`: `*` is one
        // path segment (a top-level repository), `**` any depth
        .filter(|l| {
            Pattern::parse(&l.repos, Placeholders::Forbidden).is_ok_and(|p| {
                p.matches_with(&grant.scope.name, crate::domain::pattern::Values::default())
            })
        })
        .flat_map(|l| l.actions.iter().map(|a| Action::parse(a)))
        .collect();
    let every = ResourceType::Repository
        .known_actions()
        .unwrap_or_default()
        .iter()
        .all(|a| allowed.contains(a));
    grant.actions.retain(|a| match a {
        Action::All => every,
        other => allowed.contains(other),
    });
    grant
}

/// App passwords as a provider in the chain: `rga_` secrets go here alone.
pub struct AppPasswordProvider(pub Arc<AppPasswords>);

#[async_trait]
impl IdentityProvider for AppPasswordProvider {
    fn name(&self) -> &str {
        PROVIDER_NAME
    }

    fn kind(&self) -> regauth_providers::ProviderKind {
        regauth_providers::ProviderKind::Custom(PROVIDER_NAME)
    }

    fn accepts(&self, shape: SecretShape<'_>) -> bool {
        shape == SecretShape::AppPassword
    }

    /// One record read and one HMAC here: no upstream to protect.
    fn checks_locally(&self) -> bool {
        true
    }

    /// The owner check takes the username trimmed and in any ASCII case:
    /// so does the verdict cache's key.
    fn normalize_username<'a>(&self, username: &'a str) -> std::borrow::Cow<'a, str> {
        std::borrow::Cow::Owned(username.trim().to_ascii_lowercase())
    }

    /// An app password stands alone: the typed username tries no account.
    async fn account_of(&self, _credentials: &Credentials) -> Option<String> {
        None
    }

    async fn authenticate(&self, credentials: &Credentials) -> Outcome {
        if !credentials
            .secret
            .expose_secret()
            .starts_with(APP_PASSWORD_PREFIX)
        {
            return Outcome::NotMine;
        }
        self.0.check(credentials).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::scope::Scope;

    fn limit(repos: &str, actions: &[&str]) -> AccessLimit {
        AccessLimit {
            repos: repos.into(),
            actions: actions.iter().map(|a| a.to_string()).collect(),
        }
    }

    fn grant(scope: &str, actions: &[&str]) -> Grant {
        Grant {
            scope: Scope::parse(scope).unwrap(),
            actions: actions.iter().map(|a| Action::parse(a)).collect(),
            trace: Vec::new(),
        }
    }

    #[test]
    fn a_limit_never_widens_a_grant() {
        let limits = [
            limit("dev/**", &["pull", "push"]),
            limit("base/*", &["pull"]),
        ];
        let cut = within(
            &limits,
            grant(
                "repository:dev/app:pull,push,delete",
                &["pull", "push", "delete"],
            ),
        );
        assert_eq!(cut.actions, [Action::Pull, Action::Push]);
        let cut = within(
            &limits,
            grant("repository:base/debian:pull,push", &["pull", "push"]),
        );
        assert_eq!(cut.actions, [Action::Pull]);
        let cut = within(&limits, grant("repository:prod/app:pull", &["pull"]));
        assert!(cut.actions.is_empty());
        // the policy granted nothing: a limit adds nothing
        let cut = within(&limits, grant("repository:dev/app:pull,push", &[]));
        assert!(cut.actions.is_empty());
        // `*` only when every action is allowed
        let cut = within(
            &limits,
            grant("repository:dev/app:*", &["*", "delete", "pull", "push"]),
        );
        assert_eq!(cut.actions, [Action::Pull, Action::Push]);
        let all = [limit("dev/**", &["pull", "push", "delete"])];
        let cut = within(
            &all,
            grant("repository:dev/app:*", &["*", "delete", "pull", "push"]),
        );
        assert_eq!(cut.actions.len(), 4);
        // other resource types: nothing
        let cut = within(&all, grant("registry:catalog:*", &["*"]));
        assert!(cut.actions.is_empty());
        // review L1: a limit `*` is what `*` is in the policy's repos, a
        // top-level repository, not every repository
        let top = [limit("*", &["pull"])];
        let cut = within(&top, grant("repository:toplevel:pull", &["pull"]));
        assert_eq!(cut.actions, [Action::Pull]);
        let cut = within(&top, grant("repository:team/deep/app:pull", &["pull"]));
        assert!(cut.actions.is_empty());
    }

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

    #[test]
    fn limits_are_checked() {
        assert!(check_limits(&[limit("dev/**", &["pull"])]).is_ok());
        assert!(check_limits(&[limit("dev/**", &["pull", "admin"])]).is_err());
        assert!(check_limits(&[limit("", &["pull"])]).is_err());
        assert!(check_limits(&[limit("dev/**", &[])]).is_err());
        let many: Vec<_> = (0..=MAX_LIMITS)
            .map(|i| limit(&format!("r{i}"), &["pull"]))
            .collect();
        assert!(check_limits(&many).is_err());
    }
}
