//! The record facade: JSON documents by collection and id, sealed before they reach the
//! database, written with optimistic locking.
//!
//! Every write is a compare-and-swap in the database ([`WriteCondition`]): create-if-absent,
//! replace-at-version, or (unconditional) read the current version and replace it at that
//! version, retried when another writer got there first. The version grows by one per write,
//! and it is part of the sealed document's associated data together with tenant, namespace,
//! collection, id and schema version, so a row copied to another id, tenant or version, or
//! rolled back to an older row, does not open.
//!
//! Documents are checked against the newest declared schema of their collection before they
//! are sealed, and every read brings an older document to the newest version through the
//! declared upcasters ([`schema`]). At the store's first use the record adapter is admitted
//! through the registry and the declarations are compared with the database's ([`drift`]).
//!
//! Record usage (live records, sealed bytes) is counted in the record database, in the same
//! transaction as each write, against the namespace's `max_records` and `max_record_bytes`.
//!
//! Cancel safety: dropping a write future leaves the record at its old version or at the new
//! one, never in between (each write is one statement, or one transaction with its usage).

pub mod drift;
mod rekey;
pub mod schema;
mod sealing;
mod transaction;

pub use drift::SchemaReport;
pub use rekey::RecordReencryptReport;
pub use schema::{CollectionSchema, SchemaRegistry, UpcastStep};
pub use transaction::RecordTransaction;

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::options::{decode_cursor, encode_cursor};
use crate::adapters::record::{
    RecordAdapter, RecordKey, RecordUsage, StoredRecord, StoredSchema, UsageChange, WriteCondition,
};
use crate::adapters::registry::AdapterRegistry;
use crate::config::Environment;
use crate::crypto::{KeyManager, NamespaceKeys};
use crate::error::{Error, ErrorCode, Result};
use crate::observability::audit::{AuditEvent, AuditSink};
use crate::observability::clock::Clock;
use crate::observability::observe_on;
use crate::policy::{Action, Authorizer};
use crate::quota::QuotaLedger;
use crate::types::limits::{validate_id, validate_key};
use crate::types::{Namespace, StorageContext};

/// The largest document, as JSON, in bytes.
pub const MAX_DOCUMENT_BYTES: usize = 1024 * 1024;
/// The most records one `list` call returns.
pub const MAX_RECORD_LIST_LIMIT: usize = 1000;
/// How many times an unconditional upsert retries a lost compare-and-swap.
const MAX_CAS_ATTEMPTS: usize = 100;
/// The schema version of a collection without a declared schema.
const UNDECLARED_SCHEMA: u32 = 0;

/// Conditions of an [`RecordStore::upsert`]. The default writes unconditionally.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UpsertOptions {
    /// Replace only the record at this version; else `Conflict`.
    pub expected_version: Option<u64>,
    /// Create only: `Conflict` if the record exists.
    pub if_absent: bool,
}

/// The version of a stored record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct RecordVersion {
    /// Grows by one with every write, from 1.
    pub version: u64,
    /// The schema version the document was written under (0: no declared schema).
    pub schema_version: u32,
    /// When the record was first written (ms since the Unix epoch).
    pub created_at_ms: i64,
    /// When this version was written.
    pub updated_at_ms: i64,
}

/// A record as read.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Record {
    /// The record's id.
    pub id: String,
    /// Its version.
    pub version: RecordVersion,
    /// The document.
    pub document: Value,
}

/// Options of [`RecordStore::list`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListRecordsOptions {
    /// At most this many records (default 100, at most [`MAX_RECORD_LIST_LIMIT`]).
    pub limit: Option<usize>,
    /// Continue after the page that returned this cursor.
    pub cursor: Option<String>,
}

/// One page of [`RecordStore::list`].
#[derive(Debug, Clone, PartialEq)]
pub struct RecordPage {
    /// Records in id order.
    pub records: Vec<Record>,
    /// Pass this back to get the next page; `None` after the last one.
    pub next_cursor: Option<String>,
}

/// Records: `Storage::records()`.
#[derive(Debug, Clone)]
pub struct RecordStore {
    adapter: Arc<dyn RecordAdapter>,
    keys: Arc<KeyManager>,
    clock: Arc<dyn Clock>,
    audit: Arc<dyn AuditSink>,
    access: Arc<Authorizer>,
    quotas: Arc<QuotaLedger>,
    registry: Arc<AdapterRegistry>,
    schemas: Arc<SchemaRegistry>,
    environment: Environment,
    /// Set once the adapter is admitted and the schemas have no drift.
    ready: Arc<tokio::sync::OnceCell<()>>,
    /// Undeclared collections this process has registered as version 0.
    undeclared: Arc<Mutex<HashSet<String>>>,
}

