use std::sync::Arc;

use regauth_providers::ExposeSecret as _;

use super::*;
use crate::app_passwords::testing::passwords;
use crate::identity::throttle::Budgets;

const CLIENT: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 7));

fn throttle(per_client: u32) -> Throttle {
    let budgets = Budgets {
        per_account: 0,
        per_familiar_network: 0,
        familiar_for: Duration::from_secs(3600),
        per_client,
        per_provider_per_second: 0,
        window: Duration::from_secs(300),
        spacing: Duration::ZERO,
    };
    Throttle::new(
        budgets,
        &[3u8; 32],
        Arc::new(crate::state::Embedded::in_memory()),
    )
}

async fn session(passwords: &AppPasswords, subject: &str) -> Session {
    let now = crate::clock::now();
    let identity = Identity::new(subject, "local");
    let sealed = passwords.open_session(&identity, None, now).await.unwrap();
    passwords.session(&sealed, now).await.unwrap().unwrap()
}

fn now_ms() -> u64 {
    crate::clock::now_ms()
}

/// `session`'s answer to `code` from [`CLIENT`], under `throttle`.
async fn answer(
    passwords: &AppPasswords,
    throttle: &Throttle,
    session: &Session,
    code: &str,
    approve: bool,
) -> Answered {
    let answer = Answer {
        session,
        user_code: code,
        approve,
    };
    passwords
        .answer_device_login(answer, throttle, CLIENT, crate::clock::now())
        .await
        .unwrap()
}

async fn started(passwords: &AppPasswords) -> Started {
    passwords
        .start_device_login("docker", "registry.test", CLIENT, crate::clock::now())
        .await
        .unwrap()
}

#[test]
fn user_codes_are_eight_consonants_and_typed_loosely() {
    let code = new_user_code().unwrap();
    assert_eq!(code.len(), 8);
    assert!(
        code.bytes().all(|b| USER_CODE_ALPHABET.contains(&b)),
        "{code}"
    );
    assert_eq!(
        normalize_user_code("bcdf-ghjk").as_deref(),
        Some("BCDFGHJK")
    );
    assert_eq!(
        normalize_user_code(" BCDF GHJK ").as_deref(),
        Some("BCDFGHJK")
    );
    for bad in ["BCDF-GHJ", "BCDF-GHJA", "BCDF-GHJK-L", "", "BCDF\u{0}GHJK"] {
        assert_eq!(normalize_user_code(bad), None, "{bad:?}");
    }
    assert_eq!(normalize_user_code(&"B".repeat(100)), None);
}

#[tokio::test]
async fn polls_before_an_answer_wait_and_slow_down() {
    let passwords = passwords();
    let started = started(&passwords).await;
    let device_code = started.device_code.expose_secret().to_owned();
    assert!(device_code.starts_with("rgd_"));
    assert_eq!(started.user_code.len(), 9);

    // nobody has answered: pending, and sooner than the interval, slow down
    let poll = |code: String, client: &'static str, at: u64| {
        let passwords = &passwords;
        async move { passwords.poll_device_login(&code, client, at).await }
    };
    let t = now_ms();
    assert!(matches!(
        poll(device_code.clone(), "docker", t).await,
        Err(DeviceError::Pending)
    ));
    assert!(matches!(
        poll(device_code.clone(), "docker", t + 1000).await,
        Err(DeviceError::SlowDown)
    ));
    // the interval grew to 10 s
    assert!(matches!(
        poll(device_code.clone(), "docker", t + 7000).await,
        Err(DeviceError::SlowDown)
    ));
    assert!(matches!(
        poll(device_code.clone(), "docker", t + 30_000).await,
        Err(DeviceError::Pending)
    ));
}

