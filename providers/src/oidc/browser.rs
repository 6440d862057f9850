//! The browser sign-in (`browser_login = true`): the authorization code
//! flow with PKCE, `state` and `nonce`, the ID token verified with the
//! issuer's keys, and the IdP asked again with the sign-in's refresh
//! token.

use async_trait::async_trait;
use secrecy::{ExposeSecret, SecretString};
use serde_json::Value;

use super::{bounded_http, Discovery, Oidc, Via};
use crate::{Error, Outcome, Rejection};

impl Oidc {
    /// The claims of an ID token from the token endpoint, verified with
    /// the issuer's keys (fetched now: only for a code or refresh token
    /// the IdP took, so made-up ones cause no JWKS fetch): signature with
    /// an asymmetric algorithm (never HMAC under the client secret),
    /// issuer, audience, expiry, and the nonce when one was sent.
    async fn verified_id_token(
        &self,
        discovery: &Discovery,
        id_token: &openidconnect::core::CoreIdToken,
        nonce: Option<&str>,
    ) -> Result<Value, Outcome> {
        use base64::Engine as _;
        use openidconnect::{JsonWebKeySet, Nonce};
        let http = bounded_http(&self.http);
        let keys = JsonWebKeySet::fetch_async(discovery.jwks_uri(), &http)
            .await
            .map_err(|e| Outcome::Unavailable(Error::Upstream(format!("JWKS: {e}"))))?;
        let with_keys = discovery.clone().set_jwks(keys);
        let client = self
            .client(&with_keys, None)
            .map_err(Outcome::Unavailable)?;
        let verifier = client.id_token_verifier().set_allowed_algs({
            use openidconnect::core::CoreJwsSigningAlgorithm as A;
            [
                A::RsaSsaPkcs1V15Sha256,
                A::RsaSsaPkcs1V15Sha384,
                A::RsaSsaPkcs1V15Sha512,
                A::RsaSsaPssSha256,
                A::RsaSsaPssSha384,
                A::RsaSsaPssSha512,
                A::EcdsaP256Sha256,
                A::EcdsaP384Sha384,
                A::EdDsa,
            ]
        });
        let checked = match nonce {
            Some(nonce) => id_token
                .claims(&verifier, &Nonce::new(nonce.to_owned()))
                .map(drop),
            // a refresh's ID token carries the sign-in's nonce, or none
            None => id_token
                .claims(&verifier, |_: Option<&Nonce>| Ok(()))
                .map(drop),
        };
        if let Err(e) = checked {
            return Err(Outcome::Rejected(Rejection::Other(format!(
                "ID token refused: {e}"
            ))));
        }
        // Verified: its claims, as the IdP wrote them, become the identity.
        let compact = id_token.to_string();
        compact
            .split('.')
            .nth(1)
            .and_then(|part| {
                base64::engine::general_purpose::URL_SAFE_NO_PAD
                    .decode(part)
                    .ok()
            })
            .and_then(|json| serde_json::from_slice(&json).ok())
            .ok_or_else(|| Outcome::Unavailable(Error::Upstream("an unreadable ID token".into())))
    }
}

#[async_trait]
impl crate::BrowserLogin for Oidc {
    async fn begin(&self, redirect_uri: &str) -> Result<(String, crate::PendingLogin), Error> {
        use openidconnect::core::CoreAuthenticationFlow;
        use openidconnect::{CsrfToken, Nonce, PkceCodeChallenge};
        let discovery = self.discovery().await?;
        let client = self.client(&discovery, Some(redirect_uri))?;
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        let (url, state, nonce) = client
            .authorize_url(
                CoreAuthenticationFlow::AuthorizationCode,
                CsrfToken::new_random,
                Nonce::new_random,
            )
            .add_scope(openidconnect::Scope::new("profile".into()))
            // a refresh token that outlives the IdP session, so regauth
            // can ask about the user again while their app passwords live
            .add_scope(openidconnect::Scope::new("offline_access".into()))
            .set_pkce_challenge(challenge)
            .url();
        Ok((
            url.to_string(),
            crate::PendingLogin {
                state: state.secret().clone(),
                nonce: nonce.secret().clone(),
                pkce_verifier: verifier.secret().clone(),
            },
        ))
    }

