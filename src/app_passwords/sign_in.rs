//! Who may open a session on the page, and how.
//!
//! With a password (`login_form`): a password the provider checked, of
//! a user, through the chain (its routing, throttle and caches); never a
//! token, an app password or a robot, which would turn something
//! short-lived or narrowed into long-lived app passwords.
//!
//! In a browser (an OpenID Connect provider's sign-in): the state of the
//! sign-in under way is sealed in the browser between the redirect and
//! the callback, and the code's exchange at the IdP is counted by the
//! client network's failure budget, so that a replayed sign-in with
//! made-up codes cannot keep the IdP busy for free.

use std::net::IpAddr;
use std::sync::Arc;

use regauth_providers::{
    Credentials, ExposeSecret, Finished, Identity, IdentityProvider, Kind, Outcome, PendingLogin,
    Proof, SecretShape, SecretString,
};
use serde::{Deserialize, Serialize};

use super::sessions::SIGN_IN_WINDOW;
use super::{open, seal, AppPasswordError, AppPasswords};
use crate::config::Limits;
use crate::identity::throttle::Held;
use crate::identity::{Chain, Verdict};
use crate::ops::audit::Safe;

/// What a browser sign-in under way is sealed for.
const SIGNING_IN_AAD: &[u8] = b"regauth_signin";

/// A password form, as posted.
pub struct PasswordForm<'a> {
    /// The username typed.
    pub username: &'a str,
    /// The password typed.
    pub password: &'a str,
    /// The form's CSRF token.
    pub csrf: &'a str,
    /// The form's token as sealed for the browser
    /// ([`AppPasswords::form_token`]), if it sent one.
    pub sealed_csrf: Option<&'a str>,
}

/// Why a password sign-in opened no session.
#[derive(Debug)]
pub enum SignInError {
    /// The form's token is not the one sealed for it (or has run out).
    FormExpired,
    /// A wrong username or password; or not a password a provider in
    /// `login_form` checked for a user.
    Refused,
    /// Too many failed sign-ins (of the account, or the client network).
    Throttled,
    /// The provider, or the throttle, cannot answer now.
    Unavailable,
    /// Signed in, but no session could be opened.
    Session(AppPasswordError),
}

/// Why a browser sign-in did not begin or did not end in a session.
#[derive(Debug)]
pub enum BrowserError {
    /// No such provider, or it offers no browser sign-in.
    NoSuchSignIn,
    /// The IdP cannot be reached, or could not answer.
    IdpUnavailable,
    /// No randomness to seal the sign-in under way.
    NoRandomness,
    /// The IdP did not sign the user in.
    RefusedAtIdp,
    /// Not begun in this browser, or begun too long ago.
    NotStarted,
    /// The provider it began at is no longer configured.
    ProviderGone,
    /// The IdP's answer was not accepted (a wrong code, a forged state).
    NotAccepted,
    /// Too many failed sign-ins from this client network.
    Throttled,
    /// The failure throttle cannot be read.
    ThrottleUnavailable,
    /// The exchange at the IdP ended before it answered.
    Interrupted,
    /// Signed in, but no session could be opened.
    Session(AppPasswordError),
}

impl BrowserError {
    /// Whether the sign-in under way is over, and the browser may forget
    /// it: it was refused (a failure to ask is not a refusal).
    pub fn ends_sign_in(&self) -> bool {
        matches!(
            self,
            Self::RefusedAtIdp | Self::NotStarted | Self::ProviderGone | Self::NotAccepted
        )
    }
}

/// A browser sign-in under way, sealed in the browser.
#[derive(Serialize, Deserialize)]
struct SigningIn {
    provider: String,
    pending: PendingLogin,
    exp: i64,
}

/// A browser sign-in begun.
pub struct Begun {
    /// Where the browser signs in, at the IdP.
    pub url: String,
    /// The sign-in under way, sealed, for the browser to keep
    /// [`SIGN_IN_WINDOW`].
    pub sealed: String,
}

/// What the IdP sent the browser back to the callback with.
#[derive(Default)]
pub struct IdpAnswer<'a> {
    /// The authorization code.
    pub code: Option<&'a str>,
    /// The state the sign-in began with.
    pub state: Option<&'a str>,
    /// The IdP's error, when it signed no one in.
    pub error: Option<&'a str>,
}

/// A code to exchange at the IdP, for the sign-in it was given to.
struct Exchange {
    redirect_uri: String,
    pending: PendingLogin,
    state: String,
    code: String,
}

