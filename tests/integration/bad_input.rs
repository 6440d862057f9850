//! Hostile and broken input: every answer is a 400/401 with the JSON error
//! body, never a 500 or a panic, and no secret reaches a log line.

use std::io::Write as _;
use std::sync::Arc;

use axum::body::Body;
use axum::http::{HeaderValue, Request, StatusCode};
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;

use crate::support::*;

async fn get_raw_auth(state: &Arc<regauth::AppState>, value: &[u8]) -> Reply {
    let request = Request::get("/auth?service=registry.test")
        .header("authorization", HeaderValue::from_bytes(value).unwrap())
        .body(Body::empty())
        .unwrap();
    call(state, request).await
}

#[tokio::test]
async fn malformed_authorization_headers_are_400() {
    let f = Fixture::new();
    let state = f.state("");
    let non_utf8 = [
        b"Basic ".as_slice(),
        STANDARD.encode(b"wr\xffiter:pw").as_bytes(),
    ]
    .concat();
    let cases: Vec<Vec<u8>> = vec![
        b"Basic".to_vec(),
        b"Basic !!!not-base64!!!".to_vec(),
        b"Bearer abc.def.ghi".to_vec(),
        b"Digest username=\"x\"".to_vec(),
        b"Basic \xff\xfe\xfd".to_vec(),
        non_utf8,
        format!("Basic {}", STANDARD.encode("no-colon-here")).into_bytes(),
        b"".to_vec(),
    ];
    for value in cases {
        let r = get_raw_auth(&state, &value).await;
        let body = r.assert_error(StatusCode::BAD_REQUEST);
        assert!(!body.to_string().contains("panic"), "{body}");
    }
}

#[tokio::test]
async fn huge_bodies_and_scope_lists_are_refused_cleanly() {
    let f = Fixture::new();
    let state = f.state("");
    // 1 MB body
    let big = format!(
        "grant_type=password&username=writer&password=writer-pw&pad={}",
        "x".repeat(1 << 20)
    );
    let r = post_form(&state, "/auth", &big).await;
    r.assert_error(StatusCode::BAD_REQUEST);
    // as many scopes as fit in a URI (the http crate caps URIs at 64 KiB)
    let mut uri = String::from("/auth?service=registry.test");
    for i in 0..1_500 {
        uri.push_str(&format!("&scope=repository:team/app-{i}:pull"));
    }
    assert!(uri.len() < 65_000);
    let r = get(&state, &uri, Some(&basic("writer", "writer-pw"))).await;
    let body = r.assert_error(StatusCode::BAD_REQUEST);
    assert!(body["errors"][0]["message"]
        .as_str()
        .unwrap()
        .contains("too many scopes"));
    // 10,000 scopes in a POST body
    let many: Vec<String> = (0..10_000)
        .map(|i| format!("scope=repository:a/{i}:pull"))
        .collect();
    let form = format!(
        "grant_type=password&username=writer&password=writer-pw&{}",
        many.join("&")
    );
    let r = post_form(&state, "/auth", &form).await;
    r.assert_error(StatusCode::BAD_REQUEST);
    // 10,000 space-separated scopes in one value, within the body limit
    let spaced: Vec<String> = (0..10_000)
        .map(|i| format!("repository:a/{i}:pull"))
        .collect();
    let r = post_form(
        &state,
        "/auth",
        &format!(
            "grant_type=password&username=writer&password=writer-pw&scope={}",
            spaced.join("+")
        ),
    )
    .await;
    r.assert_error(StatusCode::BAD_REQUEST);
}

