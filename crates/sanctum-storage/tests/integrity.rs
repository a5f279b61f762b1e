//! Attacks by a hostile backend on what it keeps in the clear: version records (a body swap
//! between versions, edited times, an undelete, dropped or reordered history, a rolled-back
//! head) and namespace key records (an edit, a rollback, a retired epoch's data replayed).
//!
//! Two clients over one adapter stand for two processes: each has its own high-water marks.

use std::sync::Arc;

use sanctum_storage::adapters::object_store::ObjectStoreAdapter;
use sanctum_storage::adapters::{BlobAdapter, BlobPath, PutMode, collect_bytes, once_stream};
use sanctum_storage::conformance::tamper::edit_head_records;
use sanctum_storage::crypto::{EpochState, KeyProvider, MemoryKeyProvider};
use sanctum_storage::facade::{GetOptions, PutOptions, ReencryptOptions};
use sanctum_storage::{
    Error, ErrorCode, Storage, StorageConfig, StorageContext, StorageDependencies,
    create_storage_client,
};
use serde_json::Value;

/// One store (adapter and KEKs) that several clients ("processes") open.
struct Store {
    adapter: Arc<dyn BlobAdapter>,
    provider: Arc<dyn KeyProvider>,
}

impl Store {
    fn new() -> Self {
        Self {
            adapter: Arc::new(ObjectStoreAdapter::in_memory("integrity")),
            provider: Arc::new(MemoryKeyProvider::new()),
        }
    }

    /// A new client: a process that has seen nothing yet.
    async fn client(&self) -> Storage {
        self.client_with("").await
    }

    /// A new client with more configuration (TOML sections).
    async fn client_with(&self, extra: &str) -> Storage {
        let config = StorageConfig::from_toml_str(
            &format!("[blob]\nbackend = \"memory\"\n[policy]\nsuperusers = [\"local\"]\n{extra}"),
            std::iter::empty::<(&str, &str)>(),
        )
        .unwrap();
        let deps = StorageDependencies {
            blob_adapter: Some(self.adapter.clone()),
            key_provider: Some(self.provider.clone()),
            ..Default::default()
        };
        create_storage_client(config, deps).await.unwrap()
    }

    async fn raw(&self, path: &str) -> Vec<u8> {
        let got = self
            .adapter
            .get(&BlobPath::new(path).unwrap(), None)
            .await
            .unwrap();
        collect_bytes(got.body).await.unwrap().to_vec()
    }

    async fn overwrite(&self, path: &str, bytes: Vec<u8>) {
        self.adapter
            .put(
                &BlobPath::new(path).unwrap(),
                once_stream(bytes.into()),
                PutMode::Overwrite,
            )
            .await
            .unwrap();
    }

    /// Rewrites the version records of `key`'s head in `ns` of tenant `t`.
    async fn edit_head(&self, ns: &str, key: &str, edit: impl FnOnce(&mut Vec<Value>)) {
        let path = head_path(ns, key);
        let edited = edit_head_records(&self.raw(&path).await, edit).unwrap();
        self.overwrite(&path, edited).await;
    }
}

/// An attack on a head's version records (newest first).
type EditRecords = fn(&mut Vec<Value>);
/// An attack on a key record.
type EditRecord = fn(&mut Value);

fn ctx() -> StorageContext {
    StorageContext::new("t", "local").unwrap()
}

fn head_path(ns: &str, key: &str) -> String {
    let hex: String = key.bytes().map(|b| format!("{b:02x}")).collect();
    format!("t/t/n/{ns}/h/{hex}.k")
}

fn key_record_path(ns: &str) -> String {
    format!("k/t/n/{ns}")
}

async fn put(storage: &Storage, ns: &str, key: &str, body: &str) -> String {
    storage
        .blobs()
        .put_bytes(&ctx(), ns, key, body.to_string(), PutOptions::default())
        .await
        .unwrap()
        .version_id
}

async fn get(
    storage: &Storage,
    ns: &str,
    key: &str,
    version: Option<&str>,
) -> Result<Vec<u8>, Error> {
    let opts = GetOptions {
        version: version.map(str::to_string),
        ..Default::default()
    };
    storage
        .blobs()
        .get_bytes(&ctx(), ns, key, opts)
        .await
        .map(|(_, body)| body.to_vec())
}

