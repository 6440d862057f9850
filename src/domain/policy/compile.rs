//! Compiling one `[[rule]]`: its selectors, patterns and actions parsed
//! once, and the checks that keep one provider's identities from taking
//! another's rights.

use std::collections::BTreeSet;

use super::{Claims, PolicyError, ProviderInfo, Rule, RuleConfig};

use crate::domain::pattern::{Pattern, Placeholder, Placeholders};
use crate::domain::scope::{join_actions, Action, ResourceType};

/// Where in the configuration a rule is: errors name the key path.
struct At<'p> {
    index: usize,
    path: &'p str,
}

impl At<'_> {
    fn err(&self, key: &str, message: String) -> PolicyError {
        PolicyError {
            rule: self.index,
            path: format!("{}.{key}", self.path),
            message,
        }
    }
}

/// Compiles rule `index` (at `path`) for the given providers.
pub(super) fn compile_rule(
    index: usize,
    raw: &RuleConfig,
    path: &str,
    providers: &[ProviderInfo],
) -> Result<Rule, PolicyError> {
    let at = At { index, path };
    let kind = raw
        .kind
        .as_deref()
        .map_or(ResourceType::Repository, ResourceType::parse);
    let known = kind.known_actions().ok_or_else(|| {
        at.err(
            "type",
            format!("unknown resource type `{kind}` (use `repository` or `registry`)"),
        )
    })?;
    let users = selectors(&at, "users", &raw.users, providers)?;
    let groups = selectors(&at, "groups", &raw.groups, providers)?;
    let services = patterns(&at, "services", &raw.services)?;
    let claims = raw
        .claims
        .iter()
        .map(|(k, v)| {
            if !regauth_providers::is_claim_path(k) {
                return Err(at.err(
                    &format!("claims.{k}"),
                    "not a claim path like kubernetes.io.namespace".into(),
                ));
            }
            Pattern::parse(v, Placeholders::Forbidden)
                .map(|p| (k.clone(), p))
                .map_err(|m| at.err(&format!("claims.{k}"), m))
        })
        .collect::<Result<Vec<_>, _>>()?;
    if users.is_empty() && groups.is_empty() && !raw.anonymous && claims.is_empty() {
        return Err(at.err(
            "users",
            "the rule names nobody: set users, groups, claims or anonymous = true".into(),
        ));
    }
    let repos = repositories(&at, raw)?;
    let names = Names {
        raw,
        users: &users,
        groups: &groups,
        repos: &repos,
    };
    names.check(&at, providers)?;
    let allow = actions(&at, "actions", &raw.actions, &kind, known)?;
    let deny = actions(&at, "deny", &raw.deny, &kind, known)?;
    if allow.is_empty() && deny.is_empty() {
        return Err(at.err(
            "actions",
            "the rule neither allows nor denies anything".into(),
        ));
    }
    let networks = networks(&at, &raw.networks)?;
    Ok(Rule {
        index,
        description: raw.description.clone(),
        users,
        groups,
        anonymous: raw.anonymous,
        services,
        providers: raw.providers.clone(),
        claims,
        kind,
        repos,
        actions: allow,
        deny,
        networks,
    })
}

/// The `networks` of a rule, each a network with its host bits clear.
fn networks(at: &At<'_>, values: &[String]) -> Result<Vec<ipnet::IpNet>, PolicyError> {
    values
        .iter()
        .enumerate()
        .map(|(i, text)| {
            regauth_providers::parse_network(text).ok_or_else(|| {
                at.err(
                    &format!("networks[{i}]"),
                    format!("`{text}` is not a network like 10.0.0.0/8 or 2001:db8::/32"),
                )
            })
        })
        .collect()
}

/// The `users` or `groups` entries of a rule.
fn selectors(
    at: &At<'_>,
    key: &str,
    values: &[String],
    providers: &[ProviderInfo],
) -> Result<Vec<Selector>, PolicyError> {
    values
        .iter()
        .enumerate()
        .map(|(i, v)| Selector::parse(v, providers).map_err(|m| at.err(&format!("{key}[{i}]"), m)))
        .collect()
}

