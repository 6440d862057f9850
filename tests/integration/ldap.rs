//! The LDAP provider against a real slapd: nested groups to a real
//! registry push, passwords and filter injection, TLS, group TTL, and the
//! directory going away and coming back.

use std::time::{Duration, Instant};

use axum::http::StatusCode;

use crate::support::oci::build_image;
use crate::support::slapd::Slapd;
use crate::support::*;

const LDAP_POLICY: &str = r#"
[[rule]]
groups = ["corp:platform"]
repos = ["platform/**"]
actions = ["pull", "push"]

[[rule]]
groups = ["corp:readers"]
repos = ["platform/**"]
actions = ["pull"]

[[rule]]
groups = ["corp:devs"]
repos = ["devs/**"]
actions = ["pull", "push"]
"#;

const ANN: &str = "uid=ann,ou=people,dc=corp,dc=test";

fn extra(slapd: &Slapd, overrides: &[(&str, &str)]) -> String {
    format!("{}{LDAP_POLICY}", slapd.provider_toml("corp", overrides))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nested_group_member_pushes_ten_layers_with_one_bind() {
    let slapd = Slapd::start();
    let f = Fixture::new();
    let server = Server::start(f.config(&extra(&slapd, &[]))).await;
    let registry = Registry::start(&server.realm(), &f.cert).await;
    let reg = registry.addr;
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    let image = w.join("image");
    build_image(&image, "latest", 10, "ldap-nested");

    let at = |repo: &str| format!("docker://{reg}/{repo}");
    let before = slapd.binds_of(ANN);
    let run = push(w, "ann:ann-pw", &image, &at("platform/app:v1")).await;
    assert!(run.ok, "ann (core -> platform) pushes: {run:?}");
    let user_binds = slapd.binds_of(ANN) - before;
    assert_eq!(
        user_binds, 1,
        "one user bind per verdict TTL for a 10-layer push"
    );

    let run = inspect(w, Some("ben:ben-pw"), &at("platform/app:v1")).await;
    assert!(run.ok, "ben (readers) pulls: {run:?}");
    let other = w.join("other");
    build_image(&other, "latest", 1, "ldap-ben");
    let run = push(w, "ben:ben-pw", &other, &at("platform/app:v2")).await;
    assert!(!run.ok, "ben may not push: {run:?}");
    let run = inspect(w, Some("dee:dee-pw"), &at("platform/app:v1")).await;
    assert!(!run.ok, "dee (no group) may not pull: {run:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passwords_injection_names_and_groups() {
    let slapd = Slapd::start();
    let f = Fixture::new();
    let state = f.state(&extra(&slapd, &[]));
    let push = "repository:platform/x:pull,push";

    let ok = token_for(&state, "ann", "ann-pw", push).await;
    assert_eq!(ok.actions(), ["pull", "push"]);
    assert_eq!(ok.token().1["sub"], "ann");
    token_for(&state, "ann", "wrong", push)
        .await
        .assert_error(StatusCode::UNAUTHORIZED);

    // an empty password never reaches slapd
    let binds = slapd.binds_of(ANN);
    token_for(&state, "ann", "", push)
        .await
        .assert_error(StatusCode::UNAUTHORIZED);
    assert_eq!(slapd.binds_of(ANN), binds, "no bind for an empty password");

    // filter injection finds nobody
    for user in ["*", "admin)(uid=*", "ann)(uid=*", "*)(|(uid=*", "ann\\"] {
        token_for(&state, user, "ann-pw", push)
            .await
            .assert_error(StatusCode::UNAUTHORIZED);
        token_for(&state, user, "admin-pw", push)
            .await
            .assert_error(StatusCode::UNAUTHORIZED);
    }
    // a name that needs escaping logs in; the subject is the directory's spelling
    let john = token_for(&state, "jo(h*n", "john-pw", push).await;
    assert_eq!(john.actions(), ["pull"]);
    assert_eq!(john.token().1["sub"], "jo(h*n");
    let upper = token_for(&state, "ANN", "ann-pw", push).await;
    assert_eq!(
        upper.token().1["sub"],
        "ann",
        "canonical case from the entry"
    );
    // a user in no group gets an empty grant, not an error
    let dee = token_for(&state, "dee", "dee-pw", push).await;
    assert!(dee.access().is_empty());
    // a static user is still served by the static provider first
    assert_eq!(
        token_for(&state, "writer", "writer-pw", "repository:team/a:push")
            .await
            .actions(),
        ["push"]
    );

    // memberUid groups (posixGroup) through a combined filter
    let state = f.state(&extra(
        &slapd,
        &[(
            "group_filter",
            r#""(|(member={dn})(memberUid={username}))""#,
        )],
    ));
    let cid = token_for(&state, "cid", "cid-pw", "repository:devs/tool:push").await;
    assert_eq!(cid.actions(), ["push"]);
    // cycles end: ann is in core, platform and both cycle groups
    let ann = token_for(&state, "ann", "ann-pw", push).await;
    assert_eq!(ann.actions(), ["pull", "push"]);

    // memberOf (overlay) instead of a group search
    let state = f.state(&extra(&slapd, &[("member_of_attribute", r#""memberOf""#)]));
    assert_eq!(
        token_for(&state, "ann", "ann-pw", push).await.actions(),
        ["pull", "push"]
    );
    // without nesting, ann has core only
    let state = f.state(&extra(&slapd, &[("nested_groups", "false")]));
    assert!(token_for(&state, "ann", "ann-pw", push)
        .await
        .access()
        .is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ldaps_and_starttls_with_a_ca_file() {
    let slapd = Slapd::start();
    let f = Fixture::new();
    let ca = format!("{:?}", slapd.ca().display().to_string());
    let push = "repository:platform/x:push";
    let ldaps = f.state(&extra(
        &slapd,
        &[
            ("url", &format!("{:?}", slapd.ldaps_url())),
            ("ca_file", &ca),
        ],
    ));
    assert_eq!(
        token_for(&ldaps, "ann", "ann-pw", push).await.actions(),
        ["push"]
    );
    let starttls = f.state(&extra(&slapd, &[("start_tls", "true"), ("ca_file", &ca)]));
    assert_eq!(
        token_for(&starttls, "ann", "ann-pw", push).await.actions(),
        ["push"]
    );
    // a CA that did not sign the server's certificate: the directory is
    // unusable (503), and the password was never sent
    let wrong = format!("{:?}", f.cert.display().to_string());
    let state = f.state(&extra(
        &slapd,
        &[
            ("url", &format!("{:?}", slapd.ldaps_url())),
            ("ca_file", &wrong),
        ],
    ));
    token_for(&state, "ann", "ann-pw", push)
        .await
        .assert_error(StatusCode::SERVICE_UNAVAILABLE);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_changes_show_after_the_group_ttl_not_before() {
    let slapd = Slapd::start();
    let f = Fixture::new();
    let group_ttl = Duration::from_secs(2);
    let state = f
        .config(&extra(&slapd, &[("group_cache_ttl", r#""2s""#)]))
        .set("token.reuse_window", "0s")
        .state();
    let push = "repository:platform/x:push";
    let started = Instant::now();
    assert!(token_for(&state, "ben", "ben-pw", push)
        .await
        .access()
        .is_empty());
    slapd.modify(
        "dn: cn=core,ou=groups,dc=corp,dc=test\nchangetype: modify\nadd: member\nmember: uid=ben,ou=people,dc=corp,dc=test\n",
    );
    state.chain.forget_verdicts(); // the verdict's TTL passes
    assert!(started.elapsed() < group_ttl);
    assert!(
        token_for(&state, "ben", "ben-pw", push)
            .await
            .access()
            .is_empty(),
        "new verdict, but the groups are still cached"
    );
    // the groups' TTL is the provider's own timer: it has to pass (and the
    // verdict's, shorter, with it)
    tokio::time::sleep(group_ttl.saturating_sub(started.elapsed()) + Duration::from_millis(300))
        .await;
    state.chain.forget_verdicts();
    assert_eq!(
        token_for(&state, "ben", "ben-pw", push).await.actions(),
        ["push"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn directory_outage_serves_cached_verdicts_and_recovers() {
    let mut slapd = Slapd::start();
    let f = Fixture::new();
    let state = f.state(&extra(
        &slapd,
        &[
            ("operation_timeout", r#""2s""#),
            ("connect_timeout", r#""2s""#),
        ],
    ));
    let push = "repository:platform/x:push";
    assert_eq!(
        token_for(&state, "ann", "ann-pw", push).await.actions(),
        ["push"]
    );
    assert_eq!(get(&state, "/readyz", None).await.status, StatusCode::OK);

    slapd.stop();
    // a fresh cached verdict still gets a token
    assert_eq!(
        token_for(&state, "ann", "ann-pw", push).await.actions(),
        ["push"]
    );
    // nobody else can be checked: 503, not 401 and not 500
    let down = token_for(&state, "ben", "ben-pw", push).await;
    let body = down.assert_error(StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(body["errors"][0]["code"], "UNAVAILABLE");
    assert!(down.header("retry-after").is_some());
    // readiness is computed at most once a second (here and below, that
    // second passes); it names the directory as degraded and stays 200
    // (the replica serves static users, cached logins and anonymous pulls)
    forget_readiness(&state).await;
    let ready = get(&state, "/readyz", None).await;
    assert_eq!(ready.status, StatusCode::OK);
    assert_eq!(
        ready.json()["degraded"][0],
        "provider corp",
        "{}",
        ready.text()
    );

    slapd.resume();
    // back to normal without restarting regauth (pooled connections renew)
    let back = token_for(&state, "ben", "ben-pw", "repository:platform/x:pull").await;
    assert_eq!(back.actions(), ["pull"]);
    forget_readiness(&state).await;
    let ready = get(&state, "/readyz", None).await;
    assert_eq!(ready.status, StatusCode::OK);
    assert_eq!(ready.json()["degraded"], serde_json::json!([]));
}

/// A directory restarted under a full pool: every pooled connection is
/// stale, and the first login after must not spend its retries on them
/// one by one (it got a 503 "no directory server answered" while two or
/// more stale connections were pooled; with two domain controllers, a DC
/// killed under load failed more logins than were in flight on it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_under_a_full_pool_fails_no_login() {
    let mut slapd = Slapd::start();
    let f = Fixture::new();
    let state = f
        .config(&extra(&slapd, &[]))
        .set("cache.verdict_ttl", "0s")
        .state();
    let users = [
        ("ann", "ann-pw"),
        ("ben", "ben-pw"),
        ("cid", "cid-pw"),
        ("dee", "dee-pw"),
    ];
    // four users' logins at once leave four service connections pooled
    let logins = users.map(|(user, password)| token_for(&state, user, password, ""));
    for login in futures_util::future::join_all(logins).await {
        assert_eq!(login.status, StatusCode::OK, "{}", login.text());
    }
    slapd.stop();
    slapd.resume();
    for (user, password) in users {
        let after = token_for(&state, user, password, "").await;
        assert_eq!(after.status, StatusCode::OK, "{user}: {}", after.text());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retrying_stale_password_cannot_lock_the_directory_account() {
    let slapd = Slapd::start();
    let f = Fixture::new();
    let state = f
        .config(&extra(&slapd, &[]))
        .set("cache.max_failures", 3)
        .state();
    let before = slapd.binds_of(ANN);
    for _ in 0..20 {
        token_for(
            &state,
            "ann",
            "stale-password",
            "repository:platform/x:pull",
        )
        .await
        .assert_error(StatusCode::UNAUTHORIZED);
    }
    assert_eq!(
        slapd.binds_of(ANN) - before,
        3,
        "the directory saw 3 of 20 attempts"
    );
}

/// The user's bind works but the group walk fails (a size limit on the
/// service account): the groups cached before serve, within stale_if_error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_groups_serve_when_only_the_group_walk_fails() {
    let mut slapd = Slapd::start();
    let f = Fixture::new();
    let config = f
        .config(&extra(
            &slapd,
            &[
                ("group_cache_ttl", r#""0s""#),
                ("stale_if_error", r#""1h""#),
            ],
        ))
        .set("token.reuse_window", "0s");
    let state = config.state();
    let push = "repository:platform/x:push";
    assert_eq!(
        token_for(&state, "ann", "ann-pw", push).await.actions(),
        ["push"]
    );
    slapd.stop();
    slapd.append_config(&format!(
        "limits dn.exact=\"{}\" size=1",
        crate::support::slapd::SERVICE_DN
    ));
    slapd.resume();
    state.chain.forget_verdicts();
    // verdict and groups are both past their TTL (the groups' is 0s); the
    // bind works, the nested walk hits the size limit, and the cached
    // groups serve
    assert_eq!(
        token_for(&state, "ann", "ann-pw", push).await.actions(),
        ["push"]
    );
    // proof that the walk really fails now: a server with no cached
    // groups for ann cannot serve her (503, not a wrong grant)
    let fresh = config.state();
    token_for(&fresh, "ann", "ann-pw", push)
        .await
        .assert_error(StatusCode::SERVICE_UNAVAILABLE);
}