/// What a [`RecordStore`] is built from.
pub(crate) struct RecordStoreParts {
    pub adapter: Arc<dyn RecordAdapter>,
    pub keys: Arc<KeyManager>,
    pub clock: Arc<dyn Clock>,
    pub audit: Arc<dyn AuditSink>,
    pub access: Arc<Authorizer>,
    pub quotas: Arc<QuotaLedger>,
    pub registry: Arc<AdapterRegistry>,
    pub schemas: SchemaRegistry,
    pub environment: Environment,
}

/// A validated address of a record.
#[derive(Debug)]
struct Address {
    key: RecordKey,
}

impl Address {
    fn new(ctx: &StorageContext, ns: &str, collection: &str, id: &str) -> Result<Self> {
        let namespace = Namespace::new(ctx.tenant(), ns)?;
        validate_id("collection", collection)?;
        validate_key(id)
            .map_err(|e| Error::invalid(e.message().replacen("key", "record id", 1)))?;
        Ok(Self {
            key: RecordKey {
                tenant: ctx.tenant().as_str().to_string(),
                namespace: namespace.name().to_string(),
                collection: collection.to_string(),
                id: id.to_string(),
            },
        })
    }

    /// The resource the policy checks: `collection/id`.
    fn resource(&self) -> String {
        format!("{}/{}", self.key.collection, self.key.id)
    }

    fn not_found(&self) -> Error {
        Error::not_found(format!(
            "no record '{}' in collection '{}' of namespace '{}'",
            self.key.id, self.key.collection, self.key.namespace
        ))
    }
}

impl RecordStore {
    pub(crate) fn new(parts: RecordStoreParts) -> Self {
        Self {
            adapter: parts.adapter,
            keys: parts.keys,
            clock: parts.clock,
            audit: parts.audit,
            access: parts.access,
            quotas: parts.quotas,
            registry: parts.registry,
            schemas: Arc::new(parts.schemas),
            environment: parts.environment,
            ready: Arc::default(),
            undeclared: Arc::default(),
        }
    }

    /// The same store as another deployment of the code would see it: `schemas` declared, in
    /// `environment`, checked for drift again at its first use (the conformance suite's
    /// clients of one database).
    #[cfg(any(test, feature = "conformance"))]
    pub(crate) fn redeclared(&self, schemas: SchemaRegistry, environment: Environment) -> Self {
        Self {
            schemas: Arc::new(schemas),
            environment,
            ready: Arc::default(),
            undeclared: Arc::default(),
            ..self.clone()
        }
    }

    /// The record adapter.
    pub fn adapter(&self) -> &Arc<dyn RecordAdapter> {
        &self.adapter
    }

    /// The declared collections.
    pub fn schemas(&self) -> &SchemaRegistry {
        &self.schemas
    }

    async fn observed<T>(
        &self,
        operation: &'static str,
        ctx: &StorageContext,
        fut: impl Future<Output = Result<T>>,
    ) -> Result<T> {
        observe_on(
            operation,
            (self.adapter.kind(), self.adapter.name()),
            ctx,
            fut,
        )
        .await
    }

    /// Runs once, at the first record operation: admits the adapter through the registry
    /// (capabilities, `init`, `health_check`), then compares the declared schemas with the
    /// database's and registers the new versions. Drift is a `Config` error, and the next call
    /// tries again.
    async fn ready(&self, ctx: &StorageContext) -> Result<()> {
        self.ready
            .get_or_try_init(|| async {
                if self.registry.record(self.adapter.name()).is_none() {
                    self.registry
                        .register_record(self.adapter.clone(), self.environment)
                        .await?;
                }
                let report = self.compare_schemas().await?;
                for warning in &report.warnings {
                    tracing::warn!(target: "sanctum::records", "schema drift: {warning}");
                }
                refuse_drift(&report)?;
                let now = self.clock.now_ms();
                let mut registered = Vec::new();
                for schema in &report.declared {
                    if self.adapter.register_schema(schema, now as i64).await? {
                        registered.push(schema);
                    }
                }
                if !registered.is_empty() {
                    // Another client may have registered other fingerprints meanwhile.
                    refuse_drift(&self.compare_schemas().await?)?;
                }
                for schema in registered {
                    self.audit.record(AuditEvent {
                        key: Some(schema.collection.clone()),
                        version_id: Some(schema.version.to_string()),
                        detail: Some(format!("schema fingerprint {}", schema.fingerprint)),
                        ..AuditEvent::for_request(now, "record.schema.register", ctx)
                    });
                }
                Ok(())
            })
            .await
            .map(|_| ())
    }

