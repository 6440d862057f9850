//! Debian's `nginx` on a free loopback port as the load balancer in front
//! of regauth replicas: round robin, the client's address in
//! X-Forwarded-For, and a retry on the next replica for requests that
//! failed before an answer began (nginx's default for idempotent methods).

use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::{free_port, require, Process};

pub struct Nginx {
    pub addr: SocketAddr,
    _dir: tempfile::TempDir,
    _process: Process,
}

impl Nginx {
    pub fn start(upstreams: &[SocketAddr]) -> Self {
        let binary = require("nginx", "nginx-light");
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let port = free_port();
        let servers: String = upstreams
            .iter()
            .map(|u| format!("    server {u} max_fails=1 fail_timeout=10s;\n"))
            .collect();
        let conf = format!(
            r#"daemon off;
master_process off;
worker_processes 1;
pid {d}/nginx.pid;
error_log {d}/error.log warn;
events {{ worker_connections 1024; }}
http {{
  access_log off;
  client_body_temp_path {d}/body;
  proxy_temp_path {d}/proxy;
  fastcgi_temp_path {d}/fastcgi;
  uwsgi_temp_path {d}/uwsgi;
  scgi_temp_path {d}/scgi;
  upstream regauth {{
{servers}    keepalive 16;
  }}
  server {{
    listen 127.0.0.1:{port};
    location / {{
      proxy_pass http://regauth;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Host $host;
      proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
      proxy_connect_timeout 1s;
      proxy_next_upstream error timeout http_502;
      proxy_next_upstream_tries 2;
    }}
  }}
}}
"#,
            d = d.display()
        );
        let conf_path = d.join("nginx.conf");
        std::fs::write(&conf_path, conf).unwrap();
        let log = d.join("error.log");
        let child = Command::new(binary)
            .arg("-c")
            .arg(&conf_path)
            .arg("-p")
            .arg(d)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start nginx");
        let process = Process {
            child,
            log: log.clone(),
        };
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(addr).is_err() {
            assert!(
                Instant::now() < deadline,
                "nginx did not start: {}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Self {
            addr,
            _dir: dir,
            _process: process,
        }
    }
}
