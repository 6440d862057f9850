//! Debian's `redis-server` on a free loopback port, shaped like the
//! shipped one (`deploy/kubernetes/redis.yaml`): an ACL user with a
//! password and the default user off, and an append-only file, so a
//! restart keeps what regauth stored. Stopped on drop (and on `stop`, for
//! outage tests).

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::{free_port, require, Process};

pub struct Redis {
    pub port: u16,
    dir: tempfile::TempDir,
    process: Option<Process>,
}

impl Redis {
    pub fn start() -> Self {
        let mut redis = Self {
            port: free_port(),
            dir: tempfile::tempdir().unwrap(),
            process: None,
        };
        redis.resume();
        redis
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    /// The ACL user regauth logs in as, and its password.
    pub const USER: &'static str = "regauth";
    pub const PASSWORD: &'static str = "test-only-redis-password";

    /// The `[state]` section for this server.
    pub fn state_toml(&self) -> String {
        let password = self.dir.path().join("password");
        std::fs::write(&password, format!("{}\n", Self::PASSWORD)).unwrap();
        format!(
            "\n[state]\nbackend = \"redis\"\nurl = \"{}\"\nusername = \"{}\"\npassword_file = \"{}\"\nkey_prefix = \"test:\"\ncommand_timeout = \"500ms\"\nconnect_timeout = \"500ms\"\n",
            self.url(),
            Self::USER,
            password.display()
        )
    }

    /// Runs `redis-cli` as regauth's user against this server.
    pub fn cli(&self, args: &[&str]) -> String {
        let out = Command::new(require("redis-cli", "redis-tools"))
            .args([
                "-p",
                &self.port.to_string(),
                "--user",
                Self::USER,
                "--pass",
                Self::PASSWORD,
                "--no-auth-warning",
            ])
            .args(args)
            .output()
            .expect("redis-cli runs");
        assert!(
            out.status.success(),
            "redis-cli {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Stops the server (an outage); `resume` starts it again with what
    /// it had written to its append-only file.
    pub fn stop(&mut self) {
        self.process.take();
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
            assert!(Instant::now() < deadline, "redis-server did not stop");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn resume(&mut self) {
        let binary = require("redis-server", "redis-server");
        let log = self.dir.path().join("redis.log");
        let child = Command::new(binary)
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args([
                "--save",
                "",
                "--appendonly",
                "yes",
                "--appendfsync",
                "always",
                "--protected-mode",
                "yes",
                "--user",
                "default",
                "off",
                "--user",
                Self::USER,
                "on",
                &format!(">{}", Self::PASSWORD),
                "~*",
                "+@read",
                "+@write",
                "+@scripting",
                "+ping",
                "+select",
                "-@dangerous",
            ])
            .arg("--dir")
            .arg(self.dir.path())
            .stdout(std::fs::File::create(&log).unwrap())
            .stderr(Stdio::null())
            .spawn()
            .expect("start redis-server");
        self.process = Some(Process {
            child,
            log: log.clone(),
        });
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "redis-server did not start: {}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}
