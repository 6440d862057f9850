//! One identity can never borrow another's rights: refresh tokens carry
//! their own login, names are kept apart by provider, no provider admits
//! the whole internet, and a directory that cannot answer is a 503.
//!
//! Each test reproduces a case a security review found by running an
//! earlier version, and proves the fix against real components: a small
//! in-test OIDC issuer, the GitHub-shaped fake, slapd with ppolicy, and
//! the `regauth` binary's `check`.

use std::time::Duration;

use axum::http::StatusCode;
use serde_json::json;

use crate::support::github::{Behaviour, FakeGitHub};
use crate::support::issuer::Issuer;
use crate::support::slapd::Slapd;
use crate::support::*;

const CI_RULES: &str = r#"
[[rule]]
providers = ["gha"]
claims = { repository = "acme/app", ref = "refs/heads/main" }
repos = ["acme/app"]
actions = ["pull", "push"]

[[rule]]
providers = ["gha"]
claims = { repository = "acme/app" }
repos = ["acme/app"]
actions = ["pull"]
"#;

fn ci_token(issuer: &Issuer, git_ref: &str, lifetime: i64) -> String {
    issuer.token(
        json!({
            "sub": format!("repo:acme/app:ref:{git_ref}"),
            "repository": "acme/app",
            "repository_owner": "acme",
            "ref": git_ref,
        }),
        lifetime,
    )
}

/// Reproduced: a feature branch's refresh token was redeemed with push,
/// because the refresh looked up whoever logged in last under the same
/// subject (the main branch). Now the token carries its own login.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_feature_branch_refresh_token_never_borrows_the_main_branch_login() {
    let issuer = Issuer::start().await;
    let f = Fixture::new();
    let provider = issuer.provider_toml(
        "gha",
        "username_claim = \"repository\"\ngroups_claims = []\noffline_tokens = true",
    );
    let state = f.state(&format!("{provider}{CI_RULES}"));
    let push = "repository:acme/app:pull,push";

    let feature = ci_token(&issuer, "refs/heads/feature", 600);
    let rt = refresh_token_of(&login_offline(&state, "ci", &feature).await);
    let main = ci_token(&issuer, "refs/heads/main", 600);
    assert_eq!(
        token_for(&state, "ci", &main, push).await.actions(),
        ["pull", "push"],
        "main may push"
    );
    let redeemed = refresh_grant(&state, &rt, push).await;
    assert_eq!(redeemed.status, StatusCode::OK, "{}", redeemed.text());
    assert_eq!(
        redeemed.actions(),
        ["pull"],
        "the feature branch's token keeps the feature branch's rights"
    );
    assert_eq!(redeemed.token().1["sub"], "acme/app");
}

/// A refresh token of a login that cannot be looked up again ends with the
/// credential it came from, however often others log in under its subject.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snapshot_refresh_token_ends_with_its_own_credential() {
    let clock = Clock::take();
    let issuer = Issuer::start().await;
    let f = Fixture::new();
    let provider = issuer.provider_toml(
        "gha",
        "username_claim = \"repository\"\ngroups_claims = []\noffline_tokens = true",
    );
    let state = f.state(&format!("{provider}{CI_RULES}"));
    let pull = "repository:acme/app:pull";
    let short = ci_token(&issuer, "refs/heads/main", 3);
    let rt = refresh_token_of(&login_offline(&state, "ci", &short).await);
    assert_eq!(refresh_grant(&state, &rt, pull).await.actions(), ["pull"]);
    for _ in 0..4 {
        // someone logs in under the same subject every second
        let fresh = ci_token(&issuer, "refs/heads/main", 600);
        assert_eq!(
            token_for(&state, "ci", &fresh, pull).await.actions(),
            ["pull"]
        );
        clock.advance(Duration::from_secs(1));
    }
    let late = refresh_grant(&state, &rt, pull).await;
    let body = late.assert_error(StatusCode::UNAUTHORIZED);
    assert!(
        body["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("log in again"),
        "{body}"
    );
}

