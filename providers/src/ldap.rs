//! The `ldap` provider: OpenLDAP or Active Directory, by search and bind.
//!
//! A login is: search the user with the service account (pooled
//! connections), require exactly one entry, then bind as that entry's DN
//! with the user's password on a connection of its own, so a pooled
//! connection never changes identity. Groups come from a group search
//! and/or the `memberOf` attribute, optionally walked up through nested
//! groups, and are cached per user DN with a bounded stale-if-error window.
//!
//! Every value put into a filter is escaped (RFC 4515). An empty password
//! is refused before any bind: LDAP treats it as an unauthenticated bind,
//! which succeeds. Passwords never reach a log line or an error.

use std::collections::{BTreeSet, HashSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use ldap3::{ldap_escape, Ldap as Connection, LdapConnAsync, LdapConnSettings, Scope, SearchEntry};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

use crate::{
    load_secret, Credentials, Error, Identity, IdentityProvider, Outcome, Rejection, Seconds,
};

/// `[[provider]] kind = "ldap"` as written in the configuration file.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LdapConfig {
    /// `ldaps://host:636` or `ldap://host:389` (with `start_tls = true`).
    pub url: String,
    /// Upgrade an `ldap://` connection with StartTLS.
    #[serde(default)]
    pub start_tls: bool,
    /// PEM CA bundle for the server's certificate (default: system roots).
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// The service account's DN, used for searches.
    pub bind_dn: String,
    /// File holding the service account's password.
    #[serde(default)]
    pub bind_password_file: Option<PathBuf>,
    /// Environment variable holding the service account's password.
    #[serde(default)]
    pub bind_password_env: Option<String>,
    /// Where users are searched (subtree).
    pub user_base: String,
    /// `{username}` is replaced by the escaped login name.
    #[serde(default = "default_user_filter")]
    pub user_filter: String,
    /// The attribute whose value is the subject (canonical case).
    #[serde(default = "default_username_attribute")]
    pub username_attribute: String,
    /// Where groups are searched (subtree); set together with `group_filter`.
    #[serde(default)]
    pub group_base: Option<String>,
    /// `{dn}` (the member's DN) and `{username}` are replaced, escaped.
    #[serde(default)]
    pub group_filter: Option<String>,
    /// The attribute of a group entry that is its name.
    #[serde(default = "default_group_name_attribute")]
    pub group_name_attribute: String,
    /// Read group DNs from this attribute of the user (e.g. `memberOf`).
    #[serde(default)]
    pub member_of_attribute: Option<String>,
    /// Also collect the groups that groups belong to, up to `max_nesting`
    /// levels.
    #[serde(default)]
    pub nested_groups: bool,
    /// Most levels of nested groups walked with `nested_groups`.
    #[serde(default = "default_max_nesting")]
    pub max_nesting: usize,
    /// Active Directory: one search with LDAP_MATCHING_RULE_IN_CHAIN.
    #[serde(default)]
    pub active_directory_in_chain: bool,
    /// Prepended to every group name (e.g. `ldap:`).
    #[serde(default)]
    pub group_prefix: Option<String>,
    /// Timeout for opening a connection to the directory.
    #[serde(default = "default_connect_timeout")]
    pub connect_timeout: Seconds,
    /// Timeout for each bind and search.
    #[serde(default = "default_operation_timeout")]
    pub operation_timeout: Seconds,
    /// Idle service-account connections kept open.
    #[serde(default = "default_pool_size")]
    pub pool_size: usize,
    /// How long a user's groups are cached.
    #[serde(default = "default_group_ttl")]
    pub group_cache_ttl: Seconds,
    /// How long past their TTL cached groups may serve while the directory
    /// cannot answer.
    #[serde(default = "default_stale_if_error")]
    pub stale_if_error: Seconds,
}

