//! Operational endpoints: liveness, readiness, the public key set and
//! Prometheus metrics. None of them reveals configuration or secrets.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};

use crate::{AppState, Live};

pub async fn healthz() -> &'static str {
    "ok\n"
}

/// Readiness: each provider, and whether log lines are being lost. The
/// answer is computed at most once a second (one caller at a time), so
/// probing `/readyz` cannot turn into LDAP binds or IdP requests.
pub async fn readyz(State(live): State<Arc<Live>>) -> Response {
    let state = live.load();
    let mut cached = state.readiness.lock().await;
    let fresh = cached
        .as_ref()
        .filter(|(at, _)| at.elapsed() < std::time::Duration::from_secs(1))
        .map(|(_, report)| report.clone());
    let (ready, body) = match fresh {
        Some(report) => report,
        None => {
            let report = readiness(&state).await;
            *cached = Some((std::time::Instant::now(), report.clone()));
            report
        }
    };
    drop(cached);
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, axum::Json(body)).into_response()
}

async fn readiness(state: &AppState) -> (bool, serde_json::Value) {
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
    let store = match state.store.ping().await {
        Ok(()) => format!("{}: ok", state.store.backend()),
        Err(e) => {
            ready = false;
            tracing::warn!(backend = state.store.backend(), error = %e, "state backend not ready");
            format!(
                "{}: unreachable ({e}); refresh grants and uncached logins get 503",
                state.store.backend()
            )
        }
    };
    let log = if crate::logging::losing_lines() {
        ready = false;
        "losing lines: the log sink cannot keep up or refuses writes (see regauth_log_lines_dropped_total)"
    } else {
        "ok"
    };
    let body =
        serde_json::json!({ "ready": ready, "providers": providers, "state": store, "log": log });
    (ready, body)
}

pub async fn jwks(State(live): State<Arc<Live>>) -> Response {
    let state = live.load();
    let body = state.keys.jwks();
    axum::Json(body).into_response()
}

pub async fn metrics(State(live): State<Arc<Live>>) -> Response {
    let state = live.load();
    let text = state.metrics.render(&state);
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response()
}
