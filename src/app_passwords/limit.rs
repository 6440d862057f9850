//! What an app password may reach: the repositories it is narrowed to,
//! and the actions allowed on each. A limit only ever takes away from
//! what the policy grants its owner; it never adds.
//!
//! A limit is compiled once, from the page's form ([`Limit::from_form`],
//! strict: every mistake is the user's to hear about) or from a stored
//! record ([`Limit::from_stored`], lenient: what does not read allows
//! nothing). Stored, it stays [`AccessLimit`], the record format app
//! passwords have always had.

use std::collections::BTreeSet;

use super::{MAX_LIMITS, MAX_PATTERN_BYTES};
use crate::domain::pattern::{Pattern, Placeholders, Values};
use crate::domain::policy::Grant;
use crate::domain::scope::{Action, ResourceType};

/// The pattern of every repository, at any depth: what a limit to some
/// actions reaches when it names no repository.
pub const EVERY_REPOSITORY: &str = "**";

/// The actions a limit can allow: a repository's (`delete`, `pull`,
/// `push`).
fn repository_actions() -> &'static [Action] {
    ResourceType::Repository.known_actions().unwrap_or_default()
}

/// A limit as app-password records keep it: a repository pattern and the
/// actions allowed there, as text.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct AccessLimit {
    /// A repository pattern, as in policy rules (`dev/**`).
    pub repos: String,
    /// The actions allowed there (`pull`, `push`, `delete`).
    pub actions: Vec<String>,
}

/// What an app password may reach. A login by an app password carries its
/// compiled limit as the identity's attachment (so the verdict cache keeps
/// it compiled), and the pipeline cuts every grant down to it.
#[derive(Clone, Debug)]
pub enum Limit {
    /// Everything its owner may: no limit.
    Unlimited,
    /// Only the repositories these name, only the actions allowed there
    /// (none at all when empty).
    To(Vec<Reach>),
}

/// Some repositories and the actions a limit allows on them.
#[derive(Clone, Debug)]
pub struct Reach {
    /// Repository names, as in the policy's `repos`: `*` is one path
    /// segment (a top-level repository), `**` any depth.
    repos: Pattern,
    /// Some of [`repository_actions`].
    actions: BTreeSet<Action>,
}

/// Why a form's limit is not one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LimitError {
    /// More patterns than [`MAX_LIMITS`].
    #[error("at most {MAX_LIMITS} repository patterns")]
    TooMany,
    /// A pattern longer than [`MAX_PATTERN_BYTES`].
    #[error("a repository pattern has at most {MAX_PATTERN_BYTES} bytes")]
    TooLong,
    /// A pattern that does not parse.
    #[error("`{pattern}`: {reason}")]
    Pattern {
        /// The pattern as written.
        pattern: String,
        /// Why it does not parse.
        reason: String,
    },
    /// Not a repository action.
    #[error("`{0}` is not an action (pull, push, delete)")]
    Action(String),
    /// No action ticked.
    #[error("choose at least one action")]
    NoAction,
    /// A limit that reaches no repository at all (which a record could
    /// not tell from no limit).
    #[error("the limit reaches no repository")]
    Nothing,
}

