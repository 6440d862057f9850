//! The app-password page (`/ui`): sign in (a browser sign-in through an
//! OpenID Connect provider, or a password form for static and LDAP users),
//! see your groups and app passwords, make one (shown once, with its
//! `docker login` line), revoke any; admins see everyone's.
//!
//! Server-rendered HTML (askama, escaped), usable without JavaScript.
//! Sessions are sealed cookies (HttpOnly, SameSite=Lax, Secure under
//! https), bound to a lifetime, ended server-side on sign-out; every form
//! carries a CSRF token that must match the session's; sign-in state
//! (OIDC `state`, `nonce`, PKCE verifier) is sealed in a cookie of its own
//! for ten minutes. Nothing on these pages is cached.

// Handlers answer early with a finished page: `Result<_, Response>` is the
// shape of that, and a response is as large as it is.
#![allow(clippy::result_large_err)]

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use askama::Template;
use axum::extract::{Path, Query, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use regauth_providers::{AccessLimit, Credentials, ExposeSecret, Identity, Outcome, PendingLogin};
use serde::{Deserialize, Serialize};

use crate::app_passwords::{AppPasswordError, AppPasswords, Listed};
use crate::identity::chain::Verdict;
use crate::ops::audit::Safe;
use crate::{AppState, Live};

const SESSION: &str = "regauth_session";
const SIGNING_IN: &str = "regauth_signin";
const FORM: &str = "regauth_form";
/// How long a sign-in may take at the IdP.
const SIGN_IN_WINDOW: Duration = Duration::from_secs(600);
/// The ledger's key of a session ended before its time (sign-out), kept
/// until its expiry.
fn ended_key(sid: &str) -> String {
    format!("session:{sid}")
}
/// The largest form body accepted.
const MAX_FORM_BYTES: usize = 16 * 1024;

/// The page's routes, to nest under its path.
pub fn routes() -> Router<Arc<Live>> {
    Router::new()
        .route("/", get(home))
        .route("/style.css", get(style))
        .route("/signin/{provider}", get(begin_sign_in))
        .route("/callback", get(callback))
        .route("/signin", post(form_sign_in))
        .route("/signout", post(sign_out))
        .route("/passwords", post(create))
        .route("/passwords/{id}/revoke", post(revoke))
        .route("/admin", get(admin))
        .layer(axum::extract::DefaultBodyLimit::max(MAX_FORM_BYTES))
        .fallback(|| async {
            message(StatusCode::NOT_FOUND, "Not found", "There is no such page.")
        })
}

/// A signed-in session, sealed in its cookie.
#[derive(Clone, Serialize, Deserialize)]
struct Session {
    sid: String,
    provider: String,
    subject: String,
    /// Shown at sign-in; every admin action asks again.
    admin: bool,
    #[serde(default)]
    account: Option<String>,
    csrf: String,
    exp: u64,
    /// The revocation ledger it began under: one made anew (which forgot
    /// the sign-outs) ends it.
    #[serde(default)]
    ledger: String,
}

impl Session {
    fn identity(&self) -> Identity {
        let mut identity = Identity::new(self.subject.clone(), self.provider.clone());
        identity.account_id = self.account.clone();
        identity
    }

    /// Whether the user is an admin now (their provider, or their last
    /// sign-in, says so): removal from the admin group holds at once.
    async fn admin_now(&self, passwords: &AppPasswords) -> bool {
        self.admin
            && passwords
                .is_admin_now(&self.provider, &self.subject, self.account.as_deref())
                .await
    }
}

/// A browser sign-in under way, sealed in its cookie.
#[derive(Serialize, Deserialize)]
struct SigningIn {
    provider: String,
    pending: PendingLogin,
    exp: u64,
}

/// The password form's CSRF token before anyone is signed in.
#[derive(Serialize, Deserialize)]
struct FormToken {
    csrf: String,
    exp: u64,
}

fn now() -> u64 {
    regauth_providers::clock::unix_seconds()
}

fn random_token() -> Option<String> {
    use aws_lc_rs::rand::SecureRandom as _;
    let mut raw = [0u8; 24];
    aws_lc_rs::rand::SystemRandom::new().fill(&mut raw).ok()?;
    Some(data_encoding::BASE64URL_NOPAD.encode(&raw))
}

fn same(a: &str, b: &str) -> bool {
    aws_lc_rs::constant_time::verify_slices_are_equal(a.as_bytes(), b.as_bytes()).is_ok()
}

/// A cookie's value, from the request's `Cookie` headers.
/// A cookie's name: under https with the `__Host-` prefix, which a
/// browser accepts only from this very host (Secure, `Path=/`, no
/// `Domain`), so a sibling subdomain cannot plant a session or a form token.
fn cookie_name(passwords: &AppPasswords, base: &str) -> String {
    if passwords.config.https() {
        format!("__Host-{base}")
    } else {
        base.to_owned()
    }
}

fn cookie<'h>(passwords: &AppPasswords, headers: &'h HeaderMap, base: &str) -> Option<&'h str> {
    let name = cookie_name(passwords, base);
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// A `Set-Cookie` value for the page's path (under https `/`, as the
/// `__Host-` prefix requires); `max_age` zero deletes it.
fn set_cookie(passwords: &AppPasswords, base: &str, value: &str, max_age: Duration) -> HeaderValue {
    let path = if passwords.config.https() {
        "/".to_owned()
    } else {
        passwords.config.path().to_owned()
    };
    let built = cookie::Cookie::build((cookie_name(passwords, base), value))
        .path(path)
        .http_only(true)
        .same_site(cookie::SameSite::Lax)
        .secure(passwords.config.https())
        .max_age(cookie::time::Duration::seconds(
            i64::try_from(max_age.as_secs()).unwrap_or(i64::MAX),
        ))
        .build();
    HeaderValue::from_str(&built.to_string()).unwrap_or_else(|_| HeaderValue::from_static(""))
}

