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

sanctum_storage::contract_tests!(s3);
sanctum_storage::contract_tests!(azure);
sanctum_storage::contract_tests!(gcs);
