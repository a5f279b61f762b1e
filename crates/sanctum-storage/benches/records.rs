//! Records: the facade against what it costs underneath, on SQLite and PostgreSQL, in one run.
//!
//! 1 KiB JSON documents, 8 concurrent callers, upserts (unconditional) and gets:
//! - **facade**: `storage.records()`, encryption, policy and validation on;
//! - **raw A** (the overhead baseline): the adapter's own statements on the same pool (the read
//!   of the current row, then the conditional write), with the plaintext document;
//! - **raw B** (the cost of the features): one single-row `INSERT .. ON CONFLICT DO UPDATE`, or
//!   one `SELECT`, of the plaintext document in a plain table, with sqlx.
//!
//! The three systems run in interleaved rounds (each round in another order); the median round
//! of each is printed.
//!
//! Run: `cargo bench -p sanctum-storage --bench records` (`SANCTUM_BENCH_QUICK=1` for fewer
//! operations). PostgreSQL comes from `SANCTUM_TEST_POSTGRES_URL` (default
//! `postgres://postgres@127.0.0.1:5432`); without a server its rows are skipped. Figures are
//! printed, never asserted.

use std::sync::Arc;
use std::time::{Duration, Instant};

use sanctum_storage::adapters::record::sql::{
    PostgresRecordAdapter, PostgresSettings, SqliteRecordAdapter,
};
use sanctum_storage::adapters::record::{
    RecordAdapter, RecordKey, StoredRecord, UsageChange, WriteCondition,
};
use sanctum_storage::facade::record::UpsertOptions;
use sanctum_storage::{
    Storage, StorageConfig, StorageContext, StorageDependencies, create_storage_client,
};
use serde_json::{Value, json};
use sqlx::Connection;

const CALLERS: usize = 8;
/// Interleaved rounds per (backend, op); the median is reported.
const ROUNDS: usize = 5;
const IDS: usize = 64;

fn document(i: usize) -> Value {
    // About 1 KiB as JSON.
    json!({"id": i, "name": format!("user-{i}"), "bio": "x".repeat(960)})
}

async fn storage(records: Arc<dyn RecordAdapter>) -> Storage {
    let config = StorageConfig::from_toml_str(
        "[blob]\nbackend = \"memory\"\n[policy]\nsuperusers = [\"bench\"]",
        std::iter::empty::<(&str, &str)>(),
    )
    .unwrap();
    let deps = StorageDependencies {
        record_adapter: Some(records),
        ..Default::default()
    };
    create_storage_client(config, deps).await.unwrap()
}

