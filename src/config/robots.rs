//! `[robots]`: team robots, the CI credentials that belong to a group
//! rather than a person, as the file gives them and validated. They live
//! beside app passwords (the same key, records and page), so the section
//! needs `[app_passwords]`.

use std::collections::BTreeMap;
use std::time::Duration;

use regauth_providers::Seconds;
use serde::Deserialize;

use super::error::{invalid, ConfigError};

/// `[robots]` as the file gives it.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct RawRobots {
    pub(crate) default_lifetime: Seconds,
    pub(crate) max_lifetime: Seconds,
    pub(crate) max_overlap: Seconds,
    pub(crate) max_per_team: usize,
    /// `provider:group` of a team → the `provider:group`s whose members
    /// manage its robots.
    pub(crate) admin_groups: BTreeMap<String, Vec<String>>,
}

impl Default for RawRobots {
    fn default() -> Self {
        let days = |d: u64| Seconds(Duration::from_secs(d * 86400));
        Self {
            default_lifetime: days(90),
            max_lifetime: days(365),
            max_overlap: days(7),
            max_per_team: 50,
            admin_groups: BTreeMap::new(),
        }
    }
}

/// A group of a provider, as rules name it (`ldap:platform`).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct TeamGroup {
    /// The provider's name.
    pub provider: String,
    /// The group, as the provider's identities name it.
    pub group: String,
}

impl TeamGroup {
    /// The team in its robots' login names (`robot$<label>+ci`): the
    /// group in lower case, with what is not a letter, digit, `.`, `_` or
    /// `-` as `-`. Two configured teams never share one.
    pub fn label(&self) -> String {
        self.group
            .chars()
            .map(|c| match c.to_ascii_lowercase() {
                c @ ('a'..='z' | '0'..='9' | '.' | '_' | '-') => c,
                _ => '-',
            })
            .collect()
    }
}

impl std::fmt::Display for TeamGroup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.provider, self.group)
    }
}

/// Team robots (`[robots]`).
#[derive(Clone, Debug)]
pub struct RobotsConfig {
    /// The expiry the page proposes (`default_lifetime`).
    pub default_lifetime: Duration,
    /// The longest expiry allowed (`max_lifetime`).
    pub max_lifetime: Duration,
    /// The longest a rotated secret may keep working (`max_overlap`).
    pub max_overlap: Duration,
    /// How many robots one team may have (`max_per_team`).
    pub max_per_team: usize,
    /// The teams that may have robots, each with the groups whose members
    /// manage them (`admin_groups`).
    pub teams: BTreeMap<TeamGroup, Vec<TeamGroup>>,
}

impl RobotsConfig {
    /// The configured team `provider:group`, if it is one.
    pub fn team(&self, provider: &str, group: &str) -> Option<&TeamGroup> {
        self.teams
            .keys()
            .find(|t| t.provider == provider && t.group == group)
    }
}

fn key(name: &str) -> String {
    format!("robots.{name}")
}

/// `[robots]`, checked: lifetimes, and teams and admin groups of
/// configured providers. `providers` are the configured providers' names.
pub(crate) fn validate_robots(
    origin: &str,
    raw: RawRobots,
    providers: &[&str],
) -> Result<RobotsConfig, ConfigError> {
    let day = Duration::from_secs(86400);
    if raw.max_lifetime.0 < day || raw.default_lifetime.0 < day {
        return Err(invalid(origin, key("max_lifetime"), "must be at least 1d"));
    }
    if raw.default_lifetime.0 > raw.max_lifetime.0 {
        return Err(invalid(
            origin,
            key("default_lifetime"),
            "must not be longer than max_lifetime",
        ));
    }
    if raw.max_overlap.0 > raw.max_lifetime.0 {
        return Err(invalid(
            origin,
            key("max_overlap"),
            "must not be longer than max_lifetime",
        ));
    }
    if raw.max_per_team == 0 || raw.max_per_team > 1000 {
        return Err(invalid(origin, key("max_per_team"), "must be 1 to 1000"));
    }
    let teams = teams(origin, raw.admin_groups, providers)?;
    Ok(RobotsConfig {
        default_lifetime: raw.default_lifetime.0,
        max_lifetime: raw.max_lifetime.0,
        max_overlap: raw.max_overlap.0,
        max_per_team: raw.max_per_team,
        teams,
    })
}

