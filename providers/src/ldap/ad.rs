//! What Active Directory does differently from an LDAP directory: the
//! forms a login name takes (`bob`, `CORP\bob`, `bob@corp.example`, a UPN
//! under another registered suffix), the reasons hidden in a refused
//! bind's diagnostic text (`data 775`: locked), and account states read
//! from attributes, the lockout one from the DC's own computation (so a
//! lockout that has expired is over).

use ldap3::{ldap_escape, SearchEntry};

use super::attribute;
use crate::Rejection;

/// A login name, in the form it was typed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Login {
    /// `bob`, or `CORP\bob` (the NetBIOS domain stripped): the
    /// sAMAccountName, lower-cased.
    Account(String),
    /// `bob@corp.example` under one of `upn_suffixes`: the UPN as typed,
    /// lower-cased (the implicit UPN `sAMAccountName@domain` too).
    Principal { name: String, suffix: String },
}

impl Login {
    /// The form of `typed`, or `None` when it names another domain (a
    /// NetBIOS prefix or a UPN suffix this directory does not have).
    pub(crate) fn parse(typed: &str, netbios: Option<&str>, suffixes: &[String]) -> Option<Self> {
        let typed = typed.trim();
        if typed.is_empty() {
            return None;
        }
        if let Some((domain, name)) = typed.split_once('\\') {
            let ours = netbios.is_some_and(|n| n.eq_ignore_ascii_case(domain));
            return (ours && !name.is_empty() && !name.contains(['\\', '@']))
                .then(|| Login::Account(name.to_lowercase()));
        }
        if let Some((name, suffix)) = typed.rsplit_once('@') {
            let ours = suffixes.iter().any(|s| s.eq_ignore_ascii_case(suffix));
            return (ours && !name.is_empty()).then(|| Login::Principal {
                name: name.to_lowercase(),
                suffix: suffix.to_lowercase(),
            });
        }
        Some(Login::Account(typed.to_lowercase()))
    }

    /// The account part of the filter that finds this login's entry. A UPN
    /// under the domain's own name may be the implicit one
    /// (`sAMAccountName@domain`), which AD accepts without a
    /// userPrincipalName attribute.
    pub(crate) fn filter(&self, implicit_suffix: Option<&str>) -> String {
        match self {
            Login::Account(sam) => format!("(sAMAccountName={})", ldap_escape(sam)),
            Login::Principal { name, suffix } => {
                let upn = format!(
                    "(userPrincipalName={}@{})",
                    ldap_escape(name),
                    ldap_escape(suffix)
                );
                if implicit_suffix.is_some_and(|s| s.eq_ignore_ascii_case(suffix)) {
                    format!("(|{upn}(sAMAccountName={}))", ldap_escape(name))
                } else {
                    upn
                }
            }
        }
    }

    /// The account these credentials try without asking the directory,
    /// when the form says it (the sAMAccountName forms).
    pub(crate) fn account(&self) -> Option<&str> {
        match self {
            Login::Account(sam) => Some(sam),
            Login::Principal { .. } => None,
        }
    }
}

/// The filter that finds a user entry, with the login's own part.
pub(crate) fn user_filter(login: &Login, implicit_suffix: Option<&str>) -> String {
    format!(
        "(&(objectCategory=person)(objectClass=user){})",
        login.filter(implicit_suffix)
    )
}

/// Security groups only (`groupType` has the security bit): what Windows
/// puts in a user's token; distribution lists grant nothing.
pub(crate) const SECURITY_GROUPS: &str = "(groupType:1.2.840.113556.1.4.803:=2147483648)";

/// Every group a DN is in, nested included, in one search
/// (LDAP_MATCHING_RULE_IN_CHAIN).
pub(crate) fn groups_filter(dn: &str) -> String {
    format!(
        "(&(objectClass=group){SECURITY_GROUPS}(member:1.2.840.113556.1.4.1941:={}))",
        ldap_escape(dn)
    )
}

/// The reason AD gives for a refused simple bind: its diagnostic text
/// carries `data XXX` (`80090308: LdapErr: ..., data 775, v4563`).
pub(crate) fn bind_refusal(text: &str) -> Rejection {
    let code = text
        .split("data ")
        .nth(1)
        .map(|rest| rest.split([',', ' ']).next().unwrap_or_default())
        .unwrap_or_default()
        .to_ascii_lowercase();
    match code.as_str() {
        "52e" => Rejection::WrongSecret,
        "533" => Rejection::Disabled,
        "775" => Rejection::Locked,
        "701" => Rejection::Expired,
        "532" => Rejection::Other("the password has expired".into()),
        "773" => Rejection::Other("the password must be changed before the first login".into()),
        "530" => Rejection::Other("logins are not permitted at this time".into()),
        "531" => Rejection::Other("logins are not permitted from this workstation".into()),
        "525" => Rejection::Other("no such user at the DC".into()),
        _ => Rejection::WrongSecret,
    }
}

/// `userAccountControl`'s ACCOUNTDISABLE bit.
const UF_ACCOUNTDISABLE: u64 = 0x2;
/// `msDS-User-Account-Control-Computed`'s lockout bit: set only while the
/// lockout lasts (AD computes it from lockoutTime and the domain's
/// lockout duration).
const UF_LOCKOUT: u64 = 0x10;
/// `msDS-User-Account-Control-Computed`'s password-expired bit.
const UF_PASSWORD_EXPIRED: u64 = 0x80_0000;
/// Seconds between 1601-01-01 (Windows FILETIME) and 1970-01-01.
const FILETIME_EPOCH_OFFSET: u64 = 11_644_473_600;