/// Machine logins (a JWT as the password) get no refresh token unless
/// their provider opts in.
#[tokio::test]
async fn machine_logins_get_no_refresh_token_by_default() {
    let issuer = Issuer::start().await;
    let f = Fixture::new();
    let provider =
        issuer.provider_toml("gha", "username_claim = \"repository\"\ngroups_claims = []");
    let state = f.state(&format!("{provider}{CI_RULES}"));
    let token = ci_token(&issuer, "refs/heads/main", 600);
    let r = login_offline(&state, "ci", &token).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert!(r.json().get("refresh_token").is_none(), "{}", r.text());
    // a password login still gets one
    let r = login_offline(&state, "writer", "writer-pw").await;
    refresh_token_of(&r);
}

/// Reproduced: a static `alice` in `admins` and an OIDC token saying
/// `sub = alice, groups = [admins]` matched the same rules. Bare names that
/// two providers could match are now refused, and qualified rules keep the
/// identities apart.
#[tokio::test]
async fn same_names_from_two_providers_never_share_rights() {
    let issuer = Issuer::start().await;
    let f = Fixture::new();
    let provider = issuer.provider_toml("sso", "");
    // the fixture's rules are qualified (`local:writers`, `local:admin`)
    let state = f.state(&provider);
    let forged = issuer.token(
        json!({"sub": "admin", "preferred_username": "admin", "groups": ["writers", "admins"]}),
        600,
    );
    let push = "repository:team/app:pull,push";
    let r = token_for(&state, "admin", &forged, push).await;
    assert_eq!(r.token().1["sub"], "admin");
    assert!(
        r.actions().is_empty(),
        "the token's admin is not the static admin"
    );
    let everything = "repository:prod/app:pull,push,delete";
    assert!(token_for(&state, "admin", &forged, everything)
        .await
        .actions()
        .is_empty());
    assert_eq!(
        token_for(&state, "admin", "admin-pw", everything)
            .await
            .actions(),
        ["pull", "push", "delete"]
    );
    assert_eq!(
        token_for(&state, "writer", "writer-pw", push)
            .await
            .actions(),
        ["pull", "push"]
    );

    // bare names with two providers: refused at startup and by `check`
    for (rule, key) in [
        ("users = [\"admin\"]\nrepos = [\"prod/**\"]", "users[0]"),
        ("groups = [\"writers\"]\nrepos = [\"prod/**\"]", "groups[0]"),
        ("users = [\"*\"]\nrepos = [\"${user}/**\"]", "repos[0]"),
    ] {
        let extra = format!("{provider}\n[[rule]]\n{rule}\nactions = [\"pull\", \"push\"]\n");
        let config = f.config(&extra);
        let err = config.load().expect_err("refused").to_string();
        assert!(err.contains(&format!("rule[5].{key}")), "{err}");
        assert!(err.contains("local, sso"), "names both providers: {err}");
        let path = f.path("ambiguous.toml");
        config.write(&path);
        let (ok, _, stderr) = regauth_cli(&["check", "--config", path.to_str().unwrap()]);
        assert!(!ok, "regauth check refuses it");
        assert!(stderr.contains(&format!("rule[5].{key}")), "{stderr}");
    }
}

/// Reproduced: an organization member whose GitHub login equals an LDAP
/// uid took that user's rules. GitHub logins are chosen by their owners.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_github_login_equal_to_an_ldap_uid_gets_only_github_rights() {
    let slapd = Slapd::start();
    let github = FakeGitHub::start().await;
    github.token(
        "ghp_ann_on_github",
        Behaviour::Member {
            login: "ann",
            orgs: vec!["acme"],
            teams: vec![("acme", "platform", None)],
            scopes: Some("read:org, write:packages"),
        },
    );
    let f = Fixture::new();
    let extra = format!(
        "{}\n[[provider]]\nname = \"github\"\nkind = \"github\"\napi_url = \"{}\"\norganizations = [\"acme\"]\n\n[[rule]]\nusers = [\"corp:ann\"]\ngroups = [\"corp:platform\"]\nrepos = [\"platform/**\"]\nactions = [\"pull\", \"push\"]\n\n[[rule]]\ngroups = [\"github:acme\"]\nrepos = [\"acme/**\"]\nactions = [\"pull\"]\n",
        slapd.provider_toml("corp", &[]),
        github.url()
    );
    let state = f.state(&extra);
    let push = "repository:platform/app:pull,push";
    assert_eq!(
        token_for(&state, "ann", "ann-pw", push).await.actions(),
        ["pull", "push"]
    );
    let impostor = token_for(&state, "ann", "ghp_ann_on_github", push).await;
    assert_eq!(impostor.token().1["sub"], "ann");
    assert!(
        impostor.actions().is_empty(),
        "GitHub's ann is not the directory's ann"
    );
    assert_eq!(
        token_for(&state, "ann", "ghp_ann_on_github", "repository:acme/x:pull")
            .await
            .actions(),
        ["pull"]
    );
}

