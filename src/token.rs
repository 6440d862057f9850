//! Signing registry tokens: keys, the libtrust `kid`, the `x5c` chain, the
//! claim set and the JWK set.
//!
//! Signing is the hot path's main cost, so the key pair is parsed once and
//! held (aws-lc-rs), and the JWT header is encoded once per key. This module
//! never writes private key material anywhere but the files it is told to
//! generate.

use std::path::Path;
use std::time::Duration;

use aws_lc_rs::rand::SecureRandom;
use aws_lc_rs::signature::{self, EcdsaKeyPair, KeyPair, RsaKeyPair};
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use serde::Serialize;

/// Errors loading or generating keys. Never contains key material.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot write {path}: {source}")]
    Write {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Invalid { path: String, message: String },
    #[error("key generation failed: {0}")]
    Generate(String),
}

/// Signature algorithm of a key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Algorithm {
    Es256,
    Es384,
    Rs256,
}

impl Algorithm {
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
        let header = serde_json::json!({
            "typ": "JWT",
            "alg": algorithm.name(),
            "kid": kid,
            "x5c": chain.iter().map(|c| STANDARD.encode(c)).collect::<Vec<_>>(),
        });
        Ok(Self {
            algorithm,
            header_b64: URL_SAFE_NO_PAD.encode(header.to_string()),
            kid,
            not_after: cert.not_after,
            chain,
            spki,
            signer,
        })
    }

    /// Signs a claim set into a compact JWT.
    pub fn sign(&self, claims: &Claims) -> Result<String, KeyError> {
        let payload = serde_json::to_vec(claims)
            .map_err(|e| KeyError::Generate(format!("cannot encode claims: {e}")))?;
        let mut jwt = String::with_capacity(self.header_b64.len() + payload.len() * 4 / 3 + 140);
        jwt.push_str(&self.header_b64);
        jwt.push('.');
        URL_SAFE_NO_PAD.encode_string(&payload, &mut jwt);
        let rng = aws_lc_rs::rand::SystemRandom::new();
        let signature = match &self.signer {
            Signer::Ec(k) => k
                .sign(&rng, jwt.as_bytes())
                .map(|s| s.as_ref().to_vec())
                .map_err(|_| KeyError::Generate("ECDSA signing failed".into()))?,
            Signer::Rsa(k) => {
                let mut sig = vec![0; k.public_modulus_len()];
                k.sign(&signature::RSA_PKCS1_SHA256, &rng, jwt.as_bytes(), &mut sig)
                    .map_err(|_| KeyError::Generate("RSA signing failed".into()))?;
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

    /// The leaf certificate as PEM (the registry's `rootcertbundle`).
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

fn read(path: &Path) -> Result<Vec<u8>, KeyError> {
    std::fs::read(path).map_err(|source| KeyError::Read {
        path: path.display().to_string(),
        source,
    })
}

/// The libtrust key ID: base32(SHA-256(SPKI DER)[:30]) in 12 groups of 4.
pub fn libtrust_kid(spki_der: &[u8]) -> String {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, spki_der);
    let encoded = base32(&digest.as_ref()[..30]);
    encoded
        .as_bytes()
        .chunks(4)
        .map(|c| std::str::from_utf8(c).unwrap_or_default())
        .collect::<Vec<_>>()
        .join(":")
}

fn base32(data: &[u8]) -> String {
    const ALPHABET: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let mut out = String::with_capacity(data.len().div_ceil(5) * 8);
    let (mut buffer, mut bits) = (0u64, 0u32);
    for byte in data {
        buffer = (buffer << 8) | u64::from(*byte);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(ALPHABET[((buffer >> bits) & 31) as usize] as char);
        }
    }
    if bits > 0 {
        out.push(ALPHABET[((buffer << (5 - bits)) & 31) as usize] as char);
    }
    out
}

/// One entry of the `access` claim.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct Access {
    #[serde(rename = "type")]
    pub kind: String,
    pub name: String,
    pub actions: Vec<String>,
}

/// The registry token's claim set.
#[derive(Debug, Serialize)]
pub struct Claims<'a> {
    pub iss: &'a str,
    pub sub: &'a str,
    pub aud: &'a str,
    pub exp: i64,
    pub nbf: i64,
    pub iat: i64,
    pub jti: String,
    pub access: &'a [Access],
}

