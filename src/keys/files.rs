//! Writing key files: `regauth keys generate` and `keys secret`. Private
//! files are created 0600 and never replaced unless asked.

use std::path::Path;
use std::time::Duration;

use super::KeyError;
use crate::files::{write_file, Replace};

/// Which key type `regauth keys generate` makes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum KeyType {
    /// ECDSA P-256 (ES256).
    Es256,
    /// RSA (RS256).
    Rs256,
}

/// Generates a private key (PKCS#8 PEM) and a self-signed certificate.
pub fn generate(
    kind: KeyType,
    common_name: &str,
    validity: Duration,
) -> Result<(String, String), KeyError> {
    let alg = match kind {
        KeyType::Es256 => &rcgen::PKCS_ECDSA_P256_SHA256,
        KeyType::Rs256 => &rcgen::PKCS_RSA_SHA256,
    };
    let key = rcgen::KeyPair::generate_for(alg).map_err(|e| KeyError::Generate(e.to_string()))?;
    let mut params = rcgen::CertificateParams::new(vec![common_name.to_owned()])
        .map_err(|e| KeyError::Generate(e.to_string()))?;
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, common_name);
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::hours(1);
    params.not_after = now + validity;
    let cert = params
        .self_signed(&key)
        .map_err(|e| KeyError::Generate(e.to_string()))?;
    Ok((key.serialize_pem(), cert.pem()))
}

/// What writing a file does when the file is already there.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IfExists {
    /// Fail, leaving it as it is.
    Refuse,
    /// Replace its contents.
    Replace,
}

/// Writes a generated key pair, refusing to overwrite unless told to.
/// The private key file is created with mode 0600, the certificate 0644.
pub fn write_key_files(
    key_path: &Path,
    cert_path: &Path,
    key_pem: &str,
    cert_pem: &str,
    if_exists: IfExists,
) -> Result<(), KeyError> {
    let replace = match if_exists {
        IfExists::Refuse => Replace::Never,
        IfExists::Replace => Replace::InPlace,
    };
    for (path, pem, mode) in [(key_path, key_pem, 0o600), (cert_path, cert_pem, 0o644)] {
        write_file(path, pem.as_bytes(), mode, replace).map_err(|source| KeyError::Write {
            path: path.display().to_string(),
            source,
        })?;
    }
    Ok(())
}

/// Writes a secret file (created 0600), refusing to replace one.
pub fn write_secret_file(path: &Path, contents: &str) -> Result<(), KeyError> {
    write_file(path, contents.as_bytes(), 0o600, Replace::Never).map_err(|source| KeyError::Write {
        path: path.display().to_string(),
        source,
    })
}
