//! Device logins (RFC 8628): a terminal asks for a code, its user signs
//! in on the page and approves, the terminal's poll gets an identity
//! token that the refresh grant takes; denied, expired, reused and
//! guessed codes; revocation on the page, with `regauth tokens revoke`
//! and at the revocation endpoint. The real docker CLI, skopeo and
//! chromium through the credential helper are in `device_tools.rs`.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};

use crate::support::page::*;
use crate::support::*;
use regauth::AppState;

const DEVICE_GRANT: &str = "urn:ietf:params:oauth:grant-type:device_code";

async fn form(state: &Arc<AppState>, path: &str, pairs: &[(&str, &str)]) -> Reply {
    let body: String = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(pairs)
        .finish();
    let request = Request::post(path)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(Body::from(body))
        .unwrap();
    call(state, request).await
}

/// A device login started by `client`: (device code, user code, answer).
async fn start(state: &Arc<AppState>, client: &str) -> (String, String, serde_json::Value) {
    let started = form(state, "/auth/device", &[("client_id", client)]).await;
    assert_eq!(started.status, StatusCode::OK, "{}", started.text());
    let body = started.json();
    (
        body["device_code"].as_str().unwrap().to_owned(),
        body["user_code"].as_str().unwrap().to_owned(),
        body,
    )
}

async fn poll(state: &Arc<AppState>, code: &str, client: &str) -> Reply {
    form(
        state,
        "/auth/token",
        &[
            ("grant_type", DEVICE_GRANT),
            ("device_code", code),
            ("client_id", client),
            ("service", SERVICE),
        ],
    )
    .await
}

/// The RFC 8628 error of a poll that got no token.
fn waits(reply: &Reply, error: &str) {
    assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{}", reply.text());
    assert_eq!(reply.json()["error"], error, "{}", reply.text());
}

async fn refresh(state: &Arc<AppState>, token: &str, scope: &str) -> Reply {
    form(
        state,
        "/auth/token",
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", token),
            ("client_id", "docker"),
            ("service", SERVICE),
            ("scope", scope),
        ],
    )
    .await
}