impl Limit {
    /// The limit a form asks for: repository patterns (one per line,
    /// blank ones left out) and the actions ticked, which hold on each.
    /// The actions ticked always hold: no pattern means
    /// [`EVERY_REPOSITORY`], and all of them on every repository is no
    /// limit at all.
    pub fn from_form<'a>(
        patterns: impl IntoIterator<Item = &'a str>,
        actions: impl IntoIterator<Item = &'a str>,
    ) -> Result<Limit, LimitError> {
        let actions = actions
            .into_iter()
            .map(repository_action)
            .collect::<Result<BTreeSet<Action>, _>>()?;
        if actions.is_empty() {
            return Err(LimitError::NoAction);
        }
        let mut patterns: Vec<&str> = patterns
            .into_iter()
            .map(str::trim)
            .filter(|p| !p.is_empty())
            .collect();
        if patterns.is_empty() {
            if actions.len() == repository_actions().len() {
                return Ok(Limit::Unlimited);
            }
            patterns.push(EVERY_REPOSITORY);
        }
        if patterns.len() > MAX_LIMITS {
            return Err(LimitError::TooMany);
        }
        let reaches = patterns
            .into_iter()
            .map(|p| {
                Ok(Reach {
                    repos: repository_pattern(p)?,
                    actions: actions.clone(),
                })
            })
            .collect::<Result<_, LimitError>>()?;
        Ok(Limit::To(reaches))
    }

    /// A stored limit, compiled: a pattern that does not parse reaches
    /// nothing and an action that is not a repository's allows nothing
    /// (records are checked when made; this only keeps a bad one from
    /// widening anything).
    pub fn from_stored(stored: &[AccessLimit]) -> Limit {
        let reaches = stored
            .iter()
            .filter_map(|l| {
                Some(Reach {
                    repos: Pattern::parse(&l.repos, Placeholders::Forbidden).ok()?,
                    actions: l
                        .actions
                        .iter()
                        .filter_map(|a| repository_action(a).ok())
                        .collect(),
                })
            })
            .collect();
        Limit::To(reaches)
    }

    /// Whether this limit allows nothing anywhere.
    pub fn reaches_nothing(&self) -> bool {
        match self {
            Limit::Unlimited => false,
            Limit::To(reaches) => reaches.iter().all(|r| r.actions.is_empty()),
        }
    }

    /// The limit as records keep it: empty for [`Limit::Unlimited`] (so
    /// a limit that [reaches nothing](Limit::reaches_nothing) is never
    /// kept).
    pub fn to_stored(&self) -> Vec<AccessLimit> {
        let Limit::To(reaches) = self else {
            return Vec::new();
        };
        reaches
            .iter()
            .map(|r| AccessLimit {
                repos: r.repos.source().to_owned(),
                actions: r.actions.iter().map(|a| a.as_str().to_owned()).collect(),
            })
            .collect()
    }

    /// A grant cut down to this limit: only repository scopes whose name
    /// a pattern matches, only the actions allowed there (`*` only when
    /// all of them are).
    pub fn within(&self, mut grant: Grant) -> Grant {
        let Limit::To(reaches) = self else {
            return grant;
        };
        if grant.scope.kind != ResourceType::Repository {
            grant.actions.clear();
            return grant;
        }
        let allowed: BTreeSet<&Action> = reaches
            .iter()
            .filter(|r| r.repos.matches_with(&grant.scope.name, Values::default()))
            .flat_map(|r| &r.actions)
            .collect();
        let every = repository_actions().iter().all(|a| allowed.contains(a));
        grant.actions.retain(|a| match a {
            Action::All => every,
            other => allowed.contains(other),
        });
        grant
    }
}

/// `name` if it is a repository action.
fn repository_action(name: &str) -> Result<Action, LimitError> {
    let action = Action::parse(name);
    if repository_actions().contains(&action) {
        Ok(action)
    } else {
        Err(LimitError::Action(name.to_owned()))
    }
}

