//! A Microsoft Entra ID tenant and Microsoft Graph, written from
//! Microsoft's documentation (there is no local Entra): the v2.0
//! discovery document and keys, the token endpoint (client credentials,
//! the password grant with its AADSTS refusals, the authorization code),
//! an authorize endpoint with a sign-in form like Microsoft's
//! (`loginfmt`, `passwd`), v1.0 and v2.0 tokens with Entra's claims
//! (`tid`, `oid`, `groups` or the overage's `_claim_names`, `roles`), and
//! Graph's `transitiveMemberOf` (pages of 100 with `@odata.nextLink`), and
//! nothing else (the app holds `GroupMember.Read.All` alone). It counts
//! Graph calls and can throttle (429 with `Retry-After`) or fail (503).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering::SeqCst};
use std::sync::{Arc, Mutex};

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Form, Json, Router};
use serde_json::{json, Value};

pub const TENANT: &str = "8d9e0f1a-2b3c-4d5e-8f70-1a2b3c4d5e6f";
pub const OTHER_TENANT: &str = "0d1e2f30-4152-6374-8596-a7b8c9d0e1f2";
pub const CLIENT_ID: &str = "6c1b7d2e-3f40-4a51-9b62-7c83d94ea5f6";
pub const CLIENT_SECRET: &str = "entra-app-secret";
/// The group every test user of the platform team is in.
pub const PLATFORM: &str = "a1b2c3d4-0000-4000-8000-000000000001";

/// How Graph answers.
#[derive(Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Graph {
    Up = 0,
    Throttled = 1,
    Down = 2,
}

/// A user of the tenant.
struct User {
    name: &'static str,
    oid: String,
    groups: Vec<String>,
    roles: Vec<&'static str>,
    mfa: bool,
}

struct Tenant {
    url: String,
    users: Vec<User>,
    names: BTreeMap<String, String>,
    kid: String,
    key: jsonwebtoken::EncodingKey,
    jwk: Value,
    graph: AtomicU8,
    graph_calls: AtomicU64,
    app_tokens: AtomicU64,
    codes: Mutex<BTreeMap<String, (String, String)>>,
    /// The app's certificate credential: its public key and thumbprint.
    certificate: Mutex<Option<(jsonwebtoken::DecodingKey, String)>>,
    /// Client assertions taken (a certificate credential in use).
    pub assertions: AtomicU64,
}

/// What a token is.
#[derive(Clone, Copy)]
enum Shape<'a> {
    /// An access token for regauth's app.
    Access,
    /// An ID token, with the sign-in's nonce; naming the user only when
    /// the `profile` scope was asked.
    Id {
        nonce: Option<&'a str>,
        profile: bool,
    },
}

pub struct Entra {
    pub url: String,
    tenant: Arc<Tenant>,
    _served: super::Served,
}

fn users() -> (Vec<User>, BTreeMap<String, String>) {
    let id = |n: u32| format!("a1b2c3d4-0000-4000-8000-00000000000{n}");
    let mut names = BTreeMap::from([
        (PLATFORM.to_owned(), "platform-engineers".to_owned()),
        (id(2), "readers".to_owned()),
        // a group whose display name is shaped like another group's id
        (id(3), PLATFORM.to_owned()),
        // a group a user made, named like an app role
        (id(4), "role:Registry.Push".to_owned()),
    ]);
    let many: Vec<String> = (0..249)
        .map(|i| format!("b0000000-0000-4000-8000-{i:012}"))
        .collect();
    for (i, id) in many.iter().enumerate() {
        names.insert(id.clone(), format!("team-{i:03}"));
    }
    let three = vec![PLATFORM.to_owned(), id(2), id(3)];
    let mut overage = many;
    overage.push(PLATFORM.to_owned());
    let user = |name, n: u32, groups, roles, mfa| User {
        name,
        oid: format!("0000000{n}-aaaa-4bbb-8ccc-dddddddddddd"),
        groups,
        roles,
        mfa,
    };
    let users = vec![
        user(
            "ada@corp.test",
            1,
            three.clone(),
            vec!["Registry.Push"],
            false,
        ),
        user("bob@corp.test", 2, overage, vec![], false),
        user("mia@corp.test", 3, three, vec![], true),
        user("eve@corp.test", 4, vec![id(4)], vec![], false),
    ];
    (users, names)
}

