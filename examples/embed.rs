//! Registry token auth inside your own service: the users come from the
//! host application's own store, the rule is "push `${user}/*`, pull
//! `shared/*`", and regauth is nested under `/registry-auth` of a larger
//! axum application. No file is read or written.
//!
//! ```sh
//! cargo run --example embed
//! # REGAUTH_EXAMPLE_LISTEN (127.0.0.1:8080), REGAUTH_EXAMPLE_SERVICE,
//! # REGAUTH_EXAMPLE_ISSUER, and REGAUTH_EXAMPLE_CERT: where to write the
//! # signing certificate (the registry's rootcertbundle)
//! ```

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use async_trait::async_trait;
use axum::routing::get;
use regauth_providers::{
    Credentials, ExposeSecret, Identity, IdentityProvider, Outcome, Rejection,
};

/// The host application's own user store (here: in memory).
struct HostUsers {
    passwords: HashMap<String, String>,
}

#[async_trait]
impl IdentityProvider for HostUsers {
    fn name(&self) -> &str {
        "app"
    }

    fn kind(&self) -> regauth_providers::ProviderKind {
        regauth_providers::ProviderKind::Custom("host")
    }

    async fn authenticate(&self, credentials: &Credentials) -> Outcome {
        let Some(password) = self.passwords.get(&credentials.username) else {
            return Outcome::NotMine;
        };
        let given = credentials.secret.expose_secret().as_bytes();
        match aws_lc_rs::constant_time::verify_slices_are_equal(password.as_bytes(), given) {
            Ok(()) => Outcome::Authenticated(Identity::new(&credentials.username, "app")),
            Err(_) => Outcome::Rejected(Rejection::WrongSecret),
        }
    }

    /// Refresh tokens (docker's identity tokens) look the user up again.
    async fn lookup(&self, subject: &str) -> Outcome {
        match self.passwords.contains_key(subject) {
            true => Outcome::Authenticated(Identity::new(subject, "app")),
            false => Outcome::NotMine,
        }
    }
}

fn setting(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_owned())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    regauth_providers::install_crypto_provider();
    let listen: SocketAddr = setting("REGAUTH_EXAMPLE_LISTEN", "127.0.0.1:8080").parse()?;
    let issuer = setting("REGAUTH_EXAMPLE_ISSUER", "my-app");

    // A key made at startup; a real service keeps one (and gives the
    // certificate to its registry).
    let (key_pem, cert_pem) = regauth::keys::generate(
        regauth::keys::KeyType::Es256,
        &issuer,
        std::time::Duration::from_secs(30 * 86400),
    )?;
    if let Ok(path) = std::env::var("REGAUTH_EXAMPLE_CERT") {
        std::fs::write(path, &cert_pem)?;
    }

    let users = HostUsers {
        passwords: HashMap::from([
            ("alice".to_owned(), "alice-password".to_owned()),
            ("bob".to_owned(), "bob-password".to_owned()),
        ]),
    };
    let auth = regauth::Server::builder()
        .issuer(issuer)
        .service(setting("REGAUTH_EXAMPLE_SERVICE", "registry.local"))
        .realm(format!("http://{listen}/registry-auth/auth"))
        .signing_key_pem(key_pem.as_bytes(), cert_pem.as_bytes())?
        .provider(Arc::new(users))
        .rules_toml(
            r#"
            [[rule]]
            users = ["*"]
            repos = ["${user}/*"]
            actions = ["pull", "push"]

            [[rule]]
            users = ["*"]
            repos = ["shared/*"]
            actions = ["pull"]
            "#,
        )?
        .build()?;

    // The host application, with regauth under /registry-auth.
    let app = axum::Router::new()
        .route("/", get(|| async { "the host application\n" }))
        .nest("/registry-auth", auth);
    let listener = tokio::net::TcpListener::bind(listen).await?;
    println!("listening on http://{listen} (token endpoint: /registry-auth/auth)");
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .await?;
    Ok(())
}
