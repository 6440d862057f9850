//! Team robots: CI credentials that belong to a group, not a person.
//!
//! A robot is an app-password record with a [`Team`]: the same keyed
//! digest, state backend, revocation ledger and limit, so it has the
//! same guarantees. What differs is who it is and who manages it:
//!
//! - Its login name is `robot$<team>+<name>` ([`login_name`]); no
//!   provider's user may carry a name in `robot$` (the chain refuses
//!   them), so a robot never shares a name with a person.
//! - At each login it is a member of its group alone, at the group's
//!   provider, narrowed to its scope: the policy decides at the state of
//!   the rules now, so a rule that takes a right from the group takes it
//!   from the robot. Its maker plays no part: leaving changes nothing.
//! - The group gone from the directory (the provider says so) ends it.
//! - It is made, rotated and revoked on the page by members of the team's
//!   `robots.admin_groups`, or by platform admins
//!   (`app_passwords.admin_groups`), each action audited with by whom.
//! - A rotation may leave the old secret working for an overlap (at most
//!   `robots.max_overlap`): the pipeline's secret can be swapped without
//!   a failed build.

use std::fmt;
use std::time::Duration;

use regauth_providers::{
    Attachment, GroupAnswer, Identity, Kind, Outcome, Proof, Rejection, Renewal, SecretString,
    APP_PASSWORD_PREFIX, TEAM_ROBOT_PREFIX,
};
use serde::{Deserialize, Serialize};

use super::records::{end, random_base32, Made};
use super::{lock_key, unavailable, unix, AppPassword, AppPasswordError, AppPasswords, Limit};
use super::{Listed, Session, PASSWORDS};
use crate::config::{RobotsConfig, TeamGroup};
use crate::ops::audit::Safe;
use crate::state::StoreError;

/// The longest short name of a robot (`ci-nightly`).
pub const MAX_ROBOT_NAME: usize = 32;
/// The longest description.
pub const MAX_DESCRIPTION_CHARS: usize = 200;

/// What makes an app-password record a team's robot.
#[derive(Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Team {
    /// The group it belongs to, at the record's provider.
    pub group: String,
    /// What it is for.
    #[serde(default)]
    pub description: String,
    /// Who made it (`subject (provider)`), for the page and the audit.
    pub made_by: String,
    /// The directory's own id of the group when the robot was made
    /// (`entryUUID=…`): a group made again under the name has another,
    /// and ends the robot.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group_id: Option<String>,
    /// The secret a rotation replaced, while its overlap lasts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) previous: Option<Previous>,
}

/// A replaced secret's digest and when it stops working.
#[derive(Clone, Serialize, Deserialize, PartialEq, Eq)]
pub(super) struct Previous {
    digest: String,
    until: u64,
}

/// Everything but the replaced secret's digest.
impl fmt::Debug for Team {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Team")
            .field("group", &self.group)
            .field("description", &self.description)
            .field("made_by", &self.made_by)
            .field("group_id", &self.group_id)
            .field("overlap_until", &self.overlap_until())
            .finish()
    }
}

impl Team {
    /// Until when a rotated secret still works, if one does.
    pub fn overlap_until(&self) -> Option<u64> {
        self.previous.as_ref().map(|p| p.until)
    }
}

/// A team's robots, for the page.
#[derive(Debug)]
pub struct TeamRobots {
    /// The team.
    pub team: TeamGroup,
    /// Its robots, newest first.
    pub robots: Vec<Listed>,
    /// Its provider says the group is gone: its robots no longer log in.
    pub gone: bool,
}

/// What a new robot is made with.
pub struct NewRobot<'a> {
    /// The team it belongs to.
    pub team: &'a TeamGroup,
    /// Its short name (`ci`): lower-case letters, digits, `.`, `_`, `-`.
    pub name: &'a str,
    /// What it is for.
    pub description: &'a str,
    /// How long it lives.
    pub lifetime: Duration,
    /// The repositories and actions it may reach (within the group's).
    pub limit: &'a Limit,
    /// The client networks it works from (none: any).
    pub networks: &'a [ipnet::IpNet],
}

