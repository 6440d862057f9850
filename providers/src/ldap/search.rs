//! Searches as the service account: on pooled connections, over the
//! provider's servers in order (the directory's own port or the Global
//! Catalog's), and what a finished search means (a search base that does
//! not exist, a continuation reference to another directory).

use std::sync::atomic::Ordering;

use ldap3::{Scope, SearchEntry};

use super::servers::{Servers, ServiceAccount};
use super::{ad, Ldap};
use crate::Error;

/// LDAP result codes a search tells apart.
const RC_REFERRAL: u32 = 10;
const RC_NO_SUCH_OBJECT: u32 = 32;

/// What a search base that does not exist (or is not on this server)
/// means for the caller.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Base {
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
pub(super) struct Found {
    pub(super) entries: Vec<SearchEntry>,
    pub(super) referred: bool,
}

/// Which of the provider's server lists a search goes to.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Port {
    /// The directory's own port (`urls`).
    Directory,
    /// The Global Catalog's port (`global_catalog`).
    Catalog,
}

fn upstream(context: &str, e: impl std::fmt::Display) -> Error {
    Error::Upstream(format!("{context}: {e}"))
}

impl Ldap {
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
    pub(super) async fn search(
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
    /// server restarted, say) is dropped with the rest of its server's
    /// pool and the search tried again on a fresh one; a server that fails
    /// is skipped and the next one asked.
    pub(super) async fn search_found(
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
                    servers.forget_idle(lease.server);
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
}
