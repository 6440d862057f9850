//! A throwaway Samba Active Directory domain controller (Debian's
//! `samba-ad-dc`): realm `CORP.TEST`, NetBIOS domain `CORP`, serving LDAP,
//! LDAPS and the Global Catalog (3268/3269) on its own loopback address
//! (`127.0.0.N`, N from 20 up: AD's ports are fixed, so each DC needs its
//! own address). TLS uses a certificate from a CA made at test time, for
//! `IP:127.0.0.N`. The directory holds the users and groups of [`USERS`]
//! and [`GROUPS`], a user in each account state AD refuses a bind for, and
//! a lockout threshold of [`LOCKOUT_THRESHOLD`] bad passwords.
//!
//! `samba-tool domain provision` takes 2 to 4 s of Python, so the
//! provisioned and populated database is made once and kept under
//! `target/tmp/samba-ad-<hash of the fixture and Samba's version>`; each
//! [`SambaDc`] copies it into its own temporary directory and starts
//! `samba` on it (under 1 s). Two DCs started this way hold identical
//! databases (same domain SID, same objectGUIDs), like two DCs of one
//! domain that have just replicated. [`SambaDc::join`] makes a real replica
//! with `samba-tool domain join`.
//!
//! Everything a DC writes stays in its directory: every path of its
//! `smb.conf` points there, and `samba` gets `-l` (without it, it opens
//! /var/log/samba/log.samba before reading smb.conf). Samba must run as
//! root (ports 389 and 636).

use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;

use super::{require, Process};

pub const REALM: &str = "CORP.TEST";
pub const DNS_DOMAIN: &str = "corp.test";
pub const NETBIOS_DOMAIN: &str = "CORP";
pub const BASE: &str = "DC=corp,DC=test";
pub const PEOPLE: &str = "OU=People,DC=corp,DC=test";
pub const SERVICE_ACCOUNTS: &str = "OU=Service Accounts,DC=corp,DC=test";
pub const GROUPS_OU: &str = "OU=Groups,DC=corp,DC=test";
/// The built-in domain administrator (binds as `Administrator@corp.test`
/// or `CORP\Administrator`; it has no userPrincipalName attribute).
pub const ADMIN: &str = "Administrator@corp.test";
pub const ADMIN_PW: &str = "Admin-Passw0rd!";
pub const SERVICE_DN: &str = "CN=regauth-svc,OU=Service Accounts,DC=corp,DC=test";
pub const SERVICE_UPN: &str = "regauth-svc@corp.test";
pub const SERVICE_PW: &str = "Svc-Passw0rd!";
/// Wrong passwords before an account is locked (the domain's
/// `lockoutThreshold`; lockoutDuration and the observation window keep
/// AD's 30 minutes).
pub const LOCKOUT_THRESHOLD: u32 = 3;
/// An alternative UPN suffix, registered in `uPNSuffixes` on the
/// Partitions container (alice@example.com).
pub const UPN_SUFFIX: &str = "example.com";

/// The name of the provisioned DC (the template's); replicas made by
/// [`SambaDc::join`] are named `DC<N>` after their address.
const FIRST_DC: &str = "DC1";
/// Simple binds only need the LDAP server (it serves 389, 636, 3268 and
/// 3269). A replication partner also needs DCE/RPC (DRSUAPI for the join
/// and `drs replicate`) and CLDAP (the join's netlogon ping).
const LDAP_ONLY: &str = "ldap";
const REPLICATION: &str = "ldap, rpc, cldap";

/// An account state in which AD refuses a correct password.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    Active,
    /// userAccountControl has ACCOUNTDISABLE: `data 533`.
    Disabled,
    /// pwdLastSet = 0: `data 773`.
    MustChangePassword,
    /// accountExpires in 2012: `data 701`.
    AccountExpired,
}

pub struct User {
    pub sam: &'static str,
    pub upn: &'static str,
    /// The RDN value (display-name style, as AD tools make them).
    pub cn: &'static str,
    pub password: &'static str,
    pub state: State,
}

impl User {
    /// The DN, with the RDN value escaped (`CN=Smith\, Robert,...`).
    pub fn dn(&self) -> String {
        format!("CN={},{PEOPLE}", self.cn.replace(',', "\\,"))
    }
}