/// The name a robot logs in with: `robot$<team>+<name>`.
pub fn login_name(team: &TeamGroup, name: &str) -> String {
    format!("{TEAM_ROBOT_PREFIX}{}+{name}", team.label())
}

/// Whether `name` may be a robot's short name.
fn is_robot_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_ROBOT_NAME
        && name.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '_' | '-'))
}

/// Counts robot events for `/metrics`.
fn counted(event: &'static str) {
    crate::ops::metrics::robot_event(event);
}

impl AppPassword {
    /// The team robot this record is, if it is one.
    pub fn team(&self) -> Option<&Team> {
        self.team.as_ref()
    }

    /// One audit line about a team robot (never its secret): `event`
    /// (`robot_created`, `_rotated`, `_used`, `_revoked`) and `by` whom.
    pub fn robot_audit(&self, event: &'static str, by: &str) {
        let (group, made_by) = self
            .team
            .as_ref()
            .map_or(("", ""), |t| (t.group.as_str(), t.made_by.as_str()));
        tracing::info!(
            target: "regauth::audit",
            event,
            id = %self.id,
            robot = %Safe(&self.subject),
            team = %format_args!("{}:{}", self.provider, Safe(group)),
            expires = self.expires,
            made_by = %Safe(made_by),
            by = %Safe(by),
            "{}",
            event.replace('_', " ")
        );
        counted(event);
    }
}

/// Who did something on the page, as audit lines name them.
fn by(session: &Session) -> String {
    format!("{} ({})", session.subject, session.provider)
}

impl AppPasswords {
    /// `[robots]`, or why there are no robots.
    fn robots_config(&self) -> Result<&RobotsConfig, AppPasswordError> {
        self.config
            .robots
            .as_ref()
            .ok_or(AppPasswordError::NotFound)
    }

    /// The teams whose robots the session's user manages now: every
    /// configured team for a platform admin, else those one of whose
    /// `admin_groups` they are in (as their provider sees them now).
    pub async fn managed_teams(&self, session: &Session) -> Vec<TeamGroup> {
        let Some(robots) = &self.config.robots else {
            return Vec::new();
        };
        let Ok(now) = self
            .current(
                &session.provider,
                &session.subject,
                session.account.as_deref(),
            )
            .await
        else {
            return Vec::new();
        };
        let platform = self.is_admin(&now);
        robots
            .teams
            .iter()
            .filter(|(_, admins)| {
                platform
                    || admins
                        .iter()
                        .any(|a| a.provider == now.provider && now.groups.contains(&a.group))
            })
            .map(|(team, _)| team.clone())
            .collect()
    }

    /// The robots of the teams the session's user manages.
    pub async fn team_robots(
        &self,
        session: &Session,
    ) -> Result<Vec<TeamRobots>, AppPasswordError> {
        let teams = self.managed_teams(session).await;
        if teams.is_empty() {
            return Ok(Vec::new());
        }
        let all = self.listed(|p| p.team.is_some()).await?;
        let mut out = Vec::new();
        for team in teams {
            let gone = matches!(
                self.group_now(&team.provider, &team.group).await,
                Ok(GroupAnswer::Gone)
            );
            out.push(TeamRobots {
                robots: all
                    .iter()
                    .filter(|l| is_of(&l.password, &team))
                    .cloned()
                    .collect(),
                team,
                gone,
            });
        }
        Ok(out)
    }

