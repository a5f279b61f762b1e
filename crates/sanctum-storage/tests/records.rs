//! Records on SQLite (a file, and in memory) and on the real PostgreSQL server: the contract
//! suite, what the database holds, policy and configuration.
//!
//! PostgreSQL: `SANCTUM_TEST_POSTGRES_URL` (default `postgres://postgres@127.0.0.1:5432`); each
//! run of this binary creates a fresh database and every test uses its own tenant.

use std::sync::Arc;

use sanctum_storage::adapters::record::RecordAdapter;
use sanctum_storage::adapters::record::sql::{
    PostgresRecordAdapter, PostgresSettings, SqliteRecordAdapter,
};
use sanctum_storage::conformance::record as suite;
use sanctum_storage::facade::record::UpsertOptions;
use sanctum_storage::{
    ErrorCode, Storage, StorageConfig, StorageContext, StorageDependencies, create_storage_client,
};
use serde_json::json;
use tokio::sync::OnceCell;

const NO_ENV: [(&str, &str); 0] = [];

async fn storage_with(records: Arc<dyn RecordAdapter>) -> Storage {
    let config = StorageConfig::from_toml_str(
        "[blob]\nbackend = \"memory\"\n[policy]\nsuperusers = [\"conformance\"]",
        NO_ENV,
    )
    .unwrap();
    let deps = StorageDependencies {
        record_adapter: Some(records),
        ..Default::default()
    };
    create_storage_client(config, deps).await.unwrap()
}

fn sqlite_file(dir: &tempfile::TempDir) -> Arc<dyn RecordAdapter> {
    Arc::new(SqliteRecordAdapter::new(
        "records",
        dir.path().join("records.db"),
    ))
}

fn postgres_base() -> String {
    std::env::var("SANCTUM_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".into())
}

/// Creates a fresh database named after this process, the time and `tag`; returns its URL.
async fn fresh_database(tag: &str) -> String {
    use sqlx::Connection;
    let name = format!(
        "sanctum_test_{}_{}_{tag}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis()
    );
    let mut admin = sqlx::PgConnection::connect(&format!("{}/postgres", postgres_base()))
        .await
        .expect("PostgreSQL at SANCTUM_TEST_POSTGRES_URL (default 127.0.0.1:5432)");
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut admin)
        .await
        .unwrap();
    format!("{}/{name}", postgres_base())
}

/// The URL of this run's shared fresh database, created once.
async fn postgres_url() -> String {
    static DB: OnceCell<String> = OnceCell::const_new();
    DB.get_or_init(|| fresh_database("shared")).await.clone()
}

fn postgres_at(url: String) -> Arc<dyn RecordAdapter> {
    Arc::new(PostgresRecordAdapter::new(
        "records",
        PostgresSettings {
            url,
            password: None,
            pool_size: 20,
            statement_timeout: std::time::Duration::from_secs(30),
            auto_migrate: true,
        },
    ))
}

async fn postgres() -> Arc<dyn RecordAdapter> {
    postgres_at(postgres_url().await)
}

macro_rules! contract {
    ($($check:ident),* $(,)?) => {
        mod sqlite {
            use super::*;
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $check() {
                    let dir = tempfile::tempdir().unwrap();
                    let storage = storage_with(sqlite_file(&dir)).await;
                    suite::$check(&storage, "sqlite-t").await;
                }
            )*
        }
        mod sqlite_memory {
            use super::*;
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $check() {
                    let storage =
                        storage_with(Arc::new(SqliteRecordAdapter::in_memory("records"))).await;
                    suite::$check(&storage, "memory-t").await;
                }
            )*
        }
        mod postgres {
            use super::*;
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $check() {
                    let storage = storage_with(postgres().await).await;
                    suite::$check(&storage, &format!("pg-{}", stringify!($check).replace('_', "-"))).await;
                }
            )*
        }
    };
}