impl Entra {
    pub async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr: SocketAddr = listener.local_addr().unwrap();
        let url = format!("http://{addr}");
        let (key_pem, signing) = super::issuer::signing_key(regauth::keys::KeyType::Rs256, "entra");
        let mut jwk = signing.jwk();
        jwk.as_object_mut().unwrap().remove("x5c");
        let (users, names) = users();
        let tenant = Arc::new(Tenant {
            url: url.clone(),
            users,
            names,
            kid: signing.kid.clone(),
            key: jsonwebtoken::EncodingKey::from_rsa_pem(key_pem.as_bytes()).unwrap(),
            jwk,
            graph: AtomicU8::new(Graph::Up as u8),
            graph_calls: AtomicU64::new(0),
            app_tokens: AtomicU64::new(0),
            codes: Mutex::new(BTreeMap::new()),
            certificate: Mutex::new(None),
            assertions: AtomicU64::new(0),
        });
        let app = Router::new()
            .route(
                "/{tenant}/v2.0/.well-known/openid-configuration",
                get(discovery),
            )
            .route("/common/discovery/v2.0/keys", get(keys))
            .route("/{tenant}/oauth2/v2.0/token", post(token))
            .route(
                "/{tenant}/oauth2/v2.0/authorize",
                get(authorize).post(signed_in),
            )
            .route(
                "/v1.0/users/{oid}/transitiveMemberOf/microsoft.graph.group",
                get(member_of),
            )
            .with_state(tenant.clone());
        Self {
            url,
            tenant,
            _served: super::Served::start(listener, app),
        }
    }

    /// How Graph answers from now on.
    pub fn graph(&self, mode: Graph) {
        self.tenant.graph.store(mode as u8, SeqCst);
    }

    /// Graph calls so far (app tokens not counted).
    pub fn graph_calls(&self) -> u64 {
        self.tenant.graph_calls.load(SeqCst)
    }

    /// An access token of `user` for regauth's app (delegated, with
    /// `scp`): v2.0 (`aud` the client id, `preferred_username`) or v1.0
    /// (`aud` `api://…`, the `sts.windows.net`-style issuer, `upn`),
    /// issued by `tenant`.
    pub fn access_token(&self, user: &str, version: u8, tenant: &str) -> String {
        self.tenant.token_of(user, version, tenant, Shape::Access)
    }

    /// `user`'s ID token for regauth's app (no `scp`), as a sign-in gets it.
    pub fn id_token(&self, user: &str) -> String {
        let shape = Shape::Id {
            nonce: None,
            profile: true,
        };
        self.tenant.token_of(user, 2, TENANT, shape)
    }

    /// A client credentials token of the app `app_id` for regauth's app:
    /// no user, no `scp`, its app roles, `idtyp = app`.
    pub fn app_token(&self, app_id: &str, roles: &[&str]) -> String {
        let now = regauth_providers::clock::unix_seconds() as i64;
        let sp = "5e5e5e5e-0000-4000-8000-000000000001";
        let claims = json!({
            "iss": format!("{}/{TENANT}/v2.0", self.url), "aud": CLIENT_ID, "tid": TENANT,
            "oid": sp, "sub": sp, "azp": app_id, "azpacr": "1", "idtyp": "app",
            "roles": roles, "ver": "2.0", "iat": now - 5, "nbf": now - 5, "exp": now + 3600,
        });
        self.tenant.sign(&claims)
    }

    /// A certificate credential of the app, uploaded to its registration:
    /// the files of its certificate and private key, written under `f`.
    pub fn certificate(&self, f: &super::Fixture) -> (std::path::PathBuf, std::path::PathBuf) {
        use base64::Engine as _;
        let (key_pem, cert_pem) = regauth::keys::generate(
            regauth::keys::KeyType::Rs256,
            "regauth-app",
            std::time::Duration::from_secs(3600),
        )
        .unwrap();
        let (cert, key) = (f.path("entra-app.crt"), f.path("entra-app.key"));
        std::fs::write(&cert, &cert_pem).unwrap();
        std::fs::write(&key, &key_pem).unwrap();
        let signing = regauth::keys::SigningKey::load(&key, &cert).unwrap();
        let jwk: jsonwebtoken::jwk::Jwk = serde_json::from_value(signing.jwk()).unwrap();
        let der = pem::parse(&cert_pem).unwrap().into_contents();
        let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &der);
        let thumbprint = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(digest.as_ref());
        *self.tenant.certificate.lock().unwrap() = Some((
            jsonwebtoken::DecodingKey::from_jwk(&jwk).unwrap(),
            thumbprint,
        ));
        (cert, key)
    }

    /// Client assertions the token endpoint took.
    pub fn assertions(&self) -> u64 {
        self.tenant.assertions.load(SeqCst)
    }

    /// The `[[provider]]` for this tenant, the app's secret written under
    /// `f`.
    pub fn provider_toml(&self, f: &super::Fixture, name: &str, extra: &str) -> String {
        let secret = f.path("entra.secret");
        std::fs::write(&secret, CLIENT_SECRET).unwrap();
        format!(
            "\n[[provider]]\nname = \"{name}\"\nkind = \"entra\"\ntenant = \"{TENANT}\"\nclient_id = \"{CLIENT_ID}\"\nclient_secret_file = \"{}\"\nauthority = \"{url}\"\nv1_issuer = \"{url}/sts\"\ngraph_url = \"{url}\"\ntimeout = \"3s\"\n{extra}\n",
            secret.display(),
            url = self.url
        )
    }
}

