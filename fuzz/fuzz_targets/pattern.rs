//! Policy patterns: any text compiles or is refused, and matching any name
//! against any pattern terminates quickly and never panics.
#![no_main]

use libfuzzer_sys::fuzz_target;
use regauth::domain::pattern::{Pattern, Placeholders, Values};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (pattern, name) = text.split_once('\n').unwrap_or((text, ""));
    for placeholders in [Placeholders::Allowed, Placeholders::Forbidden] {
        if let Ok(p) = Pattern::parse(pattern, placeholders) {
            let mut claims = regauth_providers::ClaimSet::new();
            claims.insert("ns", "team-a");
            claims.insert("kubernetes.io", serde_json::json!({"namespace": "ci", "n": 3}));
            claims.insert("list", serde_json::json!(["a", "b"]));
            let values = Values {
                user: Some("u*"),
                group: Some("g/**"),
                provider: Some("p"),
                claims: Some(&claims),
            };
            let _ = p.matches(name);
            let _ = p.matches_with(name, values);
            let _ = p.substituted(values);
            let _ = p.claims_fill_segments();
            let _ = p.claim_leads(Some("p"), &claims);
            let _ = claims.get(name);
            let _ = claims.text(name);
            if !pattern.contains('*') && !pattern.contains("${") {
                assert_eq!(
                    p.matches(name),
                    pattern == name,
                    "a literal matches itself only"
                );
            }
        }
    }
});