contract!(
    upsert_get_and_versions,
    concurrent_increments,
    delete_and_recreate,
    pagination,
    tenants_are_isolated,
    hostile_input_is_refused,
    moved_rows_do_not_open,
    transactions_commit_together,
    transactions_roll_back,
    schemas_validate_and_upcast,
    drift_is_refused,
    quotas_hold_under_concurrency,
    key_rotation_covers_records,
);

/// Finds `needle` in `haystack`.
fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

const CANARY: &str = "canary-7f3a9c-do-not-store-in-clear";

/// The SQLite file (and its WAL) never holds a document in the clear; a canary written raw is
/// found by the same scan (the positive control).
#[tokio::test]
async fn sqlite_file_holds_only_ciphertext() {
    let dir = tempfile::tempdir().unwrap();
    let adapter = sqlite_file(&dir);
    let storage = storage_with(adapter.clone()).await;
    let ctx = StorageContext::new("canary", "conformance").unwrap();
    storage
        .records()
        .upsert(
            &ctx,
            "ns",
            "c",
            "id1",
            json!({"secret": CANARY}),
            UpsertOptions::default(),
        )
        .await
        .unwrap();
    let scan = || {
        let mut all = Vec::new();
        for e in std::fs::read_dir(dir.path()).unwrap().flatten() {
            all.extend(std::fs::read(e.path()).unwrap());
        }
        all
    };
    assert!(!contains(&scan(), CANARY.as_bytes()));
    // Positive control: the same bytes written raw are found.
    let key = sanctum_storage::adapters::record::RecordKey {
        tenant: "canary".into(),
        namespace: "ns".into(),
        collection: "c".into(),
        id: "raw".into(),
    };
    let raw = sanctum_storage::adapters::record::StoredRecord {
        id: "raw".into(),
        version: 1,
        schema_version: 0,
        created_at_ms: 0,
        updated_at_ms: 0,
        sealed: CANARY.as_bytes().to_vec(),
        deleted: false,
    };
    adapter
        .upsert(
            &key,
            &raw,
            sanctum_storage::adapters::record::WriteCondition::Absent,
            &Default::default(),
        )
        .await
        .unwrap();
    assert!(
        contains(&scan(), CANARY.as_bytes()),
        "the scan finds a raw canary"
    );
    // And the facade refuses to open it.
    let got = storage.records().get(&ctx, "ns", "c", "raw").await;
    assert_eq!(got.unwrap_err().code(), ErrorCode::Encryption);
}

/// The PostgreSQL table holds only ciphertext: read back with raw sqlx, with a positive control.
#[tokio::test]
async fn postgres_table_holds_only_ciphertext() {
    use sqlx::Row;
    let storage = storage_with(postgres().await).await;
    let ctx = StorageContext::new("pg-canary", "conformance").unwrap();
    storage
        .records()
        .upsert(
            &ctx,
            "ns",
            "c",
            "id1",
            json!({"secret": CANARY}),
            UpsertOptions::default(),
        )
        .await
        .unwrap();
    let pool = sqlx::PgPool::connect(&postgres_url().await).await.unwrap();
    let rows = sqlx::query(
        "SELECT tenant, namespace, collection, id, sealed FROM sanctum_records WHERE tenant = $1",
    )
    .bind("pg-canary")
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(rows.len(), 1);
    let mut all = Vec::new();
    for row in &rows {
        for col in ["tenant", "namespace", "collection", "id"] {
            all.extend(row.get::<String, _>(col).into_bytes());
        }
        all.extend(row.get::<Vec<u8>, _>("sealed"));
    }
    assert!(!contains(&all, CANARY.as_bytes()));
    assert!(contains(&all, b"id1"), "ids are visible, like blob keys");
    // Positive control: a canary stored raw is found by the same query.
    sqlx::query(
        "INSERT INTO sanctum_records (tenant, namespace, collection, id, version, \
         schema_version, created_at_ms, updated_at_ms, sealed) \
         VALUES ('pg-canary', 'ns', 'c', 'raw', 1, 0, 0, 0, $1)",
    )
    .bind(CANARY.as_bytes())
    .execute(&pool)
    .await
    .unwrap();
    let raw: Vec<u8> =
        sqlx::query("SELECT sealed FROM sanctum_records WHERE tenant = 'pg-canary' AND id = 'raw'")
            .fetch_one(&pool)
            .await
            .unwrap()
            .get("sealed");
    assert!(contains(&raw, CANARY.as_bytes()));
}

