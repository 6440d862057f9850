//! Refresh tokens (docker's identity tokens) as docker, containerd and crane
//! use them: the exact request sequences, a refreshed token against the
//! real registry, binding, revocation across a restart, and re-resolved
//! groups.

use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use axum::http::StatusCode;

use crate::support::oci::build_image;
use crate::support::slapd::Slapd;
use crate::support::*;

/// `docker login`: GET with account, client_id=docker, offline_token=true,
/// Basic credentials and no scope.
async fn docker_login(state: &Arc<regauth::AppState>, user: &str, password: &str) -> String {
    let r = get(
        state,
        &format!("/auth?account={user}&client_id=docker&offline_token=true&service={SERVICE}"),
        Some(&basic(user, password)),
    )
    .await;
    let body = r.json();
    assert_eq!(r.status, StatusCode::OK, "{body}");
    assert_eq!(body["token"], body["access_token"]);
    assert_eq!(r.token().1["access"], serde_json::json!([]));
    body["refresh_token"]
        .as_str()
        .expect("a refresh_token")
        .to_owned()
}

/// docker's later pulls and pushes: POST refresh_token grant, no username.
async fn refresh(state: &Arc<regauth::AppState>, token: &str, service: &str, scope: &str) -> Reply {
    post_form(
        state,
        "/auth",
        &format!(
            "grant_type=refresh_token&client_id=docker&service={service}&scope={scope}&refresh_token={token}"
        ),
    )
    .await
}

#[tokio::test]
async fn docker_login_then_refresh_grants_never_rotate() {
    let f = Fixture::new();
    let state = f.state("");
    let rt = docker_login(&state, "writer", "writer-pw").await;
    for _ in 0..2 {
        let r = refresh(&state, &rt, SERVICE, "repository:team/app:pull,push").await;
        let body = r.json();
        assert_eq!(r.status, StatusCode::OK, "{body}");
        assert!(body.get("refresh_token").is_none(), "never rotated");
        assert_eq!(r.token().1["sub"], "writer");
        assert_eq!(body["scope"], "repository:team/app:pull,push");
    }
    // anonymous and plain logins get none (item 25)
    let anon = get(
        &state,
        &format!("/auth?offline_token=true&service={SERVICE}"),
        None,
    )
    .await;
    assert!(anon.json().get("refresh_token").is_none());
    let crane = get(
        &state,
        &format!("/auth?scope=repository:team/app:pull&service={SERVICE}"),
        Some(&basic("writer", "writer-pw")),
    )
    .await;
    assert!(
        crane.json().get("refresh_token").is_none(),
        "crane asks without offline_token"
    );
    assert_eq!(crane.access()[0].2, ["pull"]);
}

#[tokio::test]
async fn containerd_password_grant_and_offline_access() {
    let f = Fixture::new();
    let state = f.state("");
    let plain = post_form(
        &state,
        "/auth",
        &format!("grant_type=password&username=reader&password=reader-pw&client_id=containerd-client&service={SERVICE}&scope=repository:team/app:pull"),
    )
    .await;
    assert_eq!(plain.status, StatusCode::OK);
    assert!(plain.json().get("refresh_token").is_none());
    let offline = post_form(
        &state,
        "/auth",
        &format!("grant_type=password&username=reader&password=reader-pw&access_type=offline&client_id=containerd-client&service={SERVICE}"),
    )
    .await;
    let rt = offline.json()["refresh_token"]
        .as_str()
        .expect("refresh_token")
        .to_owned();
    let r = refresh(&state, &rt, SERVICE, "repository:team/app:pull,push").await;
    assert_eq!(r.access()[0].2, ["pull"], "the reader's rights, no more");
}

