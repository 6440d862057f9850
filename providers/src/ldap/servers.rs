//! The directory servers of one provider (`urls`, several domain
//! controllers of one domain): tried in configured order, a server whose
//! connection failed skipped for `server_backoff`, idle service-account
//! connections pooled per server, and at most `max_connections` in use at
//! once across them (binds and searches alike).
//!
//! A search that fails on one server is tried again on the next. A user's
//! bind is tried on the next server only when connecting failed: once the
//! bind has been sent, the password may have reached the DC, and a retry
//! would count against the account twice.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ldap3::{Ldap as Connection, LdapConnAsync, LdapConnSettings, LdapResult};
use secrecy::{ExposeSecret, SecretString};

use crate::Error;

/// One directory server and its idle connections.
struct Server {
    url: String,
    idle: Mutex<Vec<Connection>>,
    /// Skipped until then, after a failed connection.
    down_until: Mutex<Option<Instant>>,
    /// Whether the last attempt to reach it succeeded.
    up: AtomicBool,
}

/// The servers of one provider.
pub(crate) struct Servers {
    servers: Vec<Server>,
    settings: LdapConnSettings,
    operation_timeout: Duration,
    backoff: Duration,
    pool_size: usize,
    permits: Arc<tokio::sync::Semaphore>,
    /// Connections opened (for the provider's counters).
    pub(crate) connects: AtomicU64,
}

/// A connection in use, on server `server`, holding one of the
/// `max_connections` permits.
pub(crate) struct Lease {
    pub(crate) conn: Connection,
    pub(crate) server: usize,
    pub(crate) pooled: bool,
    _permit: tokio::sync::OwnedSemaphorePermit,
}

/// How the service account authenticates (for a new pooled connection).
pub(crate) struct ServiceAccount<'a> {
    pub(crate) dn: &'a str,
    pub(crate) password: &'a SecretString,
}

impl Servers {
    pub(crate) fn new(
        urls: &[String],
        settings: LdapConnSettings,
        operation_timeout: Duration,
        backoff: Duration,
        pool_size: usize,
        max_connections: usize,
    ) -> Self {
        Self {
            servers: urls
                .iter()
                .map(|url| Server {
                    url: url.clone(),
                    idle: Mutex::new(Vec::new()),
                    down_until: Mutex::new(None),
                    up: AtomicBool::new(true),
                })
                .collect(),
            settings,
            operation_timeout,
            backoff,
            pool_size,
            permits: Arc::new(tokio::sync::Semaphore::new(max_connections.max(1))),
            connects: AtomicU64::new(0),
        }
    }

    /// The servers to try, in order: those not backing off, in configured
    /// order, then (all else failing) those that are.
    fn order(&self) -> Vec<usize> {
        let now = Instant::now();
        let backing_off = |i: &usize| {
            self.servers[*i]
                .down_until
                .lock()
                .map(|d| d.is_some_and(|until| until > now))
                .unwrap_or(false)
        };
        let (mut ready, resting): (Vec<usize>, Vec<usize>) =
            (0..self.servers.len()).partition(|i| !backing_off(i));
        ready.extend(resting);
        ready
    }

    async fn permit(&self) -> Result<tokio::sync::OwnedSemaphorePermit, Error> {
        tokio::time::timeout(self.operation_timeout, self.permits.clone().acquire_owned())
            .await
            .ok()
            .and_then(Result::ok)
            .ok_or_else(|| {
                Error::Upstream(
                    "every directory connection (max_connections) is in use: try again".into(),
                )
            })
    }

    /// A new connection to server `i`, or why not (the server then backs off).
    async fn connect(&self, i: usize) -> Result<Connection, Error> {
        let server = &self.servers[i];
        self.connects.fetch_add(1, Ordering::Relaxed);
        match LdapConnAsync::with_settings(self.settings.clone(), &server.url).await {
            Ok((driver, ldap)) => {
                ldap3::drive!(driver);
                self.mark(i, true);
                Ok(ldap)
            }
            Err(e) => {
                self.failed(i);
                Err(Error::Upstream(format!("connect to {}: {e}", server.url)))
            }
        }
    }

    fn mark(&self, i: usize, up: bool) {
        let server = &self.servers[i];
        let was = server.up.swap(up, Ordering::Relaxed);
        if was != up {
            if up {
                tracing::info!(server = %server.url, "the directory server answers again");
            } else {
                tracing::warn!(server = %server.url, backoff = ?self.backoff, "a directory server does not answer: trying the next one, and this one again after the back-off");
            }
        }
        if let Ok(mut until) = server.down_until.lock() {
            *until = (!up).then(|| Instant::now() + self.backoff);
        }
    }

