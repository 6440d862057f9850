//! A small OpenID Connect issuer inside the test process: discovery and a
//! JWKS on a loopback port, and ES256 tokens with whatever claims a test
//! chooses (a CI job's `repository` and `ref`, a `sub` that collides with a
//! static user). It counts discovery and JWKS fetches, so tests can prove
//! how much IdP traffic a flood of forged tokens causes.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::routing::get;
use axum::Router;

#[derive(Default)]
pub struct Fetches {
    pub discovery: AtomicUsize,
    pub jwks: AtomicUsize,
}

pub struct Issuer {
    pub url: String,
    pub fetches: Arc<Fetches>,
    failing: Arc<AtomicBool>,
    kid: String,
    key: jsonwebtoken::EncodingKey,
    /// Stops the server when dropped.
    _served: super::Served,
}

#[derive(Clone)]
struct Shared {
    url: String,
    jwks: serde_json::Value,
    fetches: Arc<Fetches>,
    failing: Arc<AtomicBool>,
}

async fn discovery(
    State(s): State<Shared>,
) -> Result<axum::Json<serde_json::Value>, axum::http::StatusCode> {
    s.fetches.discovery.fetch_add(1, Ordering::SeqCst);
    if s.failing.load(Ordering::SeqCst) {
        return Err(axum::http::StatusCode::SERVICE_UNAVAILABLE);
    }
    Ok(axum::Json(serde_json::json!({
        "issuer": s.url,
        "jwks_uri": format!("{}/jwks", s.url),
        "token_endpoint": format!("{}/token", s.url),
        "authorization_endpoint": format!("{}/authorize", s.url),
        "response_types_supported": ["code"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["ES256"],
    })))
}

async fn jwks(State(s): State<Shared>) -> axum::Json<serde_json::Value> {
    s.fetches.jwks.fetch_add(1, Ordering::SeqCst);
    axum::Json(s.jwks.clone())
}

/// A new signing key of `kind`: its private key's PEM, and the key as
/// regauth loads it (for its JWK and `kid`).
pub fn signing_key(
    kind: regauth::keys::KeyType,
    name: &str,
) -> (String, regauth::keys::SigningKey) {
    let (key_pem, cert_pem) =
        regauth::keys::generate(kind, name, Duration::from_secs(3600)).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (k, c) = (dir.path().join("k"), dir.path().join("c"));
    std::fs::write(&k, &key_pem).unwrap();
    std::fs::write(&c, &cert_pem).unwrap();
    let signing = regauth::keys::SigningKey::load(&k, &c).unwrap();
    (key_pem, signing)
}

impl Issuer {
    pub async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr: SocketAddr = listener.local_addr().unwrap();
        let url = format!("http://{addr}");
        let (key_pem, signing) = signing_key(regauth::keys::KeyType::Es256, "issuer");
        let mut jwk = signing.jwk();
        jwk.as_object_mut().unwrap().remove("x5c");
        let kid = signing.kid.clone();
        let fetches = Arc::new(Fetches::default());
        let failing = Arc::new(AtomicBool::new(false));
        let shared = Shared {
            url: url.clone(),
            jwks: serde_json::json!({ "keys": [jwk] }),
            fetches: fetches.clone(),
            failing: failing.clone(),
        };
        let app = Router::new()
            .route("/.well-known/openid-configuration", get(discovery))
            .route("/jwks", get(jwks))
            .with_state(shared);
        let served = super::Served::start(listener, app);
        Self {
            url,
            fetches,
            failing,
            kid,
            key: jsonwebtoken::EncodingKey::from_ec_pem(key_pem.as_bytes()).unwrap(),
            _served: served,
        }
    }

    /// Makes discovery answer 503 (an IdP outage), or work again.
    pub fn fail(&self, failing: bool) {
        self.failing.store(failing, Ordering::SeqCst);
    }

    /// A token with these claims plus `iss`, `aud = "registry"`, `iat`,
    /// `nbf` and `exp` (in `lifetime` seconds) unless the claims set them.
    pub fn token(&self, claims: serde_json::Value, lifetime: i64) -> String {
        self.token_with_kid(claims, lifetime, &self.kid.clone())
    }

    /// Like [`Issuer::token`], with any `kid` in the header.
    pub fn token_with_kid(&self, claims: serde_json::Value, lifetime: i64, kid: &str) -> String {
        let now = regauth_providers::clock::unix_seconds() as i64;
        let mut body = serde_json::json!({
            "iss": self.url,
            "aud": "registry",
            "iat": now,
            "nbf": now - 5,
            "exp": now + lifetime,
        });
        for (k, v) in claims.as_object().unwrap() {
            body[k] = v.clone();
        }
        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256);
        header.kid = Some(kid.to_owned());
        jsonwebtoken::encode(&header, &body, &self.key).unwrap()
    }

    /// The `[[provider]]` block for this issuer.
    pub fn provider_toml(&self, name: &str, extra: &str) -> String {
        format!(
            "\n[[provider]]\nname = \"{name}\"\nkind = \"oidc\"\nissuer = \"{}\"\naccess_tokens = true\naudiences = [\"registry\"]\ntimeout = \"2s\"\n{extra}\n",
            self.url
        )
    }
}
