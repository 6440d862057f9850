//! The `entra` provider: Microsoft Entra ID (Azure AD), one tenant.
//!
//! Underneath it is an OpenID Connect issuer ([`crate::oidc::Oidc`]) at
//! `{authority}/{tenant}/v2.0`: discovery, keys, the password grant
//! (ROPC, whose ID token is verified: the access token Entra gives for
//! `openid` is Microsoft Graph's), access tokens for regauth's app as
//! passwords, and the browser sign-in. v1.0 tokens
//! (`https://sts.windows.net/{tenant}/`) verify too, and other tenants'
//! only when `tenants` lists them: the `tid` claim must name an admitted
//! tenant.
//!
//! What Entra does its own way is groups. A token carries at most 200
//! group ids (fewer in some flows); past that it carries none and says so
//! (`_claim_names`, or `hasgroups`), and the groups must be read from
//! Microsoft Graph. regauth reads them there with its app's own
//! credentials (`transitiveMemberOf`), once per user per
//! `group_cache_ttl`, and when Graph cannot be asked the login is a 503,
//! never a login without groups. The same listing names the groups of
//! the claim (`displayName` or `onPremisesSamAccountName`), so rules read
//! `entra:platform-engineers`; the ids are groups too. App roles (`roles`)
//! of the home tenant are groups `role:NAME`. A client credentials token
//! is an app, `app:{client id}`, whose groups are its roles. An audit
//! line says where each login's groups came from.

mod config;
mod graph;

use std::collections::BTreeSet;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

use async_trait::async_trait;
use secrecy::{ExposeSecret as _, SecretString};
use serde_json::Value;

use crate::oidc::Oidc;
use crate::{
    BrowserLogin, Credentials, Error, Finished, Identity, IdentityProvider, Outcome, PendingLogin,
    Rejection, Renewed, SecretShape,
};

pub use self::config::{EntraConfig, GroupNames, GroupsSource};
use self::graph::{Credential, Graph};

/// The `entra` provider.
pub struct Entra {
    name: String,
    config: EntraConfig,
    credential: Credential,
    http: reqwest::Client,
    /// The tenant by its id, its issuer and its Graph: at once for a
    /// tenant configured by id, on first use for one configured by domain.
    home: tokio::sync::OnceCell<Arc<Home>>,
    /// When the tenant's metadata may be asked again after failures.
    pause: std::sync::Mutex<Pause>,
    /// Each user's groups in Graph (id, name), by tenant and object id.
    member_of: moka::future::Cache<String, Listing>,
}

/// The tenant regauth serves, once its id is known.
struct Home {
    /// Its directory (tenant) id.
    id: String,
    /// Its issuer.
    oidc: Oidc,
    /// Its Graph.
    graph: Graph,
}

/// Failures to read the tenant's metadata so far, and until when not to
/// ask again.
#[derive(Default)]
struct Pause {
    failures: u32,
    until: Option<std::time::Instant>,
}

impl Pause {
    /// How long is left to wait, if any.
    fn waiting(&self) -> Option<std::time::Duration> {
        self.until?
            .checked_duration_since(std::time::Instant::now())
    }

    /// Records an attempt: a success clears the pause, a failure doubles it.
    fn after(&mut self, ok: bool) {
        if ok {
            *self = Self::default();
            return;
        }
        self.failures = self.failures.saturating_add(1);
        let seconds = (1u64 << (self.failures - 1).min(6)).min(60);
        self.until = Some(std::time::Instant::now() + std::time::Duration::from_secs(seconds));
    }
}

/// A user's groups in Graph: each one's id and name (if usable).
type Listing = Arc<Vec<(String, Option<String>)>>;

/// Where a login's groups came from, for its audit line.
#[derive(Clone, Copy)]
enum Source {
    /// The token's `groups` claim.
    Claim,
    /// Microsoft Graph.
    Graph,
    /// An app's roles alone.
    Roles,
}

impl Source {
    fn as_str(self) -> &'static str {
        match self {
            Source::Claim => "claim",
            Source::Graph => "graph",
            Source::Roles => "roles",
        }
    }
}

