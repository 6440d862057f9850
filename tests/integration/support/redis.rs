//! Debian's `redis-server` on a free loopback port, without persistence,
//! stopped on drop (and on `stop`, for outage tests).

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

    /// The `[state]` section for this server.
    pub fn state_toml(&self) -> String {
        format!(
            "\n[state]\nbackend = \"redis\"\nurl = \"{}\"\nkey_prefix = \"test:\"\ncommand_timeout = \"500ms\"\nconnect_timeout = \"500ms\"\n",
            self.url()
        )
    }

    /// Stops the server (an outage); `resume` starts it again, empty.
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
                "no",
                "--protected-mode",
                "yes",
            ])
            .arg("--dir")
            .arg(self.dir.path())
            .stdout(std::fs::File::create(&log).unwrap())
            .stderr(Stdio::null())
            .spawn()
            .expect("start redis-server");
        self.process = Some(Process {
            child,
            name: "redis-server",
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
