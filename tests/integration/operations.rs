//! Running regauth the way a platform team does: two replicas sharing
//! Redis behind a real nginx, Redis going away, an HTTPS listener whose
//! certificate is replaced, a signing-key rotation with the real registry,
//! a full reload on a real SIGHUP, and kid-only tokens for JWKS-only
//! registries.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::http::StatusCode;

use crate::support::nginx::Nginx;
use crate::support::oci::build_image;
use crate::support::redis::Redis;
use crate::support::*;

fn addr() -> SocketAddr {
    format!("127.0.0.1:{}", free_port()).parse().unwrap()
}

/// A token request over HTTP (GET, Basic credentials).
async fn http_token(
    client: &reqwest::Client,
    at: SocketAddr,
    user: &str,
    password: &str,
    query: &str,
) -> reqwest::Response {
    client
        .get(format!("http://{at}/auth?service={SERVICE}&{query}"))
        .header("authorization", basic(user, password))
        .send()
        .await
        .unwrap()
}

/// A refresh grant over HTTP; the status.
async fn http_refresh(client: &reqwest::Client, at: SocketAddr, token: &str) -> u16 {
    client
        .post(format!("http://{at}/auth"))
        .form(&[
            ("grant_type", "refresh_token"),
            ("service", SERVICE),
            ("client_id", "docker"),
            ("refresh_token", token),
            ("scope", "repository:team/app:pull"),
        ])
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

/// Two replicas behind nginx sharing Redis and the keys: a refresh token of
/// one works on the other, a revocation on one holds on the other within a
/// second, the failure throttle counts across both, and killing one in the
/// middle of a load run loses no request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_behind_nginx_share_redis() {
    let redis = Redis::start();
    let f = Fixture::new();
    let (a, b) = (addr(), addr());
    let config = |at: SocketAddr, name: &str| {
        let path = f.path(name);
        f.config(&redis.state_toml())
            .listen(at)
            .set("cache.max_failures", 3)
            .set("cache.max_client_failures", 100000)
            .write(&path);
        path
    };
    let (a_config, b_config) = (config(a, "a.toml"), config(b, "b.toml"));
    let replica_a = Regauth::start(&a_config, a, &[]).await;
    let replica_b = Regauth::start(&b_config, b, &[]).await;
    let nginx = Nginx::start(&[a, b]);
    let client = reqwest::Client::new();

    // a refresh token minted by A works on B
    let login = http_token(&client, a, "writer", "writer-pw", "offline_token=true").await;
    let body: serde_json::Value = login.json().await.unwrap();
    let rt = body["refresh_token"]
        .as_str()
        .expect("refresh_token")
        .to_owned();
    assert_eq!(
        http_refresh(&client, b, &rt).await,
        200,
        "A's refresh token on B"
    );

    // revoked with the CLI (through Redis), refused by B within a second
    let (ok, _, stderr) = regauth_cli(&[
        "tokens",
        "revoke",
        "--config",
        a_config.to_str().unwrap(),
        "--user",
        "writer",
    ]);
    assert!(ok, "{stderr}");
    let revoked = Instant::now();
    while http_refresh(&client, b, &rt).await != 401 {
        assert!(
            revoked.elapsed() < Duration::from_secs(1),
            "B still accepts it"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    println!(
        "revocation honoured by the other replica after {:?}",
        revoked.elapsed()
    );

    // the throttle counts across both: 3 failures on A, B, A hold B back
    for at in [a, b, a] {
        let r = http_token(
            &client,
            at,
            "reader",
            "wrong",
            "scope=repository:team/app:pull",
        )
        .await;
        assert_eq!(r.status(), 401);
    }
    let held = http_token(
        &client,
        b,
        "reader",
        "reader-pw",
        "scope=repository:team/app:pull",
    )
    .await;
    assert_eq!(held.status(), 401, "B counts A's failures");

    // kill A in the middle of a load run through nginx: nothing is lost
    let done = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for worker in 0..8 {
        let (client, done) = (client.clone(), done.clone());
        let front = nginx.addr;
        tasks.push(tokio::spawn(async move {
            let mut failures = Vec::new();
            for i in 0..250 {
                let scope = format!("scope=repository:team/app{}:pull", (worker * 1000 + i) % 50);
                let r = http_token(&client, front, "writer", "writer-pw", &scope).await;
                if r.status() != 200 {
                    failures.push(r.status().as_u16());
                }
                done.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            }
            failures
        }));
    }
    while done.load(std::sync::atomic::Ordering::SeqCst) < 500 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let mut replica_a = replica_a;
    replica_a.process.child.kill().unwrap(); // SIGKILL
    let _ = replica_a.process.child.wait();
    let mut failures = Vec::new();
    for t in tasks {
        failures.extend(t.await.unwrap());
    }
    println!(
        "2000 token requests through nginx, replica A killed after 500: {} failed",
        failures.len()
    );
    assert!(failures.is_empty(), "lost requests: {failures:?}");
    drop(replica_b);
}

/// Redis down: refresh grants and throttle decisions fail closed (503),
/// logins with a cached verdict keep working, and /readyz says why (and
/// stays 200: every replica shares the backend).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_down_fails_closed_and_cached_logins_keep_working() {
    let mut redis = Redis::start();
    let f = Fixture::new();
    let state = f.state(&redis.state_toml());
    let pull = "repository:team/app:pull";
    assert_eq!(
        token_for(&state, "writer", "writer-pw", pull)
            .await
            .actions(),
        ["pull"]
    );
    let rt = refresh_token_of(&login_offline(&state, "writer", "writer-pw").await);
    assert_eq!(
        refresh_grant(&state, &rt, pull).await.status,
        StatusCode::OK
    );
    redis.stop();
    let cached = token_for(&state, "writer", "writer-pw", pull).await;
    assert_eq!(
        cached.actions(),
        ["pull"],
        "a cached verdict needs no Redis"
    );
    let refresh = refresh_grant(&state, &rt, pull).await;
    refresh.assert_error(StatusCode::SERVICE_UNAVAILABLE);
    assert!(refresh.header("retry-after").is_some());
    let cold = token_for(&state, "reader", "reader-pw", pull).await;
    cold.assert_error(StatusCode::SERVICE_UNAVAILABLE);
    let ready = get(&state, "/readyz", None).await;
    assert_eq!(
        ready.status,
        StatusCode::OK,
        "Redis is shared: not this replica's fault"
    );
    let body = ready.json();
    assert!(
        body["state"].as_str().unwrap().contains("unreachable"),
        "{body}"
    );
    // back: everything works again without a restart
    redis.resume();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let r = token_for(&state, "reader", "reader-pw", pull).await;
        if r.status == StatusCode::OK {
            break;
        }
        assert!(Instant::now() < deadline, "{}", r.text());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(
        refresh_grant(&state, &rt, pull).await.status,
        StatusCode::OK
    );
}

/// A test CA: its certificate and what signs with it.
struct TestCa {
    pem: String,
    issuer: rcgen::Issuer<'static, rcgen::KeyPair>,
}

/// A certificate for 127.0.0.1 signed by `ca`, with `name` as its common
/// name so tests can tell certificates apart, written as tls.crt/tls.key.
fn tls_files(dir: &std::path::Path, ca: &TestCa, name: &str) {
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params =
        rcgen::CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])
            .unwrap();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, name);
    let cert = params.signed_by(&key, &ca.issuer).unwrap();
    // write to temporaries, then rename: a reader never sees half a file
    let (crt, k) = (dir.join("tls.crt.tmp"), dir.join("tls.key.tmp"));
    std::fs::write(&crt, cert.pem()).unwrap();
    std::fs::write(&k, key.serialize_pem()).unwrap();
    std::fs::rename(&k, dir.join("tls.key")).unwrap();
    std::fs::rename(&crt, dir.join("tls.crt")).unwrap();
}

