//! Tests of policy compilation and evaluation.

use super::*;

fn rules(toml_text: &str) -> Policy {
    let file: PolicyFile = toml::from_str(toml_text).unwrap();
    Policy::compile(&file.rule, "rule", &[]).unwrap()
}

fn user(name: &str, groups: &[&str]) -> Principal {
    Principal::Authenticated(Arc::new(
        Identity::new(name, "local").with_groups(groups.iter().map(|g| g.to_string())),
    ))
}

fn grant(policy: &Policy, who: &Principal, scope: &str) -> Vec<Action> {
    policy
        .evaluate(who, "svc", &Scope::parse(scope).unwrap())
        .actions
}

const SAMPLE: &str = r#"
    [[rule]]
    groups = ["platform"]
    repos = ["platform/**", "base/*"]
    actions = ["pull", "push"]

    [[rule]]
    users = ["*"]
    repos = ["${user}/**"]
    actions = ["pull", "push", "delete"]

    [[rule]]
    groups = ["*"]
    repos = ["team-${group}/**"]
    actions = ["pull", "push"]

    [[rule]]
    groups = ["contractors"]
    repos = ["prod/**"]
    actions = ["pull", "push"]

    [[rule]]
    groups = ["contractors"]
    repos = ["prod/**"]
    deny = ["push", "delete"]

    [[rule]]
    anonymous = true
    repos = ["public/**"]
    actions = ["pull"]
"#;

#[test]
fn group_globs() {
    let p = rules(SAMPLE);
    let dev = user("dev", &["platform"]);
    assert_eq!(
        grant(&p, &dev, "repository:platform/a/b:pull,push"),
        ["pull", "push"]
    );
    assert_eq!(grant(&p, &dev, "repository:base/alpine:push"), ["push"]);
    // `*` stays within one segment
    assert!(grant(&p, &dev, "repository:base/a/b:pull").is_empty());
    // `platform/**` does not match `platform` itself or `platformx/y`
    assert!(grant(&p, &dev, "repository:platform:pull").is_empty());
    assert!(grant(&p, &dev, "repository:platformx/y:pull").is_empty());
    assert!(grant(&p, &user("o", &[]), "repository:platform/a:pull").is_empty());
}

#[test]
fn a_team_robot_gets_its_groups_rules_not_everyones() {
    let p = rules(
        r#"
        [[rule]]
        users = ["*"]
        repos = ["shared/**", "${user}/**"]
        actions = ["pull", "push"]

        [[rule]]
        users = ["robot$platform+*"]
        repos = ["cache/**"]
        actions = ["pull"]

        [[rule]]
        groups = ["platform"]
        repos = ["prod/**"]
        actions = ["*"]

        [[rule]]
        users = ["*"]
        repos = ["prod/**"]
        deny = ["delete"]
    "#,
    );
    let p2 = rules(SAMPLE);
    let robot = user("robot$platform+ci", &["platform"]);
    // everyone's rule does not reach it, a rule written for robots does
    assert!(grant(&p, &robot, "repository:shared/x:pull").is_empty());
    assert!(grant(&p, &robot, "repository:robot$platform+ci/x:pull").is_empty());
    assert_eq!(grant(&p, &robot, "repository:cache/x:pull,push"), ["pull"]);
    // its group's rules do, as for a member
    assert_eq!(
        grant(&p2, &robot, "repository:platform/a:pull,push"),
        ["pull", "push"]
    );
    assert_eq!(
        grant(&p, &user("dev", &[]), "repository:shared/x:pull"),
        ["pull"]
    );
    // a denial for every user holds for robots too
    assert_eq!(
        grant(&p, &robot, "repository:prod/x:pull,push,delete"),
        ["pull", "push"]
    );
}