impl Entra {
    /// The provider instance `name`: checks the configuration and loads the
    /// client secret; Entra is not contacted yet.
    pub fn new(name: &str, config: &EntraConfig) -> Result<Self, Error> {
        config.validate()?;
        // tokens write GUIDs in lower case
        let mut config = config.clone();
        config.tenant.make_ascii_lowercase();
        config
            .tenants
            .iter_mut()
            .for_each(|t| t.make_ascii_lowercase());
        let config = &config;
        let credential =
            match (&config.client_certificate_file, &config.client_key_file) {
                (Some(cert), Some(key)) => Credential::Certificate(
                    crate::oidc::ClientAssertion::load(&config.client_id, cert, key)?,
                ),
                _ => match (&config.client_secret_file, &config.client_secret_env) {
                    (None, None) => Credential::None,
                    (file, env) => Credential::Secret(crate::load_secret(
                        "client_secret",
                        file.as_deref(),
                        env.as_deref(),
                    )?),
                },
            };
        let needs_graph =
            config.groups_source == GroupsSource::Graph || config.group_names != GroupNames::Id;
        if needs_graph && matches!(credential, Credential::None) {
            return Err(Error::Config(
                "client_secret_file: Microsoft Graph (groups past the token's limit, group names) needs the app's client secret or certificate".into(),
            ));
        }
        let entra = Self {
            name: name.to_owned(),
            config: config.clone(),
            credential,
            http: crate::http_client(config.ca_file.as_deref(), config.timeout.0)?,
            home: tokio::sync::OnceCell::new(),
            pause: std::sync::Mutex::new(Pause::default()),
            member_of: moka::future::Cache::builder()
                .max_capacity(100_000)
                .time_to_live(config.group_cache_ttl.0)
                .build(),
        };
        if config::is_guid(&config.tenant) {
            let home = entra.home_of(&config.tenant)?;
            let _ = entra.home.set(Arc::new(home));
        }
        Ok(entra)
    }

    /// The tenant `id`'s issuer and Graph.
    fn home_of(&self, id: &str) -> Result<Home, Error> {
        let mut oidc = self.config.oidc(id)?;
        if let Credential::Certificate(assertion) = &self.credential {
            oidc.client_assertion = Some(assertion.clone());
        }
        Ok(Home {
            id: id.to_owned(),
            oidc: Oidc::new(&self.name, &oidc)?,
            graph: Graph::new(&self.config, id, self.credential.clone(), self.http.clone()),
        })
    }

    /// The tenant, its id learnt from its metadata the first time when it
    /// is configured by a verified domain (tried again on the next login
    /// while Entra cannot be asked).
    /// After a failure Entra is asked again only after a pause that
    /// doubles from 1 s to a minute, so that a flood of tokens while Entra
    /// is down costs no call each.
    async fn home(&self) -> Result<Arc<Home>, Error> {
        if let Some(home) = self.home.get() {
            return Ok(home.clone());
        }
        if let Some(wait) = self.pause.lock().ok().and_then(|p| p.waiting()) {
            return Err(Error::Upstream(format!(
                "Entra's metadata of {} could not be read (not asking again for {} s)",
                self.config.tenant,
                wait.as_secs().max(1)
            )));
        }
        let found = self
            .home
            .get_or_try_init(|| async {
                let id = self.tenant_id().await?;
                tracing::info!(provider = %self.name, domain = %self.config.tenant, tenant = %id, "the tenant's id, from its metadata");
                Ok(Arc::new(self.home_of(&id)?))
            })
            .await
            .cloned();
        if let Ok(mut pause) = self.pause.lock() {
            pause.after(found.is_ok());
        }
        found
    }

