//! The access policy: rules compiled once at load time, evaluated per
//! requested scope.
//!
//! Semantics: granted = (union of `actions` of every matching rule) minus
//! (union of `deny` of every matching rule), intersected with what was asked.
//! Rule order does not matter and the default is deny. Values substituted
//! into patterns (`${user}`, `${group}`, `${provider}`, `${claim:…}`) are always
//! literals, so a group named `*` can never widen access. Names are kept
//! apart by provider: `corp:admins` is the group of provider `corp` only,
//! and a bare name that could match identities of two providers is refused
//! when the policy is compiled. Evaluation never fails: an unknown
//! resource type or action simply grants nothing.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::sync::Arc;

use regauth_providers::Identity;
use serde::{Deserialize, Serialize};

use crate::domain::pattern::Pattern;
use crate::domain::scope::{Action, Scope};

mod compile;
#[cfg(test)]
mod properties;
mod rule;
#[cfg(test)]
mod tests;

use compile::compile_rule;
pub use rule::Rule;
use rule::Trace;

/// Who is asking. Anonymous is its own principal, never a user named so.
#[derive(Clone, Debug)]
pub enum Principal {
    /// A request without credentials.
    Anonymous,
    /// An identity a provider vouched for.
    Authenticated(Arc<Identity>),
}

impl Principal {
    /// The identity, unless anonymous.
    pub fn identity(&self) -> Option<&Identity> {
        match self {
            Principal::Anonymous => None,
            Principal::Authenticated(id) => Some(id),
        }
    }

    /// The subject, or the empty string when anonymous.
    pub fn subject(&self) -> &str {
        match self {
            Principal::Anonymous => "",
            Principal::Authenticated(id) => &id.subject,
        }
    }

    /// The provider that vouched for the identity, unless anonymous.
    pub fn provider(&self) -> Option<&str> {
        match self {
            Principal::Anonymous => None,
            Principal::Authenticated(id) => Some(&id.provider),
        }
    }
}

/// One `[[rule]]` as written in the configuration or policy file.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleConfig {
    /// Free text shown by `regauth explain`.
    #[serde(default)]
    pub description: Option<String>,
    /// Usernames or patterns; `*` means any authenticated user.
    #[serde(default)]
    pub users: Vec<String>,
    /// Group names or patterns; `*` means any group the user has.
    #[serde(default)]
    pub groups: Vec<String>,
    /// Also applies to anonymous requests (and therefore to everyone).
    #[serde(default)]
    pub anonymous: bool,
    /// Only for these services (token audiences).
    #[serde(default)]
    pub services: Vec<String>,
    /// Only for identities from these providers.
    #[serde(default)]
    pub providers: Vec<String>,
    /// Only for identities whose claims match (claim -> pattern).
    #[serde(default)]
    pub claims: BTreeMap<String, String>,
    /// Resource type: `repository` (default) or `registry` (`catalog`).
    #[serde(default, rename = "type")]
    pub kind: Option<String>,
    /// Resource name patterns.
    #[serde(default)]
    pub repos: Vec<String>,
    /// Actions granted on matching resources (`*` for all of them).
    #[serde(default)]
    pub actions: Vec<String>,
    /// Actions withheld even where a matching rule grants them.
    #[serde(default)]
    pub deny: Vec<String>,
    /// Only for requests from these client networks (`10.0.0.0/8`),
    /// the address `trusted_proxies` yields.
    #[serde(default)]
    pub networks: Vec<String>,
}

/// A policy file: `[[rule]]` tables and nothing else.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyFile {
    /// The `[[rule]]` tables.
    #[serde(default)]
    pub rule: Vec<RuleConfig>,
}

/// A configuration error with the key path that caused it.
#[derive(Debug, thiserror::Error)]
#[error("{path}: {message}")]
pub struct PolicyError {
    /// The index of the offending rule in the list compiled.
    pub rule: usize,
    /// Its key path under the prefix, e.g. `rule[3].users[0]`.
    pub path: String,
    /// What is wrong.
    pub message: String,
}

