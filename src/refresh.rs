//! Refresh tokens ("identity tokens" to the docker CLI): opaque, long-lived,
//! bound to (subject, provider, service) and to the login that minted
//! them, revocable, never rotated.
//!
//! A refresh token is its claims sealed with AES-256-GCM under a key of its
//! own (`refresh_tokens.key_file`), so every replica that shares the key
//! accepts it, a restart changes nothing, rotating the signing key logs
//! nobody out, and clients can neither read nor forge one. What a refresh
//! may later use comes from the token alone, never from another login's
//! memory: for providers that can look users up again it holds the subject
//! and the login's credential stamp (a password change since then refuses
//! it); for providers that cannot, it holds the login's groups and claims
//! and a deadline of its own.
//!
//! Revocations live in one [`Ledger`] record in the state backend,
//! authenticated like every record there. Each revocation raises the
//! ledger's version; a token carries the ledger's id and the version it
//! was issued at, so revocation compares versions, never two hosts'
//! clocks. A ledger that disappears is made anew under a new id, which
//! every earlier token fails: deleting revocations logs everyone out
//! rather than bringing a revoked token back. Tokens and keys are never
//! logged.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use regauth_providers::{clock, Identity, Kind, Renewal};
use serde::{Deserialize, Serialize};

use crate::state::{Store, StoreError};

/// The format: `rt2.` + base64url(nonce ‖ AES-256-GCM(claims)). `rt1.`
/// tokens (subject only, resolved from the last login) are refused.
const PREFIX: &str = "rt2.";
const LEGACY_PREFIX: &str = "rt1.";
/// Upper bound on the sealed claims (a login's groups and claims included).
const MAX_CLAIMS_BYTES: usize = 8 * 1024;

/// Why a refresh token was not accepted. Logged, never shown to clients.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RefreshError {
    /// Malformed, tampered with, or sealed under another key.
    #[error("not a refresh token of this server (malformed, tampered or from another key)")]
    Invalid,
    /// Past its expiry.
    #[error("the refresh token expired")]
    Expired,
    /// Issued for another service, the one named.
    #[error("the refresh token was issued for service {0:?}")]
    OtherService(String),
    /// Revoked after it was issued (its subject's, or everyone's).
    #[error("the refresh token was revoked")]
    Revoked,
    /// The revocation store could not answer.
    #[error("revocation store: {0}")]
    Store(String),
    /// An `rt1.` token of an earlier version; the user must log in again.
    #[error("a refresh token of an earlier regauth version (rt1): the user must log in again")]
    Legacy,
    /// The login's groups and claims are too large to seal (the size in bytes).
    #[error("the login's groups and claims are too large for a refresh token ({0} bytes)")]
    TooLarge(usize),
    /// Encoding or sealing the claims failed (what failed).
    #[error("sealing failed: {0}")]
    Crypto(&'static str),
}

/// What a refresh token says.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// The subject the token continues.
    pub sub: String,
    /// The provider instance that vouched for the subject.
    pub provider: String,
    /// The service the token is bound to.
    pub service: String,
    /// Issued at, in milliseconds since the epoch (for the log; revocation
    /// compares ledger versions).
    pub iat_ms: u64,
    /// The revocation ledger this token was issued under.
    #[serde(default)]
    pub ledger: String,
    /// The ledger's version when it was issued: a revocation of its
    /// subject (or of everyone) at a later version ends it.
    #[serde(default)]
    pub rev: u64,
    /// Expiry, in seconds since the epoch.
    pub exp: u64,
    /// The login's credential stamp: a lookup that finds another one
    /// (the password changed) refuses the token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stamp: Option<String>,
    /// The login itself, for providers that cannot look users up again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot: Option<Snapshot>,
}

/// What one login established, carried by its refresh token.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshot {
    /// Whether the login was a user or a robot.
    pub kind: Kind,
    /// The login's groups.
    pub groups: Vec<String>,
    /// The login's claims.
    #[serde(default)]
    pub claims: BTreeMap<String, String>,
    /// What the login's forge token may do with packages: a refresh never
    /// gets more than the token it continues.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub package_rights: Option<PackageRights>,
}

