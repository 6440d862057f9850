//! The app-password page (`/ui`): sign in (a browser sign-in through an
//! OpenID Connect provider, or a password form for static and LDAP users),
//! see your groups and app passwords, make one (shown once, with its
//! `docker login` line), revoke any; admins see everyone's.
//!
//! Server-rendered HTML (askama, escaped), usable without JavaScript.
//! Sessions are sealed cookies (HttpOnly, SameSite=Lax, Secure under
//! https); every form carries a CSRF token that must match the session's.
//! Nothing on these pages is cached.
//!
//! The handlers only parse, call one [`crate::app_passwords`] function
//! and render: who may sign in, what a session is and what a limit means
//! are decided there. Here: the routes, the cookies ([`cookies`]), the
//! extractors ([`extract`]), the one error type ([`error`]) and the
//! templates ([`pages`]).

mod cookies;
mod device;
mod error;
mod extract;
mod pages;
mod robots;

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{FromRequest, Path, Query, Request};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::Router;
use regauth_providers::ExposeSecret;
use serde::Deserialize;

use crate::app_passwords::{
    browser_providers, IdpAnswer, Limit, PasswordForm, Session, SignInError, SIGN_IN_WINDOW,
};
use crate::http::extract::ClientIp;
use crate::Live;
use cookies::PageCookie;
use error::{Missing, PageError};
use extract::{HasCsrf, OneOrMany, Page, PageForm, Posted, SignedIn, MAX_FORM_BYTES};
use pages::{render, rows, Admin, Created, Home, SignInPage};

/// The page at `path` (`/ui`): `{path}` and `{path}/`, and its routes
/// below.
/// Every answer carries the page's headers.
pub fn router(path: &str) -> Router<Arc<Live>> {
    let below = Router::new()
        .route("/", get(home))
        .route("/style.css", get(style))
        .route("/signin/{provider}", get(begin_sign_in))
        .route("/callback", get(callback))
        .route("/signin", post(form_sign_in))
        .route("/signout", post(sign_out))
        .route("/passwords", post(create))
        .route("/passwords/{id}/revoke", post(revoke))
        .route("/admin", get(admin))
        .route("/robots", get(robots::list).post(robots::create))
        .route("/robots/{id}/rotate", post(robots::rotate))
        .route("/robots/{id}/revoke", post(robots::revoke))
        .route("/device", get(device::open).post(device::enter))
        .route("/device/answer", post(device::answer))
        .layer(axum::extract::DefaultBodyLimit::max(MAX_FORM_BYTES))
        .fallback(|| async { PageError::NotFound(Missing::Page) });
    // nested, `/` is `{path}` alone: the page is `{path}/` too
    Router::new()
        .route(&format!("{path}/"), get(home))
        .nest(path, below)
        .layer(axum::middleware::from_fn(with_page_headers))
}

/// Headers every page carries: no caching (a secret may be on it), no
/// framing, no referrer (the callback's URL holds a code), and a content
/// policy that allows nothing but this page's own stylesheet and forms.
async fn with_page_headers(request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    let h = response.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; style-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    response
}

/// `response` with a `Set-Cookie`.
fn with_cookie(mut response: Response, cookie: HeaderValue) -> Response {
    response.headers_mut().append(header::SET_COOKIE, cookie);
    response
}

async fn style() -> Response {
    (
        [(header::CONTENT_TYPE, "text/css; charset=utf-8")],
        include_str!("../../../templates/ui/style.css"),
    )
        .into_response()
}

async fn home(
    page: Page,
    signed_in: Option<SignedIn>,
    headers: HeaderMap,
) -> Result<Response, PageError> {
    match signed_in {
        None => sign_in_page(&page, &headers, StatusCode::OK, None),
        Some(SignedIn(session)) => home_page(&page, &session, StatusCode::OK, None).await,
    }
}

/// The sign-in page, with the form's CSRF token (a new one in its cookie
/// when the browser has none that holds).
fn sign_in_page(
    page: &Page,
    headers: &HeaderMap,
    status: StatusCode,
    error: Option<&str>,
) -> Result<Response, PageError> {
    let config = &page.passwords.config;
    let kept = PageCookie::Form.read(config, headers);
    let token = page.passwords.form_token(kept, crate::clock::now())?;
    let response = render(
        status,
        &SignInPage {
            base: page.path(),
            browser: browser_providers(&page.state.chain),
            form: !config.login_form.is_empty(),
            csrf: &token.csrf,
            error,
        },
    );
    Ok(match token.fresh {
        Some(sealed) => with_cookie(
            response,
            PageCookie::Form.set(config, &sealed, SIGN_IN_WINDOW),
        ),
        None => response,
    })
}

