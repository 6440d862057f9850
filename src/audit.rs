//! The one structured audit event per token request, built from the
//! request and its result (never mutated along the way).
//!
//! It records who asked for what and what they got, so an operator can
//! answer "why could this CI job not push?" from the log alone. It must never
//! carry a password, a token or an Authorization header, and nothing a
//! client typed can forge a log line: client-chosen text is escaped and
//! truncated ([`Safe`]).

use std::fmt;
use std::net::IpAddr;
use std::time::Duration;

use crate::issue::{scopes_text, Flow, Issued, Refusal};

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

/// At most this many bytes of any client-chosen text reach a log line.
pub const MAX_LOGGED_BYTES: usize = 256;

/// Client-chosen text as it may appear in a log line: control characters
/// (newlines, ANSI escapes) escaped as `\u{a}`, at most
/// [`MAX_LOGGED_BYTES`] bytes of input shown, and the rest counted.
pub struct Safe<'a>(pub &'a str);

impl fmt::Display for Safe<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut end = self.0.len().min(MAX_LOGGED_BYTES);
        while !self.0.is_char_boundary(end) {
            end -= 1;
        }
        for c in self.0[..end].chars() {
            if c.is_control() {
                write!(f, "{}", c.escape_unicode())?;
            } else {
                write!(f, "{c}")?;
            }
        }
        if end < self.0.len() {
            write!(f, "…(+{} bytes)", self.0.len() - end)?;
        }
        Ok(())
    }
}

/// At most this many bytes of a scope list reach a log line.
pub const MAX_LOGGED_SCOPES_BYTES: usize = 4096;

/// A scope list cut to [`MAX_LOGGED_SCOPES_BYTES`], with the rest counted.
fn bounded(text: String) -> String {
    if text.len() <= MAX_LOGGED_SCOPES_BYTES {
        return text;
    }
    let mut end = MAX_LOGGED_SCOPES_BYTES;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…(+{} bytes)", &text[..end], text.len() - end)
}

/// What the HTTP layer knows about a request besides its result.
#[derive(Debug, Default)]
pub struct Request<'a> {
    /// `GET` or `POST`.
    pub method: &'a str,
    /// `basic`, `anonymous`, `password`, `refresh_token`, ...
    pub grant: &'a str,
    /// The client's address (after trusted proxies).
    pub client_ip: Option<IpAddr>,
    /// The `client_id` parameter.
    pub client_id: &'a str,
    /// The raw `scope` values, for refusals before they were parsed.
    pub scopes: Vec<&'a str>,
}

/// Everything the audit line says about one request.
#[derive(Debug, Default)]
pub struct Event {
    pub subject: String,
    pub provider: String,
    pub service: String,
    pub requested: String,
    pub granted: String,
    pub cache_hit: bool,
    /// The token was one signed moments ago for the same grant.
    pub reused: bool,
    /// Why it failed, for the operator (never for the client).
    pub reason: String,
}

impl Event {
    /// The event of a finished request.
    pub fn of(request: &Request<'_>, result: &Result<Issued, Refusal>) -> (Self, Outcome) {
        match result {
            Ok(issued) => (
                Event {
                    subject: Safe(issued.principal.subject()).to_string(),
                    provider: issued.principal.provider().unwrap_or_default().to_owned(),
                    service: issued.service.clone(),
                    requested: bounded(scopes_text(&issued.requested)),
                    granted: bounded(scopes_text(&issued.access)),
                    cache_hit: issued.cache_hit,
                    reused: issued.reused,
                    reason: String::new(),
                },
                Outcome::Issued,
            ),
            Err(refusal) => (
                Event {
                    requested: bounded(Safe(&request.scopes.join(" ")).to_string()),
                    reason: refusal.reason(),
                    ..Default::default()
                },
                refusal.outcome(),
            ),
        }
    }
}

/// Writes the audit line.
pub fn record(request: &Request<'_>, event: &Event, outcome: Outcome, latency: Duration) {
    let client_ip = request
        .client_ip
        .map(|ip| ip.to_string())
        .unwrap_or_default();
    let latency_us = latency.as_micros() as u64;
    tracing::info!(
        target: "regauth::audit",
        outcome = outcome.as_str(),
        method = request.method,
        grant = request.grant,
        subject = %event.subject,
        provider = %event.provider,
        service = %event.service,
        requested = %event.requested,
        granted = %event.granted,
        client_ip = %client_ip,
        client_id = %Safe(request.client_id),
        cache_hit = event.cache_hit,
        reused = event.reused,
        latency_us,
        reason = %event.reason,
        "token request"
    );
}

/// The flow's name in the audit line.
pub fn method_of(flow: Flow) -> &'static str {
    match flow {
        Flow::Get => "GET",
        Flow::Post => "POST",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_text_cannot_forge_lines_or_grow_them() {
        let forged = Safe("erin\n{\"outcome\":\"issued\"}\u{1b}[31m").to_string();
        assert!(
            !forged.contains('\n') && !forged.contains('\u{1b}'),
            "{forged}"
        );
        assert!(forged.contains("\\u{a}"), "{forged}");
        let long = "x".repeat(300_000);
        let shown = Safe(&long).to_string();
        assert!(shown.len() < MAX_LOGGED_BYTES + 40, "{}", shown.len());
        assert!(shown.ends_with("…(+299744 bytes)"), "{shown}");
        // never splits a character
        let s = "é".repeat(200);
        assert!(Safe(&s).to_string().contains("(+144 bytes)"));
    }
}
