//! Active Directory, as Samba's AD DC serves it: the harness itself
//! (simple binds over LDAPS, AD's refusals, nested groups), ahead of the
//! LDAP provider's tests against it.

use std::time::Instant;

use crate::support::samba::{self, SambaDc};

#[test]
fn samba_dc_serves_ldaps_binds() {
    let started = Instant::now();
    let dc = SambaDc::start();
    eprintln!("SambaDc::start took {:?}", started.elapsed());
    let bob = samba::user("bob");
    let ldaps = dc.ldaps_url();

    dc.bind(&ldaps, bob.upn, bob.password)
        .expect("bob binds with his UPN over LDAPS");

    assert_eq!(dc.bad_pwd_count("bob"), 0);
    let refused = dc
        .bind(&ldaps, bob.upn, "not-bobs-password")
        .expect_err("a wrong password is refused");
    assert!(
        refused.contains("Invalid credentials (49)") && refused.contains("data 52e"),
        "{refused}"
    );
    assert_eq!(dc.bad_pwd_count("bob"), 1, "the wrong password counts");

    let plain = dc
        .bind(&dc.ldap_url(), bob.upn, bob.password)
        .expect_err("a simple bind without TLS is refused");
    assert!(
        plain.contains("Strong(er) authentication required (8)")
            && plain.contains("Transport encryption required"),
        "{plain}"
    );

    let groups = dc
        .search_as(
            &ldaps,
            bob.upn,
            bob.password,
            dc.base(),
            &format!("(member:1.2.840.113556.1.4.1941:={})", bob.dn()),
            &["sAMAccountName"],
        )
        .expect("bob searches his groups");
    let mut names: Vec<&str> = groups
        .entries
        .iter()
        .filter_map(|e| e.get("sAMAccountName"))
        .collect();
    names.sort_unstable();
    assert_eq!(
        names,
        ["all-staff", "developers", "engineering"],
        "developers directly, engineering through it: {groups:?}"
    );
}