    async fn compare_schemas(&self) -> Result<SchemaReport> {
        let stored = self.adapter.schemas().await?;
        Ok(drift::compare(&self.schemas, stored, self.environment))
    }

    /// The declared schemas against the record database's, without failing on drift (what
    /// `sanctum schema check` prints). It opens the database, and registers nothing. It
    /// concerns the deployment, not a tenant, so it takes no context.
    pub async fn schema_report(&self) -> Result<SchemaReport> {
        self.adapter.init().await?;
        self.compare_schemas().await
    }

    /// Creates or migrates the record database's tables (`sanctum migrate`), even where
    /// `record.auto_migrate = false`. It concerns the deployment, not a tenant.
    pub async fn migrate(&self) -> Result<()> {
        self.adapter.migrate().await
    }

    /// The records and sealed bytes namespace `ns` uses, as its quota counts them.
    pub async fn usage(&self, ctx: &StorageContext, ns: &str) -> Result<RecordUsage> {
        self.observed("record.usage", ctx, async {
            let namespace = Namespace::new(ctx.tenant(), ns)?;
            self.access
                .check(ctx, "record.usage", Action::Read, ns, None)
                .await?;
            self.ready(ctx).await?;
            self.adapter
                .usage(ctx.tenant().as_str(), namespace.name())
                .await
        })
        .await
    }

    /// The schema version a write to `collection` takes, after checking `document` against
    /// it; and, for a collection without a declaration (version 0, development only) that this
    /// process has not registered yet, the registration the caller must write.
    fn admit_document(
        &self,
        collection: &str,
        document: &Value,
    ) -> Result<(u32, Option<StoredSchema>)> {
        if let Some(declared) = self.schemas.get(collection) {
            declared.validate(document)?;
            return Ok((declared.newest(), None));
        }
        if self.environment == Environment::Production {
            return Err(Error::config(format!(
                "collection '{collection}' has no declared schema, which production requires: \
                 declare it ([[record.collections]] or StorageDependencies.record_schemas)"
            )));
        }
        let known = self
            .undeclared
            .lock()
            .expect("undeclared lock")
            .contains(collection);
        let register = (!known).then(|| StoredSchema {
            collection: collection.to_string(),
            version: UNDECLARED_SCHEMA,
            fingerprint: String::new(),
        });
        Ok((UNDECLARED_SCHEMA, register))
    }

    /// Registers an undeclared collection outside a transaction, once per process.
    async fn register_undeclared(&self, schema: Option<StoredSchema>) -> Result<()> {
        if let Some(schema) = schema {
            self.adapter
                .register_schema(&schema, self.clock.now_ms() as i64)
                .await?;
            self.undeclared
                .lock()
                .expect("undeclared lock")
                .insert(schema.collection);
        }
        Ok(())
    }

    /// Checks `ctx`'s grant for `operation` on the record at `at` (the decision is audited).
    async fn authorize(
        &self,
        ctx: &StorageContext,
        operation: &'static str,
        action: Action,
        at: &Address,
    ) -> Result<()> {
        self.access
            .check(
                ctx,
                operation,
                action,
                &at.key.namespace,
                Some(&at.resource()),
            )
            .await
            .map(|_| ())
    }

    /// The limits a write to `ns` checks record usage against.
    async fn limits(&self, tenant: &str, ns: &str) -> Result<UsageChange> {
        let limits = self.quotas.limits(tenant, ns).await?.unwrap_or_default();
        Ok(UsageChange {
            max_records: limits.max_records,
            max_bytes: limits.max_record_bytes,
            ..UsageChange::default()
        })
    }

    /// Opens a stored record at `key` and brings its document to the newest schema version.
    fn open(&self, keys: &NamespaceKeys, key: &RecordKey, stored: StoredRecord) -> Result<Record> {
        let mut record = open(keys, key, stored)?;
        if let Some(declared) = self.schemas.get(&key.collection) {
            record.document = declared.upcast(record.version.schema_version, record.document)?;
        }
        Ok(record)
    }