/// What the policy needs to know about each configured provider: its
/// name (for `provider:name` entries and for deciding whether a bare name
/// is ambiguous) and whether its identities carry claims.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProviderInfo {
    /// The configured instance name.
    pub name: String,
    /// Whether identities of this provider carry claims (`claims = {…}`
    /// rules can match them): OIDC and token providers.
    pub claims: Claims,
}

/// Whether a provider's identities carry claims.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Claims {
    /// Claims from tokens (OIDC, CI job tokens).
    Carried,
    /// No claims (passwords, directories).
    None,
}

/// The compiled policy.
#[derive(Debug, Default)]
pub struct Policy {
    rules: Vec<Rule>,
    /// The literal paths every rule's repository patterns name outright
    /// (`base` of `base/**`, `team` and `team/shared` of `team/shared`),
    /// lower-cased: namespaces the rules give out by name, which a
    /// `${user}` or `${group}` value must never make (a user named `base`
    /// does not own `base/**` through `${user}/**`, nor one named `shared`
    /// `team/shared` through `team/${user}/**`).
    shared: BTreeSet<String>,
}

/// One rule that applied to a scope, for the audit trace and `explain`.
#[derive(Clone, Debug, Serialize)]
pub struct Matched {
    /// The index of the rule in the compiled list.
    pub rule: usize,
    /// The rule's `description`, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Why the principal matched (`user alice`, `group platform`, ...).
    pub because: String,
    /// The repository pattern that matched, after substitution.
    pub repo: String,
    /// The rule's `actions`, expanded for the scope's resource type.
    pub allows: Vec<Action>,
    /// The rule's `deny`, expanded for the scope's resource type.
    pub denies: Vec<Action>,
}

/// The decision for one scope.
#[derive(Clone, Debug)]
pub struct Grant {
    /// The scope decided.
    pub scope: Scope,
    /// Granted actions (possibly empty), in a stable order.
    pub actions: Vec<Action>,
    /// The rules that matched, with [`Policy::explain`] (empty from
    /// [`Policy::evaluate`]).
    pub trace: Vec<Matched>,
}

impl Policy {
    /// Compiles rules for the given providers. Errors name the key path
    /// (`{prefix}[3].users[0]`): unknown actions, patterns that do not
    /// parse, and entries that would let one provider's identities take
    /// another's rights.
    pub fn compile(
        rules: &[RuleConfig],
        prefix: &str,
        providers: &[ProviderInfo],
    ) -> Result<Self, PolicyError> {
        let compiled: Vec<Rule> = rules
            .iter()
            .enumerate()
            .map(|(i, rule)| compile_rule(i, rule, &format!("{prefix}[{i}]"), providers))
            .collect::<Result<Vec<_>, _>>()?;
        compile::check_claim_namespaces(&compiled, prefix, providers)?;
        let shared = compiled
            .iter()
            .flat_map(|r| r.repos.iter())
            .flat_map(Pattern::literal_paths)
            .map(|path| path.to_lowercase())
            .collect();
        Ok(Self {
            rules: compiled,
            shared,
        })
    }

    /// Every `groups` entry of every rule: (rule index, entry index, the
    /// provider it names if qualified, the group pattern as written).
    pub fn group_entries(&self) -> impl Iterator<Item = (usize, usize, Option<&str>, &str)> {
        self.rules.iter().flat_map(|rule| {
            rule.groups
                .iter()
                .enumerate()
                .map(move |(i, s)| (rule.index, i, s.provider.as_deref(), s.pattern.source()))
        })
    }

    /// The number of compiled rules.
    pub fn len(&self) -> usize {
        self.rules.len()
    }

    /// Whether the policy has no rules.
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// Decides one scope for one principal and service (the hot path: no
    /// trace is built).
    /// Rules bound to networks do not apply: no client is known.
    pub fn evaluate(&self, principal: &Principal, service: &str, scope: &Scope) -> Grant {
        self.decide(principal, service, scope, None, Trace::Skip)
    }

