//! State that every replica must agree on: the failure throttle's counters
//! and records (the refresh-token revocation ledger, app passwords,
//! sign-ins, ended page sessions). `backend = "embedded"` keeps them in
//! this process and a file under `state.dir`; `backend = "redis"` in a
//! Redis server that every replica points at.
//!
//! A backend that cannot answer is an error, never a silent yes: callers
//! fail closed (a refresh grant or a throttle decision is a 503). The
//! backend is not trusted with the records' integrity: [`Authenticated`]
//! stores each with a MAC over its collection, id and value under a key
//! derived from the refresh key, which the backend never sees, and a
//! record that fails it is refused and logged. Counters cannot be
//! authenticated that way (deleting one resets it): keep the backend
//! reachable by regauth alone.

use std::path::Path;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use aws_lc_rs::hmac;
use redis::aio::ConnectionManager;

use crate::config::{Backend, RedisConfig, StateConfig};

/// Why the backend could not answer. Never contains a password.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct StoreError(pub String);

/// The shared state, whatever keeps it.
#[async_trait]
pub trait Store: Send + Sync {
    /// `embedded` or `redis`.
    fn backend(&self) -> &'static str;

    /// Adds one to the counter `key` if it is below `limit`; `false` if it
    /// is not. A new counter lives for `window`.
    async fn take(&self, key: &str, limit: u32, window: Duration) -> Result<bool, StoreError>;

    /// Subtracts one from the counter `key` (never below zero).
    async fn give_back(&self, key: &str) -> Result<(), StoreError>;

    /// Adds one to the counter `key`; a new counter lives for `window`.
    async fn add(&self, key: &str, window: Duration) -> Result<(), StoreError>;

    /// The counter `key` (0 if there is none).
    async fn count(&self, key: &str) -> Result<u32, StoreError>;

    /// Forgets the counter `key`.
    async fn clear(&self, key: &str) -> Result<(), StoreError>;

    /// Whether the backend answers (for `/readyz`).
    async fn ping(&self) -> Result<(), StoreError>;

    /// Stores the record `id` of `collection` (small JSON text: an app
    /// password's digest and metadata, a sign-in's groups), replacing it.
    async fn put_record(&self, collection: &str, id: &str, value: &str) -> Result<(), StoreError>;

    /// Stores several records of `collection` at once (one write of the
    /// embedded file), replacing them.
    async fn put_records(
        &self,
        collection: &str,
        entries: &[(String, String)],
    ) -> Result<(), StoreError>;

    /// Replaces the record `id` of `collection` with `value` only if it is
    /// `expected` now (`None`: only if there is none); whether it did.
    async fn swap_record(
        &self,
        collection: &str,
        id: &str,
        expected: Option<&str>,
        value: &str,
    ) -> Result<bool, StoreError>;

    /// The record `id` of `collection`, if there is one.
    async fn get_record(&self, collection: &str, id: &str) -> Result<Option<String>, StoreError>;

    /// Deletes the record `id` of `collection`; whether there was one.
    async fn delete_record(&self, collection: &str, id: &str) -> Result<bool, StoreError>;

    /// Every record of `collection`, as (id, value).
    async fn records(&self, collection: &str) -> Result<Vec<(String, String)>, StoreError>;
}

/// Records per collection, by id.
type RecordMap = std::collections::BTreeMap<String, std::collections::BTreeMap<String, String>>;

/// The embedded backend's records: in memory, and written through to
/// `records.json` under `state.dir` when it has files. The file is read
/// again when its modification time changes, so a change made by another
/// process (`regauth tokens revoke`) reaches a running server.
struct Records {
    file: Option<std::path::PathBuf>,
    /// `None` until the file has been read; with the file's modification
    /// time then.
    map: std::sync::Mutex<Option<(Option<std::time::SystemTime>, RecordMap)>>,
}

type RecordsGuard<'a> =
    std::sync::MutexGuard<'a, Option<(Option<std::time::SystemTime>, RecordMap)>>;

