//! The team robots' page (`/ui/robots`): the robots of the teams the
//! signed-in user manages, a form that makes one (its secret shown once,
//! with its `docker login` line), and rotation and revocation per robot.
//! Like the rest of the page, the handlers parse, call one
//! [`crate::app_passwords::robots`] function and render.

use std::time::Duration;

use askama::Template;
use axum::extract::Path;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use regauth_providers::{ExposeSecret, SecretString};
use serde::Deserialize;

use super::error::PageError;
use super::extract::{HasCsrf, Page, Posted, SignedIn};
use super::pages::{day, render, scope_of};
use super::MadeFields;
use crate::app_passwords::robots::{NewRobot, TeamRobots};
use crate::app_passwords::{AppPassword, AppPasswordError, Session};

/// The robots page.
#[derive(Template)]
#[template(path = "ui/robots.html")]
struct RobotsPage<'a> {
    base: &'a str,
    csrf: &'a str,
    teams: Vec<TeamRows>,
    default_days: u64,
    max_days: u64,
    max_overlap_hours: u64,
    error: Option<String>,
}

/// A team and its robots, as the page shows them.
struct TeamRows {
    /// `provider:group`.
    team: String,
    robots: Vec<RobotRow>,
    /// The group is gone from its directory.
    gone: bool,
}

/// One robot as the page shows it.
struct RobotRow {
    id: String,
    login: String,
    description: String,
    made_by: String,
    created: String,
    last_used: String,
    expires: String,
    scope: String,
    /// When its rotated secret stops working, if one still does.
    overlap: String,
}

/// A robot's secret, shown this once.
#[derive(Template)]
#[template(path = "ui/robot_created.html")]
struct RobotSecret<'a> {
    base: &'a str,
    login: &'a str,
    registry: &'a str,
    secret: &'a str,
    expires: String,
    rotated: bool,
    overlap: String,
}

fn team_rows(teams: Vec<TeamRobots>) -> Vec<TeamRows> {
    teams
        .into_iter()
        .map(|t| TeamRows {
            gone: t.gone,
            team: t.team.to_string(),
            robots: t
                .robots
                .into_iter()
                .map(|listed| {
                    let p = listed.password;
                    let team = p.team().cloned();
                    RobotRow {
                        scope: scope_of(&p),
                        id: p.id,
                        login: p.subject,
                        description: team
                            .as_ref()
                            .map(|t| t.description.clone())
                            .unwrap_or_default(),
                        made_by: team.as_ref().map(|t| t.made_by.clone()).unwrap_or_default(),
                        created: day(p.created),
                        last_used: listed.last_used.map_or_else(|| "never".to_owned(), day),
                        expires: day(p.expires),
                        overlap: team
                            .and_then(|t| t.overlap_until())
                            .filter(|until| *until > crate::clock::now().max(0) as u64)
                            .map(day)
                            .unwrap_or_default(),
                    }
                })
                .collect(),
        })
        .collect()
}

/// The robots page of a signed-in user, with `error` beside the form.
async fn robots_page(
    page: &Page,
    session: &Session,
    status: StatusCode,
    error: Option<String>,
) -> Result<Response, PageError> {
    let Some(config) = page.passwords.config.robots.as_ref() else {
        return Err(AppPasswordError::NotFound.into());
    };
    let teams = page.passwords.team_robots(session).await?;
    Ok(render(
        status,
        &RobotsPage {
            base: page.path(),
            csrf: session.csrf(),
            teams: team_rows(teams),
            default_days: config.default_lifetime.as_secs() / 86400,
            max_days: (config.max_lifetime.as_secs() / 86400).max(1),
            max_overlap_hours: config.max_overlap.as_secs() / 3600,
            error,
        },
    ))
}

pub(super) async fn list(page: Page, SignedIn(session): SignedIn) -> Result<Response, PageError> {
    robots_page(&page, &session, StatusCode::OK, None).await
}

#[derive(Deserialize)]
pub(super) struct CreateForm {
    #[serde(default)]
    csrf: String,
    /// `provider:group`.
    #[serde(default)]
    team: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    description: String,
    /// Its expiry and scope: repository patterns are required.
    #[serde(flatten)]
    made: MadeFields,
}