    /// Makes a robot for a team the session's user manages now; audited.
    /// The secret is returned once and never stored.
    pub async fn create_robot(
        &self,
        session: &Session,
        new: NewRobot<'_>,
    ) -> Result<(AppPassword, SecretString), AppPasswordError> {
        let robots = self.robots_config()?;
        if !self.managed_teams(session).await.contains(new.team) {
            return Err(AppPasswordError::NotFound);
        }
        let name = new.name.trim();
        if !is_robot_name(name) {
            return Err(AppPasswordError::RobotName);
        }
        let description = new.description.trim();
        if description.chars().count() > MAX_DESCRIPTION_CHARS
            || description.chars().any(super::records::invisible)
        {
            return Err(AppPasswordError::Description);
        }
        if new.lifetime < Duration::from_secs(86400) || new.lifetime > robots.max_lifetime {
            return Err(AppPasswordError::Lifetime(
                (robots.max_lifetime.as_secs() / 86400).max(1),
            ));
        }
        if new.limit.reaches_nothing() {
            return Err(super::LimitError::Nothing.into());
        }
        if new.networks.len() > super::MAX_NETWORKS {
            return Err(AppPasswordError::Networks);
        }
        // One creation at a time on every replica: names stay unique and
        // `max_per_team` holds.
        let lock = lock_key("robot-create", "robots");
        self.hold(&lock).await?;
        let made = self
            .create_robot_held(session, &new, name, description)
            .await;
        self.release(&lock).await;
        if let Ok((robot, _)) = &made {
            robot.robot_audit("robot_created", &by(session));
        }
        made
    }

    async fn create_robot_held(
        &self,
        session: &Session,
        new: &NewRobot<'_>,
        name: &str,
        description: &str,
    ) -> Result<(AppPassword, SecretString), AppPasswordError> {
        let robots = self.robots_config()?;
        let subject = login_name(new.team, name);
        let all = self.listed(|p| p.team.is_some()).await?;
        if all
            .iter()
            .any(|l| l.password.subject.eq_ignore_ascii_case(&subject))
        {
            return Err(AppPasswordError::RobotTaken(subject));
        }
        let theirs = all.iter().filter(|l| is_of(&l.password, new.team)).count();
        if theirs >= robots.max_per_team {
            return Err(AppPasswordError::TooManyRobots(theirs));
        }
        // the group as its directory has it now: one it does not have is a
        // mistake to hear about now, not a robot that never logs in
        let group_id = match self.group_now(&new.team.provider, &new.team.group).await {
            Ok(GroupAnswer::Gone) => return Err(AppPasswordError::GroupGone(new.team.to_string())),
            Ok(GroupAnswer::Exists(id)) => id,
            Ok(GroupAnswer::Unknown) => None,
            Err(_) => return Err(AppPasswordError::GroupUnavailable),
        };
        let owner = Identity::new(subject, new.team.provider.clone());
        let made = Made {
            device: None,
            networks: new.networks,
            team: Some(Team {
                group: new.team.group.clone(),
                description: description.to_owned(),
                made_by: by(session),
                group_id,
                previous: None,
            }),
        };
        self.create_record(&owner, name, new.lifetime, new.limit, made)
            .await
    }

    /// Gives robot `id` a new secret, returned once; the old one keeps
    /// working for `overlap` (none: it stops at once, within the verdict
    /// TTL). Audited.
    pub async fn rotate_robot(
        &self,
        session: &Session,
        id: &str,
        overlap: Duration,
    ) -> Result<(AppPassword, SecretString), AppPasswordError> {
        let robots = self.robots_config()?;
        if overlap > robots.max_overlap {
            return Err(AppPasswordError::Overlap(
                robots.max_overlap.as_secs() / 3600,
            ));
        }
        self.managed_robot(session, id).await?;
        // written only over the record read here: a rotation or a
        // revocation meanwhile (on any replica) is never undone
        let text = self
            .store
            .get_record(PASSWORDS, id)
            .await?
            .ok_or(AppPasswordError::NotFound)?;
        let mut robot: AppPassword =
            serde_json::from_str(&text).map_err(|e| StoreError(e.to_string()))?;
        let secret = random_base32::<32>()?;
        let now = unix(crate::clock::now());
        let until = now.saturating_add(overlap.as_secs()).min(robot.expires);
        let old = std::mem::replace(&mut robot.digest, self.digest(id, &secret));
        if let Some(team) = robot.team.as_mut() {
            team.previous = (!overlap.is_zero()).then_some(Previous { digest: old, until });
        }
        let record = serde_json::to_string(&robot).map_err(|e| StoreError(e.to_string()))?;
        if !self
            .store
            .swap_record(PASSWORDS, id, Some(&text), &record)
            .await?
        {
            return Err(AppPasswordError::Busy);
        }
        robot.robot_audit("robot_rotated", &by(session));
        let text = format!("{APP_PASSWORD_PREFIX}{id}_{secret}");
        Ok((robot, SecretString::from(text)))
    }

