//! Name patterns of the policy and of username pins: `*` matches within one
//! path segment, `**` across segments, and `${user}`, `${group}`,
//! `${provider}` and `${claim:PATH}` stand for the literal values of the
//! identity at hand.
//!
//! Matching runs in time linear in the name for a given pattern (a set of
//! positions is advanced byte by byte, never backtracking), so no pattern
//! and no requested name can make evaluation slow. Substituted values are
//! always literals: a user or group named `*` matches only a literal `*`.

use std::fmt;

/// One piece of a compiled pattern.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Token {
    Literal(String),
    /// `*`: any run of bytes except `/`.
    Star,
    /// `**`: any run of bytes, `/` included.
    DoubleStar,
    User,
    Group,
    Provider,
    /// `${claim:PATH}`: the text of the claim at `PATH`.
    Claim(String),
}

/// Which placeholders a pattern may contain.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Placeholders {
    /// None: usernames, group names, services, claims.
    Forbidden,
    /// `${user}`, `${group}`, `${provider}` and `${claim:PATH}`:
    /// repository names.
    Allowed,
}

/// A placeholder a pattern can use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Placeholder {
    /// `${user}`: the identity's subject.
    User,
    /// `${group}`: each of the identity's groups in turn.
    Group,
    /// `${provider}`: the name of the identity's provider.
    Provider,
    /// `${claim:PATH}`, whatever the path: a claim's text.
    Claim,
}

/// The literal values placeholders stand for during one match. A
/// placeholder without a value matches nothing.
#[derive(Clone, Copy, Debug, Default)]
pub struct Values<'a> {
    /// What `${user}` stands for.
    pub user: Option<&'a str>,
    /// What `${group}` stands for.
    pub group: Option<&'a str>,
    /// What `${provider}` stands for.
    pub provider: Option<&'a str>,
    /// Whose claims `${claim:PATH}` takes (a claim that is not text
    /// matches nothing).
    pub claims: Option<&'a regauth_providers::ClaimSet>,
}

/// A compiled name pattern.
#[derive(Clone, Debug)]
pub struct Pattern {
    source: String,
    tokens: Vec<Token>,
}

impl fmt::Display for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.source)
    }
}

/// One step of the matching automaton.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Atom {
    Byte(u8),
    Star,
    DoubleStar,
}

impl Pattern {
    /// Compiles a pattern; errors are messages fit for `regauth check`.
    pub fn parse(source: &str, placeholders: Placeholders) -> Result<Self, String> {
        if source.is_empty() {
            return Err("empty pattern".into());
        }
        let mut tokens = Vec::new();
        let mut literal = String::new();
        let mut rest = source;
        while let Some(c) = rest.chars().next() {
            if let Some(after) = rest.strip_prefix("**") {
                flush(&mut literal, &mut tokens);
                tokens.push(Token::DoubleStar);
                rest = after;
            } else if let Some(after) = rest.strip_prefix('*') {
                flush(&mut literal, &mut tokens);
                tokens.push(Token::Star);
                rest = after;
            } else if let Some(after) = rest.strip_prefix("${") {
                let (name, after) = after
                    .split_once('}')
                    .ok_or_else(|| format!("unclosed placeholder in `{source}`"))?;
                let allowed = placeholders == Placeholders::Allowed;
                let token = match name {
                    "user" if allowed => Token::User,
                    "group" if allowed => Token::Group,
                    "provider" if allowed => Token::Provider,
                    _ if allowed && name.starts_with("claim:") => {
                        let path = &name["claim:".len()..];
                        if !regauth_providers::is_claim_path(path) {
                            return Err(format!(
                                "`${{{name}}}` in `{source}` names no claim path (write ${{claim:kubernetes.io.namespace}})"
                            ));
                        }
                        Token::Claim(path.to_owned())
                    }
                    _ if allowed => {
                        return Err(format!(
                            "unknown placeholder `${{{name}}}` in `{source}` (use ${{user}}, ${{group}}, ${{provider}} or ${{claim:PATH}})"
                        ))
                    }
                    _ => {
                        return Err(format!(
                            "placeholders such as `${{{name}}}` are only allowed in repository names (`{source}`)"
                        ))
                    }
                };
                flush(&mut literal, &mut tokens);
                tokens.push(token);
                rest = after;
            } else {
                literal.push(c);
                rest = &rest[c.len_utf8()..];
            }
        }
        flush(&mut literal, &mut tokens);
        Ok(Self {
            source: source.to_owned(),
            tokens,
        })
    }

