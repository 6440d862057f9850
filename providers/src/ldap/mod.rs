//! The `ldap` provider: OpenLDAP or Active Directory, by search and bind.
//!
//! A login is: search the user with the service account (pooled
//! connections), require exactly one entry, then bind as that entry's DN
//! with the user's password on a connection of its own, so a pooled
//! connection never changes identity. Groups come from a group search
//! and/or the `memberOf` attribute, optionally walked up through nested
//! groups, and are cached per user DN with a bounded stale-if-error window.
//!
//! `active_directory = true` sets Active Directory's ways (the `ad` module): every
//! login form of one account (`bob`, `CORP\bob`, `bob@corp.example`) finds
//! the one entry and one subject (its sAMAccountName, lower-cased), nested
//! security groups come from one search, and accounts AD refuses
//! (disabled, locked, expired, must change their password) are refused
//! with the reason in the log. Several `urls` are domain controllers tried
//! in order (the `servers` module).
//!
//! Every value put into a filter is escaped (RFC 4515). An empty password
//! is refused before any bind: LDAP treats it as an unauthenticated bind,
//! which succeeds. Passwords never reach a log line or an error.

mod ad;
mod servers;

use std::collections::{BTreeSet, HashSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use ldap3::{ldap_escape, LdapConnSettings, Scope, SearchEntry};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

use self::ad::Login;
use self::servers::{Servers, ServiceAccount};
use crate::{
    load_secret, Credentials, Error, Identity, IdentityProvider, Outcome, Rejection, Seconds,
};

/// What a continuation reference to another server means for a user
/// search that found nobody here.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Referrals {
    /// The user may live there: the login is refused and the password goes
    /// to no other provider (the default). Use `global_catalog` for a
    /// forest.
    #[default]
    Refuse,
    /// Nobody by that name lives here: the next provider may be asked.
    Ignore,
}