pub struct Group {
    pub sam: &'static str,
    pub cn: &'static str,
    /// Members by sAMAccountName (users) or group CN.
    pub members: &'static [&'static str],
    /// `false` for a distribution group (groupType 8: universal
    /// distribution); it has `member` links but is not in tokenGroups.
    pub security: bool,
}

impl Group {
    pub fn dn(&self) -> String {
        format!("CN={},{GROUPS_OU}", self.cn)
    }
}

/// The people in `OU=People` (the service account, [`SERVICE_DN`], is in
/// `OU=Service Accounts`). Every user's primary group is the built-in
/// `Domain Users` (primaryGroupID 513, not a `member` link).
pub const USERS: &[User] = &[
    User {
        sam: "bob",
        upn: "bob@corp.test",
        cn: "Bob Jones",
        password: "Bob-Passw0rd!",
        state: State::Active,
    },
    User {
        sam: "erin",
        upn: "erin@corp.test",
        cn: "Erin Example",
        password: "Erin-Passw0rd!",
        state: State::Active,
    },
    // sAMAccountName differs from the UPN's prefix.
    User {
        sam: "rsmith",
        upn: "robert.smith@corp.test",
        cn: "Smith, Robert",
        password: "Robert-Passw0rd!",
        state: State::Active,
    },
    // UPN in the alternative suffix.
    User {
        sam: "alice",
        upn: "alice@example.com",
        cn: "Alice Liddell",
        password: "Alice-Passw0rd!",
        state: State::Active,
    },
    // For lockout tests, so that locking does not hit the other users.
    User {
        sam: "lockme",
        upn: "lockme@corp.test",
        cn: "Larry Lockme",
        password: "Lockme-Passw0rd!",
        state: State::Active,
    },
    User {
        sam: "disabled",
        upn: "disabled@corp.test",
        cn: "Dora Disabled",
        password: "Disabled-Passw0rd!",
        state: State::Disabled,
    },
    User {
        sam: "mustchange",
        upn: "mustchange@corp.test",
        cn: "Mike Mustchange",
        password: "Mustchange-Passw0rd!",
        state: State::MustChangePassword,
    },
    User {
        sam: "expired",
        upn: "expired@corp.test",
        cn: "Ed Expired",
        password: "Expired-Passw0rd!",
        state: State::AccountExpired,
    },
];

/// Global security groups in `OU=Groups` (and one distribution group):
/// bob is in developers, and through it in engineering.
pub const GROUPS: &[Group] = &[
    Group {
        sam: "developers",
        cn: "developers",
        members: &["bob", "rsmith"],
        security: true,
    },
    Group {
        sam: "platform",
        cn: "platform",
        members: &["erin"],
        security: true,
    },
    Group {
        sam: "engineering",
        cn: "engineering",
        members: &["developers", "platform"],
        security: true,
    },
    // CN differs from sAMAccountName.
    Group {
        sam: "registry-admins",
        cn: "Registry Admins",
        members: &["alice"],
        security: true,
    },
    Group {
        sam: "all-staff",
        cn: "all-staff",
        members: &["bob", "erin"],
        security: false,
    },
];

pub fn user(sam: &str) -> &'static User {
    USERS
        .iter()
        .find(|u| u.sam == sam)
        .unwrap_or_else(|| panic!("no fixture user {sam}"))
}

/// One entry of an `ldapsearch` result. Values given base64 in LDIF
/// (`attr:: ...`) are decoded when they are UTF-8 and kept in base64
/// otherwise (objectGUID, objectSid).
#[derive(Debug, Clone)]
pub struct Entry {
    pub dn: String,
    pub attrs: Vec<(String, String)>,
}

impl Entry {
    pub fn get(&self, attr: &str) -> Option<&str> {
        self.all(attr).into_iter().next()
    }

    pub fn all(&self, attr: &str) -> Vec<&str> {
        self.attrs
            .iter()
            .filter(|(a, _)| a.eq_ignore_ascii_case(attr))
            .map(|(_, v)| v.as_str())
            .collect()
    }
}

/// What an `ldapsearch` returned: entries and continuation references
/// (`ldaps://corp.test/CN=Configuration,DC=corp,DC=test` from a subtree
/// search at the domain root).
#[derive(Debug, Clone, Default)]
pub struct Found {
    pub entries: Vec<Entry>,
    pub refs: Vec<String>,
}