fn default_user_filter() -> String {
    "(uid={username})".into()
}
fn default_username_attribute() -> String {
    "uid".into()
}
fn default_group_name_attribute() -> String {
    "cn".into()
}
fn default_max_nesting() -> usize {
    10
}
fn default_connect_timeout() -> Seconds {
    Seconds(Duration::from_secs(5))
}
fn default_operation_timeout() -> Seconds {
    Seconds(Duration::from_secs(5))
}
fn default_pool_size() -> usize {
    4
}
fn default_group_ttl() -> Seconds {
    Seconds(Duration::from_secs(300))
}
fn default_stale_if_error() -> Seconds {
    Seconds(Duration::from_secs(3600))
}

/// Operation counters, for tests, benchmarks and metrics.
#[derive(Debug, Default)]
pub struct Stats {
    /// Connections opened to the directory.
    pub connects: AtomicU64,
    /// Binds as the service account.
    pub service_binds: AtomicU64,
    /// Binds as a user, to check a password.
    pub user_binds: AtomicU64,
    /// Searches made.
    pub searches: AtomicU64,
    /// Groups served from the cache.
    pub group_cache_hits: AtomicU64,
    /// Group lookups the cache could not answer.
    pub group_cache_misses: AtomicU64,
    /// Groups served past their TTL because the directory did not answer.
    pub group_cache_stale: AtomicU64,
}

struct CachedGroups {
    groups: Vec<String>,
    fetched: Instant,
}

/// The `ldap` provider: one configured directory.
pub struct Ldap {
    name: String,
    config: LdapConfig,
    bind_password: SecretString,
    settings: LdapConnSettings,
    pool: Mutex<Vec<Connection>>,
    groups: moka::future::Cache<String, Arc<CachedGroups>>,
    /// False after a connection to the directory failed, true again after
    /// one succeeds.
    reachable: AtomicBool,
    /// Operation counters of this instance.
    pub stats: Stats,
}

/// LDAP result codes this provider tells apart.
const RC_REFERRAL: u32 = 10;
const RC_NO_SUCH_OBJECT: u32 = 32;
const RC_INVALID_CREDENTIALS: u32 = 49;
const RC_UNWILLING_TO_PERFORM: u32 = 53;

/// What a search base that does not exist (or is not on this server)
/// means for the caller.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Base {
    /// `user_base` or `group_base`: a missing or referred base is a
    /// misconfigured or partial directory, never "no such user" (that
    /// would send the password to the next provider) or "no groups".
    Required,
    /// A group DN read from `memberOf`: it may have been deleted.
    MayBeGone,
}

/// A search's entries, and whether the server referred part of it
/// elsewhere (continuation references).
struct Found {
    entries: Vec<SearchEntry>,
    referred: bool,
}

/// Operational attributes that say when a password (or, failing that, the
/// entry) last changed: OpenLDAP ppolicy, Active Directory, any server.
const CHANGED: &[&str] = &["pwdChangedTime", "pwdLastSet", "modifyTimestamp"];
/// Attributes that stay with one entry for its life (a new account under
/// a reused name gets another).
const ENTRY_ID: &[&str] = &["entryUUID", "objectGUID"];
/// Attributes that say an account is locked, disabled or expired.
const LOCK_ATTRIBUTES: &[&str] = &[
    "pwdAccountLockedTime",
    "lockoutTime",
    "userAccountControl",
    "accountExpires",
];
/// Active Directory's ACCOUNTDISABLE bit of `userAccountControl`.
const UAC_ACCOUNTDISABLE: u64 = 0x2;
/// OpenLDAP ppolicy's value for "locked by an administrator".
const LOCKED_FOR_GOOD: &str = "000001010000Z";
/// Seconds between 1601-01-01 (Windows FILETIME) and 1970-01-01.
const FILETIME_EPOCH_OFFSET: u64 = 11_644_473_600;

/// When the account checks run: after a successful bind the directory has
/// applied its own lockout (a time-based lock that has expired no longer
/// counts); without a bind (a refresh) every lock counts.
#[derive(Clone, Copy, PartialEq, Eq)]
enum After {
    Bind,
    Lookup,
}