    /// Revokes robot `id` of a team the session's user manages; audited.
    pub async fn revoke_robot(
        &self,
        session: &Session,
        id: &str,
    ) -> Result<AppPassword, AppPasswordError> {
        let robot = self.managed_robot(session, id).await?;
        end(self.store.as_ref(), &self.ledger, &robot).await?;
        robot.robot_audit("robot_revoked", &by(session));
        Ok(robot)
    }

    /// Robot `id`, if it is one of a team the session's user manages now.
    async fn managed_robot(
        &self,
        session: &Session,
        id: &str,
    ) -> Result<AppPassword, AppPasswordError> {
        let robot = self
            .find(id)
            .await?
            .filter(|p| p.team.is_some())
            .ok_or(AppPasswordError::NotFound)?;
        let teams = self.managed_teams(session).await;
        if !teams.iter().any(|t| is_of(&robot, t)) {
            return Err(AppPasswordError::NotFound);
        }
        Ok(robot)
    }

    /// Until when `secret` holds as the one a rotation of robot
    /// `password` replaced, if it is that secret and its overlap lasts.
    pub(super) fn robot_secret_holds(&self, password: &AppPassword, secret: &str) -> Option<u64> {
        let now = unix(crate::clock::now());
        password
            .team
            .as_ref()
            .and_then(|t| t.previous.as_ref())
            .filter(|p| now < p.until && self.secret_holds(&password.id, secret, &p.digest))
            .map(|p| p.until)
    }

    /// The longest a robot may live, for the record's second-line check.
    pub(super) fn robot_max_lifetime(&self) -> Option<Duration> {
        self.config.robots.as_ref().map(|r| r.max_lifetime)
    }

    /// Robot `password` logging in (its secret, expiry and name checked;
    /// a rotated secret's overlap ending `until`): its team still
    /// configured, its group still at its provider, a member of that group
    /// alone, narrowed to its scope. A group gone ends it for good: a group
    /// made again under the name is another group.
    pub(super) async fn robot_login(
        &self,
        password: &AppPassword,
        team: &Team,
        until: Option<u64>,
    ) -> Outcome {
        let refused = |why: String| {
            counted("robot_refused");
            Outcome::Rejected(Rejection::Other(why))
        };
        let configured = self
            .config
            .robots
            .as_ref()
            .and_then(|r| r.team(&password.provider, &team.group));
        if configured.is_none() {
            return refused(format!(
                "team {}:{} no longer has robots (robots.admin_groups)",
                password.provider,
                Safe(&team.group)
            ));
        }
        match self.group_now(&password.provider, &team.group).await {
            Ok(GroupAnswer::Gone) => {
                return refused(format!(
                    "the group {}:{} of robot {} is gone from its directory",
                    password.provider,
                    Safe(&team.group),
                    Safe(&password.subject)
                ))
            }
            Ok(GroupAnswer::Exists(Some(now)))
                if team.group_id.as_ref().is_some_and(|id| *id != now) =>
            {
                // another group under the name: this robot's ended for good
                if let Err(e) = end(self.store.as_ref(), &self.ledger, password).await {
                    return unavailable(e);
                }
                password.robot_audit("robot_revoked", "regauth: its group was made again");
                return refused(format!(
                    "the group {}:{} of robot {} was deleted and made again",
                    password.provider,
                    Safe(&team.group),
                    Safe(&password.subject)
                ));
            }
            Ok(_) => {}
            Err(outcome) => return outcome,
        }
        let Some(networks) = password.parsed_networks() else {
            return refused("the robot's record names a network that is not one".into());
        };
        self.record_use(&password.id);
        password.robot_audit("robot_used", "");
        let mut identity = robot_identity(password, team, networks);
        identity.expires_at = identity.expires_at.map(|e| until.map_or(e, |u| e.min(u)));
        Outcome::Authenticated(identity)
    }

