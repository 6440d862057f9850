//! `regauth-kubelet-credential-provider`: the kubelet's image credential
//! provider exec plugin (`credentialprovider.kubelet.k8s.io/v1`) for
//! regauth's service-account-token mode (KEP-4412, the kubelet feature
//! gate `KubeletServiceAccountTokenForCredentialProviders`, beta and on by
//! default since Kubernetes 1.34).
//!
//! The kubelet runs it for an image pull it holds no cached credentials
//! for, with a `CredentialProviderRequest` on stdin. With `tokenAttributes`
//! in the provider's `CredentialProviderConfig` the request carries a
//! service account token of the pod, bound to the pod and issued for the
//! configured audience. The plugin answers with a
//! `CredentialProviderResponse` on stdout: for the image's registry
//! (`host[:port]`, the key the kubelet derives for `cacheKeyType:
//! Registry`), the `--username` and that token as the password. regauth
//! verifies the password as a JWT of the cluster's service account issuer
//! (an `oidc` provider whose `audiences` hold the token's audience); the
//! plugin verifies nothing and makes no network call.
//!
//! With `tokenAttributes` set, the kubelet keys its credential cache by the
//! service account (namespace, name and UID), so a token is never shared
//! across service accounts. The configuration sets `cacheType: Token`,
//! which adds the token itself to the key: the credential is the pod's own
//! token, and `ServiceAccount` would hand one pod's token to every pod of
//! its account. The response's `cacheDuration` is the smaller of
//! `--cache-duration` and the token's remaining life less a minute, read
//! from its `exp` claim without verification; a token within a minute of
//! its expiry gets `0s`, which the kubelet does not cache.
//!
//! Errors go to stderr as one line, with exit status 1. The kubelet logs a
//! failing plugin's stderr, so no message holds the token or any part of
//! it. `deploy/kubernetes/credential-provider/` has the kubelet's
//! configuration.

use std::collections::BTreeMap;
use std::io::{Read as _, Write as _};

use base64::Engine as _;
use serde::Serialize;
use serde_json::{Map, Value};

/// The plugin's name, the prefix of its error lines.
const NAME: &str = "regauth-kubelet-credential-provider";
/// The API version of the requests and responses the plugin speaks.
const API_VERSION: &str = "credentialprovider.kubelet.k8s.io/v1";
/// The largest request read from stdin.
const MAX_REQUEST_BYTES: usize = 1024 * 1024;
/// The part of a token's remaining life the kubelet does not cache it for.
const EXPIRY_MARGIN_SECONDS: u64 = 60;
/// The cache duration without `--cache-duration`: five minutes.
const DEFAULT_CACHE_SECONDS: u64 = 300;
/// The longest duration Go's `time.Duration` holds, in whole seconds.
const MAX_GO_DURATION_SECONDS: u64 = 9_223_372_036;
/// The Basic username without `--username`.
const DEFAULT_USERNAME: &str = "kubernetes";
/// Docker Hub's registry names: no service account token goes there.
const DOCKER_HUB: [&str; 3] = ["docker.io", "index.docker.io", "registry-1.docker.io"];
/// The length of the token fragments no error message may contain.
const FRAGMENT_BYTES: usize = 8;
/// The longest request value an error message quotes.
const MAX_SHOWN_CHARS: usize = 256;

/// The text of `--help`.
const USAGE: &str = "\
usage: regauth-kubelet-credential-provider [--registry HOST]... [--username NAME]
                                           [--cache-duration D]

The kubelet's image credential provider for regauth: it answers a
CredentialProviderRequest (credentialprovider.kubelet.k8s.io/v1) on stdin
with the pod's service account token as the password of the image's
registry. The provider needs tokenAttributes (cacheType: Token) in the
kubelet's CredentialProviderConfig.

  --registry HOST     answer only for this registry (host[:port]; repeatable):
                      the pod's token goes nowhere else, whatever matchImages says
  --username NAME     the Basic username sent with the token (default kubernetes)
  --cache-duration D  the longest time the kubelet caches the credential (300s,
                      5m, 1h; default 5m), never past the token's expiry less 60s
  --help              prints this text
";

/// What the command line asks for.
#[derive(Debug)]
enum Command {
    /// `--help`.
    Help,
    /// Answering a request with these options.
    Respond(Options),
}

/// The plugin's options (the provider's `args` in the kubelet's config).
#[derive(Debug)]
struct Options {
    /// The Basic username sent with the token.
    username: String,
    /// The longest cache duration the response names, in seconds.
    cache_seconds: u64,
    /// The registries answered for (none given: any the kubelet asks for).
    registries: Vec<String>,
}