/// [`regauth_providers::PackageRights`] as a refresh token carries it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PackageRights {
    /// Pull.
    pub read: bool,
    /// Push.
    pub write: bool,
    /// Delete.
    pub delete: bool,
}

impl From<regauth_providers::PackageRights> for PackageRights {
    fn from(r: regauth_providers::PackageRights) -> Self {
        Self {
            read: r.read,
            write: r.write,
            delete: r.delete,
        }
    }
}

impl From<PackageRights> for regauth_providers::PackageRights {
    fn from(r: PackageRights) -> Self {
        Self {
            read: r.read,
            write: r.write,
            delete: r.delete,
        }
    }
}

impl Claims {
    /// The identity a snapshot token stands for.
    pub fn snapshot_identity(&self) -> Option<Identity> {
        let snapshot = self.snapshot.as_ref()?;
        let mut identity =
            Identity::new(&self.sub, &self.provider).with_groups(snapshot.groups.iter().cloned());
        identity.kind = snapshot.kind;
        identity.claims = snapshot.claims.clone();
        identity.package_rights = snapshot.package_rights.map(Into::into);
        identity.renewal = Renewal::Snapshot { until: self.exp };
        // Its registry tokens end with it (a JWT login's `exp`, at most).
        identity.expires_at = Some(self.exp);
        Some(identity)
    }
}

pub(crate) fn now_ms() -> u64 {
    clock::unix_millis()
}

/// The record collection and id of the revocation ledger.
const LEDGER: (&str, &str) = ("revocations", "ledger");

/// One revocation in the ledger.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct Revoked {
    /// The ledger version it was made at: tokens issued at an earlier
    /// version are revoked.
    v: u64,
    /// When (ms), only to forget it once every token it could end has
    /// expired anyway.
    at_ms: u64,
}

/// The ledger as stored.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct LedgerDoc {
    /// Random, new whenever a ledger has to be made (first start, or the
    /// old one was deleted).
    id: String,
    version: u64,
    created_ms: u64,
    /// Everyone's tokens before this version are revoked.
    #[serde(default)]
    all: u64,
    /// Per subject (trimmed, lower-cased: `Octocat` and `octocat` are
    /// revoked together).
    #[serde(default)]
    subjects: BTreeMap<String, Revoked>,
    /// Things ended before their time (a revoked app password, a signed-out
    /// page session), until they would have ended anyway (seconds): their
    /// stored record coming back cannot bring them back.
    #[serde(default)]
    ended: BTreeMap<String, u64>,
}

/// How revocation compares subjects: trimmed and lower-cased, so a name
/// typed in another case revokes too (over-revoking is the safe side).
fn subject_key(subject: &str) -> String {
    subject.trim().to_lowercase()
}

/// The newest ledger this process has read.
#[derive(Clone, Debug)]
struct Mark {
    id: String,
    created_ms: u64,
    version: u64,
}

/// The revocation ledger in the state backend (see the module docs).
pub struct Ledger {
    store: Arc<dyn Store>,
    /// Revocations older than this are forgotten (every token they could
    /// end has expired): the longest a refresh token lives, and a day.
    keep: Duration,
    /// The newest ledger this process has read: an older one (an older
    /// version of it, or a ledger made before it) is a copy put back,
    /// refused.
    seen: Mutex<Option<Mark>>,
}

impl Ledger {
    /// The ledger in `store`; revocations are kept for `lifetime` (the
    /// longest a refresh token lives) and a day.
    pub fn new(store: Arc<dyn Store>, lifetime: Duration) -> Self {
        Self {
            store,
            keep: lifetime + Duration::from_secs(86400),
            seen: Mutex::new(None),
        }
    }

