//! What an identity may do: the [`Authorizer`] seam. The default is the
//! policy (`[[rule]]`s); `[authorizer] kind = "webhook"` asks an HTTP
//! service of your own; a library user can plug in any implementation.
//!
//! An authorizer decides every scope of one request at once and never
//! grants more than was asked (the pipeline intersects anyway). One that
//! cannot decide answers an error, which is a 503: never a guess.

use async_trait::async_trait;

mod webhook;

pub use webhook::WebhookAuthorizer;

use crate::domain::policy::{Grant, Policy, Principal};
use crate::domain::scope::Scope;

/// Why an authorizer could not decide (a 503; logged, never shown).
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct AuthorizeError(pub String);

/// Decides what a principal may do with the scopes it asked for.
#[async_trait]
pub trait Authorizer: Send + Sync {
    /// One grant per requested scope (possibly with no actions), in the
    /// order asked.
    async fn authorize(
        &self,
        principal: &Principal,
        service: &str,
        scopes: &[Scope],
    ) -> Result<Vec<Grant>, AuthorizeError>;

    /// [`Authorizer::authorize`] for a request from `client` (after
    /// trusted proxies): an authorizer that calls out may bound what one
    /// client network costs it. The default ignores the client.
    async fn authorize_from(
        &self,
        principal: &Principal,
        service: &str,
        scopes: &[Scope],
        _client: std::net::IpAddr,
    ) -> Result<Vec<Grant>, AuthorizeError> {
        self.authorize(principal, service, scopes).await
    }
}

#[async_trait]
impl Authorizer for Policy {
    async fn authorize(
        &self,
        principal: &Principal,
        service: &str,
        scopes: &[Scope],
    ) -> Result<Vec<Grant>, AuthorizeError> {
        Ok(scopes
            .iter()
            .map(|scope| self.evaluate(principal, service, scope))
            .collect())
    }

    async fn authorize_from(
        &self,
        principal: &Principal,
        service: &str,
        scopes: &[Scope],
        client: std::net::IpAddr,
    ) -> Result<Vec<Grant>, AuthorizeError> {
        Ok(scopes
            .iter()
            .map(|scope| self.evaluate_from(principal, service, scope, Some(client)))
            .collect())
    }
}
