//! Client networks: rules that apply only to requests from some networks,
//! and credentials (a static robot, an app password) that work only from
//! them. The client address is the one `trusted_proxies` yields: here the
//! router is called as through a proxy at 0.0.0.0 that names the client in
//! `X-Forwarded-For`, and once over a real socket from another loopback
//! address.

use std::time::Duration;

use axum::http::StatusCode;

use crate::support::page::*;
use crate::support::*;

fn networks_config(f: &Fixture) -> TestConfig {
    let hash = regauth_providers::static_users::hash_bcrypt("bot-pw", 4).unwrap();
    let extra = format!(
        r#"
[[rule]]
users = ["local:ci-bot"]
repos = ["ci/**"]
actions = ["pull", "push"]

[[rule]]
description = "releases are pushed from the build network only"
users = ["local:writer"]
repos = ["release/**"]
actions = ["pull", "push"]
networks = ["10.20.0.0/16"]

[[rule]]
users = ["local:writer"]
repos = ["release/**"]
actions = ["pull"]

[[provider.robots]]
name = "ci-bot"
secret = "{hash}"
networks = ["10.30.0.0/24", "127.0.0.1"]
"#
    );
    ui_config(f, &extra).set("server.trusted_proxies", vec!["0.0.0.0"])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rules_and_credentials_keep_to_their_networks() {
    let f = Fixture::new();
    let state = networks_config(&f).state();

    // a rule with networks: push from the build network, pull elsewhere
    let release = "repository:release/app:pull,push";
    let inside = token_from(&state, "10.20.1.2", "writer", "writer-pw", release).await;
    assert_eq!(inside.actions(), ["pull", "push"], "{}", inside.text());
    let outside = token_from(&state, "192.0.2.9", "writer", "writer-pw", release).await;
    assert_eq!(outside.actions(), ["pull"], "{}", outside.text());

    // a robot bound to its CI subnet: refused elsewhere, whatever it asks
    let ci = "repository:ci/app:pull,push";
    let runner = token_from(&state, "10.30.0.7", "ci-bot", "bot-pw", ci).await;
    assert_eq!(runner.actions(), ["pull", "push"], "{}", runner.text());
    for elsewhere in ["10.31.0.7", "192.0.2.9", "::ffff:10.31.0.7"] {
        token_from(&state, elsewhere, "ci-bot", "bot-pw", ci)
            .await
            .assert_error(StatusCode::UNAUTHORIZED);
    }
    // mapped IPv4 is IPv4
    let mapped = token_from(&state, "::ffff:10.30.0.8", "ci-bot", "bot-pw", ci).await;
    assert_eq!(mapped.actions(), ["pull", "push"], "{}", mapped.text());

    // an app password made for the CI subnet works there only
    let mut jar = Jar::default();
    let csrf = sign_in(&state, &mut jar, "writer", "writer-pw").await;
    let bad = submit(
        &state,
        &mut jar,
        "/ui/passwords",
        &[
            ("csrf", &csrf),
            ("name", "ci"),
            ("days", "30"),
            ("actions", "pull"),
            ("networks", "10.30.0.1/24"),
        ],
    )
    .await;
    assert_eq!(
        bad.status,
        StatusCode::BAD_REQUEST,
        "host bits set: {}",
        bad.text()
    );
    let made = submit(
        &state,
        &mut jar,
        "/ui/passwords",
        &[
            ("csrf", &csrf),
            ("name", "ci"),
            ("days", "30"),
            ("actions", "pull"),
            ("actions", "push"),
            ("networks", "10.30.0.0/24\n\n2001:db8::/48\n"),
        ],
    )
    .await;
    assert_eq!(made.status, StatusCode::OK, "{}", made.text());
    let secret = secret_of(&made);
    let team = "repository:team/app:pull";
    let there = token_from(&state, "10.30.0.9", "writer", &secret, team).await;
    assert_eq!(there.actions(), ["pull"], "{}", there.text());
    let v6 = token_from(&state, "2001:db8::1", "writer", &secret, team).await;
    assert_eq!(v6.actions(), ["pull"], "{}", v6.text());
    token_from(&state, "10.20.1.2", "writer", &secret, team)
        .await
        .assert_error(StatusCode::UNAUTHORIZED);
    let home = page(&state, &mut jar, "/ui/").await;
    assert!(
        home.text().contains("from 10.30.0.0/24, 2001:db8::/48"),
        "{}",
        home.text()
    );
    // `regauth explain --from` shows the rule bound to networks
    let config = f.path("networks.toml");
    networks_config(&f).write(&config);
    let explain = |from: &str| {
        regauth_cli(&[
            "explain",
            "--config",
            config.to_str().unwrap(),
            "--user",
            "writer",
            "--provider",
            "local",
            "--scope",
            release,
            "--from",
            from,
        ])
    };
    let (ok, inside, _) = explain("10.20.0.1");
    assert!(ok && inside.contains("from the build network"), "{inside}");
    let (ok, outside, _) = explain("192.0.2.1");
    assert!(
        ok && !outside.contains("from the build network"),
        "{outside}"
    );
}

/// Over a real socket: the robot bound to 127.0.0.1 is refused when it
/// connects from 127.0.0.5.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bound_robot_is_refused_from_another_loopback_address() {
    let f = Fixture::new();
    let config = networks_config(&f).set("server.trusted_proxies", Vec::<String>::new());
    let server = Server::start(config).await;
    let url = format!(
        "{}?service={SERVICE}&scope=repository:ci/app:pull",
        server.realm()
    );
    let from = |local: &str| {
        reqwest::Client::builder()
            .local_address(Some(local.parse().unwrap()))
            .timeout(Duration::from_secs(10))
            .build()
            .unwrap()
    };
    let ok = from("127.0.0.1")
        .get(&url)
        .header("authorization", basic("ci-bot", "bot-pw"))
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
    let refused = from("127.0.0.5")
        .get(&url)
        .header("authorization", basic("ci-bot", "bot-pw"))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 401);
}
