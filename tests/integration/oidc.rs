//! The OIDC provider against a real OIDC server (oauth2-mock-server shaped
//! like Keycloak): the password grant, access tokens as passwords, CI
//! workload tokens matched by claims, forged and stale tokens, key
//! rotation, and the IdP going away.

use axum::http::StatusCode;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;

use crate::support::idp::Idp;
use crate::support::oci::build_image;
use crate::support::*;

const OIDC_POLICY: &str = r#"
[[rule]]
groups = ["keycloak:platform/core"]
repos = ["platform/**"]
actions = ["pull", "push"]

[[rule]]
groups = ["keycloak:readers", "keycloak:developer"]
repos = ["platform/**"]
actions = ["pull"]

[[rule]]
groups = ["keycloak:ci"]
repos = ["ci/**"]
actions = ["pull", "push"]

[[rule]]
providers = ["keycloak"]
claims = { repository = "acme/app" }
repos = ["acme/app"]
actions = ["pull", "push"]
"#;

fn config(idp: &Idp) -> String {
    format!("{}{OIDC_POLICY}", idp.provider_toml("keycloak", ""))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keycloak_users_and_ci_tokens_push_to_the_registry() {
    let idp = Idp::start();
    let f = Fixture::new();
    let server = Server::start(f.config(&config(&idp))).await;
    let registry = Registry::start(&server.realm(), &f.cert).await;
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    let image = w.join("image");
    build_image(&image, "latest", 2, "oidc");
    let at = |repo: &str| format!("docker://{}/{repo}", registry.addr);

    // a realm user through the password grant (group /platform/core)
    let run = push(w, "kate:kate-pw", &image, &at("platform/app:v1")).await;
    assert!(run.ok, "kate pushes: {run:?}\n{}", registry.log());
    // liam (group /readers) pulls, may not push
    assert!(
        inspect(w, Some("liam:liam-pw"), &at("platform/app:v1"))
            .await
            .ok
    );
    assert!(
        !push(w, "liam:liam-pw", &image, &at("platform/app:v2"))
            .await
            .ok
    );
    assert!(
        !inspect(w, Some("kate:wrong"), &at("platform/app:v1"))
            .await
            .ok
    );

    // a CI client-credentials access token as the password
    let ci = idp.client_token("ci-runner", "ci-runner-secret").await;
    let run = push(w, &format!("ci:{ci}"), &image, &at("ci/tool:v1")).await;
    assert!(run.ok, "CI token pushes: {run:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claims_groups_and_workload_identity() {
    let log = log_capture();
    let idp = Idp::start();
    let f = Fixture::new();
    let state = f.state(&config(&idp));
    let kate = token_for(
        &state,
        "kate",
        "kate-pw",
        "repository:platform/app:pull,push",
    )
    .await;
    let (_, claims) = kate.token();
    assert_eq!(
        claims["sub"], "kate",
        "preferred_username, not the IdP's sub"
    );
    assert_eq!(kate.actions(), ["pull", "push"]);
    token_for(&state, "kate", "wrong", "repository:platform/app:pull")
        .await
        .assert_error(StatusCode::UNAUTHORIZED);
    token_for(&state, "nobody", "x", "repository:platform/app:pull")
        .await
        .assert_error(StatusCode::UNAUTHORIZED);

    // a workload token may push only to the repository its claims name
    let gha = idp.client_token("gha-acme-app", "gha-secret").await;
    let own = token_for(
        &state,
        "github-actions",
        &gha,
        "repository:acme/app:pull,push",
    )
    .await;
    assert_eq!(own.actions(), ["pull", "push"]);
    let other = token_for(
        &state,
        "github-actions",
        &gha,
        "repository:acme/other:pull,push",
    )
    .await;
    assert!(other.access().is_empty(), "{:?}", other.access());
    // the workload token has no groups claim: a warning with the hint
    assert!(
        log.text()
            .lines()
            .any(|l| l.contains("Group Membership") && l.contains("keycloak")),
        "a warning names Keycloak's group mapper"
    );
}

fn forge(header: serde_json::Value, claims: serde_json::Value, signature: &[u8]) -> String {
    format!(
        "{}.{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string()),
        URL_SAFE_NO_PAD.encode(signature)
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_foreign_and_forged_tokens_are_401() {
    let idp = Idp::start();
    let other = Idp::start();
    let f = Fixture::new();
    let state = f.state(&config(&idp));
    let scope = "repository:ci/tool:pull";
    let ok = idp.client_token("ci-runner", "ci-runner-secret").await;
    assert_eq!(
        token_for(&state, "ci", &ok, scope).await.actions(),
        ["pull"]
    );

    let expired = idp.client_token("expired", "expired-secret").await;
    token_for(&state, "ci", &expired, scope)
        .await
        .assert_error(StatusCode::UNAUTHORIZED);
    let wrong_aud = idp
        .client_token("wrong-audience", "wrong-audience-secret")
        .await;
    token_for(&state, "ci", &wrong_aud, scope)
        .await
        .assert_error(StatusCode::UNAUTHORIZED);
    let foreign = other.client_token("ci-runner", "ci-runner-secret").await;
    token_for(&state, "ci", &foreign, scope)
        .await
        .assert_error(StatusCode::UNAUTHORIZED);

    // alg none, and HS256 keyed with the issuer's public key material
    let (header, claims) = decode(&ok);
    let none = forge(
        serde_json::json!({"alg": "none", "typ": "JWT"}),
        claims.clone(),
        b"",
    );
    token_for(&state, "ci", &none, scope)
        .await
        .assert_error(StatusCode::UNAUTHORIZED);
    let jwks: serde_json::Value = reqwest::get(format!("{}/jwks", idp.issuer))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let public = jwks["keys"][0]["n"].as_str().unwrap().as_bytes().to_vec();
    let hs_header = serde_json::json!({"alg": "HS256", "typ": "JWT", "kid": header["kid"]});
    let signing_input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(hs_header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    );
    let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, &public);
    let mac = aws_lc_rs::hmac::sign(&key, signing_input.as_bytes());
    let hs256 = format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(mac.as_ref()));
    token_for(&state, "ci", &hs256, scope)
        .await
        .assert_error(StatusCode::UNAUTHORIZED);
    // a valid token with one changed claim (signature no longer matches)
    let mut tampered = claims.clone();
    tampered["groups"] = serde_json::json!(["/platform/core"]);
    let parts: Vec<&str> = ok.split('.').collect();
    let tampered = format!(
        "{}.{}.{}",
        parts[0],
        URL_SAFE_NO_PAD.encode(tampered.to_string()),
        parts[2]
    );
    token_for(&state, "ci", &tampered, scope)
        .await
        .assert_error(StatusCode::UNAUTHORIZED);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotated_keys_are_fetched_once_and_outages_are_503() {
    let mut idp = Idp::start();
    let f = Fixture::new();
    // an unknown kid refetches the key set at once, with no pause to wait out
    let state = f.state(&format!(
        "{}{OIDC_POLICY}",
        idp.provider_toml("keycloak", "jwks_min_refresh = \"0s\"")
    ));
    let scope = "repository:ci/tool:pull";
    let first = idp.client_token("ci-runner", "ci-runner-secret").await;
    assert_eq!(
        token_for(&state, "ci", &first, scope).await.actions(),
        ["pull"]
    );

    // the IdP rotates: tokens signed with the new key are accepted after
    // one JWKS refetch
    let kid = idp.rotate();
    let mut rotated = None;
    for _ in 0..4 {
        let t = idp.client_token("ci-runner", "ci-runner-secret").await;
        if decode(&t).0["kid"] == kid.as_str() {
            rotated = Some(t);
            break;
        }
    }
    let rotated = rotated.expect("a token signed with the new key");
    assert_eq!(
        token_for(&state, "ci", &rotated, scope).await.actions(),
        ["pull"]
    );

    // a token minted before the outage, not yet used
    let unused = idp.client_token("ci-runner", "ci-runner-secret").await;
    assert_eq!(
        token_for(&state, "kate", "kate-pw", "repository:platform/app:push")
            .await
            .actions(),
        ["push"]
    );
    idp.stop();
    // cached verdicts still serve
    assert_eq!(
        token_for(&state, "kate", "kate-pw", "repository:platform/app:push")
            .await
            .actions(),
        ["push"]
    );
    // a new token verifies offline against the cached key set
    assert_eq!(
        token_for(&state, "ci", &unused, scope).await.actions(),
        ["pull"]
    );
    // a password nobody has checked yet: 503, not 401
    let down = token_for(&state, "liam", "liam-pw", "repository:platform/app:pull").await;
    down.assert_error(StatusCode::SERVICE_UNAVAILABLE);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn regauth_starts_and_serves_others_while_the_idp_is_down() {
    let mut idp = Idp::start();
    let provider = idp.provider_toml("keycloak", "");
    idp.stop();
    let f = Fixture::new();
    let state = f.state(&format!("{provider}{OIDC_POLICY}"));
    let r = token_for(&state, "writer", "writer-pw", "repository:team/a:push").await;
    assert_eq!(r.actions(), ["push"], "the static provider still serves");
    let ready = get(&state, "/readyz", None).await;
    assert_eq!(
        ready.status,
        StatusCode::OK,
        "one IdP down is not the replica down"
    );
    assert_eq!(ready.json()["providers"]["keycloak"], "unavailable");
    assert_eq!(ready.json()["degraded"][0], "provider keycloak");
    token_for(&state, "kate", "kate-pw", "repository:platform/app:pull")
        .await
        .assert_error(StatusCode::SERVICE_UNAVAILABLE);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn opaque_tokens_are_introspected_under_the_agreed_username() {
    let idp = Idp::start();
    let f = Fixture::new();
    let state = f.state(&format!(
        "{}{OIDC_POLICY}",
        idp.provider_toml("keycloak", "introspection = true")
    ));
    let push = "repository:ci/tool:push";
    let ok = token_for(&state, "oauth2accesstoken", "opaque-ci-token-1", push).await;
    assert_eq!(ok.actions(), ["push"]);
    assert_eq!(ok.token().1["sub"], "service-account-ci-runner");
    token_for(&state, "oauth2accesstoken", "opaque-revoked", push)
        .await
        .assert_error(StatusCode::UNAUTHORIZED);
    // under any other username an opaque secret is a password (password
    // grant), never sent to the introspection endpoint
    token_for(&state, "kate", "opaque-ci-token-1", push)
        .await
        .assert_error(StatusCode::UNAUTHORIZED);
    assert_eq!(
        token_for(&state, "kate", "kate-pw", "repository:platform/app:push")
            .await
            .actions(),
        ["push"]
    );
}

/// A registry token ends with the credential behind it: a JWT presented as
/// the password caps it at its `exp`; after a password grant the
/// credential is the password, and the token gets the full lifetime
/// whatever the IdP's access token says.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn password_logins_get_the_full_lifetime_and_jwts_end_with_their_exp() {
    let idp = Idp::start();
    let f = Fixture::new();
    let state = f.config(&config(&idp)).set("token.lifetime", "2h").state();
    let kate = token_for(&state, "kate", "kate-pw", "repository:platform/app:pull").await;
    assert_eq!(kate.json()["expires_in"], 7200, "{}", kate.text());
    let gha = idp.client_token("gha-acme-app", "gha-secret").await;
    let ci = token_for(&state, "github-actions", &gha, "repository:acme/app:pull").await;
    let jwt_exp = {
        use base64::Engine as _;
        let part = gha.split('.').nth(1).unwrap();
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(part)
            .unwrap();
        serde_json::from_slice::<serde_json::Value>(&bytes).unwrap()["exp"]
            .as_u64()
            .unwrap()
    };
    let (_, claims) = ci.token();
    assert!(claims["exp"].as_u64().unwrap() <= jwt_exp, "{claims}");
    assert!(ci.json()["expires_in"].as_u64().unwrap() <= 3600);
}
