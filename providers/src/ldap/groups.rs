//! A user's groups: from a cache while fresh (and past their TTL, within
//! `stale_if_error`, while the directory cannot answer), else resolved in
//! one of two ways. On Active Directory (or with
//! `active_directory_in_chain`), one search with
//! LDAP_MATCHING_RULE_IN_CHAIN finds every group the user is in, nested
//! ones included. Elsewhere the groups are walked: the user's direct groups
//! (the group search and the `memberOf` attribute), then, with
//! `nested_groups`, the groups those belong to (their own `memberOf`, or
//! the group search for them), level by level up to `max_nesting`.

use std::collections::{BTreeSet, HashSet};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use ldap3::{ldap_escape, Scope};

use super::{ad, attribute, Base, Ldap};
use crate::{Error, GroupAnswer};

/// A user's groups as last resolved.
pub(super) struct CachedGroups {
    groups: Vec<String>,
    fetched: Instant,
}

/// Groups reached but not read yet: each DN, with its name when the
/// search that found it already said.
type Level = Vec<(String, Option<String>)>;

impl Ldap {
    /// Groups of a user, from the cache while fresh; stale entries serve
    /// only when the directory cannot answer.
    pub(super) async fn groups_of(
        &self,
        dn: &str,
        subject: &str,
        member_of: Vec<String>,
    ) -> Result<Vec<String>, Error> {
        let key = dn.to_ascii_lowercase();
        let cached = self.groups.get(&key).await;
        if let Some(hit) = &cached {
            if hit.fetched.elapsed() < self.config.group_cache_ttl.0 {
                self.stats.group_cache_hits.fetch_add(1, Ordering::Relaxed);
                return Ok(hit.groups.clone());
            }
        }
        self.stats
            .group_cache_misses
            .fetch_add(1, Ordering::Relaxed);
        match self.resolve_groups(dn, subject, member_of).await {
            Ok(groups) => {
                let entry = Arc::new(CachedGroups {
                    groups: groups.clone(),
                    fetched: Instant::now(),
                });
                self.groups.insert(key, entry).await;
                Ok(groups)
            }
            Err(e) => match cached {
                Some(stale) => {
                    self.stats.group_cache_stale.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(provider = %self.name, error = %e, "serving cached groups past their TTL: the directory did not answer");
                    Ok(stale.groups.clone())
                }
                None => Err(e),
            },
        }
    }

    async fn resolve_groups(
        &self,
        user_dn: &str,
        subject: &str,
        member_of: Vec<String>,
    ) -> Result<Vec<String>, Error> {
        let names = match (self.settings.in_chain, &self.settings.group_base) {
            (true, Some(base)) => self.groups_in_chain(base, user_dn).await?,
            _ => self.walk_groups(user_dn, subject, member_of).await?,
        };
        let prefix = self.config.group_prefix.as_deref().unwrap_or("");
        Ok(names
            .into_iter()
            .map(|n| format!("{prefix}{}", n.to_lowercase()))
            .collect())
    }

    /// Every group the user is in, nested ones included, in one search
    /// (LDAP_MATCHING_RULE_IN_CHAIN).
    async fn groups_in_chain(&self, base: &str, user_dn: &str) -> Result<BTreeSet<String>, Error> {
        let name_attr = self.settings.group_name_attribute.as_str();
        let filter = if self.config.active_directory {
            ad::groups_filter(user_dn)
        } else {
            format!("(member:1.2.840.113556.1.4.1941:={})", ldap_escape(user_dn))
        };
        let mut names = BTreeSet::new();
        for entry in self
            .search(base, Scope::Subtree, &filter, &[name_attr], Base::Required)
            .await?
        {
            names.extend(attribute(&entry, name_attr).iter().cloned());
        }
        Ok(names)
    }

    /// The user's direct groups, then (with `nested_groups`) the groups
    /// they are in, level by level up to `max_nesting`.
    async fn walk_groups(
        &self,
        user_dn: &str,
        subject: &str,
        member_of: Vec<String>,
    ) -> Result<BTreeSet<String>, Error> {
        let c = &self.config;
        let mut level = self.searched_groups(user_dn, subject).await?;
        level.extend(member_of.into_iter().map(|dn| (dn, None)));
        let mut names = BTreeSet::new();
        let mut seen = HashSet::new();
        let mut depth = 0;
        while !level.is_empty() {
            let mut parents = Vec::new();
            for (dn, name) in level {
                if !seen.insert(dn.to_ascii_lowercase()) {
                    continue; // a cycle, or a group reached twice
                }
                let (name, above) = self.group_entry(&dn, name).await?;
                names.extend(name);
                parents.extend(above);
                if c.nested_groups {
                    parents.extend(self.searched_parents(&dn).await?);
                }
            }
            if !c.nested_groups {
                break;
            }
            depth += 1;
            if depth > c.max_nesting {
                tracing::warn!(provider = %self.name, user = subject, max_nesting = c.max_nesting, "groups nest deeper than max_nesting; ignoring the rest");
                break;
            }
            level = parents;
        }
        Ok(names)
    }

