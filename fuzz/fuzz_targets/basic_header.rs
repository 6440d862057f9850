//! The Basic `Authorization` header: any bytes give a value or an error,
//! never a panic, and a decoded password is never altered.
#![no_main]

use libfuzzer_sys::fuzz_target;
use regauth::http::credentials::{parse_basic, BasicAuth};

fuzz_target!(|data: &[u8]| {
    if let Ok(BasicAuth::Present(credentials)) = parse_basic(Some(data)) {
        assert!(!credentials.username.contains(':'), "split at the first colon");
    }
});