/// Patterns without placeholders (`services`).
fn patterns(at: &At<'_>, key: &str, values: &[String]) -> Result<Vec<Pattern>, PolicyError> {
    values
        .iter()
        .enumerate()
        .map(|(i, v)| {
            Pattern::parse(v, Placeholders::Forbidden)
                .map_err(|m| at.err(&format!("{key}[{i}]"), m))
        })
        .collect()
}

/// The `repos` patterns: at least one, and without placeholders in an
/// anonymous rule (there is nobody to substitute).
fn repositories(at: &At<'_>, raw: &RuleConfig) -> Result<Vec<Pattern>, PolicyError> {
    if raw.repos.is_empty() {
        return Err(at.err("repos", "the rule names no repository".into()));
    }
    let repos = raw
        .repos
        .iter()
        .enumerate()
        .map(|(i, v)| {
            Pattern::parse(v, Placeholders::Allowed).map_err(|m| at.err(&format!("repos[{i}]"), m))
        })
        .collect::<Result<Vec<_>, _>>()?;
    if let Some(i) = repos.iter().position(|p| !p.claims_fill_segments()) {
        return Err(at.err(
            &format!("repos[{i}]"),
            format!(
                "`{}`: a ${{claim:…}} fills a whole path segment (`apps/${{claim:kubernetes.io.namespace}}/**`), so that its value is a name of its own",
                raw.repos[i]
            ),
        ));
    }
    let personal = |p: &Pattern| per_identity(p) || p.uses(Placeholder::Provider);
    if raw.anonymous && repos.iter().any(personal) {
        return Err(at.err(
            "repos",
            "an anonymous rule cannot use ${user}, ${group}, ${provider} or ${claim:…}".into(),
        ));
    }
    Ok(repos)
}

/// Whether a pattern names a namespace per identity: `${user}`,
/// `${group}` or a claim.
pub(super) fn per_identity(pattern: &Pattern) -> bool {
    pattern.uses(Placeholder::User)
        || pattern.uses(Placeholder::Group)
        || pattern.uses(Placeholder::Claim)
}

/// The `actions` or `deny` list, each known for the rule's resource type.
fn actions(
    at: &At<'_>,
    key: &str,
    list: &[String],
    kind: &ResourceType,
    known: &[Action],
) -> Result<BTreeSet<Action>, PolicyError> {
    list.iter()
        .enumerate()
        .map(|(i, a)| {
            let action = Action::parse(a);
            if action == Action::All || known.contains(&action) {
                Ok(action)
            } else {
                Err(at.err(
                    &format!("{key}[{i}]"),
                    format!(
                        "unknown action `{a}` for type `{kind}` (known: {})",
                        join_actions(known).replace(',', ", ")
                    ),
                ))
            }
        })
        .collect()
}

/// Refuses a claim template whose namespace another provider's rule also
/// gives out per identity: with `${claim:kubernetes.io.namespace}/**` for
/// a cluster and `${user}/**` for the directory, a namespace named
/// `alice` would own alice's repositories. Namespaces are compared with
/// `${provider}` filled in for each provider a rule reaches, so
/// `${provider}/${claim:…}/**` is each provider's own, and
/// `staging/${user}/**` for the directory still clashes with it for
/// provider `staging`. Within one provider, the rules are its own design.
pub(super) fn check_claim_namespaces(
    rules: &[Rule],
    prefix: &str,
    providers: &[ProviderInfo],
) -> Result<(), PolicyError> {
    let reach = |rule: &Rule| -> Vec<String> {
        if rule.providers.is_empty() {
            providers.iter().map(|p| p.name.clone()).collect()
        } else {
            rule.providers.clone()
        }
    };
    // (rule, pattern, provider, placeholder, its lead) of every
    // per-identity namespace of every rule
    let mut levels = Vec::new();
    for (r, rule) in rules.iter().enumerate() {
        for (i, pattern) in rule.repos.iter().enumerate() {
            for provider in reach(rule) {
                for ph in [Placeholder::User, Placeholder::Group, Placeholder::Claim] {
                    if let Some(lead) = pattern.lead_before(ph, Some(&provider)) {
                        levels.push((r, i, provider.clone(), ph, lead.to_lowercase()));
                    }
                }
            }
        }
    }
    for (a, i, mine, ph, lead) in &levels {
        if *ph != Placeholder::Claim {
            continue;
        }
        let clash = levels
            .iter()
            .find(|(b, _, theirs, _, other)| b != a && theirs != mine && other == lead);
        if let Some((b, j, theirs, _, _)) = clash {
            let (pattern, other) = (&rules[*a].repos[*i], &rules[*b].repos[*j]);
            return Err(PolicyError {
                rule: *a,
                path: format!("{prefix}[{a}].repos[{i}]"),
                message: format!(
                    "`{pattern}` (for {mine}) and {prefix}[{b}]'s `{other}` (for {theirs}) give out the same namespace level: a claim's value could be a name of the other provider's; write `${{provider}}/{pattern}` or give it a literal prefix of its own"
                ),
            });
        }
    }
    Ok(())
}