/// Reproduced: `CI-Release` escaped the `ci-*` pin and reached the next
/// provider. Pins match case-insensitively and ignore surrounding spaces.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pinned_names_never_reach_another_provider_in_any_case() {
    let slapd = Slapd::start();
    let f = Fixture::new();
    let hash = regauth_providers::static_users::hash_bcrypt("robot-secret", 4).unwrap();
    let robots = format!(
        "\n[[provider]]\nname = \"robots\"\nkind = \"static\"\nusernames = [\"ci-*\"]\n\n[[provider.robots]]\nname = \"ci-release\"\nsecret = \"{hash}\"\ngroups = [\"release\"]\n\n[[rule]]\ngroups = [\"robots:release\"]\nrepos = [\"releases/**\"]\nactions = [\"pull\", \"push\"]\n"
    );
    let state = f.state(&format!("{robots}{}", slapd.provider_toml("corp", &[])));
    let push = "repository:releases/app:push";
    assert_eq!(
        token_for(&state, "ci-release", "robot-secret", push)
            .await
            .actions(),
        ["push"]
    );
    for variant in [
        "CI-Release",
        "Ci-release",
        " ci-release",
        "ci-release ",
        "CI-RELEASE",
    ] {
        let r = token_for(&state, variant, "robot-secret", push).await;
        r.assert_error(StatusCode::UNAUTHORIZED);
    }
    let log = slapd.log().to_lowercase();
    assert!(
        !log.contains("ci-release"),
        "no variant of the pinned name reached the directory"
    );
}

/// Reproduced: a GitHub provider without `organizations` admitted every
/// GitHub account and made all of its organizations groups, and
/// `regauth check` said "ok".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_github_provider_must_name_its_organizations() {
    let f = Fixture::new();
    let github = FakeGitHub::start().await;
    github.token(
        "ghp_stranger",
        Behaviour::Member {
            login: "stranger",
            orgs: vec!["evil-corp"],
            teams: vec![("evil-corp", "admins", None)],
            scopes: Some("read:org, write:packages"),
        },
    );
    let provider = format!(
        "\n[[provider]]\nname = \"github\"\nkind = \"github\"\napi_url = \"{}\"\n",
        github.url()
    );
    let path = f.path("github.toml");
    f.config(&provider).write(&path);
    let (ok, stdout, stderr) = regauth_cli(&["check", "--config", path.to_str().unwrap()]);
    assert!(!ok, "refused: {stdout}");
    assert!(stderr.contains("provider[1].organizations"), "{stderr}");
    assert!(stderr.contains("allow_any_account"), "{stderr}");

    // allow_any_account: admitted, but no organization becomes a group
    let rule = "\n[[rule]]\ngroups = [\"github:evil-corp\", \"github:evil-corp/admins\"]\nrepos = [\"**\"]\nactions = [\"*\"]\n";
    let state = f.state(&format!("{provider}allow_any_account = true\n{rule}"));
    let r = token_for(
        &state,
        "stranger",
        "ghp_stranger",
        "repository:prod/app:push",
    )
    .await;
    assert_eq!(r.token().1["sub"], "stranger");
    assert!(
        r.actions().is_empty(),
        "no groups from unlisted organizations"
    );
}

