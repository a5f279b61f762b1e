//! The golden contract suite against the cloud adapters: moto's S3 server and Azurite, which
//! `.ci/emulators.sh` starts (`.ci/run` requires both), and a real GCS bucket when one is
//! configured. One test per check and backend, each under its own bucket prefix.

use std::sync::Arc;

use sanctum_storage::adapters::BlobAdapter;
use sanctum_storage::adapters::cloud;
use sanctum_storage::config::BlobConfig;
use sanctum_storage::conformance::{SuiteOptions, emulators};

struct Backend {
    adapter: Arc<dyn BlobAdapter>,
    opts: SuiteOptions,
}

async fn build(config: Option<BlobConfig>) -> Option<Backend> {
    let config = config?;
    let adapter: Arc<dyn BlobAdapter> = Arc::new(cloud::adapter_from_config(&config).unwrap());
    adapter.init().await.unwrap();
    adapter.health_check().await.unwrap();
    Some(Backend {
        opts: SuiteOptions::new(cloud::CLOUD_CAPABILITIES),
        adapter,
    })
}

async fn s3() -> Option<Backend> {
    build(emulators::s3("contract")).await
}

async fn azure() -> Option<Backend> {
    build(emulators::azure("contract").await).await
}

async fn gcs() -> Option<Backend> {
    build(emulators::gcs("contract")).await
}

macro_rules! checks {
    ($backend:ident, $module:ident: $($check:ident),* $(,)?) => {
        mod $module {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $check() {
                    let Some(b) = crate::$backend().await else { return };
                    sanctum_storage::conformance::$module::$check(&b.adapter, &b.opts).await;
                }
            )*
        }
    };
}

macro_rules! all_checks {
    ($backend:ident) => {
        mod $backend {
            checks!($backend, raw:
                lifecycle_and_capabilities, put_get_head_delete, conditional_writes, ranged_reads,
                list_pages, failed_body_stores_nothing, cas_race, put_after_waits_for_ready,
            );
            checks!($backend, facade:
                write_read_checksum, delete_then_not_found, update_then_read, conditional_writes,
                racing_writers, unconditional_writers_lose_nothing, ranged_reads,
                ranged_reads_fetch_only_covering_chunks, list_pagination,
                versions_restore_purge, history_spills_into_pages, names_at_limits,
                bad_input_changes_nothing, dropped_writer_leaves_previous_version,
                sweeper_removes_only_orphans, tenants_are_isolated, large_object_streams,
                backend_calls_per_operation,
            );
        }
    };
}

all_checks!(s3);
all_checks!(azure);
all_checks!(gcs);