/// The names of one rule, checked against the providers.
struct Names<'r> {
    raw: &'r RuleConfig,
    users: &'r [Selector],
    groups: &'r [Selector],
    repos: &'r [Pattern],
}

impl Names<'_> {
    /// Refuses a rule in which a bare name could match identities of more
    /// than one provider: with a static user `alice` and an OIDC issuer
    /// whose tokens can say `sub = alice`, `users = ["alice"]` would give
    /// the token the static user's rights. Qualified entries
    /// (`local:alice`), rules narrowed to one provider, and `${provider}`
    /// in a namespace pattern are unambiguous. With a single provider
    /// nothing is ambiguous.
    fn check(&self, at: &At<'_>, providers: &[ProviderInfo]) -> Result<(), PolicyError> {
        let reach: Vec<&ProviderInfo> = providers
            .iter()
            .filter(|p| self.raw.providers.is_empty() || self.raw.providers.contains(&p.name))
            .collect();
        self.check_selectors(at, &reach)?;
        if reach.len() > 1 {
            self.check_namespaces(at, &reach)?;
            self.check_anything(at, &reach)?;
        }
        let with_claims: Vec<&ProviderInfo> = reach
            .iter()
            .copied()
            .filter(|p| p.claims == Claims::Carried)
            .collect();
        if with_claims.is_empty() {
            if let Some(i) = self.repos.iter().position(|p| p.uses(Placeholder::Claim)) {
                return Err(at.err(
                    &format!("repos[{i}]"),
                    format!("`{}` takes a claim, and no provider the rule reaches carries claims: it can never match", self.repos[i]),
                ));
            }
        }
        if !self.raw.claims.is_empty() && with_claims.len() > 1 {
            return Err(at.err(
                "claims",
                format!(
                    "these claims could come from the tokens of {} providers ({}): narrow the rule with providers = [...]",
                    with_claims.len(),
                    names(&with_claims)
                ),
            ));
        }
        Ok(())
    }

    /// A qualified entry must name a provider the rule reaches; a bare one
    /// (other than `*`) is ambiguous when the rule reaches several.
    fn check_selectors(&self, at: &At<'_>, reach: &[&ProviderInfo]) -> Result<(), PolicyError> {
        for (key, list) in [("users", self.users), ("groups", self.groups)] {
            for (i, selector) in list.iter().enumerate() {
                let entry = self.entry(key, i);
                if let Some(p) = &selector.provider {
                    if !reach.iter().any(|r| &r.name == p) {
                        return Err(at.err(
                            &format!("{key}[{i}]"),
                            format!("`{entry}` names provider `{p}`, which the rule's providers exclude: it can never match"),
                        ));
                    }
                } else if reach.len() > 1 && !selector.is_anything() {
                    return Err(at.err(
                        &format!("{key}[{i}]"),
                        format!(
                            "`{entry}` could match identities of {} providers ({}): write `{}:{entry}`, or narrow the rule with providers = [...]",
                            reach.len(),
                            names(reach),
                            reach[0].name
                        ),
                    ));
                }
            }
        }
        Ok(())
    }

    /// A per-identity namespace over several providers must be each
    /// provider's own (`${provider}`).
    fn check_namespaces(&self, at: &At<'_>, reach: &[&ProviderInfo]) -> Result<(), PolicyError> {
        for (i, pattern) in self.repos.iter().enumerate() {
            if per_identity(pattern) && !pattern.uses(Placeholder::Provider) {
                return Err(at.err(
                    &format!("repos[{i}]"),
                    format!(
                        "`{pattern}` would give same-named users, groups or claim values of {} providers ({}) one namespace: write `${{provider}}/{pattern}`, or narrow the rule with providers = [...]",
                        reach.len(),
                        names(reach)
                    ),
                ));
            }
        }
        Ok(())
    }

    /// `*` over several providers is any identity of any of them, including
    /// issuers whose tokens anyone can get: only where the rule names them,
    /// or where its repositories are each identity's own namespace under
    /// its provider's: `${provider}` with `${user}` or `${group}` (not
    /// `${provider}/**` alone, which every identity of a provider shares).
    fn check_anything(&self, at: &At<'_>, reach: &[&ProviderInfo]) -> Result<(), PolicyError> {
        let per_provider = !self.repos.is_empty()
            && self.repos.iter().all(|p| {
                // not a claim: its values are shared, and a token's
                // holder may choose some of them
                p.uses(Placeholder::Provider)
                    && (p.uses(Placeholder::User) || p.uses(Placeholder::Group))
            });
        if !self.raw.providers.is_empty() || per_provider {
            return Ok(());
        }
        for (key, list) in [("users", self.users), ("groups", self.groups)] {
            if let Some(i) = list.iter().position(Selector::is_anything) {
                return Err(at.err(
                    &format!("{key}[{i}]"),
                    format!(
                        "`*` would match every identity of {} providers ({}), whoever can get a login or a token there: name them with providers = [...] (or write `{}:*`)",
                        reach.len(),
                        names(reach),
                        reach[0].name
                    ),
                ));
            }
        }
        Ok(())
    }

    /// The `users` or `groups` entry `i` as written.
    fn entry(&self, key: &str, i: usize) -> &str {
        let list = if key == "users" {
            &self.raw.users
        } else {
            &self.raw.groups
        };
        list.get(i).map(String::as_str).unwrap_or_default()
    }
}