/// Reproduced: a public CI issuer without a claim restriction admitted any
/// repository on the service, and `regauth check` said "ok".
#[tokio::test]
async fn public_ci_issuers_need_required_claims_and_every_token_is_checked() {
    let f = Fixture::new();
    for issuer in [
        "https://token.actions.githubusercontent.com",
        "https://gitlab.com",
    ] {
        let provider = format!(
            "\n[[provider]]\nname = \"ci\"\nkind = \"oidc\"\nissuer = \"{issuer}\"\naudiences = [\"registry\"]\n"
        );
        let path = f.path("ci.toml");
        f.config(&provider).write(&path);
        let (ok, _, stderr) = regauth_cli(&["check", "--config", path.to_str().unwrap()]);
        assert!(!ok, "{issuer} without required_claims is refused");
        assert!(stderr.contains("provider[1].required_claims"), "{stderr}");
    }
    // required_claims are checked on every token
    let issuer = Issuer::start().await;
    let provider = issuer.provider_toml(
        "gha",
        "username_claim = \"repository\"\ngroups_claims = []\nrequired_claims = { repository_owner = \"acme\" }",
    );
    let state = f.state(&format!("{provider}{CI_RULES}"));
    let pull = "repository:acme/app:pull";
    let ours = ci_token(&issuer, "refs/heads/main", 600);
    assert_eq!(
        token_for(&state, "ci", &ours, pull).await.actions(),
        ["pull"]
    );
    let theirs = issuer.token(
        json!({"repository": "acme/app", "repository_owner": "evil", "ref": "refs/heads/main"}),
        600,
    );
    token_for(&state, "ci", &theirs, pull)
        .await
        .assert_error(StatusCode::UNAUTHORIZED);
    let none = issuer.token(json!({"repository": "acme/app"}), 600);
    token_for(&state, "ci", &none, pull)
        .await
        .assert_error(StatusCode::UNAUTHORIZED);
}

/// Reproduced: a user base that is gone (noSuchObject) counted as "unknown
/// user": every directory user got 401 and their password went to the
/// next provider. It is a 503, and the password goes nowhere else.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_or_referred_user_base_is_503_and_the_password_stays() {
    let slapd = Slapd::start();
    slapd.modify_managing(
        "dn: ou=elsewhere,dc=corp,dc=test\nchangetype: add\nobjectClass: referral\nobjectClass: extensibleObject\nou: elsewhere\nref: ldap://ldap.other.example/ou=elsewhere,dc=corp,dc=test\n",
    );
    let f = Fixture::new();
    // a second static provider after the directory knows "ann" with the
    // same password: it must never be asked
    let hash = regauth_providers::static_users::hash_bcrypt("ann-pw", 4).unwrap();
    let fallback = format!(
        "\n[[provider]]\nname = \"fallback\"\nkind = \"static\"\n[provider.users]\nann = \"{hash}\"\n\n[[rule]]\nusers = [\"fallback:ann\"]\nrepos = [\"**\"]\nactions = [\"*\"]\n"
    );
    for base in ["ou=gone,dc=corp,dc=test", "ou=elsewhere,dc=corp,dc=test"] {
        let ldap = slapd.provider_toml("corp", &[("user_base", &format!("{base:?}"))]);
        let state = f.state(&format!("{ldap}{fallback}"));
        let r = token_for(&state, "ann", "ann-pw", "repository:x/y:pull").await;
        r.assert_error(StatusCode::SERVICE_UNAVAILABLE);
        assert!(r.header("retry-after").is_some());
    }
}

/// Reproduced: refresh tokens survived a password change and an account
/// lock in the directory.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn directory_refresh_tokens_end_with_a_password_change_or_a_lock() {
    let slapd = Slapd::start();
    let f = Fixture::new();
    let ldap = slapd.provider_toml("corp", &[]);
    let rules = "\n[[rule]]\ngroups = [\"corp:platform\"]\nrepos = [\"platform/**\"]\nactions = [\"pull\", \"push\"]\n";
    let state = f.state(&format!("{ldap}{rules}"));
    let push = "repository:platform/app:push";
    let ann = "uid=ann,ou=people,dc=corp,dc=test";
    let must_log_in_again = |r: Reply| {
        let body = r.assert_error(StatusCode::UNAUTHORIZED);
        assert!(
            body["errors"][0]["message"]
                .as_str()
                .unwrap()
                .contains("log in again"),
            "{body}"
        );
    };

    let rt = refresh_token_of(&login_offline(&state, "ann", "ann-pw").await);
    assert_eq!(refresh_grant(&state, &rt, push).await.actions(), ["push"]);
    // (each change shows once the directory's verdicts' TTL has passed)
    slapd.modify(&format!(
        "dn: {ann}\nchangetype: modify\nreplace: userPassword\nuserPassword: ann-new-pw\n"
    ));
    state.chain.forget_verdicts();
    must_log_in_again(refresh_grant(&state, &rt, push).await);

    // logged in again with the new password: works until the account is locked
    let rt = refresh_token_of(&login_offline(&state, "ann", "ann-new-pw").await);
    assert_eq!(refresh_grant(&state, &rt, push).await.actions(), ["push"]);
    slapd.modify(&format!(
        "dn: {ann}\nchangetype: modify\nadd: pwdAccountLockedTime\npwdAccountLockedTime: 000001010000Z\n"
    ));
    state.chain.forget_verdicts();
    must_log_in_again(refresh_grant(&state, &rt, push).await);
    // and the password no longer logs in either (this directory has no
    // password policy that would refuse the bind itself)
    state.chain.forget_verdicts();
    token_for(&state, "ann", "ann-new-pw", push)
        .await
        .assert_error(StatusCode::UNAUTHORIZED);
}

