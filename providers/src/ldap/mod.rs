//! The `ldap` provider: OpenLDAP or Active Directory, by search and bind.
//!
//! A login is: search the user with the service account (pooled
//! connections, the `search` module), require exactly one entry, then
//! bind as that entry's DN with the user's password on a connection of its
//! own, so a pooled connection never changes identity. The entry says
//! whether the account may be used (the `entry` module). Groups come from
//! a group search and/or the `memberOf` attribute, optionally walked up
//! through nested groups, and are cached per user DN with a bounded
//! stale-if-error window (the `groups` module). The settings as written
//! are the `config` module's.
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
mod config;
mod entry;
mod groups;
mod search;
mod servers;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use ldap3::{ldap_escape, LdapConnSettings, Scope, SearchEntry};
use secrecy::{ExposeSecret, SecretString};

use self::ad::Login;
use self::entry::{
    attribute, credential_stamp, entry_id, lock_of, After, CHANGED, ENTRY_ID, LOCK_ATTRIBUTES,
};
use self::groups::CachedGroups;
use self::search::{Base, Port};
use self::servers::Servers;
use crate::{load_secret, Credentials, Error, Identity, IdentityProvider, Outcome, Rejection};

pub use self::config::{LdapConfig, Referrals};

/// LDAP result codes a bind tells apart.
const RC_INVALID_CREDENTIALS: u32 = 49;
const RC_UNWILLING_TO_PERFORM: u32 = 53;

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

/// How LDAP's default matching rules compare names: case-insensitive, with
/// leading and trailing spaces ignored and inner runs of spaces as one.
pub fn normalize(username: &str) -> String {
    username
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .to_lowercase()
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

    async fn group(&self, group: &str) -> Result<crate::GroupAnswer, Error> {
        self.group_named(group).await
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
        config_from_json(
            r#"{"url":"ldap://127.0.0.1:1","bind_dn":"cn=x","bind_password_env":"PATH","user_base":"dc=x"}"#,
        )
    }

    fn config_from_json(json: &str) -> LdapConfig {
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
