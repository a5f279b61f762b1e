//! Record adapters on `sqlx`: SQLite (the embedded default) and PostgreSQL.
//!
//! Both keep one table, `sanctum_records`, keyed by tenant, namespace, collection and id, and
//! run the same statements (each dialect with its own placeholders). A conditional write is one
//! statement whose `WHERE` (or `ON CONFLICT DO NOTHING`) is the condition, so it is atomic in
//! the database; zero rows changed means the condition did not hold. Connections open on first
//! use, so a client that never touches records never opens the database.

use std::borrow::Cow;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::migrate::{Migration, MigrationType, Migrator};
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::{Row, SqlSafeStr};
use tokio::sync::OnceCell;

use super::{
    RecordAdapter, RecordCapabilities, RecordKey, RecordTransaction, RecordUsage, StoredRecord,
    StoredSchema, UsageChange, WriteCondition,
};
use crate::error::{Error, ErrorCode, Result};

/// The schema, as embedded migrations (what `sqlx::migrate!` would embed, without the macro
/// crate). Versions only ever grow; a released migration is never edited.
const SQLITE_MIGRATIONS: &[(i64, &str, &str)] = &[
    (
        1,
        "records",
        "CREATE TABLE IF NOT EXISTS sanctum_records (
        tenant TEXT NOT NULL,
        namespace TEXT NOT NULL,
        collection TEXT NOT NULL,
        id TEXT NOT NULL,
        version INTEGER NOT NULL,
        schema_version INTEGER NOT NULL,
        created_at_ms INTEGER NOT NULL,
        updated_at_ms INTEGER NOT NULL,
        sealed BLOB NOT NULL,
        deleted INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (tenant, namespace, collection, id)
    ) WITHOUT ROWID;",
    ),
    (2, "schemas and usage", SCHEMAS_AND_USAGE_SQLITE),
];

/// Migration 2: the schema fingerprints of drift detection, and record usage per namespace
/// (counted from the rows already there, so quotas set later start right).
const SCHEMAS_AND_USAGE_SQLITE: &str = "CREATE TABLE IF NOT EXISTS sanctum_record_schemas (
        collection TEXT NOT NULL,
        version INTEGER NOT NULL,
        fingerprint TEXT NOT NULL,
        registered_at_ms INTEGER NOT NULL,
        PRIMARY KEY (collection, version)
    ) WITHOUT ROWID;
    CREATE TABLE IF NOT EXISTS sanctum_record_usage (
        tenant TEXT NOT NULL,
        namespace TEXT NOT NULL,
        records INTEGER NOT NULL,
        bytes INTEGER NOT NULL,
        PRIMARY KEY (tenant, namespace)
    ) WITHOUT ROWID;
    INSERT INTO sanctum_record_usage (tenant, namespace, records, bytes)
        SELECT tenant, namespace, SUM(1 - deleted), SUM(length(sealed))
        FROM sanctum_records GROUP BY tenant, namespace;";

const SCHEMAS_AND_USAGE_POSTGRES: &str = "CREATE TABLE IF NOT EXISTS sanctum_record_schemas (
        collection TEXT NOT NULL,
        version INTEGER NOT NULL,
        fingerprint TEXT NOT NULL,
        registered_at_ms BIGINT NOT NULL,
        PRIMARY KEY (collection, version)
    );
    CREATE TABLE IF NOT EXISTS sanctum_record_usage (
        tenant TEXT NOT NULL,
        namespace TEXT NOT NULL,
        records BIGINT NOT NULL,
        bytes BIGINT NOT NULL,
        PRIMARY KEY (tenant, namespace)
    );
    INSERT INTO sanctum_record_usage (tenant, namespace, records, bytes)
        SELECT tenant, namespace, SUM(1 - deleted), SUM(length(sealed))
        FROM sanctum_records GROUP BY tenant, namespace;";

const POSTGRES_MIGRATIONS: &[(i64, &str, &str)] = &[
    (
        1,
        "records",
        "CREATE TABLE IF NOT EXISTS sanctum_records (
        tenant TEXT NOT NULL,
        namespace TEXT NOT NULL,
        collection TEXT NOT NULL,
        id TEXT COLLATE \"C\" NOT NULL,
        version BIGINT NOT NULL,
        schema_version INTEGER NOT NULL,
        created_at_ms BIGINT NOT NULL,
        updated_at_ms BIGINT NOT NULL,
        sealed BYTEA NOT NULL,
        deleted INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (tenant, namespace, collection, id)
    );",
    ),
    (2, "schemas and usage", SCHEMAS_AND_USAGE_POSTGRES),
];

fn migrator(migrations: &'static [(i64, &'static str, &'static str)]) -> Migrator {
    let mut migrator = Migrator::with_migrations(
        migrations
            .iter()
            .map(|(version, name, sql)| {
                Migration::new(
                    *version,
                    Cow::Borrowed(*name),
                    MigrationType::Simple,
                    sql.into_sql_str(),
                    false,
                )
            })
            .collect(),
    );
    // Our own table, so an application's `_sqlx_migrations` in a shared database never clashes.
    migrator.dangerous_set_table_name("sanctum_record_migrations");
    migrator
}

/// How to reach a PostgreSQL server.
#[derive(Debug, Clone)]
pub struct PostgresSettings {
    /// `postgres://user@host:port/database` (no password: see `password`).
    pub url: String,
    /// The password, read by the caller from the environment variable the config names.
    pub password: Option<String>,
    /// Most connections in the pool.
    pub pool_size: u32,
    /// Server-side limit of each statement.
    pub statement_timeout: Duration,
    /// Whether `init` runs the migrations (else `sanctum migrate` must have).
    pub auto_migrate: bool,
}