#[test]
fn user_namespace_and_placeholder_escaping() {
    let p = rules(SAMPLE);
    assert_eq!(
        grant(&p, &user("alice", &[]), "repository:alice/app:delete,pull"),
        ["delete", "pull"]
    );
    assert!(grant(&p, &user("alice", &[]), "repository:bob/app:pull").is_empty());
    // a user named `*` gets the literal namespace `*/...`, nothing else
    assert!(grant(&p, &user("*", &[]), "repository:bob/app:pull").is_empty());
    assert_eq!(
        grant(&p, &user("*", &[]), "repository:*/app:pull"),
        ["pull"]
    );
}

#[test]
fn group_placeholder_is_literal() {
    let p = rules(SAMPLE);
    assert_eq!(
        grant(&p, &user("u", &["web", "db"]), "repository:team-db/x:push"),
        ["push"]
    );
    assert!(grant(&p, &user("u", &["web"]), "repository:team-db/x:push").is_empty());
    // a group named `*` must not widen access
    assert!(grant(&p, &user("u", &["*"]), "repository:team-db/x:pull").is_empty());
    assert_eq!(
        grant(&p, &user("u", &["*"]), "repository:team-*/x:pull"),
        ["pull"]
    );
}

#[test]
fn deny_wins_regardless_of_order() {
    let p = rules(SAMPLE);
    let c = user("c", &["contractors"]);
    assert_eq!(
        grant(&p, &c, "repository:prod/api:pull,push,delete"),
        ["pull"]
    );
    let reversed: PolicyFile = toml::from_str(SAMPLE).unwrap();
    let mut reversed = reversed.rule;
    reversed.reverse();
    let p2 = Policy::compile(&reversed, "rule", &[]).unwrap();
    assert_eq!(
        grant(&p2, &c, "repository:prod/api:pull,push,delete"),
        ["pull"]
    );
}

#[test]
fn default_deny_and_unknowns_grant_nothing() {
    let p = rules(SAMPLE);
    let u = user("u", &["platform"]);
    assert!(grant(&p, &u, "repository:other/x:pull").is_empty());
    assert!(grant(&p, &u, "repository:platform/x:frobnicate").is_empty());
    assert!(grant(&p, &u, "widget:platform/x:pull").is_empty());
    assert!(grant(&p, &u, "registry:catalog:search").is_empty());
}

#[test]
fn wildcard_request_needs_every_action() {
    let p = rules(SAMPLE);
    // alice holds pull, push, delete on her namespace
    assert_eq!(
        grant(&p, &user("alice", &[]), "repository:alice/x:*"),
        ["*", "delete", "pull", "push"]
    );
    // platform holds pull and push only: `*` is not granted
    assert!(grant(&p, &user("d", &["platform"]), "repository:platform/x:*").is_empty());
}

#[test]
fn catalog_only_when_granted() {
    let p = rules(SAMPLE);
    assert!(grant(&p, &user("alice", &[]), "registry:catalog:*").is_empty());
    let p = rules(
        r#"
        [[rule]]
        users = ["admin"]
        type = "registry"
        repos = ["catalog"]
        actions = ["*"]
    "#,
    );
    assert_eq!(grant(&p, &user("admin", &[]), "registry:catalog:*"), ["*"]);
    assert!(grant(&p, &user("other", &[]), "registry:catalog:*").is_empty());
}

#[test]
fn anonymous_is_its_own_principal() {
    let p = rules(SAMPLE);
    assert_eq!(
        grant(&p, &Principal::Anonymous, "repository:public/x:pull,push"),
        ["pull"]
    );
    assert!(grant(&p, &Principal::Anonymous, "repository:anonymous/x:pull").is_empty());
    // a user literally named "anonymous" gets no anonymous-only powers beyond the rule
    assert_eq!(
        grant(&p, &user("anonymous", &[]), "repository:public/x:pull"),
        ["pull"]
    );
}

