//! The page's sessions: sealed (the browser keeps them, and can neither
//! read nor forge one), bound to a lifetime and to the revocation ledger
//! they began under, ended early in that ledger (on every replica) at
//! sign-out, and over as soon as their user is: gone from the directory,
//! or no longer signed in at the IdP. Every form a session posts carries
//! its CSRF token; the sign-in form, before there is a session, carries
//! one sealed for it alone.

use std::fmt;
use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use regauth_providers::{Identity, Outcome, SecretString};
use serde::{Deserialize, Serialize};

use super::{ct_eq, open, seal, unix, AppPasswordError, AppPasswords, Listed, Revocation};
use crate::keys::NoRandomness;
use crate::ops::audit::Safe;
use crate::random::random_bytes;

/// What sessions are sealed for (the name their cookie had when they
/// began: sessions sealed by an earlier version still open).
const SESSION_AAD: &[u8] = b"regauth_session";
/// What the sign-in form's tokens are sealed for.
const FORM_AAD: &[u8] = b"regauth_form";

/// How long a sign-in may take: the sign-in form's token, and a browser
/// sign-in at the IdP, last this long.
pub const SIGN_IN_WINDOW: Duration = Duration::from_secs(600);
/// A form token this close to its end is replaced, not shown again.
const FORM_TOKEN_MARGIN: i64 = 60;

/// A signed-in session, sealed in its cookie.
#[derive(Clone, Serialize, Deserialize)]
pub struct Session {
    sid: String,
    /// The user's provider.
    pub provider: String,
    /// The user, as their provider names them.
    pub subject: String,
    /// Shown at sign-in; every admin action asks again
    /// ([`AppPasswords::admin_now`]).
    pub admin: bool,
    /// The user's account id, if their provider has one.
    #[serde(default)]
    pub account: Option<String>,
    csrf: String,
    exp: i64,
    /// The revocation ledger it began under: one made anew (which forgot
    /// the sign-outs) ends it.
    #[serde(default)]
    ledger: String,
}

/// Everything but the session's id and CSRF token.
impl fmt::Debug for Session {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Session")
            .field("provider", &self.provider)
            .field("subject", &self.subject)
            .field("admin", &self.admin)
            .field("account", &self.account)
            .field("exp", &self.exp)
            .finish_non_exhaustive()
    }
}

impl Session {
    /// The user, as app passwords are made and owned.
    pub fn identity(&self) -> Identity {
        let mut identity = Identity::new(self.subject.clone(), self.provider.clone());
        identity.account_id = self.account.clone();
        identity
    }

    /// The CSRF token every form of this session carries.
    pub fn csrf(&self) -> &str {
        &self.csrf
    }

    /// Whether a form's token is this session's.
    pub fn csrf_holds(&self, token: &str) -> bool {
        !token.is_empty() && ct_eq(&self.csrf, token)
    }

    /// The ledger's key of this session, once ended before its time.
    fn ended_key(&self) -> String {
        format!("session:{}", self.sid)
    }
}

/// The sign-in form's CSRF token before anyone is signed in, as sealed.
#[derive(Serialize, Deserialize)]
struct SealedFormToken {
    csrf: String,
    exp: i64,
}

/// The sign-in form's CSRF token.
pub struct FormToken {
    /// The token the form carries.
    pub csrf: String,
    /// The token sealed anew, for the browser to keep
    /// ([`SIGN_IN_WINDOW`]); `None` when it kept one that still holds.
    pub fresh: Option<String>,
}

impl fmt::Debug for FormToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FormToken")
            .field("fresh", &self.fresh.is_some())
            .finish_non_exhaustive()
    }
}

/// A random token (192 bits, base64url): a session's id, a CSRF token.
fn random_token() -> Result<String, NoRandomness> {
    Ok(URL_SAFE_NO_PAD.encode(random_bytes::<24>()?))
}

