//! LDAP provider costs against a real slapd on loopback, in one run:
//! the cold path (search + bind + nested group walk, no cache) as p50/p99,
//! LDAP operations per cold login, and cached-path throughput of an LDAP
//! user against a static user and /healthz (wrk, alternating rounds).
//!
//!   cargo bench --bench ldap        (needs slapd, ldap-utils, openssl, wrk)

#[path = "../tests/integration/support/mod.rs"]
mod support;

use std::time::{Duration, Instant};

use regauth_providers::{Credentials, Outcome};
use support::slapd::Slapd;
use support::{Fixture, Server};

fn count(log: &str, op: &str) -> usize {
    log.lines().filter(|l| l.contains(op)).count()
}

fn wrk(url: &str, auth: Option<&str>, seconds: u64) -> f64 {
    let mut cmd = std::process::Command::new(support::require("wrk", "wrk"));
    cmd.args(["-t1", "-c32", &format!("-d{seconds}s")]);
    if let Some(auth) = auth {
        cmd.args(["-H", &format!("Authorization: {auth}")]);
    }
    let out = cmd.arg(url).output().expect("wrk runs");
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines()
        .find(|l| l.starts_with("Requests/sec:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("wrk output: {text}"))
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let slapd = Slapd::start();
    let fixture = Fixture::new();
    let policy = "\n[[rule]]\ngroups = [\"platform\"]\nrepos = [\"platform/**\"]\nactions = [\"pull\", \"push\"]\n";

    // Cold path: the provider itself, with group caching off.
    let cold = fixture.state(&format!(
        "{}{policy}",
        slapd.provider_toml("corp", &[("group_cache_ttl", "\"0s\"")])
    ));
    let ldap = cold.chain.providers()[1].clone();
    let ann = Credentials::new("ann", "ann-pw");
    let log_before = slapd.log();
    let mut samples = Vec::new();
    let logins = 300;
    for _ in 0..logins {
        let started = Instant::now();
        let outcome = ldap.authenticate(&ann).await;
        samples.push(started.elapsed());
        assert!(matches!(outcome, Outcome::Authenticated(_)), "{outcome:?}");
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let log = slapd.log();
    let new = &log[log_before.len()..];
    samples.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    let p50 = ms(samples[logins / 2]);
    let p99 = ms(samples[logins * 99 / 100]);
    let binds = count(new, " BIND dn=") as f64 / 2.0 / logins as f64;
    let searches = count(new, " SRCH base=") as f64 / logins as f64;

    // Cached path: a whole server, LDAP user vs static user vs baseline.
    let server = Server::start(
        &fixture,
        &format!("{}{policy}", slapd.provider_toml("corp", &[])),
    )
    .await;
    let base = format!("http://{}", server.addr);
    let ldap_url =
        format!("{base}/auth?service=registry.test&scope=repository:platform/app:pull,push");
    let static_url =
        format!("{base}/auth?service=registry.test&scope=repository:team/app:pull,push");
    let ann_auth = support::basic("ann", "ann-pw");
    let writer_auth = support::basic("writer", "writer-pw");
    let (mut l, mut s, mut h) = (Vec::new(), Vec::new(), Vec::new());
    let seconds = 5;
    let rounds = tokio::task::spawn_blocking(move || {
        for _ in 0..3 {
            l.push(wrk(&ldap_url, Some(&ann_auth), seconds));
            s.push(wrk(&static_url, Some(&writer_auth), seconds));
            h.push(wrk(&format!("{base}/healthz"), None, seconds));
        }
        (l, s, h)
    })
    .await
    .unwrap();
    let (l, s, h) = rounds;
    println!("LDAP cold login (search + bind + nested groups, no cache), {logins} logins:");
    println!(
        "  p50 {p50:.2} ms, p99 {p99:.2} ms; per login {binds:.1} binds, {searches:.1} searches"
    );
    println!("cached token path, wrk -t1 -c32 -d{seconds}s, 3 alternating rounds:");
    println!(
        "  LDAP user (ann):     {l:?} -> median {:.0} tokens/s",
        median(l.clone())
    );
    println!(
        "  static user:         {s:?} -> median {:.0} tokens/s",
        median(s.clone())
    );
    println!(
        "  /healthz baseline:   {h:?} -> median {:.0} requests/s",
        median(h.clone())
    );
    println!("  LDAP / static: {:.2}", median(l) / median(s));
}