/// The providers' names, for messages.
fn names(list: &[&ProviderInfo]) -> String {
    list.iter()
        .map(|p| p.name.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

/// A `users` or `groups` entry: a pattern, optionally qualified with the
/// provider whose identities it is about (`corp:admins`).
#[derive(Clone, Debug)]
pub(super) struct Selector {
    pub(super) provider: Option<String>,
    pub(super) pattern: Pattern,
}

impl Selector {
    /// An entry is qualified when the text before its first `:` is the
    /// name of a configured provider.
    pub(super) fn parse(raw: &str, providers: &[ProviderInfo]) -> Result<Self, String> {
        let (provider, rest) = match raw.split_once(':') {
            Some((p, rest)) if providers.iter().any(|info| info.name == p) => {
                (Some(p.to_owned()), rest)
            }
            _ => (None, raw),
        };
        Ok(Self {
            provider,
            pattern: Pattern::parse(rest, Placeholders::Forbidden)?,
        })
    }

    pub(super) fn matches(&self, provider: &str, value: &str) -> bool {
        self.provider.as_deref().is_none_or(|p| p == provider) && self.pattern.matches(value)
    }

    /// Whether this users selector may take `subject`: anyone, unless
    /// `subject` is a team robot (`robot$…`), whom only a selector
    /// written for robots takes; `users = ["*"]` is every person, and a
    /// robot gets its group's rights, not everyone's.
    pub(super) fn reaches_robot(&self, subject: &str) -> bool {
        !regauth_providers::is_team_robot_name(subject)
            || regauth_providers::is_team_robot_name(self.pattern.source())
    }

    /// An unqualified `*`: any user (or group) of any provider.
    pub(super) fn is_anything(&self) -> bool {
        self.provider.is_none() && self.pattern.source() == "*"
    }
}
