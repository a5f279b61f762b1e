//! Governance through the facade: grants ([`PolicyAdmin`]) and quotas ([`QuotaAdmin`]). Every
//! change needs admin on what it changes and is audited.

use super::blob::BlobStore;
use crate::error::{Error, Result};
use crate::observability::observe;
use crate::policy::{AccessPolicy, Action, Grant, Permission, TENANT_WIDE};
use crate::quota::{Charge, QuotaLimits, QuotaStatus, QuotaUsage};
use crate::types::limits::{validate_actor, validate_prefix};
use crate::types::{Namespace, StorageContext};

/// Manages the caller's tenant's grants. Changing grants on a namespace needs admin on it;
/// tenant-wide grants (namespace `*`) and showing the policy need tenant-wide admin.
#[derive(Debug, Clone)]
pub struct PolicyAdmin {
    pub(super) blobs: BlobStore,
}

/// The namespace a grant or request names: `*` or a valid namespace of the caller's tenant.
fn scope(ctx: &StorageContext, namespace: &str) -> Result<String> {
    if namespace == TENANT_WIDE {
        return Ok(namespace.to_string());
    }
    Ok(Namespace::new(ctx.tenant(), namespace)?.name().to_string())
}

impl PolicyAdmin {
    /// Grant management over `blobs` (also reachable as [`Storage::policy`](super::Storage::policy)).
    pub fn new(blobs: BlobStore) -> Self {
        Self { blobs }
    }

    /// Adds `grant` (replacing one for the same actor, namespace and prefix) and returns the
    /// grants of its namespace (all of the tenant's for a tenant-wide grant: a namespace admin
    /// sees no more than it governs).
    pub async fn grant(&self, ctx: &StorageContext, grant: Grant) -> Result<AccessPolicy> {
        let b = &self.blobs;
        observe("policy.grant", b.adapter.as_ref(), ctx, async {
            validate_actor(&grant.actor)?;
            let namespace = scope(ctx, &grant.namespace)?;
            if let Some(prefix) = &grant.key_prefix {
                validate_prefix(prefix)?;
            }
            b.access
                .check(ctx, "policy.grant", Action::ManagePolicy, &namespace, None)
                .await?;
            let detail = format!("grant {grant}");
            let (_, policy) = b
                .access
                .store()
                .update(ctx.tenant().as_str(), |p| Ok((p.grant(grant.clone()), ())))
                .await?;
            b.audit_change(ctx, "policy.grant", &namespace, detail);
            let mut visible = (*policy).clone();
            if namespace != TENANT_WIDE {
                visible.grants.retain(|g| g.namespace == namespace);
            }
            Ok(visible)
        })
        .await
    }

    /// Bootstraps a tenant that has no grants at all: makes `actor` admin of the whole tenant
    /// (namespace `*`) and returns the tenant's grants. This is the way in for a store with no
    /// superusers; it needs no permission, because an empty tenant has nobody to ask.
    ///
    /// Once the tenant has any grant this is `Conflict` (an admin grants from then on), unless
    /// `actor` already is admin of the whole tenant, which returns the grants unchanged. The
    /// check and the write are one compare-and-swap, so two racing bootstraps make one admin.
    /// The library does not authenticate callers (see [`StorageContext`]): an application
    /// should expose this only to whoever sets up tenants.
    pub async fn bootstrap_admin(&self, ctx: &StorageContext, actor: &str) -> Result<AccessPolicy> {
        let b = &self.blobs;
        observe("policy.bootstrap_admin", b.adapter.as_ref(), ctx, async {
            validate_actor(actor)?;
            let grant = Grant::new(actor, TENANT_WIDE, None, Permission::Admin);
            let (_, policy) = b
                .access
                .store()
                .update(ctx.tenant().as_str(), |p| {
                    if p.grants.contains(&grant) {
                        return Ok((false, ()));
                    }
                    if !p.grants.is_empty() {
                        return Err(Error::conflict(format!(
                            "tenant '{}' already has {} grant(s), so it cannot be bootstrapped; \
                             an admin of the tenant grants access (`sanctum policy grant`)",
                            ctx.tenant(),
                            p.grants.len()
                        )));
                    }
                    Ok((p.grant(grant.clone()), ()))
                })
                .await?;
            b.audit_change(
                ctx,
                "policy.bootstrap_admin",
                TENANT_WIDE,
                format!("bootstrap: grant {grant}"),
            );
            Ok((*policy).clone())
        })
        .await
    }

