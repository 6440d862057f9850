//! `regauth login REGISTRY`: the device login on a terminal. The registry
//! names its token server (the `realm` of its `WWW-Authenticate`), the
//! token server its device authorization endpoint (RFC 8414 metadata);
//! the terminal prints the verification URL and the user code, waits for
//! the user to approve in any browser, and stores the identity token for
//! `docker-credential-regauth`. `regauth logout REGISTRY` revokes it at
//! the token server and forgets it.

use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context as _};
use serde::Deserialize;

use super::client_configs::{self, set_helper};
use super::{registry_host, Entry, Stored, IDENTITY_TOKEN_USER};

/// The `client_id` a terminal login names itself with.
pub const CLIENT_ID: &str = "regauth-login";
/// The largest answer read from a registry or token server.
const MAX_ANSWER_BYTES: usize = 64 * 1024;
/// How long one HTTP call may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(15);
const DEVICE_CODE_GRANT: &str = "urn:ietf:params:oauth:grant-type:device_code";

/// How to reach the registry.
#[derive(Clone, Debug, Default)]
pub struct Options {
    /// Speak plain http to the registry (otherwise only to a loopback
    /// one that does not answer https).
    pub plain_http: bool,
    /// A CA certificate file to trust besides the system's.
    pub ca_file: Option<std::path::PathBuf>,
    /// Do not try to open a browser even when there is a display.
    pub no_browser: bool,
}

/// Where a registry's token server is.
struct Realm {
    url: String,
    service: Option<String>,
}

/// RFC 8414 metadata, what a login needs of it.
#[derive(Deserialize)]
struct Metadata {
    token_endpoint: String,
    device_authorization_endpoint: Option<String>,
    revocation_endpoint: Option<String>,
}

/// RFC 8628 §3.2.
#[derive(Deserialize)]
struct DeviceAnswer {
    device_code: String,
    user_code: String,
    verification_uri: String,
    #[serde(default)]
    verification_uri_complete: Option<String>,
    expires_in: u64,
    #[serde(default)]
    interval: Option<u64>,
}

/// A token endpoint's answer, what a poll needs of it.
#[derive(Deserialize)]
struct TokenAnswer {
    #[serde(default)]
    refresh_token: Option<String>,
    #[serde(default)]
    error: Option<String>,
    #[serde(default)]
    error_description: Option<String>,
}

fn client(options: &Options) -> anyhow::Result<reqwest::Client> {
    regauth_providers::http_client(options.ca_file.as_deref(), CALL_TIMEOUT)
        .map_err(|e| anyhow!("{e}"))
}

async fn read(response: reqwest::Response) -> anyhow::Result<Vec<u8>> {
    regauth_providers::body_limited(response, MAX_ANSWER_BYTES)
        .await
        .map_err(|e| anyhow!(e))
}