/// A `CredentialProviderResponse` (`credentialprovider.kubelet.k8s.io/v1`).
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Response<'a> {
    api_version: &'static str,
    kind: &'static str,
    cache_key_type: &'static str,
    cache_duration: String,
    auth: BTreeMap<&'a str, AuthConfig<'a>>,
}

/// The credentials of one registry in a response.
#[derive(Serialize)]
struct AuthConfig<'a> {
    username: &'a str,
    password: &'a str,
}

/// Runs the plugin as the kubelet does: the request on stdin, the
/// response on stdout, an error as one line on stderr. The exit status.
pub fn main(args: &[String]) -> i32 {
    let now = regauth_providers::clock::unix_seconds();
    let result = read_stdin(args).and_then(|input| run(&input, args, now));
    finish(result)
}

/// Answers the request `input` under the command line `args` at `now`
/// (seconds since the Unix epoch): the bytes for stdout, or the error.
fn run(input: &[u8], args: &[String], now: u64) -> Result<Vec<u8>, String> {
    match parse_args(args)? {
        Command::Help => Ok(USAGE.as_bytes().to_vec()),
        Command::Respond(options) => respond(input, &options, now),
    }
}

/// The request on stdin, read up to one byte past the limit; nothing for
/// `--help`.
fn read_stdin(args: &[String]) -> Result<Vec<u8>, String> {
    if matches!(parse_args(args), Ok(Command::Help)) {
        return Ok(Vec::new());
    }
    let mut input = Vec::new();
    std::io::stdin()
        .lock()
        .take(MAX_REQUEST_BYTES as u64 + 1)
        .read_to_end(&mut input)
        .map_err(|e| format!("reading the request from stdin: {e}"))?;
    Ok(input)
}

/// Writes `result` out (the answer to stdout, an error as one line to
/// stderr); the exit status.
fn finish(result: Result<Vec<u8>, String>) -> i32 {
    let written = result.and_then(|answer| {
        let mut out = std::io::stdout().lock();
        (out.write_all(&answer).and_then(|()| out.flush()))
            .map_err(|e| format!("writing the response to stdout: {e}"))
    });
    match written {
        Ok(()) => 0,
        Err(message) => {
            eprintln!("{NAME}: {}", one_line(&message));
            1
        }
    }
}

/// `text` with every control character (a line break) as a space.
fn one_line(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

/// The command line `args`.
fn parse_args(args: &[String]) -> Result<Command, String> {
    let mut options = Options {
        username: DEFAULT_USERNAME.to_owned(),
        cache_seconds: DEFAULT_CACHE_SECONDS,
        registries: Vec::new(),
    };
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        let (name, inline) = match arg.split_once('=') {
            Some((name, value)) if name.starts_with("--") => (name, Some(value)),
            _ => (arg.as_str(), None),
        };
        let mut value = || {
            inline
                .map(str::to_owned)
                .or_else(|| args.next().cloned())
                .ok_or_else(|| format!("{name} takes a value: see --help"))
        };
        match name {
            "--help" | "-h" => return Ok(Command::Help),
            "--username" => options.username = username(value()?)?,
            "--registry" => options.registries.push(value()?.to_ascii_lowercase()),
            "--cache-duration" => {
                let text = value()?;
                options.cache_seconds = parse_duration(&text)
                    .map_err(|e| format!("--cache-duration {}: {e}", shown(&text)))?;
            }
            _ => return Err(format!("unknown argument {}: see --help", shown(arg))),
        }
    }
    Ok(Command::Respond(options))
}

/// `name` as a Basic username: not empty, without a colon or a control
/// character.
fn username(name: String) -> Result<String, String> {
    if name.is_empty() || name.contains(':') || name.chars().any(char::is_control) {
        return Err("--username takes a name without colons or control characters".to_owned());
    }
    Ok(name)
}

/// The seconds of a Go duration made of whole hours, minutes and seconds
/// (`300s`, `5m`, `1h30m`, `0`).
fn parse_duration(text: &str) -> Result<u64, String> {
    const EXPECTED: &str = "expected whole hours, minutes and seconds such as 300s, 5m or 1h";
    if text == "0" {
        return Ok(0);
    }
    if text.is_empty() {
        return Err(EXPECTED.to_owned());
    }
    let mut total: u64 = 0;
    let mut rest = text;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        let number: u64 = rest[..digits].parse().map_err(|_| EXPECTED.to_owned())?;
        let scale = match rest[digits..].chars().next() {
            Some('h') => 3600,
            Some('m') => 60,
            Some('s') => 1,
            _ => return Err(EXPECTED.to_owned()),
        };
        total = number
            .checked_mul(scale)
            .and_then(|seconds| total.checked_add(seconds))
            .filter(|&seconds| seconds <= MAX_GO_DURATION_SECONDS)
            .ok_or_else(|| "longer than a Go duration holds".to_owned())?;
        rest = &rest[digits + 1..];
    }
    Ok(total)
}

