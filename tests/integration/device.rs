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

/// `regauth login` on a terminal, its user approving in chromium at the
/// test IdP's login page; then the real docker CLI (through a private
/// dockerd) and skopeo push and pull through registry 2.8 with the
/// identity token that `docker-credential-regauth` hands them, until
/// `regauth logout`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn docker_and_skopeo_use_a_device_login_approved_in_a_browser() {
    use crate::support::browser::{browser, sso_page_toml, LoginIdp};
    use crate::support::docker::Dockerd;
    use tokio::io::AsyncBufReadExt as _;

    let f = Fixture::new();
    let addr = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap()
    };
    let ui = format!("http://{addr}/ui");
    let idp = LoginIdp::start(&format!("{ui}/callback"), "regauth-browser-secret");
    // a provider for the browser sign-in alone, naming no audiences
    let extra = sso_page_toml(&f, &idp, &ui, "");
    // the realm the registry announces is the one regauth's metadata
    // names (regauth login checks that they agree)
    let config = f
        .config(&extra)
        .set("server.realm", format!("http://{addr}/auth"));
    let server = Server::start_at(config, addr).await;
    let registry = Registry::start(&server.realm(), &f.cert).await;
    let engine = tokio::task::spawn_blocking(Dockerd::start).await.unwrap();
    let host = registry.addr.to_string();

    // the user's terminal: its own home, docker and containers configs,
    // and the helper on its PATH
    let home = tempfile::tempdir().unwrap();
    let docker_config = home.path().join("docker");
    let auth_file = home.path().join("containers-auth.json");
    let helper = std::path::Path::new(env!("CARGO_BIN_EXE_docker-credential-regauth"));
    let path = format!(
        "{}:{}",
        helper.parent().unwrap().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let env: Vec<(&str, &str)> = vec![
        ("HOME", home.path().to_str().unwrap()),
        ("PATH", &path),
        ("DOCKER_CONFIG", docker_config.to_str().unwrap()),
        ("REGISTRY_AUTH_FILE", auth_file.to_str().unwrap()),
        ("XDG_CONFIG_HOME", ""),
    ];

    // regauth login prints the URL and the code, and waits
    let mut login = tokio::process::Command::new(env!("CARGO_BIN_EXE_regauth"))
        .args(["login", &host, "--no-browser"])
        .envs(env.iter().copied())
        .env_remove("DISPLAY")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = tokio::io::BufReader::new(login.stdout.take().unwrap()).lines();
    let mut printed = Vec::new();
    while printed.len() < 4 {
        let line = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
            .await
            .expect("regauth login printed its URL and code")
            .unwrap()
            .unwrap_or_else(|| panic!("regauth login ended: {printed:?}, see its stderr"));
        printed.push(line);
    }
    let (url, code) = (printed[1].clone(), printed[3].clone());
    assert!(
        url.starts_with(&format!("{ui}/device?user_code=")),
        "{printed:?}"
    );
    assert_eq!(code.len(), 9, "{printed:?}");

    // the user approves in the browser, after the IdP's sign-in
    let work = tempfile::tempdir().unwrap();
    let shots = crate::support::browser::screenshots(work.path());
    let options =
        serde_json::json!({"url": url, "user": "dana", "answer": "approve", "shots": shots});
    let answered = browser(&options, "device").await;
    assert_eq!(answered["client"], "regauth-login", "{answered}");
    assert_eq!(answered["code"], code.as_str(), "{answered}");
    assert_eq!(answered["answered"], "Device login approved", "{answered}");
    for shot in [
        "device-sign-in",
        "device-code",
        "device-approve",
        "device-approve-phone",
        "device-approved",
    ] {
        assert!(shots.join(format!("{shot}.png")).is_file(), "{shot}.png");
    }
    let status = tokio::time::timeout(Duration::from_secs(60), login.wait())
        .await
        .expect("regauth login finished after the approval")
        .unwrap();
    assert!(status.success(), "regauth login failed");
    for config in [docker_config.join("config.json"), auth_file.clone()] {
        let text = std::fs::read_to_string(&config).unwrap();
        let json: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(
            json["credHelpers"][&host],
            "regauth",
            "{}: {text}",
            config.display()
        );
    }

    // the docker CLI pushes and pulls with the helper's identity token
    let tree = work.path().join("rootfs");
    std::fs::create_dir_all(&tree).unwrap();
    std::fs::write(tree.join("hello.txt"), "from a device login\n").unwrap();
    let tar = work.path().join("rootfs.tar");
    let packed = std::process::Command::new("tar")
        .arg("-cf")
        .arg(&tar)
        .arg("-C")
        .arg(&tree)
        .arg(".")
        .status()
        .unwrap();
    assert!(packed.success());
    let docker = |args: &[&str]| engine.docker_env(&docker_config, args, None, &env);
    let image = format!("{host}/platform/app:v1");
    let imported = docker(&["import", tar.to_str().unwrap(), &image]);
    assert!(imported.ok, "{imported:?}");
    let pushed = docker(&["push", &image]);
    assert!(pushed.ok, "docker push: {pushed:?}\n{}", registry.log());
    assert!(docker(&["rmi", &image]).ok);
    let pulled = docker(&["pull", &image]);
    assert!(pulled.ok, "docker pull: {pulled:?}");
    // where the user may not push, the identity token gets no push
    let elsewhere = format!("{host}/other/app:v1");
    assert!(docker(&["tag", &image, &elsewhere]).ok);
    let denied = docker(&["push", &elsewhere]);
    assert!(!denied.ok, "pushed outside the user's rights: {denied:?}");

    // skopeo reads the same helper through auth.json
    let layout = work.path().join("layout");
    crate::support::oci::build_image(&layout, "latest", 1, "device-login");
    let source = format!("oci:{}:latest", layout.display());
    let target = format!("docker://{host}/platform/app:v2");
    let copied = skopeo_env(
        work.path(),
        &["copy", "--dest-tls-verify=false", &source, &target],
        &env,
    )
    .await;
    assert!(copied.ok, "skopeo copy: {copied:?}");

    // the helper's file is the user's alone, and holds the identity token
    let stored = home.path().join(".config/regauth/credentials.json");
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&stored).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }
    let stored: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&stored).unwrap()).unwrap();
    let token = stored["registries"][&host]["secret"]
        .as_str()
        .unwrap()
        .to_owned();

    // regauth logout revokes it: the next push is refused
    let logout = tokio::process::Command::new(env!("CARGO_BIN_EXE_regauth"))
        .args(["logout", &host])
        .envs(env.iter().copied())
        .output()
        .await
        .unwrap();
    assert!(logout.status.success(), "{logout:?}");
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(docker_config.join("config.json")).unwrap())
            .unwrap();
    assert!(json["credHelpers"].get(&host).is_none(), "{json}");
    server.state.chain.forget_verdicts();
    let v3 = format!("{host}/platform/app:v3");
    assert!(docker(&["tag", &image, &v3]).ok);
    let refused = docker(&["push", &v3]);
    assert!(!refused.ok, "pushed after logout: {refused:?}");
    refresh(&server.state, &token, "repository:platform/app:pull")
        .await
        .assert_error(StatusCode::UNAUTHORIZED);
}