/// Records check the same policy as blobs: an actor without grants is refused, and nothing is
/// written or read.
#[tokio::test]
async fn records_need_grants() {
    let storage = storage_with(Arc::new(SqliteRecordAdapter::in_memory("records"))).await;
    let admin = StorageContext::new("pol", "conformance").unwrap();
    let nobody = StorageContext::new("pol", "nobody").unwrap();
    let records = storage.records();
    records
        .upsert(
            &admin,
            "ns",
            "c",
            "a",
            json!({"x": 1}),
            UpsertOptions::default(),
        )
        .await
        .unwrap();
    let refused = [
        records
            .upsert(&nobody, "ns", "c", "b", json!({}), UpsertOptions::default())
            .await
            .map(|_| ()),
        records.get(&nobody, "ns", "c", "a").await.map(|_| ()),
        records.delete(&nobody, "ns", "c", "a", None).await,
        records
            .list(&nobody, "ns", "c", Default::default())
            .await
            .map(|_| ()),
    ];
    for r in refused {
        assert_eq!(r.unwrap_err().code(), ErrorCode::Unauthorized);
    }
    assert_eq!(
        records
            .get(&admin, "ns", "c", "b")
            .await
            .unwrap_err()
            .code(),
        ErrorCode::NotFound
    );
    assert_eq!(
        records
            .get(&admin, "ns", "c", "a")
            .await
            .unwrap()
            .version
            .version,
        1
    );
}

/// The embedded default keeps records in `<home>/records.db`, opened only on first use; typed
/// helpers round-trip.
#[tokio::test]
async fn embedded_records_open_on_first_use() {
    #[derive(serde::Serialize, serde::Deserialize, PartialEq, Debug)]
    struct User {
        name: String,
        age: u32,
    }
    let home = tempfile::tempdir().unwrap();
    let storage = create_storage_client(
        StorageConfig::embedded(home.path()),
        StorageDependencies::default(),
    )
    .await
    .unwrap();
    let db = home.path().join("records.db");
    storage
        .blobs()
        .put_bytes(
            &StorageContext::new("default", "local").unwrap(),
            "ns",
            "k",
            "v",
            Default::default(),
        )
        .await
        .unwrap();
    assert!(
        !db.exists(),
        "blob-only use never opens the record database"
    );
    let ctx = StorageContext::new("default", "local").unwrap();
    let ada = User {
        name: "ada".into(),
        age: 36,
    };
    let v = storage
        .records()
        .upsert_typed(&ctx, "ns", "users", "ada", &ada, UpsertOptions::default())
        .await
        .unwrap();
    assert!(db.exists());
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&db).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }
    let (got_v, got): (_, User) = storage
        .records()
        .get_typed(&ctx, "ns", "users", "ada")
        .await
        .unwrap();
    assert_eq!((got_v, got), (v, ada));
    let wrong: Result<(_, Vec<u8>), _> = storage
        .records()
        .get_typed(&ctx, "ns", "users", "ada")
        .await;
    assert_eq!(wrong.unwrap_err().code(), ErrorCode::InvalidInput);
    storage.close().await.unwrap();
}