    /// The directory id of the tenant of a verified domain: the one its
    /// v2.0 metadata's issuer names.
    async fn tenant_id(&self) -> Result<String, Error> {
        let authority = self.config.authority.trim_end_matches('/');
        let url = format!(
            "{authority}/{}/v2.0/.well-known/openid-configuration",
            self.config.tenant
        );
        let response = self
            .http
            .get(&url)
            .send()
            .await
            .map_err(|e| Error::Upstream(format!("Entra's metadata: {}", e.without_url())))?;
        if !response.status().is_success() {
            return Err(Error::Upstream(format!(
                "Entra's metadata of {} answered {}",
                self.config.tenant,
                response.status()
            )));
        }
        let metadata: Value = crate::json_limited(response, crate::MAX_UPSTREAM_BODY)
            .await
            .map_err(|e| Error::Upstream(format!("Entra's metadata: {e}")))?;
        let issuer = metadata["issuer"].as_str().unwrap_or_default();
        issuer
            .strip_prefix(&format!("{authority}/"))
            .and_then(|rest| rest.strip_suffix("/v2.0"))
            .filter(|id| config::is_guid(id))
            .map(str::to_ascii_lowercase)
            .ok_or_else(|| {
                Error::Upstream(format!(
                    "Entra's metadata of {} names no tenant of {authority}",
                    self.config.tenant
                ))
            })
    }

    /// The outcome of a verified Entra token, its groups resolved.
    async fn enrich(&self, home: &Home, outcome: Outcome) -> Outcome {
        match outcome {
            Outcome::Authenticated(identity) => match self.resolve(home, identity).await {
                Ok(identity) => Outcome::Authenticated(identity),
                Err(outcome) => outcome,
            },
            other => other,
        }
    }

    /// The identity of a verified token: its tenant admitted (and the
    /// one its issuer names), its object id as the account, a user's
    /// groups or an app's roles as groups.
    async fn resolve(&self, home: &Home, mut identity: Identity) -> Result<Identity, Outcome> {
        let refuse = |why: String| Outcome::Rejected(Rejection::Other(why));
        let claims = &identity.claims;
        let tenant = claims.text("tid").unwrap_or_default().to_ascii_lowercase();
        if !self.config.admitted(&home.id).any(|t| t == tenant) {
            return Err(refuse(format!(
                "a token of tenant {tenant:?}, which `tenants` does not admit"
            )));
        }
        let issuer = claims.text("iss").unwrap_or_default().to_ascii_lowercase();
        if !issuer.contains(&format!("/{tenant}/")) {
            return Err(refuse(
                "the token's issuer is of another tenant than its tid".into(),
            ));
        }
        let oid = claims
            .text("oid")
            .filter(|o| config::is_guid(o))
            .map(|o| o.to_ascii_lowercase())
            .ok_or_else(|| refuse("the token has no object id (oid)".into()))?;
        let own = tenant == home.id;
        let who = self.who(&identity).map_err(refuse)?;
        let (mut groups, source) = match who {
            Who::App(_) => (BTreeSet::new(), Source::Roles),
            Who::User(_) => self.groups(home, &identity, (&tenant, &oid), own).await?,
        };
        // app roles are assigned in the tenant the token comes from: only
        // the home tenant's are regauth's
        if self.config.roles_as_groups && own {
            if let Some(Value::Array(roles)) = identity.claims.get("roles") {
                groups.extend(
                    roles
                        .iter()
                        .filter_map(Value::as_str)
                        .map(|r| format!("role:{r}")),
                );
            }
        }
        for bulky in [
            "groups",
            "_claim_names",
            "_claim_sources",
            "hasgroups",
            "roles",
        ] {
            identity.claims.remove(bulky);
        }
        (identity.subject, identity.kind) = match who {
            Who::User(name) => (name, crate::Kind::User),
            Who::App(id) => (format!("app:{id}"), crate::Kind::Robot),
        };
        identity.account_id = Some(format!("{tenant}/{oid}"));
        identity.groups = groups.into_iter().collect();
        tracing::info!(
            target: "regauth::audit",
            event = "entra_groups",
            provider = %self.name,
            subject = %crate::Safe(&identity.subject),
            source = source.as_str(),
            groups = identity.groups.len(),
            "entra groups"
        );
        Ok(identity)
    }

