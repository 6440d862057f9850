//! The browser test's parts: a real OpenID Connect server with an
//! interactive login page (`tests/ui/idp.mjs`, oidc-provider pinned in
//! `tests/ui/package-lock.json`) and Debian's chromium driven by
//! playwright-core (`tests/ui/browser.mjs`). `tests/run` installs them.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::{free_port, require};

fn ui_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/ui")
}

fn node() -> PathBuf {
    let node = require("node", "nodejs (v20 or newer)");
    for package in ["oidc-provider", "playwright-core"] {
        assert!(
            ui_dir().join("node_modules").join(package).is_dir(),
            "the browser test's packages are missing: run `tests/run` or `npm ci --prefix tests/ui`"
        );
    }
    node
}

/// oidc-provider on a free loopback port, stopped on drop.
pub struct LoginIdp {
    pub issuer: String,
    child: Child,
    stdin: std::process::ChildStdin,
    lines: std::sync::mpsc::Receiver<String>,
}

impl LoginIdp {
    /// An issuer whose client `regauth` (secret `secret`) may redirect to
    /// `redirect_uri`.
    pub fn start(redirect_uri: &str, secret: &str) -> Self {
        let port = free_port();
        let mut child = Command::new(node())
            .arg(ui_dir().join("idp.mjs"))
            .arg(port.to_string())
            .arg(redirect_uri)
            .arg(secret)
            .current_dir(ui_dir())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start the login IdP");
        let stdin = child.stdin.take().unwrap();
        let (issuer, lines) = super::ready_issuer(&mut child, "the login IdP");
        Self {
            issuer,
            child,
            stdin,
            lines,
        }
    }

    fn tell(&mut self, line: &str) {
        use std::io::Write as _;
        writeln!(self.stdin, "{line}").unwrap();
        let answer = self.lines.recv_timeout(Duration::from_secs(10)).unwrap();
        assert_eq!(answer, "ok", "the login IdP took `{line}`");
    }

    /// An administrator removes the account: its refresh tokens stop working.
    pub fn disable(&mut self, user: &str) {
        self.tell(&format!("disable {user}"));
    }

    /// The account's groups from now on.
    pub fn set_groups(&mut self, user: &str, groups: &[&str]) {
        let list = if groups.is_empty() {
            "-".to_owned()
        } else {
            groups.join(",")
        };
        self.tell(&format!("groups {user} {list}"));
    }
}

impl Drop for LoginIdp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// regauth's configuration for the login IdP at `ui`: the provider `sso`
/// for the browser sign-in alone (no audiences: it takes no tokens; its
/// client secret written under `f`), a rule giving `sso:platform` pull
/// and push on `platform/**`, and the page, with `page` lines added to
/// `[app_passwords]`.
pub fn sso_page_toml(f: &super::Fixture, idp: &LoginIdp, ui: &str, page: &str) -> String {
    let secret_file = f.path("client.secret");
    std::fs::write(&secret_file, "regauth-browser-secret\n").unwrap();
    format!(
        r#"
[[provider]]
name = "sso"
kind = "oidc"
issuer = "{issuer}"
client_id = "regauth"
client_secret_file = "{secret}"
browser_login = true
timeout = "5s"

[[rule]]
groups = ["sso:platform"]
repos = ["platform/**"]
actions = ["pull", "push"]

[app_passwords]
key_file = "{key}"
url = "{ui}"
{page}
"#,
        issuer = idp.issuer,
        secret = secret_file.display(),
        key = f.path("app-passwords.key").display(),
    )
}

/// Where a browser test's screenshots go: `REGAUTH_SCREENSHOTS` when set,
/// else `work`; made if missing.
pub fn screenshots(work: &Path) -> PathBuf {
    let shots = std::env::var("REGAUTH_SCREENSHOTS")
        .map(PathBuf::from)
        .unwrap_or_else(|_| work.to_owned());
    std::fs::create_dir_all(&shots).unwrap();
    shots
}

/// Runs `tests/ui/browser.mjs` with these options and command; the JSON
/// of its last line.
pub async fn browser(options: &serde_json::Value, command: &str) -> serde_json::Value {
    let chromium = require("chromium", "chromium");
    let output = tokio::process::Command::new(node())
        .arg(ui_dir().join("browser.mjs"))
        .arg(options.to_string())
        .arg(command)
        .env("CHROMIUM", chromium)
        .current_dir(ui_dir())
        .stdin(Stdio::null())
        .output();
    let output = tokio::time::timeout(Duration::from_secs(120), output)
        .await
        .expect("the browser finished within 120 s")
        .expect("the browser runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "browser {command} failed:\n{stdout}\n{stderr}"
    );
    let last = stdout.lines().last().unwrap_or_default();
    serde_json::from_str(last).unwrap_or_else(|e| panic!("browser said {last:?}: {e}\n{stderr}"))
}