#[test]
fn services_providers_and_claims() {
    let p = rules(
        r#"
        [[rule]]
        users = ["*"]
        services = ["reg-a"]
        providers = ["local"]
        repos = ["**"]
        actions = ["pull"]

        [[rule]]
        claims = { repository = "acme/*" }
        repos = ["acme/app"]
        actions = ["pull", "push"]
    "#,
    );
    let scope = Scope::parse("repository:x:pull").unwrap();
    let u = user("u", &[]);
    assert_eq!(p.evaluate(&u, "reg-a", &scope).actions, ["pull"]);
    assert!(p.evaluate(&u, "reg-b", &scope).actions.is_empty());
    let other = Principal::Authenticated(Arc::new(Identity::new("u", "ldap")));
    assert!(p.evaluate(&other, "reg-a", &scope).actions.is_empty());

    let mut ci = Identity::new("ci", "gha");
    ci.claims.insert("repository", "acme/app");
    let ci = Principal::Authenticated(Arc::new(ci));
    let push = Scope::parse("repository:acme/app:push").unwrap();
    assert_eq!(p.evaluate(&ci, "x", &push).actions, ["push"]);
    let mut bad = Identity::new("ci", "gha");
    bad.claims.insert("repository", "evil/app");
    assert!(p
        .evaluate(&Principal::Authenticated(Arc::new(bad)), "x", &push)
        .actions
        .is_empty());
}

#[test]
fn rules_bound_to_networks_apply_only_from_inside_them() {
    let p = rules(
        r#"
        [[rule]]
        users = ["ci"]
        repos = ["ci/**"]
        actions = ["pull", "push"]
        networks = ["10.20.0.0/16", "2001:db8::/48"]

        [[rule]]
        users = ["ci"]
        repos = ["ci/**"]
        actions = ["pull"]
    "#,
    );
    let ci = user("ci", &[]);
    let scope = Scope::parse("repository:ci/app:pull,push").unwrap();
    let from = |ip: &str| {
        p.evaluate_from(&ci, "svc", &scope, Some(ip.parse().unwrap()))
            .actions
    };
    assert_eq!(from("10.20.3.4"), ["pull", "push"]);
    assert_eq!(from("::ffff:10.20.3.4"), ["pull", "push"], "IPv4-mapped");
    assert_eq!(from("2001:db8:0:1::5"), ["pull", "push"]);
    assert_eq!(from("10.21.0.1"), ["pull"]);
    assert_eq!(from("192.0.2.1"), ["pull"]);
    // no client known: the bound rule grants nothing
    assert_eq!(p.evaluate(&ci, "svc", &scope).actions, ["pull"]);
    // ...but its denials hold (never open on what cannot be checked)
    let deny = rules(
        r#"
        [[rule]]
        users = ["ci"]
        repos = ["ci/**"]
        actions = ["pull", "push"]

        [[rule]]
        users = ["ci"]
        repos = ["ci/**"]
        deny = ["push"]
        networks = ["192.0.2.0/24"]
    "#,
    );
    assert_eq!(deny.evaluate(&ci, "svc", &scope).actions, ["pull"]);
    let from = |ip: &str| {
        deny.evaluate_from(&ci, "svc", &scope, Some(ip.parse().unwrap()))
            .actions
    };
    assert_eq!(from("192.0.2.7"), ["pull"]);
    assert_eq!(from("10.0.0.1"), ["pull", "push"]);
    // a network that is not one is refused at startup, naming the key
    for bad in [
        "10.20.0.1/16",
        "10.0.0.0/33",
        "ten",
        "",
        "010.020.0.0/16",
        "::ffff:10.20.0.0/112",
    ] {
        let text = format!(
            "[[rule]]\nusers=[\"ci\"]\nrepos=[\"x\"]\nactions=[\"pull\"]\nnetworks=[\"{bad}\"]"
        );
        let file: PolicyFile = toml::from_str(&text).unwrap();
        let err = Policy::compile(&file.rule, "rule", &[])
            .unwrap_err()
            .to_string();
        assert!(err.contains("rule[0].networks[0]"), "{bad}: {err}");
    }
}

