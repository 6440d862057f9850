//! What every in-process test starts from: a temporary directory with a
//! generated signing key and a users file, the static users and their
//! rules, and the configuration around them as a [`TestConfig`], which a
//! test varies by key (`cache.verdict_ttl`) rather than by editing text.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use regauth::config::{Config, ConfigError};
use regauth::AppState;

use super::clock::Share;

pub const SERVICE: &str = "registry.test";
pub const ISSUER: &str = "regauth-test";

/// Test users: (name, password, groups).
pub const USERS: &[(&str, &str, &[&str])] = &[
    ("writer", "writer-pw", &["writers"]),
    ("reader", "reader-pw", &["readers"]),
    ("admin", "admin-pw", &[]),
    ("colon", "p:a:ss wörd", &["writers"]),
];

/// The static users' rules, qualified with their provider (`local:`) so
/// that tests can add other providers beside it.
pub const POLICY: &str = r#"
[[rule]]
groups = ["local:writers"]
repos = ["team/**", "public/**"]
actions = ["pull", "push"]

[[rule]]
groups = ["local:readers"]
repos = ["team/**"]
actions = ["pull"]

[[rule]]
anonymous = true
repos = ["public/**"]
actions = ["pull"]

[[rule]]
users = ["local:admin"]
repos = ["**"]
actions = ["*"]

[[rule]]
users = ["local:admin"]
type = "registry"
repos = ["catalog"]
actions = ["*"]
"#;

/// A temporary directory with a generated signing key and a users file.
pub struct Fixture {
    pub dir: tempfile::TempDir,
    pub key: PathBuf,
    pub cert: PathBuf,
    /// No other test moves regauth's clock while this one runs.
    _clock: Share,
}

impl Fixture {
    pub fn new() -> Self {
        Self::with_key(regauth::keys::KeyType::Es256)
    }

    pub fn with_key(kind: regauth::keys::KeyType) -> Self {
        let clock = Share::take();
        regauth_providers::install_crypto_provider();
        let dir = tempfile::tempdir().expect("tempdir");
        let key = dir.path().join("token.key");
        let cert = dir.path().join("token.crt");
        let (k, c) = regauth::keys::generate(kind, ISSUER, Duration::from_secs(3600))
            .expect("key generation");
        regauth::keys::write_key_files(&key, &cert, &k, &c, regauth::keys::IfExists::Refuse)
            .expect("write keys");
        let mut htpasswd = String::new();
        for (user, password, _) in USERS {
            let hash = regauth_providers::static_users::hash_bcrypt(password, 4).unwrap();
            htpasswd.push_str(&format!("{user}:{hash}\n"));
        }
        std::fs::write(dir.path().join("users.htpasswd"), htpasswd).unwrap();
        Self {
            dir,
            key,
            cert,
            _clock: clock,
        }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// The fixture's configuration with `extra` appended: the test's own
    /// providers, rules and sections. It listens on `127.0.0.1:0`.
    pub fn config(&self, extra: &str) -> TestConfig {
        TestConfig::parse(&self.config_text(extra))
    }

    /// regauth's state for [`Fixture::config`] with `extra`.
    pub fn state(&self, extra: &str) -> Arc<AppState> {
        self.config(extra).state()
    }

    fn config_text(&self, extra: &str) -> String {
        let mut groups = std::collections::BTreeMap::<&str, Vec<&str>>::new();
        for (user, _, gs) in USERS {
            for g in *gs {
                groups.entry(g).or_default().push(user);
            }
        }
        let groups: String = groups
            .iter()
            .map(|(g, members)| format!("{g} = {members:?}\n"))
            .collect();
        format!(
            r#"
[server]
listen = "127.0.0.1:0"

[token]
issuer = "{ISSUER}"
services = ["{SERVICE}"]
key = "{key}"
certificate = "{cert}"

[cache]
max_failures = 1000

[refresh_tokens]
state_dir = "{state}"
key_file = "{refresh_key}"

[[provider]]
name = "local"
kind = "static"
htpasswd = "{users}"

[provider.groups]
{groups}
{POLICY}
{extra}
"#,
            key = self.key.display(),
            cert = self.cert.display(),
            users = self.path("users.htpasswd").display(),
            state = self.path("data").display(),
            refresh_key = self.path("refresh.key").display(),
        )
    }
}

/// A complete configuration as a TOML document. A test names the keys it
/// varies (`.set("cache.verdict_ttl", "1s")`) with values of their TOML
/// type (`"1s"`, `3`, `false`, `vec!["0.0.0.0"]`); the same document
/// builds an in-process state and is the file that the `regauth` binary,
/// its subcommands and a reload read.
#[derive(Clone)]
pub struct TestConfig(toml::Table);

impl TestConfig {
    /// A configuration from complete TOML text.
    pub fn parse(text: &str) -> Self {
        Self(toml::from_str(text).unwrap_or_else(|e| panic!("test config is TOML: {e}\n{text}")))
    }

    /// Sets `key`, a path as regauth's errors name it (`server.listen`,
    /// `provider[0].htpasswd`, or `policy` at the top), creating its
    /// table if the configuration has none.
    pub fn set(mut self, key: &str, value: impl Into<toml::Value>) -> Self {
        let (tables, name) = key.rsplit_once('.').unwrap_or(("", key));
        let mut table = &mut self.0;
        for part in tables.split('.').filter(|p| !p.is_empty()) {
            let (part, index) = match part.strip_suffix(']').and_then(|p| p.split_once('[')) {
                Some((part, index)) => (part, Some(index.parse::<usize>().unwrap())),
                None => (part, None),
            };
            let mut node = table
                .entry(part)
                .or_insert_with(|| toml::Table::new().into());
            if let Some(index) = index {
                node = node
                    .as_array_mut()
                    .and_then(|items| items.get_mut(index))
                    .unwrap_or_else(|| panic!("no `{part}[{index}]` for `{key}`"));
            }
            table = node
                .as_table_mut()
                .unwrap_or_else(|| panic!("`{part}` in `{key}` is not a table"));
        }
        table.insert(name.to_owned(), value.into());
        self
    }

    /// Listens on `addr` (a port found free, for configurations that must
    /// name it).
    pub fn listen(self, addr: std::net::SocketAddr) -> Self {
        self.set("server.listen", addr.to_string())
    }

    pub fn text(&self) -> String {
        toml::to_string(&self.0).expect("a TOML table serializes")
    }

    /// Writes the configuration to `path`, for the `regauth` binary, its
    /// subcommands and reloads.
    pub fn write(&self, path: &Path) {
        std::fs::write(path, self.text()).unwrap();
    }

    /// The configuration as regauth validates it.
    pub fn load(&self) -> Result<Config, ConfigError> {
        Config::from_toml("test", &self.text(), &[])
    }

    /// regauth's state for this configuration.
    pub fn state(&self) -> Arc<AppState> {
        regauth::build(self.load().expect("valid test config")).expect("state")
    }
}