    /// Who a verified token is for: a user (delegated access, `scp`, or a
    /// sign-in's ID token) by their name, or an app (client credentials:
    /// no `scp`, `idtyp = app` or app roles) by its client id. An ID token
    /// presented as a password is neither.
    fn who(&self, identity: &Identity) -> Result<Who, String> {
        let claims = &identity.claims;
        let signed_in = identity.proof != crate::Proof::Token;
        if signed_in || claims.get("scp").is_some() {
            let name = [self.config.username_claim.as_str(), "upn"]
                .iter()
                .find_map(|c| claims.text(c))
                .ok_or_else(|| format!("the token has no {} claim", self.config.username_claim))?;
            return Ok(Who::User(name.to_lowercase()));
        }
        let app = claims.text("idtyp").as_deref() == Some("app") || claims.get("roles").is_some();
        let id = claims.text("azp").or_else(|| claims.text("appid"));
        match (app, id) {
            (true, Some(id)) => Ok(Who::App(id.to_ascii_lowercase())),
            _ => Err("a token without delegated scopes (scp) or app roles: an ID token is no access token".into()),
        }
    }

    /// A user's groups (ids and names) and where they came from: the
    /// token's claim when it carries them all, named from Graph's listing
    /// of the user's groups; else that listing itself. Another tenant's
    /// user is named by ids alone, and cannot be read in regauth's Graph.
    async fn groups(
        &self,
        home: &Home,
        identity: &Identity,
        (tenant, oid): (&str, &str),
        own: bool,
    ) -> Result<(BTreeSet<String>, Source), Outcome> {
        let claims = &identity.claims;
        let overage = claims.get("_claim_names.groups").is_some()
            || claims.get("hasgroups") == Some(&Value::Bool(true));
        let ids: Option<BTreeSet<String>> = match claims.get("groups") {
            Some(Value::Array(ids)) => Some(
                ids.iter()
                    .filter_map(Value::as_str)
                    .filter(|id| config::is_guid(id))
                    .map(str::to_ascii_lowercase)
                    .collect(),
            ),
            _ => None,
        };
        let from_claim =
            ids.filter(|_| !overage && self.config.groups_source == GroupsSource::Token);
        let named = own && self.config.group_names != GroupNames::Id;
        match from_claim {
            Some(ids) if !named || ids.is_empty() => Ok((ids, Source::Claim)),
            Some(ids) => {
                let listed = self.listing(home, tenant, oid).await?;
                let mut groups = ids.clone();
                groups.extend(listed.iter().filter(|(id, _)| ids.contains(id)).filter_map(|(_, n)| n.clone()));
                Ok((groups, Source::Claim))
            }
            None if !own => Err(Outcome::Rejected(Rejection::Other(format!(
                "a user of tenant {tenant} whose token carries no groups: their groups are in their own tenant's Graph, which regauth does not read"
            )))),
            None => {
                let listed = self.listing(home, tenant, oid).await?;
                let groups = listed.iter().flat_map(|(id, name)| std::iter::once(id.clone()).chain(name.clone())).collect();
                Ok((groups, Source::Graph))
            }
        }
    }

    /// The user's groups in Graph (id, name), once per `group_cache_ttl`
    /// (one call for concurrent logins of the same user).
    async fn listing(&self, home: &Home, tenant: &str, oid: &str) -> Result<Listing, Outcome> {
        let fetch = async {
            let found = home.graph.member_of(oid).await?;
            Ok::<_, Error>(Arc::new(
                found
                    .iter()
                    .map(|g| (g.id.to_ascii_lowercase(), home.graph.name(g)))
                    .collect(),
            ))
        };
        self.member_of
            .try_get_with(format!("{tenant}/{oid}"), fetch)
            .await
            .map_err(|e| Outcome::Unavailable(shared_error(&e)))
    }
}

/// Who a token is for.
enum Who {
    /// A user, by their name.
    User(String),
    /// An app, by its client id.
    App(String),
}

/// The error a cached lookup shared with its other waiters, as an error
/// of this one (a rate limit keeps its `Retry-After`).
fn shared_error(e: &Error) -> Error {
    match e {
        Error::RateLimited {
            message,
            retry_after,
        } => Error::RateLimited {
            message: message.clone(),
            retry_after: *retry_after,
        },
        other => Error::Upstream(other.to_string()),
    }
}

#[async_trait]
impl IdentityProvider for Entra {
    fn name(&self) -> &str {
        &self.name
    }

    fn kind(&self) -> crate::ProviderKind {
        crate::ProviderKind::Entra
    }