#[test]
fn trace_names_the_rules() {
    let p = rules(SAMPLE);
    let g = p.explain(
        &user("c", &["contractors"]),
        "svc",
        &Scope::parse("repository:prod/api:push").unwrap(),
        None,
    );
    let rules: Vec<usize> = g.trace.iter().map(|m| m.rule).collect();
    assert_eq!(rules, [3, 4]);
    assert_eq!(g.trace[1].denies, ["delete", "push"]);
}

#[test]
fn compile_errors_name_the_key() {
    let bad = |text: &str| {
        let file: PolicyFile = toml::from_str(text).unwrap();
        Policy::compile(&file.rule, "rule", &[])
            .unwrap_err()
            .to_string()
    };
    assert!(
        bad("[[rule]]\nusers=[\"a\"]\nrepos=[\"x\"]\nactions=[\"pushh\"]")
            .starts_with("rule[0].actions[0]")
    );
    assert!(bad("[[rule]]\nrepos=[\"x\"]\nactions=[\"pull\"]").starts_with("rule[0].users"));
    assert!(
        bad("[[rule]]\nusers=[\"a\"]\nrepos=[\"${who}\"]\nactions=[\"pull\"]")
            .starts_with("rule[0].repos[0]")
    );
    assert!(
        bad("[[rule]]\nusers=[\"a\"]\ntype=\"blob\"\nrepos=[\"x\"]\nactions=[\"pull\"]")
            .starts_with("rule[0].type")
    );
}

fn providers(names: &[(&str, Claims)]) -> Vec<ProviderInfo> {
    names
        .iter()
        .map(|(name, claims)| ProviderInfo {
            name: name.to_string(),
            claims: *claims,
        })
        .collect()
}

fn compile_for(text: &str, infos: &[ProviderInfo]) -> Result<Policy, String> {
    let file: PolicyFile = toml::from_str(text).unwrap();
    Policy::compile(&file.rule, "rule", infos).map_err(|e| e.to_string())
}

fn from(provider: &str, name: &str, groups: &[&str]) -> Principal {
    Principal::Authenticated(Arc::new(
        Identity::new(name, provider).with_groups(groups.iter().map(|g| g.to_string())),
    ))
}

/// Review (2026-12-01) M4: names were not checked before they became a
/// namespace. A user called `base` took `base/**` (which the rules give
/// out by name), an empty name or one with a `/` reached into other
/// namespaces. Such names now get no personal namespace.
#[test]
fn names_that_would_take_a_shared_namespace_get_none() {
    let p = rules(
        r#"
        [[rule]]
        users = ["*"]
        repos = ["${user}/**"]
        actions = ["pull", "push", "delete"]

        [[rule]]
        groups = ["*"]
        repos = ["${group}/**"]
        actions = ["pull", "push"]

        [[rule]]
        users = ["*"]
        repos = ["team/${user}/**"]
        actions = ["pull", "push"]

        [[rule]]
        users = ["*"]
        repos = ["base/**", "team/shared"]
        actions = ["pull"]
    "#,
    );
    let alice = from("local", "alice", &["ops"]);
    assert_eq!(grant(&p, &alice, "repository:alice/app:push"), ["push"]);
    assert_eq!(grant(&p, &alice, "repository:ops/app:push"), ["push"]);
    for (name, groups, scope) in [
        ("base", &[][..], "repository:base/app:push"),
        ("Base", &[][..], "repository:base/app:push"),
        ("team", &[][..], "repository:team/shared:push"),
        ("x", &["base"][..], "repository:base/app:push"),
        ("a/b", &[][..], "repository:a/b/c:push"),
        ("", &[][..], "repository:/x:push"),
        // review of the fixes, 9: deeper in a pattern too
        ("shared", &[][..], "repository:team/shared:push"),
    ] {
        let who = from("local", name, groups);
        assert!(
            grant(&p, &who, scope).is_empty(),
            "{name:?} {groups:?}: {scope}"
        );
    }
}

