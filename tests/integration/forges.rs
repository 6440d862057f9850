//! The GitLab and Gitea providers against fakes of their APIs: access
//! tokens and CI job tokens pushing to the real registry, GitLab's and
//! Gitea's refusals mapped to what a client can act on, and tokens that
//! reach their own forge and nothing else.

use std::sync::atomic::Ordering;

use axum::http::StatusCode;

use crate::support::gitea::{FakeGitea, Token as GiteaToken};
use crate::support::github::FakeGitHub;
use crate::support::gitlab::{FakeGitLab, Job, Token};
use crate::support::oci::build_image;
use crate::support::slapd::Slapd;
use crate::support::*;

const DEV: &str = "glpat-devTOKEN00000000000";
const JOB_MAIN: &str = "64_jobOfMainBranch0000";
const JOB_FEATURE: &str = "glcbt-64_jobOfFeature000000";

/// The policy a platform team writes (as in config/example-gitlab.toml).
const GITLAB_POLICY: &str = r#"
[[rule]]
description = "the platform group pushes platform images"
groups = ["gitlab:acme/platform"]
repos = ["platform/**"]
actions = ["pull", "push"]

[[rule]]
description = "acme/app's pipelines on main push its image"
users = ["gitlab:acme/app"]
claims = { token_type = "job", ref = "main", ref_type = "branch" }
repos = ["acme/app"]
actions = ["pull", "push"]

[[rule]]
description = "acme/app's other pipelines pull it"
users = ["gitlab:acme/app"]
claims = { token_type = "job" }
repos = ["acme/app"]
actions = ["pull"]

[[rule]]
description = "acme/tools' project access token pushes its images"
providers = ["gitlab"]
claims = { token_type = "project_bot", bot_project = "acme/tools" }
repos = ["acme/tools/**"]
actions = ["pull", "push"]
"#;

/// The provider as config/example-gitlab.toml writes it: subgroup members
/// count for their parent groups there (`parent_groups = true`, opted in),
/// unless `tweak` says otherwise.
fn gitlab_provider(url: &str, tweak: &str) -> String {
    let parents = if tweak.contains("parent_groups") {
        ""
    } else {
        "parent_groups = true\n"
    };
    format!(
        "\n[[provider]]\nname = \"gitlab\"\nkind = \"gitlab\"\nurl = \"{url}\"\ngroups = [\"acme\"]\nmin_access_level = 20\ntimeout = \"1s\"\n{parents}{tweak}\n{GITLAB_POLICY}"
    )
}

/// dev: a developer of the subgroup acme/platform/core (and of groups
/// outside acme), on two pages of groups.
fn dev() -> Token {
    Token::User {
        username: "dev",
        state: "active",
        bot: false,
        groups: vec![("acme/platform/core", 30), ("acme/web", 30), ("other", 50)],
        projects: vec![],
        scopes: &["read_api", "write_registry"],
    }
}

