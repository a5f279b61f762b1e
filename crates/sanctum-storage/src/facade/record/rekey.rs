//! Records under key rotation: re-encryption of every document an older data-key epoch
//! protects, and the count of records per epoch that retiring an epoch checks.
//!
//! A record is re-sealed at the version it has: the document, its version and timestamps stay,
//! only the ciphertext changes, so a caller's `expected_version` still holds. The write is a
//! compare-and-swap on that version; a writer that got there first wrote under the current
//! epoch anyway, and the pass moves on.

use std::collections::BTreeMap;

use serde::Serialize;

use super::{RecordStore, byte_len, sealing};
use crate::adapters::record::{RecordKey, StoredRecord, UsageChange, WriteCondition};
use crate::error::{Error, ErrorCode, Result};
use crate::facade::options::{decode_cursor, encode_cursor};
use crate::types::StorageContext;

/// The cursor scope of a record re-encryption pass.
const SCOPE: &str = "records-reencrypt";

/// What a record re-encryption pass did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct RecordReencryptReport {
    /// Live records looked at.
    pub records_scanned: u64,
    /// Records sealed anew under the current epoch.
    pub records_resealed: u64,
    /// The epoch new seals use.
    pub epoch: u32,
    /// Pass this to continue; `None` when the namespace is done.
    pub next_cursor: Option<String>,
}

fn epoch_of(sealed: &[u8]) -> Result<u32> {
    let (header, _) = sanctum_crypto::Header::parse(sealed).map_err(|e| {
        Error::new(
            ErrorCode::Encryption,
            "a stored record is not a sealed message",
        )
        .with_source(e)
    })?;
    Ok(header.key_ref.epoch)
}

impl RecordStore {
    /// Whether a record database is configured at all (key operations skip records without).
    pub(crate) fn configured(&self) -> bool {
        self.adapter.kind() != "unconfigured"
    }

    /// Re-seals up to `limit` records of `ns` that an older epoch protects, after `cursor`.
    /// The caller (the key admin) has checked the grant.
    pub(crate) async fn reencrypt(
        &self,
        ctx: &StorageContext,
        ns: &str,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<RecordReencryptReport> {
        self.ready(ctx).await?;
        let tenant = ctx.tenant().as_str();
        let scope = format!("{ns}/{SCOPE}");
        let after = cursor
            .map(|c| decode_cursor(tenant, &scope, c))
            .transpose()?;
        let after = after.as_deref().and_then(|a| a.split_once('/'));
        let keys = self.keys.namespace(tenant, ns, true).await?;
        let epoch = keys.current_epoch();
        let rows = self.adapter.scan(tenant, ns, after, limit + 1).await?;
        let more = rows.len() > limit;
        let mut report = RecordReencryptReport {
            epoch,
            ..RecordReencryptReport::default()
        };
        let mut last = None;
        for (collection, row) in rows.into_iter().take(limit) {
            report.records_scanned += 1;
            let key = RecordKey {
                tenant: tenant.to_string(),
                namespace: ns.to_string(),
                collection,
                id: row.id.clone(),
            };
            last = Some(format!("{}/{}", key.collection, key.id));
            if epoch_of(&row.sealed)? >= epoch {
                continue;
            }
            if self.reseal(&keys, &key, row).await? {
                report.records_resealed += 1;
            }
        }
        report.next_cursor = match (more, last) {
            (true, Some(last)) => Some(encode_cursor(tenant, &scope, &last)),
            _ => None,
        };
        Ok(report)
    }

    /// Writes `row` anew under the current epoch at its own version; `false` if a writer
    /// replaced it first.
    async fn reseal(
        &self,
        keys: &crate::crypto::NamespaceKeys,
        key: &RecordKey,
        row: StoredRecord,
    ) -> Result<bool> {
        let plaintext = sealing::open(keys, key, row.version, row.schema_version, &row.sealed)?;
        let sealed = sealing::seal(keys, key, row.version, row.schema_version, &plaintext)?;
        let resealed = StoredRecord {
            sealed,
            ..row.clone()
        };
        // Only a size change, and never refused: the data is there already.
        let change = UsageChange {
            bytes: byte_len(&resealed) - byte_len(&row),
            ..UsageChange::default()
        };
        match self
            .adapter
            .upsert(
                key,
                &resealed,
                WriteCondition::Version(row.version),
                &change,
            )
            .await
        {
            Ok(()) => Ok(true),
            Err(e) if e.code() == ErrorCode::Conflict => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// How many live records of `ns` each epoch protects.
    pub(crate) async fn epochs_in_use(
        &self,
        ctx: &StorageContext,
        ns: &str,
    ) -> Result<BTreeMap<u32, u64>> {
        self.ready(ctx).await?;
        let tenant = ctx.tenant().as_str();
        let mut in_use = BTreeMap::new();
        let mut after: Option<(String, String)> = None;
        loop {
            let rows = self
                .adapter
                .scan(
                    tenant,
                    ns,
                    after.as_ref().map(|(c, i)| (c.as_str(), i.as_str())),
                    crate::facade::record::MAX_RECORD_LIST_LIMIT,
                )
                .await?;
            let Some((collection, row)) = rows.last() else {
                return Ok(in_use);
            };
            after = Some((collection.clone(), row.id.clone()));
            for (_, row) in &rows {
                *in_use.entry(epoch_of(&row.sealed)?).or_insert(0u64) += 1;
            }
        }
    }
}
