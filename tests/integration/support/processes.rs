//! The programs the tests run: the `regauth` binary (serving, and its
//! subcommands), Debian's `docker-registry`, `skopeo` and `podman`. Each
//! long-running one is killed on drop; a missing one fails the test with
//! an install hint.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;

use super::{ISSUER, SERVICE};

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

/// A child process killed on drop.
pub struct Process {
    pub child: Child,
    pub log: PathBuf,
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
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

/// The `regauth` binary serving a configuration file, killed on drop.
pub struct Regauth {
    pub process: Process,
}

impl Regauth {
    /// Starts `regauth serve --config PATH` (the file must listen on
    /// `addr`) with these extra environment variables, and waits for
    /// `/healthz`.
    pub async fn start(config: &Path, addr: SocketAddr, env: &[(&str, &str)]) -> Self {
        let server = Self::spawn(config, env);
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
                server.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        server
    }

    /// Starts an HTTPS `regauth serve` and waits until it listens.
    pub async fn start_tls(config: &Path) -> Self {
        let server = Self::spawn(config, &[]);
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

    fn spawn(config: &Path, env: &[(&str, &str)]) -> Self {
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
        Self {
            process: Process { child, log },
        }
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
        let process = Process { child, log };
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

/// What a skopeo or podman run returned.
pub struct Run {
    pub ok: bool,
    pub stdout: String,
    pub stderr: String,
}

/// Both outputs as the program wrote them, for a failed assertion.
impl std::fmt::Debug for Run {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "ok: {}\n--- stdout\n{}\n--- stderr\n{}",
            self.ok, self.stdout, self.stderr
        )
    }
}

impl Run {
    /// A client's run, which must end within 120 s.
    async fn within(
        what: &str,
        output: impl std::future::Future<Output = std::io::Result<std::process::Output>>,
    ) -> Self {
        let output = tokio::time::timeout(Duration::from_secs(120), output)
            .await
            .unwrap_or_else(|_| panic!("{what} finished within 120 s"))
            .unwrap_or_else(|e| panic!("{what} runs: {e}"));
        Self::of(output)
    }

    fn of(output: std::process::Output) -> Self {
        Self {
            ok: output.status.success(),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }
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
    Run::within("skopeo", output).await
}

/// A component `tests/run` fetches or builds: the path in the environment
/// variable `variable`, else `relative` under `~/.cache/regauth` (or
/// `$XDG_CACHE_HOME/regauth`), where `tests/run` puts it.
pub fn fetched(variable: &str, relative: &str) -> Option<PathBuf> {
    std::env::var_os(variable).map(PathBuf::from).or_else(|| {
        let cache = std::env::var_os("XDG_CACHE_HOME")
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))?;
        Some(cache.join("regauth").join(relative))
    })
}

/// The crane that `tests/run` builds (go-containerregistry, pinned in it):
/// `REGAUTH_CRANE`, else where `tests/run` puts it.
fn crane_binary() -> PathBuf {
    match fetched("REGAUTH_CRANE", &format!("crane-{CRANE_VERSION}/crane")) {
        Some(path) if path.is_file() => path,
        _ => panic!(
            "crane {CRANE_VERSION} is missing: tests/run builds it, or \
             GOBIN=~/.cache/regauth/crane-{CRANE_VERSION} go install \
             github.com/google/go-containerregistry/cmd/crane@{CRANE_VERSION}"
        ),
    }
}

/// The crane version `tests/run` builds.
pub const CRANE_VERSION: &str = "v0.22.1";

/// Runs crane as `user:password` (`None`: anonymously) for `registry`,
/// with a docker config of its own under `work`, written for this call.
pub async fn crane(work: &Path, creds: Option<&str>, registry: &str, args: &[&str]) -> Run {
    let config = work.join("crane");
    std::fs::create_dir_all(&config).unwrap();
    let auths = match creds {
        Some(creds) => {
            let auth = base64::engine::general_purpose::STANDARD.encode(creds);
            serde_json::json!({ "auths": { registry: { "auth": auth } } })
        }
        None => serde_json::json!({ "auths": {} }),
    };
    std::fs::write(config.join("config.json"), auths.to_string()).unwrap();
    crane_in(work, &config, args).await
}

/// Runs crane with `config` as its docker config directory, as it is
/// (what `crane auth login` wrote there, an identity token).
pub async fn crane_in(work: &Path, config: &Path, args: &[&str]) -> Run {
    let output = tokio::process::Command::new(crane_binary())
        .args(args)
        .env("DOCKER_CONFIG", config)
        .env("HOME", work)
        .stdin(Stdio::null())
        .output();
    Run::within("crane", output).await
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
    Run::within("podman", output).await
}