/// Reproduced: a static `alice` in `admins` and an OIDC token saying
/// `sub = alice, groups = [admins]` got the same rules. Qualified
/// entries keep them apart.
#[test]
fn qualified_names_keep_providers_apart() {
    let infos = providers(&[("local", Claims::None), ("sso", Claims::Carried)]);
    let p = compile_for(
        r#"
        [[rule]]
        users = ["local:alice"]
        repos = ["prod/**"]
        actions = ["pull", "push"]

        [[rule]]
        groups = ["local:admins"]
        repos = ["admin/**"]
        actions = ["pull", "push"]

        [[rule]]
        users = ["*"]
        repos = ["${provider}/${user}/**"]
        actions = ["pull", "push"]
    "#,
        &infos,
    )
    .unwrap();
    let real = from("local", "alice", &["admins"]);
    let token = from("sso", "alice", &["admins"]);
    assert_eq!(grant(&p, &real, "repository:prod/app:push"), ["push"]);
    assert!(grant(&p, &token, "repository:prod/app:push").is_empty());
    assert_eq!(grant(&p, &real, "repository:admin/x:push"), ["push"]);
    assert!(grant(&p, &token, "repository:admin/x:push").is_empty());
    assert_eq!(grant(&p, &token, "repository:sso/alice/x:push"), ["push"]);
    assert!(grant(&p, &token, "repository:local/alice/x:push").is_empty());
    assert!(grant(&p, &token, "repository:alice/x:push").is_empty());
}

/// Review (2026-12-01) M3: an unqualified `*` spanned every provider,
/// public CI issuers included. Over several providers it must name them
/// (or keep each provider in its own namespace).
#[test]
fn a_star_over_several_providers_names_them() {
    let infos = providers(&[("local", Claims::None), ("ci", Claims::Carried)]);
    let e = compile_for(
        "[[rule]]\nusers=[\"*\"]\nrepos=[\"base/**\"]\nactions=[\"pull\"]",
        &infos,
    )
    .unwrap_err();
    assert!(
        e.starts_with("rule[0].users[0]") && e.contains("providers = ["),
        "{e}"
    );
    let e = compile_for(
        "[[rule]]\nusers=[\"*\"]\nrepos=[\"${provider}/**\"]\nactions=[\"pull\"]",
        &infos,
    )
    .unwrap_err();
    assert!(
        e.starts_with("rule[0].users[0]"),
        "a provider's shared namespace: {e}"
    );
    for ok in [
        "[[rule]]\nusers=[\"*\"]\nproviders=[\"local\",\"ci\"]\nrepos=[\"base/**\"]\nactions=[\"pull\"]",
        "[[rule]]\nusers=[\"local:*\"]\nrepos=[\"base/**\"]\nactions=[\"pull\"]",
        "[[rule]]\nusers=[\"*\"]\nrepos=[\"${provider}/${user}/**\"]\nactions=[\"pull\"]",
    ] {
        compile_for(ok, &infos).unwrap_or_else(|e| panic!("{ok}: {e}"));
    }
}

