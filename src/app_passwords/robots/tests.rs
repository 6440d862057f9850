use std::sync::Arc;

use regauth_providers::{Credentials, ExposeSecret as _, IdentityProvider as _};

use super::*;
use crate::app_passwords::testing::{config, directory};
use crate::app_passwords::AppPasswordProvider;
use crate::config::RobotsConfig;

const DAY: Duration = Duration::from_secs(86400);

fn team(group: &str) -> TeamGroup {
    TeamGroup {
        provider: "local".into(),
        group: group.into(),
    }
}

/// App passwords with robots for `platform` (managed by
/// `platform-admins`) and for `gone-team`, which the directory lost.
fn robots() -> Arc<AppPasswords> {
    let mut config = config();
    config.robots = Some(RobotsConfig {
        default_lifetime: DAY * 30,
        max_lifetime: DAY * 90,
        max_overlap: DAY,
        max_per_team: 2,
        teams: [
            (team("platform"), vec![team("platform-admins")]),
            (team("gone-team"), vec![team("platform-admins")]),
            (team("again-team"), vec![team("platform-admins")]),
        ]
        .into(),
    });
    let store: Arc<dyn crate::state::Store> = Arc::new(crate::state::Embedded::in_memory());
    let ledger = Arc::new(crate::refresh::Ledger::new(store.clone(), DAY));
    Arc::new(AppPasswords::new(
        config,
        &[7u8; 32],
        store,
        vec![directory()],
        Duration::from_secs(1),
        ledger,
    ))
}

async fn session(passwords: &AppPasswords, who: &str) -> Session {
    let identity = match directory().lookup(who).await {
        Outcome::Authenticated(identity) => identity,
        other => panic!("{other:?}"),
    };
    let now = crate::clock::now();
    let sealed = passwords.open_session(&identity, None, now).await.unwrap();
    passwords.session(&sealed, now).await.unwrap().unwrap()
}

fn new<'a>(team: &'a TeamGroup, name: &'a str, limit: &'a Limit) -> NewRobot<'a> {
    NewRobot {
        team,
        name,
        description: "pushes platform images",
        lifetime: DAY * 30,
        limit,
        networks: &[],
    }
}

/// Robot `name` of `group`, pulling from `group/**`, made by `by`.
async fn pulling(
    passwords: &AppPasswords,
    by: &Session,
    group: &str,
    name: &str,
) -> (AppPassword, SecretString) {
    let team = team(group);
    let limit = Limit::from_form([format!("{group}/**").as_str()], ["pull"]).unwrap();
    passwords
        .create_robot(by, new(&team, name, &limit))
        .await
        .unwrap()
}

async fn login(passwords: &Arc<AppPasswords>, username: &str, secret: &SecretString) -> Outcome {
    let provider = AppPasswordProvider(passwords.clone());
    let credentials = Credentials::new(username, secret.expose_secret());
    provider.authenticate(&credentials).await
}

#[test]
fn login_names_are_unambiguous() {
    assert_eq!(login_name(&team("platform"), "ci"), "robot$platform+ci");
    assert_eq!(
        login_name(&team("Team A/Core"), "ci"),
        "robot$team-a-core+ci"
    );
    for ok in ["ci", "ci-nightly", "a.b_c", "0"] {
        assert!(is_robot_name(ok), "{ok}");
    }
    for bad in ["", "-ci", "CI", "c i", "a+b", "a$b", &"x".repeat(33)] {
        assert!(!is_robot_name(bad), "{bad}");
    }
}