/// How long a writer waits for SQLite's lock before `TransientAdapter`.
const SQLITE_BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// The statements of one dialect.
struct Statements {
    insert: &'static str,
    update: &'static str,
    get: &'static str,
    delete: &'static str,
    delete_at: &'static str,
    list: &'static str,
    list_after: &'static str,
    exists: &'static str,
    usage_charge: &'static str,
    usage_create: &'static str,
    usage_get: &'static str,
    schema_insert: &'static str,
    schema_all: &'static str,
    scan: &'static str,
}

macro_rules! statements {
    ($p:ident) => {
        Statements {
            insert: concat!(
                "INSERT INTO sanctum_records (tenant, namespace, collection, id, version, \
                 schema_version, created_at_ms, updated_at_ms, sealed, deleted) VALUES (",
                $p!(1),
                ", ",
                $p!(2),
                ", ",
                $p!(3),
                ", ",
                $p!(4),
                ", ",
                $p!(5),
                ", ",
                $p!(6),
                ", ",
                $p!(7),
                ", ",
                $p!(8),
                ", ",
                $p!(9),
                ", 0) ON CONFLICT DO NOTHING"
            ),
            // Also brings a deleted record back: the version says which row the writer saw.
            update: concat!(
                "UPDATE sanctum_records SET version = ",
                $p!(5),
                ", schema_version = ",
                $p!(6),
                ", created_at_ms = ",
                $p!(7),
                ", updated_at_ms = ",
                $p!(8),
                ", sealed = ",
                $p!(9),
                ", deleted = 0 WHERE tenant = ",
                $p!(1),
                " AND namespace = ",
                $p!(2),
                " AND collection = ",
                $p!(3),
                " AND id = ",
                $p!(4),
                " AND version = ",
                $p!(10)
            ),
            get: concat!(
                "SELECT id, version, schema_version, created_at_ms, updated_at_ms, sealed, deleted \
                 FROM sanctum_records WHERE tenant = ",
                $p!(1),
                " AND namespace = ",
                $p!(2),
                " AND collection = ",
                $p!(3),
                " AND id = ",
                $p!(4)
            ),
            // A delete leaves a tombstone one version up, so a stale expected version never
            // matches a record created again later.
            delete: concat!(
                "UPDATE sanctum_records SET deleted = 1, version = version + 1, sealed = ",
                $p!(5),
                ", updated_at_ms = ",
                $p!(6),
                " WHERE tenant = ",
                $p!(1),
                " AND namespace = ",
                $p!(2),
                " AND collection = ",
                $p!(3),
                " AND id = ",
                $p!(4),
                " AND deleted = 0"
            ),
            delete_at: concat!(
                "UPDATE sanctum_records SET deleted = 1, version = version + 1, sealed = ",
                $p!(5),
                ", updated_at_ms = ",
                $p!(6),
                " WHERE tenant = ",
                $p!(1),
                " AND namespace = ",
                $p!(2),
                " AND collection = ",
                $p!(3),
                " AND id = ",
                $p!(4),
                " AND deleted = 0 AND version = ",
                $p!(7)
            ),
            list: concat!(
                "SELECT id, version, schema_version, created_at_ms, updated_at_ms, sealed, deleted \
                 FROM sanctum_records WHERE tenant = ",
                $p!(1),
                " AND namespace = ",
                $p!(2),
                " AND collection = ",
                $p!(3),
                " AND deleted = 0 ORDER BY id LIMIT ",
                $p!(4)
            ),
            list_after: concat!(
                "SELECT id, version, schema_version, created_at_ms, updated_at_ms, sealed, deleted \
                 FROM sanctum_records WHERE tenant = ",
                $p!(1),
                " AND namespace = ",
                $p!(2),
                " AND collection = ",
                $p!(3),
                " AND deleted = 0 AND id > ",
                $p!(5),
                " ORDER BY id LIMIT ",
                $p!(4)
            ),
            exists: concat!(
                "SELECT version FROM sanctum_records WHERE tenant = ",
                $p!(1),
                " AND namespace = ",
                $p!(2),
                " AND collection = ",
                $p!(3),
                " AND id = ",
                $p!(4),
                " AND deleted = 0"
            ),
            // Growth is checked against the limits in the same statement, under the row's
            // lock: concurrent writers cannot pass a limit together.
            usage_charge: concat!(
                "UPDATE sanctum_record_usage SET records = records + ",
                $p!(3),
                ", bytes = bytes + ",
                $p!(4),
                " WHERE tenant = ",
                $p!(1),
                " AND namespace = ",
                $p!(2),
                " AND (",
                $p!(3),
                " <= 0 OR CAST(",
                $p!(5),
                " AS BIGINT) IS NULL OR records + ",
                $p!(3),
                " <= ",
                $p!(5),
                ") AND (",
                $p!(4),
                " <= 0 OR CAST(",
                $p!(6),
                " AS BIGINT) IS NULL OR bytes + ",
                $p!(4),
                " <= ",
                $p!(6),
                ")"
            ),
            usage_create: concat!(
                "INSERT INTO sanctum_record_usage (tenant, namespace, records, bytes) VALUES (",
                $p!(1),
                ", ",
                $p!(2),
                ", 0, 0) ON CONFLICT DO NOTHING"
            ),
            usage_get: concat!(
                "SELECT records, bytes FROM sanctum_record_usage WHERE tenant = ",
                $p!(1),
                " AND namespace = ",
                $p!(2)
            ),
            schema_insert: concat!(
                "INSERT INTO sanctum_record_schemas (collection, version, fingerprint, \
                 registered_at_ms) VALUES (",
                $p!(1),
                ", ",
                $p!(2),
                ", ",
                $p!(3),
                ", ",
                $p!(4),
                ") ON CONFLICT DO NOTHING"
            ),
            schema_all: "SELECT collection, version, fingerprint FROM sanctum_record_schemas \
                         ORDER BY collection, version",
            // (collection, id) after the cursor; collections are never empty, so ('', '')
            // starts at the beginning.
            scan: concat!(
                "SELECT collection, id, version, schema_version, created_at_ms, updated_at_ms, \
                 sealed, deleted FROM sanctum_records WHERE tenant = ",
                $p!(1),
                " AND namespace = ",
                $p!(2),
                " AND deleted = 0 AND (collection > ",
                $p!(3),
                " OR (collection = ",
                $p!(3),
                " AND id > ",
                $p!(4),
                ")) ORDER BY collection, id LIMIT ",
                $p!(5)
            ),
        }
    };
}