impl AppPasswords {
    /// The session sealed in `sealed`, if there is one: sealed by this
    /// key, unexpired at `now`, not signed out, begun under this ledger,
    /// and its user still vouched for (asked again every
    /// `recheck_interval`).
    pub async fn session(
        &self,
        sealed: &str,
        now: i64,
    ) -> Result<Option<Session>, AppPasswordError> {
        let Some(session) = open::<Session>(&self.sessions, SESSION_AAD, sealed) else {
            return Ok(None);
        };
        if session.exp <= now {
            return Ok(None);
        }
        let ended = self.ledger.ended(&session.ended_key()).await?;
        if ended || self.ledger.id().await? != session.ledger {
            return Ok(None);
        }
        // A session does not outlive its user: gone from the directory, or
        // no longer signed in at the IdP.
        match self
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
                Err(AppPasswordError::OwnerUnavailable)
            }
            Err(_) => Ok(None),
        }
    }

    /// Opens a session for a user who just signed in: keeps the sign-in's
    /// groups (and the IdP's refresh token, sealed) for their app
    /// passwords, and answers with the session sealed, for the browser to
    /// keep `session_lifetime`.
    pub async fn open_session(
        &self,
        identity: &Identity,
        refresh_token: Option<&SecretString>,
        now: i64,
    ) -> Result<String, AppPasswordError> {
        self.remember_sign_in(identity, refresh_token).await?;
        let lifetime = i64::try_from(self.config.session_lifetime.as_secs()).unwrap_or(i64::MAX);
        let session = Session {
            sid: random_token()?,
            provider: identity.provider.clone(),
            subject: identity.subject.clone(),
            admin: self.is_admin(identity),
            account: identity.account_id.clone(),
            csrf: random_token()?,
            exp: now.saturating_add(lifetime),
            ledger: self.ledger.id().await?,
        };
        let sealed = seal(&self.sessions, SESSION_AAD, &session).ok_or(AppPasswordError::Random)?;
        tracing::info!(
            target: "regauth::audit",
            event = "ui_signed_in",
            subject = %Safe(&identity.subject),
            provider = %identity.provider,
            "signed in to the app-password page"
        );
        Ok(sealed)
    }

    /// Ends a session before its time: the sealed cookie stays valid
    /// until its expiry, so the session is recorded as ended in the
    /// ledger (on every replica) until then.
    pub async fn end_session(&self, session: &Session) -> Result<(), AppPasswordError> {
        let until = unix(session.exp);
        self.ledger.end(&session.ended_key(), until).await?;
        Ok(())
    }

    /// Whether the session's user is an admin now (their provider, or
    /// their last sign-in, says so): removal from the admin group holds
    /// at once.
    pub async fn admin_now(&self, session: &Session) -> bool {
        session.admin
            && self
                .is_admin_now(
                    &session.provider,
                    &session.subject,
                    session.account.as_deref(),
                )
                .await
    }

    /// The user's own app passwords, and their groups as their last
    /// sign-in kept them.
    pub async fn overview(
        &self,
        session: &Session,
    ) -> Result<(Vec<Listed>, Vec<String>), AppPasswordError> {
        let listed = self.list(Some(&session.identity())).await?;
        let groups = self
            .sign_in_of(&session.provider, &session.subject)
            .await?
            .map(|s| s.groups)
            .unwrap_or_default();
        Ok((listed, groups))
    }

    /// Everyone's app passwords, for an admin (now).
    pub async fn everyones(&self, session: &Session) -> Result<Vec<Listed>, AppPasswordError> {
        if !self.admin_now(session).await {
            return Err(AppPasswordError::NotAdmin);
        }
        self.list(None).await
    }

    /// Revokes app password `id` for the session's user: theirs, or
    /// anyone's for an admin (now); audited.
    pub async fn revoke_as(
        &self,
        session: &Session,
        id: &str,
    ) -> Result<Revocation, AppPasswordError> {
        let by_admin = self.admin_now(session).await;
        let password = self.revoke(id, &session.identity(), by_admin).await?;
        password.audit(
            "app_password_revoked",
            &format!("{} ({})", session.subject, session.provider),
        );
        Ok(Revocation { password, by_admin })
    }

    /// The sign-in form's CSRF token: the one sealed in `sealed` while it
    /// holds a while longer, or a new one.
    pub fn form_token(&self, sealed: Option<&str>, now: i64) -> Result<FormToken, NoRandomness> {
        let kept = sealed
            .and_then(|t| open::<SealedFormToken>(&self.pending, FORM_AAD, t))
            .filter(|t| t.exp > now.saturating_add(FORM_TOKEN_MARGIN));
        if let Some(kept) = kept {
            return Ok(FormToken {
                csrf: kept.csrf,
                fresh: None,
            });
        }
        let window = i64::try_from(SIGN_IN_WINDOW.as_secs()).unwrap_or(i64::MAX);
        let token = SealedFormToken {
            csrf: random_token()?,
            exp: now.saturating_add(window),
        };
        let fresh = seal(&self.pending, FORM_AAD, &token).ok_or(NoRandomness)?;
        Ok(FormToken {
            csrf: token.csrf,
            fresh: Some(fresh),
        })
    }

    /// Whether a sign-in form's `token` is the one sealed for it in
    /// `sealed`, unexpired at `now`.
    pub(super) fn form_token_holds(&self, sealed: Option<&str>, token: &str, now: i64) -> bool {
        sealed
            .and_then(|t| open::<SealedFormToken>(&self.pending, FORM_AAD, t))
            .is_some_and(|t| t.exp > now && !token.is_empty() && ct_eq(&t.csrf, token))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::app_passwords::testing::passwords;

    const NOW: i64 = 1_800_000_000;

    async fn signed_in(passwords: &AppPasswords, subject: &str) -> (String, Session) {
        let groups: &[&str] = if subject == "admin" { &["admins"] } else { &[] };
        let identity = Identity::new(subject, "local").with_groups(groups.iter().copied());
        let sealed = passwords.open_session(&identity, None, NOW).await.unwrap();
        let session = passwords.session(&sealed, NOW).await.unwrap().unwrap();
        (sealed, session)
    }

    #[tokio::test]
    async fn a_session_opens_only_sealed_by_this_key_and_unexpired() {
        let passwords = passwords();
        let (sealed, session) = signed_in(&passwords, "alice").await;
        assert_eq!(
            (session.subject.as_str(), session.provider.as_str()),
            ("alice", "local")
        );
        // its lifetime is session_lifetime
        let end = NOW + 3600;
        assert!(passwords.session(&sealed, end - 1).await.unwrap().is_some());
        assert!(passwords.session(&sealed, end).await.unwrap().is_none());
        // tampered, or sealed for something else: no session
        let mut tampered = sealed.clone().into_bytes();
        tampered[12] = if tampered[12] == b'A' { b'B' } else { b'A' };
        let tampered = String::from_utf8(tampered).unwrap();
        assert!(passwords.session(&tampered, NOW).await.unwrap().is_none());
        let form = passwords.form_token(None, NOW).unwrap().fresh.unwrap();
        assert!(passwords.session(&form, NOW).await.unwrap().is_none());
        // nor does a key of another deployment open it
        let other = crate::app_passwords::testing::passwords_with_key(&[8u8; 32]);
        assert!(other.session(&sealed, NOW).await.unwrap().is_none());
    }

    #[tokio::test]
    async fn an_ended_session_stays_ended() {
        let passwords = passwords();
        let (sealed, session) = signed_in(&passwords, "alice").await;
        let (other, _) = signed_in(&passwords, "alice").await;
        passwords.end_session(&session).await.unwrap();
        assert!(passwords.session(&sealed, NOW).await.unwrap().is_none());
        // the same user's other session goes on
        assert!(passwords.session(&other, NOW).await.unwrap().is_some());
    }

    #[tokio::test]
    async fn a_session_does_not_outlive_its_user() {
        let passwords = passwords();
        // `gone` signs in, then their directory no longer knows them
        let identity = Identity::new("gone", "local");
        let sealed = passwords.open_session(&identity, None, NOW).await.unwrap();
        assert!(passwords.session(&sealed, NOW).await.unwrap().is_none());
    }

    #[tokio::test]
    async fn admin_rights_are_asked_again() {
        let passwords = passwords();
        let (_, admin) = signed_in(&passwords, "admin").await;
        assert!(admin.admin && passwords.admin_now(&admin).await);
        assert!(passwords.everyones(&admin).await.is_ok());
        let (_, user) = signed_in(&passwords, "alice").await;
        assert!(!user.admin && !passwords.admin_now(&user).await);
        assert!(matches!(
            passwords.everyones(&user).await,
            Err(AppPasswordError::NotAdmin)
        ));
    }

    #[tokio::test]
    async fn a_form_holds_only_its_sessions_token() {
        let passwords = passwords();
        let (_, alice) = signed_in(&passwords, "alice").await;
        let (_, other) = signed_in(&passwords, "alice").await;
        assert!(alice.csrf_holds(alice.csrf()));
        assert!(!alice.csrf_holds(other.csrf()));
        assert!(!alice.csrf_holds(""));
        assert!(!alice.csrf_holds(&alice.csrf()[1..]));
        let shown = format!("{alice:?}");
        assert!(!shown.contains(alice.csrf()) && !shown.contains(&alice.sid));
    }

    #[test]
    fn the_sign_in_forms_token_is_sealed_for_it_and_kept_while_it_holds() {
        let passwords = passwords();
        let first = passwords.form_token(None, NOW).unwrap();
        let sealed = first.fresh.clone().unwrap();
        assert!(passwords.form_token_holds(Some(&sealed), &first.csrf, NOW));
        assert!(!passwords.form_token_holds(Some(&sealed), "x", NOW));
        assert!(!passwords.form_token_holds(Some(&sealed), "", NOW));
        assert!(!passwords.form_token_holds(None, &first.csrf, NOW));
        // shown again while it holds, replaced shortly before its end
        let again = passwords.form_token(Some(&sealed), NOW + 60).unwrap();
        assert_eq!(
            (again.csrf.as_str(), again.fresh),
            (first.csrf.as_str(), None)
        );
        let end = NOW + 600;
        let late = passwords.form_token(Some(&sealed), end - 60).unwrap();
        assert!(late.fresh.is_some() && late.csrf != first.csrf);
        assert!(!passwords.form_token_holds(Some(&sealed), &first.csrf, end));
    }
}
