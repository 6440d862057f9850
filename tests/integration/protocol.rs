//! PROTOCOL.md items, one test (or a few) each, against the router without a
//! socket. Items needing a real registry live in `registry.rs`; refresh
//! tokens (items 35-43 in part, 68-70) belong to the identity-token issue.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{Request, StatusCode};

use crate::support::*;

fn scope_uri(scopes: &[&str]) -> String {
    let mut uri = format!("/auth?service={SERVICE}");
    for s in scopes {
        uri.push_str("&scope=");
        uri.push_str(&s.replace(' ', "%20"));
    }
    uri
}

fn access(name: &str, actions: &[&str]) -> (String, String, Vec<String>) {
    (
        "repository".into(),
        name.into(),
        actions.iter().map(|a| a.to_string()).collect(),
    )
}

// --- Endpoint / transport -------------------------------------------------

#[tokio::test]
async fn item_01_realm_is_an_absolute_url() {
    let f = Fixture::new();
    let state = f.state("");
    let r = get(&state, &scope_uri(&[]), Some(&basic("writer", "wrong"))).await;
    let challenge = r.header("www-authenticate").expect("challenge");
    assert!(
        challenge.starts_with("Basic realm=\"http://"),
        "{challenge}"
    );
    let err = f
        .config("")
        .set("server.realm", "/auth")
        .load()
        .unwrap_err()
        .to_string();
    assert!(err.contains("server.realm"), "{err}");
}

#[tokio::test]
async fn items_02_03_get_and_post_on_every_token_path() {
    let f = Fixture::new();
    let state = f.state("");
    for path in ["/auth", "/token", "/auth/token", "/auth/token/"] {
        let r = get(
            &state,
            &format!("{path}?service={SERVICE}"),
            Some(&basic("writer", "writer-pw")),
        )
        .await;
        assert_eq!(r.status, StatusCode::OK, "GET {path}");
        let r = post_form(
            &state,
            path,
            &format!("grant_type=password&username=writer&password=writer-pw&service={SERVICE}"),
        )
        .await;
        assert_eq!(r.status, StatusCode::OK, "POST {path}: {}", r.text());
    }
}

