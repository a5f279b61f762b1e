//! What an operator of the S3 backend can see, read with a raw S3 client (boto3, from the venv
//! `.ci/emulators.sh` makes): no payload, content type or metadata value in the clear, key names
//! only hex-encoded (the documented decision, docs/encryption.md section 10), and no multipart
//! upload left behind by a failed or dropped put.

use std::collections::BTreeMap;
use std::process::Command;
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use sanctum_storage::adapters::cloud;
use sanctum_storage::adapters::object_store::ObjectStoreAdapter;
use sanctum_storage::adapters::{BlobAdapter, BlobPath, ByteStream, PutMode};
use sanctum_storage::config::{BlobConfig, KeyProviderKind};
use sanctum_storage::conformance::{emulators, pattern};
use sanctum_storage::facade::{GetOptions, PutOptions, ReencryptOptions};
use sanctum_storage::{
    Error, ErrorCode, StorageConfig, StorageContext, StorageDependencies, create_storage_client,
};
use serde_json::Value;

const BODY_CANARY: &str = "CANARY-S3-BODY-4d1e";
const META_CANARY: &str = "CANARY-S3-META-9a07";
const TYPE_CANARY: &str = "text/canary-s3-beef";
const KEY_NAME: &str = "Quarterly Report KEYNAME-77";

fn canary_body(len: usize) -> Vec<u8> {
    BODY_CANARY.bytes().cycle().take(len).collect()
}

