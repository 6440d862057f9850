//! The one TLS client configuration of regauth: aws-lc-rs, TLS 1.2 and
//! 1.3, and the certificate authorities asked for.

use crate::Error;

/// Which certificate authorities a TLS client trusts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Roots {
    /// The system's roots, plus those of the CA file if one is given.
    SystemAnd,
    /// Only the CA file's certificates (a private directory's CA).
    OnlyTheFile,
}

/// The one TLS client configuration of regauth: aws-lc-rs, TLS 1.2 and
/// 1.3, and the roots asked for.
pub fn client_tls(
    ca_file: Option<&std::path::Path>,
    roots: Roots,
) -> Result<rustls::ClientConfig, Error> {
    use rustls_pki_types::pem::PemObject as _;
    use rustls_pki_types::CertificateDer;
    let mut store = rustls::RootCertStore::empty();
    if roots == Roots::SystemAnd {
        store.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
    }
    if let Some(path) = ca_file {
        let bad = |m: String| Error::Config(format!("ca_file {}: {m}", path.display()));
        let mut added = 0;
        for cert in CertificateDer::pem_file_iter(path).map_err(|e| bad(e.to_string()))? {
            store
                .add(cert.map_err(|e| bad(e.to_string()))?)
                .map_err(|e| bad(e.to_string()))?;
            added += 1;
        }
        if added == 0 {
            return Err(bad("no certificate in the file".into()));
        }
    }
    let provider = std::sync::Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::Config(e.to_string()))?
        .with_root_certificates(store)
        .with_no_client_auth())
}