/// Enters `code` on the page and answers (`approve` or `deny`).
async fn answer(state: &Arc<AppState>, jar: &mut Jar, code: &str, answer: &str) -> Reply {
    let entry = page(state, jar, "/ui/device").await;
    let confirm = submit(
        state,
        jar,
        "/ui/device",
        &[("csrf", &csrf(&entry)), ("user_code", code)],
    )
    .await;
    assert_eq!(confirm.status, StatusCode::OK, "{}", confirm.text());
    submit(
        state,
        jar,
        "/ui/device/answer",
        &[
            ("csrf", &csrf(&confirm)),
            ("user_code", code),
            ("answer", answer),
        ],
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_login_goes_as_rfc_8628_says() {
    let clock = Clock::take();
    let f = Fixture::new();
    let state = ui_config(&f, "").state();

    // the metadata names the endpoints
    let meta = page(
        &state,
        &mut Jar::default(),
        "/.well-known/oauth-authorization-server",
    )
    .await;
    assert_eq!(meta.status, StatusCode::OK);
    let meta = meta.json();
    assert!(
        meta["device_authorization_endpoint"]
            .as_str()
            .unwrap()
            .ends_with("/auth/device"),
        "{meta}"
    );
    assert!(meta["grant_types_supported"]
        .as_array()
        .unwrap()
        .iter()
        .any(|g| g == DEVICE_GRANT));

    // a client must name itself; an unknown service is refused
    form(&state, "/auth/device", &[])
        .await
        .assert_error(StatusCode::BAD_REQUEST);
    form(
        &state,
        "/auth/device",
        &[("client_id", "docker"), ("service", "other")],
    )
    .await
    .assert_error(StatusCode::BAD_REQUEST);
    let (device_code, user_code, started) = start(&state, "docker").await;
    assert_eq!(started["interval"], 5);
    assert_eq!(started["expires_in"], 600);
    let verification = started["verification_uri"].as_str().unwrap();
    assert!(verification.ends_with("/ui/device"), "{started}");
    let complete = started["verification_uri_complete"].as_str().unwrap();
    assert!(
        complete.ends_with(&format!("/ui/device?user_code={user_code}")),
        "{started}"
    );

    // polled: pending; sooner than the interval: slow down; another
    // client's poll with this code: nothing
    waits(
        &poll(&state, &device_code, "docker").await,
        "authorization_pending",
    );
    waits(&poll(&state, &device_code, "docker").await, "slow_down");
    waits(&poll(&state, &device_code, "crane").await, "invalid_grant");

    // the verification URL, signed out: the sign-in page, then back to
    // the device page with the code
    let mut jar = Jar::default();
    let path = &complete[complete.find("/ui/").unwrap()..];
    let signin = page(&state, &mut jar, path).await;
    assert!(
        signin.text().contains("Sign in with your password"),
        "{}",
        signin.text()
    );
    let signed = submit(
        &state,
        &mut jar,
        "/ui/signin",
        &[
            ("username", "writer"),
            ("password", "writer-pw"),
            ("csrf", &csrf(&signin)),
        ],
    )
    .await;
    assert_eq!(signed.status, StatusCode::SEE_OTHER, "{}", signed.text());
    assert_eq!(signed.headers["location"], path);
    let entry = page(&state, &mut jar, path).await;
    assert!(
        entry.text().contains(&format!("value=\"{user_code}\"")),
        "{}",
        entry.text()
    );
    let confirm = submit(
        &state,
        &mut jar,
        "/ui/device",
        &[
            ("csrf", &csrf(&entry)),
            ("user_code", &user_code.to_lowercase()),
        ],
    )
    .await;
    let text = confirm.text();
    assert!(
        text.contains("<dd id=\"client\">docker</dd>") && text.contains(SERVICE),
        "{text}"
    );
    let approved = submit(
        &state,
        &mut jar,
        "/ui/device/answer",
        &[
            ("csrf", &csrf(&confirm)),
            ("user_code", &user_code),
            ("answer", "approve"),
        ],
    )
    .await;
    assert!(
        approved.text().contains("Device login approved"),
        "{}",
        approved.text()
    );

    // the code entered again: used
    let again = submit(
        &state,
        &mut jar,
        "/ui/device",
        &[("csrf", &csrf(&entry)), ("user_code", &user_code)],
    )
    .await;
    assert_eq!(again.status, StatusCode::CONFLICT, "{}", again.text());

    // the next poll after the (grown) interval: a token and the identity token
    clock.advance(Duration::from_secs(11));
    let got = poll(&state, &device_code, "docker").await;
    assert_eq!(got.status, StatusCode::OK, "{}", got.text());
    let body = got.json();
    let identity_token = body["refresh_token"].as_str().unwrap().to_owned();
    assert!(
        identity_token.starts_with("rga_") && body["access_token"].is_string(),
        "{body}"
    );
    waits(&poll(&state, &device_code, "docker").await, "invalid_grant");

    // the refresh grant takes it, with the approving user's rights
    let pushed = refresh(&state, &identity_token, "repository:team/app:pull,push").await;
    assert_eq!(pushed.status, StatusCode::OK, "{}", pushed.text());
    assert_eq!(pushed.actions(), ["pull", "push"]);
    let elsewhere = refresh(&state, &identity_token, "repository:other/app:push").await;
    assert!(elsewhere.actions().is_empty(), "{}", elsewhere.text());

    // listed on the page as a device login, and revoked there
    let home = page(&state, &mut jar, "/ui/").await;
    assert!(
        home.text().contains("device login: docker"),
        "{}",
        home.text()
    );
    let id = id_of(&identity_token);
    revoke(&state, &mut jar, &id, &csrf(&home)).await;
    state.chain.forget_verdicts();
    refresh(&state, &identity_token, "repository:team/app:pull")
        .await
        .assert_error(StatusCode::UNAUTHORIZED);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn denied_expired_and_guessed_codes_get_nothing() {
    let clock = Clock::take();
    let f = Fixture::new();
    let state = ui_config(&f, "")
        .set("cache.max_client_failures", 4)
        .state();
    let mut jar = Jar::default();
    sign_in(&state, &mut jar, "writer", "writer-pw").await;

    // denied: the client is told so, once
    let (device_code, user_code, _) = start(&state, "docker").await;
    let denied = answer(&state, &mut jar, &user_code, "deny").await;
    assert!(
        denied.text().contains("Device login denied"),
        "{}",
        denied.text()
    );
    waits(&poll(&state, &device_code, "docker").await, "access_denied");
    waits(&poll(&state, &device_code, "docker").await, "invalid_grant");

    // expired: for the client and on the page
    let (device_code, user_code, _) = start(&state, "docker").await;
    clock.advance(Duration::from_secs(601));
    let entry = page(&state, &mut jar, "/ui/device").await;
    let late = submit(
        &state,
        &mut jar,
        "/ui/device",
        &[("csrf", &csrf(&entry)), ("user_code", &user_code)],
    )
    .await;
    assert_eq!(late.status, StatusCode::BAD_REQUEST, "{}", late.text());
    waits(&poll(&state, &device_code, "docker").await, "expired_token");

    // made-up codes spend the network's budget (four, the expired code
    // above one of them): then even a real one waits
    let (_, user_code, _) = start(&state, "docker").await;
    let mut statuses = Vec::new();
    for wrong in [
        "BBBB-BBBB",
        "CCCC-CCCC",
        "DDDD-DDDD",
        "FFFF-FFFF",
        "GGGG-GGGG",
    ] {
        let entry = page(&state, &mut jar, "/ui/device").await;
        let tried = submit(
            &state,
            &mut jar,
            "/ui/device",
            &[("csrf", &csrf(&entry)), ("user_code", wrong)],
        )
        .await;
        statuses.push(tried.status.as_u16());
    }
    assert_eq!(statuses, [400, 400, 400, 429, 429]);
    let entry = page(&state, &mut jar, "/ui/device").await;
    let held = submit(
        &state,
        &mut jar,
        "/ui/device",
        &[("csrf", &csrf(&entry)), ("user_code", &user_code)],
    )
    .await;
    assert_eq!(
        held.status,
        StatusCode::TOO_MANY_REQUESTS,
        "{}",
        held.text()
    );

    // a form without the session's token is refused
    let forged = submit(
        &state,
        &mut jar,
        "/ui/device/answer",
        &[
            ("csrf", "forged"),
            ("user_code", &user_code),
            ("answer", "approve"),
        ],
    )
    .await;
    assert_eq!(forged.status, StatusCode::FORBIDDEN);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_revoke_and_logout_end_device_logins() {
    let clock = Clock::take();
    let f = Fixture::new();
    let config = ui_config(&f, "");
    let config_path = f.path("regauth.toml");
    config.write(&config_path);
    let state = config.state();
    let mut jar = Jar::default();
    sign_in(&state, &mut jar, "writer", "writer-pw").await;
    let mut tokens = Vec::new();
    for _ in 0..2 {
        let (device_code, user_code, _) = start(&state, "regauth-login").await;
        answer(&state, &mut jar, &user_code, "approve").await;
        clock.advance(Duration::from_secs(6));
        let got = poll(&state, &device_code, "regauth-login").await;
        assert_eq!(got.status, StatusCode::OK, "{}", got.text());
        tokens.push(got.json()["refresh_token"].as_str().unwrap().to_owned());
    }

    // the revocation endpoint (`regauth logout`) ends the one it is given
    let revoked = form(&state, "/auth/revoke", &[("token", &tokens[0])]).await;
    assert_eq!(revoked.status, StatusCode::OK, "{}", revoked.text());
    let unknown = form(&state, "/auth/revoke", &[("token", "rga_nothing")]).await;
    assert_eq!(
        unknown.status,
        StatusCode::OK,
        "RFC 7009: 200 for any token"
    );
    state.chain.forget_verdicts();
    refresh(&state, &tokens[0], "repository:team/app:pull")
        .await
        .assert_error(StatusCode::UNAUTHORIZED);
    assert_eq!(
        refresh(&state, &tokens[1], "repository:team/app:pull")
            .await
            .status,
        StatusCode::OK
    );

    // `regauth tokens revoke --user writer` ends the other
    let out = tokens_revoke(&config_path, "writer");
    assert!(out.status.success(), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("revoked 1 app password"),
        "{out:?}"
    );
    state.chain.forget_verdicts();
    refresh(&state, &tokens[1], "repository:team/app:pull")
        .await
        .assert_error(StatusCode::UNAUTHORIZED);
}
