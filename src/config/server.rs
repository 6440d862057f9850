//! `[server]`: where regauth listens, how long it waits for clients and
//! identity providers, and how much a client may send.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::error::{invalid, ConfigError};
use super::Seconds;
use crate::net::TrustedProxy;

/// `server.listen` by default, and the example its error gives.
const DEFAULT_LISTEN: &str = "127.0.0.1:5001";

/// `[server]` as the file gives it.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct RawServer {
    pub(crate) listen: String,
    /// A listener of its own for /healthz, /readyz, /metrics and /jwks.
    pub(crate) ops_listen: Option<String>,
    /// The public URL of the token endpoint, as the registry's `realm`.
    pub(crate) realm: Option<String>,
    pub(crate) anonymous: bool,
    /// Upper bound for one identity provider's answer (`request_timeout`
    /// is the name earlier versions used).
    #[serde(alias = "request_timeout")]
    pub(crate) upstream_timeout: Seconds,
    /// Upper bound for a whole request, from its first byte to its answer.
    pub(crate) request_deadline: Seconds,
    /// A client must send a request's head within this time.
    pub(crate) header_timeout: Seconds,
    /// An idle keep-alive connection is closed after this time.
    pub(crate) idle_timeout: Seconds,
    /// On SIGTERM, in-flight requests get this long to finish.
    pub(crate) shutdown_timeout: Seconds,
    /// Connections served at once; more are answered 503 and closed.
    pub(crate) max_connections: usize,
    /// Connections from one client network at once (IPv4 address, IPv6 /64).
    pub(crate) max_connections_per_client: usize,
    /// Requests handled at once; more are answered 503.
    pub(crate) max_in_flight: usize,
    pub(crate) max_body_bytes: usize,
    pub(crate) max_scopes: usize,
    /// Upper bound on a request's head (request line and headers).
    pub(crate) max_header_bytes: usize,
    pub(crate) max_username_bytes: usize,
    pub(crate) max_secret_bytes: usize,
    /// Upper bound on a requested repository name (the registry's own).
    pub(crate) max_repository_bytes: usize,
    /// Proxies (CIDRs) whose `X-Forwarded-For` names the real client.
    pub(crate) trusted_proxies: Vec<String>,
    /// Serve HTTPS with this certificate chain (PEM) and key.
    pub(crate) tls_certificate: Option<PathBuf>,
    pub(crate) tls_key: Option<PathBuf>,
}

impl Default for RawServer {
    fn default() -> Self {
        let secs = |s| Seconds(Duration::from_secs(s));
        Self {
            listen: DEFAULT_LISTEN.into(),
            ops_listen: None,
            realm: None,
            anonymous: true,
            upstream_timeout: secs(10),
            request_deadline: secs(14),
            header_timeout: secs(10),
            idle_timeout: secs(60),
            shutdown_timeout: secs(20),
            max_connections: 4096,
            max_connections_per_client: 256,
            max_in_flight: 1024,
            max_body_bytes: 64 * 1024,
            max_scopes: 100,
            max_header_bytes: 32 * 1024,
            max_username_bytes: 256,
            max_secret_bytes: 16 * 1024,
            max_repository_bytes: 255,
            trusted_proxies: Vec::new(),
            tls_certificate: None,
            tls_key: None,
        }
    }
}

/// The `[server]` section, validated.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    /// The address to listen on (`server.listen`).
    pub listen: SocketAddr,
    /// A listener of its own, plain HTTP, for the operational endpoints
    /// (`server.ops_listen`): probes and Prometheus, which need not reach
    /// the token endpoint.
    pub ops_listen: Option<SocketAddr>,
    /// The public URL of the token endpoint, if set (`server.realm`); see
    /// [`ServerConfig::realm`].
    pub realm: Option<String>,
    /// Whether requests without credentials may get anonymous grants
    /// (`server.anonymous`).
    pub anonymous: bool,
    /// Upper bound for one identity provider's answer.
    pub upstream_timeout: Duration,
    /// How long the server waits for clients.
    pub timeouts: Timeouts,
    /// Size and count bounds on what clients send.
    pub limits: Limits,
    /// Proxies whose `X-Forwarded-For` names the real client
    /// (`server.trusted_proxies`).
    pub trusted_proxies: Vec<TrustedProxy>,
    /// The HTTPS listener's certificate chain and key, if any.
    pub tls: Option<TlsFiles>,
}

