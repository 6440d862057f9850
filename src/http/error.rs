//! The one edge type that turns failures into responses: the registry's JSON
//! error body (`{"errors":[{"code","message"}]}`), plus the OAuth2 `error`
//! field on the POST endpoint, with the right status and headers.
//!
//! Messages here are for clients: they never say why a login failed (that
//! goes to the log) and never carry internal text or secrets.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

/// An error response: status, registry error code and a message for the client.
#[derive(Debug)]
pub struct ApiError {
    /// The HTTP status.
    pub status: StatusCode,
    /// The registry error code, e.g. `UNAUTHORIZED`.
    pub code: &'static str,
    /// What the client is told.
    pub message: String,
    /// RFC 6749 error code, for the OAuth2 POST flow.
    pub oauth: Option<&'static str>,
    /// Realm for `WWW-Authenticate: Basic` on 401.
    pub realm: Option<String>,
    /// Seconds for the `Retry-After` header, if any.
    pub retry_after: Option<u64>,
}

impl ApiError {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            oauth: None,
            realm: None,
            retry_after: None,
        }
    }

    /// A 400 (`BAD_REQUEST`, OAuth2 `invalid_request`).
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "BAD_REQUEST", message).oauth("invalid_request")
    }

    /// A 401 asking for Basic credentials in `realm` (OAuth2 `invalid_grant`).
    pub fn unauthorized(realm: &str) -> Self {
        let mut e = Self::new(
            StatusCode::UNAUTHORIZED,
            "UNAUTHORIZED",
            "authentication required: invalid username, password or token",
        )
        .oauth("invalid_grant");
        e.realm = Some(realm.to_owned());
        e
    }

    /// A 503 with `Retry-After` in seconds (OAuth2 `temporarily_unavailable`).
    pub fn unavailable(message: impl Into<String>, retry_after: u64) -> Self {
        let mut e = Self::new(StatusCode::SERVICE_UNAVAILABLE, "UNAVAILABLE", message)
            .oauth("temporarily_unavailable");
        e.retry_after = Some(retry_after);
        e
    }

    /// A 404, without an OAuth2 code.
    pub fn not_found() -> Self {
        Self::new(StatusCode::NOT_FOUND, "NOT_FOUND", "not found")
    }

    /// A 500 that tells the client nothing but to see the server log.
    pub fn internal() -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "INTERNAL",
            "internal error; see the server log",
        )
    }

    /// Sets the RFC 6749 error code.
    pub fn oauth(mut self, code: &'static str) -> Self {
        self.oauth = Some(code);
        self
    }

    /// Replaces the registry error code.
    pub fn with_code(mut self, code: &'static str) -> Self {
        self.code = code;
        self
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut body = serde_json::json!({
            "errors": [{ "code": self.code, "message": self.message }],
        });
        if let Some(oauth) = self.oauth {
            body["error"] = oauth.into();
            body["error_description"] = self.message.clone().into();
        }
        let mut response = (self.status, axum::Json(body)).into_response();
        let headers = response.headers_mut();
        if let Some(realm) = &self.realm {
            let value = format!(
                "Basic realm=\"{}\", charset=\"UTF-8\"",
                realm.replace('"', "")
            );
            if let Ok(v) = HeaderValue::from_str(&value) {
                headers.insert(header::WWW_AUTHENTICATE, v);
            }
        }
        if let Some(secs) = self.retry_after {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        response
    }
}

/// What a device-code poll that gets no token is told.
fn device_message(wait: crate::issue::DeviceWait) -> &'static str {
    use crate::issue::DeviceWait;
    match wait {
        DeviceWait::Pending => "waiting for the user to approve the device login",
        DeviceWait::SlowDown => "polling too fast: wait the interval, plus 5 seconds",
        DeviceWait::Expired => "the device code expired: start again",
        DeviceWait::Denied => "the user denied the device login",
        DeviceWait::InvalidGrant => "not a device code of this client, or used already",
    }
}

/// The answer to a refused token request; a 401 asks for Basic
/// credentials in `realm`.
pub fn refused(refusal: crate::issue::Refusal, realm: &str) -> Response {
    use crate::issue::Refusal;
    let unauthorized = |message: Option<String>| {
        let mut e = ApiError::unauthorized(realm);
        if let Some(message) = message {
            e.message = message;
        }
        e
    };
    let error = match refusal {
        Refusal::BadRequest { message } => ApiError::bad_request(message),
        Refusal::UnsupportedGrant { .. } => ApiError::bad_request(
            "unsupported grant_type (use password, refresh_token or the device code grant)",
        )
        .with_code("UNSUPPORTED")
        .oauth("unsupported_grant_type"),
        // Only a message the user can act on is shown; the reason stays
        // in the log.
        Refusal::Unauthorized { user_action, .. } => unauthorized(user_action),
        Refusal::Throttled { .. } => unauthorized(None),
        Refusal::LoginAgain { .. } => unauthorized(Some(
            "the identity token is no longer valid: log in again".into(),
        )),
        Refusal::Unavailable {
            message,
            retry_after,
            ..
        } => ApiError::unavailable(message, retry_after),
        Refusal::RefreshDisabled => ApiError::not_found(),
        Refusal::Device { wait, .. } => ApiError::bad_request(device_message(wait))
            .with_code("DEVICE_LOGIN")
            .oauth(wait.code()),
        Refusal::Internal { reason } => {
            tracing::error!(reason = %reason, "internal error answering a token request");
            ApiError::internal()
        }
    };
    error.into_response()
}