/// The attributes [`state_of`] reads (the computed one only comes back
/// when asked for by name).
pub(crate) const STATE_ATTRIBUTES: &[&str] = &[
    "userAccountControl",
    "msDS-User-Account-Control-Computed",
    "accountExpires",
    "pwdLastSet",
];

/// Why an AD account cannot be used now, from its attributes: disabled,
/// locked (as the DC computes it now), expired, or a password that must
/// be changed or has expired.
pub(crate) fn state_of(entry: &SearchEntry) -> Option<Rejection> {
    let number = |name: &str| attribute(entry, name).first()?.parse::<u64>().ok();
    if number("userAccountControl").is_some_and(|uac| uac & UF_ACCOUNTDISABLE != 0) {
        return Some(Rejection::Disabled);
    }
    let computed = number("msDS-User-Account-Control-Computed").unwrap_or(0);
    if computed & UF_LOCKOUT != 0 {
        return Some(Rejection::Locked);
    }
    // accountExpires: 100 ns since 1601; 0 and i64::MAX mean never.
    if let Some(expires) = number("accountExpires").filter(|v| *v != 0 && *v < i64::MAX as u64) {
        let unix = (expires / 10_000_000).saturating_sub(FILETIME_EPOCH_OFFSET);
        if unix <= crate::clock::unix_seconds() {
            return Some(Rejection::Expired);
        }
    }
    if number("pwdLastSet") == Some(0) {
        return Some(Rejection::Other(
            "the password must be changed before the first login".into(),
        ));
    }
    if computed & UF_PASSWORD_EXPIRED != 0 {
        return Some(Rejection::Other("the password has expired".into()));
    }
    None
}

/// Whether a continuation reference points into a partition that is not
/// about users (the configuration, schema and DNS partitions a subtree
/// search from the domain root always returns): those are ignored.
pub(crate) fn reference_is_elsewhere(url: &str) -> bool {
    let dn = url
        .split_once("://")
        .and_then(|(_, rest)| rest.split_once('/'))
        .map(|(_, dn)| dn.split('?').next().unwrap_or_default())
        .unwrap_or_default()
        .to_ascii_lowercase();
    !(dn.starts_with("cn=configuration,")
        || dn.starts_with("cn=schema,cn=configuration,")
        || dn.starts_with("dc=domaindnszones,")
        || dn.starts_with("dc=forestdnszones,"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_form_of_a_login_name() {
        let suffixes = ["corp.test".to_owned(), "example.com".to_owned()];
        let parse = |t: &str| Login::parse(t, Some("CORP"), &suffixes);
        assert_eq!(parse("Bob"), Some(Login::Account("bob".into())));
        assert_eq!(parse(" CORP\\Bob "), Some(Login::Account("bob".into())));
        assert_eq!(parse("corp\\bob"), Some(Login::Account("bob".into())));
        assert_eq!(
            parse("Robert.Smith@Corp.Test"),
            Some(Login::Principal {
                name: "robert.smith".into(),
                suffix: "corp.test".into()
            })
        );
        assert!(parse("alice@example.com").is_some());
        for other in [
            "OTHER\\bob",
            "bob@other.test",
            "\\bob",
            "CORP\\",
            "@corp.test",
            "",
        ] {
            assert_eq!(parse(other), None, "{other:?}");
        }
        let implicit = parse("rsmith@corp.test").unwrap().filter(Some("corp.test"));
        assert_eq!(
            implicit,
            "(|(userPrincipalName=rsmith@corp.test)(sAMAccountName=rsmith))"
        );
        let other_suffix = parse("alice@example.com")
            .unwrap()
            .filter(Some("corp.test"));
        assert_eq!(other_suffix, "(userPrincipalName=alice@example.com)");
        assert_eq!(
            parse("a)(uid=*").unwrap().filter(None),
            "(sAMAccountName=a\\29\\28uid=\\2a)"
        );
    }

    #[test]
    fn bind_refusals_say_why() {
        let text = |code: &str| {
            format!("80090308: LdapErr: DSID-0C0903A9, comment: AcceptSecurityContext error, data {code}, v1db1")
        };
        assert_eq!(bind_refusal(&text("52e")), Rejection::WrongSecret);
        assert_eq!(bind_refusal(&text("533")), Rejection::Disabled);
        assert_eq!(bind_refusal(&text("775")), Rejection::Locked);
        assert_eq!(bind_refusal(&text("701")), Rejection::Expired);
        assert!(matches!(bind_refusal(&text("773")), Rejection::Other(_)));
        assert_eq!(bind_refusal("garbage"), Rejection::WrongSecret);
    }

    #[test]
    fn configuration_references_are_not_about_users() {
        assert!(!reference_is_elsewhere(
            "ldaps://corp.test/CN=Configuration,DC=corp,DC=test"
        ));
        assert!(!reference_is_elsewhere(
            "ldap://corp.test/DC=DomainDnsZones,DC=corp,DC=test"
        ));
        assert!(reference_is_elsewhere(
            "ldap://child.corp.test/DC=child,DC=corp,DC=test"
        ));
    }
}
