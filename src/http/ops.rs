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

/// Readiness: whether this replica can serve, which it can whenever it
/// runs (its configuration and keys are loaded before it listens). An
/// identity provider that is down, an unreachable state backend or lost
/// log lines are the same on every replica, so they do not turn it red
/// (the probe would take every replica out at once, and with them the
/// cached logins, static users and anonymous pulls that still work): the
/// answer stays 200 and names what is degraded, as the metrics and logs
/// do. The report is made at most once a second (one caller at a time),
/// so probing cannot turn into LDAP binds or IdP requests.
pub async fn readyz(State(live): State<Arc<Live>>) -> Response {
    let state = live.load();
    let mut cached = state.readiness.lock().await;
    let fresh = cached
        .as_ref()
        .filter(|(at, _)| at.elapsed() < std::time::Duration::from_secs(1))
        .map(|(_, report)| report.clone());
    let body = match fresh {
        Some(report) => report,
        None => {
            let report = readiness(&state).await;
            *cached = Some((std::time::Instant::now(), report.clone()));
            report
        }
    };
    drop(cached);
    (StatusCode::OK, axum::Json(body)).into_response()
}

async fn readiness(state: &AppState) -> serde_json::Value {
    let mut degraded = Vec::new();
    let mut providers = serde_json::Map::new();
    let mut servers = serde_json::Map::new();
    for provider in state.chain.providers() {
        let status = match provider.ready().await {
            Ok(()) => "ready".to_owned(),
            Err(e) => {
                tracing::warn!(provider = provider.name(), error = %e, "provider not ready");
                degraded.push(format!("provider {}", provider.name()));
                "unavailable".to_owned()
            }
        };
        providers.insert(provider.name().to_owned(), status.into());
        let status = provider.servers();
        if !status.is_empty() {
            let mut each = serde_json::Map::new();
            for (server, up) in status {
                if !up {
                    degraded.push(format!("server {server} of provider {}", provider.name()));
                }
                each.insert(server, if up { "up" } else { "down" }.into());
            }
            servers.insert(provider.name().to_owned(), each.into());
        }
    }
    let store = match state.store.ping().await {
        Ok(()) => format!("{}: ok", state.store.backend()),
        Err(e) => {
            tracing::warn!(backend = state.store.backend(), error = %e, "state backend not ready");
            degraded.push("state".to_owned());
            format!(
                "{}: unreachable ({e}); refresh grants and uncached logins get 503",
                state.store.backend()
            )
        }
    };
    let log = if crate::ops::logging::losing_lines() {
        degraded.push("log".to_owned());
        "losing lines: the log sink cannot keep up or refuses writes (see regauth_log_lines_dropped_total)"
    } else {
        "ok"
    };
    serde_json::json!({
        "ready": true,
        "degraded": degraded,
        "providers": providers,
        "servers": servers,
        "state": store,
        "log": log,
    })
}

pub async fn jwks(State(live): State<Arc<Live>>) -> Response {
    let state = live.load();
    let body = state.issuer.keys().jwks();
    axum::Json(body).into_response()
}

pub async fn metrics(State(live): State<Arc<Live>>) -> Response {
    let state = live.load();
    let text = state.metrics.render(&state.snapshot());
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response()
}
