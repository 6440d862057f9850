//! The container image and the real Docker and containerd clients, through
//! a private `dockerd` (Debian's docker.io) on a unix socket: the image is
//! built from the Dockerfile and refuses to start on its default config;
//! run with a mounted config, it serves the docker CLI (`docker login`
//! stores the identity token, never the password; push, pull, a denied
//! push) and containerd's `ctr` (its own resolver fetches tokens its own
//! way; denied pushes go to a new tag, since containerd does not re-push a
//! manifest the registry already has).

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use crate::support::docker::Dockerd;
use crate::support::oci::tar_with_file;
use crate::support::*;

/// The debug binary without its debug information: the image's binary.
fn stripped_binary() -> String {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let out_dir = root.join("target/container");
    std::fs::create_dir_all(&out_dir).unwrap();
    let out = out_dir.join("regauth");
    let status = std::process::Command::new(require("objcopy", "binutils"))
        .arg("--strip-debug")
        .arg(env!("CARGO_BIN_EXE_regauth"))
        .arg(&out)
        .status()
        .unwrap();
    assert!(status.success());
    "target/container/regauth".into()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_image_starts_and_serves_docker_and_containerd() {
    let engine = tokio::task::spawn_blocking(Dockerd::start).await.unwrap();
    let cli = engine.dir.path().join("cli");
    std::fs::create_dir_all(&cli).unwrap();
    let docker = |args: &[&str], stdin: Option<&str>| engine.docker(&cli, args, stdin);

    // the image, from the Dockerfile, on a base made with debootstrap
    engine.import_debian_base();
    let binary = stripped_binary();
    let root = env!("CARGO_MANIFEST_DIR");
    let build = docker(
        &[
            "build",
            "--network",
            "host",
            "--target",
            "prebuilt",
            "--build-arg",
            &format!("BINARY={binary}"),
            // the pinned base is not here: the local debootstrap image is
            "--build-arg",
            "DEBIAN=debian:bookworm-slim",
            "-t",
            "regauth:test",
            root,
        ],
        None,
    );
    assert!(build.ok, "docker build: {build:?}");

    // its default config has no provider: it refuses, saying why
    let refused = docker(&["run", "--rm", "--network", "host", "regauth:test"], None);
    assert!(!refused.ok);
    assert!(
        refused
            .stderr
            .contains("no identity provider is configured"),
        "{refused:?}"
    );

    // a mounted configuration (the image's paths) with users
    let f = Fixture::new();
    let config_dir = tempfile::tempdir().unwrap();
    let state_dir = tempfile::tempdir().unwrap();
    let listen: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    std::fs::copy(
        f.path("users.htpasswd"),
        config_dir.path().join("users.htpasswd"),
    )
    .unwrap();
    f.config("")
        .listen(listen)
        .set("token.key", "/var/lib/regauth/keys/token.key")
        .set("token.certificate", "/var/lib/regauth/keys/token.crt")
        .set("provider[0].htpasswd", "/etc/regauth/users.htpasswd")
        .set("refresh_tokens.state_dir", "/var/lib/regauth/state")
        .set(
            "refresh_tokens.key_file",
            "/var/lib/regauth/keys/refresh.key",
        )
        .write(&config_dir.path().join("regauth.toml"));
    let chown = std::process::Command::new("chown")
        .args(["-R", "10001"])
        .arg(state_dir.path())
        .status()
        .unwrap();
    assert!(chown.success());
    let run = docker(
        &[
            "run",
            "-d",
            "--name",
            "regauth-test",
            "--network",
            "host",
            "-v",
            &format!("{}:/etc/regauth:ro", config_dir.path().display()),
            "-v",
            &format!("{}:/var/lib/regauth", state_dir.path().display()),
            "regauth:test",
        ],
        None,
    );
    assert!(run.ok, "docker run: {run:?}");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(r) = reqwest::get(format!("http://{listen}/healthz")).await {
            if r.status() == 200 {
                break;
            }
        }
        assert!(
            Instant::now() < deadline,
            "the container did not get healthy: {:?}",
            docker(&["logs", "regauth-test"], None)
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let cert = state_dir.path().join("keys/token.crt");
    assert!(
        cert.exists(),
        "the container generated its key under /var/lib/regauth"
    );
    let registry = Registry::start(&format!("http://{listen}/auth"), &cert).await;
    let reg = registry.addr;

    // docker login stores the identity token, not the password
    let login = docker(
        &[
            "login",
            &reg.to_string(),
            "-u",
            "writer",
            "--password-stdin",
        ],
        Some("writer-pw"),
    );
    assert!(login.ok, "docker login: {login:?}");
    let stored = std::fs::read_to_string(cli.join("config.json")).unwrap();
    assert!(stored.contains("identitytoken"), "{stored}");
    assert!(
        !stored.contains("writer-pw"),
        "the password is not stored: {stored}"
    );
    use base64::Engine as _;
    let encoded_password = base64::engine::general_purpose::STANDARD.encode("writer:writer-pw");
    assert!(!stored.contains(&encoded_password), "{stored}");

    // push and pull with the stored identity token
    let layer = tar_with_file("hello.txt", b"hello from docker\n");
    let tar = config_dir.path().join("hello.tar");
    std::fs::write(&tar, layer).unwrap();
    let image = format!("{reg}/team/docker:v1");
    let imported = docker(&["import", tar.to_str().unwrap(), &image], None);
    assert!(imported.ok, "{imported:?}");
    let pushed = docker(&["push", &image], None);
    assert!(pushed.ok, "docker push: {pushed:?}\n{}", registry.log());
    assert!(docker(&["rmi", &image], None).ok);
    let pulled = docker(&["pull", &image], None);
    assert!(pulled.ok, "docker pull: {pulled:?}");

    // a reader may pull but not push
    let reader_cli = engine.dir.path().join("reader-cli");
    std::fs::create_dir_all(&reader_cli).unwrap();
    let as_reader = |args: &[&str], stdin: Option<&str>| engine.docker(&reader_cli, args, stdin);
    assert!(
        as_reader(
            &[
                "login",
                &reg.to_string(),
                "-u",
                "reader",
                "--password-stdin"
            ],
            Some("reader-pw")
        )
        .ok
    );
    let denied_image = format!("{reg}/team/docker:denied");
    assert!(as_reader(&["tag", &image, &denied_image], None).ok);
    let denied = as_reader(&["push", &denied_image], None);
    assert!(!denied.ok, "a reader's push is refused: {denied:?}");

    // containerd's ctr, with its own resolver
    let pulled = engine.ctr(&[
        "images",
        "pull",
        "--plain-http",
        "--user",
        "reader:reader-pw",
        &image,
    ]);
    assert!(pulled.ok, "ctr pull: {pulled:?}\n{}", registry.log());
    let ctr_image = format!("{reg}/team/ctr:v1");
    assert!(engine.ctr(&["images", "tag", &image, &ctr_image]).ok);
    let pushed = engine.ctr(&[
        "images",
        "push",
        "--plain-http",
        "--user",
        "writer:writer-pw",
        &ctr_image,
    ]);
    assert!(pushed.ok, "ctr push: {pushed:?}\n{}", registry.log());
    let ctr_denied = format!("{reg}/team/ctr:denied");
    assert!(engine.ctr(&["images", "tag", &image, &ctr_denied]).ok);
    let denied = engine.ctr(&[
        "images",
        "push",
        "--plain-http",
        "--user",
        "reader:reader-pw",
        &ctr_denied,
    ]);
    assert!(!denied.ok, "a reader's ctr push is refused: {denied:?}");

    // the engine stops and leaves nothing behind (its layers take a GB)
    let dir = engine.dir.path().to_owned();
    drop(engine);
    assert!(
        !dir.exists(),
        "the engine's directory is left behind: {}",
        dir.display()
    );
}
