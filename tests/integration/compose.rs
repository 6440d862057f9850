//! docker-compose.yml cannot run here (no Docker engine), so it is checked
//! the way compose itself reads it: `docker-compose config` must accept it,
//! and the services must be wired as the README says.

use std::process::Command;

use crate::support::require;

#[test]
fn compose_file_parses_and_wires_registry_to_regauth() {
    let compose = require("docker-compose", "docker-compose");
    let dir = env!("CARGO_MANIFEST_DIR");
    let out = Command::new(compose)
        .args(["-f", "docker-compose.yml", "config"])
        .current_dir(dir)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for want in [
        "regauth:",
        "registry:",
        "REGISTRY_AUTH: token",
        "REGISTRY_AUTH_TOKEN_REALM:",
        "REGISTRY_AUTH_TOKEN_ROOTCERTBUNDLE:",
        "REGISTRY_AUTH_TOKEN_ISSUER: regauth",
        "openldap:",
        "LDAP_BIND_PASSWORD:",
        "compose-directory.ldif",
        "keycloak:",
        "--import-realm",
        "keycloak-realm.json",
    ] {
        assert!(stdout.contains(want), "missing {want}:\n{stdout}");
    }
    // the seed directory is what compose.toml's LDAP provider expects
    let seed = std::fs::read_to_string(format!("{dir}/config/compose-directory.ldif")).unwrap();
    let regauth_config = std::fs::read_to_string(format!("{dir}/config/compose.toml")).unwrap();
    assert!(seed.contains("dn: cn=regauth,ou=services,dc=corp,dc=test"));
    assert!(regauth_config.contains("bind_dn = \"cn=regauth,ou=services,dc=corp,dc=test\""));
    // the realm gives regauth's client what it needs: direct access grants,
    // a full-path groups mapper and the registry audience
    let realm: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(format!("{dir}/config/keycloak-realm.json")).unwrap(),
    )
    .unwrap();
    let client = &realm["clients"][0];
    assert_eq!(client["clientId"], "registry");
    assert_eq!(client["directAccessGrantsEnabled"], true);
    let mappers = client["protocolMappers"].as_array().unwrap();
    assert!(mappers
        .iter()
        .any(|m| m["protocolMapper"] == "oidc-group-membership-mapper"
            && m["config"]["full.path"] == "true"));
    assert!(mappers
        .iter()
        .any(|m| m["config"]["included.client.audience"] == "registry"));
    assert!(regauth_config.contains("issuer = \"http://keycloak:8080/realms/main\""));
    let dockerfile = std::fs::read_to_string(format!("{dir}/Dockerfile")).unwrap();
    assert!(dockerfile.contains("cargo build --release"));
}