    /// What `provider` says of group `group` now; an outcome when it
    /// cannot be asked.
    pub async fn group_now(&self, provider: &str, group: &str) -> Result<GroupAnswer, Outcome> {
        let Some(p) = self.providers.iter().find(|p| p.name() == provider) else {
            return Err(Outcome::Rejected(Rejection::Other(format!(
                "the robot's provider {provider} is no longer configured"
            ))));
        };
        match tokio::time::timeout(self.timeout, p.group(group)).await {
            Ok(Ok(answer)) => Ok(answer),
            Ok(Err(e)) => Err(unavailable(e)),
            Err(_) => Err(unavailable(format!(
                "{provider} did not say within {:?} whether the group exists",
                self.timeout
            ))),
        }
    }
}

/// Whether `password` is a robot of `team`.
fn is_of(password: &AppPassword, team: &TeamGroup) -> bool {
    password.provider == team.provider
        && password
            .team
            .as_ref()
            .is_some_and(|t| t.group == team.group)
}

/// A robot as it logs in: a robot of its group's provider, in that group
/// alone, proven by a token, never renewed, until its expiry, within its
/// scope and networks.
fn robot_identity(password: &AppPassword, team: &Team, networks: Vec<ipnet::IpNet>) -> Identity {
    let mut identity = Identity::new(password.subject.clone(), password.provider.clone())
        .with_groups([team.group.clone()]);
    identity.kind = Kind::Robot;
    identity.renewal = Renewal::Never;
    identity.proof = Proof::Token;
    identity.account_id = Some(format!("robot:{}", password.id));
    identity.expires_at = Some(password.expires);
    identity.attachment = Attachment::new(password.limit());
    identity.networks = networks;
    identity
}

/// Every robot in the state backend (for `regauth robots list`), newest
/// first, with expired ones left out.
pub async fn every_robot(store: &dyn crate::state::Store) -> Result<Vec<AppPassword>, StoreError> {
    let now = unix(crate::clock::now());
    let mut robots: Vec<AppPassword> = store
        .records(PASSWORDS)
        .await?
        .into_iter()
        .filter_map(|(_, text)| serde_json::from_str::<AppPassword>(&text).ok())
        .filter(|p| p.team.is_some() && p.expires > now)
        .collect();
    robots.sort_by_key(|p| std::cmp::Reverse(p.created));
    Ok(robots)
}

/// Revokes robot `id` (given by its id or its login name) straight in the
/// state backend, as `regauth robots revoke` does; audited. `None` when
/// there is no such robot.
pub async fn revoke_robot_in(
    store: &dyn crate::state::Store,
    ledger: &crate::refresh::Ledger,
    which: &str,
) -> Result<Option<AppPassword>, StoreError> {
    let which = which.trim();
    let found = every_robot(store)
        .await?
        .into_iter()
        .find(|p| p.id == which || p.subject.eq_ignore_ascii_case(which));
    let Some(robot) = found else {
        return Ok(None);
    };
    end(store, ledger, &robot).await?;
    robot.robot_audit("robot_revoked", "regauth robots revoke");
    Ok(Some(robot))
}

#[cfg(test)]
mod tests;