impl ServerConfig {
    /// The realm URL for `WWW-Authenticate` and the registry
    /// configuration: `server.realm`, or the token endpoint on `listen`.
    ///
    /// A plain-http `listen` on `127.0.0.1` or `[::1]` is named `localhost`:
    /// clients built on go-containerregistry (crane, cosign, ko; v0.21 and
    /// later) refuse a realm at a loopback or private IP address unless it
    /// is the registry's own host and port, and accept a name. regauth then
    /// listens on both loopback addresses ([`Self::loopback_sibling`]).
    /// (Over https the address stays, as the certificate names it.)
    pub fn realm(&self) -> String {
        if let Some(realm) = &self.realm {
            return realm.clone();
        }
        match (&self.tls, self.loopback_sibling()) {
            (None, Some(_)) => format!("http://localhost:{}/auth", self.listen.port()),
            (None, None) => format!("http://{}/auth", self.listen),
            (Some(_), _) => format!("https://{}/auth", self.listen),
        }
    }

    /// When the realm names `localhost` (no `server.realm`, plain http on
    /// `127.0.0.1` or `[::1]`): the other loopback address on the same port.
    /// `localhost` resolves to both, so regauth listens on both: another
    /// local user must not be able to take the one regauth left free and
    /// receive the passwords clients send to the realm.
    pub fn loopback_sibling(&self) -> Option<SocketAddr> {
        use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
        if self.realm.is_some() || self.tls.is_some() {
            return None;
        }
        let other: IpAddr = match self.listen.ip() {
            IpAddr::V4(ip) if ip == Ipv4Addr::LOCALHOST => Ipv6Addr::LOCALHOST.into(),
            IpAddr::V6(ip) if ip == Ipv6Addr::LOCALHOST => Ipv4Addr::LOCALHOST.into(),
            _ => return None,
        };
        Some(SocketAddr::new(other, self.listen.port()))
    }
}

/// A certificate chain and its key, as PEM files.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsFiles {
    /// The PEM certificate chain (`server.tls_certificate`).
    pub certificate: PathBuf,
    /// The PEM private key (`server.tls_key`).
    pub key: PathBuf,
}

/// How long the server waits for clients (`server.*_timeout`, `server.request_deadline`).
#[derive(Clone, Debug)]
pub struct Timeouts {
    /// For a request's head.
    pub header: Duration,
    /// For the next request on a keep-alive connection.
    pub idle: Duration,
    /// For a whole request.
    pub request: Duration,
    /// For in-flight requests on shutdown.
    pub shutdown: Duration,
}

/// Size and count bounds on what clients send (`server.max_*`).
#[derive(Clone, Debug)]
pub struct Limits {
    /// Connections served at once; more are answered 503 and closed.
    pub max_connections: usize,
    /// Connections from one client network at once (IPv4 address, IPv6 /64).
    pub max_connections_per_client: usize,
    /// Token requests handled at once; more are answered 503.
    pub max_in_flight: usize,
    /// Upper bound on a POST token request's body, in bytes.
    pub max_body_bytes: usize,
    /// Most scope items in one token request.
    pub max_scopes: usize,
    /// Upper bound on a request's head (request line and headers), in bytes.
    pub max_header_bytes: usize,
    /// Upper bound on a username, in bytes.
    pub max_username_bytes: usize,
    /// Upper bound on a password, token or refresh token, in bytes.
    pub max_secret_bytes: usize,
    /// Upper bound on a requested repository name, in bytes.
    pub max_repository_bytes: usize,
}

