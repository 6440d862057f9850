//! The `webhook` provider: an HTTP service of your own checks the
//! credentials (docker_auth's `ext_auth`, as a service).
//!
//! It receives `POST {"username": …, "secret": …}` and answers 200 with
//! `{"result": "authenticated", "subject": …, "groups": […], "claims":
//! {…}}`, `{"result": "rejected"}` (this service owns the user and the
//! secret is wrong) or `{"result": "unknown"}` (not its user: the next
//! provider is asked). Anything else (another status, a timeout, an answer
//! that does not parse or is larger than `max_response_bytes`) is
//! "unavailable": a 503, and the secret goes nowhere else.
//!
//! The secret travels only over https or a unix socket (`socket = "…"`),
//! never over plain http. Redirects are not followed.

use std::path::PathBuf;
use std::time::Duration;

use async_trait::async_trait;
use secrecy::ExposeSecret;
use serde::Deserialize;

use crate::{
    Credentials, Error, Identity, IdentityProvider, JsonClient, Outcome, Rejection, Renewal,
    Seconds,
};

/// `[[provider]] kind = "webhook"` as written in the configuration file.
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WebhookConfig {
    /// `https://auth.internal/check` (https only).
    pub url: Option<String>,
    /// A unix socket to POST to instead of a URL.
    pub socket: Option<PathBuf>,
    /// The request path on the socket.
    pub path: String,
    /// PEM CA bundle for the service's certificate (added to system roots).
    pub ca_file: Option<PathBuf>,
    /// How long to wait for the service's answer.
    pub timeout: Seconds,
    /// Upper bound on the size of the answer, in bytes.
    pub max_response_bytes: usize,
}

impl Default for WebhookConfig {
    fn default() -> Self {
        Self {
            url: None,
            socket: None,
            path: "/".into(),
            ca_file: None,
            timeout: Seconds(Duration::from_secs(5)),
            max_response_bytes: 64 * 1024,
        }
    }
}

impl WebhookConfig {
    /// Checks what can be checked without the network.
    pub fn validate(&self) -> Result<(), crate::Invalid> {
        match (&self.url, &self.socket) {
            (Some(url), None) if url.starts_with("https://") => Ok(()),
            (Some(_), None) => Err(crate::Invalid {
                key: "url",
                message: "must be https:// (the secret must not travel in clear text); use socket = \"/path\" for a local service".into(),
            }),
            (None, Some(_)) if self.path.starts_with('/') => Ok(()),
            (None, Some(_)) => Err(crate::Invalid {
                key: "path",
                message: "must start with /".into(),
            }),
            (Some(_), Some(_)) => Err(crate::Invalid {
                key: "url",
                message: "set url or socket, not both".into(),
            }),
            (None, None) => Err(crate::Invalid {
                key: "url",
                message: "set url = \"https://...\" or socket = \"/run/...\"".into(),
            }),
        }
    }
}

enum Transport {
    Https { url: String, client: JsonClient },
    Socket { path: PathBuf, request_path: String },
}

/// The webhook provider.
pub struct Webhook {
    name: String,
    config: WebhookConfig,
    transport: Transport,
}

#[derive(serde::Serialize)]
struct Ask<'a> {
    username: &'a str,
    secret: &'a str,
}

#[derive(Deserialize)]
#[serde(tag = "result", rename_all = "lowercase")]
enum Answer {
    Authenticated {
        subject: String,
        #[serde(default)]
        groups: Vec<String>,
        #[serde(default)]
        claims: crate::ClaimSet,
    },
    Rejected,
    Unknown,
}

impl Webhook {
    /// The provider for this configuration.
    pub fn new(name: &str, config: &WebhookConfig) -> Result<Self, Error> {
        config.validate()?;
        let transport = match (&config.url, &config.socket) {
            (Some(url), _) => Transport::Https {
                url: url.clone(),
                client: JsonClient::with_ca_file(
                    config.ca_file.as_deref(),
                    config.timeout.0,
                    config.max_response_bytes,
                )?,
            },
            (None, Some(path)) => Transport::Socket {
                path: path.clone(),
                request_path: config.path.clone(),
            },
            (None, None) => return Err(Error::Config("url or socket is required".into())),
        };
        Ok(Self {
            name: name.to_owned(),
            config: config.clone(),
            transport,
        })
    }