/// Configuration: a PostgreSQL URL with a password in it is refused; a password variable that
/// is not set is a `Config` error; cloud blobs without a record database get `Config` errors
/// from records (and nothing in memory in its place).
#[tokio::test]
async fn record_configuration_is_checked() {
    let with_password = StorageConfig::from_toml_str(
        "[blob]\nbackend = \"memory\"\n[record]\nbackend = \"postgres\"\nurl = \"postgres://u:secret@127.0.0.1/db\"",
        NO_ENV,
    )
    .unwrap_err();
    assert_eq!(with_password.code(), ErrorCode::Config);
    assert!(
        with_password.to_string().contains("record.url"),
        "{with_password}"
    );
    assert!(
        !with_password.to_string().contains("secret"),
        "the password is not echoed"
    );
    let missing_env = StorageConfig::from_toml_str(
        "[blob]\nbackend = \"memory\"\n[record]\nbackend = \"postgres\"\nurl = \"postgres://u@127.0.0.1/db\"\npassword_env = \"SANCTUM_TEST_UNSET_PASSWORD_VAR\"",
        NO_ENV,
    )
    .unwrap();
    let err = create_storage_client(missing_env, StorageDependencies::default())
        .await
        .unwrap_err();
    assert_eq!(err.code(), ErrorCode::Config);
    assert!(
        err.to_string().contains("SANCTUM_TEST_UNSET_PASSWORD_VAR"),
        "{err}"
    );
    // A configuration with no record database (cloud blobs, no record.path): records say so.
    let storage = storage_with(Arc::new(
        sanctum_storage::adapters::record::UnconfiguredRecords,
    ))
    .await;
    let ctx = StorageContext::new("t", "conformance").unwrap();
    let err = storage
        .records()
        .upsert(&ctx, "ns", "c", "a", json!({}), UpsertOptions::default())
        .await
        .unwrap_err();
    assert_eq!(err.code(), ErrorCode::Config);
    assert!(err.to_string().contains("record.path"), "{err}");
}

/// PostgreSQL connections terminated (`pg_terminate_backend`) while writers and transactions
/// run: every call succeeds whole or fails as `TransientAdapter`; no transaction is committed
/// in part; afterwards calls succeed on fresh connections.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_connections_killed_mid_write() {
    use sqlx::Connection;
    // A database of its own: the killer ends every connection to it.
    let url = fresh_database("faults").await;
    let db = url.rsplit('/').next().unwrap().to_string();
    let storage = storage_with(postgres_at(url)).await;
    let ctx = StorageContext::new("pg-faults", "conformance").unwrap();
    // Warm the pool up, so there are connections to kill.
    storage
        .records()
        .upsert(
            &ctx,
            "ns",
            "pairs",
            "warm",
            json!({}),
            UpsertOptions::default(),
        )
        .await
        .unwrap();
    let killer = tokio::spawn(async move {
        let mut admin = sqlx::PgConnection::connect(&format!("{}/postgres", postgres_base()))
            .await
            .unwrap();
        let mut killed = 0i64;
        for _ in 0..25 {
            let n: i64 = sqlx::query_scalar(
                "SELECT count(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
                 WHERE datname = $1 AND pid <> pg_backend_pid()) AS t",
            )
            .bind(&db)
            .fetch_one(&mut admin)
            .await
            .unwrap();
            killed += n;
            tokio::time::sleep(std::time::Duration::from_millis(15)).await;
        }
        killed
    });
    let writers: Vec<_> = (0..8)
        .map(|w| {
            let storage = storage.clone();
            let ctx = ctx.clone();
            tokio::spawn(async move {
                let (mut ok, mut transient) = (0, 0);
                for i in 0..30 {
                    let value = json!({"w": w, "i": i});
                    let result = async {
                        let mut tx = storage.records().begin(&ctx, "ns").await?;
                        let id = format!("{w}-{i}");
                        tx.upsert("left", &id, value.clone(), UpsertOptions::default())
                            .await?;
                        tx.upsert("right", &id, value.clone(), UpsertOptions::default())
                            .await?;
                        tx.commit().await
                    }
                    .await;
                    match result {
                        Ok(()) => ok += 1,
                        Err(e) if e.code() == ErrorCode::TransientAdapter => transient += 1,
                        Err(e) => panic!("a killed connection surfaced as {:?}: {e}", e.code()),
                    }
                }
                (ok, transient)
            })
        })
        .collect();
    let mut transient_total = 0;
    for writer in writers {
        let (_, transient) = writer.await.unwrap();
        transient_total += transient;
    }
    let killed = killer.await.unwrap();
    assert!(killed > 0, "the test killed no connection");
    // Nothing partial: each pair is there twice or not at all.
    let records = storage.records();
    for w in 0..8 {
        for i in 0..30 {
            let id = format!("{w}-{i}");
            let left = records.get(&ctx, "ns", "left", &id).await;
            let right = records.get(&ctx, "ns", "right", &id).await;
            match (left, right) {
                (Ok(l), Ok(r)) => assert_eq!(l.document, r.document),
                (Err(l), Err(r)) => {
                    assert_eq!(
                        (l.code(), r.code()),
                        (ErrorCode::NotFound, ErrorCode::NotFound)
                    )
                }
                (l, r) => panic!("{id} committed in part: {l:?} / {r:?}"),
            }
        }
    }
    // Fresh connections work.
    records
        .upsert(
            &ctx,
            "ns",
            "pairs",
            "after",
            json!({"ok": true}),
            UpsertOptions::default(),
        )
        .await
        .unwrap();
    println!("killed {killed} connections; {transient_total} transactions failed as transient");
}