#[tokio::test]
async fn an_approved_login_gives_one_identity_token_to_its_client_only() {
    let passwords = passwords();
    let throttle = throttle(10);
    let viewer = session(&passwords, "viewer").await;
    let started = started(&passwords).await;
    let device_code = started.device_code.expose_secret().to_owned();
    let poll = |code: String, client: &'static str, at: u64| {
        let passwords = &passwords;
        async move { passwords.poll_device_login(&code, client, at).await }
    };

    // the user finds it, sees the client and registry, approves
    let entered = passwords
        .enter_user_code(
            &throttle,
            &viewer,
            &started.user_code.to_lowercase(),
            CLIENT,
            crate::clock::now(),
        )
        .await
        .unwrap();
    let Entered::Asking(asking) = entered else {
        panic!("{entered:?}")
    };
    assert_eq!(
        (asking.client_id.as_str(), asking.service.as_str()),
        ("docker", "registry.test")
    );
    let alice = session(&passwords, "alice").await;
    let now = crate::clock::now();
    assert_eq!(
        answer(&passwords, &throttle, &alice, &started.user_code, true).await,
        Answered::Done
    );
    // entered again: answered already, and no second answer
    let again = passwords
        .enter_user_code(&throttle, &viewer, &started.user_code, CLIENT, now)
        .await
        .unwrap();
    assert!(matches!(again, Entered::Answered), "{again:?}");
    assert_eq!(
        answer(&passwords, &throttle, &alice, &started.user_code, false).await,
        Answered::NotWaiting
    );

    // another client, or a forged secret, gets nothing
    let t = now_ms() + 60_000;
    assert!(matches!(
        poll(device_code.clone(), "other", t).await,
        Err(DeviceError::InvalidGrant)
    ));
    let forged = format!("{}{}", &device_code[..device_code.len() - 4], "AAAA");
    assert!(matches!(
        poll(forged, "docker", t).await,
        Err(DeviceError::InvalidGrant)
    ));

    // its client gets alice's identity token, once
    let (password, token) = poll(device_code.clone(), "docker", t).await.unwrap();
    assert_eq!(
        (password.subject.as_str(), password.device.as_deref()),
        ("alice", Some("docker"))
    );
    assert_eq!(password.name, "device login: docker");
    assert!(token.expose_secret().starts_with("rga_"));
    assert!(matches!(
        poll(device_code, "docker", t + 60_000).await,
        Err(DeviceError::InvalidGrant)
    ));
    assert_eq!(
        passwords
            .device_token_owner(token.expose_secret())
            .await
            .unwrap()
            .as_deref(),
        Some("alice")
    );
}

/// An identity token of `who`'s, from a device login approved and polled.
async fn identity_token(passwords: &AppPasswords, who: &Session) -> SecretString {
    let started = started(passwords).await;
    let answered = answer(passwords, &throttle(10), who, &started.user_code, true).await;
    assert_eq!(answered, Answered::Done);
    let code = started.device_code.expose_secret();
    let (_, token) = passwords
        .poll_device_login(code, "docker", now_ms())
        .await
        .unwrap();
    token
}

#[tokio::test]
async fn logout_revokes_an_identity_token_and_nothing_else() {
    let passwords = passwords();
    let alice = session(&passwords, "alice").await;
    let token = identity_token(&passwords, &alice).await;
    // logout revokes it; a page-made app password is no identity token
    assert!(passwords
        .revoke_device_token(token.expose_secret())
        .await
        .unwrap());
    assert!(!passwords
        .revoke_device_token(token.expose_secret())
        .await
        .unwrap());
    let (_, page_made) = passwords
        .create(
            &alice.identity(),
            "laptop",
            Duration::from_secs(86400),
            &Limit::Unlimited,
        )
        .await
        .unwrap();
    assert_eq!(
        passwords
            .device_token_owner(page_made.expose_secret())
            .await
            .unwrap(),
        None
    );
    assert!(!passwords
        .revoke_device_token(page_made.expose_secret())
        .await
        .unwrap());
}

#[tokio::test]
async fn denied_and_expired_logins_say_so() {
    let passwords = passwords();
    let throttle = throttle(10);
    let viewer = session(&passwords, "viewer").await;
    let denied = started(&passwords).await;
    let bob = session(&passwords, "bob").await;
    let now = crate::clock::now();
    assert!(matches!(
        passwords
            .enter_user_code(&throttle, &viewer, &denied.user_code, CLIENT, now)
            .await
            .unwrap(),
        Entered::Asking(_)
    ));
    assert_eq!(
        answer(&passwords, &throttle, &bob, &denied.user_code, false).await,
        Answered::Done
    );
    let code = denied.device_code.expose_secret();
    assert!(matches!(
        passwords.poll_device_login(code, "docker", now_ms()).await,
        Err(DeviceError::Denied)
    ));
    assert!(matches!(
        passwords.poll_device_login(code, "docker", now_ms()).await,
        Err(DeviceError::InvalidGrant)
    ));

    // started 11 minutes ago: expired, for the client and on the page
    let old = passwords
        .start_device_login("docker", "registry.test", CLIENT, now - 660)
        .await
        .unwrap();
    let entered = passwords
        .enter_user_code(&throttle, &viewer, &old.user_code, CLIENT, now)
        .await
        .unwrap();
    assert!(matches!(entered, Entered::Unknown), "{entered:?}");
    assert_eq!(
        answer(&passwords, &throttle, &bob, &old.user_code, true).await,
        Answered::NotWaiting
    );
    assert!(matches!(
        passwords
            .poll_device_login(old.device_code.expose_secret(), "docker", now_ms())
            .await,
        Err(DeviceError::Expired)
    ));
}