/// A signed-in user's page, with `error` beside the form.
async fn home_page(
    page: &Page,
    session: &Session,
    status: StatusCode,
    error: Option<String>,
) -> Result<Response, PageError> {
    let (listed, groups) = page.passwords.overview(session).await?;
    let config = &page.passwords.config;
    Ok(render(
        status,
        &Home {
            base: page.path(),
            subject: &session.subject,
            provider: &session.provider,
            groups,
            passwords: rows(listed),
            csrf: session.csrf(),
            admin: session.admin,
            robots: config.robots.is_some(),
            default_days: config.default_lifetime.as_secs() / 86400,
            max_days: (config.max_lifetime.as_secs() / 86400).max(1),
            error,
        },
    ))
}

/// Where a sign-in ends, with the session's cookie: the page's home, or
/// the device login page it began at.
fn session_started(page: &Page, headers: &HeaderMap, sealed: &str) -> Response {
    let config = &page.passwords.config;
    let cookie = PageCookie::Session.set(config, sealed, config.session_lifetime);
    let (to, device) = device::home_or_device(page, headers);
    let response = with_cookie(to, cookie);
    if device {
        with_cookie(response, PageCookie::Device.clear(config))
    } else {
        response
    }
}

async fn begin_sign_in(page: Page, Path(provider): Path<String>) -> Result<Response, PageError> {
    let begun = page
        .passwords
        .begin_browser_sign_in(&page.state.chain, &provider, crate::clock::now())
        .await?;
    let cookie = PageCookie::SigningIn.set(&page.passwords.config, &begun.sealed, SIGN_IN_WINDOW);
    Ok(with_cookie(
        Redirect::to(&begun.url).into_response(),
        cookie,
    ))
}

/// The query the IdP sends the browser back with.
#[derive(Deserialize)]
struct Callback {
    #[serde(default)]
    code: Option<String>,
    #[serde(default)]
    state: Option<String>,
    #[serde(default)]
    error: Option<String>,
}

async fn callback(
    page: Page,
    ClientIp(ip): ClientIp,
    headers: HeaderMap,
    query: Result<Query<Callback>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let config = &page.passwords.config;
    let finished = match &query {
        Err(_) => Err(PageError::UnreadableAnswer),
        Ok(Query(answer)) => {
            let answer = IdpAnswer {
                code: answer.code.as_deref(),
                state: answer.state.as_deref(),
                error: answer.error.as_deref(),
            };
            let sealed = PageCookie::SigningIn.read(config, &headers);
            let now = crate::clock::now();
            page.passwords
                .finish_browser_sign_in(&page.state.chain, sealed, answer, ip, now)
                .await
                .map_err(PageError::from)
        }
    };
    // signed in, or refused: the sign-in under way is over
    let over = finished
        .as_ref()
        .map_or_else(PageError::ends_sign_in, |_| true);
    let response = match finished {
        Ok(sealed) => session_started(&page, &headers, &sealed),
        Err(e) => e.into_response(),
    };
    if over {
        with_cookie(response, PageCookie::SigningIn.clear(config))
    } else {
        response
    }
}

#[derive(Deserialize)]
struct SignInForm {
    #[serde(default)]
    username: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    csrf: String,
}

async fn form_sign_in(
    page: Page,
    ClientIp(ip): ClientIp,
    request: Request,
) -> Result<Response, PageError> {
    let passwords = &page.passwords;
    if passwords.config.login_form.is_empty() {
        return Err(PageError::NotFound(Missing::PasswordSignIn));
    }
    let headers = request.headers().clone();
    let PageForm(form) = PageForm::<SignInForm>::from_request(request, &()).await?;
    let posted = PasswordForm {
        username: &form.username,
        password: &form.password,
        csrf: &form.csrf,
        sealed_csrf: PageCookie::Form.read(&passwords.config, &headers),
    };
    let (chain, limits) = (&page.state.chain, &page.state.config.server.limits);
    let now = crate::clock::now();
    let signed = passwords
        .sign_in_with_password(chain, limits, posted, ip, now)
        .await;
    match signed {
        Ok(sealed) => Ok(session_started(&page, &headers, &sealed)),
        Err(SignInError::Refused) => {
            let wrong = Some("Wrong username or password.");
            sign_in_page(&page, &headers, StatusCode::UNAUTHORIZED, wrong)
        }
        Err(SignInError::Throttled) => {
            let wait = Some("Too many failed sign-ins. Wait a while and try again.");
            sign_in_page(&page, &headers, StatusCode::TOO_MANY_REQUESTS, wait)
        }
        Err(SignInError::FormExpired) => Err(PageError::FormExpired),
        Err(SignInError::Unavailable) => Err(PageError::PasswordUnchecked),
        Err(SignInError::Session(e)) => Err(e.into()),
    }
}