    /// The ledger now, and its stored text (for a compare-and-swap): read
    /// (and checked against the newest this process saw), or made when
    /// there is none.
    async fn current(&self) -> Result<(LedgerDoc, String), StoreError> {
        let (collection, id) = LEDGER;
        for _ in 0..8 {
            if let Some(text) = self.store.get_record(collection, id).await? {
                let doc: LedgerDoc = serde_json::from_str(&text)
                    .map_err(|e| StoreError(format!("the revocation ledger: {e}")))?;
                self.saw(&doc)?;
                return Ok((doc, text));
            }
            let doc = LedgerDoc {
                id: crate::token::random_id()
                    .map_err(|e| StoreError(format!("no randomness: {e}")))?,
                version: 1,
                created_ms: now_ms(),
                all: 0,
                subjects: BTreeMap::new(),
                ended: BTreeMap::new(),
            };
            let text = serde_json::to_string(&doc)
                .map_err(|e| StoreError(format!("the revocation ledger: {e}")))?;
            let made = self.store.swap_record(collection, id, None, &text).await?;
            // No ledger made means another replica made one, or there is a
            // record that fails its check: a ledger someone rewrote counts
            // as lost, and is replaced.
            let replaced = !made && self.store.get_record(collection, id).await?.is_none();
            if replaced {
                self.store.put_record(collection, id, &text).await?;
            }
            if made || replaced {
                let had = self.seen.lock().map(|s| s.is_some()).unwrap_or(true);
                if had || replaced {
                    tracing::error!(target: "regauth::audit", event = "revocation_ledger_replaced", "the revocation ledger was missing or altered in the state backend; a new one was made, so every refresh token issued before is refused (users log in again)");
                } else {
                    tracing::info!("made a new revocation ledger in the state backend (first start with it): refresh tokens issued before it are refused");
                }
            }
            // read back whichever ledger is there now (another replica's,
            // if it made one first)
        }
        Err(StoreError(
            "the revocation ledger keeps changing under this replica".into(),
        ))
    }

    /// Takes `doc` as the newest ledger, unless it is older than what this
    /// process has read: an older version of the same ledger, or a ledger
    /// made before the newest one (an old copy put back after a new ledger
    /// was made).
    fn saw(&self, doc: &LedgerDoc) -> Result<(), StoreError> {
        let mut seen = self
            .seen
            .lock()
            .map_err(|_| StoreError("ledger lock poisoned".into()))?;
        if let Some(mark) = seen.as_ref() {
            let older = if mark.id == doc.id {
                doc.version < mark.version
            } else {
                doc.created_ms < mark.created_ms
            };
            if older {
                tracing::error!(target: "regauth::audit", event = "revocation_ledger_rollback", seen = mark.version, found = doc.version, "the revocation ledger went back to an older copy: someone put an old copy into the state backend; refusing refresh grants until it is fixed");
                return Err(StoreError(
                    "the revocation ledger went back to an older copy".into(),
                ));
            }
        }
        *seen = Some(Mark {
            id: doc.id.clone(),
            created_ms: doc.created_ms,
            version: doc.version,
        });
        Ok(())
    }

    /// The (ledger id, version) a token issued now carries.
    pub async fn stamp(&self) -> Result<(String, u64), StoreError> {
        let (doc, _) = self.current().await?;
        Ok((doc.id, doc.version))
    }

    /// Whether a token of `subject` issued under `ledger` at version `rev`
    /// is revoked (or of another ledger, which means the same). A token
    /// issued at a version the ledger has not reached shows the ledger was
    /// put back to an older copy: refused, and remembered.
    pub async fn revoked(&self, subject: &str, ledger: &str, rev: u64) -> Result<bool, StoreError> {
        let (doc, _) = self.current().await?;
        if doc.id != ledger {
            return Ok(true);
        }
        if rev > doc.version {
            if let Ok(mut seen) = self.seen.lock() {
                *seen = Some(Mark {
                    id: doc.id.clone(),
                    created_ms: doc.created_ms,
                    version: rev,
                });
            }
            tracing::error!(target: "regauth::audit", event = "revocation_ledger_rollback", found = doc.version, token = rev, "a refresh token is newer than the revocation ledger: an older copy was put back into the state backend; refusing refresh grants until it is fixed");
            return Err(StoreError(
                "the revocation ledger went back to an older copy".into(),
            ));
        }
        let subject = doc.subjects.get(&subject_key(subject)).map_or(0, |r| r.v);
        Ok(rev < doc.all.max(subject))
    }

    /// The current ledger's id: what outlives a login (an app password, a
    /// page session) is bound to it, so a ledger deleted and made anew
    /// (which would forget what ended early) ends them too.
    pub async fn id(&self) -> Result<String, StoreError> {
        Ok(self.current().await?.0.id)
    }