#[tokio::test]
async fn wrong_user_codes_spend_the_networks_budget() {
    let passwords = passwords();
    let throttle = throttle(3);
    let viewer = session(&passwords, "viewer").await;
    let real = started(&passwords).await;
    let now = crate::clock::now();
    for wrong in ["BBBB-BBBB", "not a code", "CCCC-CCCC"] {
        let entered = passwords
            .enter_user_code(&throttle, &viewer, wrong, CLIENT, now)
            .await
            .unwrap();
        assert!(matches!(entered, Entered::Unknown), "{entered:?}");
    }
    // the budget is spent: even the right code is not looked up now
    let entered = passwords
        .enter_user_code(&throttle, &viewer, &real.user_code, CLIENT, now)
        .await
        .unwrap();
    assert!(matches!(entered, Entered::Throttled), "{entered:?}");
}

#[tokio::test]
async fn guessing_through_the_answer_spends_the_budget_too() {
    let passwords = passwords();
    let throttle = throttle(2);
    let real = started(&passwords).await;
    let mallory = session(&passwords, "mallory").await;
    for wrong in ["BBBB-BBBB", "CCCC-CCCC"] {
        let answered = answer(&passwords, &throttle, &mallory, wrong, true).await;
        assert_eq!(answered, Answered::NotWaiting);
    }
    // the budget is spent: a right guess answers nothing
    let answered = answer(&passwords, &throttle, &mallory, &real.user_code, true).await;
    assert_eq!(answered, Answered::Throttled);
}

#[tokio::test]
async fn an_accounts_wrong_codes_are_bounded_on_every_network() {
    let passwords = passwords();
    let throttle = throttle(1000);
    let real = started(&passwords).await;
    let mallory = session(&passwords, "mallory").await;
    let now = crate::clock::now();
    for i in 0..WRONG_CODES_PER_ACCOUNT {
        // a new network each time: the network's budget never runs out
        let from = IpAddr::V4(std::net::Ipv4Addr::new(
            198,
            51,
            100,
            u8::try_from(i).unwrap(),
        ));
        let entered = passwords
            .enter_user_code(&throttle, &mallory, "BBBB-BBBB", from, now)
            .await
            .unwrap();
        assert!(matches!(entered, Entered::Unknown), "{entered:?}");
    }
    let entered = passwords
        .enter_user_code(&throttle, &mallory, &real.user_code, CLIENT, now)
        .await
        .unwrap();
    assert!(matches!(entered, Entered::Throttled), "{entered:?}");
    // someone else's account is not held by mallory's guesses
    let alice = session(&passwords, "alice").await;
    let entered = passwords
        .enter_user_code(&throttle, &alice, &real.user_code, CLIENT, now)
        .await
        .unwrap();
    assert!(matches!(entered, Entered::Asking(_)), "{entered:?}");
}

#[tokio::test]
async fn clients_are_named_and_bounded() {
    let passwords = passwords();
    let now = crate::clock::now();
    for bad in [
        "",
        "  ",
        "a\nb",
        &"x".repeat(65),
        "docker\u{202e}",
        "d\u{200b}ocker",
    ] {
        let refused = passwords
            .start_device_login(bad, "registry.test", CLIENT, now)
            .await;
        assert!(
            matches!(refused, Err(DeviceError::InvalidRequest(_))),
            "{bad:?}"
        );
    }
    for _ in 0..STARTS_PER_CLIENT {
        passwords
            .start_device_login("docker", "registry.test", CLIENT, now)
            .await
            .unwrap();
    }
    let refused = passwords
        .start_device_login("docker", "registry.test", CLIENT, now)
        .await;
    assert!(matches!(refused, Err(DeviceError::TooMany)));
}
