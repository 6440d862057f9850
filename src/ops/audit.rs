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

/// Everything the audit line says about one request, borrowed from the
/// request and its result: client-chosen text is escaped and bounded as
/// the line is written, never copied first. Its `Debug` shows the text
/// as the line does, never raw.
pub struct Event<'a> {
    /// Who the token was issued to (empty when refused or anonymous).
    pub subject: &'a str,
    /// `user` or `robot` (empty when anonymous or refused).
    pub kind: &'static str,
    /// The provider that vouched for the subject (empty if none).
    pub provider: &'a str,
    /// The service the token is for (when refused: the one named).
    pub service: &'a str,
    /// The scopes asked for.
    pub requested: String,
    /// The access granted (empty when refused).
    pub granted: &'a str,
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
    pub requested: String,
    /// The access granted, as text.
    pub granted: &'a str,
    /// The credentials were answered from the verdict cache.
    pub cache_hit: bool,
    /// The token was one signed moments ago for the same grant.
    pub reused: bool,
}

impl std::fmt::Debug for Event<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Event")
            .field("subject", &self.shown_subject().to_string())
            .field("kind", &self.kind)
            .field("provider", &self.provider)
            .field("service", &self.shown_service().to_string())
            .field("requested", &self.shown_requested().to_string())
            .field("granted", &self.shown_granted().to_string())
            .field("cache_hit", &self.cache_hit)
            .field("reused", &self.reused)
            .field("reason", &self.shown_reason().to_string())
            .finish()
    }
}

impl<'a> Event<'a> {
    /// The event of an issued token.
    pub fn issued(token: IssuedSummary<'a>) -> Self {
        Event {
            subject: token.subject,
            kind: token.kind,
            provider: token.provider,
            service: token.service,
            requested: token.requested,
            granted: token.granted,
            cache_hit: token.cache_hit,
            reused: token.reused,
            reason: String::new(),
        }
    }

    /// The event of a refused request: the service and scopes as sent, and
    /// the reason.
    pub fn refused(service: &'a str, scopes: &[&str], reason: String) -> Self {
        Event {
            subject: "",
            kind: "",
            provider: "",
            service,
            requested: scopes.join(" "),
            granted: "",
            cache_hit: false,
            reused: false,
            reason,
        }
    }

    /// The subject as the line shows it.
    pub fn shown_subject(&self) -> Safe<'_> {
        Safe(self.subject)
    }

    /// The service as the line shows it: escaped, at most
    /// `MAX_LOGGED_SERVICE_BYTES`.
    pub fn shown_service(&self) -> Escaped<'_> {
        Escaped::new(self.service, MAX_LOGGED_SERVICE_BYTES)
    }

    /// The scopes asked for as the line shows them.
    pub fn shown_requested(&self) -> Escaped<'_> {
        Escaped::new(&self.requested, MAX_LOGGED_SCOPES_BYTES)
    }

    /// The access granted as the line shows it.
    pub fn shown_granted(&self) -> Escaped<'_> {
        Escaped::new(self.granted, MAX_LOGGED_SCOPES_BYTES)
    }

    /// The reason as the line shows it.
    pub fn shown_reason(&self) -> Escaped<'_> {
        Escaped::new(&self.reason, MAX_LOGGED_REASON_BYTES)
    }
}

/// Writes the audit line: straight into the log's queue when the log is
/// regauth's own JSON (the line of every token request, without a tracing
/// event's visitor and copies), through tracing otherwise. Both write the
/// same fields in the same order.
pub fn record(request: &Request<'_>, event: &Event<'_>, outcome: Outcome, latency: Duration) {
    if !tracing::enabled!(target: TARGET, tracing::Level::INFO) {
        return;
    }
    let direct = crate::ops::logging::write_json_line(&tracing::Level::INFO, TARGET, |line| {
        json_fields(line, request, event, outcome, latency)
    });
    if direct {
        return;
    }
    tracing::info!(
        target: TARGET,
        outcome = outcome.as_str(),
        method = request.method,
        grant = request.grant.as_str(),
        subject = event.shown_subject().to_string().as_str(),
        kind = event.kind,
        provider = event.provider,
        service = event.shown_service().to_string().as_str(),
        requested = event.shown_requested().to_string().as_str(),
        granted = event.shown_granted().to_string().as_str(),
        client_ip = %ClientIp(request.client_ip),
        client_id = %Safe(request.client_id),
        cache_hit = event.cache_hit,
        reused = event.reused,
        latency_us = latency.as_micros() as u64,
        reason = event.shown_reason().to_string().as_str(),
        "token request"
    );
}

/// The audit line's target.
const TARGET: &str = "regauth::audit";

/// The audit line's fields, in the order of [`record`]'s tracing event
/// (whose message comes first).
pub(crate) fn json_fields(
    line: &mut crate::ops::logging::JsonFields<'_>,
    request: &Request<'_>,
    event: &Event<'_>,
    outcome: Outcome,
    latency: Duration,
) {
    line.value("message", "token request");
    line.value("outcome", outcome.as_str());
    line.value("method", request.method);
    line.value("grant", request.grant.as_str());
    line.display("subject", &event.shown_subject());
    line.value("kind", event.kind);
    line.value("provider", event.provider);
    line.display("service", &event.shown_service());
    line.display("requested", &event.shown_requested());
    line.display("granted", &event.shown_granted());
    line.display("client_ip", &ClientIp(request.client_ip));
    line.display("client_id", &Safe(request.client_id));
    line.value("cache_hit", &event.cache_hit);
    line.value("reused", &event.reused);
    line.value("latency_us", &(latency.as_micros() as u64));
    line.display("reason", &event.shown_reason());
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
        let event = Event::refused("registry.corp", &["repository:a:pull"], "no".into());
        assert_eq!(event.shown_service().to_string(), "registry.corp");
        let sent = format!("x\n{}", "s".repeat(1000));
        let forged = Event::refused(&sent, &[], "no".into())
            .shown_service()
            .to_string();
        assert!(!forged.contains('\n') && forged.len() <= 300, "{forged}");
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
        assert_eq!(Escaped::new("a\nb", 10).to_string(), "a\\u{a}b");
    }
}
