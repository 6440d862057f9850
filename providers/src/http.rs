//! The one HTTPS client of the providers (the TLS of [`crate::client_tls`],
//! redirects never followed, a timeout on every call) and answers read
//! with a bound, so that no identity provider can make regauth read
//! without end.

use crate::{Error, Roots};

/// Upper bound on the body of an identity provider's answer.
pub const MAX_UPSTREAM_BODY: usize = 1024 * 1024;

/// The one HTTPS client builder: the TLS above (system roots plus
/// `ca_file`), redirects never followed (a token must not leave the
/// origin it was meant for), and `timeout` for connecting and for the
/// whole call.
pub fn http_client(
    ca_file: Option<&std::path::Path>,
    timeout: std::time::Duration,
) -> Result<reqwest::Client, Error> {
    reqwest::Client::builder()
        .use_preconfigured_tls(crate::client_tls(ca_file, Roots::SystemAnd)?)
        .redirect(reqwest::redirect::Policy::none())
        .timeout(timeout)
        .connect_timeout(timeout)
        .build()
        .map_err(|e| Error::Config(format!("HTTP client: {e}")))
}

/// A client that POSTs JSON over HTTPS (or to loopback http) and reads a
/// bounded answer: for the server's webhooks, which must not speak HTTP
/// themselves, and the authentication webhook.
pub struct JsonClient {
    client: reqwest::Client,
    max_response_bytes: usize,
}

impl JsonClient {
    /// A client with this timeout and answer bound, trusting the system's
    /// certificate authorities.
    pub fn new(timeout: std::time::Duration, max_response_bytes: usize) -> Result<Self, Error> {
        Self::with_ca_file(None, timeout, max_response_bytes)
    }

    /// A client with this timeout and answer bound that also trusts the
    /// certificate authorities of `ca_file`.
    pub fn with_ca_file(
        ca_file: Option<&std::path::Path>,
        timeout: std::time::Duration,
        max_response_bytes: usize,
    ) -> Result<Self, Error> {
        Ok(Self {
            client: http_client(ca_file, timeout)?,
            max_response_bytes,
        })
    }

    /// POSTs `body` (JSON) to `url`: the status and the body of the answer.
    pub async fn post(&self, url: &str, body: Vec<u8>) -> Result<(u16, Vec<u8>), String> {
        let response = self
            .client
            .post(url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body)
            .send()
            .await
            .map_err(|e| e.without_url().to_string())?;
        let status = response.status().as_u16();
        Ok((
            status,
            body_limited(response, self.max_response_bytes).await?,
        ))
    }
}

/// Reads a response body of at most `limit` bytes.
pub async fn body_limited(
    mut response: reqwest::Response,
    limit: usize,
) -> Result<Vec<u8>, String> {
    let too_large = || format!("the answer is larger than {limit} bytes");
    if response.content_length().is_some_and(|n| n > limit as u64) {
        return Err(too_large());
    }
    let mut body = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| e.without_url().to_string())?
    {
        if body.len() + chunk.len() > limit {
            return Err(too_large());
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// Reads a JSON body of at most `limit` bytes.
pub async fn json_limited<T: serde::de::DeserializeOwned>(
    response: reqwest::Response,
    limit: usize,
) -> Result<T, String> {
    let body = body_limited(response, limit).await?;
    serde_json::from_slice(&body).map_err(|e| e.to_string())
}
