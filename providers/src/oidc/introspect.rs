//! RFC 7662 introspection: an opaque token, presented under the agreed
//! username, is checked at the IdP's introspection endpoint, and only an
//! active token for one of the accepted audiences of this issuer logs in.

use secrecy::ExposeSecret;
use serde_json::Value;

use super::{json_answer, Oidc, Via};
use crate::{Error, Identity, Outcome, Rejection};

impl Oidc {
    /// RFC 7662 introspection of an opaque token: its claims if active.
    pub(super) async fn introspect(&self, token: &str) -> Outcome {
        let claims = match self.introspection(token).await {
            Ok(claims) => claims,
            Err(e) => return Outcome::Unavailable(e),
        };
        match self.introspected(claims) {
            Ok(identity) => Outcome::Authenticated(identity),
            Err(rejection) => Outcome::Rejected(rejection),
        }
    }

    /// What the IdP's introspection endpoint says of `token`.
    async fn introspection(&self, token: &str) -> Result<Value, Error> {
        let discovery = self.discovery().await?;
        let Some(endpoint) = &discovery.additional_metadata().introspection_endpoint else {
            return Err(Error::Upstream(
                "the IdP offers no introspection_endpoint".into(),
            ));
        };
        let client_id = self.config.client_id.as_deref().unwrap_or_default();
        let secret = self
            .client_secret
            .as_ref()
            .map(|s| s.expose_secret().to_owned());
        let request = self
            .http
            .post(endpoint)
            .basic_auth(client_id, secret)
            .form(&[("token", token), ("token_type_hint", "access_token")]);
        json_answer("introspection", request).await
    }

    /// The identity of an introspected token: only an active one, of this
    /// issuer, for one of the accepted audiences.
    fn introspected(&self, mut claims: Value) -> Result<Identity, Rejection> {
        if claims["active"] != Value::Bool(true) {
            return Err(Rejection::Other(
                "the IdP says the token is not active".into(),
            ));
        }
        let audience_ok = match &claims["aud"] {
            Value::String(aud) => self.config.audiences.contains(aud),
            Value::Array(auds) => auds
                .iter()
                .filter_map(Value::as_str)
                .any(|a| self.config.audiences.iter().any(|x| x == a)),
            _ => false,
        };
        let issuer_ok = match claims.get("iss").and_then(Value::as_str) {
            Some(iss) => iss.trim_end_matches('/') == self.issuer,
            None => true,
        };
        if !issuer_ok {
            return Err(Rejection::Other(
                "introspected token is from another issuer".into(),
            ));
        }
        if !audience_ok {
            return Err(Rejection::Other(
                "introspected token is for another audience".into(),
            ));
        }
        if claims.get(&self.config.username_claim).is_none() {
            // RFC 7662 names the user `username`
            if let Some(username) = claims.get("username").cloned() {
                claims[self.config.username_claim.as_str()] = username;
            }
        }
        self.identity(&claims, Via::Token)
    }
}
