//! A compiled rule and how it applies to one principal and scope.

use std::collections::BTreeSet;

use super::compile::Selector;
use regauth_providers::Identity;

use super::{Matched, Principal};
use crate::domain::pattern::{Pattern, Placeholder, Values};
use crate::domain::scope::{Action, ResourceType, Scope};

/// Whether a decision records which rules matched.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Trace {
    Skip,
    Record,
}

/// How a rule matched: which selector, and which repository pattern with
/// which group value.
enum Because {
    Anonymous,
    User,
    Groups,
    Claims,
    /// A rule for users that a team robot (`robot$…`) matches only by a
    /// wildcard (`users = ["*"]`): it takes the rule's denials, never its
    /// grants, so a robot holds no more than its group, and no less
    /// restricted.
    DenialsOnly,
}

pub(super) struct Applies<'a> {
    because: Because,
    pattern: &'a Pattern,
    group: Option<&'a str>,
}

impl Applies<'_> {
    /// Whether the rule's actions are granted (its denials always hold).
    pub(super) fn grants(&self) -> bool {
        !matches!(self.because, Because::DenialsOnly)
    }
}

impl Rule {
    pub(super) fn describe(
        &self,
        principal: &Principal,
        m: &Applies<'_>,
        allows: &[Action],
        denies: &[Action],
    ) -> Matched {
        let identity = principal.identity();
        let user = identity.map(|id| id.subject.as_str());
        let provider = identity.map(|id| id.provider.as_str());
        let because = match m.because {
            Because::Anonymous => "anonymous access".to_owned(),
            Because::User => format!("user {}", user.unwrap_or_default()),
            Because::DenialsOnly => format!(
                "user {} (a team robot: denials only)",
                user.unwrap_or_default()
            ),
            Because::Groups => match principal {
                Principal::Authenticated(id) => {
                    let groups: Vec<&str> = id
                        .groups
                        .iter()
                        .map(String::as_str)
                        .filter(|g| self.groups.iter().any(|p| p.matches(&id.provider, g)))
                        .collect();
                    format!("group {}", groups.join(","))
                }
                Principal::Anonymous => "group".to_owned(),
            },
            Because::Claims => format!("claims {}", self.claims_shown(identity)),
        };
        Matched {
            rule: self.index,
            description: self.description.clone(),
            because,
            repo: m.pattern.substituted(Values {
                user,
                group: m.group,
                provider,
                claims: identity.map(|id| &id.claims),
            }),
            allows: allows.to_vec(),
            denies: denies.to_vec(),
        }
    }

    /// The rule's claims as the identity holds them (`path=value`), for
    /// `explain` and the audit trace.
    fn claims_shown(&self, identity: Option<&Identity>) -> String {
        self.claims
            .iter()
            .map(|(path, pattern)| {
                let held = identity.and_then(|id| id.claims.any(path, |v| pattern.matches(v)));
                format!("{path}={}", held.as_deref().unwrap_or("?"))
            })
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Whether a request from `client` is one this rule may apply to:
    /// any, when it names no networks; one from inside them, when it does
    /// (and never one whose client is not known).
    pub(super) fn reaches(&self, client: Option<std::net::IpAddr>) -> bool {
        self.networks.is_empty()
            || client.is_some_and(|c| {
                let c = c.to_canonical();
                self.networks.iter().any(|n| n.contains(&c))
            })
    }

    /// Whether this rule applies to `principal` asking for `scope` of
    /// `service`: how it matched and the repository pattern (with the
    /// group that filled `${group}`) that took the scope's name.
    pub(super) fn applies<'a>(
        &'a self,
        principal: &'a Principal,
        service: &str,
        scope: &Scope,
        shared: &BTreeSet<String>,
    ) -> Option<Applies<'a>> {
        if scope.kind != self.kind {
            return None;
        }
        if !self.services.is_empty() && !self.services.iter().any(|p| p.matches(service)) {
            return None;
        }
        let identity = match principal {
            Principal::Anonymous => None,
            Principal::Authenticated(id) => Some(&**id),
        };
        if !self.providers.is_empty()
            && !identity.is_some_and(|id| self.providers.contains(&id.provider))
        {
            return None;
        }
        let because = self.because(identity)?;
        let (pattern, group) = self.repository(identity, &scope.name, shared)?;
        Some(Applies {
            because,
            pattern,
            group,
        })
    }

    /// The groups of `identity` that match the selector (all of them when
    /// there is none): the values `${group}` takes.
    fn groups_of<'a>(&'a self, identity: Option<&'a Identity>) -> impl Iterator<Item = &'a str> {
        identity.into_iter().flat_map(move |id| {
            id.groups
                .iter()
                .filter(move |g| {
                    self.groups.is_empty() || self.groups.iter().any(|p| p.matches(&id.provider, g))
                })
                .map(String::as_str)
        })
    }

    /// Which selector takes the principal: anonymous, the user, a group,
    /// or the claims alone; none when the rule is not about it.
    fn because(&self, identity: Option<&Identity>) -> Option<Because> {
        if let Some(id) = identity.filter(|_| !self.claims.is_empty()) {
            let all = self
                .claims
                .iter()
                .all(|(claim, pattern)| id.claims.any(claim, |v| pattern.matches(v)).is_some());
            if !all {
                return None;
            }
        } else if !self.claims.is_empty() {
            return None;
        }
        let user = identity.and_then(|id| self.user_match(id));
        if self.anonymous {
            Some(Because::Anonymous)
        } else if user == Some(true) {
            Some(Because::User)
        } else if identity.is_some()
            && !self.groups.is_empty()
            && self.groups_of(identity).next().is_some()
        {
            Some(Because::Groups)
        } else if identity.is_some()
            && self.users.is_empty()
            && self.groups.is_empty()
            && !self.claims.is_empty()
        {
            Some(Because::Claims)
        } else if user == Some(false) {
            Some(Because::DenialsOnly)
        } else {
            None
        }
    }

    /// Whether a users selector takes `id`: `Some(true)` when one does
    /// fully, `Some(false)` when only a wildcard does that a team robot
    /// takes the denials of, `None` when none does.
    fn user_match(&self, id: &Identity) -> Option<bool> {
        let mut found = None;
        for p in self
            .users
            .iter()
            .filter(|p| p.matches(&id.provider, &id.subject))
        {
            if p.reaches_robot(&id.subject) {
                return Some(true);
            }
            found = Some(false);
        }
        found
    }

    /// The first repository pattern that takes `name` with the principal's
    /// values, and the group that filled `${group}` in it.
    fn repository<'a>(
        &'a self,
        identity: Option<&'a Identity>,
        name: &str,
        shared: &BTreeSet<String>,
    ) -> Option<(&'a Pattern, Option<&'a str>)> {
        let provider = identity.map(|id| id.provider.as_str());
        let user = identity.map(|id| id.subject.as_str());
        for pattern in &self.repos {
            let values = Values {
                user: user.filter(|u| fits(pattern, Placeholder::User, provider, u, shared)),
                group: None,
                provider,
                claims: identity
                    .map(|id| &id.claims)
                    .filter(|_| pattern.uses(Placeholder::Claim))
                    .filter(|claims| claims_fit(pattern, provider, claims, shared)),
            };
            if pattern.uses(Placeholder::Group) {
                let group = self.groups_of(identity).find(|g| {
                    fits(pattern, Placeholder::Group, provider, g, shared)
                        && pattern.matches_with(
                            name,
                            Values {
                                group: Some(g),
                                ..values
                            },
                        )
                });
                if group.is_some() {
                    return Some((pattern, group));
                }
            } else if pattern.matches_with(name, values) {
                return Some((pattern, None));
            }
        }
        None
    }
}

