//! The golden contract suite against the in-memory and local-filesystem adapters.
//! One test per check and adapter, so they run in parallel and fail by name.

use std::sync::Arc;

use sanctum_storage::adapters::BlobAdapter;
use sanctum_storage::adapters::local::{Durability, LocalAdapter};
use sanctum_storage::adapters::object_store::ObjectStoreAdapter;
use sanctum_storage::conformance::{SuiteOptions, facade, raw};

struct Backend {
    adapter: Arc<dyn BlobAdapter>,
    opts: SuiteOptions,
    _dir: Option<tempfile::TempDir>,
}

async fn memory() -> Option<Backend> {
    let adapter: Arc<dyn BlobAdapter> = Arc::new(ObjectStoreAdapter::in_memory("memory-test"));
    adapter.init().await.unwrap();
    Some(Backend {
        opts: SuiteOptions::new(adapter.capabilities()),
        adapter,
        _dir: None,
    })
}

async fn local() -> Option<Backend> {
    let dir = tempfile::tempdir().unwrap();
    let adapter: Arc<dyn BlobAdapter> = Arc::new(LocalAdapter::new(
        "local-test",
        dir.path(),
        Durability::Fsync,
    ));
    adapter.init().await.unwrap();
    let mut opts = SuiteOptions::new(adapter.capabilities());
    assert!(opts.capabilities.durable && opts.capabilities.atomic_conditional_delete);
    opts.capabilities = adapter.capabilities();
    Some(Backend {
        adapter,
        opts,
        _dir: Some(dir),
    })
}

sanctum_storage::contract_tests!(memory);
sanctum_storage::contract_tests!(local);

/// Keeps the imports honest: `run_all` drives the same checks in one go.
#[allow(dead_code)]
async fn run_all_compiles(b: Backend) {
    let _ = (raw::run_all, facade::run_all);
    sanctum_storage::conformance::run_all(b.adapter, &b.opts).await;
}

/// Failed, refused and dropped local writes leave no temp files behind.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_failed_writes_leave_no_temp_files() {
    let b = local().await.unwrap();
    let opts = &b.opts;
    raw::failed_body_stores_nothing(&b.adapter, opts).await;
    raw::put_after_waits_for_ready(&b.adapter, opts).await;
    raw::conditional_writes(&b.adapter, opts).await;
    facade::dropped_writer_leaves_previous_version(&b.adapter, opts).await;
    facade::racing_writers(&b.adapter, opts).await;
    // Give blocking writer threads of aborted writes a moment to notice and clean up.
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let mut stack = vec![b._dir.as_ref().unwrap().path().to_path_buf()];
    let mut temps = Vec::new();
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(dir).unwrap().flatten() {
            if entry.file_type().unwrap().is_dir() {
                stack.push(entry.path());
            } else if entry.file_name().to_string_lossy().ends_with(".tmp") {
                temps.push(entry.path());
            }
        }
    }
    assert!(temps.is_empty(), "temp files left behind: {temps:?}");
}