fn seal<T: Serialize>(sealer: &crate::keys::seal::Sealer, aad: &[u8], value: &T) -> Option<String> {
    let plain = serde_json::to_vec(value).ok()?;
    sealer.seal(aad, &plain).ok()
}

fn open<T: for<'de> Deserialize<'de>>(
    sealer: &crate::keys::seal::Sealer,
    aad: &[u8],
    text: &str,
) -> Option<T> {
    serde_json::from_slice(&sealer.open(aad, text)?).ok()
}

/// Headers every page carries: no caching (a secret may be on it), no
/// framing, no referrer (the callback's URL holds a code), and a content
/// policy that allows nothing but this page's own stylesheet and forms.
fn secure(mut response: Response) -> Response {
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

fn html(status: StatusCode, page: &impl Template) -> Response {
    match page.render() {
        Ok(body) => secure(
            (
                status,
                [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
                body,
            )
                .into_response(),
        ),
        Err(e) => {
            tracing::error!(error = %e, "a page did not render");
            secure(
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "the page could not be shown",
                )
                    .into_response(),
            )
        }
    }
}

#[derive(Template)]
#[template(path = "ui/message.html")]
struct Message<'a> {
    base: &'a str,
    title: &'a str,
    text: &'a str,
}

fn message(status: StatusCode, title: &str, text: &str) -> Response {
    html(
        status,
        &Message {
            base: "",
            title,
            text,
        },
    )
}

fn redirect(to: &str) -> Response {
    secure((StatusCode::SEE_OTHER, [(header::LOCATION, to.to_owned())]).into_response())
}

/// The page's state, or the answer when app passwords are off.
fn passwords(state: &AppState) -> Result<Arc<AppPasswords>, Response> {
    state.app_passwords.clone().ok_or_else(|| {
        message(
            StatusCode::NOT_FOUND,
            "Not found",
            "App passwords are not enabled.",
        )
    })
}

fn unavailable(e: &AppPasswordError) -> Response {
    tracing::warn!(error = %e, "the app-password page could not reach the state backend");
    message(
        StatusCode::SERVICE_UNAVAILABLE,
        "Try again shortly",
        "regauth cannot reach its state right now.",
    )
}

/// The session of this request: sealed, unexpired, not signed out.
async fn session(
    passwords: &AppPasswords,
    headers: &HeaderMap,
) -> Result<Option<Session>, Response> {
    let Some(text) = cookie(passwords, headers, SESSION) else {
        return Ok(None);
    };
    let Some(session) = open::<Session>(&passwords.sessions, SESSION.as_bytes(), text) else {
        return Ok(None);
    };
    if session.exp <= now() {
        return Ok(None);
    }
    let ledger = passwords.ledger();
    match (
        ledger.ended(&ended_key(&session.sid)).await,
        ledger.id().await,
    ) {
        (Ok(true), _) => return Ok(None),
        (Ok(false), Ok(id)) if id != session.ledger => return Ok(None),
        (Ok(false), Ok(_)) => {}
        (Err(e), _) | (_, Err(e)) => return Err(unavailable(&AppPasswordError::Store(e))),
    }
    // A session does not outlive its user: gone from the directory, or no
    // longer signed in at the IdP (asked again every recheck_interval).
    match passwords
        .current(
            &session.provider,
            &session.subject,
            session.account.as_deref(),
        )
        .await
    {
        Ok(_) => Ok(Some(session)),
        Err(Outcome::Unavailable(e)) => {
            tracing::warn!(error = %e, "the page cannot confirm its user right now");
            Err(message(
                StatusCode::SERVICE_UNAVAILABLE,
                "Try again shortly",
                "Your account cannot be checked right now.",
            ))
        }
        Err(_) => Ok(None),
    }
}