fn parse_ldif(text: &str) -> Found {
    let mut found = Found::default();
    let mut current: Option<Entry> = None;
    for line in text.lines() {
        if let Some(r) = line.strip_prefix("# ref") {
            found.refs.push(r.trim().to_owned());
            continue;
        }
        if line.starts_with('#') {
            continue;
        }
        if line.is_empty() {
            found.entries.extend(current.take());
            continue;
        }
        let Some((attr, rest)) = line.split_once(':') else {
            continue;
        };
        let value = match rest.strip_prefix(':') {
            Some(b64) => {
                let bytes = STANDARD.decode(b64.trim()).unwrap_or_default();
                String::from_utf8(bytes).unwrap_or_else(|_| b64.trim().to_owned())
            }
            None => rest.trim_start().to_owned(),
        };
        if attr == "dn" {
            found.entries.extend(current.take());
            current = Some(Entry {
                dn: value,
                attrs: Vec::new(),
            });
        } else if let Some(entry) = current.as_mut() {
            entry.attrs.push((attr.to_owned(), value));
        }
    }
    found.entries.extend(current);
    found
}

/// `unicodePwd` wants the password in double quotes, UTF-16LE.
fn unicode_pwd(password: &str) -> String {
    let quoted: Vec<u8> = format!("\"{password}\"")
        .encode_utf16()
        .flat_map(u16::to_le_bytes)
        .collect();
    STANDARD.encode(quoted)
}

/// accountExpires / pwdLastSet are FILETIMEs (100 ns since 1601); this
/// one is in 2012.
const LONG_AGO: i64 = 129_000_000_000_000_000;

/// The LDIF that populates a fresh provision, applied as Administrator.
fn population() -> String {
    let mut ldif = String::new();
    let mut add = |dn: &str, attrs: &[String]| {
        ldif.push_str(&format!("dn: {dn}\nchangetype: add\n"));
        for a in attrs {
            ldif.push_str(a);
            ldif.push('\n');
        }
        ldif.push('\n');
    };
    for ou in [PEOPLE, SERVICE_ACCOUNTS, GROUPS_OU] {
        add(ou, &["objectClass: organizationalUnit".into()]);
    }
    // 66048: NORMAL_ACCOUNT | DONT_EXPIRE_PASSWORD, as service accounts
    // usually are.
    add(
        SERVICE_DN,
        &[
            "objectClass: user".into(),
            "sAMAccountName: regauth-svc".into(),
            format!("userPrincipalName: {SERVICE_UPN}"),
            "description: regauth's search account".into(),
            format!("unicodePwd:: {}", unicode_pwd(SERVICE_PW)),
            "userAccountControl: 66048".into(),
        ],
    );
    for u in USERS {
        let uac = if u.state == State::Disabled { 514 } else { 512 };
        // "Bob Jones", or "Smith, Robert".
        let (given, sn) = match u.cn.split_once(", ") {
            Some((sn, given)) => (given, sn),
            None => u.cn.split_once(' ').unwrap_or((u.cn, u.cn)),
        };
        let mut attrs = vec![
            "objectClass: user".into(),
            format!("sAMAccountName: {}", u.sam),
            format!("userPrincipalName: {}", u.upn),
            format!("givenName: {given}"),
            format!("sn: {sn}"),
            format!("displayName: {}", u.cn),
            format!("mail: {}", u.upn),
            format!("unicodePwd:: {}", unicode_pwd(u.password)),
            format!("userAccountControl: {uac}"),
        ];
        if u.state == State::AccountExpired {
            attrs.push(format!("accountExpires: {LONG_AGO}"));
        }
        add(&u.dn(), &attrs);
    }
    let member_dn = |name: &str| {
        USERS
            .iter()
            .find(|u| u.sam == name)
            .map(User::dn)
            .or_else(|| GROUPS.iter().find(|g| g.cn == name).map(Group::dn))
            .unwrap_or_else(|| panic!("unknown member {name}"))
    };
    // Groups of users first, then the groups that contain groups.
    let nests = |g: &&Group| g.members.iter().any(|m| GROUPS.iter().any(|o| o.cn == *m));
    let ordered = GROUPS
        .iter()
        .filter(|g| !nests(g))
        .chain(GROUPS.iter().filter(nests));
    for g in ordered {
        let mut attrs = vec![
            "objectClass: group".into(),
            format!("sAMAccountName: {}", g.sam),
        ];
        if !g.security {
            attrs.push("groupType: 8".into());
        }
        attrs.extend(
            g.members
                .iter()
                .map(|m| format!("member: {}", member_dn(m))),
        );
        add(&g.dn(), &attrs);
    }
    for u in USERS
        .iter()
        .filter(|u| u.state == State::MustChangePassword)
    {
        ldif.push_str(&format!(
            "dn: {}\nchangetype: modify\nreplace: pwdLastSet\npwdLastSet: 0\n\n",
            u.dn()
        ));
    }
    // Complexity off (tests set simple passwords; the length minimum of 7
    // stays), passwords never expire (the template is reused for weeks),
    // no minimum age (users may change their own password at once).
    ldif.push_str(&format!(
        "dn: {BASE}\nchangetype: modify\n\
         replace: lockoutThreshold\nlockoutThreshold: {LOCKOUT_THRESHOLD}\n-\n\
         replace: pwdProperties\npwdProperties: 0\n-\n\
         replace: minPwdAge\nminPwdAge: 0\n-\n\
         replace: maxPwdAge\nmaxPwdAge: -9223372036854775808\n\n\
         dn: CN=Partitions,CN=Configuration,{BASE}\nchangetype: modify\n\
         add: uPNSuffixes\nuPNSuffixes: {UPN_SUFFIX}\n\n"
    ));
    ldif
}

