//! The second security review's reproductions (2026-12-05), one test each:
//! stored records that cannot be rewritten, keys that cannot be
//! placeholders, lockouts that strangers cannot cause, forge token scopes,
//! leavers at the IdP, readiness that does not take every replica out.

use std::time::Duration;

use axum::http::StatusCode;

use crate::support::page::*;
use crate::support::redis::Redis;
use crate::support::*;

/// Static users for the record tests: `boss` is an admin, `bob` is not.
fn boss_and_bob(f: &Fixture) -> String {
    let hash = |pw: &str| regauth_providers::static_users::hash_bcrypt(pw, 4).unwrap();
    std::fs::write(
        f.path("staff.htpasswd"),
        format!("boss:{}\nbob:{}\n", hash("boss-pw"), hash("bob-pw")),
    )
    .unwrap();
    format!(
        r#"
[[provider]]
name = "staff"
kind = "static"
htpasswd = "{}"
[provider.groups]
bosses = ["boss"]

[[rule]]
groups = ["staff:bosses"]
repos = ["secret/**"]
actions = ["*"]

[app_passwords]
key_file = "{}"
login_form = ["staff"]
"#,
        f.path("staff.htpasswd").display(),
        f.path("app-passwords.key").display()
    )
}

const SECRET_SCOPE: &str = "repository:secret/app:pull,push,delete";

/// The records file's app password, rewritten as the review did: the
/// subject made the admin's and the expiry moved to 2100.
fn rewrite(stored: &str) -> String {
    // an authenticated record is `r1.<mac>.<json>`; a bare one is JSON
    let (prefix, json) = match stored.strip_prefix("r1.") {
        Some(rest) => {
            let (mac, json) = rest.split_once('.').unwrap();
            (format!("r1.{mac}."), json)
        }
        None => (String::new(), stored),
    };
    let mut record: serde_json::Value = serde_json::from_str(json).unwrap();
    record["subject"] = "boss".into();
    record["expires"] = 4_102_444_800u64.into();
    format!("{prefix}{record}")
}