/// Runs the boto3 scan of `prefix`, looking for `canaries`.
fn scan(prefix: &str, canaries: &[&str]) -> Value {
    let python = std::env::var("SANCTUM_TEST_S3_PYTHON")
        .expect("SANCTUM_TEST_S3_PYTHON names the venv python with boto3 (.ci/emulators.sh)");
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/support/s3_scan.py");
    let out = Command::new(python)
        .arg(script)
        .arg(prefix)
        .args(canaries)
        .output()
        .expect("run the boto3 scan");
    assert!(
        out.status.success(),
        "scan failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("scan prints JSON")
}

fn hits(scan: &Value) -> Vec<(String, String)> {
    scan["hits"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| {
            (
                h["key"].as_str().unwrap().to_string(),
                h["where"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn storage_config(blob: BlobConfig) -> StorageConfig {
    let mut config = StorageConfig {
        blob,
        ..Default::default()
    };
    config.keys.provider = Some(KeyProviderKind::Memory);
    config.policy.superusers = vec!["ops".into()];
    config
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bucket_holds_no_plaintext_and_key_names_only_in_hex() {
    let Some(blob) = emulators::s3("canary") else {
        return;
    };
    let prefix = blob.prefix.clone().unwrap();
    let storage =
        create_storage_client(storage_config(blob.clone()), StorageDependencies::default())
            .await
            .unwrap();
    let ctx = StorageContext::new("acme", "ops").unwrap();
    let blobs = storage.blobs();
    let mut metadata = BTreeMap::new();
    metadata.insert("owner".to_string(), META_CANARY.to_string());
    let opts = PutOptions {
        content_type: Some(TYPE_CANARY.to_string()),
        metadata,
        ..Default::default()
    };
    // Small (inlined), medium, and a multipart body of three parts.
    let small = blobs
        .put_bytes(&ctx, "ns", KEY_NAME, canary_body(1000), opts.clone())
        .await
        .unwrap();
    blobs
        .put_bytes(&ctx, "ns", "medium", canary_body(300_000), opts.clone())
        .await
        .unwrap();
    let big = 20 * 1024 * 1024;
    let stream = futures::stream::iter(
        (0..big / 65536).map(|_| Ok::<_, std::io::Error>(Bytes::from(canary_body(65536)))),
    );
    blobs
        .put(&ctx, "ns", "big", stream, opts.clone())
        .await
        .unwrap();
    blobs
        .put_bytes(&ctx, "ns", KEY_NAME, canary_body(2000), opts.clone())
        .await
        .unwrap();
    blobs.delete(&ctx, "ns", KEY_NAME).await.unwrap();
    blobs
        .restore(&ctx, "ns", KEY_NAME, &small.version_id)
        .await
        .unwrap();
    storage.keys().rotate_namespace(&ctx, "ns").await.unwrap();
    storage
        .keys()
        .reencrypt_namespace(&ctx, "ns", ReencryptOptions::default())
        .await
        .unwrap();
    let (v, body) = blobs
        .get_bytes(&ctx, "ns", KEY_NAME, GetOptions::default())
        .await
        .unwrap();
    assert_eq!(body, canary_body(1000));
    assert_eq!(v.metadata["owner"], META_CANARY);
    let (_, big_back) = blobs
        .get_bytes(&ctx, "ns", "big", GetOptions::default())
        .await
        .unwrap();
    assert_eq!(big_back.len(), big);

    let canaries = [BODY_CANARY, META_CANARY, TYPE_CANARY, "owner", KEY_NAME];
    let found = scan(&prefix, &canaries);
    let keys: Vec<&str> = found["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k.as_str().unwrap())
        .collect();
    assert!(keys.len() >= 6, "the facade wrote to the bucket: {keys:?}");
    assert!(found["bytes"].as_u64().unwrap() > big as u64);
    assert_eq!(hits(&found), Vec::new(), "plaintext visible in the bucket");
    // The decision: key names are visible to the operator, hex-encoded; tenant and namespace ids
    // appear as they are (data under t/, wrapped keys under k/).
    let hex: String = KEY_NAME.bytes().map(|b| format!("{b:02x}")).collect();
    assert!(
        keys.iter().any(|k| k.contains(&hex)),
        "key names are hex in paths"
    );
    assert!(
        keys.iter()
            .all(|k| k.starts_with(&format!("{prefix}/t/acme/"))
                || k.starts_with(&format!("{prefix}/k/acme/"))),
        "{keys:?}"
    );
    assert_eq!(found["pending_uploads"], 0);

    // Control: the scan does find canaries that are there in the clear.
    let raw = cloud::adapter_from_config(&blob).unwrap();
    let mut attributes = object_store::Attributes::new();
    attributes.insert(
        object_store::Attribute::Metadata("owner".into()),
        META_CANARY.into(),
    );
    object_store::ObjectStore::put_opts(
        raw.store().as_ref(),
        &object_store::path::Path::from("control"),
        Bytes::from(canary_body(100)).into(),
        object_store::PutOptions {
            attributes,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let control = hits(&scan(&prefix, &canaries));
    let control_key = format!("{prefix}/control");
    assert!(control.contains(&(control_key.clone(), "body".into())));
    assert!(control.contains(&(control_key, "metadata".into())));
}

/// A body stream of `parts` parts of the adapter's part size, then `end`.
fn parts_then(adapter: &ObjectStoreAdapter, parts: usize, end: ByteStream) -> ByteStream {
    let part = pattern(adapter.part_size(), 9);
    futures::stream::iter((0..parts).map(move |_| Ok(part.clone())))
        .chain(end)
        .boxed()
}

async fn pending_uploads_become(prefix: &str, want: u64) {
    for _ in 0..100 {
        if scan(prefix, &[])["pending_uploads"].as_u64() == Some(want) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("pending multipart uploads under {prefix} never became {want}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_and_dropped_multipart_puts_leave_nothing() {
    let Some(mut blob) = emulators::s3("multipart") else {
        return;
    };
    blob.part_size = 5 * 1024 * 1024;
    let prefix = blob.prefix.clone().unwrap();
    let adapter = cloud::adapter_from_config(&blob).unwrap();
    let path = BlobPath::new("body").unwrap();

    // The body fails after two parts: the put fails and the upload is aborted.
    let failing = futures::stream::once(async {
        Err(Error::new(ErrorCode::TransientAdapter, "source failed"))
    })
    .boxed();
    let err = adapter
        .put(&path, parts_then(&adapter, 2, failing), PutMode::Overwrite)
        .await
        .expect_err("the body failed");
    assert_eq!(err.code(), ErrorCode::TransientAdapter);
    pending_uploads_become(&prefix, 0).await;
    assert_eq!(
        adapter.head(&path).await.unwrap_err().code(),
        ErrorCode::NotFound
    );

    // The caller drops the put while the body stalls after two parts: aborted in the background.
    let put = adapter.put(
        &path,
        parts_then(&adapter, 2, futures::stream::pending().boxed()),
        PutMode::Overwrite,
    );
    tokio::select! {
        _ = put => panic!("a stalled body cannot finish"),
        _ = pending_uploads_become(&prefix, 1) => {}
    }
    pending_uploads_become(&prefix, 0).await;

    // Dropped at any moment, even while the upload is being created: nothing stays behind.
    for delay_ms in [0, 1, 5, 20, 80] {
        let put = adapter.put(
            &path,
            parts_then(&adapter, 2, futures::stream::pending().boxed()),
            PutMode::Overwrite,
        );
        let stalled = tokio::time::timeout(Duration::from_millis(delay_ms), put).await;
        assert!(stalled.is_err(), "a stalled body cannot finish");
    }
    pending_uploads_become(&prefix, 0).await;
    assert_eq!(
        adapter.head(&path).await.unwrap_err().code(),
        ErrorCode::NotFound
    );
    assert_eq!(scan(&prefix, &[])["keys"].as_array().unwrap().len(), 0);
}
