//! In-process costs of the token hot path, each measured in one run:
//! signing alone (ES256, RS256), policy evaluation, and a whole cached
//! token request through the router (no socket). Prints medians of 5
//! rounds in microseconds per operation.
//!
//!   cargo bench --bench hot_path

// Benchmark harness: a failed unwrap is a failed run.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::disallowed_methods
)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::Request;
use regauth::domain::claims::{Access, Claims};
use regauth::domain::policy::Principal;
use regauth::domain::scope::Scope;
use regauth::keys::{self, KeyType, SigningKey};
use regauth_providers::Identity;
use tower::ServiceExt as _;

fn median_us(mut rounds: Vec<f64>) -> f64 {
    rounds.sort_by(|a, b| a.total_cmp(b));
    rounds[rounds.len() / 2]
}

fn time<F: FnMut()>(iterations: u32, mut f: F) -> f64 {
    let rounds = (0..5)
        .map(|_| {
            let started = Instant::now();
            for _ in 0..iterations {
                f();
            }
            started.elapsed().as_secs_f64() * 1e6 / f64::from(iterations)
        })
        .collect();
    median_us(rounds)
}

fn key(kind: KeyType) -> SigningKey {
    let (k, c) = keys::generate(kind, "bench", Duration::from_secs(3600)).unwrap();
    SigningKey::from_pem(k.as_bytes(), c.as_bytes(), "k".as_ref(), "c".as_ref()).unwrap()
}

fn main() {
    let access = vec![Access {
        kind: "repository".into(),
        name: "dev/app".into(),
        actions: vec!["pull".into(), "push".into()],
    }];
    let claims = Claims {
        iss: "regauth",
        sub: "bob",
        aud: "registry.local",
        exp: 2_000_000_000,
        nbf: 1_000_000_000,
        iat: 1_000_000_000,
        jti: keys::random_id().unwrap(),
        access: &access,
    };
    let es = key(KeyType::Es256);
    let rs = key(KeyType::Rs256);
    let es256 = time(5_000, || {
        std::hint::black_box(es.sign(&claims).unwrap());
    });
    let rs256 = time(500, || {
        std::hint::black_box(rs.sign(&claims).unwrap());
    });

    let config =
        regauth::config::Config::from_toml("bench", regauth::config::EMBEDDED, &[]).unwrap();
    let policy = config.policy.clone();
    let bob = Principal::Authenticated(Arc::new(
        Identity::new("bob", "local").with_groups(["developers"]),
    ));
    let scope = Scope::parse("repository:dev/app:pull,push").unwrap();
    let evaluate = time(100_000, || {
        std::hint::black_box(policy.evaluate(&bob, "registry.local", &scope));
    });

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let dir = std::env::temp_dir().join(format!("regauth-bench-{}", std::process::id()));
    let text = regauth::config::EMBEDDED
        .replace(
            "certs/token.key",
            &dir.join("token.key").display().to_string(),
        )
        .replace(
            "certs/token.crt",
            &dir.join("token.crt").display().to_string(),
        );
    let router = |reuse: &str| {
        let text = text.replace(
            "lifetime = \"15m\"",
            &format!("lifetime = \"15m\"\nreuse_window = \"{reuse}\""),
        );
        let config = regauth::config::Config::from_toml("bench", &text, &[]).unwrap();
        regauth::app(regauth::build(config).unwrap())
    };
    let request = || {
        Request::get("/auth?service=registry.local&scope=repository:dev/app:pull,push")
            .header("authorization", "Basic Ym9iOmJvYi1kZXYtcGFzc3dvcmQ=")
            .body(Body::empty())
            .unwrap()
    };
    let per_request = |router: axum::Router| {
        runtime.block_on(async {
            let warm = router.clone().oneshot(request()).await.unwrap();
            assert_eq!(warm.status(), 200);
        });
        time(5_000, || {
            runtime.block_on(async {
                std::hint::black_box(router.clone().oneshot(request()).await.unwrap());
            })
        })
    };
    let signed = per_request(router("0s"));
    let reused = per_request(router("5s"));
    let _ = std::fs::remove_dir_all(&dir);
    println!("ES256 sign:                                {es256:8.2} us");
    println!("RS256 sign:                                {rs256:8.2} us");
    println!("policy evaluate (1 scope):                 {evaluate:8.2} us");
    println!("token request, signed (reuse_window 0s):   {signed:8.2} us");
    println!("token request, reused (reuse_window 5s):   {reused:8.2} us");
    println!(
        "signed request less its signature:         {:8.2} us",
        signed - es256
    );
}
