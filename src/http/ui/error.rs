//! The page's one error type: every way a page request ends early, and
//! the one place each becomes a status and a page. The text says what
//! the user can do; the log says why.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};

use super::pages::{render, Message};
use crate::app_passwords::{AppPasswordError, BrowserError};

/// What is not here.
#[derive(Debug, Clone, Copy)]
pub(super) enum Missing {
    /// No such page.
    Page,
    /// App passwords are off (since a reload).
    AppPasswords,
    /// No such browser sign-in.
    SignIn,
    /// No password form (`login_form` is empty).
    PasswordSignIn,
    /// No such app password, or not the user's.
    AppPassword,
}

/// Why a page request ends without the page it asked for.
#[derive(Debug)]
pub(super) enum PageError {
    /// Nothing here.
    NotFound(Missing),
    /// Not signed in: to the sign-in page, at this path.
    SignInFirst(String),
    /// A form whose CSRF token is not the session's (or the sign-in
    /// form's).
    FormExpired,
    /// A form that is not one.
    BadForm,
    /// The IdP's answer to a browser sign-in does not parse.
    UnreadableAnswer,
    /// A browser sign-in that did not begin or end in a session.
    Browser(BrowserError),
    /// The password form's provider cannot answer now.
    PasswordUnchecked,
    /// What app passwords said.
    AppPasswords(AppPasswordError),
    /// No randomness for a token.
    NoRandomness,
}

impl From<AppPasswordError> for PageError {
    fn from(e: AppPasswordError) -> Self {
        PageError::AppPasswords(e)
    }
}

impl From<BrowserError> for PageError {
    fn from(e: BrowserError) -> Self {
        match e {
            BrowserError::Session(e) => PageError::AppPasswords(e),
            e => PageError::Browser(e),
        }
    }
}

impl From<crate::keys::NoRandomness> for PageError {
    fn from(_: crate::keys::NoRandomness) -> Self {
        PageError::NoRandomness
    }
}

impl PageError {
    /// Whether a browser sign-in under way is over with this error (its
    /// cookie is then deleted).
    pub(super) fn ends_sign_in(&self) -> bool {
        match self {
            PageError::UnreadableAnswer => true,
            PageError::Browser(e) => e.ends_sign_in(),
            _ => false,
        }
    }

    /// The status, title and text of the page that says so.
    fn page(&self) -> (StatusCode, &'static str, &'static str) {
        const SHORTLY: &str = "Try again shortly";
        const REFUSED: &str = "Sign-in refused";
        let unavailable = |text| (StatusCode::SERVICE_UNAVAILABLE, SHORTLY, text);
        let refused = |text| (StatusCode::UNAUTHORIZED, REFUSED, text);
        match self {
            PageError::NotFound(missing) => (StatusCode::NOT_FOUND, "Not found", missing.text()),
            // a redirect (see `into_response`), not a page
            PageError::SignInFirst(_) => (StatusCode::SEE_OTHER, "Sign in", "Sign in first."),
            PageError::FormExpired => (
                StatusCode::FORBIDDEN,
                "Form expired",
                "This form was not made for your session. Go back, reload the page and try again.",
            ),
            PageError::BadForm => (
                StatusCode::BAD_REQUEST,
                "Bad request",
                "The form could not be read.",
            ),
            PageError::UnreadableAnswer => {
                refused("The identity provider's answer is not readable.")
            }
            PageError::Browser(e) => browser(e, unavailable, refused),
            PageError::PasswordUnchecked => {
                unavailable("Your password cannot be checked right now.")
            }
            PageError::AppPasswords(e) => app_passwords(e, unavailable),
            PageError::NoRandomness => unavailable("No randomness."),
        }
    }
}

type Said = (StatusCode, &'static str, &'static str);