/// Whether a form's token is the session's.
fn csrf_holds(session: &Session, token: &str) -> bool {
    !token.is_empty() && same(&session.csrf, token)
}

/// A form posted from a signed-in page: the state, the user's session and
/// the form, whose CSRF token must be the session's. Otherwise the answer:
/// the sign-in page, or a refusal.
async fn signed_in_post<T: for<'de> Deserialize<'de> + HasCsrf>(
    live: &Live,
    request: Request,
) -> Result<(Arc<AppState>, Arc<AppPasswords>, Session, T), Response> {
    let state = live.load();
    let passwords = passwords(&state)?;
    let headers = request.headers().clone();
    let Some(session) = session(&passwords, &headers).await? else {
        return Err(redirect(&format!("{}/", passwords.config.path())));
    };
    let form: T = read_form(request).await?;
    if !csrf_holds(&session, form.csrf()) {
        return Err(csrf_refused());
    }
    Ok((state, passwords, session, form))
}

/// A form with a CSRF token.
trait HasCsrf {
    fn csrf(&self) -> &str;
}

impl HasCsrf for CreateForm {
    fn csrf(&self) -> &str {
        &self.csrf
    }
}

impl HasCsrf for CsrfForm {
    fn csrf(&self) -> &str {
        &self.csrf
    }
}

fn csrf_refused() -> Response {
    message(
        StatusCode::FORBIDDEN,
        "Form expired",
        "This form was not made for your session. Go back, reload the page and try again.",
    )
}

#[derive(Template)]
#[template(path = "ui/signin.html")]
struct SignInPage<'a> {
    base: &'a str,
    browser: Vec<String>,
    form: bool,
    csrf: &'a str,
    error: Option<&'a str>,
}

fn sign_in_page(
    state: &AppState,
    passwords: &AppPasswords,
    headers: &HeaderMap,
    status: StatusCode,
    error: Option<&str>,
) -> Response {
    let browser: Vec<String> = state
        .chain
        .providers()
        .iter()
        .filter(|p| p.browser_login().is_some())
        .map(|p| p.name().to_owned())
        .collect();
    let form = !passwords.config.login_form.is_empty();
    // The form's CSRF token lives in its own sealed cookie.
    let existing = cookie(passwords, headers, FORM)
        .and_then(|t| open::<FormToken>(&passwords.pending, FORM.as_bytes(), t))
        .filter(|t| t.exp > now() + 60);
    let (token, fresh) = match existing {
        Some(t) => (t.csrf, None),
        None => {
            let Some(csrf) = random_token() else {
                return message(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "Try again shortly",
                    "No randomness.",
                );
            };
            let sealed = seal(
                &passwords.pending,
                FORM.as_bytes(),
                &FormToken {
                    csrf: csrf.clone(),
                    exp: now() + SIGN_IN_WINDOW.as_secs(),
                },
            );
            (csrf, sealed)
        }
    };
    let mut response = html(
        status,
        &SignInPage {
            base: passwords.config.path(),
            browser,
            form,
            csrf: &token,
            error,
        },
    );
    if let Some(sealed) = fresh {
        response.headers_mut().append(
            header::SET_COOKIE,
            set_cookie(passwords, FORM, &sealed, SIGN_IN_WINDOW),
        );
    }
    response
}

/// One app password as the page shows it.
struct Row {
    id: String,
    name: String,
    owner: String,
    created: String,
    last_used: String,
    expires: String,
    scope: String,
}

fn day(at: u64) -> String {
    let at = time::OffsetDateTime::from_unix_timestamp(i64::try_from(at).unwrap_or(0))
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    at.format(time::macros::format_description!(
        "[year]-[month]-[day] [hour]:[minute] UTC"
    ))
    .unwrap_or_default()
}

