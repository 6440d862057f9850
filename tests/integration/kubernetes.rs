//! Kubernetes workloads without image pull secrets: a pod's own
//! service-account token, handed to regauth's kubelet credential
//! provider plugin as the kubelet hands it, is the registry password.
//! The cluster's issuer is known by its key file alone (`jwks_file`),
//! rules give each namespace its own repositories through a claim
//! template, and tokens for another audience, expired ones and ones
//! signed by a key the cluster no longer lists are refused.

use std::io::Write as _;
use std::process::{Command, Stdio};

use axum::http::StatusCode;

use crate::support::cluster::{Cluster, Pod};
use crate::support::oci::build_image;
use crate::support::*;

const PLUGIN: &str = env!("CARGO_BIN_EXE_regauth-kubelet-credential-provider");

/// Each namespace of cluster `prod` pushes to `NAMESPACE/**`; the
/// `tools` repositories are for the `ci` namespace's `builder` alone.
fn cluster_policy(cluster: &Cluster) -> String {
    format!(
        r#"{}
groups_claims = []

[[rule]]
description = "each namespace its own repositories"
users = ["*"]
providers = ["prod"]
repos = ["${{claim:kubernetes.io.namespace}}/**"]
actions = ["pull", "push"]

[[rule]]
description = "the CI builder reads the tools"
providers = ["prod"]
claims = {{ "kubernetes.io.namespace" = "ci", "kubernetes.io.serviceaccount.name" = "builder" }}
repos = ["tools/**"]
actions = ["pull"]
"#,
        cluster.provider_toml("prod", SERVICE)
    )
}

/// What the kubelet does for one image: the plugin run with a
/// `CredentialProviderRequest` on stdin; its response, or its exit
/// status and stderr.
fn kubelet_asks(image: &str, token: Option<&str>) -> Result<serde_json::Value, (i32, String)> {
    let mut request = serde_json::json!({
        "apiVersion": "credentialprovider.kubelet.k8s.io/v1",
        "kind": "CredentialProviderRequest",
        "image": image,
    });
    if let Some(token) = token {
        request["serviceAccountToken"] = token.into();
        request["serviceAccountAnnotations"] = serde_json::json!({});
    }
    let out = plugin(&["--username", "kubernetes"], &request);
    if out.status.success() {
        Ok(serde_json::from_slice(&out.stdout).unwrap())
    } else {
        Err((
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        ))
    }
}