/// `robots.admin_groups`: at least one team, each `provider:group` of a
/// configured provider, with admin groups the same, and no two teams
/// whose robots' names would meet.
fn teams(
    origin: &str,
    admin_groups: BTreeMap<String, Vec<String>>,
    providers: &[&str],
) -> Result<BTreeMap<TeamGroup, Vec<TeamGroup>>, ConfigError> {
    if admin_groups.is_empty() {
        return Err(invalid(
            origin,
            key("admin_groups"),
            "name at least one team: \"provider:group\" = [\"provider:admin-group\"]",
        ));
    }
    let mut teams = BTreeMap::new();
    for (team, admins) in admin_groups {
        let path = format!("robots.admin_groups.\"{team}\"");
        let parsed = team_group(&team, providers).ok_or_else(|| {
            invalid(
                origin,
                path.clone(),
                "a team is provider:group, with a configured provider",
            )
        })?;
        let admins = admins
            .iter()
            .enumerate()
            .map(|(i, a)| {
                team_group(a, providers).ok_or_else(|| {
                    invalid(
                        origin,
                        format!("{path}[{i}]"),
                        format!("`{a}` must be provider:group, with a configured provider"),
                    )
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        if let Some(other) = teams
            .keys()
            .find(|t: &&TeamGroup| t.label() == parsed.label())
        {
            return Err(invalid(
                origin,
                path,
                format!(
                    "its robots would be named robot${}+… as those of {other}: teams need groups that differ in more than case, punctuation or provider",
                    parsed.label()
                ),
            ));
        }
        teams.insert(parsed, admins);
    }
    Ok(teams)
}

/// `provider:group` of a configured provider, with a group.
fn team_group(entry: &str, providers: &[&str]) -> Option<TeamGroup> {
    let (provider, group) = entry.split_once(':')?;
    (providers.contains(&provider) && !group.is_empty()).then(|| TeamGroup {
        provider: provider.to_owned(),
        group: group.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use crate::config::Config;

    const BASE: &str = r#"
        [token]
        issuer = "t"
        services = ["registry.test"]

        [[provider]]
        name = "local"
        kind = "static"
        [provider.users]
        a = "$2y$04$abcdefghijklmnopqrstuu5Ii6ai8nG1qJQ6kWmw0cIoHzbUPXbYu"
    "#;

    fn load(extra: &str) -> Result<Config, String> {
        Config::from_toml("t.toml", &format!("{BASE}\n{extra}"), &[]).map_err(|e| e.to_string())
    }

    #[test]
    fn robots_need_the_page_and_known_teams() {
        let page = "[app_passwords]\nlogin_form = [\"local\"]\n";
        let teams = "[robots.admin_groups]\n\"local:platform\" = [\"local:leads\"]\n";
        let config = load(&format!("{page}[robots]\n{teams}")).unwrap();
        let robots = config.app_passwords.unwrap().robots.unwrap();
        assert_eq!(robots.teams.len(), 1);
        assert!(robots.team("local", "platform").is_some());
        for (extra, said) in [
            (
                format!("[robots]\n{teams}"),
                "robots: team robots need [app_passwords]",
            ),
            (format!("{page}[robots]\n"), "robots.admin_groups"),
            (
                format!("{page}[robots.admin_groups]\n\"nobody:x\" = []\n"),
                "a team is provider:group",
            ),
            (
                format!("{page}[robots.admin_groups]\n\"local:x\" = [\"leads\"]\n"),
                "`leads` must be provider:group",
            ),
            (
                format!("{page}[robots]\nmax_lifetime = \"12h\"\n{teams}"),
                "robots.max_lifetime",
            ),
            (
                format!("{page}[robots]\nmax_overlap = \"400d\"\n{teams}"),
                "robots.max_overlap",
            ),
            (
                format!("{teams}\"local:Platform\" = []\n")
                    .replace("[robots.", &format!("{page}[robots.")),
                "as those of local:Platform",
            ),
        ] {
            let e = load(&extra).unwrap_err();
            assert!(e.contains(said), "{extra}: {e}");
        }
    }
}