fn loopback(host: &str) -> bool {
    let name = host
        .rsplit_once(':')
        .filter(|(_, port)| port.bytes().all(|b| b.is_ascii_digit()))
        .map_or(host, |(name, _)| name);
    let name = name.trim_start_matches('[').trim_end_matches(']');
    name.eq_ignore_ascii_case("localhost")
        || name
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// The registry's token server, from its `/v2/` challenge.
async fn realm_of(
    client: &reqwest::Client,
    host: &str,
    options: &Options,
) -> anyhow::Result<Realm> {
    let schemes: &[&str] = if options.plain_http {
        &["http"]
    } else if loopback(host) {
        &["https", "http"]
    } else {
        &["https"]
    };
    let mut last = None;
    for scheme in schemes {
        match client.get(format!("{scheme}://{host}/v2/")).send().await {
            Ok(response) => return challenge(&response, host),
            Err(e) => last = Some(e.without_url()),
        }
    }
    Err(anyhow!(
        "cannot reach the registry {host}: {}",
        last.map_or_else(String::new, |e| e.to_string())
    ))
}

/// The `Bearer` challenge of a `/v2/` answer.
fn challenge(response: &reqwest::Response, host: &str) -> anyhow::Result<Realm> {
    let header = response
        .headers()
        .get_all(reqwest::header::WWW_AUTHENTICATE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.len() > 7 && v[..7].eq_ignore_ascii_case("bearer "))
        .ok_or_else(|| {
            anyhow!(
                "{host} asks for no token (status {}): it is not a registry behind a token server",
                response.status()
            )
        })?;
    let param = |name: &str| {
        header[7..].split(',').find_map(|part| {
            let (key, value) = part.trim().split_once('=')?;
            key.trim()
                .eq_ignore_ascii_case(name)
                .then(|| value.trim().trim_matches('"').to_owned())
        })
    };
    let url = param("realm").ok_or_else(|| anyhow!("{host}'s challenge names no realm"))?;
    Ok(Realm {
        url,
        service: param("service"),
    })
}

/// `scheme://host[:port]` of `url`.
fn origin(url: &str) -> anyhow::Result<String> {
    if !(url.starts_with("https://") || url.starts_with("http://")) {
        bail!("the realm {} is not an http(s) URL", printable(url));
    }
    Ok(crate::config::error::origin_of(url))
}

/// The realm is the token server the login's secrets go to: https,
/// unless on loopback or `--plain-http` says so.
fn check_realm(realm: &Realm, options: &Options) -> anyhow::Result<()> {
    let origin = origin(&realm.url)?;
    let host = origin.split_once("://").map_or("", |(_, h)| h);
    if origin.starts_with("http://") && !options.plain_http && !loopback(host) {
        bail!(
            "the registry names a plain-http token server ({}): the login would travel in clear (--plain-http allows it)",
            printable(&realm.url)
        );
    }
    Ok(())
}

/// Every endpoint of the metadata is at the realm's origin: nothing a
/// login sends goes anywhere else.
fn check_endpoints(meta: &Metadata, realm: &Realm) -> anyhow::Result<()> {
    let expected = origin(&realm.url)?;
    let endpoints = [
        Some(&meta.token_endpoint),
        meta.device_authorization_endpoint.as_ref(),
        meta.revocation_endpoint.as_ref(),
    ];
    for endpoint in endpoints.into_iter().flatten() {
        if origin(endpoint).ok().as_deref() != Some(expected.as_str()) {
            bail!(
                "the token server's metadata names an endpoint elsewhere ({}) than its realm ({expected})",
                printable(endpoint)
            );
        }
    }
    Ok(())
}

/// Text from a server as a terminal may show it: no control characters
/// (no escape sequences), bounded.
fn printable(text: &str) -> String {
    text.chars().filter(|c| !c.is_control()).take(300).collect()
}

async fn metadata(client: &reqwest::Client, realm: &Realm) -> anyhow::Result<Metadata> {
    let url = format!(
        "{}/.well-known/oauth-authorization-server",
        origin(&realm.url)?
    );
    let response = client
        .get(&url)
        .send()
        .await
        .map_err(|e| anyhow!("{url}: {}", e.without_url()))?;
    if !response.status().is_success() {
        bail!(
            "{url} answered {}: the token server offers no device login",
            response.status()
        );
    }
    serde_json::from_slice(&read(response).await?)
        .with_context(|| format!("{url} is not RFC 8414 metadata"))
}

/// Signs the terminal in to `registry` with a device login, printing to
/// `out` what the user must do.
pub async fn login(
    registry: &str,
    options: &Options,
    out: &mut dyn std::io::Write,
) -> anyhow::Result<()> {
    let host = registry_host(registry);
    if host.is_empty() {
        bail!("name a registry: regauth login registry.corp");
    }
    let client = client(options)?;
    let realm = realm_of(&client, &host, options).await?;
    check_realm(&realm, options)?;
    let meta = metadata(&client, &realm).await?;
    check_endpoints(&meta, &realm)?;
    let device_endpoint = meta.device_authorization_endpoint.clone().ok_or_else(|| {
        anyhow!("the token server of {host} offers no device login (its app-password page is off)")
    })?;
    let mut form = vec![("client_id", CLIENT_ID.to_owned())];
    if let Some(service) = &realm.service {
        form.push(("service", service.clone()));
    }
    let response = client
        .post(&device_endpoint)
        .form(&form)
        .send()
        .await
        .map_err(|e| anyhow!("{device_endpoint}: {}", e.without_url()))?;
    let status = response.status();
    let body = read(response).await?;
    if !status.is_success() {
        bail!(
            "the token server refused a device login ({status}): {}",
            printable(&String::from_utf8_lossy(&body))
        );
    }
    let device: DeviceAnswer =
        serde_json::from_slice(&body).context("the device authorization answer does not parse")?;
    let url = printable(
        device
            .verification_uri_complete
            .as_deref()
            .unwrap_or(&device.verification_uri),
    );
    writeln!(out, "Open this page in a browser and sign in:\n{url}")?;
    writeln!(
        out,
        "Check that it shows this code:\n{}",
        printable(&device.user_code)
    )?;
    out.flush()?;
    // only a page at the realm's origin is opened
    let at_realm = origin(&url).ok() == origin(&realm.url).ok() || url.starts_with("https://");
    if !options.no_browser && at_realm {
        open_browser(&url);
    }
    let token = poll(&client, &meta, &realm, &device).await?;
    Stored::update(|stored| {
        stored.registries.insert(
            host.clone(),
            Entry {
                username: IDENTITY_TOKEN_USER.to_owned(),
                secret: token,
                revocation_endpoint: meta.revocation_endpoint.clone(),
            },
        );
    })?;
    for path in client_configs::all()? {
        set_helper(&path, &host, true)?;
    }
    writeln!(
        out,
        "Signed in to {host}. docker, podman and skopeo use it through docker-credential-regauth."
    )?;
    Ok(())
}

/// Polls until the user answers or the code runs out: the identity token.
async fn poll(
    client: &reqwest::Client,
    meta: &Metadata,
    realm: &Realm,
    device: &DeviceAnswer,
) -> anyhow::Result<String> {
    let deadline = Instant::now() + Duration::from_secs(device.expires_in.min(3600));
    let mut interval = device.interval.unwrap_or(5).clamp(1, 60);
    let mut form = vec![
        ("grant_type", DEVICE_CODE_GRANT.to_owned()),
        ("device_code", device.device_code.clone()),
        ("client_id", CLIENT_ID.to_owned()),
    ];
    if let Some(service) = &realm.service {
        form.push(("service", service.clone()));
    }
    loop {
        if Instant::now() > deadline {
            bail!("the code expired before the login was approved: run regauth login again");
        }
        tokio::time::sleep(Duration::from_secs(interval)).await;
        let answer = match client.post(&meta.token_endpoint).form(&form).send().await {
            Ok(response) => read(response).await?,
            // a token server restarting: ask again at the next interval
            Err(_) => continue,
        };
        let answer: TokenAnswer = serde_json::from_slice(&answer)
            .context("the token endpoint's answer does not parse")?;
        match (answer.refresh_token, answer.error.as_deref()) {
            (Some(token), _) => return Ok(token),
            (None, Some("authorization_pending" | "temporarily_unavailable")) => {}
            (None, Some("slow_down")) => interval = (interval + 5).min(60),
            (None, Some("access_denied")) => bail!("the login was denied in the browser"),
            (None, Some("expired_token")) => {
                bail!("the code expired before the login was approved: run regauth login again")
            }
            (None, error) => bail!(
                "the token server refused the device login: {}",
                printable(
                    answer
                        .error_description
                        .as_deref()
                        .or(error)
                        .unwrap_or("no reason given")
                )
            ),
        }
    }
}

/// Opens `url` in the user's browser where there is a display; anywhere
/// else the printed URL is the way.
fn open_browser(url: &str) {
    let display = ["DISPLAY", "WAYLAND_DISPLAY"]
        .iter()
        .any(|v| std::env::var_os(v).is_some_and(|d| !d.is_empty()));
    let opener = if cfg!(target_os = "macos") {
        Some("open")
    } else if display {
        Some("xdg-open")
    } else {
        None
    };
    if let Some(opener) = opener {
        let _ = std::process::Command::new(opener)
            .arg(url)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn();
    }
}

/// Revokes the terminal's login to `registry` at its token server and
/// forgets it; whether there was one.
pub async fn logout(
    registry: &str,
    options: &Options,
    out: &mut dyn std::io::Write,
) -> anyhow::Result<bool> {
    let host = registry_host(registry);
    let Some(entry) = Stored::load()?.registries.get(&host).cloned() else {
        for path in client_configs::all()? {
            set_helper(&path, &host, false)?;
        }
        writeln!(out, "Not signed in to {host}.")?;
        return Ok(false);
    };
    if let Some(endpoint) = &entry.revocation_endpoint {
        let client = client(options)?;
        let response = client
            .post(endpoint)
            .form(&[
                ("token", entry.secret.as_str()),
                ("token_type_hint", "refresh_token"),
            ])
            .send()
            .await
            .map_err(|e| {
                anyhow!(
                    "{endpoint}: {}: the login is kept, try again",
                    e.without_url()
                )
            })?;
        if !response.status().is_success() {
            bail!(
                "the token server did not revoke the login ({}): it is kept, try again",
                response.status()
            );
        }
    }
    Stored::update(|stored| stored.registries.remove(&host))?;
    for path in client_configs::all()? {
        set_helper(&path, &host, false)?;
    }
    writeln!(out, "Signed out of {host}.")?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    #[test]
    fn server_text_reaches_the_terminal_without_escapes() {
        assert_eq!(super::printable("BCDF-GHJK\u{1b}[2J\r\n"), "BCDF-GHJK[2J");
    }

    #[test]
    fn endpoints_must_be_at_the_realm() {
        let realm = super::Realm {
            url: "https://auth.corp/auth".into(),
            service: None,
        };
        let meta = |device: &str| super::Metadata {
            token_endpoint: "https://auth.corp/auth".into(),
            device_authorization_endpoint: Some(device.into()),
            revocation_endpoint: None,
        };
        assert!(super::check_endpoints(&meta("https://auth.corp/auth/device"), &realm).is_ok());
        for elsewhere in [
            "https://evil.test/auth/device",
            "http://auth.corp/auth/device",
            "https://auth.corp:444/x",
        ] {
            assert!(
                super::check_endpoints(&meta(elsewhere), &realm).is_err(),
                "{elsewhere}"
            );
        }
        let plain = super::Realm {
            url: "http://auth.corp/auth".into(),
            service: None,
        };
        let options = super::Options::default();
        assert!(super::check_realm(&plain, &options).is_err());
        let local = super::Realm {
            url: "http://localhost:5001/auth".into(),
            service: None,
        };
        assert!(super::check_realm(&local, &options).is_ok());
    }

    #[test]
    fn loopback_registries_are_known() {
        for host in [
            "localhost:5000",
            "127.0.0.1:5000",
            "[::1]:5000",
            "127.0.0.1",
        ] {
            assert!(super::loopback(host), "{host}");
        }
        for host in ["registry.corp", "10.0.0.1:5000", "localhost.evil.com"] {
            assert!(!super::loopback(host), "{host}");
        }
    }
}