fn test_ca() -> TestCa {
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "regauth test CA");
    let pem = params.self_signed(&key).unwrap().pem();
    TestCa {
        pem,
        issuer: rcgen::Issuer::new(params, key),
    }
}

/// A TLS connection to `at` trusting `ca_pem`; the peer's common name.
async fn tls_connect(
    at: SocketAddr,
    ca_pem: &str,
) -> (
    tokio_rustls::client::TlsStream<tokio::net::TcpStream>,
    String,
) {
    use rustls_pki_types::pem::PemObject as _;
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pki_types::CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(cert.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(at).await.unwrap();
    let name = rustls_pki_types::ServerName::try_from("127.0.0.1").unwrap();
    let stream = connector.connect(name, tcp).await.unwrap();
    let (_, session) = stream.get_ref();
    let leaf = session.peer_certificates().unwrap()[0].clone();
    let (_, parsed) = x509_common_name(leaf.as_ref());
    (stream, parsed)
}

/// The common name of a DER certificate (found by its OID).
fn x509_common_name(der: &[u8]) -> ((), String) {
    const CN: &[u8] = &[0x06, 0x03, 0x55, 0x04, 0x03];
    let mut last = String::new();
    let mut i = 0;
    while let Some(at) = der[i..].windows(CN.len()).position(|w| w == CN) {
        let start = i + at + CN.len();
        let len = der[start + 1] as usize;
        last = String::from_utf8_lossy(&der[start + 2..start + 2 + len]).into_owned();
        i = start;
    }
    ((), last) // the subject comes after the issuer
}

async fn tls_get(
    stream: &mut tokio_rustls::client::TlsStream<tokio::net::TcpStream>,
    path: &str,
) -> String {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    stream
        .write_all(format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut buf = vec![0u8; 16 * 1024];
    let n = stream.read(&mut buf).await.unwrap();
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

/// HTTPS: curl with --cacert, a certificate replaced on disk is picked up
/// without dropping the connections already open, and skopeo pushes
/// against a registry whose realm is https.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_listener_reloads_its_certificate_without_dropping_connections() {
    let f = Fixture::new();
    let ca = test_ca();
    tls_files(f.dir.path(), &ca, "first");
    let ca_path = f.path("ca.crt");
    std::fs::write(&ca_path, &ca.pem).unwrap();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let at = listener.local_addr().unwrap();
    drop(listener);
    let config_path = f.path("regauth.toml");
    f.config("")
        .listen(at)
        .set(
            "server.tls_certificate",
            f.path("tls.crt").display().to_string(),
        )
        .set("server.tls_key", f.path("tls.key").display().to_string())
        .write(&config_path);
    let server = Regauth::start_tls(&config_path).await;

    let curl = std::process::Command::new(require("curl", "curl"))
        .args(["-fsS", "--cacert"])
        .arg(&ca_path)
        .arg(format!("https://127.0.0.1:{}/healthz", at.port()))
        .output()
        .unwrap();
    assert!(
        curl.status.success(),
        "{}",
        String::from_utf8_lossy(&curl.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&curl.stdout), "ok\n");

    let ca_pem = ca.pem.clone();
    let (mut open, name) = tls_connect(at, &ca_pem).await;
    assert_eq!(name, "first");
    assert!(tls_get(&mut open, "/healthz")
        .await
        .starts_with("HTTP/1.1 200"));
    // a renewed certificate on disk: new connections get it within seconds
    tls_files(f.dir.path(), &ca, "second");
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let (_, name) = tls_connect(at, &ca_pem).await;
        if name == "second" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the new certificate was not picked up: {}",
            server.log()
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    // the connection opened before the renewal is still served
    assert!(tls_get(&mut open, "/healthz")
        .await
        .starts_with("HTTP/1.1 200"));

    // skopeo against a registry whose realm is https
    let realm = format!("https://127.0.0.1:{}/auth", at.port());
    let ca_env = [("SSL_CERT_FILE", ca_path.to_str().unwrap())];
    let registry = Registry::start_with_env(&realm, &f.cert, &ca_env).await;
    let work = tempfile::tempdir().unwrap();
    let image = work.path().join("image");
    build_image(&image, "latest", 1, "https-realm");
    let target = format!("docker://{}/team/tls:v1", registry.addr);
    let source = format!("oci:{}:latest", image.display());
    let run = skopeo_env(
        work.path(),
        &[
            "copy",
            "--dest-tls-verify=false",
            "--dest-creds",
            "writer:writer-pw",
            &source,
            &target,
        ],
        &ca_env,
    )
    .await;
    assert!(run.ok, "push through an https realm: {run:?}");
}

/// A signing-key rotation against the real registry 2.8: `keys rotate`
/// stages a next key and a bundle; one registry given the bundle accepts
/// tokens of the old key and, after the overlap, of the new one; refresh
/// tokens outlive the switch; `--finish` retires the old key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signing_key_rotation_without_downtime() {
    let clock = Clock::take();
    let f = Fixture::new();
    let at = addr();
    let config = f
        .config("")
        .listen(at)
        .set("token.rotation_overlap", "3s")
        .set("token.reuse_window", "0s");
    let config_path = f.path("regauth.toml");
    config.write(&config_path);
    let state = config.state(); // generates nothing: the fixture has keys
    let rt = refresh_token_of(&login_offline(&state, "writer", "writer-pw").await);
    let (ok, out, err) =
        regauth_cli(&["keys", "rotate", "--config", config_path.to_str().unwrap()]);
    assert!(ok, "{out}{err}");
    assert!(out.contains("next kid"), "{out}");
    let bundle = f.path("token.bundle.crt");
    assert_eq!(
        std::fs::read_to_string(&bundle)
            .unwrap()
            .matches("BEGIN CERTIFICATE")
            .count(),
        2
    );
    let (ok, _, err) = regauth_cli(&["keys", "rotate", "--config", config_path.to_str().unwrap()]);
    assert!(!ok && err.contains("under way"), "{err}");

    let server = Server::start(config).await;
    let jwks = get(&server.state, "/jwks", None).await.json();
    assert_eq!(jwks["keys"].as_array().unwrap().len(), 2, "{jwks}");
    let realm = format!("http://{}/auth", server.addr);
    let registry = Registry::start(&realm, &bundle).await;
    let push_scope = "repository:team/rotated:pull,push";
    let old_token = token_for(&server.state, "writer", "writer-pw", push_scope).await;
    let (header, _) = old_token.token();
    let current_kid = server.state.issuer.keys().current.kid.clone();
    assert_eq!(
        header["kid"],
        current_kid.as_str(),
        "before the switch the current key signs"
    );

    let work = tempfile::tempdir().unwrap();
    let image = work.path().join("image");
    build_image(&image, "latest", 1, "rotation");
    let source = format!("oci:{}:latest", image.display());
    let push_with = |token: String, tag: &'static str| {
        let (work, source, registry) = (work.path().to_owned(), source.clone(), registry.addr);
        async move {
            skopeo(
                &work,
                &[
                    "copy",
                    "--dest-tls-verify=false",
                    "--dest-registry-token",
                    &token,
                    &source,
                    &format!("docker://{registry}/team/rotated:{tag}"),
                ],
            )
            .await
        }
    };
    let jwt = |r: &Reply| r.json()["token"].as_str().unwrap().to_owned();
    let run = push_with(jwt(&old_token), "old-key").await;
    assert!(run.ok, "the old key's token: {run:?}\n{}", registry.log());

    clock.advance(Duration::from_secs(4)); // past the overlap
    let new_token = token_for(&server.state, "writer", "writer-pw", push_scope).await;
    let (header, _) = new_token.token();
    let next_kid = server
        .state
        .issuer
        .keys()
        .next
        .as_ref()
        .unwrap()
        .key
        .kid
        .clone();
    assert_eq!(
        header["kid"],
        next_kid.as_str(),
        "after the overlap the next key signs"
    );
    let run = push_with(jwt(&new_token), "new-key").await;
    assert!(run.ok, "the new key's token: {run:?}\n{}", registry.log());
    // the old key's token, still unexpired, is accepted by the same registry
    let run = push_with(jwt(&old_token), "old-key-again").await;
    assert!(run.ok, "the old key's token after the switch: {run:?}");
    // a refresh token from before the rotation still works
    assert_eq!(
        refresh_grant(&server.state, &rt, "repository:team/rotated:pull")
            .await
            .status,
        StatusCode::OK
    );

    // finishing too early is refused; forced, the new key is the only one
    let (ok, _, err) = regauth_cli(&[
        "keys",
        "rotate",
        "--finish",
        "--config",
        config_path.to_str().unwrap(),
    ]);
    assert!(!ok && err.contains("may be valid until"), "{err}");
    let (ok, out, err) = regauth_cli(&[
        "keys",
        "rotate",
        "--finish",
        "--force",
        "--config",
        config_path.to_str().unwrap(),
    ]);
    assert!(ok, "{out}{err}");
    let reloaded = regauth::reload(&server.live, Some(&config_path)).expect("reload");
    assert!(reloaded.issuer.keys().next.is_none());
    assert_eq!(reloaded.issuer.keys().current.kid, next_kid);
    assert_eq!(
        refresh_grant(&reloaded, &rt, "repository:team/rotated:pull")
            .await
            .status,
        StatusCode::OK
    );
}

