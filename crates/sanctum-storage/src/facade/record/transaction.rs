//! Record transactions: upserts and deletes across collections of one namespace that commit
//! together or not at all.
//!
//! Cancel safety: dropping a [`RecordTransaction`] (or a future of one of its calls) before
//! [`commit`](RecordTransaction::commit) returns rolls the transaction back; nothing it wrote
//! becomes visible. A dropped `commit` future leaves the transaction committed or rolled back
//! whole, never in part, and the caller cannot tell which: read back to find out.

use serde_json::Value;

use super::{
    Address, MAX_CAS_ATTEMPTS, Record, RecordStore, RecordVersion, UpsertOptions, Write,
    check_write, plan_delete, plan_write, version_of,
};
use crate::adapters::record::{RecordTransaction as AdapterTransaction, UsageChange};
use crate::crypto::NamespaceKeys;
use crate::error::{Error, ErrorCode, Result};
use crate::policy::Action;
use crate::types::StorageContext;

/// An open transaction in one namespace, from [`RecordStore::begin`].
///
/// Reads inside it see its own writes. A write whose condition fails is `Conflict` and leaves
/// the transaction open (the caller decides whether to go on or roll back). A transient
/// database error (lost connection, deadlock, serialization failure, timeout) rolls the whole
/// transaction back at once and is reported as `TransientAdapter`; every later call is refused,
/// and the caller may run the transaction again from the start.
#[derive(Debug)]
pub struct RecordTransaction {
    store: RecordStore,
    ctx: StorageContext,
    ns: String,
    keys: std::sync::Arc<NamespaceKeys>,
    tx: Box<dyn AdapterTransaction>,
    /// Audit events of the writes, recorded once the commit succeeded.
    written: Vec<(&'static str, Address, Option<u64>)>,
    /// The usage the writes add up to, charged at commit (with the newest limits seen).
    usage: UsageChange,
    rolled_back: bool,
}

impl RecordStore {
    /// Starts a transaction in namespace `ns`. Each call inside it is checked against the
    /// policy like the same call outside.
    pub async fn begin(&self, ctx: &StorageContext, ns: &str) -> Result<RecordTransaction> {
        self.observed("record.begin", ctx, async {
            crate::types::Namespace::new(ctx.tenant(), ns)?;
            self.ready(ctx).await?;
            let keys = self.keys.namespace(ctx.tenant().as_str(), ns, true).await?;
            let tx = self.adapter.begin().await?;
            Ok(RecordTransaction {
                store: self.clone(),
                ctx: ctx.clone(),
                ns: ns.to_string(),
                keys,
                tx,
                written: Vec::new(),
                usage: UsageChange::default(),
                rolled_back: false,
            })
        })
        .await
    }
}

impl RecordTransaction {
    fn check_open(&self) -> Result<()> {
        match self.rolled_back {
            true => Err(Error::invalid(
                "the transaction was rolled back after a transient error; run it again",
            )),
            false => Ok(()),
        }
    }

    /// Rolls back at once on a transient error, so its locks are released and nothing of it
    /// can commit.
    async fn settle<T>(&mut self, result: Result<T>) -> Result<T> {
        if let Err(e) = &result
            && e.code() == ErrorCode::TransientAdapter
        {
            self.rolled_back = true;
            let _ = self.tx.rollback().await;
        }
        result
    }