impl Records {
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

/// Writes `map` to `path` through a temporary file and a rename, so a
/// crash leaves the old file or the new one, never half of either.
/// An exclusive advisory lock on `path`'s `.lock` file, held until the
/// file handle is dropped.
fn lock_file(path: &Path) -> Result<std::fs::File, StoreError> {
    let lock = path.with_extension("json.lock");
    let fail = |e: std::io::Error| StoreError(format!("{}: {e}", lock.display()));
    if let Some(dir) = lock.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(fail)?;
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(false);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    let file = options.open(&lock).map_err(fail)?;
    file.lock().map_err(fail)?;
    Ok(file)
}

fn write_atomically(path: &Path, map: &RecordMap) -> Result<(), StoreError> {
    use std::io::Write as _;
    let fail = |e: std::io::Error| StoreError(format!("{}: {e}", path.display()));
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(fail)?;
    }
    let text = serde_json::to_vec(map).map_err(|e| StoreError(e.to_string()))?;
    // One new temporary file per write, never shared with another writer.
    let unique =
        crate::token::random_id().map_err(|e| StoreError(format!("no randomness: {e}")))?;
    let temporary = path.with_extension(format!("json.{unique}.tmp"));
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    let written = options.open(&temporary).and_then(|mut file| {
        file.write_all(&text)?;
        file.sync_all()?;
        std::fs::rename(&temporary, path)
    });
    if written.is_err() {
        let _ = std::fs::remove_file(&temporary);
    }
    written.map_err(fail)
}

/// Builds the configured backend. A Redis backend connects lazily, so
/// regauth starts while Redis is down (and says so on `/readyz`).
pub fn open(config: &StateConfig) -> Result<Arc<dyn Store>, StoreError> {
    match (config.backend, &config.redis) {
        (Backend::Redis, Some(redis)) => Ok(Arc::new(Redis::connect(redis)?)),
        _ => Ok(Arc::new(Embedded::new(&config.dir))),
    }
}

