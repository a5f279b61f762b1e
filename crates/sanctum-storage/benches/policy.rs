//! What an access check costs: the built-in engine (target: at most 5 us per operation) and,
//! with `--features cedar`, the Cedar engine beside it, plus a 4 KiB in-memory get with and
//! without the grant lookup for scale.
//!
//! `cargo bench -p sanctum-storage --bench policy [--features cedar]`

use std::hint::black_box;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use sanctum_storage::StorageContext;
use sanctum_storage::adapters::BlobAdapter;
use sanctum_storage::adapters::object_store::ObjectStoreAdapter;
use sanctum_storage::crypto::{KeyManager, MemoryKeyProvider};
use sanctum_storage::facade::{BlobSettings, BlobStore, GetOptions, PutOptions};
use sanctum_storage::observability::audit::{AuditEvent, AuditSink};
use sanctum_storage::observability::clock::SystemClock;
use sanctum_storage::policy::{
    AccessSettings, Action, BuiltinEngine, Grant, Permission, PolicyEngine,
};

/// Counts events and keeps none, so a long run measures the check, not a growing vector.
#[derive(Debug, Default)]
struct CountingSink(AtomicU64);

impl AuditSink for CountingSink {
    fn record(&self, event: AuditEvent) {
        black_box(&event);
        self.0.fetch_add(1, Ordering::Relaxed);
    }
}

const ROUNDS: usize = 100_000;

fn store(adapter: Arc<dyn BlobAdapter>, engine: Arc<dyn PolicyEngine>) -> BlobStore {
    let clock = Arc::new(SystemClock);
    let keys = Arc::new(KeyManager::new(
        Arc::new(MemoryKeyProvider::new()),
        adapter.clone(),
        clock.clone(),
    ));
    BlobStore::new(
        adapter,
        keys,
        clock,
        Arc::new(CountingSink::default()),
        BlobSettings::default(),
    )
    .with_access(AccessSettings {
        engine,
        superusers: vec!["root".into()],
        cache_ttl: Duration::from_secs(3600),
    })
}

/// Median over 5 batches of the mean time of one check, in microseconds.
async fn per_check(store: &BlobStore, ctx: &StorageContext) -> f64 {
    let mut batches = Vec::new();
    for _ in 0..5 {
        let t = Instant::now();
        for _ in 0..ROUNDS / 5 {
            store
                .authorizer()
                .check(
                    ctx,
                    "blob.get",
                    Action::Read,
                    "docs",
                    Some("reports/q3.pdf"),
                )
                .await
                .expect("allowed");
        }
        batches.push(t.elapsed().as_secs_f64() * 1e6 / (ROUNDS / 5) as f64);
    }
    batches.sort_by(f64::total_cmp);
    batches[2]
}

/// Median over 5 batches of one 4 KiB get, in microseconds.
async fn per_get(store: &BlobStore, ctx: &StorageContext) -> f64 {
    let mut batches = Vec::new();
    for _ in 0..5 {
        let t = Instant::now();
        for _ in 0..2_000 {
            black_box(
                store
                    .get_bytes(ctx, "docs", "reports/q3.pdf", GetOptions::default())
                    .await
                    .unwrap(),
            );
        }
        batches.push(t.elapsed().as_secs_f64() * 1e6 / 2_000.0);
    }
    batches.sort_by(f64::total_cmp);
    batches[2]
}

async fn grant_many(store: &BlobStore, root: &StorageContext) {
    // A realistic policy: the reader's grant among others.
    let admin = sanctum_storage::facade::PolicyAdmin::new(store.clone());
    for i in 0..30 {
        admin
            .grant(
                root,
                Grant::new(
                    format!("svc-{i}"),
                    format!("ns-{i}"),
                    None,
                    Permission::Write,
                ),
            )
            .await
            .unwrap();
    }
    admin
        .grant(
            root,
            Grant::new("reader", "docs", Some("reports/"), Permission::Read),
        )
        .await
        .unwrap();
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let adapter: Arc<dyn BlobAdapter> = Arc::new(ObjectStoreAdapter::in_memory("policy"));
        let builtin = store(adapter.clone(), Arc::new(BuiltinEngine));
        let root = StorageContext::new("bench", "root").unwrap();
        let reader = StorageContext::new("bench", "reader").unwrap();
        grant_many(&builtin, &root).await;
        builtin
            .put_bytes(&root, "docs", "reports/q3.pdf", vec![7u8; 4096], PutOptions::default())
            .await
            .unwrap();
        // Warm the grant cache and the code paths.
        per_check(&builtin, &reader).await;
        let check = per_check(&builtin, &reader).await;
        let superuser = per_check(&builtin, &root).await;
        let get_granted = per_get(&builtin, &reader).await;
        let get_superuser = per_get(&builtin, &root).await;
        println!("# sanctum-storage policy benchmark (medians; 31 grants in the tenant)");
        println!("| engine | one allowed check (decision + audit event), us | target |");
        println!("|---|---|---|");
        println!("| built-in | {check:.2} | at most 5 us |");
        println!("| superuser (no grant lookup) | {superuser:.2} | - |");
        #[cfg(feature = "cedar")]
        {
            let policies = r#"
                permit(principal in Group::"readers", action == Action::"read", resource in Namespace::"docs");
                permit(principal, action == Action::"write", resource in Namespace::"scratch") when { context.key like "tmp/*" };
                forbid(principal == Actor::"mallory", action, resource);
            "#;
            let engine = sanctum_storage::policy::cedar::CedarEngine::from_policies(policies)
                .expect("policies parse");
            let cedar = store(adapter.clone(), Arc::new(engine));
            let mut grouped = StorageContext::new("bench", "ann").unwrap();
            grouped
                .claims
                .insert("groups".into(), "eng,readers".into());
            per_check(&cedar, &grouped).await;
            let by_policy = per_check(&cedar, &grouped).await;
            // No Cedar policy applies to `reader`: Cedar decides, then the grants do.
            let by_fallback = per_check(&cedar, &reader).await;
            println!("| cedar (a permit policy decides) | {by_policy:.2} | printed |");
            println!("| cedar (no policy applies; grants decide) | {by_fallback:.2} | printed |");
        }
        #[cfg(not(feature = "cedar"))]
        println!("| cedar | (build with --features cedar) | printed |");
        println!();
        println!(
            "4 KiB in-memory get: {get_granted:.2} us as a granted reader, {get_superuser:.2} us as a \
             superuser; the built-in check is {:.0}% of the granted get",
            check / get_granted * 100.0
        );
        println!(
            "built-in check {check:.2} us: {}",
            if check <= 5.0 { "within the 5 us target" } else { "OVER the 5 us target" }
        );
    });
}