    /// Writes `document` (a JSON object) as the next version of record `id` in `collection`,
    /// under the conditions of `opts`; returns the new version.
    ///
    /// - `if_absent`: creates the record, or fails with `Conflict`.
    /// - `expected_version`: replaces only that version, else `Conflict`.
    /// - neither: writes whatever the current version is (retrying lost races).
    pub async fn upsert(
        &self,
        ctx: &StorageContext,
        ns: &str,
        collection: &str,
        id: &str,
        document: Value,
        opts: UpsertOptions,
    ) -> Result<RecordVersion> {
        self.observed("record.upsert", ctx, async {
            let at = Address::new(ctx, ns, collection, id)?;
            let plaintext = check_write(&document, opts)?;
            self.authorize(ctx, "record.upsert", Action::Write, &at)
                .await?;
            self.ready(ctx).await?;
            let (schema_version, register) = self.admit_document(collection, &document)?;
            self.register_undeclared(register).await?;
            let limits = self.limits(&at.key.tenant, &at.key.namespace).await?;
            let keys = self.keys.namespace(&at.key.tenant, ns, true).await?;
            let mut attempt = 0;
            let written = loop {
                attempt += 1;
                let current = self.adapter.get(&at.key).await?;
                let now = self.clock.now_ms() as i64;
                let write = Write {
                    plaintext: &plaintext,
                    schema_version,
                    opts,
                    now,
                };
                let (record, condition, change) = plan_write(&keys, &at, current, write, limits)?;
                match self
                    .adapter
                    .upsert(&at.key, &record, condition, &change)
                    .await
                {
                    Ok(()) => break record,
                    // Lost a race: an unconditional write tries again on the new row; a
                    // conditional one re-reads it, to fail with what the row is now.
                    Err(e) if e.code() == ErrorCode::Conflict && attempt < MAX_CAS_ATTEMPTS => {
                        continue;
                    }
                    Err(e) => return Err(e),
                }
            };
            self.audit(ctx, "record.upsert", &at, Some(written.version));
            Ok(version_of(&written))
        })
        .await
    }

    /// [`upsert`](Self::upsert) of any value that serializes to a JSON object.
    pub async fn upsert_typed<T: Serialize>(
        &self,
        ctx: &StorageContext,
        ns: &str,
        collection: &str,
        id: &str,
        document: &T,
        opts: UpsertOptions,
    ) -> Result<RecordVersion> {
        let document = serde_json::to_value(document)
            .map_err(|e| Error::invalid("the document does not serialize").with_source(e))?;
        self.upsert(ctx, ns, collection, id, document, opts).await
    }

    /// Reads record `id` of `collection`; `NotFound` if there is none.
    pub async fn get(
        &self,
        ctx: &StorageContext,
        ns: &str,
        collection: &str,
        id: &str,
    ) -> Result<Record> {
        self.observed("record.get", ctx, async {
            let at = Address::new(ctx, ns, collection, id)?;
            self.authorize(ctx, "record.get", Action::Read, &at).await?;
            self.ready(ctx).await?;
            let stored = self
                .adapter
                .get(&at.key)
                .await?
                .filter(|r| !r.deleted)
                .ok_or_else(|| at.not_found())?;
            if stored.id != at.key.id {
                return Err(Error::consistency("the database answered another record"));
            }
            let keys = self.keys.namespace(&at.key.tenant, ns, false).await?;
            self.open(&keys, &at.key, stored)
        })
        .await
    }

    /// [`get`](Self::get), deserialized into `T`.
    pub async fn get_typed<T: DeserializeOwned>(
        &self,
        ctx: &StorageContext,
        ns: &str,
        collection: &str,
        id: &str,
    ) -> Result<(RecordVersion, T)> {
        let record = self.get(ctx, ns, collection, id).await?;
        let value = serde_json::from_value(record.document).map_err(|e| {
            Error::invalid(format!("the record does not fit the requested type: {e}"))
        })?;
        Ok((record.version, value))
    }

