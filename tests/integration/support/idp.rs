//! A real OIDC server for the tests: `tests/oidc/idp.mjs` (oauth2-mock-server
//! with Keycloak-shaped hooks, pinned in `tests/oidc/package-lock.json`) on a
//! free loopback port, stopped on drop. `tests/run` installs its packages.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use super::{free_port, require};

pub struct Idp {
    pub issuer: String,
    child: Child,
    stdin: ChildStdin,
    lines: mpsc::Receiver<String>,
    dir: tempfile::TempDir,
}

fn oidc_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/oidc")
}

impl Idp {
    pub fn start() -> Self {
        let node = require("node", "nodejs (v20.19 or newer)");
        let dir = oidc_dir();
        assert!(
            dir.join("node_modules/oauth2-mock-server").is_dir(),
            "the test IdP's packages are missing: run `tests/run` or `npm ci --prefix tests/oidc`"
        );
        let port = free_port();
        let mut child = Command::new(node)
            .arg(dir.join("idp.mjs"))
            .arg(port.to_string())
            .arg(dir.join("realm.json"))
            .current_dir(&dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start the test IdP");
        let stdin = child.stdin.take().unwrap();
        let (issuer, lines) = super::ready_issuer(&mut child, "the test IdP");
        Self {
            issuer,
            child,
            stdin,
            lines,
            dir: tempfile::tempdir().unwrap(),
        }
    }

    /// Adds a new signing key; tokens alternate between the keys from now on.
    pub fn rotate(&mut self) -> String {
        writeln!(self.stdin, "rotate").unwrap();
        let line = self
            .lines
            .recv_timeout(Duration::from_secs(10))
            .expect("ROTATED within 10 s");
        line.strip_prefix("ROTATED ")
            .expect("ROTATED <kid>")
            .to_owned()
    }

    /// Stops the server (an outage).
    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// A client-credentials access token from the IdP.
    pub async fn client_token(&self, client: &str, secret: &str) -> String {
        let r = reqwest::Client::new()
            .post(format!("{}/token", self.issuer))
            .basic_auth(client, Some(secret))
            .form(&[("grant_type", "client_credentials"), ("scope", "openid")])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "client credentials for {client}");
        let body: serde_json::Value = r.json().await.unwrap();
        body["access_token"].as_str().unwrap().to_owned()
    }

    /// The `[[provider]]` block for this IdP, Keycloak-style.
    pub fn provider_toml(&self, name: &str, extra: &str) -> String {
        let secret = self.dir.path().join("client.secret");
        std::fs::write(&secret, "registry-secret\n").unwrap();
        format!(
            r#"
[[provider]]
name = "{name}"
kind = "oidc"
issuer = "{issuer}"
client_id = "registry"
client_secret_file = "{secret}"
password_grant = true
access_tokens = true
audiences = ["registry"]
groups_claims = ["groups", "realm_access.roles", "resource_access.registry.roles"]
timeout = "2s"
{extra}
"#,
            issuer = self.issuer,
            secret = secret.display(),
        )
    }
}

impl Drop for Idp {
    fn drop(&mut self) {
        self.stop();
    }
}
