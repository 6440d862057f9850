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
/// Device logins started per [`CODE_LIFETIME`], on every replica
/// together.
const MAX_STARTS: u32 = 10_000;
/// Device logins one client network may start per [`CODE_LIFETIME`].
const STARTS_PER_CLIENT: u32 = 5;
/// Wrong user codes one account may enter per hour, from any network.
const WRONG_CODES_PER_ACCOUNT: u32 = 20;
/// How long a request is kept past its codes' end, so that a late poll
/// hears `expired_token` rather than `invalid_grant`.
const EXPIRED_KEPT: u64 = 120;
/// Expired requests are swept at most this often by one process.
const SWEEP_EVERY_MS: u64 = 60_000;
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
    /// The address it asked from, shown to the user who answers.
    #[serde(default)]
    from: String,
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
    /// Approved, and its identity token being made by one poll.
    Issuing,
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
    /// The address it asked from.
    pub from: String,
    /// When the codes run out.
    pub expires: u64,
}

/// What a user code finds ([`AppPasswords::find_by_code`]).
enum Lookup {
    /// A budget is spent: nothing was looked up.
    Throttled,
    /// No request it takes.
    Missing,
    /// The request, with its code and its stored text.
    Found(Box<Found>),
}

/// A request a user code found.
struct Found {
    id: String,
    code: String,
    request: Request,
    text: String,
}

/// A signed-in user's answer to a device login.
pub struct Answer<'a> {
    /// Who answers.
    pub session: &'a Session,
    /// The user code, as typed.
    pub user_code: &'a str,
    /// Approved (or denied).
    pub approve: bool,
}