/// A statement the server cancels at `statement_timeout` (a row lock held elsewhere) is
/// `TransientAdapter`, changes nothing, and the next call succeeds once the lock is gone.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_statement_timeout_is_transient() {
    use sqlx::Connection;
    let url = postgres_url().await;
    let adapter: Arc<dyn RecordAdapter> = Arc::new(PostgresRecordAdapter::new(
        "records",
        PostgresSettings {
            url: url.clone(),
            password: None,
            pool_size: 4,
            statement_timeout: std::time::Duration::from_millis(300),
            auto_migrate: true,
        },
    ));
    let storage = storage_with(adapter).await;
    let ctx = StorageContext::new("pg-timeout", "conformance").unwrap();
    let records = storage.records();
    records
        .upsert(
            &ctx,
            "ns",
            "c",
            "held",
            json!({"v": 1}),
            UpsertOptions::default(),
        )
        .await
        .unwrap();
    let mut holder = sqlx::PgConnection::connect(&url).await.unwrap();
    sqlx::query("BEGIN").execute(&mut holder).await.unwrap();
    sqlx::query(
        "SELECT id FROM sanctum_records WHERE tenant = 'pg-timeout' AND id = 'held' FOR UPDATE",
    )
    .fetch_all(&mut holder)
    .await
    .unwrap();
    let err = records
        .upsert(
            &ctx,
            "ns",
            "c",
            "held",
            json!({"v": 2}),
            UpsertOptions::default(),
        )
        .await
        .unwrap_err();
    assert_eq!(err.code(), ErrorCode::TransientAdapter, "{err}");
    assert!(err.message().contains("statement timeout"), "{err}");
    sqlx::query("ROLLBACK").execute(&mut holder).await.unwrap();
    let now = records.get(&ctx, "ns", "c", "held").await.unwrap();
    assert_eq!((now.version.version, now.document), (1, json!({"v": 1})));
    records
        .upsert(
            &ctx,
            "ns",
            "c",
            "held",
            json!({"v": 2}),
            UpsertOptions::default(),
        )
        .await
        .unwrap();
}

