//! Operational endpoints: liveness, readiness, the public key set and
//! Prometheus metrics. None of them reveals configuration or secrets.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};

use crate::AppState;

pub async fn healthz() -> &'static str {
    "ok\n"
}

pub async fn readyz(State(state): State<Arc<AppState>>) -> Response {
    let mut ready = true;
    let mut providers = serde_json::Map::new();
    for provider in state.chain.providers() {
        let status = match provider.ready().await {
            Ok(()) => "ready".to_owned(),
            Err(e) => {
                ready = false;
                tracing::warn!(provider = provider.name(), error = %e, "provider not ready");
                "unavailable".to_owned()
            }
        };
        providers.insert(provider.name().to_owned(), status.into());
    }
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let body = serde_json::json!({ "ready": ready, "providers": providers });
    (status, axum::Json(body)).into_response()
}

pub async fn jwks(State(state): State<Arc<AppState>>) -> Response {
    let body = serde_json::json!({ "keys": [state.key.jwk()] });
    axum::Json(body).into_response()
}

pub async fn metrics(State(state): State<Arc<AppState>>) -> Response {
    let text = state.metrics.render(&state);
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response()
}