fn assert_refused<T: std::fmt::Debug>(result: Result<T, Error>, needle: &str) {
    let err = result.expect_err("the forged state must be refused");
    assert_eq!(err.code(), ErrorCode::Encryption, "{err}");
    assert!(err.to_string().contains(needle), "{err}");
}

#[tokio::test]
async fn a_body_swap_between_two_versions_is_refused() {
    let store = Store::new();
    let storage = store.client().await;
    let v1 = put(&storage, "docs", "k", "version one").await;
    put(&storage, "docs", "k", "version two").await;
    store
        .edit_head("docs", "k", |records| {
            for field in ["body_id", "body_header"] {
                let (newer, older) = (records[0][field].clone(), records[1][field].clone());
                records[0][field] = older;
                records[1][field] = newer;
            }
        })
        .await;
    // A fresh process too: the tags, not the high-water marks, catch this.
    for client in [&storage, &store.client().await] {
        assert_refused(
            get(client, "docs", "k", None).await,
            "failed authentication",
        );
        assert_refused(
            get(client, "docs", "k", Some(&v1)).await,
            "failed authentication",
        );
    }
}

#[tokio::test]
async fn edited_times_sizes_and_restored_from_are_refused() {
    let store = Store::new();
    let storage = store.client().await;
    let v1 = put(&storage, "docs", "k", "one").await;
    storage
        .blobs()
        .restore(&ctx(), "docs", "k", &v1)
        .await
        .unwrap();
    let edits: [(&str, Value); 4] = [
        ("created_at_ms", Value::from(1u64)),
        ("body_created_at_ms", Value::from(1u64)),
        ("size", Value::from(2u64)),
        ("restored_from", Value::from("01aaaaaaaaaaaaaaaaaaaaaaaa")),
    ];
    for (field, value) in edits {
        let original = store.raw(&head_path("docs", "k")).await;
        store
            .edit_head("docs", "k", |records| records[0][field] = value)
            .await;
        let fresh = store.client().await;
        assert_refused(
            fresh.blobs().versions(&ctx(), "docs", "k").await,
            "failed authentication",
        );
        assert_refused(
            fresh.blobs().head(&ctx(), "docs", "k").await,
            "failed authentication",
        );
        store.overwrite(&head_path("docs", "k"), original).await;
        assert!(fresh.blobs().versions(&ctx(), "docs", "k").await.is_ok());
    }
}

#[tokio::test]
async fn an_undelete_by_editing_the_tombstone_is_refused() {
    let store = Store::new();
    let storage = store.client().await;
    put(&storage, "docs", "k", "deleted data").await;
    storage.blobs().delete(&ctx(), "docs", "k").await.unwrap();
    // Flip the tombstone and give it the deleted version's body.
    store
        .edit_head("docs", "k", |records| {
            let older = records[1].clone();
            records[0]["tombstone"] = Value::from(false);
            for field in ["body_id", "body_header", "sealed", "size"] {
                records[0][field] = older[field].clone();
            }
        })
        .await;
    assert_refused(
        get(&store.client().await, "docs", "k", None).await,
        "failed authentication",
    );
}

#[tokio::test]
async fn dropped_or_reordered_history_is_refused() {
    let store = Store::new();
    let storage = store.client().await;
    for body in ["one", "two", "three", "four"] {
        put(&storage, "docs", "k", body).await;
    }
    let original = store.raw(&head_path("docs", "k")).await;
    let attacks: [(&str, EditRecords); 3] = [
        ("a dropped middle entry", |r| {
            r.remove(1);
        }),
        ("a dropped oldest entry", |r| {
            r.pop();
        }),
        ("two older entries swapped", |r| r.swap(1, 2)),
    ];
    for (what, attack) in attacks {
        store.edit_head("docs", "k", attack).await;
        let result = store
            .client()
            .await
            .blobs()
            .versions(&ctx(), "docs", "k")
            .await;
        let err = result.expect_err(what);
        assert_eq!(err.code(), ErrorCode::Encryption, "{what}: {err}");
        store
            .overwrite(&head_path("docs", "k"), original.clone())
            .await;
    }
    let history = storage.blobs().versions(&ctx(), "docs", "k").await.unwrap();
    assert_eq!(history.len(), 4);
}