#[test]
fn bare_names_that_two_providers_could_match_are_refused() {
    let infos = providers(&[("local", Claims::None), ("sso", Claims::Carried)]);
    let e = compile_for(
        "[[rule]]\nusers=[\"alice\"]\nrepos=[\"x\"]\nactions=[\"pull\"]",
        &infos,
    )
    .unwrap_err();
    assert!(e.starts_with("rule[0].users[0]"), "{e}");
    assert!(e.contains("local, sso") && e.contains("local:alice"), "{e}");
    let e = compile_for(
        "[[rule]]\ngroups=[\"admins\"]\nrepos=[\"x\"]\nactions=[\"pull\"]",
        &infos,
    )
    .unwrap_err();
    assert!(e.starts_with("rule[0].groups[0]"), "{e}");
    let e = compile_for(
        "[[rule]]\nusers=[\"*\"]\nrepos=[\"${user}/**\"]\nactions=[\"pull\"]",
        &infos,
    )
    .unwrap_err();
    assert!(
        e.starts_with("rule[0].repos[0]") && e.contains("${provider}"),
        "{e}"
    );
    let e = compile_for(
        "[[rule]]\ngroups=[\"*\"]\nrepos=[\"team-${group}/**\"]\nactions=[\"pull\"]",
        &infos,
    )
    .unwrap_err();
    assert!(e.starts_with("rule[0].repos[0]"), "{e}");
    let e = compile_for(
        "[[rule]]\nusers=[\"sso:x\"]\nproviders=[\"local\"]\nrepos=[\"x\"]\nactions=[\"pull\"]",
        &infos,
    )
    .unwrap_err();
    assert!(e.contains("can never match"), "{e}");
    // two token providers and a claims rule
    let two = providers(&[("gha", Claims::Carried), ("gitlab", Claims::Carried)]);
    let e = compile_for(
        "[[rule]]\nclaims={repository=\"a/b\"}\nrepos=[\"x\"]\nactions=[\"pull\"]",
        &two,
    )
    .unwrap_err();
    assert!(e.starts_with("rule[0].claims"), "{e}");
    // what stays allowed: narrowed rules, one provider, qualified (a
    // bare "*" over several providers must name them now: see
    // a_star_over_several_providers_names_them)
    for ok in [
        "[[rule]]\nusers=[\"*\"]\nproviders=[\"local\",\"sso\"]\nrepos=[\"base/**\"]\nactions=[\"pull\"]",
        "[[rule]]\ngroups=[\"*\"]\nproviders=[\"local\",\"sso\"]\nrepos=[\"base/**\"]\nactions=[\"pull\"]",
        "[[rule]]\nusers=[\"alice\"]\nproviders=[\"local\"]\nrepos=[\"x\"]\nactions=[\"pull\"]",
        "[[rule]]\nusers=[\"*\"]\nproviders=[\"sso\"]\nrepos=[\"${user}/**\"]\nactions=[\"pull\"]",
        "[[rule]]\nclaims={repository=\"a/b\"}\nrepos=[\"x\"]\nactions=[\"pull\"]",
        "[[rule]]\nanonymous=true\nrepos=[\"public/**\"]\nactions=[\"pull\"]",
    ] {
        compile_for(ok, &infos).unwrap_or_else(|e| panic!("{ok}: {e}"));
    }
    let one = providers(&[("local", Claims::None)]);
    compile_for(
        "[[rule]]\nusers=[\"alice\"]\nrepos=[\"${user}/**\"]\nactions=[\"pull\"]",
        &one,
    )
    .unwrap();
}

#[test]
fn a_colon_that_names_no_provider_is_part_of_the_name() {
    let infos = providers(&[("local", Claims::None)]);
    let p = compile_for(
        "[[rule]]\ngroups=[\"ldap:admins\"]\nrepos=[\"x\"]\nactions=[\"pull\"]",
        &infos,
    )
    .unwrap();
    assert_eq!(
        grant(
            &p,
            &from("local", "u", &["ldap:admins"]),
            "repository:x:pull"
        ),
        ["pull"]
    );
    assert!(grant(&p, &from("local", "u", &["admins"]), "repository:x:pull").is_empty());
}

/// A service-account token's login: `system:serviceaccount:NS:NAME` with
/// the `kubernetes.io` claims, as the API server issues them.
fn service_account(provider: &str, namespace: &str) -> Principal {
    let mut id = Identity::new(
        format!("system:serviceaccount:{namespace}:builder"),
        provider,
    );
    id.claims.insert(
        "kubernetes.io",
        serde_json::json!({
            "namespace": namespace,
            "serviceaccount": {"name": "builder", "uid": "5f1c"},
            "pod": {"name": "build-1", "uid": "9a2e"},
        }),
    );
    id.claims
        .insert("roles", serde_json::json!(["reader", "pusher"]));
    id.claims.insert("ci", true);
    id.claims.insert("attempt", 3);
    Principal::Authenticated(Arc::new(id))
}