fn rows(listed: Vec<Listed>) -> Vec<Row> {
    listed
        .into_iter()
        .map(|l| {
            let p = l.password;
            let scope = if p.limit.is_empty() {
                "all your access".to_owned()
            } else {
                p.limit
                    .iter()
                    .map(|l| {
                        let repos = if l.repos == "**" {
                            "every repository"
                        } else {
                            &l.repos
                        };
                        format!("{repos}: {}", l.actions.join(", "))
                    })
                    .collect::<Vec<_>>()
                    .join("; ")
            };
            Row {
                owner: format!("{} ({})", p.subject, p.provider),
                id: p.id,
                name: p.name,
                created: day(p.created),
                last_used: l.last_used.map_or_else(|| "never".to_owned(), day),
                expires: day(p.expires),
                scope,
            }
        })
        .collect()
}

#[derive(Template)]
#[template(path = "ui/home.html")]
struct Home<'a> {
    base: &'a str,
    subject: &'a str,
    provider: &'a str,
    groups: Vec<String>,
    passwords: Vec<Row>,
    csrf: &'a str,
    admin: bool,
    default_days: u64,
    max_days: u64,
    error: Option<String>,
}

pub(super) async fn home(State(live): State<Arc<Live>>, headers: HeaderMap) -> Response {
    let state = live.load();
    let passwords = match passwords(&state) {
        Ok(p) => p,
        Err(r) => return r,
    };
    match session(&passwords, &headers).await {
        Err(r) => r,
        Ok(None) => sign_in_page(&state, &passwords, &headers, StatusCode::OK, None),
        Ok(Some(session)) => home_page(&passwords, &session, StatusCode::OK, None).await,
    }
}

async fn home_page(
    passwords: &AppPasswords,
    session: &Session,
    status: StatusCode,
    error: Option<String>,
) -> Response {
    let listed = match passwords.list(Some(&session.identity())).await {
        Ok(l) => l,
        Err(e) => return unavailable(&e),
    };
    let groups = match passwords
        .sign_in_of(&session.provider, &session.subject)
        .await
    {
        Ok(s) => s.map(|s| s.groups).unwrap_or_default(),
        Err(e) => return unavailable(&e),
    };
    let config = &passwords.config;
    html(
        status,
        &Home {
            base: config.path(),
            subject: &session.subject,
            provider: &session.provider,
            groups,
            passwords: rows(listed),
            csrf: &session.csrf,
            admin: session.admin,
            default_days: config.default_lifetime.as_secs() / 86400,
            max_days: (config.max_lifetime.as_secs() / 86400).max(1),
            error,
        },
    )
}

async fn style() -> Response {
    secure(
        (
            [(header::CONTENT_TYPE, "text/css; charset=utf-8")],
            include_str!("../../../templates/ui/style.css"),
        )
            .into_response(),
    )
}

async fn begin_sign_in(State(live): State<Arc<Live>>, Path(provider): Path<String>) -> Response {
    let state = live.load();
    let passwords = match passwords(&state) {
        Ok(p) => p,
        Err(r) => return r,
    };
    let Some(found) = state.chain.provider(&provider) else {
        return message(
            StatusCode::NOT_FOUND,
            "Not found",
            "There is no such sign-in.",
        );
    };
    let Some(browser) = found.browser_login() else {
        return message(
            StatusCode::NOT_FOUND,
            "Not found",
            "There is no such sign-in.",
        );
    };
    let redirect_uri = format!("{}/callback", passwords.config.url);
    let (url, pending) = match browser.begin(&redirect_uri).await {
        Ok(begun) => begun,
        Err(e) => {
            tracing::warn!(provider = %provider, error = %e, "a browser sign-in could not start");
            return message(
                StatusCode::SERVICE_UNAVAILABLE,
                "Try again shortly",
                "The identity provider cannot be reached right now.",
            );
        }
    };
    let signing_in = SigningIn {
        provider,
        pending,
        exp: now() + SIGN_IN_WINDOW.as_secs(),
    };
    let Some(sealed) = seal(&passwords.pending, SIGNING_IN.as_bytes(), &signing_in) else {
        return message(
            StatusCode::SERVICE_UNAVAILABLE,
            "Try again shortly",
            "No randomness.",
        );
    };
    let mut response = redirect(&url);
    response.headers_mut().append(
        header::SET_COOKIE,
        set_cookie(&passwords, SIGNING_IN, &sealed, SIGN_IN_WINDOW),
    );
    response
}