macro_rules! sqlite_param {
    ($n:literal) => {
        concat!("?", $n)
    };
}
macro_rules! postgres_param {
    ($n:literal) => {
        concat!("$", $n)
    };
}

const SQLITE: Statements = statements!(sqlite_param);
const POSTGRES: Statements = statements!(postgres_param);

/// The error code of a database error: lost connections, timeouts, busy locks, serialization
/// failures and deadlocks are `TransientAdapter`; a unique violation `Conflict`; the rest
/// `PermanentAdapter` (or `Config` for bad settings).
fn code_of(e: &sqlx::Error) -> ErrorCode {
    match e {
        sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::Io(_)
        | sqlx::Error::WorkerCrashed
        | sqlx::Error::Protocol(_) => ErrorCode::TransientAdapter,
        sqlx::Error::Configuration(_) | sqlx::Error::Tls(_) => ErrorCode::Config,
        // SQLite's codes are numbers, and so are many SQLSTATEs (42501 would read as BUSY).
        sqlx::Error::Database(db)
            if db.try_downcast_ref::<sqlx::sqlite::SqliteError>().is_some() =>
        {
            match db.code().as_deref() {
                Some(c) if is_sqlite_busy(c) => ErrorCode::TransientAdapter,
                _ if db.is_unique_violation() => ErrorCode::Conflict,
                _ => ErrorCode::PermanentAdapter,
            }
        }
        sqlx::Error::Database(db) => match db.code().as_deref() {
            // PostgreSQL: serialization failure, deadlock, lock timeout, statement timeout
            // (query_canceled), admin shutdown or termination, and connection failures (08xxx).
            Some("40001" | "40P01" | "55P03" | "57014" | "57P01" | "57P02" | "57P03") => {
                ErrorCode::TransientAdapter
            }
            Some(c) if c.starts_with("08") => ErrorCode::TransientAdapter,
            // Undefined table: the database was never migrated.
            Some("42P01") => ErrorCode::Config,
            _ if db.is_unique_violation() => ErrorCode::Conflict,
            _ => ErrorCode::PermanentAdapter,
        },
        _ => ErrorCode::PermanentAdapter,
    }
}

/// Maps a database error to the error model ([`code_of`]), naming what failed.
pub(crate) fn sql_err(what: &'static str) -> impl FnOnce(sqlx::Error) -> Error {
    move |e| {
        let hint = match &e {
            sqlx::Error::Database(db) if db.code().as_deref() == Some("42P01") => {
                " (the record tables are missing: run `sanctum migrate` with a role that may \
                 create them, or set record.auto_migrate = true)"
            }
            _ => "",
        };
        Error::new(
            code_of(&e),
            format!("record database: {what} failed: {e}{hint}"),
        )
        .with_source(e)
    }
}

/// SQLite: SQLITE_BUSY and SQLITE_LOCKED, plain or extended.
fn is_sqlite_busy(code: &str) -> bool {
    // The primary result code is the low byte of an extended one: 5 BUSY, 6 LOCKED.
    code.parse::<i64>().is_ok_and(|c| matches!(c & 0xff, 5 | 6))
}

fn row_to_record<R: Row>(row: &R) -> Result<StoredRecord>
where
    for<'r> &'r str: sqlx::ColumnIndex<R>,
    for<'r> String: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> i64: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> i32: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> Vec<u8>: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    let bad =
        |e: sqlx::Error| Error::consistency("a stored record row is malformed").with_source(e);
    let version: i64 = row.try_get("version").map_err(bad)?;
    let schema_version: i32 = row.try_get("schema_version").map_err(bad)?;
    let deleted: i32 = row.try_get("deleted").map_err(bad)?;
    Ok(StoredRecord {
        deleted: deleted != 0,
        id: row.try_get("id").map_err(bad)?,
        version: u64::try_from(version)
            .map_err(|_| Error::consistency("a stored record has a negative version"))?,
        schema_version: u32::try_from(schema_version)
            .map_err(|_| Error::consistency("a stored record has a bad schema version"))?,
        created_at_ms: row.try_get("created_at_ms").map_err(bad)?,
        updated_at_ms: row.try_get("updated_at_ms").map_err(bad)?,
        sealed: row.try_get("sealed").map_err(bad)?,
    })
}

