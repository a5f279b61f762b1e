//! [`CedarEngine`]: access decisions by AWS Cedar policies (feature `cedar`), for what grants
//! cannot say: groups, attributes, conditions, explicit denials.
//!
//! Each request becomes a Cedar request:
//!
//! - principal `Actor::"<actor>"`, member of `Tenant::"<tenant>"` and of `Group::"<g>"` for each
//!   comma-separated group in the `groups` claim;
//! - action `Action::"<action>"` (see [`Action::as_str`](super::Action::as_str): `read`, `list`,
//!   `write`, `delete`, `restore`, `purge`, `sweep`, `manage_keys`, `manage_policy`,
//!   `manage_quota`, `show_quota`);
//! - resource `Object::"<namespace>/<key>"` (member of `Namespace::"<namespace>"`) when a key is
//!   named, else `Namespace::"<namespace>"` (`*` for tenant-wide requests), which is a member of
//!   `Tenant::"<tenant>"`;
//! - context `{ tenant, namespace, key, operation, permission, claims }` (`key` is `""` when none;
//!   `claims` is a record of the caller's claims as strings).
//!
//! A `permit` allows; a `forbid` denies whatever grants say. When no Cedar policy applies, the
//! tenant's built-in grants decide, so `sanctum policy grant` keeps working beside Cedar. If any
//! policy fails to evaluate (say it reads an attribute a request lacks), the request is denied:
//! Cedar skips an erroring policy, which could be a `forbid`. Guard optional attributes with
//! `has`.
//!
//! **One policy set serves every tenant.** Entity ids do not include the tenant, so
//! `Actor::"alice"` is every tenant's alice: scope policies to a tenant with
//! `principal in Tenant::"acme"`, `resource in Tenant::"acme"` or `context.tenant == "acme"`.

use std::collections::{HashMap, HashSet};
use std::str::FromStr;

use cedar_policy::{
    Authorizer as CedarAuthorizer, Context, Decision as CedarDecision, Entities, Entity, EntityId,
    EntityTypeName, EntityUid, PolicySet, Request, RestrictedExpression,
};

use super::{AccessRequest, BuiltinEngine, Decision, PolicyEngine};
use crate::error::{Error, Result};
use crate::types::policy::AccessPolicy;

/// Decides with a Cedar policy set, falling back to the built-in grants where no policy applies.
#[derive(Debug)]
pub struct CedarEngine {
    policies: PolicySet,
    authorizer: CedarAuthorizer,
}

fn uid(kind: &str, id: &str) -> EntityUid {
    EntityUid::from_type_name_and_id(
        EntityTypeName::from_str(kind).expect("fixed, valid type names"),
        EntityId::new(id),
    )
}

impl CedarEngine {
    /// Parses `policies` (Cedar policy text). A syntax error is a `Config` error naming it.
    pub fn from_policies(policies: &str) -> Result<Self> {
        let policies = PolicySet::from_str(policies)
            .map_err(|e| Error::config(format!("invalid Cedar policies: {e}")))?;
        Ok(Self {
            policies,
            authorizer: CedarAuthorizer::new(),
        })
    }