#[derive(Deserialize)]
struct Callback {
    #[serde(default)]
    code: Option<String>,
    #[serde(default)]
    state: Option<String>,
    #[serde(default)]
    error: Option<String>,
}

async fn callback(State(live): State<Arc<Live>>, request: Request) -> Response {
    let state = live.load();
    let ip = super::token::client_ip(&state, &request);
    let headers = request.headers();
    let query = Query::<Callback>::try_from_uri(request.uri());
    let passwords = match passwords(&state) {
        Ok(p) => p,
        Err(r) => return r,
    };
    let refused = |text: &str| {
        let mut r = message(StatusCode::UNAUTHORIZED, "Sign-in refused", text);
        r.headers_mut().append(
            header::SET_COOKIE,
            set_cookie(&passwords, SIGNING_IN, "", Duration::ZERO),
        );
        r
    };
    let Ok(Query(answer)) = query else {
        return refused("The identity provider's answer is not readable.");
    };
    if let Some(error) = &answer.error {
        tracing::info!(error = %Safe(error), "a browser sign-in was refused at the identity provider");
        return refused("The identity provider did not sign you in.");
    }
    let signing_in = cookie(&passwords, headers, SIGNING_IN)
        .and_then(|t| open::<SigningIn>(&passwords.pending, SIGNING_IN.as_bytes(), t))
        .filter(|s| s.exp > now());
    let (Some(signing_in), Some(code), Some(returned_state)) =
        (signing_in, answer.code.as_deref(), answer.state.as_deref())
    else {
        return refused(
            "This sign-in was not started in this browser, or took too long. Start again.",
        );
    };
    let Some(provider) = state
        .chain
        .provider(&signing_in.provider)
        .filter(|p| p.browser_login().is_some())
        .cloned()
    else {
        return refused("This sign-in's provider is no longer configured.");
    };
    // In a task of its own: a client hanging up mid-exchange cannot take
    // its failure back.
    let finishing = tokio::spawn(finish_counted(
        state.clone(),
        provider,
        format!("{}/callback", passwords.config.url),
        signing_in.pending.clone(),
        returned_state.to_owned(),
        code.to_owned(),
        ip,
    ));
    let regauth_providers::Finished {
        outcome,
        refresh_token,
    } = match finishing.await {
        Ok(Ok(finished)) => finished,
        Ok(Err(response)) => return response,
        Err(e) => {
            tracing::error!(error = %e, "a browser sign-in task failed");
            return message(
                StatusCode::SERVICE_UNAVAILABLE,
                "Try again shortly",
                "The sign-in could not finish.",
            );
        }
    };
    match outcome {
        Outcome::Authenticated(identity) => {
            if refresh_token.is_none() {
                tracing::warn!(provider = %signing_in.provider, "the IdP gave the browser sign-in no refresh token (offline_access): this user's app passwords keep the sign-in's groups for sign_in_max_age, unchecked");
            }
            let mut response = start_session(&passwords, &identity, refresh_token.as_ref()).await;
            response.headers_mut().append(
                header::SET_COOKIE,
                set_cookie(&passwords, SIGNING_IN, "", Duration::ZERO),
            );
            response
        }
        Outcome::Unavailable(e) => {
            tracing::warn!(provider = %signing_in.provider, error = %e, "a browser sign-in could not finish");
            message(
                StatusCode::SERVICE_UNAVAILABLE,
                "Try again shortly",
                "The identity provider cannot be reached right now.",
            )
        }
        Outcome::Rejected(reason) => {
            tracing::info!(provider = %signing_in.provider, reason = %reason, "a browser sign-in was refused");
            refused("The identity provider's answer was not accepted. Start again.")
        }
        Outcome::NotMine => refused("The identity provider did not sign you in."),
    }
}

