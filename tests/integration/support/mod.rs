//! Test support: regauth in-process (with `oneshot` or on a loopback
//! socket), and the real components it is checked against (Debian's
//! `docker-registry`, `skopeo`), each on a free loopback port and stopped on
//! drop. A missing component fails the test with an install hint.

#![allow(dead_code)]

pub mod browser;
pub mod docker;
pub mod gitea;
pub mod github;
pub mod gitlab;
pub mod idp;
pub mod issuer;
pub mod nginx;
pub mod oci;
pub mod page;
pub mod redis;
pub mod samba;
pub mod slapd;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{Request, StatusCode};
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use http_body_util::BodyExt as _;
use regauth::config::Config;
use regauth::AppState;
use tower::ServiceExt as _;

pub const SERVICE: &str = "registry.test";
pub const ISSUER: &str = "regauth-test";

/// Test users: (name, password, groups).
pub const USERS: &[(&str, &str, &[&str])] = &[
    ("writer", "writer-pw", &["writers"]),
    ("reader", "reader-pw", &["readers"]),
    ("admin", "admin-pw", &[]),
    ("colon", "p:a:ss wörd", &["writers"]),
];

/// The static users' rules, qualified with their provider (`local:`) so
/// that tests can add other providers beside it.
pub const POLICY: &str = r#"
[[rule]]
groups = ["local:writers"]
repos = ["team/**", "public/**"]
actions = ["pull", "push"]

[[rule]]
groups = ["local:readers"]
repos = ["team/**"]
actions = ["pull"]

[[rule]]
anonymous = true
repos = ["public/**"]
actions = ["pull"]

[[rule]]
users = ["local:admin"]
repos = ["**"]
actions = ["*"]

[[rule]]
users = ["local:admin"]
type = "registry"
repos = ["catalog"]
actions = ["*"]
"#;

/// Fails the test with an install hint when a program is missing.
pub fn require(program: &str, package: &str) -> PathBuf {
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join(program))
            .find(|p| p.is_file())
    });
    found.unwrap_or_else(|| {
        panic!("`{program}` is not installed: run `tests/run` or `apt-get install -y {package}`")
    })
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

/// A temporary directory with a generated signing key and a users file.
pub struct Fixture {
    pub dir: tempfile::TempDir,
    pub key: PathBuf,
    pub cert: PathBuf,
}

impl Fixture {
    pub fn new() -> Self {
        Self::with_key(regauth::keys::KeyType::Es256)
    }

    pub fn with_key(kind: regauth::keys::KeyType) -> Self {
        regauth_providers::install_crypto_provider();
        let dir = tempfile::tempdir().expect("tempdir");
        let key = dir.path().join("token.key");
        let cert = dir.path().join("token.crt");
        let (k, c) = regauth::keys::generate(kind, ISSUER, Duration::from_secs(3600))
            .expect("key generation");
        regauth::keys::write_key_files(&key, &cert, &k, &c, regauth::keys::IfExists::Refuse)
            .expect("write keys");
        let mut htpasswd = String::new();
        for (user, password, _) in USERS {
            let hash = regauth_providers::static_users::hash_bcrypt(password, 4).unwrap();
            htpasswd.push_str(&format!("{user}:{hash}\n"));
        }
        std::fs::write(dir.path().join("users.htpasswd"), htpasswd).unwrap();
        Self { dir, key, cert }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// A complete configuration; `extra` is appended (more rules, sections).
    pub fn config_text(&self, listen: &str, extra: &str) -> String {
        let mut groups = std::collections::BTreeMap::<&str, Vec<&str>>::new();
        for (user, _, gs) in USERS {
            for g in *gs {
                groups.entry(g).or_default().push(user);
            }
        }
        let groups: String = groups
            .iter()
            .map(|(g, members)| format!("{g} = {members:?}\n"))
            .collect();
        format!(
            r#"
[server]
listen = "{listen}"

[token]
issuer = "{ISSUER}"
services = ["{SERVICE}"]
key = "{key}"
certificate = "{cert}"

[cache]
max_failures = 1000

[refresh_tokens]
state_dir = "{state}"
key_file = "{refresh_key}"

[[provider]]
name = "local"
kind = "static"
htpasswd = "{users}"

[provider.groups]
{groups}
{POLICY}
{extra}
"#,
            key = self.key.display(),
            cert = self.cert.display(),
            users = self.path("users.htpasswd").display(),
            state = self.path("data").display(),
            refresh_key = self.path("refresh.key").display(),
        )
    }

    pub fn state(&self, extra: &str) -> Arc<AppState> {
        self.state_with(&self.config_text("127.0.0.1:0", extra))
    }

    pub fn state_with(&self, text: &str) -> Arc<AppState> {
        let config = Config::from_toml("test", text, &[]).expect("valid test config");
        regauth::build(config).expect("state")
    }
}

/// A response as the tests look at it.
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: axum::http::HeaderMap,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The token's (header, claims), after checking the response shape.
    pub fn token(&self) -> (serde_json::Value, serde_json::Value) {
        assert_eq!(self.status, StatusCode::OK, "{}", self.text());
        let body = self.json();
        let token = body["token"].as_str().expect("token");
        assert_eq!(body["access_token"], body["token"]);
        decode(token)
    }

