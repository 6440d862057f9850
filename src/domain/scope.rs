//! The scope grammar of the registry token protocol
//! (`type[(class)]:name:actions`) and the parsing of token requests.
//!
//! Parsing is lenient where clients are sloppy (duplicates, space-separated
//! lists, `repository(plugin)`) and strict where it matters (the name is kept
//! byte-for-byte, since the registry compares it exactly). An unparsable item
//! is dropped, never an error.

use std::fmt;

/// A resource type of the protocol. Types regauth does not know are kept
/// as written (they are granted nothing, and logged as asked).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ResourceType {
    /// `repository`: images (`pull`, `push`, `delete`).
    Repository,
    /// `registry`: the registry itself (`registry:catalog:*`).
    Registry,
    /// Any other type, as written.
    Other(String),
}

impl ResourceType {
    /// The type named `name`.
    pub fn parse(name: &str) -> Self {
        match name {
            "repository" => ResourceType::Repository,
            "registry" => ResourceType::Registry,
            other => ResourceType::Other(other.to_owned()),
        }
    }

    /// The actions the type defines, or `None` for a type regauth does
    /// not know (and grants nothing on).
    pub fn known_actions(&self) -> Option<&'static [Action]> {
        const REPOSITORY: &[Action] = &[Action::Delete, Action::Pull, Action::Push];
        const REGISTRY: &[Action] = &[Action::All];
        match self {
            ResourceType::Repository => Some(REPOSITORY),
            ResourceType::Registry => Some(REGISTRY),
            ResourceType::Other(_) => None,
        }
    }

    /// The type as written in scopes and tokens.
    pub fn as_str(&self) -> &str {
        match self {
            ResourceType::Repository => "repository",
            ResourceType::Registry => "registry",
            ResourceType::Other(name) => name,
        }
    }
}

impl From<&str> for ResourceType {
    fn from(name: &str) -> Self {
        ResourceType::parse(name)
    }
}

impl PartialEq<str> for ResourceType {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for ResourceType {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl fmt::Display for ResourceType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl serde::Serialize for ResourceType {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> serde::Deserialize<'de> for ResourceType {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d).map(|s| ResourceType::parse(&s))
    }
}

/// An action on a resource. Variants sort as their names do (`*` first),
/// so sets of actions print in a stable, alphabetical order.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Action {
    /// `*`: every action the type has.
    All,
    /// `delete`.
    Delete,
    /// `pull`.
    Pull,
    /// `push`.
    Push,
    /// Any other action, as written (never granted).
    Other(String),
}

impl Action {
    /// The action named `name`.
    pub fn parse(name: &str) -> Self {
        match name {
            "*" => Action::All,
            "delete" => Action::Delete,
            "pull" => Action::Pull,
            "push" => Action::Push,
            other => Action::Other(other.to_owned()),
        }
    }

    /// The action as written in scopes and tokens.
    pub fn as_str(&self) -> &str {
        match self {
            Action::All => "*",
            Action::Delete => "delete",
            Action::Pull => "pull",
            Action::Push => "push",
            Action::Other(name) => name,
        }
    }
}

impl From<&str> for Action {
    fn from(name: &str) -> Self {
        Action::parse(name)
    }
}

impl PartialEq<str> for Action {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for Action {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl serde::Serialize for Action {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> serde::Deserialize<'de> for Action {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d).map(|s| Action::parse(&s))
    }
}

/// Actions joined with commas, as scopes write them.
pub fn join_actions(actions: &[Action]) -> String {
    actions
        .iter()
        .map(Action::as_str)
        .collect::<Vec<_>>()
        .join(",")
}

/// One requested resource and the actions asked for it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Scope {
    /// Resource type without the deprecated class.
    pub kind: ResourceType,
    /// Resource name, exactly as requested (may contain `host:port`).
    pub name: String,
    /// Requested actions, deduplicated, in request order.
    pub actions: Vec<Action>,
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}",
            self.kind,
            self.name,
            join_actions(&self.actions)
        )
    }
}

impl Scope {
    /// Parses one scope item. The type ends at the first `:`, the actions
    /// start after the last one; everything between is the name.
    pub fn parse(item: &str) -> Option<Scope> {
        let (kind, rest) = item.split_once(':')?;
        let (name, actions) = rest.rsplit_once(':')?;
        let kind = parse_type(kind)?;
        if name.is_empty() {
            return None;
        }
        let mut list: Vec<Action> = Vec::new();
        for action in actions.split(',') {
            let action = action.trim();
            if action.is_empty() {
                continue;
            }
            let action = Action::parse(action);
            if !list.contains(&action) {
                list.push(action);
            }
        }
        if list.is_empty() {
            return None;
        }
        Some(Scope {
            kind: ResourceType::parse(kind),
            name: name.to_owned(),
            actions: list,
        })
    }
}

/// `^[a-z0-9]+(\([a-z0-9]+\))?$`, returning the type without its class.
fn parse_type(kind: &str) -> Option<&str> {
    let word = |s: &str| {
        !s.is_empty()
            && s.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
    };
    match kind.split_once('(') {
        None => word(kind).then_some(kind),
        Some((base, class)) => {
            let class = class.strip_suffix(')')?;
            (word(base) && word(class)).then_some(base)
        }
    }
}

