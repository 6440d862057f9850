//! A client assertion (RFC 7523, `private_key_jwt`): the client proves
//! itself with a short JWT signed by its certificate's key instead of a
//! shared secret, as Microsoft Entra ID's certificate credentials do. The
//! header names the certificate by its SHA-256 thumbprint (`x5t#S256`),
//! signed PS256 as Microsoft pairs them; the assertion is for one token
//! endpoint (`aud`) and lives five minutes.

use std::path::Path;

use base64::Engine as _;
use jsonwebtoken::{Algorithm, EncodingKey, Header};

use crate::Error;

/// The assertion's `client_assertion_type`.
pub const ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// How long an assertion is good for.
const LIFETIME: u64 = 300;

/// A client's certificate credential: its key and its certificate's
/// thumbprint.
#[derive(Clone)]
pub struct ClientAssertion {
    client_id: String,
    key: EncodingKey,
    thumbprint: String,
}

impl std::fmt::Debug for ClientAssertion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientAssertion")
            .field("client_id", &self.client_id)
            .field("thumbprint", &self.thumbprint)
            .finish_non_exhaustive()
    }
}

impl ClientAssertion {
    /// The credential of `client_id`: the certificate (PEM) registered
    /// with the IdP, and its RSA private key (PEM).
    pub fn load(client_id: &str, certificate: &Path, key: &Path) -> Result<Self, Error> {
        use rustls_pki_types::pem::PemObject as _;
        let cert = rustls_pki_types::CertificateDer::from_pem_file(certificate).map_err(|e| {
            Error::Config(format!(
                "client_certificate_file {}: {e}",
                certificate.display()
            ))
        })?;
        let pem = zeroize::Zeroizing::new(std::fs::read(key).map_err(|e| Error::Io {
            path: key.display().to_string(),
            source: e,
        })?);
        let key = EncodingKey::from_rsa_pem(&pem).map_err(|_| {
            Error::Config(format!(
                "client_key_file {}: not an RSA private key in PEM",
                key.display()
            ))
        })?;
        let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, cert.as_ref());
        Ok(Self {
            client_id: client_id.to_owned(),
            key,
            thumbprint: base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(digest.as_ref()),
        })
    }

    /// A fresh assertion for the token endpoint `audience`.
    pub fn make(&self, audience: &str) -> Result<String, Error> {
        let now = crate::clock::unix_seconds();
        let mut header = Header::new(Algorithm::PS256);
        header.x5t_s256 = Some(self.thumbprint.clone());
        let claims = serde_json::json!({
            "aud": audience,
            "iss": self.client_id,
            "sub": self.client_id,
            "jti": crate::forge::token_digest(&format!("{now}{}", rand_part()?)),
            "iat": now,
            "nbf": now,
            "exp": now + LIFETIME,
        });
        jsonwebtoken::encode(&header, &claims, &self.key)
            .map_err(|e| Error::Internal(format!("signing the client assertion: {e}")))
    }

    /// The form parameters that carry an assertion for `audience`.
    pub fn params(&self, audience: &str) -> Result<[(&'static str, String); 2], Error> {
        Ok([
            ("client_assertion_type", ASSERTION_TYPE.to_owned()),
            ("client_assertion", self.make(audience)?),
        ])
    }
}

/// 16 random bytes, hex, for an assertion's `jti`.
fn rand_part() -> Result<String, Error> {
    let mut bytes = [0u8; 16];
    aws_lc_rs::rand::fill(&mut bytes)
        .map_err(|_| Error::Internal("no randomness for a client assertion".into()))?;
    Ok(hex::encode(bytes))
}
