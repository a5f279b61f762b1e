//! Record adapters: rows of sealed documents in a SQL database, written only under a condition
//! (absent, or at an expected version), so the facade's optimistic locking is the database's.
//!
//! Adapters see tenants, namespaces, collections, ids, versions and timestamps, and the document
//! only as ciphertext. Every statement filters by the tenant.

pub mod sql;

use std::fmt;

use async_trait::async_trait;

use crate::error::{Error, Result};

/// Where a record lives. Every part has been validated by the facade.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RecordKey {
    /// The tenant id.
    pub tenant: String,
    /// The namespace.
    pub namespace: String,
    /// The collection.
    pub collection: String,
    /// The record id.
    pub id: String,
}

/// A record as stored.
#[derive(Clone, PartialEq, Eq)]
pub struct StoredRecord {
    /// The record id.
    pub id: String,
    /// Grows by one with every write, from 1.
    pub version: u64,
    /// The schema version the document was written under.
    pub schema_version: u32,
    /// When the record was first written (ms since the Unix epoch).
    pub created_at_ms: i64,
    /// When this version was written.
    pub updated_at_ms: i64,
    /// The sealed document (empty for a deleted record).
    pub sealed: Vec<u8>,
    /// A tombstone: the record was deleted at this version.
    pub deleted: bool,
}

impl fmt::Debug for StoredRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StoredRecord")
            .field("id", &self.id)
            .field("version", &self.version)
            .field("schema_version", &self.schema_version)
            .field("deleted", &self.deleted)
            .field("sealed_len", &self.sealed.len())
            .finish_non_exhaustive()
    }
}

/// When a write may happen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteCondition {
    /// Only if no record has the key.
    Absent,
    /// Only if the record is at this version.
    Version(u64),
}

/// A change of a namespace's record usage, applied in the same transaction as the write it
/// counts, and the limits the grown usage must stay within (`None`: no limit). Growth past a
/// limit is `QuotaExceeded` and the write does not happen; shrinking always succeeds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UsageChange {
    /// Live records added (negative: removed).
    pub records: i64,
    /// Stored (sealed) bytes added (negative: freed).
    pub bytes: i64,
    /// The most live records the namespace may hold.
    pub max_records: Option<u64>,
    /// The most stored record bytes the namespace may hold.
    pub max_bytes: Option<u64>,
}

impl UsageChange {
    /// Whether the change counts nothing.
    pub fn is_zero(&self) -> bool {
        self.records == 0 && self.bytes == 0
    }
}

/// What a namespace's records use, as the record database counts it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct RecordUsage {
    /// Live records.
    pub records: u64,
    /// Bytes of their sealed documents.
    pub bytes: u64,
}

/// A collection's schema version as the database keeps it, for drift detection.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct StoredSchema {
    /// The collection.
    pub collection: String,
    /// The schema version (0: written without a declaration).
    pub version: u32,
    /// The fingerprint of the version's JSON Schema (empty for version 0).
    pub fingerprint: String,
}

/// What a record adapter can do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordCapabilities {
    /// Conditional writes are atomic in the database (the facade relies on it).
    pub conditional_writes: bool,
    /// Writes survive a crash of the machine once acknowledged.
    pub durable: bool,
}