impl Tenant {
    fn user(&self, name: &str) -> Option<&User> {
        self.users
            .iter()
            .find(|u| u.name.eq_ignore_ascii_case(name))
    }

    fn sign(&self, claims: &Value) -> String {
        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256);
        header.kid = Some(self.kid.clone());
        jsonwebtoken::encode(&header, claims, &self.key).unwrap()
    }

    /// A signed token of `name` as Entra issues it.
    fn token_of(&self, name: &str, version: u8, tenant: &str, shape: Shape<'_>) -> String {
        let user = self.user(name).expect("a user of the fake tenant");
        let now = regauth_providers::clock::unix_seconds() as i64;
        let mut claims = json!({
            "tid": tenant, "oid": user.oid, "sub": format!("sub-{}", user.oid),
            "iat": now - 5, "nbf": now - 5, "exp": now + 3600, "name": user.name,
        });
        if version == 1 {
            claims["iss"] = format!("{}/sts/{tenant}/", self.url).into();
            claims["aud"] = format!("api://{CLIENT_ID}").into();
            claims["upn"] = user.name.into();
            claims["ver"] = "1.0".into();
        } else {
            claims["iss"] = format!("{}/{tenant}/v2.0", self.url).into();
            claims["aud"] = CLIENT_ID.into();
            claims["preferred_username"] = user.name.into();
            claims["ver"] = "2.0".into();
        }
        if user.groups.len() > 200 {
            // the overage: no groups, and where to read them
            claims["_claim_names"] = json!({"groups": "src1"});
            claims["_claim_sources"] = json!({"src1": {"endpoint": format!(
                "https://graph.windows.net/{tenant}/users/{}/getMemberObjects", user.oid)}});
        } else {
            claims["groups"] = json!(user.groups);
        }
        if !user.roles.is_empty() {
            claims["roles"] = json!(user.roles);
        }
        match shape {
            Shape::Access => {
                let scope = if version == 1 {
                    "user_impersonation"
                } else {
                    "access_as_user"
                };
                claims["scp"] = scope.into();
            }
            Shape::Id { nonce, profile } => {
                claims["aud"] = CLIENT_ID.into();
                if let Some(nonce) = nonce {
                    claims["nonce"] = nonce.into();
                }
                if !profile {
                    // without the `profile` scope an ID token names no one
                    let o = claims.as_object_mut().unwrap();
                    for c in ["preferred_username", "oid", "name"] {
                        o.remove(c);
                    }
                }
            }
        }
        self.sign(&claims)
    }

    /// Whether Graph answers now; the refusal when it does not.
    fn graph_refusal(&self, headers: &HeaderMap) -> Option<Response> {
        self.graph_calls.fetch_add(1, SeqCst);
        let bearer = headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        if !bearer.starts_with("Bearer graph-app-token-") {
            return Some(StatusCode::UNAUTHORIZED.into_response());
        }
        match self.graph.load(SeqCst) {
            1 => {
                Some((StatusCode::TOO_MANY_REQUESTS, [("retry-after", "7")], "{}").into_response())
            }
            2 => Some(StatusCode::SERVICE_UNAVAILABLE.into_response()),
            _ => None,
        }
    }

    fn group(&self, id: &str) -> Value {
        json!({
            "@odata.type": "#microsoft.graph.group",
            "id": id,
            "displayName": self.names.get(id),
            "onPremisesSamAccountName": null,
            "securityEnabled": true,
        })
    }
}

