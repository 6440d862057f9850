//! Rotating the signing key without downtime: `regauth keys rotate`
//! stages a next key (published at once, signing after
//! `token.rotation_overlap`), and `--finish` retires the old one once no
//! token it signed can still be valid.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::clock::rfc3339;
use crate::config::Config;
use crate::keys::{self, IfExists, KeyError, KeyRing, KeyType, SigningKey};

/// Why a rotation step was refused or failed.
#[derive(Debug, thiserror::Error)]
pub enum RotationError {
    /// A key file could not be read, written or used.
    #[error(transparent)]
    Key(#[from] KeyError),
    /// There is no current key yet.
    #[error("run `regauth keys generate` or `regauth serve` once to create the key")]
    NoCurrentKey(#[source] KeyError),
    /// A next key is staged already.
    #[error("a rotation is under way: the next key {kid} signs from {}; run `regauth keys rotate --finish` once the old key's tokens have expired ({} or later)", rfc3339(*switch_at), rfc3339(*retire_after))]
    UnderWay {
        /// The staged key's ID.
        kid: String,
        /// When it signs from.
        switch_at: i64,
        /// When the old key's last tokens expire.
        retire_after: i64,
    },
    /// `--finish` without a staged key.
    #[error("no rotation is under way (no {})", next_key.display())]
    NotUnderWay {
        /// Where the next key would be.
        next_key: PathBuf,
    },
    /// `--finish` while tokens of the old key may be valid.
    #[error("tokens of the old key {kid} may be valid until {}: finish after that (or --force)", rfc3339(*retire_after))]
    TooEarly {
        /// The old key's ID.
        kid: String,
        /// When its last tokens expire.
        retire_after: i64,
    },
    /// A certificate of no days was asked for.
    #[error("--days must be at least 1")]
    NoDays,
    /// A file could not be written or moved.
    #[error("{what} {}: {source}", path.display())]
    File {
        /// `writing` or `moving ... to`.
        what: String,
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

/// When `keys rotate --finish` may retire the old key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Retire {
    /// Once no token it signed can still be valid.
    WhenSafe,
    /// Now (`--force`): tokens it signed stop working.
    Now,
}

/// A next key, staged.
#[derive(Debug)]
pub struct Staged {
    /// Its key file.
    pub key_file: PathBuf,
    /// Its algorithm's name.
    pub algorithm: &'static str,
    /// Its key ID.
    pub kid: String,
    /// When it signs from.
    pub switch_at: i64,
    /// When the old key's last tokens expire (`--finish` from then on).
    pub retire_after: i64,
    /// The certificate bundle (current and next) for the registries.
    pub bundle: PathBuf,
}

/// The keys a registry must trust now, without generating any.
pub fn key_ring(config: &Config) -> Result<KeyRing, RotationError> {
    let current = SigningKey::load(&config.token.key, &config.token.certificate)
        .map_err(RotationError::NoCurrentKey)?;
    let next = keys::load_staged(
        &config.token.next_key,
        &config.token.next_certificate,
        config.token.rotation_overlap,
    )?;
    Ok(KeyRing { current, next })
}

/// `certs/token.crt` -> `certs/token.bundle.crt`: current and next.
pub fn bundle_path(certificate: &Path) -> PathBuf {
    let stem = certificate
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    certificate.with_file_name(format!("{stem}.bundle.crt"))
}

/// Stages a new `algorithm` key valid for `days` at `now`: written beside
/// the current one, with a marker of when it was staged and the bundle of
/// both certificates.
pub fn stage(
    config: &Config,
    algorithm: KeyType,
    days: u64,
    now: i64,
) -> Result<Staged, RotationError> {
    let longest = config.token.longest_lifetime().as_secs() as i64;
    if let Some(next) = key_ring(config)?.next {
        return Err(RotationError::UnderWay {
            kid: next.key.kid,
            switch_at: next.switch_at,
            retire_after: next.switch_at + longest,
        });
    }
    if days == 0 {
        return Err(RotationError::NoDays);
    }
    let validity = Duration::from_secs(days * 86400);
    let (key_pem, cert_pem) = keys::generate(algorithm, &config.token.issuer, validity)?;
    let (next_key, next_cert) = (&config.token.next_key, &config.token.next_certificate);
    keys::write_key_files(next_key, next_cert, &key_pem, &cert_pem, IfExists::Refuse)?;
    let marker = keys::staged_marker(next_key);
    write(&marker, format!("{now}\n"))?;
    let ring = key_ring(config)?;
    let bundle = bundle_path(&config.token.certificate);
    write(&bundle, ring.bundle_pem())?;
    let next = ring.next.ok_or_else(|| {
        RotationError::Key(KeyError::Invalid {
            path: next_key.display().to_string(),
            message: "the staged key could not be read back".into(),
        })
    })?;
    Ok(Staged {
        key_file: next_key.clone(),
        algorithm: next.key.algorithm.name(),
        kid: next.key.kid.clone(),
        switch_at: next.switch_at,
        retire_after: next.switch_at + longest,
        bundle,
    })
}

/// Retires the old key at `now` (when `when` allows): the next key's
/// files become the current ones; the new current key ID is returned.
pub fn finish(config: &Config, when: Retire, now: i64) -> Result<String, RotationError> {
    let ring = key_ring(config)?;
    let Some(next) = &ring.next else {
        return Err(RotationError::NotUnderWay {
            next_key: config.token.next_key.clone(),
        });
    };
    let retire_after = next.switch_at + config.token.longest_lifetime().as_secs() as i64;
    if now < retire_after && when == Retire::WhenSafe {
        return Err(RotationError::TooEarly {
            kid: ring.current.kid.clone(),
            retire_after,
        });
    }
    let token = &config.token;
    rename(&token.next_key, &token.key)?;
    rename(&token.next_certificate, &token.certificate)?;
    let _ = std::fs::remove_file(keys::staged_marker(&token.next_key));
    let _ = std::fs::copy(&token.certificate, bundle_path(&token.certificate));
    Ok(next.key.kid.clone())
}

fn write(path: &Path, contents: impl AsRef<[u8]>) -> Result<(), RotationError> {
    std::fs::write(path, contents).map_err(|source| RotationError::File {
        what: "writing".into(),
        path: path.to_owned(),
        source,
    })
}

fn rename(from: &Path, to: &Path) -> Result<(), RotationError> {
    std::fs::rename(from, to).map_err(|source| RotationError::File {
        what: format!("moving {} to", from.display()),
        path: to.to_owned(),
        source,
    })
}
