//! The HTTP surface: routes, request limits and the operational endpoints.
//!
//! Handlers get everything from the shared [`AppState`]; nothing here knows
//! how a provider checks a password. A panic anywhere becomes a generic 500
//! without internal text.

mod error;
mod ops;
mod token;

use std::sync::Arc;

use axum::routing::get;
use axum::Router;

pub use error::ApiError;

use crate::AppState;

/// Every route of the server.
pub fn router(state: Arc<AppState>) -> Router {
    let token_routes = get(token::get).post(token::post);
    Router::new()
        .route("/auth", token_routes.clone())
        .route("/token", token_routes.clone())
        .route("/auth/token", token_routes.clone())
        .route("/auth/token/", token_routes)
        .route("/jwks", get(ops::jwks))
        .route("/healthz", get(ops::healthz))
        .route("/readyz", get(ops::readyz))
        .route("/metrics", get(ops::metrics))
        .fallback(|| async { ApiError::not_found() })
        .layer(tower_http::catch_panic::CatchPanicLayer::custom(
            |_: Box<dyn std::any::Any + Send>| {
                tracing::error!("handler panicked");
                axum::response::IntoResponse::into_response(ApiError::internal())
            },
        ))
        .with_state(state)
}