    /// The granted access list of the token.
    pub fn access(&self) -> Vec<(String, String, Vec<String>)> {
        let (_, claims) = self.token();
        claims["access"]
            .as_array()
            .expect("access is an array")
            .iter()
            .map(|a| {
                (
                    a["type"].as_str().unwrap().to_owned(),
                    a["name"].as_str().unwrap().to_owned(),
                    a["actions"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|x| x.as_str().unwrap().to_owned())
                        .collect(),
                )
            })
            .collect()
    }

    /// Every granted action, across the access entries.
    pub fn actions(&self) -> Vec<String> {
        self.access().into_iter().flat_map(|(_, _, a)| a).collect()
    }

    /// Asserts the registry's JSON error shape with this status.
    pub fn assert_error(&self, status: StatusCode) -> serde_json::Value {
        assert_eq!(self.status, status, "{}", self.text());
        let body = self.json();
        assert!(body["errors"][0]["code"].is_string(), "{body}");
        assert!(body["errors"][0]["message"].is_string(), "{body}");
        body
    }
}

pub fn decode(jwt: &str) -> (serde_json::Value, serde_json::Value) {
    let parts: Vec<&str> = jwt.split('.').collect();
    assert_eq!(parts.len(), 3, "compact JWT");
    let part = |p: &str| -> serde_json::Value {
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(p).expect("base64url")).expect("JSON")
    };
    (part(parts[0]), part(parts[1]))
}

pub fn basic(user: &str, password: &str) -> String {
    format!("Basic {}", STANDARD.encode(format!("{user}:{password}")))
}

/// Sends one request through the router without a socket.
pub async fn call(state: &Arc<AppState>, request: Request<Body>) -> Reply {
    let response = regauth::app(state.clone())
        .oneshot(request)
        .await
        .expect("infallible router");
    let status = response.status();
    let headers = response.headers().clone();
    let body = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes()
        .to_vec();
    Reply {
        status,
        headers,
        body,
    }
}

/// Sends one request through the router of a [`regauth::Live`] state.
pub async fn call_live(live: &Arc<regauth::Live>, request: Request<Body>) -> Reply {
    let response = regauth::http::router(live.clone())
        .oneshot(request)
        .await
        .expect("infallible router");
    let status = response.status();
    let headers = response.headers().clone();
    let body = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes()
        .to_vec();
    Reply {
        status,
        headers,
        body,
    }
}

pub async fn get(state: &Arc<AppState>, uri: &str, auth: Option<&str>) -> Reply {
    let mut request = Request::get(uri);
    if let Some(auth) = auth {
        request = request.header("authorization", auth);
    }
    call(state, request.body(Body::empty()).unwrap()).await
}

/// A GET token request for one scope with Basic credentials.
pub async fn token_for(state: &Arc<AppState>, user: &str, secret: &str, scope: &str) -> Reply {
    let uri = format!("/auth?service={SERVICE}&scope={scope}");
    get(state, &uri, Some(&basic(user, secret))).await
}

