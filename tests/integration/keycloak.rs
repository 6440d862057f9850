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
    let detected = kc.brute_force("carl").await;
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

/// A user whose Keycloak asks for a one-time code (TOTP, computed by the
/// test) signs in to the page in chromium: approves a device login and
/// makes an app password in the same session. The app password pushes
/// with skopeo; the device login's identity token takes the refresh
/// grant. Their sessions revoked in Keycloak, both are refused within
/// `recheck_interval` and the verdict TTL.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_totp_user_signs_in_in_a_browser_and_keycloak_ends_it() {
    use crate::support::browser::browser;

    let kc = Keycloak::start().await;
    let f = Fixture::new();
    let secret = f.path("keycloak.secret");
    std::fs::write(&secret, format!("{}\n", CLIENT.1)).unwrap();
    let addr = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap()
    };
    let ui = format!("http://{addr}/ui");
    // the client redirects to this page's callback alone
    let clients: serde_json::Value = kc
        .admin(
            Method::GET,
            &format!("/clients?clientId={}", CLIENT.0),
            None,
        )
        .await
        .json()
        .await
        .unwrap();
    let mut client = clients[0].clone();
    let client_uuid = client["id"].as_str().unwrap().to_owned();
    client["redirectUris"] = serde_json::json!([format!("{ui}/callback")]);
    kc.admin(
        Method::PUT,
        &format!("/clients/{client_uuid}"),
        Some(client),
    )
    .await;
    let extra = format!(
        "{}\n[app_passwords]\nkey_file = \"{}\"\nurl = \"{ui}\"\nrecheck_interval = \"1s\"\n",
        keycloak_toml(&kc, &secret).replace(
            "password_grant = true",
            "password_grant = true\nbrowser_login = true"
        ),
        f.path("app-passwords.key").display(),
    );
    let config = f
        .config(&extra)
        .set("server.realm", format!("http://{addr}/auth"))
        .set("cache.verdict_ttl", "1s")
        // below the realm's failureFactor (3): see the end
        .set("cache.max_failures", 2);
    let server = Server::start_at(config, addr).await;
    let registry = Registry::start(&server.realm(), &f.cert).await;
    let http = reqwest::Client::new();
    let base = format!("http://{addr}");

    // a terminal asks for a device login
    let started: serde_json::Value = http
        .post(format!("{base}/auth/device"))
        .form(&[("client_id", "docker")])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let device_code = started["device_code"].as_str().unwrap().to_owned();

    // tess signs in at Keycloak with her password and her one-time code,
    // approves it, and makes an app password
    let work = tempfile::tempdir().unwrap();
    let shots = crate::support::browser::screenshots(work.path());
    let options = serde_json::json!({
        "url": started["verification_uri_complete"],
        "ui": ui,
        "user": "tess",
        "password": "tess-kc-pw",
        "totp": "tess-totp-secret-0123456789",
        "name": "kc-laptop",
        "shots": shots,
    });
    let log = log_capture();
    let made = tokio::spawn(async move { browser(&options, "keycloak").await }).await;
    let made = made.unwrap_or_else(|e| {
        let refused: Vec<_> = log
            .text()
            .lines()
            .filter(|l| l.contains("sign-in"))
            .map(str::to_owned)
            .collect();
        panic!("{e}\n{refused:#?}")
    });
    assert_eq!(made["client"], "docker", "{made}");
    assert_eq!(made["code"], started["user_code"], "{made}");
    assert_eq!(made["answered"], "Device login approved", "{made}");
    let app_password = made["secret"].as_str().unwrap().to_owned();
    assert!(shots.join("keycloak-otp.png").is_file());

    // the terminal's poll gets the identity token
    let polled: serde_json::Value = http
        .post(format!("{base}/auth/token"))
        .form(&[
            ("grant_type", "urn:ietf:params:oauth:grant-type:device_code"),
            ("device_code", &device_code),
            ("client_id", "docker"),
        ])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let identity = polled["refresh_token"]
        .as_str()
        .unwrap_or_else(|| panic!("no identity token: {polled}"))
        .to_owned();

    // skopeo pushes with the app password; the identity token pulls
    let layout = work.path().join("layout");
    build_image(&layout, "latest", 1, "keycloak-totp");
    let target = format!("docker://{}/platform/app:totp", registry.addr);
    let run = push(
        work.path(),
        &format!("tess:{app_password}"),
        &layout,
        &target,
    )
    .await;
    assert!(run.ok, "skopeo push with the app password: {run:?}");
    let scope = "repository:platform/app:pull";
    let refreshed = refresh_grant(&http, &base, &identity, scope).await;
    assert_eq!(refreshed.0, 200, "{}", refreshed.1);

    // Keycloak's logout ends her online sessions only: the offline
    // session behind regauth's re-check (offline_access) outlives it, as
    // the README says; revoking the client's offline token (Users ->
    // Consents -> Revoke) ends it. Within the recheck and the verdict's
    // TTL, neither logs in.
    let tess = kc.user_id("tess").await;
    kc.admin(Method::POST, &format!("/users/{tess}/logout"), None)
        .await;
    kc.admin(
        Method::DELETE,
        &format!("/users/{tess}/consents/{}", CLIENT.0),
        None,
    )
    .await;
    tokio::time::sleep(std::time::Duration::from_millis(2500)).await;
    server.state.chain.forget_verdicts();
    let after = token_for(&server.state, "tess", &app_password, scope).await;
    if after.status != StatusCode::UNAUTHORIZED {
        let said: Vec<_> = log_capture()
            .text()
            .lines()
            .filter(|l| l.contains("IdP") || l.contains("sign-in") || l.contains("re-check"))
            .map(str::to_owned)
            .collect();
        panic!("the app password still logs in after its offline session was revoked: {said:#?}");
    }
    let refused = refresh_grant(&http, &base, &identity, scope).await;
    assert_eq!(refused.0, 401, "{}", refused.1);
    assert!(
        log_capture()
            .text()
            .lines()
            .any(|l| l.contains("sign_in_ended") && l.contains("keycloak:tess")),
        "refused because Keycloak refused the re-check"
    );

    // a stranger's wrong passwords for erin stop at regauth's budget
    // (max_failures 2), below Keycloak's failureFactor (3): her Keycloak
    // account is never locked, whatever the stranger sends
    for _ in 0..6 {
        token_for(&server.state, "erin", "not-erins", scope)
            .await
            .assert_error(StatusCode::UNAUTHORIZED);
    }
    let detected = kc.brute_force("erin").await;
    assert_eq!(detected["numFailures"], 2, "{detected}");
    assert_eq!(detected["disabled"], false, "{detected}");
    let answer = kc.password_grant(CLIENT, "erin", "erin-kc-pw").await;
    assert!(
        answer["access_token"].is_string(),
        "erin is not locked: {answer}"
    );
}

/// The refresh grant at `base` with `token`: status and body.
async fn refresh_grant(
    http: &reqwest::Client,
    base: &str,
    token: &str,
    scope: &str,
) -> (u16, String) {
    let reply = http
        .post(format!("{base}/auth/token"))
        .form(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", token),
            ("client_id", "docker"),
            ("service", SERVICE),
            ("scope", scope),
        ])
        .send()
        .await
        .unwrap();
    (reply.status().as_u16(), reply.text().await.unwrap())
}