    /// Reads and parses a Cedar policy file.
    pub fn from_file(path: &std::path::Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            Error::config(format!(
                "cannot read the Cedar policy file {}: {e}",
                path.display()
            ))
        })?;
        Self::from_policies(&text)
    }

    fn cedar_decide(&self, request: &AccessRequest<'_>) -> std::result::Result<Decision, String> {
        let principal = uid("Actor", request.actor);
        let groups: HashSet<EntityUid> = request
            .claims
            .get("groups")
            .map(|g| {
                g.split(',')
                    .map(str::trim)
                    .filter(|g| !g.is_empty())
                    .map(|g| uid("Group", g))
                    .collect()
            })
            .unwrap_or_default();
        let tenant = uid("Tenant", request.tenant);
        let namespace = uid("Namespace", request.namespace);
        let mut parents = groups.clone();
        parents.insert(tenant.clone());
        let mut entities = vec![
            Entity::new_no_attrs(principal.clone(), parents),
            Entity::new_no_attrs(namespace.clone(), HashSet::from([tenant.clone()])),
            Entity::new_no_attrs(tenant, HashSet::new()),
        ];
        entities.extend(
            groups
                .into_iter()
                .map(|g| Entity::new_no_attrs(g, HashSet::new())),
        );
        let resource = match request.key {
            Some(key) => {
                let object = uid("Object", &format!("{}/{key}", request.namespace));
                let attrs = HashMap::from([
                    (
                        "namespace".to_string(),
                        RestrictedExpression::new_string(request.namespace.to_string()),
                    ),
                    (
                        "key".to_string(),
                        RestrictedExpression::new_string(key.to_string()),
                    ),
                ]);
                entities.push(
                    Entity::new(object.clone(), attrs, HashSet::from([namespace]))
                        .map_err(|e| e.to_string())?,
                );
                object
            }
            None => namespace,
        };
        let claims = RestrictedExpression::new_record(
            request
                .claims
                .iter()
                .map(|(k, v)| (k.clone(), RestrictedExpression::new_string(v.clone()))),
        )
        .map_err(|e| e.to_string())?;
        let string = |s: &str| RestrictedExpression::new_string(s.to_string());
        let context = Context::from_pairs([
            ("tenant".to_string(), string(request.tenant)),
            ("namespace".to_string(), string(request.namespace)),
            ("key".to_string(), string(request.key.unwrap_or(""))),
            ("operation".to_string(), string(request.operation)),
            (
                "permission".to_string(),
                string(request.action.permission().as_str()),
            ),
            ("claims".to_string(), claims),
        ])
        .map_err(|e| e.to_string())?;
        let cedar_request = Request::new(
            principal,
            uid("Action", request.action.as_str()),
            resource,
            context,
            None,
        )
        .map_err(|e| e.to_string())?;
        let entities = Entities::from_entities(entities, None).map_err(|e| e.to_string())?;
        let response = self
            .authorizer
            .is_authorized(&cedar_request, &self.policies, &entities);
        let reasons: Vec<String> = response
            .diagnostics()
            .reason()
            .map(|id| id.to_string())
            .collect();
        let errors = response.diagnostics().errors().count();
        if errors > 0 {
            // Cedar skips an erroring policy, which may have been a forbid.
            return Ok(Decision::deny(format!(
                "cedar: {errors} policy error(s), denied"
            )));
        }
        Ok(match (response.decision(), reasons.is_empty()) {
            (CedarDecision::Allow, _) => {
                Decision::allow(format!("cedar permit {}", reasons.join(", ")))
            }
            (CedarDecision::Deny, false) => {
                Decision::deny(format!("cedar forbid {}", reasons.join(", ")))
            }
            (CedarDecision::Deny, true) => Decision {
                allowed: false,
                reason: String::new(), // no policy applies: grants decide
            },
        })
    }
}