/// `[[provider]] kind = "ldap"` as written in the configuration file.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LdapConfig {
    /// `ldaps://host:636` or `ldap://host:389` (with `start_tls = true`).
    #[serde(default)]
    pub url: Option<String>,
    /// Several servers of one directory (domain controllers), tried in
    /// order; instead of `url`.
    #[serde(default)]
    pub urls: Vec<String>,
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
    /// `{username}` is replaced by the escaped login name. Default
    /// `(uid={username})`; with `active_directory`, AD's own (every login
    /// form).
    #[serde(default)]
    pub user_filter: Option<String>,
    /// The attribute whose value is the subject (canonical case). Default
    /// `uid`; with `active_directory`, `sAMAccountName` (lower-cased).
    #[serde(default)]
    pub username_attribute: Option<String>,
    /// Where groups are searched (subtree); set together with
    /// `group_filter`. With `active_directory`, default `user_base`.
    #[serde(default)]
    pub group_base: Option<String>,
    /// `{dn}` (the member's DN) and `{username}` are replaced, escaped.
    #[serde(default)]
    pub group_filter: Option<String>,
    /// The attribute of a group entry that is its name. Default `cn`;
    /// with `active_directory`, `sAMAccountName`.
    #[serde(default)]
    pub group_name_attribute: Option<String>,
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
    /// Active Directory: one search with LDAP_MATCHING_RULE_IN_CHAIN
    /// (implied by `active_directory`).
    #[serde(default)]
    pub active_directory_in_chain: bool,
    /// Active Directory's defaults: every login form (`sAMAccountName`,
    /// a UPN under `upn_suffixes`, `NETBIOS\name`), nested security
    /// groups in one search, account states, `objectGUID`, TLS required.
    #[serde(default)]
    pub active_directory: bool,
    /// The NetBIOS domain of down-level logins (`CORP` of `CORP\bob`).
    #[serde(default)]
    pub netbios_domain: Option<String>,
    /// The UPN suffixes of this domain (`corp.example`, and any
    /// alternative ones); the first is the domain's own DNS name, under
    /// which AD also takes the implicit UPN `sAMAccountName@domain`.
    #[serde(default)]
    pub upn_suffixes: Vec<String>,
    /// Find users on the Global Catalog (3268, or 3269 with `ldaps://`,
    /// on the same servers) across the forest; the bind is made on the
    /// servers' own port.
    #[serde(default)]
    pub global_catalog: bool,
    /// What a search that found nobody but was referred elsewhere means
    /// (`refuse` or `ignore`); references into the configuration, schema
    /// and DNS partitions are always ignored.
    #[serde(default)]
    pub referrals: Referrals,
    /// Prepended to every group name (e.g. `ldap:`).
    #[serde(default)]
    pub group_prefix: Option<String>,
    /// Timeout for opening a connection to the directory.
    #[serde(default = "default_connect_timeout")]
    pub connect_timeout: Seconds,
    /// Timeout for each bind and search.
    #[serde(default = "default_operation_timeout")]
    pub operation_timeout: Seconds,
    /// Idle service-account connections kept open, per server.
    #[serde(default = "default_pool_size")]
    pub pool_size: usize,
    /// Connections in use at once (searches and binds), across servers.
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
    /// How long a server that failed is skipped.
    #[serde(default = "default_server_backoff")]
    pub server_backoff: Seconds,
    /// How long a user's groups are cached.
    #[serde(default = "default_group_ttl")]
    pub group_cache_ttl: Seconds,
    /// How long past their TTL cached groups may serve while the directory
    /// cannot answer.
    #[serde(default = "default_stale_if_error")]
    pub stale_if_error: Seconds,
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
fn default_max_connections() -> usize {
    16
}
fn default_server_backoff() -> Seconds {
    Seconds(Duration::from_secs(30))
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

/// How users are found.
enum Finder {
    /// A configured filter with `{username}`.
    Filter(String),
    /// Active Directory's login forms.
    ActiveDirectory,
}

/// The settings, defaults applied.
struct Settings {
    finder: Finder,
    username_attribute: String,
    group_name_attribute: String,
    group_base: Option<String>,
    in_chain: bool,
}

/// The `ldap` provider: one configured directory.
pub struct Ldap {
    name: String,
    config: LdapConfig,
    settings: Settings,
    bind_password: SecretString,
    servers: Servers,
    /// The Global Catalog ports of the same servers (`global_catalog`).
    catalog: Option<Servers>,
    groups: moka::future::Cache<String, Arc<CachedGroups>>,
    /// A UPN login's account (sAMAccountName), so that every form of one
    /// account shares one failure budget.
    accounts: moka::future::Cache<String, Arc<Option<String>>>,
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

/// A search's entries, and whether the server referred part of it to
/// another directory (continuation references outside the configuration
/// partitions).
struct Found {
    entries: Vec<SearchEntry>,
    referred: bool,
}

/// Which of the provider's server lists a search goes to.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Port {
    Directory,
    Catalog,
}

/// Operational attributes that say when a password (or, failing that, the
/// entry) last changed: OpenLDAP ppolicy, Active Directory, any server.
const CHANGED: &[&str] = &["pwdChangedTime", "pwdLastSet", "modifyTimestamp"];
/// Attributes that stay with one entry for its life (a new account under
/// a reused name gets another).
const ENTRY_ID: &[&str] = &["entryUUID", "objectGUID"];
/// Attributes that say an OpenLDAP account is locked or an AD one is
/// disabled, locked or expired.
const LOCK_ATTRIBUTES: &[&str] = &["pwdAccountLockedTime", "lockoutTime"];
/// OpenLDAP ppolicy's value for "locked by an administrator".
const LOCKED_FOR_GOOD: &str = "000001010000Z";

/// When the account checks run: after a successful bind the directory has
/// applied its own lockout (a time-based lock that has expired no longer
/// counts); without a bind (a refresh) every lock counts.
#[derive(Clone, Copy, PartialEq, Eq)]
enum After {
    Bind,
    Lookup,
}

/// Why the account of an entry cannot be used, from its attributes.
fn lock_of(entry: &SearchEntry, after: After, active_directory: bool) -> Option<Rejection> {
    // OpenLDAP ppolicy: present while the account is locked.
    let locked = attribute(entry, "pwdAccountLockedTime");
    let locked_for_good = locked.iter().any(|v| v == LOCKED_FOR_GOOD);
    if locked_for_good || (after == After::Lookup && !locked.is_empty()) {
        return Some(Rejection::Locked);
    }
    // Active Directory: disabled, locked (as the DC computes it now, so an
    // expired lockout is over), expired, a password to change.
    if active_directory || !attribute(entry, "userAccountControl").is_empty() {
        return ad::state_of(entry);
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

/// The values of an attribute, matched case-insensitively.
fn attribute<'e>(entry: &'e SearchEntry, name: &str) -> &'e [String] {
    entry
        .attrs
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_slice())
        .unwrap_or(&[])
}

