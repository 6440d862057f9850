//! Hardening at the edge, against what an unauthenticated client can send:
//! oversized input, half-open and idle connections, connection floods,
//! concurrent and case-varied password guesses, forged tokens that would
//! drive IdP traffic, a flood of password checks, and a log sink that
//! stalls. Each test reproduces a case found against an earlier version.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use serde_json::json;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use crate::support::issuer::Issuer;
use crate::support::slapd::Slapd;
use crate::support::*;

const ERIN: &str = "uid=erin,ou=people,dc=corp,dc=test";

/// The fixture's configuration as a file for the `regauth` binary, on a
/// free port.
fn config_file(f: &Fixture) -> (std::path::PathBuf, SocketAddr) {
    let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let path = f.path("regauth.toml");
    f.config("").listen(addr).write(&path);
    (path, addr)
}

/// Reproduced: 2,000 requests with 300 KB usernames grew RSS from 21 MB
/// to 788 MB. Oversized heads are refused by the HTTP layer, oversized
/// usernames with a 400 before anything keeps them, and unknown names of
/// a legal size cost a fixed-size throttle entry each.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_usernames_do_not_grow_memory() {
    let f = Fixture::new();
    let (path, addr) = config_file(&f);
    let server = Regauth::start(&path, addr, &[]).await;
    let client = reqwest::Client::new();
    let url = format!("http://{addr}/auth?service={SERVICE}&scope=repository:team/app:pull");
    // warm up allocator and caches
    for i in 0..50 {
        let _ = client
            .get(&url)
            .header("authorization", basic(&format!("warm{i}"), "x"))
            .send()
            .await;
    }
    let before = server.rss_kib();
    let statuses = Arc::new(std::sync::Mutex::new(std::collections::BTreeMap::<
        u16,
        usize,
    >::new()));
    let send =
        |user: String, statuses: Arc<std::sync::Mutex<std::collections::BTreeMap<u16, usize>>>| {
            let (client, url) = (client.clone(), url.clone());
            async move {
                let status = match client
                    .get(&url)
                    .header("authorization", basic(&user, "pw"))
                    .send()
                    .await
                {
                    Ok(r) => r.status().as_u16(),
                    Err(_) => 0, // the server closed the connection on a 300 KB head
                };
                *statuses.lock().unwrap().entry(status).or_default() += 1;
            }
        };
    let mut batch = Vec::new();
    for i in 0..2_000 {
        let user = match i % 4 {
            0 => format!("{i}{}", "u".repeat(300 * 1024)),
            1 | 2 => format!("{i}{}", "u".repeat(8 * 1024)),
            _ => format!("{i}-{}", "n".repeat(200)),
        };
        batch.push(tokio::spawn(send(user, statuses.clone())));
        if batch.len() == 32 {
            for t in batch.drain(..) {
                t.await.unwrap();
            }
        }
    }
    for t in batch {
        t.await.unwrap();
    }
    let after = server.rss_kib();
    let statuses = statuses.lock().unwrap().clone();
    println!(
        "RSS before {before} KiB, after {after} KiB, growth {} KiB; statuses {statuses:?}",
        after.saturating_sub(before)
    );
    assert!(
        after.saturating_sub(before) < 16 * 1024,
        "RSS grew from {before} to {after} KiB"
    );
    assert_eq!(
        statuses.get(&400),
        Some(&1000),
        "8 KiB usernames are a 400: {statuses:?}"
    );
    assert_eq!(
        statuses.get(&401),
        Some(&500),
        "legal unknown names are a 401: {statuses:?}"
    );
    assert_eq!(
        statuses.get(&431).copied().unwrap_or(0) + statuses.get(&0).copied().unwrap_or(0),
        500,
        "300 KB heads are refused by the HTTP layer: {statuses:?}"
    );
    assert!(statuses.keys().all(|s| *s < 500), "{statuses:?}");
    // the audit line of an oversized request holds no username
    assert!(
        !server.log().contains(&"u".repeat(300)),
        "usernames are not logged whole"
    );
}

