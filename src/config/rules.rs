//! `[[rule]]` and `policy`: the policy, compiled once from the
//! configuration's own rules and those kept apart (a policy file, or the
//! rules handed to `Server::builder()`).

use std::path::Path;

use super::error::{invalid, read_text, ConfigError};
use super::providers::ProviderConfig;
use crate::domain::policy::{Policy, PolicyFile, ProviderInfo, RuleConfig};

/// Rules kept apart from the configuration's own `[[rule]]` tables: their
/// errors name where they came from and count their own rules.
#[derive(Debug)]
pub(crate) struct SeparateRules {
    /// Where they came from (the policy file's path, or `rules`).
    pub(crate) origin: String,
    /// The rules, in order, after the configuration's own.
    pub(crate) rules: Vec<RuleConfig>,
}

impl SeparateRules {
    /// The `[[rule]]` tables of a policy file.
    pub(crate) fn read(path: &Path) -> Result<Self, ConfigError> {
        let origin = path.display().to_string();
        let text = read_text(path)?;
        let parsed: PolicyFile = toml::from_str::<toml::Value>(&text)
            .map_err(|e| invalid(&origin, "(syntax)", e.message().to_owned()))
            .and_then(|v| {
                serde_path_to_error::deserialize(v).map_err(|e| {
                    let key = e.path().to_string();
                    invalid(&origin, key, e.into_inner().message().to_owned())
                })
            })?;
        Ok(Self {
            origin,
            rules: parsed.rule,
        })
    }
}

/// The rules, checked and compiled together, once: the configuration's own
/// may narrow themselves only to configured providers; an error in the
/// separate ones names their origin and their own rule numbers.
pub(crate) fn validate_rules(
    origin: &str,
    mut rules: Vec<RuleConfig>,
    separate: Option<SeparateRules>,
    providers: &[ProviderConfig],
) -> Result<Policy, ConfigError> {
    for (i, rule) in rules.iter().enumerate() {
        for (j, p) in rule.providers.iter().enumerate() {
            if !providers.iter().any(|q| q.name() == p) {
                return Err(invalid(
                    origin,
                    format!("rule[{i}].providers[{j}]"),
                    format!("no provider is named `{p}`"),
                ));
            }
        }
    }
    let inline = rules.len();
    let separate_origin = separate.map(|s| {
        rules.extend(s.rules);
        s.origin
    });
    let infos: Vec<ProviderInfo> = providers.iter().map(ProviderConfig::info).collect();
    Policy::compile(&rules, "rule", &infos).map_err(|e| match &separate_origin {
        Some(separate_origin) if e.rule >= inline => {
            let own = e.rule - inline;
            let path = e
                .path
                .replacen(&format!("rule[{}]", e.rule), &format!("rule[{own}]"), 1);
            invalid(separate_origin, path, e.message)
        }
        _ => invalid(origin, e.path, e.message),
    })
}