/// The token endpoint's success body: `token` and `access_token` (the same
/// JWT), integer `expires_in`, RFC 3339 `issued_at`, and on POST the
/// granted `scope`.
/// Written by hand because it is the hot path and only `scope` can need
/// escaping (a JWT is base64url and dots).
pub fn response_body(
    jwt: &str,
    expires_in: u64,
    iat: i64,
    scope: Option<&str>,
    refresh_token: Option<&str>,
) -> bytes::Bytes {
    let issued_at = rfc3339(iat);
    let mut body = String::with_capacity(2 * jwt.len() + 128);
    body.push_str("{\"token\":\"");
    body.push_str(jwt);
    body.push_str("\",\"access_token\":\"");
    body.push_str(jwt);
    body.push_str("\",\"expires_in\":");
    body.push_str(&expires_in.to_string());
    body.push_str(",\"issued_at\":\"");
    body.push_str(&issued_at);
    body.push('"');
    if let Some(scope) = scope {
        body.push_str(",\"scope\":");
        body.push_str(&serde_json::Value::from(scope).to_string());
    }
    if let Some(refresh_token) = refresh_token {
        // base64url with a fixed prefix: nothing to escape
        body.push_str(",\"refresh_token\":\"");
        body.push_str(refresh_token);
        body.push('"');
    }
    body.push('}');
    body.into()
}

/// How far `nbf` is set back, to absorb clock skew between hosts.
pub const NOT_BEFORE_SKEW: i64 = 5;

pub fn now() -> i64 {
    regauth_providers::clock::unix_seconds() as i64
}

/// A random token ID. Fails only without an OS entropy source, and then a
/// token must not be issued (its `jti` would not be unique).
pub fn random_id() -> Result<String, KeyError> {
    let mut bytes = [0u8; 16];
    aws_lc_rs::rand::SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| KeyError::Generate("the system has no randomness for a token ID".into()))?;
    Ok(URL_SAFE_NO_PAD.encode(bytes))
}

/// RFC 3339 UTC with second precision, e.g. `2026-11-24T01:02:03Z`.
pub fn rfc3339(unix: i64) -> String {
    let format =
        time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]Z");
    time::OffsetDateTime::from_unix_timestamp(unix)
        .ok()
        .and_then(|t| t.format(&format).ok())
        .unwrap_or_default()
}

/// Which key type `regauth keys generate` makes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum KeyType {
    Es256,
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

/// Writes a generated key pair, refusing to overwrite unless told to.
/// The private key file is created with mode 0600.
pub fn write_key_files(
    key_path: &Path,
    cert_path: &Path,
    key_pem: &str,
    cert_pem: &str,
    overwrite: bool,
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
    let write = |path: &Path, contents: &str, private: bool| {
        let mut options = std::fs::OpenOptions::new();
        options.write(true);
        if overwrite {
            options.create(true).truncate(true);
        } else {
            options.create_new(true);
        }
        #[cfg(unix)]
        if private {
            use std::os::unix::fs::OpenOptionsExt as _;
            options.mode(0o600);
        }
        #[cfg(not(unix))]
        let _ = private;
        options
            .open(path)
            .and_then(|mut file| file.write_all(contents.as_bytes()))
            .map_err(|e| write_err(path, e))
    };
    write(key_path, key_pem, true)?;
    write(cert_path, cert_pem, false)
}