/// Reproduced: 3,000 half-open connections (request line and one header,
/// then silence) were all still held after 40 s. They are closed within
/// the header timeout, an idle keep-alive connection within the idle
/// timeout, and connections beyond the cap get a 503 with Retry-After.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_open_idle_and_excess_connections_are_closed() {
    let f = Fixture::new();
    let config = f
        .config("")
        .set("server.header_timeout", "2s")
        .set("server.idle_timeout", "2s")
        .set("server.max_connections", 3500);
    let server = Server::start(config).await;
    let addr = server.addr;
    let started = Instant::now();
    let mut open = Vec::new();
    for _ in 0..3_000 {
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        s.write_all(b"GET /auth?service=registry.test HTTP/1.1\r\nHost: x\r\n")
            .await
            .unwrap();
        open.push(s);
    }
    let mut closed = 0;
    for mut s in open {
        let mut buf = [0u8; 1024];
        let left = Duration::from_secs(8).saturating_sub(started.elapsed());
        match tokio::time::timeout(left, s.read(&mut buf)).await {
            Ok(Ok(_)) | Ok(Err(_)) => closed += 1, // EOF, a 408, or a reset
            Err(_) => {}
        }
    }
    let took = started.elapsed();
    println!("{closed} of 3000 half-open connections closed after {took:?}");
    assert_eq!(closed, 3_000, "every half-open connection was closed");
    assert!(took < Duration::from_secs(8), "{took:?}");

    // an idle keep-alive connection is closed after the idle timeout
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut buf = vec![0u8; 4096];
    let n = s.read(&mut buf).await.unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
    let idle = Instant::now();
    let n = tokio::time::timeout(Duration::from_secs(6), s.read(&mut buf))
        .await
        .expect("closed within the idle timeout")
        .unwrap_or(0);
    assert_eq!(n, 0, "closed, not answered");
    assert!(
        idle.elapsed() >= Duration::from_millis(1500),
        "{:?}",
        idle.elapsed()
    );

    // beyond max_connections: 503 with Retry-After, then closed
    let capped = Server::start(f.config("").set("server.max_connections", 20)).await;
    let mut held = Vec::new();
    for _ in 0..20 {
        let s = tokio::net::TcpStream::connect(capped.addr).await.unwrap();
        held.push(s);
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut extra = tokio::net::TcpStream::connect(capped.addr).await.unwrap();
    let mut answer = String::new();
    let _ = tokio::time::timeout(Duration::from_secs(3), extra.read_to_string(&mut answer)).await;
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert!(answer.contains("retry-after: 1"), "{answer}");
    assert!(answer.contains("\"UNAVAILABLE\""), "{answer}");
    let metrics = get(&capped.state, "/metrics", None).await.text();
    assert!(
        metrics.contains("regauth_connections_refused_total 1"),
        "{metrics}"
    );
    drop(held);
}

/// On shutdown, connections still open after `server.shutdown_timeout`
/// are cut off instead of holding the process forever.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_has_a_deadline() {
    let f = Fixture::new();
    let config = f
        .config("")
        .set("server.shutdown_timeout", "1s")
        .set("server.header_timeout", "60s")
        .load()
        .unwrap();
    let state = regauth::build(config).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let serving = tokio::spawn(regauth::serve(state, listener, async {
        let _ = stopped.await;
    }));
    let mut slow = tokio::net::TcpStream::connect(addr).await.unwrap();
    slow.write_all(b"GET /healthz HTTP/1.1\r\n").await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let asked = Instant::now();
    stop.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(5), serving)
        .await
        .expect("serve returned within the deadline")
        .unwrap()
        .unwrap();
    assert!(
        asked.elapsed() < Duration::from_secs(3),
        "{:?}",
        asked.elapsed()
    );
}

/// The directory behind a trusted proxy, with `max_failures` per account
/// and no limit per client network.
fn ldap_config(slapd: &Slapd, f: &Fixture, max_failures: u32, extra: &str) -> TestConfig {
    f.config(&format!("{}{extra}", slapd.provider_toml("corp", &[])))
        .set("cache.max_failures", max_failures)
        .set("cache.max_client_failures", 100000)
        .set("server.trusted_proxies", vec!["0.0.0.0"])
}

