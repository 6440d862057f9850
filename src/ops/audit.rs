//! The one structured audit event per token request, built from the
//! request and its result (never mutated along the way).
//!
//! It records who asked for what and what they got, so an operator can
//! answer "why could this CI job not push?" from the log alone. It must never
//! carry a password, a token or an Authorization header, and nothing a
//! client typed can forge a log line: client-chosen text is escaped and
//! truncated ([`Safe`]).

use std::net::IpAddr;
use std::time::Duration;

/// How a token request ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// A token was issued.
    Issued,
    /// The request was malformed, or asked for an unsupported or disabled
    /// grant.
    BadRequest,
    /// Credentials, a refresh token or anonymous access were refused (401).
    Unauthorized,
    /// Too many failed logins: refused without asking a provider (401).
    Throttled,
    /// A provider or a store could not answer, or something failed inside
    /// regauth.
    Unavailable,
}

impl Outcome {
    /// The outcome's name on the audit line.
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

use regauth_providers::Escaped;
pub use regauth_providers::{Safe, MAX_LOGGED_BYTES};

/// At most this many bytes of a scope list reach a log line.
pub const MAX_LOGGED_SCOPES_BYTES: usize = 4096;

/// Client-chosen text of up to `max` bytes for a log line: control
/// characters escaped, the rest cut and counted.
fn bounded(text: &str, max: usize) -> String {
    Escaped::new(text, max).to_string()
}

/// At most this many bytes of a service a refused request named reach a
/// log line.
const MAX_LOGGED_SERVICE_BYTES: usize = 256;

/// At most this many bytes of a refusal's reason reach a log line.
const MAX_LOGGED_REASON_BYTES: usize = 1024;

/// How a token request proves who it is, as the audit line names it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum GrantType {
    /// Not known: a POST whose body could not be read, or without
    /// `grant_type`.
    #[default]
    Unknown,
    /// GET with Basic credentials.
    Basic,
    /// GET without credentials.
    Anonymous,
    /// POST `grant_type=password`.
    Password,
    /// POST `grant_type=refresh_token`.
    RefreshToken,
    /// POST with RFC 8628's device code grant.
    DeviceCode,
    /// POST with any other `grant_type`.
    Unsupported,
}

impl GrantType {
    /// The name on the audit line (empty when unknown).
    pub fn as_str(self) -> &'static str {
        match self {
            GrantType::Unknown => "",
            GrantType::Basic => "basic",
            GrantType::Anonymous => "anonymous",
            GrantType::Password => "password",
            GrantType::RefreshToken => "refresh_token",
            GrantType::DeviceCode => "device_code",
            GrantType::Unsupported => "unsupported",
        }
    }
}

/// What the HTTP layer knows about a request besides its result.
#[derive(Debug, Default)]
pub struct Request<'a> {
    /// `GET` or `POST`.
    pub method: &'a str,
    /// How the request proves who it is.
    pub grant: GrantType,
    /// The client's address (after trusted proxies).
    pub client_ip: Option<IpAddr>,
    /// The `client_id` parameter.
    pub client_id: &'a str,
    /// The `service` parameter as sent (a refusal's line keeps it).
    pub service: &'a str,
    /// The raw `scope` values, for refusals before they were parsed.
    pub scopes: Vec<&'a str>,
}

/// Everything the audit line says about one request.
#[derive(Debug, Default)]
pub struct Event {
    /// Who the token was issued to (empty when refused or anonymous).
    pub subject: String,
    /// `user` or `robot` (empty when anonymous or refused).
    pub kind: &'static str,
    /// The provider that vouched for the subject (empty if none).
    pub provider: String,
    /// The service the token is for (when refused: the one named).
    pub service: String,
    /// The scopes asked for, bounded for the log.
    pub requested: String,
    /// The access granted, bounded for the log (empty when refused).
    pub granted: String,
    /// The credentials were answered from the verdict cache.
    pub cache_hit: bool,
    /// The token was one signed moments ago for the same grant.
    pub reused: bool,
    /// Why it failed, for the operator (never for the client).
    pub reason: String,
}

/// What the audit line says of an issued token, as the pipeline knows it
/// (unbounded, unescaped).
pub struct IssuedSummary<'a> {
    /// Who the token was issued to.
    pub subject: &'a str,
    /// `user` or `robot` (empty when anonymous).
    pub kind: &'static str,
    /// The provider that vouched for the subject (empty if none).
    pub provider: &'a str,
    /// The service the token is for.
    pub service: &'a str,
    /// The scopes asked for, as text.
    pub requested: &'a str,
    /// The access granted, as text.
    pub granted: &'a str,
    /// The credentials were answered from the verdict cache.
    pub cache_hit: bool,
    /// The token was one signed moments ago for the same grant.
    pub reused: bool,
}

impl Event {
    /// The event of an issued token: client-chosen text escaped and
    /// bounded.
    pub fn issued(token: IssuedSummary<'_>) -> Self {
        Event {
            subject: Safe(token.subject).to_string(),
            kind: token.kind,
            provider: token.provider.to_owned(),
            service: token.service.to_owned(),
            requested: bounded(token.requested, MAX_LOGGED_SCOPES_BYTES),
            granted: bounded(token.granted, MAX_LOGGED_SCOPES_BYTES),
            cache_hit: token.cache_hit,
            reused: token.reused,
            reason: String::new(),
        }
    }

    /// The event of a refused request: the service and scopes as sent and
    /// the reason, bounded.
    pub fn refused(service: &str, scopes: &[&str], reason: &str) -> Self {
        Event {
            service: bounded(service, MAX_LOGGED_SERVICE_BYTES),
            requested: bounded(&scopes.join(" "), MAX_LOGGED_SCOPES_BYTES),
            reason: bounded(reason, MAX_LOGGED_REASON_BYTES),
            ..Default::default()
        }
    }
}

/// Writes the audit line.
pub fn record(request: &Request<'_>, event: &Event, outcome: Outcome, latency: Duration) {
    tracing::info!(
        target: "regauth::audit",
        outcome = outcome.as_str(),
        method = request.method,
        grant = request.grant.as_str(),
        subject = event.subject.as_str(),
        kind = event.kind,
        provider = event.provider.as_str(),
        service = event.service.as_str(),
        requested = event.requested.as_str(),
        granted = event.granted.as_str(),
        client_ip = %ClientIp(request.client_ip),
        client_id = %Safe(request.client_id),
        cache_hit = event.cache_hit,
        reused = event.reused,
        latency_us = latency.as_micros() as u64,
        reason = event.reason.as_str(),
        "token request"
    );
}

/// The client's address on the audit line: empty when unknown.
struct ClientIp(Option<IpAddr>);

impl std::fmt::Display for ClientIp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            Some(ip) => ip.fmt(f),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refusal_keeps_the_service_it_named_escaped_and_bounded() {
        let event = Event::refused("registry.corp", &["repository:a:pull"], "no");
        assert_eq!(event.service, "registry.corp");
        let forged = Event::refused(&format!("x\n{}", "s".repeat(1000)), &[], "no");
        assert!(
            !forged.service.contains('\n') && forged.service.len() <= 300,
            "{}",
            forged.service
        );
    }

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
        // a pasted token is not shown
        assert_eq!(Safe("ghp_secret").to_string(), "[a token, not shown]");
        assert_eq!(bounded("a\nb", 10), "a\\u{a}b");
    }
}
