//! Signing keys: loading and generating them, the libtrust `kid`, the
//! `x5c` chain, the JWK set, and the key ring that rotates them without
//! downtime (a staged next key is published before it signs).
//!
//! Signing is the hot path's main cost, so each key pair is parsed once and
//! held (aws-lc-rs), and its JWT header is encoded once. This module never
//! writes private key material anywhere but the files it is told to
//! generate, and errors never contain it.

use std::path::Path;

use aws_lc_rs::signature::{self, EcdsaKeyPair, KeyPair, RsaKeyPair};
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;

mod der;
mod files;
mod ring;
pub mod seal;
mod secret;
#[cfg(test)]
mod tests;

pub use crate::random::{random_bytes, random_id, random_key, NoRandomness};
pub use files::{generate, write_key_files, write_secret_file, IfExists, KeyType};
pub use ring::{load_staged, staged_marker, KeyRing, Staged};
pub use secret::{load_secret_key, new_secret_key_text, secret_key_problem, SECRET_KEY_BYTES};

/// Errors loading or generating keys. Never contains key material.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// A key or certificate file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// Why it could not be read.
        #[source]
        source: std::io::Error,
    },
    /// A key or certificate file could not be written.
    #[error("cannot write {path}: {source}")]
    Write {
        /// The file.
        path: String,
        /// Why it could not be written.
        #[source]
        source: std::io::Error,
    },
    /// A file's contents cannot be used (not PEM, an unsupported key, a
    /// mismatched certificate, a short key).
    #[error("{path}: {message}")]
    Invalid {
        /// The file.
        path: String,
        /// What is wrong with it.
        message: String,
    },
    /// Making a key pair or its certificate failed.
    #[error("key generation failed: {0}")]
    Generate(String),
    /// Signing a token failed.
    #[error("signing failed: {0}")]
    Sign(String),
    /// The system has no randomness.
    #[error(transparent)]
    NoRandomness(#[from] NoRandomness),
}

/// Signature algorithm of a key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Algorithm {
    /// ECDSA with P-256 and SHA-256.
    Es256,
    /// ECDSA with P-384 and SHA-384.
    Es384,
    /// RSA (PKCS#1 v1.5) with SHA-256.
    Rs256,
}

impl Algorithm {
    /// The JWA name, as in the JWT header and the JWK (`ES256`, ...).
    pub fn name(self) -> &'static str {
        match self {
            Algorithm::Es256 => "ES256",
            Algorithm::Es384 => "ES384",
            Algorithm::Rs256 => "RS256",
        }
    }
}

enum Signer {
    Ec(EcdsaKeyPair),
    Rsa(RsaKeyPair),
}

/// A loaded signing key with its certificate chain.
pub struct SigningKey {
    /// The key's signature algorithm.
    pub algorithm: Algorithm,
    /// libtrust key ID of the public key.
    pub kid: String,
    /// DER certificates, leaf first.
    pub chain: Vec<Vec<u8>>,
    /// Seconds since the epoch when the leaf certificate expires.
    pub not_after: i64,
    spki: Vec<u8>,
    signer: Signer,
    /// base64url of the JWT header, computed once.
    header_b64: String,
}

/// Whether token headers carry the certificate chain.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum X5c {
    /// `x5c` and the libtrust `kid` (registry 2.8, and v3 with a root
    /// bundle).
    Send,
    /// Only the `kid` (registry v3 trusting a `jwks` file alone).
    Omit,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKey")
            .field("algorithm", &self.algorithm)
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

const OID_EC_PUBLIC_KEY: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01];
const OID_P256: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
const OID_P384: &[u8] = &[0x2b, 0x81, 0x04, 0x00, 0x22];