/// A token request from `client` (an X-Forwarded-For behind a trusted
/// proxy).
async fn guess(
    state: &Arc<regauth::AppState>,
    user: &str,
    password: &str,
    client: &str,
) -> StatusCode {
    token_from(state, client, user, password, "").await.status
}

/// Reproduced: concurrent wrong passwords all reached slapd, since each
/// was checked against the counter before any had failed. 200 at once
/// reach it at most `max_failures` times.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_concurrent_guesses_bind_at_most_max_failures_times() {
    let slapd = Slapd::start();
    let f = Fixture::new();
    let state = ldap_config(&slapd, &f, 5, "").state();
    let before = slapd.binds_of(ERIN);
    let tasks: Vec<_> = (0..200)
        .map(|i| {
            let state = state.clone();
            tokio::spawn(async move {
                guess(&state, "erin", &format!("guess-{i}"), "203.0.113.9").await
            })
        })
        .collect();
    for t in tasks {
        assert_eq!(t.await.unwrap(), StatusCode::UNAUTHORIZED);
    }
    let binds = slapd.binds_of(ERIN) - before;
    println!("200 concurrent wrong passwords: {binds} binds");
    assert!(binds <= 5, "{binds} binds reached the directory");
    assert!(binds >= 1);
}

/// Reproduced: 30 wrong passwords under case variants of one name reached
/// slapd as 30 binds, and rotating addresses escaped the per-address
/// limit. The account is counted by its normalized name, wherever the
/// guesses come from; a JWT login that ignores the typed name resets
/// nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn case_variants_and_rotating_addresses_count_as_one_account() {
    let slapd = Slapd::start();
    let issuer = Issuer::start().await;
    let f = Fixture::new();
    let oidc = issuer.provider_toml("sso", "");
    let state = ldap_config(&slapd, &f, 5, &oidc).state();
    let before = slapd.binds_of(ERIN);
    let variants = [
        "erin", "ERIN", "Erin", " erin", "erin ", "eRiN", "  ERIN", "Erin  ",
    ];
    for (i, variant) in variants.iter().take(4).enumerate() {
        let client = format!("2001:db8:{i}::1");
        assert_eq!(
            guess(&state, variant, "wrong", &client).await,
            StatusCode::UNAUTHORIZED
        );
    }
    // a JWT login under the Basic username "erin" succeeds at another
    // provider: it must not reset erin's directory count
    let jwt = issuer.token(
        json!({"sub": "someone", "preferred_username": "someone"}),
        600,
    );
    assert_eq!(
        guess(&state, "erin", &jwt, "198.51.100.1").await,
        StatusCode::OK
    );
    for i in 0..30 {
        let variant = variants[i % variants.len()];
        let client = format!("2001:db8:{}:{}::7", 100 + i, i);
        assert_eq!(
            guess(&state, variant, &format!("wrong{i}"), &client).await,
            StatusCode::UNAUTHORIZED
        );
    }
    let binds = slapd.binds_of(ERIN) - before;
    println!(
        "34 wrong passwords under {} case variants from 34 networks: {binds} binds",
        variants.len()
    );
    assert!(binds <= 5, "{binds} binds reached the directory");
    // the account stays held for the window, even for the right password:
    // the directory never sees more than max_failures guesses
    let held = guess(&state, "erin", "erin-pw", "198.51.100.2").await;
    assert_eq!(
        held,
        StatusCode::UNAUTHORIZED,
        "held: the account budget is spent"
    );
    assert_eq!(slapd.binds_of(ERIN) - before, binds);
}