    /// [`RecordStore::upsert`] inside the transaction. An unconditional write takes the
    /// version it reads inside the transaction.
    pub async fn upsert(
        &mut self,
        collection: &str,
        id: &str,
        document: Value,
        opts: UpsertOptions,
    ) -> Result<RecordVersion> {
        self.check_open()?;
        let at = Address::new(&self.ctx, &self.ns, collection, id)?;
        let plaintext = check_write(&document, opts)?;
        self.store
            .authorize(&self.ctx, "record.upsert", Action::Write, &at)
            .await?;
        let (schema_version, register) = self.store.admit_document(collection, &document)?;
        if let Some(schema) = register {
            // Through the transaction (it holds the database's write lock); kept only if it
            // commits, so the process does not remember it as registered.
            let now = self.store.clock.now_ms() as i64;
            let registered = self.tx.register_schema(&schema, now).await;
            self.settle(registered).await?;
        }
        let limits = self.store.limits(&at.key.tenant, &at.key.namespace).await?;
        let mut attempt = 0;
        let written = loop {
            attempt += 1;
            let current = self.tx.get(&at.key).await;
            let current = self.settle(current).await?;
            let write = Write {
                plaintext: &plaintext,
                schema_version,
                opts,
                now: self.store.clock.now_ms() as i64,
            };
            let (record, condition, change) = plan_write(&self.keys, &at, current, write, limits)?;
            let stored = self.tx.upsert(&at.key, &record, condition).await;
            match self.settle(stored).await {
                Ok(()) => {
                    self.add_usage(change);
                    break record;
                }
                Err(e) if e.code() == ErrorCode::Conflict && attempt < MAX_CAS_ATTEMPTS => continue,
                Err(e) => return Err(e),
            }
        };
        let version = version_of(&written);
        self.written
            .push(("record.upsert", at, Some(written.version)));
        Ok(version)
    }

    /// [`RecordStore::get`] inside the transaction: it sees the transaction's own writes.
    pub async fn get(&mut self, collection: &str, id: &str) -> Result<Record> {
        self.check_open()?;
        let at = Address::new(&self.ctx, &self.ns, collection, id)?;
        self.store
            .authorize(&self.ctx, "record.get", Action::Read, &at)
            .await?;
        let stored = self.tx.get(&at.key).await;
        let stored = self
            .settle(stored)
            .await?
            .filter(|r| !r.deleted)
            .ok_or_else(|| at.not_found())?;
        self.store.open(&self.keys, &at.key, stored)
    }

    /// [`RecordStore::delete`] inside the transaction.
    pub async fn delete(
        &mut self,
        collection: &str,
        id: &str,
        expected_version: Option<u64>,
    ) -> Result<()> {
        self.check_open()?;
        let at = Address::new(&self.ctx, &self.ns, collection, id)?;
        self.store
            .authorize(&self.ctx, "record.delete", Action::Delete, &at)
            .await?;
        let limits = self.store.limits(&at.key.tenant, &at.key.namespace).await?;
        // Deleted at the version read: if another writer got there first, `Conflict`.
        let current = self.tx.get(&at.key).await;
        let current = self.settle(current).await?;
        let (version, change) = plan_delete(&at, current, expected_version, limits)?;
        let now = self.store.clock.now_ms() as i64;
        let deleted = self.tx.delete(&at.key, Some(version), now).await;
        self.settle(deleted).await.map_err(|e| match e.code() {
            ErrorCode::NotFound => at.not_found(),
            _ => e,
        })?;
        self.add_usage(change);
        self.written.push(("record.delete", at, Some(version)));
        Ok(())
    }

    fn add_usage(&mut self, change: UsageChange) {
        self.usage = UsageChange {
            records: self.usage.records + change.records,
            bytes: self.usage.bytes + change.bytes,
            max_records: change.max_records,
            max_bytes: change.max_bytes,
        };
    }

    /// Charges the transaction's usage (`QuotaExceeded`, and nothing of the transaction is
    /// kept, if it would pass a limit), makes every write visible at once, then audits them.
    pub async fn commit(mut self) -> Result<()> {
        self.check_open()?;
        let store = self.store.clone();
        let ctx = self.ctx.clone();
        store
            .observed("record.commit", &ctx, async {
                let tenant = ctx.tenant().as_str().to_string();
                let ns = crate::types::Namespace::new(ctx.tenant(), &self.ns)?;
                let usage = self.usage;
                let charged = self.tx.charge(&tenant, ns.name(), &usage).await;
                if let Err(e) = self.settle(charged).await {
                    // Refused: the transaction ends here, whole.
                    let _ = self.tx.rollback().await;
                    return Err(e);
                }
                let committed = self.tx.commit().await;
                self.settle(committed).await?;
                for (operation, at, version) in &self.written {
                    store.audit(&ctx, operation, at, *version);
                }
                Ok(())
            })
            .await
    }

    /// Discards every write of the transaction (as dropping it does, but awaited).
    pub async fn rollback(mut self) -> Result<()> {
        if self.rolled_back {
            return Ok(());
        }
        self.tx.rollback().await
    }
}