impl HasCsrf for CreateForm {
    fn csrf(&self) -> &str {
        &self.csrf
    }
}

pub(super) async fn create(page: Page, posted: Posted<CreateForm>) -> Result<Response, PageError> {
    let Posted { session, form } = posted;
    let again = |error: String| robots_page(&page, &session, StatusCode::BAD_REQUEST, Some(error));
    if form.made.repos.trim().is_empty() {
        return again("Name the repositories it may reach, one pattern per line.".to_owned()).await;
    }
    let (lifetime, limit, networks) = match form.made.parse() {
        Ok(parsed) => parsed,
        Err(e) => return again(e).await,
    };
    let teams = page.passwords.managed_teams(&session).await;
    let Some(team) = teams.iter().find(|t| t.to_string() == form.team) else {
        return Err(AppPasswordError::NotFound.into());
    };
    let new = NewRobot {
        team,
        name: &form.name,
        description: &form.description,
        lifetime,
        limit: &limit,
        networks: &networks,
    };
    match page.passwords.create_robot(&session, new).await {
        Ok((robot, secret)) => Ok(secret_page(&page, &robot, &secret, None)),
        Err(e) if e.is_for_the_user() => again(e.to_string()).await,
        Err(e) => Err(e.into()),
    }
}

#[derive(Deserialize)]
pub(super) struct RotateForm {
    #[serde(default)]
    csrf: String,
    /// How long the old secret keeps working, in hours (blank: none).
    #[serde(default)]
    overlap_hours: String,
}

impl HasCsrf for RotateForm {
    fn csrf(&self) -> &str {
        &self.csrf
    }
}

pub(super) async fn rotate(
    page: Page,
    Path(id): Path<String>,
    Posted { session, form }: Posted<RotateForm>,
) -> Result<Response, PageError> {
    let typed = form.overlap_hours.trim();
    let Ok(hours) = (if typed.is_empty() {
        Ok(0)
    } else {
        typed.parse::<u64>()
    }) else {
        let e = "The overlap must be a number of hours.".to_owned();
        return robots_page(&page, &session, StatusCode::BAD_REQUEST, Some(e)).await;
    };
    let overlap = Duration::from_secs(hours.saturating_mul(3600));
    match page.passwords.rotate_robot(&session, &id, overlap).await {
        Ok((robot, secret)) => {
            let until = robot.team().and_then(|t| t.overlap_until());
            Ok(secret_page(&page, &robot, &secret, Some(until)))
        }
        Err(e) if e.is_for_the_user() => {
            robots_page(
                &page,
                &session,
                StatusCode::BAD_REQUEST,
                Some(e.to_string()),
            )
            .await
        }
        Err(e) => Err(e.into()),
    }
}

#[derive(Deserialize)]
pub(super) struct RevokeForm {
    #[serde(default)]
    csrf: String,
}

impl HasCsrf for RevokeForm {
    fn csrf(&self) -> &str {
        &self.csrf
    }
}

pub(super) async fn revoke(
    page: Page,
    Path(id): Path<String>,
    Posted { session, .. }: Posted<RevokeForm>,
) -> Result<Response, PageError> {
    page.passwords.revoke_robot(&session, &id).await?;
    Ok(Redirect::to(&format!("{}/robots", page.path())).into_response())
}

/// The page that shows a robot's new secret once; `rotated` with when
/// the old secret stops working (`None` inside: at once).
fn secret_page(
    page: &Page,
    robot: &AppPassword,
    secret: &SecretString,
    rotated: Option<Option<u64>>,
) -> Response {
    let services = &page.state.config.token.services;
    render(
        StatusCode::OK,
        &RobotSecret {
            base: page.path(),
            login: &robot.subject,
            registry: services.first().map_or("", String::as_str),
            secret: secret.expose_secret(),
            expires: day(robot.expires),
            rotated: rotated.is_some(),
            overlap: rotated.flatten().map(day).unwrap_or_default(),
        },
    )
}