/// A real SIGHUP re-reads the whole configuration: a new user and a new
/// rule work at once; a broken file is refused with its key path and the
/// running state keeps serving.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_the_whole_configuration() {
    let f = Fixture::new();
    let at = addr();
    let path = f.path("regauth.toml");
    f.config("").listen(at).write(&path);
    let server = Regauth::start(&path, at, &[]).await;
    let client = reqwest::Client::new();
    let extra_scope = "scope=repository:extra/app:pull,push";
    let granted = |r: serde_json::Value| -> Vec<String> {
        let token = r["token"].as_str().unwrap();
        let (_, claims) = decode(token);
        claims["access"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|a| a["actions"].as_array().unwrap().clone())
            .map(|a| a.as_str().unwrap().to_owned())
            .collect()
    };
    let r = http_token(&client, at, "writer", "writer-pw", extra_scope).await;
    assert!(granted(r.json().await.unwrap()).is_empty());
    assert_eq!(
        http_token(&client, at, "newbie", "newbie-pw", extra_scope)
            .await
            .status(),
        401
    );

    // a new user in the users file, a new rule in the configuration
    let hash = regauth_providers::static_users::hash_bcrypt("newbie-pw", 4).unwrap();
    let mut users = std::fs::read_to_string(f.path("users.htpasswd")).unwrap();
    users.push_str(&format!("newbie:{hash}\n"));
    std::fs::write(f.path("users.htpasswd"), users).unwrap();
    let rule = "\n[[rule]]\nusers = [\"writer\", \"newbie\"]\nrepos = [\"extra/**\"]\nactions = [\"pull\", \"push\"]\n";
    f.config(rule).listen(at).write(&path);
    let pid = server.process.child.id().to_string();
    let hup = |pid: &str| {
        std::process::Command::new("kill")
            .args(["-HUP", pid])
            .status()
            .unwrap()
    };
    assert!(hup(&pid).success());
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let r = http_token(&client, at, "newbie", "newbie-pw", extra_scope).await;
        if r.status() == 200 {
            assert_eq!(granted(r.json().await.unwrap()), ["pull", "push"]);
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the reload did not take: {}",
            server.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let r = http_token(&client, at, "writer", "writer-pw", extra_scope).await;
    assert_eq!(granted(r.json().await.unwrap()), ["pull", "push"]);

    // a broken file: refused, the log says where, the old state serves
    f.config(rule)
        .listen(at)
        .set("cache.verdict_tll", "1s")
        .write(&path);
    assert!(hup(&pid).success());
    let deadline = Instant::now() + Duration::from_secs(10);
    while !server
        .log()
        .contains("SIGHUP: the new configuration is not valid")
    {
        assert!(Instant::now() < deadline, "{}", server.log());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        server.log().contains("verdict_tll"),
        "the log names the key: {}",
        server.log()
    );
    let r = http_token(&client, at, "newbie", "newbie-pw", extra_scope).await;
    assert_eq!(r.status(), 200, "still serving the last good configuration");
}

