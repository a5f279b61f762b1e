//! [`Namespace`]: a tenant-scoped bucket of objects.

use std::fmt;

use crate::error::Result;
use crate::types::context::TenantId;
use crate::types::limits::validate_id;

/// A namespace of one tenant. Two tenants may both have a namespace `photos`; they never meet.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Namespace {
    tenant: TenantId,
    name: String,
    /// Preferred region for the namespace's data (informational until multi-region lands).
    pub region: Option<String>,
}

impl Namespace {
    /// Validates `name` (1-63 of `[a-z0-9-]`) and scopes it to `tenant`.
    pub fn new(tenant: &TenantId, name: &str) -> Result<Self> {
        validate_id("namespace", name)?;
        Ok(Self {
            tenant: tenant.clone(),
            name: name.to_string(),
            region: None,
        })
    }

    /// The owning tenant.
    pub fn tenant(&self) -> &TenantId {
        &self.tenant
    }

    /// The namespace's name within its tenant.
    pub fn name(&self) -> &str {
        &self.name
    }
}

impl fmt::Display for Namespace {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.tenant, self.name)
    }
}
