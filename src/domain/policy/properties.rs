//! Property tests: the policy's promises for any input.

use super::*;
use proptest::prelude::*;

const ACTIONS: &[&str] = &["pull", "push", "delete", "*"];
const REPOS: &[&str] = &["**", "x/**", "x/*", "y/z", "${user}/**", "team-${group}/*"];
const SCOPES: &[&str] = &["x/1", "x/1/2", "y/z", "u1/app", "team-a/app", "other"];

fn subset(of: &'static [&'static str]) -> impl Strategy<Value = Vec<String>> {
    prop::sample::subsequence(of, 0..=of.len())
        .prop_map(|v| v.into_iter().map(str::to_owned).collect())
}

fn rule() -> impl Strategy<Value = RuleConfig> {
    (
        subset(&["a", "b", "c", "*"]),
        subset(&["u1", "u2", "*"]),
        prop::sample::subsequence(REPOS, 1..=2),
        subset(ACTIONS),
        subset(ACTIONS),
        any::<bool>(),
    )
        .prop_filter_map(
            "a rule names someone and does something",
            |(groups, users, repos, actions, deny, anonymous)| {
                let names_someone = !groups.is_empty() || !users.is_empty();
                let anonymous = anonymous && !names_someone;
                let placeholders = repos.iter().any(|r| r.contains("${"));
                if !(names_someone || anonymous)
                    || (actions.is_empty() && deny.is_empty())
                    || (anonymous && placeholders)
                {
                    return None;
                }
                Some(RuleConfig {
                    groups,
                    users,
                    anonymous,
                    repos: repos.into_iter().map(str::to_owned).collect(),
                    actions,
                    deny,
                    ..Default::default()
                })
            },
        )
}

fn principal() -> impl Strategy<Value = Principal> {
    prop_oneof![
        Just(Principal::Anonymous),
        (
            prop::sample::select(&["u1", "u2", "u3"][..]),
            subset(&["a", "b", "c"])
        )
            .prop_map(|(user, groups)| Principal::Authenticated(Arc::new(
                Identity::new(user, "local").with_groups(groups)
            ))),
    ]
}

fn scope() -> impl Strategy<Value = Scope> {
    (
        prop::sample::select(SCOPES),
        prop::sample::subsequence(ACTIONS, 1..=ACTIONS.len()),
    )
        .prop_map(|(name, actions)| Scope {
            kind: "repository".into(),
            name: name.to_owned(),
            actions: actions.into_iter().map(Action::parse).collect(),
        })
}

fn granted(rules: &[RuleConfig], who: &Principal, scope: &Scope) -> Vec<Action> {
    Policy::compile(rules, "rule", &[])
        .expect("generated rules compile")
        .evaluate(who, "svc", scope)
        .actions
}

proptest! {
    /// A grant never exceeds what was asked (`*` asks for every action).
    #[test]
    fn a_grant_never_exceeds_the_request(rules in prop::collection::vec(rule(), 0..6), who in principal(), scope in scope()) {
        let grant = granted(&rules, &who, &scope);
        let asked_all = scope.actions.iter().any(|a| a == "*");
        for action in &grant {
            prop_assert!(asked_all || scope.actions.contains(action), "{action} not asked: {scope}");
        }
    }

    /// Deny wins: an action any matching rule denies is never granted,
    /// wherever that rule stands.
    #[test]
    fn deny_wins(rules in prop::collection::vec(rule(), 1..6), who in principal(), scope in scope(), at in 0usize..6) {
        let mut with_deny = rules.clone();
        let denying = RuleConfig {
            users: vec!["*".into()],
            anonymous: false,
            repos: vec!["**".into()],
            deny: vec!["push".into()],
            ..Default::default()
        };
        with_deny.insert(at.min(with_deny.len()), denying);
        let grant = granted(&with_deny, &who, &scope);
        if matches!(who, Principal::Authenticated(_)) {
            prop_assert!(!grant.iter().any(|a| a == "push" || a == "*"), "{grant:?}");
        }
    }

    /// Adding a rule that only allows never removes a grant.
    #[test]
    fn adding_an_allow_rule_never_removes_a_grant(rules in prop::collection::vec(rule(), 0..6), extra in rule(), who in principal(), scope in scope()) {
        let before = granted(&rules, &who, &scope);
        let mut more = rules.clone();
        more.push(RuleConfig { deny: Vec::new(), ..extra });
        if more.last().is_some_and(|r| r.actions.is_empty()) {
            return Ok(());
        }
        let after = granted(&more, &who, &scope);
        for action in &before {
            prop_assert!(after.contains(action), "{action} lost: {before:?} -> {after:?}");
        }
    }
}
