//! Recently signed tokens, handed out again within `token.reuse_window`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// A token signed recently, kept for reuse. Its `Debug` leaves the token
/// out.
pub struct SignedToken {
    /// When it was signed, in seconds since the epoch.
    pub iat: i64,
    /// The complete GET response body for this token. It holds the token
    /// itself, which is not kept twice: the tokens of a busy reuse window
    /// are megabytes.
    pub body: bytes::Bytes,
    /// Where in `body` the token is.
    jwt_at: std::ops::Range<usize>,
}

impl std::fmt::Debug for SignedToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SignedToken")
            .field("iat", &self.iat)
            .finish_non_exhaustive()
    }
}

impl SignedToken {
    /// A signed token with its GET response body.
    pub fn new(jwt: &str, iat: i64, expires_in: u64) -> Self {
        let body = super::response_body(jwt, expires_in, iat, None, None);
        let start = super::response::TOKEN_AT;
        Self {
            iat,
            body,
            jwt_at: start..start + jwt.len(),
        }
    }

    /// The signed token.
    pub fn jwt(&self) -> &str {
        // `body` was written from strings; the range is the token's
        std::str::from_utf8(self.body.get(self.jwt_at.clone()).unwrap_or_default())
            .unwrap_or_default()
    }
}

/// Recently signed tokens by (subject, provider, service, granted access).
///
/// A push asks for the same token again for every layer within seconds;
/// handing back the identical token (same claims, same `iat`, so the
/// client's expiry arithmetic holds) saves the signature, which is most of
/// a request's cost. Its only visible effect is a repeated `jti` within the
/// window. A zero window disables it.
pub struct IssuedTokens {
    entries: Option<moka::sync::Cache<String, Arc<SignedToken>>>,
    /// Tokens handed out again (for `/metrics`).
    reused: AtomicU64,
}

/// At most this many bytes of tokens are kept for reuse.
const REUSE_BYTES: u64 = 32 * 1024 * 1024;
/// Grants larger than this are signed every time rather than kept.
const REUSE_MAX_GRANT_BYTES: usize = 8 * 1024;

impl IssuedTokens {
    /// Keeps tokens for `window`; a zero window keeps none.
    pub fn new(window: Duration) -> Self {
        Self {
            entries: (!window.is_zero()).then(|| {
                moka::sync::Cache::builder()
                    .max_capacity(REUSE_BYTES)
                    .weigher(|key: &String, issued: &Arc<SignedToken>| {
                        let bytes = key.len() + issued.body.len() + 64;
                        u32::try_from(bytes).unwrap_or(u32::MAX)
                    })
                    .time_to_live(window)
                    .build()
            }),
            reused: AtomicU64::new(0),
        }
    }

    /// The reuse key of a grant: subject, provider, service and the granted
    /// access as text.
    pub fn key(subject: &str, provider: &str, service: &str, granted: &str) -> String {
        // NUL cannot occur in any of the parts' meaningful values, and the
        // parts' lengths make the key unambiguous anyway.
        let parts = [subject, provider, service];
        let mut key =
            String::with_capacity(parts.iter().map(|p| p.len() + 8).sum::<usize>() + granted.len());
        let mut digits = itoa::Buffer::new();
        for part in parts {
            key.push_str(digits.format(part.len()));
            key.push(':');
            key.push_str(part);
            key.push('\0');
        }
        key.push_str(granted);
        key
    }

    /// Tokens handed out again so far.
    pub fn reused(&self) -> u64 {
        self.reused.load(Ordering::Relaxed)
    }

    /// A token kept for this key, if any; each hit counts in `reused`.
    pub fn get(&self, key: &str) -> Option<Arc<SignedToken>> {
        let found = self.entries.as_ref()?.get(key);
        if found.is_some() {
            self.reused.fetch_add(1, Ordering::Relaxed);
        }
        found
    }

    /// Keeps a token for reuse, unless reuse is disabled or the key is too
    /// large.
    pub fn insert(&self, key: String, issued: Arc<SignedToken>) {
        if key.len() > REUSE_MAX_GRANT_BYTES {
            return;
        }
        if let Some(entries) = &self.entries {
            entries.insert(key, issued);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_name_each_part_with_its_length() {
        assert_eq!(
            IssuedTokens::key("bob", "local", "svc", "repository:a:pull"),
            "3:bob\x005:local\x003:svc\x00repository:a:pull"
        );
    }

    #[test]
    fn issued_tokens_are_reused_only_for_the_same_key_and_window() {
        let tokens = IssuedTokens::new(Duration::from_secs(60));
        let key = IssuedTokens::key("bob", "local", "svc", "repository:a:pull");
        assert!(tokens.get(&key).is_none());
        tokens.insert(key.clone(), Arc::new(SignedToken::new("t", 1, 60)));
        assert_eq!(tokens.get(&key).unwrap().jwt(), "t");
        assert!(tokens
            .get(&IssuedTokens::key(
                "bob",
                "local",
                "svc",
                "repository:a:push"
            ))
            .is_none());
        assert!(tokens
            .get(&IssuedTokens::key(
                "bo",
                "blocal",
                "svc",
                "repository:a:pull"
            ))
            .is_none());
        let off = IssuedTokens::new(Duration::ZERO);
        off.insert(key.clone(), Arc::new(SignedToken::new("t", 1, 60)));
        assert!(off.get(&key).is_none());
    }
}