/// H1: bob makes an app password, then rewrites its record in the
/// embedded state file to name the admin. It must not log in as the
/// admin: the rewritten record is refused, and logged.
#[tokio::test]
async fn a_rewritten_app_password_record_is_refused() {
    let capture = log_capture();
    let f = Fixture::new();
    let state = f.state(&boss_and_bob(&f));
    let mut jar = Jar::default();
    let csrf = sign_in(&state, &mut jar, "bob", "bob-pw").await;
    let password = create(&state, &mut jar, &csrf, "laptop", "", ALL).await;
    let before = token_for(&state, "bob", &password, SECRET_SCOPE).await;
    assert!(before.actions().is_empty(), "bob has no secret/** rights");

    let file = f.path("data/records.json");
    let id = id_of(&password);
    // the first use's last-use write lands first (it rewrites the file)
    let read =
        || -> serde_json::Value { serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap() };
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while read()["app_password_used"][&id].is_null() {
        assert!(
            std::time::Instant::now() < deadline,
            "the use was never written"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut records = read();
    let stored = records["app_password"][&id].as_str().unwrap().to_owned();
    records["app_password"][&id] = rewrite(&stored).into();
    std::fs::write(&file, serde_json::to_vec(&records).unwrap()).unwrap();

    // the holder of the unchanged secret, under the admin's name
    let forged = token_for(&state, "boss", &password, SECRET_SCOPE).await;
    forged.assert_error(StatusCode::UNAUTHORIZED);
    let log = capture.text();
    assert!(
        log.contains("state_record_refused") && log.contains(&id),
        "the refused record is logged"
    );
    assert!(
        !log.lines()
            .any(|l| l.contains("app_password_used") && l.contains(r#""subject":"boss""#)),
        "no login as the admin"
    );
}

/// H1 on Redis, the shipped backend: a record rewritten with HSET (what
/// any pod could do to the review's open Redis) is refused, and so is
/// one written by someone without regauth's key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_rewritten_in_redis_are_refused() {
    let redis = Redis::start();
    let f = Fixture::new();
    let extra = format!("{}{}", redis.state_toml(), boss_and_bob(&f));
    let state = f.state(&extra);
    let mut jar = Jar::default();
    let csrf = sign_in(&state, &mut jar, "bob", "bob-pw").await;
    let password = create(&state, &mut jar, &csrf, "ci", "", ALL).await;
    let id = id_of(&password);
    let stored = redis.cli(&["HGET", "test:records:app_password", &id]);
    let stored = stored.trim_end();
    assert!(stored.starts_with("r1."), "stored with a MAC: {stored}");
    redis.cli(&["HSET", "test:records:app_password", &id, &rewrite(stored)]);
    token_for(&state, "boss", &password, SECRET_SCOPE)
        .await
        .assert_error(StatusCode::UNAUTHORIZED);
    // a record without any MAC, as an earlier version (or an attacker) wrote it
    let bare = stored.splitn(3, '.').nth(2).unwrap();
    redis.cli(&["HSET", "test:records:app_password", &id, &rewrite(bare)]);
    token_for(&state, "boss", &password, SECRET_SCOPE)
        .await
        .assert_error(StatusCode::UNAUTHORIZED);
    // the record as regauth wrote it works again: nothing else changed
    redis.cli(&["HSET", "test:records:app_password", &id, stored]);
    let ok = token_for(&state, "bob", &password, "repository:bob/x:pull").await;
    assert_eq!(ok.status, StatusCode::OK, "{}", ok.text());
}

/// H1, revocations: deleting the revocation ledger in Redis does not bring
/// a revoked refresh token back; it ends every refresh token (fail closed).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_revocations_fails_closed() {
    let redis = Redis::start();
    let f = Fixture::new();
    let config = f.path("regauth.toml");
    let settings = f.config(&redis.state_toml());
    settings.write(&config);
    let state = settings.state();
    let pull = "repository:team/app:pull";
    let writer = refresh_token_of(&login_offline(&state, "writer", "writer-pw").await);
    let reader = refresh_token_of(&login_offline(&state, "reader", "reader-pw").await);
    let out = tokens_revoke(&config, "writer");
    assert!(out.status.success(), "{out:?}");
    refresh_grant(&state, &writer, pull)
        .await
        .assert_error(StatusCode::UNAUTHORIZED);
    assert_eq!(
        refresh_grant(&state, &reader, pull).await.status,
        StatusCode::OK
    );
    // whoever can write Redis deletes the revocations
    redis.cli(&["HDEL", "test:records:revocations", "ledger"]);
    refresh_grant(&state, &writer, pull)
        .await
        .assert_error(StatusCode::UNAUTHORIZED);
    refresh_grant(&state, &reader, pull)
        .await
        .assert_error(StatusCode::UNAUTHORIZED);
    // a new login gets a token that works
    let again = refresh_token_of(&login_offline(&state, "reader", "reader-pw").await);
    assert_eq!(
        refresh_grant(&state, &again, pull).await.status,
        StatusCode::OK
    );
}

/// The old placeholder of `deploy/kubernetes/secret.yaml`.
const PLACEHOLDER: &str = "replace with 32 random bytes, base64";

fn regauth_in(dir: &std::path::Path, args: &[&str]) -> (bool, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_regauth"))
        .args(args)
        .current_dir(dir)
        .env_remove("REGAUTH_CONFIG")
        .output()
        .unwrap();
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// M1 and L8: a placeholder, an empty value, a short or patterned text and
/// a world-readable file are refused as keys, at startup and by `regauth
/// check`, naming the file and the command that makes a good one; `regauth
/// keys secret` makes one, and `keys generate --force` leaves the key 0600.
#[test]
fn key_files_must_be_keys() {
    use std::os::unix::fs::PermissionsExt as _;
    let f = Fixture::new();
    let config = f.path("regauth.toml");
    f.config("").write(&config);
    let key = f.path("refresh.key");
    let set_mode = |mode| std::fs::set_permissions(&key, std::fs::Permissions::from_mode(mode));
    let bad = [
        PLACEHOLDER.to_owned(),
        String::new(),
        "c2hvcnQ=".to_owned(),                                     // "short"
        "QUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUE=".to_owned(), // 32 × "A"
    ];
    for text in bad {
        std::fs::write(&key, &text).unwrap();
        set_mode(0o600).unwrap();
        let (ok, out) = regauth_in(
            f.dir.path(),
            &["check", "--config", config.to_str().unwrap()],
        );
        assert!(!ok, "check accepted {text:?}: {out}");
        assert!(
            out.contains(key.to_str().unwrap()) && out.contains("regauth keys secret"),
            "{out}"
        );
        let built = regauth::build(f.config("").load().unwrap());
        assert!(built.is_err(), "the server started on {text:?}");
    }
    // a good key, but readable by everyone
    let (ok, out) = regauth_in(
        f.dir.path(),
        &["keys", "secret", key.to_str().unwrap(), "--force"],
    );
    assert!(ok, "{out}");
    let mode = std::fs::metadata(&key).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let (ok, out) = regauth_in(
        f.dir.path(),
        &["check", "--config", config.to_str().unwrap()],
    );
    assert!(ok, "{out}");
    set_mode(0o644).unwrap();
    let (ok, out) = regauth_in(
        f.dir.path(),
        &["check", "--config", config.to_str().unwrap()],
    );
    assert!(!ok && out.contains("readable by every user"), "{out}");
    // keys generate --force over a world-readable key leaves it 0600
    let token_key = f.path("token.key");
    std::fs::set_permissions(&token_key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let (ok, out) = regauth_in(
        f.dir.path(),
        &[
            "keys",
            "generate",
            "--force",
            "--key",
            token_key.to_str().unwrap(),
            "--certificate",
            f.path("token.crt").to_str().unwrap(),
        ],
    );
    assert!(ok, "{out}");
    let mode = std::fs::metadata(&token_key).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "the replaced key is private");
    // the shipped Secret carries no value that could pass
    let secret = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/kubernetes/secret.yaml"),
    )
    .unwrap();
    assert!(!secret.contains(PLACEHOLDER));
    assert!(secret.contains(r#"refresh.key: """#), "{secret}");
}

/// M1, defence in depth: a refresh token sealed with the right key but
/// carrying a snapshot (a login's word for its groups) is refused for a
/// provider that looks its users up, even for a user that does not exist.
#[tokio::test]
async fn a_forged_snapshot_refresh_token_is_refused_by_a_directory_provider() {
    let f = Fixture::new();
    let state = f.state("");
    let mut mallory = regauth_providers::Identity::new("mallory", "local").with_groups(["writers"]);
    mallory.renewal = regauth_providers::Renewal::Snapshot;
    let forged = state
        .issuer
        .refresh()
        .unwrap()
        .issue(&mallory, SERVICE)
        .await
        .unwrap()
        .unwrap();
    let reply = refresh_grant(&state, &forged, "repository:team/app:pull,push").await;
    reply.assert_error(StatusCode::UNAUTHORIZED);
}

/// Static users behind a trusted proxy (clients by `X-Forwarded-For`),
/// with the throttle as shipped (5 failures).
fn throttled(f: &Fixture) -> std::sync::Arc<regauth::AppState> {
    f.config("")
        .set("cache.max_failures", 5)
        .set("server.trusted_proxies", vec!["0.0.0.0"])
        .state()
}

/// M2: five wrong passwords from one address blocked the user's correct
/// password from every other address for 30 minutes. Now the stranger
/// spends the budget of networks the user never logged in from; the
/// user's own network keeps working (as with Entra ID's smart lockout).
#[tokio::test]
async fn a_stranger_cannot_lock_a_user_out_of_their_usual_network() {
    let f = Fixture::new();
    let state = throttled(&f);
    let pull = "repository:team/app:pull";
    let home = "127.0.0.3";
    let ok = token_from(&state, home, "writer", "writer-pw", pull).await;
    assert_eq!(ok.actions(), ["pull"]);
    for i in 0..6 {
        let wrong = token_from(&state, "127.0.0.2", "writer", &format!("guess{i}"), pull).await;
        wrong.assert_error(StatusCode::UNAUTHORIZED);
    }
    // the cached verdict gone, the correct password from home still works
    state.chain.forget_verdicts();
    let elsewhere = token_from(&state, "127.0.0.4", "writer", "wrong", pull).await;
    elsewhere.assert_error(StatusCode::UNAUTHORIZED);
    let again = token_from(&state, home, "writer", "writer-pw", pull).await;
    assert_eq!(again.status, StatusCode::OK, "{}", again.text());
}

/// M4: wrong app passwords from 40 networks emptied the per-provider bucket
/// and every uncached login with an app password got a 503. App passwords
/// and static users have no upstream to protect, so the bucket no longer
/// applies to them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_wrong_app_passwords_does_not_refuse_good_ones() {
    let f = Fixture::new();
    let state = ui_config(&f, "")
        .set("cache.max_client_failures", 100)
        .set("cache.max_provider_failures_per_second", 20)
        .set("server.trusted_proxies", vec!["0.0.0.0"])
        .state();
    let mut jar = Jar::default();
    let csrf = sign_in(&state, &mut jar, "writer", "writer-pw").await;
    let mut good = Vec::new();
    for i in 0..8 {
        good.push(create(&state, &mut jar, &csrf, &format!("ci-{i}"), "", ALL).await);
    }
    let pull = "repository:team/app:pull";
    let flood: Vec<_> = (1..=40)
        .map(|n| {
            let state = state.clone();
            tokio::spawn(async move {
                let mut statuses = Vec::new();
                for i in 0..30 {
                    let wrong = format!("rga_{n}x{i}_wrong");
                    let client = format!("127.0.4.{n}");
                    let r = token_from(&state, &client, "writer", &wrong, pull).await;
                    statuses.push(r.status);
                }
                statuses
            })
        })
        .collect();
    // meanwhile, logins with good app passwords never used before
    for (i, password) in good.iter().enumerate() {
        let r = token_from(&state, "127.0.5.1", "writer", password, pull).await;
        assert_eq!(
            r.status,
            StatusCode::OK,
            "login {i} during the flood: {}",
            r.text()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut unavailable = 0;
    for task in flood {
        unavailable += task
            .await
            .unwrap()
            .iter()
            .filter(|s| **s == StatusCode::SERVICE_UNAVAILABLE)
            .count();
    }
    assert_eq!(unavailable, 0, "app passwords are not held back as a flood");
}

/// M5: varying the case or spaces of an app password's username bypassed
/// the verdict cache, and every fresh check rewrote and fsynced the
/// records file. Variants now share one verdict, and last uses are
/// written in batches off the request path.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spelling_the_owner_differently_hits_the_cache() {
    use std::os::unix::fs::MetadataExt as _;
    let capture = log_capture();
    let f = Fixture::new();
    let state = ui_config(&f, "").state();
    let mut jar = Jar::default();
    let csrf = sign_in(&state, &mut jar, "writer", "writer-pw").await;
    let password = create(&state, &mut jar, &csrf, "laptop", "", ALL).await;
    let id = id_of(&password);
    let pull = "repository:team/app:pull";
    for name in [
        "writer",
        "WRITER",
        " writer",
        "Writer ",
        "wRiTeR",
        "  WRITER  ",
    ] {
        let r = token_for(&state, name, &password, pull).await;
        assert_eq!(r.actions(), ["pull"], "{name:?}");
    }
    let checks = capture
        .text()
        .lines()
        .filter(|l| l.contains("app_password_used") && l.contains(&id))
        .count();
    assert_eq!(checks, 1, "one fresh check for every spelling");

    // ten app passwords used once each: at most one write of the file
    let mut more = Vec::new();
    for i in 0..10 {
        more.push(create(&state, &mut jar, &csrf, &format!("ci-{i}"), "", ALL).await);
    }
    let file = f.path("data/records.json");
    let inode = || std::fs::metadata(&file).unwrap().ino();
    let mut writes = 0;
    let mut last = inode();
    for password in &more {
        assert_eq!(
            token_for(&state, "writer", password, pull).await.status,
            StatusCode::OK
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
        if inode() != last {
            writes += 1;
            last = inode();
        }
    }
    assert!(writes <= 1, "{writes} writes of records.json for 10 logins");
    // the page still shows when each was used
    let home = page(&state, &mut jar, "/ui/").await;
    assert!(
        !home.text().contains(r#"data-label="Last used">never<"#),
        "{}",
        home.text()
    );
}

/// M7: any forge token that could read its user got the user's full
/// registry rights, so a read-only token made for another tool could push
/// and delete. Now the token's own scopes bound what it gets, as each
/// forge's own registry bounds them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forge_token_scopes_bound_registry_rights() {
    use crate::support::gitea::{FakeGitea, Token as GiteaToken};
    use crate::support::github::{Behaviour, FakeGitHub};
    use crate::support::gitlab::{FakeGitLab, Token as GitLabToken};
    let (github, gitlab, gitea) = (
        FakeGitHub::start().await,
        FakeGitLab::start().await,
        FakeGitea::start().await,
    );
    let octo = |scopes| Behaviour::Member {
        login: "octo",
        orgs: vec!["acme"],
        teams: vec![],
        scopes,
    };
    github.token("ghp_pullonly", octo(Some("read:org, read:packages")));
    github.token("ghp_pusher", octo(Some("read:org, write:packages")));
    github.token("ghp_noscope", octo(Some("repo, read:org")));
    github.token("github_pat_finegrained", octo(None));
    let gl = |scopes| GitLabToken::User {
        username: "gldev",
        state: "active",
        bot: false,
        groups: vec![("acme", 30)],
        projects: vec![],
        scopes,
    };
    gitlab.token("glpat-readapi", gl(&["read_api"]));
    gitlab.token("glpat-pull", gl(&["read_api", "read_registry"]));
    gitlab.token("glpat-push", gl(&["read_api", "write_registry"]));
    gitlab.token("glpat-api", gl(&["api"]));
    let gt = |scopes| GiteaToken::User {
        login: "gtdev",
        prohibited: false,
        orgs: vec!["acme"],
        teams: vec![],
        scopes,
    };
    let hex = |n: u8| format!("{:040x}", u128::from(n) << 64 | 0xdef);
    gitea.token(&hex(1), gt(&["read:user", "read:organization"]));
    gitea.token(
        &hex(2),
        gt(&["read:user", "read:organization", "read:package"]),
    );
    gitea.token(
        &hex(3),
        gt(&["read:user", "read:organization", "write:package"]),
    );
    let f = Fixture::new();
    let providers = format!(
        r#"
[[provider]]
name = "github"
kind = "github"
api_url = "{}"
organizations = ["acme"]

[[provider]]
name = "gitlab"
kind = "gitlab"
url = "{}"
groups = ["acme"]

[[provider]]
name = "gitea"
kind = "gitea"
url = "{}"
organizations = ["acme"]

[[rule]]
groups = ["github:acme", "gitlab:acme", "gitea:acme"]
repos = ["acme/**"]
actions = ["*"]
"#,
        github.url(),
        gitlab.url(),
        gitea.url()
    );
    let state = f.state(&providers);
    let all = "repository:acme/app:pull,push,delete";
    let granted = |user: &'static str, token: String| {
        let state = state.clone();
        async move { token_for(&state, user, &token, all).await }
    };
    for (user, token, want) in [
        ("octo", "ghp_pullonly".to_owned(), &["pull"][..]),
        ("octo", "ghp_pusher".to_owned(), &["pull", "push"][..]),
        ("gldev", "glpat-pull".to_owned(), &["pull"][..]),
        ("gldev", "glpat-push".to_owned(), &["pull", "push"][..]),
        (
            "gldev",
            "glpat-api".to_owned(),
            &["delete", "pull", "push"][..],
        ),
        ("gtdev", hex(2), &["pull"][..]),
        ("gtdev", hex(3), &["delete", "pull", "push"][..]),
    ] {
        let mut actions = granted(user, token.clone()).await.actions();
        actions.sort();
        assert_eq!(actions, want, "{token}");
    }
    // a refresh token (docker's identity token) continues the token's
    // bound: never more than the token it was issued for (review 2)
    let identity = refresh_token_of(&login_offline(&state, "octo", "ghp_pullonly").await);
    let mut actions = refresh_grant(&state, &identity, all).await.actions();
    actions.sort();
    assert_eq!(
        actions,
        ["pull"],
        "the refresh grant keeps read:packages' bound"
    );
    // no package scope at all: refused, saying which scope to add
    for (user, token, scope) in [
        ("octo", "ghp_noscope".to_owned(), "read:packages"),
        ("octo", "github_pat_finegrained".to_owned(), "classic"),
        ("gldev", "glpat-readapi".to_owned(), "read_registry"),
        ("gtdev", hex(1), "read:package"),
    ] {
        let refused = granted(user, token.clone()).await;
        let body = refused.assert_error(StatusCode::UNAUTHORIZED);
        let message = body["errors"][0]["message"].as_str().unwrap();
        assert!(message.contains(scope), "{token}: {message}");
    }
    // finding out never deleted anything
    assert_eq!(
        gitea
            .calls
            .deleted
            .load(std::sync::atomic::Ordering::SeqCst),
        0
    );
}

/// M6: an OIDC user's app passwords kept the groups of their last browser
/// sign-in for up to 30 days after the IdP disabled them or removed them
/// from a group. Now regauth asks the IdP again with the sign-in's refresh
/// token every `recheck_interval`: new groups replace the old, and an IdP
/// that refuses ends the user's app passwords and page sessions.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leavers_at_the_idp_lose_their_app_passwords() {
    use crate::support::browser::{browser, sso_page_toml, LoginIdp};
    let clock = Clock::take();
    let f = Fixture::new();
    let addr = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap()
    };
    let ui = format!("http://{addr}/ui");
    let mut idp = LoginIdp::start(&format!("{ui}/callback"), "regauth-browser-secret");
    let extra = sso_page_toml(&f, &idp, &ui, "recheck_interval = \"1s\"");
    let server = Server::start_at(f.config(&extra), addr).await;
    let work = tempfile::tempdir().unwrap();
    let sign_in_and_create = |user: &'static str| {
        let options = serde_json::json!({
            "ui": ui,
            "user": user,
            "name": "ci",
            "push": true,
            "state": work.path().join(format!("{user}.json")),
        });
        async move {
            let made = browser(&options, "create").await;
            made["secret"].as_str().unwrap().to_owned()
        }
    };
    let push = "repository:platform/app:pull,push";
    let dana = sign_in_and_create("dana").await;
    let erin = sign_in_and_create("erin").await;
    let actions = |user: &'static str, secret: String| {
        let state = server.state.clone();
        async move { token_for(&state, user, &secret, push).await }
    };
    assert_eq!(
        actions("dana", dana.clone()).await.actions(),
        ["pull", "push"]
    );
    assert!(actions("erin", erin.clone()).await.actions().is_empty());

    // the IdP moves platform from dana to erin: after the recheck interval
    // (and the verdicts' TTL), the app passwords follow
    idp.set_groups("dana", &[]);
    idp.set_groups("erin", &["platform"]);
    let recheck = || {
        clock.advance(Duration::from_secs(2));
        server.state.chain.forget_verdicts();
    };
    recheck();
    assert!(actions("dana", dana.clone()).await.actions().is_empty());
    assert_eq!(
        actions("erin", erin.clone()).await.actions(),
        ["pull", "push"]
    );

    // the IdP disables erin: her app password and her page session end
    idp.disable("erin");
    recheck();
    actions("erin", erin.clone())
        .await
        .assert_error(StatusCode::UNAUTHORIZED);
    let saved: serde_json::Value =
        serde_json::from_slice(&std::fs::read(work.path().join("erin.json")).unwrap()).unwrap();
    let session = saved["cookies"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "regauth_session")
        .expect("erin's session cookie");
    let home = reqwest::Client::new()
        .get(format!("{ui}/"))
        .header(
            "cookie",
            format!("regauth_session={}", session["value"].as_str().unwrap()),
        )
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(home.contains("Sign in"), "her session ended: {home}");
    // dana is still signed in at the IdP: her app password still logs in
    assert_eq!(actions("dana", dana).await.status, StatusCode::OK);
}

