//! The `credHelpers` entries that send the docker CLI (`config.json`) and
//! the containers tools (`auth.json`: podman, skopeo, buildah) to
//! `docker-credential-regauth` for a registry. Everything else in those
//! files is kept as it was.

use std::path::PathBuf;

use super::{config_home, home, read_json, write_json};

/// The helper's name in `credHelpers` (`docker-credential-` + it).
pub const HELPER: &str = "regauth";

/// The docker CLI's config: `$DOCKER_CONFIG/config.json`, else
/// `~/.docker/config.json`.
pub fn docker_config() -> anyhow::Result<PathBuf> {
    if let Some(dir) = std::env::var_os("DOCKER_CONFIG").filter(|p| !p.is_empty()) {
        return Ok(PathBuf::from(dir).join("config.json"));
    }
    Ok(home()?.join(".docker/config.json"))
}

/// The containers tools' auth file: `$REGISTRY_AUTH_FILE`, else
/// `$XDG_CONFIG_HOME/containers/auth.json` (which they read after the
/// one under `$XDG_RUNTIME_DIR`, and which outlives a reboot).
pub fn containers_auth() -> anyhow::Result<PathBuf> {
    if let Some(path) = std::env::var_os("REGISTRY_AUTH_FILE").filter(|p| !p.is_empty()) {
        return Ok(PathBuf::from(path));
    }
    Ok(config_home()?.join("containers/auth.json"))
}

/// Both files.
pub fn all() -> anyhow::Result<Vec<PathBuf>> {
    Ok(vec![docker_config()?, containers_auth()?])
}

/// Sets (`true`) or removes (`false`) the `credHelpers` entry of `host`
/// in the file at `path`; whether it changed anything.
pub fn set_helper(path: &std::path::Path, host: &str, on: bool) -> anyhow::Result<bool> {
    // nothing to remove from a file that is not there (and no directory
    // or lock file made for it)
    if !on && !path.exists() {
        return Ok(false);
    }
    let _lock = crate::files::lock(&path.with_extension("regauth-lock"))?;
    let mut config: serde_json::Value = read_json(path)?.unwrap_or_else(|| serde_json::json!({}));
    let Some(object) = config.as_object_mut() else {
        anyhow::bail!("{} is not a JSON object", path.display());
    };
    let helpers = object
        .entry("credHelpers")
        .or_insert_with(|| serde_json::json!({}));
    let Some(helpers) = helpers.as_object_mut() else {
        anyhow::bail!("credHelpers in {} is not a JSON object", path.display());
    };
    let changed = if on {
        helpers.insert(host.to_owned(), HELPER.into()).as_ref() != Some(&HELPER.into())
    } else if helpers.get(host).is_some_and(|h| h == HELPER) {
        helpers.remove(host);
        true
    } else {
        false
    };
    if changed {
        write_json(path, &config)?;
    }
    Ok(changed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_entry_is_added_and_removed_and_the_rest_kept() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("docker/config.json");
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(
            &path,
            r#"{"auths":{"other.corp":{"auth":"eDp5"}},"credHelpers":{"gcr.io":"gcloud"}}"#,
        )
        .unwrap();
        assert!(set_helper(&path, "registry.corp", true).unwrap());
        assert!(!set_helper(&path, "registry.corp", true).unwrap());
        let config: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        assert_eq!(config["credHelpers"]["registry.corp"], "regauth");
        assert_eq!(config["credHelpers"]["gcr.io"], "gcloud");
        assert_eq!(config["auths"]["other.corp"]["auth"], "eDp5");
        assert!(set_helper(&path, "registry.corp", false).unwrap());
        // another helper's entry is not ours to remove
        assert!(!set_helper(&path, "gcr.io", false).unwrap());
        let config: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        assert_eq!(
            config["credHelpers"],
            serde_json::json!({"gcr.io": "gcloud"})
        );
        // removing from a file that is not there makes nothing
        let absent = dir.path().join("absent/config.json");
        assert!(!set_helper(&absent, "registry.corp", false).unwrap());
        assert!(!absent.parent().unwrap().exists());
        // a new file is the user's alone
        let fresh = dir.path().join("containers/auth.json");
        assert!(set_helper(&fresh, "registry.corp", true).unwrap());
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&fresh).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }
}
