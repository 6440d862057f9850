//! A login's claims as its token carried them (JSON values by name), and
//! the claim paths rules, `required_claims` and templates name.
//!
//! A path is dotted: `resource_access.registry.roles` reaches into nested
//! objects. A key may itself contain dots (Kubernetes' `kubernetes.io`):
//! at each level the longest run of path segments that names a key is
//! taken, so `kubernetes.io.namespace` finds `{"kubernetes.io":
//! {"namespace": …}}` as written. The run taken is the longest one there
//! is, never a shorter one tried after it: a path names one value.
//!
//! Values compare as text: a string as itself, a number in its JSON
//! form, a boolean as `true` or `false`. A list matches when any of its
//! elements does; an object or `null` matches nothing.

use std::borrow::Cow;
use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// A login's claims, by name.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ClaimSet(BTreeMap<String, Value>);

impl ClaimSet {
    /// No claims.
    pub fn new() -> Self {
        Self::default()
    }

    /// The claims of a token's payload (nothing when it is not an object).
    pub fn of_token(payload: &Value) -> Self {
        match payload {
            Value::Object(o) => Self(o.iter().map(|(k, v)| (k.clone(), v.clone())).collect()),
            _ => Self::default(),
        }
    }

    /// Sets claim `name` (a top-level key, taken as written).
    pub fn insert(&mut self, name: impl Into<String>, value: impl Into<Value>) {
        self.0.insert(name.into(), value.into());
    }

    /// Takes out the value at `path` (found as [`ClaimSet::get`] finds
    /// it), leaving the rest of its object.
    pub fn remove(&mut self, path: &str) -> Option<Value> {
        let (key, rest) = split(&|key| self.0.contains_key(key), path)?;
        match rest {
            None => self.0.remove(key),
            Some(rest) => remove_below(self.0.get_mut(key)?, rest),
        }
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The value at `path`.
    pub fn get(&self, path: &str) -> Option<&Value> {
        at(&|key| self.0.get(key), path)
    }

    /// The value at `path` as text, when it is a string, a number or a
    /// boolean.
    pub fn text(&self, path: &str) -> Option<Cow<'_, str>> {
        self.get(path).and_then(text)
    }

    /// Whether the value at `path`, or any element of it when it is a
    /// list, is text that `accept` takes.
    pub fn any(&self, path: &str, accept: impl Fn(&str) -> bool) -> Option<Cow<'_, str>> {
        match self.get(path)? {
            Value::Array(items) => items.iter().filter_map(text).find(|value| accept(value)),
            value => text(value).filter(|value| accept(value)),
        }
    }
}

/// The value at `path` under `root` (any JSON value; only an object has
/// keys).
pub fn claim_at<'v>(root: &'v Value, path: &str) -> Option<&'v Value> {
    match root {
        Value::Object(o) => at(&|key| o.get(key), path),
        _ => None,
    }
}

/// Whether `path` is a usable claim path: not empty, and no empty
/// segment (`a..b`, a leading or trailing dot).
pub fn is_claim_path(path: &str) -> bool {
    !path.is_empty() && path.split('.').all(|segment| !segment.is_empty())
}

/// Walks `path` from a level whose keys `get` looks up: the longest run
/// of segments that names a key at this level, then the rest below it.
fn at<'v>(get: &dyn Fn(&str) -> Option<&'v Value>, path: &str) -> Option<&'v Value> {
    let (key, rest) = split(&|key| get(key).is_some(), path)?;
    let value = get(key)?;
    match (rest, value) {
        (None, value) => Some(value),
        (Some(rest), Value::Object(o)) => at(&|key| o.get(key), rest),
        (Some(_), _) => None,
    }
}

/// The longest run of `path`'s segments that `has` names, and the rest of
/// the path after it.
fn split<'p>(has: &dyn Fn(&str) -> bool, path: &'p str) -> Option<(&'p str, Option<&'p str>)> {
    let mut end = path.len();
    loop {
        if has(&path[..end]) {
            let rest = (end < path.len()).then(|| &path[end + 1..]);
            return Some((&path[..end], rest));
        }
        end = path[..end].rfind('.')?;
    }
}