    /// The pattern as written.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// The literal paths this pattern names outright, segment by segment
    /// (`team/shared/**` names `team` and `team/shared`; `base/*` names
    /// `base`; `${user}/**` names none).
    pub fn literal_paths(&self) -> Vec<String> {
        let mut lead = String::new();
        let mut whole = true;
        for token in &self.tokens {
            match token {
                Token::Literal(l) => lead.push_str(l),
                _ => {
                    whole = false;
                    break;
                }
            }
        }
        let mut out = Vec::new();
        let mut at = 0;
        while let Some(i) = lead[at..].find('/') {
            if at + i > 0 {
                out.push(lead[..at + i].to_owned());
            }
            at += i + 1;
        }
        if whole && !lead.is_empty() && !lead.ends_with('/') {
            out.push(lead);
        }
        out
    }

    /// The path before `placeholder` when it begins a path segment after
    /// nothing but literals and `${provider}` (filled with `provider`):
    /// `team/` of `team/${user}/**`, `` of `${user}/**`, `corp/` of
    /// `${provider}/${user}/**` for provider `corp`. What the
    /// placeholder's value extends.
    pub fn lead_before(&self, placeholder: Placeholder, provider: Option<&str>) -> Option<String> {
        let mut lead = String::new();
        for token in &self.tokens {
            match token {
                Token::Literal(l) => lead.push_str(l),
                Token::Provider if placeholder != Placeholder::Provider => lead.push_str(provider?),
                t if t.is(placeholder) => {
                    return (lead.is_empty() || lead.ends_with('/')).then_some(lead)
                }
                _ => return None,
            }
        }
        None
    }

    /// For each `${claim:PATH}` in turn: its path, and the path before it
    /// with literals, `${provider}` and the claims before it filled in
    /// (none when a `*` or another placeholder comes first, or a claim
    /// before it has no text).
    pub fn claim_leads(
        &self,
        provider: Option<&str>,
        claims: &regauth_providers::ClaimSet,
    ) -> Vec<(&str, Option<String>)> {
        let mut out = Vec::new();
        let mut lead = Some(String::new());
        for token in &self.tokens {
            match token {
                Token::Claim(path) => {
                    out.push((path.as_str(), lead.clone()));
                    lead = lead.zip(claims.text(path)).map(|(l, v)| l + &v);
                }
                Token::Literal(l) => lead = lead.map(|x| x + l),
                Token::Provider => lead = lead.zip(provider).map(|(l, p)| l + p),
                _ => lead = None,
            }
        }
        out
    }

    /// Whether every `${claim:PATH}` fills a whole path segment (`a/${claim:x}/b`,
    /// not `a/x-${claim:x}`): its value is then a name of its own, which
    /// the checks against other rules' names see whole.
    pub fn claims_fill_segments(&self) -> bool {
        self.tokens.iter().enumerate().all(|(i, token)| {
            if !matches!(token, Token::Claim(_)) {
                return true;
            }
            let before = i.checked_sub(1).map(|j| &self.tokens[j]);
            let after = self.tokens.get(i + 1);
            let starts = match before {
                None => true,
                Some(Token::Literal(l)) => l.ends_with('/'),
                Some(_) => false,
            };
            let ends = match after {
                None => true,
                Some(Token::Literal(l)) => l.starts_with('/'),
                Some(_) => false,
            };
            starts && ends
        })
    }

    /// Whether the pattern contains this placeholder.
    pub fn uses(&self, placeholder: Placeholder) -> bool {
        self.tokens.iter().any(|t| t.is(placeholder))
    }

    /// The claim paths of the pattern's `${claim:PATH}` placeholders.
    pub fn claim_paths(&self) -> impl Iterator<Item = &str> {
        self.tokens.iter().filter_map(|t| match t {
            Token::Claim(path) => Some(path.as_str()),
            _ => None,
        })
    }

    /// Matches a plain value (user, group, service); a lone `*` matches
    /// any value, `/` included.
    pub fn matches(&self, value: &str) -> bool {
        self.source == "*" || self.matches_with(value, Values::default())
    }