/// The `QuotaExceeded` of a refused `change`, given the usage now.
fn exceeded(now: RecordUsage, change: &UsageChange) -> Error {
    let grown = |used: u64, delta: i64| used.saturating_add_signed(delta);
    let (what, limit, would) = match change.max_records {
        Some(max) if change.records > 0 && grown(now.records, change.records) > max => {
            ("records", max, grown(now.records, change.records))
        }
        _ => (
            "record bytes",
            change.max_bytes.unwrap_or(0),
            grown(now.bytes, change.bytes),
        ),
    };
    crate::quota::exceeded(what, limit, would)
}

fn to_i64(v: u64) -> Result<i64> {
    i64::try_from(v).map_err(|_| Error::invalid("record version out of range"))
}

/// One adapter per dialect; the bodies are the same, over each dialect's connection type and
/// statements. Every operation runs on one connection: the pool's for a lone call, the
/// transaction's inside one.
macro_rules! sql_adapter {
    ($name:ident, $ops:ident, $tx:ident, $conn:ty, $db:ty, $stmts:expr, $kind:literal, $begin:expr) => {
        mod $ops {
            use super::*;

            pub(super) async fn upsert(
                conn: &mut $conn,
                key: &RecordKey,
                record: &StoredRecord,
                condition: WriteCondition,
            ) -> Result<()> {
                let version = to_i64(record.version)?;
                let schema = i32::try_from(record.schema_version)
                    .map_err(|_| Error::invalid("schema version out of range"))?;
                let done = match condition {
                    WriteCondition::Absent => sqlx::query($stmts.insert)
                        .bind(&key.tenant)
                        .bind(&key.namespace)
                        .bind(&key.collection)
                        .bind(&key.id)
                        .bind(version)
                        .bind(schema)
                        .bind(record.created_at_ms)
                        .bind(record.updated_at_ms)
                        .bind(&record.sealed)
                        .execute(&mut *conn)
                        .await
                        .map_err(sql_err("insert"))?,
                    WriteCondition::Version(expected) => sqlx::query($stmts.update)
                        .bind(&key.tenant)
                        .bind(&key.namespace)
                        .bind(&key.collection)
                        .bind(&key.id)
                        .bind(version)
                        .bind(schema)
                        .bind(record.created_at_ms)
                        .bind(record.updated_at_ms)
                        .bind(&record.sealed)
                        .bind(to_i64(expected)?)
                        .execute(&mut *conn)
                        .await
                        .map_err(sql_err("update"))?,
                };
                if done.rows_affected() == 1 {
                    return Ok(());
                }
                Err(match condition {
                    WriteCondition::Absent => Error::conflict("the record exists already"),
                    WriteCondition::Version(v) => Error::conflict(format!(
                        "the record is not at version {v} (it changed, or does not exist)"
                    )),
                })
            }

            pub(super) async fn get(
                conn: &mut $conn,
                key: &RecordKey,
            ) -> Result<Option<StoredRecord>> {
                let row = sqlx::query($stmts.get)
                    .bind(&key.tenant)
                    .bind(&key.namespace)
                    .bind(&key.collection)
                    .bind(&key.id)
                    .fetch_optional(&mut *conn)
                    .await
                    .map_err(sql_err("get"))?;
                row.as_ref().map(row_to_record).transpose()
            }

            pub(super) async fn delete(
                conn: &mut $conn,
                key: &RecordKey,
                expected: Option<u64>,
                now_ms: i64,
            ) -> Result<()> {
                let query = match expected {
                    None => sqlx::query($stmts.delete),
                    Some(_) => sqlx::query($stmts.delete_at),
                };
                let mut query = query
                    .bind(&key.tenant)
                    .bind(&key.namespace)
                    .bind(&key.collection)
                    .bind(&key.id)
                    .bind(Vec::<u8>::new())
                    .bind(now_ms);
                if let Some(v) = expected {
                    query = query.bind(to_i64(v)?);
                }
                let done = query.execute(&mut *conn).await.map_err(sql_err("delete"))?;
                if done.rows_affected() == 1 {
                    return Ok(());
                }
                // Nothing deleted: absent, or (with an expected version) at another one.
                let exists = sqlx::query($stmts.exists)
                    .bind(&key.tenant)
                    .bind(&key.namespace)
                    .bind(&key.collection)
                    .bind(&key.id)
                    .fetch_optional(&mut *conn)
                    .await
                    .map_err(sql_err("delete"))?;
                Err(match (exists, expected) {
                    (Some(_), Some(v)) => {
                        Error::conflict(format!("the record is not at version {v}"))
                    }
                    _ => Error::not_found("no such record"),
                })
            }

            /// Applies `change` to the namespace's usage, or `QuotaExceeded`.
            pub(super) async fn charge(
                conn: &mut $conn,
                key: &RecordKey,
                change: &UsageChange,
            ) -> Result<()> {
                if change.is_zero() {
                    return Ok(());
                }
                let limit = |max: Option<u64>| max.map(|m| i64::try_from(m).unwrap_or(i64::MAX));
                for first in [true, false] {
                    let done = sqlx::query($stmts.usage_charge)
                        .bind(&key.tenant)
                        .bind(&key.namespace)
                        .bind(change.records)
                        .bind(change.bytes)
                        .bind(limit(change.max_records))
                        .bind(limit(change.max_bytes))
                        .execute(&mut *conn)
                        .await
                        .map_err(sql_err("count usage"))?;
                    if done.rows_affected() == 1 {
                        return Ok(());
                    }
                    // No row yet (the namespace's first write), or a limit is reached.
                    let created = first
                        && sqlx::query($stmts.usage_create)
                            .bind(&key.tenant)
                            .bind(&key.namespace)
                            .execute(&mut *conn)
                            .await
                            .map_err(sql_err("count usage"))?
                            .rows_affected()
                            == 1;
                    if !created {
                        break;
                    }
                }
                let now = usage(conn, &key.tenant, &key.namespace).await?;
                Err(exceeded(now, change))
            }

            pub(super) async fn usage(
                conn: &mut $conn,
                tenant: &str,
                namespace: &str,
            ) -> Result<RecordUsage> {
                let row = sqlx::query($stmts.usage_get)
                    .bind(tenant)
                    .bind(namespace)
                    .fetch_optional(&mut *conn)
                    .await
                    .map_err(sql_err("read usage"))?;
                let Some(row) = row else {
                    return Ok(RecordUsage::default());
                };
                let count = |column: &str| -> Result<u64> {
                    let n: i64 = row.try_get(column).map_err(|e| {
                        Error::consistency("a stored usage row is malformed").with_source(e)
                    })?;
                    Ok(u64::try_from(n).unwrap_or(0))
                };
                Ok(RecordUsage {
                    records: count("records")?,
                    bytes: count("bytes")?,
                })
            }

            pub(super) async fn register_schema(
                conn: &mut $conn,
                schema: &StoredSchema,
                now_ms: i64,
            ) -> Result<bool> {
                let version = i32::try_from(schema.version)
                    .map_err(|_| Error::invalid("schema version out of range"))?;
                let done = sqlx::query($stmts.schema_insert)
                    .bind(&schema.collection)
                    .bind(version)
                    .bind(&schema.fingerprint)
                    .bind(now_ms)
                    .execute(&mut *conn)
                    .await
                    .map_err(sql_err("register a schema"))?;
                Ok(done.rows_affected() == 1)
            }

            pub(super) async fn schemas(conn: &mut $conn) -> Result<Vec<StoredSchema>> {
                let rows = sqlx::query($stmts.schema_all)
                    .fetch_all(&mut *conn)
                    .await
                    .map_err(sql_err("read the schemas"))?;
                rows.iter()
                    .map(|row| {
                        let bad = |e: sqlx::Error| {
                            Error::consistency("a stored schema row is malformed").with_source(e)
                        };
                        let version: i32 = row.try_get("version").map_err(bad)?;
                        Ok(StoredSchema {
                            collection: row.try_get("collection").map_err(bad)?,
                            version: u32::try_from(version).map_err(|_| {
                                Error::consistency("a stored schema has a negative version")
                            })?,
                            fingerprint: row.try_get("fingerprint").map_err(bad)?,
                        })
                    })
                    .collect()
            }

            pub(super) async fn scan(
                conn: &mut $conn,
                tenant: &str,
                namespace: &str,
                after: Option<(&str, &str)>,
                limit: usize,
            ) -> Result<Vec<(String, StoredRecord)>> {
                let (collection, id) = after.unwrap_or(("", ""));
                let rows = sqlx::query($stmts.scan)
                    .bind(tenant)
                    .bind(namespace)
                    .bind(collection)
                    .bind(id)
                    .bind(i64::try_from(limit).unwrap_or(i64::MAX))
                    .fetch_all(&mut *conn)
                    .await
                    .map_err(sql_err("scan"))?;
                rows.iter()
                    .map(|row| {
                        let collection: String = row.try_get("collection").map_err(|e| {
                            Error::consistency("a stored record row is malformed").with_source(e)
                        })?;
                        Ok((collection, row_to_record(row)?))
                    })
                    .collect()
            }

            pub(super) async fn list(
                conn: &mut $conn,
                key: &RecordKey,
                after: Option<&str>,
                limit: usize,
            ) -> Result<Vec<StoredRecord>> {
                let limit = i64::try_from(limit).unwrap_or(i64::MAX);
                let query = match after {
                    None => sqlx::query($stmts.list),
                    Some(_) => sqlx::query($stmts.list_after),
                };
                let mut query = query
                    .bind(&key.tenant)
                    .bind(&key.namespace)
                    .bind(&key.collection)
                    .bind(limit);
                if let Some(after) = after {
                    query = query.bind(after);
                }
                let rows = query.fetch_all(&mut *conn).await.map_err(sql_err("list"))?;
                rows.iter().map(row_to_record).collect()
            }
        }

        impl $name {
            /// A transaction on a connection of the pool (the caller holds the write turn).
            async fn begin_now(&self) -> Result<sqlx::Transaction<'static, $db>> {
                self.pool()
                    .await?
                    .begin_with($begin)
                    .await
                    .map_err(sql_err("begin a transaction"))
            }

            /// Applies a lone write's usage `change`, then commits its transaction.
            async fn charge_and_commit(
                &self,
                mut tx: sqlx::Transaction<'static, $db>,
                key: &RecordKey,
                change: &UsageChange,
            ) -> Result<()> {
                $ops::charge(&mut *tx, key, change).await?;
                tx.commit().await.map_err(sql_err("commit"))
            }

            async fn conn(&self) -> Result<sqlx::pool::PoolConnection<$db>> {
                self.pool()
                    .await?
                    .acquire()
                    .await
                    .map_err(sql_err("take a connection"))
            }
        }

        #[async_trait]
        impl RecordAdapter for $name {
            fn kind(&self) -> &'static str {
                $kind
            }

            fn name(&self) -> &str {
                &self.name
            }

            fn capabilities(&self) -> RecordCapabilities {
                RecordCapabilities {
                    conditional_writes: true,
                    durable: self.durable(),
                }
            }

            async fn init(&self) -> Result<()> {
                self.pool().await.map(|_| ())
            }

            async fn migrate(&self) -> Result<()> {
                self.migrate_now().await
            }

            async fn health_check(&self) -> Result<()> {
                sqlx::query("SELECT 1")
                    .execute(self.pool().await?)
                    .await
                    .map_err(sql_err("health check"))?;
                Ok(())
            }

            async fn dispose(&self) -> Result<()> {
                if let Some(pool) = self.pool.get() {
                    pool.close().await;
                }
                Ok(())
            }

            async fn upsert(
                &self,
                key: &RecordKey,
                record: &StoredRecord,
                condition: WriteCondition,
                change: &UsageChange,
            ) -> Result<()> {
                let _turn = self.write_turn().await?;
                if change.is_zero() {
                    // One statement: atomic without a transaction.
                    return $ops::upsert(&mut *self.conn().await?, key, record, condition).await;
                }
                let mut tx = self.begin_now().await?;
                $ops::upsert(&mut *tx, key, record, condition).await?;
                self.charge_and_commit(tx, key, change).await
            }

            async fn get(&self, key: &RecordKey) -> Result<Option<StoredRecord>> {
                $ops::get(&mut *self.conn().await?, key).await
            }

            async fn delete(
                &self,
                key: &RecordKey,
                expected: Option<u64>,
                now_ms: i64,
                change: &UsageChange,
            ) -> Result<()> {
                let _turn = self.write_turn().await?;
                if change.is_zero() {
                    return $ops::delete(&mut *self.conn().await?, key, expected, now_ms).await;
                }
                let mut tx = self.begin_now().await?;
                $ops::delete(&mut *tx, key, expected, now_ms).await?;
                self.charge_and_commit(tx, key, change).await
            }

            async fn usage(&self, tenant: &str, namespace: &str) -> Result<RecordUsage> {
                $ops::usage(&mut *self.conn().await?, tenant, namespace).await
            }

            async fn register_schema(&self, schema: &StoredSchema, now_ms: i64) -> Result<bool> {
                let _turn = self.write_turn().await?;
                $ops::register_schema(&mut *self.conn().await?, schema, now_ms).await
            }

            async fn schemas(&self) -> Result<Vec<StoredSchema>> {
                $ops::schemas(&mut *self.conn().await?).await
            }

            async fn list(
                &self,
                key: &RecordKey,
                after: Option<&str>,
                limit: usize,
            ) -> Result<Vec<StoredRecord>> {
                $ops::list(&mut *self.conn().await?, key, after, limit).await
            }

            async fn scan(
                &self,
                tenant: &str,
                namespace: &str,
                after: Option<(&str, &str)>,
                limit: usize,
            ) -> Result<Vec<(String, StoredRecord)>> {
                $ops::scan(&mut *self.conn().await?, tenant, namespace, after, limit).await
            }

            async fn begin(&self) -> Result<Box<dyn RecordTransaction>> {
                let turn = self.write_turn().await?;
                let tx = self.begin_now().await?;
                Ok(Box::new($tx { tx: Some(tx), turn }))
            }
        }

        /// A transaction on one connection; dropped without `commit`, it rolls back.
        struct $tx {
            tx: Option<sqlx::Transaction<'static, $db>>,
            /// This process's write turn, held until the transaction ends (SQLite).
            turn: Option<tokio::sync::OwnedMutexGuard<()>>,
        }

        impl std::fmt::Debug for $tx {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.debug_struct(stringify!($tx))
                    .field("open", &self.tx.is_some())
                    .finish()
            }
        }

        impl $tx {
            fn open(&mut self) -> Result<&mut $conn> {
                self.tx
                    .as_deref_mut()
                    .ok_or_else(|| Error::invalid("the transaction has ended"))
            }
        }

        #[async_trait]
        impl RecordTransaction for $tx {
            async fn upsert(
                &mut self,
                key: &RecordKey,
                record: &StoredRecord,
                condition: WriteCondition,
            ) -> Result<()> {
                $ops::upsert(self.open()?, key, record, condition).await
            }

            async fn get(&mut self, key: &RecordKey) -> Result<Option<StoredRecord>> {
                $ops::get(self.open()?, key).await
            }

            async fn delete(
                &mut self,
                key: &RecordKey,
                expected: Option<u64>,
                now_ms: i64,
            ) -> Result<()> {
                $ops::delete(self.open()?, key, expected, now_ms).await
            }

            async fn charge(
                &mut self,
                tenant: &str,
                namespace: &str,
                change: &UsageChange,
            ) -> Result<()> {
                let key = RecordKey {
                    tenant: tenant.to_string(),
                    namespace: namespace.to_string(),
                    collection: String::new(),
                    id: String::new(),
                };
                $ops::charge(self.open()?, &key, change).await
            }

            async fn register_schema(
                &mut self,
                schema: &StoredSchema,
                now_ms: i64,
            ) -> Result<bool> {
                $ops::register_schema(self.open()?, schema, now_ms).await
            }

            async fn commit(&mut self) -> Result<()> {
                let tx = self
                    .tx
                    .take()
                    .ok_or_else(|| Error::invalid("the transaction has ended"))?;
                let committed = tx.commit().await.map_err(sql_err("commit"));
                self.turn = None;
                committed
            }

            async fn rollback(&mut self) -> Result<()> {
                let rolled_back = match self.tx.take() {
                    Some(tx) => tx.rollback().await.map_err(sql_err("roll back")),
                    None => Ok(()),
                };
                self.turn = None;
                rolled_back
            }
        }
    };
}