/// L3: `max_per_user` held per replica only (a process-local lock), so
/// replicas on one Redis could each add one. Now the lock is in the
/// backend: concurrent creations on two replicas stop at the limit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_per_user_holds_across_replicas() {
    let redis = Redis::start();
    let f = Fixture::new();
    let config = ui_config(&f, &redis.state_toml()).set("app_passwords.max_per_user", 2);
    let (a, b) = (config.state(), config.state());
    let mut jar = Jar::default();
    let csrf = sign_in(&a, &mut jar, "writer", "writer-pw").await;
    let attempts: Vec<_> = (0..6)
        .map(|i| {
            let state = if i % 2 == 0 { a.clone() } else { b.clone() };
            let (mut jar, csrf) = (jar.clone(), csrf.clone());
            tokio::spawn(async move {
                let form = [
                    ("csrf", csrf.as_str()),
                    ("name", &format!("ci-{i}")),
                    ("days", "30"),
                    ("actions", "pull"),
                ];
                submit(&state, &mut jar, "/ui/passwords", &form)
                    .await
                    .status
            })
        })
        .collect();
    let mut made = 0;
    for attempt in attempts {
        if attempt.await.unwrap() == StatusCode::OK {
            made += 1;
        }
    }
    assert_eq!(made, 2, "at most max_per_user, whichever replica");
    let listed = a.app_passwords.as_ref().unwrap().list(None).await.unwrap();
    assert_eq!(listed.len(), 2);
}