/// Finishes a browser sign-in at its provider, counted by the client
/// network's failure budget: a refused answer counts as a wrong password
/// does, so a replayed sign-in cookie with made-up codes cannot keep the
/// IdP's token endpoint busy for free.
async fn finish_counted(
    state: Arc<AppState>,
    provider: Arc<dyn regauth_providers::IdentityProvider>,
    redirect_uri: String,
    pending: PendingLogin,
    returned_state: String,
    code: String,
    ip: IpAddr,
) -> Result<regauth_providers::Finished, Response> {
    let Some(browser) = provider.browser_login() else {
        return Ok(regauth_providers::Finished {
            outcome: Outcome::NotMine,
            refresh_token: None,
        });
    };
    let throttle = state.chain.throttle();
    let slot = match throttle.reserve_client(ip).await {
        Ok(slot) => slot,
        Err(crate::identity::throttle::Held::Store(e)) => {
            tracing::warn!(error = %e, "the failure throttle cannot be read");
            return Err(message(
                StatusCode::SERVICE_UNAVAILABLE,
                "Try again shortly",
                "Sign-ins cannot be checked right now.",
            ));
        }
        Err(_) => {
            return Err(message(
                StatusCode::TOO_MANY_REQUESTS,
                "Too many failed sign-ins",
                "Wait a while and try again.",
            ))
        }
    };
    let finished = browser
        .finish(&redirect_uri, &pending, &returned_state, &code)
        .await;
    if matches!(finished.outcome, Outcome::Rejected(_) | Outcome::NotMine) {
        throttle.client_failed(slot);
    } else {
        throttle.client_released(slot).await;
    }
    Ok(finished)
}

