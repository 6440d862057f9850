//! Your own rule instead of `[[rule]]`s: an `Authorizer` that lets a user
//! push and pull `USER/*` and pull what their team owns (`TEAM/*`), with
//! teams from the host application's data. The users are regauth's own
//! static provider, built in code.
//!
//! ```sh
//! cargo run --example custom_authorizer
//! # REGAUTH_EXAMPLE_LISTEN (127.0.0.1:8081), REGAUTH_EXAMPLE_SERVICE,
//! # REGAUTH_EXAMPLE_ISSUER, REGAUTH_EXAMPLE_CERT
//! ```

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::Arc;

use async_trait::async_trait;
use regauth::authorize::{AuthorizeError, Authorizer};
use regauth::domain::policy::{Grant, Principal};
use regauth::domain::scope::Scope;
use regauth_providers::static_users::{StaticConfig, StaticUsers};

/// "A user may push `USER/*` and pull what their team owns."
struct Teams {
    team_of: HashMap<String, String>,
}

impl Teams {
    fn allowed(&self, user: &str, repository: &str) -> &'static [&'static str] {
        let Some((owner, rest)) = repository.split_once('/') else {
            return &[];
        };
        if rest.contains('/') {
            return &[]; // one level only: USER/name, TEAM/name
        }
        if owner == user {
            &["pull", "push"]
        } else if self.team_of.get(user).is_some_and(|team| team == owner) {
            &["pull"]
        } else {
            &[]
        }
    }
}

#[async_trait]
impl Authorizer for Teams {
    async fn authorize(
        &self,
        principal: &Principal,
        _service: &str,
        scopes: &[Scope],
    ) -> Result<Vec<Grant>, AuthorizeError> {
        Ok(scopes
            .iter()
            .map(|scope| {
                let allowed: &[&str] = match principal {
                    Principal::Authenticated(id) if scope.kind == "repository" => {
                        self.allowed(&id.subject, &scope.name)
                    }
                    _ => &[],
                };
                Grant {
                    scope: scope.clone(),
                    actions: scope
                        .actions
                        .iter()
                        .filter(|a| allowed.contains(&a.as_str()))
                        .cloned()
                        .collect(),
                    trace: Vec::new(),
                }
            })
            .collect())
    }
}

fn setting(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_owned())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    regauth_providers::install_crypto_provider();
    let listen: SocketAddr = setting("REGAUTH_EXAMPLE_LISTEN", "127.0.0.1:8081").parse()?;
    let issuer = setting("REGAUTH_EXAMPLE_ISSUER", "my-app");
    let (key_pem, cert_pem) = regauth::keys::generate(
        regauth::keys::KeyType::Es256,
        &issuer,
        std::time::Duration::from_secs(30 * 86400),
    )?;
    if let Ok(path) = std::env::var("REGAUTH_EXAMPLE_CERT") {
        std::fs::write(path, &cert_pem)?;
    }
    let hash = |password: &str| regauth_providers::static_users::hash_bcrypt(password, 10);
    let users = StaticUsers::load(
        "local",
        &StaticConfig {
            users: BTreeMap::from([
                ("alice".to_owned(), hash("alice-password")?),
                ("bob".to_owned(), hash("bob-password")?),
            ]),
            ..Default::default()
        },
    )?;
    let teams = Teams {
        team_of: HashMap::from([
            ("alice".to_owned(), "web".to_owned()),
            ("bob".to_owned(), "db".to_owned()),
        ]),
    };
    let router = regauth::Server::builder()
        .issuer(issuer)
        .service(setting("REGAUTH_EXAMPLE_SERVICE", "registry.local"))
        .realm(format!("http://{listen}/auth"))
        .signing_key_pem(key_pem.as_bytes(), cert_pem.as_bytes())?
        .provider(Arc::new(users))
        .authorizer(Arc::new(teams))
        .build()?;
    let listener = tokio::net::TcpListener::bind(listen).await?;
    println!("listening on http://{listen} (token endpoint: /auth)");
    axum::serve(
        listener,
        router.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .await?;
    Ok(())
}
