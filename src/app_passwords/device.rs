//! Device logins (OAuth 2.0 device authorization, RFC 8628): a terminal
//! (`regauth login`, any client that speaks the RFC) asks for a device
//! code; its user opens the page, signs in exactly as for app passwords
//! (the IdP's second factor included), enters the user code, sees which
//! client and registry ask, and approves or denies; the terminal, polling
//! the token endpoint with the device code, receives an identity token.
//!
//! That identity token is an app password of the approving user, marked
//! with the client it was approved for: so it has everything an app
//! password has (a keyed digest only in the state backend, an expiry, the
//! owner checked again at their provider or IdP at every use, revocation
//! on the page, by `regauth tokens revoke` and by `regauth logout`, on
//! every replica), and it is listed on the page as a device login. Unlike
//! a page-made one it is never typed: the docker CLI keeps it as an
//! identity token and presents it with the refresh grant.
//!
//! What is stored for a request under way: the digest of the device
//! code's secret, the client, the service, the deadlines and the decision,
//! under a keyed digest of the user code (so the user code finds it, and
//! nobody reads user codes out of the backend). Neither code alone is
//! enough: the user code works only for a signed-in user, and only
//! approves; the device code only with its client, and only once approved.
//! Wrong user codes spend the client network's failure budget.

use std::net::IpAddr;
use std::time::Duration;

use regauth_providers::{Identity, SecretString};
use serde::{Deserialize, Serialize};

use super::{lock_key, unix, AppPassword, AppPasswordError, AppPasswords, Limit, Session};
use crate::identity::throttle::Throttle;
use crate::ops::audit::Safe;
use crate::state::StoreError;

/// The state backend's collection of device logins under way.
const REQUESTS: &str = "device_request";
/// A device code: `rgd_` + the request's id + `_` + its secret.
const DEVICE_PREFIX: &str = "rgd_";
/// How long a device code and its user code last.
pub const CODE_LIFETIME: Duration = Duration::from_secs(600);
/// How often a client may poll, in seconds, to begin with (RFC 8628
/// §3.5 adds 5 at every `slow_down`).
pub const POLL_INTERVAL: u64 = 5;
/// The longest poll interval a client is told.
const MAX_INTERVAL: u64 = 60;
/// User codes: eight letters of twenty consonants (no vowels, so no
/// words; nothing to confuse with a digit), about 34.6 bits, shown as
/// `BCDF-GHJK`.
const USER_CODE_ALPHABET: &[u8; 20] = b"BCDFGHJKLMNPQRSTVWXZ";
const USER_CODE_CHARS: usize = 8;
/// Device logins under way at once, on every replica together.
const MAX_UNDER_WAY: usize = 1000;
/// Device logins one client address may start per [`CODE_LIFETIME`].
const STARTS_PER_CLIENT: u32 = 20;
/// The longest `client_id` kept.
const MAX_CLIENT_ID_CHARS: usize = 64;