#[derive(Deserialize)]
struct CreateForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    name: String,
    /// Its expiry and scope; no repository pattern: all the user's access.
    #[serde(flatten)]
    made: MadeFields,
}

/// The fields of a form that makes an app password or a robot: how long
/// it lives, what it reaches, where from.
#[derive(Deserialize)]
struct MadeFields {
    /// Its lifetime in days.
    #[serde(default)]
    days: String,
    /// Repository patterns, one per line.
    #[serde(default)]
    repos: String,
    /// Client networks, one per line; empty: any.
    #[serde(default)]
    networks: String,
    #[serde(default)]
    actions: OneOrMany,
}

impl MadeFields {
    /// The lifetime, the limit (the patterns and the actions ticked) and
    /// the networks asked for; or what to say beside the form.
    fn parse(&self) -> Result<(Duration, Limit, Vec<ipnet::IpNet>), String> {
        let Ok(days) = self.days.trim().parse::<u64>() else {
            return Err("The expiry must be a number of days.".to_owned());
        };
        let limit = Limit::from_form(self.repos.lines(), self.actions.values())
            .map_err(|e| e.to_string())?;
        let networks = networks_of(&self.networks)
            .ok_or_else(|| crate::app_passwords::AppPasswordError::Networks.to_string())?;
        Ok((
            Duration::from_secs(days.saturating_mul(86400)),
            limit,
            networks,
        ))
    }
}

impl HasCsrf for CreateForm {
    fn csrf(&self) -> &str {
        &self.csrf
    }
}

async fn create(page: Page, posted: Posted<CreateForm>) -> Result<Response, PageError> {
    let Posted { session, form } = posted;
    let again = |error: String| home_page(&page, &session, StatusCode::BAD_REQUEST, Some(error));
    let (lifetime, limit, networks) = match form.made.parse() {
        Ok(parsed) => parsed,
        Err(e) => return again(e).await,
    };
    let made = page
        .passwords
        .create_within(&session.identity(), &form.name, lifetime, &limit, &networks)
        .await;
    let (password, secret) = match made {
        Ok(made) => made,
        Err(e) if e.is_for_the_user() => return again(e.to_string()).await,
        Err(e) => return Err(e.into()),
    };
    let services = &page.state.config.token.services;
    Ok(render(
        StatusCode::OK,
        &Created {
            base: page.path(),
            name: &password.name,
            subject: &password.subject,
            registry: services.first().map_or("", String::as_str),
            secret: secret.expose_secret(),
            expires: pages::day(password.expires),
        },
    ))
}

/// The networks typed, one per line (blank lines left out); `None` when
/// one is not a network.
fn networks_of(typed: &str) -> Option<Vec<ipnet::IpNet>> {
    typed
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(regauth_providers::parse_network)
        .collect()
}

#[derive(Deserialize)]
struct CsrfForm {
    #[serde(default)]
    csrf: String,
    /// `admin` to go back to the admin page.
    #[serde(default)]
    back: String,
}

impl HasCsrf for CsrfForm {
    fn csrf(&self) -> &str {
        &self.csrf
    }
}

async fn revoke(
    page: Page,
    Path(id): Path<String>,
    Posted { session, form }: Posted<CsrfForm>,
) -> Result<Response, PageError> {
    let revoked = page.passwords.revoke_as(&session, &id).await?;
    let back = if form.back == "admin" && revoked.by_admin {
        "/admin"
    } else {
        "/"
    };
    Ok(Redirect::to(&format!("{}{back}", page.path())).into_response())
}

async fn sign_out(page: Page, posted: Posted<CsrfForm>) -> Result<Response, PageError> {
    page.passwords.end_session(&posted.session).await?;
    let to = Redirect::to(&format!("{}/", page.path())).into_response();
    Ok(with_cookie(
        to,
        PageCookie::Session.clear(&page.passwords.config),
    ))
}

async fn admin(page: Page, SignedIn(session): SignedIn) -> Result<Response, PageError> {
    let listed = page.passwords.everyones(&session).await?;
    Ok(render(
        StatusCode::OK,
        &Admin {
            base: page.path(),
            passwords: rows(listed),
            csrf: session.csrf(),
        },
    ))
}