fn browser(
    e: &BrowserError,
    unavailable: impl Fn(&'static str) -> Said,
    refused: impl Fn(&'static str) -> Said,
) -> Said {
    match e {
        BrowserError::NoSuchSignIn => (StatusCode::NOT_FOUND, "Not found", Missing::SignIn.text()),
        BrowserError::IdpUnavailable => {
            unavailable("The identity provider cannot be reached right now.")
        }
        BrowserError::NoRandomness => unavailable("No randomness."),
        BrowserError::RefusedAtIdp => refused("The identity provider did not sign you in."),
        BrowserError::NotStarted => {
            refused("This sign-in was not started in this browser, or took too long. Start again.")
        }
        BrowserError::ProviderGone => refused("This sign-in's provider is no longer configured."),
        BrowserError::NotAccepted => {
            refused("The identity provider's answer was not accepted. Start again.")
        }
        BrowserError::Throttled => (
            StatusCode::TOO_MANY_REQUESTS,
            "Too many failed sign-ins",
            "Wait a while and try again.",
        ),
        BrowserError::ThrottleUnavailable => unavailable("Sign-ins cannot be checked right now."),
        BrowserError::Interrupted => unavailable("The sign-in could not finish."),
        BrowserError::Session(e) => app_passwords(e, unavailable),
    }
}

fn app_passwords(e: &AppPasswordError, unavailable: impl Fn(&'static str) -> Said) -> Said {
    match e {
        AppPasswordError::NotFound => (
            StatusCode::NOT_FOUND,
            "Not found",
            Missing::AppPassword.text(),
        ),
        AppPasswordError::NotAdmin => (
            StatusCode::FORBIDDEN,
            "Not for you",
            "Only administrators see everyone's app passwords.",
        ),
        AppPasswordError::OwnerUnavailable => {
            unavailable("Your account cannot be checked right now.")
        }
        AppPasswordError::Random => unavailable("No randomness."),
        AppPasswordError::GroupUnavailable => {
            unavailable("The team's directory cannot be asked right now.")
        }
        // the user's to put right: shown beside the form, never here but
        // by mistake
        e if e.is_for_the_user() => (
            StatusCode::BAD_REQUEST,
            "Bad request",
            "The form could not be used.",
        ),
        _ => unavailable("regauth cannot reach its state right now."),
    }
}

impl Missing {
    fn text(self) -> &'static str {
        match self {
            Missing::Page => "There is no such page.",
            Missing::AppPasswords => "App passwords are not enabled.",
            Missing::SignIn => "There is no such sign-in.",
            Missing::PasswordSignIn => "There is no password sign-in here.",
            Missing::AppPassword => {
                "There is no such app password (it may have been revoked already)."
            }
        }
    }
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        if let PageError::SignInFirst(to) = &self {
            return Redirect::to(to).into_response();
        }
        if let PageError::AppPasswords(e @ AppPasswordError::Store(_)) = &self {
            tracing::warn!(error = %e, "the app-password page could not reach the state backend");
        }
        let (status, title, text) = self.page();
        render(
            status,
            &Message {
                base: "",
                title,
                text,
            },
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_error_says_what_to_do_with_its_status() {
        let cases = [
            (PageError::NotFound(Missing::Page), StatusCode::NOT_FOUND),
            (PageError::FormExpired, StatusCode::FORBIDDEN),
            (PageError::BadForm, StatusCode::BAD_REQUEST),
            (PageError::UnreadableAnswer, StatusCode::UNAUTHORIZED),
            (
                PageError::Browser(BrowserError::Throttled),
                StatusCode::TOO_MANY_REQUESTS,
            ),
            (
                PageError::Browser(BrowserError::NoSuchSignIn),
                StatusCode::NOT_FOUND,
            ),
            (
                PageError::PasswordUnchecked,
                StatusCode::SERVICE_UNAVAILABLE,
            ),
            (
                PageError::AppPasswords(AppPasswordError::Store(crate::state::StoreError(
                    "secret detail".into(),
                ))),
                StatusCode::SERVICE_UNAVAILABLE,
            ),
            (
                PageError::AppPasswords(AppPasswordError::NotAdmin),
                StatusCode::FORBIDDEN,
            ),
        ];
        for (error, status) in cases {
            let (said, title, text) = error.page();
            assert_eq!(said, status, "{error:?}");
            assert!(!title.is_empty() && !text.is_empty(), "{error:?}");
            assert!(!text.contains("secret detail"));
        }
        let to = PageError::SignInFirst("/ui/".into()).into_response();
        assert_eq!(to.status(), StatusCode::SEE_OTHER);
        assert_eq!(to.headers()["location"], "/ui/");
    }

    #[test]
    fn only_refusals_end_a_browser_sign_in() {
        assert!(PageError::UnreadableAnswer.ends_sign_in());
        assert!(PageError::from(BrowserError::NotAccepted).ends_sign_in());
        assert!(!PageError::from(BrowserError::IdpUnavailable).ends_sign_in());
        assert!(!PageError::from(BrowserError::Session(AppPasswordError::Random)).ends_sign_in());
    }
}