/// Just enough DER to find a certificate's public key and validity.
mod der {
    /// One DER element: its tag, its full encoding, its content, and the
    /// input that follows it.
    struct Tlv<'a> {
        tag: u8,
        whole: &'a [u8],
        content: &'a [u8],
        rest: &'a [u8],
    }

    fn tlv(input: &[u8]) -> Option<Tlv<'_>> {
        let tag = *input.first()?;
        let first = *input.get(1)?;
        let (len, header) = if first < 0x80 {
            (first as usize, 2)
        } else {
            let n = (first & 0x7f) as usize;
            if n == 0 || n > 4 {
                return None;
            }
            let mut len = 0usize;
            for b in input.get(2..2 + n)? {
                len = (len << 8) | *b as usize;
            }
            (len, 2 + n)
        };
        let end = header.checked_add(len)?;
        let whole = input.get(..end)?;
        Some(Tlv {
            tag,
            whole,
            content: &whole[header..],
            rest: &input[end..],
        })
    }

    pub struct Certificate<'a> {
        pub spki: &'a [u8],
        pub not_after: i64,
    }

    impl<'a> Certificate<'a> {
        pub fn parse(der: &'a [u8]) -> Option<Self> {
            let tbs = tlv(tlv(der)?.content)?.content;
            let mut rest = tbs;
            // optional [0] version
            if rest.first() == Some(&0xa0) {
                rest = tlv(rest)?.rest;
            }
            let serial = tlv(rest)?;
            let algorithm = tlv(serial.rest)?;
            let issuer = tlv(algorithm.rest)?;
            let validity = tlv(issuer.rest)?;
            let subject = tlv(validity.rest)?;
            let spki = tlv(subject.rest)?;
            let not_before = tlv(validity.content)?;
            let not_after = tlv(not_before.rest)?;
            Some(Self {
                spki: spki.whole,
                not_after: parse_time(not_after.tag, not_after.content)?,
            })
        }
    }

    fn parse_time(tag: u8, value: &[u8]) -> Option<i64> {
        let text = std::str::from_utf8(value).ok()?;
        let text = text.strip_suffix('Z')?;
        let (year, rest) = match tag {
            0x17 => {
                let yy: i32 = text.get(..2)?.parse().ok()?;
                (if yy >= 50 { 1900 + yy } else { 2000 + yy }, text.get(2..)?)
            }
            0x18 => (text.get(..4)?.parse().ok()?, text.get(4..)?),
            _ => return None,
        };
        let num = |r: std::ops::Range<usize>| -> Option<u8> { rest.get(r)?.parse().ok() };
        let month = time::Month::try_from(num(0..2)?).ok()?;
        let date = time::Date::from_calendar_date(year, month, num(2..4)?).ok()?;
        let t = time::Time::from_hms(num(4..6)?, num(6..8)?, num(8..10)?).ok()?;
        Some(
            time::PrimitiveDateTime::new(date, t)
                .assume_utc()
                .unix_timestamp(),
        )
    }

    /// The raw public key of an SPKI: the EC point, or PKCS#1 RSAPublicKey.
    pub fn spki_public_key(spki: &[u8]) -> Option<Vec<u8>> {
        let algorithm = tlv(tlv(spki)?.content)?;
        let oid = tlv(algorithm.content)?;
        if oid.content == super::OID_EC_PUBLIC_KEY {
            let curve = tlv(oid.rest)?.content;
            if curve != super::OID_P256 && curve != super::OID_P384 {
                return None;
            }
        }
        let bits = tlv(algorithm.rest)?;
        if bits.tag != 0x03 || bits.content.first() != Some(&0) {
            return None;
        }
        Some(bits.content[1..].to_vec())
    }

    /// (n, e) of a PKCS#1 RSAPublicKey, without leading zero bytes.
    pub fn rsa_public_numbers(pkcs1: &[u8]) -> Option<(Vec<u8>, Vec<u8>)> {
        let n = tlv(tlv(pkcs1)?.content)?;
        let e = tlv(n.rest)?;
        let strip = |v: &[u8]| {
            let start = v.iter().position(|b| *b != 0).unwrap_or(v.len());
            v[start..].to_vec()
        };
        Some((strip(n.content), strip(e.content)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_lc_rs::signature::UnparsedPublicKey;

    fn key(kind: KeyType) -> SigningKey {
        let (k, c) = generate(kind, "regauth-test", Duration::from_secs(3600)).unwrap();
        SigningKey::from_pem(k.as_bytes(), c.as_bytes(), Path::new("k"), Path::new("c")).unwrap()
    }

    /// PROTOCOL.md item 58. The key behind the published example ID was never
    /// published, so the ID is checked against an independent computation
    /// (openssl + coreutils) here, and against a real registry in the
    /// end-to-end tests (a token with only a `kid` is accepted by v2.8).
    #[test]
    fn libtrust_kid_matches_openssl_and_base32() {
        let key = key(KeyType::Es256);
        let dir = tempfile::tempdir().unwrap();
        let cert = dir.path().join("c.pem");
        std::fs::write(&cert, key.certificate_pem()).unwrap();
        let script = format!(
            "openssl x509 -in {} -pubkey -noout | openssl pkey -pubin -outform DER \\
             | openssl dgst -sha256 -binary | head -c 30 | base32 -w0",
            cert.display()
        );
        let out = std::process::Command::new("sh")
            .args(["-c", &script])
            .output()
            .expect(
                "sh, openssl and coreutils base32 are needed: apt-get install openssl coreutils",
            );
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let expected = String::from_utf8(out.stdout).unwrap();
        assert_eq!(expected.len(), 48);
        let grouped: Vec<String> = expected
            .as_bytes()
            .chunks(4)
            .map(|c| String::from_utf8(c.to_vec()).unwrap())
            .collect();
        assert_eq!(key.kid, grouped.join(":"));
        // the published example has the same shape
        let vector = "PYYO:TEWU:V7JH:26JV:AQTZ:LJC3:SXVJ:XGHA:34F2:2LAQ:ZRMK:Z7Q6";
        assert_eq!(vector.len(), key.kid.len());
        assert_eq!(base32(b"foobar"), "MZXW6YTBOI");
    }

    #[test]
    fn es256_tokens_verify_with_raw_signatures() {
        let key = key(KeyType::Es256);
        assert_eq!(key.algorithm, Algorithm::Es256);
        let access = vec![Access {
            kind: "repository".into(),
            name: "a/b".into(),
            actions: vec!["pull".into()],
        }];
        let claims = Claims {
            iss: "regauth",
            sub: "alice",
            aud: "registry",
            exp: 2000,
            nbf: 995,
            iat: 1000,
            jti: random_id().unwrap(),
            access: &access,
        };
        let jwt = key.sign(&claims).unwrap();
        let parts: Vec<&str> = jwt.split('.').collect();
        assert_eq!(parts.len(), 3);
        let header: serde_json::Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[0]).unwrap()).unwrap();
        assert_eq!(header["typ"], "JWT");
        assert_eq!(header["alg"], "ES256");
        assert_eq!(header["kid"], key.kid.as_str());
        // x5c: standard base64 (not url-safe) DER of the leaf
        let x5c = header["x5c"][0].as_str().unwrap();
        assert_eq!(STANDARD.decode(x5c).unwrap(), key.chain[0]);
        let body: serde_json::Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();
        assert_eq!(body["aud"], "registry");
        assert!(body["exp"].is_i64() && body["nbf"].is_i64() && body["iat"].is_i64());
        assert_eq!(body["access"][0]["type"], "repository");
        let sig = URL_SAFE_NO_PAD.decode(parts[2]).unwrap();
        assert_eq!(sig.len(), 64, "raw r||s, not DER");
        let public = der::spki_public_key(&key.spki).unwrap();
        UnparsedPublicKey::new(&signature::ECDSA_P256_SHA256_FIXED, public)
            .verify(format!("{}.{}", parts[0], parts[1]).as_bytes(), &sig)
            .unwrap();
    }

    #[test]
    fn rs256_tokens_verify() {
        let key = key(KeyType::Rs256);
        assert_eq!(key.algorithm, Algorithm::Rs256);
        let claims = Claims {
            iss: "i",
            sub: "",
            aud: "a",
            exp: 1,
            nbf: 0,
            iat: 0,
            jti: "j".into(),
            access: &[],
        };
        let jwt = key.sign(&claims).unwrap();
        let (signed, sig) = jwt.rsplit_once('.').unwrap();
        let public = der::spki_public_key(&key.spki).unwrap();
        UnparsedPublicKey::new(&signature::RSA_PKCS1_2048_8192_SHA256, public)
            .verify(signed.as_bytes(), &URL_SAFE_NO_PAD.decode(sig).unwrap())
            .unwrap();
        assert!(jwt.contains(&URL_SAFE_NO_PAD.encode(r#""access":[]"#)[..4]) || !jwt.is_empty());
        let jwk = key.jwk();
        assert_eq!(jwk["kty"], "RSA");
        assert_eq!(jwk["e"], "AQAB");
    }

    #[test]
    fn jwk_ec_coordinates_and_kid() {
        let key = key(KeyType::Es256);
        let jwk = key.jwk();
        assert_eq!(jwk["kty"], "EC");
        assert_eq!(jwk["crv"], "P-256");
        assert_eq!(
            URL_SAFE_NO_PAD
                .decode(jwk["x"].as_str().unwrap())
                .unwrap()
                .len(),
            32
        );
        assert_eq!(jwk["kid"], key.kid.as_str());
    }

    #[test]
    fn mismatched_certificate_is_refused() {
        let (k1, _) = generate(KeyType::Es256, "a", Duration::from_secs(60)).unwrap();
        let (_, c2) = generate(KeyType::Es256, "b", Duration::from_secs(60)).unwrap();
        let err =
            SigningKey::from_pem(k1.as_bytes(), c2.as_bytes(), Path::new("k"), Path::new("c"))
                .unwrap_err()
                .to_string();
        assert!(err.contains("does not match"), "{err}");
        assert!(!err.contains("PRIVATE"), "{err}");
    }

    #[test]
    fn certificate_validity_is_read() {
        let key = key(KeyType::Es256);
        let left = key.not_after - now();
        assert!((3500..=3700).contains(&left), "{left}");
    }

    #[test]
    fn rfc3339_format() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_700_000_000), "2023-11-14T22:13:20Z");
    }
}
