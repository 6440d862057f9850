//! A real Keycloak (the pinned `org.keycloak:keycloak-quarkus-dist` that
//! `tests/run` fetches with Maven into the user's cache) with the realm
//! fixture `tests/fixtures/keycloak/realm-main.json` imported: realm
//! `main`, a confidential client `registry` (direct access grants, an
//! audience mapper for `registry`, a group-membership mapper with full
//! paths), a client `other` without the audience, users in nested groups
//! with realm and client roles, and brute-force detection on.
//!
//! Each [`Keycloak`] runs `kc.sh start-dev` on its own loopback port with
//! an in-memory database, from a copy of the distribution in a temporary
//! directory (Keycloak writes under its home). It needs Java 21 or newer:
//! `REGAUTH_KEYCLOAK_JAVA_HOME`, which `tests/run` sets.

use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::{fetched, free_port, Process};

/// The Keycloak version `tests/run` fetches.
pub const KEYCLOAK_VERSION: &str = "26.7.3";
/// The realm of the fixture.
pub const REALM: &str = "main";
/// The confidential client regauth is, and its secret.
pub const CLIENT: (&str, &str) = ("registry", "registry-client-secret");
/// A client whose tokens lack the `registry` audience.
pub const OTHER_CLIENT: (&str, &str) = ("other", "other-client-secret");
const ADMIN: (&str, &str) = ("admin", "admin-test-pw");

/// Where `tests/run` unpacked the distribution.
fn distribution() -> PathBuf {
    let home = fetched(
        "REGAUTH_KEYCLOAK_HOME",
        &format!("keycloak-{KEYCLOAK_VERSION}/keycloak-{KEYCLOAK_VERSION}"),
    );
    match home {
        Some(home) if home.join("bin/kc.sh").is_file() => home,
        _ => panic!(
            "Keycloak {KEYCLOAK_VERSION} is missing: tests/run fetches it \
             (mvn dependency:copy -Dartifact=org.keycloak:keycloak-quarkus-dist:{KEYCLOAK_VERSION}:tar.gz, \
             unpacked under ~/.cache/regauth/keycloak-{KEYCLOAK_VERSION})"
        ),
    }
}

/// A Java of 21 or newer for Keycloak.
fn java_home() -> PathBuf {
    match std::env::var_os("REGAUTH_KEYCLOAK_JAVA_HOME").map(PathBuf::from) {
        Some(home) if home.join("bin/java").is_file() => home,
        _ => panic!(
            "Keycloak needs Java 21 or newer: tests/run finds one under /usr/lib/jvm and sets \
             REGAUTH_KEYCLOAK_JAVA_HOME (apt-get install -y openjdk-21-jdk-headless)"
        ),
    }
}

/// A running Keycloak, stopped on drop.
pub struct Keycloak {
    _process: Process,
    /// `http://127.0.0.1:PORT`
    pub url: String,
    /// How long it took to answer.
    pub started_in: Duration,
    _home: tempfile::TempDir,
}