/// Keeps the sign-in's groups (and the IdP's refresh token), then
/// answers with a new session.
async fn start_session(
    passwords: &AppPasswords,
    identity: &Identity,
    refresh_token: Option<&regauth_providers::SecretString>,
) -> Response {
    if let Err(e) = passwords.remember_sign_in(identity, refresh_token).await {
        return unavailable(&e);
    }
    let (Some(sid), Some(csrf)) = (random_token(), random_token()) else {
        return message(
            StatusCode::SERVICE_UNAVAILABLE,
            "Try again shortly",
            "No randomness.",
        );
    };
    let lifetime = passwords.config.session_lifetime;
    let ledger = match passwords.ledger().id().await {
        Ok(ledger) => ledger,
        Err(e) => return unavailable(&AppPasswordError::Store(e)),
    };
    let session = Session {
        ledger,
        sid,
        provider: identity.provider.clone(),
        subject: identity.subject.clone(),
        admin: passwords.is_admin(identity),
        account: identity.account_id.clone(),
        csrf,
        exp: now() + lifetime.as_secs(),
    };
    let Some(sealed) = seal(&passwords.sessions, SESSION.as_bytes(), &session) else {
        return message(
            StatusCode::SERVICE_UNAVAILABLE,
            "Try again shortly",
            "No randomness.",
        );
    };
    tracing::info!(
        target: "regauth::ops::audit",
        event = "ui_signed_in",
        subject = %Safe(&identity.subject),
        provider = %identity.provider,
        "signed in to the app-password page"
    );
    let mut response = redirect(&format!("{}/", passwords.config.path()));
    response.headers_mut().append(
        header::SET_COOKIE,
        set_cookie(passwords, SESSION, &sealed, lifetime),
    );
    response
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

async fn form_sign_in(State(live): State<Arc<Live>>, request: Request) -> Response {
    let state = live.load();
    let passwords = match passwords(&state) {
        Ok(p) => p,
        Err(r) => return r,
    };
    if passwords.config.login_form.is_empty() {
        return message(
            StatusCode::NOT_FOUND,
            "Not found",
            "There is no password sign-in here.",
        );
    }
    let ip = super::token::client_ip(&state, &request);
    let headers = request.headers().clone();
    let form: SignInForm = match read_form(request).await {
        Ok(f) => f,
        Err(r) => return r,
    };
    let expected = cookie(&passwords, &headers, FORM)
        .and_then(|t| open::<FormToken>(&passwords.pending, FORM.as_bytes(), t))
        .filter(|t| t.exp > now());
    if !expected.is_some_and(|t| !form.csrf.is_empty() && same(&t.csrf, &form.csrf)) {
        return csrf_refused();
    }
    let limits = &state.config.server.limits;
    if form.username.is_empty()
        || form.password.is_empty()
        || form.username.len() > limits.max_username_bytes
        || form.password.len() > limits.max_secret_bytes
    {
        return sign_in_page(
            &state,
            &passwords,
            &headers,
            StatusCode::UNAUTHORIZED,
            Some("Wrong username or password."),
        );
    }
    let credentials = Credentials::new(form.username.trim(), form.password);
    match sign_in_with_password(&state, &passwords, &credentials, ip).await {
        Ok(identity) => start_session(&passwords, &identity, None).await,
        Err(SignInRefusal::Unavailable) => message(
            StatusCode::SERVICE_UNAVAILABLE,
            "Try again shortly",
            "Your password cannot be checked right now.",
        ),
        Err(SignInRefusal::Throttled) => sign_in_page(
            &state,
            &passwords,
            &headers,
            StatusCode::TOO_MANY_REQUESTS,
            Some("Too many failed sign-ins. Wait a while and try again."),
        ),
        Err(SignInRefusal::Refused) => sign_in_page(
            &state,
            &passwords,
            &headers,
            StatusCode::UNAUTHORIZED,
            Some("Wrong username or password."),
        ),
    }
}

enum SignInRefusal {
    Refused,
    Throttled,
    Unavailable,
}

/// A password sign-in through the chain (routing, throttle, caches),
/// accepted only from a `login_form` provider and never with an app
/// password or a token.
async fn sign_in_with_password(
    state: &AppState,
    passwords: &AppPasswords,
    credentials: &Credentials,
    ip: IpAddr,
) -> Result<Identity, SignInRefusal> {
    let shape = regauth_providers::SecretShape::of(
        &credentials.username,
        credentials.secret.expose_secret(),
    );
    if !matches!(
        shape,
        regauth_providers::SecretShape::Password | regauth_providers::SecretShape::HexToken
    ) {
        return Err(SignInRefusal::Refused);
    }
    match state.chain.authenticate(credentials, ip).await {
        // a password the provider checked: never a token (an introspected
        // access token would become a session and long-lived passwords)
        Verdict::Authenticated { identity, .. }
            if passwords.config.login_form.contains(&identity.provider)
                && identity.proof == regauth_providers::Proof::Password
                && identity.kind == regauth_providers::Kind::User
                && identity.limit.is_none() =>
        {
            Ok((*identity).clone())
        }
        Verdict::Authenticated { .. } | Verdict::Rejected { .. } | Verdict::Unknown => {
            Err(SignInRefusal::Refused)
        }
        Verdict::Throttled(_) => Err(SignInRefusal::Throttled),
        Verdict::Unavailable { .. } => Err(SignInRefusal::Unavailable),
    }
}

/// A form body (`application/x-www-form-urlencoded`, bounded).
async fn read_form<T: for<'de> Deserialize<'de>>(request: Request) -> Result<T, Response> {
    let bad = || {
        message(
            StatusCode::BAD_REQUEST,
            "Bad request",
            "The form could not be read.",
        )
    };
    let media = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(|v| v.trim().to_ascii_lowercase());
    if media.as_deref() != Some("application/x-www-form-urlencoded") {
        return Err(bad());
    }
    let body = axum::body::to_bytes(request.into_body(), MAX_FORM_BYTES)
        .await
        .map_err(|_| bad())?;
    serde_urlencoded_from(&body).ok_or_else(bad)
}

/// Decodes a form: repeated keys (checkboxes) become lists where the
/// type wants one.
fn serde_urlencoded_from<T: for<'de> Deserialize<'de>>(body: &[u8]) -> Option<T> {
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
enum OneOrMany {
    #[default]
    None,
    One(String),
    Many(Vec<String>),
}

impl OneOrMany {
    fn values(self) -> Vec<String> {
        match self {
            OneOrMany::None => Vec::new(),
            OneOrMany::One(v) => vec![v],
            OneOrMany::Many(v) => v,
        }
    }
}

#[derive(Deserialize)]
struct CreateForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    days: String,
    /// Repository patterns, one per line; empty: all the user's access.
    #[serde(default)]
    repos: String,
    #[serde(default)]
    actions: OneOrMany,
}

#[derive(Template)]
#[template(path = "ui/created.html")]
struct Created<'a> {
    base: &'a str,
    name: &'a str,
    subject: &'a str,
    registry: &'a str,
    secret: &'a str,
    expires: String,
}