    /// Whether `key` (`app-password:ID`, `session:ID`) was ended early.
    pub async fn ended(&self, key: &str) -> Result<bool, StoreError> {
        let (doc, _) = self.current().await?;
        Ok(doc
            .ended
            .get(key)
            .is_some_and(|until| *until > now_ms() / 1000))
    }

    /// Revokes the tokens of `subject` (or, `None`, everyone's) issued
    /// until now, on every replica sharing the backend.
    pub async fn revoke(&self, subject: Option<&str>) -> Result<(), StoreError> {
        self.change(|doc| match subject {
            Some(subject) => {
                doc.subjects.insert(
                    subject_key(subject),
                    Revoked {
                        v: doc.version,
                        at_ms: now_ms(),
                    },
                );
            }
            None => doc.all = doc.version,
        })
        .await
    }

    /// Records that `key` ended before its time, which was `until`
    /// (seconds since the epoch): until then [`Ledger::ended`] says so.
    pub async fn end(&self, key: &str, until: u64) -> Result<(), StoreError> {
        self.change(|doc| {
            doc.ended.insert(key.to_owned(), until);
        })
        .await
    }

    /// Applies `change` to a new version of the ledger, compare-and-swap
    /// on its stored text, forgetting what has run out.
    async fn change(&self, change: impl Fn(&mut LedgerDoc)) -> Result<(), StoreError> {
        let (collection, id) = LEDGER;
        for _ in 0..32 {
            let (mut doc, expected) = self.current().await?;
            doc.version += 1;
            change(&mut doc);
            let now = now_ms();
            let keep_ms = u64::try_from(self.keep.as_millis()).unwrap_or(u64::MAX);
            doc.subjects
                .retain(|_, r| r.at_ms.saturating_add(keep_ms) > now);
            doc.ended.retain(|_, until| *until > now / 1000);
            let text = serde_json::to_string(&doc)
                .map_err(|e| StoreError(format!("the revocation ledger: {e}")))?;
            if self
                .store
                .swap_record(collection, id, Some(&expected), &text)
                .await?
            {
                self.saw(&doc)?;
                return Ok(());
            }
        }
        Err(StoreError(
            "the revocation ledger keeps changing; the revocation was not recorded".into(),
        ))
    }
}

/// How long a refresh token of a login without a credential stamp lives
/// at most: without one, a password change cannot end it.
pub const UNSTAMPED_LIFETIME: Duration = Duration::from_secs(12 * 3600);

/// Issues and checks refresh tokens.
pub struct RefreshTokens {
    sealer: crate::seal::Sealer,
    lifetime: Duration,
    /// The revocation ledger.
    pub ledger: Arc<Ledger>,
}

impl RefreshTokens {
    /// `secret` is key material shared by the replicas (the refresh key);
    /// revocations live in `store`'s ledger.
    pub fn new(secret: &[u8], lifetime: Duration, store: Arc<dyn Store>) -> Self {
        Self::with_ledger(secret, lifetime, Arc::new(Ledger::new(store, lifetime)))
    }

    /// Refresh tokens whose revocations live in `ledger` (shared with the
    /// app passwords, so that one process reads one ledger).
    pub fn with_ledger(secret: &[u8], lifetime: Duration, ledger: Arc<Ledger>) -> Self {
        Self {
            sealer: crate::seal::Sealer::new(secret, b"regauth refresh-token key v2"),
            lifetime,
            ledger,
        }
    }