/// Review of the fixes, 3: a revoked app password came back when its
/// stored record was written back (a revocation was only a delete), and
/// deleting the revocation ledger would forget revocations and sign-outs.
/// Revocations are recorded in the ledger; app passwords and page sessions
/// are bound to the ledger they began under.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_app_password_put_back_stays_revoked() {
    let redis = Redis::start();
    let f = Fixture::new();
    let state = ui_config(&f, &redis.state_toml())
        .set("cache.verdict_ttl", "0s")
        .state();
    let mut jar = Jar::default();
    let csrf = sign_in(&state, &mut jar, "writer", "writer-pw").await;
    let revoked = create(&state, &mut jar, &csrf, "old", "", ALL).await;
    let kept = create(&state, &mut jar, &csrf, "kept", "", ALL).await;
    let pull = "repository:team/app:pull";
    let id = id_of(&revoked);
    let saved = redis.cli(&["HGET", "test:records:app_password", &id]);
    let r = revoke(&state, &mut jar, &id, &csrf).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.text());
    token_for(&state, "writer", &revoked, pull)
        .await
        .assert_error(StatusCode::UNAUTHORIZED);
    redis.cli(&["HSET", "test:records:app_password", &id, saved.trim_end()]);
    token_for(&state, "writer", &revoked, pull)
        .await
        .assert_error(StatusCode::UNAUTHORIZED);
    assert_eq!(
        token_for(&state, "writer", &kept, pull).await.status,
        StatusCode::OK
    );
    // the ledger deleted: what began under it ends (fail closed)
    redis.cli(&["HDEL", "test:records:revocations", "ledger"]);
    token_for(&state, "writer", &kept, pull)
        .await
        .assert_error(StatusCode::UNAUTHORIZED);
    let home = page(&state, &mut jar, "/ui/").await;
    assert!(
        home.text().contains("Sign in"),
        "the page session ended too"
    );
}