/// Counters in this process, records in memory and (with files) in
/// `records.json` under `state.dir`.
pub struct Embedded {
    counters: moka::sync::Cache<String, Arc<Counter>>,
    records: Arc<Records>,
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
            records: Arc::new(Records {
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
        job: impl FnOnce(&Records) -> Result<T, StoreError> + Send + 'static,
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

    async fn ping(&self) -> Result<(), StoreError> {
        Ok(())
    }

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

/// A Redis server shared by every replica.
pub struct Redis {
    connection: ConnectionManager,
    prefix: String,
    timeout: Duration,
}

/// `INCR` unless at the limit; a new counter gets the window as its TTL.
const TAKE: &str = r"
local n = tonumber(redis.call('GET', KEYS[1]) or '0')
if n >= tonumber(ARGV[1]) then return 0 end
n = redis.call('INCR', KEYS[1])
if n == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 1
";
/// `DECR`, never below zero.
const GIVE_BACK: &str = r"
local n = tonumber(redis.call('GET', KEYS[1]) or '0')
if n > 0 then redis.call('DECR', KEYS[1]) end
return 0
";
/// `INCR`; a new counter gets the window as its TTL.
const ADD: &str = r"
local n = redis.call('INCR', KEYS[1])
if n == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end
return n
";
/// `HSET` only if the field holds `ARGV[2]` now (or, with `ARGV[4]` = 1,
/// holds nothing).
const SWAP: &str = r"
local now = redis.call('HGET', KEYS[1], ARGV[1])
if ARGV[4] == '1' then
  if now then return 0 end
elseif now ~= ARGV[2] then
  return 0
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
return 1
";

impl Redis {
    /// A lazily connecting client for this configuration.
    pub fn connect(config: &RedisConfig) -> Result<Self, StoreError> {
        use redis::IntoConnectionInfo as _;
        if tokio::runtime::Handle::try_current().is_err() {
            return Err(StoreError(
                "the Redis backend must be opened inside a Tokio runtime".into(),
            ));
        }
        let bad = |e: redis::RedisError| StoreError(format!("state.url: {e}"));
        let mut info = config.url.as_str().into_connection_info().map_err(bad)?;
        let password = match (&config.password_file, &config.password_env) {
            (None, None) => None,
            (file, env) => Some(
                regauth_providers::load_secret("state.password", file.as_deref(), env.as_deref())
                    .map_err(|e| StoreError(e.to_string()))?,
            ),
        };
        if let Some(password) = password {
            use regauth_providers::ExposeSecret as _;
            let settings = info
                .redis_settings()
                .clone()
                .set_password(password.expose_secret());
            info = info.set_redis_settings(settings);
        }
        if let Some(user) = &config.username {
            let settings = info.redis_settings().clone().set_username(user);
            info = info.set_redis_settings(settings);
        }
        let client = match &config.ca_file {
            Some(path) => {
                let root_cert = std::fs::read(path)
                    .map_err(|e| StoreError(format!("state.ca_file {}: {e}", path.display())))?;
                redis::Client::build_with_tls(
                    info,
                    redis::TlsCertificates {
                        client_tls: None,
                        root_cert: Some(root_cert),
                    },
                )
            }
            None => redis::Client::open(info),
        }
        .map_err(bad)?;
        let manager_config = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(Some(config.connect_timeout))
            .set_response_timeout(Some(config.command_timeout))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_millis(500));
        let connection =
            ConnectionManager::new_lazy_with_config(client, manager_config).map_err(bad)?;
        Ok(Self {
            connection,
            prefix: config.key_prefix.clone(),
            timeout: config.command_timeout + config.connect_timeout,
        })
    }

    fn key(&self, kind: &str, name: &str) -> String {
        format!("{}{kind}:{name}", self.prefix)
    }

    /// Runs one command or script within the command timeout.
    async fn run<T: redis::FromRedisValue>(
        &self,
        what: &str,
        invocation: impl std::future::Future<Output = redis::RedisResult<T>>,
    ) -> Result<T, StoreError> {
        match tokio::time::timeout(self.timeout, invocation).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(e)) => Err(StoreError(format!("redis {what}: {e}"))),
            Err(_) => Err(StoreError(format!(
                "redis {what}: no answer within {:?}",
                self.timeout
            ))),
        }
    }
}

/// Milliseconds of a window, at least one.
fn millis(window: Duration) -> u64 {
    (window.as_millis() as u64).max(1)
}