/// The providers that offer a browser sign-in, by name.
pub fn browser_providers(chain: &Chain) -> Vec<String> {
    chain
        .providers()
        .iter()
        .filter(|p| p.browser_login().is_some())
        .map(|p| p.name().to_owned())
        .collect()
}

impl AppPasswords {
    /// Signs a user in with the password form from `client`, at `now`:
    /// the session sealed, for the browser to keep.
    pub async fn sign_in_with_password(
        &self,
        chain: &Arc<Chain>,
        limits: &Limits,
        form: PasswordForm<'_>,
        client: IpAddr,
        now: i64,
    ) -> Result<String, SignInError> {
        if !self.form_token_holds(form.sealed_csrf, form.csrf, now) {
            return Err(SignInError::FormExpired);
        }
        let credentials =
            form_credentials(limits, form.username, form.password).ok_or(SignInError::Refused)?;
        let verdict = chain.authenticate(&credentials, client).await;
        let identity = opens_session(verdict, &self.config.login_form)?;
        self.open_session(&identity, None, now)
            .await
            .map_err(SignInError::Session)
    }

    /// Begins a browser sign-in at `provider`, at `now`.
    pub async fn begin_browser_sign_in(
        &self,
        chain: &Chain,
        provider: &str,
        now: i64,
    ) -> Result<Begun, BrowserError> {
        let browser = chain
            .provider(provider)
            .and_then(|p| p.browser_login())
            .ok_or(BrowserError::NoSuchSignIn)?;
        let (url, pending) = browser.begin(&self.callback_url()).await.map_err(|e| {
            tracing::warn!(provider = %provider, error = %e, "a browser sign-in could not start");
            BrowserError::IdpUnavailable
        })?;
        let window = i64::try_from(SIGN_IN_WINDOW.as_secs()).unwrap_or(i64::MAX);
        let signing_in = SigningIn {
            provider: provider.to_owned(),
            pending,
            exp: now.saturating_add(window),
        };
        let sealed =
            seal(&self.pending, SIGNING_IN_AAD, &signing_in).ok_or(BrowserError::NoRandomness)?;
        Ok(Begun { url, sealed })
    }

    /// Ends the browser sign-in sealed in `sealed` with the IdP's
    /// `answer`, from `client`, at `now`: the session sealed, for the
    /// browser to keep.
    pub async fn finish_browser_sign_in(
        &self,
        chain: &Arc<Chain>,
        sealed: Option<&str>,
        answer: IdpAnswer<'_>,
        client: IpAddr,
        now: i64,
    ) -> Result<String, BrowserError> {
        if let Some(error) = answer.error {
            tracing::info!(error = %Safe(error), "a browser sign-in was refused at the identity provider");
            return Err(BrowserError::RefusedAtIdp);
        }
        let signing_in = sealed
            .and_then(|t| open::<SigningIn>(&self.pending, SIGNING_IN_AAD, t))
            .filter(|s| s.exp > now);
        let (Some(signing_in), Some(code), Some(state)) = (signing_in, answer.code, answer.state)
        else {
            return Err(BrowserError::NotStarted);
        };
        let provider = chain
            .provider(&signing_in.provider)
            .filter(|p| p.browser_login().is_some())
            .cloned()
            .ok_or(BrowserError::ProviderGone)?;
        let exchange = Exchange {
            redirect_uri: self.callback_url(),
            pending: signing_in.pending,
            state: state.to_owned(),
            code: code.to_owned(),
        };
        // In a task of its own: a client hanging up mid-exchange cannot
        // take its failure back.
        let finished = tokio::spawn(finish_counted(chain.clone(), provider, exchange, client))
            .await
            .map_err(|e| {
                tracing::error!(error = %e, "a browser sign-in task failed");
                BrowserError::Interrupted
            })??;
        let (identity, refresh_token) = signed_in(&signing_in.provider, finished)?;
        self.open_session(&identity, refresh_token.as_ref(), now)
            .await
            .map_err(BrowserError::Session)
    }
}

/// The credentials a password form may try: a username and a password
/// within the server's bounds, and a password in shape (a token's or an
/// app password's shape never signs in here).
fn form_credentials(limits: &Limits, username: &str, password: &str) -> Option<Credentials> {
    if username.is_empty()
        || password.is_empty()
        || username.len() > limits.max_username_bytes
        || password.len() > limits.max_secret_bytes
    {
        return None;
    }
    let credentials = Credentials::new(username.trim(), password);
    let shape = SecretShape::of(&credentials.username, credentials.secret.expose_secret());
    matches!(shape, SecretShape::Password | SecretShape::HexToken).then_some(credentials)
}