/// Review of the fixes, 4: `regauth state adopt` signed whatever lacked a
/// MAC, a record someone had rewritten included. It lists first, refuses
/// records longer-lived than max_lifetime (or expired, or unreadable),
/// adopts no sign-ins, and runs once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn adopting_an_earlier_versions_records_is_checked_and_once() {
    let redis = Redis::start();
    let f = Fixture::new();
    let settings = ui_config(&f, &redis.state_toml()).set("cache.verdict_ttl", "0s");
    let config = f.path("regauth.toml");
    settings.write(&config);
    let state = settings.state();
    let mut jar = Jar::default();
    let csrf = sign_in(&state, &mut jar, "writer", "writer-pw").await;
    let good = create(&state, &mut jar, &csrf, "good", "", ALL).await;
    let bad = create(&state, &mut jar, &csrf, "bad", "", ALL).await;
    let pull = "repository:team/app:pull";
    // as an earlier version stored them: no MAC (and one rewritten)
    let bare = |secret: &str| {
        let id = id_of(secret);
        let stored = redis.cli(&["HGET", "test:records:app_password", &id]);
        (
            id,
            stored.trim_end().splitn(3, '.').nth(2).unwrap().to_owned(),
        )
    };
    let (good_id, good_record) = bare(&good);
    let (bad_id, bad_record) = bare(&bad);
    let mut rewritten: serde_json::Value = serde_json::from_str(&bad_record).unwrap();
    rewritten["expires"] = 4_102_444_800u64.into();
    redis.cli(&["HSET", "test:records:app_password", &good_id, &good_record]);
    redis.cli(&[
        "HSET",
        "test:records:app_password",
        &bad_id,
        &rewritten.to_string(),
    ]);
    token_for(&state, "writer", &good, pull)
        .await
        .assert_error(StatusCode::UNAUTHORIZED);
    let adopt = |yes: bool| {
        let mut args = vec!["state", "adopt", "--config", config.to_str().unwrap()];
        if yes {
            args.push("--yes");
        }
        regauth_cli(&args)
    };
    let (ok, listed, _) = adopt(false);
    assert!(ok);
    assert!(
        listed.contains(&format!("would sign: {good_id}")),
        "{listed}"
    );
    assert!(
        listed.contains(&format!("not signed: {bad_id}")),
        "{listed}"
    );
    token_for(&state, "writer", &good, pull)
        .await
        .assert_error(StatusCode::UNAUTHORIZED);
    let (ok, signed, err) = adopt(true);
    assert!(ok, "{err}");
    assert!(signed.contains(&format!("signed: {good_id}")), "{signed}");
    assert_eq!(
        token_for(&state, "writer", &good, pull).await.status,
        StatusCode::OK
    );
    token_for(&state, "writer", &bad, pull)
        .await
        .assert_error(StatusCode::UNAUTHORIZED);
    let (ok, _, err) = adopt(true);
    assert!(!ok && err.contains("once already"), "{err}");
}

/// Review of the fixes, 6: probes and Prometheus reached the token port,
/// whose X-Forwarded-For regauth believes from its proxies. With
/// `server.ops_listen` they have a port of their own that serves nothing
/// else.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_operational_endpoints_have_a_listener_of_their_own() {
    let f = Fixture::new();
    let listen: std::net::SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let ops = format!("127.0.0.1:{}", free_port());
    let config = f.path("regauth.toml");
    f.config("")
        .listen(listen)
        .set("server.ops_listen", ops.as_str())
        .write(&config);
    let _server = Regauth::start(&config, listen, &[]).await;
    let get = |url: String| async move { reqwest::get(url).await.unwrap() };
    for path in ["/readyz", "/healthz", "/metrics", "/jwks"] {
        assert_eq!(
            get(format!("http://{ops}{path}")).await.status(),
            200,
            "{path}"
        );
    }
    assert_eq!(
        get(format!("http://{ops}/auth?service={SERVICE}"))
            .await
            .status(),
        404
    );
    assert_eq!(
        get(format!("http://{listen}/auth?service={SERVICE}"))
            .await
            .status(),
        200
    );
}