/// The domain verified in the test tenant.
pub const DOMAIN: &str = "corp.test";

async fn discovery(State(t): State<Arc<Tenant>>, Path(tenant): Path<String>) -> Json<Value> {
    // a verified domain's metadata names the tenant by its id
    let tenant = if tenant == DOMAIN {
        TENANT.to_owned()
    } else {
        tenant
    };
    let at = |path: &str| format!("{}/{tenant}/oauth2/v2.0/{path}", t.url);
    Json(json!({
        "issuer": format!("{}/{tenant}/v2.0", t.url),
        "authorization_endpoint": at("authorize"),
        "token_endpoint": at("token"),
        "jwks_uri": format!("{}/common/discovery/v2.0/keys", t.url),
        "response_types_supported": ["code", "id_token", "code id_token", "id_token token"],
        "subject_types_supported": ["pairwise"],
        "id_token_signing_alg_values_supported": ["RS256"],
        "token_endpoint_auth_methods_supported": ["client_secret_post", "private_key_jwt", "client_secret_basic"],
        "scopes_supported": ["openid", "profile", "email", "offline_access"],
        "tenant_region_scope": "EU",
    }))
}

async fn keys(State(t): State<Arc<Tenant>>) -> Json<Value> {
    Json(json!({ "keys": [t.jwk] }))
}

fn refused(code: &str, description: &str) -> Response {
    (
        StatusCode::BAD_REQUEST,
        Json(json!({"error": code, "error_description": description})),
    )
        .into_response()
}

/// The client's secret, from the form or HTTP Basic, or its assertion
/// (RFC 7523) signed with its registered certificate's key, for this
/// token endpoint, naming the certificate by its thumbprint.
fn client_ok(
    t: &Tenant,
    tenant: &str,
    headers: &HeaderMap,
    form: &BTreeMap<String, String>,
) -> bool {
    use base64::Engine as _;
    if let Some(assertion) = form.get("client_assertion") {
        let held = t.certificate.lock().unwrap();
        let Some((key, thumbprint)) = held.as_ref() else {
            return false;
        };
        let Ok(header) = jsonwebtoken::decode_header(assertion) else {
            return false;
        };
        // Microsoft pairs x5t#S256 with PS256
        let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::PS256);
        validation.set_audience(&[format!("{}/{tenant}/oauth2/v2.0/token", t.url)]);
        validation.set_issuer(&[CLIENT_ID]);
        let claims = jsonwebtoken::decode::<Value>(assertion, key, &validation);
        let ok = header.x5t_s256.as_deref() == Some(thumbprint.as_str())
            && form.get("client_assertion_type").map(String::as_str)
                == Some("urn:ietf:params:oauth:client-assertion-type:jwt-bearer")
            && claims.is_ok_and(|c| c.claims["sub"] == CLIENT_ID);
        if ok {
            t.assertions.fetch_add(1, SeqCst);
        }
        return ok;
    }
    let basic = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic "))
        .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok())
        .map(|b| String::from_utf8_lossy(&b).into_owned());
    let pair = basic.or_else(|| {
        Some(format!(
            "{}:{}",
            form.get("client_id")?,
            form.get("client_secret")?
        ))
    });
    pair.is_some_and(|p| p == format!("{CLIENT_ID}:{CLIENT_SECRET}"))
}

