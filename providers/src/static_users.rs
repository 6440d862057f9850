//! The `static` provider: users from an htpasswd-style file (bcrypt `$2y$`,
//! `$2b$`, `$2a$`, or argon2 PHC strings) with groups from the configuration.
//!
//! Hash verification is deliberately slow, so it runs on the blocking pool;
//! the server's verdict cache makes sure it runs once per TTL, not per
//! request. This module never logs a password or a hash.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;

use async_trait::async_trait;
use secrecy::ExposeSecret;
use serde::Deserialize;

use crate::{Credentials, Error, Identity, IdentityProvider, Kind, Outcome, Rejection};

/// `[[provider]] kind = "static"` as written in the configuration file.
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StaticConfig {
    /// htpasswd file: `user:hash` lines, `#` comments.
    pub htpasswd: Option<PathBuf>,
    /// Inline users (`name = "hash"`), merged with the file.
    pub users: BTreeMap<String, String>,
    /// group -> members.
    pub groups: BTreeMap<String, Vec<String>>,
    /// Service accounts for CI.
    pub robots: Vec<RobotConfig>,
    /// How long a login may wait for a free core to check its password
    /// before it is answered 503 (hash checks are deliberately slow and
    /// run at most one per core at a time).
    pub hash_queue_timeout: crate::Seconds,
}

impl Default for StaticConfig {
    fn default() -> Self {
        Self {
            htpasswd: None,
            users: BTreeMap::new(),
            groups: BTreeMap::new(),
            robots: Vec::new(),
            hash_queue_timeout: crate::Seconds(std::time::Duration::from_secs(2)),
        }
    }
}

/// A robot (CI service account): `[[provider.robots]]`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RobotConfig {
    /// `[a-z0-9._-]+`, so it survives shells and CI variables.
    pub name: String,
    /// bcrypt or argon2 hash of the robot's secret (`regauth hash-password`).
    pub secret: String,
    /// Groups the robot belongs to.
    #[serde(default)]
    pub groups: Vec<String>,
    /// Last valid day (`YYYY-MM-DD`, UTC); the robot is refused from the
    /// next day on.
    #[serde(default)]
    pub expires: Option<String>,
    /// The client networks it works from (`["10.20.0.0/16"]`, a CI
    /// subnet); none: any.
    #[serde(default)]
    pub networks: Vec<String>,
}

/// A stored bcrypt or argon2 hash: its text, at its exact length (an
/// htpasswd of 100k users keeps 100k of these), checked when parsed.
#[derive(Clone)]
struct PasswordHash(Box<str>);

/// What bcrypt hashes begin with (argon2's begin with `$argon2`).
const BCRYPT_PREFIXES: [&str; 3] = ["$2y$", "$2b$", "$2a$"];

impl PasswordHash {
    fn parse(hash: &str) -> Option<Self> {
        if BCRYPT_PREFIXES.iter().any(|p| hash.starts_with(p)) {
            // The bcrypt crate verifies all three variants: they are the
            // same algorithm for valid UTF-8 input.
            hash.parse::<bcrypt::HashParts>().ok()?;
        } else if hash.starts_with("$argon2") {
            argon2::PasswordHash::new(hash).ok()?;
        } else {
            return None;
        }
        Some(Self(hash.into()))
    }

    fn is_bcrypt(&self) -> bool {
        BCRYPT_PREFIXES.iter().any(|p| self.0.starts_with(p))
    }

    /// How expensive a check is, comparable within one kind of hash.
    fn cost(&self) -> (u8, u32) {
        let hash = &*self.0;
        if self.is_bcrypt() {
            return (0, hash.get(4..6).and_then(|c| c.parse().ok()).unwrap_or(0));
        }
        let cost = argon2::PasswordHash::new(hash)
            .ok()
            .and_then(|h| argon2::Params::try_from(&h).ok())
            .map_or(0, |p| p.m_cost().saturating_mul(p.t_cost()));
        (1, cost)
    }

