//! `[[provider]] kind = "ldap"` as written in the configuration file.

use std::path::PathBuf;

use serde::Deserialize;

use crate::settings::default;
use crate::Seconds;

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
    #[serde(default = "default::count::<10>")]
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
    #[serde(default = "default::seconds::<5>")]
    pub connect_timeout: Seconds,
    /// Timeout for each bind and search.
    #[serde(default = "default::seconds::<5>")]
    pub operation_timeout: Seconds,
    /// Idle service-account connections kept open, per server.
    #[serde(default = "default::count::<4>")]
    pub pool_size: usize,
    /// Connections in use at once (searches and binds), across servers.
    #[serde(default = "default::count::<16>")]
    pub max_connections: usize,
    /// How long a server that failed is skipped.
    #[serde(default = "default::seconds::<30>")]
    pub server_backoff: Seconds,
    /// How long a user's groups are cached.
    #[serde(default = "default::group_cache_ttl")]
    pub group_cache_ttl: Seconds,
    /// How long past their TTL cached groups may serve while the directory
    /// cannot answer.
    #[serde(default = "default::seconds::<3600>")]
    pub stale_if_error: Seconds,
}