/// `ldaps://host:636` → the same host's Global Catalog port (3269 for
/// ldaps, 3268 for ldap).
fn catalog_url(url: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap_or(("ldap", url));
    let host_port = rest.split('/').next().unwrap_or_default();
    let host = match host_port.rsplit_once(':') {
        Some((host, port)) if port.bytes().all(|b| b.is_ascii_digit()) => host,
        _ => host_port,
    };
    let port = if scheme == "ldaps" { 3269 } else { 3268 };
    format!("{scheme}://{host}:{port}")
}

impl Ldap {
    /// The provider instance `name`: checks the URLs and the filters and
    /// loads the service account's password.
    pub fn new(name: &str, config: &LdapConfig) -> Result<Self, Error> {
        let urls: Vec<String> = match (&config.url, config.urls.is_empty()) {
            (Some(url), true) => vec![url.clone()],
            (None, false) => config.urls.clone(),
            (Some(_), false) => {
                return Err(Error::Config("set url or urls, not both".into()));
            }
            (None, true) => return Err(Error::Config("url (or urls) is required".into())),
        };
        for url in &urls {
            if !(url.starts_with("ldap://") || url.starts_with("ldaps://")) {
                return Err(Error::Config(format!(
                    "{url}: a directory URL must start with ldap:// or ldaps://"
                )));
            }
            if config.start_tls && url.starts_with("ldaps://") {
                return Err(Error::Config(
                    "start_tls is for ldap:// URLs; ldaps:// is TLS already".into(),
                ));
            }
            if config.active_directory && url.starts_with("ldap://") && !config.start_tls {
                return Err(Error::Config(format!(
                    "{url}: Active Directory refuses password binds without TLS (\"transport encryption required\"): use ldaps://...:636, or start_tls = true"
                )));
            }
        }
        let settings = Self::settings(config)?;
        let bind_password = load_secret(
            "bind_password",
            config.bind_password_file.as_deref(),
            config.bind_password_env.as_deref(),
        )?;
        let mut conn = LdapConnSettings::new()
            .set_conn_timeout(config.connect_timeout.0)
            .set_starttls(config.start_tls);
        if let Some(path) = &config.ca_file {
            conn = conn.set_config(Arc::new(crate::client_tls(
                Some(path),
                crate::Roots::OnlyTheFile,
            )?));
        }
        let servers_of = |urls: &[String]| {
            Servers::new(
                urls,
                conn.clone(),
                config.operation_timeout.0,
                config.server_backoff.0,
                config.pool_size,
                config.max_connections,
            )
        };
        let catalog = config.global_catalog.then(|| {
            let urls: Vec<String> = urls.iter().map(|u| catalog_url(u)).collect();
            servers_of(&urls)
        });
        Ok(Self {
            name: name.to_owned(),
            config: config.clone(),
            settings,
            bind_password,
            servers: servers_of(&urls),
            catalog,
            groups: moka::future::Cache::builder()
                .max_capacity(100_000)
                .time_to_live(config.group_cache_ttl.0 + config.stale_if_error.0)
                .build(),
            accounts: moka::future::Cache::builder()
                .max_capacity(100_000)
                .time_to_live(Duration::from_secs(600))
                .build(),
            stats: Stats::default(),
        })
    }

    /// The settings with their defaults (AD's with `active_directory`).
    fn settings(config: &LdapConfig) -> Result<Settings, Error> {
        let ad = config.active_directory;
        let finder = match (&config.user_filter, ad) {
            (Some(filter), _) if !filter.contains("{username}") => {
                return Err(Error::Config("user_filter must contain {username}".into()))
            }
            (Some(filter), _) => Finder::Filter(filter.clone()),
            (None, true) => Finder::ActiveDirectory,
            (None, false) => Finder::Filter("(uid={username})".into()),
        };
        if config.group_filter.is_some() != config.group_base.is_some() && !ad {
            return Err(Error::Config(
                "group_filter and group_base go together".into(),
            ));
        }
        if ad && config.upn_suffixes.is_empty() && config.netbios_domain.is_none() {
            tracing::info!("active_directory without upn_suffixes or netbios_domain: only sAMAccountName logins are recognised");
        }
        Ok(Settings {
            finder,
            username_attribute: config
                .username_attribute
                .clone()
                .unwrap_or_else(|| if ad { "sAMAccountName" } else { "uid" }.into()),
            group_name_attribute: config
                .group_name_attribute
                .clone()
                .unwrap_or_else(|| if ad { "sAMAccountName" } else { "cn" }.into()),
            group_base: config
                .group_base
                .clone()
                .or_else(|| ad.then(|| config.user_base.clone())),
            in_chain: config.active_directory_in_chain
                || (ad && config.group_filter.is_none() && config.member_of_attribute.is_none()),
        })
    }