    /// POSTs the question; the status and body of the answer.
    async fn post(&self, body: Vec<u8>) -> Result<(u16, Vec<u8>), String> {
        match &self.transport {
            Transport::Https { url, client } => client.post(url, body).await,
            Transport::Socket { path, request_path } => {
                post_unix(path, request_path, body, self.config.max_response_bytes).await
            }
        }
    }
}

/// One HTTP/1.1 POST over a unix socket.
async fn post_unix(
    socket: &std::path::Path,
    path: &str,
    body: Vec<u8>,
    limit: usize,
) -> Result<(u16, Vec<u8>), String> {
    use http_body_util::BodyExt as _;
    let stream = tokio::net::UnixStream::connect(socket)
        .await
        .map_err(|e| format!("{}: {e}", socket.display()))?;
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .map_err(|e| e.to_string())?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    let request = hyper::Request::post(path)
        .header(hyper::header::HOST, "localhost")
        .header(hyper::header::CONTENT_TYPE, "application/json")
        .body(http_body_util::Full::new(bytes::Bytes::from(body)))
        .map_err(|e| e.to_string())?;
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| e.to_string())?;
    let status = response.status().as_u16();
    let collected = http_body_util::Limited::new(response.into_body(), limit)
        .collect()
        .await
        .map_err(|_| format!("the answer is larger than {limit} bytes or broken"))?;
    Ok((status, collected.to_bytes().to_vec()))
}

#[async_trait]
impl IdentityProvider for Webhook {
    fn name(&self) -> &str {
        &self.name
    }

    fn kind(&self) -> crate::ProviderKind {
        crate::ProviderKind::Webhook
    }

    async fn authenticate(&self, credentials: &Credentials) -> Outcome {
        let secret = credentials.secret.expose_secret();
        if secret.is_empty() {
            return Outcome::Rejected(Rejection::EmptySecret);
        }
        let ask = Ask {
            username: &credentials.username,
            secret,
        };
        let body = match serde_json::to_vec(&ask) {
            Ok(body) => body,
            Err(e) => return Outcome::Unavailable(Error::Internal(e.to_string())),
        };
        let unavailable = |what: String| {
            Outcome::Unavailable(Error::Upstream(format!("authentication webhook: {what}")))
        };
        let timeout = self.config.timeout.0;
        let (status, body) = match tokio::time::timeout(timeout, self.post(body)).await {
            Ok(Ok(answer)) => answer,
            Ok(Err(e)) => return unavailable(e),
            Err(_) => return unavailable(format!("no answer within {timeout:?}")),
        };
        if status != 200 {
            return unavailable(format!("answered {status}"));
        }
        match serde_json::from_slice::<Answer>(&body) {
            Ok(Answer::Authenticated {
                subject,
                groups,
                claims,
            }) if !subject.is_empty() => {
                let mut identity = Identity::new(subject, self.name.clone()).with_groups(groups);
                identity.claims = claims;
                identity.renewal = Renewal::Snapshot;
                Outcome::Authenticated(identity)
            }
            Ok(Answer::Authenticated { .. }) => unavailable("an empty subject".into()),
            Ok(Answer::Rejected) => Outcome::Rejected(Rejection::WrongSecret),
            Ok(Answer::Unknown) => Outcome::NotMine,
            Err(e) => unavailable(format!("unusable answer: {e}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_never_travel_in_clear_text() {
        let config =
            |json: serde_json::Value| -> WebhookConfig { serde_json::from_value(json).unwrap() };
        assert!(config(serde_json::json!({"url": "http://auth.internal/"}))
            .validate()
            .is_err());
        assert!(config(serde_json::json!({"url": "https://auth.internal/"}))
            .validate()
            .is_ok());
        assert!(config(serde_json::json!({"socket": "/run/auth.sock"}))
            .validate()
            .is_ok());
        assert!(config(serde_json::json!({})).validate().is_err());
        assert!(
            config(serde_json::json!({"url": "https://a/", "socket": "/s"}))
                .validate()
                .is_err()
        );
    }
}