#[async_trait]
impl Store for Redis {
    fn backend(&self) -> &'static str {
        "redis"
    }

    async fn take(&self, key: &str, limit: u32, window: Duration) -> Result<bool, StoreError> {
        let mut connection = self.connection.clone();
        let taken: i64 = self
            .run(
                "take",
                redis::Script::new(TAKE)
                    .key(self.key("count", key))
                    .arg(limit)
                    .arg(millis(window))
                    .invoke_async(&mut connection),
            )
            .await?;
        Ok(taken == 1)
    }

    async fn give_back(&self, key: &str) -> Result<(), StoreError> {
        let mut connection = self.connection.clone();
        self.run::<i64>(
            "give back",
            redis::Script::new(GIVE_BACK)
                .key(self.key("count", key))
                .invoke_async(&mut connection),
        )
        .await
        .map(drop)
    }

    async fn add(&self, key: &str, window: Duration) -> Result<(), StoreError> {
        let mut connection = self.connection.clone();
        self.run::<i64>(
            "add",
            redis::Script::new(ADD)
                .key(self.key("count", key))
                .arg(millis(window))
                .invoke_async(&mut connection),
        )
        .await
        .map(drop)
    }

    async fn count(&self, key: &str) -> Result<u32, StoreError> {
        let mut connection = self.connection.clone();
        let count: Option<u32> = self
            .run(
                "GET",
                redis::cmd("GET")
                    .arg(self.key("count", key))
                    .query_async(&mut connection),
            )
            .await?;
        Ok(count.unwrap_or(0))
    }

    async fn clear(&self, key: &str) -> Result<(), StoreError> {
        let mut connection = self.connection.clone();
        self.run::<i64>(
            "DEL",
            redis::cmd("DEL")
                .arg(self.key("count", key))
                .query_async(&mut connection),
        )
        .await
        .map(drop)
    }

    async fn ping(&self) -> Result<(), StoreError> {
        let mut connection = self.connection.clone();
        self.run::<String>("PING", redis::cmd("PING").query_async(&mut connection))
            .await
            .map(drop)
    }

    async fn put_record(&self, collection: &str, id: &str, value: &str) -> Result<(), StoreError> {
        let mut connection = self.connection.clone();
        self.run::<i64>(
            "HSET",
            redis::cmd("HSET")
                .arg(self.key("records", collection))
                .arg(id)
                .arg(value)
                .query_async(&mut connection),
        )
        .await
        .map(drop)
    }

    async fn put_records(
        &self,
        collection: &str,
        entries: &[(String, String)],
    ) -> Result<(), StoreError> {
        if entries.is_empty() {
            return Ok(());
        }
        let mut connection = self.connection.clone();
        let mut command = redis::cmd("HSET");
        command.arg(self.key("records", collection));
        for (id, value) in entries {
            command.arg(id).arg(value);
        }
        self.run::<i64>("HSET", command.query_async(&mut connection))
            .await
            .map(drop)
    }

    async fn swap_record(
        &self,
        collection: &str,
        id: &str,
        expected: Option<&str>,
        value: &str,
    ) -> Result<bool, StoreError> {
        let mut connection = self.connection.clone();
        let swapped: i64 = self
            .run(
                "swap",
                redis::Script::new(SWAP)
                    .key(self.key("records", collection))
                    .arg(id)
                    .arg(expected.unwrap_or(""))
                    .arg(value)
                    .arg(if expected.is_none() { "1" } else { "0" })
                    .invoke_async(&mut connection),
            )
            .await?;
        Ok(swapped == 1)
    }

    async fn get_record(&self, collection: &str, id: &str) -> Result<Option<String>, StoreError> {
        let mut connection = self.connection.clone();
        self.run(
            "HGET",
            redis::cmd("HGET")
                .arg(self.key("records", collection))
                .arg(id)
                .query_async(&mut connection),
        )
        .await
    }

    async fn delete_record(&self, collection: &str, id: &str) -> Result<bool, StoreError> {
        let mut connection = self.connection.clone();
        self.run::<i64>(
            "HDEL",
            redis::cmd("HDEL")
                .arg(self.key("records", collection))
                .arg(id)
                .query_async(&mut connection),
        )
        .await
        .map(|n| n > 0)
    }

    async fn records(&self, collection: &str) -> Result<Vec<(String, String)>, StoreError> {
        let mut connection = self.connection.clone();
        self.run(
            "HGETALL",
            redis::cmd("HGETALL")
                .arg(self.key("records", collection))
                .query_async(&mut connection),
        )
        .await
    }
}

/// A backend whose every operation is timed into the metrics.
pub struct Metered {
    inner: Arc<dyn Store>,
    metrics: Arc<crate::metrics::Metrics>,
}

impl Metered {
    /// Times `inner`'s operations into `metrics`.
    pub fn new(inner: Arc<dyn Store>, metrics: Arc<crate::metrics::Metrics>) -> Self {
        Self { inner, metrics }
    }

    async fn timed<T>(
        &self,
        operation: impl std::future::Future<Output = Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        let started = Instant::now();
        let result = operation.await;
        self.metrics
            .state_op(self.inner.backend(), result.is_ok(), started.elapsed());
        result
    }
}

