//! Tests of refresh tokens and the revocation ledger.

use super::ledger::{LedgerDoc, LEDGER};
use super::*;
use crate::state::Embedded;
use crate::state::Store;
use regauth_providers::clock;

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
    feature.claims.insert("ref", "refs/heads/feature");
    feature.claims.insert(
        "kubernetes.io",
        serde_json::json!({"namespace": "ci", "pod": {"uid": "9a2e"}}),
    );
    let until = clock::unix_seconds() + 600;
    feature.renewal = Renewal::Snapshot;
    feature.expires_at = Some(until);
    let token = t.issue(&feature, "reg").await.unwrap().unwrap();
    let claims = t.check(&token, "reg").await.unwrap();
    assert_eq!(claims.exp, until, "the snapshot's deadline, not 30 days");
    let back = claims.snapshot_identity().unwrap();
    assert_eq!(back.groups, ["readers"]);
    assert_eq!(back.claims.text("ref").unwrap(), "refs/heads/feature");
    assert_eq!(
        back.claims.text("kubernetes.io.pod.uid").unwrap(),
        "9a2e",
        "nested claims travel whole"
    );
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
    let mut big = Identity::new("u", "sso").with_groups((0..2000).map(|i| format!("group-{i}")));
    big.renewal = Renewal::Snapshot;
    assert!(matches!(
        t.issue(&big, "reg").await,
        Err(RefreshError::TooLarge(_))
    ));
}

#[tokio::test]
async fn the_server_applies_each_providers_refresh_max_age() {
    let dir = tempfile::tempdir().unwrap();
    let ages = [("gha".to_owned(), Duration::from_secs(60))].into();
    let t = tokens(dir.path()).with_snapshot_ages(ages);
    let mut login = Identity::new("acme/app", "gha");
    login.renewal = Renewal::Snapshot;
    let before = clock::unix_seconds();
    let claims = t
        .check(&t.issue(&login, "reg").await.unwrap().unwrap(), "reg")
        .await
        .unwrap();
    assert!(
        (before + 60..=before + 61).contains(&claims.exp),
        "{}",
        claims.exp
    );
    // another provider's snapshot: the default
    login.provider = "sso".into();
    let claims = t
        .check(&t.issue(&login, "reg").await.unwrap().unwrap(), "reg")
        .await
        .unwrap();
    let default = DEFAULT_REFRESH_MAX_AGE.as_secs();
    assert!(claims.exp >= before + default && claims.exp <= before + default + 1);
}
