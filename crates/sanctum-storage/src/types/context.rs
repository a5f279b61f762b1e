//! [`StorageContext`]: who is asking, for which tenant, under which correlation id.

use std::collections::BTreeMap;
use std::fmt;

use crate::error::Result;
use crate::types::limits::{validate_actor, validate_id};

/// A validated tenant id: 1-63 of `[a-z0-9-]`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TenantId(String);

impl TenantId {
    /// Validates and wraps a tenant id.
    pub fn new(id: impl Into<String>) -> Result<Self> {
        let id = id.into();
        validate_id("tenant", &id)?;
        Ok(Self(id))
    }

    /// The id as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for TenantId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// How a request wants the (coming) cache to behave. Until the cache layer lands every read goes
/// to the adapter, which satisfies `Strong` and `Eventual`; `CacheOnly` reads are refused with
/// `NotSupported` (unless `bypass_cache` is set).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Consistency {
    /// Read your writes; a cached entry only within the staleness budget.
    #[default]
    Strong,
    /// A cached entry within its TTL is good enough.
    Eventual,
    /// Never touch the backend; a miss is `NotFound`.
    CacheOnly,
}

/// Request-level cache defaults carried by a [`StorageContext`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CachePolicy {
    /// The default consistency mode of reads.
    pub consistency: Consistency,
    /// Always go to the adapter.
    pub bypass_cache: bool,
    /// How old a cached entry may be under `Strong`, in milliseconds.
    pub staleness_budget_ms: u64,
}

/// The request-scoped context every facade call takes: tenant, actor, correlation id, claims.
///
/// The tenant scopes every name the call uses; the actor is who policy decisions are about. Both
/// are required, so a context cannot exist without them.
#[derive(Debug, Clone)]
pub struct StorageContext {
    tenant: TenantId,
    actor: String,
    correlation_id: String,
    /// Claims from the caller's authentication (e.g. groups), for policy engines.
    pub claims: BTreeMap<String, String>,
    /// The caller's locale, for messages meant for end users.
    pub locale: Option<String>,
    /// Cache defaults for this request.
    pub cache_policy: CachePolicy,
}

impl StorageContext {
    /// A context for `tenant` and `actor`, with a fresh correlation id.
    pub fn new(tenant: &str, actor: &str) -> Result<Self> {
        let tenant = TenantId::new(tenant)?;
        validate_actor(actor)?;
        Ok(Self {
            tenant,
            actor: actor.to_string(),
            correlation_id: ulid::Ulid::new().to_string().to_ascii_lowercase(),
            claims: BTreeMap::new(),
            locale: None,
            cache_policy: CachePolicy::default(),
        })
    }

    /// Replaces the correlation id (e.g. with the caller's trace id).
    pub fn with_correlation_id(mut self, id: impl Into<String>) -> Self {
        self.correlation_id = id.into();
        self
    }

    /// The tenant this request acts within.
    pub fn tenant(&self) -> &TenantId {
        &self.tenant
    }

    /// The user or service making the request.
    pub fn actor(&self) -> &str {
        &self.actor
    }

    /// The id that ties this request's spans, logs and audit events together.
    pub fn correlation_id(&self) -> &str {
        &self.correlation_id
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn context_requires_valid_tenant_and_actor() {
        assert!(StorageContext::new("acme", "alice").is_ok());
        assert!(StorageContext::new("", "alice").is_err());
        assert!(StorageContext::new("../x", "alice").is_err());
        assert!(StorageContext::new("acme", "").is_err());
        assert!(StorageContext::new("acme", "a\nb").is_err());
        let a = StorageContext::new("acme", "alice").unwrap();
        let b = StorageContext::new("acme", "alice").unwrap();
        assert_ne!(a.correlation_id(), b.correlation_id());
    }
}