    /// A short digest of the stored hash: it changes when the password
    /// does, and says nothing about the password or the hash.
    fn fingerprint(&self) -> String {
        let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, self.0.as_bytes());
        hex::encode(&digest.as_ref()[..8])
    }

    fn verify(&self, password: &str) -> bool {
        if self.is_bcrypt() {
            return bcrypt::verify(password, &self.0).unwrap_or(false);
        }
        use argon2::PasswordVerifier;
        match argon2::PasswordHash::new(&self.0) {
            Ok(parsed) => argon2::Argon2::default()
                .verify_password(password.as_bytes(), &parsed)
                .is_ok(),
            Err(_) => false,
        }
    }
}

/// Hashes a password for an htpasswd line (bcrypt `$2y$`, as `htpasswd -B`).
pub fn hash_bcrypt(password: &str, cost: u32) -> Result<String, Error> {
    bcrypt::hash(password, cost)
        .map(|h| h.replacen("$2b$", "$2y$", 1))
        .map_err(|e| Error::Internal(format!("bcrypt: {e}")))
}

/// A user or robot of the list. Most htpasswd users are a name and a hash
/// alone, so what only some have is boxed: a file of 100k users costs
/// little more than its names and hashes.
struct User {
    hash: PasswordHash,
    more: Option<Box<Details>>,
}

/// What a user of the list may have besides a hash.
struct Details {
    groups: Vec<String>,
    kind: Kind,
    /// Refused from this Unix time on, with the configured date for logs.
    expires: Option<(i64, String)>,
    /// The client networks it works from (none: any).
    networks: Vec<ipnet::IpNet>,
}

impl User {
    /// A user with `hash` and `groups`, nothing else.
    fn new(hash: PasswordHash, groups: Vec<String>) -> Self {
        let more = (!groups.is_empty()).then(|| {
            Box::new(Details {
                groups,
                kind: Kind::User,
                expires: None,
                networks: Vec::new(),
            })
        });
        Self { hash, more }
    }

    fn groups(&self) -> &[String] {
        self.more.as_ref().map_or(&[], |more| &more.groups)
    }

    fn expired(&self) -> Option<&str> {
        let now = crate::clock::unix_seconds() as i64;
        self.more
            .as_ref()?
            .expires
            .as_ref()
            .filter(|(at, _)| now >= *at)
            .map(|(_, day)| day.as_str())
    }

    fn identity(&self, subject: &str, provider: &str) -> Identity {
        let mut identity =
            Identity::new(subject, provider).with_groups(self.groups().iter().cloned());
        identity.credential_stamp = Some(self.hash.fingerprint());
        if let Some(more) = &self.more {
            identity.kind = more.kind;
            identity.expires_at = more.expires.as_ref().map(|(at, _)| *at as u64);
            identity.networks = more.networks.clone();
        }
        identity
    }
}

fn valid_robot_name(name: &str) -> bool {
    !name.is_empty()
        && name.bytes().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'_' | b'-')
        })
}

/// The first second after the last valid day.
fn expiry(day: &str) -> Option<i64> {
    let format = time::macros::format_description!("[year]-[month]-[day]");
    let date = time::Date::parse(day, &format).ok()?;
    Some(date.next_day()?.midnight().assume_utc().unix_timestamp())
}

/// Static users, loaded once at startup.
pub struct StaticUsers {
    name: String,
    users: HashMap<Box<str>, User>,
    /// Checked (and its answer ignored) for unknown usernames, so that an
    /// unknown user costs as long as a known one and names cannot be
    /// probed by timing.
    dummy: Option<PasswordHash>,
    queue_timeout: std::time::Duration,
}