#[tokio::test]
async fn a_record_without_a_tag_is_refused_in_a_store_written_with_tags() {
    let store = Store::new();
    let storage = store.client().await;
    put(&storage, "docs", "k", "one").await;
    store
        .edit_head("docs", "k", |records| {
            let record = records[0].as_object_mut().unwrap();
            for field in ["tag", "prev", "seq", "lineage"] {
                record.remove(field);
            }
        })
        .await;
    assert_refused(
        get(&store.client().await, "docs", "k", None).await,
        "not authenticated",
    );
}

#[tokio::test]
async fn a_rolled_back_head_is_caught_by_a_process_that_saw_newer() {
    let store = Store::new();
    let storage = store.client().await;
    put(&storage, "docs", "k", "secret that was deleted").await;
    let before_delete = store.raw(&head_path("docs", "k")).await;
    storage.blobs().delete(&ctx(), "docs", "k").await.unwrap();
    // The backend serves the older, authentic head: the delete is undone.
    store
        .overwrite(&head_path("docs", "k"), before_delete)
        .await;
    assert_refused(get(&storage, "docs", "k", None).await, "rolled back");
    // Not defended across processes (docs/encryption.md): a fresh one has no mark to compare.
    let fresh = store.client().await;
    assert_eq!(
        get(&fresh, "docs", "k", None).await.unwrap(),
        b"secret that was deleted"
    );
}

#[tokio::test]
async fn an_edited_key_record_is_refused() {
    let store = Store::new();
    let storage = store.client().await;
    put(&storage, "docs", "k", "one").await;
    storage
        .keys()
        .rotate_namespace(&ctx(), "docs")
        .await
        .unwrap();
    let original = store.raw(&key_record_path("docs")).await;
    let edits: [(&str, EditRecord); 3] = [
        ("current rolled to epoch 1", |r| {
            r["current"] = Value::from(1)
        }),
        ("legacy records allowed", |r| {
            r["legacy_manifests"] = Value::from(true)
        }),
        ("the tag removed", |r| {
            r.as_object_mut().unwrap().remove("mac");
        }),
    ];
    for (what, edit) in edits {
        let mut record: Value = serde_json::from_slice(&original).unwrap();
        edit(&mut record);
        store
            .overwrite(
                &key_record_path("docs"),
                serde_json::to_vec(&record).unwrap(),
            )
            .await;
        let err = get(&store.client().await, "docs", "k", None)
            .await
            .expect_err(what);
        assert_eq!(err.code(), ErrorCode::Encryption, "{what}: {err}");
        assert!(err.to_string().contains("key record"), "{what}: {err}");
    }
}

#[tokio::test]
async fn a_rolled_back_key_record_is_caught_by_a_process_that_saw_newer() {
    let store = Store::new();
    let storage = store.client().await;
    put(&storage, "docs", "k", "one").await;
    let epoch_one = store.raw(&key_record_path("docs")).await;
    storage
        .keys()
        .rotate_namespace(&ctx(), "docs")
        .await
        .unwrap();
    get(&storage, "docs", "k", None).await.unwrap(); // sees the rotated record
    store.overwrite(&key_record_path("docs"), epoch_one).await;
    storage.blobs().keys().forget_tenant("t"); // as when the cache expires
    let err = storage
        .blobs()
        .put_bytes(&ctx(), "docs", "k2", "new data", PutOptions::default())
        .await
        .expect_err("new writes must not go under the rolled-back epoch");
    assert_eq!(err.code(), ErrorCode::Encryption, "{err}");
    assert!(err.to_string().contains("rolled back"), "{err}");
    // A fresh process has no mark, but the provider keeps the record's version as a counter
    // (trusted state the backend can't roll back).
    let fresh = store.client().await;
    let err = fresh
        .blobs()
        .put_bytes(&ctx(), "docs", "k2", "new data", PutOptions::default())
        .await
        .expect_err("a fresh process must refuse the rolled-back record too");
    assert_eq!(err.code(), ErrorCode::Encryption, "{err}");
    assert!(
        err.to_string().contains("key provider has seen version 2"),
        "{err}"
    );
}

/// A provider that keeps no counters (it forwards everything else).
#[derive(Debug)]
struct NoCounters(MemoryKeyProvider);

