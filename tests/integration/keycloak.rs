//! Keycloak itself, not a mock shaped like it: the realm fixture
//! (`tests/fixtures/keycloak/realm-main.json`) imported into the pinned
//! Keycloak that `tests/run` fetches, and regauth configured as
//! `config/example-keycloak.toml` says.

use axum::http::StatusCode;
use reqwest::Method;

use crate::support::keycloak::{Keycloak, CLIENT, OTHER_CLIENT};
use crate::support::oci::build_image;
use crate::support::*;

/// The Keycloak provider of `config/example-keycloak.toml`, and rules on a
/// nested group's path, a realm role and a client role.
fn keycloak_toml(kc: &Keycloak, secret_file: &std::path::Path) -> String {
    format!(
        r#"
[[provider]]
name = "keycloak"
kind = "oidc"
issuer = "{issuer}"
client_id = "{client}"
client_secret_file = "{secret}"
password_grant = true
access_tokens = true
audiences = ["registry"]
username_claim = "preferred_username"
groups_claims = ["groups", "realm_access.roles", "resource_access.registry.roles"]
timeout = "10s"
jwks_min_refresh = "0s"   # the test's new key is used within seconds

[[rule]]
groups = ["keycloak:platform/core"]
repos = ["platform/**"]
actions = ["pull", "push"]

[[rule]]
groups = ["keycloak:registry-admin"]
repos = ["admin/**"]
actions = ["pull", "push", "delete"]

[[rule]]
groups = ["keycloak:pusher"]
repos = ["ci/**"]
actions = ["pull", "push"]
"#,
        issuer = kc.issuer(),
        client = CLIENT.0,
        secret = secret_file.display(),
    )
}

