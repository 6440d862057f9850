//! End to end with the real components: Debian's `docker-registry`
//! (distribution 2.8) trusting regauth's certificate, and `skopeo` pushing
//! and pulling a locally built OCI image.

use std::path::Path;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use regauth::keys::KeyType;

use crate::support::oci::build_image;
use crate::support::*;

fn oci(dir: &Path, tag: &str) -> String {
    format!("oci:{}:{tag}", dir.display())
}

fn assert_denied(run: &Run, what: &str) {
    assert!(!run.ok, "{what} must fail: {run:?}");
    let err = run.stderr.to_lowercase();
    assert!(
        err.contains("denied")
            || err.contains("unauthorized")
            || err.contains("authentication required"),
        "{what}: unexpected error: {}",
        run.stderr
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn skopeo_push_pull_and_denials_against_registry_2_8() {
    let f = Fixture::new();
    let server = Server::start(f.config("")).await;
    let registry = Registry::start(&server.realm(), &f.cert).await;
    let reg = registry.addr;
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    let image = w.join("image");
    build_image(&image, "latest", 3, "e2e-main");

    let at = |repo: &str| format!("docker://{reg}/{repo}");

    let run = push(w, "writer:writer-pw", &image, &at("team/app:v1")).await;
    assert!(run.ok, "writer push: {run:?}\nregistry: {}", registry.log());

    // a reader pulls it back, layers and all
    let out = w.join("pulled");
    let run = skopeo(
        w,
        &[
            "copy",
            "--src-tls-verify=false",
            "--src-creds",
            "reader:reader-pw",
            &at("team/app:v1"),
            &oci(&out, "v1"),
        ],
    )
    .await;
    assert!(run.ok, "reader pull: {run:?}");
    let index: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("index.json")).unwrap()).unwrap();
    assert_eq!(index["manifests"].as_array().unwrap().len(), 1);
    let blobs = std::fs::read_dir(out.join("blobs/sha256")).unwrap().count();
    assert_eq!(blobs, 3 + 2, "3 layers, a config and a manifest");

    // the reader may not push
    let other = w.join("other");
    build_image(&other, "latest", 1, "e2e-reader-push");
    assert_denied(
        &push(w, "reader:reader-pw", &other, &at("team/app:v2")).await,
        "reader push",
    );

    // a wrong password fails, and never turns into anonymous access
    assert_denied(
        &inspect(w, Some("reader:wrong-pw"), &at("team/app:v1")).await,
        "wrong password",
    );

    // a password with colons and non-ASCII works end to end
    let run = push(w, "colon:p:a:ss wörd", &image, &at("public/base:v1")).await;
    assert!(run.ok, "colon push: {run:?}");

    // anonymous pull only where the policy allows it
    let run = inspect(w, None, &at("public/base:v1")).await;
    assert!(run.ok, "anonymous pull of public/: {run:?}");
    assert_denied(
        &inspect(w, None, &at("team/app:v1")).await,
        "anonymous pull of team/",
    );

    // a writer copies from public/ into team/ (cross-repository mount)
    let creds = "writer:writer-pw";
    let run = skopeo(
        w,
        &[
            "copy",
            "--src-tls-verify=false",
            "--dest-tls-verify=false",
            "--src-creds",
            creds,
            "--dest-creds",
            creds,
            &at("public/base:v1"),
            &at("team/base-copy:v1"),
        ],
    )
    .await;
    assert!(run.ok, "mount copy: {run:?}");

    // delete is its own action: the admin may, the writer may not
    let delete = |creds: &'static str, repo: String| async move {
        skopeo(
            w,
            &["delete", "--tls-verify=false", "--creds", creds, &repo],
        )
        .await
    };
    let run = delete("admin:admin-pw", at("team/base-copy:v1")).await;
    assert!(run.ok, "admin delete: {run:?}");
    assert_denied(
        &delete("writer:writer-pw", at("team/app:v1")).await,
        "writer delete",
    );
}

