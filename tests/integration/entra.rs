//! Microsoft Entra ID against a tenant and a Microsoft Graph shaped as
//! Microsoft documents them (support/entra.rs): groups from the token and,
//! past the token's limit, from Graph page by page; names instead of ids
//! in rules; app roles; v1.0 tokens; other tenants refused; Graph
//! throttled or down is a 503, never a login without groups; the password
//! grant and its second-factor refusal; and the browser sign-in in
//! chromium.

use axum::http::StatusCode;

use crate::support::browser::browser;
use crate::support::entra::{Entra, Graph, DOMAIN, OTHER_TENANT, TENANT};
use crate::support::*;

/// Rules on a group's name, its id, an app role, and a team of the 250.
fn entra_policy() -> &'static str {
    r#"
[[rule]]
groups = ["entra:platform-engineers"]
repos = ["platform/**"]
actions = ["pull", "push"]

[[rule]]
groups = ["entra:a1b2c3d4-0000-4000-8000-000000000002"]
repos = ["docs/**"]
actions = ["pull"]

[[rule]]
groups = ["entra:role:Registry.Push"]
repos = ["apps/**"]
actions = ["pull", "push"]

[[rule]]
groups = ["entra:team-248"]
repos = ["team-248/**"]
actions = ["pull"]
"#
}

fn config(f: &Fixture, idp: &Entra, extra: &str) -> TestConfig {
    f.config(&format!(
        "{}{}",
        idp.provider_toml(f, "entra", extra),
        entra_policy()
    ))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn groups_from_the_token_become_names_and_roles_and_v1_tokens_count() {
    let idp = Entra::start().await;
    let f = Fixture::new();
    let state = config(&f, &idp, "").state();
    let ada = idp.access_token("ada@corp.test", 2, TENANT);
    let ask = |token: String, scope: &'static str| {
        let state = state.clone();
        async move { token_for(&state, "ada@corp.test", &token, scope).await }
    };
    let push = ask(ada.clone(), "repository:platform/app:pull,push").await;
    assert_eq!(
        push.actions(),
        ["pull", "push"],
        "by the group's name: {}",
        push.text()
    );
    let docs = ask(ada.clone(), "repository:docs/x:pull").await;
    assert_eq!(docs.actions(), ["pull"], "by the group's id");
    let role = ask(ada.clone(), "repository:apps/x:push").await;
    assert_eq!(role.actions(), ["push"], "by the app role");
    // one listing of ada's groups names the three of the claim
    assert_eq!(idp.graph_calls(), 1, "one call names the three groups");

    // a v1.0 token of the same user: same rights, names from the cache
    let v1 = idp.access_token("ada@corp.test", 1, TENANT);
    let again = ask(v1, "repository:platform/app:push").await;
    assert_eq!(again.actions(), ["push"], "{}", again.text());
    assert_eq!(idp.graph_calls(), 1, "names are cached: no Graph call");
}

/// The security review of 2026-12-06: a group a user made, named like
/// an app role, is no role; an app's client credentials token is the app,
/// its roles its groups; an ID token is no access token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn roles_are_the_tenants_and_apps_log_in_by_their_roles() {
    let idp = Entra::start().await;
    let f = Fixture::new();
    let state = config(&f, &idp, "").state();
    let eve = idp.access_token("eve@corp.test", 2, TENANT);
    let spoof = token_for(&state, "eve", &eve, "repository:apps/x:push").await;
    assert!(
        spoof.actions().is_empty(),
        "a group named role:…: {}",
        spoof.text()
    );
    let ci = "0a0a0a0a-1111-4222-8333-444444444444";
    let app = idp.app_token(ci, &["Registry.Push"]);
    let calls = idp.graph_calls();
    let push = token_for(&state, "ci", &app, "repository:apps/x:push").await;
    assert_eq!(push.actions(), ["push"], "{}", push.text());
    assert_eq!(
        idp.graph_calls(),
        calls,
        "an app's groups are its roles: no Graph call"
    );
    let claims = jwt_claims(&push.json()["access_token"]);
    assert_eq!(claims["sub"], format!("app:{ci}"));
    let without_roles = idp.app_token(ci, &[]);
    let none = token_for(&state, "ci", &without_roles, "repository:apps/x:pull").await;
    assert!(none.actions().is_empty(), "{}", none.text());
    let id_token = idp.id_token("ada@corp.test");
    let refused = token_for(&state, "ada", &id_token, "repository:platform/app:pull").await;
    assert_eq!(
        refused.status,
        StatusCode::UNAUTHORIZED,
        "{}",
        refused.text()
    );
}

