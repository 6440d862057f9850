//! Opening refresh tokens: anything a client sends is refused cleanly
//! unless it was sealed by this key, and a tampered token never opens.
#![no_main]

use std::sync::OnceLock;
use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use regauth::refresh::RefreshTokens;
use regauth::state::Embedded;
use regauth_providers::Identity;

fn tokens() -> &'static (RefreshTokens, String) {
    static TOKENS: OnceLock<(RefreshTokens, String)> = OnceLock::new();
    TOKENS.get_or_init(|| {
        let tokens = RefreshTokens::new(
            b"fuzz key",
            Duration::from_secs(3600),
            std::sync::Arc::new(Embedded::in_memory()),
        );
        // Issuing writes the revocation ledger: async, once.
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime");
        let good = runtime
            .block_on(tokens.issue(&Identity::new("ann", "corp"), "svc"))
            .expect("sealed")
            .expect("a token");
        (tokens, good)
    })
}

fuzz_target!(|data: &[u8]| {
    let (tokens, good) = tokens();
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = tokens.open(text, "svc");
    // the good token with the input spliced in never opens unless unchanged
    let mid = good.len() / 2;
    let spliced = format!("{}{text}{}", &good[..mid], &good[mid..]);
    if !text.is_empty() {
        assert!(tokens.open(&spliced, "svc").is_err());
    }
});
