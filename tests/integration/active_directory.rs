//! Active Directory, as Samba's AD DC serves it: the harness itself
//! (simple binds over LDAPS, AD's refusals, nested groups), ahead of the
//! LDAP provider's tests against it.

use std::time::Instant;

use axum::http::StatusCode;

use crate::support::samba::{self, SambaDc};
use crate::support::*;

#[test]
fn samba_dc_serves_ldaps_binds() {
    let started = Instant::now();
    let dc = SambaDc::start();
    eprintln!("SambaDc::start took {:?}", started.elapsed());
    let bob = samba::user("bob");
    let ldaps = dc.ldaps_url();

    dc.bind(&ldaps, bob.upn, bob.password)
        .expect("bob binds with his UPN over LDAPS");

    assert_eq!(dc.bad_pwd_count("bob"), 0);
    let refused = dc
        .bind(&ldaps, bob.upn, "not-bobs-password")
        .expect_err("a wrong password is refused");
    assert!(
        refused.contains("Invalid credentials (49)") && refused.contains("data 52e"),
        "{refused}"
    );
    assert_eq!(dc.bad_pwd_count("bob"), 1, "the wrong password counts");

    let plain = dc
        .bind(&dc.ldap_url(), bob.upn, bob.password)
        .expect_err("a simple bind without TLS is refused");
    assert!(
        plain.contains("Strong(er) authentication required (8)")
            && plain.contains("Transport encryption required"),
        "{plain}"
    );

    let groups = dc
        .search_as(
            &ldaps,
            bob.upn,
            bob.password,
            dc.base(),
            &format!("(member:1.2.840.113556.1.4.1941:={})", bob.dn()),
            &["sAMAccountName"],
        )
        .expect("bob searches his groups");
    let mut names: Vec<&str> = groups
        .entries
        .iter()
        .filter_map(|e| e.get("sAMAccountName"))
        .collect();
    names.sort_unstable();
    assert_eq!(
        names,
        ["all-staff", "developers", "engineering"],
        "developers directly, engineering through it: {groups:?}"
    );
}

/// The provider as a company writes it for AD: `active_directory = true`
/// and the few things only they know (the DCs, the CA, the service
/// account, the user base, the NetBIOS name and the UPN suffixes).
fn ad_provider(dcs: &[&SambaDc], extra: &str) -> String {
    let dc = dcs[0];
    let urls: Vec<String> = dcs.iter().map(|d| format!("{:?}", d.ldaps_url())).collect();
    format!(
        r#"
[[provider]]
name = "ad"
kind = "ldap"
active_directory = true
urls = [{urls}]
ca_file = "{ca}"
bind_dn = "{service}"
bind_password_file = "{password}"
user_base = "{base}"
netbios_domain = "CORP"
upn_suffixes = ["corp.test", "example.com"]
connect_timeout = "2s"
operation_timeout = "3s"
{extra}

[[rule]]
groups = ["ad:engineering"]
repos = ["eng/**"]
actions = ["pull"]

[[rule]]
groups = ["ad:developers"]
repos = ["dev/**"]
actions = ["pull", "push"]

[[rule]]
groups = ["ad:all-staff"]
repos = ["staff/**"]
actions = ["pull"]

[[rule]]
groups = ["ad:registry-admins"]
repos = ["**"]
actions = ["*"]
"#,
        urls = urls.join(", "),
        ca = dc.ca().display(),
        service = samba::SERVICE_DN,
        password = dc.service_password_file().display(),
        base = samba::BASE,
    )
}

/// The AD provider over `dcs` (with `extra` in its section), behind a
/// trusted proxy.
fn ad_config(f: &Fixture, dcs: &[&SambaDc], extra: &str) -> TestConfig {
    f.config(&ad_provider(dcs, extra))
        .set("server.trusted_proxies", vec!["0.0.0.0"])
}

