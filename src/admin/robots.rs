//! `regauth robots list|revoke`, and the robots `regauth check` reports:
//! team robots read and revoked straight in the state backend, so that a
//! platform team can act without the page (a leaked secret, a team gone).

use std::sync::Arc;
use std::time::Duration;

use regauth_providers::{GroupAnswer, IdentityProvider};

use crate::app_passwords::robots::{every_robot, revoke_robot_in};
use crate::app_passwords::AppPassword;
use crate::config::{Config, TeamGroup};
use crate::ops::audit::Safe;
use crate::refresh::Ledger;
use crate::state::{Store, StoreError};

/// Every team robot that has not expired, newest first.
pub async fn list(store: &dyn Store) -> Result<Vec<AppPassword>, StoreError> {
    every_robot(store).await
}

/// Revokes one robot, by its id or its login name (`robot$team+name`):
/// it stops working on every replica within `cache.verdict_ttl`. `None`
/// when there is no such robot. `refresh_lifetime` is the ledger's
/// horizon, as for `regauth tokens revoke`.
pub async fn revoke(
    store: Arc<dyn Store>,
    refresh_lifetime: Duration,
    which: &str,
) -> Result<Option<AppPassword>, StoreError> {
    let ledger = Ledger::new(store.clone(), refresh_lifetime);
    revoke_robot_in(store.as_ref(), &ledger, which).await
}

/// One robot as the command line shows it: id, login name, team, expiry,
/// scope, and who made it.
pub fn line(robot: &AppPassword) -> String {
    let team = robot.team();
    let scope: Vec<String> = robot
        .limit
        .iter()
        .map(|l| format!("{} {}", l.repos, l.actions.join(",")))
        .collect();
    format!(
        "{}  {}  team {}:{}  expires {}  scope {}  made by {}",
        robot.id,
        Safe(&robot.subject),
        robot.provider,
        Safe(team.map_or("", |t| t.group.as_str())),
        crate::clock::rfc3339(i64::try_from(robot.expires).unwrap_or(i64::MAX)),
        Safe(&scope.join("; ")),
        Safe(team.map_or("", |t| t.made_by.as_str())),
    )
}

/// What `provider` says of `group` now, or why it could not say.
async fn asked(
    providers: &[Arc<dyn IdentityProvider>],
    provider: &str,
    group: &str,
) -> Result<GroupAnswer, String> {
    let Some(p) = providers.iter().find(|p| p.name() == provider) else {
        return Err(format!("no provider is named {provider}"));
    };
    match tokio::time::timeout(Duration::from_secs(10), p.group(group)).await {
        Ok(answer) => answer.map_err(|e| e.to_string()),
        Err(_) => Err("no answer within 10s".to_owned()),
    }
}

/// A warning for each team whose group its directory does not have
/// (none of its robots can be made or log in), each robot whose group is
/// gone or was made again since (another id), and each group that could
/// not be asked.
pub async fn orphaned(
    teams: &[TeamGroup],
    robots: &[AppPassword],
    providers: &[Arc<dyn IdentityProvider>],
) -> Vec<String> {
    let mut groups: Vec<(String, String)> = teams
        .iter()
        .map(|t| (t.provider.clone(), t.group.clone()))
        .collect();
    for robot in robots {
        if let Some(team) = robot.team() {
            groups.push((robot.provider.clone(), team.group.clone()));
        }
    }
    groups.sort();
    groups.dedup();
    let mut said = Vec::new();
    for (provider, group) in groups {
        let answer = asked(providers, &provider, &group).await;
        let theirs = robots
            .iter()
            .filter(|r| r.provider == provider && r.team().is_some_and(|t| t.group == group));
        match answer {
            Err(e) => said.push(format!(
                "team {provider}:{}: could not ask whether the group exists: {e}",
                Safe(&group)
            )),
            Ok(GroupAnswer::Gone) => {
                said.push(format!(
                    "team {provider}:{}: the directory has no such group, so its robots can be neither made nor used",
                    Safe(&group)
                ));
                for robot in theirs {
                    said.push(format!(
                        "robot {} ({}): its group is gone from the directory; revoke it with `regauth robots revoke {}`",
                        Safe(&robot.subject),
                        robot.id,
                        robot.id
                    ));
                }
            }
            Ok(GroupAnswer::Exists(Some(id))) => {
                for robot in theirs.filter(|r| {
                    r.team()
                        .and_then(|t| t.group_id.as_ref())
                        .is_some_and(|made| *made != id)
                }) {
                    said.push(format!(
                        "robot {} ({}): its group was deleted and made again, so it no longer logs in",
                        Safe(&robot.subject),
                        robot.id
                    ));
                }
            }
            Ok(_) => {}
        }
    }
    said
}

/// The configuration's state backend, when team robots are on.
fn robots_state(config: &Config) -> Result<Arc<dyn Store>, String> {
    if config
        .app_passwords
        .as_ref()
        .is_none_or(|a| a.robots.is_none())
    {
        return Err("team robots are not configured ([robots])".into());
    }
    crate::app::open_state(config).map_err(|e| e.to_string())
}

/// `regauth robots list`: a line per robot, a warning per robot whose
/// group is gone, and the count.
pub async fn list_command(
    config: &Config,
    providers: &[Arc<dyn IdentityProvider>],
) -> Result<Vec<String>, String> {
    let store = robots_state(config)?;
    let robots = list(store.as_ref())
        .await
        .map_err(|e| format!("the {} state backend: {e}", store.backend()))?;
    let mut lines: Vec<String> = robots.iter().map(line).collect();
    for warning in orphaned(&configured_teams(config), &robots, providers).await {
        lines.push(format!("warning: {warning}"));
    }
    lines.push(format!("{} robot(s)", robots.len()));
    Ok(lines)
}

/// `regauth robots revoke ROBOT`: what was revoked.
pub async fn revoke_command(config: &Config, which: &str) -> Result<Vec<String>, String> {
    let store = robots_state(config)?;
    let backend = store.backend();
    match revoke(store, config.refresh.lifetime, which).await {
        Ok(Some(r)) => Ok(vec![format!(
            "revoked {} ({}); it stops working within cache.verdict_ttl",
            Safe(&r.subject),
            r.id
        )]),
        Ok(None) => Err(format!("no robot {which}")),
        Err(e) => Err(format!("the {backend} state backend: {e}")),
    }
}

/// The teams `[robots]` names.
fn configured_teams(config: &Config) -> Vec<TeamGroup> {
    config
        .app_passwords
        .as_ref()
        .and_then(|a| a.robots.as_ref())
        .map(|r| r.teams.keys().cloned().collect())
        .unwrap_or_default()
}

/// What `regauth check` says about team robots, when they are on: each
/// team whose group the directory does not have, and each robot whose
/// group is gone or was made again, once the state can be read (before
/// the first start there is none to read).
pub async fn check_warnings(
    config: &Config,
    providers: &[Arc<dyn IdentityProvider>],
) -> Vec<String> {
    let teams = configured_teams(config);
    if teams.is_empty() {
        return Vec::new();
    }
    let robots = if config.refresh.key_file.exists() {
        match robots_state(config) {
            Ok(store) => list(store.as_ref()).await.map_err(|e| e.to_string()),
            Err(e) => Err(e),
        }
    } else {
        Ok(Vec::new())
    };
    match robots {
        Ok(robots) => orphaned(&teams, &robots, providers).await,
        Err(e) => vec![format!("team robots could not be read: {e}")],
    }
}
