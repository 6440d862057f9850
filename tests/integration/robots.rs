//! Team robots with the real tools: a team admin makes one in chromium
//! (through slapd's password form and through an OpenID Connect sign-in),
//! skopeo pushes with it to the registry, and it keeps to its team's
//! rights as the directory and the rules change; rotation, revocation,
//! who may manage it, and names no user can take.

use std::path::Path;

use axum::http::StatusCode;

use crate::support::browser::{browser, sso_page_toml, LoginIdp};
use crate::support::oci::build_image;
use crate::support::page::*;
use crate::support::slapd::Slapd;
use crate::support::*;

/// The rules of the LDAP tests, in a policy file a reload reads again:
/// `platform` pushes to `platform/`, with `push` unless `pull_only`;
/// `core` (ann, the team's admin) pushes to `tools/` too.
fn write_policy(path: &Path, pull_only: bool) {
    let platform = if pull_only {
        "\"pull\""
    } else {
        "\"pull\", \"push\""
    };
    std::fs::write(
        path,
        format!(
            "[[rule]]\ngroups = [\"corp:platform\"]\nrepos = [\"platform/**\"]\nactions = [{platform}]\n\n\
             [[rule]]\ngroups = [\"corp:core\"]\nrepos = [\"tools/**\"]\nactions = [\"pull\", \"push\"]\n"
        ),
    )
    .unwrap();
}

/// A free loopback address for a server whose page must know its URL.
async fn free_addr() -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    listener.local_addr().unwrap()
}

/// slapd, a fixture, a free address and [`ldap_config`] for the page
/// there, also written to the fixture's `regauth.toml`.
async fn ldap_setup() -> (Slapd, Fixture, std::net::SocketAddr, TestConfig) {
    let slapd = Slapd::start();
    let f = Fixture::new();
    let addr = free_addr().await;
    let config = ldap_config(&f, &slapd, &format!("http://{addr}/ui"));
    config.write(&f.path("regauth.toml"));
    (slapd, f, addr, config)
}

