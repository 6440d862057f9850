//! External decision hooks, against small HTTP services in the test
//! process: an authorization webhook (grants per scope, cached, capped by
//! the policy when asked, 503 when it fails) and an authentication
//! webhook on a unix socket (identities, refusals, unknown users, 503 when
//! it fails; never over plain http).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use axum::Json;
use serde_json::{json, Value};
use tokio::sync::watch;

use crate::support::*;

#[derive(Clone, Default)]
struct Calls(Arc<AtomicUsize>);

/// Grants pull and push on `SUBJECT/*`, pull on everything else asked;
/// a subject "slow" never gets an answer; a subject "garbage" gets a
/// non-answer.
async fn decide(State(calls): State<Calls>, Json(ask): Json<Value>) -> (StatusCode, String) {
    calls.0.fetch_add(1, Ordering::SeqCst);
    let subject = ask["subject"].as_str().unwrap_or_default().to_owned();
    match subject.as_str() {
        "slow" => std::future::pending().await,
        "garbage" => return (StatusCode::OK, "not json".into()),
        _ => {}
    }
    let scopes: Vec<Value> = ask["scopes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            let name = s["name"].as_str().unwrap();
            let actions = if name.starts_with(&format!("{subject}/")) {
                json!(["pull", "push", "delete"])
            } else {
                json!(["pull"])
            };
            json!({"type": s["type"], "name": name, "actions": actions})
        })
        .collect();
    (StatusCode::OK, json!({ "scopes": scopes }).to_string())
}

async fn serve_tcp(app: axum::Router) -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_authorization_webhook_decides_and_fails_closed() {
    let calls = Calls::default();
    let hook = serve_tcp(
        axum::Router::new()
            .route("/decide", post(decide))
            .with_state(calls.clone()),
    )
    .await;
    let f = Fixture::new();
    let mut users = std::fs::read_to_string(f.path("users.htpasswd")).unwrap();
    for name in ["slow", "garbage"] {
        let hash = regauth_providers::static_users::hash_bcrypt("pw", 4).unwrap();
        users.push_str(&format!("{name}:{hash}\n"));
    }
    std::fs::write(f.path("users.htpasswd"), users).unwrap();
    let authorizer = format!(
        "\n[authorizer]\nkind = \"webhook\"\nurl = \"http://{hook}/decide\"\ntimeout = \"1s\"\ncache_ttl = \"60s\"\n"
    );
    let state = f.state(&authorizer);
    let r = token_for(
        &state,
        "writer",
        "writer-pw",
        "repository:writer/app:pull,push",
    )
    .await;
    assert_eq!(
        r.actions(),
        ["pull", "push"],
        "the hook's grant, what was asked only"
    );
    let r = token_for(
        &state,
        "writer",
        "writer-pw",
        "repository:other/app:pull,push",
    )
    .await;
    assert_eq!(r.actions(), ["pull"]);
    let before = calls.0.load(Ordering::SeqCst);
    for _ in 0..5 {
        token_for(
            &state,
            "writer",
            "writer-pw",
            "repository:other/app:pull,push",
        )
        .await;
    }
    assert_eq!(
        calls.0.load(Ordering::SeqCst),
        before,
        "answers are cached per identity and scopes"
    );
    // a slow or broken hook is a 503, never a guess
    for user in ["slow", "garbage"] {
        let r = token_for(&state, user, "pw", "repository:x/y:pull").await;
        r.assert_error(StatusCode::SERVICE_UNAVAILABLE);
        assert!(r.header("retry-after").is_some());
    }
    // capped by the policy: the fixture's rules grant writer team/**, not
    // writer/*, so the hook's push on writer/* is taken away
    let capped = f
        .config(&authorizer)
        .set("authorizer.cap_with_policy", true)
        .state();
    let r = token_for(
        &capped,
        "writer",
        "writer-pw",
        "repository:writer/app:pull,push",
    )
    .await;
    assert!(r.actions().is_empty(), "{:?}", r.actions());
    let r = token_for(
        &capped,
        "writer",
        "writer-pw",
        "repository:team/app:pull,push",
    )
    .await;
    assert_eq!(
        r.actions(),
        ["pull"],
        "the policy grants push, the hook pull: pull"
    );
    // https (or loopback http) only
    let err = f
        .config("\n[authorizer]\nkind = \"webhook\"\nurl = \"http://decide.example/\"\n")
        .load()
        .expect_err("refused")
        .to_string();
    assert!(err.contains("authorizer.url"), "{err}");
}