impl Keycloak {
    /// Starts Keycloak with the realm fixture and waits until the realm's
    /// discovery document answers (at most three minutes: Quarkus builds
    /// itself on a first start).
    pub async fn start() -> Self {
        regauth_providers::install_crypto_provider();
        let source = distribution();
        let java = java_home();
        let home = tempfile::tempdir().unwrap();
        let copied = Command::new("cp")
            .arg("-a")
            .arg(format!("{}/.", source.display()))
            .arg(home.path())
            .status()
            .expect("cp runs");
        assert!(copied.success(), "copying Keycloak");
        let import = home.path().join("data/import");
        std::fs::create_dir_all(&import).unwrap();
        std::fs::copy(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/keycloak/realm-main.json"),
            import.join("realm-main.json"),
        )
        .unwrap();
        let port = free_port();
        let log = home.path().join("keycloak.log");
        let out = std::fs::File::create(&log).unwrap();
        let child = Command::new(home.path().join("bin/kc.sh"))
            .args([
                "start-dev",
                "--http-host=127.0.0.1",
                &format!("--http-port={port}"),
                "--db=dev-mem",
                "--cache=local",
                "--import-realm",
                "--health-enabled=false",
                "--metrics-enabled=false",
            ])
            .env("JAVA_HOME", &java)
            .env("KC_BOOTSTRAP_ADMIN_USERNAME", ADMIN.0)
            .env("KC_BOOTSTRAP_ADMIN_PASSWORD", ADMIN.1)
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            // kc.sh runs java as its child: the group is stopped together
            .process_group(0)
            .spawn()
            .expect("kc.sh starts");
        let mut process = Process { child, log };
        let url = format!("http://127.0.0.1:{port}");
        let discovery = format!("{url}/realms/{REALM}/.well-known/openid-configuration");
        let started = Instant::now();
        let client = reqwest::Client::new();
        loop {
            if let Some(status) = process.child.try_wait().unwrap() {
                panic!("Keycloak exited ({status}):\n{}", tail(&process.log));
            }
            let answered = client
                .get(&discovery)
                .timeout(Duration::from_secs(5))
                .send()
                .await;
            if answered.is_ok_and(|r| r.status().is_success()) {
                break;
            }
            assert!(
                started.elapsed() < Duration::from_secs(180),
                "Keycloak answered within 180 s:\n{}",
                tail(&process.log)
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        let started_in = started.elapsed();
        assert_listens_on_loopback_only(process.child.id());
        Self {
            _process: process,
            url,
            started_in,
            _home: home,
        }
    }

    /// The realm's issuer, as its tokens name it.
    pub fn issuer(&self) -> String {
        format!("{}/realms/{REALM}", self.url)
    }

    /// A password grant at `client`: the token response.
    pub async fn password_grant(
        &self,
        client: (&str, &str),
        user: &str,
        password: &str,
    ) -> serde_json::Value {
        let reply = reqwest::Client::new()
            .post(format!("{}/protocol/openid-connect/token", self.issuer()))
            .form(&[
                ("grant_type", "password"),
                ("client_id", client.0),
                ("client_secret", client.1),
                ("username", user),
                ("password", password),
                ("scope", "openid"),
            ])
            .send()
            .await
            .unwrap();
        reply.json().await.unwrap()
    }

    /// An access token of `user` from `client`.
    pub async fn access_token(&self, client: (&str, &str), user: &str, password: &str) -> String {
        let answer = self.password_grant(client, user, password).await;
        answer["access_token"]
            .as_str()
            .unwrap_or_else(|| panic!("no access token: {answer}"))
            .to_owned()
    }

    /// Calls the admin REST API of the realm (`path` under
    /// `/admin/realms/main`) as the bootstrap admin.
    pub async fn admin(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> reqwest::Response {
        let token: serde_json::Value = reqwest::Client::new()
            .post(format!(
                "{}/realms/master/protocol/openid-connect/token",
                self.url
            ))
            .form(&[
                ("grant_type", "password"),
                ("client_id", "admin-cli"),
                ("username", ADMIN.0),
                ("password", ADMIN.1),
            ])
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let bearer = token["access_token"].as_str().expect("an admin token");
        let mut request = reqwest::Client::new()
            .request(method, format!("{}/admin/realms/{REALM}{path}", self.url))
            .bearer_auth(bearer);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let reply = request.send().await.unwrap();
        assert!(
            reply.status().is_success(),
            "admin {path}: {}",
            reply.status()
        );
        reply
    }

    /// What Keycloak's brute-force detection holds of `user`
    /// (`numFailures`, `disabled`).
    pub async fn brute_force(&self, user: &str) -> serde_json::Value {
        let id = self.user_id(user).await;
        self.admin(
            reqwest::Method::GET,
            &format!("/attack-detection/brute-force/users/{id}"),
            None,
        )
        .await
        .json()
        .await
        .unwrap()
    }

    /// The id of `user` in the realm.
    pub async fn user_id(&self, user: &str) -> String {
        let found: serde_json::Value = self
            .admin(
                reqwest::Method::GET,
                &format!("/users?username={user}&exact=true"),
                None,
            )
            .await
            .json()
            .await
            .unwrap();
        found[0]["id"].as_str().expect("the user exists").to_owned()
    }
}

impl Drop for Keycloak {
    fn drop(&mut self) {
        // kc.sh and the java it started, which killing kc.sh would orphan
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", self._process.child.id())])
            .status();
    }
}

/// The last lines of a log, for a failure message.
fn tail(log: &Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(40)..].join("\n")
}

/// Every socket the process (and its children) listens on is on
/// loopback: Keycloak serves nothing to the network.
fn assert_listens_on_loopback_only(pid: u32) {
    let ss = Command::new("ss")
        .args(["-ltnpH"])
        .output()
        .expect("ss (iproute2) runs");
    let listing = String::from_utf8_lossy(&ss.stdout);
    let java = std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(Result::ok)
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|p| {
            std::fs::read_to_string(format!("/proc/{p}/stat"))
                .ok()
                .and_then(|s| {
                    s.rsplit(')')
                        .next()?
                        .split_whitespace()
                        .nth(1)?
                        .parse()
                        .ok()
                })
                == Some(pid)
                || *p == pid
        })
        .collect::<Vec<u32>>();
    let mine: Vec<&str> = listing
        .lines()
        .filter(|l| java.iter().any(|p| l.contains(&format!("pid={p},"))))
        .collect();
    assert!(!mine.is_empty(), "Keycloak listens somewhere:\n{listing}");
    for line in mine {
        let local = line.split_whitespace().nth(3).unwrap_or_default();
        let loopback = ["127.0.0.1:", "[::ffff:127.0.0.1]:", "[::1]:"];
        assert!(
            loopback.iter().any(|l| local.starts_with(l)),
            "Keycloak listens beyond loopback: {line}"
        );
    }
}