#[tokio::test]
async fn a_team_admin_makes_a_robot_that_logs_in_as_its_group_alone() {
    let passwords = robots();
    let lead = session(&passwords, "lead").await;
    let platform = team("platform");
    let limit = Limit::from_form(["platform/**"], ["pull", "push"]).unwrap();
    let (robot, secret) = passwords
        .create_robot(&lead, new(&platform, "ci", &limit))
        .await
        .unwrap();
    assert_eq!(robot.subject, "robot$platform+ci");
    assert_eq!(robot.team().unwrap().made_by, "lead (local)");
    // not among anyone's app passwords, nor the admin's list
    assert!(passwords.list(None).await.unwrap().is_empty());
    let listed = passwords.team_robots(&lead).await.unwrap();
    let mine = listed.iter().find(|t| t.team == platform).unwrap();
    assert_eq!(mine.robots.len(), 1);
    let Outcome::Authenticated(identity) = login(&passwords, "robot$platform+ci", &secret).await
    else {
        panic!("the robot did not log in")
    };
    assert_eq!(
        (identity.provider.as_str(), identity.groups.clone()),
        ("local", vec!["platform".to_owned()])
    );
    assert_eq!(identity.kind, Kind::Robot);
    assert_eq!(identity.expires_at, Some(robot.expires));
    assert!(!identity.attachment.is_none(), "narrowed to its scope");
    // under another name: refused
    assert!(matches!(
        login(&passwords, "lead", &secret).await,
        Outcome::Rejected(_)
    ));
    // a name taken, and max_per_team
    let again = passwords
        .create_robot(&lead, new(&platform, "ci", &limit))
        .await;
    assert!(
        matches!(again, Err(AppPasswordError::RobotTaken(_))),
        "{again:?}"
    );
    passwords
        .create_robot(&lead, new(&platform, "ci2", &limit))
        .await
        .unwrap();
    let third = passwords
        .create_robot(&lead, new(&platform, "ci3", &limit))
        .await;
    assert!(
        matches!(third, Err(AppPasswordError::TooManyRobots(2))),
        "{third:?}"
    );
}

#[tokio::test]
async fn only_the_teams_admins_manage_its_robots() {
    let passwords = robots();
    let platform = team("platform");
    let limit = Limit::from_form(["platform/**"], ["pull"]).unwrap();
    let member = session(&passwords, "member").await;
    assert!(passwords.managed_teams(&member).await.is_empty());
    let made = passwords
        .create_robot(&member, new(&platform, "ci", &limit))
        .await;
    assert!(matches!(made, Err(AppPasswordError::NotFound)), "{made:?}");
    // a team that is not configured: nobody makes robots for it
    let lead = session(&passwords, "lead").await;
    let other = team("admins");
    let made = passwords
        .create_robot(&lead, new(&other, "ci", &limit))
        .await;
    assert!(matches!(made, Err(AppPasswordError::NotFound)), "{made:?}");
    // a platform admin manages every team
    let admin = session(&passwords, "admin").await;
    assert_eq!(passwords.managed_teams(&admin).await.len(), 3);
    let (robot, _) = passwords
        .create_robot(&admin, new(&platform, "ci", &limit))
        .await
        .unwrap();
    // the member can neither rotate nor revoke it
    let rotated = passwords
        .rotate_robot(&member, &robot.id, Duration::ZERO)
        .await;
    assert!(matches!(rotated, Err(AppPasswordError::NotFound)));
    let revoked = passwords.revoke_robot(&member, &robot.id).await;
    assert!(matches!(revoked, Err(AppPasswordError::NotFound)));
    // nor does the app-password page's revoke reach it, even for an admin
    let revoked = passwords.revoke(&robot.id, &admin.identity(), true).await;
    assert!(matches!(revoked, Err(AppPasswordError::NotFound)));
    // lifetimes and names are checked
    let mut long = new(&platform, "long", &limit);
    long.lifetime = DAY * 91;
    let made = passwords.create_robot(&lead, long).await;
    assert!(
        matches!(made, Err(AppPasswordError::Lifetime(90))),
        "{made:?}"
    );
    let made = passwords
        .create_robot(&lead, new(&platform, "Bad Name", &limit))
        .await;
    assert!(matches!(made, Err(AppPasswordError::RobotName)), "{made:?}");
}