fn job(project: &'static str, git_ref: &'static str) -> Job {
    Job {
        project,
        git_ref,
        tag: false,
        status: "running",
        source: "push",
        user: "dev",
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gitlab_subgroup_member_pushes_ten_layers_with_one_user_call() {
    let gitlab = FakeGitLab::start().await;
    gitlab.token(DEV, dev());
    let f = Fixture::new();
    let server = Server::start(f.config(&gitlab_provider(&gitlab.url(), ""))).await;
    let registry = Registry::start(&server.realm(), &f.cert).await;
    let work = tempfile::tempdir().unwrap();
    let image = work.path().join("image");
    build_image(&image, "latest", 10, "gitlab-pat");
    let target = format!("docker://{}/platform/app:v1", registry.addr);
    let run = push(work.path(), &format!("dev:{DEV}"), &image, &target).await;
    assert!(run.ok, "PAT push: {run:?}\n{}", registry.log());
    assert_eq!(
        gitlab.calls.user.load(Ordering::SeqCst),
        1,
        "one /user call per token per verdict TTL"
    );
    assert_eq!(
        gitlab.calls.groups.load(Ordering::SeqCst),
        2,
        "two pages of groups"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gitlabs_answers_map_to_what_clients_can_act_on() {
    let log = log_capture();
    let gitlab = FakeGitLab::start().await;
    gitlab.token(DEV, dev());
    let user = |username: &'static str, state: &'static str, groups: Vec<(&'static str, u8)>| {
        Token::User {
            username,
            state,
            bot: false,
            groups,
            projects: vec![],
            scopes: &["api"],
        }
    };
    gitlab.token(
        "glpat-outsider",
        user("outsider", "active", vec![("other", 50), ("acme-evil", 50)]),
    );
    gitlab.token(
        "glpat-guest",
        user("guest", "active", vec![("acme/platform", 10)]),
    );
    gitlab.token(
        "glpat-blocked",
        user("blocked", "blocked", vec![("acme", 30)]),
    );
    gitlab.token(
        "glpat-gone",
        user("gone", "deactivated", vec![("acme", 30)]),
    );
    gitlab.token("glpat-expired", Token::Expired);
    gitlab.token("glpat-limited", Token::RateLimited);
    gitlab.token("glpat-broken", Token::ServerError);
    gitlab.token(
        "glpat-readuser",
        Token::User {
            username: "narrow",
            state: "active",
            bot: false,
            groups: vec![("acme/platform", 30)],
            projects: vec![],
            scopes: &["read_user", "write_registry"],
        },
    );
    gitlab.token(
        "glpat-projectbot",
        Token::User {
            username: "project_12_bot_4ffca233d8298ea1",
            state: "active",
            bot: true,
            groups: vec![],
            // a project of another id it is a member of does not count
            projects: vec![(12, "acme/tools", 40), (99, "acme/other", 40)],
            scopes: &["read_api", "write_registry"],
        },
    );
    gitlab.token(
        "glpat-groupbot",
        Token::User {
            username: "group_7_bot_9c1d2e3f4a5b6c7d",
            state: "active",
            bot: true,
            groups: vec![("acme/platform", 40)],
            projects: vec![],
            scopes: &["read_api", "write_registry"],
        },
    );
    let f = Fixture::new();
    let state = f.state(&gitlab_provider(&gitlab.url(), ""));
    let push = "repository:platform/app:pull,push";

    // groups with their parents; the Basic username is the token's user,
    // case-insensitively
    assert_eq!(
        token_for(&state, "dev", DEV, push).await.actions(),
        ["pull", "push"]
    );
    assert_eq!(
        token_for(&state, "DEV", DEV, push).await.actions(),
        ["pull", "push"]
    );
    token_for(&state, "someone-else", DEV, push)
        .await
        .assert_error(StatusCode::UNAUTHORIZED);
    // outside the required group (a look-alike name does not count), or
    // below min_access_level
    for (who, token) in [("outsider", "glpat-outsider"), ("guest", "glpat-guest")] {
        token_for(&state, who, token, push)
            .await
            .assert_error(StatusCode::UNAUTHORIZED);
    }
    // blocked, deactivated, expired, unknown
    for (who, token) in [
        ("blocked", "glpat-blocked"),
        ("gone", "glpat-gone"),
        ("dev", "glpat-expired"),
        ("dev", "glpat-unknown"),
    ] {
        token_for(&state, who, token, push)
            .await
            .assert_error(StatusCode::UNAUTHORIZED);
    }
    // a token that cannot list groups: 401 that names the scope to add
    let narrow = token_for(&state, "narrow", "glpat-readuser", push).await;
    let body = narrow.assert_error(StatusCode::UNAUTHORIZED);
    let message = body["errors"][0]["message"].as_str().unwrap();
    assert!(message.contains("read_api"), "{message}");
    assert!(
        log.text().contains("add the read_api scope"),
        "the log says which scope to add"
    );
    // a deploy token (prefixed, or a legacy one by its username) and other
    // GitLab tokens: 401 that says what to use instead, never a password
    for (who, token, says) in [
        ("gitlab+deploy-token-1", "gldt-abc", "deploy tokens"),
        ("gitlab+deploy-token-2", "x5kqLegacy", "deploy tokens"),
        ("runner", "glrt-abc", "cannot log in"),
    ] {
        let refused = token_for(&state, who, token, push).await;
        let body = refused.assert_error(StatusCode::UNAUTHORIZED);
        let message = body["errors"][0]["message"].as_str().unwrap();
        assert!(message.contains(says), "{who}: {message}");
    }
    // rate limits and outages: 503 with Retry-After, never 401
    let limited = token_for(&state, "dev", "glpat-limited", push).await;
    limited.assert_error(StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(limited.header("retry-after"), Some("60"));
    let broken = token_for(&state, "dev", "glpat-broken", push).await;
    broken.assert_error(StatusCode::SERVICE_UNAVAILABLE);
    assert!(broken.header("retry-after").is_some());

    // project and group access tokens: robots, named so in the audit line
    let tools = "repository:acme/tools/builder:pull,push";
    assert_eq!(
        token_for(
            &state,
            "project_12_bot_4ffca233d8298ea1",
            "glpat-projectbot",
            tools
        )
        .await
        .actions(),
        ["pull", "push"]
    );
    assert_eq!(
        token_for(
            &state,
            "group_7_bot_9c1d2e3f4a5b6c7d",
            "glpat-groupbot",
            push
        )
        .await
        .actions(),
        ["pull", "push"]
    );
    let audit = log.text();
    let robot_line = audit
        .lines()
        .find(|l| l.contains("project_12_bot_4ffca233d8298ea1") && l.contains("token request"))
        .expect("an audit line for the project bot");
    assert!(robot_line.contains(r#""kind":"robot""#), "{robot_line}");
    let dev_line = audit
        .lines()
        .find(|l| l.contains(r#""subject":"dev""#))
        .expect("an audit line for dev");
    assert!(dev_line.contains(r#""kind":"user""#), "{dev_line}");

    // any_username accepts another Basic name for a valid token
    let any = f.state(&gitlab_provider(&gitlab.url(), "any_username = true"));
    assert_eq!(
        token_for(&any, "ci", DEV, push).await.actions(),
        ["pull", "push"]
    );

    // parent_groups = false: a member of acme/platform/core is not one of
    // acme/platform (but still inside the required acme)
    let own = f.state(&gitlab_provider(&gitlab.url(), "parent_groups = false"));
    assert!(token_for(&own, "dev", DEV, push).await.actions().is_empty());

    // a wrong url (GitLab answers 404 for /api/v4/api/v4/user): 503, the
    // operator's to fix, never a failed login
    let wrong = f.state(&gitlab_provider(&format!("{}/api/v4", gitlab.url()), ""));
    token_for(&wrong, "dev", DEV, push)
        .await
        .assert_error(StatusCode::SERVICE_UNAVAILABLE);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gitlab_job_tokens_push_from_main_pull_elsewhere_and_end_with_their_job() {
    let gitlab = FakeGitLab::start().await;
    gitlab.job(JOB_MAIN, job("acme/app", "main"));
    gitlab.job(JOB_FEATURE, job("acme/app", "feature/login"));
    gitlab.job("64_jobOfOtherGroup", job("other/app", "main"));
    let f = Fixture::new();
    let config = f.config(&gitlab_provider(&gitlab.url(), ""));
    let server = Server::start(config.clone()).await;
    let registry = Registry::start(&server.realm(), &f.cert).await;
    let work = tempfile::tempdir().unwrap();
    let image = work.path().join("image");
    build_image(&image, "latest", 2, "gitlab-job");

    // main's job pushes acme/app, with the username GitLab's own registry uses
    let target = format!("docker://{}/acme/app:main", registry.addr);
    let run = push(
        work.path(),
        &format!("gitlab-ci-token:{JOB_MAIN}"),
        &image,
        &target,
    )
    .await;
    assert!(run.ok, "job token push: {run:?}\n{}", registry.log());

    let state = config.state();
    let push_scope = "repository:acme/app:pull,push";
    // a feature branch's job pulls only (a glcbt- token, any username)
    assert_eq!(
        token_for(&state, "ci", JOB_FEATURE, push_scope)
            .await
            .actions(),
        ["pull"]
    );
    // a job of a project outside the required groups
    token_for(&state, "gitlab-ci-token", "64_jobOfOtherGroup", push_scope)
        .await
        .assert_error(StatusCode::UNAUTHORIZED);
    // a job token never gets a refresh token
    let offline = login_offline(&state, "gitlab-ci-token", JOB_MAIN).await;
    assert_eq!(offline.status, StatusCode::OK, "{}", offline.text());
    assert!(
        offline.json().get("refresh_token").is_none(),
        "no refresh token for a job: {}",
        offline.text()
    );
    // the job ends: its token is refused once the verdict TTL has passed
    assert_eq!(
        token_for(&state, "gitlab-ci-token", JOB_MAIN, push_scope)
            .await
            .actions(),
        ["pull", "push"]
    );
    gitlab.finish_job(JOB_MAIN);
    state.chain.forget_verdicts();
    token_for(&state, "gitlab-ci-token", JOB_MAIN, push_scope)
        .await
        .assert_error(StatusCode::UNAUTHORIZED);
}

/// GitLab tokens go to GitLab alone: the GitHub fake's counters and
/// slapd's operation log prove it, and passwords never reach GitLab.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gitlab_tokens_reach_gitlab_only() {
    let gitlab = FakeGitLab::start().await;
    gitlab.token(
        "glpat-tokenOfGlDev",
        Token::User {
            username: "gl-dev",
            state: "active",
            bot: false,
            groups: vec![("acme/platform", 30)],
            projects: vec![],
            scopes: &["read_api", "write_registry"],
        },
    );
    gitlab.job("64_jobToken", job("acme/app", "main"));
    let github = FakeGitHub::start().await;
    let slapd = Slapd::start();
    let f = Fixture::new();
    let github_provider = format!(
        "\n[[provider]]\nname = \"github\"\nkind = \"github\"\napi_url = \"{}\"\norganizations = [\"acme\"]\n",
        github.url()
    );
    let extra = format!(
        "{}{github_provider}{}",
        slapd.provider_toml("corp", &[]),
        gitlab_provider(&gitlab.url(), "")
    );
    let state = f.state(&extra);
    let push = "repository:platform/app:pull,push";
    assert_eq!(
        token_for(&state, "gl-dev", "glpat-tokenOfGlDev", push)
            .await
            .actions(),
        ["pull", "push"]
    );
    token_for(&state, "gl-dev", "glpat-wrong", push)
        .await
        .assert_error(StatusCode::UNAUTHORIZED);
    assert_eq!(
        token_for(
            &state,
            "gitlab-ci-token",
            "64_jobToken",
            "repository:acme/app:push"
        )
        .await
        .actions(),
        ["push"]
    );
    token_for(
        &state,
        "gitlab-ci-token",
        "64_notAJob",
        "repository:acme/app:push",
    )
    .await
    .assert_error(StatusCode::UNAUTHORIZED);
    assert_eq!(github.user_calls(), 0, "GitLab tokens never reach GitHub");
    let ldap_log = slapd.log();
    assert!(
        !ldap_log.contains("gl-dev") && !ldap_log.contains("gitlab-ci-token"),
        "no LDAP operation mentions a GitLab token's user"
    );
    // an LDAP password never reaches GitLab
    let before = gitlab.calls();
    token_for(&state, "ann", "ann-pw", "repository:platform/app:pull").await;
    token_for(&state, "ann", "wrong", "repository:platform/app:pull")
        .await
        .assert_error(StatusCode::UNAUTHORIZED);
    assert_eq!(gitlab.calls(), before, "passwords never reach GitLab");
}

const GITEA_POLICY: &str = r#"
[[rule]]
groups = ["gitea:acme/platform"]
repos = ["platform/**"]
actions = ["pull", "push"]

[[rule]]
groups = ["gitea:acme"]
repos = ["platform/**"]
actions = ["pull"]
"#;

fn gitea_provider(url: &str) -> String {
    format!(
        "\n[[provider]]\nname = \"gitea\"\nkind = \"gitea\"\nurl = \"{url}\"\norganizations = [\"acme\"]\ntimeout = \"1s\"\n{GITEA_POLICY}"
    )
}

const GT_DEV: &str = "0123456789abcdef0123456789abcdef01234567";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gitea_team_member_pushes_and_the_rest_is_refused() {
    let gitea = FakeGitea::start().await;
    let member = |login, orgs, teams, scopes| GiteaToken::User {
        login,
        prohibited: false,
        orgs,
        teams,
        scopes,
    };
    gitea.token(
        GT_DEV,
        member(
            "gdev",
            vec!["acme", "other", "third"],
            vec![("acme", "Platform"), ("other", "ops"), ("acme", "web")],
            &["read:user", "read:organization", "write:package"],
        ),
    );
    let hex = |n: u8| format!("{:040x}", u128::from(n) << 64 | 0xabc);
    gitea.token(
        &hex(1),
        member(
            "reader",
            vec!["acme"],
            vec![],
            &["read:user", "read:organization", "write:package"],
        ),
    );
    gitea.token(&hex(2), member("outsider", vec!["other"], vec![], &["all"]));
    gitea.token(
        &hex(3),
        member(
            "narrow",
            vec!["acme"],
            vec![],
            &["read:user", "write:package"],
        ),
    );
    gitea.token(
        &hex(4),
        GiteaToken::User {
            login: "banned",
            prohibited: true,
            orgs: vec!["acme"],
            teams: vec![],
            scopes: &["all"],
        },
    );
    gitea.token(&hex(5), GiteaToken::RateLimited);
    gitea.token(&hex(6), GiteaToken::ActionsTask);
    let f = Fixture::new();
    let server = Server::start(f.config(&gitea_provider(&gitea.url()))).await;
    let registry = Registry::start(&server.realm(), &f.cert).await;
    let work = tempfile::tempdir().unwrap();
    let image = work.path().join("image");
    build_image(&image, "latest", 3, "gitea-token");
    let target = format!("docker://{}/platform/app:v1", registry.addr);
    let run = push(work.path(), &format!("gdev:{GT_DEV}"), &image, &target).await;
    assert!(run.ok, "Gitea token push: {run:?}\n{}", registry.log());
    assert_eq!(
        gitea.user_calls(),
        1,
        "one /user call per token per verdict TTL"
    );
    assert_eq!(
        gitea.calls.orgs.load(Ordering::SeqCst),
        2,
        "orgs on two pages (Link)"
    );
    assert_eq!(
        gitea.calls.teams.load(Ordering::SeqCst),
        2,
        "teams on two pages (X-Total-Count, no Link)"
    );

    let state = f.state(&gitea_provider(&gitea.url()));
    let push_scope = "repository:platform/app:pull,push";
    assert_eq!(
        token_for(&state, "GDev", GT_DEV, push_scope)
            .await
            .actions(),
        ["pull", "push"]
    );
    assert_eq!(
        token_for(&state, "reader", &hex(1), push_scope)
            .await
            .actions(),
        ["pull"]
    );
    for (who, token) in [
        ("someone", GT_DEV.to_owned()),
        ("outsider", hex(2)),
        ("banned", hex(4)),
        ("gdev", hex(9)),
    ] {
        token_for(&state, who, &token, push_scope)
            .await
            .assert_error(StatusCode::UNAUTHORIZED);
    }
    let narrow = token_for(&state, "narrow", &hex(3), push_scope).await;
    let body = narrow.assert_error(StatusCode::UNAUTHORIZED);
    let message = body["errors"][0]["message"].as_str().unwrap();
    assert!(message.contains("read:organization"), "{message}");
    // an Actions job's token is Gitea's built-in user: refused, with why
    let actions = token_for(&state, "gitea-actions", &hex(6), push_scope).await;
    let body = actions.assert_error(StatusCode::UNAUTHORIZED);
    let message = body["errors"][0]["message"].as_str().unwrap();
    assert!(message.contains("personal access token"), "{message}");
    let limited = token_for(&state, "gdev", &hex(5), push_scope).await;
    limited.assert_error(StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(limited.header("retry-after"), Some("20"));
}

/// 40 hex digits are a Gitea token only where a Gitea provider takes them:
/// elsewhere they are a password, and a `usernames` pin sends a colliding
/// password to its own provider.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hex_passwords_are_passwords_without_gitea_and_pins_decide_collisions() {
    let password = "fedcba9876543210fedcba9876543210fedcba98";
    let hash = regauth_providers::static_users::hash_bcrypt(password, 4).unwrap();
    let hexer = |pin: &str| {
        format!(
            "\n[[provider]]\nname = \"vault\"\nkind = \"static\"\n{pin}\n[provider.users]\nhexer = \"{hash}\"\n[provider.groups]\nbuilders = [\"hexer\"]\n\n[[rule]]\ngroups = [\"vault:builders\"]\nrepos = [\"builds/**\"]\nactions = [\"pull\"]\n"
        )
    };
    let f = Fixture::new();
    let plain = f.state(&hexer(""));
    let pull = "repository:builds/x:pull";
    assert_eq!(
        token_for(&plain, "hexer", password, pull).await.actions(),
        ["pull"]
    );

    let gitea = FakeGitea::start().await;
    let both = f.state(&format!(
        "{}{}",
        hexer("usernames = [\"hexer\"]"),
        gitea_provider(&gitea.url())
    ));
    assert_eq!(
        token_for(&both, "hexer", password, pull).await.actions(),
        ["pull"],
        "the pin sends the password to its provider"
    );
    assert_eq!(
        gitea.user_calls(),
        0,
        "a pinned password never reaches Gitea"
    );
}

/// Without required groups or organizations (`allow_any_account = true`)
/// every account of the instance logs in, and any of them can create a
/// group: a self-made `platform` must not be the policy's `platform`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn any_account_logins_get_no_groups_from_gitlab_or_gitea() {
    const POLICY: &str = r#"
[[rule]]
groups = ["gitlab:platform", "gitea:platform"]
repos = ["platform/**"]
actions = ["pull", "push"]

[[rule]]
users = ["gitlab:*", "gitea:*"]
repos = ["base/**"]
actions = ["pull"]
"#;
    let gitlab = FakeGitLab::start().await;
    gitlab.token(
        DEV,
        Token::User {
            username: "mallory",
            state: "active",
            bot: false,
            groups: vec![("platform", 50), ("platform/team", 50)],
            projects: vec![],
            scopes: &["read_api", "write_registry"],
        },
    );
    let gitea = FakeGitea::start().await;
    gitea.token(
        GT_DEV,
        GiteaToken::User {
            login: "mallory",
            prohibited: false,
            orgs: vec!["platform"],
            teams: vec![("platform", "Owners")],
            scopes: &["all"],
        },
    );
    let f = Fixture::new();
    let state = f.state(&format!(
        "\n[[provider]]\nname = \"gitlab\"\nkind = \"gitlab\"\nurl = \"{}\"\nallow_any_account = true\ntimeout = \"1s\"\n\n[[provider]]\nname = \"gitea\"\nkind = \"gitea\"\nurl = \"{}\"\nallow_any_account = true\ntimeout = \"1s\"\n{POLICY}",
        gitlab.url(),
        gitea.url()
    ));
    for secret in [DEV, GT_DEV] {
        let admitted = token_for(&state, "mallory", secret, "repository:base/os:pull").await;
        assert_eq!(admitted.actions(), ["pull"], "{secret}");
        let own_group = token_for(
            &state,
            "mallory",
            secret,
            "repository:platform/app:pull,push",
        )
        .await;
        assert!(
            own_group.actions().is_empty(),
            "{secret}: a self-made group is no policy group: {:?}",
            own_group.actions()
        );
    }
}