    /// Removes `actor`'s grants on `namespace` with exactly `key_prefix`; returns how many.
    pub async fn revoke(
        &self,
        ctx: &StorageContext,
        actor: &str,
        namespace: &str,
        key_prefix: Option<&str>,
    ) -> Result<usize> {
        let b = &self.blobs;
        observe("policy.revoke", b.adapter.as_ref(), ctx, async {
            validate_actor(actor)?;
            let namespace = scope(ctx, namespace)?;
            b.access
                .check(ctx, "policy.revoke", Action::ManagePolicy, &namespace, None)
                .await?;
            let (removed, _) = b
                .access
                .store()
                .update(ctx.tenant().as_str(), |p| {
                    let n = p.revoke(actor, &namespace, key_prefix);
                    Ok((n > 0, n))
                })
                .await?;
            let detail = format!(
                "revoke {actor} on {namespace}{}: {removed} grant(s)",
                key_prefix
                    .map(|p| format!(" (keys under '{p}')"))
                    .unwrap_or_default()
            );
            b.audit_change(ctx, "policy.revoke", &namespace, detail);
            Ok(removed)
        })
        .await
    }

    /// The tenant's grants.
    pub async fn show(&self, ctx: &StorageContext) -> Result<AccessPolicy> {
        let b = &self.blobs;
        observe("policy.show", b.adapter.as_ref(), ctx, async {
            b.access
                .check(ctx, "policy.show", Action::ManagePolicy, TENANT_WIDE, None)
                .await?;
            Ok((*b.access.store().load(ctx.tenant().as_str()).await?).clone())
        })
        .await
    }
}

/// Manages namespace quotas of the caller's tenant. Setting one needs admin on the namespace;
/// showing it needs read.
#[derive(Debug, Clone)]
pub struct QuotaAdmin {
    pub(super) blobs: BlobStore,
}

impl QuotaAdmin {
    /// Quota management over `blobs` (also reachable as [`Storage::quotas`](super::Storage::quotas)).
    pub fn new(blobs: BlobStore) -> Self {
        Self { blobs }
    }

    /// Sets the limits of `ns`. A namespace gaining its first quota has its current usage
    /// counted from its heads (writes racing with that count, in other processes, may be
    /// missed). A limit below the current usage is accepted: writes fail until usage drops.
    pub async fn set(
        &self,
        ctx: &StorageContext,
        ns: &str,
        limits: QuotaLimits,
    ) -> Result<QuotaStatus> {
        let b = &self.blobs;
        observe("quota.set", b.adapter.as_ref(), ctx, async {
            let namespace = Namespace::new(ctx.tenant(), ns)?;
            b.access
                .check(
                    ctx,
                    "quota.set",
                    Action::ManageQuota,
                    namespace.name(),
                    None,
                )
                .await?;
            let tenant = ctx.tenant().as_str();
            let first = b.quotas.read(tenant, namespace.name()).await?.is_none();
            // The document exists before the count, so writes racing with the count are
            // charged too: counted twice at worst (high, never low).
            let mut status = b
                .quotas
                .set_limits(tenant, namespace.name(), limits, QuotaUsage::default())
                .await?;
            if first {
                let usage = b.usage_of(&namespace).await?;
                let held = Charge {
                    bytes: usage.bytes as i64,
                    objects: usage.objects as i64,
                };
                b.quotas.settle(tenant, namespace.name(), held).await?;
                if let Some((now, _)) = b.quotas.read(tenant, namespace.name()).await? {
                    status = now;
                }
            }
            let show = |v: Option<u64>| v.map_or("unlimited".to_string(), |v| v.to_string());
            b.audit_change(
                ctx,
                "quota.set",
                namespace.name(),
                format!(
                    "max_bytes {}, max_objects {}, max_records {}, max_record_bytes {}",
                    show(limits.max_bytes),
                    show(limits.max_objects),
                    show(limits.max_records),
                    show(limits.max_record_bytes)
                ),
            );
            Ok(status)
        })
        .await
    }

    /// Removes the quota of `ns`; returns whether it had one.
    pub async fn remove(&self, ctx: &StorageContext, ns: &str) -> Result<bool> {
        let b = &self.blobs;
        observe("quota.remove", b.adapter.as_ref(), ctx, async {
            let namespace = Namespace::new(ctx.tenant(), ns)?;
            b.access
                .check(
                    ctx,
                    "quota.remove",
                    Action::ManageQuota,
                    namespace.name(),
                    None,
                )
                .await?;
            let removed = b
                .quotas
                .remove(ctx.tenant().as_str(), namespace.name())
                .await?;
            b.audit_change(
                ctx,
                "quota.remove",
                namespace.name(),
                "quota removed".into(),
            );
            Ok(removed)
        })
        .await
    }

    /// The limits and usage of `ns`, or `None` when it has no quota.
    pub async fn show(&self, ctx: &StorageContext, ns: &str) -> Result<Option<QuotaStatus>> {
        let b = &self.blobs;
        observe("quota.show", b.adapter.as_ref(), ctx, async {
            let namespace = Namespace::new(ctx.tenant(), ns)?;
            b.access
                .check(ctx, "quota.show", Action::ShowQuota, namespace.name(), None)
                .await?;
            Ok(b.quotas
                .read(ctx.tenant().as_str(), namespace.name())
                .await?
                .map(|(s, _)| s))
        })
        .await
    }
}