/// Why the account of an entry cannot be used, from its attributes.
fn lock_of(entry: &SearchEntry, after: After) -> Option<Rejection> {
    let number = |name: &str| attribute(entry, name).first()?.parse::<u64>().ok();
    // OpenLDAP ppolicy: present while the account is locked.
    let locked = attribute(entry, "pwdAccountLockedTime");
    let locked_for_good = locked.iter().any(|v| v == LOCKED_FOR_GOOD);
    if locked_for_good || (after == After::Lookup && !locked.is_empty()) {
        return Some(Rejection::Locked);
    }
    // Active Directory: non-zero while locked out (it refuses the bind
    // itself then, and resets it at the next successful one).
    if after == After::Lookup && number("lockoutTime").is_some_and(|t| t > 0) {
        return Some(Rejection::Locked);
    }
    if number("userAccountControl").is_some_and(|uac| uac & UAC_ACCOUNTDISABLE != 0) {
        return Some(Rejection::Disabled);
    }
    // accountExpires: 100 ns since 1601; 0 and i64::MAX mean never.
    if let Some(expires) = number("accountExpires").filter(|v| *v != 0 && *v < i64::MAX as u64) {
        let unix = (expires / 10_000_000).saturating_sub(FILETIME_EPOCH_OFFSET);
        if unix <= crate::clock::unix_seconds() {
            return Some(Rejection::Expired);
        }
    }
    None
}

/// The entry's identity and change marker, as the directory wrote them:
/// a refresh token minted under another stamp (the password changed, or
/// the name now belongs to another entry) is refused.
fn credential_stamp(entry: &SearchEntry) -> Option<String> {
    let id = entry_id(entry);
    let changed = CHANGED.iter().find_map(|name| {
        attribute(entry, name)
            .first()
            .map(|value| format!("{name}={value}"))
    });
    match (id, changed) {
        (None, None) => None,
        (id, changed) => Some(format!(
            "{}|{}",
            id.unwrap_or_default(),
            changed.unwrap_or_default()
        )),
    }
}

/// The entry's own id (`entryUUID=…`, `objectGUID=<hex>`), which a new
/// entry reusing the name does not get.
fn entry_id(entry: &SearchEntry) -> Option<String> {
    ENTRY_ID.iter().find_map(|name| {
        attribute(entry, name)
            .first()
            .cloned()
            .or_else(|| {
                entry
                    .bin_attrs
                    .iter()
                    .find(|(k, _)| k.eq_ignore_ascii_case(name))
                    .and_then(|(_, v)| v.first())
                    .map(|bytes| bytes.iter().map(|b| format!("{b:02x}")).collect())
            })
            .map(|value| format!("{name}={value}"))
    })
}

/// How LDAP's default matching rules compare names: case-insensitive, with
/// leading and trailing spaces ignored and inner runs of spaces as one.
pub fn normalize(username: &str) -> String {
    username
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .to_lowercase()
}

fn upstream(context: &str, e: impl std::fmt::Display) -> Error {
    Error::Upstream(format!("{context}: {e}"))
}

/// The first value of an attribute, matched case-insensitively.
fn attribute<'e>(entry: &'e SearchEntry, name: &str) -> &'e [String] {
    entry
        .attrs
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_slice())
        .unwrap_or(&[])
}