/// Today's crane (go-containerregistry, the client most CI tools embed)
/// against registry 2.8, on the realm regauth's configuration announces by
/// default. It refused the old default, `http://127.0.0.1:PORT/auth`:
/// "realm host \"127.0.0.1\" is a private or link-local address".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crane_push_pull_and_denials_on_the_default_realm() {
    let f = Fixture::new();
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], free_port()));
    let config = f.config("").set("server.listen", addr.to_string());
    let server = Server::start_at(config, addr).await;
    let realm = server.state.config.realm();
    let registry = Registry::start(&realm, &f.cert).await;
    let reg = registry.addr.to_string();
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    let image = w.join("image");
    build_image(&image, "latest", 2, "e2e-crane");
    let at = |repo: &str| format!("{reg}/{repo}");
    let crane = |creds, args: Vec<String>| {
        let reg = reg.clone();
        async move {
            let mut all = vec!["--insecure".to_owned()];
            all.extend(args);
            let args: Vec<&str> = all.iter().map(String::as_str).collect();
            crane(w, creds, &reg, &args).await
        }
    };
    let layout = image.display().to_string();

    let run = crane(
        Some("writer:writer-pw"),
        vec!["push".into(), layout.clone(), at("team/app:crane")],
    )
    .await;
    assert!(
        run.ok,
        "writer push with crane {CRANE_VERSION} (realm {realm}): {run:?}\nregistry: {}",
        registry.log()
    );
    let run = crane(
        Some("reader:reader-pw"),
        vec!["manifest".into(), at("team/app:crane")],
    )
    .await;
    assert!(run.ok, "reader pull: {run:?}");
    let manifest: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(
        manifest["layers"].as_array().map(Vec::len),
        Some(2),
        "{manifest}"
    );
    let tarball = w.join("pulled.tar").display().to_string();
    let run = crane(
        Some("reader:reader-pw"),
        vec!["pull".into(), at("team/app:crane"), tarball],
    )
    .await;
    assert!(run.ok, "reader pulls the layers: {run:?}");

    assert_denied(
        &crane(
            Some("reader:reader-pw"),
            vec!["push".into(), layout.clone(), at("team/app:reader")],
        )
        .await,
        "reader push",
    );
    assert_denied(
        &crane(
            Some("reader:wrong-pw"),
            vec!["manifest".into(), at("team/app:crane")],
        )
        .await,
        "wrong password",
    );
    assert_denied(
        &crane(None, vec!["manifest".into(), at("team/app:crane")]).await,
        "anonymous pull of team/",
    );
    crane_matrix_rest(&server, &reg, w, &layout).await;
}

/// The rest of crane's commands: `auth login`, a copy that mounts blobs
/// across repositories, an anonymous pull, the catalog, delete, and an
/// identity token in its `config.json` (which it presents with the POST
/// refresh grant).
async fn crane_matrix_rest(server: &Server, reg: &str, w: &std::path::Path, layout: &str) {
    let at = |repo: &str| format!("{reg}/{repo}");
    let config = w.join("crane-login");
    std::fs::create_dir_all(&config).unwrap();
    let crane = |args: &[&str]| {
        let mut all = vec!["--insecure"];
        all.extend_from_slice(args);
        let all: Vec<String> = all.iter().map(|s| s.to_string()).collect();
        let config = config.clone();
        async move {
            let args: Vec<&str> = all.iter().map(String::as_str).collect();
            crane_in(w, &config, &args).await
        }
    };
    let login = crane(&["auth", "login", reg, "-u", "writer", "-p", "writer-pw"]).await;
    assert!(login.ok, "crane auth login: {login:?}");
    let copy = crane(&["copy", &at("team/app:crane"), &at("team/mounted:crane")]).await;
    assert!(copy.ok, "crane copy (a cross-repository mount): {copy:?}");
    let public = crane(&["push", layout, &at("public/base:1")]).await;
    assert!(public.ok, "writer pushes public/: {public:?}");
    let anonymous = crate::support::crane(
        w,
        None,
        reg,
        &["--insecure", "manifest", &at("public/base:1")],
    )
    .await;
    assert!(anonymous.ok, "anonymous pull of public/: {anonymous:?}");
    assert_denied(
        &crane(&["delete", &at("team/mounted:crane")]).await,
        "writer delete",
    );
    assert_denied(&crane(&["catalog", reg]).await, "writer catalog");

    // admin: catalog and delete, with an identity token as its credential
    let url = format!("{}?service={SERVICE}&offline_token=true", server.realm());
    let reply = reqwest::Client::new()
        .get(url)
        .header("authorization", basic("admin", "admin-pw"))
        .send()
        .await
        .unwrap();
    let body: serde_json::Value = reply.json().await.unwrap();
    let identity = body["refresh_token"]
        .as_str()
        .expect("a refresh token")
        .to_owned();
    let auths = serde_json::json!({"auths": {reg: {"identitytoken": identity}}});
    std::fs::write(config.join("config.json"), auths.to_string()).unwrap();
    let catalog = crane(&["catalog", reg]).await;
    assert!(
        catalog.ok,
        "admin catalog with an identity token: {catalog:?}"
    );
    assert!(catalog.stdout.contains("team/mounted"), "{catalog:?}");
    let digest = crane(&["digest", &at("team/mounted:crane")]).await;
    assert!(digest.ok, "{digest:?}");
    let reference = at(&format!("team/mounted@{}", digest.stdout.trim()));
    let deleted = crane(&["delete", &reference]).await;
    assert!(
        deleted.ok,
        "admin delete with an identity token: {deleted:?}"
    );
    let gone = crane(&["manifest", &at("team/mounted:crane")]).await;
    assert!(!gone.ok, "deleted, yet still there: {gone:?}");
}