/// Parses every `scope` value of a request: values are split on spaces,
/// unparsable items dropped, and scopes for the same resource merged.
pub fn parse_scopes<'a, I>(values: I) -> Vec<Scope>
where
    I: IntoIterator<Item = &'a str>,
{
    let mut merged: Vec<Scope> = Vec::new();
    for item in values.into_iter().flat_map(|v| v.split(' ')) {
        let Some(scope) = Scope::parse(item) else {
            if !item.is_empty() {
                tracing::debug!(item, "ignoring unparsable scope");
            }
            continue;
        };
        match merged
            .iter_mut()
            .find(|s| s.kind == scope.kind && s.name == scope.name)
        {
            Some(existing) => {
                for action in scope.actions {
                    if !existing.actions.contains(&action) {
                        existing.actions.push(action);
                    }
                }
            }
            None => merged.push(scope),
        }
    }
    merged
}

/// `type:name:actions` items joined by spaces (the audit line, the reuse
/// key and the POST answer's `scope`).
pub fn scopes_text<'a, I, S>(items: I) -> String
where
    I: IntoIterator<Item = &'a S>,
    S: ScopeLike + 'a,
{
    let mut out = String::new();
    for item in items {
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(item.kind().as_str());
        out.push(':');
        out.push_str(item.name());
        out.push(':');
        for (i, action) in item.actions().iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            out.push_str(action.as_str());
        }
    }
    out
}

/// A requested or granted scope, for [`scopes_text`].
pub trait ScopeLike {
    /// The resource type.
    fn kind(&self) -> &ResourceType;
    /// The resource name.
    fn name(&self) -> &str;
    /// The actions.
    fn actions(&self) -> &[Action];
}

impl ScopeLike for Scope {
    fn kind(&self) -> &ResourceType {
        &self.kind
    }
    fn name(&self) -> &str {
        &self.name
    }
    fn actions(&self) -> &[Action] {
        &self.actions
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn type_name_actions() {
        let s = Scope::parse("repository:samalba/my-app:pull,push").unwrap();
        assert_eq!(s.kind, "repository");
        assert_eq!(s.name, "samalba/my-app");
        assert_eq!(s.actions, ["pull", "push"]);
    }

    #[test]
    fn name_with_host_and_port() {
        let s = Scope::parse("repository:localhost:5000/foo/bar:pull").unwrap();
        assert_eq!(s.name, "localhost:5000/foo/bar");
        assert_eq!(s.actions, ["pull"]);
    }

    #[test]
    fn class_is_dropped() {
        let s = Scope::parse("repository(plugin):vieux/sshfs:pull").unwrap();
        assert_eq!(s.kind, "repository");
        assert_eq!(s.name, "vieux/sshfs");
    }

    #[test]
    fn bad_items_are_none() {
        for item in [
            "",
            "repository",
            "repository:foo",
            "Repository:foo:pull",
            "repo(:foo:pull",
            "repo()x:foo:pull",
            "repository::pull",
            "repository:foo:",
            "repo-x:foo:pull",
        ] {
            assert_eq!(Scope::parse(item), None, "{item}");
        }
    }

    #[test]
    fn catalog_scope() {
        let s = Scope::parse("registry:catalog:*").unwrap();
        assert_eq!((s.kind.as_str(), s.name.as_str()), ("registry", "catalog"));
        assert_eq!(s.actions, ["*"]);
    }

    #[test]
    fn repeated_space_separated_and_duplicate_scopes_merge() {
        let scopes = parse_scopes([
            "repository:a:pull repository:b:push",
            "repository:a:push,pull,pull",
            "garbage",
            "repository:a:pull",
        ]);
        assert_eq!(scopes.len(), 2);
        assert_eq!(scopes[0].name, "a");
        assert_eq!(scopes[0].actions, ["pull", "push"]);
        assert_eq!(scopes[1].name, "b");
    }
}

#[cfg(test)]
mod properties {
    use super::*;
    use proptest::prelude::*;

    fn actions() -> impl Strategy<Value = Vec<String>> {
        prop::collection::vec("[a-z*]{1,8}", 1..5).prop_map(|mut list| {
            let mut seen = std::collections::BTreeSet::new();
            list.retain(|a| seen.insert(a.clone()));
            list
        })
    }

    proptest! {
        /// Printing a scope and parsing it back gives the same scope, with
        /// the name byte for byte (hosts, ports and colons included).
        #[test]
        fn print_then_parse_is_identity(
            kind in "[a-z0-9]{1,12}",
            name in "[a-zA-Z0-9._/:@-]{1,60}",
            actions in actions(),
        ) {
            let scope = Scope {
                kind: ResourceType::parse(&kind),
                name,
                actions: actions.iter().map(|a| Action::parse(a)).collect(),
            };
            let printed = scope.to_string();
            prop_assert_eq!(Scope::parse(&printed), Some(scope.clone()));
            prop_assert_eq!(parse_scopes([printed.as_str()]), vec![scope]);
        }

        /// Parsing never panics, and whatever parses prints back to
        /// something that parses to the same scope.
        #[test]
        fn any_text_parses_or_is_dropped(text in "\\PC{0,80}") {
            for scope in parse_scopes([text.as_str()]) {
                prop_assert_eq!(Scope::parse(&scope.to_string()), Some(scope.clone()));
            }
        }
    }
}