#[test]
fn rules_read_nested_lists_booleans_and_numbers() {
    let infos = providers(&[("k8s", Claims::Carried)]);
    let p = compile_for(
        r#"
        [[rule]]
        claims = { "kubernetes.io.namespace" = "ci", "kubernetes.io.serviceaccount.name" = "build*" }
        repos = ["tools/**"]
        actions = ["pull"]

        [[rule]]
        claims = { roles = "pusher", ci = "true", attempt = "3" }
        repos = ["tools/**"]
        actions = ["push"]
    "#,
        &infos,
    )
    .unwrap();
    let ci = service_account("k8s", "ci");
    assert_eq!(
        grant(&p, &ci, "repository:tools/x:pull,push"),
        ["pull", "push"]
    );
    let dev = service_account("k8s", "dev");
    assert_eq!(grant(&p, &dev, "repository:tools/x:pull,push"), ["push"]);
    let trace = p.explain(
        &ci,
        "svc",
        &Scope::parse("repository:tools/x:pull").unwrap(),
        None,
    );
    assert_eq!(
        trace.trace[0].because,
        "claims kubernetes.io.namespace=ci,kubernetes.io.serviceaccount.name=builder",
        "explain names the claims that matched"
    );
    let bad = compile_for(
        "[[rule]]\nclaims={\"a..b\"=\"x\"}\nrepos=[\"x\"]\nactions=[\"pull\"]",
        &infos,
    )
    .unwrap_err();
    assert!(bad.starts_with("rule[0].claims.a..b"), "{bad}");
}

#[test]
fn claim_templates_give_each_namespace_its_own_repositories() {
    let infos = providers(&[("k8s", Claims::Carried), ("corp", Claims::None)]);
    let p = compile_for(
        r#"
        [[rule]]
        users = ["*"]
        providers = ["k8s"]
        repos = ["${claim:kubernetes.io.namespace}/**"]
        actions = ["pull", "push"]

        [[rule]]
        users = ["corp:*"]
        repos = ["shared/**"]
        actions = ["pull"]
    "#,
        &infos,
    )
    .unwrap();
    let ci = service_account("k8s", "ci");
    assert_eq!(
        grant(&p, &ci, "repository:ci/app:pull,push"),
        ["pull", "push"]
    );
    assert!(grant(&p, &ci, "repository:dev/app:pull").is_empty());
    // a namespace named like a path the rules give out by name gets nothing
    let shared = service_account("k8s", "shared");
    assert!(grant(&p, &shared, "repository:shared/app:push").is_empty());
    let trace = p.explain(
        &ci,
        "svc",
        &Scope::parse("repository:ci/app:pull").unwrap(),
        None,
    );
    assert_eq!(trace.trace[0].repo, "ci/**");
}