impl Ldap {
    /// The provider instance `name`: checks the URL and the filters and loads
    /// the service account's password.
    pub fn new(name: &str, config: &LdapConfig) -> Result<Self, Error> {
        let url = config.url.as_str();
        if !(url.starts_with("ldap://") || url.starts_with("ldaps://")) {
            return Err(Error::Config(
                "url must start with ldap:// or ldaps://".into(),
            ));
        }
        if config.start_tls && url.starts_with("ldaps://") {
            return Err(Error::Config(
                "start_tls is for ldap:// URLs; ldaps:// is TLS already".into(),
            ));
        }
        if config.group_filter.is_some() != config.group_base.is_some() {
            return Err(Error::Config(
                "group_filter and group_base go together".into(),
            ));
        }
        if !config.user_filter.contains("{username}") {
            return Err(Error::Config("user_filter must contain {username}".into()));
        }
        let bind_password = load_secret(
            "bind_password",
            config.bind_password_file.as_deref(),
            config.bind_password_env.as_deref(),
        )?;
        let mut settings = LdapConnSettings::new()
            .set_conn_timeout(config.connect_timeout.0)
            .set_starttls(config.start_tls);
        if let Some(path) = &config.ca_file {
            settings = settings.set_config(Arc::new(crate::client_tls(
                Some(path),
                crate::Roots::OnlyTheFile,
            )?));
        }
        Ok(Self {
            name: name.to_owned(),
            config: config.clone(),
            bind_password,
            settings,
            pool: Mutex::new(Vec::new()),
            groups: moka::future::Cache::builder()
                .max_capacity(100_000)
                .time_to_live(config.group_cache_ttl.0 + config.stale_if_error.0)
                .build(),
            reachable: AtomicBool::new(true),
            stats: Stats::default(),
        })
    }

    async fn connect(&self) -> Result<Connection, Error> {
        self.stats.connects.fetch_add(1, Ordering::Relaxed);
        let connected = LdapConnAsync::with_settings(self.settings.clone(), &self.config.url).await;
        self.reachable.store(connected.is_ok(), Ordering::Relaxed);
        let (driver, ldap) = connected.map_err(|e| upstream("connect", e))?;
        ldap3::drive!(driver);
        Ok(ldap)
    }

    /// A connection bound as the service account: pooled if one is idle.
    async fn service_connection(&self) -> Result<(Connection, bool), Error> {
        let pooled = self.pool.lock().map(|mut p| p.pop()).unwrap_or(None);
        if let Some(conn) = pooled {
            return Ok((conn, true));
        }
        let mut conn = self.connect().await?;
        self.stats.service_binds.fetch_add(1, Ordering::Relaxed);
        let result = conn
            .with_timeout(self.config.operation_timeout.0)
            .simple_bind(&self.config.bind_dn, self.bind_password.expose_secret())
            .await
            .map_err(|e| upstream("service account bind", e))?;
        if result.rc != 0 {
            return Err(Error::Upstream(format!(
                "service account bind as {} refused (result {}): check bind_dn and the password",
                self.config.bind_dn, result.rc
            )));
        }
        Ok((conn, false))
    }

    fn give_back(&self, conn: Connection) {
        if let Ok(mut pool) = self.pool.lock() {
            if pool.len() < self.config.pool_size {
                pool.push(conn);
            }
        }
    }

    /// One search as the service account (see [`Ldap::search_found`]).
    async fn search(
        &self,
        base: &str,
        scope: Scope,
        filter: &str,
        attrs: &[&str],
        missing: Base,
    ) -> Result<Vec<SearchEntry>, Error> {
        Ok(self
            .search_found(base, scope, filter, attrs, missing)
            .await?
            .entries)
    }

    /// One search as the service account, saying whether the server also
    /// referred part of it elsewhere. A pooled connection that fails (the
    /// server restarted, say) is dropped and the search retried once on a
    /// fresh one.
    async fn search_found(
        &self,
        base: &str,
        scope: Scope,
        filter: &str,
        attrs: &[&str],
        missing: Base,
    ) -> Result<Found, Error> {
        loop {
            let (mut conn, pooled) = self.service_connection().await?;
            self.stats.searches.fetch_add(1, Ordering::Relaxed);
            let outcome = conn
                .with_timeout(self.config.operation_timeout.0)
                .search(base, scope, filter, attrs.to_vec())
                .await;
            match outcome {
                Ok(ldap3::SearchResult(entries, result)) => {
                    self.give_back(conn);
                    // Continuation references point at other servers; this
                    // provider does not chase them, but says they were there.
                    let referred = entries.iter().any(|e| e.is_ref());
                    let found = || Found {
                        entries: entries
                            .into_iter()
                            .filter(|e| !e.is_ref())
                            .map(SearchEntry::construct)
                            .collect(),
                        referred,
                    };
                    return match (result.rc, missing) {
                        (0, _) => Ok(found()),
                        (RC_NO_SUCH_OBJECT, Base::MayBeGone) => Ok(Found {
                            entries: Vec::new(),
                            referred: false,
                        }),
                        (rc @ (RC_NO_SUCH_OBJECT | RC_REFERRAL), Base::Required) => {
                            tracing::error!(provider = %self.name, base, result = rc, "a search base does not exist on this server (noSuchObject or referral): check user_base, group_base and the service account's access; refusing logins with 503");
                            Err(Error::Upstream(format!(
                                "the directory is misconfigured or unreachable: search base {base} answered result {rc}"
                            )))
                        }
                        (rc, _) => Err(Error::Upstream(format!(
                            "search in {base} failed (result {rc}: {})",
                            result.text
                        ))),
                    };
                }
                Err(e) if pooled => {
                    tracing::debug!(provider = %self.name, error = %e, "pooled LDAP connection failed; reconnecting");
                }
                Err(e) => return Err(upstream("search", e)),
            }
        }
    }