    /// The group search, where one is configured (`group_base` and
    /// `group_filter`): the groups whose filter matches `{dn}` and
    /// `{username}`.
    async fn searched_groups(&self, user_dn: &str, subject: &str) -> Result<Level, Error> {
        let Some((base, filter)) = self.group_search() else {
            return Ok(Vec::new());
        };
        let filter = filter
            .replace("{dn}", &ldap_escape(user_dn))
            .replace("{username}", &ldap_escape(subject));
        self.named_groups(base, &filter).await
    }

    /// The groups a group is in by the group search (the filter walk):
    /// only a filter with `{dn}` can find them.
    async fn searched_parents(&self, group_dn: &str) -> Result<Level, Error> {
        match self.group_search() {
            Some((base, filter)) if filter.contains("{dn}") => {
                let filter = filter
                    .replace("{dn}", &ldap_escape(group_dn))
                    .replace("{username}", "");
                self.named_groups(base, &filter).await
            }
            _ => Ok(Vec::new()),
        }
    }

    /// The group entry named `group` (as identities name it: prefixed,
    /// in any case) under the group base now, with its id; `Unknown`
    /// without a group base (groups read from `memberOf` alone may be
    /// anywhere).
    pub(super) async fn group_named(&self, group: &str) -> Result<GroupAnswer, Error> {
        let prefix = self.config.group_prefix.as_deref().unwrap_or("");
        let Some(base) = &self.settings.group_base else {
            return Ok(GroupAnswer::Unknown);
        };
        let Some(name) = group.strip_prefix(prefix).filter(|n| !n.is_empty()) else {
            return Ok(GroupAnswer::Gone);
        };
        let name = name.to_lowercase();
        let name_attr = self.settings.group_name_attribute.as_str();
        let filter = format!(
            "(&(|(objectClass=group)(objectClass=groupOfNames)(objectClass=groupOfUniqueNames)(objectClass=posixGroup)(objectClass=groupOfMembers))({name_attr}={}))",
            ldap_escape(&name)
        );
        let mut attrs = vec![name_attr];
        attrs.extend(super::ENTRY_ID);
        let found = self
            .search(base, Scope::Subtree, &filter, &attrs, Base::Required)
            .await?;
        // names compare as identities carry them: lower-case
        let entry = found.iter().find(|entry| {
            attribute(entry, name_attr)
                .iter()
                .any(|n| n.to_lowercase() == name)
        });
        Ok(match entry {
            Some(entry) => GroupAnswer::Exists(super::entry_id(entry)),
            None => GroupAnswer::Gone,
        })
    }

    /// The group search's base and filter, if one is configured.
    fn group_search(&self) -> Option<(&String, &String)> {
        self.settings
            .group_base
            .as_ref()
            .zip(self.config.group_filter.as_ref())
    }

    /// The groups `filter` finds under `base`, with their names.
    async fn named_groups(&self, base: &str, filter: &str) -> Result<Level, Error> {
        let name_attr = self.settings.group_name_attribute.as_str();
        Ok(self
            .search(base, Scope::Subtree, filter, &[name_attr], Base::Required)
            .await?
            .into_iter()
            .map(|entry| {
                let name = attribute(&entry, name_attr).first().cloned();
                (entry.dn, name)
            })
            .collect())
    }

    /// A group's name (read from its entry when not known yet) and, when
    /// nesting through `memberOf` (the memberOf walk), the groups it
    /// belongs to.
    async fn group_entry(
        &self,
        dn: &str,
        name: Option<String>,
    ) -> Result<(Option<String>, Level), Error> {
        let c = &self.config;
        let name_attr = self.settings.group_name_attribute.as_str();
        let read_entry = name.is_none() || (c.nested_groups && c.member_of_attribute.is_some());
        if !read_entry {
            return Ok((name, Vec::new()));
        }
        let mut attrs = vec![name_attr];
        if let Some(member_of) = &c.member_of_attribute {
            attrs.push(member_of);
        }
        let entry = self
            .search(dn, Scope::Base, "(objectClass=*)", &attrs, Base::MayBeGone)
            .await?
            .into_iter()
            .next();
        let Some(entry) = entry else {
            return Ok((name, Vec::new()));
        };
        let name = name.or_else(|| attribute(&entry, name_attr).first().cloned());
        let above = match (c.nested_groups, &c.member_of_attribute) {
            (true, Some(member_of)) => attribute(&entry, member_of)
                .iter()
                .map(|p| (p.clone(), None))
                .collect(),
            _ => Vec::new(),
        };
        Ok((name, above))
    }
}
