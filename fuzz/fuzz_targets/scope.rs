//! The scope grammar: any input parses without panicking, every parsed
//! scope prints and parses back to itself, and names are kept verbatim.
#![no_main]

use libfuzzer_sys::fuzz_target;
use regauth::domain::scope::{parse_scopes, Scope};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    for scope in parse_scopes(text.split('\n')) {
        let printed = scope.to_string();
        let again = Scope::parse(&printed).expect("a printed scope parses");
        assert_eq!(again.kind, scope.kind);
        assert_eq!(again.name, scope.name);
        assert_eq!(again.actions, scope.actions);
        assert!(
            text.contains(scope.name.as_str()),
            "names are kept verbatim"
        );
    }
});