/// A client network that fails too often is held back across usernames
/// (password spraying), and IPv6 clients cannot rotate out of their /64.
#[tokio::test]
async fn a_spraying_client_network_is_held_back() {
    let f = Fixture::new();
    let state = f
        .config("")
        .set("cache.max_client_failures", 5)
        .set("server.trusted_proxies", vec!["0.0.0.0"])
        .state();
    for i in 0..5 {
        let client = format!("2001:db8:aa:bb::{i:x}");
        assert_eq!(
            guess(&state, &format!("user{i}"), "x", &client).await,
            StatusCode::UNAUTHORIZED
        );
    }
    // the same /64, a good password: held back without asking
    assert_eq!(
        guess(&state, "writer", "writer-pw", "2001:db8:aa:bb::ffff").await,
        StatusCode::UNAUTHORIZED
    );
    // another /64 is not
    assert_eq!(
        guess(&state, "writer", "writer-pw", "2001:db8:aa:bc::1").await,
        StatusCode::OK
    );
}

/// Forged tokens with random `kid`s for the right issuer cannot drive the
/// IdP: one JWKS refetch per `jwks_min_refresh`, shared by concurrent
/// requests; and an unreachable IdP is asked again only after a back-off.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_tokens_cannot_drive_idp_traffic() {
    let issuer = Issuer::start().await;
    let f = Fixture::new();
    let state = f
        .config(&issuer.provider_toml("sso", ""))
        .set("cache.max_client_failures", 100000)
        .state();
    // a cold provider: 300 forged kids at once share one discovery and one
    // JWKS fetch, and later ones within jwks_min_refresh cause none
    let forged =
        |i: usize| issuer.token_with_kid(json!({"sub": "svc"}), 600, &format!("random-{i}"));
    for round in 0..2 {
        let tasks: Vec<_> = (0..300)
            .map(|i| {
                let token = forged(round * 1000 + i);
                let state = state.clone();
                tokio::spawn(async move {
                    token_for(&state, "svc", &token, "repository:x:pull")
                        .await
                        .status
                })
            })
            .collect();
        for t in tasks {
            assert_eq!(t.await.unwrap(), StatusCode::UNAUTHORIZED);
        }
    }
    let (discoveries, jwks) = (
        issuer.fetches.discovery.load(Ordering::SeqCst),
        issuer.fetches.jwks.load(Ordering::SeqCst),
    );
    println!("600 forged kids: {discoveries} discovery and {jwks} JWKS requests");
    assert_eq!((discoveries, jwks), (1, 1));
    let good = issuer.token(json!({"sub": "svc", "preferred_username": "svc"}), 600);
    assert_eq!(
        token_for(&state, "svc", &good, "repository:x:pull")
            .await
            .status,
        StatusCode::OK
    );
    assert_eq!(issuer.fetches.jwks.load(Ordering::SeqCst), 1);

    // an issuer whose discovery fails: asked again only after a pause
    let down = Issuer::start().await;
    down.fail(true);
    let state = f.state(&down.provider_toml("down", ""));
    let token = down.token(json!({"sub": "svc"}), 600);
    let tasks: Vec<_> = (0..100)
        .map(|i| {
            let state = state.clone();
            let token = token.clone();
            tokio::spawn(async move {
                let user = format!("u{i}");
                token_for(&state, &user, &token, "repository:x:pull")
                    .await
                    .status
            })
        })
        .collect();
    for t in tasks {
        assert_eq!(t.await.unwrap(), StatusCode::SERVICE_UNAVAILABLE);
    }
    let discoveries = down.fetches.discovery.load(Ordering::SeqCst);
    println!("100 logins while discovery fails: {discoveries} discovery requests");
    assert!(discoveries <= 2, "{discoveries} discovery requests");
}

/// Password checks run one per core; a flood waits at most
/// `hash_queue_timeout` and is then answered 503 with Retry-After.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_password_checks_queues_then_gets_503() {
    let f = Fixture::new();
    let hash = regauth_providers::static_users::hash_bcrypt("slow-pw", 12).unwrap();
    let extra = format!(
        "\n[[provider]]\nname = \"slow\"\nkind = \"static\"\nhash_queue_timeout = \"100ms\"\n[provider.users]\nslowpoke = \"{hash}\"\n"
    );
    let state = f
        .config(&extra)
        .set("cache.max_client_failures", 100000)
        .set("cache.max_provider_failures_per_second", 1000)
        .state();
    let tasks: Vec<_> = (0..24)
        .map(|i| {
            let state = state.clone();
            tokio::spawn(async move {
                token_for(
                    &state,
                    "slowpoke",
                    &format!("guess-{i}"),
                    "repository:x:pull",
                )
                .await
            })
        })
        .collect();
    let mut unavailable = 0;
    for t in tasks {
        let r = t.await.unwrap();
        match r.status {
            StatusCode::UNAUTHORIZED => {}
            StatusCode::SERVICE_UNAVAILABLE => {
                assert!(r.header("retry-after").is_some());
                unavailable += 1;
            }
            other => panic!("{other}: {}", r.text()),
        }
    }
    println!("24 concurrent cost-12 checks: {unavailable} answered 503");
    assert!(unavailable > 0, "the queue deadline held some back");
}