/// Runs `op(caller, i)` for `per_caller` operations on each of 8 callers; returns ops/s.
async fn run<F, Fut>(per_caller: usize, op: F) -> f64
where
    F: Fn(usize, usize) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let started = Instant::now();
    let tasks: Vec<_> = (0..CALLERS)
        .map(|c| {
            let op = op.clone();
            tokio::spawn(async move {
                for i in 0..per_caller {
                    op(c, i).await;
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    (CALLERS * per_caller) as f64 / started.elapsed().as_secs_f64()
}

fn key(c: usize, i: usize) -> RecordKey {
    RecordKey {
        tenant: "rawa".into(),
        namespace: "ns".into(),
        collection: "users".into(),
        id: format!("c{c}-{}", i % IDS),
    }
}

/// Raw A: the adapter's read-then-conditional-write with the plaintext document, counting
/// usage as the facade does (a new row, or a change of size, makes it a transaction).
async fn raw_a_upsert(adapter: &dyn RecordAdapter, key: &RecordKey, doc: &[u8]) {
    let current = adapter.get(key).await.unwrap();
    let (condition, version) = match &current {
        None => (WriteCondition::Absent, 1),
        Some(c) => (WriteCondition::Version(c.version), c.version + 1),
    };
    let record = StoredRecord {
        id: key.id.clone(),
        version,
        schema_version: 0,
        created_at_ms: 0,
        updated_at_ms: 0,
        sealed: doc.to_vec(),
        deleted: false,
    };
    let old_len = current.as_ref().map_or(0, |c| c.sealed.len() as i64);
    let change = UsageChange {
        records: i64::from(current.is_none()),
        bytes: doc.len() as i64 - old_len,
        ..UsageChange::default()
    };
    adapter
        .upsert(key, &record, condition, &change)
        .await
        .unwrap();
}

struct Row {
    backend: &'static str,
    op: &'static str,
    facade: f64,
    raw_a: f64,
    raw_b: f64,
}

fn median(mut samples: Vec<f64>) -> f64 {
    samples.sort_by(f64::total_cmp);
    samples[samples.len() / 2]
}

/// One backend: facade, raw A and raw B, upserts then gets.
async fn measure(
    backend: &'static str,
    adapter: Arc<dyn RecordAdapter>,
    raw_b: RawB,
    per_caller: usize,
) -> Vec<Row> {
    let storage = storage(adapter.clone()).await;
    let ctx = StorageContext::new("bench", "bench").unwrap();
    let docs: Arc<Vec<Value>> = Arc::new((0..IDS).map(document).collect());
    let plain: Arc<Vec<Vec<u8>>> = Arc::new(
        docs.iter()
            .map(|d| serde_json::to_vec(d).unwrap())
            .collect(),
    );
    // Warm-up: create every row once in each system.
    for c in 0..CALLERS {
        for i in 0..IDS {
            storage
                .records()
                .upsert(
                    &ctx,
                    "ns",
                    "users",
                    &format!("c{c}-{i}"),
                    docs[i].clone(),
                    UpsertOptions::default(),
                )
                .await
                .unwrap();
            raw_a_upsert(adapter.as_ref(), &key(c, i), &plain[i]).await;
            raw_b.upsert(&format!("c{c}-{i}"), &plain[i]).await;
        }
    }
    let mut rows = Vec::new();
    for op in ["upsert", "get"] {
        // Rounds interleave the three systems, each round in another order, so drift of the
        // machine (other load, the database's caches and checkpoints) spreads over all three;
        // the median round is reported.
        let mut samples: [Vec<f64>; 3] = Default::default();
        for round in 0..ROUNDS {
            for k in 0..3 {
                let system = (round + k) % 3;
                let rate = match system {
                    0 => {
                        let (storage, ctx, docs) = (storage.clone(), ctx.clone(), docs.clone());
                        run(per_caller, move |c, i| {
                            let (storage, ctx, docs) = (storage.clone(), ctx.clone(), docs.clone());
                            async move {
                                let id = format!("c{c}-{}", i % IDS);
                                let records = storage.records();
                                if op == "upsert" {
                                    let doc = docs[i % IDS].clone();
                                    records
                                        .upsert(
                                            &ctx,
                                            "ns",
                                            "users",
                                            &id,
                                            doc,
                                            UpsertOptions::default(),
                                        )
                                        .await
                                        .unwrap();
                                } else {
                                    std::hint::black_box(
                                        records.get(&ctx, "ns", "users", &id).await.unwrap(),
                                    );
                                }
                            }
                        })
                        .await
                    }
                    1 => {
                        let (adapter, plain) = (adapter.clone(), plain.clone());
                        run(per_caller, move |c, i| {
                            let (adapter, plain) = (adapter.clone(), plain.clone());
                            async move {
                                let key = key(c, i);
                                if op == "upsert" {
                                    raw_a_upsert(adapter.as_ref(), &key, &plain[i % IDS]).await;
                                } else {
                                    let row = adapter.get(&key).await.unwrap().unwrap();
                                    let doc: Value = serde_json::from_slice(&row.sealed).unwrap();
                                    std::hint::black_box(doc);
                                }
                            }
                        })
                        .await
                    }
                    _ => {
                        let (raw_b, plain) = (raw_b.clone(), plain.clone());
                        run(per_caller, move |c, i| {
                            let (raw_b, plain) = (raw_b.clone(), plain.clone());
                            async move {
                                let id = format!("c{c}-{}", i % IDS);
                                if op == "upsert" {
                                    raw_b.upsert(&id, &plain[i % IDS]).await;
                                } else {
                                    let doc: Value =
                                        serde_json::from_slice(&raw_b.get(&id).await).unwrap();
                                    std::hint::black_box(doc);
                                }
                            }
                        })
                        .await
                    }
                };
                samples[system].push(rate);
            }
        }
        let [facade, raw_a, raw_b_rate] = samples.map(median);
        rows.push(Row {
            backend,
            op,
            facade,
            raw_a,
            raw_b: raw_b_rate,
        });
    }
    storage.close().await.unwrap();
    rows
}

/// Raw B: a plain table of (id, document) with single-statement upserts and selects.
#[derive(Clone)]
enum RawB {
    Sqlite(sqlx::SqlitePool),
    Postgres(sqlx::PgPool),
}

impl RawB {
    async fn upsert(&self, id: &str, doc: &[u8]) {
        match self {
            RawB::Sqlite(pool) => {
                sqlx::query("INSERT INTO plain_docs (id, doc) VALUES (?1, ?2) ON CONFLICT (id) DO UPDATE SET doc = excluded.doc")
                    .bind(id)
                    .bind(doc)
                    .execute(pool)
                    .await
                    .unwrap();
            }
            RawB::Postgres(pool) => {
                sqlx::query("INSERT INTO plain_docs (id, doc) VALUES ($1, $2) ON CONFLICT (id) DO UPDATE SET doc = excluded.doc")
                    .bind(id)
                    .bind(doc)
                    .execute(pool)
                    .await
                    .unwrap();
            }
        }
    }

    async fn get(&self, id: &str) -> Vec<u8> {
        use sqlx::Row;
        match self {
            RawB::Sqlite(pool) => sqlx::query("SELECT doc FROM plain_docs WHERE id = ?1")
                .bind(id)
                .fetch_one(pool)
                .await
                .unwrap()
                .get("doc"),
            RawB::Postgres(pool) => sqlx::query("SELECT doc FROM plain_docs WHERE id = $1")
                .bind(id)
                .fetch_one(pool)
                .await
                .unwrap()
                .get("doc"),
        }
    }
}

async fn sqlite(dir: &std::path::Path, per_caller: usize) -> Vec<Row> {
    let adapter: Arc<dyn RecordAdapter> =
        Arc::new(SqliteRecordAdapter::new("records", dir.join("records.db")));
    let options = sqlx::sqlite::SqliteConnectOptions::new()
        .filename(dir.join("plain.db"))
        .create_if_missing(true)
        .journal_mode(sqlx::sqlite::SqliteJournalMode::Wal)
        .synchronous(sqlx::sqlite::SqliteSynchronous::Full)
        .busy_timeout(Duration::from_secs(5));
    let pool = sqlx::sqlite::SqlitePoolOptions::new()
        .max_connections(4)
        .connect_with(options)
        .await
        .unwrap();
    sqlx::query("CREATE TABLE plain_docs (id TEXT PRIMARY KEY, doc BLOB NOT NULL)")
        .execute(&pool)
        .await
        .unwrap();
    measure("SQLite", adapter, RawB::Sqlite(pool), per_caller).await
}

async fn postgres(per_caller: usize) -> Option<Vec<Row>> {
    let base = std::env::var("SANCTUM_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".into());
    let mut admin = match sqlx::PgConnection::connect(&format!("{base}/postgres")).await {
        Ok(c) => c,
        Err(e) => {
            println!("PostgreSQL skipped: no server at {base} ({e})");
            return None;
        }
    };
    let db = format!("sanctum_bench_{}", std::process::id());
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {db}")))
        .execute(&mut admin)
        .await
        .unwrap();
    let url = format!("{base}/{db}");
    let adapter: Arc<dyn RecordAdapter> = Arc::new(PostgresRecordAdapter::new(
        "records",
        PostgresSettings {
            url: url.clone(),
            password: None,
            pool_size: CALLERS as u32,
            statement_timeout: Duration::from_secs(30),
            auto_migrate: true,
        },
    ));
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(CALLERS as u32)
        .connect(&url)
        .await
        .unwrap();
    sqlx::query("CREATE TABLE plain_docs (id TEXT PRIMARY KEY, doc BYTEA NOT NULL)")
        .execute(&pool)
        .await
        .unwrap();
    let rows = measure(
        "PostgreSQL",
        adapter,
        RawB::Postgres(pool.clone()),
        per_caller,
    )
    .await;
    pool.close().await;
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "DROP DATABASE IF EXISTS {db} WITH (FORCE)"
    )))
    .execute(&mut admin)
    .await
    .unwrap();
    Some(rows)
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return; // cargo bench harness probe
    }
    let quick = std::env::var("SANCTUM_BENCH_QUICK").is_ok_and(|v| v == "1");
    // Per caller and round.
    let per_caller = if quick { 30 } else { 150 };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut rows = rt.block_on(sqlite(dir.path(), per_caller));
    if let Some(pg) = rt.block_on(postgres(per_caller)) {
        rows.extend(pg);
    }
    println!(
        "# records: 1 KiB documents, {CALLERS} concurrent callers, {ROUNDS} interleaved rounds of {} operations per system; median round",
        CALLERS * per_caller
    );
    println!(
        "| backend | op | facade | raw A (same statements, plaintext) | facade / raw A | raw B (single statement, plaintext) | facade / raw B |"
    );
    println!("|---|---|---|---|---|---|---|");
    for r in rows {
        println!(
            "| {} | {} | {:.0} ops/s | {:.0} ops/s | {:.0}% | {:.0} ops/s | {:.0}% |",
            r.backend,
            r.op,
            r.facade,
            r.raw_a,
            100.0 * r.facade / r.raw_a,
            r.raw_b,
            100.0 * r.facade / r.raw_b
        );
    }
}