/// Records in a SQLite file: WAL, `synchronous = FULL`, a busy timeout; several processes may
/// use one file at once. Or, without a file, in memory (gone with the process).
#[derive(Debug)]
pub struct SqliteRecordAdapter {
    name: String,
    /// `None`: an in-memory database.
    path: Option<PathBuf>,
    pool: OnceCell<SqlitePool>,
    /// One writer of this process at a time: SQLite allows one anyway, and writers that wait
    /// here queue in order, where waiting on the file lock means SQLite's sleeping busy handler
    /// (it halved a contended upsert's throughput in the records bench).
    writers: Arc<tokio::sync::Mutex<()>>,
}

impl SqliteRecordAdapter {
    /// An adapter over the SQLite file at `path` (created `0600`, with its folder, on first use).
    pub fn new(name: impl Into<String>, path: impl Into<PathBuf>) -> Self {
        Self {
            name: name.into(),
            path: Some(path.into()),
            pool: OnceCell::new(),
            writers: Arc::default(),
        }
    }

    /// An adapter over a database in this process's memory (tests, the memory blob backend).
    pub fn in_memory(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            path: None,
            pool: OnceCell::new(),
            writers: Arc::default(),
        }
    }

    async fn pool(&self) -> Result<&SqlitePool> {
        self.pool
            .get_or_try_init(|| async {
                // Several processes may open a new database at once, and sqlx's migration lock
                // does nothing on SQLite: a file lock beside the database serializes the setup.
                let _setup = match &self.path {
                    Some(path) => Some(prepare_file(path).await?),
                    None => None,
                };
                let (options, pool) = match &self.path {
                    Some(path) => {
                        let options = SqliteConnectOptions::new()
                            .filename(path)
                            .journal_mode(SqliteJournalMode::Wal)
                            .synchronous(SqliteSynchronous::Full)
                            .busy_timeout(SQLITE_BUSY_TIMEOUT);
                        (options, SqlitePoolOptions::new().max_connections(4))
                    }
                    // Every connection to `:memory:` is its own database: keep exactly one.
                    None => (
                        SqliteConnectOptions::from_str("sqlite::memory:")
                            .map_err(sql_err("open an in-memory record database"))?,
                        SqlitePoolOptions::new()
                            .max_connections(1)
                            .min_connections(1)
                            .idle_timeout(None)
                            .max_lifetime(None),
                    ),
                };
                let pool = pool
                    .connect_with(options)
                    .await
                    .map_err(sql_err("open the SQLite record database"))?;
                migrator(SQLITE_MIGRATIONS)
                    .run(&pool)
                    .await
                    .map_err(|e| migrate_err(e, "SQLite"))?;
                Ok(pool)
            })
            .await
    }
}

