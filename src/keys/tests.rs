//! Tests of signing keys, the key ring and the DER reader.

use super::*;
use std::time::Duration;

use crate::clock::now;
use crate::domain::claims::{Access, Claims};
use crate::keys::random_id;
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
        .expect("sh, openssl and coreutils base32 are needed: apt-get install openssl coreutils");
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
    let err = SigningKey::from_pem(k1.as_bytes(), c2.as_bytes(), Path::new("k"), Path::new("c"))
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