#[async_trait::async_trait]
impl KeyProvider for NoCounters {
    fn kind(&self) -> &'static str {
        self.0.kind()
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
        self.0.wrap(t, k, aad).await
    }
    async fn unwrap(
        &self,
        t: &str,
        w: &sanctum_storage::crypto::WrappedKey,
        aad: &[u8],
    ) -> Result<zeroize::Zeroizing<[u8; 32]>, sanctum_storage::crypto::KeyError> {
        self.0.unwrap(t, w, aad).await
    }
    async fn rewrap(
        &self,
        t: &str,
        w: &sanctum_storage::crypto::WrappedKey,
        aad: &[u8],
    ) -> Result<sanctum_storage::crypto::WrappedKey, sanctum_storage::crypto::KeyError> {
        self.0.rewrap(t, w, aad).await
    }
    async fn rotate(&self, t: &str) -> Result<u32, sanctum_storage::crypto::KeyError> {
        self.0.rotate(t).await
    }
    async fn destroy(&self, t: &str) -> Result<(), sanctum_storage::crypto::KeyError> {
        self.0.destroy(t).await
    }
    async fn health_check(&self) -> Result<(), sanctum_storage::crypto::KeyError> {
        Ok(())
    }
}

#[tokio::test]
async fn without_provider_counters_a_fresh_process_accepts_a_rolled_back_key_record() {
    // The documented limit (docs/encryption.md §11): no trusted state, no cross-process check.
    let store = Store {
        adapter: Arc::new(ObjectStoreAdapter::in_memory("no-counters")),
        provider: Arc::new(NoCounters(MemoryKeyProvider::new())),
    };
    let storage = store.client().await;
    put(&storage, "docs", "k", "one").await;
    let epoch_one = store.raw(&key_record_path("docs")).await;
    storage
        .keys()
        .rotate_namespace(&ctx(), "docs")
        .await
        .unwrap();
    store.overwrite(&key_record_path("docs"), epoch_one).await;
    let fresh = store.client().await;
    put(&fresh, "docs", "k2", "written under the rolled-back epoch").await;
}

#[tokio::test]
async fn retired_epochs_refuse_replayed_data_and_retiring_waits_for_reencryption() {
    let store = Store::new();
    let storage = store.client().await;
    let keys = storage.keys();
    put(&storage, "docs", "k", "under epoch one").await;
    let head_epoch_one = store.raw(&head_path("docs", "k")).await;
    keys.rotate_namespace(&ctx(), "docs").await.unwrap();

    let err = keys
        .retire_epochs(&ctx(), "docs", None)
        .await
        .expect_err("data is still under epoch 1");
    assert_eq!(err.code(), ErrorCode::Conflict, "{err}");
    assert!(err.to_string().contains("epoch 1 (1 versions)"), "{err}");
    let err = keys
        .retire_epochs(&ctx(), "docs", Some(vec![2]))
        .await
        .expect_err("the active epoch");
    assert_eq!(err.code(), ErrorCode::InvalidInput, "{err}");

    let report = keys
        .reencrypt_namespace(&ctx(), "docs", ReencryptOptions::default())
        .await
        .unwrap();
    assert_eq!(report.bodies_rewritten, 1);
    let retired = keys.retire_epochs(&ctx(), "docs", None).await.unwrap();
    assert_eq!(retired.retired, [1]);
    let states: Vec<_> = keys
        .epochs(&ctx(), "docs")
        .await
        .unwrap()
        .into_iter()
        .map(|e| (e.epoch, e.state))
        .collect();
    assert_eq!(states, [(1, EpochState::Retired), (2, EpochState::Active)]);
    assert_eq!(
        get(&storage, "docs", "k", None).await.unwrap(),
        b"under epoch one"
    );

    // The backend replays the authentic head from before re-encryption (its old body is still
    // there until a sweep): a fresh process has no mark to compare, but the epoch is retired.
    store
        .overwrite(&head_path("docs", "k"), head_epoch_one)
        .await;
    assert_refused(
        get(&store.client().await, "docs", "k", None).await,
        "retired",
    );
}

