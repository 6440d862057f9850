//! Every request gets an ID, on each log line written while it runs (the
//! `request` span) and in its answer's `X-Request-Id`, so an operator can
//! find one client's request among many. The ID is this process's random
//! prefix and a counter: unique across replicas and restarts, cheap on the
//! hot path, and nothing a client chose.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

use axum::extract::Request;
use axum::http::HeaderValue;
use axum::middleware::Next;
use axum::response::Response;
use tracing::Instrument as _;

/// The answer's header that carries the request's ID.
pub const HEADER: &str = "x-request-id";

/// This process's prefix: 4 random bytes as hex (zeros without
/// randomness, which only makes IDs of two such processes collide).
fn prefix() -> &'static str {
    static PREFIX: OnceLock<String> = OnceLock::new();
    PREFIX.get_or_init(|| {
        let bytes: [u8; 4] = crate::keys::random_bytes().unwrap_or_default();
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    })
}

/// The next request ID.
fn next_id() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("{}-{n:x}", prefix())
}

/// Runs the request inside its span and names it in the answer.
pub async fn with_request_id(request: Request, next: Next) -> Response {
    let id = next_id();
    // At the error level, so the span is there whenever any line of the
    // request is (an operator who keeps only warnings and the audit log
    // still sees the ID on each).
    let span = tracing::error_span!("request", id = %id);
    let mut response = next.run(request).instrument(span).await;
    if let Ok(value) = HeaderValue::from_str(&id) {
        response.headers_mut().insert(HEADER, value);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_differ_and_share_the_process_prefix() {
        let (a, b) = (next_id(), next_id());
        assert_ne!(a, b);
        assert_eq!(a.split('-').next(), b.split('-').next());
        assert_eq!(prefix().len(), 8);
    }
}