async fn registry_token(server: &Server, user: &str, password: &str, scope: &str) -> String {
    let url = format!("{}?service={SERVICE}&scope={scope}", server.realm());
    let reply = reqwest::Client::new()
        .get(url)
        .header("authorization", basic(user, password))
        .send()
        .await
        .unwrap();
    assert_eq!(reply.status(), 200);
    let body: serde_json::Value = reply.json().await.unwrap();
    body["token"].as_str().unwrap().to_owned()
}

/// Re-signs a regauth token with only a `kid` in the header (no `x5c`):
/// registry 2.8 then finds the key by its libtrust ID alone (item 58).
fn resign_kid_only(token: &str, key_pem: &str, kid: &str) -> String {
    use aws_lc_rs::signature::{EcdsaKeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
    let key = pem::parse(key_pem).unwrap();
    let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, key.contents()).unwrap();
    let claims = token.split('.').nth(1).unwrap();
    let header = serde_json::json!({ "typ": "JWT", "alg": "ES256", "kid": kid });
    let signed = format!("{}.{claims}", URL_SAFE_NO_PAD.encode(header.to_string()));
    let rng = aws_lc_rs::rand::SystemRandom::new();
    let sig = pair.sign(&rng, signed.as_bytes()).unwrap();
    format!("{signed}.{}", URL_SAFE_NO_PAD.encode(sig.as_ref()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registry_accepts_kid_only_tokens_and_answers_insufficient_scope() {
    let f = Fixture::new();
    let server = Server::start(f.config("")).await;
    let registry = Registry::start(&server.realm(), &f.cert).await;
    let client = reqwest::Client::new();
    let v2 = format!("http://{}/v2", registry.addr);

    let token = registry_token(&server, "reader", "reader-pw", "repository:team/app:pull").await;
    let tags = format!("{v2}/team/app/tags/list");
    // x5c token: accepted (the repository is unknown, so 404, not 401)
    let r = client.get(&tags).bearer_auth(&token).send().await.unwrap();
    assert_eq!(r.status(), 404, "x5c token accepted");

    // kid-only token: accepted by 2.8 through the libtrust key ID
    let key_pem = std::fs::read_to_string(&f.key).unwrap();
    let kid_only = resign_kid_only(&token, &key_pem, &server.state.issuer.keys().current.kid);
    let r = client
        .get(&tags)
        .bearer_auth(&kid_only)
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        404,
        "kid-only token accepted: {}",
        registry.log()
    );
    // a wrong kid is refused
    let wrong = resign_kid_only(
        &token,
        &key_pem,
        "AAAA:AAAA:AAAA:AAAA:AAAA:AAAA:AAAA:AAAA:AAAA:AAAA:AAAA:AAAA",
    );
    let r = client.get(&tags).bearer_auth(&wrong).send().await.unwrap();
    assert_eq!(r.status(), 401);

    // pull-only token used for a push: 401 insufficient_scope, not 403
    let r = client
        .post(format!("{v2}/team/app/blobs/uploads/"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let challenge = r.headers()["www-authenticate"].to_str().unwrap().to_owned();
    assert!(challenge.contains("insufficient_scope"), "{challenge}");
    assert!(challenge.contains(&server.realm()), "{challenge}");

    // the catalog: refused with a writer's token, granted with the admin's
    let catalog = format!("{v2}/_catalog");
    let status_with = |user: &'static str, password: &'static str| {
        let (server, client, catalog) = (&server, &client, &catalog);
        async move {
            let token = registry_token(server, user, password, "registry:catalog:*").await;
            let r = client
                .get(catalog)
                .bearer_auth(&token)
                .send()
                .await
                .unwrap();
            r.status()
        }
    };
    assert_eq!(status_with("writer", "writer-pw").await, 401);
    assert_eq!(status_with("admin", "admin-pw").await, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rs256_keys_work_with_registry_2_8() {
    let f = Fixture::with_key(KeyType::Rs256);
    let server = Server::start(f.config("")).await;
    assert_eq!(server.state.issuer.keys().current.algorithm.name(), "RS256");
    let registry = Registry::start(&server.realm(), &f.cert).await;
    let work = tempfile::tempdir().unwrap();
    let image = work.path().join("image");
    build_image(&image, "latest", 1, "e2e-rs256");
    let target = format!("docker://{}/team/rsa:v1", registry.addr);
    let run = push(work.path(), "writer:writer-pw", &image, &target).await;
    assert!(run.ok, "RS256 push: {run:?}\n{}", registry.log());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chunked_post_over_a_real_socket() {
    let f = Fixture::new();
    let server = Server::start(f.config("")).await;
    let chunks: Vec<Result<&'static str, std::io::Error>> = vec![
        Ok("grant_type=password&username=wri"),
        Ok("ter&password=writer-pw&service=registry.test"),
        Ok("&scope=repository%3Ateam%2Fa%3Apull"),
    ];
    let body = reqwest::Body::wrap_stream(futures_util::stream::iter(chunks));
    let r = reqwest::Client::new()
        .post(server.realm())
        .header(
            "content-type",
            "application/x-www-form-urlencoded; charset=utf-8",
        )
        .body(body)
        .send()
        .await
        .unwrap();
    assert!(r.headers().get("content-length").is_some() || r.status() == 200);
    assert_eq!(r.status(), 200);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["scope"], "repository:team/a:pull");
}

/// podman as a user drives it: `login` (a token request with no scope),
/// then push and pull with the stored credentials, and a wrong password.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn podman_login_push_pull() {
    let f = Fixture::new();
    let server = Server::start(f.config("")).await;
    let registry = Registry::start(&server.realm(), &f.cert).await;
    let reg = registry.addr.to_string();
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    let root = w.join("rootfs");
    std::fs::create_dir_all(&root).unwrap();
    std::fs::write(root.join("hello.txt"), "hello from podman\n").unwrap();
    let tar = w.join("rootfs.tar");
    let status = std::process::Command::new("tar")
        .arg("-C")
        .arg(&root)
        .arg("-cf")
        .arg(&tar)
        .arg(".")
        .status()
        .unwrap();
    assert!(status.success());
    let run = podman(w, &["import", tar.to_str().unwrap(), "localhost/hello:1"]).await;
    assert!(run.ok, "podman import: {run:?}");

    let login = |password: &'static str| {
        let reg = reg.clone();
        async move {
            podman(
                w,
                &[
                    "login",
                    "--tls-verify=false",
                    "-u",
                    "writer",
                    "-p",
                    password,
                    &reg,
                ],
            )
            .await
        }
    };
    let run = login("wrong").await;
    assert!(!run.ok, "login with a wrong password must fail: {run:?}");
    let run = login("writer-pw").await;
    assert!(run.ok, "podman login: {run:?}");
    let target = format!("{reg}/team/podman:1");
    let run = podman(
        w,
        &["push", "--tls-verify=false", "localhost/hello:1", &target],
    )
    .await;
    assert!(
        run.ok,
        "podman push after login: {run:?}\n{}",
        registry.log()
    );
    let run = podman(w, &["rmi", "localhost/hello:1"]).await;
    assert!(run.ok, "{run:?}");
    let run = podman(w, &["pull", "--tls-verify=false", &target]).await;
    assert!(run.ok, "podman pull: {run:?}");
    let run = podman(w, &["logout", &reg]).await;
    assert!(run.ok, "{run:?}");
    let run = podman(w, &["pull", "--tls-verify=false", &target]).await;
    assert!(!run.ok, "anonymous pull of team/ must fail: {run:?}");
}
