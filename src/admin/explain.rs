//! `regauth explain`: which rules give a principal what, scope by scope.

use std::fmt::Write as _;

use crate::domain::policy::{Policy, Principal};
use crate::domain::scope::{join_actions, Scope};

/// A scope argument that is not a scope.
#[derive(Debug, thiserror::Error)]
#[error("`{0}` is not a scope like repository:name:pull,push")]
pub struct NotAScope(pub String);

/// The policy's decision for each of `scopes` asked by `principal` of
/// `service` (from `client`, when given: rules bound to networks apply
/// only then), with the rules that matched.
pub fn explain(
    policy: &Policy,
    principal: &Principal,
    service: &str,
    scopes: &[String],
    client: Option<std::net::IpAddr>,
) -> Result<String, NotAScope> {
    let mut out = String::new();
    for raw in scopes {
        let scope = Scope::parse(raw).ok_or_else(|| NotAScope(raw.clone()))?;
        let grant = policy.explain(principal, service, &scope, client);
        let _ = writeln!(out, "scope {scope} (service {service}):");
        if grant.trace.is_empty() {
            out.push_str("  no rule matched\n");
        }
        for m in &grant.trace {
            let description = m
                .description
                .as_deref()
                .map(|d| format!(" \"{d}\""))
                .unwrap_or_default();
            let _ = writeln!(
                out,
                "  rule[{}]{description}: {} on {}: allows [{}] denies [{}]",
                m.rule,
                m.because,
                m.repo,
                join_actions(&m.allows),
                join_actions(&m.denies)
            );
        }
        let _ = writeln!(out, "  granted: [{}]", join_actions(&grant.actions));
    }
    Ok(out)
}