#[tokio::test]
async fn a_shred_by_another_process_wipes_its_cached_keys_within_the_ttl() {
    let store = Store::new();
    let ttl = "[encryption]\nkey_cache_ttl_ms = 200";
    let shredder = store.client_with(ttl).await;
    let reader = store.client_with(ttl).await;
    put(&shredder, "docs", "k", "to be shredded").await;
    assert_eq!(
        get(&reader, "docs", "k", None).await.unwrap(),
        b"to be shredded"
    );
    let cached = reader.blobs().keys().cached();
    assert_eq!(cached.len(), 1);
    assert_eq!(
        (cached[0].tenant.as_str(), &cached[0].namespaces[..]),
        ("t", &["docs".to_string()][..])
    );

    shredder.keys().shred_tenant(&ctx()).await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    // Past the TTL the reader reads the key store again, finds the shred and drops the tenant.
    assert_refused(get(&reader, "docs", "k", None).await, "crypto-shredded");
    assert!(
        reader.blobs().keys().cached().is_empty(),
        "no key of the shredded tenant stays in memory"
    );
}

#[tokio::test]
async fn expired_keys_leave_the_cache() {
    let store = Store::new();
    let storage = store
        .client_with("[encryption]\nkey_cache_ttl_ms = 100")
        .await;
    put(&storage, "docs", "k", "one").await;
    put(&storage, "photos", "k", "two").await;
    assert_eq!(
        storage.blobs().keys().cached()[0].namespaces,
        ["docs", "photos"]
    );
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    // The next lookup removes every expired entry (photos too) and loads what it needs.
    assert_eq!(get(&storage, "docs", "k", None).await.unwrap(), b"one");
    assert_eq!(storage.blobs().keys().cached()[0].namespaces, ["docs"]);
}

/// The suite id (bytes 5-6 of the header) of `key`'s current body and sealed metadata.
async fn suites_of(store: &Store, ns: &str, key: &str) -> (String, String) {
    let mut out = (String::new(), String::new());
    let head = store.raw(&head_path(ns, key)).await;
    edit_head_records(&head, |records| {
        let suite = |field: &str| records[0][field].as_str().unwrap()[10..14].to_string();
        out = (suite("body_header"), suite("sealed"));
    })
    .unwrap();
    out
}

#[tokio::test]
async fn new_data_uses_the_configured_suite_and_both_suites_read() {
    let store = Store::new();
    let standard = store.client().await;
    let blake3 = store
        .client_with("[encryption]\nsuite = \"blake3-chunked\"")
        .await;
    put(&standard, "docs", "standard", "under 0x0001").await;
    put(&blake3, "docs", "blake3", "under 0x0003").await;
    let hex = |s: &str| (s.to_string(), s.to_string());
    assert_eq!(suites_of(&store, "docs", "standard").await, hex("0001"));
    assert_eq!(suites_of(&store, "docs", "blake3").await, hex("0003"));
    for client in [&standard, &blake3] {
        assert_eq!(
            get(client, "docs", "standard", None).await.unwrap(),
            b"under 0x0001"
        );
        assert_eq!(
            get(client, "docs", "blake3", None).await.unwrap(),
            b"under 0x0003"
        );
    }
}

