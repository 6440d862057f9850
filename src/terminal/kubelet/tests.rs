//! Tests of the kubelet credential provider plugin.

use super::*;

/// The time the tests run at.
const NOW: u64 = 1_750_000_000;

/// An unsigned JWT with `claims` as its payload.
fn jwt(claims: &str) -> String {
    let encode = |part: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(part);
    format!(
        "{}.{}.c2lnbmF0dXJlLW5vdC1jaGVja2Vk",
        encode(r#"{"alg":"RS256","kid":"k1"}"#),
        encode(claims)
    )
}

/// A service account token expiring `seconds` after `NOW`.
fn token_expiring_in(seconds: u64) -> String {
    jwt(&format!(
        r#"{{"aud":["registry.corp"],"exp":{},"iss":"https://kubernetes.default.svc","sub":"system:serviceaccount:team:builder"}}"#,
        NOW + seconds
    ))
}

/// A request for `image` with `token`.
fn request(image: &str, token: &str) -> Vec<u8> {
    serde_json::json!({
        "apiVersion": API_VERSION,
        "kind": "CredentialProviderRequest",
        "image": image,
        "serviceAccountToken": token,
        "serviceAccountAnnotations": {"regauth.example/role": "pull"},
    })
    .to_string()
    .into_bytes()
}

/// The request `json` with its field `name` set to `value` (removed for
/// null).
fn with(json: &str, name: &str, value: Value) -> Vec<u8> {
    let mut fields: Map<String, Value> = serde_json::from_str(json).unwrap();
    match value {
        Value::Null => fields.remove(name),
        value => fields.insert(name.to_owned(), value),
    };
    serde_json::to_vec(&fields).unwrap()
}

fn args(list: &[&str]) -> Vec<String> {
    list.iter().map(|arg| (*arg).to_owned()).collect()
}

fn response(output: &[u8]) -> Value {
    serde_json::from_slice(output).unwrap()
}

#[test]
fn the_registry_is_the_host_and_port_before_the_first_slash() {
    for (image, host) in [
        ("registry.corp:5000/team/app:1.0", "registry.corp:5000"),
        ("registry.corp/team/app", "registry.corp"),
        ("registry.corp/app", "registry.corp"),
        ("registry.corp/a/b/c/d:tag", "registry.corp"),
        ("registry.corp/app@sha256:0123456789abcdef", "registry.corp"),
        (
            "registry.corp:443/app:1.0@sha256:0123456789abcdef",
            "registry.corp:443",
        ),
        ("localhost/app", "localhost"),
        ("localhost:5000/app", "localhost:5000"),
        ("10.0.0.7:5000/team/app", "10.0.0.7:5000"),
        ("[::1]:5000/team/app:1.0", "[::1]:5000"),
        ("[fd00::7]/app@sha256:abcd", "[fd00::7]"),
        ("Registry/app", "Registry"),
        ("reg-1.corp.example/app", "reg-1.corp.example"),
    ] {
        assert_eq!(registry_host(image), Ok(host), "{image}");
    }
}

#[test]
fn an_image_without_a_registry_host_or_on_docker_hub_is_refused() {
    let rejected = "ubuntu ubuntu:22.04 ubuntu@sha256:0123 library/ubuntu \
        library/ubuntu:22.04 team/app@sha256:0123 registry.corp:5000 \
        docker.io/library/ubuntu index.docker.io/library/ubuntu:22.04 \
        Registry-1.Docker.IO/library/ubuntu registry.corp/ registry.corp:/app \
        registry.corp:http/app registry.corp:70000/app registry.corp:0/app [::1/app \
        [::1]x/app [nothex]:5000/app -bad.corp/app bad..corp/app user@registry.corp/app";
    for image in rejected.split_whitespace().chain([""]) {
        assert!(registry_host(image).is_err(), "{image} was accepted");
    }
    let error = registry_host("ubuntu:22.04").unwrap_err();
    assert!(error.contains("names no registry host"), "{error}");
    let error = registry_host("docker.io/library/ubuntu").unwrap_err();
    assert!(error.contains("Docker Hub"), "{error}");
}

#[test]
fn durations_are_whole_hours_minutes_and_seconds() {
    for (text, seconds) in [
        ("300s", 300),
        ("5m", 300),
        ("1h", 3600),
        ("1h30m", 5400),
        ("2m5s", 125),
        ("0s", 0),
        ("0", 0),
    ] {
        assert_eq!(parse_duration(text), Ok(seconds), "{text}");
    }
    let rejected = "5 5x s m5 5ms -5s 1.5h 99999999999h".split_whitespace();
    for text in rejected.chain(["", "5 m"]) {
        assert!(parse_duration(text).is_err(), "{text} was accepted");
    }
}

#[test]
fn the_cache_duration_ends_a_minute_before_the_token() {
    assert_eq!(cache_seconds(300, None, NOW), 300);
    assert_eq!(cache_seconds(300, Some(NOW + 3600), NOW), 300);
    assert_eq!(cache_seconds(300, Some(NOW + 200), NOW), 140);
    assert_eq!(cache_seconds(300, Some(NOW + 61), NOW), 1);
    assert_eq!(cache_seconds(300, Some(NOW + 60), NOW), 0);
    assert_eq!(cache_seconds(300, Some(NOW + 10), NOW), 0);
    assert_eq!(cache_seconds(300, Some(NOW - 10), NOW), 0);
    assert_eq!(cache_seconds(300, Some(0), NOW), 0);
    assert_eq!(cache_seconds(0, Some(NOW + 3600), NOW), 0);
}

#[test]
fn the_expiry_is_read_from_the_unverified_payload() {
    assert_eq!(token_expiry(&token_expiring_in(600)), Some(NOW + 600));
    assert_eq!(token_expiry(&jwt(r#"{"exp":1750000000.9}"#)), Some(NOW));
    assert_eq!(token_expiry(&jwt(r#"{"exp":-5}"#)), Some(0));
    let padded = format!(
        "e30.{}=.sig",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(r#"{"exp":17}"#)
    );
    assert_eq!(token_expiry(&padded), Some(17));
    for token in [
        jwt(r#"{"sub":"x"}"#),
        jwt(r#"{"exp":"1750000000"}"#),
        jwt("not json"),
        "opaque-token".to_owned(),
        "a.!!!.c".to_owned(),
    ] {
        assert_eq!(token_expiry(&token), None, "{token}");
    }
}

#[test]
fn a_request_is_answered_with_the_token_for_the_images_registry() {
    let token = token_expiring_in(3600);
    let output = run(
        &request("registry.corp:5000/team/app:1.0", &token),
        &args(&["--username", "robot", "--cache-duration=10m"]),
        NOW,
    )
    .unwrap();
    assert_eq!(
        response(&output),
        serde_json::json!({
            "apiVersion": "credentialprovider.kubelet.k8s.io/v1",
            "kind": "CredentialProviderResponse",
            "cacheKeyType": "Registry",
            "cacheDuration": "600s",
            "auth": {"registry.corp:5000": {"username": "robot", "password": token}},
        })
    );
    assert!(output.ends_with(b"\n"));
}

#[test]
fn the_defaults_and_the_tokens_expiry_shape_the_response() {
    let token = token_expiring_in(3600);
    let output = run(&request("[::1]:5000/app@sha256:abcd", &token), &[], NOW).unwrap();
    let answer = response(&output);
    assert_eq!(answer["cacheDuration"], "300s");
    assert_eq!(answer["auth"]["[::1]:5000"]["username"], "kubernetes");
    assert_eq!(answer["auth"]["[::1]:5000"]["password"], token.as_str());

    let soon = token_expiring_in(90);
    let output = run(&request("registry.corp/app", &soon), &[], NOW).unwrap();
    assert_eq!(response(&output)["cacheDuration"], "30s");
    let expiring = token_expiring_in(30);
    let output = run(&request("registry.corp/app", &expiring), &[], NOW).unwrap();
    assert_eq!(response(&output)["cacheDuration"], "0s");

    let opaque = "not-a-jwt-but-passed-on";
    let output = run(
        &request("registry.corp/app", opaque),
        &args(&["--cache-duration", "1h"]),
        NOW,
    )
    .unwrap();
    assert_eq!(response(&output)["cacheDuration"], "3600s");
}

#[test]
fn malformed_requests_are_refused_with_a_reason() {
    let token = token_expiring_in(3600);
    let valid = String::from_utf8(request("registry.corp/app", &token)).unwrap();
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (Vec::new(), "empty or cut short"),
        (b"{\"apiVersion\":".to_vec(), "empty or cut short"),
        (b"not json".to_vec(), "is not JSON (at line 1"),
        (b"[1, 2]".to_vec(), "not a JSON object"),
        (
            valid.replace(API_VERSION, "credentialprovider.kubelet.k8s.io/v1beta1").into_bytes(),
            "apiVersion is \"credentialprovider.kubelet.k8s.io/v1beta1\", not credentialprovider.kubelet.k8s.io/v1",
        ),
        (
            valid.replace("CredentialProviderRequest", "CredentialProviderResponse").into_bytes(),
            "kind is \"CredentialProviderResponse\", not CredentialProviderRequest",
        ),
        (with(&valid, "apiVersion", Value::Null), "has no apiVersion"),
        (with(&valid, "apiVersion", 1.into()), "apiVersion is not a string"),
        (with(&valid, "image", Value::Null), "names no image"),
        (with(&valid, "serviceAccountToken", Value::Null), "set tokenAttributes"),
        (request("registry.corp/app", ""), "carries no serviceAccountToken"),
        (request("ubuntu:22.04", &token), "names no registry host"),
        (vec![b' '; MAX_REQUEST_BYTES + 1], "larger than"),
    ];
    for (input, want) in cases {
        let error = run(&input, &[], NOW).unwrap_err();
        assert!(error.contains(want), "{error:?} lacks {want:?}");
    }
}

#[test]
fn error_messages_never_hold_the_token_or_a_part_of_it() {
    let token = token_expiring_in(3600);
    let valid = String::from_utf8(request("registry.corp/app", &token)).unwrap();
    let inputs = [
        request("ubuntu:22.04", &token),
        request("docker.io/library/ubuntu", &token),
        request(&format!("docker.io/{token}"), &token),
        request(&format!("{token}:x/app"), &token),
        request(&token, &token),
        valid.replace(API_VERSION, &token).into_bytes(),
        valid
            .replace("CredentialProviderRequest", &token[10..40])
            .into_bytes(),
        valid.replace(API_VERSION, "v0").into_bytes(),
    ];
    for input in &inputs {
        let error = run(input, &[], NOW).unwrap_err();
        let leaked = token
            .as_bytes()
            .windows(FRAGMENT_BYTES)
            .any(|part| error.contains(std::str::from_utf8(part).unwrap()));
        assert!(!leaked, "{error}");
    }
    let error = run(&inputs[2], &[], NOW).unwrap_err();
    assert!(error.contains("withheld"), "{error}");
}

#[test]
fn the_command_line_takes_the_two_flags_and_help() {
    let Ok(Command::Respond(options)) = parse_args(&[]) else {
        panic!("no arguments are the defaults");
    };
    assert_eq!(options.username, "kubernetes");
    assert_eq!(options.cache_seconds, 300);
    let Ok(Command::Respond(options)) =
        parse_args(&args(&["--username=ci", "--cache-duration", "1h"]))
    else {
        panic!("both flags are accepted");
    };
    assert_eq!(options.username, "ci");
    assert_eq!(options.cache_seconds, 3600);
    let help = run(b"", &args(&["--help"]), NOW).unwrap();
    assert!(String::from_utf8(help).unwrap().starts_with("usage: "));
    for (list, want) in [
        (&["--verbose"][..], "unknown argument \"--verbose\""),
        (&["--username"][..], "--username takes a value"),
        (&["--username="][..], "--username takes a name"),
        (&["--username", "a:b"][..], "--username takes a name"),
        (
            &["--cache-duration", "5"][..],
            "--cache-duration \"5\": expected",
        ),
        (&["extra"][..], "unknown argument"),
    ] {
        let error = parse_args(&args(list)).unwrap_err();
        assert!(error.contains(want), "{error:?} lacks {want:?}");
    }
}

#[test]
fn an_error_is_one_line() {
    assert_eq!(one_line("a\nb\r\tc"), "a b  c");
}

#[test]
fn registries_named_with_registry_are_the_only_ones_answered() {
    let token = token_expiring_in(3600);
    let only = args(&["--registry", "Registry.Corp:5000", "--registry=mirror.corp"]);
    for image in ["registry.corp:5000/app:1", "mirror.corp/base/debian"] {
        let output = run(&request(image, &token), &only, NOW).unwrap();
        assert!(response(&output)["auth"].as_object().unwrap().len() == 1);
    }
    for elsewhere in ["registry.corp/app:1", "evil.example/app:1"] {
        let error = run(&request(elsewhere, &token), &only, NOW).unwrap_err();
        assert!(error.contains("none of --registry"), "{error}");
    }
}
