//! The pipeline as plain Rust: an [`Issuer`] from a scripted provider,
//! the shipped policy and a fresh key, asked at a chosen `now`. No router,
//! no socket, no clock.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

use base64::Engine as _;
use regauth_providers::{Credentials, Identity, Outcome, Rejection};

use super::*;
use crate::config::{Config, EMBEDDED};
use crate::testing::{self, Scripted};

const CLIENT: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
const NOW: i64 = 1_800_000_000;

fn config(overrides: &[(&str, &str)]) -> Config {
    let env: Vec<(String, String)> = overrides
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    Config::from_toml("test", EMBEDDED, &env).unwrap()
}

/// bob (a developer) with password `pw`; anything else is refused.
fn developers(credentials: &Credentials) -> Outcome {
    match (
        credentials.username.as_str(),
        credentials.secret.expose_secret(),
    ) {
        ("bob", "pw") => {
            Outcome::Authenticated(Identity::new("bob", "local").with_groups(["developers"]))
        }
        ("ann", "pw") => {
            let mut ann = Identity::new("ann", "local");
            ann.expires_at = Some(NOW as u64 + 60);
            Outcome::Authenticated(ann)
        }
        ("bob" | "ann", _) => Outcome::Rejected(Rejection::WrongSecret),
        _ => Outcome::NotMine,
    }
}

fn issuer_with(config: &Config) -> Issuer {
    issuer_asking(config).0
}

/// The issuer and the provider it asks.
fn issuer_asking(config: &Config) -> (Issuer, Arc<Scripted>) {
    let provider = Scripted::new("local", developers);
    let chain = testing::chain(vec![provider.clone()], 5);
    let issuer = Issuer::new(
        IssuerParts {
            chain,
            authorizer: config.policy.clone(),
            keys: testing::keys(),
            refresh: None,
            devices: None,
        },
        config,
    );
    (issuer, provider)
}

fn request<'a>(who: Who, scopes: &'a [&'a str]) -> TokenRequest<'a> {
    TokenRequest {
        flow: Flow::Get,
        service: Some("registry.local"),
        scopes,
        who,
        offline: false,
        client: CLIENT,
    }
}

fn bob(password: &str) -> Who {
    Who::Credentials(Credentials::new("bob", password))
}

fn claims_of(jwt: &str) -> serde_json::Value {
    let payload = jwt.split('.').nth(1).unwrap();
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .unwrap();
    serde_json::from_slice(&bytes).unwrap()
}

#[tokio::test]
async fn a_developer_gets_what_the_policy_grants_signed_at_now() {
    let config = config(&[]);
    let issuer = issuer_with(&config);
    let issued = issuer
        .issue(
            request(bob("pw"), &["repository:dev/app:pull,push,delete"]),
            NOW,
        )
        .await
        .unwrap();
    assert_eq!(scopes_text(&issued.access), "repository:dev/app:pull,push");
    assert_eq!(issued.expires_in, 15 * 60);
    let claims = claims_of(issued.token.jwt());
    assert_eq!(claims["iat"], NOW);
    assert_eq!(claims["exp"], NOW + 15 * 60);
    assert_eq!(claims["nbf"], NOW - NOT_BEFORE_SKEW);
    assert_eq!(claims["sub"], "bob");
    assert_eq!(claims["aud"], "registry.local");
}

#[tokio::test]
async fn the_same_grant_within_the_window_is_the_same_token() {
    let config = config(&[("REGAUTH_TOKEN__REUSE_WINDOW", "5s")]);
    let (issuer, provider) = issuer_asking(&config);
    let scopes = ["repository:dev/app:pull"];
    let first = issuer
        .issue(request(bob("pw"), &scopes), NOW)
        .await
        .unwrap();
    let again = issuer
        .issue(request(bob("pw"), &scopes), NOW + 1)
        .await
        .unwrap();
    assert!(!first.reused && again.reused);
    assert_eq!(first.token.jwt(), again.token.jwt());
    assert!(again.cache_hit, "the second check is a verdict cache hit");
    assert_eq!(provider.calls(), 1);
    assert_eq!(issuer.reused(), 1);
}

#[tokio::test]
async fn a_token_never_outlives_its_credential() {
    let config = config(&[]);
    let issuer = issuer_with(&config);
    let ann = || Who::Credentials(Credentials::new("ann", "pw"));
    let issued = issuer.issue(request(ann(), &[]), NOW).await.unwrap();
    assert_eq!(issued.expires_in, 60);
    let refused = issuer
        .issue(request(ann(), &[]), NOW + 60)
        .await
        .unwrap_err();
    assert!(
        matches!(
            &refused,
            Refusal::Unauthorized {
                user_action: Some(_),
                ..
            }
        ),
        "{refused:?}"
    );
}

#[tokio::test]
async fn refusals_say_why_in_the_log_only() {
    let config = config(&[("REGAUTH_SERVER__ANONYMOUS", "false")]);
    let issuer = issuer_with(&config);
    let wrong = issuer
        .issue(request(bob("nope"), &[]), NOW)
        .await
        .unwrap_err();
    assert!(
        matches!(
            &wrong,
            Refusal::Unauthorized {
                user_action: None,
                ..
            }
        ),
        "{wrong:?}"
    );
    assert!(
        wrong.reason().contains("rejected by local"),
        "{}",
        wrong.reason()
    );
    let nobody = issuer
        .issue(request(Who::Anonymous, &["repository:public/x:pull"]), NOW)
        .await
        .unwrap_err();
    assert_eq!(nobody.reason(), "anonymous access is disabled");
    let mut elsewhere = request(bob("pw"), &[]);
    elsewhere.service = Some("other");
    let unknown = issuer.issue(elsewhere, NOW).await.unwrap_err();
    assert!(matches!(unknown, Refusal::BadRequest { .. }));
    let many = vec!["repository:a:pull"; config.server.limits.max_scopes + 1];
    let too_many = issuer
        .issue(request(bob("pw"), &many), NOW)
        .await
        .unwrap_err();
    assert!(
        too_many.reason().starts_with("too many scopes"),
        "{}",
        too_many.reason()
    );
}

#[tokio::test]
async fn the_refresh_grant_is_refused_when_disabled() {
    let config = config(&[]);
    let issuer = issuer_with(&config);
    let who = Who::Refresh(regauth_providers::SecretString::from("rt2.x".to_owned()));
    let refused = issuer.issue(request(who, &[]), NOW).await.unwrap_err();
    assert!(matches!(refused, Refusal::RefreshDisabled));
    assert!(issuer.refresh().is_none());
}