#[tokio::test]
async fn a_rotated_tenant_key_wraps_new_epochs_and_retires_after_reencryption() {
    let store = Store::new();
    let storage = store.client().await;
    let keys = storage.keys();
    put(&storage, "docs", "k", "before rotation").await;
    put(&storage, "photos", "p", "photo").await;
    let head_before = store.raw(&head_path("docs", "k")).await;

    let rotation = keys.rotate_tenant_key(&ctx()).await.unwrap();
    assert_eq!(rotation.generation, 2);
    assert_eq!(rotation.namespaces, ["docs", "photos"]);
    // Each namespace's new epoch is wrapped by the new tenant key.
    let record: Value = serde_json::from_slice(&store.raw(&key_record_path("docs")).await).unwrap();
    let epochs = record["epochs"].as_array().unwrap();
    assert_eq!(epochs.last().unwrap()["wrapped_by"], 2);
    assert_eq!(epochs[0]["wrapped_by"], 1);
    assert_eq!(record["signed_by"], 2);

    // Old data (old epoch, old tags) still reads, in this process and in a fresh one; new
    // writes go under the new epoch.
    for client in [&storage, &store.client().await] {
        assert_eq!(
            get(client, "docs", "k", None).await.unwrap(),
            b"before rotation"
        );
    }
    put(&storage, "docs", "k", "after rotation").await;

    let err = keys
        .retire_tenant_keys(&ctx())
        .await
        .expect_err("docs still has data under the old tenant key");
    assert_eq!(err.code(), ErrorCode::Conflict, "{err}");
    assert!(err.to_string().contains("keys reencrypt"), "{err}");

    for ns in ["docs", "photos"] {
        keys.reencrypt_namespace(&ctx(), ns, ReencryptOptions::default())
            .await
            .unwrap();
        keys.retire_epochs(&ctx(), ns, None).await.unwrap();
    }
    assert_eq!(keys.retire_tenant_keys(&ctx()).await.unwrap(), [1]);
    assert_eq!(
        keys.retire_tenant_keys(&ctx()).await.unwrap(),
        Vec::<u32>::new()
    );
    let fresh = store.client().await;
    let history = fresh.blobs().versions(&ctx(), "docs", "k").await.unwrap();
    assert_eq!(history.len(), 2);
    assert_eq!(
        get(&fresh, "docs", "k", None).await.unwrap(),
        b"after rotation"
    );
    assert_eq!(get(&fresh, "photos", "p", None).await.unwrap(), b"photo");

    // A head tagged under the retired tenant key is refused, even by a fresh process.
    store.overwrite(&head_path("docs", "k"), head_before).await;
    let err = get(&store.client().await, "docs", "k", None)
        .await
        .expect_err("tagged by a retired tenant key");
    assert_eq!(err.code(), ErrorCode::Encryption, "{err}");
}

/// The version records of `key`, newest first.
async fn records(store: &Store, ns: &str, key: &str) -> Vec<Value> {
    let mut out = Vec::new();
    edit_head_records(&store.raw(&head_path(ns, key)).await, |r| out = r.clone()).unwrap();
    out
}

#[tokio::test]
async fn small_bodies_are_one_message_with_their_metadata_and_read_every_way() {
    let store = Store::new();
    let storage = store.client().await;
    let blobs = storage.blobs();
    let opts = || PutOptions {
        content_type: Some("text/plain".into()),
        metadata: [("owner".to_string(), "ana".to_string())].into(),
        ..Default::default()
    };
    let body1 = b"the first small body".repeat(40);
    let v1 = blobs
        .put_bytes(&ctx(), "docs", "k", body1.clone(), opts())
        .await
        .unwrap();
    let r = records(&store, "docs", "k").await;
    assert!(r[0]["combined_len"].as_u64().unwrap() > body1.len() as u64);

    let c = ctx();
    let read = |version: Option<String>, range: Option<sanctum_storage::facade::ByteRange>| {
        let opts = GetOptions {
            version,
            range,
            verify_checksum: true,
        };
        blobs.get_bytes(&c, "docs", "k", opts)
    };
    let (version, body) = read(None, None).await.unwrap();
    assert_eq!(body, &body1[..]);
    assert_eq!(version.content_type.as_deref(), Some("text/plain"));
    assert_eq!(version.metadata["owner"], "ana");
    assert_eq!(version.checksum, v1.checksum);
    let range = sanctum_storage::facade::ByteRange::Inclusive { first: 4, last: 8 };
    let (_, part) = read(None, Some(range)).await.unwrap();
    assert_eq!(part, &body1[4..9]);

    // A newer version: the first is read from its body object, not the head.
    blobs
        .put_bytes(&ctx(), "docs", "k", "second", opts())
        .await
        .unwrap();
    let (_, old) = read(Some(v1.version_id.clone()), None).await.unwrap();
    assert_eq!(old, &body1[..]);
    let restored = blobs
        .restore(&ctx(), "docs", "k", &v1.version_id)
        .await
        .unwrap();
    let (version, body) = read(None, None).await.unwrap();
    assert_eq!(
        (version.version_id, body.to_vec()),
        (restored.version_id, body1.clone())
    );
    let history = blobs.versions(&ctx(), "docs", "k").await.unwrap();
    assert_eq!(history.len(), 3);
    assert!(history.iter().all(|v| v.metadata["owner"] == "ana"));

    // A body object swapped for another version's combined message is refused (its context
    // names its own body id).
    let r = records(&store, "docs", "k").await;
    let (second_body, first_body) = (
        r[1]["body_id"].as_str().unwrap().to_string(),
        r[2]["body_id"].as_str().unwrap().to_string(),
    );
    let body_path = |id: &str| {
        let hex: String = "k".bytes().map(|b| format!("{b:02x}")).collect();
        format!("t/t/n/docs/b/{hex}.k/{id}")
    };
    let first = store.raw(&body_path(&first_body)).await;
    store.overwrite(&body_path(&second_body), first).await;
    let second_id = r[1]["version_id"].as_str().unwrap().to_string();
    let err = read(Some(second_id), None)
        .await
        .expect_err("swapped body object");
    assert!(
        matches!(err.code(), ErrorCode::Encryption | ErrorCode::Consistency),
        "{err}"
    );
}

