//! Signing keys: loading and generating them, the libtrust `kid`, the
//! `x5c` chain, the JWK set, and the key ring that rotates them without
//! downtime (a staged next key is published before it signs).
//!
//! Signing is the hot path's main cost, so each key pair is parsed once and
//! held (aws-lc-rs), and its JWT header is encoded once. This module never
//! writes private key material anywhere but the files it is told to
//! generate, and errors never contain it.

use std::path::Path;
use std::time::Duration;

use aws_lc_rs::signature::{self, EcdsaKeyPair, KeyPair, RsaKeyPair};
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;

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
    /// Making a key, a signature or random bytes failed.
    #[error("key generation failed: {0}")]
    Generate(String),
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
    pub fn sign(&self, claims: &crate::token::Claims) -> Result<String, KeyError> {
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

fn read(path: &Path) -> Result<Vec<u8>, KeyError> {
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
    let secret = crate::cache::random_key()?;
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

/// The keys in use: the current one, and a staged next one that is
/// published at once and signs from `switch_at` on. While both exist both
/// are published (`/jwks`, the registry's certificate bundle), so tokens of
/// either verify wherever the bundle was given.
#[derive(Debug)]
pub struct KeyRing {
    /// The key that signs until the switch.
    pub current: SigningKey,
    /// The staged next key, if a rotation is under way.
    pub next: Option<Staged>,
}

/// A staged key and when it starts to sign.
#[derive(Debug)]
pub struct Staged {
    /// The key.
    pub key: SigningKey,
    /// When it was staged (seconds since the epoch).
    pub staged_at: i64,
    /// From when it signs (seconds since the epoch).
    pub switch_at: i64,
}

impl KeyRing {
    /// A ring of one key.
    pub fn single(current: SigningKey) -> Self {
        Self {
            current,
            next: None,
        }
    }

    /// The key that signs at `now`.
    pub fn signing(&self, now: i64) -> &SigningKey {
        match &self.next {
            Some(staged) if now >= staged.switch_at => &staged.key,
            _ => &self.current,
        }
    }

    /// Every key a registry must trust now: the current one and the next.
    pub fn published(&self) -> impl Iterator<Item = &SigningKey> {
        std::iter::once(&self.current).chain(self.next.as_ref().map(|s| &s.key))
    }

    /// The public keys as a JWK set (`/jwks`, registry v3's `jwks` file).
    pub fn jwks(&self) -> serde_json::Value {
        serde_json::json!({ "keys": self.published().map(SigningKey::jwk).collect::<Vec<_>>() })
    }

    /// The certificates of every published key, as one PEM bundle (the
    /// registry's `rootcertbundle` during a rotation).
    pub fn bundle_pem(&self) -> String {
        self.published().map(SigningKey::certificate_pem).collect()
    }

    /// When the first published certificate expires.
    pub fn not_after(&self) -> i64 {
        self.published().map(|k| k.not_after).min().unwrap_or(0)
    }
}

/// Where a staged next key's staging time is kept: beside its key file.
pub fn staged_marker(next_key: &Path) -> std::path::PathBuf {
    let mut name = next_key.as_os_str().to_owned();
    name.push(".staged");
    name.into()
}

/// Loads the staged next key, if its files exist, with when it was staged
/// (the marker file, else the key file's modification time).
pub fn load_staged(
    next_key: &Path,
    next_certificate: &Path,
    overlap: Duration,
) -> Result<Option<Staged>, KeyError> {
    if !next_key.exists() && !next_certificate.exists() {
        return Ok(None);
    }
    let key = SigningKey::load(next_key, next_certificate)?;
    let marker = staged_marker(next_key);
    let staged_at = match std::fs::read_to_string(&marker) {
        Ok(text) => text.trim().parse::<i64>().map_err(|_| KeyError::Invalid {
            path: marker.display().to_string(),
            message: "not a number of seconds since the epoch".into(),
        })?,
        Err(_) => std::fs::metadata(next_key)
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_secs() as i64),
    };
    Ok(Some(Staged {
        key,
        staged_at,
        switch_at: staged_at + overlap.as_secs() as i64,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::token::{now, random_id, Access, Claims};
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
        assert_eq!(data_encoding::BASE32_NOPAD.encode(b"foobar"), "MZXW6YTBOI");
    }

    #[test]
    fn a_staged_key_is_published_at_once_and_signs_from_its_switch() {
        let ring = KeyRing {
            current: key(KeyType::Es256),
            next: Some(Staged {
                key: key(KeyType::Es256),
                staged_at: 100,
                switch_at: 1000,
            }),
        };
        assert_eq!(ring.published().count(), 2);
        assert_eq!(ring.jwks()["keys"].as_array().unwrap().len(), 2);
        assert_eq!(ring.bundle_pem().matches("BEGIN CERTIFICATE").count(), 2);
        assert_eq!(ring.signing(999).kid, ring.current.kid);
        assert_eq!(ring.signing(1000).kid, ring.next.as_ref().unwrap().key.kid);
    }

    #[test]
    fn x5c_can_be_left_out() {
        let k = key(KeyType::Es256).with_x5c(X5c::Omit);
        let jwt = k
            .sign(&Claims {
                iss: "i",
                sub: "s",
                aud: "a",
                exp: 2,
                nbf: 0,
                iat: 1,
                jti: "j".into(),
                access: &[],
            })
            .unwrap();
        let header: serde_json::Value = serde_json::from_slice(
            &URL_SAFE_NO_PAD
                .decode(jwt.split('.').next().unwrap())
                .unwrap(),
        )
        .unwrap();
        assert!(header.get("x5c").is_none());
        assert_eq!(header["kid"], k.kid.as_str());
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
}