/// `token.x5c = false`: the header carries only the libtrust `kid` (what a
/// v3 registry trusting only a JWKS file needs); registry 2.8 with the
/// certificate as its root bundle still accepts it; and `keys
/// registry-config --format jwks` prints the JWKS file for v3.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kid_only_tokens_and_the_jwks_file_for_registry_v3() {
    let f = Fixture::new();
    let config = f.config("").set("token.x5c", false);
    let server = Server::start(config.clone()).await;
    let r = token_for(
        &server.state,
        "writer",
        "writer-pw",
        "repository:team/kid:pull,push",
    )
    .await;
    let (header, _) = r.token();
    assert!(header.get("x5c").is_none(), "{header}");
    assert_eq!(
        header["kid"],
        server.state.issuer.keys().current.kid.as_str()
    );
    let registry = Registry::start(&format!("http://{}/auth", server.addr), &f.cert).await;
    let work = tempfile::tempdir().unwrap();
    let image = work.path().join("image");
    build_image(&image, "latest", 1, "kid-only");
    let run = push(
        work.path(),
        "writer:writer-pw",
        &image,
        &format!("docker://{}/team/kid:v1", registry.addr),
    )
    .await;
    assert!(
        run.ok,
        "registry 2.8 accepts kid-only tokens: {run:?}\n{}",
        registry.log()
    );

    let path = f.path("regauth.toml");
    config.write(&path);
    let (ok, out, err) = regauth_cli(&[
        "keys",
        "registry-config",
        "--format",
        "jwks",
        "--config",
        path.to_str().unwrap(),
    ]);
    assert!(ok, "{err}");
    let jwks: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        jwks["keys"][0]["kid"],
        server.state.issuer.keys().current.kid.as_str()
    );
    let (ok, out, _) = regauth_cli(&[
        "keys",
        "registry-config",
        "--format",
        "yaml",
        "--config",
        path.to_str().unwrap(),
    ]);
    assert!(ok && out.contains("jwks:"), "{out}");
}