    /// Matches with placeholders standing for the given literal values.
    pub fn matches_with(&self, name: &str, values: Values<'_>) -> bool {
        // The common shapes first: a plain literal, and `prefix/**`.
        match self.tokens.as_slice() {
            [] => return name.is_empty(),
            [Token::Literal(l)] => return name == l,
            [Token::Literal(l), Token::DoubleStar] => return name.starts_with(l.as_str()),
            _ => {}
        }
        let mut atoms = Vec::with_capacity(self.source.len() + 16);
        for token in &self.tokens {
            let claim;
            let literal = match token {
                Token::Literal(l) => l.as_str(),
                Token::Star => {
                    atoms.push(Atom::Star);
                    continue;
                }
                Token::DoubleStar => {
                    atoms.push(Atom::DoubleStar);
                    continue;
                }
                Token::User => match values.user {
                    Some(v) => v,
                    None => return false,
                },
                Token::Group => match values.group {
                    Some(v) => v,
                    None => return false,
                },
                Token::Provider => match values.provider {
                    Some(v) => v,
                    None => return false,
                },
                Token::Claim(path) => match values.claims.and_then(|c| c.text(path)) {
                    Some(v) => {
                        claim = v;
                        &claim
                    }
                    None => return false,
                },
            };
            atoms.extend(literal.bytes().map(Atom::Byte));
        }
        run(&atoms, name.as_bytes())
    }

    /// The pattern with its placeholders filled in, for traces.
    pub fn substituted(&self, values: Values<'_>) -> String {
        let mut out = String::with_capacity(self.source.len());
        for token in &self.tokens {
            match token {
                Token::Literal(l) => out.push_str(l),
                Token::Star => out.push('*'),
                Token::DoubleStar => out.push_str("**"),
                Token::User => out.push_str(values.user.unwrap_or("${user}")),
                Token::Group => out.push_str(values.group.unwrap_or("${group}")),
                Token::Provider => out.push_str(values.provider.unwrap_or("${provider}")),
                Token::Claim(path) => match values.claims.and_then(|c| c.text(path)) {
                    Some(v) => out.push_str(&v),
                    None => {
                        out.push_str("${claim:");
                        out.push_str(path);
                        out.push('}');
                    }
                },
            }
        }
        out
    }
}

impl Token {
    /// Whether this token is `placeholder`.
    fn is(&self, placeholder: Placeholder) -> bool {
        matches!(
            (self, placeholder),
            (Token::User, Placeholder::User)
                | (Token::Group, Placeholder::Group)
                | (Token::Provider, Placeholder::Provider)
                | (Token::Claim(_), Placeholder::Claim)
        )
    }
}

fn flush(literal: &mut String, tokens: &mut Vec<Token>) {
    if !literal.is_empty() {
        tokens.push(Token::Literal(std::mem::take(literal)));
    }
}

/// Runs the automaton: `active[i]` means "atom `i` is next". Each input byte
/// advances every active position at once, so the cost is
/// `name.len() × atoms.len()` at most, whatever the pattern. Working on bytes
/// is exact for UTF-8: no multi-byte sequence contains the byte of `/`.
fn run(atoms: &[Atom], name: &[u8]) -> bool {
    let positions = atoms.len() + 1;
    let mut active = vec![false; positions];
    let mut next = vec![false; positions];
    active[0] = true;
    close(atoms, &mut active);
    for &byte in name {
        next.iter_mut().for_each(|n| *n = false);
        let mut any = false;
        for (i, atom) in atoms.iter().enumerate() {
            if !active[i] {
                continue;
            }
            match *atom {
                Atom::Byte(b) if b == byte => next[i + 1] = true,
                Atom::Byte(_) => continue,
                Atom::Star if byte == b'/' => continue,
                Atom::Star | Atom::DoubleStar => next[i] = true,
            }
            any = true;
        }
        if !any {
            return false;
        }
        close(atoms, &mut next);
        std::mem::swap(&mut active, &mut next);
    }
    active[atoms.len()]
}

