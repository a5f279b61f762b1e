//! Access policy: who may do what, decided before any backend is touched.
//!
//! Every facade operation names an [`Action`]; the [`Authorizer`] turns the caller's
//! [`StorageContext`] and the action into an [`AccessRequest`], asks the [`PolicyEngine`] (the
//! built-in grant model, or Cedar behind the `cedar` feature) with the tenant's stored grants,
//! records the decision as an audit event, and refuses with `Unauthorized` when denied.
//!
//! Tenancy is not a policy question: every name is resolved inside the caller's tenant, so no
//! grant can reach another tenant's data, and another tenant's object is simply not there
//! (`NotFound`).

#[cfg(feature = "cedar")]
pub mod cedar;
pub(crate) mod store;

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::sync::Arc;
use std::time::Duration;

use crate::adapters::BlobAdapter;
use crate::error::{Error, ErrorCode, Result};
use crate::observability::audit::{AuditDecision, AuditEvent, AuditSink};
use crate::observability::clock::Clock;
use crate::types::StorageContext;
pub use crate::types::policy::{AccessPolicy, Grant, Permission};

pub(crate) use store::{PolicyStore, path as policy_path};

/// The namespace value that stands for "the whole tenant" in grants and requests.
pub const TENANT_WIDE: &str = "*";

/// What an operation does, for policy decisions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    /// Get, head or list versions of an object.
    Read,
    /// List a namespace (the request's key is the listing prefix, if any).
    List,
    /// Put a new version.
    Write,
    /// Delete (tombstone) an object.
    Delete,
    /// Make an old version current again.
    Restore,
    /// Remove an object and its history for good.
    Purge,
    /// Remove unreferenced bodies of a namespace.
    Sweep,
    /// Rotate, re-encrypt or shred keys.
    ManageKeys,
    /// Change or show grants.
    ManagePolicy,
    /// Change quotas.
    ManageQuota,
    /// Show quotas and usage.
    ShowQuota,
}

impl Action {
    /// The stable name used by policy engines (Cedar's `Action::"<name>"`) and audit events.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Read => "read",
            Action::List => "list",
            Action::Write => "write",
            Action::Delete => "delete",
            Action::Restore => "restore",
            Action::Purge => "purge",
            Action::Sweep => "sweep",
            Action::ManageKeys => "manage_keys",
            Action::ManagePolicy => "manage_policy",
            Action::ManageQuota => "manage_quota",
            Action::ShowQuota => "show_quota",
        }
    }

    /// The permission level the built-in model requires for this action.
    pub fn permission(self) -> Permission {
        match self {
            Action::Read | Action::List | Action::ShowQuota => Permission::Read,
            Action::Write | Action::Delete => Permission::Write,
            Action::Restore
            | Action::Purge
            | Action::Sweep
            | Action::ManageKeys
            | Action::ManagePolicy
            | Action::ManageQuota => Permission::Admin,
        }
    }
}

/// One question for a [`PolicyEngine`]: may `actor` of `tenant` do `action` on `namespace`
/// (or, when it is [`TENANT_WIDE`], on the whole tenant) and `key`?
#[derive(Debug, Clone, Copy)]
pub struct AccessRequest<'a> {
    /// The caller's tenant (every name below is inside it).
    pub tenant: &'a str,
    /// Who asks.
    pub actor: &'a str,
    /// The caller's authentication claims (e.g. `groups`).
    pub claims: &'a BTreeMap<String, String>,
    /// What the operation does.
    pub action: Action,
    /// The facade operation, e.g. `blob.put`.
    pub operation: &'static str,
    /// The namespace, or [`TENANT_WIDE`].
    pub namespace: &'a str,
    /// The object key (for a listing, its prefix), when the request concerns one.
    pub key: Option<&'a str>,
}

/// A policy engine's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// Whether the request is allowed.
    pub allowed: bool,
    /// Why, for audit events (never shown to other tenants; it names grants or policies, not
    /// data).
    pub reason: String,
}

impl Decision {
    /// An allowing decision.
    pub fn allow(reason: impl Into<String>) -> Self {
        Self {
            allowed: true,
            reason: reason.into(),
        }
    }

    /// A denying decision.
    pub fn deny(reason: impl Into<String>) -> Self {
        Self {
            allowed: false,
            reason: reason.into(),
        }
    }
}

/// Decides access requests. Called on the request path, synchronously: it must take
/// microseconds, not perform I/O. `grants` is the tenant's stored [`AccessPolicy`] (managed
/// through [`PolicyAdmin`](crate::facade::PolicyAdmin) and `sanctum policy`).
pub trait PolicyEngine: Send + Sync + Debug + 'static {
    /// A short name for spans and audit reasons, e.g. `builtin`.
    fn name(&self) -> &'static str;

    /// Decides `request`. Default deny: anything not allowed is denied.
    fn decide(&self, request: &AccessRequest<'_>, grants: &AccessPolicy) -> Decision;
}

/// The built-in model: an actor may act when one of the tenant's grants names it, the
/// namespace (or `*`), a level at least the action's [`Action::permission`] and, for grants
/// limited to a key prefix, a key under that prefix.
#[derive(Debug, Default, Clone, Copy)]
pub struct BuiltinEngine;