    fn service_account(&self) -> ServiceAccount<'_> {
        ServiceAccount {
            dn: &self.config.bind_dn,
            password: &self.bind_password,
        }
    }

    fn servers_for(&self, port: Port) -> &Servers {
        match (port, &self.catalog) {
            (Port::Catalog, Some(catalog)) => catalog,
            _ => &self.servers,
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
            .search_found(Port::Directory, base, scope, filter, attrs, missing)
            .await?
            .entries)
    }

    /// One search as the service account, saying whether the server also
    /// referred part of it elsewhere. A pooled connection that fails (the
    /// server restarted, say) is dropped and the search tried again on a
    /// fresh one; a server that fails is skipped and the next one asked.
    async fn search_found(
        &self,
        port: Port,
        base: &str,
        scope: Scope,
        filter: &str,
        attrs: &[&str],
        missing: Base,
    ) -> Result<Found, Error> {
        let servers = self.servers_for(port);
        let mut failed: Vec<usize> = Vec::new();
        let mut last = Error::Upstream("no directory server answered".into());
        // each server once on a fresh connection, and one stale pooled one
        for _ in 0..=servers.len() {
            let mut lease = match servers
                .service(&self.service_account(), &failed, &self.stats.service_binds)
                .await
            {
                Ok(lease) => lease,
                Err(e) if failed.is_empty() => return Err(e),
                Err(_) => return Err(last),
            };
            self.stats.searches.fetch_add(1, Ordering::Relaxed);
            let outcome = lease
                .conn
                .with_timeout(self.config.operation_timeout.0)
                .search(base, scope, filter, attrs.to_vec())
                .await;
            match outcome {
                Ok(ldap3::SearchResult(entries, result)) => {
                    servers.give_back(lease);
                    return self.found(base, missing, entries, result);
                }
                Err(e) if lease.pooled => {
                    tracing::debug!(provider = %self.name, error = %e, "pooled LDAP connection failed; reconnecting");
                }
                Err(e) => {
                    servers.failed(lease.server);
                    failed.push(lease.server);
                    last = upstream("search", e);
                }
            }
        }
        Err(last)
    }

    /// What a finished search means.
    fn found(
        &self,
        base: &str,
        missing: Base,
        entries: Vec<ldap3::ResultEntry>,
        result: ldap3::LdapResult,
    ) -> Result<Found, Error> {
        // Continuation references (ldap3 gathers them in the result) point
        // at other servers; those into the configuration, schema and DNS
        // partitions, which a search from a domain root always gets, are
        // not about users.
        let referred = result.refs.iter().any(|r| ad::reference_is_elsewhere(r))
            || entries.iter().any(|e| e.is_ref());
        let found = || Found {
            entries: entries
                .into_iter()
                .filter(|e| !e.is_ref())
                .map(SearchEntry::construct)
                .collect(),
            referred,
        };
        match (result.rc, missing) {
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
        }
    }

    /// Binds as `dn`, on a connection of its own. `Ok(None)` is success.
    async fn user_bind(&self, dn: &str, password: &str) -> Result<Option<Rejection>, Error> {
        self.stats.user_binds.fetch_add(1, Ordering::Relaxed);
        let result = self.servers.user_bind(dn, password).await?;
        match result.rc {
            0 => Ok(None),
            RC_INVALID_CREDENTIALS => {
                // Active Directory says why in the text (data 52e: wrong
                // password, 533: disabled, 775: locked); it holds no secret.
                let reason = ad::bind_refusal(&result.text);
                tracing::info!(provider = %self.name, dn, reason = %reason, "LDAP bind refused");
                Ok(Some(reason))
            }
            RC_UNWILLING_TO_PERFORM => Ok(Some(Rejection::Disabled)),
            rc => Err(Error::Upstream(format!(
                "user bind failed (result {rc}: {})",
                result.text
            ))),
        }
    }

    /// The filter and search port for a typed login, or `None` when the
    /// name is of another domain.
    fn filter_for(&self, typed: &str) -> Option<(String, Port)> {
        let port = if self.catalog.is_some() {
            Port::Catalog
        } else {
            Port::Directory
        };
        match &self.settings.finder {
            Finder::Filter(filter) => {
                // on AD, `CORP\bob` is looked up as `bob`
                let name = match self.login(typed) {
                    Some(Login::Account(sam)) => sam,
                    _ => typed.to_owned(),
                };
                Some((filter.replace("{username}", &ldap_escape(&name)), port))
            }
            Finder::ActiveDirectory => {
                let login = self.login(typed)?;
                let implicit = self.config.upn_suffixes.first().map(String::as_str);
                Some((ad::user_filter(&login, implicit), port))
            }
        }
    }

    /// An AD login's form (`None` off AD, or for another domain's name).
    fn login(&self, typed: &str) -> Option<Login> {
        self.config.active_directory.then_some(())?;
        Login::parse(
            typed,
            self.config.netbios_domain.as_deref(),
            &self.config.upn_suffixes,
        )
    }

    /// Finds the one entry the user filter matches for `username`, with
    /// its subject. `Err(outcome)` is the answer when there is no usable
    /// entry.
    async fn find_user(
        &self,
        username: &str,
    ) -> Result<Result<(SearchEntry, String), Outcome>, Error> {
        let Some((filter, port)) = self.filter_for(username) else {
            return Ok(Err(Outcome::NotMine));
        };
        let attribute_of_name = self.settings.username_attribute.as_str();
        let mut attrs = vec![attribute_of_name];
        if let Some(member_of) = &self.config.member_of_attribute {
            attrs.push(member_of);
        }
        attrs.extend(CHANGED);
        attrs.extend(ENTRY_ID);
        attrs.extend(LOCK_ATTRIBUTES);
        attrs.extend(ad::STATE_ATTRIBUTES);
        let found = self
            .search_found(
                port,
                &self.config.user_base,
                Scope::Subtree,
                &filter,
                &attrs,
                Base::Required,
            )
            .await?;
        let mut entries = found.entries;
        let entry = match entries.len() {
            // Referred elsewhere: the user may live there, so the password
            // goes to no other provider (unless told to ignore referrals).
            0 if found.referred && self.config.referrals == Referrals::Refuse => {
                return Ok(Err(Outcome::Rejected(Rejection::Other(
                    "not found here, and the directory referred the search to another server (use global_catalog for a forest, or referrals = \"ignore\")"
                        .into(),
                ))))
            }
            0 => return Ok(Err(Outcome::NotMine)),
            1 => entries.remove(0),
            n => {
                tracing::warn!(provider = %self.name, user = %crate::Safe(username), entries = n, "the user filter matched several entries; refusing the login");
                return Ok(Err(Outcome::Rejected(Rejection::Other(format!(
                    "{n} directory entries match"
                )))));
            }
        };
        match attribute(&entry, attribute_of_name).first() {
            Some(subject) => {
                let subject = if self.config.active_directory {
                    subject.to_lowercase()
                } else {
                    subject.clone()
                };
                Ok(Ok((entry, subject)))
            }
            None => Ok(Err(Outcome::Rejected(Rejection::Other(format!(
                "the entry has no {attribute_of_name} attribute"
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

    async fn login_with(&self, credentials: &Credentials) -> Result<Outcome, Error> {
        let (entry, subject) = match self.find_user(&credentials.username).await? {
            Ok(found) => found,
            Err(outcome) => return Ok(outcome),
        };
        if matches!(
            self.login(&credentials.username),
            Some(Login::Principal { .. })
        ) {
            // this UPN's account, for the next attempt's failure budget
            self.accounts
                .insert(
                    normalize(&credentials.username),
                    Arc::new(Some(subject.clone())),
                )
                .await;
        }
        if let Some(rejection) = self
            .user_bind(&entry.dn, credentials.secret.expose_secret())
            .await?
        {
            return Ok(Outcome::Rejected(rejection));
        }
        // A directory without a password policy may let a locked or
        // disabled account bind; the attributes say otherwise.
        if let Some(rejection) = lock_of(&entry, After::Bind, self.config.active_directory) {
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
        let name_attr = self.settings.group_name_attribute.as_str();
        if let (true, Some(base)) = (self.settings.in_chain, &self.settings.group_base) {
            let filter = if self.config.active_directory {
                ad::groups_filter(user_dn)
            } else {
                format!("(member:1.2.840.113556.1.4.1941:={})", ldap_escape(user_dn))
            };
            let mut names = BTreeSet::new();
            for entry in self
                .search(base, Scope::Subtree, &filter, &[name_attr], Base::Required)
                .await?
            {
                names.extend(attribute(&entry, name_attr).iter().cloned());
            }
            return Ok(self.finish(names));
        }
        let names = self.walk_groups(user_dn, subject, member_of).await?;
        Ok(self.finish(names))
    }

    /// The group search and the `memberOf` walk, nested up to `max_nesting`.
    async fn walk_groups(
        &self,
        user_dn: &str,
        subject: &str,
        member_of: Vec<String>,
    ) -> Result<BTreeSet<String>, Error> {
        let c = &self.config;
        let name_attr = self.settings.group_name_attribute.as_str();
        let search_groups = self
            .settings
            .group_base
            .as_ref()
            .zip(c.group_filter.as_ref());
        let mut names = BTreeSet::new();
        // (group DN, its name if known)
        let mut level: Vec<(String, Option<String>)> = Vec::new();
        if let Some((base, filter)) = search_groups {
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
                let (name, above) = self.group_entry(&dn, name).await?;
                names.extend(name);
                parents.extend(above);
                if let (true, Some((base, filter))) = (c.nested_groups, search_groups) {
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
        Ok(names)
    }

    /// A group's name (read from its entry when not known yet) and, when
    /// nesting through `memberOf`, the groups it belongs to.
    async fn group_entry(
        &self,
        dn: &str,
        name: Option<String>,
    ) -> Result<(Option<String>, Vec<(String, Option<String>)>), Error> {
        let c = &self.config;
        let name_attr = self.settings.group_name_attribute.as_str();
        let read_entry = name.is_none() || (c.nested_groups && c.member_of_attribute.is_some());
        if !read_entry {
            return Ok((name, Vec::new()));
        }
        let mut attrs = vec![name_attr];
        if let Some(member_of) = &c.member_of_attribute {
            attrs.push(member_of);
        }
        let entry = self
            .search(dn, Scope::Base, "(objectClass=*)", &attrs, Base::MayBeGone)
            .await?
            .into_iter()
            .next();
        let Some(entry) = entry else {
            return Ok((name, Vec::new()));
        };
        let name = name.or_else(|| attribute(&entry, name_attr).first().cloned());
        let above = match (c.nested_groups, &c.member_of_attribute) {
            (true, Some(member_of)) => attribute(&entry, member_of)
                .iter()
                .map(|p| (p.clone(), None))
                .collect(),
            _ => Vec::new(),
        };
        Ok((name, above))
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
        match self.login_with(credentials).await {
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
        if normalize(&found.1) != normalize(subject) {
            return Outcome::NotMine;
        }
        if let Some(rejection) = lock_of(&found.0, After::Lookup, self.config.active_directory) {
            return Outcome::Rejected(rejection);
        }
        match self.identity(&found.0, found.1).await {
            Ok(outcome) => outcome,
            Err(e) => Outcome::Unavailable(e),
        }
    }

    /// A real question to the directory: the user base, as the service
    /// account (on the first server that answers).
    async fn ready(&self) -> Result<(), Error> {
        self.search(
            &self.config.user_base,
            Scope::Base,
            "(objectClass=*)",
            &["1.1"],
            Base::Required,
        )
        .await
        .map(drop)
    }

    fn reachable(&self) -> bool {
        self.servers.any_up()
    }

    /// The form of a name under which the directory finds the same
    /// account: case and spaces folded, and on AD the NetBIOS prefix
    /// dropped (`CORP\Bob` is `bob`).
    fn normalize_username<'a>(&self, username: &'a str) -> std::borrow::Cow<'a, str> {
        match self.login(username) {
            Some(Login::Account(sam)) => std::borrow::Cow::Owned(sam),
            _ => std::borrow::Cow::Owned(normalize(username)),
        }
    }

    /// The directory account these credentials try: on AD every login form
    /// of one account is that account (a UPN is looked up once and
    /// remembered), so no mix of forms and cases gets more attempts.
    async fn account_of(&self, credentials: &Credentials) -> Option<String> {
        let Some(login) = self.login(&credentials.username) else {
            return Some(normalize(&credentials.username));
        };
        if let Some(sam) = login.account() {
            return Some(sam.to_owned());
        }
        let key = normalize(&credentials.username);
        let resolved = self
            .accounts
            .try_get_with(key.clone(), async {
                match self.find_user(&credentials.username).await {
                    Ok(Ok((_, subject))) => Ok(Arc::new(Some(subject))),
                    Ok(Err(_)) => Ok(Arc::new(None)),
                    Err(e) => Err(e),
                }
            })
            .await;
        match resolved {
            Ok(account) => Some(account.as_ref().clone().unwrap_or(key)),
            // the directory cannot say now: the typed form stands for it
            Err(_) => Some(key),
        }
    }

    fn counters(&self) -> Vec<(&'static str, u64)> {
        let s = &self.stats;
        let mut out = vec![("connects", self.servers.connects.load(Ordering::Relaxed))];
        out.extend(
            [
                ("service_binds", &s.service_binds),
                ("user_binds", &s.user_binds),
                ("searches", &s.searches),
                ("group_cache_hits", &s.group_cache_hits),
                ("group_cache_misses", &s.group_cache_misses),
                ("group_cache_stale", &s.group_cache_stale),
            ]
            .into_iter()
            .map(|(name, c)| (name, c.load(Ordering::Relaxed))),
        );
        out
    }

    fn servers(&self) -> Vec<(String, bool)> {
        let mut out = self.servers.status();
        if let Some(catalog) = &self.catalog {
            out.extend(catalog.status());
        }
        out
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
        let ldap = Ldap::new("l", &c).unwrap();
        assert!(matches!(&ldap.settings.finder, Finder::Filter(f) if f == "(uid={username})"));
        assert_eq!(ldap.settings.group_name_attribute, "cn");
        let mut bad = c.clone();
        bad.url = Some("http://x".into());
        assert!(Ldap::new("l", &bad).is_err());
        let mut bad = c.clone();
        bad.url = Some("ldaps://x".into());
        bad.start_tls = true;
        assert!(Ldap::new("l", &bad).is_err());
        let mut bad = c.clone();
        bad.group_filter = Some("(member={dn})".into());
        assert!(Ldap::new("l", &bad).is_err());
        let mut bad = c.clone();
        bad.urls = vec!["ldap://y".into()];
        assert!(Ldap::new("l", &bad).is_err(), "url and urls");
        let mut bad = c;
        bad.bind_password_env = Some("REGAUTH_TEST_LDAP_PW_UNSET".into());
        let err = Ldap::new("l", &bad).err().unwrap().to_string();
        assert!(err.contains("REGAUTH_TEST_LDAP_PW_UNSET"), "{err}");
    }

    #[test]
    fn active_directory_needs_tls_and_sets_its_defaults() {
        let mut ad = config();
        ad.active_directory = true;
        let err = Ldap::new("ad", &ad).err().unwrap().to_string();
        assert!(err.contains("TLS"), "{err}");
        ad.start_tls = true;
        let ldap = Ldap::new("ad", &ad).unwrap();
        assert!(matches!(ldap.settings.finder, Finder::ActiveDirectory));
        assert_eq!(ldap.settings.username_attribute, "sAMAccountName");
        assert_eq!(ldap.settings.group_base.as_deref(), Some("dc=x"));
        assert!(ldap.settings.in_chain);
        assert_eq!(catalog_url("ldaps://dc1.corp:636"), "ldaps://dc1.corp:3269");
        assert_eq!(catalog_url("ldap://10.0.0.1"), "ldap://10.0.0.1:3268");
    }

    #[tokio::test]
    async fn empty_password_is_refused_without_connecting() {
        let ldap = Ldap::new("l", &config()).unwrap();
        let outcome = ldap.authenticate(&Credentials::new("ann", "")).await;
        assert!(matches!(outcome, Outcome::Rejected(Rejection::EmptySecret)));
        assert_eq!(ldap.servers.connects.load(Ordering::Relaxed), 0);
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
