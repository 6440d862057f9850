//! A Kubernetes cluster's service-account issuer, as regauth sees it: the
//! key set `kubectl get --raw /openid/v1/jwks` prints, written to a file,
//! and projected service-account tokens with the API server's documented
//! claims (`iss`, `sub = system:serviceaccount:NS:NAME`, `aud` as a list,
//! `exp`, `iat`, `nbf`, `jti` and the `kubernetes.io` object naming the
//! namespace, service account, pod and node), signed RS256 as the API
//! server signs them by default.

use std::path::PathBuf;

pub struct Cluster {
    /// The cluster's `--service-account-issuer`.
    pub issuer: String,
    /// Where the cluster's JWKS is written.
    pub jwks_file: PathBuf,
    key: Key,
    _dir: tempfile::TempDir,
}

struct Key {
    kid: String,
    encoding: jsonwebtoken::EncodingKey,
    jwk: serde_json::Value,
}

impl Key {
    fn generate() -> Self {
        let (key_pem, signing) =
            super::issuer::signing_key(regauth::keys::KeyType::Rs256, "service-account-issuer");
        let mut jwk = signing.jwk();
        let o = jwk.as_object_mut().unwrap();
        o.remove("x5c");
        o.insert("use".into(), "sig".into());
        o.insert("alg".into(), "RS256".into());
        Self {
            kid: signing.kid.clone(),
            encoding: jsonwebtoken::EncodingKey::from_rsa_pem(key_pem.as_bytes()).unwrap(),
            jwk,
        }
    }
}

/// One pod's service-account token, as the kubelet asks the API server
/// for it (TokenRequest bound to the pod).
pub struct Pod<'a> {
    pub namespace: &'a str,
    pub service_account: &'a str,
    pub audience: &'a str,
    /// Seconds from now until `exp` (negative: expired).
    pub lifetime: i64,
}

impl Cluster {
    /// A cluster with one signing key, its JWKS written to a file.
    pub fn new(issuer: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let cluster = Self {
            issuer: issuer.to_owned(),
            jwks_file: dir.path().join("jwks.json"),
            key: Key::generate(),
            _dir: dir,
        };
        cluster.publish(&[&cluster.key.jwk]);
        cluster
    }

    /// Writes the key set as a ConfigMap volume updates a file: a new
    /// file renamed over the old one.
    fn publish(&self, keys: &[&serde_json::Value]) {
        let next = self.jwks_file.with_extension("next");
        std::fs::write(&next, serde_json::json!({ "keys": keys }).to_string()).unwrap();
        std::fs::rename(&next, &self.jwks_file).unwrap();
    }

    /// Rotates the signing key: the JWKS lists the new key and, while
    /// `keep_old`, the old one too.
    pub fn rotate(&mut self, keep_old: bool) {
        let old = std::mem::replace(&mut self.key, Key::generate());
        if keep_old {
            self.publish(&[&self.key.jwk, &old.jwk]);
        } else {
            self.publish(&[&self.key.jwk]);
        }
    }

    /// Publishes a key set with no key: the cluster's keys withdrawn.
    pub fn withdraw_keys(&self) {
        self.publish(&[]);
    }

    /// Publishes the current key alone again.
    pub fn republish(&self) {
        self.publish(&[&self.key.jwk]);
    }

    /// A projected service-account token for `pod`.
    pub fn token(&self, pod: &Pod<'_>) -> String {
        let now = regauth_providers::clock::unix_seconds() as i64;
        let (ns, sa) = (pod.namespace, pod.service_account);
        let claims = serde_json::json!({
            "aud": [pod.audience],
            "exp": now + pod.lifetime,
            "iat": now - 10,
            "nbf": now - 10,
            "iss": self.issuer,
            "jti": format!("{ns}-{sa}-{now}"),
            "kubernetes.io": {
                "namespace": ns,
                "node": {"name": "node-1", "uid": "3c1f0a52-8d1e-4b6a-9a57-0d1b2c3d4e5f"},
                "pod": {"name": format!("{sa}-7d9f8"), "uid": "8a6e1b2c-0f3d-4e5a-b6c7-d8e9f0a1b2c3"},
                "serviceaccount": {"name": sa, "uid": "5f1c2d3e-4a5b-6c7d-8e9f-0a1b2c3d4e5f"},
                "warnafter": now + 3607,
            },
            "sub": format!("system:serviceaccount:{ns}:{sa}"),
        });
        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256);
        header.kid = Some(self.key.kid.clone());
        jsonwebtoken::encode(&header, &claims, &self.key.encoding).unwrap()
    }

    /// The `[[provider]]` for this cluster: its issuer known by the key
    /// file alone, tokens for `audience` as passwords.
    pub fn provider_toml(&self, name: &str, audience: &str) -> String {
        format!(
            "\n[[provider]]\nname = \"{name}\"\nkind = \"oidc\"\nissuer = \"{}\"\njwks_file = \"{}\"\naudiences = [\"{audience}\"]\nusername_claim = \"sub\"\njwks_min_refresh = \"1s\"\n",
            self.issuer,
            self.jwks_file.display()
        )
    }
}