/// `[server]`, checked: addresses that parse, bounds of at least 1, a
/// request head that fits the largest Basic header, timeouts that end in
/// the right order, and TLS files in pairs.
pub(crate) fn validate_server(origin: &str, raw: RawServer) -> Result<ServerConfig, ConfigError> {
    let address = |key: &str, text: &str, like: &str| {
        text.parse::<SocketAddr>().map_err(|_| {
            invalid(
                origin,
                key,
                format!("`{text}` is not an address like {like}"),
            )
        })
    };
    let ops_listen = match &raw.ops_listen {
        Some(text) => Some(address("server.ops_listen", text, "0.0.0.0:9101")?),
        None => None,
    };
    let listen = address("server.listen", &raw.listen, DEFAULT_LISTEN)?;
    if let Some(realm) = &raw.realm {
        if !(realm.starts_with("https://") || realm.starts_with("http://")) {
            return Err(invalid(
                origin,
                "server.realm",
                "must be an absolute http(s) URL",
            ));
        }
    }
    let trusted_proxies = raw
        .trusted_proxies
        .iter()
        .enumerate()
        .map(|(i, text)| {
            TrustedProxy::parse(text).ok_or_else(|| {
                invalid(
                    origin,
                    format!("server.trusted_proxies[{i}]"),
                    format!("`{text}` is not an address or network like 10.0.0.0/8"),
                )
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let limits = limits(origin, &raw)?;
    let timeouts = timeouts(origin, &raw)?;
    Ok(ServerConfig {
        listen,
        ops_listen,
        realm: raw.realm,
        anonymous: raw.anonymous,
        upstream_timeout: raw.upstream_timeout.0,
        timeouts,
        limits,
        trusted_proxies,
        tls: tls(origin, raw.tls_certificate, raw.tls_key)?,
    })
}

fn limits(origin: &str, raw: &RawServer) -> Result<Limits, ConfigError> {
    for (key, value) in [
        ("server.max_scopes", raw.max_scopes),
        ("server.max_connections", raw.max_connections),
        (
            "server.max_connections_per_client",
            raw.max_connections_per_client,
        ),
        ("server.max_in_flight", raw.max_in_flight),
        ("server.max_username_bytes", raw.max_username_bytes),
        ("server.max_secret_bytes", raw.max_secret_bytes),
        ("server.max_repository_bytes", raw.max_repository_bytes),
        ("server.max_body_bytes", raw.max_body_bytes),
    ] {
        if value == 0 {
            return Err(invalid(origin, key, "must be at least 1"));
        }
    }
    // hyper needs at least 8 KiB; a Basic header with the largest
    // secret must fit.
    let smallest_head = 8192.max(raw.max_secret_bytes * 4 / 3 + raw.max_username_bytes * 2 + 1024);
    if raw.max_header_bytes < smallest_head {
        return Err(invalid(
            origin,
            "server.max_header_bytes",
            format!("must be at least {smallest_head} (8 KiB, and room for a Basic header with server.max_secret_bytes)"),
        ));
    }
    Ok(Limits {
        max_connections: raw.max_connections,
        max_connections_per_client: raw.max_connections_per_client,
        max_in_flight: raw.max_in_flight,
        max_body_bytes: raw.max_body_bytes,
        max_scopes: raw.max_scopes,
        max_header_bytes: raw.max_header_bytes,
        max_username_bytes: raw.max_username_bytes,
        max_secret_bytes: raw.max_secret_bytes,
        max_repository_bytes: raw.max_repository_bytes,
    })
}

fn timeouts(origin: &str, raw: &RawServer) -> Result<Timeouts, ConfigError> {
    for (key, value) in [
        ("server.upstream_timeout", raw.upstream_timeout.0),
        ("server.request_deadline", raw.request_deadline.0),
        ("server.header_timeout", raw.header_timeout.0),
        ("server.idle_timeout", raw.idle_timeout.0),
    ] {
        if value.is_zero() {
            return Err(invalid(origin, key, "must be longer than 0s"));
        }
    }
    if raw.request_deadline.0 <= raw.upstream_timeout.0 {
        return Err(invalid(
            origin,
            "server.request_deadline",
            "must be longer than server.upstream_timeout, so that an unreachable identity provider is answered 503 before the request is cut off",
        ));
    }
    Ok(Timeouts {
        header: raw.header_timeout.0,
        idle: raw.idle_timeout.0,
        request: raw.request_deadline.0,
        shutdown: raw.shutdown_timeout.0,
    })
}

fn tls(
    origin: &str,
    certificate: Option<PathBuf>,
    key: Option<PathBuf>,
) -> Result<Option<TlsFiles>, ConfigError> {
    match (certificate, key) {
        (Some(certificate), Some(key)) => Ok(Some(TlsFiles { certificate, key })),
        (None, None) => Ok(None),
        (Some(_), None) => Err(invalid(
            origin,
            "server.tls_key",
            "server.tls_certificate needs its key",
        )),
        (None, Some(_)) => Err(invalid(
            origin,
            "server.tls_certificate",
            "server.tls_key needs its certificate",
        )),
    }
}