/// The plugin run with `args` and `request` on stdin, as the kubelet runs it.
fn plugin(
    args: &[impl AsRef<std::ffi::OsStr>],
    request: &serde_json::Value,
) -> std::process::Output {
    let mut child = Command::new(PLUGIN)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(request.to_string().as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

/// The `username:password` the plugin's response gives for `registry`.
fn credentials(response: &serde_json::Value, registry: &str) -> String {
    assert_eq!(response["kind"], "CredentialProviderResponse", "{response}");
    assert_eq!(
        response["apiVersion"], "credentialprovider.kubelet.k8s.io/v1",
        "{response}"
    );
    let auth = &response["auth"][registry];
    format!(
        "{}:{}",
        auth["username"].as_str().unwrap(),
        auth["password"].as_str().unwrap()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pods_push_and_pull_with_their_own_service_account_tokens() {
    let cluster = Cluster::new("https://kubernetes.default.svc.cluster.local");
    let f = Fixture::new();
    let server = Server::start(f.config(&cluster_policy(&cluster))).await;
    let registry = Registry::start(&server.realm(), &f.cert).await;
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    let image = w.join("image");
    build_image(&image, "latest", 1, "kubernetes");
    let at = |repo: &str| format!("docker://{}/{repo}", registry.addr);
    let pod = |namespace| Pod {
        namespace,
        service_account: "builder",
        audience: SERVICE,
        lifetime: 3600,
    };

    // the kubelet asks for ci/app with the ci builder's token
    let token = cluster.token(&pod("ci"));
    let response = kubelet_asks(&format!("{}/ci/app:1", registry.addr), Some(&token)).unwrap();
    assert_eq!(response["cacheKeyType"], "Registry", "{response}");
    assert!(
        response["cacheDuration"]
            .as_str()
            .is_some_and(|d| d != "0s"),
        "a token good for an hour is cached: {response}"
    );
    let creds = credentials(&response, &registry.addr.to_string());
    let run = push(w, &creds, &image, &at("ci/app:1")).await;
    assert!(
        run.ok,
        "the ci namespace pushes to ci/: {run:?}\n{}",
        registry.log()
    );
    assert!(inspect(w, Some(&creds), &at("ci/app:1")).await.ok);
    assert!(
        !push(w, &creds, &image, &at("dev/app:1")).await.ok,
        "another namespace's repositories are not ci's"
    );

    // the dev namespace's token: its own repositories, not ci's
    let dev = credentials(
        &kubelet_asks(
            &format!("{}/dev/app:1", registry.addr),
            Some(&cluster.token(&pod("dev"))),
        )
        .unwrap(),
        &registry.addr.to_string(),
    );
    assert!(push(w, &dev, &image, &at("dev/app:1")).await.ok);
    assert!(!inspect(w, Some(&dev), &at("ci/app:1")).await.ok);

    // a nested claim rule: the ci builder reads tools/, dev does not
    let tools = "repository:tools/base:pull";
    let state = f.config(&cluster_policy(&cluster)).state();
    assert_eq!(
        token_for(&state, "kubernetes", &token, tools)
            .await
            .actions(),
        ["pull"]
    );
    let dev_token = cluster.token(&pod("dev"));
    assert!(token_for(&state, "kubernetes", &dev_token, tools)
        .await
        .actions()
        .is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_for_another_audience_expired_or_from_a_retired_key_are_refused() {
    let mut cluster = Cluster::new("https://kubernetes.default.svc.cluster.local");
    let f = Fixture::new();
    let state = f.config(&cluster_policy(&cluster)).state();
    let scope = "repository:ci/app:pull";
    let pod = |audience, lifetime| Pod {
        namespace: "ci",
        service_account: "builder",
        audience,
        lifetime,
    };
    let ok = cluster.token(&pod(SERVICE, 600));
    assert_eq!(
        token_for(&state, "kubernetes", &ok, scope).await.actions(),
        ["pull"]
    );
    for (refused, why) in [
        (
            cluster.token(&pod("https://kubernetes.default.svc", 600)),
            "the API server's own audience",
        ),
        (cluster.token(&pod(SERVICE, -120)), "expired"),
        (
            Cluster::new("https://kubernetes.default.svc.cluster.local").token(&pod(SERVICE, 600)),
            "another cluster's key",
        ),
        (
            Cluster::new("https://other.cluster.local").token(&pod(SERVICE, 600)),
            "another issuer",
        ),
    ] {
        let reply = token_for(&state, "kubernetes", &refused, scope).await;
        assert_eq!(
            reply.status,
            StatusCode::UNAUTHORIZED,
            "{why}: {}",
            reply.text()
        );
    }

    // the cluster rotates its key: the file changes, new tokens verify at
    // once, and tokens of the key it no longer lists stop verifying
    cluster.rotate(true);
    let rotated = cluster.token(&pod(SERVICE, 600));
    let scope_b = "repository:ci/b:pull";
    let accepted = token_for(&state, "kubernetes", &rotated, scope_b).await;
    assert_eq!(accepted.actions(), ["pull"], "{}", accepted.text());
    // (a verdict already cached for a token lives out cache.verdict_ttl,
    // as for any credential; this one was never presented)
    let unused = cluster.token(&pod(SERVICE, 601));
    cluster.rotate(false);
    let newest = cluster.token(&pod(SERVICE, 600));
    let fresh = token_for(&state, "kubernetes", &newest, "repository:ci/c:pull").await;
    assert_eq!(fresh.actions(), ["pull"], "{}", fresh.text());
    let retired = token_for(&state, "kubernetes", &unused, "repository:ci/d:pull").await;
    assert_eq!(
        retired.status,
        StatusCode::UNAUTHORIZED,
        "{}",
        retired.text()
    );

    // the file removed: its keys go with it (503, the keys cannot be had);
    // back, and they verify again; withdrawn (no key): every token refused
    let again = |n: i64| cluster.token(&pod(SERVICE, 600 + n));
    std::fs::remove_file(&cluster.jwks_file).unwrap();
    let gone = token_for(&state, "kubernetes", &again(2), "repository:ci/e:pull").await;
    assert_eq!(
        gone.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{}",
        gone.text()
    );
    cluster.republish();
    let back = token_for(&state, "kubernetes", &again(3), "repository:ci/f:pull").await;
    assert_eq!(back.actions(), ["pull"], "{}", back.text());
    cluster.withdraw_keys();
    let withdrawn = token_for(&state, "kubernetes", &again(4), "repository:ci/g:pull").await;
    assert_eq!(
        withdrawn.status,
        StatusCode::UNAUTHORIZED,
        "{}",
        withdrawn.text()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_clusters_keep_their_namespaces_apart() {
    let (east, west) = (
        Cluster::new("https://east.k8s.test"),
        Cluster::new("https://west.k8s.test"),
    );
    let f = Fixture::new();
    let template = "[[rule]]\nusers = [\"east:*\", \"west:*\"]\nproviders = [\"east\", \"west\"]\nrepos = [\"${provider}/${claim:kubernetes.io.namespace}/**\"]\nactions = [\"pull\", \"push\"]\n";
    let toml = format!(
        "{}groups_claims = []\n{}groups_claims = []\n{template}",
        east.provider_toml("east", SERVICE),
        west.provider_toml("west", SERVICE)
    );
    let state = f.config(&toml).state();
    let pod = Pod {
        namespace: "ci",
        service_account: "builder",
        audience: SERVICE,
        lifetime: 600,
    };
    let token = east.token(&pod);
    let push = "repository:east/ci/app:pull,push";
    assert_eq!(
        token_for(&state, "kubernetes", &token, push)
            .await
            .actions(),
        ["pull", "push"]
    );
    assert!(
        token_for(&state, "kubernetes", &token, "repository:west/ci/app:pull")
            .await
            .actions()
            .is_empty()
    );

    // the same template without ${provider}/ would give both clusters'
    // `ci` one namespace: refused when the configuration loads
    let shared = template.replace("${provider}/", "");
    let toml = format!(
        "{}groups_claims = []\n{}groups_claims = []\n{shared}",
        east.provider_toml("east", SERVICE),
        west.provider_toml("west", SERVICE)
    );
    let e = f.config(&toml).load().unwrap_err().to_string();
    assert!(e.contains("${provider}"), "{e}");
}

#[test]
fn the_plugin_fails_as_the_kubelet_expects_and_never_shows_the_token() {
    // without tokenAttributes the kubelet sends no token
    let (code, stderr) = kubelet_asks("registry.test/ci/app:1", None).unwrap_err();
    assert_eq!(code, 1);
    assert!(stderr.contains("tokenAttributes"), "{stderr}");
    // an image with no registry host is not regauth's
    let secret = "eyJhbGciOiJSUzI1NiJ9.eyJleHAiOjF9.c2VjcmV0LXNpZ25hdHVyZQ";
    let (code, stderr) = kubelet_asks("ubuntu:22.04", Some(secret)).unwrap_err();
    assert_eq!(code, 1);
    assert!(!stderr.contains("c2VjcmV0"), "{stderr}");
    assert!(
        stderr.starts_with("regauth-kubelet-credential-provider: "),
        "{stderr}"
    );
}

/// `config/example-kubernetes.toml` as shipped, with its files pointed at
/// the test's: the prod cluster's namespaces get their own apps, the
/// builder pushes, other namespaces are not let in.
#[test]
fn the_kubernetes_example_gives_each_namespace_its_own_images() {
    let cluster = Cluster::new("https://kubernetes.default.svc.cluster.local");
    let f = Fixture::new();
    let example = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("config/example-kubernetes.toml"),
    )
    .unwrap()
    .replace("/etc/regauth/token.key", &f.key.display().to_string())
    .replace("/etc/regauth/token.crt", &f.cert.display().to_string())
    .replace(
        "/etc/regauth/clusters/prod-jwks.json",
        &cluster.jwks_file.display().to_string(),
    )
    .replace(
        "/etc/regauth/clusters/staging-ca.crt",
        &f.cert.display().to_string(),
    )
    .replace("registry.corp.example", SERVICE);
    let path = f.path("example-kubernetes.toml");
    std::fs::write(&path, example).unwrap();
    let config = regauth::config::Config::load(Some(&path)).unwrap();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let state = regauth::build(config).unwrap();
        let token = |namespace, service_account| {
            cluster.token(&Pod {
                namespace,
                service_account,
                audience: SERVICE,
                lifetime: 600,
            })
        };
        let payments = token("payments", "default");
        let ask = |scope: &'static str, token: String| {
            let state = state.clone();
            async move { token_for(&state, "kubernetes", &token, scope).await }
        };
        let own = ask("repository:apps/payments/api:pull,push", payments.clone()).await;
        assert_eq!(own.actions(), ["pull"], "{}", own.text());
        assert!(ask("repository:apps/search/api:pull", payments.clone())
            .await
            .actions()
            .is_empty());
        assert_eq!(
            ask("repository:base/debian:pull", payments).await.actions(),
            ["pull"]
        );
        let builder = ask(
            "repository:apps/search/api:push",
            token("ci", "image-builder"),
        )
        .await;
        assert_eq!(builder.actions(), ["push"], "{}", builder.text());
        let outsider = ask("repository:base/debian:pull", token("sandbox", "default")).await;
        assert_eq!(
            outsider.status,
            StatusCode::UNAUTHORIZED,
            "{}",
            outsider.text()
        );
    });
}

/// The kubelet's `CredentialProviderConfig` (kubelet.config.k8s.io/v1),
/// field for field as kubelet/config/v1/types.go defines it: an unknown
/// or misspelt field fails, as the kubelet's strict decoding does.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct CredentialProviderConfig {
    api_version: String,
    kind: String,
    providers: Vec<CredentialProvider>,
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct CredentialProvider {
    name: String,
    match_images: Vec<String>,
    default_cache_duration: String,
    api_version: String,
    #[serde(default)]
    args: Vec<String>,
    #[serde(default)]
    env: Vec<std::collections::BTreeMap<String, String>>,
    token_attributes: Option<TokenAttributes>,
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct TokenAttributes {
    service_account_token_audience: String,
    cache_type: String,
    require_service_account: Option<bool>,
    #[serde(default)]
    required_service_account_annotation_keys: Vec<String>,
    #[serde(default)]
    optional_service_account_annotation_keys: Vec<String>,
}

/// deploy/kubernetes/credential-provider: a configuration the kubelet
/// takes (the checks of its config validation) for the plugin as built,
/// whose `args` the plugin accepts and whose audience is regauth's.
#[test]
fn the_shipped_credential_provider_config_is_one_the_kubelet_and_the_plugin_take() {
    let file = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("deploy/kubernetes/credential-provider/credential-provider-config.yaml");
    let out = Command::new("python3")
        .args([
            "-c",
            "import json, sys, yaml; json.dump(yaml.safe_load(open(sys.argv[1])), sys.stdout)",
        ])
        .arg(&file)
        .output()
        .expect("python3 (Debian python3)");
    assert!(
        out.status.success(),
        "python3 with PyYAML reads the YAML (`pip install kubernetes-validate==1.31.0` brings it; tests/run does): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let config: CredentialProviderConfig = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(config.api_version, "kubelet.config.k8s.io/v1");
    assert_eq!(config.kind, "CredentialProviderConfig");
    let [provider] = config.providers.as_slice() else {
        panic!("one provider");
    };
    assert_eq!(
        provider.name,
        std::path::Path::new(PLUGIN)
            .file_name()
            .unwrap()
            .to_str()
            .unwrap(),
        "the kubelet runs the binary named so"
    );
    assert_eq!(provider.api_version, "credentialprovider.kubelet.k8s.io/v1");
    assert!(provider.default_cache_duration.ends_with('m'));
    assert!(provider.env.is_empty());
    assert!(!provider.match_images.is_empty());
    for image in &provider.match_images {
        let port = image.rsplit_once(':').map(|(_, p)| p);
        assert!(
            !image.contains('/') && port.is_none_or(|p| p.parse::<u16>().is_ok()),
            "{image}: a host with an exact port, as the kubelet matches"
        );
    }
    let tokens = provider.token_attributes.as_ref().expect("tokenAttributes");
    assert!(["Token", "ServiceAccount"].contains(&tokens.cache_type.as_str()));
    assert_eq!(
        tokens.cache_type, "Token",
        "the credential is the pod's own token"
    );
    assert_eq!(tokens.require_service_account, Some(true));
    assert!(tokens.required_service_account_annotation_keys.is_empty());
    assert!(tokens.optional_service_account_annotation_keys.is_empty());
    assert_eq!(
        tokens.service_account_token_audience,
        provider.match_images[0]
    );

    // the plugin takes the config's args, for an image the config matches
    let registry = &provider.match_images[0];
    let request = serde_json::json!({
        "apiVersion": provider.api_version,
        "kind": "CredentialProviderRequest",
        "image": format!("{registry}/ci/app:1"),
        "serviceAccountToken": "eyJhbGciOiJSUzI1NiJ9.eyJleHAiOjQxMDI0NDQ4MDB9.c2ln",
        "serviceAccountAnnotations": {},
    });
    let out = plugin(&provider.args, &request);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let response: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(response["cacheDuration"], "300s", "{response}");
    assert!(
        response["auth"][registry]["password"].is_string(),
        "{response}"
    );
}

/// `regauth check` warns of a key set fetched over plain http, and not of
/// an http issuer that is never contacted (its keys come from a file).
#[test]
fn keys_over_plain_http_are_warned_of() {
    let f = Fixture::new();
    let by_url = "\n[[provider]]\nname = \"remote\"\nkind = \"oidc\"\nissuer = \"http://k8s.corp.example\"\njwks_url = \"http://k8s.corp.example:6443/openid/v1/jwks\"\naudiences = [\"registry.test\"]\n";
    let warnings = f.config(by_url).load().unwrap().warnings().join("\n");
    assert!(
        warnings.contains("jwks_url http://k8s.corp.example:6443"),
        "{warnings}"
    );
    let cluster = Cluster::new("http://k8s.corp.example");
    let by_file = cluster.provider_toml("prod", SERVICE);
    let warnings = f.config(&by_file).load().unwrap().warnings().join("\n");
    assert!(!warnings.contains("plain http"), "{warnings}");
}