/// [`ClaimSet::remove`] below the top level.
fn remove_below(value: &mut Value, path: &str) -> Option<Value> {
    let Value::Object(o) = value else {
        return None;
    };
    let (key, rest) = split(&|key| o.contains_key(key), path)?;
    match rest {
        None => o.remove(key),
        Some(rest) => remove_below(o.get_mut(key)?, rest),
    }
}

/// A scalar as text.
fn text(value: &Value) -> Option<Cow<'_, str>> {
    match value {
        Value::String(s) => Some(Cow::Borrowed(s)),
        Value::Number(n) => Some(Cow::Owned(n.to_string())),
        Value::Bool(b) => Some(Cow::Borrowed(if *b { "true" } else { "false" })),
        Value::Null | Value::Array(_) | Value::Object(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn service_account() -> ClaimSet {
        ClaimSet::of_token(&json!({
            "sub": "system:serviceaccount:ci:builder",
            "kubernetes.io": {
                "namespace": "ci",
                "serviceaccount": {"name": "builder", "uid": "5f1c"},
                "pod": {"name": "build-1", "uid": "9a2e"},
            },
            "resource_access": {"registry": {"roles": ["pusher", "reader"]}},
            "email_verified": true,
            "run_attempt": 3,
            "a": {"b": {"c": "short"}},
            "a.b": {"c": "long"},
            "nothing": null,
        }))
    }

    #[test]
    fn paths_reach_into_objects_and_keys_with_dots() {
        let claims = service_account();
        assert_eq!(claims.text("kubernetes.io.namespace").unwrap(), "ci");
        assert_eq!(
            claims.text("kubernetes.io.serviceaccount.name").unwrap(),
            "builder"
        );
        assert_eq!(
            claims.text("sub").unwrap(),
            "system:serviceaccount:ci:builder"
        );
        assert!(claims.get("kubernetes").is_none());
        assert!(claims.get("kubernetes.io.missing").is_none());
        assert!(
            claims.text("kubernetes.io").is_none(),
            "an object is no text"
        );
        // the longest run that names a key wins, with no second try
        assert_eq!(claims.text("a.b.c").unwrap(), "long");
    }

    #[test]
    fn scalars_compare_as_text_and_lists_by_any_element() {
        let claims = service_account();
        assert_eq!(claims.text("email_verified").unwrap(), "true");
        assert_eq!(claims.text("run_attempt").unwrap(), "3");
        assert!(claims.text("nothing").is_none());
        let roles = "resource_access.registry.roles";
        assert_eq!(claims.any(roles, |r| r == "pusher").unwrap(), "pusher");
        assert!(claims.any(roles, |r| r == "admin").is_none());
        assert!(claims.text(roles).is_none(), "a list is no single text");
        assert!(claims.any("kubernetes.io", |_| true).is_none());
    }

    #[test]
    fn removing_a_path_keeps_the_rest() {
        let mut claims = service_account();
        assert_eq!(
            claims.remove("resource_access.registry.roles").unwrap(),
            json!(["pusher", "reader"])
        );
        assert_eq!(claims.get("resource_access.registry").unwrap(), &json!({}));
        assert!(claims.remove("kubernetes.io.pod").is_some());
        assert_eq!(claims.text("kubernetes.io.namespace").unwrap(), "ci");
        assert!(claims.remove("email_verified").is_some());
        assert!(claims.get("email_verified").is_none());
        assert!(claims.remove("missing.path").is_none());
    }

    #[test]
    fn flat_string_maps_still_read() {
        // the form refresh tokens and sign-in records had before
        let old: ClaimSet = serde_json::from_str(r#"{"repository":"acme/app"}"#).unwrap();
        assert_eq!(old.text("repository").unwrap(), "acme/app");
        assert!(claim_at(&json!("x"), "a").is_none());
        assert!(is_claim_path("kubernetes.io.namespace"));
        for bad in ["", ".a", "a.", "a..b"] {
            assert!(!is_claim_path(bad), "{bad}");
        }
    }
}
