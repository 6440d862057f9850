//! The HTTP surface: routes, request limits and the operational endpoints.
//!
//! Handlers get everything from the shared [`AppState`](crate::AppState);
//! nothing here knows how a provider checks a password. A panic anywhere
//! becomes a generic 500 without internal text.

mod bounded;
pub mod credentials;
mod device;
mod error;
mod extract;
pub mod listen;
mod ops;
pub mod request_id;
mod token;
mod ui;

use std::sync::Arc;

use axum::routing::get;
use axum::Router;

pub use error::ApiError;

use crate::Live;

/// Every route of the server. Token requests are held to
/// `server.request_deadline` and at most `server.max_in_flight` run at
/// once; beyond either, the answer is a 503 with `Retry-After`.
pub fn router(live: Arc<Live>) -> Router {
    let state = live.load();
    let server = &state.config.server;
    let bounded = bounded::BoundedLayer::new(server.limits.max_in_flight, server.timeouts.request);
    let token_routes = get(token::get)
        .post(token::post)
        .route_layer(bounded.clone());
    let ui_path = state
        .app_passwords
        .as_ref()
        .map(|p| p.config.path().to_owned());
    let router = Router::new();
    let router = match ui_path {
        Some(path) => router
            .merge(ui::router(&path).route_layer(bounded.clone()))
            .route(
                "/auth/device",
                axum::routing::post(device::authorize).route_layer(bounded.clone()),
            )
            .route(
                "/auth/revoke",
                axum::routing::post(device::revoke).route_layer(bounded),
            ),
        None => router,
    };
    router
        .route("/auth", token_routes.clone())
        .route("/token", token_routes.clone())
        .route("/auth/token", token_routes.clone())
        .route("/auth/token/", token_routes)
        .route(
            "/.well-known/oauth-authorization-server",
            get(device::metadata),
        )
        .route("/jwks", get(ops::jwks))
        .route("/healthz", get(ops::healthz))
        .route("/readyz", get(ops::readyz))
        .route("/metrics", get(ops::metrics))
        .fallback(|| async { ApiError::not_found() })
        .layer(axum::middleware::from_fn(request_id::with_request_id))
        .layer(tower_http::catch_panic::CatchPanicLayer::custom(
            |_: Box<dyn std::any::Any + Send>| {
                tracing::error!("handler panicked");
                axum::response::IntoResponse::into_response(ApiError::internal())
            },
        ))
        .with_state(live)
}

/// Only the operational endpoints, for a listener of their own
/// (`server.ops_listen`): the kubelet's probes and Prometheus reach them
/// without reaching the token endpoint, whose `X-Forwarded-For` regauth
/// believes from its proxies.
pub fn ops_router(live: Arc<Live>) -> Router {
    Router::new()
        .route("/jwks", get(ops::jwks))
        .route("/healthz", get(ops::healthz))
        .route("/readyz", get(ops::readyz))
        .route("/metrics", get(ops::metrics))
        .fallback(|| async { ApiError::not_found() })
        .layer(axum::middleware::from_fn(request_id::with_request_id))
        .with_state(live)
}
