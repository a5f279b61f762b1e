//! The built-in policy store: each tenant's [`AccessPolicy`] as one JSON document in the blob
//! backend (`t/<tenant>/policy`), changed by compare-and-swap and cached for a short time.
//!
//! Grants are not payload (they name actors, namespaces and key prefixes), so they are stored in
//! the clear; they live under the tenant's own prefix like everything else of the tenant.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::adapters::json::{read_json, write_json};
use crate::adapters::{BlobAdapter, BlobPath, PutMode};
use crate::error::{Error, ErrorCode, Result};
use crate::types::policy::AccessPolicy;

/// A stored policy larger than this is corrupt (about 10 000 grants).
const MAX_POLICY_BYTES: u64 = 2 * 1024 * 1024;
/// The most grants one tenant may hold.
pub(crate) const MAX_GRANTS: usize = 10_000;
/// How many times a change retries a lost compare-and-swap.
const MAX_ATTEMPTS: usize = 100;

/// Loads, caches and changes tenants' grants.
#[derive(Debug)]
pub(crate) struct PolicyStore {
    adapter: Arc<dyn BlobAdapter>,
    ttl: Duration,
    cache: Mutex<HashMap<String, (Arc<AccessPolicy>, Instant)>>,
}

/// Where the grants of `tenant` live.
pub(crate) fn path(tenant: &str) -> Result<BlobPath> {
    BlobPath::new(format!("t/{tenant}/policy"))
}

impl PolicyStore {
    pub(crate) fn new(adapter: Arc<dyn BlobAdapter>, ttl: Duration) -> Self {
        Self {
            adapter,
            ttl,
            cache: Mutex::new(HashMap::new()),
        }
    }

    /// The tenant's grants, from the cache when read less than the TTL ago.
    pub(crate) async fn load(&self, tenant: &str) -> Result<Arc<AccessPolicy>> {
        if let Some((policy, at)) = self.cache.lock().expect("policy cache").get(tenant)
            && at.elapsed() < self.ttl
        {
            return Ok(policy.clone());
        }
        let (policy, _) = self.read(tenant).await?;
        let policy = Arc::new(policy);
        self.remember(tenant, policy.clone());
        Ok(policy)
    }

    fn remember(&self, tenant: &str, policy: Arc<AccessPolicy>) {
        self.cache
            .lock()
            .expect("policy cache")
            .insert(tenant.to_string(), (policy, Instant::now()));
    }

    /// Reads the stored policy and its etag (`None` when the tenant has none yet).
    async fn read(&self, tenant: &str) -> Result<(AccessPolicy, Option<String>)> {
        let stored = read_json(
            self.adapter.as_ref(),
            &path(tenant)?,
            MAX_POLICY_BYTES,
            "the stored policy",
        )
        .await?;
        Ok(match stored {
            Some((policy, etag)) => (policy, Some(etag)),
            None => (AccessPolicy::default(), None),
        })
    }

    /// Applies `change` to the newest stored policy and writes it back with a compare-and-swap,
    /// retrying when another writer got there first. `change` returns whether it changed
    /// anything (nothing is written otherwise) and a value to hand back.
    pub(crate) async fn update<T>(
        &self,
        tenant: &str,
        mut change: impl FnMut(&mut AccessPolicy) -> Result<(bool, T)>,
    ) -> Result<(T, Arc<AccessPolicy>)> {
        let path = path(tenant)?;
        for _ in 0..MAX_ATTEMPTS {
            let (mut policy, etag) = self.read(tenant).await?;
            let (changed, value) = change(&mut policy)?;
            if !changed {
                let policy = Arc::new(policy);
                self.remember(tenant, policy.clone());
                return Ok((value, policy));
            }
            if policy.grants.len() > MAX_GRANTS {
                return Err(Error::new(
                    ErrorCode::QuotaExceeded,
                    format!("a tenant may hold at most {MAX_GRANTS} grants"),
                ));
            }
            let mode = match etag {
                Some(etag) => PutMode::Update(etag),
                None => PutMode::Create,
            };
            match write_json(self.adapter.as_ref(), &path, &policy, mode, "the policy").await {
                Ok(_) => {
                    let policy = Arc::new(policy);
                    self.remember(tenant, policy.clone());
                    return Ok((value, policy));
                }
                Err(e) if e.code() == ErrorCode::Conflict => continue,
                Err(e) => return Err(e),
            }
        }
        Err(Error::conflict(
            "gave up after repeated concurrent policy changes",
        ))
    }
}
