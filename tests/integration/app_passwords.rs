//! App passwords and their page: a real browser signing in through a real
//! OpenID Connect server and pushing with what it made, the page's forms
//! and sessions under attack, and app passwords that expire, keep to their
//! scope, belong to their owner and follow the directory.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};

use crate::support::browser::{browser, sso_page_toml, LoginIdp};
use crate::support::oci::build_image;
use crate::support::page::*;
use crate::support::slapd::Slapd;
use crate::support::*;
use regauth::AppState;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_browser_sign_in_makes_an_app_password_that_pushes_until_revoked() {
    let f = Fixture::new();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let ui = format!("http://{addr}/ui");
    let idp = LoginIdp::start(&format!("{ui}/callback"), "regauth-browser-secret");
    let extra = sso_page_toml(&f, &idp, &ui, "");
    let server = Server::start_at(f.config(&extra), addr).await;
    let registry = Registry::start(&server.realm(), &f.cert).await;
    let work = tempfile::tempdir().unwrap();
    let shots = crate::support::browser::screenshots(work.path());
    let options = serde_json::json!({
        "ui": ui,
        "user": "dana",
        "name": "laptop",
        "push": true,
        "state": work.path().join("browser-state.json"),
        "shots": shots,
    });

    // sign in at the IdP, make an app password, read it from the page
    let made = browser(&options, "create").await;
    let secret = made["secret"].as_str().unwrap().to_owned();
    assert!(secret.starts_with("rga_"), "{made}");
    let login = made["login"].as_str().unwrap();
    assert!(
        login.starts_with("docker login registry.test -u dana -p rga_"),
        "{login}"
    );
    for shot in ["sign-in", "created", "app-passwords", "app-passwords-phone"] {
        assert!(shots.join(format!("{shot}.png")).is_file(), "{shot}.png");
    }

    // push with it to the real registry
    let image = work.path().join("image");
    build_image(&image, "latest", 2, "app-password");
    let target = format!("docker://{}/platform/app:v1", registry.addr);
    let run = push(work.path(), &format!("dana:{secret}"), &image, &target).await;
    assert!(
        run.ok,
        "push with the app password: {run:?}\n{}",
        registry.log()
    );

    // revoke it in the browser: once its verdict's TTL has passed, the
    // next push is refused
    let revoked = browser(&options, "revoke").await;
    assert_eq!(revoked["revoked"], true, "{revoked}");
    server.state.chain.forget_verdicts();
    let target = format!("docker://{}/platform/app:v2", registry.addr);
    let run = push(work.path(), &format!("dana:{secret}"), &image, &target).await;
    assert!(!run.ok, "a revoked app password pushed: {run:?}");
    token_for(
        &server.state,
        "dana",
        &secret,
        "repository:platform/app:pull",
    )
    .await
    .assert_error(StatusCode::UNAUTHORIZED);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_refuses_forged_forms_and_ended_sessions() {
    let f = Fixture::new();
    let state = ui_config(&f, "").state();
    let mut writer = Jar::default();
    let token = sign_in(&state, &mut writer, "writer", "writer-pw").await;

    // the page carries the headers that keep it to itself
    let home = page(&state, &mut writer, "/ui/").await;
    let policy = home.header("content-security-policy").unwrap();
    assert!(policy.contains("default-src 'none'") && policy.contains("frame-ancestors 'none'"));
    assert_eq!(home.header("x-frame-options"), Some("DENY"));
    let session_cookie = home_cookie(&state, "writer", "writer-pw").await;
    assert!(
        session_cookie.contains("HttpOnly")
            && session_cookie.contains("SameSite=Lax")
            && session_cookie.contains("Path=/ui"),
        "{session_cookie}"
    );

    // a form without the session's token, or with another session's
    let mut reader = Jar::default();
    let readers_token = sign_in(&state, &mut reader, "reader", "reader-pw").await;
    for forged in ["", "x", readers_token.as_str()] {
        let r = submit(
            &state,
            &mut writer,
            "/ui/passwords",
            &[("csrf", forged), ("name", "evil"), ("days", "30")],
        )
        .await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "create with {forged:?}");
        let r = submit(&state, &mut writer, "/ui/signout", &[("csrf", forged)]).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "sign-out with {forged:?}");
    }
    let listed = page(&state, &mut writer, "/ui/").await.text();
    assert!(!listed.contains("evil"), "no app password was made");
    // the sign-in form needs its own token too
    let mut stranger = Jar::default();
    let r = submit(
        &state,
        &mut stranger,
        "/ui/signin",
        &[
            ("username", "writer"),
            ("password", "writer-pw"),
            ("csrf", "x"),
        ],
    )
    .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    // a tampered session cookie is no session
    let mut tampered = writer.clone();
    let value = tampered.0.get_mut("regauth_session").unwrap();
    value.replace_range(10..12, if &value[10..12] == "AA" { "BB" } else { "AA" });
    assert!(page(&state, &mut tampered, "/ui/")
        .await
        .text()
        .contains("Sign in"));

    // an app password made, then a revocation of someone else's: not found
    let secret = create(&state, &mut writer, &token, "laptop", "", &["pull"]).await;
    let id = id_of(&secret);
    let r = revoke(&state, &mut reader, &id, &readers_token).await;
    // reader is an admin (admin_groups = local:readers): may revoke it;
    // writer is not, and sees no admin page
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.text());
    let admin_page = page(&state, &mut writer, "/ui/admin").await;
    assert_eq!(admin_page.status, StatusCode::FORBIDDEN);

    // signed out: the old cookie, replayed, is no session
    let kept = writer.clone();
    let r = submit(&state, &mut writer, "/ui/signout", &[("csrf", &token)]).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    assert!(
        !writer.0.contains_key("regauth_session"),
        "the cookie is deleted"
    );
    let mut replay = kept;
    assert!(page(&state, &mut replay, "/ui/")
        .await
        .text()
        .contains("Sign in"));
    let r = submit(
        &state,
        &mut replay,
        "/ui/passwords",
        &[("csrf", &token), ("name", "after"), ("days", "30")],
    )
    .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "back to the sign-in page");

    // wrong passwords, app passwords and tokens do not sign in
    let mut jar = Jar::default();
    let form = page(&state, &mut jar, "/ui/").await;
    let token = csrf(&form);
    for (user, password) in [
        ("writer", "wrong"),
        ("writer", secret.as_str()),
        ("nobody", "x"),
    ] {
        let r = submit(
            &state,
            &mut jar,
            "/ui/signin",
            &[("username", user), ("password", password), ("csrf", &token)],
        )
        .await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{user}");
        assert!(r.text().contains("Wrong username or password"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_past_its_lifetime_is_over() {
    let clock = Clock::take();
    let f = Fixture::new();
    let short = ui_config(&f, "")
        .set("app_passwords.session_lifetime", "1s")
        .state();
    let mut brief = Jar::default();
    sign_in(&short, &mut brief, "writer", "writer-pw").await;
    clock.advance(Duration::from_secs(2));
    assert!(page(&short, &mut brief, "/ui/")
        .await
        .text()
        .contains("Sign in"));
}

/// The `Set-Cookie` of a fresh session.
async fn home_cookie(state: &Arc<AppState>, user: &str, password: &str) -> String {
    let mut jar = Jar::default();
    let form = page(state, &mut jar, "/ui/").await;
    let token = csrf(&form);
    let body: String = form_urlencoded::Serializer::new(String::new())
        .extend_pairs([("username", user), ("password", password), ("csrf", &token)])
        .finish();
    let request = Request::post("/ui/signin")
        .header("cookie", jar.header())
        .header("content-type", "application/x-www-form-urlencoded")
        .body(Body::from(body))
        .unwrap();
    let reply = call(state, request).await;
    reply
        .headers
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .find(|c| c.starts_with("regauth_session="))
        .expect("a session cookie")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn app_passwords_keep_to_their_scope_owner_and_expiry() {
    let f = Fixture::new();
    let state = ui_config(&f, "").state();
    let mut jar = Jar::default();
    let token = sign_in(&state, &mut jar, "writer", "writer-pw").await;
    let full = create(&state, &mut jar, &token, "everything", "", ALL).await;
    let narrow = create(&state, &mut jar, &token, "pull team", "team/**", &["pull"]).await;
    let push = "repository:team/app:pull,push";

    // all of writer's access, or no more than the scope allows
    assert_eq!(
        token_for(&state, "writer", &full, push).await.actions(),
        ["pull", "push"]
    );
    assert_eq!(
        token_for(&state, "writer", &narrow, push).await.actions(),
        ["pull"]
    );
    assert!(
        token_for(&state, "writer", &narrow, "repository:public/x:pull")
            .await
            .actions()
            .is_empty()
    );
    // never more than writer's own rights, whatever the scope says
    let wide = create(
        &state,
        &mut jar,
        &token,
        "wide",
        "**",
        &["pull", "push", "delete"],
    )
    .await;
    assert_eq!(
        token_for(
            &state,
            "writer",
            &wide,
            "repository:secret/x:pull,push,delete"
        )
        .await
        .actions(),
        Vec::<String>::new()
    );
    // only with its owner's name; a wrong secret or a made-up id is a 401
    token_for(&state, "reader", &full, push)
        .await
        .assert_error(StatusCode::UNAUTHORIZED);
    let mut wrong = full.clone();
    wrong.replace_range(wrong.len() - 3.., "aaa");
    token_for(&state, "writer", &wrong, push)
        .await
        .assert_error(StatusCode::UNAUTHORIZED);
    token_for(
        &state,
        "writer",
        &format!("rga_{}_{}", "a".repeat(16), "b".repeat(52)),
        push,
    )
    .await
    .assert_error(StatusCode::UNAUTHORIZED);
    // no refresh token: the app password itself is the credential
    let offline = login_offline(&state, "writer", &full).await;
    assert!(
        offline.json().get("refresh_token").is_none(),
        "{}",
        offline.text()
    );
    // the page lists them, with their last use
    let home = page(&state, &mut jar, "/ui/").await.text();
    assert!(
        home.contains("pull team") && home.contains("team/**: pull"),
        "{home}"
    );

    // past its expiry it is refused (its record says so; the page would
    // never make one that short)
    let soon = create(&state, &mut jar, &token, "soon", "", ALL).await;
    let id = id_of(&soon);
    let store = state.app_passwords.as_ref().unwrap().store().clone();
    let record = store
        .get_record("app_password", &id)
        .await
        .unwrap()
        .unwrap();
    let mut record: serde_json::Value = serde_json::from_str(&record).unwrap();
    // a registry token never outlives the app password behind it
    let ends = regauth_providers::clock::unix_seconds() + 100;
    record["expires"] = serde_json::json!(ends);
    store
        .put_record("app_password", &id, &record.to_string())
        .await
        .unwrap();
    let last = token_for(&state, "writer", &soon, push).await;
    assert_eq!(last.actions(), ["pull", "push"]);
    assert!(
        last.token().1["exp"].as_u64().unwrap() <= ends,
        "{:?}",
        last.token().1
    );
    assert!(last.json()["expires_in"].as_u64().unwrap() <= 100);
    state.chain.forget_verdicts(); // the verdict's TTL passes
    record["expires"] = serde_json::json!(regauth_providers::clock::unix_seconds() - 1);
    store
        .put_record("app_password", &id, &record.to_string())
        .await
        .unwrap();
    token_for(&state, "writer", &soon, push)
        .await
        .assert_error(StatusCode::UNAUTHORIZED);
    assert!(
        !page(&state, &mut jar, "/ui/")
            .await
            .text()
            .contains(">soon<"),
        "expired ones leave the list"
    );

    // a name, an expiry beyond max_lifetime, a bad pattern: refused on the page
    for (name, days, repos) in [
        ("", "30", ""),
        ("x", "9999", ""),
        ("x", "0", ""),
        ("x", "30", "${user}/x"),
    ] {
        let r = submit(
            &state,
            &mut jar,
            "/ui/passwords",
            &[
                ("csrf", &token),
                ("name", name),
                ("days", days),
                ("repos", repos),
                ("actions", "pull"),
            ],
        )
        .await;
        assert_eq!(
            r.status,
            StatusCode::BAD_REQUEST,
            "{name:?} {days} {repos:?}: {}",
            r.text()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ldap_users_app_password_follows_the_directory() {
    let slapd = Slapd::start();
    let f = Fixture::new();
    let ldap = slapd.provider_toml("corp", &[("group_cache_ttl", "\"0s\"")]);
    let section = format!(
        "\n[app_passwords]\nkey_file = \"{}\"\nlogin_form = [\"corp\"]\n",
        f.path("app-passwords.key").display()
    );
    let state = f
        .config(&format!("{ldap}\n[[rule]]\ngroups = [\"corp:platform\"]\nrepos = [\"platform/**\"]\nactions = [\"pull\", \"push\"]\n{section}"))
        .state();
    let mut jar = Jar::default();
    let token = sign_in(&state, &mut jar, "ann", "ann-pw").await;
    let secret = create(&state, &mut jar, &token, "ci", "", ALL).await;
    let push = "repository:platform/app:push";
    assert_eq!(
        token_for(&state, "ann", &secret, push).await.actions(),
        ["push"]
    );
    // leaving the group takes the rights away at the next check (once the
    // verdict's TTL has passed, here and below)
    slapd.modify("dn: cn=core,ou=groups,dc=corp,dc=test\nchangetype: modify\nreplace: member\nmember: uid=ben,ou=people,dc=corp,dc=test\n");
    state.chain.forget_verdicts();
    assert!(token_for(&state, "ann", &secret, push)
        .await
        .actions()
        .is_empty());
    // a locked account's app passwords stop working
    slapd.modify("dn: uid=ann,ou=people,dc=corp,dc=test\nchangetype: modify\nadd: pwdAccountLockedTime\npwdAccountLockedTime: 000001010000Z\n");
    state.chain.forget_verdicts();
    token_for(&state, "ann", &secret, push)
        .await
        .assert_error(StatusCode::UNAUTHORIZED);

    // an account removed and made again under the same name (a new
    // entryUUID) does not inherit the old one's app passwords
    let mut jar = Jar::default();
    let token = sign_in(&state, &mut jar, "ben", "ben-pw").await;
    let bens = create(&state, &mut jar, &token, "laptop", "", ALL).await;
    let pull = "repository:platform/app:pull";
    assert_eq!(
        token_for(&state, "ben", &bens, pull).await.status,
        StatusCode::OK
    );
    slapd.modify("dn: uid=ben,ou=people,dc=corp,dc=test\nchangetype: delete\n");
    slapd.modify("dn: uid=ben,ou=people,dc=corp,dc=test\nchangetype: add\nobjectClass: inetOrgPerson\nuid: ben\ncn: Another Ben\nsn: B\nuserPassword: new-ben-pw\n");
    state.chain.forget_verdicts();
    token_for(&state, "ben", &bens, pull)
        .await
        .assert_error(StatusCode::UNAUTHORIZED);
}

/// The password form takes a password the provider checked, never a token
/// (an introspected access token would become long-lived app passwords),
/// and the actions ticked hold even without a repository pattern.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_password_form_takes_passwords_and_keeps_to_the_actions_ticked() {
    let idp = crate::support::idp::Idp::start();
    let f = Fixture::new();
    let section = format!(
        "\n[app_passwords]\nkey_file = \"{}\"\nlogin_form = [\"keycloak\"]\n",
        f.path("app-passwords.key").display()
    );
    let config = f
        .config(&format!(
            "{}\n[[rule]]\ngroups = [\"keycloak:platform/core\"]\nrepos = [\"platform/**\"]\nactions = [\"pull\", \"push\"]\n{section}",
            idp.provider_toml("keycloak", "introspection = true")
        ));
    let config_path = f.path("regauth.toml");
    config.write(&config_path);
    let state = config.state();
    // an opaque access token under the introspection username: a good
    // login at /auth, but no session on the page
    let push = "repository:platform/app:pull,push";
    assert_eq!(
        token_for(
            &state,
            "oauth2accesstoken",
            "opaque-ci-token-1",
            "repository:ci/tool:pull"
        )
        .await
        .status,
        StatusCode::OK
    );
    let mut jar = Jar::default();
    let form = page(&state, &mut jar, "/ui/").await;
    let refused = submit(
        &state,
        &mut jar,
        "/ui/signin",
        &[
            ("username", "oauth2accesstoken"),
            ("password", "opaque-ci-token-1"),
            ("csrf", &csrf(&form)),
        ],
    )
    .await;
    assert_eq!(
        refused.status,
        StatusCode::UNAUTHORIZED,
        "{}",
        refused.text()
    );
    assert!(!jar.0.contains_key("regauth_session"));

    // kate's password: signed in; "pull" ticked and no pattern is pull only
    let token = sign_in(&state, &mut jar, "kate", "kate-pw").await;
    let pull_only = create(&state, &mut jar, &token, "pull", "", &["pull"]).await;
    assert_eq!(
        token_for(&state, "kate", &pull_only, push).await.actions(),
        ["pull"]
    );
    let full = create(&state, &mut jar, &token, "full", "", ALL).await;
    assert_eq!(
        token_for(&state, "kate", &full, push).await.actions(),
        ["pull", "push"]
    );
    // no action ticked is no app password
    let none = submit(
        &state,
        &mut jar,
        "/ui/passwords",
        &[
            ("csrf", &token),
            ("name", "none"),
            ("days", "30"),
            ("repos", ""),
        ],
    )
    .await;
    assert_eq!(none.status, StatusCode::BAD_REQUEST, "{}", none.text());

    // offboarded (`regauth tokens revoke --user kate`): her app passwords
    // end once their verdicts' TTL has passed, and the page session she
    // still has is over (her sign-in, which stood in for the IdP, is gone):
    // it mints nothing
    let out = tokens_revoke(&config_path, "KATE");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    state.chain.forget_verdicts();
    token_for(&state, "kate", &full, push)
        .await
        .assert_error(StatusCode::UNAUTHORIZED);
    let again = submit(
        &state,
        &mut jar,
        "/ui/passwords",
        &[
            ("csrf", &token),
            ("name", "again"),
            ("days", "30"),
            ("actions", "pull"),
        ],
    )
    .await;
    assert_eq!(again.status, StatusCode::SEE_OTHER, "{}", again.text());
    assert_eq!(
        again.header("location"),
        Some("/ui/"),
        "back to the sign-in page"
    );
    assert!(page(&state, &mut jar, "/ui/")
        .await
        .text()
        .contains("Sign in"));
}

/// Two replicas sharing Redis and the key files: an app password made on
/// one logs in on the other, the page's session works on both, and a
/// revocation on one holds on the other; every step is in the audit log.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_share_app_passwords_through_redis() {
    let log = log_capture();
    let redis = crate::support::redis::Redis::start();
    let f = Fixture::new();
    let config = ui_config(&f, &redis.state_toml());
    let (a, b) = (config.state(), config.state());
    assert_eq!(a.store.backend(), "redis");
    let mut jar = Jar::default();
    let token = sign_in(&a, &mut jar, "writer", "writer-pw").await;
    let secret = create(&a, &mut jar, &token, "shared", "", ALL).await;
    let id = id_of(&secret);
    let pull = "repository:team/app:pull";
    assert_eq!(
        token_for(&b, "writer", &secret, pull).await.actions(),
        ["pull"]
    );
    // the session made on A is a session on B
    let listed = page(&b, &mut jar, "/ui/").await.text();
    assert!(listed.contains("shared"), "{listed}");
    let r = revoke(&b, &mut jar, &id, &token).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.text());
    a.chain.forget_verdicts(); // A's verdict's TTL passes
    token_for(&a, "writer", &secret, pull)
        .await
        .assert_error(StatusCode::UNAUTHORIZED);
    let audit = log.text();
    for event in [
        "app_password_created",
        "app_password_used",
        "app_password_revoked",
    ] {
        assert!(
            audit.lines().any(|l| l.contains(event) && l.contains(&id)),
            "an audit line for {event}"
        );
    }
    assert!(
        !audit.contains(&secret),
        "the secret never reaches a log line"
    );
}

/// A sign-in cookie replayed with made-up codes: each refused answer costs
/// the client's failure budget, so the IdP's token endpoint is not asked
/// without end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn made_up_codes_on_the_callback_spend_the_clients_budget() {
    let f = Fixture::new();
    let ui = "http://127.0.0.1:9/ui";
    let idp = LoginIdp::start(&format!("{ui}/callback"), "regauth-browser-secret");
    let secret_file = f.path("client.secret");
    std::fs::write(&secret_file, "regauth-browser-secret\n").unwrap();
    let extra = format!(
        "\n[[provider]]\nname = \"sso\"\nkind = \"oidc\"\nissuer = \"{}\"\nclient_id = \"regauth\"\nclient_secret_file = \"{}\"\nbrowser_login = true\naccess_tokens = false\ntimeout = \"5s\"\n\n[app_passwords]\nkey_file = \"{}\"\nurl = \"{ui}\"\n",
        idp.issuer,
        secret_file.display(),
        f.path("app-passwords.key").display(),
    );
    let state = f.config(&extra).set("cache.max_client_failures", 3).state();
    let mut jar = Jar::default();
    let begun = page(&state, &mut jar, "/ui/signin/sso").await;
    assert_eq!(begun.status, StatusCode::SEE_OTHER, "{}", begun.text());
    let location = begun.header("location").unwrap().to_owned();
    let (_, query) = location.split_once('?').expect("a query");
    let returned_state = form_urlencoded::parse(query.as_bytes())
        .find(|(k, _)| k == "state")
        .map(|(_, v)| v.into_owned())
        .expect("the authorization URL has a state");
    let callback = format!("/ui/callback?code=made-up&state={returned_state}");
    for _ in 0..3 {
        let mut replayed = jar.clone();
        let r = page(&state, &mut replayed, &callback).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{}", r.text());
    }
    let mut replayed = jar.clone();
    let r = page(&state, &mut replayed, &callback).await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS, "{}", r.text());
}

/// Under https the page's cookies are `__Host-` cookies (Secure, `Path=/`,
/// no Domain): a sibling subdomain cannot plant one, and a cookie without
/// the prefix is no session.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_https_the_cookies_are_host_only() {
    let f = Fixture::new();
    let state = ui_config(&f, "")
        .set("app_passwords.url", "https://auth.test/ui")
        .state();
    let mut jar = Jar::default();
    let form = page(&state, &mut jar, "/ui/").await;
    let set: Vec<&str> = form
        .headers
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap())
        .collect();
    assert!(!set.is_empty());
    for cookie in &set {
        assert!(cookie.starts_with("__Host-regauth_"), "{cookie}");
        for attribute in ["Secure", "HttpOnly", "SameSite=Lax", "Path=/"] {
            assert!(
                cookie.split("; ").any(|a| a == attribute),
                "{attribute}: {cookie}"
            );
        }
        assert!(!cookie.contains("Domain"), "{cookie}");
    }
    sign_in(&state, &mut jar, "writer", "writer-pw").await;
    let session = jar
        .0
        .get("__Host-regauth_session")
        .cloned()
        .expect("a session");
    let mut planted = Jar::default();
    planted.0.insert("regauth_session".into(), session);
    assert!(page(&state, &mut planted, "/ui/")
        .await
        .text()
        .contains("Sign in"));
}