/// The LDAP tests' configuration: slapd as `corp`, its users on the
/// page's password form, and robots for `corp:platform` (managed by
/// `corp:core`) and `corp:readers` (managed by `corp:ops`).
fn ldap_config(f: &Fixture, slapd: &Slapd, ui: &str) -> TestConfig {
    let ldap = slapd.provider_toml("corp", &[("group_cache_ttl", "\"0s\"")]);
    let policy = f.path("policy.toml");
    write_policy(&policy, false);
    f.config(&format!(
        "{ldap}\n[app_passwords]\nkey_file = \"{key}\"\nurl = \"{ui}\"\nlogin_form = [\"corp\"]\n\n\
         [robots]\nmax_lifetime = \"90d\"\n[robots.admin_groups]\n\"corp:platform\" = [\"corp:core\"]\n\"corp:readers\" = [\"corp:ops\"]\n",
        key = f.path("app-passwords.key").display(),
    ))
    .set("policy", policy.display().to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_team_admin_makes_a_robot_that_pushes_within_the_teams_rights_alone() {
    let log = log_capture();
    let (slapd, f, addr, config) = ldap_setup().await;
    let ui = format!("http://{addr}/ui");
    let config_path = f.path("regauth.toml");
    let server = Server::start_at(config, addr).await;
    let registry = Registry::start(&server.realm(), &f.cert).await;
    let work = tempfile::tempdir().unwrap();
    let shots = crate::support::browser::screenshots(work.path());
    let state_file = work.path().join("browser-state.json");
    let options = serde_json::json!({
        "ui": ui, "signin": "form", "user": "ann", "password": "ann-pw",
        "team": "corp:platform", "name": "ci", "repos": "platform/**", "push": true,
        "state": state_file, "shots": shots,
    });

    // ann (core, so the team's admin) makes it in the browser
    let made = browser(&options, "robot").await;
    let secret = made["secret"].as_str().unwrap().to_owned();
    let login = made["login"].as_str().unwrap();
    assert!(
        login.starts_with("docker login registry.test -u 'robot$platform+ci' -p rga_"),
        "{login}"
    );
    for shot in ["robot-form", "robot-created", "robots", "robots-phone"] {
        assert!(shots.join(format!("{shot}.png")).is_file(), "{shot}.png");
    }
    let robot = "robot$platform+ci";
    let creds = |secret: &str| format!("{robot}:{secret}");

    // skopeo pushes with it within the team's repositories, and nowhere
    // else, though its maker may push to tools/
    let image = work.path().join("image");
    build_image(&image, "latest", 1, "robot");
    let to = |repo: &str| format!("docker://{}/{repo}", registry.addr);
    let run = push(work.path(), &creds(&secret), &image, &to("platform/app:v1")).await;
    assert!(run.ok, "the robot's push: {run:?}\n{}", registry.log());
    let run = push(work.path(), &creds(&secret), &image, &to("tools/app:v1")).await;
    assert!(
        !run.ok,
        "the robot pushed outside its team's rights: {run:?}"
    );
    let state = &server.state;
    let tools = "repository:tools/app:pull,push";
    assert_eq!(
        token_for(state, "ann", "ann-pw", tools).await.actions(),
        ["pull", "push"]
    );
    assert!(token_for(state, robot, &secret, tools)
        .await
        .actions()
        .is_empty());

    // its maker leaves the team (and so the admins): the robot still works
    slapd.modify("dn: cn=core,ou=groups,dc=corp,dc=test\nchangetype: modify\nreplace: member\nmember: uid=admin,ou=people,dc=corp,dc=test\n");
    state.chain.forget_verdicts();
    let run = push(work.path(), &creds(&secret), &image, &to("platform/app:v2")).await;
    assert!(run.ok, "the robot's push after its maker left: {run:?}");
    slapd.modify("dn: cn=core,ou=groups,dc=corp,dc=test\nchangetype: modify\nreplace: member\nmember: uid=ann,ou=people,dc=corp,dc=test\n");

    // rotated with an hour's overlap: old and new both work; rotated
    // again without one: only the newest does
    let rotate = |hours: u64| {
        let mut o = options.clone();
        o["login"] = robot.into();
        o["hours"] = hours.into();
        o
    };
    let rotated = browser(&rotate(1), "robot-rotate").await;
    let second = rotated["secret"].as_str().unwrap().to_owned();
    assert!(
        rotated["said"]
            .as_str()
            .unwrap()
            .contains("keeps working until"),
        "{rotated}"
    );
    let both = "repository:platform/app:pull,push";
    for s in [&secret, &second] {
        assert_eq!(
            token_for(state, robot, s, both).await.actions(),
            ["pull", "push"]
        );
    }
    let rotated = browser(&rotate(0), "robot-rotate").await;
    let third = rotated["secret"].as_str().unwrap().to_owned();
    assert!(
        rotated["said"]
            .as_str()
            .unwrap()
            .contains("no longer works"),
        "{rotated}"
    );
    state.chain.forget_verdicts();
    for old in [&secret, &second] {
        token_for(state, robot, old, both)
            .await
            .assert_error(StatusCode::UNAUTHORIZED);
    }
    let run = push(work.path(), &creds(&third), &image, &to("platform/app:v3")).await;
    assert!(run.ok, "the rotated robot's push: {run:?}");

    // the team's rule loses push: so does the robot, at its next token
    write_policy(&f.path("policy.toml"), true);
    let reloaded = regauth::reload(&server.live, Some(&config_path)).expect("reload");
    assert_eq!(
        token_for(&reloaded, robot, &third, both).await.actions(),
        ["pull"]
    );
    let run = push(work.path(), &creds(&third), &image, &to("platform/app:v4")).await;
    assert!(
        !run.ok,
        "the robot pushed after its team lost push: {run:?}"
    );

    // revoked in the browser: refused once its verdict's TTL has passed
    let mut o = options.clone();
    o["login"] = robot.into();
    let revoked = browser(&o, "robot-revoke").await;
    assert_eq!(revoked["revoked"], true, "{revoked}");
    reloaded.chain.forget_verdicts();
    token_for(&reloaded, robot, &third, both)
        .await
        .assert_error(StatusCode::UNAUTHORIZED);

    // every step is in the audit log, with by whom; no secret ever is
    let audit = log.text();
    for event in [
        "robot_created",
        "robot_rotated",
        "robot_used",
        "robot_revoked",
    ] {
        assert!(
            audit
                .lines()
                .any(|l| l.contains(event) && l.contains("robot$platform+ci")),
            "an audit line for {event}"
        );
    }
    assert!(audit
        .lines()
        .any(|l| l.contains("robot_revoked") && l.contains("ann (corp)")));
    for s in [&secret, &second, &third] {
        assert!(!audit.contains(s.as_str()), "a secret reached the log");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_a_teams_admins_manage_its_robots_and_no_user_is_a_robot() {
    let (slapd, f, addr, config) = ldap_setup().await;
    let config_path = f.path("regauth.toml");
    let state = config.listen(addr).state();

    // ben, a member of the team but not of its admins, sees no team and
    // cannot make a robot by posting the form himself
    slapd.modify("dn: cn=Platform,ou=groups,dc=corp,dc=test\nchangetype: modify\nadd: member\nmember: uid=ben,ou=people,dc=corp,dc=test\n");
    let mut jar = Jar::default();
    let token = sign_in(&state, &mut jar, "ben", "ben-pw").await;
    let robots = page(&state, &mut jar, "/ui/robots").await;
    assert!(
        robots.text().contains("You manage no team"),
        "{}",
        robots.text()
    );
    let form = [
        ("csrf", token.as_str()),
        ("team", "corp:platform"),
        ("name", "ci"),
        ("days", "30"),
        ("repos", "platform/**"),
        ("actions", "pull"),
    ];
    let posted = submit(&state, &mut jar, "/ui/robots", &form).await;
    assert_eq!(posted.status, StatusCode::NOT_FOUND, "{}", posted.text());

    // cid, made one of ops, manages readers' robots
    slapd.modify("dn: cn=ops,ou=groups,dc=corp,dc=test\nchangetype: modify\nadd: member\nmember: uid=cid,ou=people,dc=corp,dc=test\n");
    let mut jar = Jar::default();
    let token = sign_in(&state, &mut jar, "cid", "cid-pw").await;
    let mut form = form;
    form[0].1 = &token;
    form[1].1 = "corp:readers";
    form[4].1 = "team/**";
    let made = submit(&state, &mut jar, "/ui/robots", &form).await;
    assert_eq!(made.status, StatusCode::OK, "{}", made.text());
    let secret = secret_of(&made);
    let robot = "robot$readers+ci";
    let pull = "repository:team/app:pull";
    // readers have no rule here: the robot logs in, and gets nothing
    assert!(token_for(&state, robot, &secret, pull)
        .await
        .actions()
        .is_empty());
    // the same name again is refused beside the form
    let again = submit(&state, &mut jar, "/ui/robots", &form).await;
    assert_eq!(again.status, StatusCode::BAD_REQUEST);
    assert!(
        again
            .text()
            .contains("there is a robot robot$readers+ci already"),
        "{}",
        again.text()
    );

    // a directory entry named like a robot never logs in as one
    slapd.modify("dn: uid=robot$readers\\+ci,ou=people,dc=corp,dc=test\nchangetype: add\nobjectClass: inetOrgPerson\nuid: robot$readers+ci\ncn: Squatter\nsn: S\nuserPassword: squat-pw\n");
    token_for(&state, robot, "squat-pw", pull)
        .await
        .assert_error(StatusCode::UNAUTHORIZED);
    let signed = {
        let mut jar = Jar::default();
        let form = page(&state, &mut jar, "/ui/").await;
        let csrf = csrf(&form);
        let fields = [
            ("username", robot),
            ("password", "squat-pw"),
            ("csrf", csrf.as_str()),
        ];
        submit(&state, &mut jar, "/ui/signin", &fields).await
    };
    assert_eq!(signed.status, StatusCode::UNAUTHORIZED, "{}", signed.text());

    // `regauth robots list|revoke`, straight in the state backend, as a
    // platform team acts on a leaked secret
    let path = config_path.to_str().unwrap();
    form[2].1 = "nightly";
    let nightly = secret_of(&submit(&state, &mut jar, "/ui/robots", &form).await);
    let (ok, out, err) = regauth_cli(&["robots", "list", "--config", path]);
    assert!(
        ok && out.contains("robot$readers+nightly") && out.contains("2 robot(s)"),
        "{out}{err}"
    );
    let (ok, out, err) = regauth_cli(&[
        "robots",
        "revoke",
        "--config",
        path,
        "robot$readers+nightly",
    ]);
    assert!(
        ok && out.contains("revoked robot$readers+nightly"),
        "{out}{err}"
    );
    state.chain.forget_verdicts();
    token_for(&state, "robot$readers+nightly", &nightly, pull)
        .await
        .assert_error(StatusCode::UNAUTHORIZED);
    let (ok, _, err) = regauth_cli(&[
        "robots",
        "revoke",
        "--config",
        path,
        "robot$readers+nightly",
    ]);
    assert!(!ok && err.contains("no robot"), "{err}");

    // the group gone from the directory: the robot is refused while it
    // is, and `regauth check`, `robots list` and the page say so
    slapd.modify("dn: cn=readers,ou=groups,dc=corp,dc=test\nchangetype: delete\n");
    state.chain.forget_verdicts();
    token_for(&state, robot, &secret, pull)
        .await
        .assert_error(StatusCode::UNAUTHORIZED);
    let page_text = page(&state, &mut jar, "/ui/robots").await.text();
    assert!(
        page_text.contains("is gone from its directory"),
        "{page_text}"
    );
    let (ok, out, err) = regauth_cli(&["check", "--config", path]);
    assert!(
        ok && out.contains("robot robot$readers+ci") && out.contains("is gone"),
        "{out}{err}"
    );
    let (ok, out, err) = regauth_cli(&["robots", "list", "--config", path]);
    assert!(
        ok && out.contains("warning: robot robot$readers+ci") && out.contains("1 robot(s)"),
        "{out}{err}"
    );
    // made again, it is another group (another entryUUID): the robot's
    // next login ends it for good
    slapd.modify("dn: cn=readers,ou=groups,dc=corp,dc=test\nchangetype: add\nobjectClass: groupOfNames\ncn: readers\nmember: uid=ben,ou=people,dc=corp,dc=test\n");
    token_for(&state, robot, &secret, pull)
        .await
        .assert_error(StatusCode::UNAUTHORIZED);
    let (ok, out, _) = regauth_cli(&["robots", "list", "--config", path]);
    assert!(ok && out.contains("0 robot(s)"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_robot_made_after_an_oidc_sign_in_outlives_its_makers_membership() {
    let f = Fixture::new();
    let addr = free_addr().await;
    let ui = format!("http://{addr}/ui");
    let mut idp = LoginIdp::start(&format!("{ui}/callback"), "regauth-browser-secret");
    idp.set_groups("dana", &["platform", "platform-leads"]);
    let extra = sso_page_toml(&f, &idp, &ui, "")
        + "\n[robots]\n[robots.admin_groups]\n\"sso:platform\" = [\"sso:platform-leads\"]\n";
    let server = Server::start_at(f.config(&extra), addr).await;
    let registry = Registry::start(&server.realm(), &f.cert).await;
    let work = tempfile::tempdir().unwrap();
    let options = serde_json::json!({
        "ui": ui, "user": "dana", "team": "sso:platform", "name": "release",
        "repos": "platform/**", "push": true, "state": work.path().join("state.json"),
    });
    let made = browser(&options, "robot").await;
    let secret = made["secret"].as_str().unwrap().to_owned();
    let creds = format!("robot$platform+release:{secret}");
    let image = work.path().join("image");
    build_image(&image, "latest", 1, "oidc-robot");
    let target = format!("docker://{}/platform/release:v1", registry.addr);
    let run = push(work.path(), &creds, &image, &target).await;
    assert!(run.ok, "the robot's push: {run:?}\n{}", registry.log());
    // dana leaves both groups at the IdP: her robot does not depend on her
    idp.set_groups("dana", &[]);
    server.state.chain.forget_verdicts();
    let target = format!("docker://{}/platform/release:v2", registry.addr);
    let run = push(work.path(), &creds, &image, &target).await;
    assert!(run.ok, "the robot's push after its maker left: {run:?}");
    // erin, in no group, manages nothing
    let mut o = options.clone();
    o["user"] = "erin".into();
    o["expect"] = "none".into();
    let seen = browser(&o, "robot").await;
    assert!(
        seen["text"]
            .as_str()
            .unwrap()
            .contains("You manage no team"),
        "{seen}"
    );
}