/// The next free `127.0.0.N` (N from 20): free meaning nothing listens on
/// AD's ports there, which a DC of another test process might.
fn next_address() -> Ipv4Addr {
    static NEXT: AtomicU8 = AtomicU8::new(20);
    loop {
        let n = NEXT.fetch_add(1, Ordering::SeqCst);
        assert!(
            (20..250).contains(&n),
            "no free loopback address for another DC (binding 127.0.0.N:389 needs root)"
        );
        let ip = Ipv4Addr::new(127, 0, 0, n);
        if [389, 636, 3268, 3269]
            .iter()
            .all(|&port| TcpListener::bind((ip, port)).is_ok())
        {
            return ip;
        }
    }
}

/// Debian's Samba, run with a clean environment: samba-tool is Python
/// (`#!/usr/bin/python3`), and a PYTHONPATH or pyenv variable from the
/// test's environment must not reach it.
fn clean(program: &Path, home: &Path) -> Command {
    let mut cmd = Command::new(program);
    cmd.env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .env("HOME", home)
        .env("LANG", "C.UTF-8")
        .env("KRB5_CONFIG", home.join("private/krb5.conf"))
        .stdin(Stdio::null());
    cmd
}

fn samba_binaries() -> (PathBuf, PathBuf) {
    let hint = "samba-ad-dc samba-ad-provision";
    let samba = require("samba", hint);
    let tool = require("samba-tool", hint);
    let setup = Path::new("/usr/share/samba/setup/provision.ldif");
    assert!(
        setup.exists(),
        "{} is missing: run `tests/run` or `apt-get install -y --no-install-recommends {hint}`",
        setup.display()
    );
    (samba, tool)
}

fn run_checked(cmd: &mut Command, what: &str) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{what} runs: {e}"));
    assert!(
        out.status.success(),
        "{what}: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn openssl(dir: &Path, args: &[&str]) {
    run_checked(
        Command::new(require("openssl", "openssl"))
            .args(args)
            .current_dir(dir),
        &format!("openssl {args:?}"),
    );
}

/// A certificate for `ip` (and `name.corp.test`) signed by the CA in
/// `dir/tls`, made first unless `ca_from` gives one to copy.
fn make_tls(dir: &Path, ip: Ipv4Addr, name: &str, ca_from: Option<&Path>) {
    let tls = dir.join("tls");
    std::fs::create_dir_all(&tls).unwrap();
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
    ];
    match ca_from {
        Some(from) => {
            for f in ["ca.crt", "ca.key"] {
                std::fs::copy(from.join(f), tls.join(f)).unwrap();
            }
        }
        None => openssl(
            &tls,
            &[
                &["req", "-x509"][..],
                &ec,
                &[
                    "-keyout",
                    "ca.key",
                    "-out",
                    "ca.crt",
                    "-days",
                    "2",
                    "-subj",
                    "/CN=regauth test AD CA",
                ],
            ]
            .concat(),
        ),
    }
    let host = format!("{}.{DNS_DOMAIN}", name.to_lowercase());
    openssl(
        &tls,
        &[
            &["req"][..],
            &ec,
            &[
                "-keyout",
                "server.key",
                "-out",
                "server.csr",
                "-subj",
                &format!("/CN={host}"),
            ],
        ]
        .concat(),
    );
    std::fs::write(
        tls.join("ext"),
        format!("subjectAltName=IP:{ip},DNS:{host}\n"),
    )
    .unwrap();
    openssl(
        &tls,
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "server.crt",
            "-days",
            "2",
            "-extfile",
            "ext",
        ],
    );
    // Samba refuses a key file others may read.
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(
        tls.join("server.key"),
        std::fs::Permissions::from_mode(0o600),
    )
    .unwrap();
}

