//! [`AccessPolicy`]: resolved read / write / admin permissions per actor and namespace.
//!
//! This is the data model; enforcement at the facade arrives with the policy issue.

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

/// The grants of one tenant. Default deny: an empty policy allows nothing.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessPolicy {
    /// The grants, in no particular order.
    pub grants: Vec<Grant>,
}

impl AccessPolicy {
    /// Whether `actor` may act at level `needed` on `key` (or the namespace itself when `None`).
    pub fn allows(
        &self,
        actor: &str,
        namespace: &str,
        key: Option<&str>,
        needed: Permission,
    ) -> bool {
        self.grants.iter().any(|g| {
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
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grant(actor: &str, ns: &str, prefix: Option<&str>, p: Permission) -> Grant {
        Grant {
            actor: actor.into(),
            namespace: ns.into(),
            key_prefix: prefix.map(Into::into),
            permission: p,
        }
    }

    #[test]
    fn default_deny_and_levels() {
        let empty = AccessPolicy::default();
        assert!(!empty.allows("a", "ns", Some("k"), Permission::Read));
        let p = AccessPolicy {
            grants: vec![
                grant("w", "ns", None, Permission::Write),
                grant("acl", "ns", Some("pub/"), Permission::Read),
                grant("root", "*", None, Permission::Admin),
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
    }
}