/// A static user whose password changed in the users file cannot refresh
/// with a token minted before the change.
#[tokio::test]
async fn static_refresh_tokens_end_with_a_password_change() {
    let f = Fixture::new();
    let state = f.state("");
    let rt = refresh_token_of(&login_offline(&state, "writer", "writer-pw").await);
    let users = std::fs::read_to_string(f.path("users.htpasswd")).unwrap();
    let new_hash = regauth_providers::static_users::hash_bcrypt("writer-new-pw", 4).unwrap();
    let changed: String = users
        .lines()
        .map(|l| {
            if l.starts_with("writer:") {
                format!("writer:{new_hash}\n")
            } else {
                format!("{l}\n")
            }
        })
        .collect();
    std::fs::write(f.path("users.htpasswd"), changed).unwrap();
    let restarted = f.state("");
    let r = refresh_grant(&restarted, &rt, "repository:team/app:pull").await;
    r.assert_error(StatusCode::UNAUTHORIZED);
    let fresh = refresh_token_of(&login_offline(&restarted, "writer", "writer-new-pw").await);
    assert_eq!(
        refresh_grant(&restarted, &fresh, "repository:team/app:pull")
            .await
            .actions(),
        ["pull"]
    );
}

/// Found by review: GitHub groups were cached per login, so a second token
/// of the same user (without read:org, say) skipped the organization check.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_github_token_passes_the_organization_check_itself() {
    let github = FakeGitHub::start().await;
    github.token(
        "ghp_full",
        Behaviour::Member {
            login: "dev",
            orgs: vec!["acme"],
            teams: vec![("acme", "platform", None)],
            scopes: Some("repo, read:org, write:packages"),
        },
    );
    github.token(
        "ghp_no_read_org",
        Behaviour::Member {
            login: "dev",
            orgs: vec![],
            teams: vec![],
            scopes: Some("repo, write:packages"),
        },
    );
    let f = Fixture::new();
    let extra = format!(
        "\n[[provider]]\nname = \"github\"\nkind = \"github\"\napi_url = \"{}\"\norganizations = [\"acme\"]\n\n[[rule]]\ngroups = [\"github:acme\"]\nrepos = [\"acme/**\"]\nactions = [\"pull\"]\n",
        github.url()
    );
    let state = f.state(&extra);
    let pull = "repository:acme/app:pull";
    assert_eq!(
        token_for(&state, "dev", "ghp_full", pull).await.actions(),
        ["pull"]
    );
    token_for(&state, "dev", "ghp_no_read_org", pull)
        .await
        .assert_error(StatusCode::UNAUTHORIZED);
}

/// Found by review: an empty password was refused at once for a known
/// static user and after a hash check for an unknown one, which told them
/// apart. Both are refused the same way.
#[tokio::test]
async fn empty_passwords_do_not_tell_known_users_from_unknown_ones() {
    let f = Fixture::new();
    let state = f.state("");
    for user in ["writer", "nobody-by-this-name"] {
        token_for(&state, user, "", "repository:team/a:pull")
            .await
            .assert_error(StatusCode::UNAUTHORIZED);
    }
    let log = log_capture();
    let _ = token_for(&state, "ghost", "", "repository:team/a:pull").await;
    assert!(
        log.text().contains("rejected by local: empty password"),
        "unknown users are refused like known ones"
    );
}
