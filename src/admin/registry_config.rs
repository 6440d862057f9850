//! What a registry needs to trust regauth (`regauth keys registry-config`):
//! its `auth.token` settings as YAML or environment variables, or the JWK
//! set a v3 registry reads.

use std::fmt::Write as _;

use crate::clock::rfc3339;
use crate::config::Config;
use crate::keys::KeyRing;

/// Which form of the registry's settings to write.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum RegistryFormat {
    /// `config.yml`'s `auth.token` section.
    Yaml,
    /// `REGISTRY_AUTH_TOKEN_*` variables.
    Env,
    /// The JWK set a v3 registry reads (`auth.token.jwks`).
    Jwks,
    /// YAML, variables and the key IDs.
    All,
}

/// The registry's settings for `config` and the keys of `ring`, trusting
/// `rootcertbundle` (by default the certificate, or the bundle of both
/// during a rotation).
pub fn registry_config(
    config: &Config,
    ring: &KeyRing,
    rootcertbundle: Option<String>,
    format: RegistryFormat,
) -> Result<String, serde_json::Error> {
    if format == RegistryFormat::Jwks {
        return Ok(serde_json::to_string_pretty(&ring.jwks())? + "\n");
    }
    // During a rotation the registry must trust both keys: the bundle.
    let bundle = rootcertbundle.unwrap_or_else(|| match &ring.next {
        Some(_) => absolute(&super::rotation::bundle_path(&config.token.certificate)),
        None => absolute(&config.token.certificate),
    });
    let settings = [
        ("REALM", "realm", config.realm()),
        ("SERVICE", "service", config.token.services[0].clone()),
        ("ISSUER", "issuer", config.token.issuer.clone()),
        ("ROOTCERTBUNDLE", "rootcertbundle", bundle),
    ];
    let mut out = String::new();
    if format != RegistryFormat::Env {
        yaml(&mut out, &settings, ring);
    }
    if format == RegistryFormat::All {
        out.push_str("\n# or as environment variables\n");
    }
    if format != RegistryFormat::Yaml {
        out.push_str("REGISTRY_AUTH=token\n");
        for (name, _, value) in &settings {
            let quoted = value.replace('\'', r"'\''");
            let _ = writeln!(out, "REGISTRY_AUTH_TOKEN_{name}='{quoted}'");
        }
    }
    if format == RegistryFormat::All {
        let _ = writeln!(
            out,
            "\n# signing key id (libtrust kid): {}",
            ring.current.kid
        );
        if let Some(next) = &ring.next {
            let switch_at = rfc3339(next.switch_at);
            let _ = writeln!(
                out,
                "# next key id: {}, signing from {switch_at}",
                next.key.kid
            );
        }
    }
    Ok(out)
}

/// The `auth.token` section of `config.yml`.
fn yaml(out: &mut String, settings: &[(&str, &str, String)], ring: &KeyRing) {
    let algorithms: Vec<&str> = ring.published().map(|k| k.algorithm.name()).collect();
    out.push_str("# registry config.yml (distribution v2.8 and v3)\nauth:\n  token:\n");
    for (_, key, value) in settings {
        let _ = writeln!(
            out,
            "    {key}: {}",
            serde_json::Value::from(value.as_str())
        );
    }
    out.push_str("    # v3 trusting a JWK set instead (token.x5c = false in regauth, and no rootcertbundle):\n");
    out.push_str("    # jwks: \"/etc/distribution/regauth.jwks\"   # regauth keys registry-config --format jwks\n");
    let _ = writeln!(out, "    # signingalgorithms: {algorithms:?}");
}

fn absolute(path: &std::path::Path) -> String {
    std::fs::canonicalize(path)
        .unwrap_or_else(|_| path.to_owned())
        .display()
        .to_string()
}