    async fn finish(
        &self,
        redirect_uri: &str,
        pending: &crate::PendingLogin,
        state: &str,
        code: &str,
    ) -> crate::Finished {
        use openidconnect::{
            AuthorizationCode, OAuth2TokenResponse as _, PkceCodeVerifier, RequestTokenError,
        };
        let refused = |outcome| crate::Finished {
            outcome,
            refresh_token: None,
        };
        let same_state = aws_lc_rs::constant_time::verify_slices_are_equal(
            state.as_bytes(),
            pending.state.as_bytes(),
        )
        .is_ok();
        if !same_state {
            return refused(Outcome::Rejected(Rejection::Other(
                "the sign-in's state does not match the browser's".into(),
            )));
        }
        let discovery = match self.discovery().await {
            Ok(d) => d,
            Err(e) => return refused(Outcome::Unavailable(e)),
        };
        let http = bounded_http(&self.http);
        let client = self.client(&discovery, Some(redirect_uri));
        let (client, assertion) = match client.and_then(|c| Ok((c, self.assertion(&discovery)?))) {
            Ok(both) => both,
            Err(e) => return refused(Outcome::Unavailable(e)),
        };
        let mut request = client
            .exchange_code(AuthorizationCode::new(code.to_owned()))
            .set_pkce_verifier(PkceCodeVerifier::new(pending.pkce_verifier.clone()));
        for (name, value) in assertion {
            request = request.add_extra_param(name, value);
        }
        let exchanged = request.request_async(&http).await;
        let token = match exchanged {
            Ok(token) => token,
            Err(RequestTokenError::ServerResponse(refusal)) => {
                return refused(Outcome::Rejected(Rejection::Other(format!(
                    "the IdP refused the code: {}",
                    refusal.error()
                ))))
            }
            Err(e) => {
                return refused(Outcome::Unavailable(Error::Upstream(format!(
                    "code exchange: {e}"
                ))))
            }
        };
        let Some(id_token) = openidconnect::TokenResponse::id_token(&token) else {
            return refused(Outcome::Unavailable(Error::Upstream(
                "the token endpoint sent no ID token".into(),
            )));
        };
        let claims = match self
            .verified_id_token(&discovery, id_token, Some(&pending.nonce))
            .await
        {
            Ok(claims) => claims,
            Err(outcome) => return refused(outcome),
        };
        let outcome = match self.identity(&claims, Via::Browser) {
            Ok(identity) => Outcome::Authenticated(identity),
            Err(rejection) => Outcome::Rejected(rejection),
        };
        crate::Finished {
            outcome,
            refresh_token: token
                .refresh_token()
                .map(|t| SecretString::from(t.secret().clone())),
        }
    }

    async fn renew(&self, refresh_token: &SecretString) -> crate::Renewed {
        use openidconnect::core::CoreErrorResponseType as Code;
        use openidconnect::{OAuth2TokenResponse as _, RefreshToken, RequestTokenError};
        let discovery = match self.discovery().await {
            Ok(d) => d,
            Err(e) => return crate::Renewed::Unavailable(e),
        };
        let client = match self.client(&discovery, None) {
            Ok(c) => c,
            Err(e) => return crate::Renewed::Unavailable(e),
        };
        let http = bounded_http(&self.http);
        let refresh = RefreshToken::new(refresh_token.expose_secret().to_owned());
        let mut request = client.exchange_refresh_token(&refresh);
        match self.assertion(&discovery) {
            Ok(params) => {
                for (name, value) in params {
                    request = request.add_extra_param(name, value);
                }
            }
            Err(e) => return crate::Renewed::Unavailable(e),
        }
        let answer = request.request_async(&http).await;
        let token = match answer {
            Ok(token) => token,
            Err(RequestTokenError::ServerResponse(refusal)) => {
                return match refusal.error() {
                    Code::InvalidClient | Code::UnauthorizedClient => {
                        crate::Renewed::Unavailable(Error::Upstream(format!(
                            "the IdP refused regauth's client ({})",
                            refusal.error()
                        )))
                    }
                    Code::Extension(code)
                        if code == "server_error" || code == "temporarily_unavailable" =>
                    {
                        crate::Renewed::Unavailable(Error::Upstream(format!(
                            "token endpoint: {code}"
                        )))
                    }
                    other => crate::Renewed::Refused(Rejection::Other(format!(
                        "the IdP refused the sign-in's refresh token ({other})"
                    ))),
                }
            }
            Err(e) => return crate::Renewed::Unavailable(Error::Upstream(format!("refresh: {e}"))),
        };
        let identity = match openidconnect::TokenResponse::id_token(&token) {
            None => None,
            Some(id_token) => match self.verified_id_token(&discovery, id_token, None).await {
                Ok(claims) => match self.identity(&claims, Via::Browser) {
                    Ok(identity) => Some(identity),
                    Err(rejection) => return crate::Renewed::Refused(rejection),
                },
                Err(Outcome::Unavailable(e)) => return crate::Renewed::Unavailable(e),
                Err(Outcome::Rejected(rejection)) => return crate::Renewed::Refused(rejection),
                Err(_) => None,
            },
        };
        crate::Renewed::Current {
            identity,
            refresh_token: token
                .refresh_token()
                .map(|t| SecretString::from(t.secret().clone())),
        }
    }
}
