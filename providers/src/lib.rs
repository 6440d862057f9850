//! Identity provider adapters for regauth.
//!
//! A provider turns credentials into an [`Identity`] (or says why it cannot).
//! This crate knows nothing about JWTs issued to registries, scopes or policy:
//! that is the server crate's business. It must never log, format or return a
//! secret it was handed: passwords and tokens stay inside [`SecretString`].
//!
//! The modules by job: `identity` (the model), `provider` (the traits),
//! `shape` (what a secret looks like), `settings` (what the providers'
//! settings share), `http` and `tls` (the one HTTPS client, bounded
//! answers), `log_text` (client-chosen text in a log line), then one
//! module per kind of provider.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub use secrecy::{ExposeSecret, SecretString};

mod claim_set;
pub mod clock;
pub mod entra;
mod error;
mod fetched;
mod forge;
pub mod gitea;
pub mod github;
pub mod gitlab;
mod http;
mod identity;
pub mod ldap;
mod log_text;
pub mod oidc;
mod provider;
mod settings;
mod shape;
pub mod static_users;
mod tls;
pub mod webhook;

pub use claim_set::{claim_at, is_claim_path, ClaimSet};
pub use error::{Error, Invalid};
pub(crate) use fetched::Fetched;
pub use http::{body_limited, http_client, json_limited, JsonClient, MAX_UPSTREAM_BODY};
pub use identity::{
    Attachment, Credentials, Identity, Kind, Outcome, PackageRights, Proof, Rejection, Renewal,
};
pub use log_text::{Escaped, Safe, MAX_LOGGED_BYTES};
pub use provider::{BrowserLogin, Finished, GroupAnswer, IdentityProvider, PendingLogin, Renewed};
pub use settings::{load_secret, Seconds};
pub use shape::{
    is_team_robot_name, SecretShape, APP_PASSWORD_PREFIX, GITHUB_TOKEN_PREFIXES, TEAM_ROBOT_PREFIX,
};
pub use tls::{client_tls, Roots};

/// A network as configured: `10.20.0.0/16`, `2001:db8::/48`, or one
/// address (`10.1.2.3`, a /32 or /128); host bits must be zero, and it
/// must be written as it reads back (no `010.020.0.0/16`). IPv4-mapped
/// IPv6 networks are refused: clients' mapped addresses count as IPv4, so
/// write the IPv4 network.
pub fn parse_network(text: &str) -> Option<ipnet::IpNet> {
    let text = text.trim();
    let (net, canonical) = match text.parse::<ipnet::IpNet>() {
        Ok(net) => (net, net.to_string()),
        Err(_) => {
            let ip = text.parse::<std::net::IpAddr>().ok()?;
            (ipnet::IpNet::from(ip), ip.to_string())
        }
    };
    let mapped = match net {
        ipnet::IpNet::V6(v6) => v6.addr().to_ipv4_mapped().is_some(),
        ipnet::IpNet::V4(_) => false,
    };
    (net.trunc() == net && !mapped && canonical.eq_ignore_ascii_case(text)).then_some(net)
}

/// Makes aws-lc-rs the process-wide rustls provider, so every TLS client
/// in the process (including ones built without a preconfigured config)
/// uses the one crypto library. Idempotent.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
}

/// What kind of provider an instance is: one of the built-in ones, or a
/// provider of the embedding application's own, under a name it picks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ProviderKind {
    /// Users listed in the configuration (`kind = "static"`).
    Static,
    /// A directory (`kind = "ldap"`).
    Ldap,
    /// An OpenID Connect issuer (`kind = "oidc"`).
    Oidc,
    /// Microsoft Entra ID (`kind = "entra"`).
    Entra,
    /// GitHub tokens (`kind = "github"`).
    Github,
    /// GitLab tokens (`kind = "gitlab"`).
    Gitlab,
    /// Gitea and Forgejo tokens (`kind = "gitea"`).
    Gitea,
    /// An authentication webhook (`kind = "webhook"`).
    Webhook,
    /// A provider written by the embedding application.
    Custom(&'static str),
}

impl ProviderKind {
    /// The built-in kinds, in the order configuration errors list them:
    /// the one table of kinds a configuration's `kind` may name.
    pub const ALL: [ProviderKind; 8] = [
        ProviderKind::Static,
        ProviderKind::Ldap,
        ProviderKind::Oidc,
        ProviderKind::Entra,
        ProviderKind::Github,
        ProviderKind::Gitlab,
        ProviderKind::Gitea,
        ProviderKind::Webhook,
    ];

    /// The built-in kinds as configuration files spell them, for errors:
    /// `static, ldap, oidc, ...`.
    pub fn names() -> String {
        Self::ALL.map(|kind| kind.as_str()).join(", ")
    }

    /// The kind as configuration files and metrics spell it.
    pub fn as_str(&self) -> &'static str {
        match self {
            ProviderKind::Static => "static",
            ProviderKind::Ldap => "ldap",
            ProviderKind::Oidc => "oidc",
            ProviderKind::Entra => "entra",
            ProviderKind::Github => "github",
            ProviderKind::Gitlab => "gitlab",
            ProviderKind::Gitea => "gitea",
            ProviderKind::Webhook => "webhook",
            ProviderKind::Custom(name) => name,
        }
    }
}

impl ProviderKind {
    /// Whether logins of this kind are carried by refresh tokens as
    /// snapshots (the provider cannot look its users up again), so that
    /// `refresh_max_age` applies to them.
    pub fn snapshots(self) -> bool {
        matches!(
            self,
            ProviderKind::Oidc
                | ProviderKind::Entra
                | ProviderKind::Github
                | ProviderKind::Gitlab
                | ProviderKind::Gitea
                | ProviderKind::Webhook
        )
    }
}

impl std::fmt::Display for ProviderKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A configuration's `kind`: one of [`ProviderKind::ALL`], never `Custom`.
impl std::str::FromStr for ProviderKind {
    type Err = UnknownProviderKind;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|kind| kind.as_str() == text)
            .ok_or_else(|| UnknownProviderKind(text.to_owned()))
    }
}

/// A `kind` that names no built-in provider.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("unknown provider kind `{0}` (one of: {names})", names = ProviderKind::names())]
pub struct UnknownProviderKind(pub String);

#[cfg(test)]
mod provider_kind_tests {
    use super::ProviderKind;

    #[test]
    fn every_kind_reads_back_from_its_name_and_others_are_listed_unknown() {
        for kind in ProviderKind::ALL {
            assert_eq!(kind.as_str().parse::<ProviderKind>(), Ok(kind));
        }
        let unknown = "smoke".parse::<ProviderKind>().unwrap_err().to_string();
        assert_eq!(
            unknown,
            "unknown provider kind `smoke` (one of: static, ldap, oidc, entra, github, gitlab, gitea, webhook)"
        );
    }
}
