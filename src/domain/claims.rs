//! The registry token's claim set: what a signed token says. Signing is
//! the keys' job and the endpoint's answer the pipeline's.

use serde::Serialize;

use super::scope::{Action, ResourceType, ScopeLike};

/// One entry of the `access` claim.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct Access {
    /// The resource type (`type`).
    #[serde(rename = "type")]
    pub kind: ResourceType,
    /// The resource name, e.g. a repository.
    pub name: String,
    /// The actions granted on it.
    pub actions: Vec<Action>,
}

/// The registry token's claim set.
#[derive(Debug, Serialize)]
pub struct Claims<'a> {
    /// The issuer (`token.issuer`).
    pub iss: &'a str,
    /// The subject (empty for anonymous).
    pub sub: &'a str,
    /// The service the token is for.
    pub aud: &'a str,
    /// Expiry, in seconds since the epoch.
    pub exp: i64,
    /// Not valid before, in seconds since the epoch (set back by
    /// [`NOT_BEFORE_SKEW`]).
    pub nbf: i64,
    /// Issued at, in seconds since the epoch.
    pub iat: i64,
    /// A random token ID.
    pub jti: String,
    /// The access granted.
    pub access: &'a [Access],
}

/// How far `nbf` is set back, to absorb clock skew between hosts.
pub const NOT_BEFORE_SKEW: i64 = 5;

impl ScopeLike for Access {
    fn kind(&self) -> &ResourceType {
        &self.kind
    }
    fn name(&self) -> &str {
        &self.name
    }
    fn actions(&self) -> &[Action] {
        &self.actions
    }
}