#[async_trait]
impl Store for Metered {
    fn backend(&self) -> &'static str {
        self.inner.backend()
    }
    async fn take(&self, key: &str, limit: u32, window: Duration) -> Result<bool, StoreError> {
        self.timed(self.inner.take(key, limit, window)).await
    }
    async fn give_back(&self, key: &str) -> Result<(), StoreError> {
        self.timed(self.inner.give_back(key)).await
    }
    async fn add(&self, key: &str, window: Duration) -> Result<(), StoreError> {
        self.timed(self.inner.add(key, window)).await
    }
    async fn count(&self, key: &str) -> Result<u32, StoreError> {
        self.timed(self.inner.count(key)).await
    }
    async fn clear(&self, key: &str) -> Result<(), StoreError> {
        self.timed(self.inner.clear(key)).await
    }
    async fn ping(&self) -> Result<(), StoreError> {
        self.timed(self.inner.ping()).await
    }
    async fn put_record(&self, collection: &str, id: &str, value: &str) -> Result<(), StoreError> {
        self.timed(self.inner.put_record(collection, id, value))
            .await
    }
    async fn put_records(
        &self,
        collection: &str,
        entries: &[(String, String)],
    ) -> Result<(), StoreError> {
        self.timed(self.inner.put_records(collection, entries))
            .await
    }
    async fn swap_record(
        &self,
        collection: &str,
        id: &str,
        expected: Option<&str>,
        value: &str,
    ) -> Result<bool, StoreError> {
        self.timed(self.inner.swap_record(collection, id, expected, value))
            .await
    }
    async fn get_record(&self, collection: &str, id: &str) -> Result<Option<String>, StoreError> {
        self.timed(self.inner.get_record(collection, id)).await
    }
    async fn delete_record(&self, collection: &str, id: &str) -> Result<bool, StoreError> {
        self.timed(self.inner.delete_record(collection, id)).await
    }
    async fn records(&self, collection: &str) -> Result<Vec<(String, String)>, StoreError> {
        self.timed(self.inner.records(collection)).await
    }
}

/// The prefix of an authenticated record: `r1.` + base64url(MAC) + `.` +
/// the value.
const RECORD_FORMAT: &str = "r1.";

/// The key records are authenticated under: derived from the refresh key
/// (which replicas share and the backend never sees).
pub fn records_key(refresh_secret: &[u8]) -> hmac::Key {
    let derived = hmac::sign(
        &hmac::Key::new(hmac::HMAC_SHA256, refresh_secret),
        b"regauth state records v1",
    );
    hmac::Key::new(hmac::HMAC_SHA256, derived.as_ref())
}

/// A backend whose records carry a MAC over (collection, id, value): a
/// record rewritten, moved to another id or collection, or written by
/// anyone without the key is refused (as if absent) and logged. Counters
/// pass through unchanged.
pub struct Authenticated {
    inner: Arc<dyn Store>,
    key: hmac::Key,
}

impl Authenticated {
    /// Authenticates `inner`'s records under `key` (see [`records_key`]).
    pub fn new(inner: Arc<dyn Store>, key: hmac::Key) -> Self {
        Self { inner, key }
    }

    fn tag(&self, collection: &str, id: &str, value: &str) -> String {
        let mut context = hmac::Context::with_key(&self.key);
        for part in [collection.as_bytes(), id.as_bytes(), value.as_bytes()] {
            context.update(&(part.len() as u64).to_be_bytes());
            context.update(part);
        }
        data_encoding::BASE64URL_NOPAD.encode(context.sign().as_ref())
    }

    fn seal(&self, collection: &str, id: &str, value: &str) -> String {
        format!("{RECORD_FORMAT}{}.{value}", self.tag(collection, id, value))
    }

