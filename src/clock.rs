//! The wall clock, read in one place. Decisions take `now` as a
//! parameter; the edges (a request's handler, a background task) read it
//! here once and pass it on. Tests move it with
//! [`regauth_providers::clock`].

/// The current time, in seconds since the epoch.
pub fn now() -> i64 {
    regauth_providers::clock::unix_seconds() as i64
}

/// The current time, in milliseconds since the epoch.
pub fn now_ms() -> u64 {
    regauth_providers::clock::unix_millis()
}

/// RFC 3339 UTC with second precision, e.g. `2026-11-24T01:02:03Z`.
pub fn rfc3339(unix: i64) -> String {
    let format =
        time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]Z");
    time::OffsetDateTime::from_unix_timestamp(unix)
        .ok()
        .and_then(|t| t.format(&format).ok())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_format() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_700_000_000), "2023-11-14T22:13:20Z");
    }
}