/// Who a password sign-in's verdict opens a session for: a user whose
/// password a `login_form` provider checked, with no limit. Never a
/// token (an introspected access token would become a session and
/// long-lived app passwords).
fn opens_session(verdict: Verdict, login_form: &[String]) -> Result<Identity, SignInError> {
    match verdict {
        Verdict::Authenticated { identity, .. }
            if login_form.contains(&identity.provider)
                && identity.proof == Proof::Password
                && identity.kind == Kind::User
                && identity.attachment.is_none() =>
        {
            Ok(Arc::unwrap_or_clone(identity))
        }
        Verdict::Authenticated { .. } | Verdict::Rejected { .. } | Verdict::Unknown => {
            Err(SignInError::Refused)
        }
        Verdict::Throttled(_) => Err(SignInError::Throttled),
        Verdict::Unavailable { .. } => Err(SignInError::Unavailable),
    }
}

/// Exchanges a browser sign-in's code at its provider, counted by the
/// client network's failure budget: a refused answer counts as a wrong
/// password does.
async fn finish_counted(
    chain: Arc<Chain>,
    provider: Arc<dyn IdentityProvider>,
    exchange: Exchange,
    client: IpAddr,
) -> Result<Finished, BrowserError> {
    let Some(browser) = provider.browser_login() else {
        return Ok(Finished {
            outcome: Outcome::NotMine,
            refresh_token: None,
        });
    };
    let throttle = chain.throttle();
    let slot = match throttle.reserve_client(client).await {
        Ok(slot) => slot,
        Err(Held::Store(e)) => {
            tracing::warn!(error = %e, "the failure throttle cannot be read");
            return Err(BrowserError::ThrottleUnavailable);
        }
        Err(_) => return Err(BrowserError::Throttled),
    };
    let finished = browser
        .finish(
            &exchange.redirect_uri,
            &exchange.pending,
            &exchange.state,
            &exchange.code,
        )
        .await;
    if matches!(finished.outcome, Outcome::Rejected(_) | Outcome::NotMine) {
        throttle.client_failed(slot);
    } else {
        throttle.client_released(slot).await;
    }
    Ok(finished)
}