impl PolicyEngine for BuiltinEngine {
    fn name(&self) -> &'static str {
        "builtin"
    }

    fn decide(&self, request: &AccessRequest<'_>, grants: &AccessPolicy) -> Decision {
        let needed = request.action.permission();
        match grants.matching(request.actor, request.namespace, request.key, needed) {
            Some(grant) => Decision::allow(format!("grant {grant}")),
            None => Decision::deny(format!(
                "no grant gives {} on this namespace",
                needed.as_str()
            )),
        }
    }
}

/// How access is decided: the engine, the actors that are admin of every tenant, and how long a
/// process may use grants it has read (other processes' changes show within that time).
#[derive(Debug, Clone)]
pub struct AccessSettings {
    /// The engine. Default: [`BuiltinEngine`].
    pub engine: Arc<dyn PolicyEngine>,
    /// Actors that are admin of every tenant without a grant (the embedded default makes `local`
    /// one, so the quick start needs no setup). Empty by default.
    pub superusers: Vec<String>,
    /// How long stored grants and quotas are cached in this process.
    pub cache_ttl: Duration,
}

impl Default for AccessSettings {
    fn default() -> Self {
        Self {
            engine: Arc::new(BuiltinEngine),
            superusers: Vec::new(),
            cache_ttl: Duration::from_secs(1),
        }
    }
}

impl AccessSettings {
    /// The defaults with `actors` as superusers (tests and single-user tools).
    pub fn with_superusers<I, S>(actors: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Self {
            superusers: actors.into_iter().map(Into::into).collect(),
            ..Self::default()
        }
    }
}

/// Checks every facade operation against the policy and audits the decision.
#[derive(Debug)]
pub struct Authorizer {
    engine: Arc<dyn PolicyEngine>,
    superusers: Vec<String>,
    store: PolicyStore,
    audit: Arc<dyn AuditSink>,
    clock: Arc<dyn Clock>,
}

impl Authorizer {
    pub(crate) fn new(
        settings: AccessSettings,
        adapter: Arc<dyn BlobAdapter>,
        audit: Arc<dyn AuditSink>,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self {
            engine: settings.engine,
            superusers: settings.superusers,
            store: PolicyStore::new(adapter, settings.cache_ttl),
            audit,
            clock,
        }
    }

    pub(crate) fn store(&self) -> &PolicyStore {
        &self.store
    }

    /// The engine's name.
    pub fn engine_name(&self) -> &'static str {
        self.engine.name()
    }

    /// Decides whether `ctx` may do `action` on `namespace` (or [`TENANT_WIDE`]) and `key`,
    /// without auditing or failing: what the facade's check does before it records the event.
    pub async fn decide(
        &self,
        ctx: &StorageContext,
        operation: &'static str,
        action: Action,
        namespace: &str,
        key: Option<&str>,
    ) -> Result<Decision> {
        if self.superusers.iter().any(|s| s == ctx.actor()) {
            return Ok(Decision::allow("superuser"));
        }
        let grants = self.store.load(ctx.tenant().as_str()).await?;
        let request = AccessRequest {
            tenant: ctx.tenant().as_str(),
            actor: ctx.actor(),
            claims: &ctx.claims,
            action,
            operation,
            namespace,
            key,
        };
        Ok(self.engine.decide(&request, &grants))
    }

    /// Decides, records the decision as an audit event and fails with `Unauthorized` when
    /// denied. The error says which permission is missing, never anything about stored data.
    pub async fn check(
        &self,
        ctx: &StorageContext,
        operation: &'static str,
        action: Action,
        namespace: &str,
        key: Option<&str>,
    ) -> Result<()> {
        let decision = self.decide(ctx, operation, action, namespace, key).await?;
        self.audit.record(AuditEvent {
            namespace: Some(namespace.to_string()),
            key: key.map(str::to_string),
            decision: Some(AuditDecision {
                allowed: decision.allowed,
                action: action.as_str(),
                reason: decision.reason.clone(),
            }),
            ..AuditEvent::for_request(self.clock.now_ms(), operation, ctx)
        });
        if decision.allowed {
            return Ok(());
        }
        let action_name = action.as_str().replace('_', " ");
        let subject = match (namespace, key) {
            (TENANT_WIDE, _) => format!("in tenant '{}' (all namespaces)", ctx.tenant()),
            (ns, Some(key)) if action == Action::List => {
                format!("keys under '{}' in namespace '{ns}'", key.escape_debug())
            }
            (ns, Some(key)) => format!("key '{}' in namespace '{ns}'", key.escape_debug()),
            (ns, None) => format!("in namespace '{ns}'"),
        };
        let mut message = format!(
            "actor '{}' may not {action_name} {subject} ({} required)",
            ctx.actor().escape_debug(),
            action.permission().as_str()
        );
        // A tenant with no grants at all has never been set up: say how to let someone in.
        let tenant_is_empty = self
            .store
            .load(ctx.tenant().as_str())
            .await
            .is_ok_and(|p| p.grants.is_empty());
        if tenant_is_empty {
            message.push_str(&format!(
                "; tenant '{}' has no grants at all yet: make a first admin with `sanctum init \
                 --admin ACTOR` (library: `PolicyAdmin::bootstrap_admin`), or name the actor in \
                 `[policy] superusers`",
                ctx.tenant()
            ));
        } else {
            message.push_str("; ask an admin of the tenant for a grant (`sanctum policy grant`)");
        }
        Err(Error::new(ErrorCode::Unauthorized, message))
    }
}