/// Prepares the database file at `path` in one trip to a blocking thread: creates its folder
/// (`0700`) and the file itself (`0600`, so the database and its `-wal` and `-shm` files, which
/// copy its mode, are private whatever the umask), then takes the setup lock (`<path>.lock`),
/// waiting for another process's setup to finish. The lock is released when the returned file
/// is dropped.
async fn prepare_file(path: &std::path::Path) -> Result<std::fs::File> {
    let path = path.to_path_buf();
    tokio::task::spawn_blocking(move || {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            let mut builder = std::fs::DirBuilder::new();
            builder.recursive(true);
            #[cfg(unix)]
            std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
            builder
                .create(dir)
                .map_err(|e| Error::from_backend_io(e, "create the record database's folder"))?;
        }
        let private = |file: &std::path::Path| {
            let mut options = std::fs::OpenOptions::new();
            options.write(true).create(true).truncate(false);
            #[cfg(unix)]
            std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
            options.open(file)
        };
        let mut lock = path.as_os_str().to_os_string();
        lock.push(".lock");
        let lock = private(std::path::Path::new(&lock))
            .map_err(|e| Error::from_backend_io(e, "open the record database's lock"))?;
        lock.lock()
            .map_err(|e| Error::from_backend_io(e, "lock the record database for setup"))?;
        private(&path).map_err(|e| Error::from_backend_io(e, "create the record database"))?;
        Ok(lock)
    })
    .await
    .map_err(|e| {
        Error::new(ErrorCode::PermanentAdapter, "record database worker failed").with_source(e)
    })?
}

