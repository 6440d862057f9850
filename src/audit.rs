//! The one structured audit event per token request.
//!
//! It records who asked for what and what they got, so an operator can
//! answer "why could this CI job not push?" from the log alone. It must never
//! carry a password, a token or an Authorization header.

use std::net::IpAddr;
use std::time::Duration;

/// How a token request ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    Issued,
    BadRequest,
    Unauthorized,
    Throttled,
    Unavailable,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Issued => "issued",
            Outcome::BadRequest => "bad_request",
            Outcome::Unauthorized => "unauthorized",
            Outcome::Throttled => "throttled",
            Outcome::Unavailable => "unavailable",
        }
    }
}

/// Everything the audit line says about one request.
#[derive(Debug, Default)]
pub struct Event<'a> {
    pub method: &'a str,
    pub grant: &'a str,
    pub subject: String,
    pub provider: String,
    pub service: &'a str,
    pub requested: String,
    pub granted: String,
    pub client_ip: Option<IpAddr>,
    pub client_id: &'a str,
    pub cache_hit: bool,
    /// The token was one signed moments ago for the same grant.
    pub reused: bool,
    /// Why it failed, for the operator (never for the client).
    pub reason: String,
}

pub fn record(event: &Event<'_>, outcome: Outcome, latency: Duration) {
    let client_ip = event.client_ip.map(|ip| ip.to_string()).unwrap_or_default();
    let latency_us = latency.as_micros() as u64;
    let outcome = outcome.as_str();
    tracing::info!(
        target: "regauth::audit",
        outcome,
        method = event.method,
        grant = event.grant,
        subject = %event.subject,
        provider = %event.provider,
        service = event.service,
        requested = %event.requested,
        granted = %event.granted,
        client_ip = %client_ip,
        client_id = event.client_id,
        cache_hit = event.cache_hit,
        reused = event.reused,
        latency_us,
        reason = %event.reason,
        "token request"
    );
}
