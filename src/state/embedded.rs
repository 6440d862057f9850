//! The embedded backend: counters in this process (moka), records in
//! memory and, with files, in `records.json` under `state.dir`.

use std::path::Path;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;

use super::{Counters, Records, Store, StoreError};

/// RecordsFile per collection, by id.
type RecordMap = std::collections::BTreeMap<String, std::collections::BTreeMap<String, String>>;

/// The embedded backend's records: in memory, and written through to
/// `records.json` under `state.dir` when it has files. The file is read
/// again when its modification time changes, so a change made by another
/// process (`regauth tokens revoke`) reaches a running server.
struct RecordsFile {
    file: Option<std::path::PathBuf>,
    /// `None` until the file has been read; with the file's modification
    /// time then.
    map: std::sync::Mutex<Option<(Option<std::time::SystemTime>, RecordMap)>>,
}

type RecordsGuard<'a> =
    std::sync::MutexGuard<'a, Option<(Option<std::time::SystemTime>, RecordMap)>>;

impl RecordsFile {
    /// The records, read from the file on first use and whenever it
    /// changed since.
    fn loaded<'a>(&self, guard: &'a mut RecordsGuard<'_>) -> Result<&'a mut RecordMap, StoreError> {
        let Some(path) = &self.file else {
            return Ok(&mut guard.get_or_insert_with(|| (None, RecordMap::new())).1);
        };
        let fail = |e: std::io::Error| StoreError(format!("{}: {e}", path.display()));
        let modified = match std::fs::metadata(path) {
            Ok(meta) => Some(meta.modified().map_err(fail)?),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(fail(e)),
        };
        // A file rewritten within its timestamp's resolution keeps its
        // time: a fresh one is read again.
        let settled =
            modified.is_none_or(|m| m.elapsed().is_ok_and(|age| age > Duration::from_secs(2)));
        let current = guard
            .as_ref()
            .is_some_and(|(at, _)| *at == modified && settled);
        if !current {
            let map = match modified {
                Some(_) => {
                    let bytes = std::fs::read(path).map_err(fail)?;
                    serde_json::from_slice(&bytes).map_err(|e| {
                        StoreError(format!("{}: not a records file: {e}", path.display()))
                    })?
                }
                None => RecordMap::new(),
            };
            **guard = Some((modified, map));
        }
        guard
            .as_mut()
            .map(|(_, map)| map)
            .ok_or_else(|| StoreError("the records are not loaded".into()))
    }

    fn lock(&self) -> Result<RecordsGuard<'_>, StoreError> {
        self.map
            .lock()
            .map_err(|_| StoreError("the records lock is poisoned".into()))
    }

    fn read<T>(&self, look: impl FnOnce(&RecordMap) -> T) -> Result<T, StoreError> {
        let mut guard = self.lock()?;
        Ok(look(self.loaded(&mut guard)?))
    }

    /// Changes the records; `change` says whether it changed anything.
    /// With a file, the change is made on a copy that replaces the records
    /// only once it is on disk: a failed write changes nothing (a
    /// revocation that failed cannot look done and come back later).
    fn write<T>(&self, change: impl FnOnce(&mut RecordMap) -> (T, bool)) -> Result<T, StoreError> {
        let mut guard = self.lock()?;
        // Another process (`regauth tokens revoke`) writes this file too:
        // an advisory lock over read-change-write keeps either from
        // undoing the other.
        let _locked = match &self.file {
            Some(path) => Some(lock_file(path)?),
            None => None,
        };
        let map = self.loaded(&mut guard)?;
        let Some(path) = &self.file else {
            return Ok(change(map).0);
        };
        let mut next = map.clone();
        let (answer, changed) = change(&mut next);
        if changed {
            write_atomically(path, &next)?;
            let modified = std::fs::metadata(path).and_then(|m| m.modified()).ok();
            *guard = Some((modified, next));
        }
        Ok(answer)
    }
}

/// An exclusive advisory lock on `path`'s `.lock` file, held until the
/// file handle is dropped.
fn lock_file(path: &Path) -> Result<std::fs::File, StoreError> {
    let lock = path.with_extension("json.lock");
    crate::files::lock(&lock).map_err(|e| StoreError(format!("{}: {e}", lock.display())))
}

/// Writes `map` to `path` through a temporary file and a rename, so a
/// crash leaves the old file or the new one, never half of either.
fn write_atomically(path: &Path, map: &RecordMap) -> Result<(), StoreError> {
    let text = serde_json::to_vec(map).map_err(|e| StoreError(e.to_string()))?;
    crate::files::write_file(path, &text, 0o600, crate::files::Replace::Atomically)
        .map_err(|e| StoreError(format!("{}: {e}", path.display())))
}

/// Counters in this process, records in memory and (with files) in
/// `records.json` under `state.dir`.
pub struct Embedded {
    counters: moka::sync::Cache<String, Arc<Counter>>,
    records: Arc<RecordsFile>,
}

/// One counter and the window it lives for.
struct Counter {
    count: AtomicU32,
    window: Duration,
}

/// At most this many counters are kept in this process.
const MAX_COUNTERS: u64 = 200_000;

/// A counter lives for the window it was created with.
struct CounterExpiry;