/// Every form a user types their AD login in (`bob`, `CORP\bob`, their
/// UPN, the implicit `sAMAccountName@domain`, a UPN under another
/// registered suffix, any case) finds the one account and one subject;
/// nested security groups count, distribution lists do not; another
/// domain's names are not this directory's. The user base is the domain
/// root, so every search also gets AD's reference to the configuration
/// partition, which says nothing about users.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_login_form_is_one_account() {
    let dc = tokio::task::spawn_blocking(SambaDc::start).await.unwrap();
    let f = Fixture::new();
    let state = ad_config(&f, &[&dc], "").state();
    let scopes =
        "repository:dev/app:pull,push&scope=repository:eng/x:pull&scope=repository:staff/x:pull";
    let bob = samba::user("bob");
    for typed in [
        "bob",
        "BOB",
        " bob ",
        "CORP\\bob",
        "corp\\Bob",
        "bob@corp.test",
        "Bob@CORP.TEST",
    ] {
        let r = token_for(&state, typed, bob.password, scopes).await;
        let (_, claims) = r.token();
        assert_eq!(claims["sub"], "bob", "{typed:?}");
        let mut got: Vec<(String, Vec<String>)> = r
            .access()
            .into_iter()
            .map(|(_, name, a)| (name, a))
            .collect();
        got.sort();
        assert_eq!(
            got,
            [
                (
                    "dev/app".to_owned(),
                    vec!["pull".to_owned(), "push".to_owned()]
                ),
                ("eng/x".to_owned(), vec!["pull".to_owned()]),
            ],
            "{typed:?}: developers, engineering through nesting, not the distribution list"
        );
    }
    let robert = samba::user("rsmith");
    for typed in [
        "rsmith",
        "CORP\\RSmith",
        "robert.smith@corp.test",
        "rsmith@corp.test",
    ] {
        let r = token_for(&state, typed, robert.password, "repository:dev/app:push").await;
        assert_eq!(r.token().1["sub"], "rsmith", "{typed:?}");
        assert_eq!(r.actions(), ["push"], "{typed:?}");
    }
    let alice = samba::user("alice");
    let r = token_for(
        &state,
        "alice@example.com",
        alice.password,
        "repository:any/thing:delete",
    )
    .await;
    assert_eq!(r.token().1["sub"], "alice");
    assert_eq!(r.actions(), ["delete"], "registry-admins");
    for typed in ["OTHER\\bob", "bob@other.test"] {
        token_for(&state, typed, bob.password, "")
            .await
            .assert_error(StatusCode::UNAUTHORIZED);
    }
    // an unknown user is unknown here (the configuration partition's
    // reference is not "maybe elsewhere"): the next provider is asked
    let local = token_for(&state, "writer", "writer-pw", "repository:team/x:push").await;
    assert_eq!(local.actions(), ["push"]);
}

/// Accounts AD refuses a correct password for are refused, with AD's
/// reason in the audit line and the same 401 as a wrong password.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn account_states_are_refused_with_their_reason() {
    let log = log_capture();
    let dc = tokio::task::spawn_blocking(SambaDc::start).await.unwrap();
    dc.lock("lockme");
    let f = Fixture::new();
    let state = ad_config(&f, &[&dc], "").state();
    for (sam, reason) in [
        ("disabled", "account disabled"),
        ("mustchange", "must be changed"),
        ("expired", "account expired"),
        ("lockme", "account locked"),
    ] {
        let user = samba::user(sam);
        let r = token_for(&state, sam, user.password, "repository:dev/x:pull").await;
        let body = r.assert_error(StatusCode::UNAUTHORIZED);
        assert_eq!(body["errors"][0]["code"], "UNAUTHORIZED");
        let line = log
            .text()
            .lines()
            .rev()
            .find(|l| l.contains("token request") && l.contains(&format!("(user \\\"{sam}\\\")")))
            .unwrap_or_else(|| panic!("an audit line for {sam}"))
            .to_owned();
        assert!(line.contains(reason), "{sam}: {line}");
    }
}

/// The domain locks an account after 3 wrong passwords. regauth counts
/// every form and case of one account as one account, so no mix of them
/// from new networks gets a third wrong password to the DC.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_mix_of_login_forms_reaches_the_lockout_threshold() {
    let dc = tokio::task::spawn_blocking(SambaDc::start).await.unwrap();
    assert_eq!(samba::LOCKOUT_THRESHOLD, 3);
    let f = Fixture::new();
    let state = ad_config(&f, &[&dc], "")
        .set("cache.max_failures", 2)
        .set("cache.max_client_failures", 10000)
        .state();
    let forms = [
        "erin",
        "ERIN",
        "CORP\\erin",
        "corp\\Erin",
        "erin@corp.test",
        "Erin@Corp.Test",
        " erin ",
    ];
    for (i, typed) in forms.iter().cycle().take(21).enumerate() {
        let client = format!("127.0.9.{}", i + 1);
        let r = token_from(&state, &client, typed, &format!("wrong-{i}"), "").await;
        r.assert_error(StatusCode::UNAUTHORIZED);
    }
    let bad = dc.bad_pwd_count("erin");
    assert!(bad <= 2, "{bad} wrong passwords reached the DC");
    assert!(!dc.is_locked("erin"), "erin's account is not locked");
}