    /// Binds as `dn` on a connection of its own. `Ok(None)` is success.
    async fn user_bind(&self, dn: &str, password: &str) -> Result<Option<Rejection>, Error> {
        let mut conn = self.connect().await?;
        self.stats.user_binds.fetch_add(1, Ordering::Relaxed);
        let result = conn
            .with_timeout(self.config.operation_timeout.0)
            .simple_bind(dn, password)
            .await
            .map_err(|e| upstream("user bind", e))?;
        let _ = conn.unbind().await;
        match result.rc {
            0 => Ok(None),
            RC_INVALID_CREDENTIALS => {
                // Active Directory says why in the text (data 52e: wrong
                // password, 533: disabled, 775: locked); it holds no secret.
                tracing::info!(provider = %self.name, dn, detail = %result.text, "LDAP bind refused");
                Ok(Some(Rejection::WrongSecret))
            }
            RC_UNWILLING_TO_PERFORM => Ok(Some(Rejection::Disabled)),
            rc => Err(Error::Upstream(format!(
                "user bind failed (result {rc}: {})",
                result.text
            ))),
        }
    }

    /// Finds the one entry `user_filter` matches for `username`, with its
    /// subject. `Err(outcome)` is the answer when there is no usable entry.
    async fn find_user(
        &self,
        username: &str,
    ) -> Result<Result<(SearchEntry, String), Outcome>, Error> {
        let c = &self.config;
        let filter = c.user_filter.replace("{username}", &ldap_escape(username));
        let mut attrs = vec![c.username_attribute.as_str()];
        if let Some(member_of) = &c.member_of_attribute {
            attrs.push(member_of);
        }
        attrs.extend(CHANGED);
        attrs.extend(ENTRY_ID);
        attrs.extend(LOCK_ATTRIBUTES);
        let found = self
            .search_found(
                &c.user_base,
                Scope::Subtree,
                &filter,
                &attrs,
                Base::Required,
            )
            .await?;
        let mut entries = found.entries;
        let entry = match entries.len() {
            // Referred elsewhere: the user may live there, so the password
            // goes to no other provider.
            0 if found.referred => {
                return Ok(Err(Outcome::Rejected(Rejection::Other(
                    "not found here, and the directory referred part of the search elsewhere"
                        .into(),
                ))))
            }
            0 => return Ok(Err(Outcome::NotMine)),
            1 => entries.remove(0),
            n => {
                tracing::warn!(provider = %self.name, user = %crate::Safe(username), entries = n, "user_filter matched several entries; refusing the login");
                return Ok(Err(Outcome::Rejected(Rejection::Other(format!(
                    "{n} directory entries match"
                )))));
            }
        };
        match attribute(&entry, &c.username_attribute).first().cloned() {
            Some(subject) => Ok(Ok((entry, subject))),
            None => Ok(Err(Outcome::Rejected(Rejection::Other(format!(
                "the entry has no {} attribute",
                c.username_attribute
            ))))),
        }
    }