/// The authentication hook: `{"result": "authenticated" | "rejected" | "unknown"}`.
async fn check(Json(ask): Json<Value>) -> (StatusCode, String) {
    let (user, secret) = (
        ask["username"].as_str().unwrap(),
        ask["secret"].as_str().unwrap(),
    );
    let answer = match (user, secret) {
        ("hookuser", "hook-pw") => {
            json!({"result": "authenticated", "subject": "hookuser", "groups": ["builders"], "claims": {"team": "ci"}})
        }
        ("hookuser", _) => json!({"result": "rejected"}),
        ("slowpoke", _) => std::future::pending().await,
        ("broken", _) => return (StatusCode::INTERNAL_SERVER_ERROR, "oops".into()),
        _ => json!({"result": "unknown"}),
    };
    (StatusCode::OK, answer.to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_authentication_webhook_on_a_unix_socket() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("auth.sock");
    let listener = tokio::net::UnixListener::bind(&socket).unwrap();
    tokio::spawn(async move {
        let _ = axum::serve(listener, axum::Router::new().route("/check", post(check))).await;
    });
    let f = Fixture::new();
    let provider = format!(
        "\n[[provider]]\nname = \"hook\"\nkind = \"webhook\"\nsocket = \"{}\"\npath = \"/check\"\ntimeout = \"1s\"\n\n[[rule]]\ngroups = [\"hook:builders\"]\nrepos = [\"builds/**\"]\nactions = [\"pull\", \"push\"]\n",
        socket.display()
    );
    let state = f.state(&provider);
    let push = "repository:builds/app:pull,push";
    let r = token_for(&state, "hookuser", "hook-pw", push).await;
    assert_eq!(r.actions(), ["pull", "push"]);
    assert_eq!(r.token().1["sub"], "hookuser");
    token_for(&state, "hookuser", "wrong", push)
        .await
        .assert_error(StatusCode::UNAUTHORIZED);
    token_for(&state, "stranger", "x", push)
        .await
        .assert_error(StatusCode::UNAUTHORIZED);
    // the static users before it still work
    assert_eq!(
        token_for(&state, "writer", "writer-pw", "repository:team/a:pull")
            .await
            .actions(),
        ["pull"]
    );
    for user in ["slowpoke", "broken"] {
        token_for(&state, user, "x", push)
            .await
            .assert_error(StatusCode::SERVICE_UNAVAILABLE);
    }
    // never over plain http
    let err = f
        .config("\n[[provider]]\nname = \"hook\"\nkind = \"webhook\"\nurl = \"http://auth.internal/check\"\n")
        .load()
        .expect_err("refused")
        .to_string();
    assert!(
        err.contains("provider[1].url") && err.contains("https"),
        "{err}"
    );
}

/// Review M8: every anonymous request with new scopes was a webhook call,
/// so unauthenticated clients could drive the policy service. Now a client
/// network's anonymous requests cause a bounded number of calls (then
/// 503), other networks are served, and cached answers stay free.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anonymous_requests_cannot_drive_the_authorization_webhook() {
    let calls = Calls::default();
    let hook = serve_tcp(
        axum::Router::new()
            .route("/decide", post(decide))
            .with_state(calls.clone()),
    )
    .await;
    let f = Fixture::new();
    let state = f
        .config(&format!(
            "\n[authorizer]\nkind = \"webhook\"\nurl = \"http://{hook}/decide\"\ntimeout = \"1s\"\ncache_ttl = \"60s\"\nanonymous_calls_per_second = 5\n"
        ))
        .set("server.trusted_proxies", vec!["0.0.0.0"])
        .state();
    let anonymous = |client: &'static str, repo: String| {
        let state = state.clone();
        async move {
            let request = axum::http::Request::get(format!(
                "/auth?service={SERVICE}&scope=repository:{repo}:pull"
            ))
            .header("x-forwarded-for", client)
            .body(axum::body::Body::empty())
            .unwrap();
            call(&state, request).await.status
        }
    };
    let mut refused = 0;
    for i in 0..200 {
        if anonymous("127.0.0.9", format!("x/r{i}")).await == StatusCode::SERVICE_UNAVAILABLE {
            refused += 1;
        }
    }
    let made = calls.0.load(Ordering::SeqCst);
    assert!(
        made <= 25,
        "{made} webhook calls for 200 anonymous requests"
    );
    assert_eq!(refused + made, 200);
    // another network is served, and answers already cached are free
    assert_eq!(
        anonymous("127.0.0.10", "x/other".into()).await,
        StatusCode::OK
    );
    assert_eq!(anonymous("127.0.0.9", "x/r0".into()).await, StatusCode::OK);
}