    /// Deletes record `id` (only at `expected_version`, when given). `NotFound` if there is none;
    /// `Conflict` if it is at another version.
    pub async fn delete(
        &self,
        ctx: &StorageContext,
        ns: &str,
        collection: &str,
        id: &str,
        expected_version: Option<u64>,
    ) -> Result<()> {
        self.observed("record.delete", ctx, async {
            let at = Address::new(ctx, ns, collection, id)?;
            self.authorize(ctx, "record.delete", Action::Delete, &at)
                .await?;
            self.ready(ctx).await?;
            let limits = self.limits(&at.key.tenant, &at.key.namespace).await?;
            let mut attempt = 0;
            let deleted = loop {
                attempt += 1;
                let current = self.adapter.get(&at.key).await?;
                let (version, change) = plan_delete(&at, current, expected_version, limits)?;
                let now = self.clock.now_ms() as i64;
                match self
                    .adapter
                    .delete(&at.key, Some(version), now, &change)
                    .await
                {
                    Ok(()) => break version,
                    // Lost a race: look again (a conditional delete then fails with what is there).
                    Err(e) if e.code() == ErrorCode::Conflict && attempt < MAX_CAS_ATTEMPTS => {
                        continue;
                    }
                    Err(e) if e.code() == ErrorCode::NotFound => return Err(at.not_found()),
                    Err(e) => return Err(e),
                }
            };
            self.audit(ctx, "record.delete", &at, Some(deleted));
            Ok(())
        })
        .await
    }

    /// A page of the records of `collection`, in id order. The cursor works only in the
    /// tenant, namespace and collection that returned it.
    pub async fn list(
        &self,
        ctx: &StorageContext,
        ns: &str,
        collection: &str,
        opts: ListRecordsOptions,
    ) -> Result<RecordPage> {
        self.observed("record.list", ctx, async {
            let namespace = Namespace::new(ctx.tenant(), ns)?;
            validate_id("collection", collection)?;
            let limit = opts.limit.unwrap_or(100);
            if limit == 0 || limit > MAX_RECORD_LIST_LIMIT {
                return Err(Error::invalid(format!(
                    "limit must be 1-{MAX_RECORD_LIST_LIMIT}"
                )));
            }
            let tenant = ctx.tenant().as_str();
            let scope = format!("{}/{collection}", namespace.name());
            let after = opts
                .cursor
                .as_deref()
                .map(|c| decode_cursor(tenant, &scope, c))
                .transpose()?;
            self.access
                .check(ctx, "record.list", Action::List, ns, Some(collection))
                .await?;
            self.ready(ctx).await?;
            let key = RecordKey {
                tenant: tenant.to_string(),
                namespace: namespace.name().to_string(),
                collection: collection.to_string(),
                id: String::new(),
            };
            // One more than asked, to know whether another page follows.
            let mut rows = self.adapter.list(&key, after.as_deref(), limit + 1).await?;
            let more = rows.len() > limit;
            rows.truncate(limit);
            if rows.is_empty() {
                return Ok(RecordPage {
                    records: Vec::new(),
                    next_cursor: None,
                });
            }
            let keys = self.keys.namespace(tenant, ns, false).await?;
            let mut records = Vec::with_capacity(rows.len());
            for row in rows {
                let at = RecordKey {
                    id: row.id.clone(),
                    ..key.clone()
                };
                records.push(self.open(&keys, &at, row)?);
            }
            let next_cursor = match (more, records.last()) {
                (true, Some(last)) => Some(encode_cursor(tenant, &scope, &last.id)),
                _ => None,
            };
            Ok(RecordPage {
                records,
                next_cursor,
            })
        })
        .await
    }

    fn audit(
        &self,
        ctx: &StorageContext,
        operation: &'static str,
        at: &Address,
        version: Option<u64>,
    ) {
        self.audit.record(AuditEvent {
            namespace: Some(at.key.namespace.clone()),
            key: Some(at.resource()),
            version_id: version.map(|v| v.to_string()),
            ..AuditEvent::for_request(self.clock.now_ms(), operation, ctx)
        });
    }
}

fn version_of(stored: &StoredRecord) -> RecordVersion {
    RecordVersion {
        version: stored.version,
        schema_version: stored.schema_version,
        created_at_ms: stored.created_at_ms,
        updated_at_ms: stored.updated_at_ms,
    }
}

/// Opens a stored record at `key` into a [`Record`].
fn open(
    keys: &crate::crypto::NamespaceKeys,
    key: &RecordKey,
    stored: StoredRecord,
) -> Result<Record> {
    let plaintext = sealing::open(
        keys,
        key,
        stored.version,
        stored.schema_version,
        &stored.sealed,
    )?;
    let document = serde_json::from_slice(&plaintext)
        .map_err(|e| Error::consistency("a record's document is not JSON").with_source(e))?;
    Ok(Record {
        id: stored.id.clone(),
        version: version_of(&stored),
        document,
    })
}

