//! Identity provider costs, in one run: the LDAP cold path (search, bind
//! and nested group walk, no cache) against a real slapd as p50/p99 with
//! its operation count, and the cached token path of an LDAP user, a
//! GitHub PAT (fake GitHub API) and a static user against /healthz (wrk,
//! alternating rounds).
//!
//!   cargo bench --bench providers   (needs slapd, ldap-utils, openssl, wrk)

// Benchmark harness: a failed unwrap is a failed run.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::disallowed_methods
)]

// The integration tests' support module, for its slapd, fake forges and
// IdP: this benchmark uses a few of its helpers, the tests all of them.
#[allow(dead_code, unused_imports)]
#[path = "../tests/integration/support/mod.rs"]
mod support;

use std::time::{Duration, Instant};

use regauth_providers::{Credentials, Outcome};
use support::gitea::{FakeGitea, Token as GiteaToken};
use support::github::{Behaviour, FakeGitHub};
use support::gitlab::{FakeGitLab, Job, Token as GitLabToken};
use support::idp::Idp;
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
    let policy = "\n[[rule]]\ngroups = [\"corp:platform\"]\nrepos = [\"platform/**\"]\nactions = [\"pull\", \"push\"]\n";

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

    // OIDC: access tokens as passwords with a warm JWKS.
    let idp = Idp::start();
    let oidc_policy =
        "\n[[rule]]\ngroups = [\"keycloak:ci\"]\nrepos = [\"ci/**\"]\nactions = [\"pull\", \"push\"]\n";
    let oidc_state = fixture.state(&format!(
        "{}{oidc_policy}",
        idp.provider_toml("keycloak", "")
    ));
    let http = reqwest::Client::new();
    let mut tokens = Vec::new();
    for i in 0..1000 {
        // a distinct scope makes a distinct token (the mock sets no jti)
        let r = http
            .post(format!("{}/token", idp.issuer))
            .basic_auth("ci-runner", Some("ci-runner-secret"))
            .form(&[
                ("grant_type", "client_credentials"),
                ("scope", &format!("openid s{i}")),
            ])
            .send()
            .await
            .unwrap();
        let body: serde_json::Value = r.json().await.unwrap();
        tokens.push(body["access_token"].as_str().unwrap().to_owned());
    }
    let keycloak = oidc_state.chain.providers()[1].clone();
    assert!(matches!(
        keycloak
            .authenticate(&Credentials::new("ci", &tokens[0]))
            .await,
        Outcome::Authenticated(_)
    ));
    let mut verify = Vec::new();
    for token in &tokens[..300] {
        let started = Instant::now();
        let outcome = keycloak.authenticate(&Credentials::new("ci", token)).await;
        verify.push(started.elapsed());
        assert!(matches!(outcome, Outcome::Authenticated(_)));
    }
    verify.sort();
    let verify_us = verify[verify.len() / 2].as_secs_f64() * 1e6;
    // the cold path as a server runs it: two workers (the machine's cores),
    // every request a token never seen before
    let router = regauth::app(oidc_state.clone());
    let fresh: Vec<String> = tokens[300..].to_vec();
    let started = Instant::now();
    let workers: Vec<_> = fresh
        .chunks(fresh.len() / 2)
        .map(|chunk| {
            let (router, chunk) = (router.clone(), chunk.to_vec());
            tokio::spawn(async move {
                use tower::ServiceExt as _;
                for token in chunk {
                    let request = axum::http::Request::get(
                        "/auth?service=registry.test&scope=repository:ci/tool:pull",
                    )
                    .header("authorization", support::basic("ci", &token))
                    .body(axum::body::Body::empty())
                    .unwrap();
                    let response = router.clone().oneshot(request).await.unwrap();
                    assert_eq!(response.status(), 200);
                }
            })
        })
        .collect();
    for worker in workers {
        worker.await.unwrap();
    }
    let cold_rate = fresh.len() as f64 / started.elapsed().as_secs_f64();
    let oidc_server = Server::start(fixture.config(&format!(
        "{}{oidc_policy}",
        idp.provider_toml("keycloak", "")
    )))
    .await;
    let oidc_url = format!(
        "http://{}/auth?service=registry.test&scope=repository:ci/tool:pull",
        oidc_server.addr
    );
    let oidc_auth = support::basic("ci", &tokens[0]);
    let warm = tokio::task::spawn_blocking(move || {
        (0..3)
            .map(|_| wrk(&oidc_url, Some(&oidc_auth), 5))
            .collect::<Vec<_>>()
    })
    .await
    .unwrap();
    drop(oidc_server);

    // Cached path: a whole server, LDAP vs the forges' tokens vs static
    // user vs baseline.
    let github = FakeGitHub::start().await;
    let pat = "ghp_benchTOKEN000000000000000000000000";
    github.token(
        pat,
        Behaviour::Member {
            login: "octocat",
            orgs: vec!["acme"],
            teams: vec![("acme", "platform", None)],
            scopes: Some("read:org"),
        },
    );
    let github_provider = format!(
        "\n[[provider]]\nname = \"github\"\nkind = \"github\"\napi_url = \"{}\"\norganizations = [\"acme\"]\n\n[[rule]]\ngroups = [\"github:acme/platform\"]\nrepos = [\"acme/**\"]\nactions = [\"pull\", \"push\"]\n",
        github.url()
    );
    let gitlab = FakeGitLab::start().await;
    let glpat = "glpat-benchTOKEN0000000000";
    gitlab.token(
        glpat,
        GitLabToken::User {
            username: "gl-dev",
            state: "active",
            bot: false,
            groups: vec![("acme/platform", 30)],
            projects: vec![],
            scopes: &["read_api"],
        },
    );
    let job_token = "glcbt-64_benchJobToken00000";
    gitlab.job(
        job_token,
        Job {
            project: "acme/app",
            git_ref: "main",
            tag: false,
            status: "running",
            source: "push",
            user: "gl-dev",
        },
    );
    let gitea = FakeGitea::start().await;
    let gitea_token = "0123456789abcdef0123456789abcdef01234567";
    gitea.token(
        gitea_token,
        GiteaToken::User {
            login: "gt-dev",
            prohibited: false,
            orgs: vec!["acme"],
            teams: vec![("acme", "platform")],
            scopes: &["read:user", "read:organization"],
        },
    );
    let forges = format!(
        "\n[[provider]]\nname = \"gitlab\"\nkind = \"gitlab\"\nurl = \"{}\"\ngroups = [\"acme\"]\n\n[[provider]]\nname = \"gitea\"\nkind = \"gitea\"\nurl = \"{}\"\norganizations = [\"acme\"]\n\n[[rule]]\ngroups = [\"gitlab:acme/platform\", \"gitea:acme/platform\"]\nrepos = [\"acme/**\"]\nactions = [\"pull\", \"push\"]\n\n[[rule]]\nusers = [\"gitlab:acme/app\"]\nclaims = {{ token_type = \"job\", ref = \"main\" }}\nrepos = [\"acme/app\"]\nactions = [\"pull\", \"push\"]\n",
        gitlab.url(),
        gitea.url()
    );
    let providers = format!(
        "{}{policy}{github_provider}{forges}",
        slapd.provider_toml("corp", &[])
    );
    let server = Server::start(fixture.config(&providers)).await;
    let base = format!("http://{}", server.addr);
    let ldap_url =
        format!("{base}/auth?service=registry.test&scope=repository:platform/app:pull,push");
    let static_url =
        format!("{base}/auth?service=registry.test&scope=repository:team/app:pull,push");
    let github_url =
        format!("{base}/auth?service=registry.test&scope=repository:acme/app:pull,push");
    let ann_auth = support::basic("ann", "ann-pw");
    let pat_auth = support::basic("octocat", pat);
    let glpat_auth = support::basic("gl-dev", glpat);
    let job_auth = support::basic("gitlab-ci-token", job_token);
    let gitea_auth = support::basic("gt-dev", gitea_token);
    let writer_auth = support::basic("writer", "writer-pw");
    let (mut l, mut g, mut s, mut h) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let (mut gl, mut job, mut gt) = (Vec::new(), Vec::new(), Vec::new());
    let seconds = 5;
    let rounds = tokio::task::spawn_blocking(move || {
        for _ in 0..3 {
            l.push(wrk(&ldap_url, Some(&ann_auth), seconds));
            g.push(wrk(&github_url, Some(&pat_auth), seconds));
            gl.push(wrk(&github_url, Some(&glpat_auth), seconds));
            job.push(wrk(&github_url, Some(&job_auth), seconds));
            gt.push(wrk(&github_url, Some(&gitea_auth), seconds));
            s.push(wrk(&static_url, Some(&writer_auth), seconds));
            h.push(wrk(&format!("{base}/healthz"), None, seconds));
        }
        (l, g, s, h, gl, job, gt)
    })
    .await
    .unwrap();
    let (l, g, s, h, gl, job, gt) = rounds;
    let user_calls = github.user_calls();
    println!("LDAP cold login (search + bind + nested groups, no cache), {logins} logins:");
    println!(
        "  p50 {p50:.2} ms, p99 {p99:.2} ms; per login {binds:.1} binds, {searches:.1} searches"
    );
    println!("OIDC access token as the password (warm JWKS):");
    println!("  one verification (provider, no verdict cache), median of 300: {verify_us:.1} us");
    println!("  new token every request (verdict cache cold), in-process, 2 workers: {cold_rate:.0} tokens/s");
    println!(
        "  same token repeated (verdict cache warm), wrk: {warm:?} -> median {:.0} tokens/s",
        median(warm.clone())
    );
    println!("cached token path, wrk -t1 -c32 -d{seconds}s, 3 alternating rounds:");
    println!(
        "  LDAP user (ann):     {l:?} -> median {:.0} tokens/s",
        median(l.clone())
    );
    println!(
        "  GitHub PAT:          {g:?} -> median {:.0} tokens/s",
        median(g.clone())
    );
    println!(
        "  GitLab PAT:          {gl:?} -> median {:.0} tokens/s",
        median(gl.clone())
    );
    println!(
        "  GitLab CI job token: {job:?} -> median {:.0} tokens/s",
        median(job.clone())
    );
    println!(
        "  Gitea token:         {gt:?} -> median {:.0} tokens/s",
        median(gt.clone())
    );
    println!(
        "  static user:         {s:?} -> median {:.0} tokens/s",
        median(s.clone())
    );
    println!(
        "  /healthz baseline:   {h:?} -> median {:.0} requests/s",
        median(h.clone())
    );
    println!(
        "  LDAP / static: {:.2}, GitHub / static: {:.2}",
        median(l.clone()) / median(s.clone()),
        median(g.clone()) / median(s)
    );
    println!(
        "  GitLab PAT / GitHub: {:.2}, GitLab job / GitHub: {:.2}, Gitea / GitHub: {:.2}",
        median(gl) / median(g.clone()),
        median(job) / median(g.clone()),
        median(gt) / median(g)
    );
    println!(
        "  upstream /user (or /job) calls during all rounds: GitHub {user_calls}, GitLab {}, Gitea {}",
        gitlab.calls.user.load(std::sync::atomic::Ordering::SeqCst)
            + gitlab.calls.job.load(std::sync::atomic::Ordering::SeqCst),
        gitea.user_calls()
    );
}