#[tokio::test]
async fn reencryption_moves_small_bodies_to_one_message() {
    let store = Store::new();
    let storage = store.client().await;
    // A streamed put keeps the old layout: a body message beside sealed metadata.
    let stream = futures::stream::once(async { Ok(bytes::Bytes::from_static(b"streamed small")) });
    storage
        .blobs()
        .put(&ctx(), "docs", "k", stream, PutOptions::default())
        .await
        .unwrap();
    assert!(records(&store, "docs", "k").await[0]["combined_len"].is_null());
    let report = storage
        .keys()
        .reencrypt_namespace(&ctx(), "docs", ReencryptOptions::default())
        .await
        .unwrap();
    assert_eq!(report.bodies_rewritten, 1);
    assert!(records(&store, "docs", "k").await[0]["combined_len"].is_u64());
    for client in [&storage, &store.client().await] {
        assert_eq!(
            get(client, "docs", "k", None).await.unwrap(),
            b"streamed small"
        );
    }
    // Done once: a second pass rewrites nothing.
    let again = storage
        .keys()
        .reencrypt_namespace(&ctx(), "docs", ReencryptOptions::default())
        .await
        .unwrap();
    assert_eq!(again.bodies_rewritten, 0);
}

/// Body objects of `key` in `ns`.
async fn body_objects(store: &Store, ns: &str, key: &str) -> usize {
    let hex: String = key.bytes().map(|b| format!("{b:02x}")).collect();
    let prefix = format!("t/t/n/{ns}/b/{hex}.k/");
    store
        .adapter
        .list(&prefix, None, 1000)
        .await
        .unwrap()
        .entries
        .len()
}

#[tokio::test]
async fn a_small_current_version_lives_in_its_head_until_another_is_current() {
    let store = Store::new();
    let storage = store.client().await;
    let blobs = storage.blobs();
    let v1 = blobs
        .put_bytes(&ctx(), "docs", "k", "one", PutOptions::default())
        .await
        .unwrap();
    assert_eq!(body_objects(&store, "docs", "k").await, 0, "inlined only");
    // Restoring the current version reuses the head's copy.
    blobs
        .restore(&ctx(), "docs", "k", &v1.version_id)
        .await
        .unwrap();
    assert_eq!(get(&storage, "docs", "k", None).await.unwrap(), b"one");
    // A newer version makes the old current one write its body object first.
    put(&storage, "docs", "k", "two").await;
    assert_eq!(body_objects(&store, "docs", "k").await, 1);
    let old = Some(v1.version_id.as_str());
    assert_eq!(
        get(&store.client().await, "docs", "k", old).await.unwrap(),
        b"one"
    );
    // A delete demotes too.
    blobs.delete(&ctx(), "docs", "k").await.unwrap();
    assert_eq!(body_objects(&store, "docs", "k").await, 2);
    // Re-encryption of a key whose current version lives in its head.
    put(&storage, "docs", "fresh", "only in the head").await;
    storage
        .keys()
        .rotate_namespace(&ctx(), "docs")
        .await
        .unwrap();
    storage
        .keys()
        .reencrypt_namespace(&ctx(), "docs", ReencryptOptions::default())
        .await
        .unwrap();
    assert_eq!(
        get(&store.client().await, "docs", "fresh", None)
            .await
            .unwrap(),
        b"only in the head"
    );
    let versions = blobs.versions(&ctx(), "docs", "k").await.unwrap();
    assert_eq!(versions.len(), 4);
}