/// A GET token request for `scope` (none if empty) with Basic credentials
/// from `client` (an `X-Forwarded-For` hop, believed when the config trusts
/// the router's peer: `trusted_proxies = ["0.0.0.0"]`).
pub async fn token_from(
    state: &Arc<AppState>,
    client: &str,
    user: &str,
    secret: &str,
    scope: &str,
) -> Reply {
    let mut uri = format!("/auth?service={SERVICE}");
    if !scope.is_empty() {
        uri.push_str(&format!("&scope={scope}"));
    }
    let request = Request::get(uri)
        .header("authorization", basic(user, secret))
        .header("x-forwarded-for", client)
        .body(Body::empty())
        .unwrap();
    call(state, request).await
}

/// `docker login`: GET with `offline_token=true`, Basic credentials and
/// no scope. The reply holds a `refresh_token` when the login may have one.
pub async fn login_offline(state: &Arc<AppState>, user: &str, secret: &str) -> Reply {
    let uri = format!("/auth?account={user}&client_id=docker&offline_token=true&service={SERVICE}");
    get(state, &uri, Some(&basic(user, secret))).await
}

/// The refresh token of a [`login_offline`] reply.
pub fn refresh_token_of(reply: &Reply) -> String {
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    reply.json()["refresh_token"]
        .as_str()
        .unwrap_or_else(|| panic!("a refresh_token in {}", reply.text()))
        .to_owned()
}

/// docker's later requests: POST `grant_type=refresh_token`, no username.
pub async fn refresh_grant(state: &Arc<AppState>, token: &str, scope: &str) -> Reply {
    post_form(
        state,
        "/auth",
        &format!(
            "grant_type=refresh_token&client_id=docker&service={SERVICE}&scope={scope}&refresh_token={token}"
        ),
    )
    .await
}