/// The claims of a registry token.
fn jwt_claims(token: &serde_json::Value) -> serde_json::Value {
    use base64::Engine as _;
    let payload = token.as_str().unwrap().split('.').nth(1).unwrap();
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .unwrap();
    serde_json::from_slice(&bytes).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_the_tokens_limit_groups_come_from_graph_once_per_ttl() {
    let idp = Entra::start().await;
    let f = Fixture::new();
    let state = config(&f, &idp, "").state();
    // bob is in 250 groups: the token carries none and says so
    let bob = idp.access_token("bob@corp.test", 2, TENANT);
    let push = token_for(&state, "bob", &bob, "repository:platform/app:pull,push").await;
    assert_eq!(push.actions(), ["pull", "push"], "{}", push.text());
    assert_eq!(idp.graph_calls(), 3, "three pages of at most 100");
    let last = token_for(&state, "bob", &bob, "repository:team-248/x:pull").await;
    assert_eq!(last.actions(), ["pull"], "the last page's group counts");
    // another token of bob's: his groups are cached, no Graph call
    let again = idp.access_token("bob@corp.test", 1, TENANT);
    let pull = token_for(&state, "bob", &again, "repository:platform/app:pull").await;
    assert_eq!(pull.actions(), ["pull"], "{}", pull.text());
    assert_eq!(idp.graph_calls(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graph_throttled_or_down_is_a_503_never_a_login_without_groups() {
    let idp = Entra::start().await;
    let f = Fixture::new();
    let state = config(&f, &idp, "").state();
    idp.graph(Graph::Throttled);
    let bob = idp.access_token("bob@corp.test", 2, TENANT);
    let throttled = token_for(&state, "bob", &bob, "repository:platform/app:pull").await;
    assert_eq!(
        throttled.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{}",
        throttled.text()
    );
    assert_eq!(
        throttled.header("retry-after"),
        Some("7"),
        "Graph's Retry-After"
    );
    idp.graph(Graph::Down);
    let v1 = idp.access_token("bob@corp.test", 1, TENANT);
    let down = token_for(&state, "bob", &v1, "repository:platform/app:pull").await;
    assert_eq!(
        down.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{}",
        down.text()
    );
    // a claim user's names cannot be had either: 503, not a nameless grant
    let ada = idp.access_token("ada@corp.test", 2, TENANT);
    let nameless = token_for(&state, "ada", &ada, "repository:platform/app:pull").await;
    assert_eq!(
        nameless.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{}",
        nameless.text()
    );
    idp.graph(Graph::Up);
    let ada = idp.access_token("ada@corp.test", 1, TENANT);
    let back = token_for(&state, "ada", &ada, "repository:platform/app:pull").await;
    assert_eq!(back.actions(), ["pull"], "{}", back.text());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_tenants_are_refused_unless_admitted() {
    let idp = Entra::start().await;
    let f = Fixture::new();
    let guest = idp.access_token("ada@corp.test", 2, OTHER_TENANT);
    let scope = "repository:platform/app:pull";
    let state = config(&f, &idp, "").state();
    let refused = token_for(&state, "ada", &guest, scope).await;
    assert_eq!(
        refused.status,
        StatusCode::UNAUTHORIZED,
        "{}",
        refused.text()
    );
    // admitted: named by ids alone (regauth's Graph does not know
    // another tenant's groups), and the other tenant's app roles are not
    // regauth's
    let admitted = config(&f, &idp, &format!("tenants = [\"{OTHER_TENANT}\"]")).state();
    let by_id = token_for(&admitted, "ada", &guest, "repository:docs/x:pull").await;
    assert_eq!(by_id.actions(), ["pull"], "{}", by_id.text());
    let by_name = token_for(&admitted, "ada", &guest, scope).await;
    assert!(by_name.actions().is_empty(), "{}", by_name.text());
    let role = token_for(&admitted, "ada", &guest, "repository:apps/x:push").await;
    assert!(role.actions().is_empty(), "{}", role.text());
}

/// The app proves itself with a certificate instead of a secret: the
/// password grant and Graph's app token both go with a signed assertion.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_credential_stands_for_the_secret() {
    let idp = Entra::start().await;
    let f = Fixture::new();
    let (cert, key) = idp.certificate(&f);
    let text = idp.provider_toml(&f, "entra", "password_grant = true");
    let secret_line = text
        .lines()
        .find(|l| l.starts_with("client_secret_file"))
        .unwrap()
        .to_owned();
    let text = text.replace(
        &secret_line,
        &format!(
            "client_certificate_file = \"{}\"\nclient_key_file = \"{}\"",
            cert.display(),
            key.display()
        ),
    );
    let state = f.config(&format!("{text}{}", entra_policy())).state();
    let bob = token_for(
        &state,
        "bob@corp.test",
        "entra-pw",
        "repository:platform/app:push",
    )
    .await;
    assert_eq!(bob.actions(), ["push"], "{}", bob.text());
    assert_eq!(
        idp.assertions(),
        2,
        "the password grant and Graph's app token"
    );
}

/// A tenant configured by its verified domain: its id is learnt from its
/// metadata at the first login, and its tokens verify as the id's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_by_its_domain_learns_its_id_from_the_metadata() {
    let idp = Entra::start().await;
    let f = Fixture::new();
    let text = idp.provider_toml(&f, "entra", "").replace(
        &format!("tenant = \"{TENANT}\""),
        &format!("tenant = \"{DOMAIN}\""),
    );
    assert!(text.contains(DOMAIN));
    let state = f.config(&format!("{text}{}", entra_policy())).state();
    let ada = idp.access_token("ada@corp.test", 1, TENANT);
    let push = token_for(&state, "ada", &ada, "repository:platform/app:push").await;
    assert_eq!(push.actions(), ["push"], "{}", push.text());
    let guest = idp.access_token("ada@corp.test", 2, OTHER_TENANT);
    let refused = token_for(&state, "ada", &guest, "repository:platform/app:pull").await;
    assert_eq!(
        refused.status,
        StatusCode::UNAUTHORIZED,
        "{}",
        refused.text()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_password_grant_works_for_accounts_without_a_second_factor() {
    let idp = Entra::start().await;
    let f = Fixture::new();
    let state = config(&f, &idp, "password_grant = true").state();
    let scope = "repository:platform/app:push";
    let ada = token_for(&state, "Ada@corp.test", "entra-pw", scope).await;
    assert_eq!(ada.actions(), ["push"], "{}", ada.text());
    let wrong = token_for(&state, "ada@corp.test", "wrong", scope).await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
    // mia's account asks for MFA: no password alone logs her in
    let mia = token_for(&state, "mia@corp.test", "entra-pw", scope).await;
    assert_eq!(mia.status, StatusCode::UNAUTHORIZED, "{}", mia.text());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_browser_sign_in_at_entra_makes_an_app_password() {
    let idp = Entra::start().await;
    let f = Fixture::new();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let ui = format!("http://{addr}/ui");
    let page = format!(
        "\n[app_passwords]\nkey_file = \"{}\"\nurl = \"{ui}\"\n",
        f.path("app-passwords.key").display()
    );
    let text = format!(
        "{}{}{page}",
        idp.provider_toml(&f, "entra", "browser_login = true"),
        entra_policy()
    );
    let server = Server::start_at(f.config(&text), addr).await;
    let work = tempfile::tempdir().unwrap();
    let made = browser(
        &serde_json::json!({
            "ui": ui, "user": "bob@corp.test", "password": "entra-pw", "name": "laptop",
            "state": work.path().join("state.json"),
        }),
        "entra",
    )
    .await;
    let secret = made["secret"].as_str().unwrap().to_owned();
    assert!(secret.starts_with("rga_"), "{made}");
    // the app password carries the sign-in's groups, read from Graph
    let push = token_for(
        &server.state,
        "bob@corp.test",
        &secret,
        "repository:platform/app:pull",
    )
    .await;
    assert_eq!(push.actions(), ["pull"], "{}", push.text());
    assert!(idp.graph_calls() >= 3, "bob's groups came from Graph");
}

/// `config/example-entra.toml` as shipped, pointed at the test tenant: a
/// platform engineer pushes, a CI app with the app role pushes apps/.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_entra_example_gives_what_it_says() {
    let idp = Entra::start().await;
    let f = Fixture::new();
    std::fs::write(f.path("entra.secret"), crate::support::entra::CLIENT_SECRET).unwrap();
    let example = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("config/example-entra.toml"),
    )
    .unwrap()
    .replace("/etc/regauth/token.key", &f.key.display().to_string())
    .replace("/etc/regauth/token.crt", &f.cert.display().to_string())
    .replace("/etc/regauth/entra.secret", &f.path("entra.secret").display().to_string())
    .replace(
        "/etc/regauth/app-passwords.key",
        &f.path("app-passwords.key").display().to_string(),
    )
    .replace("6c1b7d2e-3f40-4a51-9b62-7c83d94ea5f6", crate::support::entra::CLIENT_ID)
    .replace("registry.corp.example", SERVICE)
    .replace(
        "group_cache_ttl = \"5m\"",
        &format!(
            "group_cache_ttl = \"5m\"\nauthority = \"{url}\"\nv1_issuer = \"{url}/sts\"\ngraph_url = \"{url}\"",
            url = idp.url
        ),
    );
    assert!(
        example.contains(TENANT),
        "the example's tenant is the test's"
    );
    let path = f.path("example-entra.toml");
    std::fs::write(&path, example).unwrap();
    let config = regauth::config::Config::load(Some(&path)).unwrap();
    let state = regauth::build(config).unwrap();
    let ada = idp.access_token("ada@corp.test", 2, TENANT);
    let push = token_for(&state, "ada", &ada, "repository:platform/app:push").await;
    assert_eq!(push.actions(), ["push"], "{}", push.text());
    let apps = token_for(&state, "ada", &ada, "repository:apps/web:push").await;
    assert_eq!(apps.actions(), ["push"], "the app role: {}", apps.text());
    let bob = idp.access_token("bob@corp.test", 2, TENANT);
    let reader = token_for(&state, "bob", &bob, "repository:apps/web:pull,push").await;
    assert_eq!(reader.actions(), ["pull"], "{}", reader.text());
}