impl SqliteRecordAdapter {
    fn durable(&self) -> bool {
        self.path.is_some()
    }

    /// Opening the database migrates it.
    async fn migrate_now(&self) -> Result<()> {
        self.pool().await.map(|_| ())
    }

    /// Waits for this process's write turn, as long as SQLite's busy timeout at most (a writer
    /// that waits longer gets `TransientAdapter`, as it would from SQLite).
    async fn write_turn(&self) -> Result<Option<tokio::sync::OwnedMutexGuard<()>>> {
        tokio::time::timeout(SQLITE_BUSY_TIMEOUT, self.writers.clone().lock_owned())
            .await
            .map(Some)
            .map_err(|_| {
                Error::new(
                    ErrorCode::TransientAdapter,
                    "record database: another writer of this process held SQLite too long",
                )
            })
    }
}

// `BEGIN IMMEDIATE` takes the write lock at once: a deferred transaction that later writes
// can fail with SQLITE_BUSY_SNAPSHOT, which the busy timeout does not wait out.
sql_adapter!(
    SqliteRecordAdapter,
    sqlite_ops,
    SqliteTransaction,
    sqlx::SqliteConnection,
    sqlx::Sqlite,
    SQLITE,
    "sqlite",
    "BEGIN IMMEDIATE"
);

