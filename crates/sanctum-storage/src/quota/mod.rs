//! Quotas per namespace: limits on stored bytes and live objects, and the usage they are
//! checked against.
//!
//! A namespace's limits and usage are one small JSON document (`t/<tenant>/n/<ns>/quota`).
//! Every write to a namespace that has one charges it with a compare-and-swap *before* the write
//! becomes visible: a charge that would pass a limit fails with `QuotaExceeded` and the write
//! stores nothing. Because the charge is a CAS on one document, concurrent writers cannot
//! together pass a limit at all. Namespaces without a quota pay one cached lookup.
//!
//! What counts: `bytes` is the plaintext size of every body the namespace keeps (old versions
//! included, since they keep their bodies until purged; a restore adds no body); `objects` is the
//! number of live keys. Deletes free an object, purges free the bodies too.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::adapters::json::{read_json, write_json};
use crate::adapters::{BlobAdapter, BlobPath, PutMode};
use crate::error::{Error, ErrorCode, Result};

/// How many times a charge retries a lost compare-and-swap (16 racing writers need a few).
const MAX_ATTEMPTS: usize = 200;
/// A stored quota document larger than this is corrupt.
const MAX_DOC_BYTES: u64 = 64 * 1024;

/// The limits of one namespace; `None` means unlimited.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuotaLimits {
    /// The most plaintext blob bytes the namespace may keep.
    pub max_bytes: Option<u64>,
    /// The most live blobs the namespace may hold.
    pub max_objects: Option<u64>,
    /// The most live records the namespace may hold (counted in the record database).
    #[serde(default)]
    pub max_records: Option<u64>,
    /// The most bytes of sealed record documents the namespace may keep (counted in the record
    /// database).
    #[serde(default)]
    pub max_record_bytes: Option<u64>,
}

/// What a namespace uses.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuotaUsage {
    /// Plaintext bytes of every kept body.
    pub bytes: u64,
    /// Live objects.
    pub objects: u64,
}

/// A namespace's limits and usage.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuotaStatus {
    /// The limits.
    pub limits: QuotaLimits,
    /// The usage counted against them.
    pub usage: QuotaUsage,
}

/// A change of usage, applied by [`QuotaLedger::charge`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Charge {
    pub bytes: i64,
    pub objects: i64,
}

impl Charge {
    pub(crate) fn negate(self) -> Self {
        Self {
            bytes: -self.bytes,
            objects: -self.objects,
        }
    }

    fn is_zero(self) -> bool {
        self.bytes == 0 && self.objects == 0
    }
}

fn apply(value: u64, delta: i64) -> u64 {
    if delta >= 0 {
        value.saturating_add(delta as u64)
    } else {
        value.saturating_sub(delta.unsigned_abs())
    }
}

fn path(tenant: &str, ns: &str) -> Result<BlobPath> {
    BlobPath::new(format!("t/{tenant}/n/{ns}/quota"))
}

/// The `QuotaExceeded` of a charge that would take `what` to `would`, past `limit` (blobs and
/// records say it alike).
pub(crate) fn exceeded(what: &str, limit: u64, would: u64) -> Error {
    Error::new(
        ErrorCode::QuotaExceeded,
        format!("namespace quota exceeded: {what} would be {would}, the limit is {limit}"),
    )
}

type Cached = (Option<QuotaLimits>, Instant);

/// Reads, caches and charges namespace quotas.
#[derive(Debug)]
pub(crate) struct QuotaLedger {
    adapter: Arc<dyn BlobAdapter>,
    ttl: Duration,
    cache: Mutex<HashMap<(String, String), Cached>>,
}

impl QuotaLedger {
    pub(crate) fn new(adapter: Arc<dyn BlobAdapter>, ttl: Duration) -> Self {
        Self {
            adapter,
            ttl,
            cache: Mutex::new(HashMap::new()),
        }
    }

    fn remember(&self, tenant: &str, ns: &str, limits: Option<QuotaLimits>) {
        self.cache.lock().expect("quota cache").insert(
            (tenant.to_string(), ns.to_string()),
            (limits, Instant::now()),
        );
    }

    /// Whether `ns` has a quota (cached for the TTL: another process's new quota shows within it).
    pub(crate) async fn limits(&self, tenant: &str, ns: &str) -> Result<Option<QuotaLimits>> {
        let key = (tenant.to_string(), ns.to_string());
        if let Some((limits, at)) = self.cache.lock().expect("quota cache").get(&key)
            && at.elapsed() < self.ttl
        {
            return Ok(*limits);
        }
        let status = self.read(tenant, ns).await?.map(|(s, _)| s.limits);
        self.remember(tenant, ns, status);
        Ok(status)
    }

    /// The stored status and its etag, read fresh.
    pub(crate) async fn read(
        &self,
        tenant: &str,
        ns: &str,
    ) -> Result<Option<(QuotaStatus, String)>> {
        read_json(
            self.adapter.as_ref(),
            &path(tenant, ns)?,
            MAX_DOC_BYTES,
            "the stored quota",
        )
        .await
    }