/// Who a finished browser sign-in at `provider` signed in, with the
/// IdP's refresh token if it gave one.
fn signed_in(
    provider: &str,
    finished: Finished,
) -> Result<(Identity, Option<SecretString>), BrowserError> {
    match finished.outcome {
        Outcome::Authenticated(identity)
            if regauth_providers::is_team_robot_name(&identity.subject) =>
        {
            tracing::info!(provider = %provider, "a browser sign-in named a user in the team robots' namespace");
            Err(BrowserError::NotAccepted)
        }
        Outcome::Authenticated(identity) => {
            if finished.refresh_token.is_none() {
                tracing::warn!(provider = %provider, "the IdP gave the browser sign-in no refresh token (offline_access): this user's app passwords keep the sign-in's groups for sign_in_max_age, unchecked");
            }
            Ok((identity, finished.refresh_token))
        }
        Outcome::Unavailable(e) => {
            tracing::warn!(provider = %provider, error = %e, "a browser sign-in could not finish");
            Err(BrowserError::IdpUnavailable)
        }
        Outcome::Rejected(reason) => {
            tracing::info!(provider = %provider, reason = %reason, "a browser sign-in was refused");
            Err(BrowserError::NotAccepted)
        }
        Outcome::NotMine => Err(BrowserError::RefusedAtIdp),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::app_passwords::limit::AccessLimit;
    use crate::app_passwords::testing::{directory, passwords};
    use crate::app_passwords::Limit;
    use regauth_providers::Attachment;

    const NOW: i64 = 1_800_000_000;
    const IP: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);

    fn limits() -> Limits {
        Limits {
            max_connections: 1,
            max_connections_per_client: 1,
            max_in_flight: 1,
            max_body_bytes: 1024,
            max_scopes: 1,
            max_header_bytes: 1024,
            max_username_bytes: 16,
            max_secret_bytes: 32,
            max_repository_bytes: 255,
        }
    }

    fn chain(max_failures: u32) -> Arc<Chain> {
        crate::testing::chain(vec![directory()], max_failures)
    }

    fn authenticated(edit: impl FnOnce(&mut Identity)) -> Verdict {
        let mut identity = Identity::new("alice", "local");
        edit(&mut identity);
        Verdict::Authenticated {
            identity: Arc::new(identity),
            cache_hit: false,
        }
    }

    #[test]
    fn the_form_tries_only_passwords_within_bounds() {
        let limits = limits();
        let tried = form_credentials(&limits, " alice ", "pw").unwrap();
        assert_eq!(tried.username, "alice");
        for (user, password) in [
            ("", "pw"),
            ("alice", ""),
            (&"u".repeat(17)[..], "pw"),
            ("alice", &"p".repeat(33)[..]),
            // a token's shape, or an app password's
            ("alice", "ghp_abcdef"),
            ("alice", "glpat-abcdef"),
            (
                "alice",
                &format!("rga_{}_{}", "a".repeat(16), "b".repeat(52))[..],
            ),
        ] {
            assert!(
                form_credentials(&limits, user, password).is_none(),
                "{user:?} {password:?}"
            );
        }
    }

    #[test]
    fn only_a_users_checked_password_at_a_login_form_provider_opens_a_session() {
        let form = ["local".to_owned()];
        assert!(opens_session(authenticated(|_| {}), &form).is_ok());
        for (what, verdict) in [
            (
                "another provider",
                authenticated(|i| i.provider = "other".into()),
            ),
            ("a token", authenticated(|i| i.proof = Proof::Token)),
            (
                "a browser proof",
                authenticated(|i| i.proof = Proof::Browser),
            ),
            ("a robot", authenticated(|i| i.kind = Kind::Robot)),
            (
                "a limit",
                authenticated(|i| {
                    i.attachment = Attachment::new(Limit::from_stored(&[AccessLimit {
                        repos: "**".into(),
                        actions: vec!["pull".into()],
                    }]))
                }),
            ),
            ("nobody", Verdict::Unknown),
        ] {
            assert!(
                matches!(opens_session(verdict, &form), Err(SignInError::Refused)),
                "{what}"
            );
        }
        assert!(matches!(
            opens_session(Verdict::Throttled(Held::Client), &form),
            Err(SignInError::Throttled)
        ));
        let down = Verdict::Unavailable {
            provider: "local".into(),
            reason: "down".into(),
            retry_after: None,
        };
        assert!(matches!(
            opens_session(down, &form),
            Err(SignInError::Unavailable)
        ));
    }

    #[tokio::test]
    async fn a_right_password_opens_a_session_and_wrong_ones_are_counted() {
        let passwords = passwords();
        let chain = chain(2);
        let limits = limits();
        let token = passwords.form_token(None, NOW).unwrap();
        let sealed = token.fresh.as_deref();
        let sign_in = |username, password, csrf| {
            let form = PasswordForm {
                username,
                password,
                csrf,
                sealed_csrf: sealed,
            };
            passwords.sign_in_with_password(&chain, &limits, form, IP, NOW)
        };
        let session = sign_in("alice", "right", &token.csrf).await.unwrap();
        let session = passwords.session(&session, NOW).await.unwrap().unwrap();
        assert_eq!(session.subject, "alice");
        // a form not made for this browser is not even tried
        let forged = sign_in("alice", "right", "forged").await;
        assert!(
            matches!(forged, Err(SignInError::FormExpired)),
            "{forged:?}"
        );
        for _ in 0..2 {
            let wrong = sign_in("bob", "wrong", &token.csrf).await;
            assert!(matches!(wrong, Err(SignInError::Refused)), "{wrong:?}");
        }
        let held = sign_in("bob", "right", &token.csrf).await;
        assert!(matches!(held, Err(SignInError::Throttled)), "{held:?}");
    }

    #[tokio::test]
    async fn a_browser_sign_in_needs_its_sealed_state() {
        let passwords = passwords();
        let chain = chain(2);
        // no browser sign-in at a password provider
        let begun = passwords.begin_browser_sign_in(&chain, "local", NOW).await;
        assert!(matches!(begun, Err(BrowserError::NoSuchSignIn)));
        let answer = || IdpAnswer {
            code: Some("code"),
            state: Some("state"),
            error: None,
        };
        let finished = passwords
            .finish_browser_sign_in(&chain, None, answer(), IP, NOW)
            .await;
        assert!(matches!(finished, Err(BrowserError::NotStarted)));
        let forged = passwords
            .finish_browser_sign_in(&chain, Some("forged"), answer(), IP, NOW)
            .await;
        assert!(matches!(forged, Err(BrowserError::NotStarted)));
        let refused = IdpAnswer {
            error: Some("access_denied"),
            ..answer()
        };
        let finished = passwords
            .finish_browser_sign_in(&chain, None, refused, IP, NOW)
            .await;
        assert!(matches!(finished, Err(BrowserError::RefusedAtIdp)));
        assert!(BrowserError::NotStarted.ends_sign_in());
        assert!(!BrowserError::Throttled.ends_sign_in());
        assert!(!BrowserError::IdpUnavailable.ends_sign_in());
    }
}
