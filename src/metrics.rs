//! Counters exported on `/metrics` in the Prometheus text format. Plain
//! atomics: the hot path pays one relaxed increment per request.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::audit::Outcome;
use crate::AppState;

#[derive(Debug, Default)]
pub struct Metrics {
    issued: AtomicU64,
    bad_request: AtomicU64,
    unauthorized: AtomicU64,
    throttled: AtomicU64,
    unavailable: AtomicU64,
    connections_refused: AtomicU64,
}

impl Metrics {
    pub fn record(&self, outcome: Outcome) {
        let counter = match outcome {
            Outcome::Issued => &self.issued,
            Outcome::BadRequest => &self.bad_request,
            Outcome::Unauthorized => &self.unauthorized,
            Outcome::Throttled => &self.throttled,
            Outcome::Unavailable => &self.unavailable,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// A connection beyond `server.max_connections` was answered 503.
    pub fn connection_refused(&self) {
        self.connections_refused.fetch_add(1, Ordering::Relaxed);
    }

    pub fn render(&self, state: &AppState) -> String {
        let mut out = String::new();
        let outcomes: Vec<(String, u64)> = [
            ("issued", &self.issued),
            ("bad_request", &self.bad_request),
            ("unauthorized", &self.unauthorized),
            ("throttled", &self.throttled),
            ("unavailable", &self.unavailable),
        ]
        .into_iter()
        .map(|(label, c)| (format!("outcome=\"{label}\""), c.load(Ordering::Relaxed)))
        .collect();
        metric(
            &mut out,
            "regauth_token_requests_total",
            "counter",
            "Token requests by outcome.",
            &outcomes,
        );
        let verdicts = &state.chain.verdicts;
        metric(
            &mut out,
            "regauth_cache_requests_total",
            "counter",
            "Cache lookups by result.",
            &[
                (
                    "cache=\"verdict\",result=\"hit\"".into(),
                    verdicts.counters.hits.load(Ordering::Relaxed),
                ),
                (
                    "cache=\"verdict\",result=\"miss\"".into(),
                    verdicts.counters.misses.load(Ordering::Relaxed),
                ),
            ],
        );
        metric(
            &mut out,
            "regauth_cache_entries",
            "gauge",
            "Entries per cache.",
            &[("cache=\"verdict\"".into(), verdicts.entry_count())],
        );
        metric(
            &mut out,
            "regauth_tokens_reused_total",
            "counter",
            "Tokens handed out again within token.reuse_window.",
            &[(String::new(), state.issued.reused.load(Ordering::Relaxed))],
        );
        metric(
            &mut out,
            "regauth_connections_refused_total",
            "counter",
            "Connections answered 503 because server.max_connections were open.",
            &[(
                String::new(),
                self.connections_refused.load(Ordering::Relaxed),
            )],
        );
        metric(
            &mut out,
            "regauth_log_lines_dropped_total",
            "counter",
            "Log and audit lines dropped because the log sink could not keep up.",
            &[(String::new(), crate::logging::dropped_lines())],
        );
        metric(
            &mut out,
            "regauth_log_write_errors_total",
            "counter",
            "Writes of log and audit lines that the sink refused.",
            &[(String::new(), crate::logging::write_errors())],
        );
        metric(
            &mut out,
            "regauth_signing_certificate_expiry_seconds",
            "gauge",
            "When the signing certificate expires.",
            &[(String::new(), state.keys.not_after().max(0) as u64)],
        );
        out
    }
}

/// One metric family: HELP, TYPE and a sample per label set.
fn metric(out: &mut String, name: &str, kind: &str, help: &str, samples: &[(String, u64)]) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
    for (labels, value) in samples {
        if labels.is_empty() {
            let _ = writeln!(out, "{name} {value}");
        } else {
            let _ = writeln!(out, "{name}{{{labels}}} {value}");
        }
    }
}