    /// The value of a stored record whose MAC holds.
    fn open(&self, collection: &str, id: &str, stored: &str) -> Option<String> {
        let opened = stored
            .strip_prefix(RECORD_FORMAT)
            .and_then(|rest| rest.split_once('.'))
            .filter(|(tag, value)| {
                aws_lc_rs::constant_time::verify_slices_are_equal(
                    tag.as_bytes(),
                    self.tag(collection, id, value).as_bytes(),
                )
                .is_ok()
            })
            .map(|(_, value)| value.to_owned());
        if opened.is_none() {
            let why = if stored.starts_with(RECORD_FORMAT) {
                "its MAC does not hold (rewritten outside regauth, or sealed under another refresh key)"
            } else {
                "it carries no MAC (written by an earlier version of regauth before the upgrade, or by someone else)"
            };
            tracing::warn!(
                target: "regauth::audit",
                event = "state_record_refused",
                backend = self.inner.backend(),
                collection,
                id = %crate::audit::Safe(id),
                "a stored record is refused: {why}"
            );
        }
        opened
    }

    /// The records of `collection` that carry no MAC (what an earlier
    /// version wrote, or someone else), as (id, value).
    pub async fn unsigned(&self, collection: &str) -> Result<Vec<(String, String)>, StoreError> {
        Ok(self
            .inner
            .records(collection)
            .await?
            .into_iter()
            .filter(|(_, stored)| !stored.starts_with(RECORD_FORMAT))
            .collect())
    }

    /// Signs one unsigned record, if it still holds `value`; whether it did.
    pub async fn sign(&self, collection: &str, id: &str, value: &str) -> Result<bool, StoreError> {
        let sealed = self.seal(collection, id, value);
        self.inner
            .swap_record(collection, id, Some(value), &sealed)
            .await
    }
}

#[async_trait]
impl Store for Authenticated {
    fn backend(&self) -> &'static str {
        self.inner.backend()
    }
    async fn take(&self, key: &str, limit: u32, window: Duration) -> Result<bool, StoreError> {
        self.inner.take(key, limit, window).await
    }
    async fn give_back(&self, key: &str) -> Result<(), StoreError> {
        self.inner.give_back(key).await
    }
    async fn add(&self, key: &str, window: Duration) -> Result<(), StoreError> {
        self.inner.add(key, window).await
    }
    async fn count(&self, key: &str) -> Result<u32, StoreError> {
        self.inner.count(key).await
    }
    async fn clear(&self, key: &str) -> Result<(), StoreError> {
        self.inner.clear(key).await
    }
    async fn ping(&self) -> Result<(), StoreError> {
        self.inner.ping().await
    }
    async fn put_record(&self, collection: &str, id: &str, value: &str) -> Result<(), StoreError> {
        let sealed = self.seal(collection, id, value);
        self.inner.put_record(collection, id, &sealed).await
    }
    async fn put_records(
        &self,
        collection: &str,
        entries: &[(String, String)],
    ) -> Result<(), StoreError> {
        let sealed: Vec<(String, String)> = entries
            .iter()
            .map(|(id, value)| (id.clone(), self.seal(collection, id, value)))
            .collect();
        self.inner.put_records(collection, &sealed).await
    }
    async fn swap_record(
        &self,
        collection: &str,
        id: &str,
        expected: Option<&str>,
        value: &str,
    ) -> Result<bool, StoreError> {
        // The MAC is deterministic: the expected value sealed is what the
        // backend holds, if it holds it.
        let expected = expected.map(|e| self.seal(collection, id, e));
        let sealed = self.seal(collection, id, value);
        self.inner
            .swap_record(collection, id, expected.as_deref(), &sealed)
            .await
    }
    async fn get_record(&self, collection: &str, id: &str) -> Result<Option<String>, StoreError> {
        Ok(self
            .inner
            .get_record(collection, id)
            .await?
            .and_then(|stored| self.open(collection, id, &stored)))
    }
    async fn delete_record(&self, collection: &str, id: &str) -> Result<bool, StoreError> {
        self.inner.delete_record(collection, id).await
    }
    async fn records(&self, collection: &str) -> Result<Vec<(String, String)>, StoreError> {
        Ok(self
            .inner
            .records(collection)
            .await?
            .into_iter()
            .filter_map(|(id, stored)| {
                let value = self.open(collection, &id, &stored)?;
                Some((id, value))
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
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
}
