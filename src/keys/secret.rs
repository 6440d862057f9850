//! Secret key files: the refresh and app-password keys, read and checked.

use std::path::Path;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;

use super::{read, KeyError};

/// The secret key files (`refresh_tokens.key_file`, `app_passwords.key_file`):
/// base64 of at least [`SECRET_KEY_BYTES`] random bytes, as `regauth keys
/// secret` (or `head -c 32 /dev/urandom | base64`) writes them. The text
/// itself is the key material (so keys made by earlier versions keep
/// opening what they sealed); its decoded bytes are only checked.
pub const SECRET_KEY_BYTES: usize = 32;

/// At least this many distinct byte values among the decoded bytes: 32
/// random bytes have about 30, a placeholder or a repeated pattern far
/// fewer.
const MIN_DISTINCT_BYTES: usize = 16;

/// A new secret key file's text: base64 of [`SECRET_KEY_BYTES`] random
/// bytes and a newline.
pub fn new_secret_key_text() -> Result<String, KeyError> {
    let secret = crate::keys::random_key()?;
    Ok(STANDARD.encode(secret) + "\n")
}

/// Why a secret key file's text cannot be a key, if it cannot.
pub fn secret_key_problem(text: &[u8]) -> Option<String> {
    let trimmed = text.trim_ascii();
    let decoded = std::str::from_utf8(trimmed)
        .ok()
        .filter(|t| !t.chars().any(char::is_whitespace))
        .and_then(|t| STANDARD.decode(t).ok());
    let Some(bytes) = decoded else {
        return Some("not base64 (a placeholder?)".into());
    };
    if bytes.len() < SECRET_KEY_BYTES {
        return Some(format!(
            "{} bytes once decoded; a key needs at least {SECRET_KEY_BYTES}",
            bytes.len()
        ));
    }
    let distinct = bytes
        .iter()
        .collect::<std::collections::BTreeSet<_>>()
        .len();
    if distinct < MIN_DISTINCT_BYTES {
        return Some(format!(
            "its bytes are not random ({distinct} distinct values in {})",
            bytes.len()
        ));
    }
    None
}

/// Reads a secret key file (`what` key, for messages): refused unless it
/// holds a key as [`secret_key_problem`] wants it, and when every user
/// of the machine may read it (its group may: a Kubernetes Secret volume
/// with `fsGroup` is 0440).
pub fn load_secret_key(path: &Path, what: &str) -> Result<Vec<u8>, KeyError> {
    let text = read(path)?;
    let invalid = |message: String| KeyError::Invalid {
        path: path.display().to_string(),
        message,
    };
    if let Some(problem) = secret_key_problem(&text) {
        return Err(invalid(format!(
            "not a {what} key: {problem}; make one with `regauth keys secret {}`",
            path.display()
        )));
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(path)
            .map_err(|source| KeyError::Read {
                path: path.display().to_string(),
                source,
            })?
            .permissions()
            .mode();
        if mode & 0o004 != 0 {
            return Err(invalid(format!(
                "the {what} key is readable by every user (mode {:o}): `chmod 600 {}`",
                mode & 0o777,
                path.display()
            )));
        }
    }
    Ok(text.trim_ascii().to_vec())
}