/// Two replicas on one Redis: a device login started on one is approved
/// on the other and polled on the first; the audit lines name every step
/// and never a code or the token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_share_device_logins_through_redis() {
    let clock = Clock::take();
    let log = log_capture();
    let redis = crate::support::redis::Redis::start();
    let f = Fixture::new();
    let config = ui_config(&f, &redis.state_toml());
    let (a, b) = (config.state(), config.state());
    assert_eq!(a.store.backend(), "redis");
    let (device_code, user_code, _) = start(&a, "docker").await;
    waits(
        &poll(&a, &device_code, "docker").await,
        "authorization_pending",
    );
    let mut jar = Jar::default();
    sign_in(&b, &mut jar, "writer", "writer-pw").await;
    let approved = answer(&b, &mut jar, &user_code, "approve").await;
    assert!(
        approved.text().contains("Device login approved"),
        "{}",
        approved.text()
    );
    clock.advance(Duration::from_secs(6));
    let got = poll(&a, &device_code, "docker").await;
    assert_eq!(got.status, StatusCode::OK, "{}", got.text());
    let token = got.json()["refresh_token"].as_str().unwrap().to_owned();
    // taken once, whichever replica is asked next
    waits(&poll(&b, &device_code, "docker").await, "invalid_grant");
    let pulled = refresh(&b, &token, "repository:team/app:pull").await;
    assert_eq!(pulled.actions(), ["pull"], "{}", pulled.text());

    let audit = log.text();
    for event in [
        "device_login_started",
        "device_login_approved",
        "app_password_created",
        "app_password_used",
    ] {
        assert!(audit.contains(event), "an audit line for {event}");
    }
    assert!(
        audit
            .lines()
            .any(|l| l.contains("\"grant\":\"device_code\"")
                && l.contains(&format!("\"service\":\"{SERVICE}\""))),
        "a refused poll's line keeps its grant and service:\n{audit}"
    );
    let (id, secret) = device_code["rgd_".len()..].split_once('_').unwrap();
    for secret in [secret, &user_code, &user_code.replace('-', ""), &token] {
        assert!(!audit.contains(secret), "a code or token reached the log");
    }
    assert!(
        !audit.contains(id),
        "the device code's id is logged by its first 8 characters only"
    );
}
