//! The token endpoint's success body, made once per signed token (and kept
//! with it for reuse), so the hot path writes no JSON.

use crate::clock::rfc3339;

/// What the body begins with: the token comes right after it.
const TOKEN_FIRST: &str = "{\"token\":\"";

/// Where the token begins in a body.
pub(super) const TOKEN_AT: usize = TOKEN_FIRST.len();

/// The token endpoint's success body: `token` and `access_token` (the same
/// JWT), integer `expires_in`, RFC 3339 `issued_at`, and on POST the
/// granted `scope`.
/// Written by hand because it is the hot path and only `scope` can need
/// escaping (a JWT is base64url and dots).
pub fn response_body(
    jwt: &str,
    expires_in: u64,
    iat: i64,
    scope: Option<&str>,
    refresh_token: Option<&str>,
) -> bytes::Bytes {
    let issued_at = rfc3339(iat);
    let mut body = String::with_capacity(2 * jwt.len() + 128);
    body.push_str(TOKEN_FIRST);
    body.push_str(jwt);
    body.push_str("\",\"access_token\":\"");
    body.push_str(jwt);
    body.push_str("\",\"expires_in\":");
    body.push_str(itoa::Buffer::new().format(expires_in));
    body.push_str(",\"issued_at\":\"");
    body.push_str(&issued_at);
    body.push('"');
    if let Some(scope) = scope {
        body.push_str(",\"scope\":");
        body.push_str(&serde_json::Value::from(scope).to_string());
    }
    if let Some(refresh_token) = refresh_token {
        // base64url with a fixed prefix: nothing to escape
        body.push_str(",\"refresh_token\":\"");
        body.push_str(refresh_token);
        body.push('"');
    }
    body.push('}');
    body.into()
}
