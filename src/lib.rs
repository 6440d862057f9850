//! regauth: a token server that bridges container registries (the Docker
//! token-auth protocol) and a company's identity providers.
//!
//! [`build`] turns a validated [`config::Config`] into an [`AppState`], and
//! [`app()`] turns that into an axum `Router` that tests drive with `oneshot`
//! and [`serve`] runs on a socket. Identity providers live in the
//! `regauth-providers` crate; this crate never speaks LDAP or IdP HTTP.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod admin;
pub mod app;
pub(crate) mod app_passwords;
pub mod authorize;
mod builder;
pub mod clock;
pub mod config;
pub mod domain;
pub(crate) mod files;
pub mod http;
pub mod identity;
pub(crate) mod issue;
pub mod keys;
pub(crate) mod net;
pub mod ops;
mod random;
pub mod refresh;
pub mod state;
pub mod terminal;
#[cfg(test)]
mod testing;

use std::sync::Arc;

pub use app::{build, build_with, reload, AppState, Live};
pub use builder::{Builder, Server};

/// Errors building the server from its configuration.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The configuration is invalid.
    #[error(transparent)]
    Config(#[from] config::ConfigError),
    /// A key or certificate (signing, refresh or TLS) could not be loaded or
    /// made.
    #[error(transparent)]
    Key(#[from] keys::KeyError),
    /// A provider could not be built from its settings.
    #[error("provider {name}: {source}")]
    Provider {
        /// The provider's instance name.
        name: String,
        /// Why it could not be built.
        #[source]
        source: regauth_providers::Error,
    },
    /// The state backend could not be set up.
    #[error("state backend: {0}")]
    State(#[source] state::StoreError),
    /// The authorizer webhook could not be set up.
    #[error("authorizer: {0}")]
    Authorizer(#[source] authorize::AuthorizeError),
    /// `[app_passwords]` is set but its key was not given.
    #[error("[app_passwords] needs its key (app_passwords.key_file)")]
    NoAppPasswordKey,
    /// The system has no randomness (no key could be made).
    #[error(transparent)]
    NoRandomness(#[from] keys::NoRandomness),
    /// No `[[provider]]` is configured.
    #[error("no identity provider is configured ([[provider]]): nobody could log in. Mount a configuration with at least one provider (for the container image: /etc/regauth/regauth.toml)")]
    NoProvider,
}

/// The application as a router (no socket): what tests drive.
pub fn app(state: Arc<AppState>) -> axum::Router {
    http::router(Live::new(state))
}

/// Serves until `shutdown` completes, then drains in-flight requests for
/// at most `server.shutdown_timeout` (see [`http::listen`] for the bounds every
/// connection is held to).
pub async fn serve<F>(
    state: Arc<AppState>,
    listener: tokio::net::TcpListener,
    shutdown: F,
) -> std::io::Result<()>
where
    F: std::future::Future<Output = ()> + Send + 'static,
{
    http::listen::serve(Live::new(state), listener, shutdown).await
}