/// Reproduced: the audit writer blocked request workers when its sink
/// stalled. With stderr a pipe nobody reads, requests are still answered;
/// the dropped lines are counted and `/readyz` names the loss.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_log_sink_never_stops_requests() {
    let f = Fixture::new();
    let (path, addr) = config_file(&f);
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_regauth"))
        .args(["--log-format", "json", "serve", "--config"])
        .arg(&path)
        .env("REGAUTH_LOG_QUEUE_LINES", "64")
        .env_remove("REGAUTH_CONFIG")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped()) // never read: the pipe fills up
        .spawn()
        .unwrap();
    let _stderr = child.stderr.take();
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while client
        .get(format!("http://{addr}/healthz"))
        .send()
        .await
        .is_err()
    {
        assert!(Instant::now() < deadline, "regauth did not start");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let started = Instant::now();
    for i in 0..3_000 {
        let r = client
            .get(format!(
                "http://{addr}/auth?service={SERVICE}&scope=repository:team/app:pull"
            ))
            .header("authorization", basic("writer", "writer-pw"))
            .send()
            .await
            .unwrap_or_else(|e| panic!("request {i} was not answered: {e}"));
        assert_eq!(r.status(), 200);
    }
    println!(
        "3000 requests with a stalled log sink: {:?}",
        started.elapsed()
    );
    let metrics = client
        .get(format!("http://{addr}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let dropped: u64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("regauth_log_lines_dropped_total "))
        .and_then(|v| v.parse().ok())
        .unwrap();
    assert!(dropped > 0, "{metrics}");
    let ready = client
        .get(format!("http://{addr}/readyz"))
        .send()
        .await
        .unwrap();
    // readiness names the loss but stays 200: every replica loses lines
    // alike, and a red probe everywhere would take the service out
    assert_eq!(ready.status(), 200);
    let body: serde_json::Value = ready.json().await.unwrap();
    assert!(
        body["log"].as_str().unwrap().contains("losing lines"),
        "{body}"
    );
    assert!(body["degraded"].to_string().contains("log"), "{body}");
    let _ = child.kill();
    let _ = child.wait();
}

/// The embedded default configuration works from any directory (its page
/// and device login too), and an error names its cause once.
#[tokio::test]
async fn the_default_config_runs_anywhere_and_errors_say_things_once() {
    // alone (no fixture has installed it), the client needs its provider
    regauth_providers::install_crypto_provider();
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_regauth"))
        .arg("serve")
        .current_dir(dir.path())
        .env("REGAUTH_SERVER__LISTEN", format!("127.0.0.1:{port}"))
        .env_remove("REGAUTH_CONFIG")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let url = format!(
        "http://127.0.0.1:{port}/auth?service=registry.local&scope=repository:dev/app:push"
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        match reqwest::Client::new()
            .get(&url)
            .header("authorization", basic("bob", "bob-dev-password"))
            .send()
            .await
        {
            Ok(r) => break r.status(),
            Err(_) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(100)).await
            }
            Err(e) => panic!("regauth serve did not start outside a checkout: {e}"),
        }
    };
    // the page is on, with the password form for the development users,
    // and so is the device login
    let base = format!("http://127.0.0.1:{port}");
    let page = reqwest::get(format!("{base}/ui/")).await.unwrap();
    assert_eq!(page.status(), 200);
    assert!(page
        .text()
        .await
        .unwrap()
        .contains("Sign in with your password"));
    let device = reqwest::Client::new()
        .post(format!("{base}/auth/device"))
        .form(&[("client_id", "newcomer")])
        .send()
        .await
        .unwrap();
    assert_eq!(device.status(), 200);
    let device: serde_json::Value = device.json().await.unwrap();
    assert_eq!(
        device["verification_uri"],
        format!("http://localhost:{port}/ui/device"),
        "{device}"
    );
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(status, 200);
    let (ok, _, stderr) = regauth_cli(&["check", "--config", "/nonexistent/regauth.toml"]);
    assert!(!ok);
    assert_eq!(
        stderr.matches("No such file or directory").count(),
        1,
        "{stderr}"
    );
}

