//! The `regauth` binary as users run it: serve (signals, embedded default,
//! generated dev keys, JSON logs), check, explain, hash-password, keys.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::support::*;

const BIN: &str = env!("CARGO_BIN_EXE_regauth");

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn regauth(dir: &Path, args: &[&str], stdin: Option<&str>) -> Output {
    let mut child = Command::new(BIN)
        .args(args)
        .current_dir(dir)
        .env_remove("REGAUTH_CONFIG")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("regauth binary");
    if let Some(input) = stdin {
        use std::io::Write as _;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
    } else {
        drop(child.stdin.take());
    }
    child.wait_with_output().unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn check_accepts_the_shipped_configs() {
    let out = regauth(&repo(), &["check"], None);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("config/regauth.toml: ok"),
        "{}",
        text(&out.stdout)
    );
}

#[test]
fn check_names_the_offending_key() {
    let f = Fixture::new();
    let cases = [
        ("[token]\nissuer=\"i\"\nservices=[\"s\"]\nlifetime=\"10s\"\n", "token.lifetime"),
        ("[token]\nissuer=\"i\"\nservices=[\"s\"]\nkeyy=\"x\"\n", "keyy"),
        (
            "[token]\nissuer=\"i\"\nservices=[\"s\"]\n[[rule]]\ngroups=[\"g\"]\nrepos=[\"a/**\"]\nactions=[\"pul\"]\n",
            "rule[0].actions[0]",
        ),
        (
            "[token]\nissuer=\"i\"\nservices=[\"s\"]\n[[provider]]\nname=\"x\"\nkind=\"static\"\nhtpasswd=\"/nonexistent/users\"\n",
            "/nonexistent/users",
        ),
    ];
    for (config, key) in cases {
        let path = f.path("bad.toml");
        std::fs::write(&path, config).unwrap();
        let out = regauth(
            f.dir.path(),
            &["check", "--config", path.to_str().unwrap()],
            None,
        );
        assert!(!out.status.success(), "{config}");
        assert!(
            text(&out.stderr).contains(key),
            "want {key}: {}",
            text(&out.stderr)
        );
    }
}

#[test]
fn hash_password_makes_a_line_the_static_provider_accepts() {
    let out = regauth(
        Path::new("."),
        &["hash-password", "--user", "dev", "--cost", "4"],
        Some("s3cret: pass\n"),
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let line = text(&out.stdout);
    assert!(line.starts_with("dev:$2y$04$"), "{line}");
    assert!(!line.contains("s3cret"));
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("u"), &line).unwrap();
    let users = regauth_providers::static_users::StaticUsers::load(
        "t",
        &regauth_providers::static_users::StaticConfig {
            htpasswd: Some(dir.path().join("u")),
            ..Default::default()
        },
    )
    .unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    use regauth_providers::IdentityProvider as _;
    let ok = rt
        .block_on(users.authenticate(&regauth_providers::Credentials::new("dev", "s3cret: pass")));
    assert!(
        matches!(ok, regauth_providers::Outcome::Authenticated(_)),
        "{ok:?}"
    );
    let out = regauth(Path::new("."), &["hash-password"], Some(""));
    assert!(!out.status.success());
}

#[test]
fn keys_generate_and_registry_config() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let out = regauth(
        d,
        &[
            "keys",
            "generate",
            "--key",
            "k/token.key",
            "--certificate",
            "k/token.crt",
        ],
        None,
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(stdout.contains("ES256"), "{stdout}");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(d.join("k/token.key"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o077, 0, "the private key is not readable by others");
    }
    let again = regauth(
        d,
        &[
            "keys",
            "generate",
            "--key",
            "k/token.key",
            "--certificate",
            "k/token.crt",
        ],
        None,
    );
    assert!(!again.status.success(), "refuses to overwrite");
    assert!(text(&again.stderr).contains("--force"));
    let rsa = regauth(
        d,
        &[
            "keys",
            "generate",
            "--algorithm",
            "rs256",
            "--key",
            "r.key",
            "--certificate",
            "r.crt",
        ],
        None,
    );
    assert!(rsa.status.success(), "{}", text(&rsa.stderr));
    assert!(text(&rsa.stdout).contains("RS256"));

    let config = String::from(
        "[server]\nlisten = \"127.0.0.1:5999\"\n[token]\nissuer = \"corp-auth\"\nservices = [\"registry.corp:5000\"]\nkey = \"k/token.key\"\ncertificate = \"k/token.crt\"\n"
    );
    std::fs::write(d.join("c.toml"), config).unwrap();
    let out = regauth(d, &["keys", "registry-config", "--config", "c.toml"], None);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let printed = text(&out.stdout);
    for want in [
        "realm: \"http://localhost:5999/auth\"",
        "service: \"registry.corp:5000\"",
        "issuer: \"corp-auth\"",
        "rootcertbundle: \"",
        "REGISTRY_AUTH_TOKEN_REALM=",
        "REGISTRY_AUTH_TOKEN_ROOTCERTBUNDLE=",
        "kid",
    ] {
        assert!(printed.contains(want), "missing {want}: {printed}");
    }
    let kid_line = printed
        .lines()
        .find(|l| l.contains("libtrust kid"))
        .unwrap();
    assert_eq!(kid_line.rsplit(' ').next().unwrap().split(':').count(), 12);
}