/// The default realm names `localhost`, which clients may resolve to
/// [::1] as well as 127.0.0.1: regauth listens on both, so no other local
/// process can take [::1] and receive the passwords clients send, and it
/// refuses to start when [::1] on its port is taken.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_localhost_realm_holds_both_loopback_addresses() {
    let f = Fixture::new();
    let at = addr();
    let path = f.path("regauth.toml");
    f.config("").listen(at).write(&path);
    let ipv6 = std::net::TcpListener::bind("[::1]:0").is_ok();
    if ipv6 {
        let server = Regauth::start(&path, at, &[]).await;
        let other = format!("http://[::1]:{}/healthz", at.port());
        let answer = reqwest::get(&other).await;
        assert!(
            answer.is_ok_and(|r| r.status() == 200),
            "regauth answers on [::1] too: {}",
            server.log()
        );
        drop(server);
        // someone else holds [::1] on the port: regauth does not start
        let taken = std::net::TcpListener::bind(format!("[::1]:{}", at.port())).unwrap();
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_regauth"))
            .args(["serve", "--config"])
            .arg(&path)
            .env_remove("REGAUTH_CONFIG")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break status;
            }
            if std::time::Instant::now() > deadline {
                let _ = child.kill();
                panic!("regauth started beside a taken [::1]");
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        };
        let mut stderr = String::new();
        std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
        assert!(!status.success(), "{stderr}");
        assert!(stderr.contains("is taken by another process"), "{stderr}");
        drop(taken);
    } else {
        // without IPv6 nobody can take [::1]: regauth starts on 127.0.0.1
        let server = Regauth::start(&path, at, &[]).await;
        assert!(
            server.log().contains("regauth listening"),
            "{}",
            server.log()
        );
    }
}
