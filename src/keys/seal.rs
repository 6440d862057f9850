//! Sealed text: AES-256-GCM (aws-lc-rs) under a key derived from shared
//! key material and a purpose, so one key file can seal several kinds of
//! thing without one kind ever opening as another. Refresh tokens, the
//! app-password page's session cookies and its sign-in state are sealed
//! here.

use aws_lc_rs::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM, NONCE_LEN};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;

use crate::random::{random_bytes, NoRandomness};

/// Seals and opens text for one purpose.
pub struct Sealer {
    key: LessSafeKey,
}

impl Sealer {
    /// A sealer whose key is HMAC-SHA256(`secret`, `purpose`).
    pub fn new(secret: &[u8], purpose: &[u8]) -> Self {
        let derived = aws_lc_rs::hmac::sign(
            &aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, secret),
            purpose,
        );
        let key = UnboundKey::new(&AES_256_GCM, derived.as_ref())
            .map(LessSafeKey::new)
            .unwrap_or_else(|_| unreachable!("a SHA-256 output is an AES-256 key"));
        Self { key }
    }

    /// `plain` sealed and base64url-encoded (nonce, ciphertext, tag), bound
    /// to `aad`.
    pub fn seal(&self, aad: &[u8], plain: &[u8]) -> Result<String, NoRandomness> {
        let nonce: [u8; NONCE_LEN] = random_bytes()?;
        let mut sealed = plain.to_vec();
        self.key
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(aad),
                &mut sealed,
            )
            .map_err(|_| NoRandomness)?;
        let mut out = Vec::with_capacity(NONCE_LEN + sealed.len());
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&sealed);
        Ok(URL_SAFE_NO_PAD.encode(out))
    }

    /// The plain text of what [`Sealer::seal`] made with the same `aad`, or
    /// `None` for anything else (tampered, another purpose, garbage).
    pub fn open(&self, aad: &[u8], text: &str) -> Option<Vec<u8>> {
        let mut raw = URL_SAFE_NO_PAD.decode(text).ok()?;
        if raw.len() < NONCE_LEN + AES_256_GCM.tag_len() {
            return None;
        }
        let mut sealed = raw.split_off(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(&raw).ok()?;
        let plain = self
            .key
            .open_in_place(nonce, Aad::from(aad), &mut sealed)
            .ok()?;
        Some(plain.to_vec())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_text_opens_only_for_its_purpose_and_aad() {
        let a = Sealer::new(b"key material", b"purpose a");
        let b = Sealer::new(b"key material", b"purpose b");
        let sealed = a.seal(b"aad", b"hello").unwrap();
        assert_eq!(a.open(b"aad", &sealed).as_deref(), Some(&b"hello"[..]));
        assert_eq!(a.open(b"other", &sealed), None);
        assert_eq!(b.open(b"aad", &sealed), None);
        let mut tampered = sealed.into_bytes();
        let last = tampered.len() - 2;
        tampered[last] = if tampered[last] == b'A' { b'B' } else { b'A' };
        assert_eq!(a.open(b"aad", &String::from_utf8(tampered).unwrap()), None);
        assert_eq!(a.open(b"aad", "not base64!"), None);
        assert_eq!(a.open(b"aad", ""), None);
    }
}
