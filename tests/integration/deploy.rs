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
