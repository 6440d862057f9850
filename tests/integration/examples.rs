//! The library examples, built by `cargo test` and run as their own
//! processes against the real registry with skopeo: `embed` (the host
//! application's users, regauth nested under /registry-auth) and
//! `custom_authorizer` (a rule written in Rust).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::oci::build_image;
use crate::support::*;

/// An example's binary, next to the test binaries.
fn example(name: &str) -> PathBuf {
    let path = PathBuf::from(env!("CARGO_BIN_EXE_regauth"))
        .parent()
        .expect("the target directory")
        .join("examples")
        .join(name);
    assert!(
        path.exists(),
        "{} is not built: run `cargo test --workspace` (or tests/run), which builds the examples",
        path.display()
    );
    path
}

/// Runs an example; waits until `health` answers.
async fn start(name: &str, health: &str) -> (Process, SocketAddr, tempfile::TempDir) {
    // reqwest's TLS needs the process's crypto provider, even for http
    regauth_providers::install_crypto_provider();
    let dir = tempfile::tempdir().unwrap();
    let listen: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let log = dir.path().join("example.log");
    let child = Command::new(example(name))
        .env("REGAUTH_EXAMPLE_LISTEN", listen.to_string())
        .env("REGAUTH_EXAMPLE_SERVICE", SERVICE)
        .env("REGAUTH_EXAMPLE_ISSUER", ISSUER)
        .env("REGAUTH_EXAMPLE_CERT", dir.path().join("token.crt"))
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let process = Process {
        child,
        log: log.clone(),
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(r) = reqwest::get(format!("http://{listen}{health}")).await {
            if r.status() == 200 {
                break;
            }
        }
        assert!(
            Instant::now() < deadline,
            "{name} did not start: {}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    (process, listen, dir)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_embed_example_nests_regauth_in_a_host_application() {
    let (_example, listen, dir) = start("embed", "/registry-auth/healthz").await;
    let host = reqwest::get(format!("http://{listen}/"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(host, "the host application\n");
    let realm = format!("http://{listen}/registry-auth/auth");
    let registry = Registry::start(&realm, &dir.path().join("token.crt")).await;
    let work = tempfile::tempdir().unwrap();
    let image = work.path().join("image");
    build_image(&image, "latest", 1, "embed-example");
    let at = |repo: &str| format!("docker://{}/{repo}", registry.addr);
    let run = push(
        work.path(),
        "alice:alice-password",
        &image,
        &at("alice/app:v1"),
    )
    .await;
    assert!(run.ok, "alice pushes alice/*: {run:?}\n{}", registry.log());
    let run = push(
        work.path(),
        "alice:alice-password",
        &image,
        &at("bob/app:v1"),
    )
    .await;
    assert!(!run.ok, "alice may not push bob/*: {run:?}");
    let run = push(
        work.path(),
        "alice:alice-password",
        &image,
        &at("shared/base:v1"),
    )
    .await;
    assert!(!run.ok, "nobody pushes shared/*: {run:?}");
    // shared/* is pullable: the registry answers "unknown", not "denied"
    let run = inspect(work.path(), Some("bob:bob-password"), &at("shared/base:v1")).await;
    assert!(
        !run.ok && run.stderr.contains("manifest unknown"),
        "{run:?}"
    );
    let run = inspect(work.path(), Some("bob:wrong"), &at("shared/base:v1")).await;
    assert!(
        !run.ok && !run.stderr.contains("manifest unknown"),
        "{run:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_custom_authorizer_example_decides_in_rust() {
    let (_example, listen, dir) = start("custom_authorizer", "/healthz").await;
    let realm = format!("http://{listen}/auth");
    let registry = Registry::start(&realm, &dir.path().join("token.crt")).await;
    let work = tempfile::tempdir().unwrap();
    let image = work.path().join("image");
    build_image(&image, "latest", 1, "authorizer-example");
    let at = |repo: &str| format!("docker://{}/{repo}", registry.addr);
    let run = push(
        work.path(),
        "alice:alice-password",
        &image,
        &at("alice/tool:v1"),
    )
    .await;
    assert!(run.ok, "alice pushes her own: {run:?}\n{}", registry.log());
    // alice's team is web: she may pull web/*, not db/*
    let run = inspect(
        work.path(),
        Some("alice:alice-password"),
        &at("web/base:v1"),
    )
    .await;
    assert!(
        !run.ok && run.stderr.contains("manifest unknown"),
        "{run:?}"
    );
    let run = inspect(work.path(), Some("alice:alice-password"), &at("db/base:v1")).await;
    assert!(
        !run.ok && !run.stderr.contains("manifest unknown"),
        "{run:?}"
    );
    // and she may read what she pushed; bob may not
    let run = inspect(
        work.path(),
        Some("alice:alice-password"),
        &at("alice/tool:v1"),
    )
    .await;
    assert!(run.ok, "{run:?}");
    let run = inspect(work.path(), Some("bob:bob-password"), &at("alice/tool:v1")).await;
    assert!(!run.ok, "{run:?}");
}