impl SigningKey {
    /// Loads a PEM private key (PKCS#8, SEC1 EC or PKCS#1 RSA) and the PEM
    /// certificate chain whose leaf must hold its public key.
    pub fn load(key_path: &Path, cert_path: &Path) -> Result<Self, KeyError> {
        let key_pem = read(key_path)?;
        let cert_pem = read(cert_path)?;
        Self::from_pem(&key_pem, &cert_pem, key_path, cert_path)
    }

    /// Like [`SigningKey::load`], from PEM text; the paths only name the files
    /// in errors.
    pub fn from_pem(
        key_pem: &[u8],
        cert_pem: &[u8],
        key_path: &Path,
        cert_path: &Path,
    ) -> Result<Self, KeyError> {
        let invalid = |path: &Path, message: String| KeyError::Invalid {
            path: path.display().to_string(),
            message,
        };
        let key = pem::parse(key_pem)
            .map_err(|e| invalid(key_path, format!("not a PEM private key ({e})")))?;
        let signer = parse_private_key(key.tag(), key.contents()).ok_or_else(|| {
            invalid(
                key_path,
                "unsupported key: use EC P-256/P-384 or RSA (PKCS#8 PEM)".into(),
            )
        })?;
        let chain: Vec<Vec<u8>> = pem::parse_many(cert_pem)
            .map_err(|e| invalid(cert_path, format!("not PEM ({e})")))?
            .into_iter()
            .filter(|p| p.tag() == "CERTIFICATE")
            .map(|p| p.into_contents())
            .collect();
        let leaf = chain
            .first()
            .ok_or_else(|| invalid(cert_path, "no CERTIFICATE block".into()))?;
        let cert = der::Certificate::parse(leaf)
            .ok_or_else(|| invalid(cert_path, "cannot parse the certificate".into()))?;
        let (algorithm, public) = match &signer {
            Signer::Ec(k) => {
                let alg = match k.public_key().as_ref().len() {
                    97 => Algorithm::Es384,
                    _ => Algorithm::Es256,
                };
                (alg, k.public_key().as_ref().to_vec())
            }
            Signer::Rsa(k) => (Algorithm::Rs256, k.public_key().as_ref().to_vec()),
        };
        let spki = cert.spki.to_vec();
        let cert_public = der::spki_public_key(&spki)
            .ok_or_else(|| invalid(cert_path, "cannot read the certificate's public key".into()))?;
        if cert_public != public {
            return Err(invalid(
                cert_path,
                format!(
                    "the certificate does not match the key in {}",
                    key_path.display()
                ),
            ));
        }
        let kid = libtrust_kid(&spki);
        let mut key = Self {
            algorithm,
            header_b64: String::new(),
            kid,
            not_after: cert.not_after,
            chain,
            spki,
            signer,
        };
        key.header_b64 = key.header(X5c::Send);
        Ok(key)
    }

    fn header(&self, x5c: X5c) -> String {
        let mut header = serde_json::json!({
            "typ": "JWT",
            "alg": self.algorithm.name(),
            "kid": self.kid,
        });
        if x5c == X5c::Send {
            header["x5c"] = self
                .chain
                .iter()
                .map(|c| STANDARD.encode(c))
                .collect::<Vec<_>>()
                .into();
        }
        URL_SAFE_NO_PAD.encode(header.to_string())
    }

    /// The same key, its tokens carrying this header.
    pub fn with_x5c(mut self, x5c: X5c) -> Self {
        self.header_b64 = self.header(x5c);
        self
    }

