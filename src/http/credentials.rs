//! The token endpoint's `Authorization` header (Basic only) and its
//! `offline_token` flag, parsed the way the reference server parses them.

use regauth_providers::Credentials;

/// What a Basic `Authorization` header held.
#[derive(Debug)]
pub enum BasicAuth {
    /// No `Authorization` header at all: an anonymous request.
    Absent,
    /// Basic credentials, decoded: the username is the part before the
    /// first `:`, the secret the rest exactly as sent (and never printed).
    Present(Credentials),
}

/// Why an `Authorization` header could not be used.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum AuthHeaderError {
    /// The header is not `Basic <credentials>`.
    #[error("the Authorization header must use the Basic scheme")]
    NotBasic,
    /// The credentials are not base64.
    #[error("the Basic credentials are not valid base64")]
    Base64,
    /// The decoded credentials are not UTF-8.
    #[error("the Basic credentials are not valid UTF-8")]
    Utf8,
    /// The decoded credentials have no `:`.
    #[error("the Basic credentials have no `:` between user and password")]
    NoColon,
}

/// Decodes a Basic header: base64, then UTF-8, split at the first `:`.
/// The password is kept exactly as sent (no trimming, no normalisation).
pub fn parse_basic(header: Option<&[u8]>) -> Result<BasicAuth, AuthHeaderError> {
    use base64::Engine as _;
    let Some(raw) = header else {
        return Ok(BasicAuth::Absent);
    };
    let raw = std::str::from_utf8(raw).map_err(|_| AuthHeaderError::NotBasic)?;
    let (scheme, value) = raw
        .trim()
        .split_once(' ')
        .ok_or(AuthHeaderError::NotBasic)?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return Err(AuthHeaderError::NotBasic);
    }
    let value = value.trim();
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(value)
        .or_else(|_| base64::engine::general_purpose::STANDARD_NO_PAD.decode(value))
        .map_err(|_| AuthHeaderError::Base64)?;
    let text = String::from_utf8(decoded).map_err(|_| AuthHeaderError::Utf8)?;
    let (username, password) = text.split_once(':').ok_or(AuthHeaderError::NoColon)?;
    Ok(BasicAuth::Present(Credentials::new(username, password)))
}

/// Parses `offline_token` the way the reference server does.
pub fn parse_bool(value: &str) -> Option<bool> {
    match value.to_ascii_lowercase().as_str() {
        "true" | "1" | "t" | "yes" => Some(true),
        "false" | "0" | "f" | "no" | "" => Some(false),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine as _;
    use regauth_providers::ExposeSecret as _;

    fn basic(s: &[u8]) -> Vec<u8> {
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(s)
        )
        .into_bytes()
    }

    #[test]
    fn basic_splits_at_first_colon_and_keeps_password_verbatim() {
        let Ok(BasicAuth::Present(credentials)) =
            parse_basic(Some(&basic(" us er:p:a:ss wörd ".as_bytes())))
        else {
            panic!("not decoded")
        };
        assert_eq!(credentials.username, " us er");
        assert_eq!(credentials.secret.expose_secret(), "p:a:ss wörd ");
    }

    #[test]
    fn basic_errors() {
        assert!(matches!(parse_basic(None), Ok(BasicAuth::Absent)));
        assert_eq!(
            parse_basic(Some(b"Bearer abc")).err(),
            Some(AuthHeaderError::NotBasic)
        );
        assert_eq!(
            parse_basic(Some(b"Basic !!!")).err(),
            Some(AuthHeaderError::Base64)
        );
        assert_eq!(
            parse_basic(Some(&basic(b"user\xffpass:x"))).err(),
            Some(AuthHeaderError::Utf8)
        );
        assert_eq!(
            parse_basic(Some(&basic(b"nocolon"))).err(),
            Some(AuthHeaderError::NoColon)
        );
        assert_eq!(
            parse_basic(Some(b"Basic \xff\xfe")).err(),
            Some(AuthHeaderError::NotBasic)
        );
    }

    #[test]
    fn scheme_is_case_insensitive() {
        let mut h = basic(b"u:p");
        h[..5].copy_from_slice(b"bAsIc");
        assert!(matches!(parse_basic(Some(&h)), Ok(BasicAuth::Present(_))));
    }

    #[test]
    fn offline_token_booleans() {
        assert_eq!(parse_bool("true"), Some(true));
        assert_eq!(parse_bool("1"), Some(true));
        assert_eq!(parse_bool("false"), Some(false));
        assert_eq!(parse_bool("0"), Some(false));
        assert_eq!(parse_bool("maybe"), None);
    }
}
