//! The files a state needs: signing keys (generated for development when
//! missing), secret keys, the TLS certificate.

use std::sync::Arc;
use std::time::Duration;

use crate::config::{self, Config};
use crate::keys::{self, KeyRing, SigningKey};
use crate::{state, Error};

/// Loads the signing keys: the current one, generating a key pair first
/// when neither its key nor its certificate exists, and a staged next one
/// (`regauth keys rotate`) if its files exist.
pub fn signing_keys(config: &Config) -> Result<KeyRing, Error> {
    let current = signing_key(config)?.with_x5c(config.token.x5c);
    let next = keys::load_staged(
        &config.token.next_key,
        &config.token.next_certificate,
        config.token.rotation_overlap,
    )?
    .map(|staged| keys::Staged {
        key: staged.key.with_x5c(config.token.x5c),
        ..staged
    });
    if let Some(staged) = &next {
        tracing::info!(
            next_kid = %staged.key.kid,
            switch_at = %crate::clock::rfc3339(staged.switch_at),
            "a next signing key is staged: published now, signing from switch_at"
        );
    }
    Ok(KeyRing { current, next })
}

/// Loads the current signing key, generating a development key pair first
/// when neither the key nor the certificate exists.
pub fn signing_key(config: &Config) -> Result<SigningKey, Error> {
    let (key, cert) = (&config.token.key, &config.token.certificate);
    if !key.exists() && !cert.exists() {
        let (key_pem, cert_pem) = keys::generate(
            keys::KeyType::Es256,
            &config.token.issuer,
            Duration::from_secs(365 * 24 * 3600),
        )?;
        keys::write_key_files(key, cert, &key_pem, &cert_pem, keys::IfExists::Refuse)?;
        tracing::warn!(
            key = %key.display(),
            certificate = %cert.display(),
            "generated a new ES256 signing key and self-signed certificate; give the certificate to the registry as rootcertbundle"
        );
    }
    let signing = SigningKey::load(key, cert)?;
    let left = signing.not_after - crate::clock::now();
    if left <= 0 {
        tracing::error!(certificate = %cert.display(), "the signing certificate has expired: registries will reject every token");
    } else if left < 30 * 24 * 3600 {
        tracing::warn!(certificate = %cert.display(), days_left = left / 86400, "the signing certificate expires soon: rotate it");
    }
    Ok(signing)
}

/// The refresh-token key (`refresh_tokens.key_file`), generated (32
/// random bytes, mode 0600) when missing. Replicas must share it.
pub fn refresh_key(config: &Config) -> Result<Vec<u8>, Error> {
    secret_key(&config.refresh.key_file, "refresh-token")
}

/// A secret key file (`what` key, for messages), generated (32 random
/// bytes, base64, mode 0600) when missing; refused when it is not such a
/// key (a placeholder, a short or patterned text) or readable by everyone
/// (see [`keys::load_secret_key`]). Replicas must share it.
pub fn secret_key(path: &std::path::Path, what: &str) -> Result<Vec<u8>, Error> {
    if !path.exists() {
        keys::write_secret_file(path, &keys::new_secret_key_text()?)?;
        tracing::warn!(key = %path.display(), "generated a new {what} key; replicas must share this file");
    }
    Ok(keys::load_secret_key(path, what)?)
}

/// The configured state backend, its records authenticated under the
/// existing refresh key (for the command line, which must not make a
/// key: records under a new one would be refused by the servers).
pub fn open_state(config: &Config) -> Result<Arc<dyn state::Store>, Error> {
    let path = &config.refresh.key_file;
    if !path.exists() {
        return Err(Error::Key(keys::KeyError::Invalid {
            path: path.display().to_string(),
            message: "there is no refresh-token key yet: start `regauth serve` once with this configuration (or copy the servers' key here)".into(),
        }));
    }
    let key = keys::load_secret_key(path, "refresh-token")?;
    let backend = state::open(&config.state).map_err(Error::State)?;
    Ok(Arc::new(state::Authenticated::new(
        backend,
        state::records_key(&key),
    )))
}

/// The HTTPS listener's TLS configuration (rustls with aws-lc-rs,
/// HTTP/1.1 only) from a PEM certificate chain and key.
pub fn tls_config(files: &config::TlsFiles) -> Result<Arc<rustls::ServerConfig>, Error> {
    use rustls_pki_types::pem::PemObject as _;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    let invalid = |path: &std::path::Path, message: String| {
        Error::Key(keys::KeyError::Invalid {
            path: path.display().to_string(),
            message,
        })
    };
    let chain = CertificateDer::pem_file_iter(&files.certificate)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| {
            invalid(
                &files.certificate,
                format!("not a PEM certificate chain ({e})"),
            )
        })?;
    if chain.is_empty() {
        return Err(invalid(&files.certificate, "no CERTIFICATE block".into()));
    }
    let key = PrivateKeyDer::from_pem_file(&files.key)
        .map_err(|e| invalid(&files.key, format!("not a PEM private key ({e})")))?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut tls = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| invalid(&files.certificate, e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| invalid(&files.key, format!("does not fit the certificate: {e}")))?;
    tls.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(tls))
}