/// Checks a document and its write options; returns the document's JSON.
fn check_write(document: &Value, opts: UpsertOptions) -> Result<Vec<u8>> {
    if opts.if_absent && opts.expected_version.is_some() {
        return Err(Error::invalid(
            "if_absent and expected_version exclude each other",
        ));
    }
    if !document.is_object() {
        return Err(Error::invalid("a record document must be a JSON object"));
    }
    let plaintext = serde_json::to_vec(document)
        .map_err(|e| Error::invalid("the document does not serialize").with_source(e))?;
    if plaintext.len() > MAX_DOCUMENT_BYTES {
        return Err(Error::invalid(format!(
            "the document is {} bytes as JSON; at most {MAX_DOCUMENT_BYTES} are allowed",
            plaintext.len()
        )));
    }
    Ok(plaintext)
}

/// What one write puts: the document's JSON under a schema version, with its conditions.
#[derive(Debug, Clone, Copy)]
struct Write<'a> {
    plaintext: &'a [u8],
    schema_version: u32,
    opts: UpsertOptions,
    now: i64,
}

/// The next row of the record at `at`, given the row there now (`current`, tombstones
/// included) and the write, the condition that makes writing it a compare-and-swap, and the
/// change of usage it makes (with `limits`' limits). A deleted record comes back as new, one
/// version up.
fn plan_write(
    keys: &NamespaceKeys,
    at: &Address,
    current: Option<StoredRecord>,
    write: Write<'_>,
    limits: UsageChange,
) -> Result<(StoredRecord, WriteCondition, UsageChange)> {
    let Write {
        plaintext,
        schema_version,
        opts,
        now,
    } = write;
    let live = current.as_ref().filter(|c| !c.deleted);
    match (opts.if_absent, opts.expected_version, live) {
        (true, _, Some(_)) => {
            return Err(Error::conflict(format!(
                "record '{}' exists already",
                at.key.id
            )));
        }
        (false, Some(v), Some(c)) if c.version != v => {
            return Err(Error::conflict(format!(
                "record '{}' is at version {}, not {v}",
                at.key.id, c.version
            )));
        }
        (false, Some(v), None) => {
            return Err(Error::conflict(format!(
                "record '{}' does not exist (expected version {v})",
                at.key.id
            )));
        }
        _ => {}
    }
    let created = live.map(|c| c.created_at_ms);
    let (condition, version) = match &current {
        None => (WriteCondition::Absent, 1),
        Some(c) => (WriteCondition::Version(c.version), c.version + 1),
    };
    let record = StoredRecord {
        id: at.key.id.clone(),
        version,
        schema_version,
        created_at_ms: created.unwrap_or(now),
        updated_at_ms: now,
        sealed: sealing::seal(keys, &at.key, version, schema_version, plaintext)?,
        deleted: false,
    };
    let change = UsageChange {
        records: i64::from(live.is_none()),
        bytes: byte_len(&record) - live.map_or(0, byte_len),
        ..limits
    };
    Ok((record, condition, change))
}

/// The version a delete of the record at `at` replaces, given the row there now, and the
/// change of usage it makes.
fn plan_delete(
    at: &Address,
    current: Option<StoredRecord>,
    expected: Option<u64>,
    limits: UsageChange,
) -> Result<(u64, UsageChange)> {
    let live = current
        .filter(|c| !c.deleted)
        .ok_or_else(|| at.not_found())?;
    if let Some(v) = expected
        && v != live.version
    {
        return Err(Error::conflict(format!(
            "record '{}' is at version {}, not {v}",
            at.key.id, live.version
        )));
    }
    let change = UsageChange {
        records: -1,
        bytes: -byte_len(&live),
        ..limits
    };
    Ok((live.version, change))
}

/// The bytes a row counts against the namespace's quota: its sealed document.
fn byte_len(record: &StoredRecord) -> i64 {
    i64::try_from(record.sealed.len()).unwrap_or(i64::MAX)
}

/// A `Config` error listing every problem of `report`, if it has any.
fn refuse_drift(report: &SchemaReport) -> Result<()> {
    if report.ok() {
        return Ok(());
    }
    Err(Error::config(format!(
        "the record schemas drifted; `sanctum schema check` shows the report: {}",
        report.problems.join("; ")
    )))
}