    /// Server `i` failed (a connection or an operation on a new
    /// connection): it is skipped for the back-off, its idle connections
    /// dropped.
    pub(crate) fn failed(&self, i: usize) {
        self.mark(i, false);
        self.forget_idle(i);
    }

    /// Drops server `i`'s idle connections: one of them failed, so the
    /// server restarted or died and the others are as stale. Trying them
    /// one by one would spend a search's retries on them.
    pub(crate) fn forget_idle(&self, i: usize) {
        if let Ok(mut idle) = self.servers[i].idle.lock() {
            idle.clear();
        }
    }

    /// A connection bound as the service account: an idle one if a server
    /// has one, else a new one on the first server that answers. `skip`
    /// servers are not tried (they just failed this operation).
    pub(crate) async fn service(
        &self,
        account: &ServiceAccount<'_>,
        skip: &[usize],
        service_binds: &AtomicU64,
    ) -> Result<Lease, Error> {
        let permit = self.permit().await?;
        let order: Vec<usize> = self
            .order()
            .into_iter()
            .filter(|i| !skip.contains(i))
            .collect();
        for &i in &order {
            let idle = self.servers[i].idle.lock().ok().and_then(|mut p| p.pop());
            if let Some(conn) = idle {
                return Ok(Lease {
                    conn,
                    server: i,
                    pooled: true,
                    _permit: permit,
                });
            }
        }
        let mut last = Error::Upstream("no directory server is configured".into());
        for i in order {
            let mut conn = match self.connect(i).await {
                Ok(conn) => conn,
                Err(e) => {
                    last = e;
                    continue;
                }
            };
            service_binds.fetch_add(1, Ordering::Relaxed);
            let bound = conn
                .with_timeout(self.operation_timeout)
                .simple_bind(account.dn, account.password.expose_secret())
                .await;
            match bound {
                Ok(result) if result.rc == 0 => {
                    return Ok(Lease {
                        conn,
                        server: i,
                        pooled: false,
                        _permit: permit,
                    })
                }
                Ok(result) => return Err(service_bind_refused(account.dn, &result)),
                Err(e) => {
                    self.failed(i);
                    last = Error::Upstream(format!(
                        "service account bind at {}: {e}",
                        self.servers[i].url
                    ));
                }
            }
        }
        Err(last)
    }

    /// Keeps a lease's connection for the next search.
    pub(crate) fn give_back(&self, lease: Lease) {
        if let Ok(mut idle) = self.servers[lease.server].idle.lock() {
            if idle.len() < self.pool_size {
                idle.push(lease.conn);
            }
        }
    }

    /// Binds as `dn` with `password` on a connection of its own. Only a
    /// failure to connect moves on to the next server.
    pub(crate) async fn user_bind(&self, dn: &str, password: &str) -> Result<LdapResult, Error> {
        let _permit = self.permit().await?;
        let mut last = Error::Upstream("no directory server is configured".into());
        for i in self.order() {
            let mut conn = match self.connect(i).await {
                Ok(conn) => conn,
                Err(e) => {
                    last = e;
                    continue;
                }
            };
            let result = conn
                .with_timeout(self.operation_timeout)
                .simple_bind(dn, password)
                .await;
            let _ = conn.unbind().await;
            return result.map_err(|e| {
                self.failed(i);
                Error::Upstream(format!("user bind at {}: {e}", self.servers[i].url))
            });
        }
        Err(last)
    }

    /// Each server and whether its last connection worked.
    pub(crate) fn status(&self) -> Vec<(String, bool)> {
        self.servers
            .iter()
            .map(|s| (s.url.clone(), s.up.load(Ordering::Relaxed)))
            .collect()
    }

    /// Whether any server answered last time.
    pub(crate) fn any_up(&self) -> bool {
        self.servers.iter().any(|s| s.up.load(Ordering::Relaxed))
    }

    /// How many servers there are.
    pub(crate) fn len(&self) -> usize {
        self.servers.len()
    }
}

/// Why the service account's bind was refused: AD's "transport encryption
/// required" (result 8 over plain `ldap://`) says so rather than blaming
/// the bind DN.
fn service_bind_refused(dn: &str, result: &LdapResult) -> Error {
    const RC_STRONGER_AUTH_REQUIRED: u32 = 8;
    if result.rc == RC_STRONGER_AUTH_REQUIRED {
        return Error::Upstream(format!(
            "the directory requires TLS for a password bind (result 8, {}): use ldaps:// or start_tls = true",
            result.text
        ));
    }
    Error::Upstream(format!(
        "service account bind as {dn} refused (result {}): check bind_dn and the password",
        result.rc
    ))
}
