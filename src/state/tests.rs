//! Tests of the embedded backend's records file.

use super::*;

#[tokio::test]
async fn embedded_records_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let store = Embedded::new(dir.path());
    store.put_record("things", "a", "1").await.unwrap();
    store.put_record("things", "b", "2").await.unwrap();
    store.put_record("other", "a", "x").await.unwrap();
    assert!(store.delete_record("things", "b").await.unwrap());
    assert!(!store.delete_record("things", "b").await.unwrap());
    let again = Embedded::new(dir.path());
    assert_eq!(
        again.get_record("things", "a").await.unwrap().as_deref(),
        Some("1")
    );
    assert_eq!(again.get_record("things", "b").await.unwrap(), None);
    assert_eq!(
        again.records("other").await.unwrap(),
        [("a".to_owned(), "x".to_owned())]
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(dir.path().join("records.json"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    let memory = Embedded::in_memory();
    memory.put_record("things", "a", "1").await.unwrap();
    assert_eq!(memory.records("things").await.unwrap().len(), 1);
}
