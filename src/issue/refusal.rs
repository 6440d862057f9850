//! Why no token was handed out: one [`Refusal`], which knows its audit
//! outcome and its reason for the log. How it is answered (status, error
//! codes, `WWW-Authenticate` and its realm) is `http::error`'s business.

use regauth_providers::Identity;

use crate::identity::throttle::Held;
use crate::identity::Verdict;
use crate::ops::audit::{self, Safe};

/// Why no token was handed out.
#[derive(Debug)]
pub enum Refusal {
    /// The request is malformed or over a bound (400).
    BadRequest {
        /// What the client is told.
        message: String,
    },
    /// An unsupported `grant_type` (400, `unsupported_grant_type`).
    UnsupportedGrant {
        /// The grant type asked for, for the log.
        grant: String,
    },
    /// The credentials are not good (401).
    Unauthorized {
        /// For the log, never the client.
        reason: String,
        /// Something the user can fix, when there is one.
        user_action: Option<String>,
    },
    /// A refresh token that can no longer be used: log in again (401).
    LoginAgain {
        /// For the log.
        reason: String,
    },
    /// Too many failed logins: the provider is not asked (401).
    Throttled {
        /// For the log.
        reason: String,
    },
    /// An identity provider or a store could not answer (503).
    Unavailable {
        /// For the log.
        reason: String,
        /// What the client is told.
        message: &'static str,
        /// Seconds before asking again makes sense.
        retry_after: u64,
    },
    /// The refresh grant is disabled (404, which every client takes as
    /// "use the password").
    RefreshDisabled,
    /// A device login that is not (or no longer) to be had yet (400,
    /// with RFC 8628's error code).
    Device {
        /// Which answer the client gets.
        wait: DeviceWait,
        /// For the log.
        reason: String,
    },
    /// Something that should not happen (500 without details).
    Internal {
        /// For the log.
        reason: String,
    },
}

/// RFC 8628's answers to a device-code poll that gets no token.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeviceWait {
    /// `authorization_pending`: nobody has answered yet.
    Pending,
    /// `slow_down`: polled sooner than the interval.
    SlowDown,
    /// `expired_token`: the codes ran out.
    Expired,
    /// `access_denied`: the user said no.
    Denied,
    /// `invalid_grant`: not a device code of this client, or used.
    InvalidGrant,
}

impl DeviceWait {
    /// The RFC's error code.
    pub fn code(self) -> &'static str {
        match self {
            DeviceWait::Pending => "authorization_pending",
            DeviceWait::SlowDown => "slow_down",
            DeviceWait::Expired => "expired_token",
            DeviceWait::Denied => "access_denied",
            DeviceWait::InvalidGrant => "invalid_grant",
        }
    }
}

impl Refusal {
    /// How the audit line and the metrics count this refusal.
    pub fn outcome(&self) -> audit::Outcome {
        match self {
            Refusal::BadRequest { .. } | Refusal::UnsupportedGrant { .. } => {
                audit::Outcome::BadRequest
            }
            Refusal::RefreshDisabled | Refusal::Device { .. } => audit::Outcome::BadRequest,
            Refusal::Unauthorized { .. } | Refusal::LoginAgain { .. } => {
                audit::Outcome::Unauthorized
            }
            Refusal::Throttled { .. } => audit::Outcome::Throttled,
            Refusal::Unavailable { .. } | Refusal::Internal { .. } => audit::Outcome::Unavailable,
        }
    }

    /// Why, for the log.
    pub fn reason(&self) -> String {
        match self {
            Refusal::BadRequest { message } => message.clone(),
            Refusal::UnsupportedGrant { grant } => format!("unsupported grant_type {grant:?}"),
            Refusal::Unauthorized { reason, .. }
            | Refusal::LoginAgain { reason }
            | Refusal::Throttled { reason }
            | Refusal::Unavailable { reason, .. }
            | Refusal::Device { reason, .. }
            | Refusal::Internal { reason } => reason.clone(),
            Refusal::RefreshDisabled => "refresh tokens are disabled".into(),
        }
    }

    /// A 400 with a message for the client.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Refusal::BadRequest {
            message: message.into(),
        }
    }

    /// A 401 whose reason is for the log only.
    pub(super) fn unauthorized(reason: impl Into<String>) -> Self {
        Refusal::Unauthorized {
            reason: reason.into(),
            user_action: None,
        }
    }
}

/// Turns the chain's verdict into an identity (and whether it was cached).
pub(super) fn admit(
    verdict: Verdict,
    user: &str,
) -> Result<(std::sync::Arc<Identity>, bool), Refusal> {
    let user = Safe(user);
    match verdict {
        Verdict::Authenticated {
            identity,
            cache_hit,
        } => Ok((identity, cache_hit)),
        Verdict::Rejected { provider, reason } => Err(Refusal::Unauthorized {
            reason: format!("rejected by {provider}: {reason} (user \"{user}\")"),
            user_action: reason.client_message().map(str::to_owned),
        }),
        Verdict::Unknown => Err(Refusal::unauthorized(format!(
            "no provider knows user \"{user}\""
        ))),
        Verdict::Throttled(held) => Err(Refusal::Throttled {
            reason: match held {
                Held::Client => format!(
                    "too many failed logins from this client's network (user \"{user}\"); not asking the identity provider"
                ),
                Held::Account | Held::Provider | Held::Store(_) => format!(
                    "too many failed logins for user \"{user}\"; not asking the identity provider"
                ),
            },
        }),
        Verdict::Unavailable {
            provider,
            reason,
            retry_after,
        } => Err(Refusal::Unavailable {
            reason: format!("provider {provider} unavailable: {reason}"),
            message: "the identity provider is unavailable; try again shortly",
            retry_after: retry_after.unwrap_or(5),
        }),
    }
}
