//! The page's cookies: the session, a browser sign-in under way, and the
//! sign-in form's token. All are HttpOnly and SameSite=Lax; under https
//! they are `__Host-` cookies, which a browser accepts only from this
//! very host (Secure, `Path=/`, no `Domain`), so a sibling subdomain
//! cannot plant a session or a form token. Their values are sealed
//! elsewhere ([`crate::app_passwords`]); here they are only named, read
//! and set.

use std::borrow::Cow;
use std::time::Duration;

use axum::http::{header, HeaderMap, HeaderValue};

use crate::config::AppPasswordsConfig;

/// One of the page's cookies.
#[derive(Clone, Copy, Debug)]
pub(super) enum PageCookie {
    /// The signed-in session.
    Session,
    /// A browser sign-in under way.
    SigningIn,
    /// The sign-in form's CSRF token.
    Form,
    /// The code a device login's verification URL was opened with,
    /// kept while its user signs in.
    Device,
}

impl PageCookie {
    fn base(self) -> &'static str {
        match self {
            PageCookie::Session => "regauth_session",
            PageCookie::SigningIn => "regauth_signin",
            PageCookie::Form => "regauth_form",
            PageCookie::Device => "regauth_device",
        }
    }

    /// The cookie's name: under https with the `__Host-` prefix.
    fn name(self, config: &AppPasswordsConfig) -> Cow<'static, str> {
        if config.https() {
            Cow::Owned(format!("__Host-{}", self.base()))
        } else {
            Cow::Borrowed(self.base())
        }
    }

    /// The cookie's value, from the request's `Cookie` headers.
    pub(super) fn read<'h>(
        self,
        config: &AppPasswordsConfig,
        headers: &'h HeaderMap,
    ) -> Option<&'h str> {
        let name = self.name(config);
        headers
            .get_all(header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(cookie::Cookie::split_parse)
            .filter_map(Result::ok)
            .find(|c| c.name() == name)
            .and_then(|c| c.value_raw())
    }

    /// A `Set-Cookie` value for the page's path (under https `/`, as the
    /// `__Host-` prefix requires); `max_age` zero deletes it.
    pub(super) fn set(
        self,
        config: &AppPasswordsConfig,
        value: &str,
        max_age: Duration,
    ) -> HeaderValue {
        let path = if config.https() { "/" } else { config.path() };
        let built = cookie::Cookie::build((self.name(config), value))
            .path(path)
            .http_only(true)
            .same_site(cookie::SameSite::Lax)
            .secure(config.https())
            .max_age(cookie::time::Duration::seconds(
                i64::try_from(max_age.as_secs()).unwrap_or(i64::MAX),
            ))
            .build();
        HeaderValue::from_str(&built.to_string()).unwrap_or_else(|_| HeaderValue::from_static(""))
    }

    /// A `Set-Cookie` value that deletes the cookie.
    pub(super) fn clear(self, config: &AppPasswordsConfig) -> HeaderValue {
        self.set(config, "", Duration::ZERO)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(url: &str) -> AppPasswordsConfig {
        AppPasswordsConfig {
            url: url.into(),
            ..crate::app_passwords::testing::config()
        }
    }

    fn headers(values: &[&str]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for v in values {
            headers.append(header::COOKIE, HeaderValue::from_str(v).unwrap());
        }
        headers
    }

    #[test]
    fn cookies_are_read_by_their_exact_name() {
        let plain = config("http://regauth.test/ui");
        let h = headers(&[
            "a=1; regauth_session=abc-_1; regauth_form=f",
            "regauth_signin=s",
        ]);
        assert_eq!(PageCookie::Session.read(&plain, &h), Some("abc-_1"));
        assert_eq!(PageCookie::Form.read(&plain, &h), Some("f"));
        assert_eq!(PageCookie::SigningIn.read(&plain, &h), Some("s"));
        // under https only the __Host- cookie counts
        let https = config("https://regauth.test/ui");
        assert_eq!(PageCookie::Session.read(&https, &h), None);
        let h = headers(&["regauth_session=planted; __Host-regauth_session=mine"]);
        assert_eq!(PageCookie::Session.read(&https, &h), Some("mine"));
        // no prefix match, no garbage
        let h = headers(&["xregauth_session=1; regauth_sessionx=2; junk"]);
        assert_eq!(PageCookie::Session.read(&plain, &h), None);
    }

    #[test]
    fn cookies_are_set_for_the_page_alone() {
        let plain = config("http://regauth.test/ui");
        let set = PageCookie::Session.set(&plain, "v", Duration::from_secs(60));
        let set = set.to_str().unwrap();
        for part in [
            "regauth_session=v",
            "HttpOnly",
            "SameSite=Lax",
            "Path=/ui",
            "Max-Age=60",
        ] {
            assert!(set.split("; ").any(|p| p == part), "{part}: {set}");
        }
        assert!(!set.contains("Secure"), "{set}");
        let https = config("https://regauth.test/ui");
        let set = PageCookie::Form.clear(&https);
        let set = set.to_str().unwrap();
        for part in ["__Host-regauth_form=", "Secure", "Path=/", "Max-Age=0"] {
            assert!(set.split("; ").any(|p| p == part), "{part}: {set}");
        }
        assert!(!set.contains("Domain"), "{set}");
    }
}