#[test]
fn explain_prints_matching_rules_and_the_grant() {
    let out = regauth(
        &repo(),
        &[
            "explain",
            "--user",
            "bob",
            "--groups",
            "developers",
            "--scope",
            "repository:dev/app:pull,push,delete",
            "--scope",
            "repository:prod/x:pull",
        ],
        None,
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let s = text(&out.stdout);
    assert!(s.contains("group developers"), "{s}");
    assert!(s.contains("granted: [pull,push]"), "{s}");
    assert!(s.contains("no rule matched"), "{s}");
    let anon = regauth(
        &repo(),
        &[
            "explain",
            "--anonymous",
            "--scope",
            "repository:public/x:pull",
        ],
        None,
    );
    assert!(
        text(&anon.stdout).contains("granted: [pull]"),
        "{}",
        text(&anon.stdout)
    );
}

fn wait_healthy(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) {
            use std::io::{Read as _, Write as _};
            let _ = s.write_all(b"GET /healthz HTTP/1.0\r\n\r\n");
            let mut buf = String::new();
            let _ = s.read_to_string(&mut buf);
            if buf.starts_with("HTTP/1.0 200") || buf.starts_with("HTTP/1.1 200") {
                return;
            }
        }
        assert!(Instant::now() < deadline, "regauth did not become healthy");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn http_get(port: u16, path: &str, auth: Option<&str>) -> String {
    use std::io::{Read as _, Write as _};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    let auth = auth
        .map(|a| format!("Authorization: {a}\r\n"))
        .unwrap_or_default();
    write!(s, "GET {path} HTTP/1.0\r\nHost: x\r\n{auth}\r\n").unwrap();
    let mut buf = String::new();
    s.read_to_string(&mut buf).unwrap();
    buf
}

fn stop(child: &mut std::process::Child) -> std::process::ExitStatus {
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        assert!(Instant::now() < deadline, "regauth did not stop on SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// What a user does on a fresh checkout: `regauth serve` with no flags.
#[test]
fn serve_on_a_fresh_checkout_generates_keys_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::create_dir_all(d.join("config")).unwrap();
    for file in ["regauth.toml", "users.htpasswd"] {
        std::fs::copy(
            repo().join("config").join(file),
            d.join("config").join(file),
        )
        .unwrap();
    }
    let port = free_port();
    let log = d.join("log.json");
    let mut child = Command::new(BIN)
        .args(["--log-format", "json", "serve"])
        .current_dir(d)
        .env("REGAUTH_SERVER__LISTEN", format!("127.0.0.1:{port}"))
        .env_remove("REGAUTH_CONFIG")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let guard = Process {
        child: Command::new("true").spawn().unwrap(),
        log: log.clone(),
    };
    wait_healthy(port);
    assert!(d.join("certs/token.key").exists() && d.join("certs/token.crt").exists());
    let ok = http_get(
        port,
        "/auth?scope=repository:dev/app:push",
        Some(&basic("bob", "bob-dev-password")),
    );
    assert!(
        ok.starts_with("HTTP/1.0 200") || ok.starts_with("HTTP/1.1 200"),
        "{ok}"
    );
    let bad = http_get(port, "/auth", Some(&basic("bob", "LEAKME-wrong")));
    assert!(bad.contains(" 401 "), "{bad}");
    let status = stop(&mut child);
    assert!(status.success(), "graceful exit: {status:?}");
    drop(guard);
    let logged = std::fs::read_to_string(&log).unwrap();
    let lines: Vec<serde_json::Value> = logged
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    let audits: Vec<&serde_json::Value> = lines
        .iter()
        .filter(|l| l["target"] == "regauth::audit")
        .collect();
    assert_eq!(audits.len(), 2, "{logged}");
    assert_eq!(audits[0]["subject"], "bob");
    assert_eq!(audits[0]["outcome"], "issued");
    assert_eq!(audits[0]["granted"], "repository:dev/app:push");
    assert!(audits[0]["latency_us"].is_u64());
    assert!(audits[0]["client_ip"] == "127.0.0.1");
    assert_eq!(audits[1]["outcome"], "unauthorized");
    assert!(!logged.contains("LEAKME"), "{logged}");
    assert!(!logged.contains("bob-dev-password"));
    assert!(logged.contains("SIGTERM"), "{logged}");
    // Each request's lines carry its ID, which its answer names.
    let id_of = |response: &str| {
        response
            .lines()
            .find_map(|l| {
                l.to_ascii_lowercase()
                    .strip_prefix("x-request-id: ")
                    .map(str::to_owned)
            })
            .unwrap_or_else(|| panic!("no X-Request-Id: {response}"))
    };
    assert_eq!(audits[0]["request_id"].to_string(), id_of(&ok).trim());
    assert_eq!(audits[1]["request_id"].to_string(), id_of(&bad).trim());
    assert_ne!(audits[0]["request_id"], audits[1]["request_id"]);
}