/// The response to the request `input`, with no fragment of the request's
/// token in an error.
fn respond(input: &[u8], options: &Options, now: u64) -> Result<Vec<u8>, String> {
    if input.len() > MAX_REQUEST_BYTES {
        return Err(format!(
            "the request is larger than {MAX_REQUEST_BYTES} bytes"
        ));
    }
    let fields = parse_object(input)?;
    let token = match fields.get("serviceAccountToken") {
        Some(Value::String(token)) => Some(token.as_str()),
        _ => None,
    };
    answer(&fields, options, now).map_err(|message| without_token(message, token))
}

/// The JSON object of the request `input`. Errors name where the JSON
/// breaks, never what it holds.
fn parse_object(input: &[u8]) -> Result<Map<String, Value>, String> {
    match serde_json::from_slice(input) {
        Ok(Value::Object(fields)) => Ok(fields),
        Ok(_) => Err("the request is not a JSON object".to_owned()),
        Err(e) if e.is_eof() => Err("the request on stdin is empty or cut short".to_owned()),
        Err(e) => Err(format!(
            "the request is not JSON (at line {} column {})",
            e.line(),
            e.column()
        )),
    }
}

/// The response to the request `fields`.
fn answer(fields: &Map<String, Value>, options: &Options, now: u64) -> Result<Vec<u8>, String> {
    expect(fields, "apiVersion", API_VERSION)?;
    expect(fields, "kind", "CredentialProviderRequest")?;
    let image = text(fields, "image")?
        .filter(|image| !image.is_empty())
        .ok_or("the request names no image")?;
    let token = text(fields, "serviceAccountToken")?
        .filter(|token| !token.is_empty())
        .ok_or(
            "the request carries no serviceAccountToken: this plugin only passes on service \
             account tokens, so set tokenAttributes (serviceAccountTokenAudience, \
             cacheType: Token, requireServiceAccount: true) for it in the kubelet's \
             CredentialProviderConfig",
        )?;
    let registry = registry_host(image)?;
    if !options.registries.is_empty()
        && !options.registries.contains(&registry.to_ascii_lowercase())
    {
        return Err(format!(
            "the image's registry {} is none of --registry: the pod's token goes to those alone",
            shown(registry)
        ));
    }
    let seconds = cache_seconds(options.cache_seconds, token_expiry(token), now);
    let response = Response {
        api_version: API_VERSION,
        kind: "CredentialProviderResponse",
        cache_key_type: "Registry",
        cache_duration: format!("{seconds}s"),
        auth: BTreeMap::from([(
            registry,
            AuthConfig {
                username: &options.username,
                password: token,
            },
        )]),
    };
    let mut out = serde_json::to_vec(&response)
        .map_err(|_| "the response could not be encoded".to_owned())?;
    out.push(b'\n');
    Ok(out)
}

/// The string field `name` of the request, if present.
fn text<'a>(fields: &'a Map<String, Value>, name: &str) -> Result<Option<&'a str>, String> {
    match fields.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(value)) => Ok(Some(value)),
        Some(_) => Err(format!("the request's {name} is not a string")),
    }
}

/// Checks that the request's field `name` is `want`.
fn expect(fields: &Map<String, Value>, name: &str, want: &str) -> Result<(), String> {
    match text(fields, name)? {
        Some(value) if value == want => Ok(()),
        Some(value) => Err(format!(
            "the request's {name} is {}, not {want}: this plugin speaks {API_VERSION} \
             (the provider's apiVersion in the kubelet's CredentialProviderConfig)",
            shown(value)
        )),
        None => Err(format!(
            "the request has no {name}: this plugin reads a CredentialProviderRequest of {API_VERSION}"
        )),
    }
}

/// `value` quoted, or a placeholder when it is long or holds anything but
/// printable ASCII.
fn shown(value: &str) -> String {
    if value.len() <= MAX_SHOWN_CHARS && value.chars().all(|c| c.is_ascii_graphic()) {
        format!("\"{value}\"")
    } else {
        "a value not shown".to_owned()
    }
}