/// A star can match nothing: whoever waits at a star also waits after it.
fn close(atoms: &[Atom], active: &mut [bool]) {
    for i in 0..atoms.len() {
        if active[i] && matches!(atoms[i], Atom::Star | Atom::DoubleStar) {
            active[i + 1] = true;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(p: &str, n: &str) -> bool {
        Pattern::parse(p, Placeholders::Allowed)
            .unwrap()
            .matches_with(n, Values::default())
    }

    #[test]
    fn globs() {
        assert!(m("**", "a/b/c"));
        assert!(m("**", ""));
        assert!(m("a/*/c", "a/b/c"));
        assert!(!m("a/*/c", "a/b/x/c"));
        assert!(m("a/**/c", "a/b/x/c"));
        assert!(m("a/**", "a/b"));
        assert!(!m("a/**", "ab/c"));
        assert!(m("*-ci", "build-ci"));
        assert!(!m("*-ci", "x/build-ci"));
        assert!(m("ünï/*", "ünï/ç"));
        assert!(!m("a", "ab"));
        assert!(m("a*b*c", "aXbYc"));
        assert!(!m("a*b*c", "aXbY/c"));
        assert!(m("**/x", "a/b/x"));
        assert!(m("*/**", "a/b"));
    }

    #[test]
    fn placeholders_are_literal() {
        let p = Pattern::parse("${provider}/${user}/**", Placeholders::Allowed).unwrap();
        let values = Values {
            user: Some("*"),
            provider: Some("corp"),
            ..Values::default()
        };
        assert!(p.matches_with("corp/*/app", values));
        assert!(!p.matches_with("corp/bob/app", values));
        assert!(!p.matches_with("corp/bob/app", Values::default()));
        assert_eq!(p.substituted(values), "corp/*/**");
        assert!(p.uses(Placeholder::Provider) && p.uses(Placeholder::User));
        assert!(!p.uses(Placeholder::Group));
    }

    #[test]
    fn claim_templates_take_text_claims() {
        let p = Pattern::parse(
            "k8s/${claim:kubernetes.io.namespace}/**",
            Placeholders::Allowed,
        )
        .unwrap();
        let mut claims = regauth_providers::ClaimSet::new();
        claims.insert("kubernetes.io", serde_json::json!({"namespace": "ci"}));
        claims.insert("groups", serde_json::json!(["a", "b"]));
        let values = Values {
            claims: Some(&claims),
            ..Values::default()
        };
        assert!(p.matches_with("k8s/ci/app", values));
        assert!(!p.matches_with("k8s/dev/app", values));
        assert!(!p.matches_with("k8s/ci/app", Values::default()));
        assert_eq!(p.substituted(values), "k8s/ci/**");
        assert_eq!(p.lead_before(Placeholder::Claim, None).unwrap(), "k8s/");
        assert!(p.claims_fill_segments());
        let under = Pattern::parse(
            "${provider}/${claim:a}/${claim:b}/**",
            Placeholders::Allowed,
        )
        .unwrap();
        assert_eq!(
            under.lead_before(Placeholder::Claim, Some("east")).unwrap(),
            "east/"
        );
        assert!(under.lead_before(Placeholder::Claim, None).is_none());
        let mut a = regauth_providers::ClaimSet::new();
        a.insert("a", "x");
        assert_eq!(
            under.claim_leads(Some("east"), &a),
            [
                ("a", Some("east/".to_owned())),
                ("b", Some("east/x/".to_owned()))
            ]
        );
        for partial in [
            "ns-${claim:a}/**",
            "${claim:a}-cache/**",
            "${user}${claim:a}",
        ] {
            let p = Pattern::parse(partial, Placeholders::Allowed).unwrap();
            assert!(!p.claims_fill_segments(), "{partial}");
        }
        assert_eq!(
            p.claim_paths().collect::<Vec<_>>(),
            ["kubernetes.io.namespace"]
        );
        let list = Pattern::parse("${claim:groups}/**", Placeholders::Allowed).unwrap();
        assert!(
            !list.matches_with("a/x", values),
            "a list is no single name"
        );
        for bad in ["${claim:}", "${claim:a..b}", "${claim:.a}"] {
            assert!(Pattern::parse(bad, Placeholders::Allowed).is_err(), "{bad}");
        }
        assert!(Pattern::parse("${claim:a}", Placeholders::Forbidden).is_err());
    }

    #[test]
    fn placeholders_only_where_allowed() {
        assert!(Pattern::parse("${user}", Placeholders::Forbidden).is_err());
        assert!(Pattern::parse("${who}", Placeholders::Allowed).is_err());
        assert!(Pattern::parse("${user", Placeholders::Allowed).is_err());
        assert!(Pattern::parse("", Placeholders::Allowed).is_err());
    }

    #[test]
    fn a_lone_star_matches_any_value() {
        let star = Pattern::parse("*", Placeholders::Forbidden).unwrap();
        assert!(star.matches("a/b"));
        assert!(!Pattern::parse("a*", Placeholders::Forbidden)
            .unwrap()
            .matches("a/b"));
    }

    /// What made the old backtracking matcher exponential: many stars and
    /// a name that almost matches.
    #[test]
    fn adversarial_patterns_stay_fast() {
        let pattern = "*a".repeat(30) + "b";
        let p = Pattern::parse(&pattern, Placeholders::Forbidden).unwrap();
        // A backtracking matcher takes longer than the age of the universe
        // here; this one does 255 × 61 steps.
        assert!(!p.matches(&"a".repeat(255)));
        let p = Pattern::parse(&"**a".repeat(30), Placeholders::Forbidden).unwrap();
        assert!(!p.matches(&"a/".repeat(127)));
    }
}