/// Runs `regauth` with these arguments; (success, stdout, stderr).
pub fn regauth_cli(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_regauth"))
        .args(args)
        .env_remove("REGAUTH_CONFIG")
        .output()
        .expect("regauth runs");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

pub async fn post_form(state: &Arc<AppState>, uri: &str, form: &str) -> Reply {
    let request = Request::post(uri)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(Body::from(form.to_owned()))
        .unwrap();
    call(state, request).await
}

/// regauth on a real loopback socket, stopped on drop.
pub struct Server {
    /// The state it started with.
    pub state: Arc<AppState>,
    /// What it serves from now (reloads swap it).
    pub live: Arc<regauth::Live>,
    pub addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Server {
    pub async fn start(fixture: &Fixture, extra: &str) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let state = fixture.state_with(&fixture.config_text(&addr.to_string(), extra));
        Self::serve(state, listener)
    }

    /// Serves a complete configuration text on `addr` (a port found free
    /// earlier, for configurations that must name it).
    pub async fn start_at(fixture: &Fixture, text: &str, addr: SocketAddr) -> Self {
        let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
        Self::serve(fixture.state_with(text), listener)
    }

    /// Serves a complete configuration text (its `listen` is not used).
    pub async fn start_with(fixture: &Fixture, text: &str) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        Self::serve(fixture.state_with(text), listener)
    }

    fn serve(state: Arc<AppState>, listener: tokio::net::TcpListener) -> Self {
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let live = regauth::Live::new(state.clone());
        let serving = live.clone();
        tokio::spawn(async move {
            let _ = regauth::http::listen::serve(serving, listener, async {
                let _ = stopped.await;
            })
            .await;
        });
        Self {
            state,
            live,
            addr,
            stop: Some(stop),
        }
    }

    pub fn realm(&self) -> String {
        format!("http://{}/auth", self.addr)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// The `regauth` binary serving a configuration file, killed on drop.
pub struct Regauth {
    pub addr: SocketAddr,
    pub process: Process,
}

impl Regauth {
    /// Starts `regauth serve --config PATH` (the file must listen on
    /// `addr`) with these extra environment variables, and waits for
    /// `/healthz`.
    pub async fn start(config: &Path, addr: SocketAddr, env: &[(&str, &str)]) -> Self {
        let log = config.with_extension("log");
        let child = Command::new(env!("CARGO_BIN_EXE_regauth"))
            .args(["--log-format", "json", "serve", "--config"])
            .arg(config)
            .envs(env.iter().copied())
            .env_remove("REGAUTH_CONFIG")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("start regauth");
        let process = Process {
            child,
            name: "regauth",
            log,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(r) = reqwest::get(format!("http://{addr}/healthz")).await {
                if r.status() == 200 {
                    break;
                }
            }
            assert!(
                Instant::now() < deadline,
                "regauth did not start: {}",
                std::fs::read_to_string(&process.log).unwrap_or_default()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Self { addr, process }
    }

    /// Starts an HTTPS `regauth serve` and waits until it listens.
    pub async fn start_tls(config: &Path, addr: SocketAddr, _ca: &Path) -> Self {
        let log = config.with_extension("log");
        let child = Command::new(env!("CARGO_BIN_EXE_regauth"))
            .args(["--log-format", "json", "serve", "--config"])
            .arg(config)
            .env_remove("REGAUTH_CONFIG")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("start regauth");
        let process = Process {
            child,
            name: "regauth",
            log,
        };
        let server = Self { addr, process };
        let deadline = Instant::now() + Duration::from_secs(20);
        while !server.log().contains("regauth listening") {
            assert!(
                Instant::now() < deadline,
                "regauth did not start: {}",
                server.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        server
    }

    /// Resident memory of the process, in KiB (from /proc).
    pub fn rss_kib(&self) -> u64 {
        let status =
            std::fs::read_to_string(format!("/proc/{}/status", self.process.child.id())).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmRSS in /proc/PID/status")
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.process.log).unwrap_or_default()
    }
}

/// A child process killed on drop.
pub struct Process {
    pub child: Child,
    pub name: &'static str,
    pub log: PathBuf,
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Debian's `docker-registry` (distribution 2.8) configured for token auth.
pub struct Registry {
    pub addr: SocketAddr,
    pub process: Process,
    _dir: tempfile::TempDir,
}

impl Registry {
    pub async fn start(realm: &str, rootcertbundle: &Path) -> Self {
        Self::start_with_env(realm, rootcertbundle, &[]).await
    }

    /// A registry with extra environment variables (`SSL_CERT_FILE`, ...).
    pub async fn start_with_env(realm: &str, rootcertbundle: &Path, env: &[(&str, &str)]) -> Self {
        let binary = require("docker-registry", "docker-registry");
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let config = format!(
            r#"version: 0.1
log:
  level: warn
storage:
  filesystem:
    rootdirectory: "{root}"
  delete:
    enabled: true
http:
  addr: "127.0.0.1:{port}"
  secret: "test-only-secret"
auth:
  token:
    realm: "{realm}"
    service: "{SERVICE}"
    issuer: "{ISSUER}"
    rootcertbundle: "{bundle}"
"#,
            root = dir.path().join("data").display(),
            bundle = rootcertbundle.display(),
        );
        let config_path = dir.path().join("config.yml");
        std::fs::write(&config_path, config).unwrap();
        let log = dir.path().join("registry.log");
        let child = Command::new(binary)
            .arg("serve")
            .arg(&config_path)
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("start docker-registry");
        let process = Process {
            child,
            name: "docker-registry",
            log,
        };
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(r) = reqwest::get(format!("http://{addr}/v2/")).await {
                assert_eq!(r.status(), 401, "the registry must demand a token");
                break;
            }
            assert!(
                Instant::now() < deadline,
                "docker-registry did not start: {}",
                std::fs::read_to_string(&process.log).unwrap_or_default()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Self {
            addr,
            process,
            _dir: dir,
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.process.log).unwrap_or_default()
    }
}

/// What a skopeo run returned.
#[derive(Debug)]
pub struct Run {
    pub ok: bool,
    pub stdout: String,
    pub stderr: String,
}

/// Runs skopeo with an isolated policy and auth file.
pub async fn skopeo(work: &Path, args: &[&str]) -> Run {
    skopeo_env(work, args, &[]).await
}

/// Runs skopeo with extra environment variables (`SSL_CERT_FILE`, ...).
pub async fn skopeo_env(work: &Path, args: &[&str], env: &[(&str, &str)]) -> Run {
    let binary = require("skopeo", "skopeo");
    let policy = work.join("policy.json");
    if !policy.exists() {
        std::fs::write(
            &policy,
            r#"{"default":[{"type":"insecureAcceptAnything"}]}"#,
        )
        .unwrap();
    }
    let output = tokio::process::Command::new(binary)
        .arg("--policy")
        .arg(&policy)
        .args(args)
        .env("REGISTRY_AUTH_FILE", work.join("auth.json"))
        .env("HOME", work)
        .env("XDG_RUNTIME_DIR", work)
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .output();
    let output = tokio::time::timeout(Duration::from_secs(120), output)
        .await
        .expect("skopeo finished within 120 s")
        .expect("skopeo runs");
    Run {
        ok: output.status.success(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// Everything logged by this test binary, at every level, as JSON lines.
#[derive(Clone, Default)]
pub struct Capture(Arc<std::sync::Mutex<Vec<u8>>>);

impl Capture {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

impl std::io::Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Capture {
    type Writer = Capture;
    fn make_writer(&'a self) -> Capture {
        self.clone()
    }
}

/// Installs (once) a global subscriber that captures every log line of
/// every test in this binary; a thread-local one would miss events from
/// other threads and race with tracing's callsite cache.
pub fn log_capture() -> Capture {
    static CAPTURE: std::sync::OnceLock<Capture> = std::sync::OnceLock::new();
    CAPTURE
        .get_or_init(|| {
            let capture = Capture::default();
            let subscriber = tracing_subscriber::fmt()
                .with_max_level(tracing::Level::TRACE)
                .json()
                .with_writer(capture.clone())
                .finish();
            tracing::subscriber::set_global_default(subscriber).expect("one global subscriber");
            capture
        })
        .clone()
}

/// `skopeo copy` of the `latest` image of an OCI layout to `target`
/// (`docker://host/repo:tag`) with `user:password` credentials.
pub async fn push(work: &Path, creds: &str, layout: &Path, target: &str) -> Run {
    let source = format!("oci:{}:latest", layout.display());
    skopeo(
        work,
        &[
            "copy",
            "--dest-tls-verify=false",
            "--dest-creds",
            creds,
            &source,
            target,
        ],
    )
    .await
}

/// `skopeo inspect` of `target`, with credentials or (`None`) anonymously.
pub async fn inspect(work: &Path, creds: Option<&str>, target: &str) -> Run {
    match creds {
        Some(creds) => {
            skopeo(
                work,
                &["inspect", "--tls-verify=false", "--creds", creds, target],
            )
            .await
        }
        None => {
            skopeo(
                work,
                &["inspect", "--tls-verify=false", "--no-creds", target],
            )
            .await
        }
    }
}

/// Runs podman with its own storage, runtime directory and auth file under
/// `work`, so tests never touch the machine's containers.
pub async fn podman(work: &Path, args: &[&str]) -> Run {
    let binary = require("podman", "podman");
    let output = tokio::process::Command::new(binary)
        .arg("--root")
        .arg(work.join("storage"))
        .arg("--runroot")
        .arg(work.join("run"))
        .args([
            "--storage-driver",
            "vfs",
            "--cgroup-manager",
            "cgroupfs",
            "--events-backend",
            "none",
        ])
        .args(args)
        .env("REGISTRY_AUTH_FILE", work.join("podman-auth.json"))
        .env("XDG_RUNTIME_DIR", work.join("xdg"))
        .env("HOME", work)
        .stdin(Stdio::null())
        .output();
    std::fs::create_dir_all(work.join("xdg")).unwrap();
    let output = tokio::time::timeout(Duration::from_secs(120), output)
        .await
        .expect("podman finished within 120 s")
        .expect("podman runs");
    Run {
        ok: output.status.success(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// Waits for a test server's `READY <issuer>` line on its stdout: the
/// issuer, and the lines it prints after.
pub fn ready_issuer(
    child: &mut std::process::Child,
    what: &str,
) -> (String, std::sync::mpsc::Receiver<String>) {
    use std::io::BufRead as _;
    let stdout = child.stdout.take().expect("the server's stdout is piped");
    let (tx, lines) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let ready = lines
        .recv_timeout(Duration::from_secs(30))
        .unwrap_or_else(|_| panic!("{what} printed READY within 30 s"));
    let issuer = ready
        .strip_prefix("READY ")
        .expect("READY <issuer>")
        .to_owned();
    (issuer, lines)
}

/// An axum app served in the background on a test's listener, stopped
/// (gracefully) when this is dropped.
pub struct Served(Option<tokio::sync::oneshot::Sender<()>>);

impl Served {
    pub fn start(listener: tokio::net::TcpListener, app: axum::Router) -> Self {
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    let _ = stopped.await;
                })
                .await;
        });
        Self(Some(stop))
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        if let Some(stop) = self.0.take() {
            let _ = stop.send(());
        }
    }
}