async fn token(
    State(t): State<Arc<Tenant>>,
    Path(tenant): Path<String>,
    headers: HeaderMap,
    Form(form): Form<BTreeMap<String, String>>,
) -> Response {
    if !client_ok(&t, &tenant, &headers, &form) {
        return refused(
            "invalid_client",
            "AADSTS7000215: Invalid client secret provided.",
        );
    }
    let issued = |id_token: Option<String>| {
        let n = t.app_tokens.fetch_add(1, SeqCst);
        Json(json!({
            "token_type": "Bearer", "expires_in": 3599,
            "access_token": format!("graph-app-token-{n}"),
            "id_token": id_token,
        }))
        .into_response()
    };
    match form.get("grant_type").map(String::as_str) {
        Some("client_credentials") => issued(None),
        Some("password") => {
            let name = form.get("username").cloned().unwrap_or_default();
            match t.user(&name) {
                Some(user) if form.get("password").map(String::as_str) == Some("entra-pw") => {
                    if user.mfa {
                        return refused("invalid_grant", "AADSTS50076: Due to a configuration change made by your administrator, or because you moved to a new location, you must use multi-factor authentication to access the resource.");
                    }
                    let profile = form
                        .get("scope")
                        .is_some_and(|s| s.split(' ').any(|x| x == "profile"));
                    let shape = Shape::Id {
                        nonce: None,
                        profile,
                    };
                    issued(Some(t.token_of(user.name, 2, TENANT, shape)))
                }
                _ => refused("invalid_grant", "AADSTS50126: Error validating credentials due to invalid username or password."),
            }
        }
        Some("authorization_code") => {
            let code = form.get("code").cloned().unwrap_or_default();
            match t.codes.lock().unwrap().remove(&code) {
                Some((name, nonce)) => {
                    let shape = Shape::Id {
                        nonce: Some(&nonce),
                        profile: true,
                    };
                    issued(Some(t.token_of(&name, 2, TENANT, shape)))
                }
                None => refused(
                    "invalid_grant",
                    "AADSTS70008: The provided authorization code or refresh token has expired.",
                ),
            }
        }
        _ => refused("unsupported_grant_type", "AADSTS70003"),
    }
}

/// Microsoft's sign-in page, reduced to its two fields.
async fn authorize(Query(q): Query<BTreeMap<String, String>>) -> Html<String> {
    let hidden: String = ["redirect_uri", "state", "nonce"]
        .iter()
        .map(|k| {
            format!(
                "<input type=hidden name={k} value=\"{}\">",
                q.get(*k)
                    .map(String::as_str)
                    .unwrap_or_default()
                    .replace('"', "&quot;")
            )
        })
        .collect();
    Html(format!(
        "<!doctype html><title>Sign in to your account</title><form method=post>{hidden}\
         <input name=loginfmt type=email><input name=passwd type=password>\
         <button type=submit id=idSIButton9>Sign in</button></form>"
    ))
}

async fn signed_in(
    State(t): State<Arc<Tenant>>,
    Form(form): Form<BTreeMap<String, String>>,
) -> Response {
    let name = form.get("loginfmt").cloned().unwrap_or_default();
    if t.user(&name).is_none() || form.get("passwd").map(String::as_str) != Some("entra-pw") {
        return (StatusCode::UNAUTHORIZED, "AADSTS50126").into_response();
    }
    let code = format!("code-{}", t.app_tokens.fetch_add(1, SeqCst));
    let nonce = form.get("nonce").cloned().unwrap_or_default();
    t.codes.lock().unwrap().insert(code.clone(), (name, nonce));
    let redirect = form.get("redirect_uri").cloned().unwrap_or_default();
    let state = form.get("state").cloned().unwrap_or_default();
    Redirect::to(&format!("{redirect}?code={code}&state={state}")).into_response()
}

async fn member_of(
    State(t): State<Arc<Tenant>>,
    Path(oid): Path<String>,
    Query(q): Query<BTreeMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    if let Some(refusal) = t.graph_refusal(&headers) {
        return refusal;
    }
    let Some(user) = t.users.iter().find(|u| u.oid == oid) else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let skip: usize = q
        .get("$skiptoken")
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let page: Vec<Value> = user
        .groups
        .iter()
        .skip(skip)
        .take(100)
        .map(|id| t.group(id))
        .collect();
    let mut body = json!({ "value": page });
    if skip + 100 < user.groups.len() {
        body["@odata.nextLink"] = format!(
            "{}/v1.0/users/{oid}/transitiveMemberOf/microsoft.graph.group?$skiptoken={}",
            t.url,
            skip + 100
        )
        .into();
    }
    Json(body).into_response()
}
