//! What the page's handlers take from a request: the page (or a 404 when
//! app passwords are off), the session (or a redirect to sign in, as the
//! `AuthRedirect` of axum's `examples/oauth`), and forms: bounded,
//! decoded, and, from a signed-in page, carrying the session's CSRF
//! token.

use std::sync::Arc;

use axum::extract::{FromRequest, FromRequestParts, OptionalFromRequestParts, Request};
use axum::http::header;
use axum::http::request::Parts;
use serde::de::DeserializeOwned;
use serde::Deserialize;

use super::cookies::PageCookie;
use super::error::{Missing, PageError};
use crate::app_passwords::{AppPasswords, Session};
use crate::http::extract::loaded;
use crate::{AppState, Live};

/// The largest form body accepted.
pub(super) const MAX_FORM_BYTES: usize = 16 * 1024;

/// The page: the state this request is served from, and its app
/// passwords.
pub(super) struct Page {
    pub(super) state: Arc<AppState>,
    pub(super) passwords: Arc<AppPasswords>,
}

impl Page {
    /// The page's path (`/ui`).
    pub(super) fn path(&self) -> &str {
        self.passwords.config.path()
    }
}

impl FromRequestParts<Arc<Live>> for Page {
    type Rejection = PageError;

    async fn from_request_parts(parts: &mut Parts, live: &Arc<Live>) -> Result<Self, PageError> {
        let state = loaded(parts, live);
        let passwords = state
            .app_passwords
            .clone()
            .ok_or(PageError::NotFound(Missing::AppPasswords))?;
        Ok(Page { state, passwords })
    }
}

/// The session of a signed-in request: without one, the answer is the
/// way to the sign-in page.
pub(super) struct SignedIn(pub(super) Session);

/// The session of this request, if there is one that holds.
impl OptionalFromRequestParts<Arc<Live>> for SignedIn {
    type Rejection = PageError;

    async fn from_request_parts(
        parts: &mut Parts,
        live: &Arc<Live>,
    ) -> Result<Option<Self>, PageError> {
        let page = Page::from_request_parts(parts, live).await?;
        let Some(sealed) = PageCookie::Session.read(&page.passwords.config, &parts.headers) else {
            return Ok(None);
        };
        let session = page.passwords.session(sealed, crate::clock::now()).await?;
        Ok(session.map(SignedIn))
    }
}

impl FromRequestParts<Arc<Live>> for SignedIn {
    type Rejection = PageError;

    async fn from_request_parts(parts: &mut Parts, live: &Arc<Live>) -> Result<Self, PageError> {
        let signed_in =
            <SignedIn as OptionalFromRequestParts<_>>::from_request_parts(parts, live).await?;
        match signed_in {
            Some(signed_in) => Ok(signed_in),
            None => {
                let page = Page::from_request_parts(parts, live).await?;
                Err(PageError::SignInFirst(format!("{}/", page.path())))
            }
        }
    }
}

/// A form body (`application/x-www-form-urlencoded`, at most
/// [`MAX_FORM_BYTES`]).
pub(super) struct PageForm<T>(pub(super) T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for PageForm<T> {
    type Rejection = PageError;

    async fn from_request(request: Request, _: &S) -> Result<Self, PageError> {
        let media = request
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .map(str::trim);
        if !media.is_some_and(|m| m.eq_ignore_ascii_case("application/x-www-form-urlencoded")) {
            return Err(PageError::BadForm);
        }
        let body = axum::body::to_bytes(request.into_body(), MAX_FORM_BYTES)
            .await
            .map_err(|_| PageError::BadForm)?;
        decode_form(&body).map(PageForm).ok_or(PageError::BadForm)
    }
}

/// A form with a CSRF token.
pub(super) trait HasCsrf {
    fn csrf(&self) -> &str;
}

/// A form posted from a signed-in page, whose CSRF token is the
/// session's: the session, and the form.
pub(super) struct Posted<T> {
    pub(super) session: Session,
    pub(super) form: T,
}

impl<T: DeserializeOwned + HasCsrf> FromRequest<Arc<Live>> for Posted<T> {
    type Rejection = PageError;

    async fn from_request(request: Request, live: &Arc<Live>) -> Result<Self, PageError> {
        let (mut parts, body) = request.into_parts();
        let SignedIn(session) =
            <SignedIn as FromRequestParts<_>>::from_request_parts(&mut parts, live).await?;
        let request = Request::from_parts(parts, body);
        let PageForm(form) = PageForm::<T>::from_request(request, live).await?;
        if !session.csrf_holds(form.csrf()) {
            return Err(PageError::FormExpired);
        }
        Ok(Posted { session, form })
    }
}

/// Decodes a form: repeated keys (checkboxes) become lists where the
/// type wants one ([`OneOrMany`]).
fn decode_form<T: DeserializeOwned>(body: &[u8]) -> Option<T> {
    let mut map = serde_json::Map::new();
    for (key, value) in form_urlencoded::parse(body) {
        let value = serde_json::Value::String(value.into_owned());
        match map.get_mut(key.as_ref()) {
            Some(serde_json::Value::Array(list)) => list.push(value),
            Some(existing) => {
                let first = existing.take();
                *existing = serde_json::Value::Array(vec![first, value]);
            }
            None => {
                map.insert(key.into_owned(), value);
            }
        }
    }
    serde_json::from_value(serde_json::Value::Object(map)).ok()
}

/// A value or a list of values (a form's repeated field).
#[derive(Deserialize, Default)]
#[serde(untagged)]
pub(super) enum OneOrMany {
    #[default]
    None,
    One(String),
    Many(Vec<String>),
}

impl OneOrMany {
    pub(super) fn values(&self) -> Vec<&str> {
        match self {
            OneOrMany::None => Vec::new(),
            OneOrMany::One(v) => vec![v.as_str()],
            OneOrMany::Many(v) => v.iter().map(String::as_str).collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Deserialize)]
    struct Form {
        #[serde(default)]
        name: String,
        #[serde(default)]
        actions: OneOrMany,
    }

    #[test]
    fn forms_decode_with_repeated_keys_as_lists() {
        let form: Form = decode_form(b"name=a+b%21&actions=pull&actions=push").unwrap();
        assert_eq!(form.name, "a b!");
        assert_eq!(form.actions.values(), ["pull", "push"]);
        let form: Form = decode_form(b"actions=pull").unwrap();
        assert_eq!(
            (form.name.as_str(), form.actions.values()),
            ("", vec!["pull"])
        );
        let form: Form = decode_form(b"").unwrap();
        assert!(form.actions.values().is_empty());
        // a field that is no list cannot be given twice
        assert!(decode_form::<Form>(b"name=a&name=b").is_none());
    }
}