    /// Before the tenant's id is known (a tenant by domain, not yet
    /// asked), any token of the authority is offered; the issuer checks
    /// it once the id is known.
    fn accepts(&self, shape: SecretShape<'_>) -> bool {
        if let Some(home) = self.home.get() {
            return home.oidc.accepts(shape);
        }
        match shape {
            SecretShape::Jwt { issuer } => {
                self.config.access_tokens
                    && issuer.is_some_and(|i| {
                        i.starts_with(&format!("{}/", self.config.authority.trim_end_matches('/')))
                            || i.starts_with(&format!(
                                "{}/",
                                self.config.v1_issuer.trim_end_matches('/')
                            ))
                    })
            }
            SecretShape::Password => self.config.password_grant,
            _ => false,
        }
    }

    async fn authenticate(&self, credentials: &Credentials) -> Outcome {
        let home = match self.home().await {
            Ok(home) => home,
            Err(e) => return Outcome::Unavailable(e),
        };
        // offered before the tenant's id was known: a token of another
        // issuer is for the providers after this one
        let shape = SecretShape::of(&credentials.username, credentials.secret.expose_secret());
        if !home.oidc.accepts(shape) {
            return Outcome::NotMine;
        }
        let outcome = home.oidc.authenticate(credentials).await;
        self.enrich(&home, outcome).await
    }

    /// Entra matches names case-insensitively.
    fn normalize_username<'a>(&self, username: &'a str) -> std::borrow::Cow<'a, str> {
        std::borrow::Cow::Owned(username.trim().to_lowercase())
    }

    /// Only the password grant tries an account; a token stands alone.
    /// Known from the configuration, so that it never waits for Entra.
    async fn account_of(&self, credentials: &Credentials) -> Option<String> {
        (!crate::oidc::is_jwt(credentials) && self.config.password_grant)
            .then(|| self.normalize_username(&credentials.username).into_owned())
    }

    async fn ready(&self) -> Result<(), Error> {
        self.home().await?.oidc.ready().await
    }

    fn browser_login(&self) -> Option<&dyn BrowserLogin> {
        self.config
            .browser_login
            .then_some(self as &dyn BrowserLogin)
    }

    fn counters(&self) -> Vec<(&'static str, u64)> {
        let Some(home) = self.home.get() else {
            return Vec::new();
        };
        let mut counters = home.oidc.counters();
        counters.push(("graph_calls", home.graph.calls.load(Relaxed)));
        counters
    }
}

#[async_trait]
impl BrowserLogin for Entra {
    async fn begin(&self, redirect_uri: &str) -> Result<(String, PendingLogin), Error> {
        BrowserLogin::begin(&self.home().await?.oidc, redirect_uri).await
    }

    async fn finish(
        &self,
        redirect_uri: &str,
        pending: &PendingLogin,
        state: &str,
        code: &str,
    ) -> Finished {
        let home = match self.home().await {
            Ok(home) => home,
            Err(e) => {
                return Finished {
                    outcome: Outcome::Unavailable(e),
                    refresh_token: None,
                }
            }
        };
        let finished = BrowserLogin::finish(&home.oidc, redirect_uri, pending, state, code).await;
        Finished {
            outcome: self.enrich(&home, finished.outcome).await,
            refresh_token: finished.refresh_token,
        }
    }

    async fn renew(&self, refresh_token: &SecretString) -> Renewed {
        let home = match self.home().await {
            Ok(home) => home,
            Err(e) => return Renewed::Unavailable(e),
        };
        match BrowserLogin::renew(&home.oidc, refresh_token).await {
            Renewed::Current {
                identity: Some(identity),
                refresh_token,
            } => match self.resolve(&home, identity).await {
                Ok(identity) => Renewed::Current {
                    identity: Some(identity),
                    refresh_token,
                },
                Err(Outcome::Rejected(why)) => Renewed::Refused(why),
                Err(Outcome::Unavailable(e)) => Renewed::Unavailable(e),
                Err(_) => Renewed::Unavailable(Error::Internal("no identity".into())),
            },
            other => other,
        }
    }
}

#[cfg(test)]
mod tests;