    /// A refresh token continuing this login for `service`, or `None`
    /// when the login gets none (a machine's token, or a snapshot whose
    /// deadline has passed).
    pub async fn issue(
        &self,
        identity: &Identity,
        service: &str,
    ) -> Result<Option<String>, RefreshError> {
        let iat_ms = now_ms();
        let lifetime_end = iat_ms / 1000 + self.lifetime.as_secs();
        let (exp, snapshot) = match identity.renewal {
            Renewal::Never => return Ok(None),
            // Nothing would notice a password change: a short life only.
            Renewal::Lookup if identity.credential_stamp.is_none() => (
                lifetime_end.min(iat_ms / 1000 + UNSTAMPED_LIFETIME.as_secs()),
                None,
            ),
            Renewal::Lookup => (lifetime_end, None),
            Renewal::Snapshot { until } => (
                lifetime_end.min(until),
                Some(Snapshot {
                    kind: identity.kind,
                    groups: identity.groups.clone(),
                    claims: identity.claims.clone(),
                    package_rights: identity.package_rights.map(Into::into),
                }),
            ),
        };
        if exp <= iat_ms / 1000 {
            return Ok(None);
        }
        let (ledger, rev) = self
            .ledger
            .stamp()
            .await
            .map_err(|e| RefreshError::Store(e.0))?;
        let claims = Claims {
            sub: identity.subject.clone(),
            provider: identity.provider.clone(),
            service: service.to_owned(),
            iat_ms,
            ledger,
            rev,
            exp,
            stamp: identity.credential_stamp.clone(),
            snapshot,
        };
        let plain =
            serde_json::to_vec(&claims).map_err(|_| RefreshError::Crypto("encoding the claims"))?;
        if plain.len() > MAX_CLAIMS_BYTES {
            return Err(RefreshError::TooLarge(plain.len()));
        }
        let sealed = self
            .sealer
            .seal(PREFIX.as_bytes(), &plain)
            .map_err(|_| RefreshError::Crypto("no randomness for the nonce"))?;
        Ok(Some(format!("{PREFIX}{sealed}")))
    }

    /// Opens a token presented for `service`, checking expiry and revocation.
    pub async fn check(&self, token: &str, service: &str) -> Result<Claims, RefreshError> {
        let claims = self.open(token, service)?;
        let revoked = self
            .ledger
            .revoked(&claims.sub, &claims.ledger, claims.rev)
            .await
            .map_err(|e| RefreshError::Store(e.0))?;
        if revoked {
            return Err(RefreshError::Revoked);
        }
        Ok(claims)
    }