/// At most one password hash check per core at a time, process-wide: a
/// flood of logins queues here (and times out) instead of occupying every
/// blocking thread.
fn hash_permits() -> &'static tokio::sync::Semaphore {
    static PERMITS: std::sync::OnceLock<tokio::sync::Semaphore> = std::sync::OnceLock::new();
    PERMITS.get_or_init(|| {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        tokio::sync::Semaphore::new(cores)
    })
}

/// Verifies `secret` against `hash` on a blocking thread, after waiting at
/// most `queue_timeout` for a free core. `None` when the queue is full.
async fn verify_bounded(
    hash: PasswordHash,
    secret: secrecy::SecretString,
    queue_timeout: std::time::Duration,
) -> Result<bool, Error> {
    let permit = tokio::time::timeout(queue_timeout, hash_permits().acquire())
        .await
        .map_err(|_| {
            Error::Upstream(format!(
                "password checks are queued for more than {queue_timeout:?}: too many logins at once"
            ))
        })?
        .map_err(|_| Error::Internal("the password check queue is closed".into()))?;
    let checked = tokio::task::spawn_blocking(move || {
        let _permit = permit;
        hash.verify(secret.expose_secret())
    })
    .await;
    checked.map_err(|_| Error::Internal("password check was cancelled".into()))
}

impl StaticUsers {
    /// Loads and validates the users. Errors name the file and line, never
    /// the hash.
    pub fn load(name: &str, config: &StaticConfig) -> Result<Self, Error> {
        let mut users = match &config.htpasswd {
            Some(path) => read_htpasswd(path)?,
            None => HashMap::new(),
        };
        for (user, hash) in &config.users {
            let hash = PasswordHash::parse(hash).ok_or_else(|| {
                Error::Config(format!(
                    "users.{user}: unsupported hash (use bcrypt or argon2)"
                ))
            })?;
            users.insert(user.as_str().into(), User::new(hash, Vec::new()));
        }
        let mut groups_of: HashMap<&str, Vec<String>> = HashMap::new();
        for (group, members) in &config.groups {
            for member in members {
                groups_of.entry(member).or_default().push(group.clone());
            }
        }
        for (user, entry) in users.iter_mut() {
            if let Some(mut groups) = groups_of.remove(&**user) {
                groups.sort();
                groups.dedup();
                *entry = User::new(entry.hash.clone(), groups);
            }
        }
        for (i, robot) in config.robots.iter().enumerate() {
            let entry = robot_of(i, robot, &users)?;
            users.insert(robot.name.as_str().into(), entry);
        }
        if let Some(member) = groups_of.keys().next() {
            tracing::warn!(
                provider = name,
                member,
                "group member has no password entry"
            );
        }
        // The costliest hash stands in for unknown users, so none is faster.
        let dummy = users
            .values()
            .max_by_key(|user| user.hash.cost())
            .map(|user| user.hash.clone());
        Ok(Self {
            name: name.to_owned(),
            users,
            dummy,
            queue_timeout: config.hash_queue_timeout.0,
        })
    }
}

/// The users of an htpasswd file, by name (a name given twice: the last
/// line counts). Read a line at a time, so a large file is never held
/// whole.
fn read_htpasswd(path: &std::path::Path) -> Result<HashMap<Box<str>, User>, Error> {
    use std::io::BufRead;
    let io_error = |source| Error::Io {
        path: path.display().to_string(),
        source,
    };
    let mut file = std::io::BufReader::new(std::fs::File::open(path).map_err(io_error)?);
    let mut users = HashMap::new();
    let mut line = String::new();
    for index in 0usize.. {
        line.clear();
        if file.read_line(&mut line).map_err(io_error)? == 0 {
            break;
        }
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let where_ = || format!("{}:{}", path.display(), index + 1);
        let (user, hash) = line
            .split_once(':')
            .ok_or_else(|| Error::Config(format!("{}: expected `user:hash`", where_())))?;
        let hash = PasswordHash::parse(hash).ok_or_else(|| {
            Error::Config(format!(
                "{}: user `{user}` has an unsupported hash (use bcrypt or argon2)",
                where_()
            ))
        })?;
        users.insert(user.into(), User::new(hash, Vec::new()));
    }
    users.shrink_to_fit();
    Ok(users)
}