    /// The bytes `ns` may still take, when it has a byte limit (read fresh).
    pub(crate) async fn bytes_left(&self, tenant: &str, ns: &str) -> Result<Option<u64>> {
        Ok(self.read(tenant, ns).await?.and_then(|(s, _)| {
            s.limits
                .max_bytes
                .map(|max| max.saturating_sub(s.usage.bytes))
        }))
    }

    /// Applies `charge` to the namespace's usage with a compare-and-swap. Growth past a limit
    /// fails with `QuotaExceeded` and changes nothing; shrinking always succeeds. Returns
    /// whether the namespace has a quota (without one, nothing is counted).
    pub(crate) async fn charge(&self, tenant: &str, ns: &str, charge: Charge) -> Result<bool> {
        self.apply_charge(tenant, ns, charge, true).await
    }

    /// Applies `charge` without checking limits: a correction for a write that already
    /// committed (or a count of data already stored). Returns whether the namespace has a quota.
    pub(crate) async fn settle(&self, tenant: &str, ns: &str, charge: Charge) -> Result<bool> {
        self.apply_charge(tenant, ns, charge, false).await
    }

    async fn apply_charge(
        &self,
        tenant: &str,
        ns: &str,
        charge: Charge,
        enforce: bool,
    ) -> Result<bool> {
        // Namespaces without a quota (the cached answer) cost no read.
        let has_quota = self.limits(tenant, ns).await?.is_some();
        if charge.is_zero() || !has_quota {
            return Ok(has_quota);
        }
        let path = path(tenant, ns)?;
        for _ in 0..MAX_ATTEMPTS {
            let Some((mut status, etag)) = self.read(tenant, ns).await? else {
                self.remember(tenant, ns, None);
                return Ok(false);
            };
            let usage = QuotaUsage {
                bytes: apply(status.usage.bytes, charge.bytes),
                objects: apply(status.usage.objects, charge.objects),
            };
            if enforce
                && charge.bytes > 0
                && let Some(max) = status.limits.max_bytes
                && usage.bytes > max
            {
                return Err(exceeded("bytes", max, usage.bytes));
            }
            if enforce
                && charge.objects > 0
                && let Some(max) = status.limits.max_objects
                && usage.objects > max
            {
                return Err(exceeded("objects", max, usage.objects));
            }
            status.usage = usage;
            match self.write(&path, &status, PutMode::Update(etag)).await {
                Ok(()) => {
                    self.remember(tenant, ns, Some(status.limits));
                    return Ok(true);
                }
                Err(e) if e.code() == ErrorCode::Conflict => continue,
                Err(e) => return Err(e),
            }
        }
        Err(Error::conflict(
            "gave up after repeated concurrent quota charges",
        ))
    }

    /// Sets the limits of `ns`. A namespace without a quota starts from `usage()` (computed by
    /// the caller, e.g. by scanning the namespace); one with a quota keeps its usage.
    pub(crate) async fn set_limits(
        &self,
        tenant: &str,
        ns: &str,
        limits: QuotaLimits,
        usage: QuotaUsage,
    ) -> Result<QuotaStatus> {
        let path = path(tenant, ns)?;
        for _ in 0..MAX_ATTEMPTS {
            let (status, mode) = match self.read(tenant, ns).await? {
                Some((old, etag)) => (
                    QuotaStatus {
                        limits,
                        usage: old.usage,
                    },
                    PutMode::Update(etag),
                ),
                None => (QuotaStatus { limits, usage }, PutMode::Create),
            };
            match self.write(&path, &status, mode).await {
                Ok(()) => {
                    self.remember(tenant, ns, Some(limits));
                    return Ok(status);
                }
                Err(e) if e.code() == ErrorCode::Conflict => continue,
                Err(e) => return Err(e),
            }
        }
        Err(Error::conflict(
            "gave up after repeated concurrent quota changes",
        ))
    }

    /// Removes the quota of `ns` (its usage stops being counted). Returns whether there was one.
    pub(crate) async fn remove(&self, tenant: &str, ns: &str) -> Result<bool> {
        let removed = match self.adapter.delete(&path(tenant, ns)?, None).await {
            Ok(()) => true,
            Err(e) if e.code() == ErrorCode::NotFound => false,
            Err(e) => return Err(e),
        };
        self.remember(tenant, ns, None);
        Ok(removed)
    }

    async fn write(&self, path: &BlobPath, status: &QuotaStatus, mode: PutMode) -> Result<()> {
        write_json(self.adapter.as_ref(), path, status, mode, "the quota").await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn apply_saturates() {
        assert_eq!(apply(5, -10), 0);
        assert_eq!(apply(5, 3), 8);
        assert_eq!(apply(u64::MAX, 1), u64::MAX);
    }
}