    /// Opens a token presented for `service`, checking expiry only.
    pub fn open(&self, token: &str, service: &str) -> Result<Claims, RefreshError> {
        if token.starts_with(LEGACY_PREFIX) {
            return Err(RefreshError::Legacy);
        }
        let encoded = token.strip_prefix(PREFIX).ok_or(RefreshError::Invalid)?;
        let plain = self
            .sealer
            .open(PREFIX.as_bytes(), encoded)
            .ok_or(RefreshError::Invalid)?;
        let claims: Claims = serde_json::from_slice(&plain).map_err(|_| RefreshError::Invalid)?;
        if claims.exp <= now_ms() / 1000 {
            return Err(RefreshError::Expired);
        }
        if claims.service != service {
            return Err(RefreshError::OtherService(claims.service));
        }
        Ok(claims)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::Embedded;

    fn login(subject: &str) -> Identity {
        Identity::new(subject, "corp")
    }

    async fn issue(t: &RefreshTokens, subject: &str) -> String {
        t.issue(&login(subject), "reg").await.unwrap().unwrap()
    }

    fn tokens(dir: &std::path::Path) -> RefreshTokens {
        RefreshTokens::new(
            b"refresh key bytes",
            Duration::from_secs(3600),
            Arc::new(Embedded::new(dir)),
        )
    }

    #[tokio::test]
    async fn round_trip_and_binding() {
        let dir = tempfile::tempdir().unwrap();
        let t = tokens(dir.path());
        let token = issue(&t, "ann").await;
        assert!(token.starts_with(PREFIX));
        assert!(
            !token.contains("ann"),
            "opaque: the subject is not readable"
        );
        let claims = t.check(&token, "reg").await.unwrap();
        assert_eq!(
            (claims.sub.as_str(), claims.provider.as_str()),
            ("ann", "corp")
        );
        assert_eq!(
            t.check(&token, "other").await,
            Err(RefreshError::OtherService("reg".into()))
        );
        // another key (another deployment) cannot open it
        let other = RefreshTokens::new(
            b"another key",
            Duration::from_secs(60),
            std::sync::Arc::new(Embedded::new(dir.path())),
        );
        assert_eq!(other.check(&token, "reg").await, Err(RefreshError::Invalid));
    }

    #[tokio::test]
    async fn tampered_truncated_and_garbage_are_invalid() {
        let dir = tempfile::tempdir().unwrap();
        let t = tokens(dir.path());
        let token = issue(&t, "ann").await;
        let mut flipped = token.clone().into_bytes();
        let i = flipped.len() - 5;
        flipped[i] = if flipped[i] == b'A' { b'B' } else { b'A' };
        let flipped = String::from_utf8(flipped).unwrap();
        for bad in [
            flipped.as_str(),
            &token[..token.len() - 1],
            &token[..10],
            "rt2.",
            "rt2.!!!",
            "",
            "eyJhbGciOi.x.y",
        ] {
            assert_eq!(
                t.check(bad, "reg").await,
                Err(RefreshError::Invalid),
                "{bad}"
            );
        }
    }

    #[tokio::test]
    async fn revocation_by_subject_and_for_all_survives_a_new_instance() {
        let dir = tempfile::tempdir().unwrap();
        let t = tokens(dir.path());
        let ann = issue(&t, "ann").await;
        let ben = issue(&t, "ben").await;
        // another process (`regauth tokens revoke`), any case
        tokens(dir.path())
            .ledger
            .revoke(Some(" ANN"))
            .await
            .unwrap();
        // the first instance sees the file change
        assert_eq!(t.check(&ann, "reg").await, Err(RefreshError::Revoked));
        assert!(t.check(&ben, "reg").await.is_ok());
        // a token issued after the revocation works: versions, not clocks
        let again = issue(&t, "ann").await;
        assert!(t.check(&again, "reg").await.is_ok());
        t.ledger.revoke(None).await.unwrap();
        assert_eq!(
            tokens(dir.path()).check(&ben, "reg").await,
            Err(RefreshError::Revoked)
        );
        assert_eq!(
            tokens(dir.path()).check(&again, "reg").await,
            Err(RefreshError::Revoked)
        );
        assert!(t.check(&issue(&t, "ben").await, "reg").await.is_ok());
    }

    #[tokio::test]
    async fn a_deleted_or_rolled_back_ledger_revokes_everything() {
        let store: Arc<dyn Store> = Arc::new(Embedded::in_memory());
        let t = RefreshTokens::new(
            b"refresh key bytes",
            Duration::from_secs(3600),
            store.clone(),
        );
        let ann = issue(&t, "ann").await;
        let (collection, id) = LEDGER;
        let before = store.get_record(collection, id).await.unwrap().unwrap();
        // deleting the ledger does not bring anything back: it ends all
        assert!(store.delete_record(collection, id).await.unwrap());
        assert_eq!(t.check(&ann, "reg").await, Err(RefreshError::Revoked));
        let fresh = issue(&t, "ann").await;
        assert!(t.check(&fresh, "reg").await.is_ok());
        // an old copy of the ledger put back is refused by this process
        t.ledger.revoke(Some("ben")).await.unwrap();
        let newer = store.get_record(collection, id).await.unwrap().unwrap();
        let doc: LedgerDoc = serde_json::from_str(&newer).unwrap();
        let mut old: LedgerDoc = serde_json::from_str(&newer).unwrap();
        old.version -= 1;
        old.subjects.clear();
        store
            .put_record(collection, id, &serde_json::to_string(&old).unwrap())
            .await
            .unwrap();
        assert!(matches!(
            t.check(&fresh, "reg").await,
            Err(RefreshError::Store(_))
        ));
        assert_ne!(before, newer);
        assert_eq!(doc.version, old.version + 1);
    }

    /// Review of the fixes, 2: an old copy of the ledger put back brought
    /// revoked tokens back on a new process, or on a running one after the
    /// ledger had been deleted and made anew.
    #[tokio::test]
    async fn an_old_ledger_put_back_is_refused() {
        let store: Arc<dyn Store> = Arc::new(Embedded::in_memory());
        let key = b"refresh key bytes";
        let t = RefreshTokens::new(key, Duration::from_secs(3600), store.clone());
        let (collection, id) = LEDGER;
        let ann = issue(&t, "ann").await;
        let old = store.get_record(collection, id).await.unwrap().unwrap();
        t.ledger.revoke(Some("ann")).await.unwrap();
        let ben = issue(&t, "ben").await;
        // on a new process: a token newer than the ledger gives it away
        store.put_record(collection, id, &old).await.unwrap();
        let fresh = RefreshTokens::new(key, Duration::from_secs(3600), store.clone());
        assert!(matches!(
            fresh.check(&ben, "reg").await,
            Err(RefreshError::Store(_))
        ));
        assert!(
            matches!(fresh.check(&ann, "reg").await, Err(RefreshError::Store(_))),
            "and it stays refused"
        );
        // on a running process: deleted, made anew, the old copy put back
        let running = RefreshTokens::new(key, Duration::from_secs(3600), store.clone());
        store.delete_record(collection, id).await.unwrap();
        tokio::time::sleep(Duration::from_millis(5)).await;
        let _ = issue(&running, "carl").await;
        store.put_record(collection, id, &old).await.unwrap();
        assert!(matches!(
            running.check(&ann, "reg").await,
            Err(RefreshError::Store(_))
        ));
    }

    #[tokio::test]
    async fn what_ended_early_stays_ended() {
        let store: Arc<dyn Store> = Arc::new(Embedded::in_memory());
        let ledger = Ledger::new(store, Duration::from_secs(3600));
        let later = now_ms() / 1000 + 600;
        assert!(!ledger.ended("app-password:a").await.unwrap());
        ledger.end("app-password:a", later).await.unwrap();
        ledger.end("session:s", now_ms() / 1000).await.unwrap();
        assert!(ledger.ended("app-password:a").await.unwrap());
        assert!(
            !ledger.ended("session:s").await.unwrap(),
            "past its end: forgotten"
        );
    }

    #[tokio::test]
    async fn expired_tokens_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let t = RefreshTokens::new(
            b"k",
            Duration::ZERO,
            std::sync::Arc::new(Embedded::new(dir.path())),
        );
        assert_eq!(
            t.issue(&login("ann"), "reg").await,
            Ok(None),
            "born expired"
        );
        assert_eq!(t.check("rt1.AAAA", "reg").await, Err(RefreshError::Legacy));
    }

