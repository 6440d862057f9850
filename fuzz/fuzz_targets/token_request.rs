//! Whole token requests through the router, as a client sends them: the
//! first byte picks GET (the rest is the query string) or POST (the rest
//! is the form body). Whatever arrives, the answer is never a 5xx.
#![no_main]

use std::sync::{Arc, OnceLock};

use axum::body::Body;
use axum::http::Request;
use libfuzzer_sys::fuzz_target;
use tower::ServiceExt as _;

fn state() -> &'static (tokio::runtime::Runtime, Arc<regauth::AppState>) {
    static STATE: OnceLock<(tokio::runtime::Runtime, Arc<regauth::AppState>)> = OnceLock::new();
    STATE.get_or_init(|| {
        regauth_providers::install_crypto_provider();
        let dir = std::env::temp_dir().join(format!("regauth-fuzz-{}", std::process::id()));
        let text = regauth::config::EMBEDDED
            .replace(
                "certs/token.key",
                &dir.join("token.key").display().to_string(),
            )
            .replace(
                "certs/token.crt",
                &dir.join("token.crt").display().to_string(),
            );
        // Every file the state makes (the refresh key too) goes to the
        // throwaway directory, never into the checkout.
        let overrides = [
            (
                "REGAUTH_REFRESH_TOKENS__KEY_FILE".to_owned(),
                dir.join("refresh.key").display().to_string(),
            ),
            (
                "REGAUTH_STATE__DIR".to_owned(),
                dir.join("state").display().to_string(),
            ),
        ];
        let config =
            regauth::config::Config::from_toml("fuzz", &text, &overrides).expect("config");
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let state = runtime.block_on(async { regauth::build(config).expect("state") });
        // the key is in memory now; libFuzzer exits without running drops
        let _ = std::fs::remove_dir_all(&dir);
        (runtime, state)
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&first, rest)) = data.split_first() else {
        return;
    };
    let (runtime, state) = state();
    let request = if first % 2 == 0 {
        let query: String = rest
            .iter()
            .map(|b| {
                if b.is_ascii_graphic() {
                    *b as char
                } else {
                    '%'
                }
            })
            .collect();
        match Request::get(format!("/auth?{query}")).body(Body::empty()) {
            Ok(r) => r,
            Err(_) => return,
        }
    } else {
        Request::post("/auth")
            .header("content-type", "application/x-www-form-urlencoded")
            .body(Body::from(rest.to_vec()))
            .expect("request")
    };
    let status = runtime.block_on(async {
        regauth::app(state.clone())
            .oneshot(request)
            .await
            .expect("infallible")
            .status()
    });
    assert!(status.as_u16() < 500, "{status}");
});
