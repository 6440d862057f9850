//! `regauth robots list|revoke`, and the robots `regauth check` reports:
//! team robots read and revoked straight in the state backend, so that a
//! platform team can act without the page (a leaked secret, a team gone).

use std::sync::Arc;
use std::time::Duration;

use regauth_providers::IdentityProvider;

use crate::app_passwords::robots::{every_robot, revoke_robot_in};
use crate::app_passwords::AppPassword;
use crate::config::Config;
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

/// The robots whose group its provider says is gone (they can no longer
/// log in), each as a warning; and the groups that could not be asked.
pub async fn orphaned(
    robots: &[AppPassword],
    providers: &[Arc<dyn IdentityProvider>],
) -> Vec<String> {
    let mut said = Vec::new();
    let mut asked: Vec<(String, String, Result<Option<bool>, String>)> = Vec::new();
    for robot in robots {
        let Some(team) = robot.team() else { continue };
        let known = asked
            .iter()
            .find(|(p, g, _)| *p == robot.provider && *g == team.group)
            .map(|(_, _, answer)| answer.clone());
        let answer = match known {
            Some(answer) => answer,
            None => {
                let answer = match providers.iter().find(|p| p.name() == robot.provider) {
                    None => Ok(Some(false)),
                    Some(p) => {
                        tokio::time::timeout(Duration::from_secs(10), p.group_exists(&team.group))
                            .await
                            .map_err(|_| "no answer within 10s".to_owned())
                            .and_then(|r| r.map_err(|e| e.to_string()))
                    }
                };
                asked.push((robot.provider.clone(), team.group.clone(), answer.clone()));
                answer
            }
        };
        match answer {
            Ok(Some(false)) => said.push(format!(
                "robot {} ({}): its group {}:{} is gone from the directory, so it no longer logs in; revoke it with `regauth robots revoke {}`",
                Safe(&robot.subject),
                robot.id,
                robot.provider,
                Safe(&team.group),
                robot.id
            )),
            Ok(_) => {}
            Err(e) => said.push(format!(
                "robot {}: could not ask {} whether group {} exists: {e}",
                Safe(&robot.subject),
                robot.provider,
                Safe(&team.group)
            )),
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
    for warning in orphaned(&robots, providers).await {
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
            r.subject, r.id
        )]),
        Ok(None) => Err(format!("no robot {which}")),
        Err(e) => Err(format!("the {backend} state backend: {e}")),
    }
}

/// What `regauth check` says about team robots: those whose group is
/// gone, when robots are on and the state can be read (before the first
/// start there is none to read).
pub async fn check_warnings(
    config: &Config,
    providers: &[Arc<dyn IdentityProvider>],
) -> Vec<String> {
    if config
        .app_passwords
        .as_ref()
        .is_none_or(|a| a.robots.is_none())
        || !config.refresh.key_file.exists()
    {
        return Vec::new();
    }
    let robots = match robots_state(config) {
        Ok(store) => list(store.as_ref()).await.map_err(|e| e.to_string()),
        Err(e) => Err(e),
    };
    match robots {
        Ok(robots) => orphaned(&robots, providers).await,
        Err(e) => vec![format!("team robots could not be read: {e}")],
    }
}