/// Why a device login did not go on.
#[derive(Debug, thiserror::Error)]
pub enum DeviceError {
    /// The request is malformed (RFC 6749 `invalid_request`).
    #[error("{0}")]
    InvalidRequest(&'static str),
    /// Not approved or denied yet (`authorization_pending`).
    #[error("the user has not approved the device login yet")]
    Pending,
    /// Polled faster than the interval (`slow_down`).
    #[error("polled too fast")]
    SlowDown,
    /// The codes ran out (`expired_token`).
    #[error("the device code expired")]
    Expired,
    /// The user denied it (`access_denied`).
    #[error("the user denied the device login")]
    Denied,
    /// Not a device code of this server for this client, or used
    /// already (`invalid_grant`).
    #[error("not a device code of this server for this client (or used already)")]
    InvalidGrant,
    /// Too many device logins started (by this client, or at all).
    #[error("too many device logins under way")]
    TooMany,
    /// The state backend could not answer.
    #[error("the state backend: {0}")]
    Store(#[from] StoreError),
    /// Approved, but its identity token could not be made.
    #[error(transparent)]
    Made(AppPasswordError),
}

impl From<crate::keys::NoRandomness> for DeviceError {
    fn from(_: crate::keys::NoRandomness) -> Self {
        Self::Made(AppPasswordError::Random)
    }
}

/// A device login under way, as stored (never a code).
#[derive(Clone, Serialize, Deserialize)]
struct Request {
    /// Keyed digest of the device code's secret.
    digest: String,
    /// The client that asked, as it named itself.
    client_id: String,
    /// The registry service it asked for.
    service: String,
    /// Seconds since the epoch.
    created: u64,
    expires: u64,
    /// When it was last polled, in milliseconds since the epoch.
    #[serde(default)]
    polled_ms: u64,
    /// The poll interval the client was last told.
    interval: u64,
    decision: Decision,
}

/// Where a device login stands.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "decision", rename_all = "snake_case")]
enum Decision {
    /// Nobody has answered.
    Pending,
    /// Approved by this user.
    Approved {
        provider: String,
        subject: String,
        #[serde(default)]
        account: Option<String>,
    },
    /// Denied.
    Denied,
}

/// A device login started: what the client is told.
pub struct Started {
    /// The device code (a secret of the client's).
    pub device_code: SecretString,
    /// The user code, as shown (`BCDF-GHJK`).
    pub user_code: String,
    /// Seconds the codes last.
    pub expires_in: u64,
    /// Seconds between polls.
    pub interval: u64,
}

/// A device login waiting for its user, as the page shows it.
#[derive(Clone, Debug)]
pub struct Asking {
    /// The user code, as shown.
    pub user_code: String,
    /// The client that asks.
    pub client_id: String,
    /// The registry it asks for.
    pub service: String,
    /// When the codes run out.
    pub expires: u64,
}

/// What a user code entered on the page finds.
#[derive(Debug)]
pub enum Entered {
    /// A device login waiting for an answer.
    Asking(Asking),
    /// No such code (or it ran out).
    Unknown,
    /// Approved or denied already.
    Answered,
    /// Too many wrong codes from this network.
    Throttled,
}

/// The user code as typed: upper case, in the alphabet, separators left
/// out; `None` when it cannot be one.
pub fn normalize_user_code(typed: &str) -> Option<String> {
    if typed.len() > 64 {
        return None;
    }
    let code: String = typed
        .chars()
        .filter(|c| !matches!(c, '-' | ' ' | '\t'))
        .map(|c| c.to_ascii_uppercase())
        .collect();
    (code.len() == USER_CODE_CHARS && code.bytes().all(|b| USER_CODE_ALPHABET.contains(&b)))
        .then_some(code)
}

/// `BCDFGHJK` as shown: `BCDF-GHJK`.
fn shown(code: &str) -> String {
    format!("{}-{}", &code[..4], &code[4..])
}

/// A new user code: each letter from a random byte below 240, which 20
/// divides (no bias).
fn new_user_code() -> Result<String, crate::keys::NoRandomness> {
    let mut code = String::with_capacity(USER_CODE_CHARS);
    while code.len() < USER_CODE_CHARS {
        for b in crate::random::random_bytes::<16>()? {
            if b < 240 && code.len() < USER_CODE_CHARS {
                code.push(char::from(USER_CODE_ALPHABET[usize::from(b % 20)]));
            }
        }
    }
    Ok(code)
}

/// `rgd_<id>_<secret>` split, if it has that shape.
fn parse_device_code(code: &str) -> Option<(&str, &str)> {
    let (id, secret) = code.strip_prefix(DEVICE_PREFIX)?.split_once('_')?;
    let hex = |s: &str| {
        s.bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
    };
    (id.len() == 32 && secret.len() == 43 && hex(id)).then_some((id, secret))
}

/// A `client_id` fit to keep and show: printable, bounded; else `None`.
fn client_name(client_id: &str) -> Option<&str> {
    let name = client_id.trim();
    (!name.is_empty()
        && name.chars().count() <= MAX_CLIENT_ID_CHARS
        && name
            .chars()
            .all(|c| !c.is_control() && !c.is_whitespace() || c == ' '))
    .then_some(name)
}

impl AppPasswords {
    /// The id of the request a user code names: a keyed digest of it.
    fn request_id(&self, user_code: &str) -> String {
        self.digest("device user code", user_code)[..32].to_owned()
    }

    /// Starts a device login for `client_id` and `service` (checked by
    /// the caller) from `client`, at `now`.
    pub async fn start_device_login(
        &self,
        client_id: &str,
        service: &str,
        client: IpAddr,
        now: i64,
    ) -> Result<Started, DeviceError> {
        let client_id =
            client_name(client_id).ok_or(DeviceError::InvalidRequest("client_id is required"))?;
        let per_client = lock_key("device-start", &client.to_string());
        if !self
            .store
            .take(&per_client, STARTS_PER_CLIENT, CODE_LIFETIME)
            .await?
        {
            return Err(DeviceError::TooMany);
        }
        self.sweep_device_logins(now).await?;
        let now = unix(now);
        let secret = base64::Engine::encode(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD,
            crate::random::random_bytes::<32>()?,
        );
        // a user code taken already is drawn again
        for _ in 0..4 {
            let user_code = new_user_code()?;
            let id = self.request_id(&user_code);
            let request = Request {
                digest: self.digest(&id, &secret),
                client_id: client_id.to_owned(),
                service: service.to_owned(),
                created: now,
                expires: now + CODE_LIFETIME.as_secs(),
                polled_ms: 0,
                interval: POLL_INTERVAL,
                decision: Decision::Pending,
            };
            if self
                .store
                .swap_record(REQUESTS, &id, None, &json(&request)?)
                .await?
            {
                audit("device_login_started", &id, &request, "");
                return Ok(Started {
                    device_code: SecretString::from(format!("{DEVICE_PREFIX}{id}_{secret}")),
                    user_code: shown(&user_code),
                    expires_in: CODE_LIFETIME.as_secs(),
                    interval: POLL_INTERVAL,
                });
            }
        }
        Err(DeviceError::TooMany)
    }

    /// Deletes the device logins whose codes ran out; refuses a new one
    /// when [`MAX_UNDER_WAY`] are left.
    async fn sweep_device_logins(&self, now: i64) -> Result<(), DeviceError> {
        let mut left = 0;
        for (id, text) in self.store.records(REQUESTS).await? {
            match serde_json::from_str::<Request>(&text) {
                Ok(r) if r.expires > unix(now) => left += 1,
                _ => {
                    self.store.delete_record(REQUESTS, &id).await?;
                }
            }
        }
        if left >= MAX_UNDER_WAY {
            return Err(DeviceError::TooMany);
        }
        Ok(())
    }

    /// The request under `id` with its stored text, if there is a
    /// readable one.
    async fn device_request(&self, id: &str) -> Result<Option<(Request, String)>, StoreError> {
        let Some(text) = self.store.get_record(REQUESTS, id).await? else {
            return Ok(None);
        };
        Ok(serde_json::from_str(&text).ok().map(|r| (r, text)))
    }

    /// What a user code typed on the page from `client` names, at `now`.
    /// A code that names nothing spends a failure of the client
    /// network's budget.
    pub async fn enter_user_code(
        &self,
        throttle: &Throttle,
        typed: &str,
        client: IpAddr,
        now: i64,
    ) -> Result<Entered, DeviceError> {
        let Ok(slot) = throttle.reserve_client(client).await else {
            return Ok(Entered::Throttled);
        };
        let found = match normalize_user_code(typed) {
            Some(code) => self
                .device_request(&self.request_id(&code))
                .await
                .map(|r| r.map(|(r, _)| (code, r))),
            None => Ok(None),
        };
        match found {
            Ok(Some((code, request))) if request.expires > unix(now) => {
                throttle.client_released(slot).await;
                if request.decision != Decision::Pending {
                    return Ok(Entered::Answered);
                }
                Ok(Entered::Asking(Asking {
                    user_code: shown(&code),
                    client_id: request.client_id,
                    service: request.service,
                    expires: request.expires,
                }))
            }
            Ok(_) => {
                throttle.client_failed(slot);
                Ok(Entered::Unknown)
            }
            Err(e) => {
                throttle.client_released(slot).await;
                Err(e.into())
            }
        }
    }

    /// The signed-in user's answer to the device login of `user_code`
    /// (found with [`Self::enter_user_code`] first): approved or denied,
    /// once. `Ok(false)` when it is no longer waiting.
    pub async fn answer_device_login(
        &self,
        session: &Session,
        user_code: &str,
        approve: bool,
        now: i64,
    ) -> Result<bool, DeviceError> {
        let Some(code) = normalize_user_code(user_code) else {
            return Ok(false);
        };
        let id = self.request_id(&code);
        let Some((request, text)) = self.device_request(&id).await? else {
            return Ok(false);
        };
        if request.decision != Decision::Pending || request.expires <= unix(now) {
            return Ok(false);
        }
        if approve {
            // the identity token will be one of their app passwords
            let mine = self
                .list(Some(&session.identity()))
                .await
                .map_err(DeviceError::Made)?;
            if mine.len() >= self.config.max_per_user {
                return Err(DeviceError::Made(AppPasswordError::TooMany(mine.len())));
            }
        }
        let decision = if approve {
            Decision::Approved {
                provider: session.provider.clone(),
                subject: session.subject.clone(),
                account: session.account.clone(),
            }
        } else {
            Decision::Denied
        };
        let answered = Request {
            decision,
            ..request
        };
        let swapped = self
            .store
            .swap_record(REQUESTS, &id, Some(&text), &json(&answered)?)
            .await?;
        if swapped {
            let event = if approve {
                "device_login_approved"
            } else {
                "device_login_denied"
            };
            audit(event, &id, &answered, &session.subject);
        }
        Ok(swapped)
    }

    /// A poll of the token endpoint with `device_code` by `client_id`, at
    /// `now`: once approved, the identity token (an app password of the
    /// approving user, made now, for this poll alone).
    pub async fn poll_device_login(
        &self,
        device_code: &str,
        client_id: &str,
        now_ms: u64,
    ) -> Result<(AppPassword, SecretString), DeviceError> {
        let (id, secret) = parse_device_code(device_code).ok_or(DeviceError::InvalidGrant)?;
        let (request, text) = self
            .device_request(id)
            .await?
            .ok_or(DeviceError::InvalidGrant)?;
        let digest = self.digest(id, secret);
        let same = aws_lc_rs::constant_time::verify_slices_are_equal(
            digest.as_bytes(),
            request.digest.as_bytes(),
        )
        .is_ok();
        if !same || client_name(client_id) != Some(request.client_id.as_str()) {
            return Err(DeviceError::InvalidGrant);
        }
        if request.expires <= now_ms / 1000 {
            self.store.delete_record(REQUESTS, id).await?;
            return Err(DeviceError::Expired);
        }
        match request.decision.clone() {
            Decision::Pending => self.still_pending(id, request, &text, now_ms).await,
            Decision::Denied => {
                self.store.delete_record(REQUESTS, id).await?;
                Err(DeviceError::Denied)
            }
            Decision::Approved {
                provider,
                subject,
                account,
            } => {
                // one poll takes it: whoever deletes the request
                if !self.store.delete_record(REQUESTS, id).await? {
                    return Err(DeviceError::InvalidGrant);
                }
                let mut owner = Identity::new(subject, provider);
                owner.account_id = account;
                self.identity_token(&owner, &request).await
            }
        }
    }

    /// A poll of a login nobody answered yet: `slow_down` when it came
    /// sooner than the interval (which grows by 5 seconds), else
    /// `authorization_pending`; the poll's time is kept either way.
    async fn still_pending(
        &self,
        id: &str,
        mut request: Request,
        text: &str,
        now_ms: u64,
    ) -> Result<(AppPassword, SecretString), DeviceError> {
        let early = now_ms < request.polled_ms + request.interval * 1000;
        if early {
            request.interval = (request.interval + 5).min(MAX_INTERVAL);
        }
        request.polled_ms = now_ms;
        // a poll racing the answer loses quietly: the next one sees it
        self.store
            .swap_record(REQUESTS, id, Some(text), &json(&request)?)
            .await?;
        Err(if early {
            DeviceError::SlowDown
        } else {
            DeviceError::Pending
        })
    }

    /// The approved login's identity token: an app password of `owner`
    /// marked with the client, for every repository of theirs.
    async fn identity_token(
        &self,
        owner: &Identity,
        request: &Request,
    ) -> Result<(AppPassword, SecretString), DeviceError> {
        let name: String = format!("device login: {}", request.client_id)
            .chars()
            .take(super::MAX_NAME_CHARS)
            .collect();
        let made = self
            .create_for(
                owner,
                &name,
                self.config.default_lifetime,
                &Limit::Unlimited,
                Some(&request.client_id),
            )
            .await;
        made.map_err(DeviceError::Made)
    }

    /// The owner of a device login's identity token presented with the
    /// refresh grant, when `token` is one (an app password made by a
    /// device login); the token itself is checked as any app password.
    pub async fn device_token_owner(&self, token: &str) -> Result<Option<String>, StoreError> {
        let Some((id, _)) = super::records::parse(token) else {
            return Ok(None);
        };
        let found = self.find(id).await?;
        Ok(found.filter(|p| p.device.is_some()).map(|p| p.subject))
    }

    /// Revokes the device login whose identity token is `token` (RFC 7009,
    /// `regauth logout`): whether it was one. Anything else is left alone.
    pub async fn revoke_device_token(&self, token: &str) -> Result<bool, StoreError> {
        let Some((id, secret)) = super::records::parse(token) else {
            return Ok(false);
        };
        let Some(password) = self.find(id).await? else {
            return Ok(false);
        };
        let digest = self.digest(id, secret);
        let same = aws_lc_rs::constant_time::verify_slices_are_equal(
            digest.as_bytes(),
            password.digest.as_bytes(),
        )
        .is_ok();
        if !same || password.device.is_none() {
            return Ok(false);
        }
        super::records::end(self.store.as_ref(), &self.ledger, &password).await?;
        password.audit("app_password_revoked", "its device (logout)");
        Ok(true)
    }
}

fn json(request: &Request) -> Result<String, StoreError> {
    serde_json::to_string(request).map_err(|e| StoreError(e.to_string()))
}

/// One audit line about a device login (never a code): `by` is the user
/// who answered.
fn audit(event: &'static str, id: &str, request: &Request, by: &str) {
    tracing::info!(
        target: "regauth::audit",
        event,
        id = %&id[..8],
        client_id = %Safe(&request.client_id),
        service = %Safe(&request.service),
        expires = request.expires,
        by = %Safe(by),
        "{}",
        event.replace('_', " ")
    );
}

#[cfg(test)]
mod tests;