async fn create(State(live): State<Arc<Live>>, request: Request) -> Response {
    let (state, passwords, session, form) = match signed_in_post::<CreateForm>(&live, request).await
    {
        Ok(posted) => posted,
        Err(r) => return r,
    };
    let days: u64 = match form.days.trim().parse() {
        Ok(d) => d,
        Err(_) => {
            let error = Some("The expiry must be a number of days.".to_owned());
            return home_page(&passwords, &session, StatusCode::BAD_REQUEST, error).await;
        }
    };
    let mut actions = form.actions.values();
    actions.sort();
    actions.dedup();
    let mut patterns: Vec<&str> = form
        .repos
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    // The ticked actions always hold; no pattern means every repository,
    // and all actions on every repository is no limit at all.
    let every_action = ["delete", "pull", "push"]
        .iter()
        .all(|a| actions.iter().any(|b| b == a));
    if patterns.is_empty() && !every_action {
        patterns.push("**");
    }
    let limit: Vec<AccessLimit> = patterns
        .into_iter()
        .map(|repos| AccessLimit {
            repos: repos.to_owned(),
            actions: actions.clone(),
        })
        .collect();
    let lifetime = Duration::from_secs(days.saturating_mul(86400));
    let owner = session.identity();
    match passwords.create(&owner, &form.name, lifetime, limit).await {
        Ok((password, secret)) => {
            password.audit("app_password_created", "");
            let registry = state
                .config
                .token
                .services
                .first()
                .cloned()
                .unwrap_or_default();
            html(
                StatusCode::OK,
                &Created {
                    base: passwords.config.path(),
                    name: &password.name,
                    subject: &password.subject,
                    registry: &registry,
                    secret: secret.expose_secret(),
                    expires: day(password.expires),
                },
            )
        }
        Err(AppPasswordError::Store(e)) => unavailable(&AppPasswordError::Store(e)),
        Err(AppPasswordError::Random) => unavailable(&AppPasswordError::Random),
        Err(AppPasswordError::OwnerUnavailable) => message(
            StatusCode::SERVICE_UNAVAILABLE,
            "Try again shortly",
            "Your account cannot be checked right now.",
        ),
        Err(e) => {
            home_page(
                &passwords,
                &session,
                StatusCode::BAD_REQUEST,
                Some(e.to_string()),
            )
            .await
        }
    }
}

#[derive(Deserialize)]
struct CsrfForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    back: String,
}

async fn revoke(
    State(live): State<Arc<Live>>,
    Path(id): Path<String>,
    request: Request,
) -> Response {
    let (_, passwords, session, form) = match signed_in_post::<CsrfForm>(&live, request).await {
        Ok(posted) => posted,
        Err(r) => return r,
    };
    let admin = session.admin_now(&passwords).await;
    match passwords.revoke(&id, &session.identity(), admin).await {
        Ok(password) => {
            password.audit(
                "app_password_revoked",
                &format!("{} ({})", session.subject, session.provider),
            );
            let back = if form.back == "admin" && admin {
                format!("{}/admin", passwords.config.path())
            } else {
                format!("{}/", passwords.config.path())
            };
            redirect(&back)
        }
        Err(AppPasswordError::NotFound) => message(
            StatusCode::NOT_FOUND,
            "Not found",
            "There is no such app password (it may have been revoked already).",
        ),
        Err(e) => unavailable(&e),
    }
}

async fn sign_out(State(live): State<Arc<Live>>, request: Request) -> Response {
    let (_, passwords, session, _) = match signed_in_post::<CsrfForm>(&live, request).await {
        Ok(posted) => posted,
        Err(r) => return r,
    };
    // The sealed cookie stays valid until its expiry: the session is
    // ended in the ledger (on every replica) until then.
    if let Err(e) = passwords
        .ledger()
        .end(&ended_key(&session.sid), session.exp)
        .await
    {
        return unavailable(&AppPasswordError::Store(e));
    }
    let mut response = redirect(&format!("{}/", passwords.config.path()));
    response.headers_mut().append(
        header::SET_COOKIE,
        set_cookie(&passwords, SESSION, "", Duration::ZERO),
    );
    response
}

#[derive(Template)]
#[template(path = "ui/admin.html")]
struct Admin<'a> {
    base: &'a str,
    passwords: Vec<Row>,
    csrf: &'a str,
}

async fn admin(State(live): State<Arc<Live>>, headers: HeaderMap) -> Response {
    let state = live.load();
    let passwords = match passwords(&state) {
        Ok(p) => p,
        Err(r) => return r,
    };
    let session = match session(&passwords, &headers).await {
        Ok(Some(s)) => s,
        Ok(None) => return redirect(&format!("{}/", passwords.config.path())),
        Err(r) => return r,
    };
    if !session.admin_now(&passwords).await {
        return message(
            StatusCode::FORBIDDEN,
            "Not for you",
            "Only administrators see everyone's app passwords.",
        );
    }
    let listed = match passwords.list(None).await {
        Ok(l) => l,
        Err(e) => return unavailable(&e),
    };
    html(
        StatusCode::OK,
        &Admin {
            base: passwords.config.path(),
            passwords: rows(listed),
            csrf: &session.csrf,
        },
    )
}