/// Two transactions that lock two records in opposite orders deadlock: PostgreSQL aborts one
/// (40P01), which is `TransientAdapter` and rolled back whole; the other commits; the records
/// hold exactly the winner's writes.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_deadlock_is_transient_and_rolled_back() {
    let storage = storage_with(postgres().await).await;
    let ctx = StorageContext::new("pg-deadlock", "conformance").unwrap();
    let records = storage.records();
    for id in ["a", "b"] {
        records
            .upsert(
                &ctx,
                "ns",
                "c",
                id,
                json!({"by": "none"}),
                UpsertOptions::default(),
            )
            .await
            .unwrap();
    }
    let mut one = records.begin(&ctx, "ns").await.unwrap();
    let mut two = records.begin(&ctx, "ns").await.unwrap();
    let by = |who: &str| json!({"by": who});
    one.upsert("c", "a", by("one"), UpsertOptions::default())
        .await
        .unwrap();
    two.upsert("c", "b", by("two"), UpsertOptions::default())
        .await
        .unwrap();
    let (first, second) = tokio::join!(
        one.upsert("c", "b", by("one"), UpsertOptions::default()),
        two.upsert("c", "a", by("two"), UpsertOptions::default()),
    );
    let (winner, loser_err, name) = match (first, second) {
        (Ok(_), Err(e)) => (one, e, "one"),
        (Err(e), Ok(_)) => (two, e, "two"),
        other => panic!("expected exactly one deadlock victim: {other:?}"),
    };
    assert_eq!(loser_err.code(), ErrorCode::TransientAdapter, "{loser_err}");
    assert!(loser_err.message().contains("deadlock"), "{loser_err}");
    winner.commit().await.unwrap();
    for id in ["a", "b"] {
        let record = records.get(&ctx, "ns", "c", id).await.unwrap();
        assert_eq!(record.document, by(name), "{id}");
        assert_eq!(record.version.version, 2, "{id}: one write, the winner's");
    }
}

/// SQLite held by another process's writer past the busy timeout: `TransientAdapter`, nothing
/// written; once released, the write goes through.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_busy_past_the_timeout_is_transient() {
    use sqlx::Connection;
    let dir = tempfile::tempdir().unwrap();
    let storage = storage_with(sqlite_file(&dir)).await;
    let ctx = StorageContext::new("busy", "conformance").unwrap();
    let records = storage.records();
    records
        .upsert(
            &ctx,
            "ns",
            "c",
            "x",
            json!({"v": 1}),
            UpsertOptions::default(),
        )
        .await
        .unwrap();
    let path = dir.path().join("records.db");
    let mut other = sqlx::SqliteConnection::connect(&format!("sqlite://{}", path.display()))
        .await
        .unwrap();
    sqlx::query("BEGIN IMMEDIATE")
        .execute(&mut other)
        .await
        .unwrap();
    let err = records
        .upsert(
            &ctx,
            "ns",
            "c",
            "x",
            json!({"v": 2}),
            UpsertOptions::default(),
        )
        .await
        .unwrap_err();
    assert_eq!(err.code(), ErrorCode::TransientAdapter, "{err}");
    sqlx::query("ROLLBACK").execute(&mut other).await.unwrap();
    assert_eq!(
        records.get(&ctx, "ns", "c", "x").await.unwrap().document,
        json!({"v": 1})
    );
    records
        .upsert(
            &ctx,
            "ns",
            "c",
            "x",
            json!({"v": 2}),
            UpsertOptions::default(),
        )
        .await
        .unwrap();
}