    /// The identity of a found entry, with its (possibly cached) groups.
    async fn identity(&self, entry: &SearchEntry, subject: String) -> Result<Outcome, Error> {
        let member_of = self
            .config
            .member_of_attribute
            .as_deref()
            .map(|a| attribute(entry, a).to_vec())
            .unwrap_or_default();
        let groups = self.groups_of(&entry.dn, &subject, member_of).await?;
        let mut identity = Identity::new(subject, self.name.clone()).with_groups(groups);
        identity.credential_stamp = credential_stamp(entry);
        identity.account_id = entry_id(entry);
        Ok(Outcome::Authenticated(identity))
    }

    async fn login(&self, credentials: &Credentials) -> Result<Outcome, Error> {
        let (entry, subject) = match self.find_user(&credentials.username).await? {
            Ok(found) => found,
            Err(outcome) => return Ok(outcome),
        };
        if let Some(rejection) = self
            .user_bind(&entry.dn, credentials.secret.expose_secret())
            .await?
        {
            return Ok(Outcome::Rejected(rejection));
        }
        // A directory without a password policy may let a locked or
        // disabled account bind; the attributes say otherwise.
        if let Some(rejection) = lock_of(&entry, After::Bind) {
            return Ok(Outcome::Rejected(rejection));
        }
        self.identity(&entry, subject).await
    }

    /// Groups of a user, from the cache while fresh; stale entries serve
    /// only when the directory cannot answer.
    async fn groups_of(
        &self,
        dn: &str,
        subject: &str,
        member_of: Vec<String>,
    ) -> Result<Vec<String>, Error> {
        let key = dn.to_ascii_lowercase();
        let cached = self.groups.get(&key).await;
        if let Some(hit) = &cached {
            if hit.fetched.elapsed() < self.config.group_cache_ttl.0 {
                self.stats.group_cache_hits.fetch_add(1, Ordering::Relaxed);
                return Ok(hit.groups.clone());
            }
        }
        self.stats
            .group_cache_misses
            .fetch_add(1, Ordering::Relaxed);
        match self.resolve_groups(dn, subject, member_of).await {
            Ok(groups) => {
                let entry = Arc::new(CachedGroups {
                    groups: groups.clone(),
                    fetched: Instant::now(),
                });
                self.groups.insert(key, entry).await;
                Ok(groups)
            }
            Err(e) => match cached {
                Some(stale) => {
                    self.stats.group_cache_stale.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(provider = %self.name, error = %e, "serving cached groups past their TTL: the directory did not answer");
                    Ok(stale.groups.clone())
                }
                None => Err(e),
            },
        }
    }

