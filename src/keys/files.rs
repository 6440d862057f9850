//! Writing key files: `regauth keys generate` and `keys secret`. Private
//! files are created 0600 and never replaced unless asked.

use std::path::Path;
use std::time::Duration;

use super::KeyError;

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
    use std::io::Write as _;
    let write_err = |path: &Path, source| KeyError::Write {
        path: path.display().to_string(),
        source,
    };
    for path in [key_path, cert_path] {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| write_err(dir, e))?;
        }
    }
    // The private key is created 0600; neither file is replaced unless asked.
    let write = |path: &Path, contents: &str, mode: u32| {
        let mut options = std::fs::OpenOptions::new();
        options.write(true);
        match if_exists {
            IfExists::Replace => options.create(true).truncate(true),
            IfExists::Refuse => options.create_new(true),
        };
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt as _;
            options.mode(mode);
        }
        #[cfg(not(unix))]
        let _ = mode;
        options
            .open(path)
            .and_then(|mut file| {
                // A replaced file keeps its old mode otherwise: a key
                // written over a world-readable file would stay readable.
                #[cfg(unix)]
                {
                    use std::os::unix::fs::PermissionsExt as _;
                    file.set_permissions(std::fs::Permissions::from_mode(mode))?;
                }
                file.write_all(contents.as_bytes())
            })
            .map_err(|e| write_err(path, e))
    };
    write(key_path, key_pem, 0o600)?;
    write(cert_path, cert_pem, 0o644)
}

/// Writes a secret file (created 0600), refusing to replace one.
pub fn write_secret_file(path: &Path, contents: &str) -> Result<(), KeyError> {
    use std::io::Write as _;
    let write_err = |path: &Path, source| KeyError::Write {
        path: path.display().to_string(),
        source,
    };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| write_err(dir, e))?;
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    options
        .open(path)
        .and_then(|mut file| file.write_all(contents.as_bytes()))
        .map_err(|e| write_err(path, e))
}