#[tokio::test]
async fn bound_to_the_service_and_bad_tokens_are_401() {
    let f = Fixture::new();
    let state = f
        .config("")
        .set("token.services", vec![SERVICE, "other"])
        .state();
    let r = get(
        &state,
        &format!("/auth?offline_token=1&service={SERVICE}"),
        Some(&basic("writer", "writer-pw")),
    )
    .await;
    let rt = r.json()["refresh_token"].as_str().unwrap().to_owned();
    assert_eq!(
        refresh(&state, &rt, SERVICE, "").await.status,
        StatusCode::OK
    );
    let other = refresh(&state, &rt, "other", "").await;
    let body = other.assert_error(StatusCode::UNAUTHORIZED);
    assert!(body["errors"][0]["message"]
        .as_str()
        .unwrap()
        .contains("log in again"));

    let mut tampered = rt.clone().into_bytes();
    let i = tampered.len() / 2;
    tampered[i] = if tampered[i] == b'x' { b'y' } else { b'x' };
    let tampered = String::from_utf8(tampered).unwrap();
    for bad in [
        tampered.as_str(),
        &rt[..rt.len() - 3],
        "rt1.AAAA",
        "garbage",
        "%FF%FE",
    ] {
        let r = refresh(&state, bad, SERVICE, "").await;
        r.assert_error(StatusCode::UNAUTHORIZED);
    }
    let r = post_form(
        &state,
        "/auth",
        &format!("grant_type=refresh_token&service={SERVICE}"),
    )
    .await;
    r.assert_error(StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn disabled_refresh_grant_is_404() {
    let f = Fixture::new();
    let state = f.config("").set("refresh_tokens.enabled", false).state();
    let r = get(
        &state,
        &format!("/auth?offline_token=true&service={SERVICE}"),
        Some(&basic("writer", "writer-pw")),
    )
    .await;
    assert!(r.json().get("refresh_token").is_none());
    let r = refresh(&state, "rt1.anything", SERVICE, "").await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn revocation_survives_a_restart_and_removed_users_must_log_in_again() {
    let f = Fixture::new();
    let config_path = f.path("regauth.toml");
    f.config("").write(&config_path);
    let state = f.state("");
    let writer = docker_login(&state, "writer", "writer-pw").await;
    let reader = docker_login(&state, "reader", "reader-pw").await;
    tokio::time::sleep(Duration::from_millis(5)).await;
    let revoke = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_regauth"))
            .args([
                "tokens",
                "revoke",
                "--config",
                config_path.to_str().unwrap(),
            ])
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    revoke(&["--user", "writer"]);
    drop(state);
    // a restart: a new server from the same configuration and key
    let restarted = f.state("");
    refresh(&restarted, &writer, SERVICE, "")
        .await
        .assert_error(StatusCode::UNAUTHORIZED);
    assert_eq!(
        refresh(&restarted, &reader, SERVICE, "").await.status,
        StatusCode::OK
    );
    // a new login after the revocation works again
    let fresh = docker_login(&restarted, "writer", "writer-pw").await;
    assert_eq!(
        refresh(&restarted, &fresh, SERVICE, "").await.status,
        StatusCode::OK
    );
    tokio::time::sleep(Duration::from_millis(5)).await;
    revoke(&["--all"]);
    refresh(&restarted, &reader, SERVICE, "")
        .await
        .assert_error(StatusCode::UNAUTHORIZED);
    refresh(&restarted, &fresh, SERVICE, "")
        .await
        .assert_error(StatusCode::UNAUTHORIZED);

    // a user removed from the users file cannot refresh after a restart
    let again = docker_login(&restarted, "reader", "reader-pw").await;
    let users = std::fs::read_to_string(f.path("users.htpasswd")).unwrap();
    let without: String = users
        .lines()
        .filter(|l| !l.starts_with("reader:"))
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(f.path("users.htpasswd"), without).unwrap();
    let restarted = f.state("");
    let r = refresh(&restarted, &again, SERVICE, "").await;
    let body = r.assert_error(StatusCode::UNAUTHORIZED);
    assert!(body["errors"][0]["message"]
        .as_str()
        .unwrap()
        .contains("log in again"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refreshed_token_pushes_to_the_real_registry() {
    let f = Fixture::new();
    let server = Server::start(f.config("")).await;
    let registry = Registry::start(&server.realm(), &f.cert).await;
    let rt = docker_login(&server.state, "writer", "writer-pw").await;
    let scope = "repository:team/refreshed:pull,push";
    let token = refresh(&server.state, &rt, SERVICE, scope).await.json()["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let work = tempfile::tempdir().unwrap();
    let image = work.path().join("image");
    build_image(&image, "latest", 2, "refresh-push");
    let target = format!("docker://{}/team/refreshed:v1", registry.addr);
    let run = skopeo(
        work.path(),
        &[
            "copy",
            "--dest-tls-verify=false",
            "--dest-registry-token",
            &token,
            &format!("oci:{}:latest", image.display()),
            &target,
        ],
    )
    .await;
    assert!(
        run.ok,
        "push with a refreshed token: {run:?}\n{}",
        registry.log()
    );
    let run = skopeo(
        work.path(),
        &[
            "inspect",
            "--tls-verify=false",
            "--registry-token",
            &token,
            &target,
        ],
    )
    .await;
    assert!(run.ok, "pull with a refreshed token: {run:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refresh_re_resolves_ldap_groups_without_the_password() {
    let slapd = Slapd::start();
    let f = Fixture::new();
    // groups are looked up again at every check the verdict cache lets through
    let ldap = slapd.provider_toml("corp", &[("group_cache_ttl", r#""0s""#)]);
    let extra = format!("{ldap}\n[[rule]]\ngroups = [\"corp:platform\"]\nrepos = [\"platform/**\"]\nactions = [\"pull\", \"push\"]\n");
    let state = f.config(&extra).set("token.reuse_window", "0s").state();
    let rt = docker_login(&state, "ann", "ann-pw").await;
    let push = "repository:platform/app:push";
    assert_eq!(
        refresh(&state, &rt, SERVICE, push).await.access()[0].2,
        ["push"]
    );
    // removed from the group that grants push (core -> platform)
    slapd.modify(
        "dn: cn=core,ou=groups,dc=corp,dc=test\nchangetype: modify\nadd: member\nmember: uid=dee,ou=people,dc=corp,dc=test\n-\ndelete: member\nmember: uid=ann,ou=people,dc=corp,dc=test\n",
    );
    state.chain.forget_verdicts(); // the verdict's TTL passes
    let r = refresh(&state, &rt, SERVICE, push).await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.access().is_empty(), "push is gone after the group TTL");
    // deleted from the directory: the identity token stops working
    slapd.modify("dn: uid=ann,ou=people,dc=corp,dc=test\nchangetype: delete\n");
    state.chain.forget_verdicts();
    let r = refresh(&state, &rt, SERVICE, push).await;
    r.assert_error(StatusCode::UNAUTHORIZED);
}

/// OIDC users have no password at refresh time: their groups come from
/// their last login for `refresh_max_age`, then they must log in again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oidc_refresh_uses_the_last_login_within_its_maximum_age() {
    let clock = Clock::take();
    let idp = crate::support::idp::Idp::start();
    let f = Fixture::new();
    let extra = format!(
        "{}\n[[rule]]\ngroups = [\"keycloak:platform/core\"]\nrepos = [\"platform/**\"]\nactions = [\"pull\", \"push\"]\n",
        idp.provider_toml("keycloak", "refresh_max_age = \"2s\"")
    );
    let state = f.config(&extra).set("token.reuse_window", "0s").state();
    let rt = docker_login(&state, "kate", "kate-pw").await;
    let push = "repository:platform/app:push";
    let r = refresh(&state, &rt, SERVICE, push).await;
    assert_eq!(r.actions(), ["push"]);
    // the maximum age passes, and with it the verdict cache's TTL
    clock.advance(Duration::from_secs(3));
    state.chain.forget_verdicts();
    let r = refresh(&state, &rt, SERVICE, push).await;
    let body = r.assert_error(StatusCode::UNAUTHORIZED);
    assert!(body["errors"][0]["message"]
        .as_str()
        .unwrap()
        .contains("log in again"));
}
