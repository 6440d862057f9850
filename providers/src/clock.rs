//! The one clock of regauth. Everything that asks "what time is it" for an
//! expiry or a deadline asks here, so that tests can move time forward
//! without sleeping. Production code never sets the offset.

use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Seconds added to the system time (tests only).
static OFFSET: AtomicI64 = AtomicI64::new(0);

/// The current time.
pub fn now() -> SystemTime {
    #[allow(clippy::disallowed_methods)] // the one place that reads the system clock
    let system = SystemTime::now();
    let offset = OFFSET.load(Ordering::Relaxed);
    if offset >= 0 {
        system + Duration::from_secs(offset.unsigned_abs())
    } else {
        system - Duration::from_secs(offset.unsigned_abs())
    }
}

/// Seconds since the Unix epoch.
pub fn unix_seconds() -> u64 {
    now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default()
}

/// Milliseconds since the Unix epoch.
pub fn unix_millis() -> u64 {
    now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or_default()
}

/// Moves this process's clock by `seconds` (tests that need an expiry to
/// pass). Affects every caller in the process.
pub fn advance(seconds: i64) {
    OFFSET.fetch_add(seconds, Ordering::Relaxed);
}
