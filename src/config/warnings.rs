//! What `regauth check` warns about: settings that work but put something
//! at risk. Each warning names its provider or key.

use super::error::is_loopback_http;
use super::{Config, ProviderSettings};

impl Config {
    /// What `regauth check` warns about: settings that work but put
    /// something at risk (secrets over plain http or LDAP, the limits of
    /// checking browser sign-ins again). Each names its provider or key.
    pub fn warnings(&self) -> Vec<String> {
        let mut out = Vec::new();
        let plain = |url: &str| url.starts_with("http://") && !is_loopback_http(url);
        for p in &self.providers {
            let name = &p.name;
            match &p.settings {
                ProviderSettings::Oidc(oidc) => {
                    let contacted = oidc.jwks_file.is_none()
                        || oidc.password_grant
                        || oidc.browser_login
                        || oidc.introspection;
                    if contacted && plain(&oidc.issuer) {
                        out.push(format!("provider {name}: the issuer {} is plain http: discovery, keys and passwords travel unprotected and can be forged on the way; use https", oidc.issuer));
                    }
                    if let Some(url) = oidc.jwks_url.as_deref().filter(|u| plain(u)) {
                        out.push(format!("provider {name}: jwks_url {url} is plain http: whoever is on the way can swap the keys and forge tokens; use https (with ca_file) or jwks_file"));
                    }
                    if oidc.browser_login {
                        if let Some(section) = &self.app_passwords {
                            out.push(format!(
                                "provider {name}: browser sign-ins ask the IdP for a refresh token (scope offline_access) to check its users again every {}; an IdP that gives none leaves sign_in_max_age ({}) as the bound on app passwords and admin rights",
                                humantime::format_duration(section.recheck_interval),
                                humantime::format_duration(section.sign_in_max_age)
                            ));
                        }
                    }
                }
                ProviderSettings::Entra(entra) => {
                    if entra.group_names == regauth_providers::entra::GroupNames::DisplayName {
                        out.push(format!("provider {name}: group_names = \"displayName\": a display name is not unique, and whoever may create groups (in Entra, every user by default) can make one with any name; where users may, write rules and admin_groups with group ids or use group_names = \"onPremisesSamAccountName\""));
                    }
                    for (key, url) in [
                        ("authority", &entra.authority),
                        ("graph_url", &entra.graph_url),
                    ] {
                        if plain(url) {
                            out.push(format!("provider {name}: {key} {url} is plain http: tokens, keys and the app's secret travel unprotected; use https"));
                        }
                    }
                }
                ProviderSettings::Github(github) if plain(&github.api_url) => {
                    out.push(format!("provider {name}: api_url {} is plain http: tokens travel unprotected; use https", github.api_url));
                }
                ProviderSettings::Gitlab(gitlab) if plain(&gitlab.url) => {
                    out.push(format!("provider {name}: url {} is plain http: tokens travel unprotected; use https", gitlab.url));
                }
                ProviderSettings::Gitea(gitea) if plain(&gitea.url) => {
                    out.push(format!("provider {name}: url {} is plain http: tokens travel unprotected; use https", gitea.url));
                }
                ProviderSettings::Ldap(ldap) if !ldap.start_tls => {
                    for url in ldap.url.iter().chain(&ldap.urls) {
                        if url.starts_with("ldap://") {
                            out.push(format!("provider {name}: {url} without start_tls: user passwords go to the directory in clear; use ldaps:// or start_tls = true"));
                        }
                    }
                }
                _ => {}
            }
        }
        out.extend(self.unreachable_groups());
        out.extend(realm_at_an_address(&self.server.realm()));
        out
    }

    /// Rules naming a group no configured provider can produce: a group
    /// without the provider's `group_prefix` (`ad:developers` where the
    /// groups are `ad:ad:developers`), or any group of a forge provider
    /// that gives none (`allow_any_account` without required groups).
    fn unreachable_groups(&self) -> Vec<String> {
        let single = (self.providers.len() == 1).then(|| self.providers[0].name.as_str());
        let mut out = Vec::new();
        for (rule, i, qualified, group) in self.policy.group_entries() {
            let Some(name) = qualified.or(single) else {
                continue;
            };
            let Some(provider) = self.providers.iter().find(|p| p.name == name) else {
                continue;
            };
            let entry = match qualified {
                Some(p) => format!("{p}:{group}"),
                None => group.to_owned(),
            };
            let why = match &provider.settings {
                ProviderSettings::Ldap(ldap) => ldap
                    .group_prefix
                    .as_deref()
                    .filter(|prefix| group != "*" && !group.starts_with(prefix))
                    .map(|prefix| {
                        format!("provider {name}'s groups all start with its group_prefix `{prefix}` (this would be `{name}:{prefix}{group}`)")
                    }),
                ProviderSettings::Github(g) if g.organizations.is_empty() => {
                    Some(format!("provider {name} admits any account and gives no groups"))
                }
                ProviderSettings::Gitlab(g) if g.groups.is_empty() => {
                    Some(format!("provider {name} admits any account and gives no groups"))
                }
                ProviderSettings::Gitea(g) if g.organizations.is_empty() => {
                    Some(format!("provider {name} admits any account and gives no groups"))
                }
                _ => None,
            };
            if let Some(why) = why {
                out.push(format!(
                    "rule[{rule}].groups[{i}]: `{entry}` can never match: {why}"
                ));
            }
        }
        out
    }
}

/// A warning when the realm is an IP address that clients built on
/// go-containerregistry (crane, cosign, ko; v0.21 and later) refuse to send
/// credentials to: loopback, private, link-local or unspecified, unless
/// the registry itself is at that host and port.
fn realm_at_an_address(realm: &str) -> Option<String> {
    let host = url::Url::parse(realm).ok()?.host()?.to_owned();
    let refused = match host {
        url::Host::Ipv4(ip) => {
            ip.is_loopback() || ip.is_private() || ip.is_link_local() || ip.is_unspecified()
        }
        url::Host::Ipv6(ip) => {
            let first = ip.segments()[0];
            ip.is_loopback()
                || ip.is_unspecified()
                || first & 0xfe00 == 0xfc00 // unique local
                || first & 0xffc0 == 0xfe80 // link-local
        }
        url::Host::Domain(_) => false,
    };
    refused.then(|| format!("server.realm {realm} is a private or loopback address: crane, cosign, ko and other clients built on go-containerregistry refuse to send credentials there unless the registry is at that same host and port; name the token endpoint by a DNS name (set server.realm)"))
}
