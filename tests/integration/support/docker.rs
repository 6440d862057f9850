//! A private Docker engine for the tests: Debian's `dockerd` on a unix
//! socket under a temporary directory (no bridge, no iptables, vfs
//! storage), the docker CLI pointed at it with its own config directory,
//! containerd's `ctr` on the engine's own containerd, and a Debian 12 base
//! image made with `debootstrap` and `docker import` (never pulled). Stopped
//! and removed on drop.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::{require, Process, Run};

pub struct Dockerd {
    pub dir: tempfile::TempDir,
    process: Option<Process>,
}

impl Dockerd {
    pub fn start() -> Self {
        let dockerd = require("dockerd", "docker.io");
        require("docker", "docker.io");
        // unix socket paths are short: keep the directory near /
        let dir = tempfile::Builder::new()
            .prefix("rgd")
            .tempdir_in("/tmp")
            .unwrap();
        let d = dir.path();
        let log = d.join("dockerd.log");
        let child = Command::new(dockerd)
            .arg("--host")
            .arg(format!("unix://{}", d.join("docker.sock").display()))
            .arg("--data-root")
            .arg(d.join("root"))
            .arg("--exec-root")
            .arg(d.join("exec"))
            .arg("--pidfile")
            .arg(d.join("docker.pid"))
            .args([
                "--bridge=none",
                "--iptables=false",
                "--ip-masq=false",
                "--storage-driver=vfs",
            ])
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("start dockerd");
        let engine = Self {
            process: Some(Process {
                child,
                log: log.clone(),
            }),
            dir,
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let run = engine.docker(&engine.dir.path().join("cli"), &["version"], None);
            if run.ok {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "dockerd did not start: {}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        engine
    }

    pub fn socket(&self) -> PathBuf {
        self.dir.path().join("docker.sock")
    }

    /// The containerd the engine runs, for `ctr`.
    pub fn containerd_socket(&self) -> PathBuf {
        self.dir.path().join("exec/containerd/containerd.sock")
    }

    /// The docker CLI against this engine, with `config` as its config
    /// directory (where `docker login` stores credentials).
    pub fn docker(&self, config: &Path, args: &[&str], stdin: Option<&str>) -> Run {
        self.docker_env(config, args, stdin, &[])
    }

    /// [`Dockerd::docker`] with extra environment variables (a `PATH`
    /// with a credential helper, the `HOME` it reads).
    pub fn docker_env(
        &self,
        config: &Path,
        args: &[&str],
        stdin: Option<&str>,
        env: &[(&str, &str)],
    ) -> Run {
        use std::io::Write as _;
        let mut child = Command::new(require("docker", "docker.io"))
            .args(args)
            .env("DOCKER_HOST", format!("unix://{}", self.socket().display()))
            .env("DOCKER_CONFIG", config)
            .envs(env.iter().copied())
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("docker runs");
        if let Some(input) = stdin {
            child
                .stdin
                .take()
                .unwrap()
                .write_all(input.as_bytes())
                .unwrap();
        }
        let output = child.wait_with_output().unwrap();
        Run {
            ok: output.status.success(),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }

    /// containerd's `ctr` against the engine's containerd.
    pub fn ctr(&self, args: &[&str]) -> Run {
        let output = Command::new(require("ctr", "containerd"))
            .arg("--address")
            .arg(self.containerd_socket())
            .args(["--namespace", "regauth-test"])
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("ctr runs");
        Run {
            ok: output.status.success(),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }

    /// Imports a Debian 12 root file system (debootstrap, cached under the
    /// target directory) as `debian:bookworm-slim`, so the Dockerfile
    /// builds without pulling.
    pub fn import_debian_base(&self) {
        let cache = Path::new(env!("CARGO_TARGET_TMPDIR")).join("bookworm-minbase.tar");
        if !cache.exists() {
            let debootstrap = require("debootstrap", "debootstrap");
            let rootfs = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
            let out = Command::new(debootstrap)
                .args(["--variant=minbase", "--include=ca-certificates", "bookworm"])
                .arg(rootfs.path())
                .arg("http://deb.debian.org/debian")
                .output()
                .expect("debootstrap runs");
            assert!(
                out.status.success(),
                "debootstrap failed (it needs root and Debian's mirror): {}",
                String::from_utf8_lossy(&out.stderr)
            );
            let partial = cache.with_extension("partial");
            let out = Command::new("tar")
                .arg("-C")
                .arg(rootfs.path())
                .arg("-cf")
                .arg(&partial)
                .arg(".")
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            std::fs::rename(&partial, &cache).unwrap();
        }
        let run = self.docker(
            &self.dir.path().join("cli"),
            &["import", cache.to_str().unwrap(), "debian:bookworm-slim"],
            None,
        );
        assert!(run.ok, "docker import: {run:?}");
    }
}

impl Drop for Dockerd {
    fn drop(&mut self) {
        // stop containers first, then the engine (it unmounts its layers)
        let _ = self.docker(
            &self.dir.path().join("cli"),
            &["rm", "-f", "regauth-test"],
            None,
        );
        if let Some(mut process) = self.process.take() {
            let _ = Command::new("kill")
                .arg(process.child.id().to_string())
                .status();
            let deadline = Instant::now() + Duration::from_secs(20);
            while process.child.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(100));
            }
            drop(process); // kills it if it is still running
        }
        // The engine leaves its network namespace bind-mounted under
        // exec/netns, and a directory with a mount in it is not removed:
        // each run left its gigabyte of layers in /tmp.
        for mount in mounts_under(self.dir.path()) {
            let _ = Command::new("umount").arg(&mount).status();
        }
        if let Err(e) = std::fs::remove_dir_all(self.dir.path()) {
            eprintln!(
                "the engine's directory {} is not removed: {e}",
                self.dir.path().display()
            );
        }
    }
}

/// The mount points at or under `dir`, deepest first.
fn mounts_under(dir: &Path) -> Vec<PathBuf> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let mut mounts: Vec<PathBuf> = info
        .lines()
        .filter_map(|line| line.split(' ').nth(4))
        .map(PathBuf::from)
        .filter(|mount| mount.starts_with(dir))
        .collect();
    mounts.sort_by_key(|mount| std::cmp::Reverse(mount.components().count()));
    mounts
}
