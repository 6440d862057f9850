//! The GitHub provider against a fake GitHub API, credential routing across
//! static, LDAP and GitHub, and robot accounts for CI.

use axum::http::StatusCode;

use crate::support::github::{Behaviour, FakeGitHub};
use crate::support::oci::build_image;
use crate::support::slapd::Slapd;
use crate::support::*;

const OCTO: &str = "ghp_octocatTOKEN0000000000000000000000";

const GITHUB_POLICY: &str = r#"
[[rule]]
groups = ["github:acme/platform"]
repos = ["acme/**"]
actions = ["pull", "push"]

[[rule]]
groups = ["github:acme"]
repos = ["acme/**"]
actions = ["pull"]
"#;

fn provider(api_url: &str, tweak: &str) -> String {
    format!(
        "\n[[provider]]\nname = \"github\"\nkind = \"github\"\napi_url = \"{api_url}\"\norganizations = [\"acme\"]\ntimeout = \"1s\"\n{tweak}\n{GITHUB_POLICY}"
    )
}

/// octocat: in acme, teams on two pages; push comes only through the
/// parent team of `platform-core`.
fn octocat() -> Behaviour {
    Behaviour::Member {
        login: "octocat",
        orgs: vec!["acme", "other-org"],
        teams: vec![
            ("acme", "web", None),
            ("other-org", "ops", None),
            ("acme", "platform-core", Some("platform")),
        ],
        scopes: Some("repo, read:org, write:packages"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_org_member_pushes_ten_layers_with_one_user_call() {
    let github = FakeGitHub::start().await;
    github.token(OCTO, octocat());
    let f = Fixture::new();
    let server = Server::start(f.config(&provider(&github.url(), ""))).await;
    let registry = Registry::start(&server.realm(), &f.cert).await;
    let work = tempfile::tempdir().unwrap();
    let image = work.path().join("image");
    build_image(&image, "latest", 10, "github-pat");
    let target = format!("docker://{}/acme/app:v1", registry.addr);
    let run = push(work.path(), &format!("octocat:{OCTO}"), &image, &target).await;
    assert!(run.ok, "PAT push: {run:?}\n{}", registry.log());
    assert_eq!(
        github.user_calls(),
        1,
        "one /user call per token per verdict TTL"
    );
    assert_eq!(
        github.calls.teams.load(std::sync::atomic::Ordering::SeqCst),
        2,
        "two pages of teams"
    );
    assert_eq!(
        github
            .calls
            .bad_headers
            .load(std::sync::atomic::Ordering::SeqCst),
        0,
        "Accept and X-GitHub-Api-Version sent"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn githubs_answers_map_to_what_clients_can_act_on() {
    let github = FakeGitHub::start().await;
    github.token(OCTO, octocat());
    github.token(
        "ghp_outsider",
        Behaviour::Member {
            login: "outsider",
            orgs: vec!["other-org"],
            teams: vec![],
            scopes: Some("repo, write:packages"),
        },
    );
    github.token("github_pat_sso", Behaviour::Sso);
    github.token("ghp_ratelimited", Behaviour::RateLimited);
    github.token("ghp_secondary", Behaviour::SecondaryRateLimit);
    github.token("ghp_broken", Behaviour::ServerError);
    github.token("ghp_slow", Behaviour::Slow);
    let f = Fixture::new();
    let state = f.state(&provider(&github.url(), ""));
    let push = "repository:acme/app:pull,push";

    // teams across two pages, the parent team included
    assert_eq!(
        token_for(&state, "octocat", OCTO, push).await.actions(),
        ["pull", "push"]
    );
    // the Basic username is the login, case-insensitively
    assert_eq!(
        token_for(&state, "OctoCat", OCTO, push).await.actions(),
        ["pull", "push"]
    );
    token_for(&state, "someone-else", OCTO, push)
        .await
        .assert_error(StatusCode::UNAUTHORIZED);
    // not a member of the required organization
    token_for(&state, "outsider", "ghp_outsider", push)
        .await
        .assert_error(StatusCode::UNAUTHORIZED);
    // a bad or revoked token
    token_for(&state, "octocat", "ghp_unknown", push)
        .await
        .assert_error(StatusCode::UNAUTHORIZED);
    // SAML SSO enforcement: 401 that says what to do
    let sso = token_for(&state, "octocat", "github_pat_sso", push).await;
    let body = sso.assert_error(StatusCode::UNAUTHORIZED);
    let message = body["errors"][0]["message"].as_str().unwrap();
    assert!(
        message.contains("SAML") && message.contains("authorize"),
        "{message}"
    );
    // rate limits are 503 with Retry-After, never 401
    let limited = token_for(&state, "octocat", "ghp_ratelimited", push).await;
    limited.assert_error(StatusCode::SERVICE_UNAVAILABLE);
    let retry: u64 = limited.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=60).contains(&retry), "{retry}");
    let secondary = token_for(&state, "octocat", "ghp_secondary", push).await;
    secondary.assert_error(StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(secondary.header("retry-after"), Some("30"));
    // 5xx and timeouts: 503
    token_for(&state, "octocat", "ghp_broken", push)
        .await
        .assert_error(StatusCode::SERVICE_UNAVAILABLE);
    token_for(&state, "octocat", "ghp_slow", push)
        .await
        .assert_error(StatusCode::SERVICE_UNAVAILABLE);

    // any_username accepts another Basic name for a valid token
    let any = f.state(&provider(&github.url(), "any_username = true"));
    assert_eq!(
        token_for(&any, "ci", OCTO, push).await.actions(),
        ["pull", "push"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enterprise_server_api_prefix_and_revocation_within_the_ttl() {
    let github = FakeGitHub::start().await;
    github.token(OCTO, octocat());
    let f = Fixture::new();
    let state = f.state(&provider(&format!("{}/api/v3", github.url()), ""));
    let pull = "repository:acme/app:pull";
    assert_eq!(
        token_for(&state, "octocat", OCTO, pull).await.actions(),
        ["pull"]
    );
    github.revoke(OCTO);
    state.chain.forget_verdicts(); // the TTL passes
    token_for(&state, "octocat", OCTO, pull)
        .await
        .assert_error(StatusCode::UNAUTHORIZED);
}

/// Every credential goes to the one provider it belongs to: counters on
/// the fake GitHub and slapd's operation log prove it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_are_routed_to_their_owner_only() {
    let github = FakeGitHub::start().await;
    github.token(OCTO, octocat());
    let slapd = Slapd::start();
    let f = Fixture::new();
    let extra = format!(
        "{}{}",
        slapd.provider_toml("corp", &[]),
        provider(&github.url(), "")
    );
    let state = f.state(&extra);
    let pull = "repository:acme/app:pull";

    // a PAT: GitHub answers, LDAP never sees it
    assert_eq!(
        token_for(&state, "octocat", OCTO, pull).await.actions(),
        ["pull"]
    );
    // a bad PAT is refused by GitHub and not offered to anyone else
    token_for(&state, "octocat", "ghp_wrong", pull)
        .await
        .assert_error(StatusCode::UNAUTHORIZED);
    assert!(
        !slapd.log().contains("octocat"),
        "no LDAP operation mentions the PAT's user"
    );

    // an LDAP password: never sent to GitHub
    let before = github.user_calls();
    token_for(&state, "ann", "ann-pw", pull).await;
    token_for(&state, "ann", "wrong", pull)
        .await
        .assert_error(StatusCode::UNAUTHORIZED);
    // unknown everywhere: static and LDAP are asked, GitHub is not
    token_for(&state, "nobody", "some password", pull)
        .await
        .assert_error(StatusCode::UNAUTHORIZED);
    assert_eq!(github.user_calls(), before, "passwords never reach GitHub");

    // a static user's wrong password stops at the static provider
    token_for(&state, "writer", "wrong", pull)
        .await
        .assert_error(StatusCode::UNAUTHORIZED);
    assert!(
        !slapd.log().contains("uid=writer"),
        "a Rejected never falls through to LDAP"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn robots_for_ci_expire_and_pinned_names_stay_local() {
    let log = log_capture();
    let slapd = Slapd::start();
    let f = Fixture::new();
    let hash = regauth_providers::static_users::hash_bcrypt("robot-secret", 4).unwrap();
    let robots = format!(
        r#"
[[provider]]
name = "robots"
kind = "static"
usernames = ["ci-*"]

[[provider.robots]]
name = "ci-builder"
secret = "{hash}"
groups = ["builders"]
expires = "2999-12-31"

[[provider.robots]]
name = "ci-retired"
secret = "{hash}"
groups = ["builders"]
expires = "2024-01-31"

[[rule]]
groups = ["robots:builders"]
repos = ["builds/**"]
actions = ["pull", "push"]
"#
    );
    let state = f.state(&format!("{robots}{}", slapd.provider_toml("corp", &[])));
    let push = "repository:builds/app:push";
    let ok = token_for(&state, "ci-builder", "robot-secret", push).await;
    assert_eq!(ok.actions(), ["push"]);
    assert_eq!(ok.token().1["sub"], "ci-builder");
    token_for(&state, "ci-retired", "robot-secret", push)
        .await
        .assert_error(StatusCode::UNAUTHORIZED);
    assert!(
        log.text()
            .lines()
            .any(|l| l.contains("robot account expired") && l.contains("ci-retired")),
        "a clear log line for the expired robot"
    );
    // a pinned name that is not a robot is never offered to LDAP
    token_for(&state, "ci-unknown", "whatever", push)
        .await
        .assert_error(StatusCode::UNAUTHORIZED);
    assert!(!slapd.log().contains("ci-unknown"));
    // bad robot names are configuration errors with the key path
    let config = f
        .config(&robots)
        .set("provider[1].robots[0].name", "CI Builder")
        .load()
        .unwrap();
    let err = regauth::build(config).err().unwrap().to_string();
    assert!(err.contains("robots[0].name"), "{err}");
}