/// The entry of `robots[i]`, checked against the users and robots before it.
fn robot_of(i: usize, robot: &RobotConfig, users: &HashMap<Box<str>, User>) -> Result<User, Error> {
    let key = |field: &str| format!("robots[{i}].{field}");
    if !valid_robot_name(&robot.name) {
        return Err(Error::Config(format!(
            "{}: `{}` must be [a-z0-9._-]+",
            key("name"),
            robot.name
        )));
    }
    if users.contains_key(robot.name.as_str()) {
        return Err(Error::Config(format!(
            "{}: `{}` is already a user or robot",
            key("name"),
            robot.name
        )));
    }
    let hash = PasswordHash::parse(&robot.secret).ok_or_else(|| {
        Error::Config(format!(
            "{}: unsupported hash (use bcrypt or argon2)",
            key("secret")
        ))
    })?;
    let expires = match &robot.expires {
        Some(day) => Some((
            expiry(day).ok_or_else(|| {
                Error::Config(format!(
                    "{}: `{day}` is not a date like 2027-01-31",
                    key("expires")
                ))
            })?,
            day.clone(),
        )),
        None => None,
    };
    let networks = robot
        .networks
        .iter()
        .enumerate()
        .map(|(j, text)| {
            crate::parse_network(text).ok_or_else(|| {
                Error::Config(format!(
                    "{}[{j}]: `{text}` is not a network like 10.20.0.0/16 or 2001:db8::/48",
                    key("networks")
                ))
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(User {
        hash,
        more: Some(Box::new(Details {
            groups: robot.groups.clone(),
            kind: Kind::Robot,
            expires,
            networks,
        })),
    })
}

#[async_trait]
impl IdentityProvider for StaticUsers {
    fn name(&self) -> &str {
        &self.name
    }

    fn kind(&self) -> crate::ProviderKind {
        crate::ProviderKind::Static
    }

    fn looks_up(&self) -> bool {
        true
    }

    /// Hashes checked here (bounded per core): no upstream to protect.
    fn checks_locally(&self) -> bool {
        true
    }

    /// A group exists while some user or robot of the list is in it.
    async fn group(&self, group: &str) -> Result<crate::GroupAnswer, crate::Error> {
        let known = self
            .users
            .values()
            .any(|u| u.groups().iter().any(|g| g == group));
        Ok(if known {
            crate::GroupAnswer::Exists(None)
        } else {
            crate::GroupAnswer::Gone
        })
    }

    async fn lookup(&self, subject: &str) -> Outcome {
        match self.users.get(subject) {
            Some(user) if user.expired().is_some() => Outcome::Rejected(Rejection::Expired),
            Some(user) => Outcome::Authenticated(user.identity(subject, &self.name)),
            None => Outcome::NotMine,
        }
    }

    async fn authenticate(&self, credentials: &Credentials) -> Outcome {
        // Refused the same way whether or not the user exists.
        if credentials.secret.expose_secret().is_empty() {
            return Outcome::Rejected(Rejection::EmptySecret);
        }
        let Some(user) = self.users.get(credentials.username.as_str()) else {
            // As slow as a known user, so that names cannot be probed.
            if let Some(dummy) = &self.dummy {
                let secret = credentials.secret.clone();
                if let Err(e) = verify_bounded(dummy.clone(), secret, self.queue_timeout).await {
                    return Outcome::Unavailable(e);
                }
            }
            return Outcome::NotMine;
        };
        let secret = credentials.secret.clone();
        match verify_bounded(user.hash.clone(), secret, self.queue_timeout).await {
            Ok(true) => match user.expired() {
                Some(day) => {
                    tracing::warn!(provider = %self.name, robot = %crate::Safe(&credentials.username), expired_after = day, "robot account expired; refusing it");
                    Outcome::Rejected(Rejection::Expired)
                }
                None => Outcome::Authenticated(user.identity(&credentials.username, &self.name)),
            },
            Ok(false) => Outcome::Rejected(Rejection::WrongSecret),
            Err(e) => Outcome::Unavailable(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn provider() -> StaticUsers {
        let bcrypt_hash = bcrypt::hash("p:a:ss wörd", 4).unwrap();
        let argon = {
            use argon2::password_hash::{PasswordHasher, SaltString};
            let salt = SaltString::encode_b64(b"regauth-test-salt").unwrap();
            argon2::Argon2::default()
                .hash_password(b"argon-pass", &salt)
                .unwrap()
                .to_string()
        };
        let config = StaticConfig {
            users: BTreeMap::from([
                ("alice".into(), bcrypt_hash.replacen("$2b$", "$2y$", 1)),
                ("bob".into(), argon),
            ]),
            groups: BTreeMap::from([("admins".into(), vec!["alice".into()])]),
            robots: vec![
                RobotConfig {
                    name: "ci-app".into(),
                    secret: bcrypt::hash("robot-secret", 4).unwrap(),
                    groups: vec!["ci".into()],
                    expires: Some("2999-12-31".into()),
                    networks: Vec::new(),
                },
                RobotConfig {
                    name: "ci-old".into(),
                    secret: bcrypt::hash("robot-secret", 4).unwrap(),
                    groups: vec![],
                    expires: Some("2020-01-01".into()),
                    networks: Vec::new(),
                },
            ],
            ..Default::default()
        };
        StaticUsers::load("local", &config).unwrap()
    }

    #[tokio::test]
    async fn bcrypt_2y_password_with_colons_and_unicode() {
        let p = provider();
        match p
            .authenticate(&Credentials::new("alice", "p:a:ss wörd"))
            .await
        {
            Outcome::Authenticated(id) => {
                assert_eq!(id.subject, "alice");
                assert_eq!(id.provider, "local");
                assert_eq!(id.groups, vec!["admins".to_string()]);
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[tokio::test]
    async fn htpasswd_lines_inline_users_and_groups() {
        let hash = |pw: &str| bcrypt::hash(pw, 4).unwrap();
        let path = std::env::temp_dir().join(format!("regauth-htpasswd-{}", std::process::id()));
        let file = format!(
            "# team\n\ncarol:{}\r\ndave:{}\ncarol:{}\n",
            hash("old"),
            hash("file"),
            hash("new")
        );
        std::fs::write(&path, file).unwrap();
        let config = StaticConfig {
            htpasswd: Some(path.clone()),
            users: BTreeMap::from([("dave".into(), hash("inline"))]),
            groups: BTreeMap::from([("ops".into(), vec!["carol".into(), "carol".into()])]),
            ..Default::default()
        };
        let p = StaticUsers::load("local", &config).unwrap();
        let login = |user: &'static str, pw: &'static str| {
            let p = &p;
            async move { p.authenticate(&Credentials::new(user, pw)).await }
        };
        match login("carol", "new").await {
            Outcome::Authenticated(id) => assert_eq!(id.groups, ["ops"], "the last line counts"),
            other => panic!("unexpected {other:?}"),
        }
        assert!(matches!(login("carol", "old").await, Outcome::Rejected(_)));
        assert!(matches!(
            login("dave", "inline").await,
            Outcome::Authenticated(_)
        ));
        assert!(matches!(login("dave", "file").await, Outcome::Rejected(_)));
        std::fs::write(&path, "carol\n").unwrap();
        let err = StaticUsers::load("local", &config)
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains(":1: expected `user:hash`"), "{err}");
        std::fs::remove_file(&path).unwrap();
    }

    #[tokio::test]
    async fn wrong_empty_and_unknown() {
        let p = provider();
        assert!(matches!(
            p.authenticate(&Credentials::new("alice", "p:a:ss word"))
                .await,
            Outcome::Rejected(Rejection::WrongSecret)
        ));
        assert!(matches!(
            p.authenticate(&Credentials::new("alice", "")).await,
            Outcome::Rejected(Rejection::EmptySecret)
        ));
        assert!(matches!(
            p.authenticate(&Credentials::new("mallory", "x")).await,
            Outcome::NotMine
        ));
    }

    #[tokio::test]
    async fn argon2_phc() {
        let p = provider();
        assert!(matches!(
            p.authenticate(&Credentials::new("bob", "argon-pass")).await,
            Outcome::Authenticated(_)
        ));
        assert!(matches!(
            p.authenticate(&Credentials::new("bob", "nope")).await,
            Outcome::Rejected(_)
        ));
    }

    #[tokio::test]
    async fn robots_are_robots_and_expire() {
        let p = provider();
        match p
            .authenticate(&Credentials::new("ci-app", "robot-secret"))
            .await
        {
            Outcome::Authenticated(id) => {
                assert_eq!(id.kind, Kind::Robot);
                assert_eq!(id.groups, ["ci"]);
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            p.authenticate(&Credentials::new("ci-old", "robot-secret"))
                .await,
            Outcome::Rejected(Rejection::Expired)
        ));
        assert!(matches!(
            p.authenticate(&Credentials::new("ci-old", "wrong")).await,
            Outcome::Rejected(Rejection::WrongSecret)
        ));
        assert!(matches!(
            p.lookup("ci-old").await,
            Outcome::Rejected(Rejection::Expired)
        ));
    }

    #[test]
    fn robot_names_and_dates_are_checked() {
        let robot = |name: &str, expires: &str| StaticConfig {
            robots: vec![RobotConfig {
                name: name.into(),
                secret: bcrypt::hash("x", 4).unwrap(),
                groups: vec![],
                expires: Some(expires.into()),
                networks: Vec::new(),
            }],
            ..Default::default()
        };
        for bad in ["CI", "ci app", "ci/app", "", "ci$"] {
            let err = StaticUsers::load("s", &robot(bad, "2030-01-01"))
                .err()
                .unwrap()
                .to_string();
            assert!(err.contains("robots[0].name"), "{err}");
        }
        let err = StaticUsers::load("s", &robot("ci", "31.12.2030"))
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("robots[0].expires"), "{err}");
        assert!(StaticUsers::load("s", &robot("ci.app_1-x", "2030-01-31")).is_ok());
        // networks: a network each, host bits clear
        let mut bound = robot("ci", "2030-01-31");
        bound.robots[0].networks = vec!["10.30.0.0/24".into(), "10.30.1.0/24x".into()];
        let err = StaticUsers::load("s", &bound).err().unwrap().to_string();
        assert!(err.contains("robots[0].networks[1]"), "{err}");
        bound.robots[0].networks = vec!["10.30.0.1/24".into()];
        let err = StaticUsers::load("s", &bound).err().unwrap().to_string();
        assert!(err.contains("robots[0].networks[0]"), "{err}");
    }

    #[test]
    fn unsupported_hash_names_the_user_not_the_hash() {
        let config = StaticConfig {
            users: BTreeMap::from([("eve".into(), "{SHA}secret-ish".into())]),
            ..Default::default()
        };
        let err = StaticUsers::load("local", &config)
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("eve"), "{err}");
        assert!(!err.contains("secret-ish"), "{err}");
    }

    #[test]
    fn all_bcrypt_prefixes_verify() {
        let hash = bcrypt::hash("pw", 4).unwrap();
        for prefix in ["$2y$", "$2b$", "$2a$"] {
            let h = PasswordHash::parse(&hash.replacen("$2b$", prefix, 1)).unwrap();
            assert!(h.verify("pw"), "{prefix}");
        }
    }
}