/// With `auto_migrate = false` a fresh PostgreSQL database is not touched: the first record
/// call is a `Config` error that says to run `sanctum migrate`; after `migrate()` (what the
/// command runs) records work.
#[tokio::test]
async fn postgres_without_auto_migrate_needs_migrate() {
    let url = fresh_database("nomigrate").await;
    let adapter: Arc<dyn RecordAdapter> = Arc::new(PostgresRecordAdapter::new(
        "records",
        PostgresSettings {
            url,
            password: None,
            pool_size: 2,
            statement_timeout: std::time::Duration::from_secs(30),
            auto_migrate: false,
        },
    ));
    let storage = storage_with(adapter).await;
    let ctx = StorageContext::new("pg-migrate", "conformance").unwrap();
    let put = |storage: Storage| {
        let ctx = ctx.clone();
        async move {
            storage
                .records()
                .upsert(&ctx, "ns", "c", "a", json!({}), UpsertOptions::default())
                .await
        }
    };
    let err = put(storage.clone()).await.unwrap_err();
    assert_eq!(err.code(), ErrorCode::Config, "{err}");
    assert!(err.message().contains("sanctum migrate"), "{err}");
    storage.records().migrate().await.unwrap();
    assert_eq!(put(storage.clone()).await.unwrap().version, 1);
    // Migrating again changes nothing.
    storage.records().migrate().await.unwrap();
}

/// Audit: every access decision, write, delete, schema registration and quota change of the
/// record flow is an event; no event carries document content.
#[tokio::test]
async fn record_flows_are_audited_without_content() {
    use sanctum_storage::facade::record::CollectionSchema;
    use sanctum_storage::observability::audit::MemoryAuditSink;
    use sanctum_storage::quota::QuotaLimits;
    const SECRET: &str = "canary-audit-4d1f";
    let audit = Arc::new(MemoryAuditSink::default());
    let config = StorageConfig::from_toml_str(
        "[blob]\nbackend = \"memory\"\n[policy]\nsuperusers = [\"conformance\"]",
        NO_ENV,
    )
    .unwrap();
    let declared = CollectionSchema::new("audited")
        .version(1, json!({"type": "object"}))
        .unwrap();
    let deps = StorageDependencies {
        record_adapter: Some(Arc::new(SqliteRecordAdapter::in_memory("records"))),
        audit_sink: Some(audit.clone()),
        record_schemas: vec![declared],
        ..Default::default()
    };
    let storage = create_storage_client(config, deps).await.unwrap();
    let ctx = StorageContext::new("audit-t", "conformance").unwrap();
    let limits = QuotaLimits {
        max_records: Some(10),
        ..QuotaLimits::default()
    };
    storage.quotas().set(&ctx, "ns", limits).await.unwrap();
    let records = storage.records();
    records
        .upsert(
            &ctx,
            "ns",
            "audited",
            "r",
            json!({"secret": SECRET}),
            UpsertOptions::default(),
        )
        .await
        .unwrap();
    records.get(&ctx, "ns", "audited", "r").await.unwrap();
    records
        .delete(&ctx, "ns", "audited", "r", None)
        .await
        .unwrap();
    let events = audit.events();
    let ops: Vec<&str> = events.iter().map(|e| e.operation).collect();
    for wanted in [
        "quota.set",
        "record.schema.register",
        "record.upsert",
        "record.delete",
    ] {
        assert!(ops.contains(&wanted), "{wanted} missing from {ops:?}");
    }
    let quota = events
        .iter()
        .find(|e| e.operation == "quota.set" && e.decision.is_none())
        .unwrap();
    assert!(quota.detail.as_deref().unwrap().contains("max_records 10"));
    let schema = events
        .iter()
        .find(|e| e.operation == "record.schema.register")
        .unwrap();
    assert_eq!(schema.key.as_deref(), Some("audited"));
    let decided: Vec<&str> = events
        .iter()
        .filter(|e| e.decision.is_some())
        .map(|e| e.operation)
        .collect();
    for wanted in ["record.upsert", "record.get", "record.delete"] {
        assert!(
            decided.contains(&wanted),
            "no decision for {wanted}: {decided:?}"
        );
    }
    let text = serde_json::to_string(&events).unwrap();
    assert!(
        !text.contains(SECRET),
        "an audit event carries document content"
    );
    assert!(
        text.contains("audited/r"),
        "positive control: events name the record"
    );
}
