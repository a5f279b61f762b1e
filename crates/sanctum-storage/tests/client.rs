//! `create_storage_client`: development defaults, production refusals, custom adapters.

use std::sync::Arc;

use sanctum_storage::adapters::object_store::ObjectStoreAdapter;
use sanctum_storage::config::ConfigReport;
use sanctum_storage::facade::{GetOptions, PutOptions};
use sanctum_storage::observability::audit::MemoryAuditSink;
use sanctum_storage::{
    ErrorCode, StorageConfig, StorageContext, StorageDependencies, create_storage_client,
};

const NO_ENV: [(&str, &str); 0] = [];

#[tokio::test]
async fn embedded_default_stores_in_the_home_folder() {
    let home = tempfile::tempdir().unwrap();
    let storage = create_storage_client(
        StorageConfig::embedded(home.path()),
        StorageDependencies::default(),
    )
    .await
    .unwrap();
    let ctx = StorageContext::new("default", "local").unwrap();
    storage
        .blobs()
        .put_bytes(&ctx, "docs", "a.txt", "hello", PutOptions::default())
        .await
        .unwrap();
    assert!(home.path().join("blobs/objects/t/default/n/docs").is_dir());
    let health = storage.health().await;
    assert!(health.blob_ok);
    assert_eq!(health.blob_adapter_kind, "local");
    storage.close().await.unwrap();
    // A second client over the same folder sees the data (it persists).
    let again = create_storage_client(
        StorageConfig::embedded(home.path()),
        StorageDependencies::default(),
    )
    .await
    .unwrap();
    let (_, body) = again
        .blobs()
        .get_bytes(&ctx, "docs", "a.txt", GetOptions::default())
        .await
        .unwrap();
    assert_eq!(&body[..], b"hello");
}

#[tokio::test]
async fn production_refuses_development_defaults_naming_each() {
    let config = StorageConfig::from_toml_str(
        "environment = \"development\"\n[blob]\nbackend = \"memory\"",
        [("SANCTUM_ENVIRONMENT", "production")],
    );
    let err = config.unwrap_err();
    assert_eq!(err.code(), ErrorCode::Config);
    assert!(err.to_string().contains("blob.backend"), "{err}");

    let home = tempfile::tempdir().unwrap();
    let mut config = StorageConfig::embedded(home.path());
    config.environment = sanctum_storage::config::Environment::Production;
    let err = create_storage_client(config.clone(), StorageDependencies::default())
        .await
        .unwrap_err();
    assert_eq!(err.code(), ErrorCode::Config);
    let report = std::error::Error::source(&err)
        .unwrap()
        .downcast_ref::<ConfigReport>()
        .unwrap();
    assert_eq!(report.problems.len(), 1);
    assert_eq!(report.problems[0].path, "dependencies.audit_sink");
    let deps = StorageDependencies {
        audit_sink: Some(Arc::new(MemoryAuditSink::default())),
        ..Default::default()
    };
    create_storage_client(config, deps)
        .await
        .expect("production with every dependency supplied");
}

#[tokio::test]
async fn custom_adapters_plug_in_through_dependencies() {
    let adapter = Arc::new(ObjectStoreAdapter::in_memory("custom"));
    let deps = StorageDependencies {
        blob_adapter: Some(adapter.clone()),
        ..Default::default()
    };
    let config = StorageConfig::from_toml_str("[blob]\nroot = \"/unused\"", NO_ENV).unwrap();
    let storage = create_storage_client(config, deps).await.unwrap();
    let ctx = StorageContext::new("t1", "svc").unwrap();
    storage
        .blobs()
        .put_bytes(&ctx, "ns", "k", "v", PutOptions::default())
        .await
        .unwrap();
    assert_eq!(storage.health().await.blob_adapter_name, "custom");
    assert!(!std::path::Path::new("/unused").exists());
}

#[tokio::test]
async fn cache_only_reads_are_refused_until_the_cache_exists() {
    let config = StorageConfig::from_toml_str("[blob]\nbackend = \"memory\"", NO_ENV).unwrap();
    let storage = create_storage_client(config, StorageDependencies::default())
        .await
        .unwrap();
    let mut ctx = StorageContext::new("t1", "svc").unwrap();
    storage
        .blobs()
        .put_bytes(&ctx, "ns", "k", "v", PutOptions::default())
        .await
        .unwrap();
    ctx.cache_policy.consistency = sanctum_storage::types::Consistency::CacheOnly;
    let err = storage
        .blobs()
        .get_bytes(&ctx, "ns", "k", GetOptions::default())
        .await
        .unwrap_err();
    assert_eq!(err.code(), ErrorCode::NotSupported);
    assert_eq!(
        storage
            .blobs()
            .head(&ctx, "ns", "k")
            .await
            .unwrap_err()
            .code(),
        ErrorCode::NotSupported
    );
    ctx.cache_policy.bypass_cache = true;
    let (_, body) = storage
        .blobs()
        .get_bytes(&ctx, "ns", "k", GetOptions::default())
        .await
        .unwrap();
    assert_eq!(&body[..], b"v");
}

#[tokio::test]
async fn corrupted_bodies_end_the_stream_with_a_consistency_error() {
    let home = tempfile::tempdir().unwrap();
    let storage = create_storage_client(
        StorageConfig::embedded(home.path()),
        StorageDependencies::default(),
    )
    .await
    .unwrap();
    let ctx = StorageContext::new("t1", "svc").unwrap();
    let body = vec![7u8; 200_000];
    let v = storage
        .blobs()
        .put_bytes(&ctx, "ns", "k", body.clone(), PutOptions::default())
        .await
        .unwrap();
    // Flip one byte of the stored body on disk.
    let mut stack = vec![home.path().join("blobs/objects")];
    let mut body_file = None;
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(dir).unwrap().flatten() {
            if e.file_type().unwrap().is_dir() {
                stack.push(e.path());
            } else if e
                .path()
                .to_string_lossy()
                .contains(v.body_id.as_deref().unwrap())
            {
                body_file = Some(e.path());
            }
        }
    }
    let path = body_file.expect("body file");
    let mut bytes = std::fs::read(&path).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    std::fs::write(&path, bytes).unwrap();
    let err = storage
        .blobs()
        .get_bytes(&ctx, "ns", "k", GetOptions::default())
        .await
        .unwrap_err();
    assert_eq!(err.code(), ErrorCode::Consistency);
    assert_eq!(err.operation(), Some("blob.get"));
    // A ranged read is not checked; skip_checksum opts out.
    let skip = GetOptions {
        skip_checksum: true,
        ..Default::default()
    };
    let (_, got) = storage
        .blobs()
        .get_bytes(&ctx, "ns", "k", skip)
        .await
        .unwrap();
    assert_eq!(got.len(), body.len());
}
