//! The Kubernetes manifests under deploy/kubernetes, validated against a
//! pinned Kubernetes schema (PyPI `kubernetes-validate`, strict: unknown
//! fields are errors), and the configuration they ship is one regauth
//! accepts.

use std::path::Path;
use std::process::Command;

use crate::support::require;

const KUBERNETES: &str = "1.31.0";

fn manifests() -> Vec<std::path::PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/kubernetes");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    files
}

#[test]
fn kubernetes_manifests_validate_against_the_pinned_schema() {
    let validate = require(
        "kubernetes-validate",
        "python3-pip, then `pip install kubernetes-validate==1.31.0` (tests/run does)",
    );
    let files = manifests();
    let names: Vec<String> = files
        .iter()
        .map(|f| f.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    for want in [
        "deployment.yaml",
        "service.yaml",
        "configmap.yaml",
        "secret.yaml",
        "pdb.yaml",
        "redis.yaml",
    ] {
        assert!(
            names.iter().any(|n| n == want),
            "deploy/kubernetes/{want} is missing"
        );
    }
    let out = Command::new(validate)
        .args(["--strict", "-k", KUBERNETES])
        .args(&files)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{text}");
    assert!(
        !text.contains("ERROR") && !text.contains("failed"),
        "{text}"
    );
    let passed = text.matches(" passed for resource ").count();
    assert!(passed >= 9, "every resource validated: {text}");
    // two replicas, both probes, resources and a disruption budget
    let deployment = std::fs::read_to_string(
        files
            .iter()
            .find(|f| f.ends_with("deployment.yaml"))
            .unwrap(),
    )
    .unwrap();
    for want in [
        "replicas: 2",
        "readinessProbe:",
        "livenessProbe:",
        "path: /readyz",
        "path: /healthz",
        "resources:",
    ] {
        assert!(deployment.contains(want), "deployment.yaml lacks {want}");
    }
}

#[test]
fn the_shipped_kubernetes_configuration_is_valid() {
    let configmap = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/kubernetes/configmap.yaml"),
    )
    .unwrap();
    let start = configmap
        .find("regauth.toml: |")
        .expect("a regauth.toml key")
        + "regauth.toml: |".len();
    let toml: String = configmap[start..]
        .lines()
        .skip(1)
        .map(|l| l.strip_prefix("    ").unwrap_or(l))
        .map(|l| format!("{l}\n"))
        .collect();
    let config = regauth::config::Config::from_toml("configmap.yaml", &toml, &[])
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(config.state.backend, regauth::config::Backend::Redis);
    assert_eq!(config.server.listen.to_string(), "0.0.0.0:5001");
    // and the container image's default refuses to start: no provider
    let default = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/container/regauth.toml"),
    )
    .unwrap();
    let config = regauth::config::Config::from_toml("container", &default, &[]).unwrap();
    assert!(config.providers.is_empty());
}

/// The 2026-12-05 review's findings on the shipped deployment (H1, L4,
/// L6): Redis holds security-critical state, so it has a password (an ACL
/// user), a volume and a NetworkPolicy admitting regauth alone; regauth's
/// port admits the ingress controller alone (whose X-Forwarded-For it
/// believes); the ingress routes what clients need and not /metrics or
/// /readyz; no Secret ships a value that could pass as a key.
#[test]
fn the_shipped_deployment_keeps_its_state_and_endpoints_to_itself() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/kubernetes");
    let read = |name: &str| std::fs::read_to_string(dir.join(name)).unwrap();
    let redis = read("redis.yaml");
    for want in [
        "--user default off",
        "/etc/redis-auth/password",
        "kind: PersistentVolumeClaim",
        "claimName: regauth-redis",
        "kind: NetworkPolicy",
        "--appendonly yes",
    ] {
        assert!(redis.contains(want), "redis.yaml lacks {want}");
    }
    assert!(
        !redis.contains("emptyDir"),
        "Redis state must survive a restart"
    );
    assert!(!redis.contains("Nothing secret is stored"));
    let policy = read("networkpolicy.yaml");
    assert!(policy.contains("ingress-nginx") && policy.contains("port: 5001"));
    let monitoring = policy
        .split("kubernetes.io/metadata.name: monitoring")
        .nth(1)
        .unwrap();
    assert!(
        monitoring.contains("port: 9101") && !monitoring.contains("port: 5001"),
        "monitoring reaches only the operational port"
    );
    let deployment = read("deployment.yaml");
    assert!(
        deployment.matches("port: ops").count() == 2,
        "both probes on ops_listen"
    );
    let ingress = read("ingress.yaml");
    for path in ["path: /auth", "path: /token", "path: /jwks", "path: /ui"] {
        assert!(ingress.contains(path), "ingress.yaml lacks {path}");
    }
    for path in ["path: /\n", "path: /metrics", "path: /readyz"] {
        assert!(!ingress.contains(path), "ingress.yaml routes {path:?}");
    }
    let configmap = read("configmap.yaml");
    assert!(configmap.contains("password_file = \"/etc/regauth/redis/password\""));
    assert!(configmap.contains("username = \"regauth\""));
    let secret = read("secret.yaml");
    assert!(
        !secret.contains("replace with"),
        "no placeholder that passes as a value"
    );
}