    /// Signs a claim set into a compact JWT.
    pub fn sign<C: serde::Serialize>(&self, claims: &C) -> Result<String, KeyError> {
        let payload = serde_json::to_vec(claims)
            .map_err(|e| KeyError::Sign(format!("cannot encode claims: {e}")))?;
        let mut jwt = String::with_capacity(self.header_b64.len() + payload.len() * 4 / 3 + 140);
        jwt.push_str(&self.header_b64);
        jwt.push('.');
        URL_SAFE_NO_PAD.encode_string(&payload, &mut jwt);
        let rng = aws_lc_rs::rand::SystemRandom::new();
        let signature = match &self.signer {
            Signer::Ec(k) => k
                .sign(&rng, jwt.as_bytes())
                .map(|s| s.as_ref().to_vec())
                .map_err(|_| KeyError::Sign("ECDSA".into()))?,
            Signer::Rsa(k) => {
                let mut sig = vec![0; k.public_modulus_len()];
                k.sign(&signature::RSA_PKCS1_SHA256, &rng, jwt.as_bytes(), &mut sig)
                    .map_err(|_| KeyError::Sign("RSA".into()))?;
                sig
            }
        };
        jwt.push('.');
        URL_SAFE_NO_PAD.encode_string(&signature, &mut jwt);
        Ok(jwt)
    }

    /// The public key as a JWK (`kid` equal to the header's).
    pub fn jwk(&self) -> serde_json::Value {
        let mut jwk = match der::spki_public_key(&self.spki) {
            Some(point) if self.algorithm != Algorithm::Rs256 => {
                let n = (point.len() - 1) / 2;
                serde_json::json!({
                    "kty": "EC",
                    "crv": if self.algorithm == Algorithm::Es384 { "P-384" } else { "P-256" },
                    "x": URL_SAFE_NO_PAD.encode(&point[1..1 + n]),
                    "y": URL_SAFE_NO_PAD.encode(&point[1 + n..]),
                })
            }
            Some(pkcs1) => {
                let (n, e) = der::rsa_public_numbers(&pkcs1).unwrap_or_default();
                serde_json::json!({
                    "kty": "RSA",
                    "n": URL_SAFE_NO_PAD.encode(n),
                    "e": URL_SAFE_NO_PAD.encode(e),
                })
            }
            None => serde_json::json!({}),
        };
        jwk["kid"] = self.kid.clone().into();
        jwk["use"] = "sig".into();
        jwk["alg"] = self.algorithm.name().into();
        jwk["x5c"] = self
            .chain
            .iter()
            .map(|c| STANDARD.encode(c))
            .collect::<Vec<_>>()
            .into();
        jwk
    }

    /// The certificate chain as PEM, leaf first (the registry's
    /// `rootcertbundle`).
    pub fn certificate_pem(&self) -> String {
        self.chain
            .iter()
            .map(|der| pem::encode(&pem::Pem::new("CERTIFICATE", der.clone())))
            .collect()
    }
}

fn parse_private_key(tag: &str, der: &[u8]) -> Option<Signer> {
    let ec = |alg| {
        EcdsaKeyPair::from_private_key_der(alg, der)
            .ok()
            .map(Signer::Ec)
    };
    match tag {
        "PRIVATE KEY" | "EC PRIVATE KEY" => ec(&signature::ECDSA_P256_SHA256_FIXED_SIGNING)
            .or_else(|| ec(&signature::ECDSA_P384_SHA384_FIXED_SIGNING))
            .or_else(|| RsaKeyPair::from_pkcs8(der).ok().map(Signer::Rsa)),
        "RSA PRIVATE KEY" => RsaKeyPair::from_der(der).ok().map(Signer::Rsa),
        _ => None,
    }
}

pub(crate) fn read(path: &Path) -> Result<Vec<u8>, KeyError> {
    std::fs::read(path).map_err(|source| KeyError::Read {
        path: path.display().to_string(),
        source,
    })
}

/// The libtrust key ID: `base32(SHA-256(SPKI DER)[:30])` in 12 groups of 4.
pub fn libtrust_kid(spki_der: &[u8]) -> String {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, spki_der);
    // 30 bytes are exactly 48 base32 characters: no padding
    let encoded = data_encoding::BASE32_NOPAD.encode(&digest.as_ref()[..30]);
    encoded
        .as_bytes()
        .chunks(4)
        .map(|c| std::str::from_utf8(c).unwrap_or_default())
        .collect::<Vec<_>>()
        .join(":")
}
