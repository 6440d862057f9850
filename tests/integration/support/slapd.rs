//! A throwaway OpenLDAP server (Debian's `slapd`) on free loopback ports:
//! plain LDAP (with StartTLS) and LDAPS, certificates from a CA made at test
//! time, the memberof and ppolicy overlays (so a password change sets
//! `pwdChangedTime`), and the fixture `tests/fixtures/ldap`. Its
//! stats log (`-d 256`) records every operation, so tests count binds.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::{free_port, require, Process};

pub const SUFFIX: &str = "dc=corp,dc=test";
pub const ROOT_DN: &str = "cn=admin,dc=corp,dc=test";
const ROOT_PW: &str = "root-secret";
pub const SERVICE_DN: &str = "cn=regauth,ou=services,dc=corp,dc=test";
pub const SERVICE_PW: &str = "service-pw";

pub struct Slapd {
    pub port: u16,
    pub tls_port: u16,
    pub dir: tempfile::TempDir,
    process: Option<Process>,
}

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new(require("openssl", "openssl"))
        .args(args)
        .current_dir(dir)
        .output()
        .expect("openssl runs");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

impl Slapd {
    pub fn start() -> Self {
        require("slapd", "slapd");
        require("ldapadd", "ldap-utils");
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::create_dir_all(d.join("data")).unwrap();
        let ec = [
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
        ];
        openssl(
            d,
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
                    "/CN=regauth test CA",
                ],
            ]
            .concat(),
        );
        openssl(
            d,
            &[
                &["req"][..],
                &ec,
                &[
                    "-keyout",
                    "server.key",
                    "-out",
                    "server.csr",
                    "-subj",
                    "/CN=127.0.0.1",
                ],
            ]
            .concat(),
        );
        std::fs::write(d.join("ext"), "subjectAltName=IP:127.0.0.1,DNS:localhost\n").unwrap();
        openssl(
            d,
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
        let conf = format!(
            r#"include /etc/ldap/schema/core.schema
include /etc/ldap/schema/cosine.schema
include /etc/ldap/schema/inetorgperson.schema
include /etc/ldap/schema/nis.schema
modulepath /usr/lib/ldap
moduleload back_mdb
moduleload memberof
moduleload ppolicy
pidfile {d}/slapd.pid
TLSCACertificateFile {d}/ca.crt
TLSCertificateFile {d}/server.crt
TLSCertificateKeyFile {d}/server.key
database mdb
suffix "{SUFFIX}"
rootdn "{ROOT_DN}"
rootpw {ROOT_PW}
directory {d}/data
maxsize 104857600
overlay memberof
overlay ppolicy
access to attrs=userPassword by anonymous auth by self read by * none
access to * by users read by * none
"#,
            d = d.display()
        );
        std::fs::write(d.join("slapd.conf"), conf).unwrap();
        let mut slapd = Self {
            port: free_port(),
            tls_port: free_port(),
            dir,
            process: None,
        };
        slapd.resume();
        let fixture =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/ldap/directory.ldif");
        slapd.modify_file(&fixture, true);
        slapd
    }

    pub fn url(&self) -> String {
        format!("ldap://127.0.0.1:{}", self.port)
    }

    pub fn ldaps_url(&self) -> String {
        format!("ldaps://127.0.0.1:{}", self.tls_port)
    }

    pub fn ca(&self) -> PathBuf {
        self.dir.path().join("ca.crt")
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("slapd.log")).unwrap_or_default()
    }

    /// How many BIND requests slapd has seen for this DN (its stats log
    /// writes a `method=` line per request and a `mech=` line per result).
    pub fn binds_of(&self, dn: &str) -> usize {
        let needle = format!("BIND dn=\"{dn}\" method=");
        self.log().lines().filter(|l| l.contains(&needle)).count()
    }

    /// Stops the server (an outage); `resume` brings it back on the same ports.
    pub fn stop(&mut self) {
        self.process.take();
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
            assert!(Instant::now() < deadline, "slapd did not stop");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn resume(&mut self) {
        let d = self.dir.path();
        let log = d.join("slapd.log");
        let stderr = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .unwrap();
        let child = Command::new(require("slapd", "slapd"))
            .arg("-f")
            .arg(d.join("slapd.conf"))
            .arg("-h")
            .arg(format!(
                "ldap://127.0.0.1:{}/ ldaps://127.0.0.1:{}/",
                self.port, self.tls_port
            ))
            .args(["-d", "256"])
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .expect("start slapd");
        self.process = Some(Process {
            child,
            log: log.clone(),
        });
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "slapd did not start: {}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Appends a line to the database section of slapd.conf (takes effect
    /// at the next `resume`).
    pub fn append_config(&self, line: &str) {
        use std::io::Write as _;
        let mut conf = std::fs::OpenOptions::new()
            .append(true)
            .open(self.dir.path().join("slapd.conf"))
            .unwrap();
        writeln!(conf, "{line}").unwrap();
    }

    /// Applies LDIF as the root DN (`add` for plain entries).
    pub fn modify(&self, ldif: &str) {
        let path = self.dir.path().join("change.ldif");
        std::fs::write(&path, ldif).unwrap();
        self.modify_file(&path, false);
    }

    /// Applies LDIF with the ManageDsaIT control, which referral entries
    /// need to be added or changed as entries.
    pub fn modify_managing(&self, ldif: &str) {
        let path = self.dir.path().join("change.ldif");
        std::fs::write(&path, ldif).unwrap();
        self.run_modify(&path, &["-M"]);
    }

    fn modify_file(&self, path: &Path, add: bool) {
        self.run_modify(path, if add { &["-a"] } else { &[] });
    }

    fn run_modify(&self, path: &Path, flags: &[&str]) {
        let mut cmd = Command::new(require("ldapmodify", "ldap-utils"));
        cmd.args(flags);
        let out = cmd
            .args(["-x", "-H", &self.url(), "-D", ROOT_DN, "-w", ROOT_PW, "-f"])
            .arg(path)
            .output()
            .expect("ldapmodify runs");
        assert!(
            out.status.success(),
            "ldapmodify: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// The `[[provider]]` block for this server. `overrides` replace or add
    /// keys; their values are TOML (`"\"text\""`, `true`, `5`).
    pub fn provider_toml(&self, name: &str, overrides: &[(&str, &str)]) -> String {
        let pw = self.dir.path().join("service.pw");
        std::fs::write(&pw, format!("{SERVICE_PW}\n")).unwrap();
        let quoted = |v: &str| format!("{v:?}");
        let mut keys: Vec<(String, String)> = vec![
            ("url".into(), quoted(&self.url())),
            ("bind_dn".into(), quoted(SERVICE_DN)),
            (
                "bind_password_file".into(),
                quoted(&pw.display().to_string()),
            ),
            ("user_base".into(), quoted(&format!("ou=people,{SUFFIX}"))),
            ("user_filter".into(), quoted("(uid={username})")),
            ("group_base".into(), quoted(&format!("ou=groups,{SUFFIX}"))),
            ("group_filter".into(), quoted("(member={dn})")),
            ("nested_groups".into(), "true".into()),
        ];
        for (key, value) in overrides {
            match keys.iter_mut().find(|(k, _)| k == key) {
                Some(entry) => entry.1 = value.to_string(),
                None => keys.push((key.to_string(), value.to_string())),
            }
        }
        let body: String = keys.iter().map(|(k, v)| format!("{k} = {v}\n")).collect();
        format!("\n[[provider]]\nname = \"{name}\"\nkind = \"ldap\"\n{body}")
    }
}