/// Found by review: token logins under one username (every CI job's JWT,
/// every introspected token under `oauth2accesstoken`) shared one account
/// budget, so a few bad tokens locked everyone out. A token tries no
/// account: bad ones never hold back good ones.
#[tokio::test]
async fn bad_tokens_never_lock_out_a_shared_username() {
    let issuer = Issuer::start().await;
    let f = Fixture::new();
    let state = f
        .config(&issuer.provider_toml("sso", ""))
        .set("cache.max_failures", 2)
        .set("cache.max_client_failures", 100000)
        .state();
    for i in 0..10 {
        let forged = issuer.token_with_kid(json!({"sub": "ci"}), 600, &format!("nope-{i}"));
        token_for(&state, "ci", &forged, "repository:x:pull")
            .await
            .assert_error(StatusCode::UNAUTHORIZED);
    }
    let good = issuer.token(json!({"sub": "ci", "preferred_username": "ci"}), 600);
    assert_eq!(
        token_for(&state, "ci", &good, "repository:x:pull")
            .await
            .status,
        StatusCode::OK
    );
}

/// Found by review: a cached verdict outlived its token's `exp`.
#[tokio::test]
async fn a_cached_token_verdict_never_outlives_the_token() {
    let issuer = Issuer::start().await;
    let f = Fixture::new();
    let state = f.state(&issuer.provider_toml("sso", "leeway = \"0s\""));
    let short = issuer.token(json!({"sub": "svc", "preferred_username": "svc"}), 2);
    let first = token_for(&state, "svc", &short, "repository:x:pull").await;
    assert_eq!(first.status, StatusCode::OK);
    tokio::time::sleep(Duration::from_millis(3100)).await;
    token_for(&state, "svc", &short, "repository:x:pull")
        .await
        .assert_error(StatusCode::UNAUTHORIZED);
}

/// Found by review: a client that sent pipelined requests and never read
/// the answers kept its connection forever. Asked to close, a connection
/// gets a few seconds to finish writing, then is cut off.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_never_reads_is_cut_off() {
    let f = Fixture::new();
    let config = f
        .config("")
        .set("server.idle_timeout", "1s")
        .set("server.header_timeout", "1s");
    let server = Server::start(config).await;
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let mut s = socket.connect(server.addr).await.unwrap();
    let pipelined = "GET /jwks HTTP/1.1\r\nHost: x\r\n\r\n".repeat(2000);
    let started = Instant::now();
    let _ = tokio::time::timeout(Duration::from_secs(2), s.write_all(pipelined.as_bytes())).await;
    // never read; wait until the server gives up on us
    let mut closed = false;
    while started.elapsed() < Duration::from_secs(15) {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let mut buf = vec![0u8; 1 << 20];
        // drain what is there; EOF or a reset means the server closed
        loop {
            match tokio::time::timeout(Duration::from_millis(50), s.read(&mut buf)).await {
                Ok(Ok(0)) | Ok(Err(_)) => {
                    closed = true;
                    break;
                }
                Ok(Ok(_)) if started.elapsed() < Duration::from_secs(8) => {
                    // reading would keep it alive: only look after 8 s
                    break;
                }
                Ok(Ok(_)) => continue,
                Err(_) => break,
            }
        }
        if closed {
            break;
        }
    }
    assert!(closed, "the connection was cut off within 15 s");
}