/// A refresh token (docker's identity token) of an AD user ends when the
/// account is disabled, locked or its password changed: each refresh asks
/// the DC again, and the lockout is the DC's own computed state.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refresh_tokens_end_with_the_account() {
    let dc = tokio::task::spawn_blocking(SambaDc::start).await.unwrap();
    let f = Fixture::new();
    let state = ad_config(&f, &[&dc], "")
        .set("cache.verdict_ttl", "0s")
        .state();
    let pull = "repository:dev/app:pull";
    let token = |user: &'static str| {
        let state = state.clone();
        async move { refresh_token_of(&login_offline(&state, user, samba::user(user).password).await) }
    };
    let (bob, erin, robert) = (
        token("bob").await,
        token("erin").await,
        token("rsmith").await,
    );
    assert_eq!(refresh_grant(&state, &bob, pull).await.actions(), ["pull"]);
    assert_eq!(
        refresh_grant(&state, &robert, pull).await.actions(),
        ["pull"]
    );
    dc.disable("bob");
    refresh_grant(&state, &bob, pull)
        .await
        .assert_error(StatusCode::UNAUTHORIZED);
    dc.lock("erin");
    refresh_grant(&state, &erin, pull)
        .await
        .assert_error(StatusCode::UNAUTHORIZED);
    dc.set_password("rsmith", "Robert-Passw0rd!-2");
    refresh_grant(&state, &robert, pull)
        .await
        .assert_error(StatusCode::UNAUTHORIZED);
}

/// Two domain controllers of one domain (a real replica, joined): one is
/// killed (SIGKILL) in the middle of a stream of uncached logins. At most
/// the logins in flight on it fail; the rest go to the other DC, and
/// `/readyz` and `/metrics` name the dead one while staying 200.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logins_survive_a_domain_controller_killed_under_load() {
    let (mut first, second) = tokio::task::spawn_blocking(|| {
        let mut first = SambaDc::start();
        let second = SambaDc::join(&mut first);
        (first, second)
    })
    .await
    .unwrap();
    let f = Fixture::new();
    let state = ad_config(&f, &[&first, &second], "server_backoff = \"60s\"")
        .set("cache.verdict_ttl", "0s")
        .state();
    let users = ["bob", "erin", "rsmith"];
    let concurrency = 6;
    let run = |rounds: usize| {
        let state = state.clone();
        async move {
            let tasks: Vec<_> = (0..concurrency)
                .map(|t| {
                    let state = state.clone();
                    tokio::spawn(async move {
                        let mut failed = 0;
                        for i in 0..rounds {
                            let user = users[(t + i) % users.len()];
                            let r = token_for(&state, user, samba::user(user).password, "").await;
                            if r.status != StatusCode::OK {
                                failed += 1;
                            }
                        }
                        failed
                    })
                })
                .collect();
            let mut failed = 0;
            for t in tasks {
                failed += t.await.unwrap();
            }
            failed
        }
    };
    assert_eq!(run(5).await, 0, "both DCs up");
    let load = tokio::spawn(run(40));
    tokio::time::sleep(std::time::Duration::from_millis(600)).await;
    tokio::task::spawn_blocking(move || {
        first.kill();
        first
    })
    .await
    .unwrap();
    let failed = load.await.unwrap();
    assert!(
        failed <= concurrency,
        "{failed} logins failed: at most those in flight on the killed DC"
    );
    assert_eq!(run(5).await, 0, "every login is answered by the second DC");
    forget_readiness(&state).await; // the report is made at most once a second
    let ready = get(&state, "/readyz", None).await;
    assert_eq!(ready.status, StatusCode::OK, "{}", ready.text());
    let body = ready.json();
    let servers = &body["servers"]["ad"];
    assert_eq!(servers[second.ldaps_url()], "up", "{body}");
    assert!(
        body["degraded"].to_string().contains("server ldaps://"),
        "{body}"
    );
    let metrics = get(&state, "/metrics", None).await.text();
    assert!(
        metrics.contains(&format!(
            "regauth_provider_server_up{{provider=\"ad\",server=\"{}\"}} 1",
            second.ldaps_url()
        )),
        "{metrics}"
    );
}