/// The instance's smb.conf: every path under `dir`, only `ip`, only the
/// given server services, TLS from `dir/tls`. The sysvol and netlogon
/// shares are there because provision and join insist on them (no SMB
/// server runs).
fn smb_conf(dir: &Path, ip: Ipv4Addr, name: &str, services: &str) -> String {
    let d = dir.display();
    format!(
        "[global]
	netbios name = {name}
	realm = {REALM}
	workgroup = {NETBIOS_DOMAIN}
	server role = active directory domain controller
	server services = {services}
	interfaces = {ip}/8
	bind interfaces only = yes
	private dir = {d}/private
	binddns dir = {d}/bind-dns
	lock directory = {d}/lock
	state directory = {d}/state
	cache directory = {d}/cache
	pid directory = {d}/run
	ncalrpc dir = {d}/run/ncalrpc
	ntp signd socket directory = {d}/run/ntp_signd
	winbindd socket directory = {d}/run/winbindd
	log file = {d}/log/log.samba
	logging = file
	max log size = 0
	log level = 1 auth_audit:3
	panic action =
	dns update command = /bin/true
	spn update command = /bin/true
	samba kcc command = /bin/true
	tls enabled = yes
	tls keyfile = {d}/tls/server.key
	tls certfile = {d}/tls/server.crt
	tls cafile = {d}/tls/ca.crt

[sysvol]
	path = {d}/state/sysvol
	read only = no

[netlogon]
	path = {d}/state/sysvol/{DNS_DOMAIN}/scripts
	read only = no
"
    )
}

fn make_dirs(dir: &Path) {
    for sub in [
        "private", "bind-dns", "lock", "state", "cache", "run", "log", "tls",
    ] {
        std::fs::create_dir_all(dir.join(sub)).unwrap();
    }
}

