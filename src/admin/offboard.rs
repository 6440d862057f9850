//! What the command line does to the shared state, as library functions:
//! offboarding someone (or everyone) and adopting the app passwords an
//! earlier version stored without a MAC. `main.rs` only parses and prints.

use std::sync::Arc;
use std::time::Duration;

use crate::app_passwords::{revoke_every, AppPassword};
use crate::refresh::Ledger;
use crate::state::{Store, StoreError};

/// What [`offboard`] ended.
pub struct Offboarded {
    /// The app passwords revoked (each already has its audit line).
    pub app_passwords: Vec<AppPassword>,
}

/// Ends the refresh tokens of `subject` (any case; `None`: everyone's)
/// issued until now, and, with `app_passwords`, their app passwords and
/// browser sign-ins: what someone leaving, or a leaked key, calls for.
/// `refresh_lifetime` is the longest a refresh token lives.
pub async fn offboard(
    store: Arc<dyn Store>,
    refresh_lifetime: Duration,
    subject: Option<&str>,
    app_passwords: bool,
) -> Result<Offboarded, StoreError> {
    let ledger = Ledger::new(store.clone(), refresh_lifetime);
    ledger.revoke(subject).await?;
    let app_passwords = if app_passwords {
        revoke_every(store.as_ref(), &ledger, subject).await?
    } else {
        Vec::new()
    };
    Ok(Offboarded { app_passwords })
}

/// An unsigned app-password record an earlier version wrote, as
/// [`adopt_app_passwords`] judges it.
pub struct Unsigned {
    /// The app password as its record says.
    pub password: Option<AppPassword>,
    /// The record's id.
    pub id: String,
    /// Why it is not signed, if it is not (unreadable, expired, a life
    /// longer than `max_lifetime`).
    pub refused: Option<&'static str>,
}

/// The marker that adoption was done (records an earlier version wrote
/// cannot appear again, except by someone writing the backend).
const ADOPTED: (&str, &str) = ("regauth", "adopted");

/// Why [`adopt_app_passwords`] cannot run.
#[derive(Debug, thiserror::Error)]
pub enum AdoptError {
    /// It ran before.
    #[error("the app passwords were adopted once already (at {0}): records without a MAC written since are not an earlier version's")]
    AlreadyDone(String),
    /// The backend could not answer.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Signs the app passwords an earlier version stored without a MAC, once:
/// each is listed (with `sign = false`, only listed), those that are
/// unreadable, expired or longer-lived than `max_lifetime` are refused,
/// sign-ins are not adopted (their users sign in again), and a marker
/// refuses a second run. Run it on an upgrade, while nobody but regauth
/// can write the backend: it vouches for what the records say.
pub async fn adopt_app_passwords(
    store: &crate::state::Authenticated,
    max_lifetime: Duration,
    sign: bool,
) -> Result<Vec<Unsigned>, AdoptError> {
    use crate::state::Records as _;
    let (collection, id) = ADOPTED;
    if let Some(at) = store.get_record(collection, id).await? {
        return Err(AdoptError::AlreadyDone(at));
    }
    let now = regauth_providers::clock::unix_seconds();
    let mut out = Vec::new();
    for (id, value) in store.unsigned(crate::app_passwords::PASSWORDS).await? {
        let password: Option<AppPassword> = serde_json::from_str(&value).ok();
        let refused = match &password {
            None => Some("unreadable"),
            Some(p) if p.expires <= now => Some("expired"),
            Some(p) if p.expires.saturating_sub(p.created) > max_lifetime.as_secs() => {
                Some("a life longer than max_lifetime")
            }
            Some(_) => None,
        };
        if sign && refused.is_none() {
            store
                .sign(crate::app_passwords::PASSWORDS, &id, &value)
                .await?;
        }
        out.push(Unsigned {
            password,
            id,
            refused,
        });
    }
    if sign {
        store.put_record(collection, id, &now.to_string()).await?;
    }
    Ok(out)
}
