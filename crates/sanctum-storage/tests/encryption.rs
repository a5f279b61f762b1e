//! Envelope encryption through the facade: adapters never see plaintext (canary scans of what
//! they were given and of the local folder), stored data moved between objects or tenants is
//! refused, and key rotation, re-encryption and crypto-shredding work with every provider
//! (memory, the local keyring file, and a real OpenBao Transit server when one is configured).

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use futures::StreamExt;
use sanctum_storage::adapters::local::{Durability, LocalAdapter};
use sanctum_storage::adapters::object_store::ObjectStoreAdapter;
use sanctum_storage::adapters::{BlobAdapter, BlobPath, PutMode, collect_bytes, once_stream};
use sanctum_storage::conformance::pattern;
use sanctum_storage::conformance::recording::{RecordingAdapter, contains};
use sanctum_storage::crypto::{KeyProvider, LocalKeyring, MemoryKeyProvider, OpenBaoTransit};
use sanctum_storage::facade::{GetOptions, ListOptions, PutOptions, ReencryptOptions};
use sanctum_storage::{
    ErrorCode, Storage, StorageConfig, StorageContext, StorageDependencies, create_storage_client,
};

const BODY_CANARY: &str = "CANARY-BODY-7f3a9c";
const META_CANARY: &str = "CANARY-META-51be02";
const TYPE_CANARY: &str = "text/canary-c0ffee";

async fn storage_over(adapter: Arc<dyn BlobAdapter>, provider: Arc<dyn KeyProvider>) -> Storage {
    let config = StorageConfig::from_toml_str(
        "[blob]\nbackend = \"memory\"\n[policy]\nsuperusers = [\"local\"]",
        std::iter::empty::<(&str, &str)>(),
    )
    .unwrap();
    let deps = StorageDependencies {
        blob_adapter: Some(adapter),
        key_provider: Some(provider),
        ..Default::default()
    };
    create_storage_client(config, deps).await.unwrap()
}

fn ctx(tenant: &str) -> StorageContext {
    StorageContext::new(tenant, "local").unwrap()
}