/// A limit's repository pattern: no placeholders (a limit is its owner's
/// alone) and no longer than a repository name may be.
fn repository_pattern(text: &str) -> Result<Pattern, LimitError> {
    if text.len() > MAX_PATTERN_BYTES {
        return Err(LimitError::TooLong);
    }
    Pattern::parse(text, Placeholders::Forbidden).map_err(|reason| LimitError::Pattern {
        pattern: text.to_owned(),
        reason,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::scope::Scope;

    /// A grant cut down to a stored limit, compiled.
    fn within(limits: &[AccessLimit], grant: Grant) -> Grant {
        Limit::from_stored(limits).within(grant)
    }

    fn stored(repos: &str, actions: &[&str]) -> AccessLimit {
        AccessLimit {
            repos: repos.into(),
            actions: actions.iter().map(|a| a.to_string()).collect(),
        }
    }

    fn grant(scope: &str, actions: &[&str]) -> Grant {
        Grant {
            scope: Scope::parse(scope).unwrap(),
            actions: actions.iter().map(|a| Action::parse(a)).collect(),
            trace: Vec::new(),
        }
    }

    fn form(patterns: &str, actions: &[&str]) -> Result<Limit, LimitError> {
        Limit::from_form(patterns.lines(), actions.iter().copied())
    }

    #[test]
    fn a_limit_never_widens_a_grant() {
        let limits = [
            stored("dev/**", &["pull", "push"]),
            stored("base/*", &["pull"]),
        ];
        let cut = within(
            &limits,
            grant(
                "repository:dev/app:pull,push,delete",
                &["pull", "push", "delete"],
            ),
        );
        assert_eq!(cut.actions, [Action::Pull, Action::Push]);
        let cut = within(
            &limits,
            grant("repository:base/debian:pull,push", &["pull", "push"]),
        );
        assert_eq!(cut.actions, [Action::Pull]);
        let cut = within(&limits, grant("repository:prod/app:pull", &["pull"]));
        assert!(cut.actions.is_empty());
        // the policy granted nothing: a limit adds nothing
        let cut = within(&limits, grant("repository:dev/app:pull,push", &[]));
        assert!(cut.actions.is_empty());
        // `*` only when every action is allowed
        let cut = within(
            &limits,
            grant("repository:dev/app:*", &["*", "delete", "pull", "push"]),
        );
        assert_eq!(cut.actions, [Action::Pull, Action::Push]);
        let all = [stored("dev/**", &["pull", "push", "delete"])];
        let cut = within(
            &all,
            grant("repository:dev/app:*", &["*", "delete", "pull", "push"]),
        );
        assert_eq!(cut.actions.len(), 4);
        // other resource types: nothing
        let cut = within(&all, grant("registry:catalog:*", &["*"]));
        assert!(cut.actions.is_empty());
        // review L1: a limit `*` is what `*` is in the policy's repos, a
        // top-level repository, not every repository
        let top = [stored("*", &["pull"])];
        let cut = within(&top, grant("repository:toplevel:pull", &["pull"]));
        assert_eq!(cut.actions, [Action::Pull]);
        let cut = within(&top, grant("repository:team/deep/app:pull", &["pull"]));
        assert!(cut.actions.is_empty());
    }

    #[test]
    fn no_limit_leaves_a_grant_and_an_empty_one_takes_all() {
        let asked = grant("repository:dev/app:pull,push", &["pull", "push"]);
        let cut = Limit::Unlimited.within(asked.clone());
        assert_eq!(cut.actions, [Action::Pull, Action::Push]);
        assert!(within(&[], asked).actions.is_empty());
        assert!(Limit::from_stored(&[]).reaches_nothing());
        assert!(Limit::from_stored(&[stored("dev/**", &["admin"])]).reaches_nothing());
        assert!(!Limit::Unlimited.reaches_nothing());
        assert!(!form("", &["pull"]).unwrap().reaches_nothing());
    }

    #[test]
    fn a_stored_limit_that_does_not_read_allows_nothing_more() {
        // an action no repository has, `*`, and a pattern that does not
        // parse: none of them reaches anything
        let odd = [
            stored("dev/**", &["pull", "admin", "*"]),
            stored("${user}/**", &["pull", "push", "delete"]),
        ];
        let cut = within(
            &odd,
            grant("repository:dev/app:*", &["*", "delete", "pull", "push"]),
        );
        assert_eq!(cut.actions, [Action::Pull]);
        let cut = within(&odd, grant("repository:alice/app:pull", &["pull"]));
        assert!(cut.actions.is_empty());
    }

    #[test]
    fn a_forms_limit_is_its_patterns_with_the_actions_ticked() {
        let limit = form(" dev/**\n\n  base/* \n", &["push", "pull", "pull"]).unwrap();
        assert_eq!(
            limit.to_stored(),
            [
                stored("dev/**", &["pull", "push"]),
                stored("base/*", &["pull", "push"])
            ]
        );
        // no pattern: every repository, for the actions ticked
        let limit = form("", &["pull"]).unwrap();
        assert_eq!(limit.to_stored(), [stored(EVERY_REPOSITORY, &["pull"])]);
        let cut = limit.within(grant("repository:a/b/c:pull,push", &["pull", "push"]));
        assert_eq!(cut.actions, [Action::Pull]);
        // every action on every repository is no limit
        let limit = form(" \n", &["delete", "push", "pull"]).unwrap();
        assert!(matches!(limit, Limit::Unlimited));
        assert!(limit.to_stored().is_empty());
        // but every action on some repositories is a limit
        let limit = form("dev/**", &["delete", "push", "pull"]).unwrap();
        let cut = limit.within(grant("repository:prod/app:pull", &["pull"]));
        assert!(cut.actions.is_empty());
    }

    #[test]
    fn a_forms_mistakes_are_named() {
        assert_eq!(form("dev/**", &[]).unwrap_err(), LimitError::NoAction);
        assert_eq!(form("", &[]).unwrap_err(), LimitError::NoAction);
        for bad in ["admin", "*", "Pull", ""] {
            assert_eq!(
                form("dev/**", &["pull", bad]).unwrap_err(),
                LimitError::Action(bad.into()),
                "{bad:?}"
            );
        }
        let many = (0..=MAX_LIMITS)
            .map(|i| format!("r{i}"))
            .collect::<Vec<_>>()
            .join("\n");
        assert_eq!(form(&many, &["pull"]).unwrap_err(), LimitError::TooMany);
        let long = "a".repeat(MAX_PATTERN_BYTES + 1);
        assert_eq!(form(&long, &["pull"]).unwrap_err(), LimitError::TooLong);
        assert!(form(&"a".repeat(MAX_PATTERN_BYTES), &["pull"]).is_ok());
        // a limit is its owner's alone: no placeholders
        let placeholder = form("${user}/**", &["pull"]).unwrap_err();
        assert!(
            matches!(&placeholder, LimitError::Pattern { pattern, .. } if pattern == "${user}/**"),
            "{placeholder:?}"
        );
    }

    #[test]
    fn a_forms_limit_reads_back_the_same_from_its_record() {
        let limit = form("dev/**\n*", &["pull", "delete"]).unwrap();
        let again = Limit::from_stored(&limit.to_stored());
        for (scope, actions) in [
            ("repository:dev/a/b:*", &["*", "delete", "pull", "push"][..]),
            ("repository:top:pull,push", &["pull", "push"]),
            ("repository:x/y:pull", &["pull"]),
        ] {
            let a = limit.within(grant(scope, actions)).actions;
            let b = again.within(grant(scope, actions)).actions;
            assert_eq!(a, b, "{scope}");
        }
    }
}