#[test]
fn claim_templates_never_reach_another_providers_namespaces() {
    let infos = providers(&[
        ("k8s", Claims::Carried),
        ("other", Claims::Carried),
        ("corp", Claims::None),
    ]);
    let template = "[[rule]]\nusers=[\"*\"]\nproviders=[\"k8s\"]\nrepos=[\"${claim:kubernetes.io.namespace}/**\"]\nactions=[\"push\"]\n";
    for (other, why) in [
        ("[[rule]]\nusers=[\"*\"]\nproviders=[\"corp\"]\nrepos=[\"${user}/**\"]\nactions=[\"push\"]", "a directory user's namespace"),
        ("[[rule]]\ngroups=[\"*\"]\nproviders=[\"corp\"]\nrepos=[\"${group}/**\"]\nactions=[\"push\"]", "a group's namespace"),
        ("[[rule]]\nusers=[\"*\"]\nproviders=[\"other\"]\nrepos=[\"${claim:kubernetes.io.namespace}/**\"]\nactions=[\"push\"]", "another cluster's namespace"),
    ] {
        let e = compile_for(&format!("{template}\n{other}"), &infos).unwrap_err();
        assert!(e.contains("same namespace level"), "{why}: {e}");
    }
    // each provider's own: behind ${provider}/, a literal prefix, or one provider
    for ok in [
        "[[rule]]\nusers=[\"*\"]\nproviders=[\"corp\"]\nrepos=[\"home/${user}/**\"]\nactions=[\"push\"]",
        "[[rule]]\nusers=[\"*\"]\nproviders=[\"other\"]\nrepos=[\"${provider}/${claim:kubernetes.io.namespace}/**\"]\nactions=[\"push\"]",
        "[[rule]]\nusers=[\"*\"]\nproviders=[\"k8s\"]\nrepos=[\"${user}/**\"]\nactions=[\"pull\"]",
    ] {
        compile_for(&format!("{template}\n{ok}"), &infos).unwrap_or_else(|e| panic!("{ok}: {e}"));
    }
    // over several providers at once, as ${user}
    let e = compile_for(
        "[[rule]]\nusers=[\"k8s:*\",\"other:*\"]\nproviders=[\"k8s\",\"other\"]\nrepos=[\"${claim:ns}/**\"]\nactions=[\"push\"]",
        &infos,
    )
    .unwrap_err();
    assert!(e.contains("${provider}"), "{e}");
    // nobody to take a claim from
    for never in [
        "[[rule]]\nusers=[\"*\"]\nproviders=[\"corp\"]\nrepos=[\"${claim:ns}/**\"]\nactions=[\"push\"]",
        "[[rule]]\nanonymous=true\nrepos=[\"${claim:ns}/**\"]\nactions=[\"pull\"]",
    ] {
        assert!(compile_for(never, &infos).is_err(), "{never}");
    }
}

/// The security review of 2026-12-06: a namespace behind `${provider}/`
/// and a claim that fills part of a segment escaped the checks.
#[test]
fn claim_templates_are_checked_behind_the_provider_and_fill_whole_segments() {
    let infos = providers(&[("staging", Claims::Carried), ("corp", Claims::None)]);
    let template = "[[rule]]\nusers=[\"*\"]\nproviders=[\"staging\"]\nrepos=[\"${provider}/${claim:kubernetes.io.namespace}/**\"]\nactions=[\"push\"]\n";
    let p = compile_for(
        &format!("{template}\n[[rule]]\ngroups=[\"corp:platform\"]\nrepos=[\"staging/base/**\"]\nactions=[\"push\"]"),
        &infos,
    )
    .unwrap();
    let base = service_account("staging", "base");
    assert!(
        grant(&p, &base, "repository:staging/base/app:push").is_empty(),
        "a namespace named like a path another rule names gets nothing"
    );
    let ci = service_account("staging", "ci");
    assert_eq!(grant(&p, &ci, "repository:staging/ci/app:push"), ["push"]);
    // the directory's users under the cluster's provider name
    let e = compile_for(
        &format!("{template}\n[[rule]]\nusers=[\"*\"]\nproviders=[\"corp\"]\nrepos=[\"staging/${{user}}/**\"]\nactions=[\"push\"]"),
        &infos,
    )
    .unwrap_err();
    assert!(e.contains("same namespace level"), "{e}");
    for partial in ["apps/ns-${claim:ns}/**", "apps/${claim:ns}-cache/**"] {
        let e = compile_for(
            &format!("[[rule]]\nusers=[\"*\"]\nproviders=[\"staging\"]\nrepos=[\"{partial}\"]\nactions=[\"push\"]"),
            &infos,
        )
        .unwrap_err();
        assert!(e.contains("whole path segment"), "{partial}: {e}");
    }
    // a value that is no repository name component takes nothing
    let mut odd = Identity::new("system:serviceaccount:x:y", "staging");
    odd.claims
        .insert("kubernetes.io", serde_json::json!({"namespace": "CI"}));
    let odd = Principal::Authenticated(Arc::new(odd));
    assert!(grant(&p, &odd, "repository:staging/CI/app:push").is_empty());
}