    async fn resolve_groups(
        &self,
        user_dn: &str,
        subject: &str,
        member_of: Vec<String>,
    ) -> Result<Vec<String>, Error> {
        let c = &self.config;
        let name_attr = c.group_name_attribute.as_str();
        let mut names = BTreeSet::new();
        if let (true, Some(base)) = (c.active_directory_in_chain, &c.group_base) {
            let filter = format!("(member:1.2.840.113556.1.4.1941:={})", ldap_escape(user_dn));
            for entry in self
                .search(base, Scope::Subtree, &filter, &[name_attr], Base::Required)
                .await?
            {
                names.extend(attribute(&entry, name_attr).iter().cloned());
            }
            return Ok(self.finish(names));
        }
        // (group DN, its name if known)
        let mut level: Vec<(String, Option<String>)> = Vec::new();
        if let (Some(base), Some(filter)) = (&c.group_base, &c.group_filter) {
            let filter = filter
                .replace("{dn}", &ldap_escape(user_dn))
                .replace("{username}", &ldap_escape(subject));
            for entry in self
                .search(base, Scope::Subtree, &filter, &[name_attr], Base::Required)
                .await?
            {
                let name = attribute(&entry, name_attr).first().cloned();
                level.push((entry.dn, name));
            }
        }
        level.extend(member_of.into_iter().map(|dn| (dn, None)));
        let mut seen = HashSet::new();
        let mut depth = 0;
        while !level.is_empty() {
            let mut parents = Vec::new();
            for (dn, name) in level {
                if !seen.insert(dn.to_ascii_lowercase()) {
                    continue; // a cycle, or a group reached twice
                }
                let mut name = name;
                let read_entry =
                    name.is_none() || (c.nested_groups && c.member_of_attribute.is_some());
                if read_entry {
                    let mut attrs = vec![name_attr];
                    if let Some(member_of) = &c.member_of_attribute {
                        attrs.push(member_of);
                    }
                    let entry = self
                        .search(&dn, Scope::Base, "(objectClass=*)", &attrs, Base::MayBeGone)
                        .await?
                        .into_iter()
                        .next();
                    if let Some(entry) = entry {
                        name = name.or_else(|| attribute(&entry, name_attr).first().cloned());
                        if c.nested_groups {
                            if let Some(member_of) = &c.member_of_attribute {
                                parents.extend(
                                    attribute(&entry, member_of)
                                        .iter()
                                        .map(|p| (p.clone(), None)),
                                );
                            }
                        }
                    }
                }
                names.extend(name);
                if let (true, Some(base), Some(filter)) =
                    (c.nested_groups, &c.group_base, &c.group_filter)
                {
                    if filter.contains("{dn}") {
                        let filter = filter
                            .replace("{dn}", &ldap_escape(dn.as_str()))
                            .replace("{username}", "");
                        for entry in self
                            .search(base, Scope::Subtree, &filter, &[name_attr], Base::Required)
                            .await?
                        {
                            let parent_name = attribute(&entry, name_attr).first().cloned();
                            parents.push((entry.dn, parent_name));
                        }
                    }
                }
            }
            if !c.nested_groups {
                break;
            }
            depth += 1;
            if depth > c.max_nesting {
                tracing::warn!(provider = %self.name, user = subject, max_nesting = c.max_nesting, "groups nest deeper than max_nesting; ignoring the rest");
                break;
            }
            level = parents;
        }
        Ok(self.finish(names))
    }

    fn finish(&self, names: BTreeSet<String>) -> Vec<String> {
        let prefix = self.config.group_prefix.as_deref().unwrap_or("");
        names
            .into_iter()
            .map(|n| format!("{prefix}{}", n.to_lowercase()))
            .collect()
    }
}

#[async_trait]
impl IdentityProvider for Ldap {
    fn name(&self) -> &str {
        &self.name
    }

    fn kind(&self) -> crate::ProviderKind {
        crate::ProviderKind::Ldap
    }

    async fn authenticate(&self, credentials: &Credentials) -> Outcome {
        if credentials.username.is_empty() {
            return Outcome::NotMine;
        }
        // An empty password would be an unauthenticated bind, which LDAP
        // servers accept: refuse it before anything is sent.
        if credentials.secret.expose_secret().is_empty() {
            return Outcome::Rejected(Rejection::EmptySecret);
        }
        match self.login(credentials).await {
            Ok(outcome) => outcome,
            Err(e) => Outcome::Unavailable(e),
        }
    }

    /// The service account finds the user again (deleted, or excluded by
    /// `user_filter` as disabled: NotMine), refuses a locked or disabled
    /// account, and resolves the groups. The identity carries the entry's
    /// password-change stamp, so a refresh token minted before a password
    /// change is refused by the server.
    fn looks_up(&self) -> bool {
        true
    }

    async fn lookup(&self, subject: &str) -> Outcome {
        let found = match self.find_user(subject).await {
            Ok(Ok(found)) => found,
            Ok(Err(outcome)) => return outcome,
            Err(e) => return Outcome::Unavailable(e),
        };
        // The entry found must be the subject itself, not another entry
        // that user_filter also matches (a mail alias, say).
        let subject_of_entry = attribute(&found.0, &self.config.username_attribute).first();
        if subject_of_entry.is_none_or(|s| normalize(s) != normalize(subject)) {
            return Outcome::NotMine;
        }
        if let Some(rejection) = lock_of(&found.0, After::Lookup) {
            return Outcome::Rejected(rejection);
        }
        match self.identity(&found.0, found.1).await {
            Ok(outcome) => outcome,
            Err(e) => Outcome::Unavailable(e),
        }
    }