    /// [`Policy::evaluate`] for a request from `client`, when it is
    /// known.
    pub fn evaluate_from(
        &self,
        principal: &Principal,
        service: &str,
        scope: &Scope,
        client: Option<IpAddr>,
    ) -> Grant {
        self.decide(principal, service, scope, client, Trace::Skip)
    }

    /// Like [`Policy::evaluate`], recording which rules matched and why;
    /// from `client` when it is given.
    pub fn explain(
        &self,
        principal: &Principal,
        service: &str,
        scope: &Scope,
        client: Option<IpAddr>,
    ) -> Grant {
        self.decide(principal, service, scope, client, Trace::Record)
    }

    fn decide(
        &self,
        principal: &Principal,
        service: &str,
        scope: &Scope,
        client: Option<IpAddr>,
        trace_mode: Trace,
    ) -> Grant {
        let mut allowed = Actions::default();
        let mut denied = Actions::default();
        let mut trace = Vec::new();
        let known = scope.kind.known_actions().unwrap_or_default();
        for rule in &self.rules {
            // a rule bound to networks: for a client outside them it does
            // not apply; for a client not known, its denials do and its
            // grants do not (never open on what cannot be checked)
            let reaches = rule.reaches(client);
            if !reaches && client.is_some() {
                continue;
            }
            let Some(matched) = rule.applies(principal, service, scope, &self.shared) else {
                continue;
            };
            let grants = reaches && matched.grants();
            if grants {
                allowed.add(&rule.actions, known);
            }
            denied.add(&rule.deny, known);
            if trace_mode == Trace::Record {
                let allows = if grants {
                    expand(&rule.actions, known)
                } else {
                    Vec::new()
                };
                let denies = expand(&rule.deny, known);
                trace.push(rule.describe(principal, &matched, &allows, &denies));
            }
        }
        let held = |action: &Action| allowed.has(action) && !denied.has(action);
        let mut actions: Vec<Action> = Vec::new();
        for asked in &scope.actions {
            if *asked == Action::All {
                if !known.is_empty() && known.iter().all(held) {
                    // Registries understand `*`; zot wants the explicit list.
                    actions.push(Action::All);
                    actions.extend(known.iter().filter(|a| **a != Action::All).cloned());
                }
            } else if known.contains(asked) && held(asked) {
                actions.push(asked.clone());
            }
        }
        let mut seen = Actions::default();
        actions.retain(|a| seen.insert(a));
        Grant {
            scope: scope.clone(),
            actions,
            trace,
        }
    }
}

/// A set of the actions a type can know (`*`, delete, pull, push), one bit
/// each: what a decision collects from its rules, without allocating. Any
/// other action is never granted, so it has no bit.
#[derive(Clone, Copy, Default)]
struct Actions(u8);

impl Actions {
    fn bit(action: &Action) -> u8 {
        match action {
            Action::All => 1,
            Action::Delete => 2,
            Action::Pull => 4,
            Action::Push => 8,
            Action::Other(_) => 0,
        }
    }

    /// Adds a rule's action set, `*` spelled out as the type's actions
    /// (as [`expand`]).
    fn add(&mut self, set: &BTreeSet<Action>, known: &[Action]) {
        if set.contains(&Action::All) {
            known.iter().for_each(|action| self.0 |= Self::bit(action));
        } else {
            set.iter().for_each(|action| self.0 |= Self::bit(action));
        }
    }

    fn has(self, action: &Action) -> bool {
        self.0 & Self::bit(action) != 0
    }

    /// Adds `action`; false if it was there already (or has no bit).
    fn insert(&mut self, action: &Action) -> bool {
        let new = !self.has(action) && Self::bit(action) != 0;
        self.0 |= Self::bit(action);
        new
    }
}

/// A rule's action set with `*` spelled out as the type's actions.
fn expand(set: &BTreeSet<Action>, known: &[Action]) -> Vec<Action> {
    if set.contains(&Action::All) {
        known.to_vec()
    } else {
        set.iter().cloned().collect()
    }
}
