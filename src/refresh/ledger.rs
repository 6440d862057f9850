//! The revocation ledger: one authenticated record, versioned, that ends
//! refresh tokens, app passwords and page sessions on every replica.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::clock::now_ms;
use crate::state::{Records, StoreError};

/// The record collection and id of the revocation ledger.
pub(super) const LEDGER: (&str, &str) = ("revocations", "ledger");

/// One revocation in the ledger.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(super) struct Revoked {
    /// The ledger version it was made at: tokens issued at an earlier
    /// version are revoked.
    v: u64,
    /// When (ms), only to forget it once every token it could end has
    /// expired anyway.
    at_ms: u64,
}

/// The ledger as stored.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(super) struct LedgerDoc {
    /// Random, new whenever a ledger has to be made (first start, or the
    /// old one was deleted).
    id: String,
    pub(super) version: u64,
    created_ms: u64,
    /// Everyone's tokens before this version are revoked.
    #[serde(default)]
    all: u64,
    /// Per subject (trimmed, lower-cased: `Octocat` and `octocat` are
    /// revoked together).
    #[serde(default)]
    pub(super) subjects: BTreeMap<String, Revoked>,
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
    store: Arc<dyn Records>,
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
    pub fn new(store: Arc<dyn Records>, lifetime: Duration) -> Self {
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
                id: crate::random::random_id()
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