/// Passwords through the password grant, access tokens as passwords (with
/// their audience checked), group paths and realm and client roles in
/// rules, a real push, quick retries that do not trip Keycloak's
/// brute-force detection, a new signing key, and a user who leaves a
/// group or is disabled in Keycloak.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keycloak_passwords_tokens_groups_roles_and_leavers() {
    let kc = Keycloak::start().await;
    eprintln!("Keycloak answered in {:.1} s", kc.started_in.as_secs_f64());
    let f = Fixture::new();
    let secret = f.path("keycloak.secret");
    std::fs::write(&secret, format!("{}\n", CLIENT.1)).unwrap();
    let state = f
        .config(&keycloak_toml(&kc, &secret))
        .set("cache.verdict_ttl", "1s")
        .state();

    // a password, traded at Keycloak: the nested group's path and the
    // client role both grant
    let platform = "repository:platform/app:pull,push";
    let ann = token_for(&state, "ann", "ann-kc-pw", platform).await;
    assert_eq!(ann.actions(), ["pull", "push"], "{}", ann.text());
    let ci = token_for(&state, "ann", "ann-kc-pw", "repository:ci/app:push").await;
    assert_eq!(ci.actions(), ["push"], "the client role pusher");
    // a realm role grants; a group bob is not in does not
    let admin = token_for(&state, "bob", "bob-kc-pw", "repository:admin/x:delete").await;
    assert_eq!(admin.actions(), ["delete"], "the realm role registry-admin");
    assert!(token_for(&state, "bob", "bob-kc-pw", platform)
        .await
        .actions()
        .is_empty());
    // a wrong password is a 401
    token_for(&state, "ann", "not-her-pw", platform)
        .await
        .assert_error(StatusCode::UNAUTHORIZED);

    // an access token as the password, for the registry's audience
    let token = kc.access_token(CLIENT, "ann", "ann-kc-pw").await;
    let by_token = token_for(&state, "ann", &token, platform).await;
    assert_eq!(by_token.actions(), ["pull", "push"], "{}", by_token.text());
    // one issued to another client has no registry audience
    let other = kc.access_token(OTHER_CLIENT, "bob", "bob-kc-pw").await;
    token_for(&state, "bob", &other, "repository:admin/x:pull")
        .await
        .assert_error(StatusCode::UNAUTHORIZED);
    // unless the user holds a role of the registry client: Keycloak's
    // "audience resolve" adds the registry then, and only what the token
    // carries applies (the client role; the other client maps no groups)
    let other = kc.access_token(OTHER_CLIENT, "ann", "ann-kc-pw").await;
    assert!(token_for(&state, "ann", &other, platform)
        .await
        .actions()
        .is_empty());
    assert_eq!(
        token_for(&state, "ann", &other, "repository:ci/app:push")
            .await
            .actions(),
        ["push"]
    );

    // a real push with ann's Keycloak password
    let server = Server::start(f.config(&keycloak_toml(&kc, &secret))).await;
    let registry = Registry::start(&server.realm(), &f.cert).await;
    let work = tempfile::tempdir().unwrap();
    let image = work.path().join("image");
    build_image(&image, "latest", 1, "e2e-keycloak");
    let target = format!("docker://{}/platform/app:kc", registry.addr);
    let run = push(work.path(), "ann:ann-kc-pw", &image, &target).await;
    assert!(run.ok, "push: {run:?}\nregistry: {}", registry.log());

    // carl mistypes and his client retries at once: Keycloak's brute-force
    // detection (quick-login check: two failures less than a second apart
    // lock the account for a minute) never sees failures that close, so
    // his right password works next
    for _ in 0..2 {
        token_for(&state, "carl", "carl-typo", platform)
            .await
            .assert_error(StatusCode::UNAUTHORIZED);
    }
    let carl = kc.user_id("carl").await;
    let detected: serde_json::Value = kc
        .admin(
            Method::GET,
            &format!("/attack-detection/brute-force/users/{carl}"),
            None,
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(detected["numFailures"], 2, "{detected}");
    assert_eq!(detected["disabled"], false, "{detected}");
    let right = token_for(&state, "carl", "carl-kc-pw", platform).await;
    assert_eq!(right.actions(), ["pull", "push"], "{}", right.text());

    // a new signing key in Keycloak (a higher priority than the realm's
    // own): its tokens carry a kid regauth has not seen, and regauth
    // fetches the JWKS again (at most once per jwks_min_refresh, 0s here)
    let before = kc.access_token(CLIENT, "ann", "ann-kc-pw").await;
    let realm: serde_json::Value = kc.admin(Method::GET, "", None).await.json().await.unwrap();
    kc.admin(
        Method::POST,
        "/components",
        Some(serde_json::json!({
            "name": "rotated",
            "providerId": "rsa-generated",
            "providerType": "org.keycloak.keys.KeyProvider",
            "parentId": realm["id"],
            "config": { "priority": ["500"], "keySize": ["2048"] }
        })),
    )
    .await;
    let after = kc.access_token(CLIENT, "ann", "ann-kc-pw").await;
    assert_ne!(
        kid_of(&before),
        kid_of(&after),
        "Keycloak signs with the new key"
    );
    let rotated = token_for(&state, "ann", &after, platform).await;
    assert_eq!(rotated.actions(), ["pull", "push"], "{}", rotated.text());

    // ann leaves platform/core: her next password login has no such group
    let ann_id = kc.user_id("ann").await;
    let groups: serde_json::Value = kc
        .admin(Method::GET, &format!("/users/{ann_id}/groups"), None)
        .await
        .json()
        .await
        .unwrap();
    let core = groups[0]["id"].as_str().expect("ann's group").to_owned();
    kc.admin(
        Method::DELETE,
        &format!("/users/{ann_id}/groups/{core}"),
        None,
    )
    .await;
    state.chain.forget_verdicts();
    assert!(token_for(&state, "ann", "ann-kc-pw", platform)
        .await
        .actions()
        .is_empty());

    // erin leaves: disabled in Keycloak, her password is refused once
    // the verdict's TTL has passed
    assert_eq!(
        token_for(&state, "erin", "erin-kc-pw", platform)
            .await
            .actions(),
        ["pull", "push"]
    );
    let erin = kc.user_id("erin").await;
    kc.admin(
        Method::PUT,
        &format!("/users/{erin}"),
        Some(serde_json::json!({ "enabled": false })),
    )
    .await;
    state.chain.forget_verdicts();
    token_for(&state, "erin", "erin-kc-pw", platform)
        .await
        .assert_error(StatusCode::UNAUTHORIZED);
}

/// The `kid` in a JWT's header.
fn kid_of(jwt: &str) -> String {
    use base64::Engine as _;
    let header = jwt.split('.').next().unwrap();
    let header = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(header)
        .unwrap();
    let header: serde_json::Value = serde_json::from_slice(&header).unwrap();
    header["kid"].as_str().unwrap().to_owned()
}