/// A record database.
///
/// `upsert` and `delete` are atomic compare-and-swaps: a write whose condition does not hold
/// changes nothing and answers `Conflict`. `list` pages through ids in byte order.
#[async_trait]
pub trait RecordAdapter: Send + Sync + fmt::Debug {
    /// A short kind (`sqlite`, `postgres`), for spans and metrics.
    fn kind(&self) -> &'static str;
    /// The instance name.
    fn name(&self) -> &str;
    /// What it can do.
    fn capabilities(&self) -> RecordCapabilities;
    /// Connects and creates or migrates the tables (idempotent).
    async fn init(&self) -> Result<()>;
    /// Creates or migrates the tables whatever the adapter's settings say (`sanctum migrate`,
    /// for deployments whose application role may not change the schema). Default: `init`.
    async fn migrate(&self) -> Result<()> {
        self.init().await
    }
    /// Checks that the database answers.
    async fn health_check(&self) -> Result<()>;
    /// Closes connections.
    async fn dispose(&self) -> Result<()>;
    /// Writes `record` at `key` if `condition` holds, else `Conflict`, and applies `change` to
    /// the namespace's usage in the same transaction (`QuotaExceeded` if it would pass a limit:
    /// then nothing is written). `Absent` means no row at all; a deleted record (a tombstone) is
    /// replaced at its version like any other.
    async fn upsert(
        &self,
        key: &RecordKey,
        record: &StoredRecord,
        condition: WriteCondition,
        change: &UsageChange,
    ) -> Result<()>;
    /// The row at `key`, if any, tombstones included.
    async fn get(&self, key: &RecordKey) -> Result<Option<StoredRecord>>;
    /// Deletes the record at `key` (only at `expected` when given), leaving a tombstone one
    /// version up, written at `now_ms`, and applies `change` to the usage in the same
    /// transaction. `NotFound` when there is no live record, `Conflict` when it is at another
    /// version.
    async fn delete(
        &self,
        key: &RecordKey,
        expected: Option<u64>,
        now_ms: i64,
        change: &UsageChange,
    ) -> Result<()>;
    /// What the records of `tenant`'s namespace `namespace` use.
    async fn usage(&self, tenant: &str, namespace: &str) -> Result<RecordUsage>;
    /// Keeps `schema` unless the database has that collection's version already; returns
    /// whether it was new. Schemas are the deployment's, not a tenant's: they carry no tenant.
    async fn register_schema(&self, schema: &StoredSchema, now_ms: i64) -> Result<bool>;
    /// Every kept schema version, by collection and version.
    async fn schemas(&self) -> Result<Vec<StoredSchema>>;
    /// Up to `limit` live records of `key`'s collection (its `id` is ignored) with ids after
    /// `after`, in id order.
    async fn list(
        &self,
        key: &RecordKey,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<StoredRecord>>;
    /// Up to `limit` live records of `tenant`'s namespace `namespace`, in every collection,
    /// after `after` (collection, id), in (collection, id) order: re-encryption's walk.
    async fn scan(
        &self,
        tenant: &str,
        namespace: &str,
        after: Option<(&str, &str)>,
        limit: usize,
    ) -> Result<Vec<(String, StoredRecord)>>;
    /// Starts a transaction: its writes become visible together at `commit`, or not at all.
    async fn begin(&self) -> Result<Box<dyn RecordTransaction>>;
}

/// A database transaction. Dropping it without [`commit`](RecordTransaction::commit) rolls it
/// back (when its connection goes back to the pool). After `commit` or `rollback`, every call
/// is `InvalidInput`.
#[async_trait]
pub trait RecordTransaction: Send + fmt::Debug {
    /// [`RecordAdapter::upsert`], inside the transaction, counting no usage (see
    /// [`charge`](RecordTransaction::charge)).
    async fn upsert(
        &mut self,
        key: &RecordKey,
        record: &StoredRecord,
        condition: WriteCondition,
    ) -> Result<()>;
    /// [`RecordAdapter::get`], inside the transaction (it sees the transaction's writes).
    async fn get(&mut self, key: &RecordKey) -> Result<Option<StoredRecord>>;
    /// [`RecordAdapter::delete`], inside the transaction, counting no usage.
    async fn delete(&mut self, key: &RecordKey, expected: Option<u64>, now_ms: i64) -> Result<()>;
    /// Applies the transaction's whole change of `tenant`'s `namespace` usage (the facade
    /// calls it once, just before commit, so the usage row is locked only then and always
    /// last: it never joins a deadlock). `QuotaExceeded` if it would pass a limit.
    async fn charge(&mut self, tenant: &str, namespace: &str, change: &UsageChange) -> Result<()>;
    /// [`RecordAdapter::register_schema`], inside the transaction.
    async fn register_schema(&mut self, schema: &StoredSchema, now_ms: i64) -> Result<bool>;
    /// Makes every write of the transaction visible at once.
    async fn commit(&mut self) -> Result<()>;
    /// Discards every write of the transaction.
    async fn rollback(&mut self) -> Result<()>;
}

/// The record adapter of a configuration that names no record database (a cloud blob backend
/// without `record.path` or `record.backend = "postgres"`): every call is a `Config` error that
/// says what to set. Nothing is kept in memory in its place, so nothing is lost by surprise.
#[derive(Debug, Clone, Default)]
pub struct UnconfiguredRecords;

impl UnconfiguredRecords {
    fn refuse<T>(&self) -> Result<T> {
        Err(Error::config(
            "records need a database: set record.path (SQLite) or record.backend = \"postgres\" \
             with record.url",
        ))
    }
}

#[async_trait]
impl RecordAdapter for UnconfiguredRecords {
    fn kind(&self) -> &'static str {
        "unconfigured"
    }
    fn name(&self) -> &str {
        "unconfigured"
    }
    fn capabilities(&self) -> RecordCapabilities {
        RecordCapabilities {
            conditional_writes: true,
            durable: false,
        }
    }
    async fn init(&self) -> Result<()> {
        self.refuse()
    }
    async fn health_check(&self) -> Result<()> {
        self.refuse()
    }
    async fn dispose(&self) -> Result<()> {
        Ok(())
    }
    async fn upsert(
        &self,
        _: &RecordKey,
        _: &StoredRecord,
        _: WriteCondition,
        _: &UsageChange,
    ) -> Result<()> {
        self.refuse()
    }
    async fn get(&self, _: &RecordKey) -> Result<Option<StoredRecord>> {
        self.refuse()
    }
    async fn delete(&self, _: &RecordKey, _: Option<u64>, _: i64, _: &UsageChange) -> Result<()> {
        self.refuse()
    }
    async fn usage(&self, _: &str, _: &str) -> Result<RecordUsage> {
        self.refuse()
    }
    async fn register_schema(&self, _: &StoredSchema, _: i64) -> Result<bool> {
        self.refuse()
    }
    async fn schemas(&self) -> Result<Vec<StoredSchema>> {
        self.refuse()
    }
    async fn list(&self, _: &RecordKey, _: Option<&str>, _: usize) -> Result<Vec<StoredRecord>> {
        self.refuse()
    }
    async fn scan(
        &self,
        _: &str,
        _: &str,
        _: Option<(&str, &str)>,
        _: usize,
    ) -> Result<Vec<(String, StoredRecord)>> {
        self.refuse()
    }
    async fn begin(&self) -> Result<Box<dyn RecordTransaction>> {
        self.refuse()
    }
}