impl moka::Expiry<String, Arc<Counter>> for CounterExpiry {
    fn expire_after_create(
        &self,
        _key: &String,
        value: &Arc<Counter>,
        _created_at: Instant,
    ) -> Option<Duration> {
        Some(value.window)
    }
}

impl Embedded {
    /// The embedded backend with its files under `dir`.
    pub fn new(dir: &Path) -> Self {
        Self::with(Some(dir.join("records.json")))
    }

    /// The embedded backend without files: records last as long as the
    /// process (for embedding regauth in another service).
    pub fn in_memory() -> Self {
        Self::with(None)
    }

    fn with(records: Option<std::path::PathBuf>) -> Self {
        Self {
            records: Arc::new(RecordsFile {
                file: records,
                map: std::sync::Mutex::new(None),
            }),
            counters: moka::sync::Cache::builder()
                .max_capacity(MAX_COUNTERS)
                .expire_after(CounterExpiry)
                .build(),
        }
    }

    fn counter(&self, key: &str, window: Duration) -> Arc<Counter> {
        self.counters.get_with(key.to_owned(), || {
            Arc::new(Counter {
                count: AtomicU32::new(0),
                window,
            })
        })
    }

    /// Runs `job` on the records where file I/O (reads of a changed file,
    /// `fsync`s) cannot hold up a runtime worker: a blocking thread when
    /// there is a file, in place when there is none.
    async fn on_records<T: Send + 'static>(
        &self,
        job: impl FnOnce(&RecordsFile) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let records = self.records.clone();
        if records.file.is_none() {
            return job(&records);
        }
        tokio::task::spawn_blocking(move || job(&records))
            .await
            .map_err(|e| StoreError(format!("the records file's task failed: {e}")))?
    }
}

#[async_trait]
impl Store for Embedded {
    fn backend(&self) -> &'static str {
        "embedded"
    }

    async fn ping(&self) -> Result<(), StoreError> {
        Ok(())
    }
}

#[async_trait]
impl Counters for Embedded {
    async fn take(&self, key: &str, limit: u32, window: Duration) -> Result<bool, StoreError> {
        let counter = self.counter(key, window);
        Ok(counter
            .count
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < limit).then_some(n + 1)
            })
            .is_ok())
    }

    async fn give_back(&self, key: &str) -> Result<(), StoreError> {
        if let Some(counter) = self.counters.get(key) {
            let _ = counter
                .count
                .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1));
        }
        Ok(())
    }

    async fn add(&self, key: &str, window: Duration) -> Result<(), StoreError> {
        self.counter(key, window)
            .count
            .fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    async fn count(&self, key: &str) -> Result<u32, StoreError> {
        Ok(self
            .counters
            .get(key)
            .map_or(0, |c| c.count.load(Ordering::Relaxed)))
    }

    async fn clear(&self, key: &str) -> Result<(), StoreError> {
        self.counters.invalidate(key);
        Ok(())
    }
}

#[async_trait]
impl Records for Embedded {
    async fn put_record(&self, collection: &str, id: &str, value: &str) -> Result<(), StoreError> {
        let (collection, id, value) = (collection.to_owned(), id.to_owned(), value.to_owned());
        self.on_records(move |records| {
            records.write(|map| {
                map.entry(collection).or_default().insert(id, value);
                ((), true)
            })
        })
        .await
    }

    async fn put_records(
        &self,
        collection: &str,
        entries: &[(String, String)],
    ) -> Result<(), StoreError> {
        let (collection, entries) = (collection.to_owned(), entries.to_vec());
        self.on_records(move |records| {
            records.write(|map| {
                let changed = !entries.is_empty();
                map.entry(collection).or_default().extend(entries);
                ((), changed)
            })
        })
        .await
    }

    async fn swap_record(
        &self,
        collection: &str,
        id: &str,
        expected: Option<&str>,
        value: &str,
    ) -> Result<bool, StoreError> {
        let (collection, id, value) = (collection.to_owned(), id.to_owned(), value.to_owned());
        let expected = expected.map(str::to_owned);
        self.on_records(move |records| {
            records.write(|map| {
                let entries = map.entry(collection).or_default();
                if entries.get(&id) != expected.as_ref() {
                    return (false, false);
                }
                entries.insert(id, value);
                (true, true)
            })
        })
        .await
    }

    async fn get_record(&self, collection: &str, id: &str) -> Result<Option<String>, StoreError> {
        let (collection, id) = (collection.to_owned(), id.to_owned());
        self.on_records(move |records| {
            records.read(|map| map.get(&collection).and_then(|c| c.get(&id)).cloned())
        })
        .await
    }

    async fn delete_record(&self, collection: &str, id: &str) -> Result<bool, StoreError> {
        let (collection, id) = (collection.to_owned(), id.to_owned());
        self.on_records(move |records| {
            records.write(|map| {
                let removed = map
                    .get_mut(&collection)
                    .and_then(|c| c.remove(&id))
                    .is_some();
                (removed, removed)
            })
        })
        .await
    }

    async fn records(&self, collection: &str) -> Result<Vec<(String, String)>, StoreError> {
        let collection = collection.to_owned();
        self.on_records(move |records| {
            records.read(|map| {
                map.get(&collection)
                    .map(|c| c.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
                    .unwrap_or_default()
            })
        })
        .await
    }
}