/// Records in PostgreSQL.
#[derive(Debug)]
pub struct PostgresRecordAdapter {
    name: String,
    settings: PostgresSettings,
    pool: OnceCell<PgPool>,
}

impl PostgresRecordAdapter {
    /// An adapter over the server `settings` name (connected on first use).
    pub fn new(name: impl Into<String>, settings: PostgresSettings) -> Self {
        Self {
            name: name.into(),
            settings,
            pool: OnceCell::new(),
        }
    }

    async fn pool(&self) -> Result<&PgPool> {
        self.pool
            .get_or_try_init(|| async {
                let mut options = PgConnectOptions::from_str(&self.settings.url)
                    .map_err(sql_err("parse record.url"))?;
                if let Some(password) = &self.settings.password {
                    options = options.password(password);
                }
                let timeout = self.settings.statement_timeout.as_millis().to_string();
                let options = options.options([("statement_timeout", timeout.as_str())]);
                let pool = PgPoolOptions::new()
                    .max_connections(self.settings.pool_size)
                    .connect_with(options)
                    .await
                    .map_err(sql_err("connect to the PostgreSQL record database"))?;
                if self.settings.auto_migrate {
                    migrator(POSTGRES_MIGRATIONS)
                        .run(&pool)
                        .await
                        .map_err(|e| migrate_err(e, "PostgreSQL"))?;
                }
                Ok(pool)
            })
            .await
    }

    /// Runs the migrations (`sanctum migrate`), whatever `auto_migrate` says.
    async fn migrate_now(&self) -> Result<()> {
        let pool = self.pool().await?;
        migrator(POSTGRES_MIGRATIONS)
            .run(pool)
            .await
            .map_err(|e| migrate_err(e, "PostgreSQL"))
    }
}

impl PostgresRecordAdapter {
    fn durable(&self) -> bool {
        true
    }

    /// PostgreSQL writers run side by side.
    async fn write_turn(&self) -> Result<Option<tokio::sync::OwnedMutexGuard<()>>> {
        Ok(None)
    }
}

sql_adapter!(
    PostgresRecordAdapter,
    postgres_ops,
    PostgresTransaction,
    sqlx::PgConnection,
    sqlx::Postgres,
    POSTGRES,
    "postgres",
    "BEGIN"
);

fn migrate_err(e: sqlx::migrate::MigrateError, which: &str) -> Error {
    let code = match &e {
        sqlx::migrate::MigrateError::Execute(inner) => code_of(inner),
        _ => ErrorCode::Config,
    };
    Error::new(
        code,
        format!("record database {which}: migrations failed: {e}"),
    )
    .with_source(e)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dialects_differ_only_in_placeholders() {
        assert_eq!(SQLITE.get.replace('?', "$"), POSTGRES.get);
        assert!(SQLITE.insert.contains("?9, 0) ON CONFLICT DO NOTHING"));
        assert!(POSTGRES.update.ends_with("AND version = $10"));
        for live_only in [SQLITE.list, SQLITE.list_after, SQLITE.delete, SQLITE.exists] {
            assert!(live_only.contains("deleted = 0"), "{live_only}");
        }
    }

    /// Every SQLSTATE the mapping names, raised by the real server: the code a caller sees.
    #[tokio::test]
    async fn postgres_error_codes_map_as_documented() {
        use sqlx::Connection;
        let base = std::env::var("SANCTUM_TEST_POSTGRES_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".into());
        let mut conn = sqlx::PgConnection::connect(&format!("{base}/postgres"))
            .await
            .expect("PostgreSQL at SANCTUM_TEST_POSTGRES_URL (default 127.0.0.1:5432)");
        let cases = [
            ("40001", ErrorCode::TransientAdapter), // serialization failure
            ("40P01", ErrorCode::TransientAdapter), // deadlock
            ("57014", ErrorCode::TransientAdapter), // statement timeout (query_canceled)
            ("57P01", ErrorCode::TransientAdapter), // admin shutdown
            ("08006", ErrorCode::TransientAdapter), // connection failure
            ("23505", ErrorCode::Conflict),         // unique violation
            ("42P01", ErrorCode::Config),           // undefined table: not migrated
            ("42501", ErrorCode::PermanentAdapter), // insufficient privilege
        ];
        for (state, expected) in cases {
            let sql =
                format!("DO $$ BEGIN RAISE EXCEPTION 'raised' USING ERRCODE = '{state}'; END $$");
            let err = sqlx::query(sqlx::AssertSqlSafe(sql))
                .execute(&mut conn)
                .await
                .unwrap_err();
            assert_eq!(sql_err("test")(err).code(), expected, "SQLSTATE {state}");
        }
    }

    #[test]
    fn busy_codes() {
        for busy in ["5", "6", "261", "517", "262"] {
            assert!(is_sqlite_busy(busy), "{busy}");
        }
        for other in ["1", "19", "2067", "x"] {
            assert!(!is_sqlite_busy(other), "{other}");
        }
    }
}