/// What became of an answer.
#[derive(Debug, PartialEq, Eq)]
pub enum Answered {
    /// Recorded.
    Done,
    /// No device login with this code is waiting (answered already,
    /// expired, or none).
    NotWaiting,
    /// Too many wrong codes from this network.
    Throttled,
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

/// A `client_id` fit to keep and show: printable ASCII (no character
/// that could make it look like another name), bounded; else `None`.
fn client_name(client_id: &str) -> Option<&str> {
    let name = client_id.trim();
    (!name.is_empty()
        && name.len() <= MAX_CLIENT_ID_CHARS
        && name.bytes().all(|b| b.is_ascii_graphic() || b == b' '))
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
        let network = format!("{:032x}", crate::net::network_of(client));
        let per_client = lock_key("device-start", &network);
        if !self
            .store
            .take(&per_client, STARTS_PER_CLIENT, CODE_LIFETIME)
            .await?
        {
            return Err(DeviceError::TooMany);
        }
        if !self
            .store
            .take("device-starts", MAX_STARTS, CODE_LIFETIME)
            .await?
        {
            return Err(DeviceError::TooMany);
        }
        self.sweep_device_logins(now).await;
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
                from: client.to_string(),
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

    /// Deletes the device logins whose codes ran out a while ago, at most
    /// every [`SWEEP_EVERY_MS`] in this process (a failure is only
    /// logged: the next sweep tries again).
    async fn sweep_device_logins(&self, now: i64) {
        let now_ms = u64::try_from(now).unwrap_or(0) * 1000;
        let last = self.device_swept.load(std::sync::atomic::Ordering::Relaxed);
        if now_ms < last + SWEEP_EVERY_MS
            || self
                .device_swept
                .compare_exchange(
                    last,
                    now_ms,
                    std::sync::atomic::Ordering::Relaxed,
                    std::sync::atomic::Ordering::Relaxed,
                )
                .is_err()
        {
            return;
        }
        let swept = async {
            for (id, text) in self.store.records(REQUESTS).await? {
                let over = serde_json::from_str::<Request>(&text)
                    .map_or(true, |r| r.expires + EXPIRED_KEPT <= unix(now));
                if over {
                    self.store.delete_record(REQUESTS, &id).await?;
                }
            }
            Ok::<(), StoreError>(())
        };
        if let Err(e) = swept.await {
            tracing::warn!(error = %e, "could not sweep expired device logins");
        }
    }

    /// The counter of an account's wrong user codes.
    fn wrong_codes_key(session: &Session) -> String {
        lock_key(
            "device-wrong",
            &super::owner_key(&session.provider, &session.subject),
        )
    }

    /// Whether the account has entered [`WRONG_CODES_PER_ACCOUNT`] wrong
    /// codes this hour (from any network).
    async fn wrong_codes_held(&self, session: &Session) -> Result<bool, StoreError> {
        let wrong = self.store.count(&Self::wrong_codes_key(session)).await?;
        Ok(wrong >= WRONG_CODES_PER_ACCOUNT)
    }

    /// Counts a wrong code of the account's.
    async fn wrong_code(&self, session: &Session) -> Result<(), StoreError> {
        let key = Self::wrong_codes_key(session);
        self.store.add(&key, Duration::from_secs(3600)).await
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
        session: &Session,
        typed: &str,
        client: IpAddr,
        now: i64,
    ) -> Result<Entered, DeviceError> {
        let found = self
            .find_by_code((throttle, client), session, typed, now, |_| true)
            .await?;
        let Found { code, request, .. } = match found {
            Lookup::Found(found) => *found,
            Lookup::Throttled => return Ok(Entered::Throttled),
            Lookup::Missing => return Ok(Entered::Unknown),
        };
        if request.decision != Decision::Pending {
            return Ok(Entered::Answered);
        }
        Ok(Entered::Asking(Asking {
            user_code: shown(&code),
            client_id: request.client_id,
            service: request.service,
            from: request.from,
            expires: request.expires,
        }))
    }

    /// The unexpired request a user code typed by `session` from `client`
    /// names, if `wanted` takes it. A code that finds none spends a
    /// failure of the client network's budget and of the account's; a
    /// spent budget looks nothing up.
    async fn find_by_code(
        &self,
        (throttle, client): (&Throttle, IpAddr),
        session: &Session,
        typed: &str,
        now: i64,
        wanted: impl Fn(&Request) -> bool,
    ) -> Result<Lookup, DeviceError> {
        if self.wrong_codes_held(session).await? {
            return Ok(Lookup::Throttled);
        }
        let Ok(slot) = throttle.reserve_client(client).await else {
            return Ok(Lookup::Throttled);
        };
        let found = match normalize_user_code(typed) {
            Some(code) => {
                let id = self.request_id(&code);
                self.device_request(&id).await.map(|found| {
                    found
                        .filter(|(r, _)| r.expires > unix(now) && wanted(r))
                        .map(|(request, text)| {
                            Lookup::Found(Box::new(Found {
                                id,
                                code,
                                request,
                                text,
                            }))
                        })
                })
            }
            None => Ok(None),
        };
        match found {
            Ok(Some(found)) => {
                throttle.client_released(slot).await;
                Ok(found)
            }
            Ok(None) => {
                throttle.client_failed(slot);
                self.wrong_code(session).await?;
                Ok(Lookup::Missing)
            }
            Err(e) => {
                throttle.client_released(slot).await;
                Err(e.into())
            }
        }
    }

    /// A signed-in user's answer to the device login of a user code
    /// (found with [`Self::enter_user_code`] first) from `client`:
    /// approved or denied, once.
    pub async fn answer_device_login(
        &self,
        answer: Answer<'_>,
        throttle: &Throttle,
        client: IpAddr,
        now: i64,
    ) -> Result<Answered, DeviceError> {
        // answering is finding too: a code that names nothing waiting
        // spends the budgets, as on the code form
        let waiting = |r: &Request| r.decision == Decision::Pending;
        let found = self
            .find_by_code(
                (throttle, client),
                answer.session,
                answer.user_code,
                now,
                waiting,
            )
            .await?;
        let Found {
            id, request, text, ..
        } = match found {
            Lookup::Found(found) => *found,
            Lookup::Throttled => return Ok(Answered::Throttled),
            Lookup::Missing => return Ok(Answered::NotWaiting),
        };
        let (session, approve) = (answer.session, answer.approve);
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
        self.record_answer(&id, (request, text), decision, session, now)
            .await
    }

    /// Records `decision` on the waiting request `id`; a poll that
    /// rewrote it in between (its time) is read again, a few times.
    async fn record_answer(
        &self,
        id: &str,
        (mut request, mut text): (Request, String),
        decision: Decision,
        session: &Session,
        now: i64,
    ) -> Result<Answered, DeviceError> {
        for _ in 0..3 {
            let answered = Request {
                decision: decision.clone(),
                ..request
            };
            let swapped = self
                .store
                .swap_record(REQUESTS, id, Some(&text), &json(&answered)?)
                .await?;
            if swapped {
                let event = if decision == Decision::Denied {
                    "device_login_denied"
                } else {
                    "device_login_approved"
                };
                audit(event, id, &answered, &session.subject);
                return Ok(Answered::Done);
            }
            match self.device_request(id).await? {
                Some((r, t)) if r.decision == Decision::Pending && r.expires > unix(now) => {
                    (request, text) = (r, t);
                }
                _ => return Ok(Answered::NotWaiting),
            }
        }
        Ok(Answered::NotWaiting)
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
        let same = self.secret_holds(id, secret, &request.digest);
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
                let mut owner = Identity::new(subject, provider);
                owner.account_id = account;
                self.issue_once(id, request, &text, &owner).await
            }
            // another poll is making its identity token
            Decision::Issuing => Err(DeviceError::Pending),
        }
    }

    /// The identity token of an approved request, made by one poll: the
    /// one that marks it as being issued. Made, the request is deleted;
    /// not made, the approval is put back for the next poll.
    async fn issue_once(
        &self,
        id: &str,
        request: Request,
        text: &str,
        owner: &Identity,
    ) -> Result<(AppPassword, SecretString), DeviceError> {
        let issuing = json(&Request {
            decision: Decision::Issuing,
            ..request.clone()
        })?;
        if !self
            .store
            .swap_record(REQUESTS, id, Some(text), &issuing)
            .await?
        {
            return Err(DeviceError::Pending);
        }
        match self.identity_token(owner, &request).await {
            Ok(made) => {
                if let Err(e) = self.store.delete_record(REQUESTS, id).await {
                    tracing::warn!(error = %e, "could not delete an issued device login; it expires");
                }
                Ok(made)
            }
            Err(e) => {
                let back = self
                    .store
                    .swap_record(REQUESTS, id, Some(&issuing), text)
                    .await;
                if let Err(e) = back {
                    tracing::warn!(error = %e, "could not put a device login's approval back");
                }
                Err(e)
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
        // a second's slack: replicas' clocks, and a client's timer
        let early = now_ms + 1000 < request.polled_ms + request.interval * 1000;
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
                super::records::Made {
                    device: Some(&request.client_id),
                    networks: &[],
                    team: None,
                },
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
        let same = self.secret_holds(id, secret, &password.digest);
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