/// `global_catalog = true`: users are found on the Global Catalog (3269)
/// across the forest, and the password is checked on the DC itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_are_found_on_the_global_catalog() {
    let dc = tokio::task::spawn_blocking(SambaDc::start).await.unwrap();
    let f = Fixture::new();
    let state = ad_config(&f, &[&dc], "global_catalog = true").state();
    let r = token_for(
        &state,
        "bob@corp.test",
        samba::user("bob").password,
        "repository:dev/x:push",
    )
    .await;
    assert_eq!(r.actions(), ["push"]);
    let servers: Vec<String> = state
        .chain
        .provider("ad")
        .unwrap()
        .servers()
        .into_iter()
        .map(|(s, _)| s)
        .collect();
    assert!(servers.iter().any(|s| s.ends_with(":3269")), "{servers:?}");
}

/// `config/example-ad.toml`, adapted to the test DC only where it names
/// the company's hosts and files, grants what its rules say; `regauth
/// check` warns about a rule that names a group no provider produces
/// (the example's old `group_prefix = "ad:"` made `ad:developers` into
/// `ad:ad:developers`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_shipped_example_works_against_a_real_dc() {
    let dc = tokio::task::spawn_blocking(SambaDc::start).await.unwrap();
    let f = Fixture::new();
    let example = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("config/example-ad.toml"),
    )
    .unwrap();
    let adapted = example
        .replace("0.0.0.0:5001", "127.0.0.1:0")
        .replace(
            "https://auth.corp.example/auth",
            "http://127.0.0.1:5001/auth",
        )
        .replace("/etc/regauth/token.key", &f.key.display().to_string())
        .replace("/etc/regauth/token.crt", &f.cert.display().to_string())
        .replace("registry.corp.example", SERVICE)
        .replace("ldaps://dc1.corp.example:636", &dc.ldaps_url())
        .replace("ldaps://dc2.corp.example:636", &dc.ldaps_url())
        .replace(
            "/etc/regauth/corp-root-ca.crt",
            &dc.ca().display().to_string(),
        )
        .replace(
            "CN=svc-regauth,OU=Service Accounts,DC=corp,DC=example",
            samba::SERVICE_DN,
        )
        .replace(
            "bind_password_env = \"AD_BIND_PASSWORD\"",
            &format!(
                "bind_password_file = \"{}\"",
                dc.service_password_file().display()
            ),
        )
        .replace("DC=corp,DC=example", samba::BASE)
        .replace("corp.example", "corp.test")
        + &format!(
            "\n[refresh_tokens]\nkey_file = \"{}\"\nstate_dir = \"{}\"\n",
            f.path("refresh.key").display(),
            f.path("data").display()
        );
    assert!(
        !adapted.contains("corp.example"),
        "every company name replaced:\n{adapted}"
    );
    let example = TestConfig::parse(&adapted);
    let state = example.state();
    let bob = samba::user("bob");
    let r = token_for(
        &state,
        "CORP\\bob",
        bob.password,
        "repository:dev/app:pull,push",
    )
    .await;
    assert_eq!(r.actions(), ["pull", "push"], "ad:developers");
    let alice = samba::user("alice");
    let r = token_for(
        &state,
        "alice",
        alice.password,
        "repository:prod/app:delete",
    )
    .await;
    assert_eq!(r.actions(), ["delete"], "ad:registry-admins");
    let r = token_for(
        &state,
        "bob@corp.test",
        bob.password,
        "repository:dev/app:push",
    )
    .await;
    assert_eq!(r.actions(), ["push"], "the UPN form");
    let config = example.load().unwrap();
    assert!(
        config.warnings().iter().all(|w| !w.contains("never")),
        "{:?}",
        config.warnings()
    );
    // the old example's prefix: a rule that can never match, said so
    let config = example
        .set("provider[0].group_prefix", "ad:")
        .load()
        .unwrap();
    let warnings = config.warnings().join("\n");
    assert!(
        warnings.contains("ad:developers") && warnings.contains("ad:ad:"),
        "{warnings}"
    );
}