impl PolicyEngine for CedarEngine {
    fn name(&self) -> &'static str {
        "cedar"
    }

    fn decide(&self, request: &AccessRequest<'_>, grants: &AccessPolicy) -> Decision {
        match self.cedar_decide(request) {
            Ok(d) if d.allowed || !d.reason.is_empty() => d,
            Ok(_) => BuiltinEngine.decide(request, grants),
            Err(e) => Decision::deny(format!("cedar request could not be built: {e}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::policy::{Action, Grant, Permission};

    fn request<'a>(
        actor: &'a str,
        claims: &'a BTreeMap<String, String>,
        action: Action,
        namespace: &'a str,
        key: Option<&'a str>,
    ) -> AccessRequest<'a> {
        AccessRequest {
            tenant: "acme",
            actor,
            claims,
            action,
            operation: "blob.test",
            namespace,
            key,
        }
    }

    const POLICIES: &str = r#"
        permit(principal in Group::"readers", action == Action::"read", resource in Namespace::"docs");
        permit(principal, action == Action::"write", resource in Namespace::"scratch")
            when { context.key like "tmp/*" };
        forbid(principal == Actor::"mallory", action, resource);
    "#;

    #[test]
    fn groups_conditions_forbid_and_fallback() {
        let engine = CedarEngine::from_policies(POLICIES).unwrap();
        let none = BTreeMap::new();
        let readers = BTreeMap::from([("groups".to_string(), "eng, readers".to_string())]);
        let grants = AccessPolicy {
            grants: vec![
                Grant::new("mallory", "*", None, Permission::Admin),
                Grant::new("gina", "docs", None, Permission::Write),
            ],
        };
        let d = |r: &AccessRequest<'_>| engine.decide(r, &grants);
        // Group membership from claims.
        assert!(d(&request("ann", &readers, Action::Read, "docs", Some("a"))).allowed);
        assert!(!d(&request("ann", &none, Action::Read, "docs", Some("a"))).allowed);
        assert!(!d(&request("ann", &readers, Action::Read, "other", Some("a"))).allowed);
        assert!(!d(&request("ann", &readers, Action::Write, "docs", Some("a"))).allowed);
        // Conditions on the key.
        assert!(
            d(&request(
                "bob",
                &none,
                Action::Write,
                "scratch",
                Some("tmp/x")
            ))
            .allowed
        );
        assert!(
            !d(&request(
                "bob",
                &none,
                Action::Write,
                "scratch",
                Some("keep/x")
            ))
            .allowed
        );
        // A forbid beats a built-in admin grant.
        let denied = d(&request("mallory", &none, Action::Read, "docs", Some("a")));
        assert!(!denied.allowed);
        assert!(denied.reason.contains("forbid"), "{}", denied.reason);
        // No policy applies: the grants decide.
        let fallback = d(&request("gina", &none, Action::Write, "docs", Some("a")));
        assert!(fallback.allowed, "{}", fallback.reason);
        assert!(fallback.reason.starts_with("grant"), "{}", fallback.reason);
        assert!(!d(&request("gina", &none, Action::Purge, "docs", Some("a"))).allowed);
    }

    #[test]
    fn an_erroring_forbid_denies_and_tenants_scope_policies() {
        let engine = CedarEngine::from_policies(
            r#"
            permit(principal, action == Action::"read", resource);
            forbid(principal, action, resource) when { context.claims.clearance == "none" };
            permit(principal in Tenant::"acme", action == Action::"write", resource in Tenant::"acme");
            "#,
        )
        .unwrap();
        let grants = AccessPolicy::default();
        let none = BTreeMap::new();
        // The forbid reads a claim this request lacks: it errors, so the request is denied
        // although a permit matches.
        let d = engine.decide(
            &request("ann", &none, Action::Read, "docs", Some("a")),
            &grants,
        );
        assert!(!d.allowed, "{}", d.reason);
        assert!(d.reason.contains("error"), "{}", d.reason);
        let cleared = BTreeMap::from([("clearance".to_string(), "top".to_string())]);
        let d = engine.decide(
            &request("ann", &cleared, Action::Read, "docs", Some("a")),
            &grants,
        );
        assert!(d.allowed, "{}", d.reason);
        // `request` is tenant acme: the tenant-scoped permit applies there and nowhere else.
        let mut elsewhere = request("ann", &cleared, Action::Write, "docs", Some("a"));
        assert!(engine.decide(&elsewhere, &grants).allowed);
        elsewhere.tenant = "other";
        assert!(!engine.decide(&elsewhere, &grants).allowed);
    }

    #[test]
    fn bad_policy_text_is_a_config_error() {
        let e = CedarEngine::from_policies("permit(principal, action").unwrap_err();
        assert_eq!(e.code(), crate::ErrorCode::Config);
    }

    #[test]
    fn hostile_names_stay_strings() {
        // Quotes and Cedar syntax in names are data, not policy.
        let engine = CedarEngine::from_policies(POLICIES).unwrap();
        let none = BTreeMap::new();
        let grants = AccessPolicy::default();
        let evil = r#"x" || true || "y"#;
        let d = engine.decide(
            &request(evil, &none, Action::Read, "docs", Some(evil)),
            &grants,
        );
        assert!(!d.allowed);
        assert!(!d.reason.starts_with("cedar request"), "{}", d.reason);
        // The same names with a grant: decided by the grant, names compared as plain strings.
        let grants = AccessPolicy {
            grants: vec![Grant::new(evil, "docs", Some(evil), Permission::Read)],
        };
        let d = engine.decide(
            &request(evil, &none, Action::Read, "docs", Some(evil)),
            &grants,
        );
        assert!(d.allowed, "{}", d.reason);
    }
}
