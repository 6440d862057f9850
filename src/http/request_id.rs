//! Every request gets an ID, on each log line written while it runs (its
//! `request_id`, see [`crate::ops::logging::in_request`]) and in its
//! answer's `X-Request-Id`, so an
//! operator can find one client's request among many. The ID is a number:
//! 32 random bits drawn once per process, then a counter, so IDs differ
//! across replicas and restarts, cost nothing to make on the hot path (no
//! text is formatted for the log), and are nothing a client chose.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

use axum::extract::Request;
use axum::http::HeaderValue;
use axum::middleware::Next;
use axum::response::Response;

/// The answer's header that carries the request's ID.
pub const HEADER: &str = "x-request-id";

/// This process's first ID: 32 random bits in the high half (zeros
/// without randomness, which only makes IDs of two such processes
/// collide).
fn first() -> u64 {
    static FIRST: OnceLock<u64> = OnceLock::new();
    *FIRST.get_or_init(|| {
        let bytes: [u8; 4] = crate::random::random_bytes().unwrap_or_default();
        u64::from(u32::from_be_bytes(bytes)) << 32
    })
}

/// The next request ID.
fn next_id() -> u64 {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    first().wrapping_add(COUNTER.fetch_add(1, Ordering::Relaxed))
}

/// Runs the request under its ID and names it in the answer.
pub async fn with_request_id(request: Request, next: Next) -> Response {
    let id = next_id();
    let mut response = crate::ops::logging::in_request(id, next.run(request)).await;
    response.headers_mut().insert(HEADER, HeaderValue::from(id));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_differ_and_share_the_process_half() {
        let (a, b) = (next_id(), next_id());
        assert_ne!(a, b);
        assert_eq!(a >> 32, b >> 32);
        assert_eq!(a >> 32, first() >> 32);
    }
}
