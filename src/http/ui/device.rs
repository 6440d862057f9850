//! The device login's pages (`/ui/device`): a signed-in user enters the
//! code their terminal shows, sees which client and registry ask, and
//! approves or denies. Someone not signed in signs in first, exactly as
//! for app passwords, and comes back here with the code they opened.

use axum::extract::Query;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;

use super::cookies::PageCookie;
use super::error::PageError;
use super::extract::{HasCsrf, Page, Posted, SignedIn};
use super::pages::{day, render, DeviceConfirm, DevicePage, Message};
use super::{sign_in_page, with_cookie};
use crate::app_passwords::device::{Answer, Answered, DeviceError, Entered};
use crate::app_passwords::{AppPasswordError, Session, SIGN_IN_WINDOW};
use crate::http::extract::ClientIp;
use crate::net::network_of;

/// The query of the verification URL.
#[derive(Deserialize, Default)]
pub(super) struct Opened {
    #[serde(default)]
    user_code: String,
}

/// What of a typed code is kept in a cookie or shown back: its letters
/// and dashes, bounded.
fn kept(code: &str) -> String {
    code.chars()
        .filter(|c| c.is_ascii_alphabetic() || *c == '-')
        .take(16)
        .collect()
}

/// The code form; signed out, the sign-in page, with the code kept for
/// after the sign-in.
pub(super) async fn open(
    page: Page,
    signed_in: Option<SignedIn>,
    headers: HeaderMap,
    query: Result<Query<Opened>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, PageError> {
    let code = kept(&query.map(|Query(q)| q.user_code).unwrap_or_default());
    match signed_in {
        Some(SignedIn(session)) => Ok(code_page(&page, &session, &code, StatusCode::OK, None)),
        None => {
            let response = sign_in_page(&page, &headers, StatusCode::OK, None)?;
            let cookie = PageCookie::Device.set(
                &page.passwords.config,
                if code.is_empty() { "-" } else { &code },
                SIGN_IN_WINDOW,
            );
            Ok(with_cookie(response, cookie))
        }
    }
}

/// Where a sign-in that began at the device page goes on to, if it did.
pub(super) fn after_sign_in(page: &Page, headers: &HeaderMap) -> Option<String> {
    let code = kept(PageCookie::Device.read(&page.passwords.config, headers)?);
    let query = if code.is_empty() {
        String::new()
    } else {
        format!("?user_code={code}")
    };
    Some(format!("{}/device{query}", page.path()))
}

fn code_page(
    page: &Page,
    session: &Session,
    code: &str,
    status: StatusCode,
    error: Option<&str>,
) -> Response {
    render(
        status,
        &DevicePage {
            base: page.path(),
            subject: &session.subject,
            csrf: session.csrf(),
            code,
            error,
        },
    )
}

#[derive(Deserialize)]
pub(super) struct CodeForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    user_code: String,
}

impl HasCsrf for CodeForm {
    fn csrf(&self) -> &str {
        &self.csrf
    }
}

/// A code entered: the login it names, to approve or deny.
pub(super) async fn enter(
    page: Page,
    ClientIp(ip): ClientIp,
    Posted { session, form }: Posted<CodeForm>,
) -> Result<Response, PageError> {
    let throttle = page.state.chain.throttle();
    let now = crate::clock::now();
    let entered = page
        .passwords
        .enter_user_code(throttle, &session, &form.user_code, ip, now)
        .await
        .map_err(device_error)?;
    let typed = kept(&form.user_code);
    let again = |status, error| Ok(code_page(&page, &session, &typed, status, Some(error)));
    match entered {
        Entered::Asking(asking) => Ok(render(
            StatusCode::OK,
            &DeviceConfirm {
                base: page.path(),
                csrf: session.csrf(),
                subject: &session.subject,
                user_code: &asking.user_code,
                client_id: &asking.client_id,
                service: &asking.service,
                from: &asking.from,
                elsewhere: asking
                    .from
                    .parse()
                    .map_or(true, |from| network_of(from) != network_of(ip)),
                expires: day(asking.expires),
            },
        )),
        Entered::Unknown => again(
            StatusCode::BAD_REQUEST,
            "No device login has this code, or it has expired. Check the code on your terminal.",
        ),
        Entered::Answered => again(
            StatusCode::CONFLICT,
            "This code has been used already. Start the login on your terminal again.",
        ),
        Entered::Throttled => again(
            StatusCode::TOO_MANY_REQUESTS,
            "Too many wrong codes from your network. Wait a while and try again.",
        ),
    }
}

#[derive(Deserialize)]
pub(super) struct AnswerForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    user_code: String,
    #[serde(default)]
    answer: String,
}

impl HasCsrf for AnswerForm {
    fn csrf(&self) -> &str {
        &self.csrf
    }
}

/// Approved or denied.
pub(super) async fn answer(
    page: Page,
    ClientIp(ip): ClientIp,
    Posted { session, form }: Posted<AnswerForm>,
) -> Result<Response, PageError> {
    let approve = match form.answer.as_str() {
        "approve" => true,
        "deny" => false,
        _ => return Err(PageError::BadForm),
    };
    let now = crate::clock::now();
    let answer = Answer {
        session: &session,
        user_code: &form.user_code,
        approve,
    };
    let throttle = page.state.chain.throttle();
    let answered = page
        .passwords
        .answer_device_login(answer, throttle, ip, now)
        .await;
    let message = |status, title, text: &str| {
        Ok(render(
            status,
            &Message {
                base: page.path(),
                title,
                text,
            },
        ))
    };
    match answered {
        Ok(Answered::Done) if approve => message(
            StatusCode::OK,
            "Device login approved",
            "Go back to your terminal: it signs in within a few seconds. The login is listed with your app passwords, where you can revoke it.",
        ),
        Ok(Answered::Done) => message(
            StatusCode::OK,
            "Device login denied",
            "Nothing was signed in. Your terminal is told so.",
        ),
        Ok(Answered::Throttled) => message(
            StatusCode::TOO_MANY_REQUESTS,
            "Too many wrong codes",
            "Too many wrong codes from your network. Wait a while and try again.",
        ),
        Ok(Answered::NotWaiting) => message(
            StatusCode::CONFLICT,
            "No longer waiting",
            "This device login was answered already, or its code expired. Start again on your terminal.",
        ),
        Err(DeviceError::Made(AppPasswordError::TooMany(n))) => message(
            StatusCode::BAD_REQUEST,
            "Too many app passwords",
            &format!("You have {n} app passwords and device logins, the most allowed: revoke one first, then enter the code again."),
        ),
        Err(e) => Err(device_error(e)),
    }
}

fn device_error(e: DeviceError) -> PageError {
    match e {
        DeviceError::Made(e) => PageError::AppPasswords(e),
        DeviceError::Store(e) => PageError::AppPasswords(AppPasswordError::Store(e)),
        _ => PageError::AppPasswords(AppPasswordError::OwnerUnavailable),
    }
}

/// Sends a sign-in home, or back to the device page it began at.
pub(super) fn home_or_device(page: &Page, headers: &HeaderMap) -> (Response, bool) {
    match after_sign_in(page, headers) {
        Some(to) => (Redirect::to(&to).into_response(), true),
        None => (
            Redirect::to(&format!("{}/", page.path())).into_response(),
            false,
        ),
    }
}