#[tokio::test]
async fn item_04_answers_within_the_request_timeout_even_if_the_idp_hangs() {
    let f = Fixture::new();
    let config = f
        .config("")
        .set("server.upstream_timeout", "1s")
        .load()
        .unwrap();
    let state = regauth::build_with(config, vec![ScriptedProvider::hanging("hanging")]).unwrap();
    let started = Instant::now();
    let r = get(&state, &scope_uri(&[]), Some(&basic("u", "p"))).await;
    assert!(started.elapsed() < Duration::from_secs(15));
    let body = r.assert_error(StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(body["errors"][0]["code"], "UNAVAILABLE");
    assert!(r.header("retry-after").is_some());
}

/// `server.request_timeout` is the documented earlier name of
/// `server.upstream_timeout`, and still sets it.
#[test]
fn request_timeout_is_the_earlier_name_of_upstream_timeout() {
    let f = Fixture::new();
    let config = f
        .config("")
        .set("server.request_timeout", "1s")
        .load()
        .unwrap();
    assert_eq!(config.server.upstream_timeout, Duration::from_secs(1));
}

#[tokio::test]
async fn item_05_never_redirects() {
    let f = Fixture::new();
    let state = f.state("");
    for path in [
        "/auth",
        "/auth/",
        "/token",
        "/auth/token",
        "/auth/token/",
        "/AUTH",
    ] {
        let r = get(&state, path, None).await;
        assert!(!r.status.is_redirection(), "{path}: {}", r.status);
    }
}

// --- GET request handling -------------------------------------------------

#[tokio::test]
async fn item_07_repeated_scopes_are_each_granted() {
    let f = Fixture::new();
    let state = f.state("");
    let r = get(
        &state,
        &scope_uri(&["repository:team/a:pull", "repository:team/b:pull,push"]),
        Some(&basic("writer", "writer-pw")),
    )
    .await;
    assert_eq!(
        r.access(),
        [
            access("team/a", &["pull"]),
            access("team/b", &["pull", "push"])
        ]
    );
}

#[tokio::test]
async fn item_08_scope_values_are_split_on_spaces() {
    let f = Fixture::new();
    let state = f.state("");
    let r = get(
        &state,
        &scope_uri(&["repository:team/a:pull repository:team/b:push"]),
        Some(&basic("writer", "writer-pw")),
    )
    .await;
    assert_eq!(
        r.access(),
        [access("team/a", &["pull"]), access("team/b", &["push"])]
    );
}

#[tokio::test]
async fn item_09_no_scope_gives_an_empty_access_array() {
    let f = Fixture::new();
    let state = f.state("");
    let r = get(&state, &scope_uri(&[]), Some(&basic("writer", "writer-pw"))).await;
    let (_, claims) = r.token();
    assert_eq!(claims["access"], serde_json::json!([]));
}

#[tokio::test]
async fn item_10_duplicate_scopes_and_actions_merge() {
    let f = Fixture::new();
    let state = f.state("");
    let r = get(
        &state,
        &scope_uri(&[
            "repository:team/a:pull",
            "repository:team/a:pull,pull,push",
            "repository:team/a:pull",
        ]),
        Some(&basic("writer", "writer-pw")),
    )
    .await;
    assert_eq!(r.access(), [access("team/a", &["pull", "push"])]);
}

#[tokio::test]
async fn items_11_12_account_never_authenticates_and_may_differ() {
    let f = Fixture::new();
    let state = f.state("");
    // account without Basic: anonymous, whatever account says
    let r = get(
        &state,
        &format!(
            "{}&account=admin&client_id=x&unknown=1",
            scope_uri(&["repository:team/a:pull"])
        ),
        None,
    )
    .await;
    let (_, claims) = r.token();
    assert_eq!(claims["sub"], "");
    assert_eq!(claims["access"], serde_json::json!([]));
    // account differs from the Basic user: ignored
    let r = get(
        &state,
        &format!("{}&account=admin", scope_uri(&["repository:team/a:push"])),
        Some(&basic("writer", "writer-pw")),
    )
    .await;
    let (_, claims) = r.token();
    assert_eq!(claims["sub"], "writer");
    assert_eq!(r.access(), [access("team/a", &["push"])]);
}

#[tokio::test]
async fn item_13_offline_token_booleans_are_accepted() {
    let f = Fixture::new();
    let state = f.state("");
    for value in ["true", "false", "1", "0"] {
        let r = get(
            &state,
            &format!("{}&offline_token={value}", scope_uri(&[])),
            Some(&basic("writer", "writer-pw")),
        )
        .await;
        assert_eq!(r.status, StatusCode::OK, "{value}");
    }
}

#[tokio::test]
async fn item_14_missing_or_empty_service_defaults_to_the_only_one() {
    let f = Fixture::new();
    let state = f.state("");
    for uri in [
        "/auth",
        "/auth?service=",
        "/auth?scope=repository:team/a:pull",
    ] {
        let r = get(&state, uri, Some(&basic("writer", "writer-pw"))).await;
        let (_, claims) = r.token();
        assert_eq!(claims["aud"], SERVICE, "{uri}");
    }
    let state = f
        .config("")
        .set("token.services", vec![SERVICE, "other"])
        .state();
    let r = get(&state, "/auth", Some(&basic("writer", "writer-pw"))).await;
    r.assert_error(StatusCode::BAD_REQUEST);
    let r = get(
        &state,
        "/auth?service=other",
        Some(&basic("writer", "writer-pw")),
    )
    .await;
    assert_eq!(r.token().1["aud"], "other");
}

#[tokio::test]
async fn item_15_unknown_service_is_refused() {
    let f = Fixture::new();
    let state = f.state("");
    let r = get(
        &state,
        "/auth?service=evil.example",
        Some(&basic("writer", "writer-pw")),
    )
    .await;
    r.assert_error(StatusCode::BAD_REQUEST);
    let r = get(&state, "/auth?service=evil.example", None).await;
    r.assert_error(StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn item_16_basic_splits_at_the_first_colon_without_trimming() {
    let f = Fixture::new();
    let state = f.state("");
    let r = get(
        &state,
        &scope_uri(&["repository:team/x:push"]),
        Some(&basic("colon", "p:a:ss wörd")),
    )
    .await;
    assert_eq!(r.access(), [access("team/x", &["push"])]);
    for wrong in ["p:a:ss wörd ", " p:a:ss wörd", "p:a:ss word"] {
        let r = get(&state, &scope_uri(&[]), Some(&basic("colon", wrong))).await;
        r.assert_error(StatusCode::UNAUTHORIZED);
    }
}

#[tokio::test]
async fn item_17_no_authorization_is_anonymous() {
    let f = Fixture::new();
    let state = f.state("");
    let r = get(
        &state,
        &scope_uri(&["repository:public/x:pull,push", "repository:team/a:pull"]),
        None,
    )
    .await;
    let (_, claims) = r.token();
    assert_eq!(claims["sub"], "");
    assert_eq!(r.access(), [access("public/x", &["pull"])]);
    let state = f.config("").set("server.anonymous", false).state();
    let r = get(&state, &scope_uri(&["repository:public/x:pull"]), None).await;
    r.assert_error(StatusCode::UNAUTHORIZED);
}

// --- GET responses ----------------------------------------------------------

#[tokio::test]
async fn items_18_to_24_response_shape() {
    let f = Fixture::new();
    let state = f.state("");
    let r = get(
        &state,
        &scope_uri(&["repository:team/a:pull"]),
        Some(&basic("reader", "reader-pw")),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.header("content-type"), Some("application/json"));
    let body = r.json();
    assert!(body.is_object());
    assert_eq!(body["token"], body["access_token"]);
    let expires_in = body["expires_in"].as_u64().expect("integer expires_in");
    assert!(body["expires_in"].is_u64());
    assert!(expires_in >= 300, "{expires_in}");
    assert_eq!(expires_in, 900);
    let issued_at = body["issued_at"].as_str().expect("issued_at string");
    let ok = issued_at.len() == 20
        && issued_at.as_bytes()[10] == b'T'
        && issued_at.ends_with('Z')
        && issued_at[..4].chars().all(|c| c.is_ascii_digit());
    assert!(ok, "{issued_at}");
    let (_, claims) = decode(body["token"].as_str().unwrap());
    let iat = claims["iat"].as_i64().unwrap();
    assert_eq!(issued_at, regauth::clock::rfc3339(iat));
    assert!(claims["exp"].as_i64().unwrap() >= iat + expires_in as i64);
}

#[tokio::test]
async fn item_21_per_service_lifetime_is_an_integer() {
    let f = Fixture::new();
    let state = f
        .config("")
        .set(
            "token.service_lifetimes",
            std::collections::BTreeMap::from([(SERVICE, "5m")]),
        )
        .state();
    let r = get(&state, "/auth", Some(&basic("reader", "reader-pw"))).await;
    assert_eq!(r.json()["expires_in"], 300);
}

#[tokio::test]
async fn item_25_no_refresh_token_without_offline_or_credentials() {
    let f = Fixture::new();
    let state = f.state("");
    let r = get(&state, &scope_uri(&[]), Some(&basic("writer", "writer-pw"))).await;
    assert!(r.json().get("refresh_token").is_none());
    let r = get(
        &state,
        &format!("{}&offline_token=true", scope_uri(&[])),
        None,
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.json().get("refresh_token").is_none());
}

#[tokio::test]
async fn item_26_response_and_token_sizes() {
    let f = Fixture::new();
    let state = f.state("");
    let scopes: Vec<String> = (0..20)
        .map(|i| format!("repository:team/app-{i}:pull,push"))
        .collect();
    let refs: Vec<&str> = scopes.iter().map(String::as_str).collect();
    let r = get(
        &state,
        &scope_uri(&refs),
        Some(&basic("writer", "writer-pw")),
    )
    .await;
    assert_eq!(r.access().len(), 20);
    assert!(r.body.len() < 64 * 1024);
    assert!(r.json()["token"].as_str().unwrap().len() < 8 * 1024);
}

#[tokio::test]
async fn items_27_28_bad_credentials_are_401_never_anonymous() {
    let f = Fixture::new();
    let state = f.state("");
    for auth in [
        basic("writer", "nope"),
        basic("nobody", "x"),
        basic("writer", ""),
        basic("", "writer-pw"),
    ] {
        let r = get(
            &state,
            &scope_uri(&["repository:public/x:pull"]),
            Some(&auth),
        )
        .await;
        let body = r.assert_error(StatusCode::UNAUTHORIZED);
        assert_eq!(body["errors"][0]["code"], "UNAUTHORIZED");
        assert!(body.get("token").is_none());
        let challenge = r.header("www-authenticate").unwrap();
        assert!(challenge.starts_with("Basic realm=\""), "{challenge}");
        assert!(challenge.contains("charset=\"UTF-8\""), "{challenge}");
    }
}

#[tokio::test]
async fn item_29_lacking_rights_is_200_with_less_access() {
    let f = Fixture::new();
    let state = f.state("");
    let r = get(
        &state,
        &scope_uri(&["repository:team/a:pull,push", "repository:secret/x:pull"]),
        Some(&basic("reader", "reader-pw")),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.access(), [access("team/a", &["pull"])]);
}

#[tokio::test]
async fn item_30_unparsable_scope_items_are_ignored() {
    let f = Fixture::new();
    let state = f.state("");
    let r = get(
        &state,
        &scope_uri(&[
            "garbage",
            "repository:team/a:pull",
            "::",
            "Repository:x:pull",
            "repository:team/b",
        ]),
        Some(&basic("reader", "reader-pw")),
    )
    .await;
    assert_eq!(r.access(), [access("team/a", &["pull"])]);
}

// --- POST (OAuth2) ------------------------------------------------------------

async fn post_with(state: &Arc<regauth::AppState>, content_type: &str, body: Body) -> Reply {
    let request = Request::post("/auth")
        .header("content-type", content_type)
        .body(body)
        .unwrap();
    call(state, request).await
}

#[tokio::test]
async fn item_31_form_content_type_with_or_without_charset() {
    let f = Fixture::new();
    let state = f.state("");
    let form = "grant_type=password&username=writer&password=writer-pw&service=registry.test";
    for ct in [
        "application/x-www-form-urlencoded",
        "application/x-www-form-urlencoded; charset=utf-8",
        "Application/X-WWW-Form-Urlencoded;charset=UTF-8",
    ] {
        let r = post_with(&state, ct, Body::from(form)).await;
        assert_eq!(r.status, StatusCode::OK, "{ct}: {}", r.text());
    }
    let r = post_with(&state, "application/json", Body::from("{}")).await;
    r.assert_error(StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn item_32_chunked_bodies_without_content_length() {
    let f = Fixture::new();
    let state = f.state("");
    let chunks: Vec<Result<&'static str, std::io::Error>> = vec![
        Ok("grant_type=password&user"),
        Ok("name=writer&password=wri"),
        Ok("ter-pw&scope=repository:team/a:push"),
    ];
    let body = Body::from_stream(futures_util::stream::iter(chunks));
    let r = post_with(&state, "application/x-www-form-urlencoded", body).await;
    assert_eq!(r.access(), [access("team/a", &["push"])]);
}

#[tokio::test]
async fn item_33_post_scope_forms() {
    let f = Fixture::new();
    let state = f.state("");
    let base = "grant_type=password&username=writer&password=writer-pw&service=registry.test";
    let cases: &[(&str, usize)] = &[
        ("&scope=repository:team/a:pull%20repository:team/b:push", 2),
        (
            "&scope=repository:team/a:pull&scope=repository:team/b:push",
            2,
        ),
        ("&scope=", 0),
        ("", 0),
    ];
    for (extra, n) in cases {
        let r = post_form(&state, "/auth", &format!("{base}{extra}")).await;
        assert_eq!(r.access().len(), *n, "{extra}");
    }
}

#[tokio::test]
async fn items_34_36_password_grant_response() {
    let f = Fixture::new();
    let state = f.state("");
    let r = post_form(
        &state,
        "/auth",
        "grant_type=password&username=writer&password=writer-pw&service=registry.test&client_id=containerd-client&scope=repository%3Ateam%2Fa%3Apull%2Cpush",
    )
    .await;
    let body = r.json();
    assert_eq!(body["token"], body["access_token"]);
    assert!(body["expires_in"].is_u64());
    assert!(body["issued_at"].is_string());
    assert_eq!(body["scope"], "repository:team/a:pull,push");
    assert_eq!(r.token().1["sub"], "writer");
}

#[tokio::test]
async fn item_35_40_unknown_refresh_token_is_401() {
    let f = Fixture::new();
    let state = f.state("");
    let r = post_form(
        &state,
        "/auth",
        "grant_type=refresh_token&refresh_token=made-up&service=registry.test&client_id=docker",
    )
    .await;
    let body = r.assert_error(StatusCode::UNAUTHORIZED);
    assert_eq!(body["error"], "invalid_grant");
}

#[tokio::test]
async fn item_40_bad_password_401_and_unsupported_grant_400() {
    let f = Fixture::new();
    let state = f.state("");
    let r = post_form(
        &state,
        "/auth",
        "grant_type=password&username=writer&password=bad&service=registry.test",
    )
    .await;
    r.assert_error(StatusCode::UNAUTHORIZED);
    for grant in [
        "grant_type=client_credentials",
        "grant_type=authorization_code&code=x",
        "",
    ] {
        let r = post_form(&state, "/auth", grant).await;
        r.assert_error(StatusCode::BAD_REQUEST);
    }
    let r = post_form(&state, "/auth", "grant_type=client_credentials").await;
    assert_eq!(r.json()["error"], "unsupported_grant_type");
}

#[tokio::test]
async fn item_42_client_id_missing_or_unknown() {
    let f = Fixture::new();
    let state = f.state("");
    for extra in ["", "&client_id=", "&client_id=something-new"] {
        let r = post_form(
            &state,
            "/auth",
            &format!("grant_type=password&username=reader&password=reader-pw{extra}"),
        )
        .await;
        assert_eq!(r.status, StatusCode::OK, "{extra}");
    }
}

// --- Scope grammar and grants -------------------------------------------------

#[tokio::test]
async fn items_44_46_names_with_host_port_kept_byte_for_byte() {
    let f = Fixture::new();
    let state = f.state("");
    let r = get(
        &state,
        &scope_uri(&[
            "repository:localhost:5000/team/x:pull",
            "repository:team/Odd_Name-1.x:pull",
        ]),
        Some(&basic("admin", "admin-pw")),
    )
    .await;
    assert_eq!(
        r.access(),
        [
            access("localhost:5000/team/x", &["pull"]),
            access("team/Odd_Name-1.x", &["pull"])
        ]
    );
}

#[tokio::test]
async fn item_45_plugin_class_is_dropped() {
    let f = Fixture::new();
    let state = f.state("");
    let r = get(
        &state,
        &scope_uri(&["repository(plugin):team/p:pull"]),
        Some(&basic("reader", "reader-pw")),
    )
    .await;
    let (_, claims) = r.token();
    assert_eq!(claims["access"][0]["type"], "repository");
    assert!(claims["access"][0].get("class").is_none());
}

#[tokio::test]
async fn items_47_48_push_with_pull_and_delete_separately() {
    let f = Fixture::new();
    let state = f.state("");
    let r = get(
        &state,
        &scope_uri(&["repository:team/a:pull,push,delete"]),
        Some(&basic("writer", "writer-pw")),
    )
    .await;
    assert_eq!(r.access(), [access("team/a", &["pull", "push"])]);
    let r = get(
        &state,
        &scope_uri(&["repository:team/a:delete"]),
        Some(&basic("admin", "admin-pw")),
    )
    .await;
    assert_eq!(r.access(), [access("team/a", &["delete"])]);
}

#[tokio::test]
async fn item_49_mount_from_another_repository() {
    let f = Fixture::new();
    let state = f.state("");
    let r = get(
        &state,
        &scope_uri(&[
            "repository:team/to:pull,push",
            "repository:public/from:pull",
        ]),
        Some(&basic("writer", "writer-pw")),
    )
    .await;
    assert_eq!(
        r.access(),
        [
            access("team/to", &["pull", "push"]),
            access("public/from", &["pull"])
        ]
    );
}

#[tokio::test]
async fn items_50_53_catalog_and_unknown_types() {
    let f = Fixture::new();
    let state = f.state("");
    let r = get(
        &state,
        &scope_uri(&["registry:catalog:*"]),
        Some(&basic("admin", "admin-pw")),
    )
    .await;
    assert_eq!(
        r.access(),
        [(
            "registry".to_string(),
            "catalog".to_string(),
            vec!["*".to_string()]
        )]
    );
    let r = get(
        &state,
        &scope_uri(&["registry:catalog:*"]),
        Some(&basic("writer", "writer-pw")),
    )
    .await;
    assert!(r.access().is_empty());
    let r = get(
        &state,
        &scope_uri(&[
            "registry:catalog:search",
            "widget:team/a:pull",
            "repository:team/a:frob",
        ]),
        Some(&basic("admin", "admin-pw")),
    )
    .await;
    assert!(r.access().is_empty());
}

#[tokio::test]
async fn items_51_52_wildcard_only_with_every_action() {
    let f = Fixture::new();
    let state = f.state("");
    let r = get(
        &state,
        &scope_uri(&["repository:team/a:*"]),
        Some(&basic("admin", "admin-pw")),
    )
    .await;
    assert_eq!(
        r.access(),
        [access("team/a", &["*", "delete", "pull", "push"])]
    );
    let r = get(
        &state,
        &scope_uri(&["repository:team/a:*"]),
        Some(&basic("writer", "writer-pw")),
    )
    .await;
    assert!(r.access().is_empty());
}

// --- JWT ---------------------------------------------------------------------

#[tokio::test]
async fn items_54_to_65_jwt_header_and_claims() {
    use aws_lc_rs::signature::{UnparsedPublicKey, ECDSA_P256_SHA256_FIXED};
    use base64::Engine as _;
    let f = Fixture::new();
    let state = f.state("");
    let r = get(
        &state,
        &scope_uri(&["repository:team/a:pull"]),
        Some(&basic("writer", "writer-pw")),
    )
    .await;
    let jwt = r.json()["token"].as_str().unwrap().to_owned();
    let (header, claims) = decode(&jwt);
    assert_eq!(header["typ"], "JWT");
    assert_eq!(header["alg"], "ES256");
    assert_eq!(header["kid"], state.issuer.keys().current.kid.as_str());
    // x5c: standard base64 DER of the certificate given to the registry
    let x5c = header["x5c"][0].as_str().unwrap();
    let der = base64::engine::general_purpose::STANDARD
        .decode(x5c)
        .unwrap();
    let pem_text = std::fs::read_to_string(&f.cert).unwrap();
    assert_eq!(pem::parse(pem_text).unwrap().contents(), der.as_slice());
    // raw r||s ECDSA signature verifies
    let (signed, sig) = jwt.rsplit_once('.').unwrap();
    let sig = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(sig)
        .unwrap();
    assert_eq!(sig.len(), 64);
    let jwk = state.issuer.keys().current.jwk();
    let x = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(jwk["x"].as_str().unwrap())
        .unwrap();
    let y = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(jwk["y"].as_str().unwrap())
        .unwrap();
    let point = [&[4u8][..], &x, &y].concat();
    UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, point)
        .verify(signed.as_bytes(), &sig)
        .expect("signature verifies");
    // claims
    assert_eq!(claims["iss"], ISSUER);
    assert!(claims["aud"].is_string());
    assert_eq!(claims["aud"], SERVICE);
    assert_eq!(claims["sub"], "writer");
    for k in ["exp", "nbf", "iat"] {
        assert!(claims[k].is_i64(), "{k} must be an integer");
    }
    let now = regauth::clock::now();
    assert!(claims["iat"].as_i64().unwrap() <= now);
    assert!(claims["nbf"].as_i64().unwrap() < claims["iat"].as_i64().unwrap());
    assert!(claims["nbf"].as_i64().unwrap() >= claims["iat"].as_i64().unwrap() - 60);
    assert!(claims["jti"].as_str().unwrap().len() >= 16);
    let access = claims["access"].as_array().unwrap();
    assert_eq!(
        access[0],
        serde_json::json!({"type":"repository","name":"team/a","actions":["pull"]})
    );
    // jti is unique
    let again = get(&state, &scope_uri(&[]), Some(&basic("writer", "writer-pw"))).await;
    assert_ne!(again.token().1["jti"], claims["jti"]);
    // anonymous: sub "" and access [] (never null)
    let anon = get(&state, &scope_uri(&["repository:team/a:pull"]), None).await;
    let (_, claims) = anon.token();
    assert_eq!(claims["sub"], "");
    assert_eq!(claims["access"], serde_json::json!([]));
}

#[tokio::test]
async fn jwks_publishes_the_header_kid() {
    let f = Fixture::new();
    let state = f.state("");
    let r = get(&state, "/jwks", None).await;
    let keys = r.json()["keys"].clone();
    assert_eq!(keys[0]["kid"], state.issuer.keys().current.kid.as_str());
    assert_eq!(keys[0]["kty"], "EC");
    assert_eq!(keys[0]["alg"], "ES256");
    assert!(keys[0].get("d").is_none(), "no private part");
}

#[tokio::test]
async fn item_66_certificate_validity_is_watched() {
    let f = Fixture::new();
    let state = f.state("");
    let left = state.issuer.keys().current.not_after - regauth::clock::now();
    assert!(left > 0 && left <= 3600);
    let metrics = get(&state, "/metrics", None).await.text();
    assert!(metrics.contains(&format!(
        "regauth_signing_certificate_expiry_seconds {}",
        state.issuer.keys().current.not_after
    )));
}

// --- operations ----------------------------------------------------------------

#[tokio::test]
async fn health_ready_and_metrics() {
    let f = Fixture::new();
    let state = f.state("");
    assert_eq!(get(&state, "/healthz", None).await.status, StatusCode::OK);
    let ready = get(&state, "/readyz", None).await;
    assert_eq!(ready.status, StatusCode::OK);
    assert_eq!(ready.json()["providers"]["local"], "ready");
    for _ in 0..3 {
        get(&state, "/auth", Some(&basic("writer", "writer-pw"))).await;
    }
    get(&state, "/auth", Some(&basic("writer", "bad"))).await;
    let m = get(&state, "/metrics", None).await.text();
    assert!(
        m.contains("regauth_token_requests_total{outcome=\"issued\"} 3"),
        "{m}"
    );
    assert!(
        m.contains("regauth_token_requests_total{outcome=\"unauthorized\"} 1"),
        "{m}"
    );
    assert!(
        m.contains("regauth_cache_requests_total{cache=\"verdict\",result=\"hit\"} 2"),
        "{m}"
    );
}

#[tokio::test]
async fn verdict_cache_checks_a_password_once_per_ttl() {
    let f = Fixture::new();
    let state = f.state("");
    let uri = scope_uri(&["repository:team/a:pull"]);
    let mut tasks = Vec::new();
    for _ in 0..20 {
        let state = state.clone();
        let uri = uri.clone();
        tasks.push(tokio::spawn(async move {
            get(&state, &uri, Some(&basic("writer", "writer-pw")))
                .await
                .status
        }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap(), StatusCode::OK);
    }
    for _ in 0..20 {
        assert_eq!(
            get(&state, &uri, Some(&basic("writer", "writer-pw")))
                .await
                .status,
            StatusCode::OK
        );
    }
    state.chain.settle().await;
    assert_eq!(state.chain.cache_stats().entries, 1);
    let hits = state.chain.cache_stats().hits;
    assert!(hits >= 20, "sequential repeats are cache hits: {hits}");
}

/// A reload re-reads the configuration, its policy file included; a bad
/// file keeps the running state.
#[tokio::test]
async fn policy_reload_swaps_rules() {
    let f = Fixture::new();
    let policy_path = f.path("policy.toml");
    std::fs::write(
        &policy_path,
        "[[rule]]\nusers=[\"reader\"]\nrepos=[\"extra/**\"]\nactions=[\"pull\"]\n",
    )
    .unwrap();
    let config = f
        .config("")
        .set("policy", policy_path.display().to_string());
    let config_path = f.path("regauth.toml");
    config.write(&config_path);
    let live = regauth::Live::new(config.state());
    let reader = |scope: &'static str| {
        let live = live.clone();
        async move {
            let request = Request::get(scope_uri(&[scope]))
                .header("authorization", basic("reader", "reader-pw"))
                .body(Body::empty())
                .unwrap();
            call_live(&live, request).await
        }
    };
    assert_eq!(
        reader("repository:extra/a:pull").await.access(),
        [access("extra/a", &["pull"])]
    );
    std::fs::write(
        &policy_path,
        "[[rule]]\nusers=[\"reader\"]\nrepos=[\"other/**\"]\nactions=[\"pull\"]\n",
    )
    .unwrap();
    regauth::reload(&live, Some(&config_path)).unwrap();
    assert!(reader("repository:extra/a:pull").await.access().is_empty());
    std::fs::write(
        &policy_path,
        "[[rule]]\nusers=[\"reader\"]\nrepos=[\"x\"]\nactions=[\"pul\"]\n",
    )
    .unwrap();
    let err = regauth::reload(&live, Some(&config_path))
        .err()
        .expect("refused")
        .to_string();
    assert!(err.contains("rule[0].actions[0]"), "{err}");
    assert_eq!(
        reader("repository:other/a:pull").await.access(),
        [access("other/a", &["pull"])],
        "a bad file keeps the old policy"
    );
}

#[tokio::test]
async fn identical_requests_within_the_reuse_window_get_the_same_token() {
    let f = Fixture::new();
    let state = f.state("");
    let uri = scope_uri(&["repository:team/a:pull"]);
    let first = get(&state, &uri, Some(&basic("writer", "writer-pw")))
        .await
        .json();
    let second = get(&state, &uri, Some(&basic("writer", "writer-pw")))
        .await
        .json();
    assert_eq!(first["token"], second["token"]);
    // the client's expiry arithmetic still holds for the reused token
    assert_eq!(first["issued_at"], second["issued_at"]);
    let (_, claims) = decode(second["token"].as_str().unwrap());
    assert_eq!(
        second["issued_at"],
        regauth::clock::rfc3339(claims["iat"].as_i64().unwrap())
    );
    // another user, scope or grant is never served a reused token
    let other = get(&state, &uri, Some(&basic("reader", "reader-pw"))).await;
    assert_eq!(other.token().1["sub"], "reader");
    let push = get(
        &state,
        &scope_uri(&["repository:team/a:pull,push"]),
        Some(&basic("writer", "writer-pw")),
    )
    .await;
    assert_ne!(push.json()["token"], first["token"]);
    let m = get(&state, "/metrics", None).await.text();
    assert!(m.contains("regauth_tokens_reused_total 1"), "{m}");

    let off = f.config("").set("token.reuse_window", "0s").state();
    let a = get(&off, &uri, Some(&basic("writer", "writer-pw")))
        .await
        .token()
        .1;
    let b = get(&off, &uri, Some(&basic("writer", "writer-pw")))
        .await
        .token()
        .1;
    assert_ne!(
        a["jti"], b["jti"],
        "every token is signed anew without a window"
    );
}

/// Behind a load balancer the per-client failure budget must key on the
/// client, not on the proxy: X-Forwarded-For counts only from trusted
/// proxies.
#[tokio::test]
async fn throttle_keys_on_the_forwarded_client_only_behind_trusted_proxies() {
    let f = Fixture::new();
    let config = f.config("").set("cache.max_client_failures", 2);
    let from = |state: &Arc<regauth::AppState>,
                client: &'static str,
                user: &'static str,
                password: &'static str| {
        let state = state.clone();
        async move {
            let request = Request::get(format!("/auth?service={SERVICE}"))
                .header("authorization", basic(user, password))
                .header("x-forwarded-for", format!("{client}, 10.0.0.5"))
                .body(Body::empty())
                .unwrap();
            call(&state, request).await.status
        }
    };
    // the in-process router's peer is 0.0.0.0; trust it and the inner proxy
    let trusted = config
        .clone()
        .set("server.trusted_proxies", vec!["0.0.0.0", "10.0.0.0/8"])
        .state();
    for user in ["nobody", "reader"] {
        assert_eq!(
            from(&trusted, "203.0.113.7", user, "wrong").await,
            StatusCode::UNAUTHORIZED
        );
    }
    assert_eq!(
        from(&trusted, "203.0.113.7", "writer", "writer-pw").await,
        StatusCode::UNAUTHORIZED,
        "throttled"
    );
    assert_eq!(
        from(&trusted, "198.51.100.9", "writer", "writer-pw").await,
        StatusCode::OK,
        "another client is not"
    );
    // without trust, the header is ignored: everyone shares the peer's count
    let untrusted = config.state();
    for user in ["nobody", "reader"] {
        assert_eq!(
            from(&untrusted, "203.0.113.7", user, "wrong").await,
            StatusCode::UNAUTHORIZED
        );
    }
    assert_eq!(
        from(&untrusted, "198.51.100.9", "writer", "writer-pw").await,
        StatusCode::UNAUTHORIZED
    );
}
