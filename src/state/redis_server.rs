//! The Redis backend: one server (or a Sentinel-managed primary) that
//! every replica shares; counters and records by Lua scripts.

use std::time::Duration;

use async_trait::async_trait;
use redis::aio::ConnectionManager;

use super::{Counters, Records, Store, StoreError};
use crate::config::RedisConfig;

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

    async fn ping(&self) -> Result<(), StoreError> {
        let mut connection = self.connection.clone();
        self.run::<String>("PING", redis::cmd("PING").query_async(&mut connection))
            .await
            .map(drop)
    }
}

#[async_trait]
impl Counters for Redis {
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
}

#[async_trait]
impl Records for Redis {
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