/// Copies regular files and directories (a stopped DC's sockets stay
/// behind).
fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let kind = entry.file_type().unwrap();
        let target = to.join(entry.file_name());
        if kind.is_dir() {
            copy_tree(&entry.path(), &target);
        } else if kind.is_file() {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

/// The provisioned, populated database (`private/` and `state/`), made
/// once per fixture and Samba version; see the module documentation.
fn template() -> &'static Path {
    static TEMPLATE: OnceLock<PathBuf> = OnceLock::new();
    TEMPLATE.get_or_init(|| {
        let (samba, _) = samba_binaries();
        let version = run_checked(
            clean(&samba, Path::new("/")).arg("--version"),
            "samba --version",
        );
        let mut hasher = std::hash::DefaultHasher::new();
        std::hash::Hash::hash(&(version, population(), ADMIN_PW, FIRST_DC), &mut hasher);
        let key = std::hash::Hasher::finish(&hasher);
        let root = Path::new(env!("CARGO_TARGET_TMPDIR"));
        let done = root.join(format!("samba-ad-{key:016x}"));
        if done.join("private/sam.ldb").exists() {
            return done;
        }
        let work = root.join(format!("samba-ad-{key:016x}.{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&work);
        build_template(&work);
        match std::fs::rename(&work, &done) {
            Ok(()) => {
                // Templates of older fixtures.
                for old in std::fs::read_dir(root).unwrap().flatten() {
                    let name = old.file_name().to_string_lossy().into_owned();
                    if name.starts_with("samba-ad-") && !name.contains('.') && old.path() != done {
                        let _ = std::fs::remove_dir_all(old.path());
                    }
                }
            }
            // Another test process made it first.
            Err(_) if done.join("private/sam.ldb").exists() => {
                let _ = std::fs::remove_dir_all(&work);
            }
            Err(e) => panic!("keeping the AD template at {}: {e}", done.display()),
        }
        done
    })
}

fn build_template(work: &Path) {
    let started = Instant::now();
    let (_, tool) = samba_binaries();
    make_dirs(work);
    let ip = next_address();
    make_tls(work, ip, FIRST_DC, None);
    let conf = work.join("smb.conf");
    std::fs::write(&conf, smb_conf(work, ip, FIRST_DC, LDAP_ONLY)).unwrap();
    run_checked(
        clean(&tool, work)
            .args(["domain", "provision", "-s"])
            .arg(&conf)
            .args([
                &format!("--realm={REALM}"),
                &format!("--domain={NETBIOS_DOMAIN}"),
                "--server-role=dc",
                "--dns-backend=NONE",
                &format!("--host-name={}", FIRST_DC.to_lowercase()),
                &format!("--adminpass={ADMIN_PW}"),
            ]),
        "samba-tool domain provision",
    );
    let provisioned = started.elapsed();
    let mut dc = SambaDc {
        process: None,
        ip,
        name: FIRST_DC.into(),
        services: LDAP_ONLY.into(),
        _dir: None,
        path: work.to_path_buf(),
    };
    dc.restart();
    dc.modify(&population());
    dc.kill();
    eprintln!(
        "samba: provisioned the AD template in {provisioned:?}, populated in {:?} ({})",
        started.elapsed() - provisioned,
        work.display()
    );
}

/// A Samba AD DC on `127.0.0.N`, killed on drop.
pub struct SambaDc {
    process: Option<Process>,
    pub ip: Ipv4Addr,
    /// The NetBIOS name (`DC1`; a replica `DC<N>`).
    pub name: String,
    services: String,
    /// Removed on drop, after the process (the template's directory is
    /// kept).
    _dir: Option<tempfile::TempDir>,
    path: PathBuf,
}

impl SambaDc {
    /// A DC with the fixture directory: a copy of the template, its own
    /// address, certificate and CA.
    pub fn start() -> Self {
        let template = template();
        let started = Instant::now();
        let dir = tempfile::Builder::new()
            .prefix("samba-dc")
            .tempdir()
            .unwrap();
        let path = dir.path().to_path_buf();
        make_dirs(&path);
        copy_tree(&template.join("private"), &path.join("private"));
        copy_tree(&template.join("state"), &path.join("state"));
        let ip = next_address();
        make_tls(&path, ip, FIRST_DC, None);
        let mut dc = Self {
            process: None,
            ip,
            name: FIRST_DC.into(),
            services: LDAP_ONLY.into(),
            _dir: Some(dir),
            path,
        };
        dc.write_conf();
        dc.restart();
        eprintln!(
            "samba: {} on {} up in {:?}",
            dc.name,
            dc.ip,
            started.elapsed()
        );
        dc
    }

    /// A second DC of `first`'s domain, joined with `samba-tool domain
    /// join ... DC` (a full DRS replication of the three partitions), on
    /// its own address, with a certificate from `first`'s CA (so
    /// [`Self::ca`] is the same file's content). `first` is restarted with
    /// the RPC and CLDAP services if it runs LDAP only (the join needs
    /// them). Nothing replicates afterwards (no drepl: without DNS it could
    /// not find its partner).
    pub fn join(first: &mut SambaDc) -> Self {
        let (_, tool) = samba_binaries();
        if first.services != REPLICATION {
            first.services = REPLICATION.into();
            first.write_conf();
            first.restart();
        }
        let started = Instant::now();
        let dir = tempfile::Builder::new()
            .prefix("samba-dc")
            .tempdir()
            .unwrap();
        let path = dir.path().to_path_buf();
        make_dirs(&path);
        let ip = next_address();
        let name = format!("DC{}", ip.octets()[3]);
        make_tls(&path, ip, &name, Some(&first.path.join("tls")));
        let mut dc = Self {
            process: None,
            ip,
            name,
            services: REPLICATION.into(),
            _dir: Some(dir),
            path,
        };
        dc.write_conf();
        run_checked(
            clean(&tool, &dc.path)
                .args(["domain", "join", DNS_DOMAIN, "DC", "-s"])
                .arg(dc.conf())
                .args([
                    &format!("--server={}", first.ip),
                    &format!("--username=Administrator%{ADMIN_PW}"),
                    "--dns-backend=NONE",
                    "--use-kerberos=off",
                ]),
            "samba-tool domain join",
        );
        dc.restart();
        eprintln!(
            "samba: {} on {} joined {} and up in {:?}",
            dc.name,
            dc.ip,
            first.name,
            started.elapsed()
        );
        dc
    }

    fn conf(&self) -> PathBuf {
        self.path.join("smb.conf")
    }

    fn write_conf(&self) {
        std::fs::write(
            self.conf(),
            smb_conf(&self.path, self.ip, &self.name, &self.services),
        )
        .unwrap();
    }

    pub fn ldap_url(&self) -> String {
        format!("ldap://{}", self.ip)
    }

    pub fn ldaps_url(&self) -> String {
        format!("ldaps://{}", self.ip)
    }

    /// The test CA's certificate (PEM).
    pub fn ca(&self) -> PathBuf {
        self.path.join("tls/ca.crt")
    }

    pub fn base(&self) -> &'static str {
        BASE
    }

    /// A file holding [`SERVICE_PW`] and a newline.
    pub fn service_password_file(&self) -> PathBuf {
        let path = self.path.join("service.pw");
        std::fs::write(&path, format!("{SERVICE_PW}\n")).unwrap();
        path
    }

    /// Samba's log (`log level = 1 auth_audit:3`: a line per
    /// authentication, with its status).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.path.join("log/log.samba")).unwrap_or_default()
    }

    /// Kills the DC with SIGKILL (an outage); [`Self::restart`] brings it
    /// back on the same address with its data.
    pub fn kill(&mut self) {
        self.process.take();
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect((self.ip, 636)).is_ok() {
            assert!(Instant::now() < deadline, "samba did not stop");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Starts `samba` (killing a running one first) and waits until LDAPS
    /// answers a rootDSE search.
    pub fn restart(&mut self) {
        if self.process.is_some() {
            self.kill();
        }
        let (samba, _) = samba_binaries();
        let out = self.path.join("log/stdout.log");
        let stdout = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&out)
            .unwrap();
        let child = clean(&samba, &self.path)
            .arg("-s")
            .arg(self.conf())
            .args(["--foreground", "--no-process-group", "-M", "single"])
            .arg("-l")
            .arg(self.path.join("log"))
            .stdout(stdout.try_clone().unwrap())
            .stderr(stdout)
            .spawn()
            .expect("start samba");
        let mut process = Process {
            child,
            log: self.path.join("log/log.samba"),
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = process.child.try_wait().unwrap() {
                panic!(
                    "samba exited ({status}): {}\n{}",
                    std::fs::read_to_string(&out).unwrap_or_default(),
                    self.log()
                );
            }
            if TcpStream::connect((self.ip, 636)).is_ok() {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "samba did not listen on {}:636: {}",
                self.ip,
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        self.process = Some(process);
        // Samba binds as it starts its services; TLS answers once the
        // LDAP server has loaded its key.
        loop {
            let out = self.ldapsearch(
                &self.ldaps_url(),
                None,
                "",
                "base",
                "(objectClass=*)",
                &["dnsHostName"],
            );
            if out.status.success() {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "samba's LDAPS did not answer: {}\n{}",
                String::from_utf8_lossy(&out.stderr),
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn ldapsearch(
        &self,
        url: &str,
        bind: Option<(&str, &str)>,
        base: &str,
        scope: &str,
        filter: &str,
        attrs: &[&str],
    ) -> Output {
        let mut cmd = Command::new(require("ldapsearch", "ldap-utils"));
        cmd.env("LDAPTLS_CACERT", self.ca())
            .env("LDAPTLS_REQCERT", "demand")
            .args(["-LLL", "-o", "ldif-wrap=no", "-x", "-H", url]);
        if let Some((who, password)) = bind {
            cmd.args(["-D", who, "-w", password]);
        }
        cmd.args(["-b", base, "-s", scope, filter])
            .args(attrs)
            .stdin(Stdio::null())
            .output()
            .expect("ldapsearch runs")
    }

    /// A simple bind (`who`: a UPN, `DOMAIN\user` or a DN) and a rootDSE
    /// read at `url`; `Err` is ldapsearch's message, e.g.
    /// `ldap_bind: Invalid credentials (49)\n\tadditional info: 80090308:
    /// LdapErr: DSID-0C0903A9, comment: AcceptSecurityContext error, data
    /// 52e, v1db1`.
    pub fn bind(&self, url: &str, who: &str, password: &str) -> Result<(), String> {
        let out = self.ldapsearch(
            url,
            Some((who, password)),
            "",
            "base",
            "(objectClass=*)",
            &["1.1"],
        );
        if out.status.success() {
            Ok(())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).trim().to_owned())
        }
    }

    /// A subtree search bound as `who`; `Err` is ldapsearch's message.
    pub fn search_as(
        &self,
        url: &str,
        who: &str,
        password: &str,
        base: &str,
        filter: &str,
        attrs: &[&str],
    ) -> Result<Found, String> {
        let out = self.ldapsearch(url, Some((who, password)), base, "sub", filter, attrs);
        if out.status.success() {
            Ok(parse_ldif(&String::from_utf8_lossy(&out.stdout)))
        } else {
            Err(String::from_utf8_lossy(&out.stderr).trim().to_owned())
        }
    }

    /// A subtree search from `base` as Administrator over LDAPS.
    pub fn search(&self, base: &str, filter: &str, attrs: &[&str]) -> Found {
        self.search_as(&self.ldaps_url(), ADMIN, ADMIN_PW, base, filter, attrs)
            .unwrap_or_else(|e| panic!("search {filter} under {base}: {e}"))
    }

    /// The entry of the account with this sAMAccountName.
    pub fn account(&self, sam: &str, attrs: &[&str]) -> Entry {
        let found = self.search(BASE, &format!("(sAMAccountName={sam})"), attrs);
        found
            .entries
            .into_iter()
            .next()
            .unwrap_or_else(|| panic!("no account {sam}"))
    }

    pub fn dn_of(&self, sam: &str) -> String {
        self.account(sam, &["1.1"]).dn
    }

    /// Applies LDIF as Administrator over LDAPS.
    pub fn modify(&self, ldif: &str) {
        let path = self.path.join("change.ldif");
        std::fs::write(&path, ldif).unwrap();
        run_checked(
            Command::new(require("ldapmodify", "ldap-utils"))
                .env("LDAPTLS_CACERT", self.ca())
                .args([
                    "-x",
                    "-H",
                    &self.ldaps_url(),
                    "-D",
                    ADMIN,
                    "-w",
                    ADMIN_PW,
                    "-f",
                ])
                .arg(&path)
                .stdin(Stdio::null()),
            "ldapmodify",
        );
    }

    fn replace(&self, sam: &str, attr: &str, value: &str) {
        let dn = self.dn_of(sam);
        self.modify(&format!(
            "dn: {dn}\nchangetype: modify\nreplace: {attr}\n{attr}: {value}\n"
        ));
    }

    /// The account's `badPwdCount` (0 when never set). Like AD's, it is
    /// per DC and not replicated.
    pub fn bad_pwd_count(&self, sam: &str) -> u32 {
        self.account(sam, &["badPwdCount"])
            .get("badPwdCount")
            .map_or(0, |v| v.parse().unwrap())
    }

    /// Whether the account is locked out (`lockoutTime` set).
    pub fn is_locked(&self, sam: &str) -> bool {
        self.account(sam, &["lockoutTime"])
            .get("lockoutTime")
            .is_some_and(|v| v != "0")
    }

    fn user_account_control(&self, sam: &str) -> u32 {
        self.account(sam, &["userAccountControl"])
            .get("userAccountControl")
            .map(|v| v.parse().unwrap())
            .unwrap()
    }

    pub fn disable(&self, sam: &str) {
        let uac = self.user_account_control(sam) | 2;
        self.replace(sam, "userAccountControl", &uac.to_string());
    }

    /// An administrator's reset (no old password, history not checked).
    pub fn set_password(&self, sam: &str, password: &str) {
        let dn = self.dn_of(sam);
        self.modify(&format!(
            "dn: {dn}\nchangetype: modify\nreplace: unicodePwd\nunicodePwd:: {}\n",
            unicode_pwd(password)
        ));
    }

    /// Locks the account by binding with a wrong password until it is
    /// locked (the threshold must not be 0).
    pub fn lock(&self, sam: &str) {
        let who = format!("{sam}@{DNS_DOMAIN}");
        for _ in 0..100 {
            if self.is_locked(sam) {
                return;
            }
            let refused = self.bind(&self.ldaps_url(), &who, "not-the-password");
            assert!(refused.is_err(), "a wrong password bound as {sam}");
        }
        panic!("{sam} was not locked after 100 wrong passwords (lockout threshold 0?)");
    }
}

impl Drop for SambaDc {
    fn drop(&mut self) {
        // The process before its directory.
        self.process.take();
    }
}