/// Offboarding: `regauth tokens revoke --user` also revokes that user's app
/// passwords, and a running server with the embedded backend honours it
/// (it reads the records file again when it changes).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_revoke_ends_a_users_app_passwords_on_a_running_server() {
    let f = Fixture::new();
    let config = ui_config(&f, "");
    let config_path = f.path("regauth.toml");
    config.write(&config_path);
    let state = config.state();
    let mut jar = Jar::default();
    let token = sign_in(&state, &mut jar, "writer", "writer-pw").await;
    let writers = create(&state, &mut jar, &token, "laptop", "", ALL).await;
    let mut jar = Jar::default();
    let token = sign_in(&state, &mut jar, "reader", "reader-pw").await;
    let readers = create(&state, &mut jar, &token, "laptop", "", ALL).await;
    let pull = "repository:team/app:pull";
    assert_eq!(
        token_for(&state, "writer", &writers, pull).await.status,
        StatusCode::OK
    );

    let out = tokens_revoke(&config_path, "writer");
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(said.contains("revoked 1 app password"), "{said}");
    state.chain.forget_verdicts(); // the verdict's TTL passes
    token_for(&state, "writer", &writers, pull)
        .await
        .assert_error(StatusCode::UNAUTHORIZED);
    assert_eq!(
        token_for(&state, "reader", &readers, pull).await.status,
        StatusCode::OK
    );
    let everyone = page(&state, &mut jar, "/ui/admin").await.text();
    assert!(
        everyone.contains("reader (local)") && !everyone.contains("writer (local)"),
        "{everyone}"
    );
}
