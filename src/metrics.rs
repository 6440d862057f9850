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

    pub fn render(&self, state: &AppState) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "# HELP regauth_token_requests_total Token requests by outcome."
        );
        let _ = writeln!(out, "# TYPE regauth_token_requests_total counter");
        for (label, counter) in [
            ("issued", &self.issued),
            ("bad_request", &self.bad_request),
            ("unauthorized", &self.unauthorized),
            ("throttled", &self.throttled),
            ("unavailable", &self.unavailable),
        ] {
            let _ = writeln!(
                out,
                "regauth_token_requests_total{{outcome=\"{label}\"}} {}",
                counter.load(Ordering::Relaxed)
            );
        }
        let verdicts = &state.chain.verdicts;
        let _ = writeln!(
            out,
            "# HELP regauth_cache_requests_total Cache lookups by result."
        );
        let _ = writeln!(out, "# TYPE regauth_cache_requests_total counter");
        let _ = writeln!(
            out,
            "regauth_cache_requests_total{{cache=\"verdict\",result=\"hit\"}} {}",
            verdicts.counters.hits.load(Ordering::Relaxed)
        );
        let _ = writeln!(
            out,
            "regauth_cache_requests_total{{cache=\"verdict\",result=\"miss\"}} {}",
            verdicts.counters.misses.load(Ordering::Relaxed)
        );
        let _ = writeln!(out, "# HELP regauth_cache_entries Entries per cache.");
        let _ = writeln!(out, "# TYPE regauth_cache_entries gauge");
        let _ = writeln!(
            out,
            "regauth_cache_entries{{cache=\"verdict\"}} {}",
            verdicts.entry_count()
        );
        let _ = writeln!(
            out,
            "# HELP regauth_tokens_reused_total Tokens handed out again within token.reuse_window."
        );
        let _ = writeln!(out, "# TYPE regauth_tokens_reused_total counter");
        let _ = writeln!(
            out,
            "regauth_tokens_reused_total {}",
            state.issued.reused.load(Ordering::Relaxed)
        );
        let _ = writeln!(out, "# HELP regauth_signing_certificate_expiry_seconds When the signing certificate expires.");
        let _ = writeln!(
            out,
            "# TYPE regauth_signing_certificate_expiry_seconds gauge"
        );
        let _ = writeln!(
            out,
            "regauth_signing_certificate_expiry_seconds {}",
            state.key.not_after
        );
        out
    }
}