/// A request head longer than `server.max_header_bytes` (32 KiB) is
/// answered 431 by the HTTP layer before regauth parses it; one far longer
/// (10,000 scopes, 300 KB) is cut off without the server buffering it.
/// Never a 5xx, and the server carries on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_request_heads_over_a_real_socket() {
    let f = Fixture::new();
    let server = Server::start(f.config("")).await;
    use std::io::{Read as _, Write as _};
    let addr = server.addr;
    let send = |scopes: usize| {
        let mut query = String::from("service=registry.test");
        for i in 0..scopes {
            query.push_str(&format!("&scope=repository:t/{i}:pull"));
        }
        tokio::task::spawn_blocking(move || {
            let mut s = std::net::TcpStream::connect(addr).unwrap();
            // the server may close before the client is done writing
            let _ = write!(s, "GET /auth?{query} HTTP/1.1\r\nHost: x\r\n\r\n");
            let mut buf = vec![0u8; 512];
            let n = s.read(&mut buf).unwrap_or(0);
            String::from_utf8_lossy(&buf[..n]).into_owned()
        })
    };
    let head = send(1_500).await.unwrap();
    assert!(head.starts_with("HTTP/1.1 431"), "a 431, got: {head}");
    let head = send(10_000).await.unwrap();
    let status: u16 = head
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    assert!(
        head.is_empty() || (400..500).contains(&status),
        "a 4xx or a closed connection, got: {head}"
    );
    let ok = reqwest::get(format!("http://{addr}/healthz"))
        .await
        .unwrap();
    assert_eq!(ok.status(), 200, "the server carries on");
}

#[tokio::test]
async fn bad_grants_services_and_params() {
    let f = Fixture::new();
    let state = f.state("");
    for form in [
        "grant_type=implicit",
        "grant_type=password",
        "grant_type=password&username=writer",
        "grant_type=%FF%FE",
        "grant_type=password&username=writer&password=writer-pw&service=nope",
        "%%%%",
    ] {
        let r = post_form(&state, "/auth", form).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{form}: {}", r.text());
        r.assert_error(StatusCode::BAD_REQUEST);
    }
    for uri in [
        "/auth?service=%FF",
        "/auth?service=nope&scope=repository:x:pull",
        "/auth?service=registry.test%00",
    ] {
        let r = get(&state, uri, Some(&basic("writer", "writer-pw"))).await;
        r.assert_error(StatusCode::BAD_REQUEST);
    }
    // odd but harmless parameters still work
    let r = get(
        &state,
        "/auth?service=registry.test&scope=%FF%FE:x:pull&offline_token=maybe&x=%",
        None,
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
}

#[tokio::test]
async fn secrets_never_reach_the_log() {
    let capture = log_capture();
    let f = Fixture::new();
    let state = f.state("");
    let secret_wrong = "WRONG-SECRET-7f3a";
    let uri = "/auth?service=registry.test&scope=repository:team/a:pull";
    get(&state, uri, Some(&basic("writer", "writer-pw"))).await;
    get(&state, uri, Some(&basic("writer", secret_wrong))).await;
    get(&state, uri, Some(&basic("nobody", secret_wrong))).await;
    get(&state, uri, Some(&basic("colon", "p:a:ss wörd"))).await;
    post_form(
        &state,
        "/auth",
        &format!("grant_type=password&username=writer&password={secret_wrong}"),
    )
    .await;
    post_form(
        &state,
        "/auth",
        "grant_type=refresh_token&refresh_token=REFRESH-SECRET-99",
    )
    .await;
    let r = get(&state, uri, Some(&basic("writer", "writer-pw"))).await;
    let issued = r.json()["token"].as_str().unwrap().to_owned();
    let _ = std::io::stdout().flush();
    let log = capture.text();
    assert!(
        log.contains("token request"),
        "the audit event is logged: {log}"
    );
    assert!(log.contains("\"subject\":\"writer\""), "{log}");
    assert!(
        log.contains("rejected by local"),
        "the reason is logged: {log}"
    );
    for secret in [
        "writer-pw",
        secret_wrong,
        "p:a:ss wörd",
        "REFRESH-SECRET-99",
        &issued,
        &STANDARD.encode("writer:writer-pw"),
    ] {
        assert!(
            !log.contains(secret),
            "secret {secret:?} leaked into the log"
        );
    }
    // nor into the 401 body
    let r = get(&state, uri, Some(&basic("writer", secret_wrong))).await;
    assert!(!r.text().contains(secret_wrong));
}

#[tokio::test]
async fn names_needing_json_escapes_stay_valid_json() {
    let f = Fixture::new();
    let state = f.state("");
    let r = post_form(
        &state,
        "/auth",
        "grant_type=password&username=admin&password=admin-pw&scope=repository%3Aa%22b%5Cc%0A%3Apull",
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(r.json()["scope"], "repository:a\"b\\c\n:pull");
    assert_eq!(r.access()[0].1, "a\"b\\c\n");
}