/// The registry (`host[:port]`) of `image`, as the kubelet derives the key of
/// `cacheKeyType: Registry`: the part before the first `/`. An image without
/// a registry host (Docker Hub's shorthand, `ubuntu` or `library/ubuntu`)
/// or on Docker Hub is an error: regauth's registry is never Docker Hub.
fn registry_host(image: &str) -> Result<&str, String> {
    let no_registry = || {
        format!(
            "the image {} names no registry host (such as registry.corp:5000/team/app): \
             the service account token goes only to regauth's registry",
            shown(image)
        )
    };
    let Some((host, repository)) = image.split_once('/') else {
        return Err(no_registry());
    };
    let names_a_host = host.contains(['.', ':'])
        || host == "localhost"
        || host.chars().any(|c| c.is_ascii_uppercase());
    if !names_a_host {
        return Err(no_registry());
    }
    if !valid_host(host) || repository.is_empty() {
        return Err(format!(
            "the image {} does not start with a registry host[:port] and a repository",
            shown(image)
        ));
    }
    if DOCKER_HUB.iter().any(|hub| host.eq_ignore_ascii_case(hub)) {
        return Err(format!(
            "the image {} is on Docker Hub, which never gets the service account token: \
             the provider's matchImages should name regauth's registry alone",
            shown(image)
        ));
    }
    Ok(host)
}

/// Whether `host` is a DNS name, an IPv4 address or a bracketed IPv6
/// address, with an optional port.
fn valid_host(host: &str) -> bool {
    let (name, port) = if let Some(inner) = host.strip_prefix('[') {
        let Some((address, after)) = inner.split_once(']') else {
            return false;
        };
        let valid_address = address.contains(':')
            && address
                .chars()
                .all(|c| c.is_ascii_hexdigit() || c == ':' || c == '.');
        if !valid_address {
            return false;
        }
        match after {
            "" => (None, None),
            _ => match after.strip_prefix(':') {
                Some(port) => (None, Some(port)),
                None => return false,
            },
        }
    } else {
        match host.split_once(':') {
            Some((name, port)) => (Some(name), Some(port)),
            None => (Some(host), None),
        }
    };
    let valid_port = port.is_none_or(|port| {
        !port.is_empty()
            && port.chars().all(|c| c.is_ascii_digit())
            && port.parse::<u16>().is_ok_and(|port| port > 0)
    });
    let valid_name = name.is_none_or(|name| {
        name.split('.').all(|label| {
            !label.is_empty()
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        })
    });
    valid_port && valid_name
}

/// The `exp` claim of the JWT `token`, read without verifying the token;
/// `None` when it has none readable. An `exp` before the epoch is 0.
fn token_expiry(token: &str) -> Option<u64> {
    let payload = token.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .ok()?;
    let claims: Value = serde_json::from_slice(&bytes).ok()?;
    let Value::Number(exp) = claims.get("exp")? else {
        return None;
    };
    if let Some(seconds) = exp.as_i64() {
        return Some(seconds.max(0).unsigned_abs());
    }
    exp.as_u64().or_else(|| {
        exp.as_f64()
            .filter(|seconds| seconds.is_finite())
            .map(|seconds| seconds.max(0.0) as u64)
    })
}

/// The cache duration of a response, in seconds: the smaller of `flag`
/// and the life left at `now` of a token expiring at `expiry` less the
/// margin; `flag` for a token without a readable expiry, and 0 for one
/// within the margin of it.
fn cache_seconds(flag: u64, expiry: Option<u64>, now: u64) -> u64 {
    let Some(expiry) = expiry else {
        return flag;
    };
    let left = expiry.saturating_sub(now);
    if left <= EXPIRY_MARGIN_SECONDS {
        0
    } else {
        flag.min(left - EXPIRY_MARGIN_SECONDS)
    }
}

/// `message`, or a message in its place when it holds the token or a
/// fragment of it (`FRAGMENT_BYTES` long, or all of a shorter token).
fn without_token(message: String, token: Option<&str>) -> String {
    let Some(token) = token.filter(|token| !token.is_empty()) else {
        return message;
    };
    let leaks = if token.len() < FRAGMENT_BYTES {
        message.contains(token)
    } else {
        token.as_bytes().windows(FRAGMENT_BYTES).any(|fragment| {
            message
                .as_bytes()
                .windows(FRAGMENT_BYTES)
                .any(|part| part == fragment)
        })
    };
    if leaks {
        "the request was refused; the reason is withheld because it would show part of \
         the service account token"
            .to_owned()
    } else {
        message
    }
}

#[cfg(test)]
mod tests;
