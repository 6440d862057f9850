//! What the command line does to the shared state, as library functions:
//! offboarding someone (or everyone) and adopting an earlier version's
//! records. `main.rs` only parses and prints.

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
    Ledger::new(store.clone(), refresh_lifetime)
        .revoke(subject)
        .await?;
    let app_passwords = if app_passwords {
        revoke_every(store.as_ref(), subject).await?
    } else {
        Vec::new()
    };
    Ok(Offboarded { app_passwords })
}