/// Whether every claim `pattern` takes (`${claim:PATH}`) is text that
/// may stand in for it: a repository path component of its own (lower
/// case letters and digits, single separators `.`, `_`, `-`, at most
/// [`MAX_CLAIM_NAME`] bytes), never making a path the rules name outright.
fn claims_fit(
    pattern: &Pattern,
    provider: Option<&str>,
    claims: &regauth_providers::ClaimSet,
    shared: &BTreeSet<String>,
) -> bool {
    pattern
        .claim_leads(provider, claims)
        .iter()
        .all(|(path, lead)| {
            claims.text(path).is_some_and(|value| {
                is_path_component(&value)
                    && lead.as_ref().is_none_or(|lead| {
                        !shared.contains(&format!("{lead}{value}").to_lowercase())
                    })
            })
        })
}

/// The longest claim value a template takes.
const MAX_CLAIM_NAME: usize = 128;

/// A repository path component as the distribution spec writes it:
/// `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*`.
fn is_path_component(value: &str) -> bool {
    let alnum = |b: &u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    if value.is_empty() || value.len() > MAX_CLAIM_NAME {
        return false;
    }
    let mut rest = value.as_bytes();
    loop {
        let run = rest.iter().take_while(|b| alnum(b)).count();
        if run == 0 {
            return false;
        }
        rest = &rest[run..];
        if rest.is_empty() {
            return true;
        }
        let gap = rest.iter().take_while(|b| !alnum(b)).count();
        let separator = &rest[..gap];
        let dashes = separator.iter().all(|b| *b == b'-');
        if !(dashes || separator == b"." || separator == b"_" || separator == b"__") {
            return false;
        }
        rest = &rest[gap..];
    }
}

/// Whether a name may stand in for `${user}` or `${group}` in `pattern`
/// for an identity of `provider`: not empty, no `/` (a name cannot reach
/// into another namespace), and not making a path the rules name
/// outright.
fn fits(
    pattern: &Pattern,
    placeholder: Placeholder,
    provider: Option<&str>,
    name: &str,
    shared: &BTreeSet<String>,
) -> bool {
    let takes_a_shared_namespace = pattern
        .lead_before(placeholder, provider)
        .is_some_and(|lead| shared.contains(&format!("{lead}{name}").to_lowercase()));
    !(name.is_empty() || name.contains('/') || takes_a_shared_namespace)
}
/// A compiled rule.
#[derive(Debug)]
pub struct Rule {
    /// The rule's position in the compiled list (inline rules first, then the
    /// policy file's).
    pub index: usize,
    /// The rule's `description`.
    pub description: Option<String>,
    pub(super) users: Vec<Selector>,
    pub(super) groups: Vec<Selector>,
    pub(super) anonymous: bool,
    pub(super) services: Vec<Pattern>,
    pub(super) providers: Vec<String>,
    pub(super) claims: Vec<(String, Pattern)>,
    pub(super) kind: ResourceType,
    pub(super) repos: Vec<Pattern>,
    pub(super) actions: BTreeSet<Action>,
    pub(super) deny: BTreeSet<Action>,
    /// Client networks the rule is for (none: every client).
    pub(super) networks: Vec<ipnet::IpNet>,
}

#[cfg(test)]
mod tests {
    use super::is_path_component;

    #[test]
    fn claim_values_are_path_components() {
        for ok in ["ci", "team-a", "a.b", "a_b", "a__b", "a---b", "x1", "0"] {
            assert!(is_path_component(ok), "{ok}");
        }
        let long = "a".repeat(129);
        for bad in [
            "", "Ci", "a/b", "..", ".", "a..b", "-a", "a-", "a___b", "a._b", "ü", "a b", "a%2fb",
            "a:b", &long,
        ] {
            assert!(!is_path_component(bad), "{bad}");
        }
    }
}
