//! Random bytes from the operating system, the one place they are drawn.
//! Without an entropy source nothing that needs them is made: a key of
//! zeros or a repeated token ID would make digests predictable and IDs
//! collide.

use aws_lc_rs::rand::SecureRandom as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;

/// The system's random source failed.
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("the system has no randomness")]
pub struct NoRandomness;

/// `N` random bytes.
pub fn random_bytes<const N: usize>() -> Result<[u8; N], NoRandomness> {
    let mut bytes = [0u8; N];
    aws_lc_rs::rand::SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| NoRandomness)?;
    Ok(bytes)
}

/// A 32-byte key (the verdict cache's digest key, a generated secret).
pub fn random_key() -> Result<[u8; 32], NoRandomness> {
    random_bytes()
}

/// A random ID: 16 bytes, base64url (a token's `jti`, a record's id).
pub fn random_id() -> Result<String, NoRandomness> {
    Ok(URL_SAFE_NO_PAD.encode(random_bytes::<16>()?))
}
