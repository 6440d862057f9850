//! What a directory entry says about its account: whether it may be used
//! (OpenLDAP ppolicy's lock, Active Directory's account state), its own
//! id, and the stamp that changes with its password.

use ldap3::SearchEntry;

use super::ad;
use crate::Rejection;

/// Operational attributes that say when a password (or, failing that, the
/// entry) last changed: OpenLDAP ppolicy, Active Directory, any server.
pub(super) const CHANGED: &[&str] = &["pwdChangedTime", "pwdLastSet", "modifyTimestamp"];
/// Attributes that stay with one entry for its life (a new account under
/// a reused name gets another).
pub(super) const ENTRY_ID: &[&str] = &["entryUUID", "objectGUID"];
/// Attributes that say an OpenLDAP account is locked or an AD one is
/// disabled, locked or expired.
pub(super) const LOCK_ATTRIBUTES: &[&str] = &["pwdAccountLockedTime", "lockoutTime"];
/// OpenLDAP ppolicy's value for "locked by an administrator".
const LOCKED_FOR_GOOD: &str = "000001010000Z";

/// When the account checks run: after a successful bind the directory has
/// applied its own lockout (a time-based lock that has expired no longer
/// counts); without a bind (a refresh) every lock counts.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum After {
    /// After a successful bind.
    Bind,
    /// Without a bind (a refresh).
    Lookup,
}

/// Why the account of an entry cannot be used, from its attributes.
pub(super) fn lock_of(
    entry: &SearchEntry,
    after: After,
    active_directory: bool,
) -> Option<Rejection> {
    // OpenLDAP ppolicy: present while the account is locked.
    let locked = attribute(entry, "pwdAccountLockedTime");
    let locked_for_good = locked.iter().any(|v| v == LOCKED_FOR_GOOD);
    if locked_for_good || (after == After::Lookup && !locked.is_empty()) {
        return Some(Rejection::Locked);
    }
    // Active Directory: disabled, locked (as the DC computes it now, so an
    // expired lockout is over), expired, a password to change.
    if active_directory || !attribute(entry, "userAccountControl").is_empty() {
        return ad::state_of(entry);
    }
    None
}

/// The entry's identity and change marker, as the directory wrote them:
/// a refresh token minted under another stamp (the password changed, or
/// the name now belongs to another entry) is refused.
pub(super) fn credential_stamp(entry: &SearchEntry) -> Option<String> {
    let id = entry_id(entry);
    let changed = CHANGED.iter().find_map(|name| {
        attribute(entry, name)
            .first()
            .map(|value| format!("{name}={value}"))
    });
    match (id, changed) {
        (None, None) => None,
        (id, changed) => Some(format!(
            "{}|{}",
            id.unwrap_or_default(),
            changed.unwrap_or_default()
        )),
    }
}

/// The entry's own id (`entryUUID=…`, `objectGUID=<hex>`), which a new
/// entry reusing the name does not get.
pub(super) fn entry_id(entry: &SearchEntry) -> Option<String> {
    ENTRY_ID.iter().find_map(|name| {
        attribute(entry, name)
            .first()
            .cloned()
            .or_else(|| {
                entry
                    .bin_attrs
                    .iter()
                    .find(|(k, _)| k.eq_ignore_ascii_case(name))
                    .and_then(|(_, v)| v.first())
                    .map(hex::encode)
            })
            .map(|value| format!("{name}={value}"))
    })
}

/// The values of an attribute, matched case-insensitively.
pub(super) fn attribute<'e>(entry: &'e SearchEntry, name: &str) -> &'e [String] {
    entry
        .attrs
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_slice())
        .unwrap_or(&[])
}