fn unique(tag: &str) -> String {
    format!(
        "{tag}-{}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    )
}

fn canary_body(len: usize) -> Vec<u8> {
    BODY_CANARY
        .as_bytes()
        .iter()
        .copied()
        .cycle()
        .take(len)
        .collect()
}

fn canary_put() -> PutOptions {
    let mut metadata = BTreeMap::new();
    metadata.insert("owner".to_string(), META_CANARY.to_string());
    PutOptions {
        content_type: Some(TYPE_CANARY.to_string()),
        metadata,
        ..Default::default()
    }
}

/// Runs every facade operation that writes, with canaries in bodies, metadata and content type.
async fn exercise(storage: &Storage, ctx: &StorageContext) {
    let blobs = storage.blobs();
    let small = blobs
        .put_bytes(ctx, "ns", "small", canary_body(1000), canary_put())
        .await
        .unwrap();
    blobs
        .put_bytes(ctx, "ns", "large", canary_body(300_000), canary_put())
        .await
        .unwrap();
    let stream = futures::stream::iter((0..8).map(|_| Ok(bytes::Bytes::from(canary_body(70_000)))));
    blobs
        .put(ctx, "ns", "streamed", stream, canary_put())
        .await
        .unwrap();
    blobs
        .put_bytes(ctx, "ns", "small", canary_body(2000), canary_put())
        .await
        .unwrap();
    blobs.delete(ctx, "ns", "small").await.unwrap();
    blobs
        .restore(ctx, "ns", "small", &small.version_id)
        .await
        .unwrap();
    storage.keys().rotate_namespace(ctx, "ns").await.unwrap();
    storage
        .keys()
        .reencrypt_namespace(ctx, "ns", ReencryptOptions::default())
        .await
        .unwrap();
    storage.keys().rotate_kek(ctx).await.unwrap();
    // Reads give the plaintext back.
    let (v, body) = blobs
        .get_bytes(ctx, "ns", "small", GetOptions::default())
        .await
        .unwrap();
    assert_eq!(body, canary_body(1000));
    assert_eq!(v.metadata["owner"], META_CANARY);
    assert_eq!(v.content_type.as_deref(), Some(TYPE_CANARY));
    let listed = blobs.list(ctx, "ns", ListOptions::default()).await.unwrap();
    assert_eq!(listed.objects.len(), 3);
    assert!(
        listed
            .objects
            .iter()
            .all(|o| o.version.metadata["owner"] == META_CANARY)
    );
    let (_, large) = blobs
        .get_bytes(ctx, "ns", "streamed", GetOptions::default())
        .await
        .unwrap();
    assert_eq!(large.len(), 8 * 70_000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn adapters_never_see_plaintext() {
    let recording = Arc::new(RecordingAdapter::new(Arc::new(
        ObjectStoreAdapter::in_memory("rec"),
    )));
    let storage = storage_over(recording.clone(), Arc::new(MemoryKeyProvider::new())).await;
    exercise(&storage, &ctx("canary")).await;
    assert!(recording.puts().len() > 10, "the adapter was written to");
    for canary in [BODY_CANARY, META_CANARY, TYPE_CANARY, "owner"] {
        assert!(
            !recording.saw(canary.as_bytes()),
            "the adapter saw {canary:?} in the clear"
        );
    }
    // Not even in hex or base64-looking form: the manifest holds only ciphertext for these.
    let hex: String = META_CANARY.bytes().map(|b| format!("{b:02x}")).collect();
    assert!(!recording.saw(hex.as_bytes()));
}

fn scan_folder(root: &Path, needles: &[&str]) -> Vec<String> {
    let mut found = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(dir).unwrap().flatten() {
            let path = entry.path();
            if entry.file_type().unwrap().is_dir() {
                stack.push(path);
                continue;
            }
            let bytes = std::fs::read(&path).unwrap();
            for needle in needles {
                if contains(&bytes, needle.as_bytes()) {
                    found.push(format!("{needle} in {}", path.display()));
                }
            }
        }
    }
    found
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_local_folder_holds_no_plaintext() {
    let home = tempfile::tempdir().unwrap();
    let storage = create_storage_client(
        StorageConfig::embedded(home.path()),
        StorageDependencies::default(),
    )
    .await
    .unwrap();
    exercise(&storage, &ctx("canary")).await;
    let found = scan_folder(home.path(), &[BODY_CANARY, META_CANARY, TYPE_CANARY]);
    assert!(found.is_empty(), "plaintext on disk: {found:?}");
    assert!(
        home.path().join("keyring.json").exists(),
        "the development keyring lives in the home folder"
    );
}

/// A raw copy of one object onto another path.
async fn copy(adapter: &Arc<dyn BlobAdapter>, from: &str, to: &str) {
    let from = BlobPath::new(from).unwrap();
    let bytes = collect_bytes(adapter.get(&from, None).await.unwrap().body)
        .await
        .unwrap();
    adapter
        .put(
            &BlobPath::new(to).unwrap(),
            once_stream(bytes),
            PutMode::Overwrite,
        )
        .await
        .unwrap();
}

async fn raw_paths(adapter: &Arc<dyn BlobAdapter>, prefix: &str) -> Vec<String> {
    let page = adapter.list(prefix, None, 10_000).await.unwrap();
    page.entries
        .into_iter()
        .map(|e| e.path.as_str().to_string())
        .collect()
}

async fn expect_encryption_error(storage: &Storage, ctx: &StorageContext, ns: &str, key: &str) {
    match storage
        .blobs()
        .get(ctx, ns, key, GetOptions::default())
        .await
    {
        Err(e) => assert_eq!(e.code(), ErrorCode::Encryption, "{e}"),
        Ok(mut read) => {
            let mut out = Vec::new();
            loop {
                match read.body.next().await {
                    Some(Ok(chunk)) => out.extend_from_slice(&chunk),
                    Some(Err(e)) => {
                        assert_eq!(e.code(), ErrorCode::Encryption, "{e}");
                        break;
                    }
                    None => panic!("moved data decrypted cleanly"),
                }
            }
            assert!(!contains(&out, b"SECRET"), "no plaintext released");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn data_moved_between_objects_or_tenants_is_refused() {
    let adapter: Arc<dyn BlobAdapter> = Arc::new(ObjectStoreAdapter::in_memory("moves"));
    let storage = storage_over(adapter.clone(), Arc::new(MemoryKeyProvider::new())).await;
    let (a, b) = (ctx("tenant-a"), ctx("tenant-b"));
    let secret = |n: usize| -> Vec<u8> { b"SECRET-".iter().copied().cycle().take(n).collect() };
    for c in [&a, &b] {
        for (key, size) in [
            ("x", 200_000usize),
            ("y", 200_000),
            ("small-x", 100),
            ("small-y", 100),
        ] {
            storage
                .blobs()
                .put_bytes(c, "ns", key, secret(size), PutOptions::default())
                .await
                .unwrap();
        }
    }
    let bodies = |t: &str, key: &str| {
        let enc: String = key.bytes().map(|b| format!("{b:02x}")).collect();
        format!("t/{t}/n/ns/b/{enc}.k/")
    };
    let head = |t: &str, key: &str| {
        let enc: String = key.bytes().map(|b| format!("{b:02x}")).collect();
        format!("t/{t}/n/ns/h/{enc}.k")
    };
    // 1. Body of x copied over body of y (same tenant, same namespace key).
    let bx = raw_paths(&adapter, &bodies("tenant-a", "x"))
        .await
        .remove(0);
    let by = raw_paths(&adapter, &bodies("tenant-a", "y"))
        .await
        .remove(0);
    copy(&adapter, &bx, &by).await;
    expect_encryption_error(&storage, &a, "ns", "y").await;
    // 2. A body of tenant a copied over tenant b's body of the same key name.
    let bbx = raw_paths(&adapter, &bodies("tenant-b", "x"))
        .await
        .remove(0);
    copy(&adapter, &bx, &bbx).await;
    expect_encryption_error(&storage, &b, "ns", "x").await;
    // 3. Tenant a's whole head (with its inline body) copied over tenant b's: it names a's keys.
    copy(
        &adapter,
        &head("tenant-a", "small-x"),
        &head("tenant-b", "small-y"),
    )
    .await;
    expect_encryption_error(&storage, &b, "ns", "small-y").await;
    let err = storage.blobs().head(&b, "ns", "small-y").await.unwrap_err();
    assert_eq!(err.code(), ErrorCode::Encryption, "{err}");
    // 4. Within one tenant: head of small-x over small-y (other key in the context).
    copy(
        &adapter,
        &head("tenant-a", "small-x"),
        &head("tenant-a", "small-y"),
    )
    .await;
    expect_encryption_error(&storage, &a, "ns", "small-y").await;
    // 5. Tampered key store: another tenant's namespace key record.
    copy(&adapter, "k/tenant-a/n/ns", "k/tenant-b/n/ns").await;
    storage.blobs().keys().forget_tenant("tenant-b");
    expect_encryption_error(&storage, &b, "ns", "y").await;
    // Untouched objects still read.
    let (_, x) = storage
        .blobs()
        .get_bytes(&a, "ns", "x", GetOptions::default())
        .await
        .unwrap();
    assert_eq!(x, secret(200_000));
}

/// Rotation, re-encryption and shredding against one provider.
async fn key_lifecycle(provider: Arc<dyn KeyProvider>, tenant: &str) {
    let adapter: Arc<dyn BlobAdapter> = Arc::new(ObjectStoreAdapter::in_memory("lifecycle"));
    let storage = storage_over(adapter.clone(), provider).await;
    let c = ctx(tenant);
    let blobs = storage.blobs();
    let big = pattern(100_000, 3);
    let v1 = blobs
        .put_bytes(&c, "docs", "a", big.clone(), PutOptions::default())
        .await
        .unwrap();
    blobs
        .put_bytes(&c, "docs", "b", "small one", PutOptions::default())
        .await
        .unwrap();
    let prefix = format!("t/{tenant}/n/docs/b/");
    let before = raw_paths(&adapter, &prefix).await;
    let body_before = collect_bytes(
        adapter
            .get(&BlobPath::new(before[0].clone()).unwrap(), None)
            .await
            .unwrap()
            .body,
    )
    .await
    .unwrap();

    // KEK rotation: data readable, no body rewritten.
    let rotation = storage.keys().rotate_kek(&c).await.unwrap();
    assert!(rotation.kek_version >= 2);
    blobs.keys().forget_tenant(tenant);
    assert_eq!(
        blobs
            .get_bytes(&c, "docs", "a", GetOptions::default())
            .await
            .unwrap()
            .1,
        big
    );
    assert_eq!(raw_paths(&adapter, &prefix).await, before);
    let body_after = collect_bytes(
        adapter
            .get(&BlobPath::new(before[0].clone()).unwrap(), None)
            .await
            .unwrap()
            .body,
    )
    .await
    .unwrap();
    assert_eq!(body_before, body_after, "KEK rotation rewrites no data");

    // Namespace key rotation: new writes use the new epoch; old data stays readable.
    assert_eq!(
        storage.keys().rotate_namespace(&c, "docs").await.unwrap(),
        2
    );
    let v2 = blobs
        .put_bytes(&c, "docs", "a", "newer", PutOptions::default())
        .await
        .unwrap();
    let old = GetOptions {
        version: Some(v1.version_id.clone()),
        ..Default::default()
    };
    assert_eq!(
        blobs
            .get_bytes(&c, "docs", "a", old.clone())
            .await
            .unwrap()
            .1,
        big
    );

    // Re-encryption, resumable one key at a time: every old body is rewritten once.
    let mut cursor = None;
    let mut rewritten = 0;
    loop {
        let report = storage
            .keys()
            .reencrypt_namespace(&c, "docs", ReencryptOptions { cursor, limit: 1 })
            .await
            .unwrap();
        assert_eq!(report.epoch, 2);
        rewritten += report.bodies_rewritten;
        cursor = report.next_cursor;
        if cursor.is_none() {
            break;
        }
    }
    assert_eq!(rewritten, 2, "a's first body and b's body");
    let again = storage
        .keys()
        .reencrypt_namespace(&c, "docs", ReencryptOptions::default())
        .await
        .unwrap();
    assert_eq!(
        (again.bodies_rewritten, again.versions_resealed),
        (0, 0),
        "a finished pass is a no-op"
    );
    // The replaced epoch-1 body stays for readers of the old head until a sweep.
    assert!(raw_paths(&adapter, &prefix).await.contains(&before[0]));
    let swept = blobs
        .sweep(&c, "docs", std::time::Duration::ZERO)
        .await
        .unwrap();
    // a's epoch-1 body; b's small body lived only in its head (its object never existed).
    assert_eq!(swept.bodies_deleted, 1);
    let after = raw_paths(&adapter, &prefix).await;
    assert!(
        !after.contains(&before[0]),
        "the epoch-1 body is gone after the sweep"
    );
    assert_eq!(blobs.get_bytes(&c, "docs", "a", old).await.unwrap().1, big);
    assert_eq!(
        blobs
            .get_bytes(&c, "docs", "a", GetOptions::default())
            .await
            .unwrap()
            .1,
        &b"newer"[..]
    );
    assert_eq!(
        blobs
            .get_bytes(&c, "docs", "b", GetOptions::default())
            .await
            .unwrap()
            .1,
        &b"small one"[..]
    );
    let versions = blobs.versions(&c, "docs", "a").await.unwrap();
    assert_eq!(versions[0].version_id, v2.version_id);

    // Tenant-key rotation, then a KEK rotation (which re-wraps the old tenant key too): every
    // provider keeps both tenant keys opening, in this client and in a fresh one.
    let (_, before_rotation) = blobs
        .get_bytes(&c, "docs", "a", GetOptions::default())
        .await
        .unwrap();
    let rotation = storage.keys().rotate_tenant_key(&c).await.unwrap();
    assert_eq!(rotation.generation, 2);
    storage.keys().rotate_kek(&c).await.unwrap();
    blobs.keys().forget_tenant(tenant);
    let (_, body) = blobs
        .get_bytes(&c, "docs", "a", GetOptions::default())
        .await
        .unwrap();
    assert_eq!(
        body, before_rotation,
        "old data after a tenant-key rotation"
    );
    blobs
        .put_bytes(
            &c,
            "docs",
            "b",
            "under the new tenant key",
            PutOptions::default(),
        )
        .await
        .unwrap();

    // Crypto-shredding: every read and write of the tenant fails with Encryption.
    storage.keys().shred_tenant(&c).await.unwrap();
    for key in ["a", "b"] {
        let err = blobs
            .get_bytes(&c, "docs", key, GetOptions::default())
            .await
            .unwrap_err();
        assert_eq!(err.code(), ErrorCode::Encryption, "{err}");
    }
    assert_eq!(
        blobs
            .list(&c, "docs", ListOptions::default())
            .await
            .unwrap_err()
            .code(),
        ErrorCode::Encryption
    );
    let err = blobs
        .put_bytes(&c, "docs", "c", "after", PutOptions::default())
        .await
        .unwrap_err();
    assert_eq!(err.code(), ErrorCode::Encryption);
    assert!(
        raw_paths(&adapter, &format!("k/{tenant}/n/"))
            .await
            .is_empty(),
        "namespace key records are gone"
    );
    // A fresh client (no cache) cannot read either.
    blobs.keys().forget_tenant(tenant);
    let err = blobs
        .get_bytes(&c, "docs", "a", GetOptions::default())
        .await
        .unwrap_err();
    assert_eq!(err.code(), ErrorCode::Encryption);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_lifecycle_with_the_memory_provider() {
    key_lifecycle(Arc::new(MemoryKeyProvider::new()), "mem-tenant").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_lifecycle_with_the_local_keyring() {
    let dir = tempfile::tempdir().unwrap();
    let keyring = LocalKeyring::open(dir.path().join("keyring.json")).unwrap();
    key_lifecycle(Arc::new(keyring), "file-tenant").await;
    let text = std::fs::read_to_string(dir.path().join("keyring.json")).unwrap();
    assert!(
        text.contains("file-tenant"),
        "the keyring file records the tenant"
    );
}

/// The OpenBao server `.ci/run` starts; skipped (with a note) elsewhere, but never in CI.
fn openbao() -> Option<OpenBaoTransit> {
    match (
        std::env::var("SANCTUM_TEST_OPENBAO_ADDR"),
        std::env::var("SANCTUM_TEST_OPENBAO_TOKEN"),
    ) {
        (Ok(addr), Ok(token)) => {
            let transit = OpenBaoTransit::new(&addr, token, "transit", "sanctum-test-").unwrap();
            Some(transit.with_counters("secret").unwrap())
        }
        _ if std::env::var("CI").is_ok_and(|v| v == "true") => {
            panic!("CI must run the OpenBao tests: SANCTUM_TEST_OPENBAO_ADDR is unset")
        }
        _ => {
            eprintln!(
                "skipped: set SANCTUM_TEST_OPENBAO_ADDR and SANCTUM_TEST_OPENBAO_TOKEN (source .ci/openbao.sh)"
            );
            None
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_lifecycle_with_openbao_transit() {
    let Some(provider) = openbao() else { return };
    let tenant = unique("bao");
    let provider = Arc::new(provider);
    key_lifecycle(provider.clone(), &tenant).await;
    // Shredding deleted the tenant's Transit key: a wrapped key made before cannot be unwrapped.
    let err = provider.wrap(&tenant, &[1; 32], b"x").await.unwrap_err();
    assert_eq!(err.kind, sanctum_storage::crypto::KeyErrorKind::Destroyed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_adapter_keeps_keys_beside_the_data_and_reopens() {
    let dir = tempfile::tempdir().unwrap();
    let adapter: Arc<dyn BlobAdapter> = Arc::new(LocalAdapter::new(
        "keys",
        dir.path().join("blobs"),
        Durability::Fsync,
    ));
    let keyring_path = dir.path().join("keyring.json");
    let provider = Arc::new(LocalKeyring::open(&keyring_path).unwrap());
    let storage = storage_over(adapter.clone(), provider).await;
    let c = ctx("reopen");
    storage
        .blobs()
        .put_bytes(&c, "ns", "k", "persisted", PutOptions::default())
        .await
        .unwrap();
    // A second client (another process, in effect) reads with the persisted keys.
    let again = storage_over(
        adapter,
        Arc::new(LocalKeyring::open(&keyring_path).unwrap()),
    )
    .await;
    let (_, body) = again
        .blobs()
        .get_bytes(&c, "ns", "k", GetOptions::default())
        .await
        .unwrap();
    assert_eq!(&body[..], b"persisted");
}

/// Collects every `tracing` event and span field, to scan log output for canaries.
#[derive(Default)]
struct LogCapture {
    lines: std::sync::Mutex<Vec<String>>,
    next: std::sync::atomic::AtomicU64,
}

struct Line<'a>(&'a mut String);

impl tracing::field::Visit for Line<'_> {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        self.0.push_str(&format!(" {}={value:?}", field.name()));
    }
}

impl tracing::Subscriber for LogCapture {
    fn enabled(&self, _: &tracing::Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, attrs: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        let mut line = String::new();
        attrs.record(&mut Line(&mut line));
        self.lines.lock().unwrap().push(line);
        tracing::span::Id::from_u64(self.next.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1)
    }
    fn record(&self, _: &tracing::span::Id, values: &tracing::span::Record<'_>) {
        let mut line = String::new();
        values.record(&mut Line(&mut line));
        self.lines.lock().unwrap().push(line);
    }
    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
    fn event(&self, event: &tracing::Event<'_>) {
        let mut line = String::new();
        event.record(&mut Line(&mut line));
        self.lines.lock().unwrap().push(line);
    }
    fn enter(&self, _: &tracing::span::Id) {}
    fn exit(&self, _: &tracing::span::Id) {}
}

#[test]
fn logs_and_error_messages_carry_no_plaintext() {
    let capture = Arc::new(LogCapture::default());
    let errors = tracing::subscriber::with_default(capture.clone(), || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let adapter: Arc<dyn BlobAdapter> = Arc::new(ObjectStoreAdapter::in_memory("logs"));
            let storage = storage_over(adapter.clone(), Arc::new(MemoryKeyProvider::new())).await;
            let c = ctx("logs");
            exercise(&storage, &c).await;
            let mut errors = Vec::new();
            // Bad metadata: the message names the key, never the value.
            let mut bad = canary_put();
            bad.metadata
                .insert("bad".to_string(), format!("{META_CANARY}\u{7}"));
            errors.push(
                storage
                    .blobs()
                    .put_bytes(&c, "ns", "k", "x", bad)
                    .await
                    .unwrap_err()
                    .to_string(),
            );
            // Tampered body: the read fails without echoing bytes.
            let heads = raw_paths(&adapter, "t/logs/n/ns/b/").await;
            for path in heads {
                let p = BlobPath::new(path).unwrap();
                let mut bytes = collect_bytes(adapter.get(&p, None).await.unwrap().body)
                    .await
                    .unwrap()
                    .to_vec();
                let last = bytes.len() - 1;
                bytes[last] ^= 1;
                adapter
                    .put(&p, once_stream(bytes.into()), PutMode::Overwrite)
                    .await
                    .unwrap();
            }
            for key in ["small", "large"] {
                if let Err(e) = storage
                    .blobs()
                    .get_bytes(&c, "ns", key, GetOptions::default())
                    .await
                {
                    errors.push(e.to_string());
                    errors.push(format!("{e:?}"));
                }
            }
            errors
        })
    });
    assert!(errors.len() >= 3, "errors were produced: {errors:?}");
    let lines = capture.lines.lock().unwrap();
    assert!(!lines.is_empty(), "spans and events were captured");
    for canary in [BODY_CANARY, META_CANARY, TYPE_CANARY] {
        assert!(
            !errors.iter().any(|e| e.contains(canary)),
            "{canary} in an error: {errors:?}"
        );
        assert!(
            !lines.iter().any(|l| l.contains(canary)),
            "{canary} in a log line"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn object_keys_reach_adapters_only_hex_encoded() {
    let recording = Arc::new(RecordingAdapter::new(Arc::new(
        ObjectStoreAdapter::in_memory("names"),
    )));
    let storage = storage_over(recording.clone(), Arc::new(MemoryKeyProvider::new())).await;
    let key = "keyname-canary/report.pdf";
    storage
        .blobs()
        .put_bytes(&ctx("names"), "ns", key, "x", PutOptions::default())
        .await
        .unwrap();
    let hex: String = key.bytes().map(|b| format!("{b:02x}")).collect();
    assert!(
        !recording.saw(key.as_bytes()),
        "the key name is never written in the clear"
    );
    assert!(
        recording.puts().iter().any(|p| p.path.contains(&hex)),
        "it appears hex-encoded in paths (documented)"
    );
}

/// Counts calls into a key provider.
#[derive(Debug, Default)]
struct CountingProvider {
    inner: MemoryKeyProvider,
    calls: std::sync::atomic::AtomicU64,
}

#[async_trait::async_trait]
impl KeyProvider for CountingProvider {
    fn kind(&self) -> &'static str {
        "counting"
    }
    fn is_development(&self) -> bool {
        true
    }
    async fn wrap(
        &self,
        t: &str,
        k: &[u8; 32],
        aad: &[u8],
    ) -> Result<sanctum_storage::crypto::WrappedKey, sanctum_storage::crypto::KeyError> {
        self.calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        self.inner.wrap(t, k, aad).await
    }
    async fn unwrap(
        &self,
        t: &str,
        w: &sanctum_storage::crypto::WrappedKey,
        aad: &[u8],
    ) -> Result<zeroize::Zeroizing<[u8; 32]>, sanctum_storage::crypto::KeyError> {
        self.calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        self.inner.unwrap(t, w, aad).await
    }
    async fn rewrap(
        &self,
        t: &str,
        w: &sanctum_storage::crypto::WrappedKey,
        aad: &[u8],
    ) -> Result<sanctum_storage::crypto::WrappedKey, sanctum_storage::crypto::KeyError> {
        self.calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        self.inner.rewrap(t, w, aad).await
    }
    async fn rotate(&self, t: &str) -> Result<u32, sanctum_storage::crypto::KeyError> {
        self.inner.rotate(t).await
    }
    async fn destroy(&self, t: &str) -> Result<(), sanctum_storage::crypto::KeyError> {
        self.inner.destroy(t).await
    }
    async fn health_check(&self) -> Result<(), sanctum_storage::crypto::KeyError> {
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn objects_cost_no_kms_calls() {
    let provider = Arc::new(CountingProvider::default());
    let storage = storage_over(
        Arc::new(ObjectStoreAdapter::in_memory("kms")),
        provider.clone(),
    )
    .await;
    let c = ctx("kms");
    for i in 0..50 {
        let key = format!("k{i}");
        storage
            .blobs()
            .put_bytes(&c, "ns", &key, pattern(20_000, i), PutOptions::default())
            .await
            .unwrap();
        storage
            .blobs()
            .get_bytes(&c, "ns", &key, GetOptions::default())
            .await
            .unwrap();
    }
    let calls = provider.calls.load(std::sync::atomic::Ordering::SeqCst);
    assert!(
        calls <= 2,
        "the KEK is used to create and load the tenant key, not per object: {calls} calls"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn put_bytes_of_a_large_buffer_round_trips_piece_by_piece() {
    // put_bytes cuts a large buffer into 1 MiB zero-copy pieces: a size that is no multiple of
    // a piece or of a chunk must come back whole, with the whole buffer's checksum.
    let adapter: Arc<dyn BlobAdapter> = Arc::new(ObjectStoreAdapter::in_memory("pieces"));
    let storage = storage_over(adapter, Arc::new(MemoryKeyProvider::new())).await;
    let c = ctx("pieces");
    let body = pattern(3 * 1024 * 1024 + 12_345, 11);
    let version = storage
        .blobs()
        .put_bytes(&c, "docs", "big", body.clone(), PutOptions::default())
        .await
        .unwrap();
    assert_eq!(
        version.checksum,
        format!("blake3:{}", blake3::hash(&body).to_hex())
    );
    let opts = GetOptions {
        verify_checksum: true,
        ..Default::default()
    };
    let (_, back) = storage
        .blobs()
        .get_bytes(&c, "docs", "big", opts)
        .await
        .unwrap();
    assert!(back == body, "the body differs after the round trip");
}