    #[tokio::test]
    async fn each_token_carries_its_own_login() {
        let dir = tempfile::tempdir().unwrap();
        let t = tokens(dir.path());
        // machine logins get none
        let mut machine = login("ci");
        machine.renewal = Renewal::Never;
        assert_eq!(t.issue(&machine, "reg").await, Ok(None));
        // a snapshot login: its groups, claims and deadline travel along
        let mut feature = Identity::new("acme/app", "gha").with_groups(["readers"]);
        feature
            .claims
            .insert("ref".into(), "refs/heads/feature".into());
        let until = clock::unix_seconds() + 600;
        feature.renewal = Renewal::Snapshot { until };
        let token = t.issue(&feature, "reg").await.unwrap().unwrap();
        let claims = t.check(&token, "reg").await.unwrap();
        assert_eq!(claims.exp, until, "the snapshot's deadline, not 30 days");
        let back = claims.snapshot_identity().unwrap();
        assert_eq!(back.groups, ["readers"]);
        assert_eq!(back.claims["ref"], "refs/heads/feature");
        // a lookup login carries its stamp and no snapshot
        let mut ann = login("ann");
        ann.credential_stamp = Some("pwdChangedTime=20261201000000Z".into());
        let claims = t
            .check(&t.issue(&ann, "reg").await.unwrap().unwrap(), "reg")
            .await
            .unwrap();
        assert_eq!(claims.stamp, ann.credential_stamp);
        assert!(claims.snapshot.is_none() && claims.snapshot_identity().is_none());
    }

    #[tokio::test]
    async fn oversized_logins_get_no_token() {
        let dir = tempfile::tempdir().unwrap();
        let t = tokens(dir.path());
        let mut big =
            Identity::new("u", "sso").with_groups((0..2000).map(|i| format!("group-{i}")));
        big.renewal = Renewal::Snapshot { until: u64::MAX };
        assert!(matches!(
            t.issue(&big, "reg").await,
            Err(RefreshError::TooLarge(_))
        ));
    }
}