#[tokio::test]
async fn rotation_keeps_the_old_secret_only_for_the_overlap() {
    let passwords = robots();
    let lead = session(&passwords, "lead").await;
    let (robot, first) = pulling(&passwords, &lead, "platform", "ci").await;
    let name = robot.subject.clone();
    // with an overlap, both work
    let (_, second) = passwords
        .rotate_robot(&lead, &robot.id, Duration::from_secs(3600))
        .await
        .unwrap();
    assert!(matches!(
        login(&passwords, &name, &first).await,
        Outcome::Authenticated(_)
    ));
    assert!(matches!(
        login(&passwords, &name, &second).await,
        Outcome::Authenticated(_)
    ));
    // without one, only the newest works: the first is gone for good
    let (_, third) = passwords
        .rotate_robot(&lead, &robot.id, Duration::ZERO)
        .await
        .unwrap();
    for old in [&first, &second] {
        assert!(matches!(
            login(&passwords, &name, old).await,
            Outcome::Rejected(Rejection::WrongSecret)
        ));
    }
    assert!(matches!(
        login(&passwords, &name, &third).await,
        Outcome::Authenticated(_)
    ));
    // an overlap past max_overlap is refused
    let long = passwords.rotate_robot(&lead, &robot.id, DAY * 2).await;
    assert!(
        matches!(long, Err(AppPasswordError::Overlap(24))),
        "{long:?}"
    );
    // the record never holds a secret, nor does its Debug show a digest
    let record = passwords.find(&robot.id).await.unwrap().unwrap();
    assert!(!format!("{record:?}").contains(&record.digest));
    // revoked: refused, even with the newest secret
    passwords.revoke_robot(&lead, &robot.id).await.unwrap();
    assert!(matches!(
        login(&passwords, &name, &third).await,
        Outcome::Rejected(_)
    ));
}

#[tokio::test]
async fn a_robot_ends_with_its_group_or_its_team() {
    let passwords = robots();
    let lead = session(&passwords, "lead").await;
    // no robot for a group its directory does not have
    let gone = team("gone-team");
    let limit = Limit::from_form(["gone/**"], ["pull"]).unwrap();
    let made = passwords
        .create_robot(&lead, new(&gone, "ci", &limit))
        .await;
    assert!(
        matches!(made, Err(AppPasswordError::GroupGone(_))),
        "{made:?}"
    );
    // a group made again under its name (another id) ends its robots
    let (robot, secret) = pulling(&passwords, &lead, "again-team", "ci").await;
    let refused = login(&passwords, &robot.subject, &secret).await;
    assert!(
        matches!(&refused, Outcome::Rejected(Rejection::Other(why)) if why.contains("made again")),
        "{refused:?}"
    );
    assert!(every_robot(passwords.store().as_ref())
        .await
        .unwrap()
        .is_empty());
    let (robot, secret) = pulling(&passwords, &lead, "platform", "ci").await;
    // `regauth robots revoke` by login name, straight in the backend
    let revoked = revoke_robot_in(
        passwords.store().as_ref(),
        passwords.ledger(),
        "ROBOT$platform+ci",
    )
    .await
    .unwrap();
    assert_eq!(revoked.map(|r| r.id), Some(robot.id));
    assert!(matches!(
        login(&passwords, "robot$platform+ci", &secret).await,
        Outcome::Rejected(_)
    ));
}

#[tokio::test]
async fn a_rotated_secret_never_outlives_its_overlap() {
    let passwords = robots();
    let lead = session(&passwords, "lead").await;
    let (robot, first) = pulling(&passwords, &lead, "platform", "ci").await;
    let (_, second) = passwords
        .rotate_robot(&lead, &robot.id, Duration::from_secs(3600))
        .await
        .unwrap();
    let until = crate::clock::now() as u64 + 3600;
    let expires = |outcome: Outcome| match outcome {
        Outcome::Authenticated(identity) => identity.expires_at.unwrap(),
        other => panic!("{other:?}"),
    };
    // the old secret's logins end with the overlap, the new one's with
    // the robot
    let old = expires(login(&passwords, &robot.subject, &first).await);
    assert!(old <= until && old + 5 >= until, "{old} {until}");
    assert_eq!(
        expires(login(&passwords, &robot.subject, &second).await),
        robot.expires
    );
}