    async fn ready(&self) -> Result<(), Error> {
        let (conn, _) = self.service_connection().await?;
        self.give_back(conn);
        Ok(())
    }

    fn reachable(&self) -> bool {
        self.reachable.load(Ordering::Relaxed)
    }

    fn normalize_username<'a>(&self, username: &'a str) -> std::borrow::Cow<'a, str> {
        std::borrow::Cow::Owned(normalize(username))
    }

    fn counters(&self) -> Vec<(&'static str, u64)> {
        let s = &self.stats;
        [
            ("connects", &s.connects),
            ("service_binds", &s.service_binds),
            ("user_binds", &s.user_binds),
            ("searches", &s.searches),
            ("group_cache_hits", &s.group_cache_hits),
            ("group_cache_misses", &s.group_cache_misses),
            ("group_cache_stale", &s.group_cache_stale),
        ]
        .into_iter()
        .map(|(name, c)| (name, c.load(Ordering::Relaxed)))
        .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A configuration whose service password comes from a variable every
    /// process has (the tests never set variables).
    fn config() -> LdapConfig {
        toml_like(
            r#"{"url":"ldap://127.0.0.1:1","bind_dn":"cn=x","bind_password_env":"PATH","user_base":"dc=x"}"#,
        )
    }

    fn toml_like(json: &str) -> LdapConfig {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn defaults_and_validation() {
        let c = config();
        assert_eq!(c.user_filter, "(uid={username})");
        assert_eq!(c.group_name_attribute, "cn");
        assert!(Ldap::new("l", &c).is_ok());
        let mut bad = c.clone();
        bad.url = "http://x".into();
        assert!(Ldap::new("l", &bad).is_err());
        let mut bad = c.clone();
        bad.url = "ldaps://x".into();
        bad.start_tls = true;
        assert!(Ldap::new("l", &bad).is_err());
        let mut bad = c.clone();
        bad.group_filter = Some("(member={dn})".into());
        assert!(Ldap::new("l", &bad).is_err());
        let mut bad = c;
        bad.bind_password_env = Some("REGAUTH_TEST_LDAP_PW_UNSET".into());
        let err = Ldap::new("l", &bad).err().unwrap().to_string();
        assert!(err.contains("REGAUTH_TEST_LDAP_PW_UNSET"), "{err}");
    }

    #[tokio::test]
    async fn empty_password_is_refused_without_connecting() {
        let ldap = Ldap::new("l", &config()).unwrap();
        let outcome = ldap.authenticate(&Credentials::new("ann", "")).await;
        assert!(matches!(outcome, Outcome::Rejected(Rejection::EmptySecret)));
        assert_eq!(ldap.stats.connects.load(Ordering::Relaxed), 0);
    }

    #[tokio::test]
    async fn unreachable_directory_is_unavailable() {
        let ldap = Ldap::new("l", &config()).unwrap();
        let outcome = ldap.authenticate(&Credentials::new("ann", "pw")).await;
        assert!(matches!(outcome, Outcome::Unavailable(_)), "{outcome:?}");
    }

    #[test]
    fn names_normalize_as_ldap_compares_them() {
        for typed in ["erin", "ERIN", "Erin", " erin", "erin  ", "\terin"] {
            assert_eq!(normalize(typed), "erin", "{typed:?}");
        }
        assert_eq!(normalize("Erin  Smith"), "erin smith");
        assert_ne!(normalize("erin2"), "erin");
    }

    #[test]
    fn filter_values_are_escaped() {
        assert_eq!(ldap_escape("admin)(uid=*"), "admin\\29\\28uid=\\2a");
        assert_eq!(ldap_escape("a\\b"), "a\\5cb");
    }
}