/// Like [`decide`], but anonymous questions are answered only once the
/// test opens the gate: a slow policy service that anonymous clients keep
/// busy.
async fn slow_for_anonymous(
    State((calls, mut gate)): State<(Calls, watch::Receiver<bool>)>,
    ask: Json<Value>,
) -> (StatusCode, String) {
    if ask["subject"].as_str() == Some("") {
        let _ = gate.wait_for(|open| *open).await;
    }
    decide(State(calls), ask).await
}

/// Review of the fixes, 5: anonymous requests could hold every webhook
/// call and a logged-in user got a 503. Anonymous requests have calls of
/// their own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anonymous_requests_cannot_take_the_calls_of_logged_in_ones() {
    let calls = Calls::default();
    let (open, gate) = watch::channel(false);
    let hook = serve_tcp(
        axum::Router::new()
            .route("/decide", post(slow_for_anonymous))
            .with_state((calls.clone(), gate)),
    )
    .await;
    let f = Fixture::new();
    let state = f
        .config(&format!(
            "\n[authorizer]\nkind = \"webhook\"\nurl = \"http://{hook}/decide\"\ntimeout = \"3s\"\ncache_ttl = \"60s\"\nanonymous_calls_per_second = 100\nmax_concurrent_calls = 4\nmax_concurrent_anonymous_calls = 2\n"
        ))
        .set("server.trusted_proxies", vec!["0.0.0.0"])
        .state();
    let busy: Vec<_> = (0..8)
        .map(|i| {
            let state = state.clone();
            tokio::spawn(async move {
                let request = axum::http::Request::get(format!(
                    "/auth?service={SERVICE}&scope=repository:x/busy{i}:pull"
                ))
                .header("x-forwarded-for", format!("127.0.1.{i}"))
                .body(axum::body::Body::empty())
                .unwrap();
                call(&state, request).await.status
            })
        })
        .collect();
    // six requests answered at once: the other two hold the anonymous
    // calls, waiting at the hook
    let deadline = Instant::now() + Duration::from_secs(10);
    while busy.iter().filter(|b| b.is_finished()).count() < 6 {
        assert!(
            Instant::now() < deadline,
            "the anonymous requests got stuck"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let logged_in = token_for(&state, "writer", "writer-pw", "repository:writer/app:push").await;
    assert_eq!(logged_in.actions(), ["push"], "{}", logged_in.text());
    open.send(true).unwrap();
    let mut answered = 0;
    for b in busy {
        if b.await.unwrap() == StatusCode::OK {
            answered += 1;
        }
    }
    assert_eq!(answered, 2, "anonymous requests got their two calls");
}
