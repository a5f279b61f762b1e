//! [`AccessPolicy`]: resolved read / write / admin permissions per actor and namespace.
//!
//! The data model of the built-in policy; [`crate::policy`] enforces it.

use std::fmt;

use serde::{Deserialize, Serialize};

/// A permission level. Higher levels include lower ones: `Admin` implies `Write` implies `Read`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Permission {
    /// Get, head, list, versions.
    Read,
    /// Put and delete.
    Write,
    /// Purge, restore, key operations, quota and policy changes.
    Admin,
}

impl Permission {
    /// The stable lower-case name (`read`, `write`, `admin`), as in config, CLI and audit.
    pub fn as_str(self) -> &'static str {
        match self {
            Permission::Read => "read",
            Permission::Write => "write",
            Permission::Admin => "admin",
        }
    }
}

/// One grant: `actor` holds `permission` on `namespace` (or `*`), optionally only for keys under
/// `key_prefix` (a per-object ACL entry).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Grant {
    /// The actor or service the grant is for.
    pub actor: String,
    /// The namespace name, or `*` for every namespace of the tenant.
    pub namespace: String,
    /// Restricts the grant to keys starting with this prefix.
    pub key_prefix: Option<String>,
    /// The level granted.
    pub permission: Permission,
}

impl Grant {
    /// A grant of `permission` to `actor` on `namespace` (or `*`), optionally only for keys
    /// under `key_prefix`.
    pub fn new(
        actor: impl Into<String>,
        namespace: impl Into<String>,
        key_prefix: Option<&str>,
        permission: Permission,
    ) -> Grant {
        Grant {
            actor: actor.into(),
            namespace: namespace.into(),
            key_prefix: key_prefix.map(Into::into),
            permission,
        }
    }
}

impl fmt::Display for Grant {
    /// `alice write on docs (keys under 'pub/')`: names and levels only, for reasons and audit.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {} on {}",
            self.actor,
            self.permission.as_str(),
            self.namespace
        )?;
        match &self.key_prefix {
            Some(p) => write!(f, " (keys under '{p}')"),
            None => Ok(()),
        }
    }
}

/// The grants of one tenant. Default deny: an empty policy allows nothing.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessPolicy {
    /// The grants, in no particular order.
    pub grants: Vec<Grant>,
}

impl AccessPolicy {
    /// Whether `actor` may act at level `needed` on `key` (or the namespace itself when `None`).
    /// `namespace` `*` asks about the whole tenant, which only `*` grants cover.
    pub fn allows(
        &self,
        actor: &str,
        namespace: &str,
        key: Option<&str>,
        needed: Permission,
    ) -> bool {
        self.matching(actor, namespace, key, needed).is_some()
    }

    /// The first grant that allows the request, if any.
    pub fn matching(
        &self,
        actor: &str,
        namespace: &str,
        key: Option<&str>,
        needed: Permission,
    ) -> Option<&Grant> {
        self.grants.iter().find(|g| {
            g.actor == actor
                && (g.namespace == "*" || g.namespace == namespace)
                && g.permission >= needed
                && match (&g.key_prefix, key) {
                    (None, _) => true,
                    (Some(p), Some(k)) => k.starts_with(p.as_str()),
                    (Some(_), None) => false,
                }
        })
    }

    /// Adds `grant`, replacing a grant for the same actor, namespace and prefix. Returns
    /// whether anything changed.
    pub fn grant(&mut self, grant: Grant) -> bool {
        if self.grants.contains(&grant) {
            return false;
        }
        self.grants.retain(|g| {
            !(g.actor == grant.actor
                && g.namespace == grant.namespace
                && g.key_prefix == grant.key_prefix)
        });
        self.grants.push(grant);
        true
    }

    /// Removes the grants of `actor` on `namespace` with `key_prefix`. Returns how many went.
    pub fn revoke(&mut self, actor: &str, namespace: &str, key_prefix: Option<&str>) -> usize {
        let before = self.grants.len();
        self.grants.retain(|g| {
            !(g.actor == actor && g.namespace == namespace && g.key_prefix.as_deref() == key_prefix)
        });
        before - self.grants.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_deny_and_levels() {
        let empty = AccessPolicy::default();
        assert!(!empty.allows("a", "ns", Some("k"), Permission::Read));
        let p = AccessPolicy {
            grants: vec![
                Grant::new("w", "ns", None, Permission::Write),
                Grant::new("acl", "ns", Some("pub/"), Permission::Read),
                Grant::new("root", "*", None, Permission::Admin),
            ],
        };
        assert!(p.allows("w", "ns", Some("k"), Permission::Read));
        assert!(p.allows("w", "ns", Some("k"), Permission::Write));
        assert!(!p.allows("w", "ns", Some("k"), Permission::Admin));
        assert!(!p.allows("w", "other", Some("k"), Permission::Read));
        assert!(p.allows("acl", "ns", Some("pub/x"), Permission::Read));
        assert!(!p.allows("acl", "ns", Some("priv/x"), Permission::Read));
        assert!(!p.allows("acl", "ns", None, Permission::Read));
        assert!(p.allows("root", "any", None, Permission::Admin));
        assert!(p.allows("root", "*", None, Permission::Admin));
        assert!(
            !p.allows("w", "*", None, Permission::Read),
            "a namespace grant is not tenant-wide"
        );
    }

    #[test]
    fn grant_replaces_and_revoke_removes() {
        let mut p = AccessPolicy::default();
        assert!(p.grant(Grant::new("a", "ns", None, Permission::Read)));
        assert!(!p.grant(Grant::new("a", "ns", None, Permission::Read)));
        assert!(p.grant(Grant::new("a", "ns", None, Permission::Write)));
        assert_eq!(p.grants.len(), 1);
        assert!(p.allows("a", "ns", Some("k"), Permission::Write));
        assert!(p.grant(Grant::new("a", "ns", Some("x/"), Permission::Admin)));
        assert_eq!(p.revoke("a", "ns", None), 1);
        assert!(!p.allows("a", "ns", Some("k"), Permission::Read));
        assert!(p.allows("a", "ns", Some("x/k"), Permission::Admin));
        assert_eq!(p.revoke("a", "ns", None), 0);
    }
}
